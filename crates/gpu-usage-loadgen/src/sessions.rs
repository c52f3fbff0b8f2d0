//! Worker sessions and heartbeats (docs/CAPACITY.md), from the same timelines the
//! records are attributed to.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::Worker;
use crate::generator::Inner;
use crate::time::{TimeRange, from_ms};
use crate::timeline::{Span, block_of, block_sessions};

/// A worker that was up: `POST /workers/sessions` JSON. `ended_at` is
/// `null` while the worker is still up at the configuration's `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    #[serde(flatten)]
    pub worker: WorkerIdentity,
    #[serde(serialize_with = "crate::time::ser_time")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::ser_opt_time")]
    pub ended_at: Option<DateTime<Utc>>,
}

/// A worker saying it is up: `POST /workers/heartbeats` JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    #[serde(flatten)]
    pub worker: WorkerIdentity,
    #[serde(serialize_with = "crate::time::ser_time")]
    pub at: DateTime<Utc>,
}

/// The worker a session or heartbeat is about, as both send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerIdentity {
    pub worker_id: String,
    pub endpoint: String,
    pub spec_name: Option<String>,
    pub gpu_type: Option<String>,
    pub gpu_count: u32,
}

/// One worker's sessions that overlap `[lo, hi)`, in order, one block at
/// a time.
struct SpanWalker {
    worker: usize,
    phase_ms: i64,
    block: i64,
    last_block: i64,
    buf: Vec<Span>,
    pos: usize,
    lo: i64,
    hi: i64,
}

impl SpanWalker {
    fn new(worker: &Worker, index: usize, lo: i64, hi: i64) -> Self {
        Self {
            worker: index,
            phase_ms: worker.phase_ms,
            block: block_of(lo, worker.phase_ms),
            last_block: block_of(hi - 1, worker.phase_ms),
            buf: Vec::new(),
            pos: usize::MAX,
            lo,
            hi,
        }
    }

    fn next_span(&mut self, seed: u64) -> Option<Span> {
        loop {
            if self.pos >= self.buf.len() {
                if self.block > self.last_block || self.lo >= self.hi {
                    return None;
                }
                block_sessions(seed, self.worker, self.phase_ms, self.block, &mut self.buf);
                self.block += 1;
                self.pos = 0;
                continue;
            }
            let (s, e) = self.buf[self.pos];
            self.pos += 1;
            if e > self.lo && s < self.hi {
                return Some((s, e));
            }
        }
    }
}

/// Where the reports stop: the range's end, or `now` if earlier.
fn report_end(inner: &Inner, range: TimeRange) -> i64 {
    let end = range.end_ms();
    inner
        .config
        .now
        .map_or(end, |now| end.min(now.timestamp_millis()))
}

fn identity(inner: &Inner, w: usize) -> WorkerIdentity {
    let worker = &inner.fleet.workers[w];
    let spec = &inner.fleet.specs[worker.spec];
    WorkerIdentity {
        worker_id: worker.id.clone(),
        endpoint: inner.fleet.endpoints[worker.endpoint].name.clone(),
        spec_name: Some(spec.name.clone()),
        gpu_type: Some(spec.gpu_type.clone()),
        gpu_count: worker.gpu_count,
    }
}

/// Sessions overlapping a range, ordered by `started_at` (then worker);
/// see [`Generator::sessions`](crate::Generator::sessions).
pub struct Sessions {
    inner: Arc<Inner>,
    walkers: Vec<SpanWalker>,
    /// The next session of each worker: (start, worker, end).
    heap: BinaryHeap<Reverse<(i64, usize, i64)>>,
}

impl Sessions {
    pub(crate) fn new(inner: Arc<Inner>, range: TimeRange) -> Self {
        let hi = report_end(&inner, range);
        let seed = inner.config.seed;
        let mut walkers: Vec<SpanWalker> = inner
            .fleet
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| SpanWalker::new(w, i, range.start_ms(), hi))
            .collect();
        let heap = walkers
            .iter_mut()
            .filter_map(|w| w.next_span(seed).map(|(s, e)| Reverse((s, w.worker, e))))
            .collect();
        Self {
            inner,
            walkers,
            heap,
        }
    }
}

impl Iterator for Sessions {
    type Item = Session;

    fn next(&mut self) -> Option<Session> {
        let Reverse((start, w, end)) = self.heap.pop()?;
        if let Some((s, e)) = self.walkers[w].next_span(self.inner.config.seed) {
            self.heap.push(Reverse((s, w, e)));
        }
        let now = self.inner.config.now.map(|t| t.timestamp_millis());
        Some(Session {
            worker: identity(&self.inner, w),
            started_at: from_ms(start),
            ended_at: match now {
                Some(now) if end > now => None,
                _ => Some(from_ms(end)),
            },
        })
    }
}

/// Heartbeats inside a range, ordered by `at` (then worker); see
/// [`Generator::heartbeats`](crate::Generator::heartbeats).
pub struct Heartbeats {
    inner: Arc<Inner>,
    interval_ms: i64,
    walkers: Vec<SpanWalker>,
    /// Each worker's current session.
    spans: Vec<Span>,
    /// The next heartbeat of each worker: (at, worker).
    heap: BinaryHeap<Reverse<(i64, usize)>>,
}

impl Heartbeats {
    pub(crate) fn new(inner: Arc<Inner>, range: TimeRange, interval_ms: i64) -> Self {
        let hi = report_end(&inner, range);
        let mut hb = Self {
            walkers: inner
                .fleet
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| SpanWalker::new(w, i, range.start_ms(), hi))
                .collect(),
            spans: vec![(0, 0); inner.fleet.workers.len()],
            heap: BinaryHeap::new(),
            inner,
            interval_ms,
        };
        for w in 0..hb.walkers.len() {
            hb.advance(w, None);
        }
        hb
    }

    /// Queues worker `w`'s next heartbeat: the one after `after` in its
    /// current session, else the first of its next session inside the range.
    fn advance(&mut self, w: usize, after: Option<i64>) {
        let seed = self.inner.config.seed;
        let iv = self.interval_ms;
        let walker = &mut self.walkers[w];
        let mut candidate = after.map(|t| t + iv);
        loop {
            let (_, end) = self.spans[w];
            if let Some(t) = candidate
                && t < end.min(walker.hi)
            {
                self.heap.push(Reverse((t, w)));
                return;
            }
            let Some((s, e)) = walker.next_span(seed) else {
                return;
            };
            self.spans[w] = (s, e);
            // Beats fall at s + k·interval; the first one at or after `lo`.
            let behind = (walker.lo - s).max(0);
            let k = behind / iv + i64::from(behind % iv != 0);
            candidate = Some(s + k * iv);
        }
    }
}

impl Iterator for Heartbeats {
    type Item = Heartbeat;

    fn next(&mut self) -> Option<Heartbeat> {
        let Reverse((at, w)) = self.heap.pop()?;
        self.advance(w, Some(at));
        Some(Heartbeat {
            worker: identity(&self.inner, w),
            at: from_ms(at),
        })
    }
}
