//! Response and request body types: the API's wire format, documented in
//! the OpenAPI document. Built from domain types, never from entities, so a
//! schema change cannot silently change the API.
//!
//! Field names are the original service's (snake_case). Every quantity is a
//! JSON number (decimals too: dashboards call number methods on them) and
//! every time is RFC 3339 in UTC with a `Z`.

use chrono::{DateTime, Utc};
use gpu_usage_core::backfill::BackfillStatus;
use gpu_usage_core::job_runs::RunOutcome;
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::query::{self, LevelFields, StatsRow};
use gpu_usage_core::types::{Levels, TimeRange};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A page of statistics rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse<T: ToSchema> {
    /// Rows ascending by (time_bucket, scope_value); empty when nothing
    /// matches.
    pub data: Vec<T>,
    /// Every row the query matches, across all pages.
    pub total: u64,
    /// The range queried (after defaults).
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// Totals over the whole range, not only this page.
    pub summary: SummaryDto,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub limit: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryDto {
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    /// Exact: Σ GPU time / 3600, over every matching row.
    pub total_gpu_hours: f64,
    pub total_gpu_seconds: f64,
    /// Task-weighted average GPUs per task (not a mean of row averages).
    pub avg_gpu_count: f64,
    pub max_gpu_count: i64,
    /// Bucket with the most GPU time summed over the matching rows (ties:
    /// the earliest); null without GPU time.
    pub peak_time_bucket: Option<DateTime<Utc>>,
    pub peak_gpu_hours: Option<f64>,
}

impl From<query::Summary> for SummaryDto {
    fn from(s: query::Summary) -> Self {
        Self {
            total_tasks: s.total_tasks,
            completed_tasks: s.completed_tasks,
            failed_tasks: s.failed_tasks,
            total_gpu_hours: s.total_gpu_hours,
            total_gpu_seconds: s.total_gpu_seconds,
            avg_gpu_count: s.avg_gpu_count,
            max_gpu_count: s.max_gpu_count,
            peak_time_bucket: s.peak.as_ref().map(|p| p.time_bucket),
            peak_gpu_hours: s.peak.map(|p| p.gpu_hours),
        }
    }
}

/// One minute of one scope.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinuteRow {
    pub id: i64,
    pub time_bucket: DateTime<Utc>,
    /// `global`, `endpoint` or `spec`.
    pub scope_type: String,
    /// Null for global.
    pub scope_value: Option<String>,
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    /// GPU-seconds used inside this minute.
    pub total_gpu_seconds: f64,
    pub total_gpu_hours: f64,
    pub avg_gpu_count: f64,
    pub max_gpu_count: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One hour of one scope.
#[derive(Debug, Serialize, ToSchema)]
pub struct HourlyRow {
    pub id: i64,
    pub time_bucket: DateTime<Utc>,
    pub scope_type: String,
    pub scope_value: Option<String>,
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    pub total_gpu_hours: f64,
    pub avg_gpu_count: f64,
    pub max_gpu_count: i64,
    /// Minute of the hour with the most GPU time; null without GPU time.
    pub peak_minute: Option<DateTime<Utc>>,
    pub peak_gpu_hours: Option<f64>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One UTC day of one scope; `time_bucket` is its midnight.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyRow {
    pub id: i64,
    pub time_bucket: DateTime<Utc>,
    pub scope_type: String,
    pub scope_value: Option<String>,
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    pub total_gpu_hours: f64,
    pub avg_gpu_count: f64,
    pub max_gpu_count: i64,
    /// Hour of the day with the most GPU time; null without GPU time.
    pub peak_hour: Option<DateTime<Utc>>,
    pub peak_gpu_hours: Option<f64>,
    /// Null until capacity is known.
    pub available_gpu_hours: Option<f64>,
    /// Null until capacity is known.
    pub utilization_rate: Option<f64>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<StatsRow> for MinuteRow {
    fn from(r: StatsRow) -> Self {
        let total_gpu_seconds = match r.level {
            LevelFields::Minute { total_gpu_seconds } => total_gpu_seconds,
            // A minute query only returns minute rows; keep the quantity
            // consistent with the hours if that ever changes.
            _ => (r.gpu_milliseconds as f64) / 1000.0,
        };
        Self {
            id: r.id,
            time_bucket: r.time_bucket,
            scope_type: r.scope_type.as_str().to_owned(),
            scope_value: r.scope_value,
            total_tasks: r.total_tasks,
            completed_tasks: r.completed_tasks,
            failed_tasks: r.failed_tasks,
            total_gpu_seconds,
            total_gpu_hours: r.total_gpu_hours,
            avg_gpu_count: r.avg_gpu_count,
            max_gpu_count: r.max_gpu_count,
            period_start: r.period_start,
            period_end: r.period_end,
            updated_at: r.updated_at,
        }
    }
}

impl From<StatsRow> for HourlyRow {
    fn from(r: StatsRow) -> Self {
        let (peak_minute, peak_gpu_hours) = match r.level {
            LevelFields::Hourly {
                peak_minute,
                peak_gpu_hours,
            } => (peak_minute, peak_gpu_hours),
            _ => (None, None),
        };
        Self {
            id: r.id,
            time_bucket: r.time_bucket,
            scope_type: r.scope_type.as_str().to_owned(),
            scope_value: r.scope_value,
            total_tasks: r.total_tasks,
            completed_tasks: r.completed_tasks,
            failed_tasks: r.failed_tasks,
            total_gpu_hours: r.total_gpu_hours,
            avg_gpu_count: r.avg_gpu_count,
            max_gpu_count: r.max_gpu_count,
            peak_minute,
            peak_gpu_hours,
            period_start: r.period_start,
            period_end: r.period_end,
            updated_at: r.updated_at,
        }
    }
}

impl From<StatsRow> for DailyRow {
    fn from(r: StatsRow) -> Self {
        let (peak_hour, peak_gpu_hours, available_gpu_hours, utilization_rate) = match r.level {
            LevelFields::Daily {
                peak_hour,
                peak_gpu_hours,
                available_gpu_hours,
                utilization_rate,
            } => (
                peak_hour,
                peak_gpu_hours,
                available_gpu_hours,
                utilization_rate,
            ),
            _ => (None, None, None, None),
        };
        Self {
            id: r.id,
            time_bucket: r.time_bucket,
            scope_type: r.scope_type.as_str().to_owned(),
            scope_value: r.scope_value,
            total_tasks: r.total_tasks,
            completed_tasks: r.completed_tasks,
            failed_tasks: r.failed_tasks,
            total_gpu_hours: r.total_gpu_hours,
            avg_gpu_count: r.avg_gpu_count,
            max_gpu_count: r.max_gpu_count,
            peak_hour,
            peak_gpu_hours,
            available_gpu_hours,
            utilization_rate,
            period_start: r.period_start,
            period_end: r.period_end,
            updated_at: r.updated_at,
        }
    }
}

/// Scope values that have statistics, for pickers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopesResponse {
    pub endpoints: Vec<String>,
    pub specs: Vec<String>,
}

impl From<query::Scopes> for ScopesResponse {
    fn from(s: query::Scopes) -> Self {
        Self {
            endpoints: s.endpoints,
            specs: s.specs,
        }
    }
}

/// One stored usage record.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordDto {
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
    /// Whole seconds, rounded down.
    pub duration_seconds: i64,
    pub gpu_hours: f64,
    /// `COMPLETED` or `FAILED`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

impl From<query::UsageRecord> for RecordDto {
    fn from(r: query::UsageRecord) -> Self {
        Self {
            id: r.id,
            task_id: r.task_id,
            endpoint: r.endpoint,
            worker_id: r.worker_id,
            spec_name: r.spec_name,
            gpu_count: r.gpu_count,
            gpu_type: r.gpu_type,
            gpu_memory_gb: r.gpu_memory_gb,
            started_at: r.started_at,
            completed_at: r.completed_at,
            duration_seconds: r.duration_seconds,
            gpu_hours: r.gpu_hours,
            status: r.status.as_str().to_owned(),
            created_at: r.created_at,
        }
    }
}

/// A page of records, ascending by (completed_at, id).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordsResponse {
    pub data: Vec<RecordDto>,
    pub total: u64,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub next_cursor: Option<String>,
    pub limit: u64,
}

/// One finished task as posted to `POST /records`. Server-derived fields
/// (id, duration_seconds, gpu_hours, created_at) are ignored if sent.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RecordInputDoc {
    /// Unique per task; the idempotency key.
    pub task_id: String,
    pub endpoint: String,
    pub worker_id: Option<String>,
    pub spec_name: Option<String>,
    /// 0 or more.
    pub gpu_count: i64,
    pub gpu_type: Option<String>,
    pub gpu_memory_gb: Option<i64>,
    /// RFC 3339 with an offset.
    pub started_at: DateTime<Utc>,
    /// RFC 3339 with an offset; not before `started_at`.
    pub completed_at: DateTime<Utc>,
    /// `COMPLETED` or `FAILED`.
    pub status: String,
}

/// One record object, or an array of them.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum IngestBodyDoc {
    One(RecordInputDoc),
    Many(Vec<RecordInputDoc>),
}

/// What an ingest call did. Replays of stored records are duplicates;
/// different content under a stored task_id is a conflict, and the stored
/// record is kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    pub received: usize,
    pub inserted: usize,
    pub duplicates: usize,
    pub conflicts: Vec<ConflictDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictDto {
    /// Position in the batch, from 0.
    pub index: usize,
    pub task_id: String,
    /// Fields that differ from the stored record.
    pub fields: Vec<String>,
}

impl From<gpu_usage_core::ingest::IngestReport> for IngestResponse {
    fn from(r: gpu_usage_core::ingest::IngestReport) -> Self {
        Self {
            received: r.received,
            inserted: r.inserted,
            duplicates: r.duplicates,
            conflicts: r
                .conflicts
                .into_iter()
                .map(|c| ConflictDto {
                    index: c.index,
                    task_id: c.task_id,
                    fields: c.fields,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RangeDto {
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
}

impl From<TimeRange> for RangeDto {
    fn from(r: TimeRange) -> Self {
        Self {
            start_time: r.start(),
            end_time: r.end(),
        }
    }
}

/// What one level's recomputation did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LevelReportDto {
    /// `minute`, `hourly` or `daily`.
    pub level: String,
    /// Buckets of this level covered.
    pub buckets: u64,
    pub rows_written: u64,
    /// Queued late-data ranges this run made unnecessary.
    pub pending_consumed: u64,
    /// Parts left as they were because their source data is gone
    /// (retention); never overwritten with less.
    pub skipped: Vec<RangeDto>,
}

impl From<gpu_usage_core::rollup::RollupReport> for LevelReportDto {
    fn from(r: gpu_usage_core::rollup::RollupReport) -> Self {
        Self {
            level: r.level.as_str().to_owned(),
            buckets: r.buckets,
            rows_written: r.rows_written,
            pending_consumed: r.pending_consumed,
            skipped: r.skipped.into_iter().map(Into::into).collect(),
        }
    }
}

/// A recomputation done inside the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct AggregateResponse {
    /// Always `completed` here; long ranges answer 202 with a job instead.
    pub status: String,
    pub granularity: Levels,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// One entry per level, in the order run (finest first).
    pub levels: Vec<LevelReportDto>,
}

/// A long recomputation handed to a background job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAccepted {
    /// Always `accepted`.
    pub status: String,
    /// Poll this for progress.
    pub status_url: String,
    pub job: BackfillJobDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: String,
}

/// Engine status: how far each level is complete, and recent job runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    pub now: DateTime<Utc>,
    pub levels: Vec<LevelStatusDto>,
    /// The latest run of every job.
    pub jobs: Vec<JobRunDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LevelStatusDto {
    /// `minute`, `hourly` or `daily`.
    pub level: String,
    /// Ranges queued for recomputation at this level (late data, downtime).
    pub pending_ranges: u64,
    /// Distinct buckets of this level those ranges cover.
    pub pending_buckets: u64,
    /// Start of the oldest queued range.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Every bucket of this level before this instant reflects every stored
    /// record.
    pub complete_through: DateTime<Utc>,
    /// Seconds between `complete_through` and now.
    pub lag_seconds: i64,
}

impl From<gpu_usage_core::status::LevelStatus> for LevelStatusDto {
    fn from(s: gpu_usage_core::status::LevelStatus) -> Self {
        Self {
            level: s.level.as_str().to_owned(),
            pending_ranges: s.pending_ranges,
            pending_buckets: s.pending_buckets,
            oldest_pending: s.oldest_pending,
            complete_through: s.complete_through,
            lag_seconds: s.lag_seconds,
        }
    }
}

/// The latest run of one job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobRunDto {
    pub job: JobName,
    /// The replica that ran it.
    pub runner: String,
    pub started_at: DateTime<Utc>,
    /// Null while running.
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub rows_written: i64,
    /// What it did, or why it failed.
    pub detail: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<i64>,
}

impl From<gpu_usage_core::job_runs::JobRunSummary> for JobRunDto {
    fn from(s: gpu_usage_core::job_runs::JobRunSummary) -> Self {
        Self {
            job: s.job,
            runner: s.last_run.runner,
            started_at: s.last_run.started_at,
            finished_at: s.last_run.finished_at,
            outcome: s.last_run.outcome,
            rows_written: s.last_run.rows_written,
            detail: s.last_run.detail,
            last_success_at: s.last_success_at,
            last_duration_ms: s.last_duration_ms,
        }
    }
}

/// A tracked backfill job.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillJobDto {
    pub id: i64,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub granularity: Levels,
    pub status: BackfillStatus,
    /// Where work resumes: everything before it is done.
    pub next_chunk_start: DateTime<Utc>,
    /// The range is rebuilt one UTC day (chunk) at a time.
    pub chunks_total: i32,
    pub chunks_done: i32,
    /// chunks_done / chunks_total, from 0 to 1.
    pub progress: f64,
    /// Why it failed.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<gpu_usage_core::backfill::BackfillJob> for BackfillJobDto {
    fn from(j: gpu_usage_core::backfill::BackfillJob) -> Self {
        Self {
            id: j.id,
            start_time: j.start_time,
            end_time: j.end_time,
            granularity: j.granularity,
            status: j.status,
            next_chunk_start: j.next_chunk_start,
            chunks_total: j.chunks_total,
            chunks_done: j.chunks_done,
            progress: j.progress,
            error: j.error,
            created_at: j.created_at,
            updated_at: j.updated_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

/// Backfill jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillListResponse {
    pub data: Vec<BackfillJobDto>,
}
