//! Reads for the API: statistics pages with whole-range summaries, the scopes
//! that have data, and raw usage records.
//!
//! Pages are keyset-paginated: a cursor names the last row returned, so rows
//! written or deleted between two page requests never shift a page and no
//! row is lost or repeated (offset pagination did both in the original).
//! Cursors are opaque to clients; their format is private to this module.
//!
//! Decimal columns are read as doubles (`CAST` in SQL) on both backends, so
//! one decoding path serves both: SQLite keeps DECIMAL values as REAL or
//! INTEGER anyway. Values are rounded to the column's scale when converted,
//! which removes the binary noise a REAL carries (0.016667 rather than
//! 0.016666999999999998).

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, TryGetable};

use crate::error::{DomainError, Result};
use crate::types::{Granularity, ScopeFilter, ScopeType, TaskStatus, TimeRange, day_of, day_start};

/// Which rows of which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page, at least 1 (the API bounds it from above).
    pub limit: u64,
    /// `next_cursor` of the previous page; `None` for the first page.
    pub cursor: Option<String>,
}

impl PageRequest {
    pub fn first(limit: u64) -> Self {
        Self {
            limit,
            cursor: None,
        }
    }
}

/// A statistics read: one level, one scope filter, one time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub level: Granularity,
    pub scope: ScopeFilter,
    /// Half-open on `time_bucket`. Daily: every day that overlaps the range,
    /// so the day holding `start` is included.
    pub range: TimeRange,
    pub page: PageRequest,
}

/// One statistics row, any level.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRow {
    pub id: i64,
    /// Bucket start; midnight UTC for daily rows.
    pub time_bucket: DateTime<Utc>,
    pub scope_type: ScopeType,
    /// `None` exactly for global.
    pub scope_value: Option<String>,
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    pub total_gpu_hours: f64,
    /// The exact GPU time the hours were computed from.
    pub gpu_milliseconds: i64,
    pub avg_gpu_count: f64,
    pub max_gpu_count: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub level: LevelFields,
}

/// The columns only one level has.
#[derive(Debug, Clone, PartialEq)]
pub enum LevelFields {
    Minute {
        total_gpu_seconds: f64,
    },
    Hourly {
        peak_minute: Option<DateTime<Utc>>,
        peak_gpu_hours: Option<f64>,
    },
    Daily {
        peak_hour: Option<DateTime<Utc>>,
        peak_gpu_hours: Option<f64>,
        available_gpu_hours: Option<f64>,
        utilization_rate: Option<f64>,
    },
}

/// Totals over every row the query matches, not over one page.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    pub gpu_milliseconds: i64,
    /// `gpu_milliseconds / 3.6e6`, rounded to 6 decimals.
    pub total_gpu_hours: f64,
    /// `gpu_milliseconds / 1000`, rounded to 3 decimals.
    pub total_gpu_seconds: f64,
    /// Task-weighted: Σ gpu_count_sum / Σ total_tasks, rounded to 2
    /// decimals; 0 without tasks.
    pub avg_gpu_count: f64,
    pub max_gpu_count: i64,
    /// The bucket with the most GPU time summed over the matching rows (ties:
    /// the earliest); `None` when the range holds no GPU time.
    pub peak: Option<Peak>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Peak {
    pub time_bucket: DateTime<Utc>,
    pub gpu_hours: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatsPage {
    pub rows: Vec<StatsRow>,
    /// Every row the query matches, across all pages.
    pub total: u64,
    pub summary: Summary,
    /// `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Scope values that have statistics, for pickers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes {
    pub endpoints: Vec<String>,
    pub specs: Vec<String>,
}

/// Which raw records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFilter {
    /// Half-open on `completed_at`.
    pub range: TimeRange,
    pub endpoint: Option<String>,
    pub spec_name: Option<String>,
    pub status: Option<TaskStatus>,
}

/// One stored usage record.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub id: i64,
    pub task_id: String,
    pub endpoint: String,
    pub worker_id: Option<String>,
    pub spec_name: Option<String>,
    pub gpu_count: i64,
    pub gpu_type: Option<String>,
    pub gpu_memory_gb: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub duration_seconds: i64,
    pub gpu_hours: f64,
    pub status: TaskStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordsPage {
    pub rows: Vec<UsageRecord>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

const RECORDS_TABLE: &str = "gpu_usage_records";

/// A page of statistics rows ascending by (time_bucket, scope_value), with
/// the total row count and the summary of the whole range.
pub async fn statistics(db: &impl ConnectionTrait, q: &StatsQuery) -> Result<StatsPage> {
    let backend = db.get_database_backend();
    let after = q
        .page
        .cursor
        .as_deref()
        .map(|c| StatsCursor::decode(c, q.level, q.scope.scope_type))
        .transpose()?;
    let limit = Ord::max(q.page.limit, 1);
    let filter = stats_filter(q);

    let mut page = Query::select();
    page.from(Alias::new(q.level.table_name()))
        .columns(
            [
                "id",
                "time_bucket",
                "scope_type",
                "scope_value",
                "scope_value_key",
                "total_tasks",
                "completed_tasks",
                "failed_tasks",
                "max_gpu_count",
                "gpu_milliseconds",
                "period_start",
                "period_end",
                "updated_at",
            ]
            .map(Alias::new),
        )
        .expr_as(
            as_double(backend, "total_gpu_hours"),
            Alias::new("total_gpu_hours"),
        )
        .expr_as(
            as_double(backend, "avg_gpu_count"),
            Alias::new("avg_gpu_count"),
        );
    match q.level {
        Granularity::Minute => {
            page.expr_as(
                as_double(backend, "total_gpu_seconds"),
                Alias::new("total_gpu_seconds"),
            );
        }
        Granularity::Hourly => {
            page.column(Alias::new("peak_minute")).expr_as(
                as_double(backend, "peak_gpu_hours"),
                Alias::new("peak_gpu_hours"),
            );
        }
        Granularity::Daily => {
            page.column(Alias::new("peak_hour"))
                .expr_as(
                    as_double(backend, "peak_gpu_hours"),
                    Alias::new("peak_gpu_hours"),
                )
                .expr_as(
                    as_double(backend, "available_gpu_hours"),
                    Alias::new("available_gpu_hours"),
                )
                .expr_as(
                    as_double(backend, "utilization_rate"),
                    Alias::new("utilization_rate"),
                );
        }
    }
    page.cond_where(filter.clone());
    if let Some(c) = &after {
        let bucket = || Expr::col(Alias::new("time_bucket"));
        let key = || Expr::col(Alias::new("scope_value_key"));
        page.cond_where(
            Cond::any()
                .add(bucket().gt(c.bucket.value()))
                .add(bucket().eq(c.bucket.value()).and(key().gt(c.key.clone())))
                .add(
                    bucket()
                        .eq(c.bucket.value())
                        .and(key().eq(c.key.clone()))
                        .and(Expr::col(Alias::new("id")).gt(c.id)),
                ),
        );
    }
    page.order_by(Alias::new("time_bucket"), Order::Asc)
        .order_by(Alias::new("scope_value_key"), Order::Asc)
        .order_by(Alias::new("id"), Order::Asc)
        // One extra row tells whether another page follows.
        .limit(limit.saturating_add(1));

    let raw = db.query_all(&page).await?;
    let mut rows = Vec::with_capacity(raw.len().min(limit as usize));
    let mut keys = Vec::with_capacity(rows.capacity());
    for r in raw.iter().take(limit as usize) {
        let (row, key) = decode_stats_row(r, q.level)?;
        rows.push(row);
        keys.push(key);
    }
    let next_cursor = if raw.len() as u64 > limit {
        rows.last().zip(keys.last()).map(|(row, key)| {
            StatsCursor {
                level: q.level,
                scope_type: q.scope.scope_type,
                bucket: Bucket::of(q.level, row.time_bucket),
                key: key.clone(),
                id: row.id,
            }
            .encode()
        })
    } else {
        None
    };

    let (total, summary) = summarize(db, q, filter).await?;
    Ok(StatsPage {
        rows,
        total,
        summary,
        next_cursor,
    })
}

/// The endpoints and specs that have statistics at any level, sorted.
pub async fn scopes(db: &impl ConnectionTrait) -> Result<Scopes> {
    let mut endpoints = BTreeSet::new();
    let mut specs = BTreeSet::new();
    for level in Granularity::ALL {
        let stmt = Query::select()
            .distinct()
            .columns([Alias::new("scope_type"), Alias::new("scope_value")])
            .from(Alias::new(level.table_name()))
            .and_where(
                Expr::col(Alias::new("scope_type"))
                    .is_in([ScopeType::Endpoint.as_str(), ScopeType::Spec.as_str()]),
            )
            .and_where(Expr::col(Alias::new("scope_value")).is_not_null())
            .to_owned();
        for r in db.query_all(&stmt).await? {
            let scope_type: String = get(&r, "scope_type")?;
            let value: String = get(&r, "scope_value")?;
            match scope_type.as_str() {
                "endpoint" => endpoints.insert(value),
                "spec" => specs.insert(value),
                _ => false,
            };
        }
    }
    Ok(Scopes {
        endpoints: endpoints.into_iter().collect(),
        specs: specs.into_iter().collect(),
    })
}

/// A page of raw records ascending by (completed_at, id), with the total.
pub async fn records(
    db: &impl ConnectionTrait,
    filter: &RecordFilter,
    page: &PageRequest,
) -> Result<RecordsPage> {
    let backend = db.get_database_backend();
    let after = page
        .cursor
        .as_deref()
        .map(RecordCursor::decode)
        .transpose()?;
    let limit = Ord::max(page.limit, 1);
    let completed = || Expr::col(Alias::new("completed_at"));
    let mut cond = Cond::all()
        .add(completed().gte(filter.range.start()))
        .add(completed().lt(filter.range.end()));
    if let Some(e) = &filter.endpoint {
        cond = cond.add(Expr::col(Alias::new("endpoint")).eq(e.clone()));
    }
    if let Some(s) = &filter.spec_name {
        cond = cond.add(Expr::col(Alias::new("spec_name")).eq(s.clone()));
    }
    if let Some(s) = filter.status {
        cond = cond.add(Expr::col(Alias::new("status")).eq(s.as_str()));
    }

    let mut stmt = Query::select();
    stmt.from(Alias::new(RECORDS_TABLE))
        .columns(
            [
                "id",
                "task_id",
                "endpoint",
                "worker_id",
                "spec_name",
                "gpu_count",
                "gpu_type",
                "gpu_memory_gb",
                "started_at",
                "completed_at",
                "duration_seconds",
                "status",
                "created_at",
            ]
            .map(Alias::new),
        )
        .expr_as(as_double(backend, "gpu_hours"), Alias::new("gpu_hours"))
        .cond_where(cond.clone());
    if let Some(c) = &after {
        stmt.cond_where(
            Cond::any().add(completed().gt(c.completed_at)).add(
                completed()
                    .eq(c.completed_at)
                    .and(Expr::col(Alias::new("id")).gt(c.id)),
            ),
        );
    }
    stmt.order_by(Alias::new("completed_at"), Order::Asc)
        .order_by(Alias::new("id"), Order::Asc)
        .limit(limit.saturating_add(1));

    let raw = db.query_all(&stmt).await?;
    let rows = raw
        .iter()
        .take(limit as usize)
        .map(decode_record)
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = if raw.len() as u64 > limit {
        rows.last().map(|r| {
            RecordCursor {
                completed_at: r.completed_at,
                id: r.id,
            }
            .encode()
        })
    } else {
        None
    };

    let count = Query::select()
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .from(Alias::new(RECORDS_TABLE))
        .cond_where(cond)
        .to_owned();
    let total = match db.query_one(&count).await? {
        Some(r) => Ord::max(get::<i64>(&r, "n")?, 0) as u64,
        None => 0,
    };
    Ok(RecordsPage {
        rows,
        total,
        next_cursor,
    })
}

fn stats_filter(q: &StatsQuery) -> Cond {
    let bucket = || Expr::col(Alias::new("time_bucket"));
    let mut cond = Cond::all();
    match q.level {
        Granularity::Daily => {
            let first = day_of(q.range.start());
            let end = q.range.end();
            // Exclusive: the day after the one holding the last instant.
            let after_last = if day_start(day_of(end)) == end {
                day_of(end)
            } else {
                day_of(end) + TimeDelta::days(1)
            };
            cond = cond.add(bucket().gte(first)).add(bucket().lt(after_last));
        }
        _ => {
            cond = cond
                .add(bucket().gte(q.range.start()))
                .add(bucket().lt(q.range.end()));
        }
    }
    cond = cond.add(Expr::col(Alias::new("scope_type")).eq(q.scope.scope_type.as_str()));
    if let Some(v) = &q.scope.value {
        cond = cond.add(Expr::col(Alias::new("scope_value")).eq(v.clone()));
    }
    cond
}

async fn summarize(
    db: &impl ConnectionTrait,
    q: &StatsQuery,
    filter: Cond,
) -> Result<(u64, Summary)> {
    let backend = db.get_database_backend();
    let table = Alias::new(q.level.table_name());
    let totals = Query::select()
        .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .expr_as(sum_int(backend, "total_tasks"), Alias::new("total_tasks"))
        .expr_as(
            sum_int(backend, "completed_tasks"),
            Alias::new("completed_tasks"),
        )
        .expr_as(sum_int(backend, "failed_tasks"), Alias::new("failed_tasks"))
        .expr_as(
            sum_int(backend, "gpu_milliseconds"),
            Alias::new("gpu_milliseconds"),
        )
        .expr_as(
            sum_int(backend, "gpu_count_sum"),
            Alias::new("gpu_count_sum"),
        )
        .expr_as(
            Expr::cust("COALESCE(MAX(max_gpu_count), 0)"),
            Alias::new("max_gpu_count"),
        )
        .from(table.clone())
        .cond_where(filter.clone())
        .to_owned();
    let Some(t) = db.query_one(&totals).await? else {
        return Err(DomainError::Database(sea_orm::DbErr::RecordNotFound(
            "aggregate query returned no row".to_owned(),
        )));
    };
    let n: i64 = get(&t, "n")?;
    let total_tasks: i64 = get(&t, "total_tasks")?;
    let gpu_milliseconds: i64 = get(&t, "gpu_milliseconds")?;
    let gpu_count_sum: i64 = get(&t, "gpu_count_sum")?;

    let peak_stmt = Query::select()
        .column(Alias::new("time_bucket"))
        .expr_as(sum_int(backend, "gpu_milliseconds"), Alias::new("ms"))
        .from(table)
        .cond_where(filter)
        .group_by_col(Alias::new("time_bucket"))
        .and_having(Expr::cust("SUM(gpu_milliseconds) > 0"))
        .order_by(Alias::new("ms"), Order::Desc)
        .order_by(Alias::new("time_bucket"), Order::Asc)
        .limit(1)
        .to_owned();
    let peak = match db.query_one(&peak_stmt).await? {
        Some(r) => Some(Peak {
            time_bucket: read_bucket(&r, q.level)?,
            gpu_hours: round_to(get::<i64>(&r, "ms")? as f64 / 3_600_000.0, 6),
        }),
        None => None,
    };

    let summary = Summary {
        total_tasks,
        completed_tasks: get(&t, "completed_tasks")?,
        failed_tasks: get(&t, "failed_tasks")?,
        gpu_milliseconds,
        total_gpu_hours: round_to(gpu_milliseconds as f64 / 3_600_000.0, 6),
        total_gpu_seconds: round_to(gpu_milliseconds as f64 / 1000.0, 3),
        avg_gpu_count: if total_tasks > 0 {
            round_to(gpu_count_sum as f64 / total_tasks as f64, 2)
        } else {
            0.0
        },
        max_gpu_count: get(&t, "max_gpu_count")?,
        peak,
    };
    Ok((Ord::max(n, 0) as u64, summary))
}

fn decode_stats_row(r: &QueryResult, level: Granularity) -> Result<(StatsRow, String)> {
    let scope_type: String = get(r, "scope_type")?;
    let scope_type = scope_type.parse::<ScopeType>().map_err(|_| {
        DomainError::Database(sea_orm::DbErr::Type(format!(
            "unknown scope_type {scope_type:?} in {}",
            level.table_name()
        )))
    })?;
    let level_fields = match level {
        Granularity::Minute => LevelFields::Minute {
            total_gpu_seconds: round_to(
                get::<Option<f64>>(r, "total_gpu_seconds")?.unwrap_or(0.0),
                3,
            ),
        },
        Granularity::Hourly => LevelFields::Hourly {
            peak_minute: get(r, "peak_minute")?,
            peak_gpu_hours: opt_round(get(r, "peak_gpu_hours")?, 6),
        },
        Granularity::Daily => LevelFields::Daily {
            peak_hour: get(r, "peak_hour")?,
            peak_gpu_hours: opt_round(get(r, "peak_gpu_hours")?, 6),
            available_gpu_hours: opt_round(get(r, "available_gpu_hours")?, 6),
            utilization_rate: opt_round(get(r, "utilization_rate")?, 4),
        },
    };
    let row = StatsRow {
        id: get(r, "id")?,
        time_bucket: read_bucket(r, level)?,
        scope_type,
        scope_value: get(r, "scope_value")?,
        total_tasks: get(r, "total_tasks")?,
        completed_tasks: get(r, "completed_tasks")?,
        failed_tasks: get(r, "failed_tasks")?,
        total_gpu_hours: round_to(get::<Option<f64>>(r, "total_gpu_hours")?.unwrap_or(0.0), 6),
        gpu_milliseconds: get(r, "gpu_milliseconds")?,
        avg_gpu_count: round_to(get::<Option<f64>>(r, "avg_gpu_count")?.unwrap_or(0.0), 2),
        max_gpu_count: get(r, "max_gpu_count")?,
        period_start: get(r, "period_start")?,
        period_end: get(r, "period_end")?,
        updated_at: get(r, "updated_at")?,
        level: level_fields,
    };
    let key: String = get(r, "scope_value_key")?;
    Ok((row, key))
}

fn decode_record(r: &QueryResult) -> Result<UsageRecord> {
    let status: String = get(r, "status")?;
    let status = status.parse::<TaskStatus>().map_err(|_| {
        DomainError::Database(sea_orm::DbErr::Type(format!(
            "unknown status {status:?} in {RECORDS_TABLE}"
        )))
    })?;
    Ok(UsageRecord {
        id: get(r, "id")?,
        task_id: get(r, "task_id")?,
        endpoint: get(r, "endpoint")?,
        worker_id: get(r, "worker_id")?,
        spec_name: get(r, "spec_name")?,
        gpu_count: get(r, "gpu_count")?,
        gpu_type: get(r, "gpu_type")?,
        gpu_memory_gb: get(r, "gpu_memory_gb")?,
        started_at: get(r, "started_at")?,
        completed_at: get(r, "completed_at")?,
        duration_seconds: get(r, "duration_seconds")?,
        gpu_hours: round_to(get::<Option<f64>>(r, "gpu_hours")?.unwrap_or(0.0), 6),
        status,
        created_at: get(r, "created_at")?,
    })
}

fn get<T: TryGetable>(r: &QueryResult, col: &str) -> Result<T> {
    Ok(r.try_get::<T>("", col)?)
}

/// Minute and hourly buckets are DATETIME, daily ones DATE.
fn read_bucket(r: &QueryResult, level: Granularity) -> Result<DateTime<Utc>> {
    match level {
        Granularity::Daily => Ok(day_start(get::<NaiveDate>(r, "time_bucket")?)),
        _ => get(r, "time_bucket"),
    }
}

fn as_double(backend: DbBackend, col: &str) -> Expr {
    match backend {
        DbBackend::Sqlite => Expr::cust(format!("CAST({col} AS REAL)")),
        _ => Expr::cust(format!("CAST({col} AS DOUBLE)")),
    }
}

/// SUM over an integer column as a 64-bit integer, 0 over no rows. MySQL
/// widens SUM to DECIMAL, which does not decode as an integer.
fn sum_int(backend: DbBackend, col: &str) -> Expr {
    match backend {
        DbBackend::MySql => Expr::cust(format!("CAST(COALESCE(SUM({col}), 0) AS SIGNED)")),
        _ => Expr::cust(format!("COALESCE(SUM({col}), 0)")),
    }
}

fn round_to(v: f64, scale: i32) -> f64 {
    let f = 10f64.powi(scale);
    (v * f).round() / f
}

fn opt_round(v: Option<f64>, scale: i32) -> Option<f64> {
    v.map(|v| round_to(v, scale))
}

/// The bucket a cursor points at, typed like the column it is compared to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    At(DateTime<Utc>),
    Day(NaiveDate),
}

impl Bucket {
    fn of(level: Granularity, t: DateTime<Utc>) -> Self {
        match level {
            Granularity::Daily => Bucket::Day(day_of(t)),
            _ => Bucket::At(t),
        }
    }

    fn value(&self) -> sea_orm::Value {
        match self {
            Bucket::At(t) => (*t).into(),
            Bucket::Day(d) => (*d).into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct StatsCursor {
    level: Granularity,
    scope_type: ScopeType,
    bucket: Bucket,
    key: String,
    id: i64,
}

fn bad_cursor() -> DomainError {
    DomainError::invalid(
        "cursor",
        "not a cursor returned by this query; start again without it",
    )
}

impl StatsCursor {
    fn encode(&self) -> String {
        let bucket = match self.bucket {
            Bucket::At(t) => t.timestamp_millis().to_string(),
            Bucket::Day(d) => d.format("%Y-%m-%d").to_string(),
        };
        hex_encode(&format!(
            "s1|{}|{}|{bucket}|{}|{}",
            self.level, self.scope_type, self.id, self.key
        ))
    }

    /// Refuses cursors of another level or scope type: their keys would
    /// silently skip or repeat rows of this query.
    fn decode(s: &str, level: Granularity, scope_type: ScopeType) -> Result<Self> {
        let text = hex_decode(s).ok_or_else(bad_cursor)?;
        let mut parts = text.splitn(6, '|');
        let (Some("s1"), Some(l), Some(st), Some(bucket), Some(id), Some(key)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad_cursor());
        };
        if l != level.as_str() || st != scope_type.as_str() {
            return Err(bad_cursor());
        }
        let bucket = match level {
            Granularity::Daily => Bucket::Day(
                NaiveDate::parse_from_str(bucket, "%Y-%m-%d").map_err(|_| bad_cursor())?,
            ),
            _ => Bucket::At(
                bucket
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .ok_or_else(bad_cursor)?,
            ),
        };
        let id = id.parse::<i64>().map_err(|_| bad_cursor())?;
        Ok(Self {
            level,
            scope_type,
            bucket,
            key: key.to_owned(),
            id,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordCursor {
    completed_at: DateTime<Utc>,
    id: i64,
}

impl RecordCursor {
    fn encode(&self) -> String {
        hex_encode(&format!(
            "r1|{}|{}",
            self.completed_at.timestamp_millis(),
            self.id
        ))
    }

    fn decode(s: &str) -> Result<Self> {
        let text = hex_decode(s).ok_or_else(bad_cursor)?;
        let mut parts = text.split('|');
        let (Some("r1"), Some(t), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_cursor());
        };
        let completed_at = t
            .parse::<i64>()
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .ok_or_else(bad_cursor)?;
        let id = id.parse::<i64>().map_err(|_| bad_cursor())?;
        Ok(Self { completed_at, id })
    }
}

fn hex_encode(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<String> {
    // Cursors are short; a bound keeps a hostile one from costing memory.
    if !s.len().is_multiple_of(2) || s.len() > 4096 {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::types::parse_utc("t", s).unwrap()
    }

    #[test]
    fn stats_cursor_round_trips_and_is_bound_to_its_query() {
        let c = StatsCursor {
            level: Granularity::Hourly,
            scope_type: ScopeType::Endpoint,
            bucket: Bucket::At(t("2026-01-01T05:00:00Z")),
            key: "ep|with|pipes".to_owned(),
            id: 42,
        };
        let s = c.encode();
        assert!(s.chars().all(|ch| ch.is_ascii_hexdigit()));
        assert_eq!(
            StatsCursor::decode(&s, Granularity::Hourly, ScopeType::Endpoint).unwrap(),
            c
        );
        assert!(StatsCursor::decode(&s, Granularity::Minute, ScopeType::Endpoint).is_err());
        assert!(StatsCursor::decode(&s, Granularity::Hourly, ScopeType::Spec).is_err());

        let d = StatsCursor {
            level: Granularity::Daily,
            scope_type: ScopeType::Global,
            bucket: Bucket::Day(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()),
            key: "__GLOBAL__".to_owned(),
            id: 7,
        };
        assert_eq!(
            StatsCursor::decode(&d.encode(), Granularity::Daily, ScopeType::Global).unwrap(),
            d
        );
    }

    #[test]
    fn garbage_cursors_are_invalid_input() {
        for bad in [
            "",
            "zz",
            "abc",
            "00",
            &hex_encode("s1|minute|global|x|1|k"),
            &hex_encode("r1|1"),
        ] {
            assert!(matches!(
                StatsCursor::decode(bad, Granularity::Minute, ScopeType::Global),
                Err(DomainError::Invalid { .. })
            ));
            assert!(matches!(
                RecordCursor::decode(bad),
                Err(DomainError::Invalid { .. })
            ));
        }
        let r = RecordCursor {
            completed_at: t("2026-01-01T00:00:00.123Z"),
            id: 9,
        };
        assert_eq!(RecordCursor::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn rounding_removes_binary_noise() {
        assert_eq!(round_to(0.016666700000000002, 6), 0.016667);
        assert_eq!(round_to(1.005, 2), 1.0);
        assert_eq!(round_to(2.0, 4), 2.0);
    }
}
