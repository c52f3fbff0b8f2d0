//! Recomputation on demand (`POST /aggregate`): one or every level over a
//! range, under the same job locks as the worker, inside the caller's
//! request when the range is short, as a tracked backfill otherwise.

use std::time::Duration;

use chrono::TimeDelta;

use crate::EngineConfig;
use crate::backfill::{self, BackfillJob};
use crate::error::{DomainError, Result};
use crate::jobs::{Attempt, JobEnv, JobName, JobReport, Record};
use crate::locks::JobLock;
use crate::rollup::{self, RollupReport};
use crate::types::{Levels, TimeRange};

#[derive(Debug, Clone, Copy)]
pub struct AggregateOptions {
    /// Ranges up to this long are recomputed inline; longer ones become a
    /// backfill job, so no request runs into a proxy's timeout.
    pub inline_max: TimeDelta,
    /// How long to wait for each level's lock before calling it busy.
    pub lock_wait: Duration,
}

impl Default for AggregateOptions {
    fn default() -> Self {
        Self {
            inline_max: TimeDelta::days(1),
            lock_wait: Duration::from_secs(3),
        }
    }
}

#[derive(Debug)]
pub enum Aggregation {
    /// Every level ran, finest first.
    Done(Vec<RollupReport>),
    /// The range is too long for one request: a backfill job will do it.
    Queued(BackfillJob),
}

/// Recomputes `levels` over `range`, or queues a backfill for long ranges.
///
/// Every lock is taken before anything runs, so a busy level means nothing
/// was done ([`DomainError::Busy`]) rather than a half-done run. Each level
/// is recorded as a run of that level's job, so `/status` shows manual runs
/// beside the scheduled ones.
pub async fn aggregate(
    env: &JobEnv,
    levels: Levels,
    range: TimeRange,
    cfg: &EngineConfig,
    opts: AggregateOptions,
) -> Result<Aggregation> {
    if range.duration() > opts.inline_max {
        let job = backfill::create(&env.db, range, levels, env.now()).await?;
        return Ok(Aggregation::Queued(job));
    }
    let held = lock_all(env, levels, opts.lock_wait).await?;
    let mut done = Vec::with_capacity(held.len());
    let mut locks = held.into_iter();
    while let Some(lock) = locks.next() {
        let Some(level) = lock.job().level() else {
            continue;
        };
        let attempt = env
            .run_locked(lock, Record::Yes, async |lock| {
                let r =
                    rollup::recompute_guarded(&env.db, lock, level, range, env.now(), cfg).await?;
                let detail = format!("recomputed {range} on request");
                let report = JobReport {
                    rows_written: r.rows_written,
                    detail,
                    nothing_to_do: false,
                };
                Ok((r, report))
            })
            .await;
        match attempt {
            Attempt::Done(r, _) => done.push(r),
            Attempt::Skipped => {}
            Attempt::Failed(e) => {
                release_all(locks).await;
                return Err(DomainError::Incomplete {
                    failed: level,
                    completed: done,
                    source: Box::new(e),
                });
            }
        }
    }
    Ok(Aggregation::Done(done))
}

async fn lock_all(env: &JobEnv, levels: Levels, wait: Duration) -> Result<Vec<JobLock>> {
    let mut held = Vec::with_capacity(levels.levels().len());
    for &level in levels.levels() {
        let job = JobName::rollup(level);
        match crate::locks::lock_with_wait(&env.db, job, wait).await {
            Ok(Some(lock)) => held.push(lock),
            Ok(None) => {
                release_all(held).await;
                return Err(DomainError::Busy {
                    job: job.to_string(),
                });
            }
            Err(e) => {
                release_all(held).await;
                return Err(e);
            }
        }
    }
    Ok(held)
}

async fn release_all(held: impl IntoIterator<Item = JobLock>) {
    for lock in held {
        let name = lock.name().to_owned();
        if let Err(e) = lock.release().await {
            // The lock's connection is closed regardless, which frees it.
            tracing::warn!(lock = %name, error = %e, "releasing a job lock failed");
        }
    }
}
