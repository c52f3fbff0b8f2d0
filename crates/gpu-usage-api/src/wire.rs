//! The API's own envelopes around domain types. Rows, summaries, jobs,
//! reports and status are the domain crate's types, serialised and
//! documented as they are; only what exists on the wire alone is here.
//!
//! Field names are the original service's (snake_case). Every quantity is a
//! JSON number and every time RFC 3339 in UTC with a `Z`.

use chrono::{DateTime, Utc};
use gpu_usage_core::DomainError;
use gpu_usage_core::backfill::BackfillJob;
use gpu_usage_core::capacity::{Heartbeat, HeartbeatJson, Session, SessionJson};
use gpu_usage_core::fields::Invalid;
use gpu_usage_core::job_runs::JobRunSummary;
use gpu_usage_core::query::{RowsPage, Summary};
use gpu_usage_core::record::{Record, RecordJson};
use gpu_usage_core::rollup::RollupReport;
use gpu_usage_core::status::LevelStatus;
use gpu_usage_core::types::{Levels, TimeRange};
use serde::de::DeserializeOwned;
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
    pub summary: Summary,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub limit: u64,
}

/// A page of a list ascending by (time, id): records by completed_at,
/// worker sessions by started_at.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse<T: ToSchema> {
    pub data: Vec<T>,
    pub total: u64,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub next_cursor: Option<String>,
    pub limit: u64,
}

impl<T: ToSchema> ListResponse<T> {
    /// The answer for one page of a listing over `range`.
    pub fn new(page: RowsPage<T>, range: TimeRange, limit: u64) -> Self {
        Self {
            data: page.rows,
            total: page.total,
            start_time: range.start(),
            end_time: range.end(),
            next_cursor: page.next_cursor,
            limit,
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
    pub levels: Vec<RollupReport>,
}

/// A long recomputation handed to a background job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAccepted {
    /// Always `accepted`.
    pub status: String,
    /// Poll this for progress.
    pub status_url: String,
    /// The levels and the range asked for, as in the inline answer.
    pub granularity: Levels,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub job: BackfillJob,
    /// The original service's figures, which it reported after running the
    /// backfill inside the request. Here the job is only queued when this
    /// answer is sent, so they are 0 (and `errors` empty); the job's
    /// progress is at `status_url`.
    #[serde(rename = "totalTasksProcessed")]
    pub total_tasks_processed: u64,
    #[serde(rename = "recordsCreated")]
    pub records_created: u64,
    #[serde(rename = "recordsSkipped")]
    pub records_skipped: u64,
    /// Seconds spent inside this request (0: nothing ran yet).
    pub duration: f64,
    pub errors: Vec<String>,
}

impl JobAccepted {
    pub fn new(
        job: BackfillJob,
        granularity: Levels,
        (start_time, end_time): (DateTime<Utc>, DateTime<Utc>),
        status_url: String,
    ) -> Self {
        Self {
            status: "accepted".to_owned(),
            status_url,
            granularity,
            start_time,
            end_time,
            job,
            total_tasks_processed: 0,
            records_created: 0,
            records_skipped: 0,
            duration: 0.0,
            errors: Vec::new(),
        }
    }
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

/// The body of `POST /records`: one record object, or an array of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum IngestBody {
    Many(Vec<RecordJson>),
    One(Box<RecordJson>),
}

/// The body of `POST /workers/sessions`: one session object, or an array.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SessionsBody {
    Many(Vec<SessionJson>),
    One(Box<SessionJson>),
}

/// The body of `POST /workers/heartbeats`: one heartbeat, or an array.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum HeartbeatsBody {
    Many(Vec<HeartbeatJson>),
    One(Box<HeartbeatJson>),
}

impl IngestBody {
    pub fn parse(body: serde_json::Value) -> Result<Vec<Result<Record, Invalid>>, DomainError> {
        parse_batch::<RecordJson, Record>(body, "record")
    }
}

impl SessionsBody {
    pub fn parse(body: serde_json::Value) -> Result<Vec<Result<Session, Invalid>>, DomainError> {
        parse_batch::<SessionJson, Session>(body, "session")
    }
}

impl HeartbeatsBody {
    pub fn parse(body: serde_json::Value) -> Result<Vec<Result<Heartbeat, Invalid>>, DomainError> {
        parse_batch::<HeartbeatJson, Heartbeat>(body, "heartbeat")
    }
}

/// Each item of a batch body (one object or an array of them) parsed on
/// its own into `T` or the reasons it is not one, so a non-object is
/// reported at its position rather than failing the whole body. `what`
/// names an item in errors (`record`, `session`, `heartbeat`).
pub fn parse_batch<J, T>(
    body: serde_json::Value,
    what: &str,
) -> Result<Vec<Result<T, Invalid>>, DomainError>
where
    J: DeserializeOwned,
    T: TryFrom<J, Error = Invalid>,
{
    let parse = |v: serde_json::Value| match serde_json::from_value::<J>(v) {
        Ok(j) => T::try_from(j),
        Err(_) => Err(Invalid::malformed(what, "expected a JSON object")),
    };
    match body {
        serde_json::Value::Array(items) => Ok(items.into_iter().map(parse).collect()),
        v @ serde_json::Value::Object(_) => Ok(vec![parse(v)]),
        _ => Err(DomainError::invalid(
            "body",
            format!("expected a {what} object or an array of {what} objects"),
        )),
    }
}
