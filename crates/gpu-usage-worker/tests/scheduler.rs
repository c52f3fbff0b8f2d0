//! The scheduler driven by an explicit clock (SQLite): the chain minute →
//! hourly → daily per tick, late data folded in by the periodic jobs,
//! failures retried with back-off, skips when the lock is held, job
//! records, the HTTP port, and a prompt graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gpu_usage_core::entities::statistics_daily;
use gpu_usage_core::job_runs::{self, RunOutcome};
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::locks;
use gpu_usage_core::status;
use gpu_usage_core::types::{Granularity, TimeRange};
use gpu_usage_testing::{Backend, TestDb};
use gpu_usage_worker::jobs::run_job;
use gpu_usage_worker::{BackgroundOptions, Clock, Intervals, JobOutcome, ManualClock, Scheduler};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait};

fn outcome_of(report: &gpu_usage_worker::TickReport, job: JobName) -> Option<&JobOutcome> {
    report
        .outcomes
        .iter()
        .find(|(j, _)| *j == job)
        .map(|(_, o)| o)
}

fn ran(o: Option<&JobOutcome>) -> bool {
    matches!(o, Some(JobOutcome::Ran { .. }))
}

/// Every job ran, the last run of each succeeded, all by `runner`.
async fn assert_every_job_last_succeeded(db: &DatabaseConnection, runner: &str) {
    let runs = job_runs::latest_per_job(db).await.unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r.last_run.job.as_str()).collect();
    assert_eq!(
        names,
        [
            "capacity",
            "cleanup",
            "rollup_daily",
            "rollup_hourly",
            "rollup_minute"
        ]
    );
    // Without capacity reports the capacity job has nothing to do.
    assert!(runs.iter().all(|r| {
        let ok = ["succeeded", "nothing_to_do"].contains(&r.last_run.outcome.as_str());
        ok && r.last_run.runner == runner
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_clock_drives_the_chain_and_folds_in_late_data() {
    let t = TestDb::sqlite().await;
    let start = ts("2026-06-15T09:59:30Z");
    let clock = Arc::new(ManualClock::new(start));
    let window = (ts("2026-06-14T20:00:00Z"), ts("2026-06-15T09:59:00Z"));
    let mut all = records(1, "first", 30, window.0, window.1);
    ingest(&t.db, all.clone(), clock.now()).await;

    let bg = spawn_background(t.db.clone(), &clock, "solo", Tasks::Scheduler);
    let mut ticks = bg.ticks().unwrap();

    // Fresh database: nothing ran before, so every job runs at start-up.
    let first = wait_tick(&mut ticks, start).await;
    for job in [
        JobName::MinuteRollup,
        JobName::HourlyRollup,
        JobName::DailyRollup,
    ] {
        assert!(ran(outcome_of(&first, job)), "{job}: {first:?}");
    }
    // Cleanup runs in its own loop, due at start-up too.
    let mut maintenance = bg.maintenance_ticks().unwrap();
    let first_cleanup = wait_tick(&mut maintenance, start).await;
    assert_eq!(
        outcome_of(&first_cleanup, JobName::Cleanup),
        Some(&JobOutcome::NothingToDo)
    );
    assert_eq!(outcome_of(&first, JobName::Cleanup), None);

    // A late record for yesterday, then the 10:00 tick: every level is due
    // and takes it in, in order.
    let late = records_in(2, "late", 1, "2026-06-14T03:00:00Z", "2026-06-14T03:30:00Z");
    ingest_into(&t.db, &mut all, late, clock.now()).await;
    let tick = tick_at(&clock, &mut ticks, "2026-06-15T10:00:00Z").await;
    let jobs: Vec<JobName> = tick.outcomes.iter().map(|(j, _)| *j).collect();
    assert_eq!(
        jobs,
        [
            JobName::Capacity,
            JobName::MinuteRollup,
            JobName::HourlyRollup,
            JobName::DailyRollup
        ],
        "in order: sessions counted up to now before the minute rollup"
    );
    // No worker reports capacity here.
    assert_eq!(tick.outcomes[0].1, JobOutcome::NothingToDo);
    assert!(
        tick.outcomes[1..].iter().all(|(_, o)| ran(Some(o))),
        "{tick:?}"
    );
    let range = TimeRange::new(ts("2026-06-14T00:00:00Z"), ts("2026-06-16T00:00:00Z")).unwrap();
    assert_eq!(
        snapshot(&t.db).await,
        reference(Backend::Sqlite, all.clone(), range, clock.now()).await
    );

    // Another late record at 10:00:30: minute rows have it after the 10:01
    // tick, hourly after 10:05, daily after 11:00 (within the promised 2 / 7 /
    // 65 minutes, docs/ROLLUPS.md#freshness).
    let late = records_in(
        3,
        "later",
        1,
        "2026-06-14T05:00:00Z",
        "2026-06-14T05:20:00Z",
    );
    ingest_into(&t.db, &mut all, late, clock.now()).await;
    let tick = tick_at(&clock, &mut ticks, "2026-06-15T10:01:00Z").await;
    let due: Vec<JobName> = tick.outcomes.iter().map(|(j, _)| *j).collect();
    assert_eq!(
        due,
        [JobName::Capacity, JobName::MinuteRollup],
        "only the per-minute jobs are due: {tick:?}"
    );
    assert!(ran(outcome_of(&tick, JobName::MinuteRollup)));
    let st = status::rollup_status(&t.db, clock.now()).await.unwrap();
    assert!(
        st.iter()
            .any(|s| s.level == Granularity::Hourly && s.pending_ranges > 0),
        "{st:?}"
    );

    let tick = tick_at(&clock, &mut ticks, "2026-06-15T10:05:00Z").await;
    assert!(ran(outcome_of(&tick, JobName::HourlyRollup)), "{tick:?}");
    assert!(
        outcome_of(&tick, JobName::DailyRollup).is_none(),
        "daily is hourly: {tick:?}"
    );

    let tick = tick_at(&clock, &mut ticks, "2026-06-15T11:00:00Z").await;
    assert!(ran(outcome_of(&tick, JobName::DailyRollup)), "{tick:?}");
    assert_eq!(
        snapshot(&t.db).await,
        reference(Backend::Sqlite, all, range, clock.now()).await
    );
    let st = status::rollup_status(&t.db, clock.now()).await.unwrap();
    assert!(st.iter().all(|s| s.pending_ranges == 0), "{st:?}");

    assert_every_job_last_succeeded(&t.db, "solo").await;

    bg.shutdown(Duration::from_secs(10)).await;
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_back_off_and_never_stop_the_loop() {
    let (t, clock) = db_and_clock(Backend::Sqlite, "2026-06-15T10:00:00Z").await;
    let recs = records_in(4, "r", 10, "2026-06-15T08:00:00Z", "2026-06-15T09:59:00Z");
    ingest(&t.db, recs, clock.now()).await;
    let ctx = context(t.db.clone(), clock.clone(), "retrier");
    let intervals = Intervals::from_settings(&settings().worker);
    let mut sched = Scheduler::new(ctx.clone(), intervals.rollups());
    sched.load_history().await;
    let (_trigger, stop) = gpu_usage_core::process::channel();

    // The daily table is gone: daily fails, the others still run.
    t.db.execute_unprepared("ALTER TABLE gpu_usage_statistics_daily RENAME TO daily_away")
        .await
        .unwrap();
    let tick = sched.run_due(&stop).await;
    assert!(ran(outcome_of(&tick, JobName::MinuteRollup)), "{tick:?}");
    assert!(ran(outcome_of(&tick, JobName::HourlyRollup)), "{tick:?}");
    assert!(
        matches!(
            outcome_of(&tick, JobName::DailyRollup),
            Some(JobOutcome::Failed { .. })
        ),
        "{tick:?}"
    );
    let daily = |s: &Scheduler| {
        s.slots()
            .iter()
            .find(|s| s.job == JobName::DailyRollup)
            .unwrap()
            .clone()
    };
    let first_retry = daily(&sched).next_due;
    assert_eq!(daily(&sched).failures, 1);
    assert!(
        (first_retry - clock.now()).num_milliseconds().abs() - 5_000 < 1_000,
        "retry after ~5 s"
    );

    clock.set(first_retry);
    let tick = sched.run_due(&stop).await;
    assert_eq!(tick.outcomes.len(), 1, "only the retry is due: {tick:?}");
    assert_eq!(daily(&sched).failures, 2);
    let second_retry = daily(&sched).next_due;
    assert!(
        (second_retry - clock.now()).num_milliseconds() >= 9_900,
        "back-off doubles"
    );
    let failed = job_runs::recent(&t.db, Some(JobName::DailyRollup), 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 2);
    assert!(
        failed
            .iter()
            .all(|r| r.outcome == RunOutcome::Failed.as_str() && r.detail.is_some())
    );

    // Repaired: the next retry succeeds and the regular schedule resumes.
    t.db.execute_unprepared("ALTER TABLE daily_away RENAME TO gpu_usage_statistics_daily")
        .await
        .unwrap();
    clock.set(second_retry);
    let tick = sched.run_due(&stop).await;
    assert!(ran(outcome_of(&tick, JobName::DailyRollup)), "{tick:?}");
    assert_eq!(daily(&sched).failures, 0);
    assert_eq!(daily(&sched).next_due, ts("2026-06-15T11:00:00Z"));
    assert!(
        statistics_daily::Entity::find()
            .one(&t.db)
            .await
            .unwrap()
            .is_some()
    );
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_skips_and_runs_are_recorded() {
    let (t, clock) = db_and_clock(Backend::Sqlite, "2026-06-15T10:00:00Z").await;
    let ctx = context(t.db.clone(), clock.clone(), "r1");
    let held = locks::try_lock(&t.db, JobName::MinuteRollup)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        run_job(&ctx, JobName::MinuteRollup).await,
        JobOutcome::Skipped
    );
    assert!(
        job_runs::recent(&t.db, None, 10).await.unwrap().is_empty(),
        "a skip is not an execution"
    );
    assert_eq!(ctx.metrics.job_runs(JobName::MinuteRollup, "skipped"), 1);
    held.release().await.unwrap();

    let recs = records_in(5, "r", 10, "2026-06-15T09:00:00Z", "2026-06-15T09:59:00Z");
    ingest(&t.db, recs, clock.now()).await;
    let JobOutcome::Ran { rows_written, .. } = run_job(&ctx, JobName::MinuteRollup).await else {
        panic!("expected a run");
    };
    assert!(rows_written > 0);
    assert_eq!(
        run_job(&ctx, JobName::MinuteRollup).await,
        JobOutcome::NothingToDo
    );
    let runs = job_runs::all_of(&t.db, JobName::MinuteRollup)
        .await
        .unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].rows_written, rows_written as i64);
    assert!(
        runs.iter()
            .all(|r| r.outcome == "succeeded" && r.finished_at.is_some() && r.runner == "r1")
    );
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes_and_metrics() {
    let (t, clock) = db_and_clock(Backend::Sqlite, "2026-06-15T10:00:00Z").await;
    let ctx = context(t.db.clone(), clock.clone(), "http");
    let recs = records_in(6, "r", 5, "2026-06-15T09:00:00Z", "2026-06-15T09:59:00Z");
    ingest(&t.db, recs, clock.now()).await;
    run_job(&ctx, JobName::MinuteRollup).await;
    run_job(&ctx, JobName::MinuteRollup).await;

    let state = gpu_usage_worker::http::AppState {
        db: t.db.clone(),
        metrics: ctx.metrics.clone(),
        clock: clock.clone(),
        redis: None,
    };
    let (server, addrs) = gpu_usage_worker::http::start("127.0.0.1", 0, state).unwrap();
    let handle = server.handle();
    let task = tokio::spawn(server);
    let base = format!("http://{}", addrs[0]);
    let client = reqwest::Client::new();

    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    gpu_usage_testing::assert_contains_all(
        &text,
        &[
            "gpu_usage_job_runs_total{job_name=\"rollup_minute\",outcome=\"succeeded\"} 1\n",
            "gpu_usage_job_runs_total{job_name=\"rollup_minute\",outcome=\"nothing_to_do\"} 1\n",
            "gpu_usage_job_duration_seconds_count{job_name=\"rollup_minute\"} 2\n",
            "# TYPE gpu_usage_rollup_lag_seconds gauge\n",
            "gpu_usage_rollup_lag_seconds{level=\"minute\"} ",
            "gpu_usage_rollup_pending_ranges{level=\"minute\"} 0\n",
            "gpu_usage_rollup_status_up 1\n",
        ],
    );
    gpu_usage_testing::assert_exposition_well_formed(&text);
    assert!(
        !text.contains("gpu_usage_rollup_pending_ranges{level=\"hourly\"} 0\n"),
        "the minute run queued hours:\n{text}"
    );

    // The database gone: not ready, and the scrape says so instead of failing.
    t.db.close_by_ref().await.unwrap();
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("gpu_usage_rollup_status_up 0\n"), "{text}");

    handle.stop(true).await;
    task.await.unwrap().unwrap();
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_returns_promptly_after_the_shutdown_future_resolves() {
    let (t, clock) = db_and_clock(Backend::Sqlite, "2026-06-15T10:00:10Z").await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = BackgroundOptions {
        clock: clock.clone(),
        runner: Some("stopper".into()),
        ..BackgroundOptions::default()
    };
    let db = t.db.clone();
    let worker = tokio::spawn(gpu_usage_worker::run_with(
        settings(),
        db,
        async move {
            let _ = rx.await;
        },
        opts,
    ));

    // Wait for the start-up pass to be recorded; the scheduler then sleeps
    // until 10:01 (50 s away on this clock) and the poller for 5 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = job_runs::recent(&t.db, None, 10).await.unwrap();
        if runs.len() >= 4 && runs.iter().all(|r| r.finished_at.is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "start-up pass did not finish: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("run returned")
        .unwrap()
        .unwrap();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");

    // Nothing left running or locked.
    let runs = job_runs::recent(&t.db, None, 100).await.unwrap();
    assert!(runs.iter().all(|r| r.outcome != "running"), "{runs:?}");
    for job in JobName::ALL {
        assert!(
            locks::try_lock(&t.db, job).await.unwrap().is_some(),
            "{job} still locked"
        );
    }
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_poller_runs_queued_jobs() {
    let (t, clock) = db_and_clock(Backend::Sqlite, "2026-06-15T10:00:00Z").await;
    let recs = records_in(7, "bf", 20, "2026-06-13T22:00:00Z", "2026-06-15T09:00:00Z");
    ingest(&t.db, recs.clone(), clock.now()).await;
    let range = TimeRange::new(ts("2026-06-13T00:00:00Z"), ts("2026-06-16T00:00:00Z")).unwrap();
    let job = gpu_usage_core::backfill::create(
        &t.db,
        range,
        gpu_usage_core::types::Levels::All,
        clock.now(),
    )
    .await
    .unwrap();

    let bg = spawn_background(t.db.clone(), &clock, "poller", Tasks::BackfillPoller);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = gpu_usage_core::backfill::get(&t.db, job.id).await.unwrap();
        if j.is_finished() {
            assert_eq!(
                j.status,
                gpu_usage_core::backfill::BackfillStatus::Succeeded
            );
            assert_eq!(j.chunks_done, 3);
            break;
        }
        assert!(Instant::now() < deadline, "backfill not done: {j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = bg.context().metrics.render();
    assert!(
        text.contains("gpu_usage_backfill_chunks_total 3\n"),
        "{text}"
    );
    bg.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        snapshot(&t.db).await,
        reference(Backend::Sqlite, recs, range, clock.now()).await
    );
    t.cleanup().await;
}
