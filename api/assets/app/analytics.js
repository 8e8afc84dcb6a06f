// Analytics: usage over a range by day, week or month, with the change against the
// previous period of the same length, a chart, a table and the CSV export.
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { request } from "./api.js";
import { dayStartSeconds, preset, todayIn } from "./dates.js";
import { count, escape, html, showUserErrors } from "./dom.js";

const FIGURES = "totals { segments segmentsSent segmentsReceived }";
// `previous` is the range of the same length just before this one.
const REPORT = `start end ${FIGURES} previous { ${FIGURES} }
  series { start end figures { segments segmentsSent segmentsReceived } }`;

const ACCOUNT_USAGE = `query AccountUsage($range: DateRangeInput, $granularity: Granularity!,
    $groupBy: UsageGroupBy!) {
  account {
    usage(range: $range, granularity: $granularity, groupBy: $groupBy) {
      ${REPORT}
      groups { member { id name } inbox { id name } ${FIGURES} }
    }
  }
}`;

const MEMBER_USAGE = `query MemberUsage($range: DateRangeInput, $granularity: Granularity!) {
  viewer { usage(range: $range, granularity: $granularity) { ${REPORT} } }
}`;

const EXPORT = `mutation Export($input: UsageExportInput!) {
  createUsageExport(input: $input) { export { url rows } userErrors { code field message } }
}`;

const PRESETS = [
  ["last7", "Last 7 days"],
  ["last30", "Last 30 days"],
  ["thisMonth", "This month"],
  ["lastMonth", "Last month"],
  ["allTime", "All time"],
];

const CARDS = [
  ["segments", "Total segments"],
  ["segmentsSent", "Segments sent"],
  ["segmentsReceived", "Segments received"],
];

function template(admin) {
  const presets = PRESETS.map(
    ([key, label]) =>
      html`<button type="button" class="quiet" data-preset="${key}" aria-pressed="false">${label}</button>`,
  ).join("");
  const breakdown = admin
    ? html`<div><label for="group-by">Break down by</label>
        <select id="group-by"><option value="NONE">None</option>
          <option value="MEMBER">Members</option><option value="SHARED_INBOX">Shared inboxes</option></select></div>`
    : "";
  const exportButton = admin ? html`<button type="button" id="export">Export CSV</button>` : "";
  const cards = CARDS.map(
    ([key, label]) => html`<div class="figure card"><dt>${label}</dt>
      <dd><span data-figure="${key}">–</span> <span class="change" data-change="${key}"></span></dd></div>`,
  ).join("");
  return html`<h1 tabindex="-1">Analytics</h1>
    <form class="row" id="controls">
      <div><label for="from">From</label><input id="from" type="date" required></div>
      <div><label for="to">To</label><input id="to" type="date" required></div>
      <div class="presets" role="group" aria-label="Presets">${presets}</div>
    </form>
    <div class="row">
      <div><label for="granularity">Granularity</label>
        <select id="granularity"><option value="DAY">Day</option><option value="WEEK">Week</option>
          <option value="MONTH">Month</option></select></div>
      ${breakdown}
      ${exportButton}
    </div>
    <p class="error" id="analytics-error" role="alert"></p>
    <dl class="figures">${cards}</dl>
    <section class="card"><h2 id="chart-title">Segments sent and received</h2>
      <div class="chart" id="chart" role="img" aria-labelledby="chart-title"></div></section>
    <h2 id="table-title">By period</h2>
    <div class="table-wrap" tabindex="0" role="region" aria-labelledby="table-title">
      <table id="usage-table"></table></div>
    <p class="status" id="analytics-status" aria-live="polite"></p>`;
}

function change(current, previous) {
  if (previous === undefined) return ["", ""];
  if (previous === 0) return [current === 0 ? "no change" : "new", ""];
  const percent = ((current - previous) / previous) * 100;
  const sign = percent > 0 ? "+" : "";
  const text = `${sign}${percent.toFixed(1)}% vs previous period`;
  return [text, percent > 0 ? "up" : percent < 0 ? "down" : ""];
}

function tableRows(report, groupBy) {
  if (groupBy !== "NONE") {
    const period = `${report.start} – ${report.end}`;
    return report.groups.map((group) => {
      const name = (group.member ?? group.inbox).name;
      const t = group.totals;
      return html`<tr><td class="text">${escape(name)}</td><td class="text">${period}</td>
        <td>${count(t.segments)}</td><td>${count(t.segmentsSent)}</td><td>${count(t.segmentsReceived)}</td></tr>`;
    });
  }
  return report.series.map((bucket) => {
    const f = bucket.figures;
    const period = bucket.start === bucket.end ? bucket.start : `${bucket.start} – ${bucket.end}`;
    return html`<tr><td>${period}</td><td>${count(f.segments)}</td>
      <td>${count(f.segmentsSent)}</td><td>${count(f.segmentsReceived)}</td></tr>`;
  });
}

function renderTable(table, report, groupBy) {
  const group = { MEMBER: "Member", SHARED_INBOX: "Shared inbox" }[groupBy];
  const head = group
    ? html`<th scope="col" class="text">${group}</th><th scope="col" class="text">Period</th>`
    : html`<th scope="col">Period</th>`;
  table.innerHTML = html`<thead><tr>${head}<th scope="col">Total segments</th>
    <th scope="col">Sent</th><th scope="col">Received</th></tr></thead>
    <tbody>${tableRows(report, groupBy).join("")}</tbody>`;
}

function chartData(report) {
  const xs = [];
  const sent = [];
  const received = [];
  for (const bucket of report.series) {
    xs.push(dayStartSeconds(bucket.start));
    sent.push(bucket.figures.segmentsSent);
    received.push(bucket.figures.segmentsReceived);
  }
  return [xs, sent, received];
}

function drawChart(holder, previous, report) {
  const data = chartData(report);
  const width = Math.max(holder.clientWidth, 280);
  if (previous) {
    previous.setData(data);
    return previous;
  }
  const css = getComputedStyle(document.documentElement);
  const options = {
    width,
    height: 280,
    // Buckets are calendar days, drawn in UTC so that each starts on its own date.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    series: [
      {},
      { label: "Sent", stroke: css.getPropertyValue("--sent").trim(), width: 2 },
      { label: "Received", stroke: css.getPropertyValue("--received").trim(), width: 2 },
    ],
    axes: [{}, { values: (_u, ticks) => ticks.map((t) => count(t)) }],
  };
  return new uPlot(options, data, holder);
}

export function renderAnalytics(main, session) {
  const admin = session.viewer.role === "ADMIN";
  main.innerHTML = template(admin);
  main.querySelector("h1").focus();
  const $ = (selector) => main.querySelector(selector);
  const today = todayIn(session.account.timezone);
  const state = { range: preset("last30", today), granularity: "DAY", groupBy: "NONE" };
  let chart = null;
  let generation = 0;

  function showRange() {
    $("#from").value = state.range?.[0] ?? "";
    $("#to").value = state.range?.[1] ?? "";
    for (const button of main.querySelectorAll("[data-preset]")) {
      const range = preset(button.dataset.preset, today);
      const same = range === null ? state.range === null : range.join() === state.range?.join();
      button.setAttribute("aria-pressed", String(same));
    }
  }

  async function load() {
    const mine = ++generation;
    const started = performance.now();
    $("#analytics-error").textContent = "";
    $("#analytics-status").textContent = "Loading…";
    const range = state.range && { start: state.range[0], end: state.range[1] };
    const variables = { range, granularity: state.granularity };
    let data;
    try {
      data = admin
        ? (await request(ACCOUNT_USAGE, { ...variables, groupBy: state.groupBy })).account
        : (await request(MEMBER_USAGE, variables)).viewer;
    } catch (error) {
      if (mine !== generation) return;
      $("#analytics-error").textContent = error.message;
      $("#analytics-status").textContent = "";
      return;
    }
    if (mine !== generation) return;
    const report = data.usage;
    if (state.range === null) {
      $("#from").value = report.start;
      $("#to").value = report.end;
    }
    for (const [key] of CARDS) {
      $(`[data-figure="${key}"]`).textContent = count(report.totals[key]);
      // All time has nothing before it to compare with.
      const before = state.range === null ? undefined : report.previous.totals[key];
      const [text, direction] = change(report.totals[key], before);
      const element = $(`[data-change="${key}"]`);
      element.textContent = text;
      element.className = `change ${direction}`;
    }
    chart = drawChart($("#chart"), chart, report);
    renderTable($("#usage-table"), report, admin ? state.groupBy : "NONE");
    // Reading a layout property makes the browser lay the page out now, so the time
    // includes that, not only building the elements.
    void $("#usage-table").offsetHeight;
    const rendered = Math.round(performance.now() - started);
    $("#analytics-status").textContent = `${report.start} to ${report.end}, ${report.series.length} periods.`;
    // Read by the browser tests, which record how long a report takes to show.
    main.dataset.renderedMs = String(rendered);
    main.dataset.loaded = String(mine);
  }

  function onDates() {
    const [from, to] = [$("#from").value, $("#to").value];
    if (!from || !to) return;
    if (from > to) {
      $("#analytics-error").textContent = "“From” must be on or before “To”.";
      return;
    }
    state.range = [from, to];
    showRange();
    load();
  }

  $("#from").addEventListener("change", onDates);
  $("#to").addEventListener("change", onDates);
  for (const button of main.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => {
      state.range = preset(button.dataset.preset, today);
      showRange();
      load();
    });
  }
  $("#granularity").addEventListener("change", (event) => {
    state.granularity = event.target.value;
    load();
  });
  $("#group-by")?.addEventListener("change", (event) => {
    state.groupBy = event.target.value;
    load();
  });
  $("#export")?.addEventListener("click", async (event) => {
    const button = event.target;
    button.disabled = true;
    const range = state.range && { start: state.range[0], end: state.range[1] };
    const input = { range, granularity: state.granularity, groupBy: state.groupBy, format: "CSV" };
    try {
      const result = (await request(EXPORT, { input })).createUsageExport;
      if (!main.contains(button)) return;
      showUserErrors(result.userErrors, {}, $("#analytics-error"));
      if (result.export) window.location.assign(result.export.url);
    } catch (error) {
      if (main.contains(button)) $("#analytics-error").textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });
  const resize = () => chart?.setSize({ width: Math.max($("#chart").clientWidth, 280), height: 280 });
  window.addEventListener("resize", resize);
  showRange();
  load();
  return () => {
    // Answers still on their way find a newer generation and are dropped.
    generation += 1;
    window.removeEventListener("resize", resize);
  };
}
