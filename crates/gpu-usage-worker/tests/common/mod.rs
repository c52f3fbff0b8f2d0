//! Shared helpers of the worker's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_redis::redis::{self, ToRedisArgs};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::settings::RedisSettings;
use gpu_usage_core::settings::Settings;
use gpu_usage_testing::{Backend, TestDb};
use gpu_usage_worker::{
    Background, BackgroundOptions, Clock, JobContext, JobOutcome, ManualClock, Metrics, TickReport,
};
use sea_orm::DatabaseConnection;
use sea_orm::sqlx::{self, MySql, pool::PoolConnection};
use secrecy::SecretString;
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

/// A second pool on a test database with a connection inside a
/// transaction that holds the gap locks of a whole table, so that a writer
/// of that table blocks until [`HeldLock::release`].
pub struct HeldLock {
    db: DatabaseConnection,
    conn: PoolConnection<MySql>,
}

impl HeldLock {
    /// Locks all of `table` (`SELECT ... FOR UPDATE`) on `t`'s database.
    pub async fn on(t: &TestDb, table: &str) -> HeldLock {
        let db = gpu_usage_core::db::connect(&t.settings).await.unwrap();
        let mut conn = db.get_mysql_connection_pool().acquire().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
        // The table names are the tests' own constants, never input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM {table} FOR UPDATE"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
        HeldLock { db, conn }
    }

    /// Rolls the transaction back (the blocked writer goes on) and closes
    /// the second pool; the close's result, which a test may ignore when
    /// the server is being killed.
    pub async fn release(mut self) -> Result<(), sea_orm::DbErr> {
        sqlx::query("ROLLBACK")
            .execute(&mut *self.conn)
            .await
            .unwrap();
        drop(self.conn);
        self.db.close().await
    }
}

/// The test Redis: `GPU_USAGE_TEST_REDIS_URL`, else the local default.
pub fn test_redis_url() -> String {
    std::env::var("GPU_USAGE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Settings for a stream, group and dead-letter stream of their own
/// (`prefix` and a random id), so concurrent tests never share entries.
pub fn fresh_streams(
    url: String,
    prefix: &str,
    batch_size: usize,
    claim_idle_ms: u64,
) -> RedisSettings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    RedisSettings {
        url: SecretString::from(url),
        stream: format!("{prefix}:{id}:records"),
        group: format!("{prefix}_group_{id}"),
        dead_letter_stream: format!("{prefix}:{id}:dead"),
        batch_size,
        block_ms: 200,
        claim_idle_ms,
    }
}

/// An object's fields as stream fields (strings; nulls left out).
pub fn flat(r: &Value) -> Vec<(String, Vec<u8>)> {
    r.as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| match v {
            Value::Null => None,
            Value::String(s) => Some((k.clone(), s.clone().into_bytes())),
            other => Some((k.clone(), other.to_string().into_bytes())),
        })
        .collect()
}

/// Adds `r` to `stream` as flat fields (see [`flat`]); the entry's id.
pub async fn publish_flat(pool: &deadpool_redis::Pool, stream: &str, r: &Value) -> String {
    let fields = flat(r);
    let refs: Vec<(&str, &[u8])> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    xadd(pool, stream, &refs).await
}

/// `XADD stream * field value ...`; the new entry's id.
pub async fn xadd<V: ToRedisArgs>(
    pool: &deadpool_redis::Pool,
    stream: &str,
    fields: &[(&str, V)],
) -> String {
    let mut conn = pool.get().await.unwrap();
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(v);
    }
    cmd.query_async(&mut conn).await.unwrap()
}

/// Runs the minute, hourly and daily rollups in order on `ctx`; each must
/// run (not be skipped or fail).
pub async fn run_rollup_chain(ctx: &Arc<JobContext>) {
    for job in [
        JobName::MinuteRollup,
        JobName::HourlyRollup,
        JobName::DailyRollup,
    ] {
        let outcome = gpu_usage_worker::run_job(ctx, job).await;
        assert!(
            matches!(outcome, JobOutcome::Ran { .. }),
            "{job}: {outcome:?}"
        );
    }
}
