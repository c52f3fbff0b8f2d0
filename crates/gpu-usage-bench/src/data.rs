//! The load generator's records and sessions, and writing them straight
//! into a database (multi-row INSERTs with bound values, encoded exactly as
//! the service encodes them on either backend).

use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::entities::{record, worker_session};
use gpu_usage_core::types::TaskStatus;
use gpu_usage_loadgen::{Config, Generator, Record, Session, Status, TimeRange};
use rust_decimal::Decimal;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{DatabaseConnection, EntityTrait};

/// Endpoints and specs of every data set (the brief's 20 and 5).
pub const ENDPOINTS: usize = 20;
pub const SPECS: usize = 5;
/// Rows per multi-row INSERT (13 binds a row: under SQLite's 32,766).
pub const INSERT_BATCH: usize = 1_000;

/// A generator of about `count` records over `range` (Poisson at the rate
/// that gives that count, daily cycle 0.5), 20 endpoints, 5 specs, and a
/// fleet of `workers` (None: sized for 60 % utilisation).
pub fn generator(
    seed: u64,
    prefix: &str,
    count: u64,
    range: TimeRange,
    workers: Option<usize>,
) -> Result<Generator> {
    let rate = count as f64 / range.seconds();
    Ok(Generator::new(Config {
        seed,
        rate,
        endpoints: ENDPOINTS,
        specs: SPECS,
        workers,
        task_prefix: prefix.to_owned(),
        ..Config::default()
    })?)
}

/// Generated records rarely land on exactly `count`; take exactly it.
pub fn records(g: &Generator, range: TimeRange, count: u64) -> Vec<Record> {
    g.records(range).take(count as usize).collect()
}

pub fn range(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<TimeRange> {
    Ok(TimeRange::new(start, end)?)
}

pub fn midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|n| n.and_utc())
        .unwrap_or(t)
}

/// The days holding the records' time: [midnight before the earliest
/// start, midnight after the latest completion).
pub fn day_span(recs: &[Record]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let first = recs.iter().map(|r| r.started_at).min()?;
    let last = recs.iter().map(|r| r.completed_at).max()?;
    let end = midnight(last) + TimeDelta::days(1);
    Some((midnight(first), end))
}

pub fn active_record(r: &Record) -> record::ActiveModel {
    record::ActiveModel {
        id: NotSet,
        task_id: Set(r.task_id.clone()),
        endpoint: Set(r.endpoint.clone()),
        worker_id: Set(r.worker_id.clone()),
        spec_name: Set(r.spec_name.clone()),
        gpu_count: Set(r.gpu_count as i32),
        gpu_type: Set(r.gpu_type.clone()),
        gpu_memory_gb: Set(r.gpu_memory_gb.map(|m| m as i32)),
        started_at: Set(r.started_at),
        completed_at: Set(r.completed_at),
        duration_seconds: Set(r.duration_seconds() as i32),
        gpu_hours: Set(Decimal::new(r.gpu_micro_hours(), 6)),
        status: Set(match r.status {
            Status::Completed => TaskStatus::Completed,
            Status::Failed => TaskStatus::Failed,
        }),
        created_at: Set(r.created_at),
    }
}

/// Multi-row INSERTs of `recs`, `INSERT_BATCH` a statement, one
/// connection at a time; the time it took.
pub async fn insert_records(db: &DatabaseConnection, recs: &[Record]) -> Result<Duration> {
    let t = Instant::now();
    for chunk in recs.chunks(INSERT_BATCH) {
        record::Entity::insert_many(chunk.iter().map(active_record))
            .exec_without_returning(db)
            .await?;
    }
    Ok(t.elapsed())
}

/// The same over `clients` connections at once (batches dealt round robin).
pub async fn insert_records_concurrently(
    db: &DatabaseConnection,
    recs: &[Record],
    clients: usize,
) -> Result<Duration> {
    let batches: Vec<Vec<record::ActiveModel>> = recs
        .chunks(INSERT_BATCH)
        .map(|c| c.iter().map(active_record).collect())
        .collect();
    let mut lanes: Vec<Vec<Vec<record::ActiveModel>>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, b) in batches.into_iter().enumerate() {
        lanes[i % clients].push(b);
    }
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for lane in lanes {
        let db = db.clone();
        set.spawn(async move {
            for b in lane {
                record::Entity::insert_many(b)
                    .exec_without_returning(&db)
                    .await?;
            }
            Ok::<(), sea_orm::DbErr>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(t.elapsed())
}

/// Worker sessions as the service stores them (every one ended: the
/// generator's past).
pub async fn insert_sessions(
    db: &DatabaseConnection,
    sessions: &[Session],
    now: DateTime<Utc>,
) -> Result<()> {
    for chunk in sessions.chunks(INSERT_BATCH) {
        let models = chunk.iter().map(|s| {
            let end = s.ended_at.unwrap_or(now);
            worker_session::ActiveModel {
                id: NotSet,
                worker_id: Set(s.worker.worker_id.clone()),
                endpoint: Set(s.worker.endpoint.clone()),
                spec_name: Set(s.worker.spec_name.clone()),
                gpu_type: Set(s.worker.gpu_type.clone()),
                gpu_count: Set(s.worker.gpu_count as i32),
                started_at: Set(s.started_at),
                ended_at: Set(s.ended_at),
                last_seen: Set(end),
                counted_until: Set(end),
                created_at: Set(now),
                updated_at: Set(now),
            }
        });
        worker_session::Entity::insert_many(models)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}
