//! The demo mode against fresh SQLite databases at a fixed `now`: the
//! seeded week (records of every day, worker sessions, every level rebuilt
//! with totals equal to the records'), no second seeding, and live ticks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use gpu_usage::demo::{self, live};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::entities::{record, worker_session};
use gpu_usage_core::types::{Granularity, ScopeType, TaskStatus};
use gpu_usage_loadgen::TimeRange;
use gpu_usage_testing::{Levels, TestDb, job_env, read_levels, record_count};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

/// A Sunday morning, off every bucket boundary.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 10, 17, 23).unwrap() + TimeDelta::milliseconds(456)
}

async fn seeded(now: DateTime<Utc>) -> (TestDb, demo::SeedReport) {
    let t = TestDb::sqlite().await;
    let report = demo::seed(&job_env(&t.db, now), &EngineConfig::default())
        .await
        .unwrap();
    eprintln!(
        "seeded {} records and {} sessions, {} rows, in {:.1} s",
        report.records,
        report.sessions,
        report.rows_written,
        report.took.as_secs_f64()
    );
    (t, report)
}

fn gpu_ms(r: &record::Model) -> i64 {
    i64::from(r.gpu_count) * (r.completed_at - r.started_at).num_milliseconds()
}

/// Sums of (tasks, failed, GPU-ms, available GPU-ms) over a level's rows of
/// one scope type.
fn totals(levels: &Levels, g: Granularity, scope: ScopeType) -> (i64, i64, i64, i64) {
    levels
        .level(g)
        .iter()
        .filter(|r| r.scope_type == scope)
        .fold((0, 0, 0, 0), |(t, f, u, a), r| {
            (
                t + r.total_tasks,
                f + r.failed_tasks,
                u + r.gpu_ms,
                a + r.avail_ms,
            )
        })
}

async fn all_records(db: &DatabaseConnection) -> Vec<record::Model> {
    record::Entity::find().all(db).await.unwrap()
}

#[tokio::test]
async fn seeding_fills_a_week_of_records_sessions_and_every_level() {
    let (t, report) = seeded(now()).await;
    assert!(!report.skipped());
    let records = all_records(&t.db).await;
    assert_eq!(records.len(), report.records);

    // Records on each of the 7 whole days before today (a few thousand
    // each), none outside the week.
    let today = Granularity::Daily.floor(now());
    let mut per_day: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for r in &records {
        *per_day
            .entry(Granularity::Daily.floor(r.completed_at))
            .or_default() += 1;
    }
    for d in 1..=demo::DAYS {
        let day = today - TimeDelta::days(d);
        let n = per_day.get(&day).copied().unwrap_or(0);
        assert!((2_000..10_000).contains(&n), "{day}: {n} records");
    }
    assert_eq!(per_day.len(), 8, "7 days and today: {per_day:?}");
    assert!(records.iter().all(|r| r.completed_at < now()));
    let failed = records
        .iter()
        .filter(|r| r.status == TaskStatus::Failed)
        .count();
    assert!(failed > 0 && failed < records.len() / 4, "{failed} failed");

    // Worker sessions over the week, some still open at `now`.
    let sessions = worker_session::Entity::find().count(&t.db).await.unwrap();
    assert_eq!(sessions, report.sessions as u64);
    assert!(sessions > 100, "{sessions} sessions");
    let open = worker_session::Entity::find()
        .filter(worker_session::Column::EndedAt.is_null())
        .count(&t.db)
        .await
        .unwrap();
    assert!(open > 0, "no session open at now");

    // Every level holds exactly the records: tasks, failures and GPU time,
    // globally and summed over the endpoints; capacity was reported.
    let levels = read_levels(&t.db).await.unwrap();
    let expected = (
        records.len() as i64,
        failed as i64,
        records.iter().map(gpu_ms).sum::<i64>(),
    );
    for g in Granularity::ALL {
        for scope in [ScopeType::Global, ScopeType::Endpoint] {
            let (tasks, failed, used, available) = totals(&levels, g, scope);
            assert_eq!((tasks, failed, used), expected, "{g} {scope:?}");
            assert!(available > used, "{g} {scope:?}: {available} available");
        }
    }
    // A daily row with capacity for every day of the week and today.
    let days_with_capacity = levels
        .daily
        .iter()
        .filter(|r| r.scope_type == ScopeType::Global && r.bucket >= today - TimeDelta::days(7))
        .filter(|r| r.total_tasks > 0 && r.avail_ms > 0)
        .count();
    assert_eq!(days_with_capacity, 8);
    let range = report.rebuilt.unwrap();
    assert!(range.start() <= today - TimeDelta::days(demo::DAYS));
    assert!(range.end() >= now());
}

#[tokio::test]
async fn a_seeded_database_is_not_seeded_again() {
    let (t, first) = seeded(now()).await;
    let records = record_count(&t.db).await.unwrap();
    let sessions = worker_session::Entity::find().count(&t.db).await.unwrap();
    let levels = read_levels(&t.db).await.unwrap();

    // Started again an hour later: nothing is added or rebuilt.
    let later = now() + TimeDelta::hours(1);
    let again = demo::seed(&job_env(&t.db, later), &EngineConfig::default())
        .await
        .unwrap();
    assert!(again.skipped());
    assert_eq!(again.existing_records, first.records as u64);
    assert_eq!(
        (again.records, again.sessions, again.rows_written),
        (0, 0, 0)
    );
    assert_eq!(again.until, later);
    assert_eq!(record_count(&t.db).await.unwrap(), records);
    assert_eq!(
        worker_session::Entity::find().count(&t.db).await.unwrap(),
        sessions
    );
    assert_eq!(read_levels(&t.db).await.unwrap(), levels);
}

#[tokio::test]
async fn live_ticks_continue_the_week_and_are_idempotent() {
    let (t, report) = seeded(now()).await;
    let cfg = EngineConfig::default();
    let before = record_count(&t.db).await.unwrap();
    let end = report.until + TimeDelta::minutes(10);
    let window = TimeRange::new(report.until, end).unwrap();
    let expected = demo::generator(end).unwrap().records(window).count();
    assert!(expected > 10, "{expected} records in 10 minutes");

    let traffic = live::tick(&t.db, window, &cfg).await.unwrap();
    assert_eq!(traffic.records, expected);
    assert!(traffic.heartbeats > 100, "{traffic:?}");
    let records = all_records(&t.db).await;
    assert_eq!(records.len() as u64, before + expected as u64);
    let new = records.iter().filter(|r| r.completed_at >= report.until);
    assert_eq!(new.filter(|r| r.completed_at < end).count(), expected);
    // The heartbeats kept the workers that are up open.
    let open = worker_session::Entity::find()
        .filter(worker_session::Column::EndedAt.is_null())
        .count(&t.db)
        .await
        .unwrap();
    assert!(open > 0);

    // The same window again (a retried tick) stores nothing new.
    let again = live::tick(&t.db, window, &cfg).await.unwrap();
    assert_eq!((again.records, again.sessions), (0, 0));
    assert_eq!(record_count(&t.db).await.unwrap(), before + expected as u64);
}
