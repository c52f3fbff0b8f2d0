// Known usage data for the browser tests (and for trying the dashboard by
// hand: `node tests/browser/seed.mjs http://127.0.0.1:8080`).
//
// Deterministic for a given `now`: 11 endpoints (so the stack has "other"),
// 4 specs plus records without a spec, some FAILED, spread over the last 7
// days and denser in the last 6 hours so every quick range has data.
//
// Capacity: worker sessions for every (endpoint, spec) pair that ran tasks,
// hour by hour, each offering the pair's peak concurrent GPUs in that hour
// (consecutive hours with the same offer are one session), from the first
// UTC midnight at least 18 hours after the first record (`sessionsStart`)
// until now. So the first day has records and no sessions (no capacity
// reported), and the rest has real utilisation below 100 % — except around
// `bt-overcap`, a task 30 hours ago that uses more GPUs than all the
// sessions of its time offer together (capacity_complete: false there).

const ENDPOINTS = [
  ["flux-dev", 9],
  ["sdxl-turbo", 7],
  ["llama-70b-chat", 6],
  ["whisper-large-v3", 5],
  ["qwen2-vl-7b", 4],
  ["stable-video", 3],
  ["bark-tts", 2],
  ["mixtral-8x7b", 2],
  ["codellama-34b", 1],
  ["blip2-caption", 1],
  ["esrgan-upscale", 1],
];
const SPECS = [
  ["a100-80g", "NVIDIA A100", 80, 5],
  ["h100-80g", "NVIDIA H100", 80, 3],
  ["l40s-48g", "NVIDIA L40S", 48, 2],
  ["rtx4090-24g", "NVIDIA RTX 4090", 24, 2],
  [null, null, null, 1],
];
const GPU_COUNTS = [1, 1, 1, 2, 2, 4, 8];

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function weighted(rand, items, weightIdx) {
  const total = items.reduce((a, it) => a + it[weightIdx], 0);
  let x = rand() * total;
  for (const it of items) {
    x -= it[weightIdx];
    if (x < 0) return it;
  }
  return items[items.length - 1];
}

/** Records ending before `nowMs` (rounded down to the second). */
export function makeRecords(nowMs, { seed = 42, older = 520, recent = 170, lastHour = 40 } = {}) {
  const now = Math.floor(nowMs / 1000) * 1000;
  const rand = rng(seed);
  const out = [];
  const add = (completedAt, i, tag) => {
    const [endpoint] = weighted(rand, ENDPOINTS, 1);
    const [spec, gpuType, mem] = weighted(rand, SPECS, 3);
    const gpuCount = GPU_COUNTS[Math.floor(rand() * GPU_COUNTS.length)];
    const durSec = 20 + Math.floor(rand() * rand() * 2400);
    const completed = Math.min(completedAt, now - 1000);
    const started = completed - durSec * 1000;
    const failed = rand() < 0.09;
    const rec = {
      task_id: `bt-${tag}-${i}`,
      endpoint,
      worker_id: `w-${Math.floor(rand() * 12)}`,
      gpu_count: gpuCount,
      started_at: new Date(started).toISOString(),
      completed_at: new Date(completed).toISOString(),
      status: failed ? "FAILED" : "COMPLETED",
    };
    if (spec) {
      rec.spec_name = spec;
      rec.gpu_type = gpuType;
      rec.gpu_memory_gb = mem;
    }
    out.push(rec);
  };
  const day = 86400 * 1000;
  for (let i = 0; i < older; i++) add(now - 6 * 3600 * 1000 - rand() * (7 * day - 7 * 3600 * 1000), i, "old");
  for (let i = 0; i < recent; i++) add(now - 3600 * 1000 - rand() * 5 * 3600 * 1000, i, "recent");
  for (let i = 0; i < lastHour; i++) add(now - 60 * 1000 - rand() * 58 * 60 * 1000, i, "hour");
  // One record that is certainly without a spec and failed, in the last hour.
  out.push({
    task_id: "bt-nospec-failed",
    endpoint: "flux-dev",
    gpu_count: 2,
    started_at: new Date(now - 20 * 60 * 1000).toISOString(),
    completed_at: new Date(now - 12 * 60 * 1000).toISOString(),
    status: "FAILED",
  });
  // More GPUs than the sessions offer (they are sized without it).
  out.push({
    task_id: OVERCAP_TASK,
    endpoint: "sdxl-turbo",
    spec_name: "h100-80g",
    gpu_type: "NVIDIA H100",
    gpu_memory_gb: 80,
    gpu_count: 16,
    started_at: new Date(now - 30 * 3600 * 1000).toISOString(),
    completed_at: new Date(now - 30 * 3600 * 1000 + 15 * 60 * 1000).toISOString(),
    status: "COMPLETED",
  });
  return out;
}

/** The task that uses more GPUs than the worker sessions offer. */
export const OVERCAP_TASK = "bt-overcap";
const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;
const CHUNK = HOUR;

/** When the worker sessions begin: a UTC midnight, at least 18 h after the first record. */
export function sessionsStart(records) {
  const first = Math.min(...records.map((r) => Date.parse(r.started_at)));
  return Math.ceil((first + 18 * HOUR) / DAY) * DAY;
}

/** Most GPUs the intervals [s, e) use at one instant (half-open). */
function peak(intervals) {
  const ev = [];
  for (const [s, e, n] of intervals) if (e > s) ev.push([s, n], [e, -n]);
  ev.sort((a, b) => a[0] - b[0] || a[1] - b[1]); // ends before starts at the same instant
  let cur = 0;
  let max = 0;
  for (const [, d] of ev) {
    cur += d;
    max = Math.max(max, cur);
  }
  return max;
}

/**
 * Worker sessions for `records` (see the top of this file), from
 * `sessionsStart(records)` to `nowMs`: per (endpoint, spec) pair, the
 * pair's peak concurrent GPUs of each hour, consecutive hours with the same
 * offer as one session. `OVERCAP_TASK` is left out of the sizing, and its
 * `gpu_count` is set to 4 more than every session of its time offers.
 */
export function makeSessions(records, nowMs) {
  const end = Math.floor(nowMs / 1000) * 1000;
  const start = sessionsStart(records);
  const pairs = new Map();
  for (const r of records) {
    if (r.task_id === OVERCAP_TASK) continue;
    const key = `${r.endpoint}\u0000${r.spec_name ?? ""}`;
    if (!pairs.has(key)) pairs.set(key, { endpoint: r.endpoint, spec: r.spec_name ?? null, gpuType: r.gpu_type ?? null, tasks: [] });
    pairs.get(key).tasks.push([Date.parse(r.started_at), Date.parse(r.completed_at), r.gpu_count]);
  }
  const out = [];
  for (const p of [...pairs.values()].sort((a, b) => (a.endpoint + (a.spec ?? "") < b.endpoint + (b.spec ?? "") ? -1 : 1))) {
    let open = null;
    for (let c = start, i = 0; c < end; c += CHUNK, i++) {
      const to = Math.min(c + CHUNK, end);
      const gpus = peak(p.tasks.map(([s, e, n]) => [Math.max(s, c), Math.min(e, to), n]));
      if (open && open.gpu_count === gpus) {
        open.ended_at = new Date(to).toISOString();
        continue;
      }
      open = null;
      if (gpus === 0) continue;
      open = {
        worker_id: `bt-${p.endpoint}-${p.spec ?? "nospec"}-${i}`,
        endpoint: p.endpoint,
        gpu_count: gpus,
        started_at: new Date(c).toISOString(),
        ended_at: new Date(to).toISOString(),
      };
      if (p.spec) {
        open.spec_name = p.spec;
        open.gpu_type = p.gpuType;
      }
      out.push(open);
    }
  }
  const over = records.find((r) => r.task_id === OVERCAP_TASK);
  if (over) {
    const [s, e] = [Date.parse(over.started_at), Date.parse(over.completed_at)];
    const offered = peak(out.map((x) => [Math.max(Date.parse(x.started_at), s), Math.min(Date.parse(x.ended_at), e), x.gpu_count]));
    over.gpu_count = offered + 4;
  }
  return out;
}

/** Posts `items` to `path` in batches of 500, checking every one was stored. */
async function post(api, path, items, headers) {
  for (let i = 0; i < items.length; i += 500) {
    const batch = items.slice(i, i + 500);
    const res = await fetch(`${api}/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(batch),
    });
    const body = await res.json();
    if (res.status !== 200 || body.inserted + body.duplicates !== batch.length || (body.conflicts ?? []).length) {
      throw new Error(`POST ${path} failed: ${res.status} ${JSON.stringify(body).slice(0, 500)}`);
    }
  }
}

/**
 * Posts records and worker sessions (`sessions: false` for records only)
 * in batches, then recomputes every level day by day. Returns the records;
 * the sessions posted are `records.sessions`.
 */
export async function seed(base, { headers = {}, nowMs = Date.now(), records = makeRecords(nowMs), sessions = true } = {}) {
  const api = `${base}/api/v1/gpu-usage`;
  // Sessions first: sizing them sets the over-capacity task's GPUs.
  const posted = sessions ? makeSessions(records, nowMs) : [];
  await post(api, "records", records, headers);
  await post(api, "workers/sessions", posted, headers);
  await aggregate(base, records, { headers, sessions: posted });
  records.sessions = posted;
  return records;
}

export async function aggregate(base, records, { headers = {}, sessions = [] } = {}) {
  const api = `${base}/api/v1/gpu-usage`;
  const first = Math.min(...records.map((r) => Date.parse(r.started_at)));
  const last = Math.max(...records.map((r) => Date.parse(r.completed_at)), ...sessions.map((s) => Date.parse(s.ended_at)));
  const day = 86400 * 1000;
  let t = Math.floor(first / day) * day;
  const end = Math.ceil((last + 1) / 60000) * 60000;
  while (t < end) {
    const to = Math.min(t + day, end);
    const url = `${api}/aggregate?granularity=all&start_time=${new Date(t).toISOString()}&end_time=${new Date(to).toISOString()}`;
    const res = await fetch(url, { method: "POST", headers });
    if (res.status !== 200) throw new Error(`aggregate ${url}: ${res.status} ${await res.text()}`);
    t = to;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const base = process.argv[2] || "http://127.0.0.1:8080";
  const headers = process.env.TOKEN ? { authorization: `Bearer ${process.env.TOKEN}` } : {};
  const recs = await seed(base, { headers });
  console.log(`seeded ${recs.length} records and ${recs.sessions.length} worker sessions into ${base}`);
}
