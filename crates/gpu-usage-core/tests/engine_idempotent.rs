//! Idempotency (every rollup is a recomputation: docs/ROLLUPS.md; issue
//! #3): recomputing a range twice in a row or twice at once
//! (`tokio::join!`) yields identical rows, and so do two periodic jobs
//! running at once; replaying an ingest batch is all duplicates and changes
//! nothing; a different record under a known task_id is a conflict, the
//! stored one is kept, and the statistics do not move.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gpu_usage_core::types::Granularity;
use sea_orm::DatabaseConnection;
use support::*;

fn base() -> i64 {
    floor(now(), DAY) - DAY
}

fn records(prefix: &str, seed: u64, n: usize) -> Vec<Rec> {
    let mut g = Lcg::new(seed);
    (0..n)
        .map(|i| g.rec(prefix, i, base() - 2 * HOUR, now() - 3 * HOUR, 3 * HOUR))
        .collect()
}

async fn setup(db: &DatabaseConnection) -> (Vec<Rec>, Levels) {
    let recs = records("r", 3, 150);
    let rep = ingest(db, &recs, now(), &cfg()).await.unwrap();
    assert_eq!(rep.inserted, recs.len());
    let rows = run_jobs_twice(db, now(), &cfg()).await.unwrap();
    assert_model(&rows, &recs, "initial rows");
    (recs, rows)
}

async fn recompute_sequential_and_concurrent(db: &DatabaseConnection) {
    let (_, rows) = setup(db).await;
    let (from, to) = (base() - DAY, base() + 2 * DAY);
    for level in Granularity::ALL {
        // Twice in a row, same now: identical rows, updated_at included.
        for _ in 0..2 {
            recompute(db, level, from, to, now(), &cfg()).await.unwrap();
            let again = read_levels(db).await.unwrap();
            assert_unchanged(&again, &rows, &format!("sequential recompute of {level}"));
        }
        // Twice at once.
        let c = cfg();
        let (a, b) = tokio::join!(
            recompute(db, level, from, to, now(), &c),
            recompute(db, level, from, to, now(), &c)
        );
        a.unwrap();
        b.unwrap();
        let again = read_levels(db).await.unwrap();
        assert_unchanged(&again, &rows, &format!("concurrent recompute of {level}"));
        // What they queued for the next level changes nothing either.
        let after = run_jobs_twice(db, now(), &cfg()).await.unwrap();
        assert_eq!(after, rows, "jobs after recompute of {level}");
    }
    // A range that is not bucket-aligned is widened, not clipped.
    recompute(
        db,
        Granularity::Hourly,
        base() + 90 * MINUTE + 7,
        base() + 150 * MINUTE,
        now(),
        &cfg(),
    )
    .await
    .unwrap();
    recompute(
        db,
        Granularity::Daily,
        base() + 13 * HOUR,
        base() + 14 * HOUR,
        now(),
        &cfg(),
    )
    .await
    .unwrap();
    let after = run_jobs_twice(db, now(), &cfg()).await.unwrap();
    assert_eq!(after, rows, "recompute of unaligned ranges");
}

/// Two runners of the periodic jobs at the same time over the same pending
/// work (late records for old and current buckets).
async fn concurrent_jobs(db: &DatabaseConnection) {
    let (mut recs, _) = setup(db).await;
    let more = records("m", 9, 80);
    let now2 = now() + 3 * MINUTE;
    ingest(db, &more, now2, &cfg()).await.unwrap();
    recs.extend(more);
    for level in Granularity::ALL {
        let c = cfg();
        let (a, b) = tokio::join!(
            gpu_usage_core::rollup::process_pending(db, level, at(now2), &c),
            gpu_usage_core::rollup::process_pending(db, level, at(now2), &c)
        );
        a.unwrap();
        b.unwrap();
    }
    let rows = run_jobs_twice(db, now2, &cfg()).await.unwrap();
    assert_model(&rows, &recs, "rows after concurrent jobs");
    assert_caught_up(db, now2).await.unwrap();
}

async fn ingest_replay(db: &DatabaseConnection) {
    let (recs, rows) = setup(db).await;
    let later = now() + MINUTE;
    // The same batch again, and again written with other offsets and status
    // letter case (same instants, same record).
    for respelled in [false, true] {
        let batch: Vec<Rec> = recs
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if respelled {
                    r.offset_min = if r.offset_min == 0 { -330 } else { 0 };
                    r.status_spelling = (r.status_spelling + 1) % 3;
                }
                r
            })
            .collect();
        let rep = ingest(db, &batch, later, &cfg()).await.unwrap();
        assert_eq!(
            (
                rep.received,
                rep.inserted,
                rep.duplicates,
                rep.conflicts.len()
            ),
            (recs.len(), 0, recs.len(), 0),
            "replay (respelled: {respelled}): {rep:?}"
        );
        assert_caught_up(db, later).await.unwrap();
        // Nothing to do for the jobs: not even updated_at moves.
        let after = run_jobs_twice(db, later, &cfg()).await.unwrap();
        assert_eq!(after, rows, "a replay changed the statistics");
    }
    assert_eq!(record_count(db).await.unwrap(), recs.len() as u64);
}

fn stored_example(recs: &[Rec]) -> Rec {
    recs.iter()
        .find(|r| r.gpu_count > 0 && r.end_ms > r.start_ms)
        .unwrap()
        .clone()
}

async fn ingest_conflicts(db: &DatabaseConnection) {
    let (recs, _) = setup(db).await;
    let later = now() + MINUTE;
    let original = stored_example(&recs);
    let mut other_gpus = original.clone();
    other_gpus.gpu_count += 1;
    let fresh = Rec::new(
        "fresh-1",
        "ep-a",
        Some("A100"),
        1,
        now() - HOUR,
        now() - HOUR + 1,
        false,
    );
    let mut fresh_conflict = fresh.clone();
    fresh_conflict.failed = true;
    // A conflict with a stored record, a new record, a conflict with that
    // new record inside the batch and a duplicate of it.
    let batch = vec![other_gpus, fresh.clone(), fresh_conflict, fresh.clone()];
    let rep = ingest(db, &batch, later, &cfg()).await.unwrap();
    assert_eq!(
        (rep.received, rep.inserted, rep.duplicates),
        (4, 1, 1),
        "{rep:?}"
    );
    let conflicts: Vec<(usize, &str, Vec<&str>)> = rep
        .conflicts
        .iter()
        .map(|c| {
            (
                c.index,
                c.task_id.as_str(),
                c.fields.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        conflicts,
        vec![
            (0, original.task_id.as_str(), vec!["gpu_count"]),
            (2, "fresh-1", vec!["status"])
        ],
        "{rep:?}"
    );
    // The stored record is kept.
    let stored = find_record(db, original.task_id.as_str()).await.unwrap();
    assert_eq!(i64::from(stored.gpu_count), original.gpu_count);
    assert_eq!(stored.completed_at, at(original.end_ms));
    let fresh_stored = find_record(db, "fresh-1").await.unwrap();
    assert_eq!(fresh_stored.status.as_str(), "COMPLETED");

    // Statistics: only the new record is added; the conflicts change nothing.
    let mut all = recs.clone();
    all.push(fresh);
    let after = run_jobs_twice(db, later, &cfg()).await.unwrap();
    assert_model(&after, &all, "rows after conflicts");

    // A batch of nothing but a conflict: nothing pending, nothing rewritten.
    let mut only = original.clone();
    only.gpu_count += 2;
    only.endpoint = "elsewhere".to_owned();
    let rep = ingest(db, &[only], later + MINUTE, &cfg()).await.unwrap();
    assert_eq!(
        (rep.inserted, rep.duplicates, rep.conflicts.len()),
        (0, 0, 1),
        "{rep:?}"
    );
    assert_eq!(
        rep.conflicts[0].fields,
        ["endpoint", "gpu_count"],
        "{rep:?}"
    );
    assert_caught_up(db, later + MINUTE).await.unwrap();
    let again = run_jobs_twice(db, later + MINUTE, &cfg()).await.unwrap();
    assert_eq!(again, after, "a conflict changed the statistics");
}

/// Several records under one stored task_id in one batch: each is judged
/// against the stored record (`Conflict::fields`: "fields whose values
/// differ from the stored record"): a verbatim replay of the stored record
/// is a duplicate, every different one a conflict naming its own
/// differences.
async fn conflicts_within_a_batch(db: &DatabaseConnection) {
    let (recs, rows) = setup(db).await;
    let original = stored_example(&recs);
    let mut x = original.clone();
    x.gpu_count += 1;
    let mut y = original.clone();
    y.endpoint = "elsewhere".to_owned();
    y.end_ms += 1;
    let batch = vec![x.clone(), x, original.clone(), y];
    let rep = ingest(db, &batch, now() + MINUTE, &cfg()).await.unwrap();
    // The statistics cannot change whatever the report says.
    let after = run_jobs_twice(db, now() + MINUTE, &cfg()).await.unwrap();
    assert_eq!(after, rows, "conflicts changed the statistics");
    let conflicts: Vec<(usize, Vec<&str>)> = rep
        .conflicts
        .iter()
        .map(|c| (c.index, c.fields.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        (rep.inserted, rep.duplicates, conflicts),
        (
            0,
            1,
            vec![
                (0, vec!["gpu_count"]),
                (1, vec!["gpu_count"]),
                (3, vec!["endpoint", "completed_at"])
            ]
        ),
        "batch [X, X, stored, Y] under the stored task_id {:?}: {rep:?}",
        original.task_id
    );
}

gpu_usage_testing::guarded_dual_backend_tests! {
    recompute_twice_in_a_row_and_at_once => recompute_sequential_and_concurrent,
    periodic_jobs_twice_at_once => concurrent_jobs,
    ingest_replay_is_all_duplicates => ingest_replay,
    conflicting_record_is_reported_and_ignored => ingest_conflicts,
    conflicts_within_a_batch_are_judged_against_the_stored_record => conflicts_within_a_batch,
}
