//! The record of every job execution (`gpu_usage_job_runs`): a row written
//! as `running` once the job's lock is held, finished as `succeeded` or
//! `failed`. Skipped ticks (lock busy) are not executions and leave no row.
//!
//! Because rows are written under the job's lock, the intervals of one
//! job's rows never overlap; the multi-replica tests check exactly that.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, StringLen},
};
use serde::Serialize;

use crate::entities::job_run;
use crate::error::{DomainError, Result};
use crate::jobs::JobName;
use crate::locks::JobLock;

stored_enum! {
    /// How a job execution ended (or that it has not yet).
    pub enum RunOutcome {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// Left `running` by a runner that died; found by the next holder of
        /// the job's lock.
        Abandoned = "abandoned",
    }
}

/// Lets callers compare with the stored spelling (`outcome == "failed"`).
impl PartialEq<&str> for RunOutcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One job execution, as the API and the CLI show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobRun {
    pub id: i64,
    pub job: JobName,
    pub runner: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub rows_written: i64,
    pub detail: Option<String>,
}

impl From<job_run::Model> for JobRun {
    fn from(m: job_run::Model) -> Self {
        Self {
            id: m.id,
            job: m.job,
            runner: m.runner,
            started_at: m.started_at,
            finished_at: m.finished_at,
            outcome: m.outcome,
            rows_written: m.rows_written,
            detail: m.detail,
        }
    }
}

/// The latest execution of a job (its fields inline) and its latest
/// success, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobRunSummary {
    #[serde(flatten)]
    pub last_run: JobRun,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Milliseconds of the latest run, once it finished.
    pub last_duration_ms: Option<i64>,
}

/// Identifies this process in job records and Redis consumer names: the
/// configured instance id, else `<hostname>-<pid>`.
pub fn runner_id(configured: &str) -> String {
    let configured = configured.trim();
    if !configured.is_empty() {
        return configured.to_owned();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Records the start of an execution; returns the run id for [`finish`].
///
/// Requires the job's lock: any other `running` row of the same job then
/// belongs to a runner that died holding the lock, and is marked
/// `abandoned` so `/status` does not show it running forever.
pub async fn start(
    db: &impl ConnectionTrait,
    lock: &JobLock,
    runner: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    let job = lock.job();
    // Found with a plain read and updated by primary key: an UPDATE ranging
    // over the (job, started_at) index would take gap locks that collide with
    // other jobs' inserts into this table.
    let stale: Vec<i64> = job_run::Entity::find()
        .select_only()
        .column(job_run::Column::Id)
        .filter(job_run::Column::Job.eq(job))
        .filter(job_run::Column::Outcome.eq(RunOutcome::Running))
        .into_tuple()
        .all(db)
        .await?;
    if !stale.is_empty() {
        retrying(move || {
            job_run::Entity::update_many()
                .col_expr(job_run::Column::Outcome, Expr::value(RunOutcome::Abandoned))
                .col_expr(
                    job_run::Column::Detail,
                    Expr::value(
                        "the runner stopped before finishing (crash, kill or lost connection)",
                    ),
                )
                .filter(job_run::Column::Id.is_in(stale.iter().copied()))
                .filter(job_run::Column::Outcome.eq(RunOutcome::Running))
                .exec(db)
        })
        .await?;
    }
    let inserted = retrying(move || {
        job_run::Entity::insert(job_run::ActiveModel {
            id: NotSet,
            job: Set(job),
            runner: Set(truncate(runner, 255)),
            started_at: Set(now),
            finished_at: Set(None),
            outcome: Set(RunOutcome::Running),
            rows_written: Set(0),
            detail: Set(None),
        })
        .exec(db)
    })
    .await?;
    Ok(inserted.last_insert_id)
}

/// Runs a single bookkeeping statement, again after a deadlock or lock
/// wait timeout (InnoDB rolled it back; it is safe to repeat). A job must
/// not fail over its own record.
async fn retrying<T, F, Fut>(mut statement: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sea_orm::DbErr>>,
{
    let mut attempt = 0u64;
    loop {
        match statement().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 4 && crate::db::is_retryable_conflict(&e) => {
                attempt += 1;
                tracing::debug!(attempt, error = %e, "job record statement conflicted; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(25 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Records how an execution ended.
pub async fn finish(
    db: &impl ConnectionTrait,
    run_id: i64,
    now: DateTime<Utc>,
    outcome: RunOutcome,
    rows_written: u64,
    detail: Option<String>,
) -> Result<()> {
    let rows = i64::try_from(rows_written).unwrap_or(i64::MAX);
    let detail = detail.map(|d| truncate(&d, MAX_DETAIL_CHARS));
    let updated = retrying(move || {
        job_run::Entity::update_many()
            .col_expr(job_run::Column::FinishedAt, Expr::value(Some(now)))
            .col_expr(job_run::Column::Outcome, Expr::value(outcome))
            .col_expr(job_run::Column::RowsWritten, Expr::value(rows))
            .col_expr(job_run::Column::Detail, Expr::value(detail.clone()))
            .filter(job_run::Column::Id.eq(run_id))
            .exec(db)
    })
    .await?;
    if updated.rows_affected == 0 {
        return Err(DomainError::not_found(format!("job run {run_id}")));
    }
    Ok(())
}

/// The most recent runs, newest first, optionally of one job.
pub async fn recent(
    db: &impl ConnectionTrait,
    job: Option<JobName>,
    limit: u64,
) -> Result<Vec<JobRun>> {
    let mut q = job_run::Entity::find();
    if let Some(job) = job {
        q = q.filter(job_run::Column::Job.eq(job));
    }
    Ok(q.order_by_desc(job_run::Column::StartedAt)
        .order_by_desc(job_run::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(JobRun::from)
        .collect())
}

/// Every run of one job, oldest first (tests, audits).
pub async fn all_of(db: &impl ConnectionTrait, job: JobName) -> Result<Vec<JobRun>> {
    Ok(job_run::Entity::find()
        .filter(job_run::Column::Job.eq(job))
        .order_by_asc(job_run::Column::StartedAt)
        .order_by_asc(job_run::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(JobRun::from)
        .collect())
}

/// Latest run of every job that has run, with its latest success; ordered
/// by job name.
pub async fn latest_per_job(db: &impl ConnectionTrait) -> Result<Vec<JobRunSummary>> {
    let mut out = BTreeMap::new();
    // Per job rather than one GROUP BY: a handful of jobs, each an index
    // seek on (job, started_at), and it includes jobs named by other
    // runners (the API's triggers) without listing them here.
    let jobs: Vec<JobName> = job_run::Entity::find()
        .select_only()
        .column(job_run::Column::Job)
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    for job in jobs {
        let last = job_run::Entity::find()
            .filter(job_run::Column::Job.eq(job))
            .order_by_desc(job_run::Column::StartedAt)
            .order_by_desc(job_run::Column::Id)
            .one(db)
            .await?;
        let Some(last) = last else { continue };
        let last_success_at: Option<Option<DateTime<Utc>>> = job_run::Entity::find()
            .select_only()
            .column(job_run::Column::FinishedAt)
            .filter(job_run::Column::Job.eq(job))
            .filter(job_run::Column::Outcome.eq(RunOutcome::Succeeded))
            .order_by_desc(job_run::Column::StartedAt)
            .into_tuple()
            .one(db)
            .await?;
        let last_duration_ms = last
            .finished_at
            .map(|f| (f - last.started_at).num_milliseconds());
        out.insert(
            job.as_str(),
            JobRunSummary {
                last_run: last.into(),
                last_success_at: last_success_at.flatten(),
                last_duration_ms,
            },
        );
    }
    Ok(out.into_values().collect())
}

/// Start of the latest run of `job`, by anyone.
pub async fn last_started(
    db: &impl ConnectionTrait,
    job: JobName,
) -> Result<Option<DateTime<Utc>>> {
    Ok(job_run::Entity::find()
        .select_only()
        .column(job_run::Column::StartedAt)
        .filter(job_run::Column::Job.eq(job))
        .order_by_desc(job_run::Column::StartedAt)
        .into_tuple()
        .one(db)
        .await?)
}

/// Details are for people; a full error chain fits, a runaway one is cut.
const MAX_DETAIL_CHARS: usize = 4_000;

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_id_prefers_configuration() {
        assert_eq!(runner_id(" worker-1 "), "worker-1");
        let generated = runner_id("");
        assert!(
            generated.ends_with(&format!("-{}", std::process::id())),
            "{generated}"
        );
    }

    #[test]
    fn outcomes_compare_with_their_spelling() {
        assert!(RunOutcome::Failed == "failed");
        assert!(RunOutcome::Running != "succeeded");
    }
}
