//! Capacity, scripted: heartbeats keep a session open and the current
//! buckets grow live; silence ends it at the last heartbeat plus one
//! interval, whenever the job notices; a changed offer splits it; touching
//! intervals never add up at one instant; sessions are retained like
//! records and ingest refuses what the rollups could no longer rebuild;
//! concurrent reports of one worker never leave two open sessions. Every
//! rollup is run twice and its rows compared with the reference model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gpu_usage_core::DomainError;
use gpu_usage_core::capacity::{self, Heartbeat, HeartbeatJson};
use gpu_usage_core::entities::worker_session;
use gpu_usage_core::fields::Invalid;
use gpu_usage_core::retention;
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use support::*;

fn t0() -> i64 {
    ms("2026-03-10T10:00:00Z")
}

fn beat(worker: &str, gpus: i64, at_ms: i64) -> Result<Heartbeat, Invalid> {
    let j: HeartbeatJson = serde_json::from_value(serde_json::json!({
        "worker_id": worker, "endpoint": "ep", "spec_name": "A100",
        "gpu_count": gpus, "at": at(at_ms).to_rfc3339(),
    }))
    .unwrap();
    Heartbeat::try_from(j)
}

async fn heartbeat(db: &DatabaseConnection, worker: &str, gpus: i64, at_ms: i64) {
    capacity::apply_heartbeats(db, vec![beat(worker, gpus, at_ms)], at(at_ms), &cfg())
        .await
        .unwrap();
}

/// The capacity job, then the rollups twice, at `now`.
async fn tick(db: &DatabaseConnection, now: i64) -> Levels {
    capacity::advance(db, at(now), &cfg()).await.unwrap();
    run_jobs_twice(db, now, &cfg()).await.unwrap()
}

async fn stored(db: &DatabaseConnection) -> Vec<worker_session::Model> {
    worker_session::Entity::find()
        .order_by_asc(worker_session::Column::WorkerId)
        .order_by_asc(worker_session::Column::StartedAt)
        .all(db)
        .await
        .unwrap()
}

fn global_minute(rows: &Levels, t: i64) -> Option<Row> {
    rows.minute
        .iter()
        .find(|r| r.bucket == at(t) && r.scope_value.is_none())
        .cloned()
}

/// A worker heartbeating every 30 s from T0: each tick the current
/// minute has grown by the seconds since it started; after the last
/// heartbeat (T0 + 10 min) the session counts 30 s more, stays open for
/// 3 intervals, then is ended at T0 + 10:30.
async fn heartbeats_and_silence(db: &DatabaseConnection) {
    let rec = Rec::new("t", "ep", Some("A100"), 1, t0(), t0() + 4 * MINUTE, false);
    ingest(db, std::slice::from_ref(&rec), t0() + 4 * MINUTE, &cfg())
        .await
        .unwrap();
    for i in 0..=20 {
        heartbeat(db, "w", 2, t0() + i * 30 * SECOND).await;
        if i == 9 {
            // 4:30 into the session: minute 4 holds 30 s of 2 GPUs.
            let rows = tick(db, t0() + 270 * SECOND).await;
            let m4 = global_minute(&rows, t0() + 4 * MINUTE).unwrap();
            assert_eq!(m4.avail_ms, 2 * 30 * SECOND, "live growth: {m4:?}");
            assert_eq!(
                global_minute(&rows, t0() + 3 * MINUTE).unwrap().util_basis,
                Some(5000)
            );
        }
    }
    let last = t0() + 10 * MINUTE;
    let rows = tick(db, last + MINUTE).await;
    let s = stored(db).await;
    assert_eq!(
        (s.len(), s[0].ended_at),
        (1, None),
        "still open after 60 s of silence"
    );
    assert_eq!(s[0].counted_until, at(last + 30 * SECOND));
    assert_eq!(
        global_minute(&rows, last).unwrap().avail_ms,
        2 * 30 * SECOND
    );
    let rows = tick(db, last + 2 * MINUTE).await;
    let s = stored(db).await;
    assert_eq!(
        s[0].ended_at,
        Some(at(last + 30 * SECOND)),
        "ended after 120 s"
    );
    let sessions = [Ses::new(
        "w",
        "ep",
        Some("A100"),
        2,
        t0(),
        last + 30 * SECOND,
    )];
    check(
        diff_levels(&rows.stripped(), &model_with(&[rec], &sessions)),
        "rows",
    )
    .unwrap();
    // Late heartbeats from inside the ended session change nothing.
    heartbeat(db, "w", 2, last - MINUTE).await;
    assert_eq!(stored(db).await, s);
}

/// A heartbeat with another GPU count ends the session there and opens a
/// new one; older heartbeats are ignored.
async fn a_changed_offer_splits(db: &DatabaseConnection) {
    let report = capacity::apply_heartbeats(
        db,
        vec![
            beat("w", 1, t0()),
            beat("w", 1, t0() + 30 * SECOND),
            beat("w", 4, t0() + 60 * SECOND),
            beat("w", 4, t0() + 90 * SECOND),
            beat("w", 1, t0() + 45 * SECOND),
        ],
        at(t0() + 90 * SECOND),
        &cfg(),
    )
    .await
    .unwrap();
    // Applied in time order: open (0 s), extend (30 s, 45 s), split
    // (60 s), extend (90 s).
    assert_eq!(
        (
            report.inserted,
            report.updated,
            report.split,
            report.duplicates
        ),
        (2, 3, 1, 0),
        "{report:?}"
    );
    let s = stored(db).await;
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].gpu_count, s[0].ended_at),
        (1, Some(at(t0() + MINUTE)))
    );
    assert_eq!((s[1].gpu_count, s[1].started_at), (4, at(t0() + MINUTE)));
    let again = capacity::apply_heartbeats(
        db,
        vec![beat("w", 1, t0() + 45 * SECOND)],
        at(t0() + 90 * SECOND),
        &cfg(),
    )
    .await
    .unwrap();
    assert_eq!(again.duplicates, 1, "{again:?}");
    let now = t0() + 2 * MINUTE;
    let rows = tick(db, now).await;
    let sessions = [
        Ses::new("w", "ep", Some("A100"), 1, t0(), t0() + MINUTE),
        Ses::new("w", "ep", Some("A100"), 4, t0() + MINUTE, t0() + 2 * MINUTE),
    ];
    check(
        diff_levels(&rows.stripped(), &model_with(&[], &sessions)),
        "rows",
    )
    .unwrap();
}

/// Two tasks and two sessions that touch at 10:30 never count together:
/// intervals are half-open.
async fn touching_intervals(db: &DatabaseConnection) {
    let half = t0() + 30 * MINUTE;
    let recs = [
        Rec::new("a", "ep", Some("A100"), 2, t0(), half, false),
        Rec::new("b", "ep", Some("A100"), 3, half, t0() + HOUR, false),
    ];
    ingest(db, &recs, t0() + 2 * HOUR, &cfg()).await.unwrap();
    let sessions = [
        Ses::new("w1", "ep", Some("A100"), 2, t0(), half),
        Ses::new("w2", "ep", Some("A100"), 4, half, t0() + HOUR),
    ];
    let items = sessions.iter().map(Ses::input).collect();
    capacity::store_sessions(db, items, at(t0() + 2 * HOUR), &cfg())
        .await
        .unwrap();
    let rows = run_jobs_twice(db, t0() + 2 * HOUR, &cfg()).await.unwrap();
    let hour = rows
        .hourly
        .iter()
        .find(|r| r.scope_value.is_none())
        .unwrap();
    assert_eq!((hour.peak_in_use, hour.peak_available), (3, 4));
    let m = global_minute(&rows, half).unwrap();
    assert_eq!((m.peak_in_use, m.peak_available), (3, 4));
    check(
        diff_levels(&rows.stripped(), &model_with(&recs, &sessions)),
        "rows",
    )
    .unwrap();
}

/// Silence ends a session at the last heartbeat plus one interval whether
/// the job ran during the silence or a late heartbeat came first.
async fn job_timing_does_not_matter(db: &DatabaseConnection) {
    for i in 0..4 {
        heartbeat(db, "a", 1, t0() + i * 30 * SECOND).await;
        heartbeat(db, "b", 1, t0() + i * 30 * SECOND).await;
    }
    // "a" is looked at by the job during its silence; "b" is not.
    capacity::advance(db, at(t0() + 5 * MINUTE), &cfg())
        .await
        .unwrap();
    let late = t0() + 10 * MINUTE;
    let beats = vec![beat("a", 1, late), beat("b", 1, late)];
    capacity::apply_heartbeats(db, beats, at(late), &cfg())
        .await
        .unwrap();
    let s = stored(db).await;
    let shape = |w: &str| {
        s.iter()
            .filter(|x| x.worker_id == w)
            .map(|x| (x.started_at, x.ended_at))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape("a"), shape("b"));
    assert_eq!(shape("a")[0], (at(t0()), Some(at(t0() + 2 * MINUTE))));
    assert_eq!(shape("a")[1], (at(late), None));
}

/// Cleanup deletes sessions ended before the records' cutoff and keeps
/// open ones; ingest refuses sessions ended before the retention.
async fn retained_like_records(db: &DatabaseConnection) {
    let now = t0() + 100 * DAY;
    let old = [Ses::new("old", "ep", None, 1, t0(), t0() + HOUR)];
    let items = old.iter().map(Ses::input).collect();
    capacity::store_sessions(db, items, at(t0() + 2 * HOUR), &cfg())
        .await
        .unwrap();
    heartbeat(db, "open", 1, t0()).await;
    // Keep "open" alive up to now, as a worker would.
    capacity::apply_heartbeats(db, vec![beat("open", 1, now)], at(now), &cfg())
        .await
        .unwrap();
    let report = retention::cleanup(db, at(now), &cfg().retention).await;
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!(
        report.table(retention::SESSIONS_TABLE).unwrap().deleted,
        2,
        "{}",
        report.summary()
    );
    let left = stored(db).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (left[0].worker_id.as_str(), left[0].ended_at),
        ("open", None)
    );
    let refused =
        capacity::store_sessions(db, old.iter().map(Ses::input).collect(), at(now), &cfg()).await;
    match refused {
        Err(DomainError::InvalidReports {
            what: "sessions",
            problems,
        }) => {
            assert_eq!(problems[0].field, "ended_at");
            assert!(problems[0].message.contains("retention"), "{problems:?}");
        }
        other => panic!("expected the old session refused, got {other:?}"),
    }
}

/// Reports of one worker from several clients at once, with the job
/// running too, leave exactly one open session and no overlap.
async fn concurrent_reports(db: &DatabaseConnection) {
    let mut tasks = Vec::new();
    for client in 0..4i64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10i64 {
                let at_ms = t0() + (i * 4 + client) * 5 * SECOND;
                let r =
                    capacity::apply_heartbeats(&db, vec![beat("w", 2, at_ms)], at(at_ms), &cfg())
                        .await;
                r.unwrap();
                if client == 0 {
                    capacity::advance(&db, at(at_ms), &cfg()).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = stored(db).await;
    assert_eq!(s.len(), 1, "{s:?}");
    // Opened by whichever client's first heartbeat was applied first (an
    // earlier one applied later is older than the session's last_seen).
    assert!(s[0].started_at <= at(t0() + 15 * SECOND), "{s:?}");
    assert_eq!(s[0].ended_at, None);
    assert_eq!(s[0].last_seen, at(t0() + 39 * 5 * SECOND));
}

gpu_usage_testing::guarded_dual_backend_tests! {
    heartbeats_keep_a_session_open_and_silence_ends_it => heartbeats_and_silence,
    a_changed_offer_splits_the_session => a_changed_offer_splits,
    touching_intervals_never_add_up => touching_intervals,
    silence_ends_a_session_whenever_the_job_runs => job_timing_does_not_matter,
    sessions_are_retained_like_records => retained_like_records,
    concurrent_reports_leave_one_open_session => concurrent_reports,
}
