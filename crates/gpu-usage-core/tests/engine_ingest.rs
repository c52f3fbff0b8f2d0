//! Ingest as the engine's input (issue #3, "Ingest"): the acceptance
//! boundaries (clock skew, record retention, maximum task length, gpu_count
//! range), whole-batch rejection that stores and queues nothing, UTC
//! conversion and millisecond truncation, derived duration_seconds and
//! gpu_hours; and that what is accepted at the boundaries is accounted
//! exactly like the model says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gpu_usage_core::DomainError;
use sea_orm::DatabaseConnection;
use support::*;

const WEEK: i64 = 168 * HOUR;

/// A COMPLETED task on endpoint `ep`, without a spec.
fn plain(id: &str, gpus: i64, start: i64, end: i64) -> Rec {
    Rec::new(id, "ep", None, gpus, start, end, false)
}

/// Records just inside ingest's limits at `now`.
fn accepted_at_the_edges(now: i64) -> Vec<Rec> {
    let skew = Rec::new(
        "skew",
        "ep",
        Some("A100"),
        2,
        now - MINUTE,
        now + 5 * MINUTE,
        false,
    );
    // 89 d 11 h old: inside retention and clear of the edge (the exact
    // edge is accepted below; engine_late.rs covers its accounting).
    let old_end = now - 89 * DAY - 11 * HOUR;
    let old = Rec::new(
        "old",
        "ep",
        Some("A100"),
        1,
        old_end - MINUTE,
        old_end,
        false,
    );
    let start = now - 2 * HOUR;
    let max_gpus = Rec::new(
        "max-gpus",
        "ep",
        Some("H100"),
        1024,
        start,
        start + 1_500,
        true,
    );
    let week = plain("week", 1, now - WEEK - HOUR, now - HOUR);
    vec![skew, old, week, max_gpus]
}

/// Records just outside them, with the field ingest must name.
fn refused_at_the_edges(now: i64) -> Vec<(&'static str, Rec)> {
    vec![
        (
            "completed_at",
            plain("future", 1, now, now + 5 * MINUTE + 1),
        ),
        (
            "completed_at",
            plain("expired", 1, now - 90 * DAY - HOUR, now - 90 * DAY - 1),
        ),
        (
            "completed_at",
            plain("too-long", 1, now - WEEK - HOUR - 1, now - HOUR),
        ),
        (
            "completed_at",
            plain("inverted", 1, now - HOUR, now - HOUR - 1),
        ),
        ("gpu_count", plain("negative", -1, now - HOUR, now)),
        ("gpu_count", plain("too-many", 1025, now - HOUR, now)),
    ]
}

/// The bad record in the middle of good ones: the batch is rejected whole,
/// naming the record and the field.
async fn assert_batch_refused(db: &DatabaseConnection, field: &str, bad: &Rec, now: i64) {
    let good = plain(
        &format!("good-{}", bad.task_id),
        1,
        now - HOUR,
        now - HOUR + 1,
    );
    let batch = vec![good.clone(), bad.clone(), good];
    match gpu_usage_core::ingest::ingest(db, inputs(&batch), at(now), &cfg()).await {
        Err(DomainError::InvalidRecords(problems)) => {
            assert!(
                problems.iter().any(|p| p.index == 1 && p.field == field),
                "{}: {problems:?}",
                bad.task_id
            );
            assert!(problems.iter().all(|p| p.index == 1), "{problems:?}");
        }
        other => panic!(
            "{}: expected the batch to be rejected, got {other:?}",
            bad.task_id
        ),
    }
}

async fn boundaries(db: &DatabaseConnection) {
    let cfg = cfg();
    let now = now();
    let ok = accepted_at_the_edges(now);
    let rep = ingest(db, &ok, now, &cfg).await.unwrap();
    assert_eq!(rep.inserted, ok.len(), "{rep:?}");

    for (field, bad) in &refused_at_the_edges(now) {
        assert_batch_refused(db, field, bad, now).await;
    }
    // Unknown status and a naive timestamp are refused too.
    for (field, input) in [("status", "RUNNING"), ("started_at", "2026-03-10T11:00:00")] {
        let mut json = ok[0].json();
        json[field] = input.into();
        let input = wire(json);
        let r = gpu_usage_core::ingest::ingest(db, vec![input], at(now), &cfg).await;
        assert!(
            matches!(&r, Err(DomainError::InvalidRecords(p)) if p.iter().any(|p| p.field == field)),
            "{field}: {r:?}"
        );
    }
    assert_eq!(
        record_count(db).await.unwrap(),
        ok.len() as u64,
        "a rejected batch stored something"
    );

    // What was accepted is accounted like the model says.
    let rows = run_jobs_twice(db, now, &cfg).await.unwrap();
    assert_model(&rows, &ok, "rows of the boundary records");
    assert_caught_up(db, now).await.unwrap();

    // (Between 90 days and the engine's margin inside them, acceptance is
    // the engine's choice; engine_late.rs checks that whatever it accepts
    // there is counted.)
}

async fn conversion(db: &DatabaseConnection) {
    let cfg = cfg();
    let input = wire(serde_json::json!({
        "task_id": "  conv-1  ",
        "endpoint": " ep-x ",
        "spec_name": "   ",
        "gpu_count": 3,
        "started_at": "2026-03-10T13:00:00.1239+01:00",
        "completed_at": "2026-03-10T06:31:01.0004-05:30",
        "status": "fAiLeD",
    }));
    let rep = gpu_usage_core::ingest::ingest(db, vec![input], at(now()), &cfg)
        .await
        .unwrap();
    assert_eq!(rep.inserted, 1);
    let r = find_record(db, "conv-1")
        .await
        .expect("task_id stored trimmed");
    assert_eq!(r.endpoint, "ep-x");
    assert_eq!(r.started_at, at(ms("2026-03-10T12:00:00.123Z")));
    assert_eq!(r.completed_at, at(ms("2026-03-10T12:01:01.000Z")));
    assert_eq!(r.status.as_str(), "FAILED");
    // 60.877 s: floor to 60; 3 × 60.877 s = 0.050731 GPU-h (0.05073083…).
    assert_eq!(r.duration_seconds, 60);
    assert_eq!(units(r.gpu_hours, 6), 50_731);
    assert_eq!(units(r.gpu_hours, 6), gpu_hours_micro(3 * 60_877));

    // Rolled up: the blank spec name leaves the spec scope out.
    let rec = Rec::new(
        "conv-1",
        "ep-x",
        Some("   "),
        3,
        ms("2026-03-10T12:00:00.123Z"),
        ms("2026-03-10T12:01:01Z"),
        true,
    );
    let rows = run_jobs_twice(db, now(), &cfg).await.unwrap();
    assert_model(&rows, &[rec], "rows");
    assert!(
        rows.minute
            .iter()
            .all(|r| r.scope_type != gpu_usage_core::types::ScopeType::Spec)
    );
}

gpu_usage_testing::guarded_dual_backend_tests! {
    ingest_boundaries => boundaries,
    ingest_converts_to_utc_millis_and_derives => conversion,
}
