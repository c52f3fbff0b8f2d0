//! The accounting arithmetic, pure and in memory.
//!
//! Everything is integer: GPU time (used and available) in
//! GPU-milliseconds, gpu_count sums for task-weighted averages, counts of
//! over-capacity minutes, peak concurrency in GPUs. Decimals are produced
//! only when a row is written, so recombining minute → hour → day never
//! accumulates rounding.

mod concurrency;
mod minutes;

pub use minutes::minutes_from_sources;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::types::{Granularity, Scope, TaskStatus};

/// The fields of a record the rollups need (read by position: see
/// `store::select_records`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSlice {
    pub endpoint: String,
    pub spec_name: Option<String>,
    pub gpu_count: i32,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub status: TaskStatus,
}

/// The fields of a worker session the rollups need: the GPUs it made
/// available over `[started_at, counted_until)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSlice {
    pub endpoint: String,
    pub spec_name: Option<String>,
    pub gpu_count: i32,
    pub started_at: DateTime<Utc>,
    pub counted_until: DateTime<Utc>,
}

/// Additive (and max-able) quantities of one (bucket, scope).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accum {
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    pub gpu_ms: i64,
    pub gpu_count_sum: i64,
    pub max_gpu_count: i32,
    /// Finer bucket with the most GPU time (earliest on ties) and its time;
    /// `None` when the bucket holds no GPU time. Unused at minute level.
    pub peak: Option<(DateTime<Utc>, i64)>,
    /// GPU time the sessions made available.
    pub avail_ms: i64,
    /// Σ over minutes of max(available − used, 0): idle in one minute is
    /// not cancelled by overuse in another.
    pub idle_ms: i64,
    /// Minutes where tasks used more than was available.
    pub overused_minutes: i64,
    /// Most GPUs used, and available, at one instant.
    pub peak_in_use: i64,
    pub peak_available: i64,
}

impl Accum {
    fn add_completion(&mut self, gpu_count: i32, status: TaskStatus) {
        self.total_tasks += 1;
        match status {
            TaskStatus::Completed => self.completed_tasks += 1,
            TaskStatus::Failed => self.failed_tasks += 1,
        }
        self.gpu_count_sum += i64::from(gpu_count);
        self.max_gpu_count = self.max_gpu_count.max(gpu_count);
    }

    /// Adds a finer bucket starting at `at`. Finer buckets must arrive in
    /// ascending time for the tie rule (earliest wins) to hold.
    fn absorb(&mut self, at: DateTime<Utc>, finer: &Accum) {
        self.total_tasks += finer.total_tasks;
        self.completed_tasks += finer.completed_tasks;
        self.failed_tasks += finer.failed_tasks;
        self.gpu_ms += finer.gpu_ms;
        self.gpu_count_sum += finer.gpu_count_sum;
        self.max_gpu_count = self.max_gpu_count.max(finer.max_gpu_count);
        if finer.gpu_ms > 0 && self.peak.is_none_or(|(_, best)| finer.gpu_ms > best) {
            self.peak = Some((at, finer.gpu_ms));
        }
        self.avail_ms += finer.avail_ms;
        self.idle_ms += finer.idle_ms;
        self.overused_minutes += finer.overused_minutes;
        self.peak_in_use = self.peak_in_use.max(finer.peak_in_use);
        self.peak_available = self.peak_available.max(finer.peak_available);
    }

    /// used / available of the same bucket (a ratio of the sums), 4
    /// decimals rounded half away from zero; `None` when nothing was
    /// available. Never clamped: above 1 means incomplete capacity reports.
    pub fn utilization(&self) -> Option<Decimal> {
        (self.avail_ms > 0).then(|| {
            (Decimal::from(self.gpu_ms) / Decimal::from(self.avail_ms))
                .round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
        })
    }

    /// `None` when no capacity was reported; else whether no minute used
    /// more than was available.
    pub fn capacity_complete(&self) -> Option<bool> {
        (self.avail_ms > 0).then_some(self.overused_minutes == 0)
    }

    pub fn avg_gpu_count(&self) -> Decimal {
        avg_gpu_count(self.gpu_count_sum, self.total_tasks)
    }
}

/// Task-weighted GPUs per task at the 2 decimals of DECIMAL(10,2), rounded
/// half away from zero from the exact fraction; 0 without tasks.
pub fn avg_gpu_count(gpu_count_sum: i64, tasks: i64) -> Decimal {
    if tasks == 0 {
        return Decimal::ZERO;
    }
    (Decimal::from(gpu_count_sum) / Decimal::from(tasks))
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// GPU-milliseconds → GPU-hours at the 6 decimals of DECIMAL(16,6).
pub fn gpu_hours(gpu_ms: i64) -> Decimal {
    (Decimal::from(gpu_ms) / Decimal::from(3_600_000))
        .round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
}

/// GPU-milliseconds → GPU-seconds, exact at DECIMAL(18,3).
pub fn gpu_seconds(gpu_ms: i64) -> Decimal {
    Decimal::new(gpu_ms, 3)
}

/// Rows of one level keyed by (bucket start, scope); ordered, so folding
/// visits finer buckets in time order.
pub type Buckets = BTreeMap<(DateTime<Utc>, Scope), Accum>;

/// Folds finer buckets into `level` buckets: sums, max, task-weighted
/// inputs, and the peak finer bucket per scope.
pub fn fold(finer: &Buckets, level: Granularity) -> Buckets {
    let mut out = Buckets::new();
    for ((at, scope), acc) in finer {
        out.entry((level.floor(*at), scope.clone()))
            .or_default()
            .absorb(*at, acc);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{TimeRange, parse_utc};

    fn rec(start: &str, end: &str, gpus: i32) -> RecordSlice {
        RecordSlice {
            endpoint: "ep".into(),
            spec_name: Some("a100".into()),
            gpu_count: gpus,
            started_at: parse_utc("s", start).unwrap(),
            completed_at: parse_utc("e", end).unwrap(),
            status: TaskStatus::Completed,
        }
    }

    fn day() -> TimeRange {
        TimeRange::new(
            parse_utc("s", "2026-01-01T00:00:00Z").unwrap(),
            parse_utc("e", "2026-01-02T00:00:00Z").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn spreads_gpu_time_by_overlap() {
        let r = rec("2026-01-01T10:00:30Z", "2026-01-01T10:02:15.500Z", 2);
        let b = minutes_from_sources(&[r], &[], day());
        let g = |m: &str| b[&(parse_utc("m", m).unwrap(), Scope::Global)].clone();
        assert_eq!(g("2026-01-01T10:00:00Z").gpu_ms, 60_000);
        assert_eq!(g("2026-01-01T10:01:00Z").gpu_ms, 120_000);
        assert_eq!(g("2026-01-01T10:02:00Z").gpu_ms, 31_000);
        assert_eq!(g("2026-01-01T10:02:00Z").total_tasks, 1);
        assert_eq!(g("2026-01-01T10:00:00Z").total_tasks, 0);
        assert_eq!(b.len(), 9, "3 minutes x 3 scopes");
    }

    #[test]
    fn zero_length_and_cpu_tasks_only_count_completions() {
        let a = rec("2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z", 4);
        let c = rec("2026-01-01T09:00:00Z", "2026-01-01T10:00:00Z", 0);
        let b = minutes_from_sources(&[a, c], &[], day());
        assert_eq!(b.len(), 3);
        let g = &b[&(
            parse_utc("m", "2026-01-01T10:00:00Z").unwrap(),
            Scope::Global,
        )];
        assert_eq!(
            (g.total_tasks, g.gpu_ms, g.max_gpu_count, g.gpu_count_sum),
            (2, 0, 4, 4)
        );
        let h = fold(&b, Granularity::Hourly);
        assert!(h.values().all(|a| a.peak.is_none()));
    }

    #[test]
    fn clips_to_range_and_folds_with_earliest_peak() {
        let r = rec("2025-12-31T23:59:00Z", "2026-01-01T00:02:00Z", 1);
        let b = minutes_from_sources(&[r], &[], day());
        let total: i64 = b
            .iter()
            .filter(|((_, s), _)| *s == Scope::Global)
            .map(|(_, a)| a.gpu_ms)
            .sum();
        assert_eq!(total, 120_000);
        let h = fold(&b, Granularity::Hourly);
        let g = &h[&(
            parse_utc("h", "2026-01-01T00:00:00Z").unwrap(),
            Scope::Global,
        )];
        assert_eq!(
            g.peak,
            Some((parse_utc("p", "2026-01-01T00:00:00Z").unwrap(), 60_000))
        );
    }

    #[test]
    fn decimals_round_half_away_from_zero() {
        assert_eq!(gpu_hours(1_800), Decimal::new(5, 4));
        assert_eq!(gpu_hours(1), Decimal::ZERO);
        assert_eq!(gpu_hours(2), Decimal::new(1, 6));
        assert_eq!(gpu_seconds(1_234), Decimal::new(1234, 3));
        let a = Accum {
            total_tasks: 3,
            gpu_count_sum: 5,
            ..Default::default()
        };
        assert_eq!(a.avg_gpu_count(), Decimal::new(167, 2));
    }
}
