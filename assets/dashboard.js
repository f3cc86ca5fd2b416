// hookflow dashboard: a page per view behind hash routes (#/overview, #/requests, #/flows[/name],
// #/runs[/id], #/segments[/name], #/suppressions), each built once and then updated in place from the JSON API
// every few seconds. No framework; charts by uPlot (vendored). Every value from the server goes
// through esc() before it reaches innerHTML.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const enc = encodeURIComponent;
const KINDS = ["accepted", "ignored", "duplicate", "refused", "succeeded", "failed", "exited"];
const COLORS = {accepted: "#2563eb", ignored: "#d97706", duplicate: "#a855f7", refused: "#dc2626", succeeded: "#16a34a", failed: "#7f1d1d", exited: "#0891b2"};
const STATUSES = ["queued", "running", "retrying", "waiting", "succeeded", "failed", "exited"];

let token = sessionStorage.getItem("hookflow-token") || "";
let current = null; // {update, destroy} of the view on screen
let timer = null;

// ---- API and small helpers -------------------------------------------------------------

async function api(path, options = {}) {
  const headers = Object.assign({"content-type": "application/json"}, token ? {authorization: "Bearer " + token} : {});
  const r = await fetch(path, Object.assign({headers}, options));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || `HTTP ${r.status}`);
  return body;
}

function ago(ts) {
  if (!ts) return "";
  const s = Math.round((Date.now() - Date.parse(ts)) / 1000);
  const abs = Math.abs(s);
  const words = abs < 60 ? `${abs} s` : abs < 3600 ? `${Math.round(abs / 60)} min` : abs < 172800 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} days`;
  return s >= 0 ? `${words} ago` : `in ${words}`;
}
const when = (ts) => ts ? `<time datetime="${esc(ts)}" title="${esc(new Date(ts).toLocaleString())}">${esc(ago(ts))}</time>` : "";
const pill = (s) => `<span class="pill ${esc(s)}">${esc(s)}</span>`;
const ms = (n) => n == null ? "–" : n >= 1000 ? `${(n / 1000).toFixed(n >= 10000 ? 0 : 1)} s` : `${n} ms`;
const dur = (a, b) => (a && b) ? ms(Date.parse(b) - Date.parse(a)) : "";
const json = (v) => esc(JSON.stringify(v, null, 2));

function params() {
  const [path, query] = location.hash.slice(1).split("?");
  const parts = (path || "/overview").split("/").filter(Boolean).map(decodeURIComponent);
  return {view: parts[0] || "overview", arg: parts[1], q: new URLSearchParams(query || "")};
}

function go(view, arg, q) {
  const qs = q && [...q].filter(([, v]) => v).length ? "?" + new URLSearchParams([...q].filter(([, v]) => v)) : "";
  location.hash = `#/${view}${arg ? "/" + enc(arg) : ""}${qs}`;
}

// Rows that open something: a click, or Enter when focused.
function linkRows(root, open) {
  for (const tr of root.querySelectorAll("tr.link")) {
    tr.tabIndex = 0;
    tr.onclick = () => open(tr.dataset);
    tr.onkeydown = (e) => { if (e.key === "Enter") open(tr.dataset); };
  }
}

function copyButton(text) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = "Copy"; b.className = "copy";
  b.onclick = async () => {
    try { await navigator.clipboard.writeText(text); b.textContent = "Copied"; } catch { b.textContent = "Select and copy"; }
  };
  return b;
}

// ---- Overview --------------------------------------------------------------------------

function overview() {
  const v = $("view");
  v.innerHTML = `<h2>Overview</h2>
    <div class="grid" id="tiles"></div>
    <div id="problems"></div>
    <section class="card"><div class="row">
      <h3 style="margin:0">Requests and runs</h3><span class="spacer"></span>
      <label>flow <select id="chart-flow"><option value="">all flows</option></select></label>
      <label>range <select id="chart-range"><option value="hour">last hour, per minute</option><option value="day">last day, per hour</option></select></label>
    </div><div id="chart" class="chart" role="img" aria-label="Requests and runs over time"></div></section>
    <section class="card"><h3 style="margin-top:0">Per flow <span class="muted small">(last 24 h in this instance; retrying and waiting now)</span></h3>
      <table id="per-flow"></table></section>`;
  let plot = null, shape = "";
  const update = async () => {
    const [stats, flows, retrying, alerts] = await Promise.all([api("/api/stats"), api("/api/flows"), api("/api/runs?status=retrying&limit=200"), api("/api/alerts")]);
    const waiting = Object.values(stats.waiting || {}).reduce((a, b) => a + b, 0);
    const hourTotal = (k) => stats.flows.reduce((a, f) => a + (f.hour.totals[k] || 0), 0);
    $("tiles").innerHTML = [
      [stats.queue.depth, "runs due now", "queue-depth"],
      [stats.queue.depth ? `${stats.queue.oldest_due_seconds} s` : "–", "oldest due run waited", "oldest-due"],
      [waiting, "runs waiting (sequences)", "waiting"],
      [hourTotal("accepted"), "accepted, last hour", "accepted-hour"],
      [hourTotal("refused"), "refused, last hour", "refused-hour"],
      [hourTotal("failed"), "runs failed, last hour", "failed-hour"],
      [stats.open_circuits.length, stats.open_circuits.length ? "circuits open: " + stats.open_circuits.map((c) => c.destination).join(", ") : "circuits open", "circuits"],
    ].map(([n, label, id]) => `<div class="tile" id="tile-${id}"><b>${esc(n)}</b><span>${esc(label)}</span></div>`).join("");
    problems(flows, alerts);
    const sel = $("chart-flow");
    for (const f of flows.flows) if (![...sel.options].some((o) => o.value === f.name)) sel.add(new Option(f.name, f.name));
    const range = $("chart-range").value, pick = sel.value;
    const series = stats.flows.filter((f) => !pick || f.flow === pick).map((f) => f[range]);
    const step = range === "hour" ? 60 : 3600, n = range === "hour" ? 60 : 24;
    const start = series.length ? Date.parse(series[0].from) / 1000 : Math.floor(Date.now() / 1000 / step) * step - (n - 1) * step;
    const data = [Array.from({length: n}, (_, i) => start + i * step)];
    for (const k of KINDS) data.push(data[0].map((_, i) => series.reduce((a, s) => a + (s.counts[k][i] || 0), 0)));
    const el = $("chart"), width = Math.max(280, el.clientWidth);
    if (plot && shape === `${range}/${width}`) plot.setData(data);
    else {
      if (plot) plot.destroy();
      const dark = document.documentElement.dataset.theme === "dark", axis = {stroke: dark ? "#98a2b3" : "#667085", grid: {stroke: dark ? "#2a2f3a" : "#e3e5e8"}};
      plot = new uPlot({width, height: 240, series: [{}, ...KINDS.map((k) => ({label: k, stroke: COLORS[k], width: 2, points: {show: false}}))],
        axes: [axis, Object.assign({label: "per " + (range === "hour" ? "minute" : "hour")}, axis)], scales: {y: {range: (u, lo, hi) => [0, Math.max(4, hi)]}}}, data, el);
      shape = `${range}/${width}`;
    }
    const by = Object.fromEntries(stats.flows.map((f) => [f.flow, f]));
    const retry = {};
    for (const r of retrying.runs) retry[r.flow] = (retry[r.flow] || 0) + 1;
    const names = [...new Set([...flows.flows.map((f) => f.name), ...stats.flows.map((f) => f.flow)])];
    $("per-flow").innerHTML = `<tr><th>flow</th>${KINDS.map((k) => `<th class="n">${k}</th>`).join("")}<th class="n">retrying</th><th class="n">waiting</th><th class="n hide-narrow">p50 / p95 (hour)</th></tr>` +
      names.map((name) => {
        const s = by[name], d = s ? s.day.totals : {};
        return `<tr class="link flow-row" data-name="${esc(name)}"><td>${esc(name)}</td>${KINDS.map((k) => `<td class="n ${d[k] ? k : ""}" data-kind="${k}">${d[k] || 0}</td>`).join("")}
          <td class="n" data-kind="retrying">${retry[name] || 0}${retrying.runs.length >= 200 ? "+" : ""}</td><td class="n">${(stats.waiting || {})[name] || 0}</td>
          <td class="n hide-narrow">${s ? `${ms(s.hour.p50_ms)} / ${ms(s.hour.p95_ms)}` : "–"}</td></tr>`;
      }).join("");
    linkRows($("per-flow"), (d) => d.name !== "(unknown)" ? go("flows", d.name) : go("requests", null, new URLSearchParams({flow: d.name})));
  };
  $("chart-flow").onchange = () => update();
  $("chart-range").onchange = () => update();
  return {update, interval: 5000, destroy: () => plot && plot.destroy()};
}

// Alerts raised now, reload refusals, flows serving their last good version, warnings: on the
// overview, first.
function problems(flows, alerts) {
  const items = [
    ...((alerts && alerts.active) || []).map((a) => `<div class="bad alert" data-key="${esc(a.key)}">${a.flow ? `<a href="#/flows/${enc(a.flow)}">${esc(a.flow)}</a>` : "server"}: ${esc(a.kind.replace("_", " "))} since ${when(a.raised_at)}: ${esc(a.message)}</div>`),
    ...(flows.reload.errors || []).map((e) => `<div class="bad problem">reload refused: ${esc(e)}</div>`),
    ...flows.flows.filter((f) => f.stale).map((f) => `<div class="bad stale"><a href="#/flows/${enc(f.name)}">${esc(f.name)}</a>: its file is broken; the last good version (${esc(f.version)}) serves</div>`),
    ...flows.flows.flatMap((f) => (f.warnings || []).map((w) => `<div class="warn warning"><a href="#/flows/${enc(f.name)}">${esc(f.name)}</a>: warning: ${esc(w.key)}: ${esc(w.message)}</div>`)),
  ];
  $("problems").innerHTML = items.length ? `<section class="card"><h3 style="margin-top:0">Needs attention</h3>${items.join("")}</section>` : "";
}

// ---- Requests --------------------------------------------------------------------------

function requests({q}) {
  const v = $("view");
  v.innerHTML = `<h2>Requests</h2><p class="muted">The last requests each flow received, with what was answered and why — the answer to “why did this call not start a run?”. Requests to an unknown flow or with a wrong token are under <code>(unknown)</code>.</p>
    <div class="row card"><label>flow <select id="req-flow"><option value="">all flows</option><option>(unknown)</option></select></label>
    <label>outcome <select id="req-outcome"><option value="">any</option>${["accepted", "ignored", "duplicate", "refused", "ping", "challenge"].map((o) => `<option>${o}</option>`).join("")}</select></label></div>
    <section class="card"><table id="requests"></table></section>`;
  const flowSel = $("req-flow"), outSel = $("req-outcome");
  const open = new Set();
  const update = async () => {
    const [flows, list] = await Promise.all([api("/api/flows"), api("/api/requests?" + new URLSearchParams([...Object.entries({flow: q.get("flow") || "", outcome: q.get("outcome") || "", limit: 200})].filter(([, x]) => x)))]);
    for (const f of flows.flows) if (![...flowSel.options].some((o) => o.value === f.name)) flowSel.add(new Option(f.name, f.name));
    flowSel.value = q.get("flow") || ""; outSel.value = q.get("outcome") || "";
    $("requests").innerHTML = `<tr><th>when</th><th>flow</th><th>outcome</th><th class="n">status</th><th>reason</th><th class="hide-narrow">client</th><th>run</th></tr>` +
      (list.requests.length ? "" : `<tr><td colspan="7" class="muted">No requests yet.</td></tr>`) +
      list.requests.map((r, i) => {
        const key = `${r.flow}/${r.at}/${i}`;
        return `<tr class="link request ${esc(r.outcome)}-row" data-key="${esc(key)}"><td>${when(r.at)}</td><td>${esc(r.flow)}</td><td>${pill(r.outcome)}</td><td class="n">${r.status}</td>
          <td class="reason">${esc(r.reason || "")}${r.detail ? `<div class="muted small detail">${esc(r.detail)}</div>` : ""}</td><td class="hide-narrow"><code>${esc(r.client)}</code></td>
          <td>${r.run_id ? `<a href="#/runs/${enc(r.run_id)}"><code>${esc(r.run_id.slice(0, 12))}…</code></a>` : ""}</td></tr>` +
          (open.has(key) ? `<tr><td colspan="7"><b>${esc(r.method)}</b> headers<pre>${json(r.headers)}</pre>${r.body != null ? `body<pre>${esc(r.body)}</pre>` : `<span class="muted">body not kept (the request did not pass verification)</span>`}</td></tr>` : "");
      }).join("");
    linkRows($("requests"), (d) => { open.has(d.key) ? open.delete(d.key) : open.add(d.key); update(); });
  };
  const refilter = () => go("requests", null, new URLSearchParams({flow: flowSel.value, outcome: outSel.value}));
  flowSel.onchange = refilter; outSel.onchange = refilter;
  return {update, interval: 3000};
}

// ---- Flows -----------------------------------------------------------------------------

function flowsList() {
  $("view").innerHTML = `<h2>Flows</h2><div id="problems"></div><section class="card"><table id="flows"></table></section>`;
  const update = async () => {
    const flows = await api("/api/flows");
    problems(flows);
    $("flows").innerHTML = `<tr><th>flow</th><th>trigger</th><th class="hide-narrow">version</th></tr>` + flows.flows.map((f) =>
      `<tr class="link flow" data-name="${esc(f.name)}"><td><a href="#/flows/${enc(f.name)}">${esc(f.name)}</a>${f.stale ? ` <span class="pill failed">stale</span>` : ""}${(f.warnings || []).length ? ` <span class="pill retrying">${f.warnings.length} warning(s)</span>` : ""}<div class="muted small">${esc(f.description)}</div></td>
       <td>${triggerWords(f)}</td><td class="hide-narrow"><code>${esc(f.version)}</code></td></tr>`).join("");
    linkRows($("flows"), (d) => go("flows", d.name));
  };
  return {update, interval: 10000};
}

function triggerWords(f) {
  const t = f.trigger || {};
  if (t.webhook) return `webhook <code class="small">${esc(f.path)}</code>`;
  if (t.event) return `event <code>${esc(t.event)}</code>`;
  if (t.schedule) return `schedule <code>${esc(t.schedule.cron)}</code> (${esc(t.schedule.timezone)}), next ${when(t.schedule.next)}`;
  return esc(JSON.stringify(t));
}

function flowDetail({arg}) {
  $("view").innerHTML = `<p><a href="#/flows">← all flows</a></p><div id="flow"></div>`;
  const update = async () => {
    const f = await api("/api/flows/" + enc(arg));
    const spec = f.spec || {}, on = spec.on || {};
    const url = f.path ? location.origin + f.path : null;
    let trigger;
    if (on.webhook !== undefined) {
      const w = on.webhook || {};
      trigger = `<b>webhook</b><div class="row"><code id="flow-url" class="small">${esc(url)}</code><span id="copy"></span></div>
        ${w.verify ? `<div>verified: ${esc(w.verify.preset || w.verify.scheme || "signature")}${w.verify.secret_env ? ` (secret from <code>${esc([].concat(w.verify.secret_env).join(", "))}</code>)` : ""}</div>` : `<div class="warn">not verified</div>`}
        ${w.methods ? `<div>methods: ${esc([].concat(w.methods).join(", "))}</div>` : ""}${w.allow_ips ? `<div>from: ${esc([].concat(w.allow_ips).join(", "))}</div>` : ""}`;
    } else if (on.event !== undefined) {
      trigger = `<b>event</b> <code>${esc(typeof on.event === "string" ? on.event : on.event.type)}</code>`;
    } else if (f.schedule) {
      trigger = `<b>schedule</b> <code>${esc(f.schedule.cron)}</code> in ${esc(f.schedule.timezone)}
        <div class="small">last fired ${f.schedule.last_fired ? when(f.schedule.last_fired) : "never"}</div>
        <div class="small">next firings:</div><ul class="small next-firings">${f.schedule.next.map((t) => `<li>${esc(new Date(t).toLocaleString(undefined, {weekday: "short", year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"}))} (${esc(ago(t))})</li>`).join("")}</ul>`;
    } else trigger = `<pre>${json(on)}</pre>`;
    const when_ = [].concat((on.webhook || {}).when || [], (on.event && on.event.when) || []);
    const conditions = when_.length ? `<ul class="small">${when_.map((c) => `<li>${conditionWords(c)}</li>`).join("")}</ul>` : `<span class="muted">every event</span>`;
    const vars = spec.vars ? `<table class="small">${Object.entries(spec.vars).map(([k, x]) => `<tr><td><code>${esc(k)}</code></td><td>${varWords(x)}</td></tr>`).join("")}</table>` : `<span class="muted">none</span>`;
    const retry = spec.retry ? `retry ${esc(Object.entries(spec.retry).map(([k, x]) => `${k} ${x}`).join(", "))}` : "retry: defaults";
    const actions = (spec.actions || []).map((a, i) => `<div class="box action"><h4>${i + 1}. ${esc(actionKind(a))}</h4><b>${esc(a.name || (a.wait !== undefined ? "wait" : ""))}</b>
        <div class="small">${esc(actionTarget(a))}</div>${a.retry ? `<div class="small muted">retry ${esc(JSON.stringify(a.retry))}</div>` : ""}${a.for_each ? `<div class="small">for each <code>${esc(a.for_each)}</code></div>` : ""}</div>`).join(`<span class="arrow" aria-hidden="true">→</span>`);
    $("flow").innerHTML = `<h2>${esc(f.name)} ${f.stale ? `<span class="pill failed">stale: the file is broken, version ${esc(f.version)} serves</span>` : ""}</h2>
      <p class="muted">${esc(f.description)}</p>
      ${(f.warnings || []).map((w) => `<div class="warn warning">warning: line ${esc(w.line)}: ${esc(w.key)}: ${esc(w.message)}</div>`).join("")}
      ${f.stale ? `<pre class="bad">${esc((f.stale.problems || []).join("\n"))}</pre>` : ""}
      <section class="picture card" aria-label="What the flow does">
        <div class="box trigger"><h4>trigger</h4>${trigger}</div><span class="arrow" aria-hidden="true">→</span>
        <div class="box conditions"><h4>conditions</h4>${conditions}</div><span class="arrow" aria-hidden="true">→</span>
        <div class="box vars"><h4>vars</h4>${vars}</div><span class="arrow" aria-hidden="true">→</span>
        ${actions || `<div class="box muted">no actions</div>`}
      </section>
      <div class="split"><section class="card"><h3 style="margin-top:0">Settings</h3><div class="small">${retry}</div>
        ${spec.concurrency ? `<div class="small">concurrency ${esc(JSON.stringify(spec.concurrency))}</div>` : ""}${spec.exit ? `<div class="small">ends a waiting run early when:</div><ul class="small exits">${[].concat(spec.exit).map((x) => `<li>${exitWords(x)}</li>`).join("")}</ul>` : ""}
        <h3>Counters (all time)</h3><table class="small counters">${counterRows(f.counters)}</table>
        ${(f.link_clicks || []).length ? `<h3>Clicks per link</h3><table class="small link-clicks"><tr><th>link</th><th class="n">clicks</th><th class="n">first clicks</th><th class="n">mail scanners</th></tr>${f.link_clicks.map((l) => `<tr><td><code>${esc(l.link)}</code></td><td class="n">${l.clicks}</td><td class="n">${l.first_clicks}</td><td class="n muted">${l.scanner_clicks}</td></tr>`).join("")}</table>` : ""}
        <p><a href="#/runs?flow=${enc(f.name)}">runs of this flow</a> · <a href="#/requests?flow=${enc(f.name)}">its requests</a></p></section>
      <section class="card"><h3 style="margin-top:0">Source <span class="muted small">${esc(f.file)} · version <code id="flow-version">${esc(f.version)}</code></span></h3><pre id="flow-source">${esc(f.source)}</pre></section></div>`;
    if (url) $("copy").append(copyButton(url));
  };
  return {update, interval: 15000};
}

// `- path: $.status\n  equals: paid` → "$.status equals paid"; anything else as written.
function conditionWords(c) {
  if (typeof c !== "object" || c === null) return `<code>${esc(c)}</code>`;
  const subject = ["path", "header", "query", "expr"].find((k) => c[k] !== undefined);
  if (!subject) return `<code>${esc(JSON.stringify(c))}</code>`;
  const tests = Object.entries(c).filter(([k]) => k !== subject);
  const what = subject === "path" ? c.path : `${subject} ${c[subject]}`;
  return `<code>${esc(what)}</code> ${tests.map(([op, x]) => `${esc(op.replace(/_/g, " "))} <code>${esc(typeof x === "string" ? x : JSON.stringify(x))}</code>`).join(", ")}`;
}

function varWords(x) {
  if (typeof x === "string") return `<code>${esc(x)}</code>`;
  if (typeof x !== "object" || x === null) return `<code>${esc(JSON.stringify(x))}</code>`;
  const from = x.path || x.header || x.query || x.template || JSON.stringify(x);
  return `<code>${esc(from)}</code>${x.required ? ` <span class="muted">required</span>` : ""}${x.default !== undefined ? ` <span class="muted">default ${esc(JSON.stringify(x.default))}</span>` : ""}`;
}

// A flow's `exit:` entry in words: what ends one of its waiting runs.
function exitWords(x) {
  if (x.segment_left) return `the contact <code>${esc(x.segment_left.email)}</code> leaves the segment <b>${esc(x.segment_left.segment)}</b>`;
  if (x.event) {
    const m = Object.entries(x.event.match || {}).map(([k, v]) => `<code>${esc(k)}</code> is <code>${esc(v)}</code>`).join(" and ");
    return `an event <b>${esc(x.event.type)}</b> arrives${m ? ` whose ${m}` : ""}`;
  }
  if (x.contact) return `at a wake-up, the contact <code>${esc(x.contact.email)}</code> has ${[].concat(x.contact.when || []).map(conditionWords).join(", ")}`;
  return `<code>${esc(JSON.stringify(x))}</code>`;
}

// The durable counters: accepted, duplicates and ignored first, then each refusal reason.
function counterRows(c) {
  const first = ["accepted", "duplicates", "ignored"];
  const keys = [...first.filter((k) => c[k] !== undefined), ...Object.keys(c).filter((k) => !first.includes(k)).sort()];
  if (!keys.length) return `<tr><td class="muted">no request has reached this flow yet</td></tr>`;
  return keys.map((k) => `<tr data-counter="${esc(k)}"><td>${k.startsWith("rejected:") ? `refused: ${esc(k.slice(9).replace(/_/g, " "))}` : esc(k)}</td><td class="n">${c[k]}</td></tr>`).join("");
}

function actionKind(a) {
  for (const k of ["http", "email", "segment", "emit", "wait"]) if (a[k] !== undefined) return k;
  return Object.keys(a).filter((k) => k !== "name")[0] || "action";
}
function actionTarget(a) {
  if (a.http) return `${a.http.method || "POST"} ${a.http.url || ""}`;
  if (a.email) return `to ${a.email.to || ""}: ${a.email.subject || ""}`;
  if (a.segment) {
    const list = (x) => [].concat(x || []).join(", ");
    return [a.segment.add ? `add ${a.segment.email} to ${list(a.segment.add)}` : "", a.segment.remove ? `remove ${a.segment.email} from ${list(a.segment.remove)}` : ""].filter(Boolean).join("; ");
  }
  if (a.emit) return `event ${a.emit.type || JSON.stringify(a.emit)}`;
  if (a.wait !== undefined) return typeof a.wait === "string" ? a.wait : JSON.stringify(a.wait);
  return "";
}

// ---- Runs ------------------------------------------------------------------------------

function runsList({q}) {
  $("view").innerHTML = `<h2>Runs</h2>
    <form class="row card" id="run-filter" role="search">
      <label>flow <select id="run-flow"><option value="">all flows</option></select></label>
      <label>status <select id="run-status"><option value="">any</option>${STATUSES.map((s) => `<option>${s}</option>`).join("")}</select></label>
      <label>since <select id="run-since"><option value="">any time</option><option value="1h">last hour</option><option value="24h">last day</option><option value="7d">last week</option></select></label>
      <input id="run-q" type="search" placeholder="search request and vars (/)" aria-label="Search runs" value="${esc(q.get("q") || "")}">
      <button type="submit">Search</button></form>
    <div class="row" id="bulk"></div><p id="bulk-done" role="status"></p>
    <section class="card"><table id="runs"></table><div class="row" id="pager"></div></section>`;
  // Bulk actions, as the API and CLI have them: every failed run of a flow replayed, every
  // waiting run of a flow exited. Two clicks: the first says what the second will do.
  const bulk = () => {
    const flow = q.get("flow"), status = q.get("status");
    const what = flow && status === "failed" ? {label: "Replay every failed run", path: `/api/flows/${enc(flow)}/replay-failed`, body: {from: "failed"}}
      : flow && status === "waiting" ? {label: "Exit every waiting run", path: `/api/flows/${enc(flow)}/exit`, body: {reason: "exited from the dashboard"}} : null;
    $("bulk").innerHTML = what ? `<button id="bulk-action" type="button">${what.label} of ${esc(flow)}…</button>` : "";
    if (!what) return;
    $("bulk-action").onclick = async () => {
      const n = (await api(what.path, {method: "POST", body: JSON.stringify(Object.assign({dry_run: true}, what.body))})).matched;
      $("bulk").innerHTML = `<button id="bulk-confirm" class="primary" type="button">${what.label.replace("every", `these ${n}`)}</button> <button id="bulk-cancel" type="button">Cancel</button>`;
      $("bulk-cancel").onclick = bulk;
      $("bulk-confirm").onclick = async () => {
        try {
          const r = await api(what.path, {method: "POST", body: JSON.stringify(what.body)});
          $("bulk-done").textContent = r.replayed ? `${r.replayed.length} of ${r.matched} run(s) replayed` : `${r.exited} of ${r.matched} run(s) exited`;
        } catch (e) { $("bulk-done").textContent = "Not done: " + e.message; }
        bulk();
        update();
      };
    };
  };
  bulk();
  const set = (id, key) => { $(id).value = q.get(key) || ""; };
  const update = async () => {
    const flows = await api("/api/flows");
    for (const f of flows.flows) if (![...$("run-flow").options].some((o) => o.value === f.name)) $("run-flow").add(new Option(f.name, f.name));
    set("run-flow", "flow"); set("run-status", "status"); set("run-since", "since");
    const p = new URLSearchParams({limit: 50});
    for (const k of ["flow", "status", "q", "before"]) if (q.get(k)) p.set(k, q.get(k));
    const since = {"1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3}[q.get("since")];
    if (since) p.set("since", new Date(Date.now() - since).toISOString());
    const runs = await api("/api/runs?" + p);
    $("runs").innerHTML = `<tr><th>run</th><th>flow</th><th>status</th><th>created</th><th class="n">duration</th><th class="n">attempts</th><th class="hide-narrow">error</th></tr>` +
      (runs.runs.length ? "" : `<tr><td colspan="7" class="muted">No runs match.</td></tr>`) +
      runs.runs.map((r) => `<tr class="link run" data-id="${esc(r.id)}"><td><code>${esc(r.id.slice(0, 12))}…</code></td><td>${esc(r.flow)}</td><td>${pill(r.status)}</td>
        <td>${when(r.created_at)}</td><td class="n">${dur(r.created_at, r.finished_at)}</td><td class="n">${r.attempts}</td><td class="hide-narrow small bad">${esc((r.error || "").slice(0, 120))}</td></tr>`).join("");
    linkRows($("runs"), (d) => go("runs", d.id));
    const pager = [];
    if (q.get("before")) pager.push(`<a href="#/runs?${esc(new URLSearchParams([...q].filter(([k]) => k !== "before")))}">newest</a>`);
    if (runs.next_before) pager.push(`<a id="older" href="#/runs?${esc(new URLSearchParams([...[...q].filter(([k]) => k !== "before"), ["before", runs.next_before]]))}">older →</a>`);
    $("pager").innerHTML = pager.join(" ");
  };
  $("run-filter").onsubmit = (e) => {
    e.preventDefault();
    go("runs", null, new URLSearchParams({flow: $("run-flow").value, status: $("run-status").value, since: $("run-since").value, q: $("run-q").value}));
  };
  for (const id of ["run-flow", "run-status", "run-since"]) $(id).onchange = () => $("run-filter").requestSubmit();
  return {update, interval: 2000};
}

function attemptHtml(a) {
  const req = a.request, res = a.response;
  return `<li class="attempt">${when(a.started_at)} · ${ms(a.duration_ms)} · ${pill(a.outcome === "succeeded" ? "succeeded" : "failed")} <span class="muted small">${esc(a.outcome)}</span>
    ${a.error ? `<div class="bad attempt-error">${esc(a.error)}</div>` : ""}
    ${req ? `<details><summary><code>${esc(req.method)} ${esc(req.url)}</code>${res ? ` → <b>${res.status}</b>` : ""}</summary>
      <div class="split"><div>request headers<pre>${esc(req.headers.map(([k, x]) => `${k}: ${x}`).join("\n"))}</pre>body<pre>${esc(req.body)}</pre></div>
      ${res ? `<div>response headers<pre>${esc(res.headers.map(([k, x]) => `${k}: ${x}`).join("\n"))}</pre>body${res.truncated ? ` <span class="muted">(first bytes of ${esc(res.size)})</span>` : ""}<pre class="response-body">${esc(res.body)}</pre></div>` : ""}</div></details>` : ""}</li>`;
}

// The clicks on a step's tracked links: when, which link, and whether a person or a mail
// scanner (left out of the counts) clicked.
function clicksHtml(clicks) {
  if (!clicks.length) return "";
  const judged = (j) => j.kind === "person" ? `<span class="pill succeeded">person${j.first ? ", first click" : ""}</span>`
    : j.kind === "scanner" ? `<span class="pill exited" title="${esc(j.why)}">mail scanner</span> <span class="muted small">${esc(j.why)}</span>`
    : `<span class="pill waiting">being judged</span>`;
  return `<div class="small">clicks:</div><ul class="clicks">${clicks.map((k) => `<li class="click">${when(k.at)} · <code>${esc(k.name || k.url)}</code> ${judged(k.judged)}</li>`).join("")}</ul>`;
}

function runDetail({arg}) {
  $("view").innerHTML = `<p><a href="#/runs">← all runs</a></p><div id="run"></div><p id="replayed" class="bad" role="alert"></p>`;
  let last = "";
  const update = async () => {
    const [r, c] = await Promise.all([api("/api/runs/" + enc(arg)), api(`/api/runs/${enc(arg)}/clicks`).catch(() => ({clicks: []}))]);
    const text = JSON.stringify([r, c]);
    if (text === last) return; // nothing new: leave open details as they are
    last = text;
    const finished = ["succeeded", "failed", "exited"].includes(r.status);
    const buttons = [
      finished ? `<button id="replay" type="button">Replay from start</button>` : "",
      r.status === "failed" ? `<button id="retry" type="button" class="primary">Retry from failed action</button>` : "",
      r.status === "waiting" ? `<button id="exit" type="button">End this waiting run</button>` : "",
    ].join(" ");
    const steps = r.steps.map((s) => `<li class="step"><b>${esc(s.name)}</b> ${pill(s.status)}
      <ol>${s.attempts.map(attemptHtml).join("")}</ol>
      ${(s.items || []).length ? `<div class="small">items:</div><ol start="0">${s.items.map((it) => `<li>${pill(it.status)}<ol>${it.attempts.map(attemptHtml).join("")}</ol></li>`).join("")}</ol>` : ""}
      ${clicksHtml(c.clicks.filter((k) => k.action === s.name))}</li>`).join("");
    $("run").innerHTML = `<h2><code id="detail-id">${esc(r.id)}</code> <span class="pill ${esc(r.status)}" id="detail-status">${esc(r.status)}</span></h2>
      <p>flow <a href="#/flows/${enc(r.flow)}">${esc(r.flow)}</a> (version <code>${esc(r.flow_version)}</code>) · created ${when(r.created_at)}
        ${r.finished_at ? ` · took ${dur(r.created_at, r.finished_at)}` : ""}${r.next_attempt_at ? ` · next ${r.status === "waiting" ? "step" : "attempt"} ${when(r.next_attempt_at)}` : ""}</p>
      ${r.replay_of ? `<p class="muted">replay of <code>${esc(r.replay_of)}</code></p>` : ""}
      ${r.error ? `<p class="${r.status === "exited" ? "exited" : "bad"}" id="run-error">${esc(r.error)}</p>` : ""}
      <p class="row">${buttons}</p>
      <div class="split"><section class="card"><h3 style="margin-top:0">Timeline</h3><ol class="timeline">${steps || `<li class="muted">no action attempted yet</li>`}</ol></section>
      <section class="card"><h3 style="margin-top:0">Vars</h3><pre>${json(r.vars)}</pre><h3>Request</h3><pre>${json(r.request)}</pre></section></div>`;
    if ($("replay")) $("replay").onclick = () => replay(r.id, "start");
    if ($("retry")) $("retry").onclick = () => replay(r.id, "failed");
    if ($("exit")) $("exit").onclick = async () => {
      try { await api(`/api/runs/${enc(r.id)}/exit`, {method: "POST", body: "{}"}); last = ""; update(); } catch (e) { $("replayed").textContent = e.message; }
    };
  };
  return {update, interval: 2000};
}

async function replay(id, from) {
  try {
    const r = await api(`/api/runs/${enc(id)}/replay`, {method: "POST", body: JSON.stringify({from})});
    go("runs", r.run_id);
  } catch (e) { $("replayed").textContent = "Not replayed: " + e.message; }
}

// ---- Segments --------------------------------------------------------------------------

function segmentsList() {
  $("view").innerHTML = `<h2>Segments</h2><section class="card"><table id="segments"></table></section>`;
  const update = async () => {
    const segs = await api("/api/segments");
    $("segments").innerHTML = `<tr><th>segment</th><th class="n">members</th></tr>` + (segs.segments.length ? "" : `<tr><td colspan="2" class="muted">No segments yet: a segment action creates one.</td></tr>`) +
      segs.segments.map((s) => `<tr class="link segment" data-name="${esc(s.name)}"><td><a href="#/segments/${enc(s.name)}">${esc(s.name)}</a></td><td class="n">${s.members}</td></tr>`).join("");
    linkRows($("segments"), (d) => go("segments", d.name));
  };
  return {update, interval: 10000};
}

function segmentDetail({arg, q}) {
  $("view").innerHTML = `<p><a href="#/segments">← all segments</a></p><h2>${esc(arg)}</h2>
    <form class="row card" id="member-search" role="search"><input id="member-q" type="search" placeholder="find an address (/)" aria-label="Find members" value="${esc(q.get("q") || "")}">
      <button type="submit">Find</button><span class="spacer"></span><button type="button" id="export">Export CSV</button></form>
    <section class="card"><table id="members"></table><div class="row" id="member-pager"></div></section>`;
  const update = async () => {
    const p = new URLSearchParams({limit: 50});
    for (const k of ["q", "after"]) if (q.get(k)) p.set(k, q.get(k));
    const m = await api(`/api/segments/${enc(arg)}/members?` + p);
    $("members").innerHTML = `<tr><th>email</th><th>added</th><th class="hide-narrow">attributes</th></tr>` + (m.members.length ? "" : `<tr><td colspan="3" class="muted">No members${q.get("q") ? " match" : ""}.</td></tr>`) +
      m.members.map((x) => `<tr class="member"><td><code>${esc(x.email)}</code></td><td>${when(x.added_at)}</td><td class="hide-narrow small"><code>${esc(JSON.stringify(x.attributes || {}))}</code></td></tr>`).join("");
    const rest = [...q].filter(([k]) => k !== "after");
    $("member-pager").innerHTML = (q.get("after") ? `<a href="#/segments/${enc(arg)}?${esc(new URLSearchParams(rest))}">first page</a> ` : "") +
      (m.next_after ? `<a id="members-next" href="#/segments/${enc(arg)}?${esc(new URLSearchParams([...rest, ["after", m.next_after]]))}">next →</a>` : "");
  };
  $("member-search").onsubmit = (e) => { e.preventDefault(); go("segments", arg, new URLSearchParams({q: $("member-q").value})); };
  $("export").onclick = async () => {
    // The export needs the API token, which a plain link cannot carry: fetch it, then save it.
    const r = await fetch(`/api/segments/${enc(arg)}/export`, {headers: token ? {authorization: "Bearer " + token} : {}});
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob()); a.download = `${arg}.csv`; a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  };
  return {update, interval: 10000};
}

// ---- Suppressions ----------------------------------------------------------------------

const REASONS = ["manual", "unsubscribed", "bounced", "complained", "imported"];

function suppressions({q}) {
  $("view").innerHTML = `<h2>Suppressions</h2>
    <p class="muted">Addresses that get no email of a list, or none at all. Entries are lifted with a reason, never deleted.</p>
    <form class="row card" id="supp-search" role="search"><input id="supp-q" type="search" placeholder="find an address (/)" aria-label="Find suppressed addresses" value="${esc(q.get("q") || "")}">
      <label><input id="supp-lifted" type="checkbox"${q.get("lifted") ? " checked" : ""}> lifted too</label>
      <button type="submit">Find</button><span class="spacer"></span><button type="button" id="supp-export">Export CSV</button></form>
    <section class="card"><table id="supps"></table><div class="row" id="supp-pager"></div></section>
    <form class="card" id="lift-box" hidden><h3 style="margin-top:0">Lift <code id="lift-what"></code></h3>
      <div class="row"><input id="lift-reason" required placeholder="why (kept with the entry)" aria-label="Why it is lifted" size="40">
      <button type="submit" id="lift-go">Lift</button><button type="button" id="lift-cancel">Cancel</button></div></form>
    <form class="card" id="supp-add"><h3 style="margin-top:0">Suppress an address</h3>
      <div class="row"><input id="add-email" type="email" required placeholder="address" aria-label="Address">
      <input id="add-list" placeholder="list (empty: every email)" aria-label="List">
      <select id="add-reason" aria-label="Reason">${REASONS.map((r) => `<option value="${r}">${r}</option>`).join("")}</select>
      <input id="add-note" placeholder="note" aria-label="Note">
      <button type="submit">Suppress</button></div></form>
    <p id="supp-said" role="status"></p>`;
  const said = (text, bad) => { $("supp-said").textContent = text; $("supp-said").className = bad ? "bad" : ""; };
  const update = async () => {
    const p = new URLSearchParams({limit: 50});
    if (q.get("q")) p.set("search", q.get("q"));
    if (q.get("after")) p.set("after", q.get("after"));
    if (q.get("lifted")) p.set("lifted", "true");
    const r = await api("/api/suppressions?" + p);
    $("supps").innerHTML = `<tr><th>address</th><th>list</th><th>reason</th><th>since</th><th class="hide-narrow">source</th><th></th></tr>` +
      (r.suppressions.length ? "" : `<tr><td colspan="6" class="muted">No suppressed addresses${q.get("q") ? " match" : ""}.</td></tr>`) +
      r.suppressions.map((s) => `<tr class="suppression${s.lifted ? " lifted" : ""}" data-email="${esc(s.email)}" data-list="${esc(s.list || "")}">
        <td><code>${esc(s.email)}</code></td><td>${s.list ? esc(s.list) : `<span class="muted">every email</span>`}</td><td>${pill(s.reason)}</td><td>${when(s.at)}</td>
        <td class="hide-narrow small">${esc(s.source)}${s.note ? ` <span class="muted">(${esc(s.note)})</span>` : ""}</td>
        <td>${s.lifted ? `<span class="muted small">lifted ${when(s.lifted.at)}: ${esc(s.lifted.reason)}</span>` : `<button type="button" class="lift">Lift…</button>`}</td></tr>`).join("");
    for (const b of $("supps").querySelectorAll("button.lift")) {
      b.onclick = () => {
        const tr = b.closest("tr");
        const box = $("lift-box");
        box.dataset.email = tr.dataset.email; box.dataset.list = tr.dataset.list;
        $("lift-what").textContent = tr.dataset.email + (tr.dataset.list ? " from " + tr.dataset.list : " (every email)");
        box.hidden = false; $("lift-reason").value = ""; $("lift-reason").focus();
      };
    }
    const rest = [...q].filter(([k]) => k !== "after");
    $("supp-pager").innerHTML = (q.get("after") ? `<a href="#/suppressions?${esc(new URLSearchParams(rest))}">first page</a> ` : "") +
      (r.next ? `<a id="supp-next" href="#/suppressions?${esc(new URLSearchParams([...rest, ["after", r.next]]))}">next →</a>` : "");
  };
  $("supp-search").onsubmit = (e) => {
    e.preventDefault();
    go("suppressions", null, new URLSearchParams({q: $("supp-q").value, lifted: $("supp-lifted").checked ? "1" : ""}));
  };
  $("lift-cancel").onclick = () => { $("lift-box").hidden = true; };
  $("lift-box").onsubmit = async (e) => {
    e.preventDefault();
    const box = $("lift-box");
    const p = new URLSearchParams({reason: $("lift-reason").value});
    if (box.dataset.list) p.set("list", box.dataset.list);
    try {
      await api(`/api/suppressions/${enc(box.dataset.email)}?` + p, {method: "DELETE"});
      said(`Lifted: ${box.dataset.email} gets ${box.dataset.list ? box.dataset.list : "every email"} again.`);
      box.hidden = true;
      await update();
    } catch (err) { said("Not lifted: " + err.message, true); }
  };
  $("supp-add").onsubmit = async (e) => {
    e.preventDefault();
    const body = {email: $("add-email").value, reason: $("add-reason").value};
    if ($("add-list").value.trim()) body.list = $("add-list").value.trim();
    if ($("add-note").value.trim()) body.note = $("add-note").value.trim();
    try {
      const r = await api("/api/suppressions", {method: "POST", body: JSON.stringify(body)});
      said(r.added ? `Suppressed: ${r.suppression.email}.` : `${r.suppression.email} was already suppressed there.`);
      $("add-email").value = ""; $("add-note").value = "";
      await update();
    } catch (err) { said("Not suppressed: " + err.message, true); }
  };
  $("supp-export").onclick = async () => {
    // As the segment export: fetched with the token, then saved.
    const r = await fetch("/api/suppressions?format=csv" + (q.get("lifted") ? "&lifted=true" : ""), {headers: token ? {authorization: "Bearer " + token} : {}});
    if (!r.ok) return said("Not exported: HTTP " + r.status, true);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob()); a.download = "suppressions.csv"; a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  };
  return {update, interval: 10000};
}

// ---- Router, sign-in, theme, keys -------------------------------------------------------

const VIEWS = {
  overview: () => overview(),
  requests: (p) => requests(p),
  flows: (p) => p.arg ? flowDetail(p) : flowsList(),
  runs: (p) => p.arg ? runDetail(p) : runsList(p),
  segments: (p) => p.arg ? segmentDetail(p) : segmentsList(),
  suppressions: (p) => suppressions(p),
};

async function route() {
  if ($("view").hidden) return;
  const p = params();
  if (!VIEWS[p.view]) return go("overview");
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === p.view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  clearTimeout(timer);
  if (current && current.destroy) current.destroy();
  current = VIEWS[p.view](p);
  document.title = `hookflow · ${p.view}${p.arg ? " · " + p.arg : ""}`;
  tick(current);
}

async function tick(view) {
  try {
    await view.update();
    $("live").textContent = "live";
    $("live").className = "muted";
  } catch (e) {
    $("live").textContent = "not updated: " + e.message;
    $("live").className = "bad";
  }
  if (view === current) timer = setTimeout(() => tick(view), view.interval || 5000);
}

async function login(e) {
  if (e) e.preventDefault();
  token = $("token").value;
  try {
    await api("/api/flows");
    sessionStorage.setItem("hookflow-token", token);
    $("login-box").hidden = true; $("view").hidden = false; $("nav").hidden = false; $("logout").hidden = false;
    route();
  } catch (err) { $("login-error").textContent = "Not signed in: " + err.message; }
}

function theme(next) {
  const t = next || localStorage.getItem("hookflow-theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  document.documentElement.dataset.theme = t;
  localStorage.setItem("hookflow-theme", t);
}

$("login-box").onsubmit = login;
$("logout").onclick = () => { sessionStorage.removeItem("hookflow-token"); location.hash = ""; location.reload(); };
$("theme").onclick = () => { theme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"); route(); };
window.addEventListener("hashchange", route);
document.addEventListener("keydown", (e) => {
  if (e.target.matches("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  const views = {o: "overview", r: "requests", f: "flows", u: "runs", s: "segments", x: "suppressions"};
  if (e.key === "/") { const s = document.querySelector("input[type=search]"); if (s) { e.preventDefault(); s.focus(); } }
  else if (e.key === "t") $("theme").click();
  else if (views[e.key] && !$("view").hidden) go(views[e.key]);
});
theme();
if (token) { $("token").value = token; login(); }
