//! Job locks against a real MariaDB (GET_LOCK on a dedicated connection)
//! and the in-process lock of the SQLite mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use gpu_usage_core::jobs::JobName;
use gpu_usage_core::locks::{self, MAX_LOCK_NAME_LEN, lock_name, try_lock};
use gpu_usage_testing::{TestDb, mysql_scalar};
use sea_orm::sqlx;
use sea_orm::{ConnectionTrait, DatabaseConnection};

async fn is_free(db: &DatabaseConnection, name: &str) -> bool {
    mysql_scalar(
        db,
        "SELECT CAST(IS_FREE_LOCK(?) AS SIGNED) AS v",
        vec![name.into()],
    )
    .await
        == Some(1)
}

/// Connection id of the session holding `name`, if any.
async fn holder(db: &DatabaseConnection, name: &str) -> Option<i64> {
    mysql_scalar(
        db,
        "SELECT CAST(IS_USED_LOCK(?) AS SIGNED) AS v",
        vec![name.into()],
    )
    .await
}

async fn wait_until_free(db: &DatabaseConnection, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !is_free(db, name).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lock {name} still held after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn other_pool(t: &TestDb) -> DatabaseConnection {
    gpu_usage_core::db::connect(&t.settings).await.unwrap()
}

/// A MariaDB test database, a second pool on it, and the lock name of
/// `job` there.
async fn mysql_two_pools(job: JobName) -> (TestDb, DatabaseConnection, String) {
    let t = TestDb::mysql().await;
    let b = other_pool(&t).await;
    let name = lock_name(t.database_name().unwrap(), job);
    (t, b, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_exactly_one_contender_wins_and_release_hands_over() {
    let (t, b, name) = mysql_two_pools(JobName::MinuteRollup).await;
    let a = t.db.clone();

    for _ in 0..5 {
        let (la, lb) = tokio::join!(
            try_lock(&a, JobName::MinuteRollup),
            try_lock(&b, JobName::MinuteRollup)
        );
        let (la, lb) = (la.unwrap(), lb.unwrap());
        assert!(
            la.is_some() ^ lb.is_some(),
            "exactly one contender must win"
        );
        let winner = la.or(lb).unwrap();
        assert_eq!(winner.name(), name);
        assert!(holder(&a, &name).await.is_some());
        // The same pool cannot take it again either: another connection.
        assert!(try_lock(&a, JobName::MinuteRollup).await.unwrap().is_none());
        assert!(try_lock(&b, JobName::MinuteRollup).await.unwrap().is_none());
        // Other jobs are independent.
        let cleanup = try_lock(&b, JobName::Cleanup)
            .await
            .unwrap()
            .expect("cleanup lock is free");
        winner.release().await.unwrap();
        assert!(is_free(&a, &name).await, "released");
        cleanup.release().await.unwrap();
    }
    let lb = try_lock(&b, JobName::MinuteRollup)
        .await
        .unwrap()
        .expect("free after release");
    assert!(try_lock(&a, JobName::MinuteRollup).await.unwrap().is_none());
    lb.release().await.unwrap();
    assert!(try_lock(&a, JobName::MinuteRollup).await.unwrap().is_some());

    b.close().await.unwrap();
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_dropped_or_aborted_holder_frees_the_lock() {
    let (t, b, name) = mysql_two_pools(JobName::HourlyRollup).await;

    // Dropped without release: the connection is closed, never pooled.
    let lock = try_lock(&t.db, JobName::HourlyRollup)
        .await
        .unwrap()
        .unwrap();
    drop(lock);
    wait_until_free(&b, &name).await;
    let again = try_lock(&b, JobName::HourlyRollup)
        .await
        .unwrap()
        .expect("taken over");
    again.release().await.unwrap();

    // A task killed while holding it (a worker killed mid-job).
    let db = t.db.clone();
    let task = tokio::spawn(async move {
        let _lock = try_lock(&db, JobName::HourlyRollup).await.unwrap().unwrap();
        std::future::pending::<()>().await;
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while holder(&b, &name).await.is_none() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(try_lock(&b, JobName::HourlyRollup).await.unwrap().is_none());
    task.abort();
    let _ = task.await;
    wait_until_free(&b, &name).await;
    assert!(try_lock(&b, JobName::HourlyRollup).await.unwrap().is_some());

    b.close().await.unwrap();
    t.cleanup().await;
}

/// The lock connection never returns to the pool: after a release (or a
/// drop), no pooled connection holds the lock — `GET_LOCK` is re-entrant
/// per session, so a pooled holder would hand the lock to its next user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_lock_connection_never_returns_to_the_pool() {
    let t = TestDb::mysql().await;
    let name = lock_name(t.database_name().unwrap(), JobName::DailyRollup);
    let pool = t.db.get_mysql_connection_pool();
    let max = t.settings.max_connections as usize;

    for release in [true, false] {
        let lock = try_lock(&t.db, JobName::DailyRollup)
            .await
            .unwrap()
            .unwrap();
        let holder_id = holder(&t.db, &name).await.expect("held");
        if release {
            lock.release().await.unwrap();
        } else {
            drop(lock);
            wait_until_free(&t.db, &name).await;
        }
        // Check out every connection the pool can give at once.
        let mut conns = Vec::new();
        for _ in 0..max {
            conns.push(pool.acquire().await.unwrap());
        }
        for c in &mut conns {
            let id: i64 = sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
                .fetch_one(&mut **c)
                .await
                .unwrap();
            assert_ne!(
                id, holder_id,
                "the lock-holding connection came back to the pool"
            );
            let used: Option<i64> = sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(?) AS SIGNED)")
                .bind(&name)
                .fetch_one(&mut **c)
                .await
                .unwrap();
            assert_eq!(used, None, "a pooled connection holds the lock");
            // Re-entrancy would show here: a pooled holder would get it again.
            let got: Option<i64> = sqlx::query_scalar("SELECT CAST(GET_LOCK(?, 0) AS SIGNED)")
                .bind(&name)
                .fetch_one(&mut **c)
                .await
                .unwrap();
            assert_eq!(got, Some(1));
            let released: Option<i64> =
                sqlx::query_scalar("SELECT CAST(RELEASE_LOCK(?) AS SIGNED)")
                    .bind(&name)
                    .fetch_one(&mut **c)
                    .await
                    .unwrap();
            assert_eq!(released, Some(1));
        }
        drop(conns);
    }
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_two_databases_do_not_block_each_other() {
    let one = TestDb::mysql().await;
    let two = TestDb::mysql().await;
    let l1 = try_lock(&one.db, JobName::Cleanup)
        .await
        .unwrap()
        .expect("first database");
    let l2 = try_lock(&two.db, JobName::Cleanup)
        .await
        .unwrap()
        .expect("second database, same server");
    assert_ne!(l1.name(), l2.name());
    assert!(try_lock(&one.db, JobName::Cleanup).await.unwrap().is_none());
    l1.release().await.unwrap();
    l2.release().await.unwrap();
    one.cleanup().await;
    two.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_lock_with_wait_gets_the_lock_once_released() {
    let t = TestDb::mysql().await;
    let b = other_pool(&t).await;
    let held = try_lock(&t.db, JobName::Backfill).await.unwrap().unwrap();
    assert!(
        locks::lock_with_wait(&b, JobName::Backfill, Duration::from_millis(200))
            .await
            .unwrap()
            .is_none()
    );
    let waiter = tokio::spawn(async move {
        let l = locks::lock_with_wait(&b, JobName::Backfill, Duration::from_secs(10))
            .await
            .unwrap();
        let got = l.is_some();
        if let Some(l) = l {
            l.release().await.unwrap();
        }
        b.close().await.unwrap();
        got
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.release().await.unwrap();
    assert!(waiter.await.unwrap());
    t.cleanup().await;
}

#[test]
fn long_database_names_are_hashed_within_the_limit() {
    let long = format!("gu_{}", "x".repeat(61));
    for job in JobName::ALL {
        let n = lock_name(&long, job);
        assert!(n.len() <= MAX_LOCK_NAME_LEN, "{n}");
        assert!(n.ends_with(job.as_str()));
    }
    assert_ne!(
        lock_name(&long, JobName::Cleanup),
        lock_name(&format!("{long}y"), JobName::Cleanup)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_process_lock() {
    let t = TestDb::sqlite().await;
    let other_file = TestDb::sqlite().await;
    // A second pool on the same file shares the lock.
    let same_file = other_pool(&t).await;

    let l = try_lock(&t.db, JobName::MinuteRollup)
        .await
        .unwrap()
        .expect("free");
    assert!(
        try_lock(&t.db, JobName::MinuteRollup)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        try_lock(&same_file, JobName::MinuteRollup)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        try_lock(&t.db, JobName::HourlyRollup)
            .await
            .unwrap()
            .is_some()
    );
    let o = try_lock(&other_file.db, JobName::MinuteRollup)
        .await
        .unwrap()
        .expect("other file");
    l.release().await.unwrap();
    let again = try_lock(&same_file, JobName::MinuteRollup)
        .await
        .unwrap()
        .expect("released");

    // Dropping frees it too.
    drop(again);
    let (x, y) = tokio::join!(
        try_lock(&t.db, JobName::MinuteRollup),
        try_lock(&same_file, JobName::MinuteRollup)
    );
    assert!(x.unwrap().is_some() ^ y.unwrap().is_some());

    o.release().await.unwrap();
    same_file.close().await.unwrap();
    t.cleanup().await;
    other_file.cleanup().await;
}

/// A job whose lock session dies under it (wait_timeout, a proxy, `KILL`,
/// a failover) stops before its next write and consumes nothing: the
/// pending entries stay for the next holder, which folds them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_lost_lock_stops_the_job_before_it_writes() {
    use gpu_usage_core::EngineConfig;
    use gpu_usage_core::entities::{rollup_pending, statistics_minute};
    use gpu_usage_core::ingest::ingest;
    use gpu_usage_core::jobs::{Acquire, Attempt, JobReport};
    use gpu_usage_core::rollup;
    use gpu_usage_core::types::{Granularity, parse_utc};
    use gpu_usage_testing::{Rec, ms};
    use sea_orm::{EntityTrait, PaginatorTrait};

    let t = TestDb::mysql().await;
    let now = parse_utc("now", "2026-03-01T12:00:00Z").unwrap();
    let cfg = EngineConfig::default();
    let record = Rec::new(
        "t1",
        "ep",
        None,
        2,
        ms("2026-03-01T11:00:00Z"),
        ms("2026-03-01T11:10:00Z"),
        false,
    );
    ingest(&t.db, vec![record.input()], now, &cfg)
        .await
        .unwrap();
    let pending_before = rollup_pending::Entity::find().count(&t.db).await.unwrap();
    assert!(pending_before > 0);

    let killer = other_pool(&t).await;
    let name = lock_name(t.database_name().unwrap(), JobName::MinuteRollup);
    let env = gpu_usage_testing::job_env(&t.db, now);
    let attempt = env
        .run(JobName::MinuteRollup, Acquire::Try, async |lock| {
            let session = holder(&killer, &name)
                .await
                .expect("the job holds its lock");
            killer
                .execute_unprepared(&format!("KILL CONNECTION {session}"))
                .await
                .unwrap();
            let r = rollup::process_pending_guarded(&t.db, lock, Granularity::Minute, now, &cfg)
                .await?;
            Ok(((), JobReport::rows(r.rows_written)))
        })
        .await;
    assert!(
        matches!(
            attempt,
            Attempt::Failed(gpu_usage_core::DomainError::LockLost { .. })
        ),
        "{attempt:?}"
    );
    assert_eq!(
        statistics_minute::Entity::find()
            .count(&t.db)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        rollup_pending::Entity::find().count(&t.db).await.unwrap(),
        pending_before,
        "nothing consumed"
    );
    wait_until_free(&killer, &name).await;

    // The next holder does the work.
    let attempt = env
        .run(JobName::MinuteRollup, Acquire::Try, async |lock| {
            let r = rollup::process_pending_guarded(&t.db, lock, Granularity::Minute, now, &cfg)
                .await?;
            Ok(((), JobReport::rows(r.rows_written)))
        })
        .await;
    assert!(matches!(attempt, Attempt::Done(..)), "{attempt:?}");
    // Ten minutes of GPU time plus the completion minute, global and
    // endpoint scope (no spec).
    assert_eq!(
        statistics_minute::Entity::find()
            .count(&t.db)
            .await
            .unwrap(),
        2 * 11
    );
    killer.close().await.ok();
}

/// A backfill whose chunk loses its rollup lock (the session cut under it)
/// is not failed for good: it stays running, and the next poll redoes the
/// chunk and finishes with the rows of a direct recompute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_backfill_that_loses_a_rollup_lock_resumes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use gpu_usage_core::EngineConfig;
    use gpu_usage_core::backfill::{self, BackfillStatus, RunOptions};
    use gpu_usage_core::ingest::ingest;
    use gpu_usage_core::types::{Levels, TimeRange, parse_utc};
    use gpu_usage_testing::{Rec, job_env, ms, recompute_every_level, snapshot};

    let t = TestDb::mysql().await;
    let now = parse_utc("now", "2026-03-05T12:00:00Z").unwrap();
    let cfg = EngineConfig::default();
    let records: Vec<_> = (0..2_000i64)
        .map(|i| {
            let end = ms("2026-03-01T00:00:00Z") + i * 150_000 + 7_000;
            Rec::new(
                &format!("t{i}"),
                "ep",
                Some("a100"),
                1 + i % 4,
                end - 600_000,
                end,
                i % 9 == 0,
            )
            .input()
        })
        .collect();
    ingest(&t.db, records, now, &cfg).await.unwrap();
    let range = TimeRange::new(
        parse_utc("s", "2026-02-28T00:00:00Z").unwrap(),
        parse_utc("e", "2026-03-05T00:00:00Z").unwrap(),
    )
    .unwrap();
    let job = backfill::create(&t.db, range, Levels::All, now)
        .await
        .unwrap();

    // Cut the minute rollup lock's session whenever a chunk holds it.
    let killer = other_pool(&t).await;
    let name = lock_name(t.database_name().unwrap(), JobName::MinuteRollup);
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU32::new(0));
    let cutter = tokio::spawn({
        let (stop, kills) = (stop.clone(), kills.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                if let Some(session) = holder(&killer, &name).await
                    && killer
                        .execute_unprepared(&format!("KILL CONNECTION {session}"))
                        .await
                        .is_ok()
                {
                    kills.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    let env = job_env(&t.db, now);
    let first = backfill::run_job(&env, job.id, &cfg, &RunOptions::default())
        .await
        .unwrap()
        .expect("the backfill lock is free");
    stop.store(true, Ordering::SeqCst);
    cutter.await.unwrap();
    assert!(kills.load(Ordering::SeqCst) > 0, "no session was cut");
    assert_eq!(first.status, BackfillStatus::Running, "{first:?}");
    assert!(first.chunks_done < first.chunks_total, "{first:?}");

    let done = backfill::run_job(&env, job.id, &cfg, &RunOptions::default())
        .await
        .unwrap()
        .expect("the backfill lock is free");
    assert_eq!(done.status, BackfillStatus::Succeeded, "{done:?}");
    let rebuilt = snapshot(&t.db).await;
    recompute_every_level(&t.db, range, now).await;
    let direct = snapshot(&t.db).await;
    assert_eq!(rebuilt.len(), direct.len());
    assert!(
        rebuilt == direct,
        "the resumed backfill differs from a direct recompute"
    );
    t.cleanup().await;
}
