// Compose: send a message, with the segment counter under the text box.
import { idempotencyKey, request } from "./api.js";
import { count, escape, html, showUserErrors } from "./dom.js";

const INBOXES = `query Inboxes { account { inboxes { id name phoneNumber kind } } }`;
const SEGMENT_INFO = `query Segments($body: String!) {
  segmentInfo(body: $body) {
    encoding units segments unitsPerSegment remainingInSegment nonGsmCharacters credits
  }
}`;
const SEND = `mutation Send($input: SendMessageInput!) {
  sendMessage(input: $input) {
    message { id to segments credits }
    balance { total }
    userErrors { code field message }
  }
}`;
// Long enough to skip the keystrokes of a word, short enough to feel immediate.
const COUNT_DELAY_MS = 120;

const TEMPLATE = html`<h1 tabindex="-1">Compose</h1>
  <form class="card" id="compose" novalidate>
    <div class="field"><label for="from-inbox">From inbox</label>
      <select id="from-inbox" aria-describedby="from-error"></select>
      <p class="error" id="from-error" role="alert"></p></div>
    <div class="field"><label for="to">To</label>
      <input id="to" type="tel" autocomplete="off" aria-describedby="to-error">
      <p class="error" id="to-error" role="alert"></p></div>
    <div class="field"><label for="message">Message</label>
      <textarea id="message" aria-describedby="counter body-error"></textarea>
      <p class="counter" id="counter" aria-live="polite">0 segments</p>
      <p class="error" id="body-error" role="alert"></p></div>
    <button type="submit" disabled>Send</button>
    <p class="status" id="send-status" role="status"></p>
  </form>`;

function describe(info) {
  const segments = `${count(info.segments)} segment${info.segments === 1 ? "" : "s"}`;
  const encoding = info.encoding === "GSM7" ? "GSM-7" : "UCS-2";
  let text = html`<strong>${segments}</strong> · ${encoding} · ${count(info.remainingInSegment)} of
    ${count(info.unitsPerSegment)} left in this segment · ${count(info.credits)} credit${info.credits === 1 ? "" : "s"}`;
  if (info.nonGsmCharacters.length) {
    const marked = info.nonGsmCharacters.map((c) => html`<mark>${escape(c)}</mark>`).join(" ");
    text += html`<br>Characters that force UCS-2: ${marked}`;
  }
  return text;
}

export function renderCompose(main) {
  main.innerHTML = TEMPLATE;
  main.querySelector("h1").focus();
  const $ = (selector) => main.querySelector(selector);
  const fields = { inboxId: $("#from-error"), to: $("#to-error"), body: $("#body-error") };
  let key = idempotencyKey();
  // Answers that arrive after the view is gone have nowhere to go.
  let stopped = false;
  let asked = 0;
  let timer = 0;

  async function countSegments() {
    const mine = ++asked;
    try {
      const { segmentInfo } = await request(SEGMENT_INFO, { body: $("#message").value });
      if (mine === asked && !stopped) $("#counter").innerHTML = describe(segmentInfo);
    } catch (error) {
      if (mine === asked && !stopped) $("#counter").textContent = error.message;
    }
  }

  $("#message").addEventListener("input", () => {
    // A changed draft is a new message: a retry of the old one must not reuse its key.
    key = idempotencyKey();
    clearTimeout(timer);
    timer = setTimeout(countSegments, COUNT_DELAY_MS);
  });
  $("#to").addEventListener("input", () => {
    key = idempotencyKey();
  });

  $("#compose").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.target.querySelector("button");
    button.disabled = true;
    $("#send-status").textContent = "";
    const input = {
      inboxId: $("#from-inbox").value,
      to: $("#to").value,
      body: $("#message").value,
      idempotencyKey: key,
    };
    try {
      const result = (await request(SEND, { input })).sendMessage;
      if (stopped) return;
      // An answer settles this key; only a send whose answer was lost is retried with it.
      key = idempotencyKey();
      showUserErrors(result.userErrors, fields, $("#send-status"));
      if (result.message) {
        const m = result.message;
        $("#send-status").textContent =
          `Sent to ${m.to}: ${count(m.segments)} segments, ${count(m.credits)} credits. ` +
          `Balance: ${count(result.balance.total)} credits.`;
        $("#message").value = "";
        countSegments();
      }
    } catch (error) {
      if (!stopped) $("#send-status").textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });

  request(INBOXES)
    .then(({ account }) => {
      if (stopped) return;
      // Send waits for the inboxes: without one, a send could only be refused.
      $("#compose button").disabled = account.inboxes.length === 0;
      if (account.inboxes.length === 0) $("#from-error").textContent = "No inbox to send from.";
      $("#from-inbox").innerHTML = account.inboxes
        .map((i) => html`<option value="${escape(i.id)}">${escape(i.name)} (${escape(i.phoneNumber)})</option>`)
        .join("");
    })
    .catch((error) => {
      if (!stopped) $("#from-error").textContent = error.message;
    });
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
