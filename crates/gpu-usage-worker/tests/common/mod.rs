//! Shared helpers of the worker's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::entities::{statistics_daily, statistics_hourly, statistics_minute};
use gpu_usage_core::ingest::{self, RecordInput};
use gpu_usage_core::rollup;
use gpu_usage_core::settings::Settings;
use gpu_usage_core::types::{Granularity, TimeRange};
use gpu_usage_testing::{Backend, TestDb};
use gpu_usage_worker::{Clock, JobContext, Metrics, TickReport};
use sea_orm::{DatabaseConnection, EntityTrait};
use tokio::sync::watch;

pub fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
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

/// Deterministic records inside `[from, to)` (completion included): tasks
/// crossing minutes and hours, zero-length and CPU-only tasks, FAILED ones,
/// NULL and empty spec names, an endpoint name with quotes and non-ASCII.
pub fn records(
    seed: u64,
    prefix: &str,
    n: usize,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<RecordInput> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    let span = (to - from).num_milliseconds().max(1) as u64;
    (0..n)
        .map(|i| {
            let a = from + TimeDelta::milliseconds((next() % span) as i64);
            let max_len = (to - a).num_milliseconds().clamp(0, 2 * 3_600_000) as u64;
            let len = if i % 9 == 0 {
                0
            } else {
                next() % (max_len + 1)
            };
            let b = a + TimeDelta::milliseconds(len as i64);
            RecordInput {
                task_id: Some(format!("{prefix}-{i}")),
                endpoint: Some(["alpha", "beta", "gämma \"q\""][i % 3].to_owned()),
                worker_id: Some(format!("w{}", i % 4)),
                spec_name: [Some("s1"), None, Some(""), Some("s2")][i % 4].map(str::to_owned),
                gpu_count: Some((next() % 5) as i64),
                started_at: Some(a.to_rfc3339()),
                completed_at: Some(b.to_rfc3339()),
                status: Some(if i % 7 == 0 { "FAILED" } else { "COMPLETED" }.to_owned()),
                ..RecordInput::default()
            }
        })
        .collect()
}

pub async fn ingest(db: &DatabaseConnection, recs: Vec<RecordInput>, now: DateTime<Utc>) {
    let n = recs.len();
    let r = ingest::ingest(db, recs, now, &EngineConfig::default())
        .await
        .unwrap();
    assert_eq!(r.inserted, n, "{r:?}");
}

/// Every statistics row without ids and write times, sorted.
pub async fn snapshot(db: &DatabaseConnection) -> Vec<String> {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let mut out = Vec::new();
    for m in statistics_minute::Entity::find().all(db).await.unwrap() {
        out.push(format!(
            "minute {:?}",
            statistics_minute::Model {
                id: 0,
                updated_at: epoch,
                ..m
            }
        ));
    }
    for m in statistics_hourly::Entity::find().all(db).await.unwrap() {
        out.push(format!(
            "hourly {:?}",
            statistics_hourly::Model {
                id: 0,
                updated_at: epoch,
                ..m
            }
        ));
    }
    for m in statistics_daily::Entity::find().all(db).await.unwrap() {
        out.push(format!(
            "daily {:?}",
            statistics_daily::Model {
                id: 0,
                updated_at: epoch,
                ..m
            }
        ));
    }
    out.sort();
    out
}

/// The same records on a fresh database, rebuilt by one direct recompute
/// of every level over `range`: what the workers must have converged to.
pub async fn reference(
    backend: Backend,
    recs: Vec<RecordInput>,
    range: TimeRange,
    now: DateTime<Utc>,
) -> Vec<String> {
    let r = TestDb::new(backend).await;
    ingest(&r.db, recs, now).await;
    for level in Granularity::ALL {
        rollup::recompute(&r.db, level, range, now, &EngineConfig::default())
            .await
            .unwrap();
    }
    let rows = snapshot(&r.db).await;
    r.cleanup().await;
    rows
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
