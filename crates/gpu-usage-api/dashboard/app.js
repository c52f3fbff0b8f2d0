// GPU usage dashboard: a static page over the JSON API under
// /api/v1/gpu-usage. Plain modern JavaScript, no framework, no bundler;
// charts by the vendored uPlot. See docs/DASHBOARD.md.
//
// Flow: the URL hash holds the view (range, granularity, stack, time zone,
// optional scope filter) → load() asks whoami, then the statistics of the
// range (global, every endpoint, every spec, and the filtered scope) →
// compute() turns rows into dense per-bucket series → render() draws cards,
// charts and the table. What is plotted is published on
// window.__dashboard for tests and for the curious.
"use strict";

(() => {
  const API = new URL("api/v1/gpu-usage/", document.baseURI);
  const TOKEN_KEY = "gpu-usage.token";
  const RANGES = { "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
  const RANGE_NAMES = { "1h": "Last hour", "6h": "Last 6 hours", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days" };
  const STEP = { minute: 60, hourly: 3600, daily: 86400 };
  const LEVEL_LABEL = { minute: "minute", hourly: "hour", daily: "UTC day" };
  // What the service promises (docs/ROLLUPS.md#freshness): a record shows up
  // in each level within this many seconds.
  const FRESH_PROMISE = { minute: 120, hourly: 420, daily: 3900 };
  const TOP_N = 8;
  const MAX_BUCKETS = 20000;
  const PAGE_LIMIT = 5000;
  const REFRESH_SECS = typeof window.__DASHBOARD_REFRESH_SECS === "number" ? window.__DASHBOARD_REFRESH_SECS : 60;
  const PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#eeca3b", "#e45756", "#9d755d"];
  const OTHER_COLOR = "#a3a7b0";
  const NOSPEC_COLOR = "#d3d6dc";
  const INK = "#1d2330";
  const OK = "#3c9a5f";
  const BAD = "#d9534f";

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- view
  const DEFAULT_VIEW = { range: "24h", from: null, to: null, gran: "auto", stack: "endpoint", tz: "local", scopeType: null, scopeValue: null };
  let view = { ...DEFAULT_VIEW };

  function readHash() {
    const p = new URLSearchParams(location.hash.replace(/^#/, ""));
    const v = { ...DEFAULT_VIEW };
    const range = p.get("range");
    if (range && (RANGES[range] || range === "custom")) v.range = range;
    if (v.range === "custom") {
      const from = Date.parse(p.get("from") || "");
      const to = Date.parse(p.get("to") || "");
      if (Number.isFinite(from) && Number.isFinite(to) && from < to) {
        v.from = from / 1000;
        v.to = to / 1000;
      } else {
        v.range = DEFAULT_VIEW.range;
      }
    }
    const gran = p.get("gran");
    if (gran && (gran === "auto" || STEP[gran])) v.gran = gran;
    if (p.get("stack") === "spec") v.stack = "spec";
    if (p.get("tz") === "utc") v.tz = "utc";
    const st = p.get("scope_type");
    const sv = p.get("scope_value");
    if ((st === "endpoint" || st === "spec") && sv) {
      v.scopeType = st;
      v.scopeValue = sv;
    }
    return v;
  }

  function hashOf(v) {
    const p = new URLSearchParams();
    p.set("range", v.range);
    if (v.range === "custom") {
      p.set("from", iso(v.from));
      p.set("to", iso(v.to));
    }
    if (v.gran !== "auto") p.set("gran", v.gran);
    if (v.stack !== "endpoint") p.set("stack", v.stack);
    if (v.tz !== "local") p.set("tz", v.tz);
    if (v.scopeType) {
      p.set("scope_type", v.scopeType);
      p.set("scope_value", v.scopeValue);
    }
    return "#" + p.toString();
  }

  function setView(patch) {
    view = { ...view, ...patch };
    history.replaceState(null, "", hashOf(view));
    load();
  }

  function autoGranularity(span) {
    if (span <= 6 * 3600) return "minute";
    if (span <= 7 * 86400) return "hourly";
    return "daily";
  }

  // The range queried: aligned outwards to whole buckets, so every bucket
  // drawn is complete in the data (the current one is live and partial).
  function resolveRange(v, nowSecs) {
    let start;
    let end;
    if (v.range === "custom") {
      start = v.from;
      end = v.to;
    } else {
      end = nowSecs;
      start = end - RANGES[v.range];
    }
    const gran = v.gran === "auto" ? autoGranularity(end - start) : v.gran;
    const step = STEP[gran];
    const alignedEnd = Math.ceil(end / step) * step;
    const alignedStart = v.range === "custom" ? Math.floor(start / step) * step : alignedEnd - Math.ceil((end - start) / step) * step;
    const buckets = Math.round((alignedEnd - alignedStart) / step);
    return { start: alignedStart, end: alignedEnd, gran, step, buckets, auto: v.gran === "auto" };
  }

  // ---------------------------------------------------------------- formatting
  const nfCache = new Map();
  function nf(min, max) {
    const key = min + ":" + max;
    if (!nfCache.has(key)) nfCache.set(key, new Intl.NumberFormat(undefined, { minimumFractionDigits: min, maximumFractionDigits: max }));
    return nfCache.get(key);
  }
  const pctFmt = new Intl.NumberFormat(undefined, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const fmtInt = (v) => (isNum(v) ? nf(0, 0).format(v) : "—");
  const fmtPct = (v) => (isNum(v) ? pctFmt.format(v) : "—");
  // GPU-hours: more decimals for small amounts.
  function fmtGpuH(v) {
    if (!isNum(v)) return "—";
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1000) return nf(0, 0).format(v);
    if (a >= 100) return nf(1, 1).format(v);
    if (a >= 1) return nf(2, 2).format(v);
    return nf(3, 3).format(v);
  }
  const fmtTable2 = (v) => (isNum(v) ? nf(2, 2).format(v) : "—");
  function fmtDuration(secs) {
    if (!isNum(secs)) return "—";
    const s = Math.max(0, Math.round(secs));
    if (s < 90) return `${s} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${nf(0, 1).format(s / 3600)} h`;
    return `${nf(0, 1).format(s / 86400)} d`;
  }
  const tzName = (utc) => (utc ? "UTC" : Intl.DateTimeFormat().resolvedOptions().timeZone || "local");
  const dtfCache = new Map();
  function dtf(utc, opts) {
    const key = (utc ? "u" : "l") + JSON.stringify(opts);
    if (!dtfCache.has(key)) dtfCache.set(key, new Intl.DateTimeFormat(undefined, { ...opts, hourCycle: "h23", ...(utc ? { timeZone: "UTC" } : {}) }));
    return dtfCache.get(key);
  }
  const useUtc = () => view.tz === "utc";
  const fmtDateTime = (secs, utc = useUtc()) => dtf(utc, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }).format(new Date(secs * 1000));
  const fmtDate = (secs, utc = useUtc()) => dtf(utc, { year: "numeric", month: "short", day: "numeric" }).format(new Date(secs * 1000));
  const fmtTime = (secs, utc = useUtc()) => dtf(utc, { hour: "2-digit", minute: "2-digit" }).format(new Date(secs * 1000));
  const fmtDayShort = (secs, utc = useUtc()) => dtf(utc, { month: "short", day: "numeric" }).format(new Date(secs * 1000));
  function fmtBucket(secs, gran) {
    if (gran === "daily") return fmtDate(secs, true);
    return fmtDateTime(secs);
  }
  const iso = (secs) => new Date(secs * 1000).toISOString();
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, body, text) {
      const msg = body && typeof body.error === "string" ? body.error : status === 0 ? text : `HTTP ${status}${text ? ": " + text.slice(0, 200) : ""}`;
      super(msg);
      this.status = status;
      this.code = body && body.code ? body.code : null;
    }
    describe() {
      if (this.status === 0) return this.message;
      return `${this.message} (${this.code ? this.code + ", " : ""}HTTP ${this.status})`;
    }
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(path, { method = "GET", params = {} } = {}) {
    const url = new URL(path, API);
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) url.searchParams.set(k, v);
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    let res;
    try {
      res = await fetch(url, { method, headers, credentials: "omit", cache: "no-store", signal: AbortSignal.timeout(method === "GET" ? 30000 : 120000) });
    } catch (e) {
      throw new ApiError(0, null, `cannot reach the API at ${API.pathname} (${e.message})`);
    }
    const text = await res.text();
    let body = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
    }
    if (!res.ok) throw new ApiError(res.status, body, text);
    return { status: res.status, body };
  }

  // Every page of one statistics query (follows next_cursor).
  async function fetchAll(level, params) {
    const rows = [];
    let first = null;
    let cursor = null;
    for (let page = 0; page < 1000; page++) {
      const { body } = await api(level, { params: { ...params, limit: PAGE_LIMIT, cursor } });
      if (!first) first = body;
      rows.push(...(Array.isArray(body.data) ? body.data : []));
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return { rows, summary: first.summary || {}, total: first.total };
  }

  // ---------------------------------------------------------------- compute
  const tsOf = (row) => Date.parse(row.time_bucket) / 1000;
  const round6 = (v) => Math.round(v * 1e6) / 1e6;

  function dense(r, rows, field) {
    const out = new Array(r.buckets).fill(0);
    for (const row of rows) {
      const i = Math.round((tsOf(row) - r.start) / r.step);
      if (i >= 0 && i < r.buckets && isNum(row[field])) out[i] += row[field];
    }
    return out;
  }

  function groupByScope(rows) {
    const m = new Map();
    for (const row of rows) {
      const k = row.scope_value ?? "";
      if (!m.has(k)) m.set(k, []);
      m.get(k).push(row);
    }
    return m;
  }

  function sumRows(rows) {
    const s = { gpu: 0, tasks: 0, failed: 0, avail: 0, incomplete: false };
    for (const r of rows) {
      s.gpu += r.total_gpu_hours || 0;
      s.tasks += r.total_tasks || 0;
      s.failed += r.failed_tasks || 0;
      s.avail += isNum(r.available_gpu_hours) ? r.available_gpu_hours : 0;
      if (r.capacity_complete === false) s.incomplete = true;
    }
    return s;
  }

  const byGpuDesc = (a, b) => b.gpu - a.gpu || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

  // Layers of the GPU-hours stack: the top N scope values, "other", and for
  // specs "no spec" (global minus every spec), so the stack sums to global.
  function stackLayers(r, scopeRows, globalGpu, kind) {
    const groups = [...groupByScope(scopeRows)].map(([name, rows]) => ({ name, rows, gpu: sumRows(rows).gpu }));
    groups.sort(byGpuDesc);
    const layers = groups.slice(0, TOP_N).map((g, i) => ({ label: g.name, kind: "value", color: PALETTE[i % PALETTE.length], values: dense(r, g.rows, "total_gpu_hours") }));
    const rest = groups.slice(TOP_N);
    if (rest.length) {
      const values = dense(r, rest.flatMap((g) => g.rows), "total_gpu_hours");
      layers.push({ label: `other (${rest.length})`, kind: "other", color: OTHER_COLOR, values });
    }
    if (kind === "spec") {
      const all = dense(r, scopeRows, "total_gpu_hours");
      const values = globalGpu.map((g, i) => Math.max(0, round6(g - all[i])));
      if (values.some((v) => v > 0)) layers.push({ label: "no spec", kind: "nospec", color: NOSPEC_COLOR, values });
    }
    return layers;
  }

  function capacityOf(r, rows, summary) {
    const reported = rows.some((x) => isNum(x.available_gpu_hours) && x.available_gpu_hours > 0) || (isNum(summary.available_gpu_hours) && summary.available_gpu_hours > 0);
    const hasConcurrency = rows.some((x) => isNum(x.peak_gpus_in_use));
    const capacity = reported
      ? {
          used: dense(r, rows, "total_gpu_hours"),
          available: dense(r, rows, "available_gpu_hours"),
          idle: dense(r, rows, "idle_gpu_hours"),
          utilization: (() => {
            const u = new Array(r.buckets).fill(null);
            for (const row of rows) {
              const i = Math.round((tsOf(row) - r.start) / r.step);
              if (i >= 0 && i < r.buckets && isNum(row.utilization_rate)) u[i] = row.utilization_rate;
            }
            return u;
          })(),
          // Buckets where tasks used more GPU time than the sessions
          // offered in some minute (capacity_complete: false).
          incomplete: (() => {
            const f = new Array(r.buckets).fill(false);
            for (const row of rows) {
              const i = Math.round((tsOf(row) - r.start) / r.step);
              if (i >= 0 && i < r.buckets && row.capacity_complete === false) f[i] = true;
            }
            return f;
          })(),
          // The range as a whole: incomplete by the flag, or by using more
          // than was available (see renderCards).
          complete:
            summary.capacity_complete === false || (isNum(summary.utilization_rate) && summary.utilization_rate > 1)
              ? false
              : summary.capacity_complete === true
                ? true
                : null,
        }
      : null;
    const concurrency = hasConcurrency
      ? {
          inUse: dense(r, rows, "peak_gpus_in_use"),
          available: reported ? dense(r, rows, "peak_gpus_available") : null,
        }
      : null;
    return { capacity, concurrency };
  }

  function tableOf(r, endpointRows, specRows, globalSummary, globalRows) {
    const globalGpu = isNum(globalSummary.total_gpu_hours) ? globalSummary.total_gpu_hours : sumRows(globalRows).gpu;
    const rows = [];
    const push = (kind, name, s, link) => {
      const avail = round6(s.avail);
      rows.push({
        kind,
        name,
        link,
        values: {
          gpu: s.gpu,
          share: globalGpu > 0 ? s.gpu / globalGpu : null,
          tasks: s.tasks,
          failed: s.failed,
          rate: s.tasks > 0 ? s.failed / s.tasks : null,
          avail: avail > 0 ? avail : null,
          util: avail > 0 ? s.gpu / avail : null,
          // The rows' flag, or more used than available over the range.
          incomplete: avail > 0 && (s.incomplete || s.gpu > avail),
        },
      });
    };
    const block = (kind, scopeRows) => {
      const groups = [...groupByScope(scopeRows)].map(([name, rs]) => ({ name, ...sumRows(rs) }));
      groups.sort(byGpuDesc);
      for (const g of groups) push(kind, g.name, g, hashOf({ ...view, scopeType: kind, scopeValue: g.name }));
      return groups;
    };
    block("endpoint", endpointRows);
    const specs = block("spec", specRows);
    // Tasks without a spec: global minus every spec.
    const g = sumRows(globalRows);
    const s = specs.reduce((a, x) => ({ gpu: a.gpu + x.gpu, tasks: a.tasks + x.tasks, failed: a.failed + x.failed, avail: a.avail + x.avail }), { gpu: 0, tasks: 0, failed: 0, avail: 0 });
    // Whether the no-spec part is complete cannot be told apart from the
    // global rows: it is not flagged.
    const none = { gpu: Math.max(0, round6(g.gpu - s.gpu)), tasks: g.tasks - s.tasks, failed: g.failed - s.failed, avail: Math.max(0, round6(g.avail - s.avail)), incomplete: false };
    if (none.gpu > 0 || none.tasks > 0) push("spec", "(no spec)", none, null);
    const columns = ["Kind", "Name", "GPU-hours", "Share of GPU-hours", "Tasks", "Failed", "Failure rate", "Available GPU-h", "Utilisation"];
    const display = rows.map((x) => ({
      link: x.link,
      kind: x.kind,
      name: x.name,
      cells: [
        x.kind,
        x.name,
        fmtTable2(x.values.gpu),
        fmtPct(x.values.share),
        fmtInt(x.values.tasks),
        fmtInt(x.values.failed),
        fmtPct(x.values.rate),
        fmtTable2(x.values.avail),
        fmtPct(x.values.util),
      ],
      values: x.values,
    }));
    return { columns, rows: display };
  }

  // ---------------------------------------------------------------- charts
  const charts = new Map();
  const resizeObs = new ResizeObserver((entries) => {
    for (const e of entries) {
      const c = charts.get(e.target.id);
      if (c) {
        const w = Math.max(200, Math.floor(e.contentRect.width));
        if (Math.abs(w - c.width) > 1) c.setSize({ width: w, height: c.height });
      }
    }
  });

  function destroyChart(id) {
    const c = charts.get(id);
    if (c) {
      c.destroy();
      charts.delete(id);
    }
    const el = $(id);
    el.replaceChildren();
  }

  function axisTimeValues(gran, utc) {
    return (u, splits, axisIdx, space, incr) =>
      splits.map((ts, i) => {
        if (ts == null) return null;
        if (gran === "daily" || incr >= 86400) return fmtDayShort(ts, utc);
        const prev = i > 0 ? splits[i - 1] : null;
        const newDay = prev == null || fmtDayShort(prev, utc) !== fmtDayShort(ts, utc);
        return newDay ? `${fmtTime(ts, utc)}\n${fmtDayShort(ts, utc)}` : fmtTime(ts, utc);
      });
  }

  const AXIS = { stroke: "#5b6474", font: "12px system-ui, sans-serif", grid: { stroke: "#eef0f4", width: 1 }, ticks: { stroke: "#e3e6ec", width: 1 } };

  function baseOpts(r, { height = 260, yLabel, yValues, extraAxes = [], scales = {} } = {}) {
    const utc = useUtc() || r.gran === "daily";
    return {
      width: 600,
      height,
      tzDate: utc ? (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") : (ts) => new Date(ts * 1000),
      scales: { x: { time: true, range: () => [r.start, r.end] }, ...scales },
      cursor: { points: { size: 7 }, drag: { x: false, y: false } },
      legend: { live: true },
      axes: [
        // Daily buckets are UTC days: one tick per day at most.
        { ...AXIS, values: axisTimeValues(r.gran, utc), space: 70, ...(r.gran === "daily" ? { incrs: [86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400] } : {}) },
        { ...AXIS, label: yLabel, labelSize: 22, labelFont: "12px system-ui, sans-serif", size: 60, values: yValues },
        ...extraAxes,
      ],
      // Points sit at bucket centres (x + step/2); the legend names the bucket.
      series: [{ label: r.gran === "daily" ? "Day (UTC)" : "Time", value: (u, ts) => (ts == null ? "—" : fmtBucket(ts - r.step / 2, r.gran)) }],
    };
  }

  function makeChart(id, opts, data) {
    destroyChart(id);
    const el = $(id);
    opts.width = Math.max(200, Math.floor(el.clientWidth || 600));
    const u = new uPlot(opts, data, el);
    charts.set(id, u);
    resizeObs.observe(el);
    return u;
  }

  const gpuAxis = (u, splits) => splits.map((v) => (v == null ? "" : fmtGpuH(v)));
  const intAxis = (u, splits) => splits.map((v) => (v == null ? "" : Number.isInteger(v) ? fmtInt(v) : ""));
  const pctAxis = (u, splits) => splits.map((v) => (v == null ? "" : pctFmt.format(v)));
  const alpha = (hex, a) => hex + Math.round(a * 255).toString(16).padStart(2, "0");

  function drawGpuChart(r, x, gpu) {
    // Stacked areas: series i holds the sum of layers 0..i; bands fill
    // between neighbours. Legend values show each layer's own value.
    const cum = [];
    const acc = new Array(x.length).fill(0);
    for (const l of gpu.layers) {
      cum.push(l.values.map((v, i) => (acc[i] = round6(acc[i] + v))));
    }
    const opts = baseOpts(r, { height: 300, yLabel: "GPU-hours", yValues: gpuAxis, scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1] } } });
    const layerSeries = gpu.layers.map((l, i) => ({
      label: l.label,
      stroke: l.color,
      fill: alpha(l.color, 0.78),
      width: 1,
      points: { show: false },
      value: (u, v, si, di) => (di == null ? "—" : fmtGpuH(gpu.layers[i].values[di])),
    }));
    opts.series.push(...layerSeries);
    opts.series.push({ label: gpu.totalLabel, stroke: INK, width: 1.75, dash: gpu.layers.length === 1 ? [5, 4] : undefined, points: { show: false }, value: (u, v) => (v == null ? "—" : fmtGpuH(v)) });
    opts.bands = gpu.layers.slice(1).map((l, i) => ({ series: [i + 2, i + 1] }));
    makeChart("chart-gpu", opts, [x, ...cum, gpu.total]);
  }

  function drawTaskCharts(r, x, tasks, rangeRate) {
    const bars = uPlot.paths.bars({ size: [0.85, 28], align: 0 });
    const total = tasks.completed.map((c, i) => c + tasks.failed[i]);
    const opts = baseOpts(r, { yLabel: "tasks", yValues: intAxis, scales: { y: { range: (u, min, max) => [0, max > 0 ? Math.ceil(max * 1.1) : 1] } } });
    // Failed is drawn as the full bar (completed + failed), completed over
    // its lower part: the red cap is the failed share. Legend values are
    // each series' own counts.
    opts.series.push(
      { label: "Failed", stroke: BAD, fill: alpha(BAD, 0.9), paths: bars, points: { show: false }, value: (u, v, si, di) => (di == null ? "—" : fmtInt(tasks.failed[di])) },
      { label: "Completed", stroke: OK, fill: alpha(OK, 0.9), paths: bars, points: { show: false }, value: (u, v, si, di) => (di == null ? "—" : fmtInt(tasks.completed[di])) },
    );
    // Buckets without tasks draw no bar at all (not a zero-height sliver).
    const bar = (v) => (v > 0 ? v : null);
    makeChart("chart-tasks", opts, [x, total.map(bar), tasks.completed.map(bar)]);

    const fopts = baseOpts(r, { yLabel: "failure rate", yValues: pctAxis, scales: { y: { range: (u2, min, max) => [0, Math.max(0.05, Math.min(1, (max || 0) * 1.15))] } } });
    // Bars: a rate belongs to its bucket, and buckets without tasks stay
    // empty (no rate) instead of being joined by a line.
    fopts.series.push({ label: "Failure rate", stroke: BAD, fill: alpha(BAD, 0.75), paths: bars, points: { show: false }, value: (u2, v, si, di) => (di == null ? "—" : v == null ? "no tasks" : fmtPct(v)) });
    const fdata = [x, tasks.failureRate];
    if (rangeRate !== null) {
      // The whole range's rate (failed ÷ all tasks), for scale.
      fopts.series.push({ label: "Whole range", stroke: INK, width: 1.25, dash: [4, 4], points: { show: false }, value: () => fmtPct(rangeRate) });
      fdata.push(x.map(() => rangeRate));
    }
    makeChart("chart-failure", fopts, fdata);
  }

  // Percent axis labels without decimals once ticks are a percent apart
  // ("100%", not "100.0%": the axis stays narrow).
  const pctTickFmt = [0, 1, 2].map((d) => new Intl.NumberFormat(undefined, { style: "percent", minimumFractionDigits: d, maximumFractionDigits: d }));
  const pctTicks = (u, splits) => {
    const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : 1;
    const f = pctTickFmt[step >= 0.01 ? 0 : step >= 0.001 ? 1 : 2];
    return splits.map((v) => (v == null ? "" : f.format(v)));
  };

  function drawCapacity(r, x, cap, conc, scopeLabel) {
    const missing = $("capacity-missing");
    const umissing = $("utilization-missing");
    const cmissing = $("concurrency-missing");
    const incomplete = $("capacity-incomplete");
    const nIncomplete = cap ? cap.incomplete.filter(Boolean).length : 0;
    if (!cap) {
      for (const id of ["chart-capacity", "chart-utilization"]) {
        destroyChart(id);
        $(id).hidden = true;
      }
      missing.hidden = false;
      missing.innerHTML = capacityMissingHtml(scopeLabel);
      umissing.hidden = false;
      umissing.innerHTML = `<div class="notice-title">No capacity reported for this range</div>
        <p>Utilisation is used ÷ available GPU time, and the available time comes from worker sessions:
        see the Capacity panel for how to report them.</p>`;
      incomplete.hidden = true;
    } else {
      $("chart-capacity").hidden = false;
      $("chart-utilization").hidden = false;
      missing.hidden = true;
      umissing.hidden = true;
      // Incomplete capacity reports: said above the chart and marked on
      // the utilisation chart, bucket by bucket.
      incomplete.hidden = cap.complete !== false;
      if (cap.complete === false) {
        const withCap = cap.available.filter((v) => v > 0).length;
        const where =
          nIncomplete > 0
            ? `in ${fmtInt(nIncomplete)} of ${fmtInt(withCap)} ${esc(LEVEL_LABEL[r.gran])} buckets with capacity`
            : `over the range (tasks ran in buckets without any capacity reported)`;
        incomplete.innerHTML = `<span class="notice-title">⚠ Capacity reports incomplete</span>
          ${where}${scopeLabel ? ` (${esc(scopeLabel)})` : ""}:
          tasks used more GPU time than the worker sessions offered, so utilisation can exceed 100 % and idle
          GPU-hours understate idleness. The gap is in <code>GET /api/v1/gpu-usage/workers/sessions</code> for that
          time: workers that never reported, or names that differ between records and sessions.`;
      }
      const opts = baseOpts(r, {
        yLabel: "GPU-hours",
        yValues: gpuAxis,
        scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1] } },
      });
      opts.series.push(
        { label: "Used", stroke: PALETTE[0], fill: alpha(PALETTE[0], 0.3), width: 1.5, points: { show: false }, value: (u, v) => (v == null ? "—" : fmtGpuH(v)) },
        { label: "Available", stroke: INK, width: 1.75, dash: [5, 4], points: { show: false }, value: (u, v) => (v == null ? "—" : fmtGpuH(v)) },
        { label: "Idle", stroke: "#f58518", width: 1.5, points: { show: false }, value: (u, v) => (v == null ? "—" : fmtGpuH(v)) },
      );
      makeChart("chart-capacity", opts, [x, cap.used, cap.available, cap.idle]);

      const uopts = baseOpts(r, {
        yLabel: "utilisation",
        yValues: pctTicks,
        scales: { y: { range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.08)] } },
      });
      // Bars, like the failure rate: a rate belongs to its bucket, and a
      // bucket without capacity stays empty. Incomplete buckets are red.
      const bars = uPlot.paths.bars({ size: [0.85, 28], align: 0 });
      const UTIL = "#8e6bbf";
      const plain = cap.utilization.map((v, i) => (cap.incomplete[i] ? null : v));
      const flagged = cap.utilization.map((v, i) => (cap.incomplete[i] ? v : null));
      uopts.series.push({ label: "Utilisation", stroke: UTIL, fill: alpha(UTIL, 0.75), paths: bars, points: { show: false }, value: (u, v, si, di) => (di == null ? "—" : fmtPct(cap.utilization[di])) });
      const udata = [x, plain];
      if (nIncomplete > 0) {
        uopts.series.push({
          label: "Capacity reports incomplete",
          stroke: BAD,
          fill: alpha(BAD, 0.85),
          paths: bars,
          points: { show: false },
          value: (u, v, si, di) => (di == null ? "—" : cap.incomplete[di] ? "this bucket" : "no"),
        });
        udata.push(flagged);
      }
      uopts.series.push({ label: "100 % of available", stroke: "#7a8294", width: 1, dash: [4, 4], points: { show: false }, value: () => "" });
      udata.push(x.map(() => 1));
      makeChart("chart-utilization", uopts, udata);
    }
    if (!conc) {
      destroyChart("chart-concurrency");
      $("chart-concurrency").hidden = true;
      cmissing.hidden = false;
      cmissing.className = "notice";
      cmissing.innerHTML = `<div class="notice-title">No concurrency reported for this range</div>
        <p>Peak GPUs in use (<code>peak_gpus_in_use</code>) and available (<code>peak_gpus_available</code>) come
        with the capacity figures: see the Capacity panel for how to report worker sessions.</p>`;
    } else {
      $("chart-concurrency").hidden = false;
      cmissing.hidden = !!conc.available;
      cmissing.className = "notice short";
      if (!conc.available) cmissing.innerHTML = `<p class="small">GPUs available are not shown: no capacity reported for this range.</p>`;
      const opts = baseOpts(r, { yLabel: "GPUs", yValues: intAxis, scales: { y: { range: (u, min, max) => [0, max > 0 ? Math.ceil(max * 1.15) : 1] } } });
      opts.series.push({ label: "Peak in use", stroke: PALETTE[0], fill: alpha(PALETTE[0], 0.18), width: 1.5, points: { show: false }, value: (u, v) => (v == null ? "—" : fmtInt(v)) });
      const data = [x, conc.inUse];
      if (conc.available) {
        opts.series.push({ label: "Peak available", stroke: INK, width: 1.5, dash: [5, 4], points: { show: false }, value: (u, v) => (v == null ? "—" : fmtInt(v)) });
        data.push(conc.available);
      }
      makeChart("chart-concurrency", opts, data);
    }
  }

  function capacityMissingHtml(scopeLabel) {
    return `<div class="notice-title">No capacity reported for this range${scopeLabel ? ` (${esc(scopeLabel)})` : ""}</div>
      <p>Utilisation, available and idle GPU-hours are computed from <strong>worker sessions</strong>: each GPU worker
      reports the interval it was up and billable (<code>worker_id</code>, <code>endpoint</code>, <code>spec_name</code>,
      <code>gpu_type</code>, <code>gpu_count</code>, <code>started_at</code>, <code>ended_at</code>), or sends
      heartbeats that open and extend a session. The tasks of this range ran on workers that reported neither.</p>
      <p>How to report it: <code>POST /api/v1/gpu-usage/workers/sessions</code> when a worker starts and stops, or
      <code>POST /api/v1/gpu-usage/workers/heartbeats</code> every 30 s (also over the Redis stream, with
      <code>kind</code> session or heartbeat); see the <a href="api/v1/gpu-usage/docs">API reference</a>.
      The figures appear here for every range the sessions cover.</p>`;
  }

  // ---------------------------------------------------------------- render
  function card(key, label, value, unit, sub, cls = "", flag = "") {
    return `<div class="card ${cls}" data-card="${key}">
      <div class="card-label">${esc(label)}${flag}</div>
      <div class="card-value">${esc(value)}${unit ? ` <span class="unit">${esc(unit)}</span>` : ""}</div>
      <div class="card-sub">${sub}</div></div>`;
  }

  function renderCards(r, s, scopeLabel) {
    const total = s.total_tasks || 0;
    const failed = s.failed_tasks || 0;
    const rate = total > 0 ? failed / total : null;
    const peakAt = s.peak_time_bucket ? Date.parse(s.peak_time_bucket) / 1000 : null;
    const days = (r.end - r.start) / 86400;
    const perDay = days >= 2 && isNum(s.total_gpu_hours) ? `≈ ${fmtGpuH(s.total_gpu_hours / days)} GPU-h per day` : `over ${esc(describeSpan(r.end - r.start))}`;
    const util = isNum(s.utilization_rate) && isNum(s.available_gpu_hours) && s.available_gpu_hours > 0 ? s.utilization_rate : null;
    // Incomplete capacity reports: the flag, or utilisation above 100 % (a
    // summary can be above it with every row's flag true, when tasks ran in
    // buckets without any capacity beside buckets with some).
    const incomplete = util !== null && (s.capacity_complete === false || util > 1);
    const cards = [
      card("gpu_hours", "GPU-hours", fmtGpuH(s.total_gpu_hours ?? 0), "GPU-h", perDay),
      card("tasks", "Tasks", fmtInt(total), "", `${fmtInt(s.completed_tasks ?? 0)} completed · ${fmtInt(failed)} failed`),
      card("failure_rate", "Failure rate", fmtPct(rate), "", total > 0 ? `${fmtInt(failed)} of ${fmtInt(total)} tasks failed` : "no tasks in range", rate !== null && rate >= 0.05 ? "warn" : ""),
      card("avg_gpu_count", "GPUs per task", isNum(s.avg_gpu_count) && total > 0 ? nf(0, 2).format(s.avg_gpu_count) : "—", "", isNum(s.max_gpu_count) && total > 0 ? `average · largest task ${fmtInt(s.max_gpu_count)} GPUs` : "average"),
      card(
        "peak",
        `Peak ${LEVEL_LABEL[r.gran]}`,
        isNum(s.peak_gpu_hours) ? fmtGpuH(s.peak_gpu_hours) : "—",
        isNum(s.peak_gpu_hours) ? "GPU-h" : "",
        peakAt !== null ? `at ${esc(fmtBucket(peakAt, r.gran))}${isNum(s.peak_gpus_in_use) ? ` · up to ${fmtInt(s.peak_gpus_in_use)} GPUs at once` : ""}` : "no GPU time in range",
      ),
      card(
        "utilization",
        "Utilisation",
        util !== null ? fmtPct(util) : "—",
        "",
        util !== null
          ? `${fmtGpuH(s.idle_gpu_hours ?? 0)} GPU-h idle of ${fmtGpuH(s.available_gpu_hours)} available${incomplete ? ` · <strong>capacity reports incomplete</strong>` : ""}`
          : "no capacity reported",
        incomplete ? "warn incomplete" : "",
        incomplete ? `<span class="card-flag" title="tasks used more GPU time than the worker sessions offered">⚠ incomplete</span>` : "",
      ),
    ];
    $("cards").innerHTML = cards.join("");
    $("cards").dataset.scope = scopeLabel || "global";
  }

  function describeSpan(secs) {
    if (secs % 86400 === 0) return `${secs / 86400} day${secs === 86400 ? "" : "s"}`;
    if (secs % 3600 === 0) return `${secs / 3600} hour${secs === 3600 ? "" : "s"}`;
    return `${Math.round(secs / 60)} minutes`;
  }

  let table = { columns: [], rows: [] };
  function renderTable(t) {
    table = t;
    const thead = $("top-table").tHead;
    const tbody = $("top-table").tBodies[0];
    const numeric = [false, false, true, true, true, true, true, true, true];
    thead.innerHTML = `<tr>${t.columns.map((c, i) => `<th class="${numeric[i] ? "num" : ""}" scope="col">${esc(c)}</th>`).join("")}</tr>`;
    if (!t.rows.length) {
      tbody.innerHTML = `<tr class="empty"><td colspan="${t.columns.length}">No endpoints or specs have usage in this range.</td></tr>`;
      return;
    }
    const maxShare = Math.max(...t.rows.map((r) => r.values.share || 0), 0);
    tbody.innerHTML = t.rows
      .map((row) => {
        const selected = view.scopeType === row.kind && view.scopeValue === row.name;
        const cells = row.cells.map((c, i) => {
          if (i === 0) return `<td><span class="kind ${esc(row.kind)}">${esc(c)}</span></td>`;
          if (i === 1) return `<td class="name">${row.link ? `<a href="${esc(row.link)}">${esc(c)}</a>` : `<span class="muted">${esc(c)}</span>`}</td>`;
          if (i === 3) {
            const w = maxShare > 0 && row.values.share ? Math.max(2, Math.round((row.values.share / maxShare) * 60)) : 0;
            return `<td class="num"><span class="share"><span class="share-bar" data-w="${w}"></span>${esc(c)}</span></td>`;
          }
          const warn = i === 6 && row.values.rate !== null && row.values.rate >= 0.05 ? " warn" : "";
          if (i === 8 && row.values.incomplete) {
            return `<td class="num warn incomplete" title="capacity reports incomplete: tasks used more GPU time than the worker sessions offered">${esc(c)}</td>`;
          }
          return `<td class="num${warn}">${esc(c)}</td>`;
        });
        return `<tr class="${selected ? "selected" : ""}">${cells.join("")}</tr>`;
      })
      .join("");
    // Widths through the CSSOM: the page's CSP allows no inline style attributes.
    for (const bar of tbody.querySelectorAll(".share-bar")) bar.style.width = `${bar.dataset.w}px`;
  }

  // CSV of exactly what the table shows (same columns, same text). Cells
  // that a spreadsheet would run as a formula are prefixed with '.
  function tableCsv(t) {
    const cell = (s) => {
      let v = String(s);
      if (/^[=+\-@\t\r]/.test(v) && !/^-?[\d.,]+$/.test(v)) v = "'" + v;
      return /[",\r\n]/.test(v) || /^\s|\s$/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
    };
    return [t.columns, ...t.rows.map((r) => r.cells)].map((line) => line.map(cell).join(",")).join("\r\n") + "\r\n";
  }

  function downloadCsv() {
    const csv = tableCsv(table);
    const r = current ? current.range : null;
    const stamp = (s) => iso(s).slice(0, 16).replace(/[:]/g, "");
    const name = r ? `gpu-usage-top-${r.gran}-${stamp(r.start)}-${stamp(r.end)}.csv` : "gpu-usage-top.csv";
    const url = URL.createObjectURL(new Blob([csv], { type: "text/csv;charset=utf-8" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
    publish({ lastCsv: { name, text: csv } });
  }

  function renderRangeLabel(r) {
    const utc = useUtc();
    const name = view.range === "custom" ? "Custom range" : RANGE_NAMES[view.range];
    const sameDay = fmtDate(r.start) === fmtDate(r.end - 1);
    const to = sameDay && r.gran !== "daily" ? fmtTime(r.end) : fmtBucket(r.end, r.gran === "daily" ? "daily" : r.gran);
    $("range-label").textContent = `${name} · ${fmtBucket(r.start, r.gran)} → ${to} ${r.gran === "daily" ? "UTC" : tzName(utc)} · ${r.gran} buckets`;
  }

  function syncControls(r) {
    for (const b of document.querySelectorAll("#range-picks button")) b.classList.toggle("active", b.dataset.range === view.range);
    for (const b of document.querySelectorAll("#tz-toggle button")) b.classList.toggle("active", b.dataset.tz === view.tz);
    for (const b of document.querySelectorAll("#stack-toggle button")) b.classList.toggle("active", b.dataset.stack === view.stack);
    const sel = $("granularity");
    sel.value = view.gran;
    sel.options[0].textContent = r ? `Auto (${autoGranularity(spanOf(view))})` : "Auto";
    $("custom-range").hidden = view.range !== "custom" && !customOpen;
    // A custom range opened from a link or a reload: its inputs show it.
    if (view.range === "custom" && !customOpen) {
      $("custom-from").value = toInput(view.from, useUtc());
      $("custom-to").value = toInput(view.to, useUtc());
      $("custom-tz-hint").textContent = `times in ${tzName(useUtc())}`;
    }
    $("stack-toggle").hidden = !!view.scopeType;
    const fb = $("filter-bar");
    fb.hidden = !view.scopeType;
    if (view.scopeType) {
      $("filter-kind").textContent = view.scopeType;
      $("filter-name").textContent = view.scopeValue;
      $("filter-clear").href = hashOf({ ...view, scopeType: null, scopeValue: null });
    }
  }

  function spanOf(v) {
    return v.range === "custom" ? v.to - v.from : RANGES[v.range];
  }

  // ---------------------------------------------------------------- state and publishing
  let current = null; // the last rendered data
  const published = { state: "loading", loadSeq: 0, renderSeq: 0, errors: [] };
  window.__dashboard = published;
  function publish(patch) {
    Object.assign(published, patch);
  }

  function setState(state) {
    document.body.dataset.state = state;
    publish({ state });
  }

  function showError(e) {
    const msg = e instanceof ApiError ? e.describe() : String(e && e.message ? e.message : e);
    $("error-text").textContent = msg;
    $("error-note").textContent = current && !$("content").hidden ? "— the figures below are from the last successful load" : "";
    $("error-banner").hidden = false;
    published.errors.push(msg);
    publish({ lastError: msg });
  }
  function clearError() {
    $("error-banner").hidden = true;
  }

  // ---------------------------------------------------------------- identity and auth
  let who = null;

  async function whoami() {
    const { body } = await api("whoami");
    who = body;
    renderIdentity();
    return body;
  }

  function renderIdentity() {
    const el = $("identity");
    const btn = $("sign-out");
    el.hidden = false;
    if (!who) {
      $("identity-text").textContent = "";
      btn.hidden = true;
      el.hidden = true;
      return;
    }
    const text = who.auth === "open" ? `Open access (no tokens configured) · ${who.role}` : who.auth === "anonymous" ? "Public read access" : `${who.name} · ${who.role}`;
    $("identity-text").textContent = text;
    el.title = `role: ${who.role}\ntoken name: ${who.name}\nauth: ${who.auth}`;
    btn.hidden = who.auth === "open";
    btn.textContent = token() ? "Sign out" : "Sign in";
    $("admin").hidden = who.role !== "admin";
    publish({ role: who.role, auth: who.auth });
  }

  function showAuth(error) {
    setState("auth");
    who = null;
    renderIdentity();
    $("admin").hidden = true;
    $("content").hidden = true;
    $("filter-bar").hidden = true;
    $("auth").hidden = false;
    const err = $("auth-error");
    if (error) {
      err.textContent = `Sign-in failed: ${error instanceof ApiError ? error.describe() : String(error)}`;
      err.hidden = false;
    } else {
      err.hidden = true;
    }
    setTimeout(() => $("auth-token").focus(), 0);
    publish({ authError: error ? err.textContent : null });
  }

  async function submitToken(ev) {
    ev.preventDefault();
    const t = $("auth-token").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    try {
      await whoami();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      if (e.status === 401 || e.status === 403) {
        showAuth(e);
      } else {
        showAuth(e);
      }
      $("auth-token").select();
      return;
    }
    $("auth-token").value = "";
    $("auth").hidden = true;
    load();
  }

  function signOut() {
    if (token()) {
      sessionStorage.removeItem(TOKEN_KEY);
      who = null;
      load();
    } else {
      showAuth(null);
    }
  }

  // ---------------------------------------------------------------- freshness
  async function refreshFreshness() {
    const badge = $("freshness");
    const details = $("freshness-details");
    try {
      const { body } = await api("status");
      const levels = Array.isArray(body.levels) ? body.levels : [];
      const now = Date.parse(body.now) / 1000;
      // complete_through is the start of the first bucket that is not final;
      // the live bucket never is, so a level that is caught up has
      // complete_through = start of the current bucket and lag_seconds =
      // the time elapsed in it. What counts against the promise is how long
      // the oldest unfinished bucket has been over: behind = now -
      // (complete_through + one bucket), at least 0.
      let worst = 0;
      const rows = levels.map((l) => {
        const promise = FRESH_PROMISE[l.level];
        const through = Date.parse(l.complete_through) / 1000;
        const behind = Number.isFinite(through) && STEP[l.level] ? Math.max(0, now - through - STEP[l.level]) : l.lag_seconds;
        const grade = !isNum(behind) || !promise ? 0 : behind < promise ? 0 : behind < 2 * promise ? 1 : 2;
        worst = Math.max(worst, grade);
        return { ...l, promise, behind, grade };
      });
      const cls = ["green", "amber", "red"][worst];
      const label = ["Up to date", "Delayed", "Stale"][worst];
      const late = rows.filter((x) => x.grade === worst && worst > 0).sort((p, q) => q.behind - p.behind)[0];
      badge.className = `badge ${cls}`;
      badge.querySelector(".label").textContent = late ? `${label} · ${late.level} rows ${fmtDuration(late.behind)} behind` : label;
      badge.title = rows
        .map((x) => `${x.level}: complete through ${fmtDateTime(Date.parse(x.complete_through) / 1000)}, ${fmtDuration(x.behind)} behind (promise < ${fmtDuration(x.promise)}; lag ${fmtDuration(x.lag_seconds)})`)
        .join("\n");
      details.innerHTML = `<div class="pop-title">Rollup freshness</div>
        <table class="mini"><thead><tr><th>Level</th><th>Complete through</th><th class="num">Behind</th><th class="num">Promise</th><th class="num">Lag</th><th class="num">Pending</th></tr></thead><tbody>
        ${rows
          .map(
            (x) => `<tr data-level="${esc(x.level)}" data-grade="${["green", "amber", "red"][x.grade]}"><td><span class="dot ${["green", "amber", "red"][x.grade]}"></span>${esc(x.level)}</td>
          <td>${esc(fmtDateTime(Date.parse(x.complete_through) / 1000))}</td><td class="num">${esc(fmtDuration(x.behind))}</td>
          <td class="num">&lt; ${esc(fmtDuration(x.promise))}</td><td class="num">${esc(fmtDuration(x.lag_seconds))}</td><td class="num">${fmtInt(x.pending_buckets ?? 0)}</td></tr>`,
          )
          .join("")}
        </tbody></table>
        <p class="small muted">Every bucket before “complete through” reflects every stored record; the current
          bucket is live. Behind: how long the oldest unfinished bucket has been over. Green within the promise,
          amber up to twice it, red beyond. Lag: now − complete through. Late records for an old bucket show here as “behind” until the next rollup tick folds them in. As of ${esc(fmtDateTime(now))} ${esc(tzName(useUtc()))}.</p>`;
      publish({ freshness: { grade: cls, levels: rows.map(({ level, lag_seconds, complete_through, behind, grade }) => ({ level, lag_seconds, complete_through, behind, grade: ["green", "amber", "red"][grade] })) } });
    } catch (e) {
      badge.className = "badge grey";
      badge.querySelector(".label").textContent = e.status === 401 ? "Freshness: sign in" : "Freshness unknown";
      badge.title = e instanceof ApiError ? e.describe() : String(e);
      details.innerHTML = `<p class="small">${esc(badge.title)}</p>`;
      publish({ freshness: { grade: "grey", error: badge.title } });
    }
  }

  function toggleFreshness(force) {
    const d = $("freshness-details");
    const open = force !== undefined ? force : d.hidden;
    d.hidden = !open;
    $("freshness").setAttribute("aria-expanded", String(open));
  }

  // ---------------------------------------------------------------- load
  let customOpen = false;

  async function load() {
    const seq = ++published.loadSeq;
    clearError();
    const r = resolveRange(view, Math.floor(Date.now() / 1000));
    syncControls(r);
    if (r.buckets > MAX_BUCKETS) {
      setState("error");
      showError(`This range has ${fmtInt(r.buckets)} ${r.gran} buckets, more than one chart can show (${fmtInt(MAX_BUCKETS)}): choose a coarser granularity or a shorter range.`);
      return;
    }
    setState("loading");
    try {
      if (!who) await whoami();
      const params = { start_time: iso(r.start), end_time: iso(r.end) };
      const scoped = view.scopeType ? fetchAll(r.gran, { ...params, scope_type: view.scopeType, scope_value: view.scopeValue }) : null;
      const [global, endpoints, specs, filtered] = await Promise.all([
        fetchAll(r.gran, { ...params, scope_type: "global" }),
        fetchAll(r.gran, { ...params, scope_type: "endpoint" }),
        fetchAll(r.gran, { ...params, scope_type: "spec" }),
        scoped,
      ]);
      if (seq !== published.loadSeq) return; // a newer load is under way
      render(seq, r, { global, endpoints, specs, filtered });
      refreshFreshness();
    } catch (e) {
      if (seq !== published.loadSeq) return;
      if (e instanceof ApiError && e.status === 401) {
        const hadToken = !!token();
        if (hadToken) sessionStorage.removeItem(TOKEN_KEY);
        showAuth(hadToken ? e : null);
        refreshFreshness();
        return;
      }
      setState("error");
      showError(e);
      refreshFreshness();
    }
  }

  function render(seq, r, d) {
    $("auth").hidden = true;
    $("content").hidden = false;
    const x = Array.from({ length: r.buckets }, (_, i) => r.start + i * r.step);
    const main = d.filtered || d.global;
    const scopeLabel = view.scopeType ? `${view.scopeType} ${view.scopeValue}` : null;
    const globalGpu = dense(r, d.global.rows, "total_gpu_hours");
    const gpu = view.scopeType
      ? {
          stack: null,
          layers: [{ label: view.scopeValue, kind: "value", color: PALETTE[0], values: dense(r, main.rows, "total_gpu_hours") }],
          total: globalGpu,
          totalLabel: "All usage (global)",
        }
      : { stack: view.stack, layers: stackLayers(r, view.stack === "endpoint" ? d.endpoints.rows : d.specs.rows, globalGpu, view.stack), total: globalGpu, totalLabel: "Total (global)" };
    const completed = dense(r, main.rows, "completed_tasks");
    const failed = dense(r, main.rows, "failed_tasks");
    const totalTasks = dense(r, main.rows, "total_tasks");
    const tasks = { completed, failed, total: totalTasks, failureRate: totalTasks.map((t, i) => (t > 0 ? failed[i] / t : null)) };
    const { capacity, concurrency } = capacityOf(r, main.rows, main.summary);
    const t = tableOf(r, d.endpoints.rows, d.specs.rows, d.global.summary, d.global.rows);
    current = { range: r, x, gpu, tasks, capacity, concurrency };

    renderRangeLabel(r);
    renderCards(r, main.summary, scopeLabel);
    $("admin-range").textContent = `${fmtBucket(r.start, r.gran)} → ${fmtBucket(r.end, r.gran)} ${r.gran === "daily" ? "UTC" : tzName(useUtc())}`;
    const empty = main.rows.length === 0;
    $("empty-state").hidden = !empty;
    $("charts").hidden = empty;
    if (empty) {
      for (const id of [...charts.keys()]) destroyChart(id);
      $("empty-text").textContent = `Nothing was recorded${scopeLabel ? ` for ${scopeLabel}` : ""} between ${fmtBucket(r.start, r.gran)} and ${fmtBucket(r.end, r.gran)} (${r.gran === "daily" ? "UTC" : tzName(useUtc())}).`;
      $("empty-30d").hidden = view.range === "30d" && !view.scopeType;
      renderTable(t);
    } else {
      const subParts = view.scopeType
        ? [`${view.scopeType} ${view.scopeValue}`, "dashed: all usage"]
        : [`stacked by ${view.stack}`, `top ${TOP_N} by GPU-hours${view.stack === "spec" ? ", other, no spec" : " and other"}`, "line: total"];
      subParts.push(`per ${LEVEL_LABEL[r.gran]}`);
      $("gpu-sub").textContent = subParts.join(" · ");
      const xc = x.map((t) => t + r.step / 2);
      const s = main.summary;
      drawGpuChart(r, xc, gpu);
      drawTaskCharts(r, xc, tasks, s.total_tasks > 0 ? s.failed_tasks / s.total_tasks : null);
      $("capacity-sub").textContent = `used, available and idle GPU-hours per ${LEVEL_LABEL[r.gran]}${scopeLabel ? ` · ${scopeLabel}` : ""}`;
      drawCapacity(r, xc, capacity, concurrency, scopeLabel);
      renderTable(t);
    }
    $("updated-at").textContent = `Loaded ${fmtDateTime(Date.now() / 1000)} ${tzName(useUtc())}`;
    publish({
      renderSeq: seq,
      range: { start: iso(r.start), end: iso(r.end), granularity: r.gran, auto: r.auto, buckets: r.buckets },
      view: { ...view },
      empty,
      summary: main.summary,
      series: {
        x,
        gpuHours: { stack: gpu.stack, layers: gpu.layers.map((l) => ({ label: l.label, kind: l.kind, values: l.values })), total: gpu.total },
        tasks: { completed, failed, total: totalTasks, failureRate: tasks.failureRate },
        capacity,
        concurrency,
      },
      table: { columns: t.columns, rows: t.rows.map((row) => ({ cells: row.cells, link: row.link })) },
    });
    setState(empty ? "empty" : "ready");
  }

  // ---------------------------------------------------------------- admin
  let jobTimer = null;

  // Both actions work on the range shown and report in the same box; an
  // error is shown there and published for the tests.
  async function adminAction(action, starting, run) {
    if (!current) return;
    const out = $("admin-result");
    out.hidden = false;
    out.className = "admin-result";
    out.textContent = starting;
    try {
      await run(out, current.range);
    } catch (e) {
      out.className = "admin-result error";
      out.textContent = e instanceof ApiError ? e.describe() : String(e);
      publish({ lastAdmin: { action, error: out.textContent } });
    }
  }

  function adminAggregate() {
    return adminAction("aggregate", "Re-aggregating…", async (out, r) => {
      const { status, body } = await api("aggregate", { method: "POST", params: { granularity: "all", start_time: iso(r.start), end_time: iso(r.end) } });
      if (status === 202) {
        out.textContent = `The range is longer than the inline limit: queued as backfill job #${body.job.id}.`;
        watchJob(body.job);
      } else {
        const rows = (body.levels || []).map((l) => `${l.level} ${fmtInt(l.rows_written)} rows`).join(", ");
        out.textContent = `Re-aggregated ${body.granularity}: ${rows}.`;
        publish({ lastAdmin: { action: "aggregate", status, body } });
        load();
      }
    });
  }

  function adminBackfill() {
    return adminAction("backfill", "Starting backfill…", async (out, r) => {
      const { body } = await api("backfill", { method: "POST", params: { start_time: iso(r.start), end_time: iso(r.end) } });
      out.textContent = `Backfill job #${body.job.id} accepted.`;
      watchJob(body.job);
    });
  }

  function renderJob(job) {
    $("admin-job").hidden = false;
    $("job-title").textContent = `Backfill #${job.id}: ${fmtDateTime(Date.parse(job.start_time) / 1000)} → ${fmtDateTime(Date.parse(job.end_time) / 1000)}`;
    const st = $("job-status");
    st.textContent = job.status;
    st.className = `job-status ${job.status}`;
    const p = isNum(job.progress) ? job.progress : 0;
    $("job-bar").style.width = `${Math.round(p * 100)}%`;
    $("job-detail").textContent = `${fmtInt(job.chunks_done)} of ${fmtInt(job.chunks_total)} days done (${fmtPct(p)})${job.error ? ` · ${job.error}` : ""}`;
    publish({ job: { id: job.id, status: job.status, progress: p, chunks_done: job.chunks_done, chunks_total: job.chunks_total } });
  }

  function watchJob(job) {
    clearTimeout(jobTimer);
    renderJob(job);
    const poll = async () => {
      try {
        const { body } = await api(`backfill/${encodeURIComponent(job.id)}`);
        renderJob(body);
        if (body.status === "succeeded") {
          $("admin-result").textContent = `Backfill job #${body.id} finished.`;
          load();
          return;
        }
        if (body.status === "failed") {
          $("admin-result").className = "admin-result error";
          $("admin-result").textContent = `Backfill job #${body.id} failed: ${body.error || "see the service log"}`;
          return;
        }
      } catch (e) {
        $("job-detail").textContent = `Cannot read the job: ${e instanceof ApiError ? e.describe() : e}`;
      }
      jobTimer = setTimeout(poll, 1500);
    };
    jobTimer = setTimeout(poll, 800);
  }

  // ---------------------------------------------------------------- custom range
  const pad = (n) => String(n).padStart(2, "0");
  function toInput(secs, utc) {
    const d = new Date(secs * 1000);
    if (utc) return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }
  function fromInput(value, utc) {
    if (!value) return NaN;
    const ms = utc ? Date.parse(value + ":00Z") : new Date(value).getTime();
    return ms / 1000;
  }
  function openCustom() {
    const r = current ? current.range : resolveRange(view, Math.floor(Date.now() / 1000));
    customOpen = true;
    $("custom-from").value = toInput(view.range === "custom" ? view.from : r.start, useUtc());
    $("custom-to").value = toInput(view.range === "custom" ? view.to : r.end, useUtc());
    $("custom-tz-hint").textContent = `times in ${tzName(useUtc())}`;
    $("custom-range").hidden = false;
    for (const b of document.querySelectorAll("#range-picks button")) b.classList.toggle("active", b.dataset.range === "custom");
  }
  function applyCustom(ev) {
    ev.preventDefault();
    const from = fromInput($("custom-from").value, useUtc());
    const to = fromInput($("custom-to").value, useUtc());
    if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) {
      showError("The custom range needs a start before its end.");
      return;
    }
    customOpen = false;
    setView({ range: "custom", from, to });
  }

  // ---------------------------------------------------------------- wiring
  function init() {
    view = readHash();
    history.replaceState(null, "", hashOf(view));
    $("range-picks").addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (!b) return;
      if (b.dataset.range === "custom") {
        openCustom();
        return;
      }
      customOpen = false;
      setView({ range: b.dataset.range, from: null, to: null });
    });
    $("custom-range").addEventListener("submit", applyCustom);
    $("granularity").addEventListener("change", (e) => setView({ gran: e.target.value }));
    $("tz-toggle").addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (b) setView({ tz: b.dataset.tz });
    });
    $("stack-toggle").addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (b) setView({ stack: b.dataset.stack });
    });
    $("refresh").addEventListener("click", () => {
      load();
    });
    $("download-csv").addEventListener("click", downloadCsv);
    $("auth-form").addEventListener("submit", submitToken);
    $("sign-out").addEventListener("click", signOut);
    $("error-dismiss").addEventListener("click", clearError);
    $("empty-30d").addEventListener("click", () => setView({ range: "30d", from: null, to: null, scopeType: null, scopeValue: null }));
    $("admin-aggregate").addEventListener("click", adminAggregate);
    $("admin-backfill").addEventListener("click", adminBackfill);
    $("freshness").addEventListener("click", (e) => {
      e.stopPropagation();
      toggleFreshness();
    });
    document.addEventListener("click", (e) => {
      if (!e.target.closest(".fresh-wrap")) toggleFreshness(false);
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape") toggleFreshness(false);
    });
    window.addEventListener("hashchange", () => {
      const before = `${view.scopeType}/${view.scopeValue}`;
      view = readHash();
      // A table link (or "show everything") changes what the charts show:
      // bring them into sight.
      if (`${view.scopeType}/${view.scopeValue}` !== before) window.scrollTo({ top: 0 });
      load();
    });
    if (REFRESH_SECS > 0) {
      setInterval(() => {
        if (document.hidden || view.range === "custom" || published.state === "auth" || published.state === "loading") return;
        load();
      }, REFRESH_SECS * 1000);
    }
    load();
  }

  if (typeof uPlot === "undefined") {
    document.addEventListener("DOMContentLoaded", () => showError("The chart library did not load (dashboard/vendor/uPlot.iife.min.js)."));
  } else {
    init();
  }
})();
