//! Statistics pages of any level, and the summary of the whole range.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Order, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::cursor::StatsCursor;
use super::{PageRequest, sum_i64, take_page};
use crate::error::Result;
use crate::level::values::{Average, Hours, Rate, Seconds};
use crate::level::{Level, Row, StatsColumn};
use crate::rollup::compute;
use crate::types::{Granularity, ScopeFilter, TimeRange};

/// A statistics read: one scope filter, one time range, one page (the level
/// is the type the read is made for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub scope: ScopeFilter,
    /// Half-open on `time_bucket`. Daily: every day that overlaps the range,
    /// so the day holding `start` is included.
    pub range: TimeRange,
    pub page: PageRequest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatsPage<R> {
    /// Ascending by (time_bucket, scope_value).
    pub rows: Vec<R>,
    /// Every row the query matches, across all pages.
    pub total: u64,
    pub summary: Summary,
    /// `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Totals over every row the query matches, not over one page.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Summary {
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    /// Exact: Σ GPU time / 3600 over every matching row, rounded once.
    #[schema(value_type = f64)]
    pub total_gpu_hours: Hours,
    #[schema(value_type = f64)]
    pub total_gpu_seconds: Seconds,
    /// Task-weighted average GPUs per task (Σ gpu_count / Σ tasks, rounded
    /// half away from zero; not a mean of row averages); 0 without tasks.
    #[schema(value_type = f64)]
    pub avg_gpu_count: Average,
    pub max_gpu_count: i64,
    /// Bucket with the most GPU time summed over the matching rows (ties:
    /// the earliest); null without GPU time.
    pub peak_time_bucket: Option<DateTime<Utc>>,
    #[schema(value_type = Option<f64>)]
    pub peak_gpu_hours: Option<Hours>,
    /// Σ available GPU time over the matching rows.
    #[schema(value_type = f64)]
    pub available_gpu_hours: Hours,
    #[schema(value_type = f64)]
    pub idle_gpu_hours: Hours,
    /// Σ used ÷ Σ available (never a mean of rates); null when nothing was
    /// available.
    #[schema(value_type = Option<f64>)]
    pub utilization_rate: Option<Rate>,
    /// Null when nothing was available; else false when some row with
    /// capacity reported used more than was available.
    pub capacity_complete: Option<bool>,
    pub peak_gpus_in_use: i64,
    pub peak_gpus_available: i64,
    /// Daily reads only: `total_gpu_hours` ÷ the number of matching daily
    /// rows (`total`), 0 without rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub avg_gpu_hours_per_day: Option<Hours>,
    /// The exact GPU time the hours were computed from.
    #[serde(skip)]
    pub gpu_milliseconds: i64,
}

/// A page of level `L` ascending by (time_bucket, scope_value), with the
/// total row count and the summary of the whole range.
pub async fn statistics<L: Level>(
    db: &impl ConnectionTrait,
    q: &StatsQuery,
) -> Result<StatsPage<L::Row>> {
    let after = q
        .page
        .cursor
        .as_deref()
        .map(|s| StatsCursor::decode(s, L::GRANULARITY, q.scope.scope_type))
        .transpose()?;
    let filter = filter::<L>(q);
    let mut select = L::Entity::find().filter(filter.clone());
    if let Some(cursor) = &after {
        select = select.filter(after_cursor::<L>(cursor));
    }
    let page = select
        .order_by_asc(<L::Column as StatsColumn>::TIME_BUCKET)
        .order_by_asc(<L::Column as StatsColumn>::SCOPE_VALUE)
        // One extra row tells whether another page follows.
        .limit(q.page.limit().saturating_add(1))
        .into_partial_model::<L::Row>()
        .all(db);
    // The page and the summary's statements are independent: on a pool
    // they run at once on separate connections, so a read costs the
    // slowest of them rather than their sum.
    let (rows, totals) = tokio::join!(page, summarize::<L>(db, filter));
    let (rows, (total, summary)) = (rows?, totals?);
    let (rows, more) = take_page(rows, q.page.limit());
    let next_cursor = rows.last().filter(|_| more).map(|last| {
        StatsCursor {
            level: L::GRANULARITY,
            scope_type: q.scope.scope_type,
            bucket: last.time_bucket(),
            scope_value: last.scope_value().map(str::to_owned),
        }
        .encode()
    });
    Ok(StatsPage {
        rows,
        total,
        summary,
        next_cursor,
    })
}

/// Buckets in the range and the scope asked for.
fn filter<L: Level>(q: &StatsQuery) -> Condition {
    let bucket = <L::Column as StatsColumn>::TIME_BUCKET;
    // A daily read covers every day the range touches.
    let range = match L::GRANULARITY {
        Granularity::Daily => q.range.align(Granularity::Daily),
        _ => q.range,
    };
    let mut cond = Condition::all()
        .add(bucket.gte(L::bucket_value(range.start())))
        .add(bucket.lt(L::bucket_value(range.end())))
        .add(<L::Column as StatsColumn>::SCOPE_TYPE.eq(q.scope.scope_type.as_str()));
    if let Some(v) = &q.scope.value {
        cond = cond.add(<L::Column as StatsColumn>::SCOPE_VALUE.eq(v.clone()));
    }
    cond
}

/// Rows after the cursor's in (time_bucket, scope_value) order. One query
/// has one scope type, so either every value is NULL (global: one row per
/// bucket) or none is.
fn after_cursor<L: Level>(c: &StatsCursor) -> Condition {
    let bucket = <L::Column as StatsColumn>::TIME_BUCKET;
    let at = L::bucket_value(c.bucket);
    let later = Condition::any().add(bucket.gt(at.clone()));
    match &c.scope_value {
        None => later,
        Some(v) => later.add(
            Condition::all()
                .add(bucket.eq(at))
                .add(<L::Column as StatsColumn>::SCOPE_VALUE.gt(v.clone())),
        ),
    }
}

#[derive(Debug, FromQueryResult)]
struct Totals {
    n: i64,
    total_tasks: i64,
    completed_tasks: i64,
    failed_tasks: i64,
    gpu_ms: i64,
    gpu_count_sum: i64,
    max_gpu_count: i64,
    avail_ms: i64,
    idle_ms: i64,
    /// Over-capacity minutes of rows that had capacity reported.
    overused_with_capacity: i64,
    peak_in_use: i64,
    peak_available: i64,
}

/// `MAX(col)` as a 64-bit integer, 0 over no rows.
fn max_i64(col: impl ColumnTrait) -> SimpleExpr {
    Func::coalesce([Expr::col(col).max(), Expr::val(0)]).into()
}

/// Σ over the rows that had capacity reported of their over-capacity
/// minutes: the summary's `capacity_complete` is the AND of the rows' flags
/// that are not NULL.
fn overused_with_capacity<L: Level>(b: sea_orm::DbBackend) -> SimpleExpr {
    type C<L> = <L as Level>::Column;
    let case: SimpleExpr = Expr::case(
        Expr::col(C::<L>::AVAILABLE_GPU_MS).gt(0),
        Expr::col(C::<L>::OVERUSED_MINUTES),
    )
    .finally(Expr::val(0))
    .into();
    let sum: SimpleExpr = Func::coalesce([case.sum(), Expr::val(0)]).into();
    match b {
        sea_orm::DbBackend::MySql => {
            Func::cast_as(sum, sea_orm::sea_query::Alias::new("SIGNED")).into()
        }
        _ => sum,
    }
}

/// Sums and maxima of the rows matching `filter`, in one statement.
async fn totals<L: Level>(db: &impl ConnectionTrait, filter: Condition) -> Result<Totals> {
    type C<L> = <L as Level>::Column;
    let b = db.get_database_backend();
    L::Entity::find()
        .select_only()
        .column_as(Expr::col(C::<L>::ID).count(), "n")
        .column_as(sum_i64(b, C::<L>::TOTAL_TASKS), "total_tasks")
        .column_as(sum_i64(b, C::<L>::COMPLETED_TASKS), "completed_tasks")
        .column_as(sum_i64(b, C::<L>::FAILED_TASKS), "failed_tasks")
        .column_as(sum_i64(b, C::<L>::GPU_MILLISECONDS), "gpu_ms")
        .column_as(sum_i64(b, C::<L>::GPU_COUNT_SUM), "gpu_count_sum")
        .column_as(max_i64(C::<L>::MAX_GPU_COUNT), "max_gpu_count")
        .column_as(sum_i64(b, C::<L>::AVAILABLE_GPU_MS), "avail_ms")
        .column_as(sum_i64(b, C::<L>::IDLE_GPU_MS), "idle_ms")
        .column_as(overused_with_capacity::<L>(b), "overused_with_capacity")
        .column_as(max_i64(C::<L>::PEAK_GPUS_IN_USE), "peak_in_use")
        .column_as(max_i64(C::<L>::PEAK_GPUS_AVAILABLE), "peak_available")
        .filter(filter)
        .into_model::<Totals>()
        .one(db)
        .await?
        .ok_or_else(|| {
            crate::DomainError::Database(sea_orm::DbErr::RecordNotFound(
                "aggregate query returned no row".to_owned(),
            ))
        })
}

async fn summarize<L: Level>(
    db: &impl ConnectionTrait,
    filter: Condition,
) -> Result<(u64, Summary)> {
    type C<L> = <L as Level>::Column;
    let b = db.get_database_backend();
    let totals = totals::<L>(db, filter.clone());
    let peak = L::Entity::find()
        .select_only()
        .column(C::<L>::TIME_BUCKET)
        .column_as(sum_i64(b, C::<L>::GPU_MILLISECONDS), "ms")
        .filter(filter)
        .group_by(C::<L>::TIME_BUCKET)
        .having(Expr::col(C::<L>::GPU_MILLISECONDS).sum().gt(0))
        .order_by(Expr::col(Alias::new("ms")), Order::Desc)
        .order_by_asc(C::<L>::TIME_BUCKET)
        .limit(1)
        .into_tuple::<(L::Bucket, i64)>()
        .one(db);
    let (totals, peak) = tokio::join!(totals, peak);
    let (totals, peak) = (totals?, peak?);
    let total_gpu_hours = Hours::new(compute::gpu_hours(totals.gpu_ms));
    let capacity = compute::Accum {
        gpu_ms: totals.gpu_ms,
        avail_ms: totals.avail_ms,
        ..Default::default()
    };
    let n = u64::try_from(totals.n).unwrap_or(0);
    let summary = Summary {
        total_tasks: totals.total_tasks,
        completed_tasks: totals.completed_tasks,
        failed_tasks: totals.failed_tasks,
        total_gpu_hours,
        total_gpu_seconds: Seconds::new(compute::gpu_seconds(totals.gpu_ms)),
        avg_gpu_count: Average::new(compute::avg_gpu_count(
            totals.gpu_count_sum,
            totals.total_tasks,
        )),
        max_gpu_count: totals.max_gpu_count,
        peak_time_bucket: peak.map(|(t, _)| t.into()),
        peak_gpu_hours: peak.map(|(_, ms)| Hours::new(compute::gpu_hours(ms))),
        available_gpu_hours: Hours::new(compute::gpu_hours(totals.avail_ms)),
        idle_gpu_hours: Hours::new(compute::gpu_hours(totals.idle_ms)),
        utilization_rate: capacity.utilization().map(Rate::new),
        capacity_complete: (totals.avail_ms > 0).then_some(totals.overused_with_capacity == 0),
        peak_gpus_in_use: totals.peak_in_use,
        peak_gpus_available: totals.peak_available,
        avg_gpu_hours_per_day: (L::GRANULARITY == Granularity::Daily).then(|| {
            Hours::new(if n == 0 {
                rust_decimal::Decimal::ZERO
            } else {
                total_gpu_hours.decimal() / rust_decimal::Decimal::from(n)
            })
        }),
        gpu_milliseconds: totals.gpu_ms,
    };
    Ok((n, summary))
}
