//! Rows written straight to the tables, bypassing ingest and the engine
//! (the tests of reads, retention and storage), and a stored record read
//! back by its task id.

use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::entities::{record, statistics_daily, statistics_hourly, statistics_minute};
use gpu_usage_core::types::{ScopeType, TaskStatus};
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
};

/// A COMPLETED record with every column set: no worker, spec, GPU type or
/// memory; `duration_seconds` and `gpu_hours` derived from the times as
/// ingest derives them (seconds floored; GPU-hours rounded half away from
/// zero to 6 places); created when it completed.
pub fn record_row(
    task_id: &str,
    endpoint: &str,
    gpu_count: i32,
    started: DateTime<Utc>,
    completed: DateTime<Utc>,
) -> record::ActiveModel {
    let ms = (completed - started).num_milliseconds();
    let gpu_hours = Decimal::from(ms) * Decimal::from(gpu_count) / Decimal::from(3_600_000);
    record::ActiveModel {
        id: NotSet,
        task_id: Set(task_id.to_owned()),
        endpoint: Set(endpoint.to_owned()),
        worker_id: Set(None),
        spec_name: Set(None),
        gpu_count: Set(gpu_count),
        gpu_type: Set(None),
        gpu_memory_gb: Set(None),
        started_at: Set(started),
        completed_at: Set(completed),
        duration_seconds: Set(i32::try_from(ms.div_euclid(1_000)).expect("fits i32")),
        gpu_hours: Set(gpu_hours.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)),
        status: Set(TaskStatus::Completed),
        created_at: Set(completed),
    }
}

/// Inserts `row` into its table.
pub async fn insert_row<A>(db: &impl ConnectionTrait, row: A)
where
    A: ActiveModelTrait + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    <A::Entity as EntityTrait>::insert(row)
        .exec(db)
        .await
        .unwrap();
}

/// The stored record of `task_id`, if any.
pub async fn find_record(db: &impl ConnectionTrait, task_id: &str) -> Option<record::Model> {
    record::Entity::find()
        .filter(record::Column::TaskId.eq(task_id))
        .one(db)
        .await
        .unwrap()
}

/// A global statistics row of `$table` for the bucket `$bucket` (period
/// `$start` to `$start + $len`, written at `$start`): one completed 1-GPU
/// task and one GPU-minute, no capacity reported; `$rest` are the table's
/// own columns.
macro_rules! global_row {
    ($table:ident, $bucket:expr, $start:expr, $len:expr, { $($rest:tt)* }) => {
        $table::ActiveModel {
            id: NotSet,
            time_bucket: Set($bucket),
            scope_type: Set(ScopeType::Global),
            scope_value: Set(None),
            total_tasks: Set(1),
            completed_tasks: Set(1),
            failed_tasks: Set(0),
            total_gpu_hours: Set(ONE_GPU_MINUTE_IN_HOURS),
            avg_gpu_count: Set(Decimal::new(1, 0)),
            max_gpu_count: Set(1),
            gpu_milliseconds: Set(60_000),
            gpu_count_sum: Set(1),
            available_gpu_ms: Set(0),
            idle_gpu_ms: Set(0),
            overused_minutes: Set(0),
            idle_gpu_hours: Set(Decimal::ZERO),
            utilization_rate: Set(None),
            capacity_complete: Set(None),
            peak_gpus_in_use: Set(1),
            peak_gpus_available: Set(0),
            period_start: Set($start),
            period_end: Set($start + $len),
            updated_at: Set($start),
            $($rest)*
        }
    };
}

/// 60 000 GPU-ms in GPU-hours, to the columns' 6 places.
const ONE_GPU_MINUTE_IN_HOURS: Decimal = Decimal::from_parts(16_667, 0, 0, false, 6);

/// See `global_row!`.
pub fn minute_row(bucket: DateTime<Utc>) -> statistics_minute::ActiveModel {
    global_row!(statistics_minute, bucket, bucket, TimeDelta::minutes(1), {
        total_gpu_seconds: Set(Decimal::new(60, 0)),
        available_gpu_seconds: Set(Decimal::ZERO),
        available_gpu_hours: Set(Decimal::ZERO),
    })
}

/// See `global_row!`; its peak is its own bucket.
pub fn hourly_row(bucket: DateTime<Utc>) -> statistics_hourly::ActiveModel {
    global_row!(statistics_hourly, bucket, bucket, TimeDelta::hours(1), {
        peak_minute: Set(Some(bucket)),
        peak_gpu_hours: Set(Some(ONE_GPU_MINUTE_IN_HOURS)),
        available_gpu_hours: Set(Decimal::ZERO),
    })
}

/// See `global_row!`; `day` is its midnight and its peak; no capacity
/// reported (available 0, utilisation and completeness NULL).
pub fn daily_row(day: DateTime<Utc>) -> statistics_daily::ActiveModel {
    global_row!(statistics_daily, day.date_naive(), day, TimeDelta::days(1), {
        peak_hour: Set(Some(day)),
        peak_gpu_hours: Set(Some(ONE_GPU_MINUTE_IN_HOURS)),
        available_gpu_hours: Set(Some(Decimal::ZERO)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// The derived columns are the figures the tests used to spell out.
    #[test]
    fn derived_record_columns() {
        let start = at("2026-03-29T01:30:15.123Z");
        let cases = [
            (1, TimeDelta::minutes(10), 600, Decimal::new(166_667, 6)),
            (2, TimeDelta::hours(1), 3600, Decimal::new(2, 0)),
            (
                2,
                TimeDelta::milliseconds(3_600_456),
                3600,
                Decimal::new(2_000_253, 6),
            ),
        ];
        for (gpus, len, secs, hours) in cases {
            let r = record_row("t", "ep", gpus, start, start + len);
            assert_eq!(r.duration_seconds, Set(secs));
            let got = r.gpu_hours.unwrap();
            assert_eq!((got, got.scale()), (hours, hours.scale()), "{gpus} × {len}");
        }
        assert_eq!(ONE_GPU_MINUTE_IN_HOURS, Decimal::new(16_667, 6));
    }
}
