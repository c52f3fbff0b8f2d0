//! The API's own envelopes around domain types. Rows, summaries, jobs,
//! reports and status are the domain crate's types, serialised and
//! documented as they are; only what exists on the wire alone is here.
//!
//! Field names are the original service's (snake_case). Every quantity is a
//! JSON number and every time RFC 3339 in UTC with a `Z`.

use chrono::{DateTime, Utc};
use gpu_usage_core::backfill::BackfillJob;
use gpu_usage_core::job_runs::JobRunSummary;
use gpu_usage_core::query::{Summary, UsageRecord};
use gpu_usage_core::rollup::RollupReport;
use gpu_usage_core::status::LevelStatus;
use gpu_usage_core::types::Levels;
use serde::Serialize;
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
    pub summary: Summary,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub limit: u64,
}

/// A page of records, ascending by (completed_at, id).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordsResponse {
    pub data: Vec<UsageRecord>,
    pub total: u64,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub next_cursor: Option<String>,
    pub limit: u64,
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
    pub levels: Vec<RollupReport>,
}

/// A long recomputation handed to a background job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAccepted {
    /// Always `accepted`.
    pub status: String,
    /// Poll this for progress.
    pub status_url: String,
    pub job: BackfillJob,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: String,
}

/// Engine status: how far each level is complete, and recent job runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    pub now: DateTime<Utc>,
    pub levels: Vec<LevelStatus>,
    /// The latest run of every job.
    pub jobs: Vec<JobRunSummary>,
}

/// Backfill jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillListResponse {
    pub data: Vec<BackfillJob>,
}

/// One finished task as posted to `POST /records`. Server-derived fields
/// (id, duration_seconds, gpu_hours, created_at) are ignored if sent.
#[derive(Debug, serde::Deserialize, ToSchema)]
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
#[derive(serde::Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum IngestBodyDoc {
    One(RecordInputDoc),
    Many(Vec<RecordInputDoc>),
}
