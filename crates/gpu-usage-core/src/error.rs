//! Domain errors. The HTTP layer maps each variant to a status in one place;
//! binaries wrap them in `anyhow`.

use sea_orm::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Input that cannot be accepted; names the field and why. Nothing was
    /// written.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },

    /// A batch with invalid records: rejected whole, every problem listed.
    #[error("{} invalid record(s) in the batch; nothing was stored", invalid_records(.0))]
    InvalidRecords(Vec<RecordProblem>),

    /// A batch of worker sessions or heartbeats with invalid items:
    /// rejected whole, every problem listed (`task_id` unset, `worker_id`
    /// naming the worker).
    #[error("{} invalid {what} in the batch; nothing was stored", invalid_records(.problems))]
    InvalidReports {
        /// `sessions` or `heartbeats`.
        what: &'static str,
        problems: Vec<RecordProblem>,
    },

    #[error("{what} not found")]
    NotFound { what: String },

    /// Another runner holds the job's lock; nothing was done.
    #[error("job {job} is already running elsewhere")]
    Busy { job: String },

    /// The job's lock was lost while it ran (its database session ended);
    /// the job stopped before its next write, and its work is redone.
    #[error("job {job} lost its lock while running; it stopped and its work will be redone")]
    LockLost { job: String },

    /// Concurrent writers kept colliding (deadlocks, lock-wait timeouts)
    /// after retries; nothing was stored. Retry shortly.
    #[error("the database is busy with conflicting writes; nothing was stored, try again")]
    Contention,

    /// A backfill of "everything retained" was asked for, and nothing is.
    #[error("no start_time/end_time given and no retained data to rebuild")]
    NothingToBackfill,

    /// A multi-level recomputation stopped at `failed`; the levels before
    /// it completed.
    #[error("recomputing the {failed} level failed: {source}")]
    Incomplete {
        failed: crate::types::Granularity,
        completed: Vec<crate::rollup::RollupReport>,
        #[source]
        source: Box<DomainError>,
    },

    /// A job did part of its work and failed the rest (retried later).
    #[error("{0}")]
    Partial(String),

    /// A job's work panicked; the run is recorded as failed.
    #[error("the job panicked: {0}")]
    Panicked(String),

    /// The database could not be reached or refused service (pool timeout,
    /// connection refused, server gone). Callers may retry.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),

    /// Any other database failure: a bug or a schema problem.
    #[error("database error")]
    Database(#[source] DbErr),
}

/// One problem with one item of an ingest batch (a record, a worker
/// session, a heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RecordProblem {
    /// Position in the batch, from 0.
    pub index: usize,
    /// The record's task_id (records only; null when it had none).
    pub task_id: Option<String>,
    /// The worker of a session or heartbeat (absent for records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    pub field: String,
    pub message: String,
}

/// Records with at least one problem (a record may have several).
pub fn invalid_records(problems: &[RecordProblem]) -> usize {
    let mut indexes: Vec<usize> = problems.iter().map(|p| p.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    indexes.len()
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        DomainError::NotFound { what: what.into() }
    }
}

impl DomainError {
    /// A deadlock or lock-wait timeout: the transaction was rolled back and
    /// can run again.
    pub fn is_retryable_conflict(&self) -> bool {
        match self {
            DomainError::Database(e) | DomainError::Unavailable(e) => {
                crate::db::is_retryable_conflict(e)
            }
            _ => false,
        }
    }
}

impl From<DbErr> for DomainError {
    fn from(e: DbErr) -> Self {
        if crate::db::is_unavailable(&e) {
            DomainError::Unavailable(e)
        } else {
            DomainError::Database(e)
        }
    }
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;

/// An error and its sources joined by `": "`: the whole cause in one line
/// for job records, logs and 500 bodies, where a bare `Display` would hide
/// the database's own message.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
