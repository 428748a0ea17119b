// The sms-dispatch dashboard: plain JavaScript, no framework, no build step, no other host.
// It polls the JSON API every REFRESH_MS and redraws a part of the page only when its data
// changed, so the page never flickers and a button is never swapped out under the pointer.
"use strict";

const REFRESH_MS = 2000;
const KEY_STORAGE = "sms-dispatch.apiKey";
const STATUSES = ["PENDING", "SENDING", "SUCCESS", "FAILED", "CANCELLED"];
const SENT_LIMIT = 10;
const FAILED_LIMIT = 20;

const $ = (id) => document.getElementById(id);

// The error envelope: `code` is the HTTP status as an integer (as the Go service sends it),
// `type` the error's stable name (VALIDATION_ERROR, NOT_FOUND, DEPENDENCY_UNAVAILABLE, ...).
class ApiError extends Error {
  constructor(status, payload) {
    const error = (payload && payload.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = Number.isInteger(error.code) ? error.code : status;
    this.type = error.type || "HTTP_ERROR";
    this.details = error.details || [];
  }
}

function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { error: { code: 0, type: "UNREACHABLE", message: "the service does not answer" } });
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok || !payload || payload.success === false) throw new ApiError(response.status, payload);
  return payload.data;
}

// Build DOM nodes; text always goes in as text, never as HTML (message content is user data).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Redraw a part only when what it shows changed.
const drawn = new Map();
function drawIfChanged(part, data, draw) {
  const signature = JSON.stringify(data);
  if (drawn.get(part) === signature) return;
  drawn.set(part, signature);
  draw(data);
}

function formatTime(iso) {
  if (!iso) return "–";
  const when = new Date(iso);
  const today = new Date().toDateString() === when.toDateString();
  const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  return today ? time : `${when.toLocaleDateString()} ${time}`;
}

function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

const number = (n) => (typeof n === "number" ? n.toLocaleString() : "–");

function showBanner(text) {
  const banner = $("banner");
  banner.textContent = text || "";
  banner.hidden = !text;
}

let toastTimer = 0;
function toast(text, kind) {
  const node = $("toast");
  node.textContent = text;
  node.dataset.kind = kind || "info";
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    node.textContent = "";
  }, 6000);
}

function explain(error) {
  if (error.status === 401) return "The API needs a key: enter one in the API key field above.";
  if (error.status === 403) return `This key may not do that: ${error.message}`;
  if (error.status === 0) return "Cannot reach the service; retrying.";
  return error.message;
}

function explainLoad(failures) {
  const [, first] = failures[0];
  if ([0, 401, 403].includes(first.reason.status)) return explain(first.reason);
  return failures.map(([what, result]) => `Cannot load ${what}: ${result.reason.message}`).join(" · ");
}

// --- the parts of the page -------------------------------------------------------------

let schedulerRunning = null;

function drawScheduler(scheduler) {
  schedulerRunning = scheduler.running;
  const state = $("scheduler-state");
  state.dataset.state = scheduler.running ? "running" : "stopped";
  state.textContent = scheduler.running ? (scheduler.inBatch ? "sending" : "running") : "stopped";
  const next = scheduler.running && scheduler.nextRunAt ? ` · next run ${formatTime(scheduler.nextRunAt)}` : "";
  $("scheduler-detail").textContent = `${scheduler.batchSize} every ${scheduler.interval}${next}`;
  const toggle = $("scheduler-toggle");
  toggle.textContent = scheduler.running ? "Stop" : "Start";
  toggle.dataset.action = scheduler.running ? "stop" : "start";
  toggle.className = scheduler.running ? "danger" : "primary";
  toggle.disabled = false;
  $("simulator-notice").hidden = !scheduler.providerSimulator;
}

function drawSchedulerUnknown() {
  schedulerRunning = null;
  const state = $("scheduler-state");
  state.dataset.state = "unknown";
  state.textContent = "unknown";
  $("scheduler-detail").textContent = "";
  const toggle = $("scheduler-toggle");
  toggle.textContent = "…";
  toggle.className = "";
  toggle.disabled = true;
}

function drawStats(stats) {
  for (const status of STATUSES) $(`count-${status}`).textContent = number(stats.counts[status]);
  $("sent-last-minute").textContent = number(stats.sentLastMinute);
  $("sent-last-5-minutes").textContent = number(stats.sentLast5Minutes);
  $("lag").textContent = stats.oldestDueAt ? formatDuration(stats.lagSeconds) : "none";
  $("lag-detail").textContent = stats.oldestDueAt
    ? `oldest due since ${formatTime(stats.oldestDueAt)}`
    : "no pending message is due";
}

function emptyRow(columns, text) {
  return el("tr", { className: "empty" }, el("td", { colspan: columns }, text));
}

function drawSent(items) {
  const rows = items.map((m) =>
    el(
      "tr",
      { dataset: { id: m.id } },
      el("td", { className: "mono" }, m.to),
      el("td", { className: "content", title: m.content }, m.content),
      el("td", { title: m.sentAt }, formatTime(m.sentAt)),
      el("td", { className: "mono small", title: m.messageId || "" }, m.messageId ? m.messageId.slice(0, 8) + "…" : "–"),
    ),
  );
  $("sent-rows").replaceChildren(...(rows.length ? rows : [emptyRow(4, "nothing sent yet")]));
}

function drawFailed(items) {
  const rows = items.map((m) =>
    el(
      "tr",
      { dataset: { id: m.id } },
      el("td", { className: "mono" }, m.to),
      el("td", { className: "content", title: m.content }, m.content),
      el("td", { className: "num" }, m.attempts),
      el("td", { className: "error-text", title: m.lastError || "" }, m.lastError || "–"),
      el("td", { title: m.updatedAt }, formatTime(m.updatedAt)),
      el("td", {}, el("button", { type: "button", className: "retry", dataset: { id: m.id } }, "Retry")),
    ),
  );
  $("failed-rows").replaceChildren(...(rows.length ? rows : [emptyRow(6, "no failed messages")]));
}

// A list that could not be loaded says why in place of its rows.
function drawList(part, result, draw, columns) {
  if (result.status === "fulfilled") {
    drawIfChanged(part, result.value.items, draw);
    return;
  }
  drawIfChanged(part, { error: result.reason.message }, ({ error }) => {
    $(`${part}-rows`).replaceChildren(emptyRow(columns, `cannot load: ${error}`));
  });
}

// --- refreshing ------------------------------------------------------------------------

let refreshTimer = 0;
let refreshing = false;
let refreshAgain = false;

// One refresh at a time; asking during one (after an action) runs another right after it, so
// what the page shows is never older than the action.
async function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  refreshAgain = false;
  clearTimeout(refreshTimer);
  try {
    const [stats, sent, failed] = await Promise.allSettled([
      api("GET", "/stats"),
      api("GET", `/messages/sent?limit=${SENT_LIMIT}`),
      api("GET", `/messages?status=FAILED&limit=${FAILED_LIMIT}`),
    ]);
    if (stats.status === "fulfilled") {
      drawIfChanged("scheduler", stats.value.scheduler, drawScheduler);
      const { scheduler, measuredAt, ...figures } = stats.value;
      drawIfChanged("stats", figures, drawStats);
    }
    drawList("sent", sent, drawSent, 4);
    drawList("failed", failed, drawFailed, 6);
    const parts = { "the figures": stats, "the sent messages": sent, "the failed messages": failed };
    const failures = Object.entries(parts).filter(([, result]) => result.status === "rejected");
    showBanner(failures.length ? explainLoad(failures) : "");
    const needsKey = failures.some(([, result]) => result.reason.status === 401);
    $("key-form").classList.toggle("attention", needsKey);
    if (stats.status === "rejected") drawIfChanged("scheduler", null, drawSchedulerUnknown);
    if (stats.status === "fulfilled") $("updated").textContent = `updated ${formatTime(stats.value.measuredAt)}`;
  } finally {
    refreshing = false;
    clearTimeout(refreshTimer);
    if (refreshAgain) refresh();
    else if (!document.hidden) refreshTimer = setTimeout(refresh, REFRESH_MS);
  }
}

// --- actions ---------------------------------------------------------------------------

async function toggleScheduler() {
  const toggle = $("scheduler-toggle");
  const action = toggle.dataset.action || (schedulerRunning ? "stop" : "start");
  toggle.disabled = true;
  try {
    const result = await api("POST", "/scheduler", { action });
    toast(result.message, "ok");
  } catch (error) {
    toast(explain(error), "error");
  } finally {
    toggle.disabled = false;
    await refresh();
  }
}

async function retry(button) {
  button.disabled = true;
  try {
    const message = await api("POST", `/messages/${encodeURIComponent(button.dataset.id)}/retry`);
    toast(`Message to ${message.to} is queued again`, "ok");
  } catch (error) {
    button.disabled = false;
    toast(explain(error), "error");
  }
  await refresh();
}

function showFieldErrors(details, fallback) {
  const byField = new Map(details.map((d) => [d.field, d.message]));
  for (const node of document.querySelectorAll("#create-form .field-error")) {
    const field = node.dataset.field;
    node.textContent = field ? byField.get(field) || "" : "";
    const input = field && $(`create-${field}`);
    if (input) input.setAttribute("aria-invalid", byField.has(field) ? "true" : "false");
    if (field) byField.delete(field);
  }
  const rest = [...byField.entries()].map(([field, message]) => `${field}: ${message}`);
  $("create-form-error").textContent = rest.length ? rest.join("; ") : fallback || "";
}

async function createMessage(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  $("create-result").textContent = "";
  try {
    const message = await api("POST", "/messages", { to: form.elements.to.value, content: form.elements.content.value });
    showFieldErrors([]);
    form.reset();
    $("create-result").textContent = `Queued for ${message.to}`;
  } catch (error) {
    showFieldErrors(error.details || [], error.details && error.details.length ? "" : explain(error));
  } finally {
    submit.disabled = false;
  }
  await refresh();
}

function saveKey(event) {
  event.preventDefault();
  const input = $("api-key");
  const key = input.value.trim();
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    toast("This browser does not keep the key (storage is off).", "error");
  }
  input.value = "";
  input.placeholder = key ? "key saved" : "only when API_KEYS is set";
  toast(key ? "API key saved in this browser" : "API key removed", "ok");
  refresh();
}

function start() {
  if (apiKey()) $("api-key").placeholder = "key saved";
  $("scheduler-toggle").addEventListener("click", toggleScheduler);
  $("failed-rows").addEventListener("click", (event) => {
    const button = event.target.closest("button.retry");
    if (button) retry(button);
  });
  $("create-form").addEventListener("submit", createMessage);
  $("key-form").addEventListener("submit", saveKey);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refresh();
  });
  refresh();
}

start();
