//! Minute buckets from records and sessions: the hot loop of every rebuild.
//!
//! A long task touches every minute it overlaps in three scopes, so this
//! loop runs tens of millions of times in a full rebuild. Scopes are
//! interned to small integers once per record and minutes are epoch
//! milliseconds, so the loop hashes two integers instead of cloning and
//! comparing scope strings; the ordered [`Buckets`] are built once at the
//! end, one entry per row that will be written.

use std::collections::HashMap;

use chrono::DateTime;

use super::concurrency::Steps;
use super::{Accum, Buckets, RecordSlice, SessionSlice};
use crate::types::{Scope, TimeRange};

const MINUTE_MS: i64 = 60_000;

/// Minute buckets inside `range` (minute-aligned) from records and
/// sessions: GPU time used and available by overlap, task figures in the
/// minute holding `completed_at`, idle time, overuse and peak concurrency
/// per minute.
pub fn minutes_from_sources(
    records: &[RecordSlice],
    sessions: &[SessionSlice],
    range: TimeRange,
) -> Buckets {
    let mut grid = Grid::new(range);
    for r in records {
        let ids = grid.intern(&r.endpoint, r.spec_name.as_deref());
        let done = floor_minute(r.completed_at.timestamp_millis());
        if done >= grid.start && done < grid.end {
            for &id in ids.iter().flatten() {
                grid.cell(done, id).add_completion(r.gpu_count, r.status);
            }
        }
        let interval = (r.started_at, r.completed_at);
        grid.spread(Source::Used, ids, interval, r.gpu_count);
    }
    for s in sessions {
        let ids = grid.intern(&s.endpoint, s.spec_name.as_deref());
        grid.spread(
            Source::Available,
            ids,
            (s.started_at, s.counted_until),
            s.gpu_count,
        );
    }
    grid.into_buckets()
}

/// Whether an interval is GPU time used (a task) or made available (a
/// session).
#[derive(Clone, Copy)]
enum Source {
    Used,
    Available,
}

/// The global scope, the endpoint's and the spec's (when it has one).
type ScopeIds = [Option<u32>; 3];

struct Grid {
    start: i64,
    end: i64,
    scopes: Vec<Scope>,
    ids: HashMap<Scope, u32>,
    cells: HashMap<(i64, u32), Accum>,
    in_use: Vec<Steps>,
    available: Vec<Steps>,
}

impl Grid {
    fn new(range: TimeRange) -> Self {
        Grid {
            start: range.start().timestamp_millis(),
            end: range.end().timestamp_millis(),
            scopes: Vec::new(),
            ids: HashMap::new(),
            cells: HashMap::new(),
            in_use: Vec::new(),
            available: Vec::new(),
        }
    }

    fn intern(&mut self, endpoint: &str, spec_name: Option<&str>) -> ScopeIds {
        let mut out = [None; 3];
        for (slot, scope) in out.iter_mut().zip(Scope::of_record(endpoint, spec_name)) {
            let id = match self.ids.get(&scope) {
                Some(&id) => id,
                None => {
                    let id = u32::try_from(self.scopes.len()).unwrap_or(u32::MAX);
                    self.scopes.push(scope.clone());
                    self.ids.insert(scope, id);
                    self.in_use.push(Steps::default());
                    self.available.push(Steps::default());
                    id
                }
            };
            *slot = Some(id);
        }
        out
    }

    fn cell(&mut self, minute_ms: i64, id: u32) -> &mut Accum {
        self.cells.entry((minute_ms, id)).or_default()
    }

    /// Adds `gpus × |interval ∩ minute|` to every minute of the range the
    /// interval overlaps, and its steps to the scopes' sweeps.
    fn spread(
        &mut self,
        source: Source,
        ids: ScopeIds,
        (start, end): (DateTime<chrono::Utc>, DateTime<chrono::Utc>),
        gpus: i32,
    ) {
        let (start, end) = (start.timestamp_millis(), end.timestamp_millis());
        if gpus <= 0 || start >= end {
            return;
        }
        let (from, to) = (start.max(self.start), end.min(self.end));
        if from >= to {
            return;
        }
        let gpus = i64::from(gpus);
        for &id in ids.iter().flatten() {
            let steps = match source {
                Source::Used => &mut self.in_use,
                Source::Available => &mut self.available,
            };
            if let Some(s) = steps.get_mut(id as usize) {
                s.add(from, to, gpus);
            }
        }
        let mut m = floor_minute(from);
        while m < to {
            let overlap = end.min(m + MINUTE_MS) - start.max(m);
            if overlap > 0 {
                for &id in ids.iter().flatten() {
                    let cell = self.cell(m, id);
                    match source {
                        Source::Used => cell.gpu_ms += overlap * gpus,
                        Source::Available => cell.avail_ms += overlap * gpus,
                    }
                }
            }
            m += MINUTE_MS;
        }
    }

    /// Peaks on the minutes that have a row, idle and overuse per minute,
    /// then the rows in (minute, scope) order.
    fn into_buckets(mut self) -> Buckets {
        for (source, steps) in [
            (Source::Used, std::mem::take(&mut self.in_use)),
            (Source::Available, std::mem::take(&mut self.available)),
        ] {
            for (id, s) in (0u32..).zip(steps) {
                for (minute_ms, peak) in s.minute_peaks() {
                    if let Some(acc) = self.cells.get_mut(&(minute_ms, id)) {
                        match source {
                            Source::Used => acc.peak_in_use = peak,
                            Source::Available => acc.peak_available = peak,
                        }
                    }
                }
            }
        }
        let mut out = Buckets::new();
        for ((minute_ms, id), mut acc) in self.cells {
            acc.idle_ms = (acc.avail_ms - acc.gpu_ms).max(0);
            acc.overused_minutes = i64::from(acc.gpu_ms > acc.avail_ms);
            if let (Some(at), Some(scope)) = (
                DateTime::from_timestamp_millis(minute_ms),
                self.scopes.get(id as usize),
            ) {
                out.insert((at, scope.clone()), acc);
            }
        }
        out
    }
}

fn floor_minute(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}
