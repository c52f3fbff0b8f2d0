//! Conservation (docs/ROLLUPS.md, "Exact arithmetic"): for every scope and
//! a range of whole days, Σ GPU time of minute rows = of hourly rows = of
//! daily rows = the records' GPU time overlapping the range, exactly in
//! GPU-milliseconds; the rounded total_gpu_hours columns within half a unit
//! (1e-6 GPU-h) per row summed (the service promises 1e-4); and task counts
//! likewise (completions in range).
//!
//! Records start up to 12 h before the first day and end up to a day after
//! the last, so clipping at the range's edges is part of the check. One
//! scripted case adds the longest accepted task (168 h) across the whole
//! range.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};

use anyhow::ensure;
use gpu_usage_core::types::{Granularity, ScopeType};
use sea_orm::DatabaseConnection;
use support::*;

type ScopeKey = (ScopeType, Option<String>);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sums {
    gpu_ms: i64,
    tasks: i64,
    hours_micro: i64,
    rows: i64,
}

fn sums(rows: &[Row], from: i64, to: i64) -> BTreeMap<ScopeKey, Sums> {
    let mut out: BTreeMap<ScopeKey, Sums> = BTreeMap::new();
    for r in rows {
        let b = r.bucket.timestamp_millis();
        if b < from || b >= to {
            continue;
        }
        let s = out
            .entry((r.scope_type, r.scope_value.clone()))
            .or_default();
        s.gpu_ms += r.gpu_ms;
        s.tasks += r.total_tasks;
        s.hours_micro += r.gpu_hours_micro;
        s.rows += 1;
    }
    out
}

/// Checks conservation over the whole days `[from, to)`.
fn check_conservation(rows: &Levels, records: &[Rec], from: i64, to: i64) -> anyhow::Result<()> {
    let exact = gpu_ms_by_scope(records, from, to);
    let mut tasks: HashMap<ScopeKey, i64> = HashMap::new();
    for r in records {
        for s in r.scopes() {
            *tasks.entry(s).or_insert(0) += i64::from(r.end_ms >= from && r.end_ms < to);
        }
    }
    let per_level: Vec<(Granularity, BTreeMap<ScopeKey, Sums>)> = Granularity::ALL
        .iter()
        .map(|g| (*g, sums(rows.level(*g), from, to)))
        .collect();
    let mut scopes: Vec<&ScopeKey> = exact.keys().collect();
    scopes.sort();
    ensure!(!scopes.is_empty(), "no records at all");
    for scope in scopes {
        let want_ms = exact[scope];
        let want_tasks = tasks.get(scope).copied().unwrap_or(0);
        for (g, by_scope) in &per_level {
            let got = by_scope.get(scope).copied().unwrap_or_default();
            ensure!(
                got.gpu_ms == want_ms,
                "{g} {scope:?}: Σ gpu_milliseconds {} ≠ records' overlapping GPU-ms {want_ms}",
                got.gpu_ms
            );
            ensure!(
                got.tasks == want_tasks,
                "{g} {scope:?}: Σ total_tasks {} ≠ {want_tasks}",
                got.tasks
            );
            // |Σ rounded µh − exact µh| ≤ ½ µh per row: in integers,
            // |36·Σµh − 10·ms| ≤ 18·rows.
            let err = (36 * got.hours_micro - 10 * want_ms).abs();
            ensure!(
                err <= 18 * got.rows,
                "{g} {scope:?}: Σ total_gpu_hours {} µh vs exact {want_ms} GPU-ms over {} rows",
                got.hours_micro,
                got.rows
            );
        }
    }
    // No level has a scope the records do not give.
    for (g, by_scope) in &per_level {
        for (scope, s) in by_scope {
            ensure!(
                exact.contains_key(scope),
                "{g}: rows for unknown scope {scope:?}: {s:?}"
            );
        }
    }
    Ok(())
}

fn d1() -> i64 {
    ms("2026-04-01T00:00:00Z")
}

const DAYS: i64 = 3;

async fn body(db: &DatabaseConnection, sc: &Scenario) -> anyhow::Result<()> {
    let cfg = cfg();
    for batch in &sc.batches {
        ingest(db, batch, sc.now_ms, &cfg).await?;
    }
    let (stored, _) = ingest_model(&sc.batches);
    let rows = run_jobs_twice(db, sc.now_ms, &cfg).await?;
    check_conservation(&rows, &stored, d1(), d1() + DAYS * DAY)?;
    // Also per single day.
    for d in 0..DAYS {
        check_conservation(&rows, &stored, d1() + d * DAY, d1() + (d + 1) * DAY)?;
    }
    Ok(())
}

fn strategy() -> impl proptest::strategy::Strategy<Value = Scenario> {
    // Starts in [D1 − 12 h, D1 + 3 d + 12 h); ends at most 26 h 10 min later.
    let start = d1() - 12 * HOUR;
    let len = DAYS * DAY + 24 * HOUR;
    let last_end = start + len + 27 * HOUR;
    // Recent (hourly from minutes) and 12 days later (hourly from records).
    arb_scenario(start, len, 40, vec![last_end, last_end + 12 * DAY])
}

gpu_usage_testing::dual_backend_property!(
    conservation_sqlite,
    conservation_mysql,
    12,
    strategy,
    body
);

/// Scripted: 240 records over the three days and their edges plus one task
/// of exactly 168 h (the maximum) from two days before the range to two days
/// after it, on 3 GPUs.
async fn scripted(db: &DatabaseConnection) {
    let cfg = cfg();
    let mut g = Lcg::new(7);
    let mut recs: Vec<Rec> = (0..240)
        .map(|i| {
            g.rec(
                "c",
                i,
                d1() - 12 * HOUR,
                d1() + DAYS * DAY + 12 * HOUR,
                5 * HOUR,
            )
        })
        .collect();
    recs.push(Rec::new(
        "week",
        "ep-long",
        Some("A100"),
        3,
        d1() - 2 * DAY,
        d1() + 5 * DAY,
        false,
    ));
    let now = d1() + 5 * DAY + MINUTE;
    for chunk in recs.chunks(100) {
        ingest(db, chunk, now, &cfg).await.unwrap();
    }
    let rows = run_jobs_twice(db, now, &cfg).await.unwrap();
    check_conservation(&rows, &recs, d1(), d1() + DAYS * DAY).unwrap();
    // The 168 h task alone: 3 GPUs × 3 days inside the range.
    let ep = sums(rows.level(Granularity::Daily), d1(), d1() + DAYS * DAY);
    let long = ep[&(ScopeType::Endpoint, Some("ep-long".to_owned()))];
    assert_eq!(long.gpu_ms, 3 * DAYS * DAY);
    assert_eq!(long.hours_micro, 3 * 24 * DAYS * 1_000_000);
    // And everything equals the model, rows included.
    assert_model(&rows, &recs, "rows");
}

gpu_usage_testing::guarded_dual_backend_tests! {
    conservation_scripted_with_a_168h_task => scripted,
}
