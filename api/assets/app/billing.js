// Billing: the balance by bucket, live from balanceChanged; the balance alerts and the
// run-out forecast; recent ledger entries; buying credits; auto-recharge.
import { idempotencyKey, live, request } from "./api.js";
import { count, escape, html, money, showUserErrors, when } from "./dom.js";

const BALANCE = "total subscriptionCredits purchasedCredits periodStart periodEnd";
const ENTRY = "id kind bucket credits balanceAfter amountCents createdAt";
const AUTO = `enabled thresholdCredits rechargeCredits maxRechargesPerPeriod
  rechargesThisPeriod lastFailure`;
const ENTRIES_SHOWN = 10;

const OVERVIEW = `query Billing {
  account {
    paymentMethod { brand last4 }
    forecast { status dailyBurn basedOnDays runOutDate subscriptionCreditsExpiring }
    balanceAlerts { thresholdCredits state lastFiredAt }
    billingOverview {
      balance { ${BALANCE} }
      plan { name monthlyCredits pricePerCreditCents currency }
      autoRecharge { ${AUTO} }
      creditsUsedThisPeriod creditsPurchasedThisPeriod spentThisPeriodCents
      recentEntries(first: ${ENTRIES_SHOWN}) { ${ENTRY} }
    }
  }
}`;

const BALANCE_CHANGED = `subscription Balance {
  balanceChanged { balance { ${BALANCE} } entries { ${ENTRY} } notices { kind } }
}`;

const BUY = `mutation Buy($input: BuyCreditsInput!) {
  buyCredits(input: $input) { balance { ${BALANCE} } userErrors { code field message } }
}`;

const UPDATE_AUTO = `mutation AutoRecharge($input: UpdateAutoRechargeInput!) {
  updateAutoRecharge(input: $input) { autoRecharge { ${AUTO} } userErrors { code field message } }
}`;

const TEMPLATE = html`<h1 tabindex="-1">Billing</h1>
  <dl class="figures">
    <div class="figure card"><dt>Total credits</dt><dd data-balance="total">–</dd></div>
    <div class="figure card"><dt>Subscription credits</dt><dd data-balance="subscriptionCredits">–</dd>
      <span class="change">reset each month, do not roll over</span></div>
    <div class="figure card"><dt>Purchased credits</dt><dd data-balance="purchasedCredits">–</dd>
      <span class="change">never expire</span></div>
    <div class="figure card"><dt>Period ends</dt><dd class="when" data-balance="periodEnd">–</dd></div>
  </dl>
  <p class="live" id="live-state" aria-live="polite">Connecting…</p>
  <p id="plan"></p>
  <section class="card stacked" aria-labelledby="alerts-title">
    <h2 id="alerts-title">Balance alerts</h2>
    <ul id="alerts" class="last"></ul>
  </section>
  <section class="card stacked" aria-labelledby="forecast-title">
    <h2 id="forecast-title">Run-out forecast</h2>
    <p id="forecast" class="last"></p>
  </section>
  <div class="row forms">
    <form class="card" id="buy" novalidate>
      <h2>Buy credits</h2>
      <div class="field"><label for="credits">Credits</label>
        <input id="credits" type="number" min="1" step="1" inputmode="numeric" required
          aria-describedby="credits-error"><p class="error" id="credits-error" role="alert"></p></div>
      <button type="submit">Buy credits</button>
      <p class="status" id="buy-status" aria-live="polite"></p>
    </form>
    <form class="card" id="auto" novalidate>
      <h2>Auto-recharge</h2>
      <div class="field"><input id="auto-enabled" type="checkbox">
        <label for="auto-enabled" style="display:inline">Auto-recharge</label></div>
      <div class="field"><label for="threshold">Threshold</label>
        <input id="threshold" type="number" min="1" step="1" aria-describedby="threshold-error">
        <p class="error" id="threshold-error" role="alert"></p></div>
      <div class="field"><label for="recharge">Recharge amount</label>
        <input id="recharge" type="number" min="1" step="1" aria-describedby="recharge-error">
        <p class="error" id="recharge-error" role="alert"></p></div>
      <button type="submit">Save auto-recharge</button>
      <p class="status" id="auto-status" aria-live="polite"></p>
    </form>
  </div>
  <h2 id="entries-title">Recent ledger entries</h2>
  <div class="table-wrap" tabindex="0" role="region" aria-labelledby="entries-title">
    <table><thead><tr><th scope="col" class="text">When</th><th scope="col" class="text">Kind</th>
      <th scope="col" class="text">Bucket</th><th scope="col">Credits</th><th scope="col">Balance after</th>
      </tr></thead><tbody id="entries"></tbody></table></div>`;

function forecastText(forecast) {
  const pace = () =>
    `${count(Math.round(forecast.dailyBurn))} credits a day over the last ${forecast.basedOnDays} days`;
  const text = {
    OK: () => `At the recent pace (${pace()}), the credits run out on ${forecast.runOutDate}.`,
    INSUFFICIENT_HISTORY: () => "Not enough history yet: the pace needs 7 complete days.",
    NO_USAGE: () => `No usage in the last ${forecast.basedOnDays} days.`,
    NOT_WITHIN_HORIZON: () => `At the recent pace (${pace()}), the credits last beyond a year.`,
  }[forecast.status]();
  const expiring = forecast.subscriptionCreditsExpiring;
  return expiring > 0
    ? `${text} ${count(expiring)} subscription credits are forecast to expire unused at the period end.`
    : text;
}

function alertItem(alert) {
  const state =
    alert.state === "FIRED"
      ? `fired${alert.lastFiredAt ? ` ${escape(when(alert.lastFiredAt))}` : ""}`
      : "armed";
  return html`<li>Below ${count(alert.thresholdCredits)} credits: ${state}</li>`;
}

function alertsList(alerts) {
  return alerts.length
    ? alerts.map(alertItem).join("")
    : html`<li>None set: an admin sets them with the setBalanceAlerts mutation.</li>`;
}

function entryRow(entry) {
  const sign = entry.credits > 0 ? "+" : "";
  const kind = entry.kind.toLowerCase().replaceAll("_", " ");
  return html`<tr><td class="text">${escape(when(entry.createdAt))}</td><td class="text">${kind}</td>
    <td class="text">${entry.bucket.toLowerCase()}</td><td>${sign}${count(entry.credits)}</td>
    <td>${count(entry.balanceAfter)}</td></tr>`;
}

export function renderBilling(main) {
  main.innerHTML = TEMPLATE;
  main.querySelector("h1").focus();
  const $ = (selector) => main.querySelector(selector);
  let entries = [];
  // Answers that arrive after the view is gone have nowhere to go.
  let stopped = false;

  function showBalance(balance) {
    for (const key of ["total", "subscriptionCredits", "purchasedCredits"]) {
      $(`[data-balance="${key}"]`).textContent = count(balance[key]);
    }
    $('[data-balance="periodEnd"]').textContent = when(balance.periodEnd);
  }

  function showEntries(newest) {
    const seen = new Set(newest.map((e) => e.id));
    entries = [...newest, ...entries.filter((e) => !seen.has(e.id))].slice(0, ENTRIES_SHOWN);
    $("#entries").innerHTML = entries.map(entryRow).join("");
  }

  function showAuto(auto) {
    $("#auto-enabled").checked = auto.enabled;
    $("#threshold").value = auto.thresholdCredits;
    $("#recharge").value = auto.rechargeCredits;
    const failure = auto.lastFailure ? ` Last failure: ${auto.lastFailure}` : "";
    $("#auto-status").textContent =
      `${auto.rechargesThisPeriod} of at most ${auto.maxRechargesPerPeriod} recharges this month.${failure}`;
  }

  async function loadOverview() {
    const { account } = await request(OVERVIEW);
    if (stopped) return;
    const overview = account.billingOverview;
    const { plan } = overview;
    const card = account.paymentMethod
      ? `${account.paymentMethod.brand} ending ${account.paymentMethod.last4}`
      : "no payment method on file";
    $("#plan").textContent =
      `${plan.name} plan: ${count(plan.monthlyCredits)} credits a month; ` +
      `extra credits ${money(plan.pricePerCreditCents, plan.currency)} each (${card}). ` +
      `This month: ${count(overview.creditsUsedThisPeriod)} used, ` +
      `${count(overview.creditsPurchasedThisPeriod)} bought.`;
    showBalance(overview.balance);
    $("#forecast").textContent = forecastText(account.forecast);
    $("#alerts").innerHTML = alertsList(account.balanceAlerts);
    entries = [];
    showEntries(overview.recentEntries);
    showAuto(overview.autoRecharge);
  }

  const stopLive = live(BALANCE_CHANGED, {
    next: ({ balanceChanged }) => {
      if (stopped) return;
      showBalance(balanceChanged.balance);
      showEntries([...balanceChanged.entries].reverse());
      // An alert that fired or recovered: its state is on the page.
      if (balanceChanged.notices.some((notice) => notice.kind.startsWith("BALANCE_"))) {
        loadOverview().catch(() => {});
      }
    },
    onReconnect: () => loadOverview().catch(() => {}),
    onState: (state) => {
      if (stopped) return;
      $("#live-state").textContent = { live: "Live", reconnecting: "Reconnecting…", offline: "Offline" }[state];
    },
  });

  $("#buy").addEventListener("submit", async (event) => {
    event.preventDefault();
    const credits = Number($("#credits").value);
    if (!Number.isInteger(credits) || credits < 1) {
      $("#credits-error").textContent = "Enter a whole number of credits, 1 or more.";
      return;
    }
    const button = event.target.querySelector("button");
    button.disabled = true;
    try {
      const input = { credits, idempotencyKey: idempotencyKey() };
      const result = (await request(BUY, { input })).buyCredits;
      if (stopped) return;
      showUserErrors(result.userErrors, { credits: $("#credits-error") }, $("#buy-status"));
      if (result.balance) {
        showBalance(result.balance);
        $("#buy-status").textContent = `Bought ${count(credits)} credits.`;
        $("#credits").value = "";
        // The forecast counts the purchase.
        loadOverview().catch(() => {});
      }
    } catch (error) {
      if (!stopped) $("#buy-status").textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });

  $("#auto").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = {
      enabled: $("#auto-enabled").checked,
      thresholdCredits: Number($("#threshold").value) || null,
      rechargeCredits: Number($("#recharge").value) || null,
    };
    try {
      const result = (await request(UPDATE_AUTO, { input })).updateAutoRecharge;
      if (stopped) return;
      const fields = { thresholdCredits: $("#threshold-error"), rechargeCredits: $("#recharge-error") };
      showUserErrors(result.userErrors, fields, $("#auto-status"));
      if (result.autoRecharge) showAuto(result.autoRecharge);
    } catch (error) {
      if (!stopped) $("#auto-status").textContent = error.message;
    }
  });

  loadOverview().catch((error) => {
    if (!stopped) $("#plan").textContent = error.message;
  });
  return () => {
    stopped = true;
    stopLive();
  };
}
