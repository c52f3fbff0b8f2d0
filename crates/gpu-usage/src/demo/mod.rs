//! Demo mode (`gpu-usage --demo`): a populated dashboard on the first run.
//!
//! - [`use_demo_database`]: unless a database is configured, the demo writes
//!   to its own SQLite file ([`DEMO_URL`]), so demo data never mixes into the
//!   real one ([`EMBEDDED_DEFAULT_URL`]).
//! - [`seed`]: when the database holds no records, a recent week from the
//!   load generator ([`generator`]: seeded, so every demo database is the
//!   same week relative to its start), stored through the domain's ingest
//!   functions — the very calls behind `POST /records` and
//!   `POST /workers/sessions` — and then every level rebuilt over it, under
//!   the rollup locks, as the worker's backfill does.
//! - [`live`]: while the service runs, the same generator's records,
//!   sessions and heartbeats of the passing moment, through the same calls.

pub mod live;

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_api::wire;
use gpu_usage_core::backfill::{self, Rebuilt};
use gpu_usage_core::capacity::{self, Session, SessionJson};
use gpu_usage_core::entities::record as record_entity;
use gpu_usage_core::jobs::JobEnv;
use gpu_usage_core::record::{Invalid, Record, RecordJson};
use gpu_usage_core::settings::Settings;
use gpu_usage_core::types::{Granularity, TimeRange};
use gpu_usage_core::{DomainError, EngineConfig, ingest};
use gpu_usage_loadgen::{self as loadgen, Generator};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The database of `config/default.toml`: what "no database configured"
/// resolves to.
pub const EMBEDDED_DEFAULT_URL: &str = "sqlite://data/gpu_usage.db?mode=rwc";
/// Where the demo writes when no database is configured.
pub const DEMO_URL: &str = "sqlite://data/gpu_usage_demo.db?mode=rwc";

/// The load generator's seed: the same demo week every time.
pub const SEED: u64 = 2026;
/// First part of every demo `task_id` (`demo-2026-<chunk>-<n>`).
pub const TASK_PREFIX: &str = "demo";
/// Whole UTC days seeded before the current one.
pub const DAYS: i64 = 7;
/// Mean records per second over a day: about 5,000 a day, peaking in the
/// afternoon (UTC).
const RATE: f64 = 0.06;
const DAILY_CYCLE: f64 = 0.5;
const ENDPOINTS: usize = 6;
const SPECS: usize = 3;
/// Items per ingest call (at most the configured `ingest.max_batch`).
const BATCH: usize = 5_000;
/// How long the rebuild waits for a rollup lock a periodic job holds.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The demo fleet and its load: six endpoints on three specs, with the
/// present at `now` (sessions still up then are reported open).
pub fn config(now: DateTime<Utc>) -> loadgen::Config {
    loadgen::Config {
        seed: SEED,
        rate: RATE,
        daily_cycle: DAILY_CYCLE,
        endpoints: ENDPOINTS,
        specs: SPECS,
        task_prefix: TASK_PREFIX.to_owned(),
        now: Some(now),
        ..loadgen::Config::default()
    }
}

pub fn generator(now: DateTime<Utc>) -> anyhow::Result<Generator> {
    Generator::new(config(now)).context("configuring the demo load generator")
}

/// Points `settings` at the demo's own SQLite file unless a database is
/// configured (the URL is not the embedded default). True when it did.
pub fn use_demo_database(settings: &mut Settings) -> bool {
    if settings.database.url.expose_secret() != EMBEDDED_DEFAULT_URL {
        return false;
    }
    settings.database.url = SecretString::from(DEMO_URL.to_owned());
    true
}

/// What [`seed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedReport {
    /// The present the week was seeded up to (or when it was found seeded):
    /// live traffic continues from here.
    pub until: DateTime<Utc>,
    /// Records already in the database (then nothing was seeded).
    pub existing_records: u64,
    pub records: usize,
    pub sessions: usize,
    /// The range every level was rebuilt over.
    pub rebuilt: Option<TimeRange>,
    pub rows_written: u64,
    pub took: Duration,
}

impl SeedReport {
    pub fn skipped(&self) -> bool {
        self.existing_records > 0
    }
}

/// The seeded range: from midnight UTC [`DAYS`] days before `now`'s day,
/// to `now`.
pub fn week(now: DateTime<Utc>) -> anyhow::Result<loadgen::TimeRange> {
    let start = Granularity::Daily.floor(now) - TimeDelta::days(DAYS);
    Ok(loadgen::TimeRange::new(start, now)?)
}

/// Seeds a recent week into a database without records, at `env.now()`,
/// and rebuilds every level over it; does nothing when it holds records.
pub async fn seed(env: &JobEnv, cfg: &EngineConfig) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    let db = &env.db;
    let now = env.now();
    let existing_records = record_entity::Entity::find()
        .count(db)
        .await
        .context("counting the stored records")?;
    let mut report = SeedReport {
        until: now,
        existing_records,
        records: 0,
        sessions: 0,
        rebuilt: None,
        rows_written: 0,
        took: Duration::ZERO,
    };
    if report.skipped() {
        return Ok(report);
    }
    let generator = generator(now)?;
    let week = week(now)?;
    let mut earliest = week.start();
    let records = generator.records(week).inspect(|r| {
        earliest = earliest.min(r.started_at);
    });
    report.records = store_records(db, records, now, cfg).await?;
    let sessions = generator.sessions(week).inspect(|s| {
        earliest = earliest.min(s.started_at);
    });
    report.sessions = store_sessions(db, sessions, now, cfg).await?;
    let range = TimeRange::new(earliest, Granularity::Minute.ceil(now))?;
    report.rows_written = rebuild(env, range, cfg).await?;
    report.rebuilt = Some(range);
    report.took = started.elapsed();
    Ok(report)
}

/// Stores records through `ingest::ingest` (what `POST /records` calls), in
/// batches; returns how many were inserted.
pub async fn store_records(
    db: &DatabaseConnection,
    records: impl Iterator<Item = loadgen::Record>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> anyhow::Result<usize> {
    store_batches::<RecordJson, Record, _>(records, "record", cfg, move |items| async move {
        let report = ingest::ingest(db, items, now, cfg)
            .await
            .map_err(explain)
            .context("storing demo records")?;
        Ok(report.inserted)
    })
    .await
}

/// Stores sessions through `capacity::store_sessions` (what
/// `POST /workers/sessions` calls), in batches; returns how many were new.
pub async fn store_sessions(
    db: &DatabaseConnection,
    sessions: impl Iterator<Item = loadgen::Session>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> anyhow::Result<usize> {
    store_batches::<SessionJson, Session, _>(sessions, "session", cfg, move |items| async move {
        let report = capacity::store_sessions(db, items, now, cfg)
            .await
            .map_err(explain)
            .context("storing demo worker sessions")?;
        Ok(report.inserted)
    })
    .await
}

/// Hands the items to `store` in [`batches`], each batch read back from its
/// JSON exactly as `POST` bodies are (`wire::parse_batch`, every field check
/// included; `what` names an item); sums the counts `store` returns.
pub async fn store_batches<J, T, F>(
    items: impl Iterator<Item = impl Serialize>,
    what: &str,
    cfg: &EngineConfig,
    mut store: impl FnMut(Vec<Result<T, Invalid>>) -> F,
) -> anyhow::Result<usize>
where
    J: DeserializeOwned,
    T: TryFrom<J, Error = Invalid>,
    F: Future<Output = anyhow::Result<usize>>,
{
    let mut stored = 0;
    for batch in batches(items, cfg) {
        let body = serde_json::to_value(&batch).context("serializing generated items")?;
        let items = wire::parse_batch::<J, T>(body, what).map_err(explain)?;
        stored += store(items).await?;
    }
    Ok(stored)
}

/// The items in vectors of at most [`BATCH`] (and `ingest.max_batch`).
pub fn batches<T>(
    items: impl Iterator<Item = T>,
    cfg: &EngineConfig,
) -> impl Iterator<Item = Vec<T>> {
    let size = BATCH.min(cfg.ingest.max_batch).max(1);
    let mut items = items.peekable();
    std::iter::from_fn(move || {
        items.peek()?;
        Some(items.by_ref().take(size).collect())
    })
}

/// Every level over `range`, as a backfill chunk rebuilds it
/// ([`backfill::rebuild_levels`]). One pass per level: the recomputation
/// also drops the pending entries the ingest queued inside the range, so
/// the worker does not redo it.
async fn rebuild(env: &JobEnv, range: TimeRange, cfg: &EngineConfig) -> anyhow::Result<u64> {
    match backfill::rebuild_levels(env, &Granularity::ALL, range, cfg, LOCK_WAIT).await {
        Rebuilt::Done(rows) => Ok(rows),
        Rebuilt::Busy(level) => anyhow::bail!("the {level} rollup lock stayed busy"),
        Rebuilt::Failed(level, e) => {
            Err(explain(e)).with_context(|| format!("rebuilding the {level} level"))
        }
    }
}

/// A domain error with the first problem of a refused batch spelled out
/// (the error's own message only counts them).
pub fn explain(e: DomainError) -> anyhow::Error {
    let first = match &e {
        DomainError::InvalidRecords(p) | DomainError::InvalidReports { problems: p, .. } => {
            p.first().map(|p| {
                let item = p.task_id.as_deref().or(p.worker_id.as_deref());
                format!("{}: {} {}", item.unwrap_or("?"), p.field, p.message)
            })
        }
        _ => None,
    };
    match first {
        Some(first) => anyhow::Error::new(e).context(first),
        None => anyhow::Error::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_the_one_of_config_default_toml() {
        let defaults = include_str!("../../../../config/default.toml");
        assert!(
            defaults.contains(&format!("url = \"{EMBEDDED_DEFAULT_URL}\"")),
            "config/default.toml no longer has database.url = {EMBEDDED_DEFAULT_URL}"
        );
    }

    #[test]
    fn only_the_embedded_default_is_replaced() {
        let mut s = Settings::load_with(&[("database.url", EMBEDDED_DEFAULT_URL)]).unwrap();
        assert!(use_demo_database(&mut s));
        assert_eq!(s.database.url.expose_secret(), DEMO_URL);
        let mut s = Settings::load_with(&[("database.url", "sqlite://elsewhere.db")]).unwrap();
        assert!(!use_demo_database(&mut s));
        assert_eq!(s.database.url.expose_secret(), "sqlite://elsewhere.db");
    }

    #[test]
    fn batches_are_bounded_and_complete() {
        let mut cfg = EngineConfig::default();
        cfg.ingest.max_batch = 3;
        let sizes: Vec<usize> = batches(0..8, &cfg).map(|b| b.len()).collect();
        assert_eq!(sizes, [3, 3, 2]);
        assert_eq!(batches(0..0, &cfg).count(), 0);
    }
}
