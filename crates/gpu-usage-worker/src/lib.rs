//! The worker deployment of the GPU usage accounting service: scheduled
//! rollups and retention across any number of replicas, the
//! tracked-backfill runner, the optional Redis stream consumer, an HTTP port
//! for probes and metrics, and an operator CLI.
//!
//! Layout:
//! - [`schedule`]: when a job is due (aligned ticks, catch-up, back-off);
//!   pure.
//! - [`scheduler`]: the loops running due jobs: capacity → minute →
//!   hourly → daily in one, cleanup in its own.
//! - [`jobs`]: running one job under its lock with a job record
//!   ([`jobs::run_job`]); one file per job: [`jobs::rollup`],
//!   [`jobs::cleanup`], [`jobs::backfill`] (the backfill poller).
//! - [`stream`]: Redis stream ingest with a consumer group and dead letters.
//! - [`metrics`]: counters and the Prometheus text rendering.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`cli`]: the `gpu-usage-worker` subcommands.
//!
//! Time comes from `gpu_usage_core::clock`, the shutdown signal from
//! `gpu_usage_core::process`, logging from `gpu_usage_core::telemetry`:
//! the same pieces the API uses.
//!
//! Embedding: [`spawn_scheduler`] starts the background tasks without the
//! HTTP port (the all-in-one `gpu-usage` binary uses it); [`run`] is the
//! whole worker until its shutdown future resolves.

pub mod cli;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod schedule;
pub mod scheduler;
pub mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gpu_usage_core::EngineConfig;
use gpu_usage_core::job_runs;
use gpu_usage_core::jobs::JobEnv;
use gpu_usage_core::settings::{RedisSettings, Settings};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::jobs::{JobContext, JobOutcome, run_job};
pub use crate::metrics::Metrics;
pub use crate::scheduler::{Intervals, Scheduler, TickReport};
pub use gpu_usage_core::clock::{Clock, ManualClock, SystemClock};
use gpu_usage_core::process::{self as shutdown, ShutdownTrigger};

/// How long a shutdown waits for jobs in progress before abandoning them.
/// Abandoning is safe (their transactions roll back, their locks' connections
/// close, the work is redone later) but wasteful; rollup chunks and
/// backfill chunks normally finish well within this.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// What to start in the background.
pub struct BackgroundOptions {
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Overrides `worker.instance_id`.
    pub runner: Option<String>,
    pub scheduler: bool,
    pub backfill: bool,
    /// Start the stream consumer when `redis.url` is set.
    pub redis: bool,
}

impl Default for BackgroundOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Metrics::new()),
            runner: None,
            scheduler: true,
            backfill: true,
            redis: true,
        }
    }
}

/// The background tasks of a worker, and the means to stop them.
pub struct Background {
    trigger: ShutdownTrigger,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    ticks: Option<watch::Receiver<Option<TickReport>>>,
    maintenance_ticks: Option<watch::Receiver<Option<TickReport>>>,
    ctx: Arc<JobContext>,
    redis: Option<(deadpool_redis::Pool, RedisSettings)>,
}

impl Background {
    /// Reports of the rollup scheduler's passes (when the scheduler runs).
    pub fn ticks(&self) -> Option<watch::Receiver<Option<TickReport>>> {
        self.ticks.clone()
    }

    /// Reports of the maintenance (cleanup) scheduler's passes.
    pub fn maintenance_ticks(&self) -> Option<watch::Receiver<Option<TickReport>>> {
        self.maintenance_ticks.clone()
    }

    pub fn context(&self) -> &Arc<JobContext> {
        &self.ctx
    }

    pub fn redis(&self) -> Option<(deadpool_redis::Pool, RedisSettings)> {
        self.redis.clone()
    }

    /// Signals every task, waits up to `grace` for them to finish what they
    /// are doing, then aborts the rest (dropping their locks).
    pub async fn shutdown(self, grace: Duration) {
        self.trigger.trigger();
        let deadline = tokio::time::Instant::now() + grace;
        for (name, mut task) in self.tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => tracing::debug!(task = name, "stopped"),
                Ok(Err(e)) => tracing::warn!(task = name, error = %e, "task ended abnormally"),
                Err(_) => {
                    tracing::warn!(
                        task = name,
                        grace_secs = grace.as_secs(),
                        "still busy after the grace period; abandoning it"
                    );
                    task.abort();
                    let _ = task.await;
                }
            }
        }
    }
}

/// Starts the scheduler, the backfill poller and (when configured) the
/// Redis consumer with default options. For embedding in another binary;
/// stop with [`Background::shutdown`].
pub fn spawn_scheduler(settings: &Settings, db: DatabaseConnection) -> anyhow::Result<Background> {
    spawn_with(settings, db, BackgroundOptions::default())
}

pub fn spawn_with(
    settings: &Settings,
    db: DatabaseConnection,
    opts: BackgroundOptions,
) -> anyhow::Result<Background> {
    let runner = opts
        .runner
        .clone()
        .unwrap_or_else(|| job_runs::runner_id(&settings.worker.instance_id));
    let ctx = Arc::new(JobContext {
        env: JobEnv {
            db,
            runner: runner.clone(),
            clock: opts.clock.clone(),
        },
        engine: EngineConfig::from_settings(settings),
        metrics: opts.metrics.clone(),
    });
    let (trigger, shutdown) = shutdown::channel();
    let mut tasks = Vec::new();
    let mut ticks = None;
    let mut maintenance_ticks = None;
    let redis = if opts.redis && settings.redis.enabled() {
        let pool = stream::create_pool(&settings.redis)?;
        let consumer =
            stream::StreamConsumer::new(pool.clone(), settings.redis.clone(), ctx.clone(), runner);
        tasks.push(("stream", tokio::spawn(consumer.run(shutdown.clone()))));
        Some((pool, settings.redis.clone()))
    } else {
        None
    };
    if opts.scheduler {
        let intervals = Intervals::from_settings(&settings.worker);
        let rollups = Scheduler::new(ctx.clone(), intervals.rollups());
        ticks = Some(rollups.subscribe());
        tasks.push(("scheduler", tokio::spawn(rollups.run(shutdown.clone()))));
        let maintenance = Scheduler::new(ctx.clone(), intervals.maintenance());
        maintenance_ticks = Some(maintenance.subscribe());
        tasks.push((
            "maintenance",
            tokio::spawn(maintenance.run(shutdown.clone())),
        ));
    }
    if opts.backfill {
        let every = Duration::from_secs(settings.worker.backfill_poll_secs.max(1));
        tasks.push((
            "backfill",
            tokio::spawn(jobs::backfill::poll_loop(
                ctx.clone(),
                every,
                shutdown.clone(),
            )),
        ));
    }
    Ok(Background {
        trigger,
        tasks,
        ticks,
        maintenance_ticks,
        ctx,
        redis,
    })
}

/// The whole worker: background tasks plus the HTTP port, until `shutdown`
/// resolves; then it finishes the jobs in progress (within
/// [`SHUTDOWN_GRACE`]), releases its locks and returns.
pub async fn run(
    settings: Settings,
    db: DatabaseConnection,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    run_with(settings, db, shutdown, BackgroundOptions::default()).await
}

pub async fn run_with(
    settings: Settings,
    db: DatabaseConnection,
    shutdown: impl Future,
    opts: BackgroundOptions,
) -> anyhow::Result<()> {
    let clock = opts.clock.clone();
    let metrics = opts.metrics.clone();
    let background = spawn_with(&settings, db.clone(), opts)?;
    let state = http::AppState {
        db,
        metrics,
        clock,
        redis: background.redis(),
    };
    let (server, addrs) =
        match http::start(&settings.worker.http_host, settings.worker.http_port, state) {
            Ok(s) => s,
            Err(e) => {
                background.shutdown(SHUTDOWN_GRACE).await;
                return Err(e).with_context(|| {
                    format!(
                        "binding the worker HTTP port {}:{}",
                        settings.worker.http_host, settings.worker.http_port
                    )
                });
            }
        };
    tracing::info!(addrs = ?addrs, "worker HTTP port listening");
    let handle = server.handle();
    let mut server_task = tokio::spawn(server);
    tokio::pin!(shutdown);
    let ended_early = tokio::select! {
        _ = &mut shutdown => None,
        r = &mut server_task => Some(r),
    };
    tracing::info!("worker shutting down");
    handle.stop(true).await;
    background.shutdown(SHUTDOWN_GRACE).await;
    let server_result = match ended_early {
        Some(r) => r,
        None => server_task.await,
    };
    match server_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e).context("the worker HTTP server failed"),
        Err(e) => return Err(e).context("the worker HTTP server task failed"),
    }
    tracing::info!("worker stopped");
    Ok(())
}
