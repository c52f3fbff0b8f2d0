//! Shared helpers of the worker's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::settings::Settings;
use gpu_usage_testing::{Backend, TestDb};
use gpu_usage_worker::{
    Background, BackgroundOptions, Clock, JobContext, ManualClock, Metrics, TickReport,
};
use sea_orm::DatabaseConnection;
use serde_json::Value;
use tokio::sync::watch;

pub fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A manual clock standing at `at` (RFC 3339).
pub fn clock_at(at: &str) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(ts(at)))
}

/// A fresh test database of `backend` and a clock standing at `now`.
pub async fn db_and_clock(backend: Backend, now: &str) -> (TestDb, Arc<ManualClock>) {
    (TestDb::new(backend).await, clock_at(now))
}

/// [`records`] between two RFC 3339 instants.
pub fn records_in(seed: u64, prefix: &str, n: usize, from: &str, to: &str) -> Vec<Value> {
    records(seed, prefix, n, ts(from), ts(to))
}

/// Ingests `recs` at `now` (all inserted) and adds them to `all`.
pub async fn ingest_into(
    db: &DatabaseConnection,
    all: &mut Vec<Value>,
    recs: Vec<Value>,
    now: DateTime<Utc>,
) {
    ingest(db, recs.clone(), now).await;
    all.extend(recs);
}

/// Moves `clock` to `at` and waits for the scheduler pass that starts then.
pub async fn tick_at(
    clock: &ManualClock,
    rx: &mut watch::Receiver<Option<TickReport>>,
    at: &str,
) -> TickReport {
    clock.set(ts(at));
    wait_tick(rx, ts(at)).await
}

/// Built-in defaults, an ephemeral HTTP port.
pub fn settings() -> Settings {
    Settings::load_with(&[("worker.http_host", "127.0.0.1"), ("worker.http_port", "0")]).unwrap()
}

pub fn context(db: DatabaseConnection, clock: Arc<dyn Clock>, runner: &str) -> Arc<JobContext> {
    Arc::new(JobContext {
        env: gpu_usage_core::jobs::JobEnv {
            db,
            runner: runner.to_owned(),
            clock,
        },
        engine: EngineConfig::default(),
        metrics: Arc::new(Metrics::new()),
    })
}

#[allow(unused_imports)]
pub use gpu_usage_testing::{
    ingest_json as ingest, reference, snapshot, spread_records as records,
};

/// Which of the worker's background tasks to start (never the Redis
/// consumer).
pub enum Tasks {
    Scheduler,
    BackfillPoller,
}

/// The worker's background `tasks` on `db` with `clock`, as `runner`.
pub fn spawn_background(
    db: DatabaseConnection,
    clock: &Arc<ManualClock>,
    runner: &str,
    tasks: Tasks,
) -> Background {
    let opts = BackgroundOptions {
        clock: clock.clone(),
        runner: Some(runner.to_owned()),
        scheduler: matches!(tasks, Tasks::Scheduler),
        backfill: matches!(tasks, Tasks::BackfillPoller),
        redis: false,
        ..BackgroundOptions::default()
    };
    gpu_usage_worker::spawn_with(&settings(), db, opts).unwrap()
}

/// Waits for a scheduler pass that started at or after `at`.
pub async fn wait_tick(
    rx: &mut watch::Receiver<Option<TickReport>>,
    at: DateTime<Utc>,
) -> TickReport {
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        rx.wait_for(|t| t.as_ref().is_some_and(|t| t.at >= at)),
    )
    .await
    .unwrap_or_else(|_| panic!("no scheduler pass at or after {at} within 60 s"))
    .unwrap();
    r.clone().unwrap()
}
