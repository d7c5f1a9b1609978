// perptrader dashboard: plain JS, no build step, no CDN. REST for the first picture, the
// WebSocket (/api/v1/ws) for everything after it. Every value is written with
// textContent (never innerHTML), so journal contents cannot inject markup.
"use strict";

const API = "/api/v1";
const MAX_ROWS = 50;
const S = {
  access: null, refresh: sessionStorage.getItem("pt.refresh"), user: null,
  run: null, follow: true, ws: null, wsTimer: null, refreshTimer: null,
  points: [], fills: [], decisions: [], orders: new Map(), positions: new Map(),
  risk: null, fillCount: 0, initial: 0,
};
const $ = (id) => document.getElementById(id);

// ---- HTTP -------------------------------------------------------------------------------
async function api(path, opts = {}, retried = false) {
  const headers = Object.assign({ "Content-Type": "application/json" }, opts.headers || {});
  if (S.access) headers.Authorization = "Bearer " + S.access;
  const res = await fetch(API + path, Object.assign({}, opts, { headers }));
  if (res.status === 401 && !retried && S.refresh && !path.startsWith("/auth/")) {
    if (await refreshTokens()) return api(path, opts, true);
  }
  if (res.status === 401 && !path.startsWith("/auth/login")) {
    loggedOut("session expired: log in again");
    throw new Error("unauthorized");
  }
  let body = null;
  const text = await res.text();
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { detail: text }; }
  if (!res.ok) {
    const err = new Error((body && body.detail) || res.statusText);
    err.status = res.status;
    throw err;
  }
  return body;
}

function runQuery(extra) {
  const q = new URLSearchParams(extra || {});
  if (S.run) q.set("run", S.run);
  const s = q.toString();
  return s ? "?" + s : "";
}

// ---- auth -------------------------------------------------------------------------------
function setTokens(pair) {
  S.access = pair.access_token;
  S.refresh = pair.refresh_token;
  sessionStorage.setItem("pt.refresh", S.refresh);
  clearTimeout(S.refreshTimer);
  const ms = Math.max(10, pair.expires_in - 60) * 1000;
  S.refreshTimer = setTimeout(refreshTokens, ms);
  if (S.ws && S.ws.readyState === WebSocket.OPEN) {
    S.ws.send(JSON.stringify({ type: "auth", token: S.access }));
  }
}

async function refreshTokens() {
  if (!S.refresh) return false;
  try {
    const res = await fetch(API + "/auth/refresh", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: S.refresh }),
    });
    if (!res.ok) { loggedOut("session expired: log in again"); return false; }
    setTokens(await res.json());
    return true;
  } catch (e) { return false; }
}

async function login(ev) {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    const pair = await api("/auth/login", { method: "POST", body: JSON.stringify({
      username: $("username").value, password: $("password").value }) });
    $("password").value = "";
    setTokens(pair);
    await started();
  } catch (e) {
    $("login-error").textContent = e.message;
  }
}

async function logout() {
  try {
    await api("/auth/logout", { method: "POST", body: JSON.stringify({
      refresh_token: S.refresh }) });
  } catch (e) { /* logged out anyway */ }
  loggedOut("");
}

function loggedOut(message) {
  S.access = null; S.refresh = null; S.user = null;
  sessionStorage.removeItem("pt.refresh");
  clearTimeout(S.refreshTimer);
  if (S.ws) { const ws = S.ws; S.ws = null; ws.close(); }
  $("main").hidden = true; $("login").hidden = false; $("logout").hidden = true;
  $("run-picker").hidden = true; $("who").textContent = "";
  $("login-error").textContent = message;
  setWs("offline");
}

async function started() {
  const me = await api("/auth/me");
  S.user = me.username;
  $("who").textContent = me.username;
  $("login").hidden = true; $("main").hidden = false; $("logout").hidden = false;
  $("run-picker").hidden = false;
  connect();
}

// ---- WebSocket --------------------------------------------------------------------------
function setWs(state) { const el = $("ws-state"); el.dataset.state = state; el.textContent = state; }

function connect() {
  if (!S.access) return;
  setWs("connecting");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(proto + "//" + location.host + API + "/ws");
  S.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: S.access }));
  ws.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    onEvent(ev);
  };
  ws.onclose = async (e) => {
    if (S.ws !== ws) return;  // replaced or logged out
    setWs("offline");
    if (e.code === 4401) await refreshTokens();
    if (S.access) S.wsTimer = setTimeout(connect, 1000);
  };
}

function onEvent(ev) {
  if (ev.type === "hello") { setWs("live"); loadAll(); return; }
  if (ev.type === "error") { addAlert({ level: "error", message: ev.data.message }); return; }
  if (!["order", "fill", "position", "equity", "risk", "alert"].includes(ev.type)) return;
  if (ev.run_id && ev.run_id !== S.run) {
    const isNewRun = ev.type === "alert" && ev.data.kind === "run.start";
    if ((S.follow && isNewRun) || S.run === null) { loadAll(); }
    if (ev.type === "alert") addAlert(ev.data, ev.run_id);
    return;
  }
  switch (ev.type) {
    case "equity": addPoints(ev.data.points); scheduleDecisions(); break;
    case "fill":
      S.fillCount += 1;
      $("fill-count").textContent = String(S.fillCount);
      S.fills.unshift(ev.data); S.fills.length = Math.min(S.fills.length, MAX_ROWS);
      renderFills();
      break;
    case "order": {
      const open = ["initialized", "submitted", "accepted", "partially_filled",
                    "pending_cancel"].includes(ev.data.status);
      const id = ev.data.client_order_id;
      if (open) S.orders.set(id, Object.assign(S.orders.get(id) || {}, ev.data));
      else S.orders.delete(id);
      renderOrders();
      break;
    }
    case "position": S.positions.set(ev.data.symbol, ev.data); renderPositions(); break;
    case "risk": renderRisk(ev.data); break;
    case "alert":
      addAlert(ev.data, ev.run_id);
      if (String(ev.data.kind || "").startsWith("run.")) loadStatus();
      break;
  }
}

// ---- loading ----------------------------------------------------------------------------
let loading = null;
function loadAll() {
  if (!loading) loading = doLoadAll().finally(() => { loading = null; });
  return loading;
}

async function doLoadAll() {
  await loadRuns();
  try {
    await loadStatus();
  } catch (e) {
    notice(e.message);
    S.run = null;
    renderRisk(null);
  }
  if (S.run) {
    await Promise.all([loadEquity(), loadRows(), loadRisk()]).catch((e) => notice(e.message));
  }
  loadFreshness();
  loadReports();
}

function notice(text) { const n = $("notice"); n.textContent = text; n.hidden = !text; }

async function loadRuns() {
  let runs = [];
  try { runs = await api("/runs"); } catch (e) { return; }
  const sel = $("run");
  const keep = S.follow ? "" : S.run;
  while (sel.options.length > 1) sel.remove(1);
  for (const r of runs) {
    const o = document.createElement("option");
    o.value = r.run_id;
    o.textContent = r.run_id + " · " + r.strategy + " · " + r.status;
    sel.appendChild(o);
  }
  sel.value = keep || "";
}

async function loadStatus() {
  const st = await api("/status" + (S.follow ? "" : runQuery()));
  if (st.run_id !== S.run) {
    S.fillCount = 0; $("fill-count").textContent = "0"; S.points = []; S.fills = [];
  }
  S.run = st.run_id;
  S.initial = st.initial_cash || 0;
  notice("");
  $("run-status").textContent = st.status;
  $("run-label").textContent = st.run_id + " · " + st.strategy + " " + st.symbols.join(",") +
    " " + st.timeframe;
  $("bars").textContent = st.bars + " bars";
  if (!S.points.length) {
    $("equity-value").textContent = fmt(st.equity, 2);
    $("return-value").textContent = pct(st.total_return);
  }
}

async function loadEquity() {
  const eq = await api("/equity" + runQuery());
  S.initial = eq.initial_cash;
  // points that arrived over the WebSocket while this was loading stay
  const lastRest = eq.points.length ? eq.points[eq.points.length - 1][0] : -Infinity;
  const live = S.points.filter((p) => p[0] > lastRest);
  S.points = [];
  addPoints(eq.points.concat(live));
}

async function loadRows() {
  const [pos, ord, fil, dec] = await Promise.all([
    api("/positions" + runQuery()), api("/orders" + runQuery({ open: "true" })),
    api("/fills" + runQuery({ limit: String(MAX_ROWS) })),
    api("/decisions" + runQuery({ limit: String(MAX_ROWS) })),
  ]);
  S.positions = new Map(pos.rows.map((p) => [p.symbol, p]));
  S.orders = new Map(ord.rows.map((o) => [o.client_order_id, o]));
  const seen = new Set(fil.rows.map((f) => f.fill_id));
  S.fills = S.fills.filter((f) => !seen.has(f.fill_id)).concat(fil.rows.slice().reverse())
    .sort((a, b) => b.ts - a.ts).slice(0, MAX_ROWS);
  S.decisions = dec.rows.slice().reverse();
  renderPositions(); renderOrders(); renderFills(); renderDecisions();
}

// decisions are not events: a new bar (an equity event) fetches the newest ones, at most
// once every two seconds
let decisionsTimer = null;
function scheduleDecisions() {
  if (decisionsTimer) return;
  decisionsTimer = setTimeout(async () => {
    decisionsTimer = null;
    try {
      const dec = await api("/decisions" + runQuery({ limit: String(MAX_ROWS) }));
      S.decisions = dec.rows.slice().reverse();
      renderDecisions();
    } catch (e) { /* the next bar tries again */ }
  }, 2000);
}

async function loadRisk() { renderRisk(await api("/risk" + runQuery())); }

async function loadFreshness() {
  let f;
  try { f = await api("/data/freshness"); } catch (e) { return; }
  $("freshness-message").textContent = f.available ? "" : f.message;
  fillTable("freshness", f.series, (s) => [s.symbol, s.kind, s.timeframe || "–",
    s.last, duration(s.lag_s), [s.state, s.state]]);
}

async function loadReports() {
  const ul = $("reports");
  const items = [];
  const [bts, models, agents] = await Promise.all([
    api("/backtests").catch(() => []), api("/models").catch(() => []),
    api("/agents").catch(() => []),
  ]);
  for (const b of bts) if (b.has_report) {
    items.push(["backtest " + b.id + " (" + b.strategy + ")",
                "/api/v1/backtests/" + b.id + "/report"]);
  }
  for (const m of models) if (m.has_report) {
    items.push(["model " + m.name + " v" + m.version,
                "/api/v1/models/" + encodeURIComponent(m.name) + "/" + m.version + "/report"]);
  }
  for (const a of agents) for (const r of a.reports || []) {
    items.push(["agent " + a.name + " " + r,
                "/api/v1/agents/" + encodeURIComponent(a.name) + "/reports/" + r]);
  }
  ul.replaceChildren();
  if (!items.length) {
    const li = document.createElement("li"); li.className = "muted";
    li.textContent = "no reports yet (backtest run --out under <data_dir>/backtests, train, rl)";
    ul.appendChild(li);
  }
  for (const [label, path] of items) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "#"; a.textContent = label;
    a.addEventListener("click", (e) => { e.preventDefault(); openReport(path); });
    li.appendChild(a); ul.appendChild(li);
  }
}

async function openReport(path) {
  const tab = window.open("about:blank", "_blank");
  try {
    const link = await api("/auth/link", { method: "POST", body: JSON.stringify({ path }) });
    if (tab) tab.location = link.url; else location.href = link.url;
  } catch (e) { if (tab) tab.close(); addAlert({ level: "error", message: e.message }); }
}

// ---- rendering --------------------------------------------------------------------------
function fmt(x, d) { return x === null || x === undefined ? "–" : Number(x).toLocaleString(
  undefined, { minimumFractionDigits: d, maximumFractionDigits: d }); }
function num(x) { return x === null || x === undefined ? "–" : Number(x).toPrecision(6); }
function pct(x) { return x === null || x === undefined ? "" : (x * 100).toFixed(2) + "%"; }
function time(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 16) : "–"; }
function duration(s) {
  if (s === null || s === undefined) return "–";
  const a = Math.abs(s);
  if (a < 120) return Math.round(s) + " s";
  if (a < 7200) return Math.round(s / 60) + " min";
  if (a < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}

function fillTable(id, rows, cells) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    for (const c of cells(r)) {
      const td = document.createElement("td");
      if (Array.isArray(c)) { td.textContent = c[0]; td.className = c[1] || ""; }
      else td.textContent = c === null || c === undefined ? "–" : String(c);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function renderPositions() {
  fillTable("positions", [...S.positions.values()], (p) => [p.symbol, num(p.qty),
    num(p.entry_price), fmt(p.fees, 2), fmt(p.funding, 2)]);
}
function renderOrders() {
  fillTable("open-orders", [...S.orders.values()], (o) => [o.client_order_id, o.symbol,
    [o.side, o.side], num(o.qty), o.status]);
}
function renderFills() {
  fillTable("fills", S.fills, (f) => [time(f.ts), f.symbol, [f.side, f.side], num(f.qty),
    num(f.price), fmt(f.fee, 4), f.reason]);
}
function renderDecisions() {
  fillTable("decisions", S.decisions, (d) => [time(d.ts), d.symbol, d.policy, num(d.target)]);
}

function renderRisk(r) {
  S.risk = r;
  const state = r ? r.trading_state : "unknown";
  const el = $("trading-state");
  el.textContent = state; el.dataset.state = state;
  $("risk-reason").textContent = r && r.reason ? r.reason : "";
  const kill = !!(r && r.kill_switch);
  $("kill-switch-state").dataset.on = String(kill);
  $("kill-switch-state").textContent = !r ? "–" : (kill ? "ON" : "off") +
    (r.control_pending ? " (pending: the engine applies it at its next bar)" : "");
  const b = r && r.breakers;
  $("breakers").textContent = b ? "stop-out lock: " + (b.stopout_lock_until ?
    "until " + b.stopout_lock_until + " (" + b.stopout_lock_reason + ")" : "off") +
    " · recent stop-outs " + b.recent_stopouts + " · orders in the last minute " +
    r.orders_last_minute : "";
  const btn = $("kill-switch");
  btn.disabled = !r;
  btn.textContent = kill ? "RESUME trading" : "STOP trading";
  btn.className = kill ? "resume" : "danger";
}

async function killSwitch() {
  const kill = !!(S.risk && S.risk.kill_switch);
  const what = kill ? "Resume trading on " + S.run + "?" :
    "Stop trading on " + S.run + " (kill switch)?";
  if (!window.confirm(what)) return;
  const btn = $("kill-switch");
  btn.disabled = true;
  try {
    const body = kill ? { run: S.run } : { run: S.run, flatten: $("flatten").checked,
                                           reason: "kill switch (dashboard, " + S.user + ")" };
    const res = await api("/control/" + (kill ? "resume" : "stop"),
                          { method: "POST", body: JSON.stringify(body) });
    $("control-message").textContent = res.message;
    await loadRisk();
  } catch (e) {
    $("control-message").textContent = "refused: " + e.message;
  } finally { btn.disabled = false; }
}

function addAlert(a, runId) {
  const li = document.createElement("li");
  li.className = a.level || "info";
  li.textContent = new Date().toISOString().slice(11, 19) + " " + (runId ? runId + ": " : "") +
    (a.message || a.kind || "");
  const ul = $("alerts");
  ul.prepend(li);
  while (ul.children.length > 100) ul.lastChild.remove();
}

// ---- the chart (canvas, drawn here: no chart library) ------------------------------------
function addPoints(points) {
  if (!points || !points.length) return;
  const last = S.points.length ? S.points[S.points.length - 1][0] : -Infinity;
  for (const p of points) if (p[0] > last && p[1] !== null) S.points.push(p);
  const p = S.points[S.points.length - 1];
  if (p) {
    $("equity-value").textContent = fmt(p[1], 2);
    $("drawdown-value").textContent = pct(p[2]);
    if (S.initial) $("return-value").textContent = pct(p[1] / S.initial - 1);
    $("bars").textContent = S.points.length + " bars";
  }
  scheduleDraw();
}

let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; draw(); });
}

function draw() {
  const c = $("equity-chart");
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth || 900, h = c.clientHeight || 320;
  if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pts = S.points;
  c.dataset.points = String(pts.length);
  if (pts.length < 2) return;
  const step = Math.max(1, Math.floor(pts.length / (w * 2)));
  const shown = pts.filter((_, i) => i % step === 0 || i === pts.length - 1);
  const left = 70, right = 10, top = 10, split = Math.round(h * 0.7), bottom = h - 20;
  const t0 = shown[0][0], t1 = shown[shown.length - 1][0];
  const x = (t) => left + (w - left - right) * (t - t0) / Math.max(1, t1 - t0);
  let lo = Infinity, hi = -Infinity, dd = 0;
  for (const p of shown) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); dd = Math.min(dd, p[2]); }
  if (hi === lo) { hi += 1; lo -= 1; }
  const y = (v) => top + (split - 10 - top) * (hi - v) / (hi - lo);
  const yd = (v) => split + (bottom - split) * (v / Math.min(dd, -1e-9));
  g.font = "11px system-ui"; g.fillStyle = "#8a96a3"; g.strokeStyle = "#2a3440";
  for (const v of [lo, (lo + hi) / 2, hi]) {
    g.fillText(fmt(v, 0), 4, y(v) + 4);
    g.beginPath(); g.moveTo(left, y(v)); g.lineTo(w - right, y(v)); g.stroke();
  }
  g.fillText(pct(dd), 4, bottom);
  g.fillText(time(t0), left, h - 4);
  g.fillText(time(t1), w - right - 100, h - 4);
  g.strokeStyle = "#58a6ff"; g.lineWidth = 1.5; g.beginPath();
  shown.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
  g.stroke();
  g.fillStyle = "rgba(248, 81, 73, 0.5)"; g.beginPath(); g.moveTo(x(t0), split);
  for (const p of shown) g.lineTo(x(p[0]), yd(p[2]));
  g.lineTo(x(t1), split); g.closePath(); g.fill();
}

// ---- start ------------------------------------------------------------------------------
$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
$("kill-switch").addEventListener("click", killSwitch);
$("run").addEventListener("change", () => {
  S.follow = !$("run").value;
  S.run = $("run").value || null;
  S.points = []; S.fillCount = 0;
  loadAll();
});
window.addEventListener("resize", scheduleDraw);
if (S.refresh) {
  refreshTokens().then((ok) => (ok ? started() : null)).catch(() => null);
}
