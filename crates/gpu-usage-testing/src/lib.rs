//! Test support for every crate of the workspace (a dev-dependency only).
//!
//! - [`db`]: [`TestDb`], an isolated, migrated database per test on SQLite
//!   or MariaDB/MySQL, dropped when the value is dropped (also when the test
//!   panics), and [`dual_backend_test!`] to run one test body on both.
//! - [`time`]: instants as epoch milliseconds, the tests' unit.
//! - [`records`]: [`Rec`], a record as the tests think of it, and the
//!   expected ingest reports.
//! - [`generators`]: proptest strategies and a deterministic generator.
//! - [`model`]: the reference model of the accounting rules.
//! - [`levels`]: every statistics row read back, compared and diffed.
//! - [`engine`]: running the jobs as the tests do (twice), and properties.
//! - [`sessions`]: [`Ses`], a worker session as the tests think of it, and
//!   which reports end up stored.
//! - [`rows`]: rows written straight to the tables, and records read back.
//! - [`snapshot`]: statistics as two databases agree on them, and the
//!   reference a snapshot is compared with.
//! - [`exposition`]: checks every `/metrics` exposition must pass.
//! - [`proxy`]: a controllable TCP proxy (cut, refuse, random drops) for fault-injection tests.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod db;
pub mod engine;
pub mod exposition;
pub mod generators;
pub mod levels;
pub mod model;
pub mod proxy;
pub mod records;
pub mod rows;
pub mod sessions;
pub mod snapshot;
pub mod time;

pub use engine::*;
pub use exposition::*;
pub use generators::*;
pub use levels::*;
pub use model::*;
pub use records::*;
pub use rows::*;
pub use sessions::*;
pub use snapshot::*;
pub use time::*;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gpu_usage_core::clock::ManualClock;
use gpu_usage_core::jobs::JobEnv;
use sea_orm::DatabaseConnection;

pub use db::{
    Backend, TestDb, database_settings, mysql_scalar, mysql_server_url, stored_task_ids, task_ids,
};

/// A job runner named `test` whose clock stands still at `now`.
pub fn job_env(db: &DatabaseConnection, now: DateTime<Utc>) -> JobEnv {
    JobEnv {
        db: db.clone(),
        runner: "test".to_owned(),
        clock: Arc::new(ManualClock::frozen(now)),
    }
}
