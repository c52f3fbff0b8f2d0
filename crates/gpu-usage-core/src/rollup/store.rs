//! Reading the rollups' sources and replacing a level's rows for a range.
//!
//! Each recomputation is one ordered read of its source, arithmetic in
//! memory (`compute`), then one transaction: delete the level's rows in the
//! range, insert the new ones in multi-row batches, queue the range for the
//! next level. A constant number of statements per chunk, whatever the
//! number of buckets.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityName, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QueryResult, QuerySelect, TransactionSession, TransactionTrait, Value,
};

use super::compute::{self, Accum, Buckets, RecordSlice, SessionSlice};
use super::pending;
use crate::entities::{record, worker_session};
use crate::level::{Level, StatsColumn};
use crate::types::{Scope, ScopeType, TimeRange};

/// Rows per INSERT: well under MySQL's 65,535 and SQLite's 32,766 bind
/// parameters at ~20 columns a row.
const INSERT_BATCH: usize = 500;

/// `FromQueryResult` reading the columns by position, in field order: the
/// rollups read hundreds of thousands of rows per rebuild, and looking
/// each value up by name (a formatted string and a hash per field) costs
/// more than decoding it.
macro_rules! by_position {
    ($ty:ty { $($field:ident),+ $(,)? }) => {
        impl FromQueryResult for $ty {
            fn from_query_result(res: &QueryResult, _pre: &str) -> Result<Self, DbErr> {
                let mut at = 0usize..;
                Ok(Self {
                    $($field: res.try_get_by_index(at.next().unwrap_or_default())?,)+
                })
            }
        }
    };
}

by_position!(RecordSlice {
    endpoint,
    spec_name,
    gpu_count,
    started_at,
    completed_at,
    status
});

by_position!(SessionSlice {
    endpoint,
    spec_name,
    gpu_count,
    started_at,
    counted_until
});

/// Records completing inside `range`: every record adds its completion to
/// exactly one such read, so a rebuild reads each record once this way.
pub async fn read_records_completing(
    db: &impl ConnectionTrait,
    range: TimeRange,
) -> Result<Vec<RecordSlice>, DbErr> {
    select_records()
        .filter(record::Column::CompletedAt.gte(range.start()))
        .filter(record::Column::CompletedAt.lt(range.end()))
        .into_model::<RecordSlice>()
        .all(db)
        .await
}

/// Records still running at `at`: `started_at < at <= completed_at`. The
/// upper bound on `completed_at` keeps the scan on its index bounded; it
/// comes from the longest task stored, not from a setting, which may
/// differ between processes or have been lowered since.
pub async fn read_records_running_at(
    db: &impl ConnectionTrait,
    at: DateTime<Utc>,
) -> Result<Vec<RecordSlice>, DbErr> {
    let max_task = longest_task(db).await?;
    select_records()
        .filter(record::Column::CompletedAt.gte(at))
        .filter(record::Column::CompletedAt.lt(at + max_task + TimeDelta::minutes(1)))
        .filter(record::Column::StartedAt.lt(at))
        .into_model::<RecordSlice>()
        .all(db)
        .await
}

fn select_records() -> sea_orm::Select<record::Entity> {
    record::Entity::find().select_only().columns([
        record::Column::Endpoint,
        record::Column::SpecName,
        record::Column::GpuCount,
        record::Column::StartedAt,
        record::Column::CompletedAt,
        record::Column::Status,
    ])
}

/// The longest stored task, rounded up to a whole second (its
/// `duration_seconds` is rounded down): one probe of its index.
async fn longest_task(db: &impl ConnectionTrait) -> Result<TimeDelta, DbErr> {
    let longest: Option<Option<i32>> = record::Entity::find()
        .select_only()
        .column_as(record::Column::DurationSeconds.max(), "longest")
        .into_tuple()
        .one(db)
        .await?;
    Ok(TimeDelta::seconds(
        i64::from(longest.flatten().unwrap_or(0)) + 1,
    ))
}

/// Sessions that make GPU time available inside `range`:
/// `started_at < end AND counted_until > start`.
pub async fn read_sessions(
    db: &impl ConnectionTrait,
    range: TimeRange,
) -> Result<Vec<SessionSlice>, DbErr> {
    use worker_session::Column as C;
    worker_session::Entity::find()
        .select_only()
        .columns([
            C::Endpoint,
            C::SpecName,
            C::GpuCount,
            C::StartedAt,
            C::CountedUntil,
        ])
        .filter(C::StartedAt.lt(range.end()))
        .filter(C::CountedUntil.gt(range.start()))
        .order_by_asc(C::StartedAt)
        .into_model::<SessionSlice>()
        .all(db)
        .await
}

/// The additive columns of a statistics row, the input of folding.
#[derive(Debug)]
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
    available_gpu_ms: i64,
    idle_gpu_ms: i64,
    overused_minutes: i32,
    peak_gpus_in_use: i32,
    peak_gpus_available: i32,
}

by_position!(StatSlice {
    time_bucket,
    scope_type,
    scope_value,
    total_tasks,
    completed_tasks,
    failed_tasks,
    gpu_milliseconds,
    gpu_count_sum,
    max_gpu_count,
    available_gpu_ms,
    idle_gpu_ms,
    overused_minutes,
    peak_gpus_in_use,
    peak_gpus_available,
});

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
                avail_ms: self.available_gpu_ms,
                idle_ms: self.idle_gpu_ms,
                overused_minutes: i64::from(self.overused_minutes),
                peak_in_use: i64::from(self.peak_gpus_in_use),
                peak_available: i64::from(self.peak_gpus_available),
            },
        ))
    }
}

/// Rows of level `L` in `range` as buckets: the source a coarser level is
/// folded from (minute and hourly rows, whose buckets are instants).
pub async fn read_buckets<L: Level>(
    db: &impl ConnectionTrait,
    range: TimeRange,
) -> Result<Buckets, DbErr> {
    type C<L> = <L as Level>::Column;
    let rows = L::Entity::find()
        .select_only()
        .columns([
            C::<L>::TIME_BUCKET,
            C::<L>::SCOPE_TYPE,
            C::<L>::SCOPE_VALUE,
            C::<L>::TOTAL_TASKS,
            C::<L>::COMPLETED_TASKS,
            C::<L>::FAILED_TASKS,
            C::<L>::GPU_MILLISECONDS,
            C::<L>::GPU_COUNT_SUM,
            C::<L>::MAX_GPU_COUNT,
            C::<L>::AVAILABLE_GPU_MS,
            C::<L>::IDLE_GPU_MS,
            C::<L>::OVERUSED_MINUTES,
            C::<L>::PEAK_GPUS_IN_USE,
            C::<L>::PEAK_GPUS_AVAILABLE,
        ])
        .filter(within::<L>(range))
        .order_by_asc(C::<L>::TIME_BUCKET)
        .into_model::<StatSlice>()
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(StatSlice::into_entry).collect())
}

/// `time_bucket` inside `range` (bucket-aligned), in the column's type.
fn within<L: Level>(range: TimeRange) -> Condition {
    let col = <L::Column as StatsColumn>::TIME_BUCKET;
    Condition::all()
        .add(col.gte(L::bucket_value(range.start())))
        .add(col.lt(L::bucket_value(range.end())))
}

fn count(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Replaces level `L`'s rows in `range` by `buckets` and queues the range
/// for the next level, in one transaction. Returns rows written.
pub async fn replace<L: Level>(
    db: &(impl ConnectionTrait + TransactionTrait),
    range: TimeRange,
    buckets: &Buckets,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    L::Entity::delete_many()
        .filter(within::<L>(range))
        .exec(&txn)
        .await?;
    let entries: Vec<_> = buckets.iter().collect();
    for chunk in entries.chunks(INSERT_BATCH) {
        insert_rows::<L>(&txn, chunk, now).await?;
    }
    if let Some(next) = L::GRANULARITY.coarser() {
        pending::mark(&txn, next, [range], now).await?;
    }
    txn.commit().await?;
    Ok(entries.len() as u64)
}

/// One multi-row INSERT: the columns every level has, then the level's own.
async fn insert_rows<L: Level>(
    db: &impl ConnectionTrait,
    rows: &[(&(DateTime<Utc>, Scope), &Accum)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    type C<L> = <L as Level>::Column;
    if rows.is_empty() {
        return Ok(());
    }
    let columns = [
        C::<L>::TIME_BUCKET,
        C::<L>::SCOPE_TYPE,
        C::<L>::SCOPE_VALUE,
        C::<L>::TOTAL_TASKS,
        C::<L>::COMPLETED_TASKS,
        C::<L>::FAILED_TASKS,
        C::<L>::TOTAL_GPU_HOURS,
        C::<L>::AVG_GPU_COUNT,
        C::<L>::MAX_GPU_COUNT,
        C::<L>::GPU_MILLISECONDS,
        C::<L>::GPU_COUNT_SUM,
        C::<L>::PERIOD_START,
        C::<L>::PERIOD_END,
        C::<L>::UPDATED_AT,
        C::<L>::AVAILABLE_GPU_MS,
        C::<L>::IDLE_GPU_MS,
        C::<L>::OVERUSED_MINUTES,
        C::<L>::IDLE_GPU_HOURS,
        C::<L>::UTILIZATION_RATE,
        C::<L>::CAPACITY_COMPLETE,
        C::<L>::PEAK_GPUS_IN_USE,
        C::<L>::PEAK_GPUS_AVAILABLE,
    ];
    let mut insert = Query::insert();
    insert
        .into_table(L::Entity::default().table_ref())
        .columns(columns.into_iter().chain(L::SPECIFIC.iter().copied()));
    let len = L::bucket_len();
    for ((at, scope), a) in rows {
        let common: [Value; 22] = [
            L::bucket_value(*at),
            scope.scope_type().as_str().into(),
            scope.value().map(str::to_owned).into(),
            count(a.total_tasks).into(),
            count(a.completed_tasks).into(),
            count(a.failed_tasks).into(),
            compute::gpu_hours(a.gpu_ms).into(),
            a.avg_gpu_count().into(),
            a.max_gpu_count.into(),
            a.gpu_ms.into(),
            a.gpu_count_sum.into(),
            (*at).into(),
            (*at + len).into(),
            now.into(),
            a.avail_ms.into(),
            a.idle_ms.into(),
            count(a.overused_minutes).into(),
            compute::gpu_hours(a.idle_ms).into(),
            a.utilization().into(),
            a.capacity_complete().into(),
            count(a.peak_in_use).into(),
            count(a.peak_available).into(),
        ];
        let values = common
            .into_iter()
            .chain(L::specific_values(a))
            .map(SimpleExpr::from);
        insert
            .values(values)
            .map_err(|e| DbErr::Custom(format!("building the insert: {e}")))?;
    }
    db.execute(&insert).await?;
    Ok(())
}
