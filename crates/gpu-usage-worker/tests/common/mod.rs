//! Shared helpers of the worker's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::settings::Settings;
use gpu_usage_worker::{Clock, JobContext, Metrics, TickReport};
use sea_orm::DatabaseConnection;
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

#[allow(unused_imports)]
pub use gpu_usage_testing::{
    ingest_json as ingest, reference, snapshot, spread_records as records,
};

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
