//! A worked example through the whole engine on both backends: numbers a
//! reader can check by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use gpu_usage_core::entities::{statistics_daily, statistics_hourly, statistics_minute};
use gpu_usage_core::ingest::ingest;
use gpu_usage_core::record::{InvalidRecord, Record};
use gpu_usage_core::rollup::process_pending;
use gpu_usage_core::types::{Granularity, ScopeType, parse_utc};
use gpu_usage_core::{EngineConfig, status};
use gpu_usage_testing::TestDb;
use gpu_usage_testing::wire;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

fn t(s: &str) -> DateTime<Utc> {
    parse_utc("t", s).unwrap()
}

fn rec(
    id: &str,
    ep: &str,
    spec: Option<&str>,
    gpus: i64,
    s: &str,
    e: &str,
    status: &str,
) -> Result<Record, InvalidRecord> {
    wire(serde_json::json!({
        "task_id": id, "endpoint": ep, "spec_name": spec, "gpu_count": gpus,
        "started_at": s, "completed_at": e, "status": status,
    }))
}

/// The global rows of `$table`, oldest first.
macro_rules! global_rows {
    ($table:ident, $db:expr) => {
        $table::Entity::find()
            .filter($table::Column::ScopeType.eq(ScopeType::Global))
            .order_by_asc($table::Column::TimeBucket)
            .all($db)
            .await
            .unwrap()
    };
}

async fn run_all(db: &sea_orm::DatabaseConnection, now: DateTime<Utc>, cfg: &EngineConfig) {
    for g in Granularity::ALL {
        process_pending(db, g, now, cfg).await.unwrap();
    }
}

/// The worked example's rows, checked by hand.
async fn assert_worked_example_rows(db: &sea_orm::DatabaseConnection) {
    let minutes = global_rows!(statistics_minute, db);
    let ms: Vec<(String, i64, i32)> = minutes
        .iter()
        .map(|m| {
            (
                m.time_bucket.format("%H:%M").to_string(),
                m.gpu_milliseconds,
                m.total_tasks,
            )
        })
        .collect();
    assert_eq!(
        ms,
        vec![
            ("23:58".into(), 60_000, 0),
            ("23:59".into(), 120_000, 0),
            ("00:00".into(), 120_000 + 49_500, 0),
            ("00:01".into(), 40_500, 2),
        ]
    );
    let last = minutes.last().unwrap();
    assert_eq!(last.failed_tasks, 1);
    assert_eq!(last.avg_gpu_count, Decimal::new(150, 2));

    let hours = global_rows!(statistics_hourly, db);
    assert_eq!(hours.len(), 2);
    assert_eq!(hours[1].gpu_milliseconds, 210_000);
    assert_eq!(hours[1].peak_minute, Some(t("2026-03-02T00:00:00Z")));
    assert_eq!(hours[0].peak_minute, Some(t("2026-03-01T23:59:00Z")));

    let days = statistics_daily::Entity::find()
        .order_by_asc(statistics_daily::Column::TimeBucket)
        .all(db)
        .await
        .unwrap();
    // Day 1: global + ep-1 + a100. Day 2: global, ep-1, ep-2, a100.
    assert_eq!(days.len(), 7, "{days:#?}");
    let d2 = days
        .iter()
        .find(|d| d.scope_type == ScopeType::Global && d.time_bucket.to_string() == "2026-03-02")
        .unwrap();
    assert_eq!(
        (d2.total_tasks, d2.completed_tasks, d2.failed_tasks),
        (2, 1, 1)
    );
    assert_eq!(d2.gpu_milliseconds, 210_000);
    assert_eq!(d2.peak_hour, Some(t("2026-03-02T00:00:00Z")));
    assert_eq!(d2.max_gpu_count, 2);
}

async fn worked_example(tdb: TestDb) {
    let db = &tdb.db;
    let cfg = EngineConfig::default();
    let now = t("2026-03-02T00:30:00Z");
    let report = ingest(
        db,
        vec![
            // 2 GPUs from 23:58:30 to 00:01:00 across midnight: 300 GPU-s.
            rec(
                "a",
                "ep-1",
                Some("a100"),
                2,
                "2026-03-01T23:58:30Z",
                "2026-03-02T00:01:00Z",
                "COMPLETED",
            ),
            // 1 GPU, 90 s inside 00:00, failed.
            rec(
                "b",
                "ep-2",
                Some(""),
                1,
                "2026-03-02T00:00:10.500Z",
                "2026-03-02T00:01:40.500Z",
                "failed",
            ),
        ],
        now,
        &cfg,
    )
    .await
    .unwrap();
    assert_eq!((report.inserted, report.duplicates), (2, 0));
    // Record a touches 23:58..00:01 and b 00:00..00:01: 4 distinct minutes.
    let st = status::rollup_status(db, now).await.unwrap();
    assert_eq!(
        (st[0].pending_ranges, st[0].pending_buckets),
        (1, 4),
        "{st:?}"
    );

    for _ in 0..2 {
        run_all(db, now, &cfg).await;
        assert_worked_example_rows(db).await;
    }
    let st = status::rollup_status(db, now).await.unwrap();
    assert!(st.iter().all(|l| l.pending_ranges == 0), "{st:?}");
    tdb.cleanup().await;
}

/// A 30-day backfill must not issue hundreds of thousands of queries (the
/// statement count is bounded by chunks, not buckets: docs/ROLLUPS.md).
/// Counts every statement (transactions included) of rebuilding 30 days at
/// all three levels.
async fn thirty_day_rebuild_is_set_based(mut tdb: TestDb) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let cfg = EngineConfig::default();
    let now = t("2026-03-31T12:00:00Z");
    let start = t("2026-03-01T00:00:00Z");
    let inputs: Vec<_> = (0..120)
        .map(|i| {
            let s = start + chrono::TimeDelta::hours(6 * i);
            let e = s + chrono::TimeDelta::minutes(90);
            rec(
                &format!("t{i}"),
                &format!("ep-{}", i % 7),
                Some("h100"),
                1 + i % 4,
                &s.to_rfc3339(),
                &e.to_rfc3339(),
                "COMPLETED",
            )
        })
        .collect();
    ingest(&tdb.db, inputs, now, &cfg).await.unwrap();

    // A manual rebuild that covers what ingest queued leaves nothing for
    // the periodic minute job.
    let all =
        gpu_usage_core::types::TimeRange::new(start - chrono::TimeDelta::days(1), now).unwrap();
    let r = gpu_usage_core::rollup::recompute(&tdb.db, Granularity::Minute, all, now, &cfg)
        .await
        .unwrap();
    assert!(r.pending_consumed > 0);
    let st = status::rollup_status(&tdb.db, now).await.unwrap();
    assert_eq!(st[0].pending_ranges, 0, "{st:?}");

    let statements = Arc::new(AtomicU64::new(0));
    let counter = statements.clone();
    tdb.db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let range = gpu_usage_core::types::TimeRange::new(start, t("2026-03-31T00:00:00Z")).unwrap();
    let mut rows = 0;
    for _ in 0..2 {
        for g in Granularity::ALL {
            rows += gpu_usage_core::rollup::recompute(&tdb.db, g, range, now, &cfg)
                .await
                .unwrap()
                .rows_written;
        }
    }
    let n = statements.load(Ordering::Relaxed);
    println!("30-day rebuild of all levels, twice: {n} statements, {rows} rows written");
    assert!(rows > 0);
    assert!(n < 5_000, "{n} statements for two 30-day rebuilds");
    tdb.cleanup().await;
}

/// Two ingests racing on one task_id with different content: one record is
/// stored, and the other call reports a conflict (never a silent duplicate),
/// whether it lost at the read or at the insert.
async fn racing_ingests_report_the_conflict(tdb: TestDb) {
    let cfg = EngineConfig::default();
    let now = t("2026-03-02T00:30:00Z");
    for round in 0..10 {
        let id = format!("race-{round}");
        // The same task with 1 and with 2 GPUs.
        let task = |gpus| {
            let (start, end) = ("2026-03-02T00:00:00Z", "2026-03-02T00:01:00Z");
            vec![rec(&id, "ep", None, gpus, start, end, "COMPLETED")]
        };
        let (a, b) = (task(1), task(2));
        let (ra, rb) = tokio::join!(ingest(&tdb.db, a, now, &cfg), ingest(&tdb.db, b, now, &cfg));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.inserted + rb.inserted, 1, "{ra:?} {rb:?}");
        assert_eq!(ra.conflicts.len() + rb.conflicts.len(), 1, "{ra:?} {rb:?}");
        assert_eq!(ra.duplicates + rb.duplicates, 0, "{ra:?} {rb:?}");
    }
    tdb.cleanup().await;
}

gpu_usage_testing::dual_backend_tests! {
    worked_example_both_backends => worked_example,
    thirty_day_rebuild_statement_count => thirty_day_rebuild_is_set_based,
    racing_ingests => racing_ingests_report_the_conflict,
}
