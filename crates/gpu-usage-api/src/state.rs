//! What every handler shares: the pool, the settings it needs, the token
//! table and the clock.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::aggregate::AggregateOptions;
use gpu_usage_core::clock::{Clock, SystemClock};
use gpu_usage_core::jobs::JobEnv;
use gpu_usage_core::metrics::RegisterMetrics;
use gpu_usage_core::settings::{ApiSettings, Settings};
use sea_orm::DatabaseConnection;

/// Knobs of the HTTP layer that are not (yet) in [`Settings`].
#[derive(Clone)]
pub struct ApiOptions {
    /// Handlers never call `Utc::now()`: tests pin the time their fixtures
    /// were written for (default windows, retention and clock-skew checks
    /// depend on it).
    pub clock: Arc<dyn Clock>,
    /// Inline limit and lock wait of `POST /aggregate`.
    pub aggregate: AggregateOptions,
    /// HTTP worker threads; `None` = one per core.
    pub workers: Option<usize>,
    /// Metrics of other components of the process, served with the API's
    /// own at `/metrics` (the all-in-one binary adds the worker's).
    pub metrics: Vec<Arc<dyn RegisterMetrics>>,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            aggregate: AggregateOptions::default(),
            workers: None,
            metrics: Vec::new(),
        }
    }
}

/// Shared by every request (behind `web::Data`, so one allocation).
pub struct AppState {
    pub db: DatabaseConnection,
    pub api: ApiSettings,
    pub engine: EngineConfig,
    /// Manual rollups run through the same job runner as the worker's,
    /// recorded as runs of `api:<instance>`.
    pub jobs: JobEnv,
    pub aggregate: AggregateOptions,
}

impl AppState {
    pub fn new(settings: &Settings, db: DatabaseConnection, options: &ApiOptions) -> Self {
        let runner = format!(
            "api:{}",
            gpu_usage_core::job_runs::runner_id(&settings.worker.instance_id)
        );
        Self {
            jobs: JobEnv {
                db: db.clone(),
                runner,
                clock: options.clock.clone(),
            },
            db,
            api: settings.api.clone(),
            engine: EngineConfig::from_settings(settings),
            aggregate: options.aggregate,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.jobs.now()
    }
}
