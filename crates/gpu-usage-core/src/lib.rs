//! Domain crate of the GPU usage accounting service. No HTTP here: the api
//! and worker crates call these functions the same way, and so do the tests.
//!
//! Layout:
//! - [`types`]: scopes, granularities, statuses, validated time ranges.
//! - [`settings`]: typed configuration (the `gpu-usage-config` crate,
//!   re-exported), loaded once and passed down by value.
//! - [`clock`]: where "now" comes from ([`clock::SystemClock`], and
//!   [`clock::ManualClock`] for tests).
//! - [`process`]: the shutdown signal and the OS stop requests behind it;
//!   [`telemetry`]: the logging setup every binary uses.
//! - [`db`]: connecting (sessions pinned to UTC), classifying failures.
//! - [`entities`]: SeaORM entities of every table.
//! - [`record`]: the finished-task record and its JSON wire form, parsed
//!   into domain types once.
//! - [`ingest`]: checking and storing records, idempotent by `task_id`;
//!   marks the touched minutes as pending in the same transaction.
//! - [`rollup`]: the accounting engine: minute rows from records, hourly from
//!   minute, daily from hourly, each an idempotent recomputation of a range;
//!   pending ranges carry late data and downtime forward level by level.
//! - [`status`]: how far each level is complete and what is pending.
//! - [`query`]: reads for the API (statistics pages, summaries, scopes,
//!   records).
//! - [`locks`]: `GET_LOCK` on a dedicated MySQL connection, an in-process
//!   lock on SQLite.
//! - [`retention`]: batched deletes of expired rows, per table.
//! - [`metrics`]: the Prometheus exposition and the scrape-time rollup
//!   gauges.
//! - [`job_runs`]: the record of every job execution.
//! - [`backfill`]: tracked, resumable rebuilds of a range at every level.
//!
//! Every function that touches the database takes `&impl ConnectionTrait`
//! (plus `TransactionTrait` where it opens its own transactions) and, where
//! time matters, an explicit `now`, so tests never sleep.

#[macro_use]
mod macros;

pub mod aggregate;
pub mod backfill;
pub mod capacity;
pub mod clock;
pub mod db;
pub mod entities;
pub mod error;
pub mod fields;
pub mod ingest;
pub mod job_runs;
pub mod jobs;
pub mod level;
pub mod locks;
pub mod metrics;
pub mod process;
pub mod query;
pub mod record;
pub mod retention;
pub mod rollup;
pub mod status;
pub mod telemetry;
pub mod types;

pub use error::{DomainError, Result};
pub use gpu_usage_config as settings;

/// The settings the accounting engine itself depends on.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    pub ingest: settings::IngestSettings,
    pub retention: settings::RetentionSettings,
    pub capacity: settings::CapacitySettings,
}

impl EngineConfig {
    pub fn from_settings(s: &settings::Settings) -> Self {
        Self {
            ingest: s.ingest.clone(),
            retention: s.retention.clone(),
            capacity: s.capacity.clone(),
        }
    }
}

/// Creates or updates the schema. Only the embedded (SQLite) mode and tests
/// call this at start-up; on MySQL migrations are a deploy step.
pub async fn migrate(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    use migration::MigratorTrait;
    migration::Migrator::up(db, None).await
}
