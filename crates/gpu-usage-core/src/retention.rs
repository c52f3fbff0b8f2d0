//! Retention cleanup (docs/OPERATIONS.md, "Retention"): expired rows
//! deleted in bounded batches, table by table; one table's failure does not
//! stop the others, and the run reports what it removed.
//!
//! - records by `completed_at`, worker sessions by `ended_at` with the
//!   same period (open sessions are kept), minute and hourly rows by
//!   `time_bucket`;
//!   daily rows only when `daily_days > 0`;
//! - the service's own bookkeeping: job runs, and finished backfill jobs,
//!   older than `job_runs_days`.
//!
//! Before deleting from a table that feeds a rollup, the table's retention
//! horizon is raised to the cutoff (in its own statement, committed first):
//! the engine reads it to know that a finer level may be gone and must not
//! be used to rebuild a coarser bucket over good totals.
//!
//! Each batch selects up to `delete_batch_size` ids and deletes exactly
//! those, one autocommitted statement per batch: no statement holds locks
//! for long, the same SQL works on MySQL and SQLite, and an interrupted run
//! simply continues next time. A table that fails is reported and the
//! others still run. A period of 0 days (or less) means "keep forever".

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, Iterable, PrimaryKeyToColumn,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::entities::{backfill_job, job_run, record, worker_session};
use crate::error::{DomainError, Result};
use crate::level::{Daily, Hourly, Level, Minute, StatsColumn};
use crate::rollup::horizon;
use crate::settings::RetentionSettings;

/// Upper bound of ids per `DELETE ... WHERE id IN (...)`: SQLite's limit on
/// bound parameters is 32,766.
const MAX_IDS_PER_STATEMENT: usize = 10_000;

/// What cleanup did to one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCleanup {
    pub table: &'static str,
    /// Rows older than this were deleted; `None` = the table is kept forever.
    pub cutoff: Option<DateTime<Utc>>,
    pub deleted: u64,
    pub batches: u64,
    /// Why the table's cleanup stopped early, if it did.
    pub error: Option<String>,
}

/// What one cleanup run did, per table, in the order they were processed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    pub tables: Vec<TableCleanup>,
}

impl CleanupReport {
    pub fn deleted(&self) -> u64 {
        self.tables.iter().map(|t| t.deleted).sum()
    }

    pub fn failures(&self) -> impl Iterator<Item = &TableCleanup> {
        self.tables.iter().filter(|t| t.error.is_some())
    }

    pub fn is_ok(&self) -> bool {
        self.failures().next().is_none()
    }

    pub fn table(&self, name: &str) -> Option<&TableCleanup> {
        self.tables.iter().find(|t| t.table == name)
    }

    /// `table=deleted` pairs and errors, for logs and job records.
    pub fn summary(&self) -> String {
        self.tables
            .iter()
            .map(|t| match &t.error {
                Some(e) => format!("{}={} (failed: {e})", t.table, t.deleted),
                None if t.cutoff.is_none() => format!("{}=kept", t.table),
                None => format!("{}={}", t.table, t.deleted),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The names the bookkeeping and session tables are reported under.
pub const JOB_RUNS_TABLE: &str = "gpu_usage_job_runs";
pub const SESSIONS_TABLE: &str = "gpu_usage_worker_sessions";
pub const BACKFILL_JOBS_TABLE: &str = "gpu_usage_backfill_jobs";

/// Deletes everything past retention as of `now`. Never fails as a whole:
/// per-table errors are in the report.
pub async fn cleanup(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    settings: &RetentionSettings,
) -> CleanupReport {
    let batch = settings.delete_batch_size.max(1);
    let keep = |days: i64| (days > 0).then(|| TimeDelta::days(days));
    // Records and worker sessions share one period, job runs and backfill
    // jobs the bookkeeping one.
    let cutoff = keep(settings.records_days).map(|d| now - d);
    let bookkeeping = keep(settings.job_runs_days).map(|d| now - d);
    // One table after the other; the report lists them in this order.
    let tables = vec![
        records_table(db, now, cutoff, batch).await,
        purge::<worker_session::Entity>(db, cutoff, batch, ended_before).await,
        // Statistics by whole buckets, so a bucket is either kept or gone.
        level_table::<Minute>(db, now, settings, batch).await,
        level_table::<Hourly>(db, now, settings, batch).await,
        level_table::<Daily>(db, now, settings, batch).await,
        purge::<job_run::Entity>(db, bookkeeping, batch, started_before).await,
        purge::<backfill_job::Entity>(db, bookkeeping, batch, finished_before).await,
    ];
    CleanupReport { tables }
}

/// Records by completion time, to the millisecond like the rows, after
/// raising the records' horizon to the cutoff.
async fn records_table(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    cutoff: Option<DateTime<Utc>>,
    batch: u64,
) -> TableCleanup {
    run_table(horizon::RECORDS_TABLE, cutoff, |c| async move {
        horizon::record_deletion(db, horizon::RECORDS_TABLE, c, now).await?;
        let expired = Condition::all().add(record::Column::CompletedAt.lt(c));
        delete_in_batches::<record::Entity>(db, expired, batch).await
    })
    .await
}

/// A table without a horizon: its rows that are `expired` at the cutoff.
async fn purge<E: EntityTrait>(
    db: &impl ConnectionTrait,
    cutoff: Option<DateTime<Utc>>,
    batch: u64,
    expired: fn(DateTime<Utc>) -> Condition,
) -> TableCleanup {
    let table = E::default().table_name();
    run_table(table, cutoff, |c| {
        delete_in_batches::<E>(db, expired(c), batch)
    })
    .await
}

/// Worker sessions like records, by their end; open ones are kept.
fn ended_before(cutoff: DateTime<Utc>) -> Condition {
    Condition::all().add(worker_session::Column::EndedAt.lt(cutoff))
}

/// Job runs by their start.
fn started_before(cutoff: DateTime<Utc>) -> Condition {
    Condition::all().add(job_run::Column::StartedAt.lt(cutoff))
}

/// Only finished backfills, by their end: an old one still pending or
/// running is work someone asked for.
fn finished_before(cutoff: DateTime<Utc>) -> Condition {
    use crate::backfill::BackfillStatus::{Failed, Succeeded};
    Condition::all()
        .add(backfill_job::Column::Status.is_in([Succeeded, Failed]))
        .add(backfill_job::Column::FinishedAt.lt(cutoff))
}

/// The expired buckets of one statistics level, after raising its
/// horizon to the cutoff.
async fn level_table<L: Level>(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    settings: &RetentionSettings,
    batch: u64,
) -> TableCleanup {
    let g = L::GRANULARITY;
    let cutoff = g.retention(settings).map(|keep| g.floor(now - keep));
    run_table(g.table_name(), cutoff, |c| async move {
        horizon::record_deletion(db, g.table_name(), c, now).await?;
        let col = <L::Column as StatsColumn>::TIME_BUCKET;
        let expired = Condition::all().add(col.lt(L::bucket_value(c)));
        delete_in_batches::<L::Entity>(db, expired, batch).await
    })
    .await
}

async fn run_table<F, Fut>(
    table: &'static str,
    cutoff: Option<DateTime<Utc>>,
    work: F,
) -> TableCleanup
where
    F: FnOnce(DateTime<Utc>) -> Fut,
    Fut: std::future::Future<Output = Result<(u64, u64)>>,
{
    let mut out = TableCleanup {
        table,
        cutoff,
        deleted: 0,
        batches: 0,
        error: None,
    };
    let Some(c) = cutoff else {
        return out;
    };
    match work(c).await {
        Ok((deleted, batches)) => {
            out.deleted = deleted;
            out.batches = batches;
        }
        Err(e) => {
            tracing::warn!(table, cutoff = %c, error = %e, "retention cleanup of a table failed");
            out.error = Some(e.to_string());
        }
    }
    out
}

/// Deletes the rows matching `cond` by their id (every table here has a
/// single integer key), at most `batch` per round; returns (rows deleted,
/// rounds). Rows deleted before a failure stay deleted.
async fn delete_in_batches<E>(
    db: &impl ConnectionTrait,
    cond: Condition,
    batch: u64,
) -> Result<(u64, u64)>
where
    E: EntityTrait,
{
    let id = E::PrimaryKey::iter()
        .next()
        .map(PrimaryKeyToColumn::into_column)
        .ok_or_else(|| DbErr::Custom(format!("{} has no key", E::default().table_name())))?;
    let mut deleted = 0u64;
    let mut rounds = 0u64;
    loop {
        let ids: Vec<i64> = E::find()
            .select_only()
            .column(id)
            .filter(cond.clone())
            .order_by_asc(id)
            .limit(batch)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            break;
        }
        let mut removed = 0u64;
        for chunk in ids.chunks(MAX_IDS_PER_STATEMENT) {
            removed += E::delete_many()
                .filter(id.is_in(chunk.iter().copied()))
                .exec(db)
                .await
                .map_err(DomainError::from)?
                .rows_affected;
        }
        deleted += removed;
        rounds += 1;
        // Fewer than a full batch: that was the last one. Nothing removed
        // although rows matched: someone else deleted them first; their
        // rounds finish the job rather than this loop spinning.
        if (ids.len() as u64) < batch || removed == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok((deleted, rounds))
}

#[cfg(test)]
mod tests {
    use sea_orm::EntityName;

    use super::*;

    #[test]
    fn reported_names_are_the_tables() {
        assert_eq!(job_run::Entity.table_name(), JOB_RUNS_TABLE);
        assert_eq!(worker_session::Entity.table_name(), SESSIONS_TABLE);
        assert_eq!(backfill_job::Entity.table_name(), BACKFILL_JOBS_TABLE);
    }
}
