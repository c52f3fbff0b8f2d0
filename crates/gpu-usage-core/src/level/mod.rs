//! The statistics levels as types: one definition per level, and the
//! generic code every level shares is written against it.
//!
//! A level is its entity (the table, in [`crate::entities`]), its [`Row`]
//! type (what a read returns; the same struct is serialised to JSON,
//! documented in OpenAPI and written as CSV — see [`rows`]), its bucket
//! width and bucket type, and the columns only it has. Reading pages,
//! replacing rows, folding finer rows and retention are generic over
//! [`Level`]; a runtime [`Granularity`] becomes a type with
//! [`with_level!`](crate::with_level).
//!
//! Adding a column to a level: the entity, a migration (and its lines in
//! `scripts/gpu_usage_schema.sql`), the row type, and — if the engine
//! computes it — [`Level::specific_values`] or the common values in
//! `rollup::store`. See docs/ARCHITECTURE.md.

pub mod rows;
pub mod values;

use std::fmt::Debug;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PartialModelTrait, TryGetable, Value};
use serde::Serialize;

use crate::entities::{statistics_daily, statistics_hourly, statistics_minute};
use crate::rollup::compute::{self, Accum};
use crate::types::{Granularity, day_of};

pub use rows::{DailyRow, HourlyRow, MinuteRow};

/// One statistics level.
pub trait Level: Send + Sync + 'static {
    const GRANULARITY: Granularity;
    type Entity: EntityTrait<Column = Self::Column> + Default;
    type Column: StatsColumn;
    /// `time_bucket` as read: an instant, or a [`values::Day`] for DATE
    /// buckets.
    type Bucket: TryGetable + Into<DateTime<Utc>> + Copy + Send + Sync;
    /// What a read returns.
    type Row: PartialModelTrait
        + Row
        + Serialize
        + utoipa::ToSchema
        + Clone
        + PartialEq
        + Debug
        + Send
        + Sync
        + 'static;

    /// The columns only this level has, in the order of
    /// [`Level::specific_values`].
    const SPECIFIC: &'static [Self::Column];

    /// Values of [`Level::SPECIFIC`] for one bucket.
    fn specific_values(acc: &Accum) -> Vec<Value>;

    /// A bucket start as the `time_bucket` column holds it.
    fn bucket_value(at: DateTime<Utc>) -> Value {
        at.into()
    }

    fn bucket_len() -> TimeDelta {
        Self::GRANULARITY.bucket_len()
    }
}

/// What generic code needs to know of a row: its key.
pub trait Row {
    fn time_bucket(&self) -> DateTime<Utc>;
    fn scope_value(&self) -> Option<&str>;
}

/// The columns every statistics table has, by role, so generic code names
/// them with the entity's own typed columns.
pub trait StatsColumn: ColumnTrait + Copy + Send + Sync + 'static {
    const ID: Self;
    const TIME_BUCKET: Self;
    const SCOPE_TYPE: Self;
    const SCOPE_VALUE: Self;
    const TOTAL_TASKS: Self;
    const COMPLETED_TASKS: Self;
    const FAILED_TASKS: Self;
    const TOTAL_GPU_HOURS: Self;
    const AVG_GPU_COUNT: Self;
    const MAX_GPU_COUNT: Self;
    const GPU_MILLISECONDS: Self;
    const GPU_COUNT_SUM: Self;
    const PERIOD_START: Self;
    const PERIOD_END: Self;
    const UPDATED_AT: Self;
    const AVAILABLE_GPU_MS: Self;
    const IDLE_GPU_MS: Self;
    const OVERUSED_MINUTES: Self;
    const IDLE_GPU_HOURS: Self;
    const UTILIZATION_RATE: Self;
    const CAPACITY_COMPLETE: Self;
    const PEAK_GPUS_IN_USE: Self;
    const PEAK_GPUS_AVAILABLE: Self;
}

/// The column names are the same in every statistics table, so one
/// expansion per entity maps the roles.
macro_rules! stats_columns {
    ($($m:ident),*) => {$(
        impl StatsColumn for $m::Column {
            const ID: Self = Self::Id;
            const TIME_BUCKET: Self = Self::TimeBucket;
            const SCOPE_TYPE: Self = Self::ScopeType;
            const SCOPE_VALUE: Self = Self::ScopeValue;
            const TOTAL_TASKS: Self = Self::TotalTasks;
            const COMPLETED_TASKS: Self = Self::CompletedTasks;
            const FAILED_TASKS: Self = Self::FailedTasks;
            const TOTAL_GPU_HOURS: Self = Self::TotalGpuHours;
            const AVG_GPU_COUNT: Self = Self::AvgGpuCount;
            const MAX_GPU_COUNT: Self = Self::MaxGpuCount;
            const GPU_MILLISECONDS: Self = Self::GpuMilliseconds;
            const GPU_COUNT_SUM: Self = Self::GpuCountSum;
            const PERIOD_START: Self = Self::PeriodStart;
            const PERIOD_END: Self = Self::PeriodEnd;
            const UPDATED_AT: Self = Self::UpdatedAt;
            const AVAILABLE_GPU_MS: Self = Self::AvailableGpuMs;
            const IDLE_GPU_MS: Self = Self::IdleGpuMs;
            const OVERUSED_MINUTES: Self = Self::OverusedMinutes;
            const IDLE_GPU_HOURS: Self = Self::IdleGpuHours;
            const UTILIZATION_RATE: Self = Self::UtilizationRate;
            const CAPACITY_COMPLETE: Self = Self::CapacityComplete;
            const PEAK_GPUS_IN_USE: Self = Self::PeakGpusInUse;
            const PEAK_GPUS_AVAILABLE: Self = Self::PeakGpusAvailable;
        }
    )*};
}
stats_columns!(statistics_minute, statistics_hourly, statistics_daily);

/// Minute rows, built from records.
#[derive(Debug, Clone, Copy)]
pub struct Minute;

/// Hourly rows, built from minute rows (from records once those are gone).
#[derive(Debug, Clone, Copy)]
pub struct Hourly;

/// Daily rows (UTC days), built from hourly rows.
#[derive(Debug, Clone, Copy)]
pub struct Daily;

impl Level for Minute {
    const GRANULARITY: Granularity = Granularity::Minute;
    type Entity = statistics_minute::Entity;
    type Column = statistics_minute::Column;
    type Bucket = DateTime<Utc>;
    type Row = MinuteRow;
    const SPECIFIC: &'static [Self::Column] = &[
        statistics_minute::Column::TotalGpuSeconds,
        statistics_minute::Column::AvailableGpuSeconds,
        statistics_minute::Column::AvailableGpuHours,
    ];

    fn specific_values(acc: &Accum) -> Vec<Value> {
        vec![
            compute::gpu_seconds(acc.gpu_ms).into(),
            compute::gpu_seconds(acc.avail_ms).into(),
            compute::gpu_hours(acc.avail_ms).into(),
        ]
    }
}

impl Level for Hourly {
    const GRANULARITY: Granularity = Granularity::Hourly;
    type Entity = statistics_hourly::Entity;
    type Column = statistics_hourly::Column;
    type Bucket = DateTime<Utc>;
    type Row = HourlyRow;
    const SPECIFIC: &'static [Self::Column] = &[
        statistics_hourly::Column::PeakMinute,
        statistics_hourly::Column::PeakGpuHours,
        statistics_hourly::Column::AvailableGpuHours,
    ];

    fn specific_values(acc: &Accum) -> Vec<Value> {
        let mut v = peak_values(acc);
        v.push(compute::gpu_hours(acc.avail_ms).into());
        v
    }
}

impl Level for Daily {
    const GRANULARITY: Granularity = Granularity::Daily;
    type Entity = statistics_daily::Entity;
    type Column = statistics_daily::Column;
    type Bucket = values::Day;
    type Row = DailyRow;
    const SPECIFIC: &'static [Self::Column] = &[
        statistics_daily::Column::PeakHour,
        statistics_daily::Column::PeakGpuHours,
        statistics_daily::Column::AvailableGpuHours,
    ];

    fn specific_values(acc: &Accum) -> Vec<Value> {
        let mut v = peak_values(acc);
        v.push(Some(compute::gpu_hours(acc.avail_ms)).into());
        v
    }

    fn bucket_value(at: DateTime<Utc>) -> Value {
        day_of(at).into()
    }
}

/// The finer bucket with the most GPU time and its GPU-hours.
fn peak_values(acc: &Accum) -> Vec<Value> {
    vec![
        acc.peak.map(|(t, _)| t).into(),
        acc.peak.map(|(_, ms)| compute::gpu_hours(ms)).into(),
    ]
}

/// Runs `$body` with `$L` bound to the level type of the [`Granularity`]
/// `$g`: the one place where a runtime level becomes a static one.
#[macro_export]
macro_rules! with_level {
    ($g:expr, $L:ident => $body:expr) => {
        match $g {
            $crate::types::Granularity::Minute => {
                type $L = $crate::level::Minute;
                $body
            }
            $crate::types::Granularity::Hourly => {
                type $L = $crate::level::Hourly;
                $body
            }
            $crate::types::Granularity::Daily => {
                type $L = $crate::level::Daily;
                $body
            }
        }
    };
}
