//! Property: for random records and random worker sessions (several per
//! worker, touching and overlapping ones, zero-length and 0-GPU ones,
//! sessions across midnight and up to 30 h long, replays, moved ends and
//! changed values of known sessions) reported in batches between the
//! record batches, with the periodic jobs run between some of them, every
//! capacity column of every level and scope (available, idle, over-used
//! minutes, utilisation, completeness, peak GPUs in use and available)
//! equals the reference model, on SQLite and on MariaDB; every session
//! report gets the outcome the session rules give; a second run of the
//! jobs changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use anyhow::ensure;
use gpu_usage_core::capacity::{self, SessionReport};
use proptest::prelude::*;
use proptest::sample::Index;
use sea_orm::DatabaseConnection;
use support::*;

const CASES: u32 = 16;

fn d0() -> i64 {
    ms("2026-03-08T00:00:00Z")
}

#[derive(Debug, Clone)]
struct Case {
    records: Scenario,
    /// Session report batches; batch i is posted after record batch i
    /// (the rest after the last one).
    sessions: Vec<Vec<Ses>>,
}

fn strategy() -> impl Strategy<Value = Case> {
    let d0 = d0();
    let nows = vec![d0 + 53 * HOUR, d0 + 10 * DAY + 53 * HOUR, d0 + 42 * DAY];
    (
        arb_scenario(d0 - 4 * HOUR, 30 * HOUR, 24, nows),
        // Sessions end before D0 + 50 h, before every `now`.
        arb_session_reports(d0 - 4 * HOUR, 24 * HOUR, 12),
        prop::collection::vec(any::<Index>(), 0..3),
    )
        .prop_map(|(records, reports, cuts)| {
            let sessions = split_at_cuts(&reports, &cuts);
            Case { records, sessions }
        })
}

fn expected_report(outcomes: &[Outcome]) -> (usize, usize, usize, Vec<usize>) {
    let count = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
    let conflicts = (0..outcomes.len())
        .filter(|i| outcomes[*i] == Outcome::Conflict)
        .collect();
    (
        count(Outcome::Inserted),
        count(Outcome::Updated),
        count(Outcome::Duplicate),
        conflicts,
    )
}

async fn post_sessions(
    db: &DatabaseConnection,
    batch: &[Ses],
    posted: &mut Vec<Ses>,
    now: i64,
) -> anyhow::Result<()> {
    let (_, before) = session_model(posted);
    posted.extend(batch.iter().cloned());
    let (_, after) = session_model(posted);
    let want = expected_report(&after[before.len()..]);
    let items = batch.iter().map(Ses::input).collect();
    let got: SessionReport = capacity::store_sessions(db, items, at(now), &cfg())
        .await
        .map_err(|e| anyhow::anyhow!("store_sessions: {e} ({e:?})"))?;
    let conflicts: Vec<usize> = got.conflicts.iter().map(|c| c.index).collect();
    ensure!(
        (got.inserted, got.updated, got.duplicates, conflicts.clone()) == want,
        "session report {got:?}, want (inserted, updated, duplicates, conflicts) {want:?}"
    );
    ensure!(got.received == batch.len(), "received");
    Ok(())
}

async fn body(db: &DatabaseConnection, c: &Case) -> anyhow::Result<()> {
    let cfg = cfg();
    let now = c.records.now_ms;
    let mut posted = Vec::new();
    let mut stored_recs = Vec::new();
    let batches = c.records.batches.len().max(c.sessions.len());
    for i in 0..batches {
        if let Some(batch) = c.records.batches.get(i) {
            ingest(db, batch, now, &cfg).await?;
            stored_recs = ingest_model(&c.records.batches[..=i]).0;
        }
        if let Some(batch) = c.sessions.get(i) {
            post_sessions(db, batch, &mut posted, now).await?;
        }
        if c.records.jobs_after.get(i).copied().unwrap_or(false) {
            let rows = run_jobs_twice(db, now, &cfg).await?;
            let want = model_with(&stored_recs, &session_model(&posted).0);
            check(
                diff_levels(&rows.stripped(), &want),
                &format!("rows after step {i}"),
            )?;
        }
    }
    let rows = run_jobs_twice(db, now, &cfg).await?;
    let want = model_with(&stored_recs, &session_model(&posted).0);
    check(diff_levels(&rows.stripped(), &want), "final rows")?;
    assert_caught_up(db, now).await?;
    // Replaying what is stored changes nothing. (Replaying the history
    // would: its moved ends move back and forth.)
    let stored = session_model(&posted).0;
    if !stored.is_empty() {
        let items = stored.iter().map(Ses::input).collect();
        let again = capacity::store_sessions(db, items, at(now), &cfg).await?;
        ensure!(
            again.duplicates == stored.len(),
            "a replay of the stored sessions changed something: {again:?}"
        );
    }
    let replayed = run_jobs_twice(db, now, &cfg).await?;
    check(
        diff_levels(&replayed, &rows),
        "rows after replaying the reports",
    )?;
    Ok(())
}

gpu_usage_testing::dual_backend_property!(
    capacity_matches_model_sqlite,
    capacity_matches_model_mysql,
    CASES,
    strategy,
    body
);

/// The model's capacity columns on a case small enough to check by hand.
#[test]
fn model_capacity_worked_example() {
    let d = ms("2026-03-08T10:00:00Z");
    // 2 GPUs up 10:00–11:00; a 1-GPU task 10:15–10:45 and a 3-GPU task
    // 10:50:00–10:50:30 (over capacity in minute 10:50).
    let sessions = [Ses::new("w", "ep", Some("A100"), 2, d, d + HOUR)];
    let recs = [
        Rec::new(
            "a",
            "ep",
            Some("A100"),
            1,
            d + 15 * MINUTE,
            d + 45 * MINUTE,
            false,
        ),
        Rec::new(
            "b",
            "ep",
            Some("A100"),
            3,
            d + 50 * MINUTE,
            d + 50 * MINUTE + 30 * SECOND,
            false,
        ),
    ];
    let m = model_with(&recs, &sessions);
    let hour = m
        .hourly
        .iter()
        .find(|r| r.bucket == at(d) && r.scope_value.is_none())
        .unwrap();
    assert_eq!(hour.avail_ms, 2 * HOUR);
    assert_eq!(hour.gpu_ms, 30 * MINUTE + 90 * SECOND);
    // Idle per minute: 59 minutes × 2 GPU-min minus 30 used ones, and
    // minute 10:50 used 90 s of its 120 s (its 3 GPUs exceed 2 only for
    // 30 s, but by GPU time it is not over-used).
    assert_eq!(hour.idle_ms, 2 * HOUR - (30 * MINUTE + 90 * SECOND));
    assert_eq!(hour.overused_minutes, 0);
    assert_eq!(hour.capacity_complete, Some(true));
    assert_eq!(hour.peak_in_use, 3);
    assert_eq!(hour.peak_available, 2);
    // (30 min + 90 s) / 120 min = 0.2625.
    assert_eq!(hour.util_basis, Some(2625));
    let minute = |t: i64| {
        m.minute
            .iter()
            .find(|r| r.bucket == at(t) && r.scope_value.is_none())
            .unwrap()
            .clone()
    };
    assert_eq!(minute(d).util_basis, Some(0));
    assert_eq!(minute(d + 20 * MINUTE).util_basis, Some(5000));
    assert_eq!(minute(d + 50 * MINUTE).peak_in_use, 3);
    // A task without any session: used, nothing available.
    let lone = model_with(&[Rec::new("c", "x", None, 1, d, d + MINUTE, false)], &[]);
    let r = &lone.minute[0];
    assert_eq!(
        (r.util_basis, r.capacity_complete, r.idle_ms),
        (None, None, 0)
    );
    assert_eq!(r.overused_minutes, 1);
}
