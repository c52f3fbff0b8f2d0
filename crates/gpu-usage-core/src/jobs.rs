//! The service's jobs: what each is called, and the one protocol every
//! caller follows to run one ([`JobEnv::run`]): take the job's lock, record
//! the run, do the work, record how it ended, release the lock, log it.
//! The worker's scheduler, `POST /aggregate`, the backfill runner and the
//! operator CLI all go through it.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sea_orm::DatabaseConnection;
use sea_orm::sea_query::StringLen;

use crate::clock::Clock;
use crate::error::{DomainError, error_chain};
use crate::job_runs::{self, RunOutcome};
use crate::locks::{self, JobLock};
use crate::types::Granularity;

stored_enum! {
    /// Every job that must not run twice at once.
    pub enum JobName {
        /// Open worker sessions counted up to now, silent ones ended.
        Capacity = "capacity",
        MinuteRollup = "rollup_minute",
        HourlyRollup = "rollup_hourly",
        DailyRollup = "rollup_daily",
        Cleanup = "cleanup",
        /// Claiming and running tracked backfill jobs.
        Backfill = "backfill",
    }
}

impl JobName {
    /// The periodic rollup job of a level.
    pub fn rollup(level: Granularity) -> JobName {
        match level {
            Granularity::Minute => JobName::MinuteRollup,
            Granularity::Hourly => JobName::HourlyRollup,
            Granularity::Daily => JobName::DailyRollup,
        }
    }

    /// The level a rollup job computes.
    pub fn level(self) -> Option<Granularity> {
        match self {
            JobName::MinuteRollup => Some(Granularity::Minute),
            JobName::HourlyRollup => Some(Granularity::Hourly),
            JobName::DailyRollup => Some(Granularity::Daily),
            JobName::Capacity | JobName::Cleanup | JobName::Backfill => None,
        }
    }
}

impl FromStr for JobName {
    type Err = DomainError;
    /// Accepts the stored names and the short forms operators type
    /// (`minute`, `hourly`, `daily`, `capacity`, `cleanup`, `backfill`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        if let Some(job) = JobName::ALL.into_iter().find(|j| j.as_str() == s) {
            return Ok(job);
        }
        match s.as_str() {
            "cleanup" | "retention" => Ok(JobName::Cleanup),
            "backfill" => Ok(JobName::Backfill),
            other => other.parse::<Granularity>().map(JobName::rollup).map_err(|_| {
                DomainError::invalid(
                    "job",
                    format!("unknown job {other:?}; expected minute, hourly, daily, capacity, cleanup or backfill"),
                )
            }),
        }
    }
}

/// What a job's work reports when it succeeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReport {
    pub rows_written: u64,
    pub detail: String,
    /// Nothing was pending or expired: the run was a no-op.
    pub nothing_to_do: bool,
}

impl JobReport {
    /// A run that found nothing to do.
    pub fn nothing() -> Self {
        Self {
            nothing_to_do: true,
            ..Self::default()
        }
    }

    pub fn rows(rows_written: u64) -> Self {
        Self {
            rows_written,
            ..Self::default()
        }
    }
}

/// How one attempt to run a job ended, for logs, metrics and the scheduler.
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

/// The result of [`JobEnv::run`]: what the work returned, or why there is
/// nothing.
#[derive(Debug)]
pub enum Attempt<T> {
    Done(T, JobReport),
    /// Another runner holds the lock; nothing was done.
    Skipped,
    Failed(DomainError),
}

impl<T> Attempt<T> {
    pub fn outcome(&self) -> JobOutcome {
        match self {
            Attempt::Done(_, r) if r.nothing_to_do && r.rows_written == 0 => {
                JobOutcome::NothingToDo
            }
            Attempt::Done(_, r) => JobOutcome::Ran {
                rows_written: r.rows_written,
                detail: r.detail.clone(),
            },
            Attempt::Skipped => JobOutcome::Skipped,
            Attempt::Failed(e) => JobOutcome::Failed {
                error: error_chain(e),
            },
        }
    }
}

/// How to take the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// Once: a busy lock means another runner does this very work.
    Try,
    /// Polling up to this long, for callers that must run rather than skip
    /// (manual triggers, backfill chunks).
    Wait(Duration),
}

/// Whether the run leaves a row in `gpu_usage_job_runs`. Backfill chunks
/// take the rollup locks without one: the backfill job is tracked itself,
/// and a chunk must not look like a periodic run to the scheduler's
/// catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Yes,
    No,
}

/// Everything a job runner needs; shared by every caller.
#[derive(Clone)]
pub struct JobEnv {
    pub db: DatabaseConnection,
    /// This process in job records and logs.
    pub runner: String,
    pub clock: Arc<dyn Clock>,
}

impl fmt::Debug for JobEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobEnv")
            .field("runner", &self.runner)
            .finish_non_exhaustive()
    }
}

impl JobEnv {
    pub fn now(&self) -> DateTime<Utc> {
        crate::types::to_millis(self.clock.now())
    }

    /// Takes `job`'s lock, then [`JobEnv::run_locked`] with a job record.
    /// The work gets the lock to [`locks::Guard::verify`] before it writes.
    pub async fn run<T, F>(&self, job: JobName, acquire: Acquire, work: F) -> Attempt<T>
    where
        F: AsyncFnOnce(&JobLock) -> Result<(T, JobReport), DomainError>,
    {
        self.run_as(job, acquire, Record::Yes, work).await
    }

    /// [`JobEnv::run`], choosing whether the run is recorded.
    pub async fn run_as<T, F>(
        &self,
        job: JobName,
        acquire: Acquire,
        record: Record,
        work: F,
    ) -> Attempt<T>
    where
        F: AsyncFnOnce(&JobLock) -> Result<(T, JobReport), DomainError>,
    {
        let taken = match acquire {
            Acquire::Try => locks::try_lock(&self.db, job).await,
            Acquire::Wait(d) => locks::lock_with_wait(&self.db, job, d).await,
        };
        match taken {
            Ok(Some(lock)) => self.run_locked(lock, record, work).await,
            Ok(None) => {
                self.log(job, &JobOutcome::Skipped, Duration::ZERO);
                Attempt::Skipped
            }
            Err(e) => {
                let attempt = Attempt::Failed(e);
                self.log(job, &attempt.outcome(), Duration::ZERO);
                attempt
            }
        }
    }

    /// Runs `work` under a lock already held: records the start, runs the
    /// work (a panic is a failed run, not a dead caller), records the end,
    /// releases the lock and logs the outcome. Dropping the returned future
    /// drops the work and the lock with it, which frees the lock.
    pub async fn run_locked<T, F>(&self, lock: JobLock, record: Record, work: F) -> Attempt<T>
    where
        F: AsyncFnOnce(&JobLock) -> Result<(T, JobReport), DomainError>,
    {
        let job = lock.job();
        let started = Instant::now();
        let run_id = match record {
            Record::No => None,
            Record::Yes => match job_runs::start(&self.db, &lock, &self.runner, self.now()).await {
                Ok(id) => Some(id),
                Err(e) => {
                    release(lock).await;
                    let attempt = Attempt::Failed(e);
                    self.log(job, &attempt.outcome(), started.elapsed());
                    return attempt;
                }
            },
        };
        let attempt = match AssertUnwindSafe(work(&lock)).catch_unwind().await {
            Ok(Ok((value, report))) => Attempt::Done(value, report),
            Ok(Err(e)) => Attempt::Failed(e),
            Err(panic) => Attempt::Failed(DomainError::Panicked(panic_message(panic))),
        };
        if let Some(run_id) = run_id {
            self.record_end(job, run_id, &attempt).await;
        }
        release(lock).await;
        self.log(job, &attempt.outcome(), started.elapsed());
        attempt
    }

    async fn record_end<T>(&self, job: JobName, run_id: i64, attempt: &Attempt<T>) {
        let (outcome, rows, detail) = match attempt {
            Attempt::Done(_, r) => (
                RunOutcome::Succeeded,
                r.rows_written,
                if r.detail.is_empty() && r.nothing_to_do {
                    "nothing to do".to_owned()
                } else {
                    r.detail.clone()
                },
            ),
            Attempt::Failed(e) => (RunOutcome::Failed, 0, error_chain(e)),
            Attempt::Skipped => return,
        };
        if let Err(e) =
            job_runs::finish(&self.db, run_id, self.now(), outcome, rows, Some(detail)).await
        {
            tracing::warn!(job = job.as_str(), run_id, error = %e, "recording the job end failed");
        }
    }

    /// Structured log of an attempt (`job`, `outcome`, `rows_written`,
    /// `duration_ms`).
    pub fn log(&self, job: JobName, outcome: &JobOutcome, took: Duration) {
        let duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let (runner, label) = (self.runner.as_str(), outcome.label());
        match outcome {
            JobOutcome::Ran {
                rows_written,
                detail,
            } => tracing::info!(
                job = job.as_str(), runner, outcome = label, rows_written, duration_ms, detail = %detail, "job ran"
            ),
            JobOutcome::NothingToDo => tracing::debug!(
                job = job.as_str(),
                runner,
                outcome = label,
                duration_ms,
                "job had nothing to do"
            ),
            JobOutcome::Skipped => tracing::info!(
                job = job.as_str(),
                runner,
                outcome = label,
                "job skipped: another runner holds its lock"
            ),
            JobOutcome::Chained => tracing::debug!(
                job = job.as_str(),
                runner,
                outcome = label,
                "job skipped: the holder of a finer level runs it this tick"
            ),
            JobOutcome::Failed { error } => tracing::warn!(
                job = job.as_str(), runner, outcome = label, duration_ms, error = %error, "job failed"
            ),
        }
    }
}

async fn release(lock: JobLock) {
    let name = lock.name().to_owned();
    if let Err(e) = lock.release().await {
        tracing::warn!(lock = %name, error = %e, "releasing the job lock failed; its connection was closed");
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_parse() {
        for job in JobName::ALL {
            assert_eq!(job.as_str().parse::<JobName>().ok(), Some(job));
        }
        assert_eq!(
            "minute".parse::<JobName>().ok(),
            Some(JobName::MinuteRollup)
        );
        assert_eq!(
            "hourly".parse::<JobName>().ok(),
            Some(JobName::HourlyRollup)
        );
        assert_eq!("daily".parse::<JobName>().ok(), Some(JobName::DailyRollup));
        assert!("weekly".parse::<JobName>().is_err());
        assert_eq!(
            JobName::rollup(Granularity::Hourly).level(),
            Some(Granularity::Hourly)
        );
    }
}
