//! Usage records: one per finished task, in completion order.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::RngExt;
use rand_distr::{Exp1, StandardNormal};
use serde::Serialize;

use crate::generator::Inner;
use crate::rng::{Purpose, Stream, stream};
use crate::time::{TimeRange, from_ms};
use crate::timeline::Cursor;

/// A task's final status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Completed,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
        }
    }
}

/// One usage record. Serializes to exactly the JSON `POST /records`
/// accepts (the API's field names; absent optional fields are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub task_id: String,
    pub endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_name: Option<String>,
    pub gpu_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory_gb: Option<u32>,
    #[serde(serialize_with = "crate::time::ser_time")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::ser_time")]
    pub completed_at: DateTime<Utc>,
    pub status: Status,
    /// When the platform stored it (a second or so after completion). Not
    /// sent (the service sets it); used by the CSV output.
    #[serde(skip)]
    pub created_at: DateTime<Utc>,
}

impl Record {
    /// `completed_at − started_at` in milliseconds.
    pub fn duration_ms(&self) -> i64 {
        (self.completed_at - self.started_at).num_milliseconds()
    }

    /// Whole seconds, floored, as the service stores them.
    pub fn duration_seconds(&self) -> i64 {
        self.duration_ms().div_euclid(1000)
    }

    /// `gpu_count × duration / 3600` in millionths of a GPU-hour, rounded
    /// half away from zero (exact integer arithmetic).
    pub fn gpu_micro_hours(&self) -> i64 {
        let gpu_ms = i64::from(self.gpu_count) * self.duration_ms().max(0);
        // gpu_ms / 3_600_000 × 1e6 = gpu_ms / 3.6 = gpu_ms × 10 / 36.
        (gpu_ms * 10 + 18) / 36
    }

    /// GPU-hours with six decimals, as in `DECIMAL(16,6)`: `"0.012345"`.
    pub fn gpu_hours_text(&self) -> String {
        let m = self.gpu_micro_hours();
        format!("{}.{:06}", m / 1_000_000, m % 1_000_000)
    }
}

/// How many random workers of the endpoint are tried for a task before
/// settling for a worker that was up only for its end.
const WORKER_TRIES: usize = 6;

/// The records completing in a range, in completion order; see
/// [`Generator::records`](crate::Generator::records).
pub struct Records {
    inner: Arc<Inner>,
    range: TimeRange,
    /// The chunk being read and the next one.
    chunk: i64,
    last_chunk: i64,
    state: Option<ChunkState>,
    cursors: Vec<Cursor>,
}

/// Position inside one chunk's arrival process.
struct ChunkState {
    rng: Stream,
    start_ms: i64,
    len_s: f64,
    /// Operational time reached and its total over the chunk.
    s: f64,
    total: f64,
    n: u64,
}

impl Records {
    pub(crate) fn new(inner: Arc<Inner>, range: TimeRange) -> Self {
        let chunk_ms = inner.chunk_ms;
        let workers = inner.fleet.workers.len();
        Self {
            chunk: range.start_ms().div_euclid(chunk_ms),
            last_chunk: (range.end_ms() - 1).div_euclid(chunk_ms),
            range,
            inner,
            state: None,
            cursors: vec![Cursor::default(); workers],
        }
    }

    fn open_chunk(&self, chunk: i64) -> ChunkState {
        let chunk_ms = self.inner.chunk_ms;
        let len_s = chunk_ms as f64 / 1000.0;
        let start_ms = chunk * chunk_ms;
        ChunkState {
            rng: stream(self.inner.config.seed, Purpose::Arrivals, chunk as u64, 0),
            start_ms,
            len_s,
            s: 0.0,
            total: self.inner.intensity.cumulative(start_ms, len_s),
            n: 0,
        }
    }

    /// Next arrival of the current chunk as (chunk, n, completion ms), or
    /// `None` when the chunk is used up.
    fn next_arrival(&mut self) -> Option<(u64, i64)> {
        let st = self.state.as_mut()?;
        let e: f64 = st.rng.sample(Exp1);
        st.s += e;
        if st.s >= st.total {
            return None;
        }
        let u = self.inner.intensity.invert(st.start_ms, st.s, st.len_s);
        let t = st.start_ms + ((u * 1000.0) as i64).min(self.inner.chunk_ms - 1);
        st.n += 1;
        Some((st.n - 1, t))
    }

    /// Draws the record completing at `completed`. Every arrival of a chunk
    /// is drawn, inside the range or not, so a chunk's records never
    /// depend on the range that asked for them.
    fn draw(&mut self, n: u64, completed: i64) -> Option<Record> {
        let Self {
            inner,
            range,
            state,
            cursors,
            ..
        } = self;
        let (cfg, fleet) = (&inner.config, &inner.fleet);
        let st = state.as_mut()?;
        let rng = &mut st.rng;
        let ei = fleet.endpoint_for(rng.random());
        let endpoint = &fleet.endpoints[ei];
        let mut duration = endpoint.durations.sample(rng);
        let failed = rng.random_bool(cfg.failed_share);
        if failed {
            // Failures stop somewhere along the way.
            duration = (duration as f64 * rng.random::<f64>()) as i64;
        }
        let (wi, started) = pick_worker(
            rng,
            cursors,
            inner,
            &endpoint.workers,
            completed - duration,
            completed,
        );
        let cpu_only = rng.random_bool(cfg.cpu_only_share);
        let no_spec = rng.random_bool(cfg.no_spec_share);
        let z: f64 = rng.sample(StandardNormal);
        let store_lag_ms = ((1_200.0 * (0.8 * z).exp()) as i64).clamp(50, 600_000);
        if !(range.start_ms()..range.end_ms()).contains(&completed) {
            return None;
        }
        let worker = &fleet.workers[wi];
        let spec = &fleet.specs[worker.spec];
        let chunk = st.start_ms / inner.chunk_ms;
        Some(Record {
            task_id: format!("{}-{}-{chunk}-{n}", cfg.task_prefix, cfg.seed),
            endpoint: endpoint.name.clone(),
            worker_id: Some(worker.id.clone()),
            spec_name: (!no_spec).then(|| spec.name.clone()),
            gpu_count: if cpu_only { 0 } else { worker.gpu_count },
            gpu_type: Some(spec.gpu_type.clone()),
            gpu_memory_gb: Some(spec.gpu_memory_gb),
            started_at: from_ms(started),
            completed_at: from_ms(completed),
            status: if failed {
                Status::Failed
            } else {
                Status::Completed
            },
            created_at: from_ms(completed + store_lag_ms),
        })
    }
}

/// A worker of the endpoint up for the whole task if one is found in a few
/// tries; else one up at its end, the task shortened to start with that
/// session; else (the endpoint's workers all down) any of them.
fn pick_worker(
    rng: &mut Stream,
    cursors: &mut [Cursor],
    inner: &Inner,
    pool: &[usize],
    started: i64,
    completed: i64,
) -> (usize, i64) {
    let probe = (completed - 1).max(started);
    let mut up_at_end = None;
    let mut any = None;
    for _ in 0..WORKER_TRIES {
        let w = pool[rng.random_range(0..pool.len())];
        let phase = inner.fleet.workers[w].phase_ms;
        match cursors[w].session_at(inner.config.seed, w, phase, probe) {
            Some((s, e)) if s <= started && completed <= e => return (w, started),
            // The probe lies inside the session, so the task's end does too.
            Some((s, _)) => {
                up_at_end.get_or_insert((w, s));
            }
            _ => {
                any.get_or_insert(w);
            }
        }
    }
    match (up_at_end, any) {
        (Some((w, s)), _) => (w, s.max(started)),
        (None, Some(w)) => (w, started),
        (None, None) => (pool[0], started),
    }
}

impl Iterator for Records {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if self.state.is_none() {
                if self.chunk > self.last_chunk {
                    return None;
                }
                self.state = Some(self.open_chunk(self.chunk));
                self.chunk += 1;
            }
            match self.next_arrival() {
                None => self.state = None,
                Some((n, t)) => {
                    if let Some(r) = self.draw(n, t) {
                        return Some(r);
                    }
                }
            }
        }
    }
}
