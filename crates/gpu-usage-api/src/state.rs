//! What every handler shares: the pool, the settings it needs, the token
//! table and the clock.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::clock::{Clock, SystemClock};
use gpu_usage_core::settings::{ApiSettings, RetentionSettings, Settings};
use sea_orm::DatabaseConnection;

use crate::auth::Auth;

/// Knobs of the HTTP layer that are not (yet) in [`Settings`].
#[derive(Clone)]
pub struct ApiOptions {
    /// Handlers never call `Utc::now()`: tests pin the time their fixtures
    /// were written for (default windows, retention and clock-skew checks
    /// depend on it).
    pub clock: Arc<dyn Clock>,
    /// `POST /aggregate` recomputes ranges up to this long inside the
    /// request; longer ones become a backfill job, so no request runs into
    /// a proxy's timeout.
    pub inline_aggregate_max: TimeDelta,
    /// How long `POST /aggregate` waits for a level's lock before
    /// answering 409.
    pub lock_wait: std::time::Duration,
    /// HTTP worker threads; `None` = one per core.
    pub workers: Option<usize>,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            inline_aggregate_max: TimeDelta::days(1),
            lock_wait: std::time::Duration::from_secs(3),
            workers: None,
        }
    }
}

/// Shared by every request (behind `web::Data`, so one allocation).
pub struct AppState {
    pub db: DatabaseConnection,
    pub api: ApiSettings,
    pub engine: EngineConfig,
    pub retention: RetentionSettings,
    pub auth: Auth,
    pub clock: Arc<dyn Clock>,
    pub inline_aggregate_max: TimeDelta,
    pub lock_wait: std::time::Duration,
    /// Who runs manual rollups, in job-run records.
    pub runner: String,
}

impl AppState {
    pub fn new(settings: &Settings, db: DatabaseConnection, options: &ApiOptions) -> Self {
        Self {
            db,
            api: settings.api.clone(),
            engine: EngineConfig::from_settings(settings),
            retention: settings.retention.clone(),
            auth: Auth::from_settings(&settings.api),
            clock: options.clock.clone(),
            inline_aggregate_max: options.inline_aggregate_max,
            lock_wait: options.lock_wait,
            runner: format!(
                "api:{}",
                gpu_usage_core::job_runs::runner_id(&settings.worker.instance_id)
            ),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        gpu_usage_core::types::to_millis(self.clock.now())
    }
}
