//! Several workers on one MariaDB database (each with its own pool, as
//! separate processes would have), driven by one explicit clock: no job
//! ever runs in two workers at once, and the statistics equal a single
//! clean recompute. A worker killed in the middle of a rollup frees its
//! lock and another completes the work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use gpu_usage_core::job_runs::{self, JobRun};
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::locks::lock_name;
use gpu_usage_core::status;
use gpu_usage_core::types::TimeRange;
use gpu_usage_testing::{Backend, TestDb, mysql_scalar};
use gpu_usage_worker::jobs::run_job;
use gpu_usage_worker::{Background, Clock, JobOutcome, ManualClock, TickReport};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Runs of one job must form a sequence of disjoint intervals.
fn assert_no_overlap(job: JobName, runs: &[JobRun]) {
    for w in runs.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let a_end = a
            .finished_at
            .unwrap_or_else(|| panic!("{job} run {} never finished: {a:?}", a.id));
        assert!(
            a_end <= b.started_at,
            "{job}: run {} by {} [{} .. {}] overlaps run {} by {} starting {}",
            a.id,
            a.runner,
            a.started_at,
            a_end,
            b.id,
            b.runner,
            b.started_at
        );
    }
}

/// `n` workers, each with its own pool on `t`'s database and the scheduler
/// on `clock`, with their receivers of scheduler passes.
async fn spawn_workers(
    t: &TestDb,
    clock: &Arc<ManualClock>,
    n: usize,
) -> (Vec<Background>, Vec<watch::Receiver<Option<TickReport>>>) {
    let mut workers = Vec::new();
    let mut ticks = Vec::new();
    for i in 1..=n {
        let db = gpu_usage_core::db::connect(&t.settings).await.unwrap();
        let bg = spawn_background(db, clock, &format!("worker-{i}"), Tasks::Scheduler);
        ticks.push(bg.ticks().unwrap());
        workers.push(bg);
    }
    (workers, ticks)
}

/// No job ran twice at once and every run succeeded, and every level is
/// caught up at `now` (the runs listed when not); the runners that ran jobs.
async fn assert_runs_alone_and_well(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
) -> BTreeSet<String> {
    // No overlapping runs per job; every run finished well.
    let mut runners = BTreeSet::new();
    let mut all_ok = true;
    for job in [
        JobName::MinuteRollup,
        JobName::HourlyRollup,
        JobName::DailyRollup,
        JobName::Cleanup,
    ] {
        let runs = job_runs::all_of(db, job).await.unwrap();
        assert!(!runs.is_empty(), "{job} never ran");
        assert_no_overlap(job, &runs);
        all_ok &= runs.iter().all(|r| r.outcome == "succeeded");
        runners.extend(runs.iter().map(|r| r.runner.clone()));
    }
    // Every level caught up, nothing pending.
    let st = status::rollup_status(db, now).await.unwrap();
    let caught_up = st.iter().all(|s| s.pending_ranges == 0);
    if !all_ok || !caught_up {
        for r in job_runs::recent(db, None, 500).await.unwrap().iter().rev() {
            println!(
                "{} {} {} {} {:?} {} {:?}",
                r.id, r.job, r.runner, r.started_at, r.finished_at, r.outcome, r.detail
            );
        }
    }
    assert!(all_ok, "some job runs did not succeed (listed above)");
    assert!(caught_up, "{st:?}");
    runners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_never_run_a_job_twice_at_once_and_converge() {
    let t = TestDb::mysql().await;
    let start = ts("2026-06-15T09:59:30Z");
    let clock = Arc::new(ManualClock::new(start));
    let range = TimeRange::new(ts("2026-06-14T00:00:00Z"), ts("2026-06-16T00:00:00Z")).unwrap();
    let mut all = records_in(
        10,
        "base",
        120,
        "2026-06-14T18:00:00Z",
        "2026-06-15T09:59:00Z",
    );
    ingest(&t.db, all.clone(), clock.now()).await;

    let (workers, mut ticks) = spawn_workers(&t, &clock, 3).await;
    for rx in &mut ticks {
        wait_tick(rx, start).await;
    }

    // Cycles: late records arrive between ticks, for old and recent buckets.
    let cycles = [
        "2026-06-15T10:00:00Z",
        "2026-06-15T10:01:00Z",
        "2026-06-15T10:02:00Z",
        "2026-06-15T10:03:00Z",
        "2026-06-15T10:04:00Z",
        "2026-06-15T10:05:00Z",
        "2026-06-15T10:06:00Z",
        "2026-06-15T10:10:00Z",
        "2026-06-15T11:00:00Z",
    ];
    for (k, at) in cycles.iter().enumerate() {
        let batch = records(
            100 + k as u64,
            &format!("late{k}"),
            12,
            ts("2026-06-14T02:00:00Z"),
            clock.now() - chrono::TimeDelta::seconds(1),
        );
        ingest_into(&t.db, &mut all, batch, clock.now()).await;
        clock.set(ts(at));
        for rx in &mut ticks {
            wait_tick(rx, ts(at)).await;
        }
    }
    for w in workers {
        w.shutdown(Duration::from_secs(20)).await;
    }

    let runners = assert_runs_alone_and_well(&t.db, clock.now()).await;
    let minute_runs = job_runs::all_of(&t.db, JobName::MinuteRollup)
        .await
        .unwrap();
    assert!(
        minute_runs.len() > cycles.len(),
        "the minute job ran every cycle: {}",
        minute_runs.len()
    );
    println!(
        "runners that executed jobs: {runners:?}; minute runs: {}",
        minute_runs.len()
    );

    assert_eq!(
        snapshot(&t.db).await,
        reference(Backend::MySql, all, range, clock.now()).await,
        "statistics equal one clean recompute of the same records"
    );
    t.cleanup().await;
}

/// The thread id of the victim's statement blocked on the minute table,
/// once it is (the victim must not finish first).
async fn blocked_mid_rollup(db: &DatabaseConnection, victim: &mut JoinHandle<JobOutcome>) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // MariaDB lists a transaction in INNODB_TRX only once it has written,
        // so look for the victim's blocked statement in the process list.
        let blocked = mysql_scalar(
            db,
            "SELECT CAST(MIN(ID) AS SIGNED) AS v FROM information_schema.PROCESSLIST \
             WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND COMMAND <> 'Sleep' \
             AND (INFO LIKE 'INSERT INTO `gpu_usage_statistics_minute`%' \
                  OR INFO LIKE 'DELETE FROM `gpu_usage_statistics_minute`%')",
            vec![],
        )
        .await;
        if let Some(id) = blocked {
            return id;
        }
        if victim.is_finished() {
            panic!("the victim finished without blocking: {:?}", victim.await);
        }
        assert!(
            Instant::now() < deadline,
            "the victim never blocked mid-rollup"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until nobody holds `lock`.
async fn wait_until_free(db: &DatabaseConnection, lock: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while mysql_scalar(
        db,
        "SELECT CAST(IS_FREE_LOCK(?) AS SIGNED) AS v",
        vec![lock.into()],
    )
    .await
        != Some(1)
    {
        assert!(
            Instant::now() < deadline,
            "the killed worker's lock was not freed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_rollup_frees_its_lock_and_another_completes() {
    let (t, clock) = db_and_clock(Backend::MySql, "2026-06-15T10:00:30Z").await;
    let all = records_in(20, "k", 60, "2026-06-15T06:00:00Z", "2026-06-15T10:00:00Z");
    ingest(&t.db, all.clone(), clock.now()).await;
    let lock = lock_name(t.database_name().unwrap(), JobName::MinuteRollup);

    // A transaction holding the minute table's gap locks: the victim's
    // rollup will block inside its own write transaction.
    let blocker = HeldLock::on(&t, "gpu_usage_statistics_minute").await;

    let victim_db = gpu_usage_core::db::connect(&t.settings).await.unwrap();
    let victim = context(victim_db, clock.clone(), "victim");
    let mut victim_task =
        tokio::spawn(async move { run_job(&victim, JobName::MinuteRollup).await });

    // Wait until the victim holds the job lock and waits on a row lock in
    // the middle of its rollup.
    let waiting_thread = blocked_mid_rollup(&t.db, &mut victim_task).await;
    let holder = mysql_scalar(
        &t.db,
        "SELECT CAST(IS_USED_LOCK(?) AS SIGNED) AS v",
        vec![lock.clone().into()],
    )
    .await;
    assert!(holder.is_some(), "the victim holds the minute lock");
    let running = job_runs::recent(&t.db, Some(JobName::MinuteRollup), 10)
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(
        (running[0].runner.as_str(), running[0].outcome.as_str()),
        ("victim", "running")
    );

    // Meanwhile a healthy worker skips: the lock is held.
    let survivor = context(t.db.clone(), clock.clone(), "survivor");
    assert_eq!(
        run_job(&survivor, JobName::MinuteRollup).await,
        JobOutcome::Skipped
    );

    // Kill the victim: its task is aborted (the lock connection is dropped
    // with it) and, as for a dead process, its in-flight work connection
    // is cut by the server.
    victim_task.abort();
    assert!(victim_task.await.unwrap_err().is_cancelled());
    t.db.execute_raw(Statement::from_string(
        DbBackend::MySql,
        format!("KILL {waiting_thread}"),
    ))
    .await
    .ok();
    wait_until_free(&t.db, &lock).await;
    blocker.release().await.unwrap();

    // The survivor takes over on its next tick and completes the chain.
    clock.set(ts("2026-06-15T10:01:00Z"));
    run_rollup_chain(&survivor).await;
    let runs = job_runs::all_of(&t.db, JobName::MinuteRollup)
        .await
        .unwrap();
    let seen: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r.runner.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(seen, [("victim", "abandoned"), ("survivor", "succeeded")]);

    let range = TimeRange::new(ts("2026-06-15T00:00:00Z"), ts("2026-06-16T00:00:00Z")).unwrap();
    assert_eq!(
        snapshot(&t.db).await,
        reference(Backend::MySql, all, range, clock.now()).await
    );
    t.cleanup().await;
}
