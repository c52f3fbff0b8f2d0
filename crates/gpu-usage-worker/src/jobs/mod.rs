//! The worker's jobs, run through the one job runner of the domain crate
//! (`gpu_usage_core::jobs::JobEnv`: lock, record, work, record, release),
//! with the outcome counted in this process's metrics.
//!
//! The work of each job lives in its own file ([`capacity`], [`rollup`],
//! [`cleanup`];
//! [`backfill`] is the poller of tracked backfills, whose runner takes its
//! locks in the domain crate).

pub mod backfill;
pub mod capacity;
pub mod cleanup;
pub mod rollup;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use gpu_usage_core::jobs::{Acquire, JobEnv, JobName, JobReport};
use gpu_usage_core::locks::JobLock;
use gpu_usage_core::{DomainError, EngineConfig};
use sea_orm::DatabaseConnection;

use crate::metrics::Metrics;

pub use gpu_usage_core::jobs::JobOutcome;

/// Everything a job needs; shared by the scheduler, the backfill poller,
/// the stream consumer, the CLI and the tests.
pub struct JobContext {
    pub env: JobEnv,
    pub engine: EngineConfig,
    pub metrics: Arc<Metrics>,
}

impl JobContext {
    pub fn now(&self) -> DateTime<Utc> {
        self.env.now()
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.env.db
    }
}

/// Runs `job` once if its lock is free. Never panics and never returns an
/// error: a failure is an outcome, for the caller to schedule a retry.
pub async fn run_job(ctx: &Arc<JobContext>, job: JobName) -> JobOutcome {
    let started = Instant::now();
    let attempt = ctx
        .env
        .run(job, Acquire::Try, async |lock| {
            work(ctx, job, lock).await.map(|r| ((), r))
        })
        .await;
    let outcome = attempt.outcome();
    ctx.metrics
        .job_finished(job, &outcome, started.elapsed(), ctx.now());
    outcome
}

async fn work(ctx: &JobContext, job: JobName, lock: &JobLock) -> Result<JobReport, DomainError> {
    match job.level() {
        Some(level) => rollup::run(ctx, level, lock).await,
        None if job == JobName::Cleanup => cleanup::run(ctx).await,
        None if job == JobName::Capacity => capacity::run(ctx).await,
        None => Err(DomainError::invalid(
            "job",
            "backfills run through the backfill poller, not as a scheduled job",
        )),
    }
}
