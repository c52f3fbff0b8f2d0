//! The API's own envelopes around domain types. Rows, summaries, jobs,
//! reports and status are the domain crate's types, serialised and
//! documented as they are; only what exists on the wire alone is here.
//!
//! Field names are the original service's (snake_case). Every quantity is a
//! JSON number and every time RFC 3339 in UTC with a `Z`.

use chrono::{DateTime, Utc};
use gpu_usage_core::DomainError;
use gpu_usage_core::backfill::BackfillJob;
use gpu_usage_core::job_runs::JobRunSummary;
use gpu_usage_core::query::{Summary, UsageRecord};
use gpu_usage_core::record::{InvalidRecord, Record, RecordJson};
use gpu_usage_core::rollup::RollupReport;
use gpu_usage_core::status::LevelStatus;
use gpu_usage_core::types::Levels;
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
    Many(Vec<BatchItem>),
    One(Box<RecordJson>),
}

/// An element of a batch, parsed on its own so a non-object is reported
/// at its position rather than failing the whole body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(value_type = RecordJson)]
pub struct BatchItem(serde_json::Value);

impl IngestBody {
    /// Each item parsed into a record or the reasons it is not one.
    pub fn parse(
        body: serde_json::Value,
    ) -> Result<Vec<Result<Record, InvalidRecord>>, DomainError> {
        let items = match serde_json::from_value(body) {
            Ok(IngestBody::One(r)) => vec![Record::try_from(*r)],
            Ok(IngestBody::Many(items)) => items.into_iter().map(|i| item(i.0)).collect(),
            Err(_) => {
                return Err(DomainError::invalid(
                    "body",
                    "expected a record object or an array of record objects",
                ));
            }
        };
        Ok(items)
    }
}

fn item(v: serde_json::Value) -> Result<Record, InvalidRecord> {
    match serde_json::from_value::<RecordJson>(v) {
        Ok(r) => Record::try_from(r),
        Err(_) => Err(InvalidRecord {
            task_id: None,
            problems: vec![("record".to_owned(), "expected a JSON object".to_owned())],
        }),
    }
}
