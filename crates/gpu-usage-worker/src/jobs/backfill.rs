//! The backfill poller: every `backfill_poll_secs`, claim the oldest queued
//! (or interrupted) backfill job and run it chunk by chunk. The domain
//! crate takes the `backfill` lock (one backfill at a time across replicas)
//! and each level's rollup lock per chunk; a shutdown stops it between
//! chunks, leaving the job `running` for whoever polls next.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use gpu_usage_core::backfill::{self, BackfillJob, RunOptions};
use gpu_usage_core::jobs::JobName;

use super::{JobContext, JobOutcome};
use gpu_usage_core::process::Shutdown;

pub async fn poll_loop(ctx: Arc<JobContext>, every: Duration, shutdown: Shutdown) {
    let every =
        TimeDelta::from_std(every.max(Duration::from_millis(100))).unwrap_or(TimeDelta::seconds(5));
    let mut failures = 0u32;
    while !shutdown.is_triggered() {
        let started = Instant::now();
        let wait = match run_once(&ctx, &shutdown).await {
            // Finished one; another may be queued behind it.
            Ok(Some(job)) if job.is_finished() => {
                failures = 0;
                let outcome = match &job.error {
                    Some(error) => JobOutcome::Failed {
                        error: error.clone(),
                    },
                    None => JobOutcome::Ran {
                        rows_written: 0,
                        detail: format!("backfill {}: {} chunk(s)", job.id, job.chunks_done),
                    },
                };
                ctx.metrics
                    .job_finished(JobName::Backfill, &outcome, started.elapsed(), ctx.now());
                TimeDelta::zero()
            }
            Ok(_) => {
                failures = 0;
                every
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let outcome = JobOutcome::Failed {
                    error: e.to_string(),
                };
                ctx.metrics
                    .job_finished(JobName::Backfill, &outcome, started.elapsed(), ctx.now());
                tracing::warn!(runner = %ctx.env.runner, error = %e, failures, "backfill poll failed");
                every * i32::try_from(failures.min(6)).unwrap_or(6)
            }
        };
        if wait > TimeDelta::zero() {
            let deadline = ctx.now() + wait;
            tokio::select! {
                _ = ctx.env.clock.sleep_until(deadline) => {}
                _ = shutdown.wait() => {}
            }
        }
    }
}

/// One poll: `Some(job)` when a job was worked on (finished or not).
pub async fn run_once(
    ctx: &JobContext,
    shutdown: &Shutdown,
) -> gpu_usage_core::Result<Option<BackfillJob>> {
    let last_done = AtomicI64::new(-1);
    let metrics = Arc::clone(&ctx.metrics);
    let on_progress = move |job: &BackfillJob| {
        let done = i64::from(job.chunks_done);
        let before = last_done.swap(done, Ordering::Relaxed);
        if before >= 0 {
            for _ in before..done {
                metrics.backfill_chunk();
            }
        }
    };
    let stop = || shutdown.is_triggered();
    let opts = RunOptions {
        stop: &stop,
        on_progress: &on_progress,
        ..RunOptions::default()
    };
    backfill::run_next(&ctx.env, &ctx.engine, &opts).await
}
