// Calendar days as "YYYY-MM-DD" strings, computed on UTC dates so that no local
// daylight-saving change shifts them.

const DAY_MS = 86_400_000;

function parse(day) {
  const [y, m, d] = day.split("-").map(Number);
  return Date.UTC(y, m - 1, d);
}

function format(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

export function addDays(day, days) {
  return format(parse(day) + days * DAY_MS);
}

export function todayIn(timeZone) {
  // en-CA writes dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat("en-CA", { timeZone }).format(new Date());
}

export function dayStartSeconds(day) {
  return parse(day) / 1000;
}

function monthStart(day) {
  return `${day.slice(0, 7)}-01`;
}

// Preset name -> [start, end] (inclusive), or null for all time.
export function preset(name, today) {
  switch (name) {
    case "last7":
      return [addDays(today, -6), today];
    case "last30":
      return [addDays(today, -29), today];
    case "thisMonth":
      return [monthStart(today), today];
    case "lastMonth": {
      const end = addDays(monthStart(today), -1);
      return [monthStart(end), end];
    }
    default:
      return null;
  }
}
