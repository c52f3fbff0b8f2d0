//! Every row of every statistics level as comparable [`Row`]s, and a diff
//! that names missing, unexpected and different rows.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use gpu_usage_core::entities::{record, statistics_daily, statistics_hourly, statistics_minute};
use gpu_usage_core::types::{Granularity, ScopeType, day_start};
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};

/// One statistics row, level-independent, with decimals as integers in
/// units of their column's last place (DB values rounded to the column
/// scale, which absorbs SQLite's float storage).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    /// Bucket start (midnight UTC for daily rows).
    pub bucket: DateTime<Utc>,
    pub scope_type: ScopeType,
    pub scope_value: Option<String>,
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    pub gpu_ms: i64,
    pub gpu_count_sum: i64,
    pub max_gpu_count: i64,
    /// total_gpu_seconds in milliseconds (minute rows only).
    pub gpu_seconds_milli: Option<i64>,
    /// total_gpu_hours in 1e-6 GPU-hours.
    pub gpu_hours_micro: i64,
    /// avg_gpu_count in hundredths.
    pub avg_centi: i64,
    /// peak_minute (hourly) / peak_hour (daily).
    pub peak_at: Option<DateTime<Utc>>,
    /// peak_gpu_hours in 1e-6 GPU-hours.
    pub peak_micro: Option<i64>,
    /// Capacity (worker sessions): exact GPU-ms available and idle.
    pub avail_ms: i64,
    pub idle_ms: i64,
    pub overused_minutes: i64,
    /// available_gpu_seconds in milliseconds (minute rows only).
    pub avail_seconds_milli: Option<i64>,
    /// available_gpu_hours and idle_gpu_hours in 1e-6 GPU-hours.
    pub avail_hours_micro: i64,
    pub idle_hours_micro: i64,
    /// utilization_rate in 1e-4.
    pub util_basis: Option<i64>,
    pub capacity_complete: Option<bool>,
    pub peak_in_use: i64,
    pub peak_available: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Only from the database; `None` in the model and in `stripped()`.
    pub updated_at: Option<DateTime<Utc>>,
}

pub type Key = (DateTime<Utc>, ScopeType, Option<String>);

impl Row {
    pub fn key(&self) -> Key {
        (self.bucket, self.scope_type, self.scope_value.clone())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Levels {
    pub minute: Vec<Row>,
    pub hourly: Vec<Row>,
    pub daily: Vec<Row>,
}

impl Levels {
    pub fn stripped(&self) -> Levels {
        let strip = |v: &Vec<Row>| {
            v.iter()
                .cloned()
                .map(|r| Row {
                    updated_at: None,
                    ..r
                })
                .collect::<Vec<_>>()
        };
        Levels {
            minute: strip(&self.minute),
            hourly: strip(&self.hourly),
            daily: strip(&self.daily),
        }
    }

    pub fn level(&self, g: Granularity) -> &Vec<Row> {
        match g {
            Granularity::Minute => &self.minute,
            Granularity::Hourly => &self.hourly,
            Granularity::Daily => &self.daily,
        }
    }

    /// Rows whose bucket satisfies `keep`, per level.
    pub fn filter(&self, keep: impl Fn(Granularity, &Row) -> bool) -> Levels {
        let f = |g: Granularity, v: &Vec<Row>| {
            v.iter().filter(|r| keep(g, r)).cloned().collect::<Vec<_>>()
        };
        Levels {
            minute: f(Granularity::Minute, &self.minute),
            hourly: f(Granularity::Hourly, &self.hourly),
            daily: f(Granularity::Daily, &self.daily),
        }
    }

    pub fn row_count(&self) -> usize {
        self.minute.len() + self.hourly.len() + self.daily.len()
    }
}

/// Rounds a decimal to `scale` places and returns it in units of the last
/// place.
pub fn units(d: Decimal, scale: u32) -> i64 {
    let mut r = d.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(scale);
    i64::try_from(r.mantissa()).expect("decimal fits i64")
}

fn count(n: i32) -> i64 {
    i64::from(n)
}

/// The [`Row`] of model `$m` of any level: the columns every level has,
/// then `$rest`, the level's own.
macro_rules! row_of {
    ($m:ident, $bucket:expr, { $($rest:tt)* }) => {
        Row {
            bucket: $bucket,
            scope_type: $m.scope_type,
            scope_value: $m.scope_value,
            total_tasks: count($m.total_tasks),
            completed_tasks: count($m.completed_tasks),
            failed_tasks: count($m.failed_tasks),
            gpu_ms: $m.gpu_milliseconds,
            gpu_count_sum: $m.gpu_count_sum,
            max_gpu_count: count($m.max_gpu_count),
            gpu_hours_micro: units($m.total_gpu_hours, 6),
            avg_centi: units($m.avg_gpu_count, 2),
            avail_ms: $m.available_gpu_ms,
            idle_ms: $m.idle_gpu_ms,
            overused_minutes: count($m.overused_minutes),
            idle_hours_micro: units($m.idle_gpu_hours, 6),
            util_basis: $m.utilization_rate.map(|d| units(d, 4)),
            capacity_complete: $m.capacity_complete,
            peak_in_use: count($m.peak_gpus_in_use),
            peak_available: count($m.peak_gpus_available),
            period_start: $m.period_start,
            period_end: $m.period_end,
            updated_at: Some($m.updated_at),
            $($rest)*
        }
    };
}

fn minute_row(m: statistics_minute::Model) -> Row {
    row_of!(m, m.time_bucket, {
        gpu_seconds_milli: Some(units(m.total_gpu_seconds, 3)),
        peak_at: None,
        peak_micro: None,
        avail_seconds_milli: Some(units(m.available_gpu_seconds, 3)),
        avail_hours_micro: units(m.available_gpu_hours, 6),
    })
}

fn hourly_row(m: statistics_hourly::Model) -> Row {
    row_of!(m, m.time_bucket, {
        gpu_seconds_milli: None,
        peak_at: m.peak_minute,
        peak_micro: m.peak_gpu_hours.map(|d| units(d, 6)),
        avail_seconds_milli: None,
        avail_hours_micro: units(m.available_gpu_hours, 6),
    })
}

fn daily_row(m: statistics_daily::Model) -> Row {
    row_of!(m, day_start(m.time_bucket), {
        gpu_seconds_milli: None,
        peak_at: m.peak_hour,
        peak_micro: m.peak_gpu_hours.map(|d| units(d, 6)),
        avail_seconds_milli: None,
        // The original schema's column is nullable; this service always
        // fills it (0 without sessions), so NULL is a difference.
        avail_hours_micro: m.available_gpu_hours.map_or(-1, |d| units(d, 6)),
    })
}

/// Every row of one level's table, sorted.
async fn read_level<E: EntityTrait>(
    db: &impl ConnectionTrait,
    row: fn(E::Model) -> Row,
) -> anyhow::Result<Vec<Row>> {
    let models = E::find()
        .all(db)
        .await
        .with_context(|| format!("read {} rows", E::default().table_name()))?;
    let mut rows: Vec<Row> = models.into_iter().map(row).collect();
    rows.sort();
    Ok(rows)
}

/// Every row of every statistics level, sorted.
pub async fn read_levels(db: &impl ConnectionTrait) -> anyhow::Result<Levels> {
    Ok(Levels {
        minute: read_level::<statistics_minute::Entity>(db, minute_row).await?,
        hourly: read_level::<statistics_hourly::Entity>(db, hourly_row).await?,
        daily: read_level::<statistics_daily::Entity>(db, daily_row).await?,
    })
}

pub async fn record_count(db: &impl ConnectionTrait) -> anyhow::Result<u64> {
    Ok(record::Entity::find().count(db).await?)
}

/// Describes how `actual` differs from `expected` (at most a few lines per
/// kind), or Ok when equal.
pub fn diff_levels(actual: &Levels, expected: &Levels) -> Result<(), String> {
    let mut out = String::new();
    for g in Granularity::ALL {
        diff_rows(g, actual.level(g), expected.level(g), &mut out);
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

fn diff_rows(g: Granularity, actual: &[Row], expected: &[Row], out: &mut String) {
    use std::fmt::Write;
    const SHOW: usize = 8;
    let index =
        |rows: &[Row]| -> HashMap<Key, Row> { rows.iter().map(|r| (r.key(), r.clone())).collect() };
    let a = index(actual);
    let e = index(expected);
    if a.len() != actual.len() {
        let _ = writeln!(out, "[{g}] duplicate (bucket, scope) keys in the table");
    }
    let mut missing: Vec<&Row> = expected
        .iter()
        .filter(|r| !a.contains_key(&r.key()))
        .collect();
    let mut extra: Vec<&Row> = actual
        .iter()
        .filter(|r| !e.contains_key(&r.key()))
        .collect();
    let mut different: Vec<(&Row, &Row)> = expected
        .iter()
        .filter_map(|x| a.get(&x.key()).filter(|y| *y != x).map(|y| (y, x)))
        .collect();
    missing.sort();
    extra.sort();
    different.sort();
    if missing.is_empty() && extra.is_empty() && different.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "[{g}] {} rows, expected {}: {} missing, {} unexpected, {} different",
        actual.len(),
        expected.len(),
        missing.len(),
        extra.len(),
        different.len()
    );
    for r in missing.iter().take(SHOW) {
        let _ = writeln!(out, "  missing:    {r:?}");
    }
    for r in extra.iter().take(SHOW) {
        let _ = writeln!(out, "  unexpected: {r:?}");
    }
    for (got, want) in different.iter().take(SHOW) {
        let _ = writeln!(out, "  got:        {got:?}\n  want:       {want:?}");
    }
}

/// Distinct (bucket, scope) keys of a level, for quick sanity checks.
pub fn keys(rows: &[Row]) -> HashSet<Key> {
    rows.iter().map(Row::key).collect()
}
