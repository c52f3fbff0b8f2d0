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

    #[error("{what} not found")]
    NotFound { what: String },

    /// Another runner holds the job's lock; nothing was done.
    #[error("job {job} is already running elsewhere")]
    Busy { job: String },

    /// The database could not be reached or refused service (pool timeout,
    /// connection refused, server gone). Callers may retry.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),

    /// Any other database failure: a bug or a schema problem.
    #[error("database error")]
    Database(#[source] DbErr),
}

/// One problem with one record of an ingest batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordProblem {
    /// Position in the batch, from 0.
    pub index: usize,
    pub task_id: Option<String>,
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
