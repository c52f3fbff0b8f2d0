// Browser tests of the built-in dashboard, against the real `gpu-usage`
// binary (API + scheduled rollups on a fresh SQLite file) in headless
// Debian Chromium driven by playwright-core (which downloads nothing).
//
//   node tests/browser/run.mjs            (scripts/browser-tests.sh does the setup)
//
// Environment: GPU_USAGE_BIN (default <repo>/target/debug/gpu-usage),
// CHROMIUM (default /usr/bin/chromium), BROWSER_ARTIFACTS (default
// <repo>/target/browser-artifacts: screenshots, server logs, the CSV).
//
// The page publishes what it plots on window.__dashboard; every check of a
// chart compares that with the API's own answer for the same range.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { OVERCAP_TASK, makeRecords, seed, sessionsStart } from "./seed.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const BIN = process.env.GPU_USAGE_BIN || path.join(ROOT, "target/debug/gpu-usage");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = process.env.BROWSER_ARTIFACTS || path.join(ROOT, "target/browser-artifacts");
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const TIMEZONE = "America/New_York"; // not UTC, so the UTC toggle matters
const READ_TOKEN = "bt-read-token-0123456789";
const ADMIN_TOKEN = "bt-admin-token-0123456789";
const STEP = { minute: 60, hourly: 3600, daily: 86400 };
const TOP_N = 8;
const EPS = 1e-6;

fs.mkdirSync(ARTIFACTS, { recursive: true });
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), "gpu-usage-browser-"));

// ------------------------------------------------------------------ server
async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const servers = [];

async function startServer(name, extraEnv = {}) {
  const dir = fs.mkdtempSync(path.join(TMP, `${name}-`));
  const configDir = path.join(dir, "config"); // empty: built-in defaults only
  fs.mkdirSync(configDir);
  const port = await freePort();
  const workerPort = await freePort();
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("GPU_USAGE")));
  Object.assign(env, {
    GPU_USAGE_CONFIG_DIR: configDir,
    GPU_USAGE__DATABASE__URL: `sqlite://${path.join(dir, "gpu_usage.db")}?mode=rwc`,
    GPU_USAGE__API__HOST: "127.0.0.1",
    GPU_USAGE__API__PORT: String(port),
    GPU_USAGE__WORKER__HTTP_PORT: String(workerPort),
    GPU_USAGE__WORKER__BACKFILL_POLL_SECS: "1",
    GPU_USAGE__LOG__FORMAT: "pretty",
    RUST_LOG: "warn,gpu_usage=info",
    ...extraEnv,
  });
  const log = fs.openSync(path.join(ARTIFACTS, `server-${name}.log`), "w");
  const child = spawn(BIN, [], { env, cwd: dir, stdio: ["ignore", log, log] });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  let spawnError = null;
  child.on("error", (e) => (spawnError = e));
  const base = `http://127.0.0.1:${port}`;
  const server = { name, base, child, exited, dir };
  servers.push(server);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (spawnError) throw new Error(`cannot start ${BIN}: ${spawnError.message}`);
    if (child.exitCode !== null) throw new Error(`server ${name} exited with ${child.exitCode}; see ${ARTIFACTS}/server-${name}.log`);
    try {
      const res = await fetch(`${base}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`server ${name} did not answer /healthz within 60 s`);
    await new Promise((r) => setTimeout(r, 150));
  }
  // Fail fast on a binary without the dashboard (an old build, or another
  // checkout's build in a shared target directory).
  const page = await fetch(`${base}/dashboard`);
  if (page.status !== 200) throw new Error(`${BIN} does not serve /dashboard (HTTP ${page.status}): rebuild gpu-usage from this checkout`);
  return server;
}

async function stopServer(s) {
  if (s.child.exitCode === null && s.child.signalCode === null) {
    s.child.kill("SIGTERM");
    const t = setTimeout(() => s.child.kill("SIGKILL"), 15_000);
    await s.exited;
    clearTimeout(t);
  }
}

// ------------------------------------------------------------------ API (the test's own reads)
async function apiAll(base, level, params, headers = {}) {
  const rows = [];
  let first = null;
  let cursor = null;
  do {
    const url = new URL(`${base}/api/v1/gpu-usage/${level}`);
    for (const [k, v] of Object.entries({ ...params, cursor })) if (v != null) url.searchParams.set(k, v);
    const res = await fetch(url, { headers });
    const body = await res.json();
    assert.equal(res.status, 200, `${url}: ${JSON.stringify(body)}`);
    first ??= body;
    rows.push(...body.data);
    cursor = body.next_cursor;
  } while (cursor);
  return { rows, summary: first.summary };
}

function dense(range, rows, field) {
  const start = Date.parse(range.start) / 1000;
  const step = STEP[range.granularity];
  const out = new Array(range.buckets).fill(0);
  for (const r of rows) {
    const i = Math.round((Date.parse(r.time_bucket) / 1000 - start) / step);
    assert.ok(i >= 0 && i < range.buckets, `row ${r.time_bucket} outside ${range.start}..${range.end}`);
    out[i] += r[field] ?? 0;
  }
  return out;
}

function bySum(rows) {
  const m = new Map();
  for (const r of rows) {
    const e = m.get(r.scope_value) ?? { name: r.scope_value, rows: [], gpu: 0 };
    e.rows.push(r);
    e.gpu += r.total_gpu_hours;
    m.set(r.scope_value, e);
  }
  return [...m.values()].sort((a, b) => b.gpu - a.gpu || (a.name < b.name ? -1 : 1));
}

/** Tolerance of a number the page shows with fmtGpuH (half its last digit). */
const gpuTol = (v) => (Math.abs(v) >= 1000 ? 0.5 : Math.abs(v) >= 100 ? 0.05 : Math.abs(v) >= 1 ? 0.005 : 0.0005) + 1e-9;

function assertClose(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (e === null || a === null) {
      assert.equal(a, e, `${what}[${i}]`);
    } else {
      assert.ok(Math.abs(a - e) <= EPS, `${what}[${i}]: page ${a}, API ${e}`);
    }
  }
}

/** What the charts must show for the page's current range, from the API. */
async function expectedFor(base, snap, headers = {}) {
  const r = snap.range;
  const params = { start_time: r.start, end_time: r.end };
  const level = r.granularity;
  const [global, endpoints, specs] = await Promise.all([
    apiAll(base, level, { ...params, scope_type: "global" }, headers),
    apiAll(base, level, { ...params, scope_type: "endpoint" }, headers),
    apiAll(base, level, { ...params, scope_type: "spec" }, headers),
  ]);
  const v = snap.view;
  const main = v.scopeType ? await apiAll(base, level, { ...params, scope_type: v.scopeType, scope_value: v.scopeValue }, headers) : global;
  const total = dense(r, global.rows, "total_gpu_hours");
  let layers;
  if (v.scopeType) {
    layers = [{ label: v.scopeValue, values: dense(r, main.rows, "total_gpu_hours") }];
  } else {
    const scopeRows = v.stack === "spec" ? specs.rows : endpoints.rows;
    const groups = bySum(scopeRows);
    layers = groups.slice(0, TOP_N).map((g) => ({ label: g.name, values: dense(r, g.rows, "total_gpu_hours") }));
    const rest = groups.slice(TOP_N);
    if (rest.length) layers.push({ label: `other (${rest.length})`, values: dense(r, rest.flatMap((g) => g.rows), "total_gpu_hours") });
    if (v.stack === "spec") {
      const all = dense(r, specs.rows, "total_gpu_hours");
      const none = total.map((t, i) => Math.max(0, Math.round((t - all[i]) * 1e6) / 1e6));
      if (none.some((x) => x > 0)) layers.push({ label: "no spec", values: none });
    }
  }
  const completed = dense(r, main.rows, "completed_tasks");
  const failed = dense(r, main.rows, "failed_tasks");
  const tasks = dense(r, main.rows, "total_tasks");
  return { global, endpoints, specs, main, total, layers, completed, failed, tasks, failureRate: tasks.map((t, i) => (t > 0 ? failed[i] / t : null)) };
}

async function checkChartsMatchApi(page, base, headers = {}) {
  const snap = await page.evaluate(() => JSON.parse(JSON.stringify(window.__dashboard)));
  const exp = await expectedFor(base, snap, headers);
  const r = snap.range;
  const start = Date.parse(r.start) / 1000;
  const step = STEP[r.granularity];
  assert.deepEqual(snap.series.x, Array.from({ length: r.buckets }, (_, i) => start + i * step), "x: one point per bucket");
  assert.equal(Date.parse(r.end) / 1000, start + r.buckets * step);
  assert.deepEqual(
    snap.series.gpuHours.layers.map((l) => l.label),
    exp.layers.map((l) => l.label),
    "stack layers",
  );
  snap.series.gpuHours.layers.forEach((l, i) => assertClose(l.values, exp.layers[i].values, `GPU-hours of ${l.label}`));
  assertClose(snap.series.gpuHours.total, exp.total, "global GPU-hours");
  if (!snap.view.scopeType) {
    // The stack sums to the global line.
    const sum = exp.total.map((_, i) => snap.series.gpuHours.layers.reduce((a, l) => a + l.values[i], 0));
    // Each row is rounded to 6 decimals on its own, so the layers may miss
    // the global row by a few millionths (for specs, "no spec" absorbs it).
    sum.forEach((v, i) => assert.ok(Math.abs(v - exp.total[i]) <= 1e-5 * snap.series.gpuHours.layers.length, `stack sum vs global [${i}]: ${v} vs ${exp.total[i]}`));
  }
  assertClose(snap.series.tasks.completed, exp.completed, "completed tasks");
  assertClose(snap.series.tasks.failed, exp.failed, "failed tasks");
  assertClose(snap.series.tasks.failureRate, exp.failureRate, "failure rate");
  // Cards come from the summary of the same query.
  assert.deepEqual(snap.summary, exp.main.summary, "summary");
  const cards = await page.$$eval("#cards .card", (els) => Object.fromEntries(els.map((e) => [e.dataset.card, e.querySelector(".card-value").textContent.trim()])));
  const num = (s) => Number((s.replace(/,/g, "").match(/-?\d+(\.\d+)?/) || ["NaN"])[0]);
  const gpuCard = num(cards.gpu_hours);
  // Shown with 3, 2, 1 or 0 decimals by size (fmtGpuH): within half the last digit.
  assert.ok(Math.abs(gpuCard - exp.main.summary.total_gpu_hours) <= gpuTol(exp.main.summary.total_gpu_hours), `GPU-hours card ${cards.gpu_hours}`);
  assert.equal(num(cards.tasks), exp.main.summary.total_tasks, `tasks card ${cards.tasks}`);
  if (exp.main.summary.total_tasks > 0) {
    const rate = (100 * exp.main.summary.failed_tasks) / exp.main.summary.total_tasks;
    assert.ok(Math.abs(num(cards.failure_rate) - rate) <= 0.051, `failure card ${cards.failure_rate} vs ${rate}`);
  }
  // Something is drawn.
  const inked = await page.evaluate(() => {
    const c = document.querySelector("#chart-gpu canvas");
    if (!c) return 0;
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  assert.ok(inked > 2000, `the GPU-hours canvas is drawn (${inked} pixels)`);
  return { snap, exp };
}

// ------------------------------------------------------------------ browser
let context;
const problems = []; // console errors, page errors, foreign requests
// Pages where a failed load in the console is the point: page → statuses.
const expectedStatuses = new WeakMap();

async function newPage({ allowStatuses = [] } = {}) {
  const page = await context.newPage();
  expectedStatuses.set(page, allowStatuses);
  page.on("console", (m) => {
    if (m.type() !== "error" && m.type() !== "warning") return;
    const text = m.text();
    const status = /Failed to load resource: the server responded with a status of (\d+)/.exec(text);
    if (status && expectedStatuses.get(page).includes(Number(status[1]))) return;
    problems.push(`console ${m.type()} on ${page.url()}: ${text}`);
  });
  page.on("pageerror", (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
  page.on("request", (req) => {
    const u = req.url();
    if (!servers.some((s) => u.startsWith(s.base + "/")) && !u.startsWith("data:") && !u.startsWith("blob:")) problems.push(`request to another origin: ${u}`);
    const cookie = req.headers().cookie;
    if (cookie) problems.push(`cookie sent: ${cookie}`);
  });
  page.on("requestfailed", (req) => {
    if (!req.url().startsWith("blob:")) problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`);
  });
  return page;
}

async function settled(page, state = ["ready", "empty"]) {
  await page.waitForFunction((states) => window.__dashboard && states.includes(window.__dashboard.state), state, { timeout: 30_000 });
}

/** Runs `action`, then waits for the render it causes. */
async function rerender(page, action, state = ["ready", "empty"]) {
  const seq = await page.evaluate(() => window.__dashboard.renderSeq);
  await action();
  await page.waitForFunction(
    ([s, states]) => window.__dashboard.renderSeq > s && states.includes(window.__dashboard.state),
    [seq, state],
    { timeout: 30_000 },
  );
}

/** Opens the main dashboard at `hash` and waits until it has rendered. */
async function openDashboard(page, hash = "", state = undefined) {
  await page.goto(`${main.base}/dashboard${hash}`);
  await settled(page, state);
}

/** Opens the dashboard at `hash`, waits until it shows data, and checks its
 * charts against the API. */
async function openChecked(page, hash) {
  await openDashboard(page, hash, ["ready"]);
  return checkChartsMatchApi(page, main.base);
}

/** The charts match the API, at `granularity` and (when given) with
 * `buckets` buckets; returns the dashboard's snapshot. */
async function checkRange(page, granularity, buckets) {
  const { snap } = await checkChartsMatchApi(page, main.base);
  assert.equal(snap.range.granularity, granularity);
  if (buckets !== undefined) assert.equal(snap.range.buckets, buckets);
  return snap;
}

async function shot(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0)); // sticky toolbar at the top of the picture
  await page.waitForTimeout(150); // let canvases finish
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

let main; // seeded, no tokens (admin for everyone on loopback)
let mainRecords; // what was seeded into it (records, and .sessions)

before(async () => {
  assert.ok(fs.existsSync(BIN), `no server binary at ${BIN} (set GPU_USAGE_BIN or build gpu-usage)`);
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`);
  main = await startServer("main");
  mainRecords = await seed(main.base, { nowMs: Date.now() });
  context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(TMP, "chromium-")), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1440, height: 900 },
    timezoneId: TIMEZONE,
    locale: "en-US",
    acceptDownloads: true,
  });
  await context.addInitScript(() => {
    window.__DASHBOARD_REFRESH_SECS = 0; // no timer-driven reloads mid-assertion
  });
  for (const p of context.pages()) await p.close();
});

after(async () => {
  await context?.close();
  for (const s of servers) await stopServer(s);
  fs.rmSync(TMP, { recursive: true, force: true });
});

// ------------------------------------------------------------------ tests
test("the console watch sees errors (self-check)", async () => {
  const page = await newPage();
  await page.goto(`${main.base}/healthz`);
  await page.evaluate(() => console.error("probe: console watch"));
  await page.evaluate(() => setTimeout(() => {
    throw new Error("probe: page error watch");
  }));
  await page.waitForTimeout(300);
  const seen = problems.splice(0).join("\n");
  assert.match(seen, /probe: console watch/);
  assert.match(seen, /probe: page error watch/);
  await page.close();
});

test("/ redirects to the dashboard, which plots what the API returns (24 h, hourly, by endpoint)", async () => {
  const page = await newPage();
  await page.goto(`${main.base}/`);
  await settled(page);
  assert.match(new URL(page.url()).pathname, /\/dashboard$/);
  const { snap } = await checkChartsMatchApi(page, main.base);
  assert.equal(snap.range.granularity, "hourly");
  assert.equal(snap.range.buckets, 24);
  assert.equal(snap.view.stack, "endpoint");
  assert.ok(snap.series.gpuHours.layers.some((l) => l.label.startsWith("other (")), "11 endpoints: top 8 and other");
  assert.equal(snap.series.gpuHours.layers.length, TOP_N + 1);
  await shot(page, "01-overview-24h-by-endpoint");
  await page.close();
});

test("range, stack and granularity switches update the charts", async () => {
  const page = await newPage();
  await openDashboard(page);

  await rerender(page, () => page.click('#range-picks button[data-range="7d"]'));
  await checkRange(page, "hourly", 168);
  assert.match(page.url(), /range=7d/);
  await shot(page, "02-range-7d-hourly");

  await rerender(page, () => page.click('#stack-toggle button[data-stack="spec"]'));
  let { snap } = await checkChartsMatchApi(page, main.base);
  const labels = snap.series.gpuHours.layers.map((l) => l.label);
  assert.deepEqual(labels.slice(0, 4).sort(), ["a100-80g", "h100-80g", "l40s-48g", "rtx4090-24g"]);
  assert.equal(labels.at(-1), "no spec", "records without a spec are their own layer");
  await shot(page, "03-range-7d-by-spec");

  await rerender(page, () => page.selectOption("#granularity", "daily"));
  snap = await checkRange(page, "daily");
  assert.ok(snap.range.buckets === 7 || snap.range.buckets === 8, `${snap.range.buckets} days`);
  assert.equal(Date.parse(snap.range.start) % 86_400_000, 0, "daily buckets are UTC days");
  await shot(page, "04-range-7d-daily-by-spec");

  await rerender(page, () => page.selectOption("#granularity", "auto"));
  await rerender(page, () => page.click('#range-picks button[data-range="1h"]'));
  await checkRange(page, "minute", 60);
  await shot(page, "05-range-1h-minute-by-spec");

  await rerender(page, () => page.click('#stack-toggle button[data-stack="endpoint"]'));
  await rerender(page, () => page.click('#range-picks button[data-range="6h"]'));
  await checkRange(page, "minute", 360);
  await shot(page, "06-range-6h-minute");

  await rerender(page, () => page.click('#range-picks button[data-range="30d"]'));
  await checkRange(page, "daily");
  await page.close();
});

test("custom range and the UTC toggle", async () => {
  const page = await newPage();
  await openDashboard(page, "#range=24h");
  const label = () => page.textContent("#range-label");
  assert.match(await label(), new RegExp(TIMEZONE.replace("/", "\\/")));

  await rerender(page, () => page.click('#tz-toggle button[data-tz="utc"]'));
  assert.match(await label(), /UTC/);
  assert.match(page.url(), /tz=utc/);

  // Custom: the last 3 hours, typed in UTC (the toggle is on).
  await page.click('#range-picks button[data-range="custom"]');
  await page.waitForSelector("#custom-range:not([hidden])");
  const pad = (n) => String(n).padStart(2, "0");
  const utcInput = (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  const to = new Date(Math.floor(Date.now() / 60000) * 60000);
  const from = new Date(to.getTime() - 3 * 3600 * 1000);
  await page.fill("#custom-from", utcInput(from));
  await page.fill("#custom-to", utcInput(to));
  await rerender(page, () => page.click('#custom-range button[type="submit"]'));
  const { snap } = await checkChartsMatchApi(page, main.base);
  assert.equal(snap.view.range, "custom");
  assert.equal(snap.range.granularity, "minute");
  assert.equal(snap.range.start, from.toISOString());
  assert.equal(snap.range.end, to.toISOString());
  assert.match(page.url(), /range=custom&from=/);
  await shot(page, "07-custom-3h-utc");

  // Reloading keeps the view (it lives in the URL hash).
  await page.reload();
  await settled(page);
  const again = await page.evaluate(() => window.__dashboard.range);
  assert.deepEqual(again, snap.range);
  await page.close();
});

test("table rows link to a filtered view that the page reads from the hash on load", async () => {
  const page = await newPage();
  await openDashboard(page, "#range=7d");
  const first = await page.$eval("#top-table tbody tr a", (a) => ({ name: a.textContent, href: a.getAttribute("href") }));
  assert.match(first.href, /scope_type=endpoint&scope_value=/);
  await rerender(page, () => page.click("#top-table tbody tr a"));
  const { snap, exp } = await checkChartsMatchApi(page, main.base);
  assert.equal(snap.view.scopeType, "endpoint");
  assert.equal(snap.view.scopeValue, first.name);
  assert.ok(await page.isVisible("#filter-bar"));
  assert.ok(exp.main.summary.total_tasks > 0);
  await shot(page, "08-filtered-endpoint");

  // A spec row, opened directly from a URL.
  const spec = await page.$$eval("#top-table tbody tr", (trs) =>
    trs.map((tr) => ({ kind: tr.cells[0].textContent.trim(), a: tr.querySelector("a")?.getAttribute("href") })).find((r) => r.kind === "spec" && r.a),
  );
  const direct = await newPage();
  await direct.goto(`${main.base}/dashboard${spec.a}`);
  await settled(direct);
  const d = await checkChartsMatchApi(direct, main.base);
  assert.equal(d.snap.view.scopeType, "spec");
  await direct.close();

  await rerender(page, () => page.click("#filter-clear"));
  assert.equal(await page.evaluate(() => window.__dashboard.view.scopeType), null);
  await page.close();
});

test("Download CSV is exactly the table", async () => {
  const page = await newPage();
  await openDashboard(page, "#range=7d&stack=spec");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-csv")]);
  const file = path.join(ARTIFACTS, "top-table.csv");
  await download.saveAs(file);
  assert.match(download.suggestedFilename(), /^gpu-usage-top-hourly-.*\.csv$/);
  const csv = parseCsv(fs.readFileSync(file, "utf8"));
  const shown = await page.$$eval("#top-table tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())));
  assert.deepEqual(csv, shown);
  assert.ok(shown.length > 12, "header, 11 endpoints, specs");
  assert.deepEqual(shown[0], ["Kind", "Name", "GPU-hours", "Share of GPU-hours", "Tasks", "Failed", "Failure rate", "Available GPU-h", "Utilisation"]);
  assert.ok(shown.some((r) => r[1] === "(no spec)"));

  // And the table's figures are the API's.
  const snap = await page.evaluate(() => JSON.parse(JSON.stringify(window.__dashboard)));
  const exp = await expectedFor(main.base, snap);
  const fmt2 = (v) => v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  for (const g of bySum(exp.endpoints.rows)) {
    const row = shown.find((r) => r[0] === "endpoint" && r[1] === g.name);
    assert.ok(row, g.name);
    assert.equal(row[2], fmt2(g.gpu), `${g.name} GPU-hours`);
    const tasks = g.rows.reduce((a, r) => a + r.total_tasks, 0);
    const failed = g.rows.reduce((a, r) => a + r.failed_tasks, 0);
    assert.equal(row[4], tasks.toLocaleString("en-US"), `${g.name} tasks`);
    assert.equal(row[5], failed.toLocaleString("en-US"), `${g.name} failed`);
  }
  await page.close();
});

test("freshness badge follows /status", async () => {
  const page = await newPage();
  await openDashboard(page);
  await page.waitForFunction(() => window.__dashboard.freshness && window.__dashboard.freshness.levels);
  const fr = await page.evaluate(() => window.__dashboard.freshness);
  const status = await (await fetch(`${main.base}/api/v1/gpu-usage/status`)).json();
  assert.deepEqual(
    fr.levels.map((l) => l.level),
    status.levels.map((l) => l.level),
  );
  const promise = { minute: 120, hourly: 420, daily: 3900 };
  const grades = ["green", "amber", "red"];
  for (const l of fr.levels) {
    const s = status.levels.find((x) => x.level === l.level);
    assert.equal(l.complete_through, s.complete_through);
    // behind = now - (complete_through + one bucket); the status read by the
    // page and this one are moments apart, so allow a few seconds.
    const behind = Math.max(0, Date.parse(status.now) / 1000 - Date.parse(s.complete_through) / 1000 - STEP[l.level]);
    assert.ok(Math.abs(l.behind - behind) < 10, `${l.level} behind ${l.behind} vs ${behind}`);
    const grade = behind < promise[l.level] ? 0 : behind < 2 * promise[l.level] ? 1 : 2;
    if (Math.abs(behind - promise[l.level]) > 10 && Math.abs(behind - 2 * promise[l.level]) > 10) assert.equal(l.grade, grades[grade], l.level);
  }
  const worst = grades[Math.max(...fr.levels.map((l) => grades.indexOf(l.grade)))];
  assert.equal(fr.grade, worst);
  assert.ok(await page.$eval("#freshness", (b, g) => b.classList.contains(g), worst));
  await page.click("#freshness");
  await page.waitForSelector("#freshness-details:not([hidden])");
  const rows = await page.$$eval("#freshness-details tbody tr", (trs) => trs.map((tr) => tr.dataset.level));
  assert.deepEqual(rows, ["minute", "hourly", "daily"]);
  await shot(page, "09-freshness-details");
  await page.keyboard.press("Escape");
  assert.ok(await page.isHidden("#freshness-details"));

  // Each grade, from made-up statuses: behind = now - complete_through - one bucket.
  const now = Date.parse("2026-06-01T12:30:30Z");
  const at = (secsBefore) => new Date(now - secsBefore * 1000).toISOString();
  const cases = [
    // caught up: complete through the start of the live bucket
    [{ minute: at(30), hourly: at(1830), daily: at(12 * 3600 + 1830) }, "green", "Up to date"],
    // hourly: the last hour ended 10 min ago and is still not final (promise 7 min)
    [{ minute: at(30), hourly: at(3600 + 600), daily: at(12 * 3600 + 1830) }, "amber", "Delayed · hourly rows 10 min behind"],
    // minute: 5 minutes behind (promise 2 min, twice that is 4)
    [{ minute: at(60 + 300), hourly: at(1830), daily: at(12 * 3600 + 1830) }, "red", "Stale · minute rows 5 min behind"],
  ];
  for (const [through, grade, label] of cases) {
    await page.route(/\/api\/v1\/gpu-usage\/status$/, (route) =>
      route.fulfill({
        json: {
          now: new Date(now).toISOString(),
          levels: Object.entries(through).map(([level, t]) => ({ level, complete_through: t, lag_seconds: Math.round((now - Date.parse(t)) / 1000), pending_ranges: 0, pending_buckets: 0, oldest_pending: null })),
          jobs: [],
        },
      }),
    );
    await rerender(page, () => page.click("#refresh"));
    await page.waitForFunction((g) => window.__dashboard.freshness?.grade === g, grade);
    assert.equal((await page.textContent("#freshness .label")).trim(), label);
    await page.unroute(/\/api\/v1\/gpu-usage\/status$/);
  }
  await page.close();
});

test("capacity: a clear message while none is reported, charts once rows carry it", async () => {
  const page = await newPage();
  await openDashboard(page, noSessionsHash());
  assert.ok(await page.isVisible("#capacity-missing"));
  assert.match(await page.textContent("#capacity-missing"), /No capacity reported for this range/);
  assert.match(await page.textContent("#capacity-missing"), /How to report it/);
  assert.ok(await page.isHidden("#chart-capacity"));
  assert.equal(await page.evaluate(() => window.__dashboard.series.capacity), null);
  assert.match(await page.textContent('[data-card="utilization"]'), /no capacity reported/);

  // The capacity fields (docs/CAPACITY.md) as the API will send them:
  // injected into the API's real answers, so the page's handling of them is
  // tested before the server fills them.
  const withCapacity = (row) => {
    const available = Math.round((row.total_gpu_hours * 1.25 + 0.5) * 1e6) / 1e6;
    return {
      ...row,
      available_gpu_hours: available,
      idle_gpu_hours: Math.round((available - row.total_gpu_hours) * 1e6) / 1e6,
      utilization_rate: Math.round((row.total_gpu_hours / available) * 1e4) / 1e4,
      capacity_complete: true,
      peak_gpus_in_use: row.max_gpu_count ?? 0,
      peak_gpus_available: (row.max_gpu_count ?? 0) + 2,
    };
  };
  await page.route(/\/api\/v1\/gpu-usage\/(minute|hourly|daily)\?/, async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    body.data = body.data.map(withCapacity);
    const s = body.summary;
    const available = body.data.reduce((a, r) => a + r.available_gpu_hours, 0);
    Object.assign(s, { available_gpu_hours: available, idle_gpu_hours: available - s.total_gpu_hours, utilization_rate: available > 0 ? s.total_gpu_hours / available : null, capacity_complete: true, peak_gpus_in_use: s.max_gpu_count, peak_gpus_available: s.max_gpu_count + 2 });
    await route.fulfill({ response, json: body });
  });
  await rerender(page, () => page.click("#refresh"));
  const snap = await page.evaluate(() => JSON.parse(JSON.stringify(window.__dashboard)));
  const global = await apiAll(main.base, snap.range.granularity, { scope_type: "global", start_time: snap.range.start, end_time: snap.range.end });
  const rows = global.rows.map(withCapacity);
  const cap = snap.series.capacity;
  assert.ok(cap, "capacity series");
  assertClose(cap.available, dense(snap.range, rows, "available_gpu_hours"), "available");
  assertClose(cap.idle, dense(snap.range, rows, "idle_gpu_hours"), "idle");
  assertClose(cap.used, dense(snap.range, rows, "total_gpu_hours"), "used");
  const util = new Array(snap.range.buckets).fill(null);
  for (const r of rows) util[Math.round((Date.parse(r.time_bucket) - Date.parse(snap.range.start)) / 1000 / STEP[snap.range.granularity])] = r.utilization_rate;
  assertClose(cap.utilization, util, "utilisation");
  assertClose(snap.series.concurrency.inUse, dense(snap.range, rows, "peak_gpus_in_use"), "peak in use");
  assertClose(snap.series.concurrency.available, dense(snap.range, rows, "peak_gpus_available"), "peak available");
  assert.ok(await page.isVisible("#chart-capacity canvas"));
  assert.ok(await page.isHidden("#capacity-missing"));
  assert.match(await page.textContent('[data-card="utilization"] .card-value'), /%/);
  await shot(page, "10-capacity-reported-injected");
  await page.unroute(/\/api\/v1\/gpu-usage\/(minute|hourly|daily)\?/);
  await page.close();
});

// ------------------------------------------------------------------ capacity from worker sessions
/** A custom range (URL hash) over the seeded records before any worker session. */
function noSessionsHash() {
  const first = Math.min(...mainRecords.map((r) => Date.parse(r.started_at)));
  const from = Math.ceil(first / 3_600_000) * 3_600_000;
  return `#range=custom&from=${new Date(from).toISOString()}&to=${new Date(sessionsStart(mainRecords)).toISOString()}`;
}

/** The minute view around the task that uses more GPUs than the sessions offer. */
function overcapHash() {
  const task = mainRecords.find((r) => r.task_id === OVERCAP_TASK);
  const from = Math.floor((Date.parse(task.started_at) - 20 * 60_000) / 60_000) * 60_000;
  return `#range=custom&from=${new Date(from).toISOString()}&to=${new Date(from + 3_600_000).toISOString()}&gran=minute`;
}

const numbers = (s) => (s.replace(/,/g, "").match(/-?\d+(\.\d+)?/g) || []).map(Number);

/** Pixels of the canvas in `sel` close to the colour [r, g, b]. */
async function pixels(page, sel, [r, g, b]) {
  return page.evaluate(
    ([sel, r, g, b]) => {
      const c = document.querySelector(`${sel} canvas`);
      if (!c) return 0;
      // Read a copy: reading the chart's own canvas again and again makes
      // Chromium warn in the console.
      const copy = document.createElement("canvas");
      copy.width = c.width;
      copy.height = c.height;
      const ctx = copy.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(c, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 128 && Math.abs(d[i] - r) < 40 && Math.abs(d[i + 1] - g) < 40 && Math.abs(d[i + 2] - b) < 40) n++;
      return n;
    },
    [sel, r, g, b],
  );
}
const RED = [217, 83, 79]; // BAD in app.js: incomplete buckets
const PURPLE = [142, 107, 191]; // utilisation bars

/** Capacity panels, the utilisation card and the table against the API for the page's range. */
async function checkCapacityMatchesApi(page, snap, exp) {
  const r = snap.range;
  const rows = exp.main.rows;
  const s = exp.main.summary;
  assert.ok(s.available_gpu_hours > 0, "sessions cover the range");
  const cap = snap.series.capacity;
  assert.ok(cap, "capacity series");
  assertClose(cap.used, dense(r, rows, "total_gpu_hours"), "used");
  assertClose(cap.available, dense(r, rows, "available_gpu_hours"), "available");
  assertClose(cap.idle, dense(r, rows, "idle_gpu_hours"), "idle");
  const step = STEP[r.granularity];
  const at = (row) => Math.round((Date.parse(row.time_bucket) - Date.parse(r.start)) / 1000 / step);
  const util = new Array(r.buckets).fill(null);
  const incomplete = new Array(r.buckets).fill(false);
  for (const row of rows) {
    util[at(row)] = row.utilization_rate;
    incomplete[at(row)] = row.capacity_complete === false;
  }
  assertClose(cap.utilization, util, "utilisation");
  assert.deepEqual(cap.incomplete, incomplete, "incomplete buckets");
  assert.ok(util.some((u) => u !== null && u > 0 && u < 1), "real utilisation below 100 %");
  assertClose(snap.series.concurrency.inUse, dense(r, rows, "peak_gpus_in_use"), "peak in use");
  assertClose(snap.series.concurrency.available, dense(r, rows, "peak_gpus_available"), "peak available");
  assert.equal(Math.max(...snap.series.concurrency.inUse), s.peak_gpus_in_use, "peak in use over the range");
  assert.equal(Math.max(...snap.series.concurrency.available), s.peak_gpus_available, "peak available over the range");

  // Drawn: all three charts, no "none reported" notice.
  for (const id of ["#chart-capacity", "#chart-utilization", "#chart-concurrency"]) assert.ok(await page.isVisible(`${id} canvas`), id);
  assert.ok(await page.isHidden("#capacity-missing"));
  assert.ok(await page.isHidden("#utilization-missing"));
  assert.ok((await pixels(page, "#chart-utilization", PURPLE)) + (await pixels(page, "#chart-utilization", RED)) > 100, "utilisation bars drawn");

  // The card: utilisation, idle and available of the summary.
  const card = await page.$eval('[data-card="utilization"]', (e) => ({ value: e.querySelector(".card-value").textContent, sub: e.querySelector(".card-sub").textContent, cls: e.className }));
  assert.ok(Math.abs(numbers(card.value)[0] - 100 * s.utilization_rate) <= 0.051, `utilisation card ${card.value} vs ${s.utilization_rate}`);
  const [idle, available] = numbers(card.sub);
  assert.ok(Math.abs(idle - s.idle_gpu_hours) <= gpuTol(s.idle_gpu_hours), `idle ${card.sub} vs ${s.idle_gpu_hours}`);
  assert.ok(Math.abs(available - s.available_gpu_hours) <= gpuTol(s.available_gpu_hours), `available ${card.sub} vs ${s.available_gpu_hours}`);
  // Incomplete: the API's flag, or utilisation above 100 % over the range.
  const warned = s.capacity_complete === false || s.utilization_rate > 1;
  assert.equal(/incomplete/.test(card.cls), warned, `card flagged incomplete: ${card.cls}`);
  assert.equal(/capacity reports incomplete/.test(card.sub), warned, card.sub);
  assert.equal(await page.isVisible("#capacity-incomplete"), warned, "the incomplete warning");

  // The table: available GPU-hours and utilisation per endpoint and spec.
  const table = await page.$$eval("#top-table tbody tr", (trs) => trs.map((tr) => ({ cells: [...tr.cells].map((c) => c.textContent.trim()), flagged: tr.cells[8]?.classList.contains("incomplete") })));
  for (const [kind, scopeRows] of [["endpoint", exp.endpoints.rows], ["spec", exp.specs.rows]]) {
    for (const g of bySum(scopeRows)) {
      const row = table.find((t) => t.cells[0] === kind && t.cells[1] === g.name);
      assert.ok(row, `${kind} ${g.name} in the table`);
      const one = await apiAll(main.base, r.granularity, { scope_type: kind, scope_value: g.name, start_time: r.start, end_time: r.end });
      const os = one.summary;
      if (os.available_gpu_hours > 0) {
        // Σ of the rows (each rounded to 6 decimals) against the exact sum, shown with 2.
        assert.ok(Math.abs(numbers(row.cells[7])[0] - os.available_gpu_hours) <= 0.0051, `${g.name} available ${row.cells[7]} vs ${os.available_gpu_hours}`);
        assert.ok(Math.abs(numbers(row.cells[8])[0] - 100 * os.utilization_rate) <= 0.06, `${g.name} utilisation ${row.cells[8]} vs ${os.utilization_rate}`);
      } else {
        assert.deepEqual(row.cells.slice(7), ["—", "—"], `${g.name}: no capacity`);
      }
      assert.equal(row.flagged, os.available_gpu_hours > 0 && (os.capacity_complete === false || os.utilization_rate > 1), `${g.name} flagged incomplete`);
    }
  }
}

test("capacity from worker sessions: panels, cards and table show the API's figures", async () => {
  const page = await newPage();
  const views = [
    ["#range=24h", "hourly", "20-capacity-24h"],
    ["#range=6h", "minute", "21-capacity-6h-minute"],
    ["#range=7d&stack=spec", "hourly", null],
    ["#range=30d&gran=daily", "daily", "22-capacity-30d-daily"],
    ["#range=24h&scope_type=spec&scope_value=a100-80g", "hourly", "23-capacity-filtered-spec"],
  ];
  for (const [hash, gran, name] of views) {
    const { snap, exp } = await openChecked(page, hash);
    assert.equal(snap.range.granularity, gran, hash);
    await checkCapacityMatchesApi(page, snap, exp);
    if (hash === "#range=24h") {
      assert.equal(exp.main.summary.capacity_complete, true, "the last 24 hours are fully covered");
      assert.ok(await page.isHidden("#capacity-incomplete"));
    }
    if (name) await shot(page, name);
  }
  await page.close();
});

test("a range with records but no worker sessions says no capacity is reported", async () => {
  const page = await newPage();
  const { snap, exp } = await openChecked(page, noSessionsHash());
  const s = exp.main.summary;
  assert.ok(s.total_tasks > 20, `records in the range (${s.total_tasks})`);
  assert.equal(s.available_gpu_hours, 0);
  assert.equal(s.utilization_rate, null);
  assert.equal(s.capacity_complete, null);
  assert.equal(snap.series.capacity, null);
  for (const id of ["#capacity-missing", "#utilization-missing"]) {
    assert.ok(await page.isVisible(id), id);
    assert.match(await page.textContent(id), /No capacity reported for this range/);
  }
  assert.match(await page.textContent("#capacity-missing"), /POST \/api\/v1\/gpu-usage\/workers\/sessions/);
  assert.ok(await page.isHidden("#chart-capacity"));
  assert.ok(await page.isHidden("#chart-utilization"));
  assert.ok(await page.isHidden("#capacity-incomplete"));
  assert.equal((await page.textContent('[data-card="utilization"] .card-value')).trim(), "—");
  assert.match(await page.textContent('[data-card="utilization"] .card-sub'), /no capacity reported/);
  // Concurrency still shows the GPUs in use, and says why not the available ones.
  assert.ok(await page.isVisible("#chart-concurrency canvas"));
  assert.equal(snap.series.concurrency.available, null);
  assertClose(snap.series.concurrency.inUse, dense(snap.range, exp.main.rows, "peak_gpus_in_use"), "peak in use");
  assert.match(await page.textContent("#concurrency-missing"), /GPUs available are not shown/);
  const cells = await page.$$eval("#top-table tbody tr", (trs) => trs.map((tr) => [tr.cells[7].textContent.trim(), tr.cells[8].textContent.trim()]));
  assert.ok(cells.length > 10 && cells.every(([a, u]) => a === "—" && u === "—"), "no capacity in the table");
  // The custom range's inputs show the range opened from the link.
  assert.notEqual(await page.inputValue("#custom-from"), "");
  await shot(page, "24-capacity-none-reported");
  await page.close();
});

test("capacity_complete: false (a task on more GPUs than the sessions offer) is shown", async () => {
  const page = await newPage();
  // The hour view around the task: utilisation above 100 % in its minutes.
  let { snap, exp } = await openChecked(page, overcapHash());
  assert.equal(snap.range.granularity, "minute");
  assert.equal(exp.main.summary.capacity_complete, false, "the API says incomplete");
  await checkCapacityMatchesApi(page, snap, exp);
  const over = snap.series.capacity.utilization.filter((u, i) => snap.series.capacity.incomplete[i]);
  assert.ok(over.length >= 10 && over.every((u) => u > 1), `utilisation above 100 % where incomplete: ${over}`);
  const warning = await page.textContent("#capacity-incomplete");
  assert.match(warning, /Capacity reports incomplete/);
  assert.match(warning, new RegExp(`in ${over.length} of \\d+ minute buckets`));
  assert.match(await page.textContent('[data-card="utilization"] .card-label'), /incomplete/);
  assert.ok((await pixels(page, "#chart-utilization", RED)) > 100, "incomplete buckets drawn in red");
  await shot(page, "25-capacity-incomplete-minute");

  // The 7 days around it: the hour is flagged among complete ones.
  ({ snap, exp } = await openChecked(page, "#range=7d"));
  assert.equal(exp.main.summary.capacity_complete, false);
  await checkCapacityMatchesApi(page, snap, exp);
  const flagged = snap.series.capacity.incomplete.filter(Boolean).length;
  assert.ok(flagged >= 1 && flagged < 5, `${flagged} incomplete hours`);
  assert.match(await page.textContent("#capacity-incomplete"), new RegExp(`in ${flagged} of \\d+ hour buckets`));
  assert.ok((await pixels(page, "#chart-utilization", RED)) > 10, "the incomplete hour drawn in red");
  await shot(page, "26-capacity-incomplete-7d");
  await page.close();
});

test("admin actions: re-aggregate inline and a backfill with progress", async () => {
  const page = await newPage();
  await openDashboard(page, "#range=24h");
  assert.equal(await page.evaluate(() => window.__dashboard.role), "admin", "no tokens configured: admin");
  assert.ok(await page.isVisible("#admin"));

  await page.click('#range-picks button[data-range="1h"]');
  await settled(page);
  await rerender(page, () => page.click("#admin-aggregate"));
  assert.match(await page.textContent("#admin-result"), /Re-aggregated all: minute \d+ rows, hourly \d+ rows, daily \d+ rows/);
  await checkChartsMatchApi(page, main.base); // recomputing changed nothing

  await page.click('#range-picks button[data-range="24h"]');
  await settled(page);
  await page.click("#admin-backfill");
  await page.waitForFunction(() => window.__dashboard.job && window.__dashboard.job.status === "succeeded", null, { timeout: 90_000 });
  const job = await page.evaluate(() => window.__dashboard.job);
  assert.equal(job.progress, 1);
  assert.equal(job.chunks_done, job.chunks_total);
  const api = await (await fetch(`${main.base}/api/v1/gpu-usage/backfill/${job.id}`)).json();
  assert.equal(api.status, "succeeded");
  await settled(page);
  assert.match(await page.textContent("#job-detail"), /of \d+ days done \(100\.0%\)/);
  await checkChartsMatchApi(page, main.base);
  await shot(page, "11-admin-backfill-done");
  await page.close();
});

test("the API reference lists every field of the rows that nest another type", async () => {
  const page = await newPage();
  await page.goto(`${main.base}/api/v1/gpu-usage/docs`);
  await page.waitForSelector("#schema-UsageRecord table");
  const fieldsOf = (name) => page.$$eval(`#schema-${name} table td:first-child code`, (cs) => cs.map((c) => c.textContent));
  const expected = {
    UsageRecord: ["id", "task_id", "endpoint", "gpu_count", "status", "duration_seconds", "gpu_hours", "created_at"],
    WorkerSession: ["id", "worker_id", "endpoint", "spec_name", "gpu_count", "started_at", "ended_at", "counted_until"],
  };
  for (const [name, want] of Object.entries(expected)) {
    const got = await fieldsOf(name);
    for (const f of want) assert.ok(got.includes(f), `${name} lists ${f} (got ${got.join(", ")})`);
  }
  await page.close();
});

test("an empty database shows the empty state, not blank charts", async () => {
  const empty = await startServer("empty");
  const page = await newPage();
  await page.goto(`${empty.base}/dashboard`);
  await settled(page, ["empty"]);
  assert.ok(await page.isVisible("#empty-state"));
  assert.match(await page.textContent("#empty-state"), /No GPU usage in this range/);
  assert.ok(await page.isHidden("#charts"));
  assert.equal(await page.$$eval("canvas", (c) => c.length), 0);
  assert.equal(await page.textContent('[data-card="tasks"] .card-value'), "0");
  await shot(page, "12-empty-database");
  await rerender(page, () => page.click("#empty-30d"), ["empty"]);
  assert.equal(await page.evaluate(() => window.__dashboard.view.range), "30d");
  await page.close();
  await stopServer(empty);
});

test("tokens: prompt when missing, the API's error when wrong, admin actions only for admin", async () => {
  const secured = await startServer("tokens", { GPU_USAGE__API__READ_TOKEN: READ_TOKEN, GPU_USAGE__API__ADMIN_TOKEN: ADMIN_TOKEN });
  await seed(secured.base, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, records: makeRecords(Date.now(), { older: 120, recent: 60, lastHour: 10, seed: 7 }) });
  const page = await newPage({ allowStatuses: [401] });
  const authHeaders = [];
  page.on("request", (req) => {
    if (req.url().includes("/api/v1/gpu-usage/")) authHeaders.push(req.headers().authorization ?? null);
  });

  await page.goto(`${secured.base}/dashboard`);
  await settled(page, ["auth"]);
  assert.ok(await page.isVisible("#auth-form"));
  assert.ok(await page.isHidden("#auth-error"), "no error before a token was tried");
  assert.ok(await page.isHidden("#content"));
  await shot(page, "13-token-prompt");

  await page.fill("#auth-token", "not-the-token");
  await page.click('#auth-form button[type="submit"]');
  await page.waitForSelector("#auth-error:not([hidden])");
  assert.match(await page.textContent("#auth-error"), /the bearer token is not valid \(unauthorized, HTTP 401\)/);
  assert.ok(await page.isVisible("#auth-form"), "the prompt stays");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("gpu-usage.token")), null, "a wrong token is not kept");
  await shot(page, "14-token-wrong");

  await page.fill("#auth-token", READ_TOKEN);
  await page.click('#auth-form button[type="submit"]');
  await settled(page, ["ready"]);
  const headers = { authorization: `Bearer ${READ_TOKEN}` };
  await checkChartsMatchApi(page, secured.base, headers);
  assert.equal(await page.evaluate(() => window.__dashboard.role), "read");
  assert.ok(await page.isHidden("#admin"), "no admin actions for a read token");
  assert.match(await page.textContent("#identity"), /read_token · read/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("gpu-usage.token")), READ_TOKEN);
  assert.equal(await page.evaluate(() => document.cookie), "");
  assert.ok(authHeaders.includes(`Bearer ${READ_TOKEN}`));
  await shot(page, "15-read-token");

  // The token survives a reload of the tab (sessionStorage).
  await page.reload();
  await settled(page, ["ready"]);

  await page.click("#sign-out");
  await settled(page, ["auth"]);
  await page.fill("#auth-token", ADMIN_TOKEN);
  await page.click('#auth-form button[type="submit"]');
  await settled(page, ["ready"]);
  assert.equal(await page.evaluate(() => window.__dashboard.role), "admin");
  assert.ok(await page.isVisible("#admin"), "admin actions for an admin token");
  await shot(page, "16-admin-token");

  // A token revoked while the page is open: the next read asks again.
  await page.evaluate(() => sessionStorage.setItem("gpu-usage.token", "revoked"));
  await page.click("#refresh");
  await settled(page, ["auth"]);
  assert.match(await page.textContent("#auth-error"), /the bearer token is not valid/);
  await page.close();
  await stopServer(secured);
});

test("API errors show the API's message; impossible views say why", async () => {
  const page = await newPage({ allowStatuses: [400, 503] });
  await openDashboard(page, "#range=24h");
  // A database outage as the API reports it.
  await page.route(/\/api\/v1\/gpu-usage\/hourly\?/, (route) =>
    route.fulfill({ status: 503, json: { error: "the database is unavailable", code: "unavailable" } }),
  );
  const seq = await page.evaluate(() => window.__dashboard.loadSeq);
  await page.click("#refresh");
  await page.waitForFunction((s) => window.__dashboard.loadSeq > s && window.__dashboard.state === "error", seq);
  assert.ok(await page.isVisible("#error-banner"));
  assert.equal((await page.textContent("#error-text")).trim(), "the database is unavailable (unavailable, HTTP 503)");
  await shot(page, "19-api-error");
  await page.unroute(/\/api\/v1\/gpu-usage\/hourly\?/);
  await rerender(page, () => page.click("#refresh"));
  assert.ok(await page.isHidden("#error-banner"), "the banner goes once the API answers");

  // A range the API refuses (longer than api.max_range_days) shows its reason.
  const from = "2020-01-01T00:00:00.000Z";
  await page.goto(`${main.base}/dashboard#range=custom&from=${from}&to=2026-01-01T00:00:00.000Z&gran=daily`);
  await page.waitForFunction(() => window.__dashboard.state === "error");
  assert.match(await page.textContent("#error-text"), /HTTP 400/);
  // Minute rows for 30 days would be 43,200 points per chart: refused in the page.
  await page.goto(`${main.base}/dashboard#range=30d&gran=minute`);
  await page.waitForFunction(() => window.__dashboard.state === "error" && /buckets/.test(window.__dashboard.lastError));
  assert.match(await page.textContent("#error-text"), /43,200 minute buckets/);
  await page.close();
});

test("layout holds from 1000 to 1600 px", async () => {
  const page = await newPage();
  for (const [width, name] of [
    [1000, "17-narrow-1000px"],
    [1600, "18-wide-1600px"],
  ]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto(`${main.base}/dashboard#range=24h&stack=spec`);
    await settled(page);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `no horizontal scroll at ${width}px (${overflow}px)`);
    // Charts fill their panels. Going to the same URL at a new width is a
    // same-document navigation: the charts follow the new width through
    // their ResizeObserver, a frame or two later, so wait for it (bounded)
    // before the exact check below.
    await page
      .waitForFunction(
        () =>
          [...document.querySelectorAll(".chart:not([hidden])")].every((el) => {
            const canvas = el.querySelector("canvas")?.getBoundingClientRect().width ?? 0;
            const panel = el.getBoundingClientRect().width;
            return canvas > panel * 0.8 && canvas <= panel + 1;
          }),
        null,
        { timeout: 5_000 },
      )
      .catch(() => {});
    const fit = await page.$$eval(".chart:not([hidden])", (els) => els.map((el) => [el.id, el.querySelector("canvas")?.getBoundingClientRect().width ?? 0, el.getBoundingClientRect().width]));
    for (const [id, canvas, panel] of fit) assert.ok(canvas > panel * 0.8 && canvas <= panel + 1, `${id} at ${width}px: canvas ${canvas} in ${panel}`);
    await shot(page, name);
  }
  await page.close();
});

test("quick ranges reload by themselves", async () => {
  const page = await newPage();
  await page.addInitScript(() => {
    window.__DASHBOARD_REFRESH_SECS = 1;
  });
  await openDashboard(page, "#range=1h");
  const first = await page.evaluate(() => window.__dashboard.renderSeq);
  await page.waitForFunction((s) => window.__dashboard.renderSeq >= s + 2, first, { timeout: 15_000 });
  await checkChartsMatchApi(page, main.base);
  await page.close();
});

test("no console errors, page errors, foreign requests or cookies during the run", () => {
  assert.deepEqual(problems, []);
});

// ------------------------------------------------------------------ CSV
function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(cell);
      cell = "";
    } else if (c === "\r" && text[i + 1] === "\n") {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
      i++;
    } else cell += c;
  }
  if (cell || row.length) rows.push([...row, cell]);
  return rows;
}
