//! Tracked backfills on SQLite and MariaDB: queued, run chunk by chunk,
//! progress recorded, rows equal to a direct recompute, resumed after an
//! interruption, failed with the error, polite to busy rollup locks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::backfill::{self, BackfillJob, BackfillStatus, RunOptions};
use gpu_usage_core::entities::backfill_job;
use gpu_usage_core::ingest;
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::locks;
use gpu_usage_core::record::{InvalidRecord, Record};
use gpu_usage_core::types::{Granularity, Levels, TimeRange};
use gpu_usage_testing::{TestDb, job_env, recompute_every_level, stripped_rows, wire};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
};

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    ts("2026-06-12T18:00:00Z")
}

fn range() -> TimeRange {
    TimeRange::new(ts("2026-06-10T00:00:00Z"), ts("2026-06-13T00:00:00Z")).unwrap()
}

/// Deterministic records from 2026-06-10 20:00 over about a day and a
/// half: tasks crossing minutes, hours and midnight, zero-length and CPU
/// tasks, FAILED ones, NULL and empty spec names.
fn records() -> Vec<Result<Record, InvalidRecord>> {
    let base = ts("2026-06-10T20:00:00Z");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    (0..40)
        .map(|i| {
            let start = base + TimeDelta::milliseconds((next() % (36 * 3_600_000)) as i64);
            let len = TimeDelta::milliseconds(if i % 9 == 0 {
                0
            } else {
                (next() % (3 * 3_600_000)) as i64
            });
            wire(serde_json::json!({
                "task_id": format!("task-{i}"),
                "endpoint": (["alpha", "beta", "gämma \"q\""][i % 3]),
                "spec_name": ([Some("s1"), None, Some(""), Some("s2")][i % 4]),
                "gpu_count": (next() % 5) as i64,
                "started_at": start.to_rfc3339(),
                "completed_at": (start + len).to_rfc3339(),
                "status": if i % 7 == 0 { "FAILED" } else { "completed" },
            }))
        })
        .collect()
}

async fn seed(db: &DatabaseConnection) {
    let report = ingest::ingest(db, records(), now(), &EngineConfig::default())
        .await
        .unwrap();
    assert_eq!(report.inserted, 40);
}

/// Every statistics row, without ids and write times, in key order.
async fn snapshot(db: &DatabaseConnection) -> Vec<(Granularity, NaiveDate, String)> {
    let mut out: Vec<_> = stripped_rows(db)
        .await
        .into_iter()
        .map(|r| (r.level, r.day, format!("{} {}", r.bucket, r.row)))
        .collect();
    out.sort();
    out
}

/// The same records on a fresh database of the same kind, recomputed
/// directly over the whole range.
async fn reference(t: &TestDb) -> Vec<(Granularity, NaiveDate, String)> {
    let r = TestDb::new(t.backend).await;
    seed(&r.db).await;
    recompute_every_level(&r.db, range(), now()).await;
    let rows = snapshot(&r.db).await;
    r.cleanup().await;
    rows
}

/// Queues a backfill of `range` at `now()` (or finds the one queued).
async fn create(db: &DatabaseConnection, range: TimeRange, levels: Levels) -> BackfillJob {
    backfill::create(db, range, levels, now()).await.unwrap()
}

/// Claims and runs the oldest queued backfill, as a runner at `now()`.
async fn run_next_with(db: &DatabaseConnection, opts: &RunOptions<'_>) -> Option<BackfillJob> {
    backfill::run_next(&job_env(db, now()), &EngineConfig::default(), opts)
        .await
        .unwrap()
}

async fn run_next(db: &DatabaseConnection) -> Option<BackfillJob> {
    run_next_with(db, &RunOptions::default()).await
}

async fn runs_to_completion_like_a_direct_recompute(t: TestDb) {
    let db = &t.db;
    seed(db).await;
    let job = create(db, range(), Levels::All).await;
    assert_eq!(job.status, BackfillStatus::Pending);
    assert_eq!((job.chunks_total, job.chunks_done), (3, 0));
    assert_eq!(job.next_chunk_start, range().start());
    assert_eq!(job.granularity, Levels::All);
    assert_eq!(serde_json::to_value(&job).unwrap()["granularity"], "all");

    // Repeats and covered sub-ranges return the queued job; other
    // granularities and uncovered ranges are new jobs.
    assert_eq!(create(db, range(), Levels::All).await.id, job.id);
    let inner = TimeRange::new(ts("2026-06-11T03:00:00Z"), ts("2026-06-11T04:00:00Z")).unwrap();
    assert_eq!(create(db, inner, Levels::All).await.id, job.id);
    let hourly_only = create(db, inner, Levels::Hourly).await;
    assert_ne!(hourly_only.id, job.id);
    assert_eq!(hourly_only.chunks_total, 1);

    let seen = std::sync::Mutex::new(Vec::new());
    let on_progress =
        |j: &backfill::BackfillJob| seen.lock().unwrap().push((j.chunks_done, j.status));
    let opts = RunOptions {
        on_progress: &on_progress,
        ..RunOptions::default()
    };
    let done = run_next_with(db, &opts).await.unwrap();
    assert_eq!(done.id, job.id, "oldest first");
    assert_eq!(done.status, BackfillStatus::Succeeded);
    assert_eq!((done.chunks_done, done.chunks_total), (3, 3));
    assert_eq!(done.next_chunk_start, range().end());
    assert_eq!(done.progress, 1.0);
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    assert_eq!(done.error, None);
    let done_counts: Vec<i32> = seen.lock().unwrap().iter().map(|(d, _)| *d).collect();
    assert_eq!(done_counts, [0, 1, 2, 3, 3], "progress after every chunk");

    let stored = backfill::get(db, job.id).await.unwrap();
    assert_eq!(stored.status, BackfillStatus::Succeeded);
    assert_eq!(
        (stored.chunks_done, stored.next_chunk_start),
        (3, range().end())
    );

    let rows = snapshot(db).await;
    assert!(rows.iter().any(|r| r.0 == Granularity::Daily));
    assert_eq!(
        rows,
        reference(&t).await,
        "backfilled rows equal a direct recompute"
    );

    // The hourly-only job is next; then nothing is left.
    let next = run_next(db).await.unwrap();
    assert_eq!(
        (next.id, next.status),
        (hourly_only.id, BackfillStatus::Succeeded)
    );
    assert!(run_next(db).await.is_none());
    assert_eq!(backfill::list(db, 10).await.unwrap().len(), 2);
    assert!(matches!(
        backfill::get(db, 999).await,
        Err(gpu_usage_core::DomainError::NotFound { .. })
    ));
    t.cleanup().await;
}

async fn resumes_an_interrupted_job_where_it_stopped(t: TestDb) {
    let db = &t.db;
    seed(db).await;
    // What ingest queued would be folded in by the backfill too (whoever
    // holds a level's lock takes its pending work); drop it so only the
    // backfill's own chunks write rows here.
    gpu_usage_core::entities::rollup_pending::Entity::delete_many()
        .exec(db)
        .await
        .unwrap();
    let job = create(db, range(), Levels::All).await;
    // As left by a runner that died after the first chunk.
    let mut model = backfill_job::Entity::find_by_id(job.id)
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    model.status = Set(BackfillStatus::Running);
    model.next_chunk_start = Set(ts("2026-06-11T00:00:00Z"));
    model.chunks_done = Set(1);
    model.started_at = Set(Some(now() - TimeDelta::minutes(5)));
    model.update(db).await.unwrap();

    let done = run_next(db).await.unwrap();
    assert_eq!(done.status, BackfillStatus::Succeeded);
    assert_eq!((done.chunks_done, done.chunks_total), (3, 3));
    assert_eq!(
        done.started_at,
        Some(now() - TimeDelta::minutes(5)),
        "the original start is kept"
    );

    // Only the chunks from the resume point were rebuilt, and those equal
    // the reference.
    let resume_day = NaiveDate::from_ymd_opt(2026, 6, 11).unwrap();
    let rows = snapshot(db).await;
    assert!(
        rows.iter().all(|r| r.1 >= resume_day),
        "nothing before the resume point was recomputed"
    );
    let expected: Vec<_> = reference(&t)
        .await
        .into_iter()
        .filter(|r| r.1 >= resume_day)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(rows, expected);
    t.cleanup().await;
}

async fn waits_for_busy_locks_and_fails_with_the_error(t: TestDb) {
    let db = &t.db;
    seed(db).await;
    let job = create(db, range(), Levels::All).await;

    // Another runner executes backfills: nothing is claimed.
    let backfill_lock = locks::try_lock(db, JobName::Backfill)
        .await
        .unwrap()
        .unwrap();
    assert!(run_next(db).await.is_none());
    backfill_lock.release().await.unwrap();

    // A rollup lock stays busy past the wait: the job yields, still running
    // at its resume point, and completes once the lock is free.
    let minute_lock = locks::try_lock(db, JobName::MinuteRollup)
        .await
        .unwrap()
        .unwrap();
    let opts = RunOptions {
        lock_wait: Duration::from_millis(300),
        ..RunOptions::default()
    };
    let yielded = run_next_with(db, &opts).await.unwrap();
    assert_eq!(
        (yielded.status, yielded.chunks_done),
        (BackfillStatus::Running, 0)
    );
    minute_lock.release().await.unwrap();
    let done = run_next(db).await.unwrap();
    assert_eq!(
        (done.id, done.status, done.chunks_done),
        (job.id, BackfillStatus::Succeeded, 3)
    );

    // A chunk that fails marks the job failed with the error.
    let again = create(db, range(), Levels::Hourly).await;
    db.execute_unprepared("DROP TABLE gpu_usage_statistics_hourly")
        .await
        .unwrap();
    let failed = run_next(db).await.unwrap();
    assert_eq!(
        (failed.id, failed.status, failed.chunks_done),
        (again.id, BackfillStatus::Failed, 0)
    );
    let error = failed.error.clone().unwrap();
    assert!(error.contains("hourly"), "{error}");
    assert!(failed.finished_at.is_some());
    assert_eq!(
        backfill::get(db, again.id).await.unwrap().error,
        Some(error)
    );
    assert!(run_next(db).await.is_none(), "failed jobs are not retried");
    t.cleanup().await;
}

async fn retained_range_spans_the_retained_records(t: TestDb) {
    let db = &t.db;
    let settings = EngineConfig::default().retention;
    assert_eq!(
        backfill::retained_range(db, now(), &settings)
            .await
            .unwrap(),
        None
    );
    seed(db).await;
    let r = backfill::retained_range(db, now(), &settings)
        .await
        .unwrap()
        .unwrap();
    let first = records()
        .iter()
        .map(|r| r.as_ref().unwrap().started_at)
        .min()
        .unwrap();
    assert_eq!(r.start(), first);
    assert!(r.end() >= now());
    t.cleanup().await;
}

gpu_usage_testing::dual_backend_tests! {
    runs_to_completion_like_a_direct_recompute => runs_to_completion_like_a_direct_recompute,
    resumes_an_interrupted_job_where_it_stopped => resumes_an_interrupted_job_where_it_stopped,
    waits_for_busy_locks_and_fails_with_the_error => waits_for_busy_locks_and_fails_with_the_error,
    retained_range_spans_the_retained_records => retained_range_spans_the_retained_records,
}
