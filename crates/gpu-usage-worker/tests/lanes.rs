//! A long retention delete cannot hold the rollups back: cleanup runs in
//! a loop of its own. On MariaDB the test makes cleanup's DELETE wait on a
//! row lock it holds, then moves the clock a minute on: the minute rollup
//! runs and folds in a new record while cleanup is still stuck.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::TimeDelta;
use common::*;
use gpu_usage_core::job_runs;
use gpu_usage_core::jobs::JobName;
use gpu_usage_testing::{Backend, TestDb, insert_row, record_row};
use gpu_usage_worker::Clock;
use sea_orm::{ConnectionTrait, TransactionTrait};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_cleanup_does_not_delay_the_rollups() {
    let t = TestDb::new(Backend::MySql).await;
    let clock = clock_at("2026-06-15T10:00:30Z");
    let old = clock.now() - TimeDelta::days(200);
    insert_row(
        &t.db,
        record_row("old", "ep", 1, old, old + TimeDelta::minutes(1)),
    )
    .await;

    // Another session holds the expired record's row (by primary key: no
    // gap locks, so new records can still be inserted).
    let blocker = gpu_usage_core::db::connect(&t.settings).await.unwrap();
    let txn = blocker.begin().await.unwrap();
    txn.execute_unprepared(
        "SELECT id FROM gpu_usage_records WHERE id = (SELECT MIN(id) FROM gpu_usage_records) FOR UPDATE",
    )
        .await
        .unwrap();

    let bg = spawn_background(t.db.clone(), &clock, "solo", Tasks::Scheduler);
    let mut ticks = bg.ticks().unwrap();
    wait_tick(&mut ticks, clock.now()).await;
    // Cleanup started and is waiting on the row lock.
    let running = || async {
        job_runs::all_of(&t.db, JobName::Cleanup)
            .await
            .unwrap()
            .into_iter()
            .any(|r| r.finished_at.is_none())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !running().await {
        assert!(
            std::time::Instant::now() < deadline,
            "cleanup never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let live = records_in(7, "live", 5, "2026-06-15T10:00:00Z", "2026-06-15T10:00:30Z");
    ingest(&t.db, live.clone(), clock.now()).await;
    let tick = tick_at(&clock, &mut ticks, "2026-06-15T10:01:00Z").await;
    assert!(
        tick.outcomes
            .iter()
            .any(|(j, o)| *j == JobName::MinuteRollup && !o.is_skip() && !o.is_failure()),
        "{tick:?}"
    );
    assert!(
        running().await,
        "cleanup finished early; the test proves nothing"
    );
    let range = gpu_usage_core::types::TimeRange::new(
        ts("2026-06-15T10:00:00Z"),
        ts("2026-06-15T10:01:00Z"),
    )
    .unwrap();
    let rows = snapshot(&t.db).await;
    let reference = reference(Backend::MySql, live, range, clock.now()).await;
    let minute_rows = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|r| r.starts_with("minute"))
            .cloned()
            .collect()
    };
    assert_eq!(minute_rows(&rows), minute_rows(&reference));

    txn.rollback().await.unwrap();
    bg.shutdown(std::time::Duration::from_secs(20)).await;
    blocker.close().await.ok();
    t.cleanup().await;
}
