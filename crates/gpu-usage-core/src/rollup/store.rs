//! Reading the rollups' sources and replacing a level's rows for a range.
//!
//! Each recomputation is one ordered read of its source, arithmetic in
//! memory (`compute`), then one transaction: delete the level's rows in the
//! range, insert the new ones in multi-row batches, queue the range for the
//! next level. A constant number of statements per chunk, whatever the
//! number of buckets.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, TransactionSession, TransactionTrait,
};

use super::compute::{self, Accum, Buckets, RecordSlice};
use super::pending;
use crate::entities::{record, statistics_daily, statistics_hourly, statistics_minute};
use crate::types::{Granularity, Scope, ScopeType, TimeRange, day_of, day_start};

/// Rows per INSERT: well under MySQL's 65,535 and SQLite's 32,766 bind
/// parameters at ~20 columns a row.
const INSERT_BATCH: usize = 500;

/// Records that add GPU time or a completion to a bucket in `range`:
/// `completed_at >= start AND started_at < end`. The upper bound on
/// `completed_at` (tasks are never longer than the ingest maximum) keeps the
/// scan on the `completed_at` index bounded for old ranges.
pub async fn read_records(
    db: &impl ConnectionTrait,
    range: TimeRange,
    max_task: TimeDelta,
) -> Result<Vec<RecordSlice>, DbErr> {
    record::Entity::find()
        .select_only()
        .columns([
            record::Column::Endpoint,
            record::Column::SpecName,
            record::Column::GpuCount,
            record::Column::StartedAt,
            record::Column::CompletedAt,
            record::Column::Status,
        ])
        .filter(record::Column::CompletedAt.gte(range.start()))
        .filter(record::Column::CompletedAt.lt(range.end() + max_task + TimeDelta::minutes(1)))
        .filter(record::Column::StartedAt.lt(range.end()))
        .order_by_asc(record::Column::CompletedAt)
        .into_model::<RecordSlice>()
        .all(db)
        .await
}

/// The additive columns of a statistics row, the input of folding.
#[derive(Debug, FromQueryResult)]
struct StatSlice {
    time_bucket: DateTime<Utc>,
    scope_type: ScopeType,
    scope_value: Option<String>,
    total_tasks: i32,
    completed_tasks: i32,
    failed_tasks: i32,
    gpu_milliseconds: i64,
    gpu_count_sum: i64,
    max_gpu_count: i32,
}

impl StatSlice {
    fn into_entry(self) -> Option<((DateTime<Utc>, Scope), Accum)> {
        let at = self.time_bucket;
        let scope = Scope::from_parts(self.scope_type, self.scope_value).ok()?;
        Some((
            (at, scope),
            Accum {
                total_tasks: i64::from(self.total_tasks),
                completed_tasks: i64::from(self.completed_tasks),
                failed_tasks: i64::from(self.failed_tasks),
                gpu_ms: self.gpu_milliseconds,
                gpu_count_sum: self.gpu_count_sum,
                max_gpu_count: self.max_gpu_count,
                peak: None,
            },
        ))
    }
}

macro_rules! stat_columns {
    ($m:ident) => {
        [
            $m::Column::TimeBucket,
            $m::Column::ScopeType,
            $m::Column::ScopeValue,
            $m::Column::TotalTasks,
            $m::Column::CompletedTasks,
            $m::Column::FailedTasks,
            $m::Column::GpuMilliseconds,
            $m::Column::GpuCountSum,
            $m::Column::MaxGpuCount,
        ]
    };
}

/// Minute rows in `range` as buckets.
pub async fn read_minutes(db: &impl ConnectionTrait, range: TimeRange) -> Result<Buckets, DbErr> {
    let rows = statistics_minute::Entity::find()
        .select_only()
        .columns(stat_columns!(statistics_minute))
        .filter(statistics_minute::Column::TimeBucket.gte(range.start()))
        .filter(statistics_minute::Column::TimeBucket.lt(range.end()))
        .order_by_asc(statistics_minute::Column::TimeBucket)
        .into_model::<StatSlice>()
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(StatSlice::into_entry).collect())
}

/// Hourly rows in `range` as buckets.
pub async fn read_hours(db: &impl ConnectionTrait, range: TimeRange) -> Result<Buckets, DbErr> {
    let rows = statistics_hourly::Entity::find()
        .select_only()
        .columns(stat_columns!(statistics_hourly))
        .filter(statistics_hourly::Column::TimeBucket.gte(range.start()))
        .filter(statistics_hourly::Column::TimeBucket.lt(range.end()))
        .order_by_asc(statistics_hourly::Column::TimeBucket)
        .into_model::<StatSlice>()
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(StatSlice::into_entry).collect())
}

fn count(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Replaces `level`'s rows in `range` by `buckets` and queues the range for
/// the next level, in one transaction. Returns rows written.
pub async fn replace(
    db: &(impl ConnectionTrait + TransactionTrait),
    level: Granularity,
    range: TimeRange,
    buckets: &Buckets,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    delete_range(&txn, level, range).await?;
    let entries: Vec<_> = buckets.iter().collect();
    for chunk in entries.chunks(INSERT_BATCH) {
        insert_rows(&txn, level, chunk, now).await?;
    }
    if let Some(next) = level.coarser() {
        pending::mark(&txn, next, [range], now).await?;
    }
    txn.commit().await?;
    Ok(entries.len() as u64)
}

async fn delete_range(
    db: &impl ConnectionTrait,
    level: Granularity,
    range: TimeRange,
) -> Result<(), DbErr> {
    match level {
        Granularity::Minute => {
            statistics_minute::Entity::delete_many()
                .filter(statistics_minute::Column::TimeBucket.gte(range.start()))
                .filter(statistics_minute::Column::TimeBucket.lt(range.end()))
                .exec(db)
                .await?;
        }
        Granularity::Hourly => {
            statistics_hourly::Entity::delete_many()
                .filter(statistics_hourly::Column::TimeBucket.gte(range.start()))
                .filter(statistics_hourly::Column::TimeBucket.lt(range.end()))
                .exec(db)
                .await?;
        }
        Granularity::Daily => {
            let (first, last) = day_span(range);
            statistics_daily::Entity::delete_many()
                .filter(statistics_daily::Column::TimeBucket.gte(first))
                .filter(statistics_daily::Column::TimeBucket.lt(last))
                .exec(db)
                .await?;
        }
    }
    Ok(())
}

/// First day and the day after the last, of a day-aligned range.
fn day_span(range: TimeRange) -> (NaiveDate, NaiveDate) {
    (
        day_of(range.start()),
        day_of(Granularity::Daily.ceil(range.end())),
    )
}

async fn insert_rows(
    db: &impl ConnectionTrait,
    level: Granularity,
    rows: &[(&(DateTime<Utc>, Scope), &Accum)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let len = level.bucket_len();
    match level {
        Granularity::Minute => {
            statistics_minute::Entity::insert_many(rows.iter().map(|((at, scope), a)| {
                statistics_minute::ActiveModel {
                    id: NotSet,
                    time_bucket: Set(*at),
                    scope_type: Set(scope.scope_type()),
                    scope_value: Set(scope.value().map(str::to_owned)),
                    total_tasks: Set(count(a.total_tasks)),
                    completed_tasks: Set(count(a.completed_tasks)),
                    failed_tasks: Set(count(a.failed_tasks)),
                    total_gpu_seconds: Set(compute::gpu_seconds(a.gpu_ms)),
                    total_gpu_hours: Set(compute::gpu_hours(a.gpu_ms)),
                    avg_gpu_count: Set(a.avg_gpu_count()),
                    max_gpu_count: Set(a.max_gpu_count),
                    gpu_milliseconds: Set(a.gpu_ms),
                    gpu_count_sum: Set(a.gpu_count_sum),
                    period_start: Set(*at),
                    period_end: Set(*at + len),
                    updated_at: Set(now),
                }
            }))
            .exec_without_returning(db)
            .await?;
        }
        Granularity::Hourly => {
            statistics_hourly::Entity::insert_many(rows.iter().map(|((at, scope), a)| {
                statistics_hourly::ActiveModel {
                    id: NotSet,
                    time_bucket: Set(*at),
                    scope_type: Set(scope.scope_type()),
                    scope_value: Set(scope.value().map(str::to_owned)),
                    total_tasks: Set(count(a.total_tasks)),
                    completed_tasks: Set(count(a.completed_tasks)),
                    failed_tasks: Set(count(a.failed_tasks)),
                    total_gpu_hours: Set(compute::gpu_hours(a.gpu_ms)),
                    avg_gpu_count: Set(a.avg_gpu_count()),
                    max_gpu_count: Set(a.max_gpu_count),
                    gpu_milliseconds: Set(a.gpu_ms),
                    gpu_count_sum: Set(a.gpu_count_sum),
                    peak_minute: Set(a.peak.map(|(t, _)| t)),
                    peak_gpu_hours: Set(a.peak.map(|(_, ms)| compute::gpu_hours(ms))),
                    period_start: Set(*at),
                    period_end: Set(*at + len),
                    updated_at: Set(now),
                }
            }))
            .exec_without_returning(db)
            .await?;
        }
        Granularity::Daily => {
            statistics_daily::Entity::insert_many(rows.iter().map(|((at, scope), a)| {
                statistics_daily::ActiveModel {
                    id: NotSet,
                    time_bucket: Set(day_of(*at)),
                    scope_type: Set(scope.scope_type()),
                    scope_value: Set(scope.value().map(str::to_owned)),
                    total_tasks: Set(count(a.total_tasks)),
                    completed_tasks: Set(count(a.completed_tasks)),
                    failed_tasks: Set(count(a.failed_tasks)),
                    total_gpu_hours: Set(compute::gpu_hours(a.gpu_ms)),
                    avg_gpu_count: Set(a.avg_gpu_count()),
                    max_gpu_count: Set(a.max_gpu_count),
                    gpu_milliseconds: Set(a.gpu_ms),
                    gpu_count_sum: Set(a.gpu_count_sum),
                    peak_hour: Set(a.peak.map(|(t, _)| t)),
                    peak_gpu_hours: Set(a.peak.map(|(_, ms)| compute::gpu_hours(ms))),
                    // Capacity is not known to this service yet (SPEC §2).
                    available_gpu_hours: Set(None),
                    utilization_rate: Set(None),
                    period_start: Set(day_start(day_of(*at))),
                    period_end: Set(day_start(day_of(*at)) + len),
                    updated_at: Set(now),
                }
            }))
            .exec_without_returning(db)
            .await?;
        }
    }
    Ok(())
}
