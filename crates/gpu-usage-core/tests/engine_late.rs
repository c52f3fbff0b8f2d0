//! Late data and downtime (docs/ROLLUPS.md, the pending queue): records that
//! arrive after their buckets were aggregated (hours, days and weeks back,
//! still inside retention) are folded into minute, hourly and daily rows by
//! the next runs of the periodic jobs; a worker that was down for an hour
//! catches up in one run; rollup_status shows the backlog before and nothing
//! pending after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gpu_usage_core::types::{Granularity, ScopeType};
use sea_orm::DatabaseConnection;
use support::*;

/// Late records, at `now2` (seven minutes after `now1`), for buckets
/// long done: days and weeks back, on bucket boundaries, live, CPU-only.
fn long_done(now1: i64, now2: i64) -> [Rec; 7] {
    let d = floor(now1, DAY);
    [
        // Two days back, across midnight.
        Rec::new(
            "l-midnight",
            "ep-a",
            Some("A100"),
            2,
            d - DAY - 10 * MINUTE,
            d - DAY + 20 * MINUTE + 5,
            false,
        ),
        // 20 days back (hourly from records: past minute retention).
        Rec::new(
            "l-20d",
            "it's",
            Some("a100"),
            4,
            now2 - 20 * DAY,
            now2 - 20 * DAY + 90 * MINUTE,
            true,
        ),
        // 60 days back (daily from records too: past hourly retention).
        Rec::new(
            "l-60d",
            "推理端点",
            None,
            1,
            now2 - 60 * DAY - 3 * HOUR,
            now2 - 60 * DAY,
            false,
        ),
        // 89 days back: inside the 90-day record retention.
        Rec::new(
            "l-89d",
            "ep-a",
            Some(""),
            8,
            now2 - 89 * DAY,
            now2 - 89 * DAY + 10 * MINUTE,
            false,
        ),
        // Overlapping the minutes of early records exactly on boundaries.
        Rec::new(
            "l-bound",
            "ep-a",
            Some("A100"),
            3,
            floor(now1 - 4 * HOUR, HOUR),
            floor(now1 - 3 * HOUR, HOUR),
            false,
        ),
        // The current hour (a live partial row) and a CPU task.
        Rec::new(
            "l-now",
            "ep-b",
            Some("A100"),
            1,
            now2 - 3 * MINUTE,
            now2 - 1,
            false,
        ),
        Rec::new(
            "l-cpu",
            "ep-b",
            Some("A100"),
            0,
            now2 - 9 * HOUR,
            now2 - 8 * HOUR,
            false,
        ),
    ]
}

/// The backlog of `late` visible at `now`: pending from its oldest minute,
/// no level claiming completeness past it, every level lagging.
async fn assert_backlog(db: &DatabaseConnection, now: i64, late: &[Rec]) {
    let st = statuses(db, now).await.unwrap();
    let minute = status_of(&st, Granularity::Minute);
    assert!(minute.pending_ranges > 0, "{st:?}");
    let oldest = late.iter().map(|r| r.start_ms).min().unwrap();
    assert_eq!(
        minute.oldest_pending,
        Some(at(floor(oldest, MINUTE))),
        "{st:?}"
    );
    for g in Granularity::ALL {
        let s = status_of(&st, g);
        assert!(
            s.complete_through <= at(floor(oldest, MINUTE)),
            "{g} claims completeness: {s:?}"
        );
        assert!(s.lag_seconds >= 89 * 86_400, "{g}: {s:?}");
    }
}

async fn late_records_for_old_buckets(db: &DatabaseConnection) {
    let cfg = cfg();
    let now1 = now();
    let mut g = Lcg::new(11);
    let a: Vec<Rec> = (0..60)
        .map(|i| g.rec("a", i, now1 - 6 * HOUR, now1 - 2 * HOUR, 2 * HOUR))
        .collect();
    let rep = ingest(db, &a, now1, &cfg).await.unwrap();
    assert_eq!(rep.inserted, 60);
    let rows = run_jobs_twice(db, now1, &cfg).await.unwrap();
    assert_model(&rows, &a, "rows before the late records");
    assert_caught_up(db, now1).await.unwrap();

    // Seven minutes later, records for buckets long done.
    let now2 = now1 + 7 * MINUTE;
    let mut late: Vec<Rec> = (0..20)
        .map(|i| g.rec("b", i, now1 - 5 * HOUR, now1 - 3 * HOUR, HOUR))
        .collect();
    late.extend(long_done(now1, now2));
    // A replay of an already aggregated record among them.
    let mut batch = late.clone();
    batch.push(a[3].clone());
    let rep = ingest(db, &batch, now2, &cfg).await.unwrap();
    assert_eq!(
        (rep.inserted, rep.duplicates, rep.conflicts.len()),
        (late.len(), 1, 0),
        "{rep:?}"
    );

    // Before the jobs: the backlog is visible and nothing changed yet.
    assert_backlog(db, now2, &late).await;
    let before = read_levels(db).await.unwrap();
    assert_model(&before, &a, "rows before the jobs");

    let all: Vec<Rec> = a.iter().chain(late.iter()).cloned().collect();
    let rows = run_jobs_twice(db, now2, &cfg).await.unwrap();
    assert_model(&rows, &all, "rows after the late records");
    assert_caught_up(db, now2).await.unwrap();
}

/// The batch arriving at `now_i`, minute `i` of the downtime from `t0`:
/// three tasks (numbered from `n`) ending in the minute before it and
/// started up to 3 h earlier; at minute 30 one since yesterday 23:00, at
/// minute 60 one ending in the current hour (live partial rows).
fn minute_batch(g: &mut Lcg, i: i64, n: &mut usize, t0: i64, now_i: i64) -> Vec<Rec> {
    let mut batch = Vec::new();
    for _ in 0..3 {
        let end = g.range(now_i - 70 * SECOND, now_i - SECOND);
        let mut r = g.rec("down", *n, end - 3 * HOUR, end, 3 * HOUR);
        r.end_ms = end;
        r.start_ms = r.start_ms.min(end);
        batch.push(r);
        *n += 1;
    }
    if i == 60 {
        // Ends in the current hour: live partial rows.
        batch.push(Rec::new(
            "live",
            "ep-b",
            None,
            1,
            t0 + 55 * MINUTE,
            now_i - SECOND,
            false,
        ));
    }
    if i == 30 {
        batch.push(Rec::new(
            "overnight",
            "ep-a",
            Some("A100"),
            2,
            floor(t0, DAY) - HOUR,
            now_i - 5 * SECOND,
            false,
        ));
    }
    batch
}

/// The worker is down from T0 to T0 + 61 min while records keep arriving
/// every minute; one run of the jobs afterwards catches everything up.
async fn worker_down_for_an_hour(db: &DatabaseConnection) {
    let cfg = cfg();
    let t0 = ms("2026-03-10T10:00:00Z");
    let mut g = Lcg::new(23);
    let mut all: Vec<Rec> = (0..30)
        .map(|i| g.rec("before", i, t0 - 3 * HOUR, t0 - 2 * HOUR, HOUR))
        .collect();
    ingest(db, &all, t0, &cfg).await.unwrap();
    let rows = run_jobs_twice(db, t0, &cfg).await.unwrap();
    assert_model(&rows, &all, "rows at T0");

    // One small batch a minute.
    let mut n = 0;
    for i in 1..=60 {
        let now_i = t0 + i * MINUTE + 10 * SECOND;
        let batch = minute_batch(&mut g, i, &mut n, t0, now_i);
        ingest(db, &batch, now_i, &cfg).await.unwrap();
        all.extend(batch);
    }
    let now = t0 + 61 * MINUTE;

    // Status while down: everything behind, the oldest pending is the
    // overnight task's start.
    let st = statuses(db, now).await.unwrap();
    let oldest = floor(floor(t0, DAY) - HOUR, MINUTE);
    for g in Granularity::ALL {
        let s = status_of(&st, g);
        assert!(s.complete_through <= at(oldest), "{g}: {s:?}");
        assert!(s.lag_seconds >= 12 * 3600, "{g}: {s:?}");
    }
    let minute = status_of(&st, Granularity::Minute);
    assert!(minute.pending_ranges >= 60, "{st:?}");
    assert_eq!(minute.oldest_pending, Some(at(oldest)), "{st:?}");

    // The jobs level by level; each level's backlog moves to the next.
    for (level, len, next, next_behind) in [
        (Granularity::Minute, MINUTE, Granularity::Hourly, oldest),
        (
            Granularity::Hourly,
            HOUR,
            Granularity::Daily,
            floor(oldest, DAY),
        ),
    ] {
        rollup_level(db, level, now).await;
        let st = statuses(db, now).await.unwrap();
        let (done, behind) = (status_of(&st, level), status_of(&st, next));
        assert_eq!(
            (done.pending_ranges, done.complete_through),
            (0, at(floor(now, len))),
            "{st:?}"
        );
        assert!(
            behind.pending_ranges > 0 && behind.complete_through <= at(next_behind),
            "{st:?}"
        );
    }
    rollup_level(db, Granularity::Daily, now).await;
    assert_caught_up(db, now).await.unwrap();

    // Everything equals the model; a second run changes nothing.
    let rows = run_jobs_twice(db, now, &cfg).await.unwrap();
    assert_model(&rows, &all, "rows after catching up");
    // The current hour and today have live (partial) rows.
    let live = |v: &Vec<Row>, b: i64| {
        v.iter()
            .any(|r| r.bucket == at(b) && r.scope_type == ScopeType::Global)
    };
    assert!(
        live(&rows.hourly, floor(now, HOUR)),
        "no live row for the current hour"
    );
    assert!(live(&rows.daily, floor(now, DAY)), "no live row for today");
    assert!(live(&rows.minute, floor(now - MINUTE, MINUTE)));
}

async fn rollup_level(db: &DatabaseConnection, g: Granularity, now: i64) {
    gpu_usage_core::rollup::process_pending(db, g, at(now), &cfg())
        .await
        .unwrap();
}

/// Whatever ingest accepts near the end of record retention is counted at
/// every level, the daily one included: records completing every 2 hours
/// from 90 days before `now` for two days, each 5 minutes long, each
/// offered alone. Ingest refuses exactly those starting before the first
/// day the daily level can still rebuild from records (a record on the
/// day straddling the retention edge would be in minute and hourly rows
/// and missing from its daily row forever), naming the field.
async fn record_near_retention_edge(db: &DatabaseConnection) {
    let cfg = cfg();
    let now = ms("2026-06-01T12:00:00Z");
    // now − 90 d + 1 h margin = 2026-03-03T13:00Z, so the first day the
    // daily level rebuilds from records is 2026-03-04.
    let first_day = ms("2026-03-04T00:00:00Z");
    let mut accepted = Vec::new();
    for k in 0..=24 {
        let end = now - 90 * DAY + k * 2 * HOUR;
        let r = Rec::new(
            &format!("edge-{k}"),
            "ep-a",
            Some("A100"),
            2,
            end - 5 * MINUTE,
            end,
            false,
        );
        let result =
            gpu_usage_core::ingest::ingest(db, inputs(std::slice::from_ref(&r)), at(now), &cfg)
                .await;
        match result {
            Ok(rep) => {
                assert_eq!(rep.inserted, 1, "{rep:?}");
                assert!(r.start_ms >= first_day, "accepted {r:?}");
                accepted.push(r);
            }
            Err(gpu_usage_core::DomainError::InvalidRecords(p)) => {
                assert!(r.start_ms < first_day, "refused {r:?}: {p:?}");
                let field = if end < now - 90 * DAY + HOUR {
                    "completed_at"
                } else {
                    "started_at"
                };
                assert_eq!(p[0].field, field, "{p:?}");
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(accepted.len() >= 12, "{accepted:?}");
    let rows = run_jobs_twice(db, now, &cfg).await.unwrap();
    assert_model(&rows, &accepted, "accepted records near the retention edge");
    // Every accepted record's completion is counted.
    let done: i64 = rows
        .minute
        .iter()
        .filter(|r| r.scope_type == ScopeType::Global)
        .map(|r| r.total_tasks)
        .sum();
    assert_eq!(
        done,
        accepted.len() as i64,
        "completions counted in minute rows"
    );
}

gpu_usage_testing::guarded_dual_backend_tests! {
    late_records_are_folded_in => late_records_for_old_buckets,
    worker_down_for_an_hour_catches_up => worker_down_for_an_hour,
    accepted_record_near_retention_edge_is_counted => record_near_retention_edge,
}
