// Known usage data for the browser tests (and for trying the dashboard by
// hand: `node tests/browser/seed.mjs http://127.0.0.1:8080`).
//
// Deterministic for a given `now`: 11 endpoints (so the stack has "other"),
// 4 specs plus records without a spec, some FAILED, spread over the last 7
// days and denser in the last 6 hours so every quick range has data.

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
  return out;
}

/** Posts records in batches, then recomputes every level day by day. */
export async function seed(base, { headers = {}, nowMs = Date.now(), records = makeRecords(nowMs) } = {}) {
  const api = `${base}/api/v1/gpu-usage`;
  for (let i = 0; i < records.length; i += 500) {
    const res = await fetch(`${api}/records`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(records.slice(i, i + 500)),
    });
    const body = await res.json();
    if (res.status !== 200 || body.inserted + body.duplicates !== Math.min(500, records.length - i)) {
      throw new Error(`ingest failed: ${res.status} ${JSON.stringify(body)}`);
    }
  }
  await aggregate(base, records, { headers });
  return records;
}

export async function aggregate(base, records, { headers = {} } = {}) {
  const api = `${base}/api/v1/gpu-usage`;
  const first = Math.min(...records.map((r) => Date.parse(r.started_at)));
  const last = Math.max(...records.map((r) => Date.parse(r.completed_at)));
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
  console.log(`seeded ${recs.length} records into ${base}`);
}
