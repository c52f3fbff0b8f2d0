//! Property: for random records (tasks spanning minutes, hours and midnight,
//! zero-length tasks, tasks on exact minute and hour boundaries, CPU tasks
//! with gpu_count 0, FAILED tasks, endpoint names with quotes and non-ASCII,
//! NULL, empty and blank spec names, replayed and conflicting task_ids, any
//! UTC offset, any status case) ingested in random batches, with the
//! periodic jobs run between some batches, every row of every level and
//! scope equals the reference model, on SQLite and on MariaDB.
//!
//! `now` is drawn so that each source path of the engine is exercised:
//! hourly from minute rows and daily from hourly rows (recent data), hourly
//! from records where the configured minute retention has passed (fully or
//! in the middle of the data), daily from records past hourly retention.
//!
//! Each case also checks the ingest reports (received, inserted, and
//! duplicates + conflicts; the split between the two is pinned down by
//! engine_idempotent.rs), that a second run of the jobs changes nothing, that nothing
//! is left pending, and that recomputing every level over the whole range
//! with the same `now` rewrites identical rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use anyhow::ensure;
use gpu_usage_core::types::ScopeType::{self, Endpoint, Global, Spec};
use sea_orm::DatabaseConnection;
use support::*;

const CASES: u32 = 24;
const MAX_RECORDS: usize = 40;

fn d0() -> i64 {
    ms("2026-03-08T00:00:00Z")
}

/// Records start in [D0 − 4 h, D0 + 26 h): two midnights inside.
fn window() -> (i64, i64) {
    (d0() - 4 * HOUR, 30 * HOUR)
}

/// Latest end of a generated task: window end + 10 min + 26 h < D0 + 53 h.
fn nows() -> Vec<i64> {
    let d0 = d0();
    vec![
        // Everything recent: hourly from minutes, daily from hours.
        d0 + 53 * HOUR,
        // Configured minute horizon (now − 3 d + 1 h) at D0 + 3 h: hours
        // before it from records, after it from minute rows.
        d0 + 74 * HOUR,
        // Past minute retention: hourly from records.
        d0 + 10 * DAY + 53 * HOUR,
        // Configured hourly horizon (now − 30 d + 1 h) at D0 + 12 h: the
        // day D0 and before from records, D0 + 1 from hourly rows.
        d0 + 30 * DAY + 11 * HOUR,
        // Past hourly retention: daily from records.
        d0 + 42 * DAY,
    ]
}

async fn body(db: &DatabaseConnection, sc: &Scenario) -> anyhow::Result<()> {
    let cfg = cfg();
    let now = sc.now_ms;
    let (stored, reports) = ingest_model(&sc.batches);
    for (i, batch) in sc.batches.iter().enumerate() {
        let got = ingest(db, batch, now, &cfg).await?;
        check(
            check_report_totals(&got, &reports[i]),
            &format!("batch {i}"),
        )?;
        if sc.jobs_after[i] {
            let (so_far, _) = ingest_model(&sc.batches[..=i]);
            let rows = run_jobs_twice(db, now, &cfg).await?;
            check(
                diff_levels(&rows.stripped(), &model(&so_far)),
                &format!("rows after batch {i} and the jobs"),
            )?;
        }
    }
    ensure!(
        record_count(db).await? == stored.len() as u64,
        "stored record count"
    );
    assert_caught_up(db, now).await?;

    let rows = read_levels(db).await?;
    check(diff_levels(&rows.stripped(), &model(&stored)), "final rows")?;
    for g in gpu_usage_core::types::Granularity::ALL {
        ensure!(
            rows.level(g).iter().all(|r| r.updated_at == Some(at(now))),
            "{g}: a row's updated_at is not the jobs' now"
        );
    }

    // Idempotency: rebuilding every level over the whole range with the
    // same now rewrites exactly the same rows.
    let (ws, wl) = window();
    recompute_all(
        db,
        floor(ws, DAY) - DAY,
        floor(ws + wl, DAY) + 3 * DAY,
        now,
        &cfg,
    )
    .await?;
    let again = read_levels(db).await?;
    check(
        diff_levels(&again, &rows),
        "rows after recomputing everything",
    )?;
    ensure!(again == rows, "recomputing everything changed updated_at");
    assert_caught_up(db, now).await?;
    Ok(())
}

fn strategy() -> impl proptest::strategy::Strategy<Value = Scenario> {
    let (start, len) = window();
    arb_scenario(start, len, MAX_RECORDS, nows())
}

gpu_usage_testing::dual_backend_property!(
    engine_matches_model_sqlite,
    engine_matches_model_mysql,
    CASES,
    strategy,
    body
);

/// The model itself on a case small enough to check by hand, so a wrong
/// model cannot silently agree with a wrong engine.
#[test]
fn model_worked_example() {
    let d = ms("2026-03-08T00:00:00Z");
    let recs = vec![
        // 2 GPUs, 23:59:30 → 00:01:00 across midnight: 30 s + 60 s.
        Rec::new(
            "a",
            "ep",
            Some("A100"),
            2,
            d - 30 * SECOND,
            d + MINUTE,
            false,
        ),
        // Zero-length, exactly on a minute boundary, 4 GPUs, failed.
        Rec::new("b", "ep", Some(""), 4, d + MINUTE, d + MINUTE, true),
        // CPU task over two minutes.
        Rec::new("c", "other", None, 0, d, d + 2 * MINUTE, false),
        // 1 GPU, 00:00:00.250 → 00:00:00.251: one GPU-millisecond.
        Rec::new("d", "ep", Some("A100"), 1, d + 250, d + 251, false),
    ];
    let m = model(&recs);
    assert_minutes(&m, d);
    assert_hours_and_days(&m, d);
    assert_rounding();
}

/// The row of bucket `t` and the scope, if any.
fn find(rows: &[Row], t: i64, st: ScopeType, v: Option<&str>) -> Option<Row> {
    rows.iter()
        .find(|r| r.bucket == at(t) && r.scope_type == st && r.scope_value.as_deref() == v)
        .cloned()
}

/// `model_worked_example`'s minute rows.
fn assert_minutes(m: &Levels, d: i64) {
    let g2359 = find(&m.minute, d - MINUTE, Global, None).unwrap();
    assert_eq!((g2359.gpu_ms, g2359.total_tasks), (60_000, 0));
    let g0000 = find(&m.minute, d, Global, None).unwrap();
    // d completes in 00:00 (1 GPU).
    assert_eq!(
        (g0000.gpu_ms, g0000.total_tasks, g0000.avg_centi),
        (120_001, 1, 100)
    );
    let g0001 = find(&m.minute, d + MINUTE, Global, None).unwrap();
    // a (2 GPUs) and b (4 GPUs) complete in 00:01; c completes in 00:02.
    assert_eq!(
        (g0001.gpu_ms, g0001.total_tasks, g0001.failed_tasks),
        (0, 2, 1)
    );
    assert_eq!(
        (g0001.gpu_count_sum, g0001.max_gpu_count, g0001.avg_centi),
        (6, 4, 300)
    );
    let g0002 = find(&m.minute, d + 2 * MINUTE, Global, None).unwrap();
    assert_eq!(
        (g0002.total_tasks, g0002.avg_centi, g0002.max_gpu_count),
        (1, 0, 0)
    );
}

/// `model_worked_example`'s hourly and daily rows.
fn assert_hours_and_days(m: &Levels, d: i64) {
    // 00:00 hour: 120_001 GPU-ms, 3 + 1 tasks (a, b, c; d in minute 00:00).
    let h = find(&m.hourly, d, Global, None).unwrap();
    assert_eq!(
        (h.gpu_ms, h.total_tasks, h.gpu_hours_micro),
        (120_001, 4, 33_334)
    );
    assert_eq!((h.peak_at, h.peak_micro), (Some(at(d)), Some(33_334)));
    // 23:00 hour of the day before: only a's first 30 s.
    let h23 = find(&m.hourly, d - HOUR, Global, None).unwrap();
    assert_eq!((h23.peak_at, h23.total_tasks), (Some(at(d - MINUTE)), 0));
    // "other" has only a CPU task: a row for its completion, no peak.
    let other = find(&m.hourly, d, Endpoint, Some("other")).unwrap();
    assert_eq!(
        (other.gpu_ms, other.peak_at, other.peak_micro),
        (0, None, None)
    );
    assert!(
        find(&m.minute, d, Endpoint, Some("other")).is_none(),
        "no empty rows"
    );
    // Empty spec name: no spec scope for b.
    assert!(
        m.minute
            .iter()
            .all(|r| r.scope_value.as_deref() != Some(""))
    );
    let spec_day = find(&m.daily, d, Spec, Some("A100")).unwrap();
    assert_eq!(
        (spec_day.total_tasks, spec_day.gpu_ms, spec_day.peak_at),
        (2, 120_001, Some(at(d)))
    );
    let day_before = find(&m.daily, d - DAY, Global, None).unwrap();
    assert_eq!(
        (
            day_before.gpu_ms,
            day_before.total_tasks,
            day_before.peak_at
        ),
        (60_000, 0, Some(at(d - HOUR)))
    );
}

/// Half away from zero at 6 and 2 places.
fn assert_rounding() {
    assert_eq!(gpu_hours_micro(9), 3); // 2.5 µh
    assert_eq!(gpu_hours_micro(1_800), 500);
    assert_eq!(gpu_hours_micro(1), 0);
    assert_eq!(avg_centi(1, 8), 13); // 0.125
    assert_eq!(avg_centi(5, 3), 167);
    assert_eq!(avg_centi(0, 0), 0);
}
