//! The periodic jobs' loops, one per [`Lane`]. The rollup lane runs its
//! due jobs in order at every tick — capacity, minute, hourly, daily
//! rollup — so a record folded into minute rows reaches hourly and daily
//! rows in the same tick when those are due. Cleanup runs in a lane of its
//! own: a long retention delete (the first on an old database) must not
//! hold the rollups back. When a rollup level is busy elsewhere,
//! this tick's coarser levels are left to the lock holder, which runs the
//! same chain; they look again shortly after (see
//! [`crate::schedule::SKIP_RECHECK`]) in case the holder started before
//! this runner queued more work for them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::job_runs;
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::settings::WorkerSettings;
use tokio::sync::watch;

use crate::jobs::{self, JobContext, JobOutcome};
use crate::schedule::Slot;
use gpu_usage_core::process::Shutdown;

/// How often each periodic job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    pub minute: Duration,
    pub hourly: Duration,
    pub daily: Duration,
    pub cleanup: Duration,
}

impl Intervals {
    pub fn from_settings(w: &WorkerSettings) -> Self {
        Self {
            minute: Duration::from_secs(w.minute_interval_secs),
            hourly: Duration::from_secs(w.hourly_interval_secs),
            daily: Duration::from_secs(w.daily_interval_secs),
            cleanup: Duration::from_secs(w.cleanup_interval_secs),
        }
    }

    /// The rollups, in the order a tick runs them: sessions counted up to
    /// now before the minute rollup reads them.
    pub fn rollups(&self) -> Lane {
        Lane {
            name: "rollups",
            jobs: vec![
                (JobName::Capacity, self.minute),
                (JobName::MinuteRollup, self.minute),
                (JobName::HourlyRollup, self.hourly),
                (JobName::DailyRollup, self.daily),
            ],
        }
    }

    /// Retention, on its own loop.
    pub fn maintenance(&self) -> Lane {
        Lane {
            name: "maintenance",
            jobs: vec![(JobName::Cleanup, self.cleanup)],
        }
    }
}

/// Jobs run one after another by one loop, and how often each is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    pub name: &'static str,
    pub jobs: Vec<(JobName, Duration)>,
}

/// What one pass over the due jobs did; published after every pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// When the pass started.
    pub at: DateTime<Utc>,
    pub outcomes: Vec<(JobName, JobOutcome)>,
}

pub struct Scheduler {
    ctx: Arc<JobContext>,
    lane: Lane,
    slots: Vec<Slot>,
    ticks: watch::Sender<Option<TickReport>>,
}

impl Scheduler {
    pub fn new(ctx: Arc<JobContext>, lane: Lane) -> Self {
        let now = ctx.now();
        let slots = lane
            .jobs
            .iter()
            .map(|(job, every)| Slot::new(*job, to_delta(*every), None, now))
            .collect();
        Self {
            ctx,
            lane,
            slots,
            ticks: watch::Sender::new(None),
        }
    }

    /// Reports of the passes, latest only.
    pub fn subscribe(&self) -> watch::Receiver<Option<TickReport>> {
        self.ticks.subscribe()
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Plans the first runs from the job records: a job nobody ran since
    /// its latest tick (downtime) is due now. If the records cannot be
    /// read every job is due now, and will retry with back-off if the
    /// database is really down.
    pub async fn load_history(&mut self) {
        let now = self.ctx.now();
        let mut slots = Vec::with_capacity(self.lane.jobs.len());
        for &(job, every) in &self.lane.jobs {
            let last = match job_runs::last_started(self.ctx.db(), job).await {
                Ok(last) => last,
                Err(e) => {
                    tracing::warn!(job = job.as_str(), error = %e, "could not read job history; running now");
                    None
                }
            };
            slots.push(Slot::new(job, to_delta(every), last, now));
        }
        self.slots = slots;
    }

    pub fn next_wakeup(&self) -> DateTime<Utc> {
        self.slots
            .iter()
            .map(|s| s.next_due)
            .min()
            .unwrap_or_else(|| self.ctx.now() + TimeDelta::minutes(1))
    }

    /// Runs every job due now, in order. Stops early (between jobs) on
    /// shutdown.
    pub async fn run_due(&mut self, shutdown: &Shutdown) -> TickReport {
        let at = self.ctx.now();
        let mut outcomes = Vec::new();
        // A rollup level held elsewhere: its holder runs the coarser ones.
        let mut chain_held = false;
        for i in 0..self.slots.len() {
            if shutdown.is_triggered() {
                break;
            }
            let Some(slot) = self.slots.get(i) else { break };
            if !slot.is_due(at) {
                continue;
            }
            let job = slot.job;
            let outcome =
                if chain_held && matches!(job, JobName::HourlyRollup | JobName::DailyRollup) {
                    let o = JobOutcome::Chained;
                    self.ctx.metrics.job_finished(job, &o, Duration::ZERO, at);
                    self.ctx.env.log(job, &o, Duration::ZERO);
                    o
                } else {
                    jobs::run_job(&self.ctx, job).await
                };
            if job.level().is_some() && outcome.is_skip() {
                chain_held = true;
            }
            let now = self.ctx.now();
            if let Some(slot) = self.slots.get_mut(i) {
                slot.after(&outcome, now);
            }
            outcomes.push((job, outcome));
        }
        TickReport { at, outcomes }
    }

    /// The loop: sleep until the next due job, run what is due, repeat.
    /// Returns after the job in progress when `shutdown` fires.
    pub async fn run(mut self, shutdown: Shutdown) {
        self.load_history().await;
        let jobs: Vec<String> = self
            .lane
            .jobs
            .iter()
            .map(|(j, every)| format!("{j} every {}s", every.as_secs()))
            .collect();
        tracing::info!(runner = %self.ctx.env.runner, lane = self.lane.name, jobs = ?jobs, "scheduler started");
        while !shutdown.is_triggered() {
            let report = self.run_due(&shutdown).await;
            if !report.outcomes.is_empty() {
                self.ticks.send_replace(Some(report));
            }
            let next = self.next_wakeup();
            tokio::select! {
                _ = self.ctx.env.clock.sleep_until(next) => {}
                _ = shutdown.wait() => {}
            }
        }
        tracing::info!(runner = %self.ctx.env.runner, lane = self.lane.name, "scheduler stopped");
    }
}

fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d.max(Duration::from_secs(1))).unwrap_or(TimeDelta::minutes(1))
}
