//! Running one job: lock, record, work, record, release — and the outcome
//! logged with structured fields and counted in the metrics.
//!
//! The work of each job lives in its own file ([`rollup`], [`cleanup`];
//! [`backfill`] is the poller of tracked backfills, which takes its locks
//! inside the domain crate).

pub mod backfill;
pub mod cleanup;
pub mod rollup;

use std::sync::Arc;
use std::time::Instant;

use gpu_usage_core::EngineConfig;
use gpu_usage_core::job_runs::{self, RunOutcome};
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::locks::{self, JobLock};
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use gpu_usage_core::clock::Clock;

/// Everything a job needs; shared by the scheduler, the backfill poller,
/// the CLI and the tests.
pub struct JobContext {
    pub db: DatabaseConnection,
    pub engine: EngineConfig,
    /// This process in job records and logs.
    pub runner: String,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

impl JobContext {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

/// What a job's work reports when it succeeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReport {
    pub rows_written: u64,
    pub detail: String,
    /// Nothing was pending / expired: the run was a no-op.
    pub nothing_to_do: bool,
}

/// How one attempt to run a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Ran {
        rows_written: u64,
        detail: String,
    },
    NothingToDo,
    /// Another runner holds the job's lock.
    Skipped,
    /// Not attempted: a finer rollup level was busy this tick, so its
    /// holder runs this level after it.
    Chained,
    Failed {
        error: String,
    },
}

impl JobOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            JobOutcome::Ran { .. } => "succeeded",
            JobOutcome::NothingToDo => "nothing_to_do",
            JobOutcome::Skipped => "skipped",
            JobOutcome::Chained => "skipped_chained",
            JobOutcome::Failed { .. } => "failed",
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, JobOutcome::Failed { .. })
    }

    pub fn is_skip(&self) -> bool {
        matches!(self, JobOutcome::Skipped | JobOutcome::Chained)
    }
}

/// Runs `job` once if its lock is free. Never panics and never returns an
/// error: a failure is an outcome, for the caller to schedule a retry.
pub async fn run_job(ctx: &Arc<JobContext>, job: JobName) -> JobOutcome {
    let started = Instant::now();
    let outcome = match locks::try_lock(&ctx.db, job).await {
        Ok(Some(lock)) => run_locked(ctx, job, lock).await,
        Ok(None) => JobOutcome::Skipped,
        Err(e) => JobOutcome::Failed {
            error: format!("taking the job lock: {e}"),
        },
    };
    let took = started.elapsed();
    ctx.metrics.job_finished(job, &outcome, took, ctx.now());
    log_outcome(ctx, job, &outcome, took);
    outcome
}

pub(crate) fn log_outcome(
    ctx: &JobContext,
    job: JobName,
    outcome: &JobOutcome,
    took: std::time::Duration,
) {
    let duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    let runner = ctx.runner.as_str();
    match outcome {
        JobOutcome::Ran {
            rows_written,
            detail,
        } => tracing::info!(
            job = job.as_str(), runner, outcome = outcome.label(), rows_written, duration_ms, detail = %detail, "job ran"
        ),
        JobOutcome::NothingToDo => tracing::debug!(
            job = job.as_str(),
            runner,
            outcome = outcome.label(),
            duration_ms,
            "job had nothing to do"
        ),
        JobOutcome::Skipped => tracing::info!(
            job = job.as_str(),
            runner,
            outcome = outcome.label(),
            "job skipped: another runner holds its lock"
        ),
        JobOutcome::Chained => tracing::debug!(
            job = job.as_str(),
            runner,
            outcome = outcome.label(),
            "job skipped: the holder of a finer level runs it this tick"
        ),
        JobOutcome::Failed { error } => tracing::warn!(
            job = job.as_str(), runner, outcome = outcome.label(), duration_ms, error = %error, "job failed"
        ),
    }
}

/// Aborts the task when dropped: cancelling the caller (shutdown grace
/// expired, a test killing a worker) must stop the work and drop its lock
/// instead of leaving a detached task running.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_locked(ctx: &Arc<JobContext>, job: JobName, lock: JobLock) -> JobOutcome {
    let run_id = match job_runs::start(&ctx.db, &lock, &ctx.runner, ctx.now()).await {
        Ok(id) => id,
        Err(e) => {
            release(lock).await;
            return JobOutcome::Failed {
                error: format!("recording the job start: {e}"),
            };
        }
    };
    // In a task of its own so a panic in the work is a failed run rather
    // than a dead scheduler.
    let task_ctx = Arc::clone(ctx);
    let mut task = AbortOnDrop(tokio::spawn(async move { work(&task_ctx, job).await }));
    let result = match (&mut task.0).await {
        Ok(r) => r.map_err(|e| format!("{e:#}")),
        Err(join) if join.is_panic() => Err(format!("the job panicked: {}", panic_message(join))),
        Err(join) => Err(format!("the job was cancelled: {join}")),
    };
    let (outcome, recorded, rows, detail) = match result {
        Ok(report) if report.nothing_to_do && report.rows_written == 0 => (
            JobOutcome::NothingToDo,
            RunOutcome::Succeeded,
            0,
            Some(if report.detail.is_empty() {
                "nothing to do".to_owned()
            } else {
                report.detail
            }),
        ),
        Ok(report) => (
            JobOutcome::Ran {
                rows_written: report.rows_written,
                detail: report.detail.clone(),
            },
            RunOutcome::Succeeded,
            report.rows_written,
            Some(report.detail),
        ),
        Err(error) => (
            JobOutcome::Failed {
                error: error.clone(),
            },
            RunOutcome::Failed,
            0,
            Some(error),
        ),
    };
    if let Err(e) = job_runs::finish(&ctx.db, run_id, ctx.now(), recorded, rows, detail).await {
        tracing::warn!(job = job.as_str(), run_id, error = %e, "recording the job end failed");
    }
    release(lock).await;
    outcome
}

async fn work(ctx: &JobContext, job: JobName) -> anyhow::Result<JobReport> {
    match job {
        JobName::MinuteRollup | JobName::HourlyRollup | JobName::DailyRollup => {
            rollup::run(ctx, job).await
        }
        JobName::Cleanup => cleanup::run(ctx).await,
        JobName::Backfill => {
            anyhow::bail!("backfills run through the backfill poller, not as a scheduled job")
        }
    }
}

async fn release(lock: JobLock) {
    let name = lock.name().to_owned();
    if let Err(e) = lock.release().await {
        tracing::warn!(lock = %name, error = %e, "releasing the job lock failed; its connection was closed");
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    let payload = join.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
