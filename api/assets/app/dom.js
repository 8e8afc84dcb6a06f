const numbers = new Intl.NumberFormat("en-US");

export function count(value) {
  return numbers.format(value);
}

export function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function html(strings, ...values) {
  return strings.reduce((out, s, i) => out + s + (i < values.length ? values[i] : ""), "");
}

export function money(cents, currency) {
  return new Intl.NumberFormat("en-US", { style: "currency", currency }).format(cents / 100);
}

export function when(iso) {
  return new Date(iso).toLocaleString("en-US", { dateStyle: "medium", timeStyle: "short" });
}

// Show each userError next to its field: `fields` maps the last element of the
// error's path to the field's error element; the rest go to `general`.
export function showUserErrors(userErrors, fields, general) {
  for (const element of [...Object.values(fields), general]) element.textContent = "";
  for (const error of userErrors) {
    const target = fields[error.field?.at(-1)] ?? general;
    target.textContent = target.textContent ? `${target.textContent} ${error.message}` : error.message;
  }
}
