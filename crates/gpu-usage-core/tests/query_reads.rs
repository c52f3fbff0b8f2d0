//! Reads against real tables on both backends, with rows written
//! directly (independent of the rollup engine).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::DomainError;
use gpu_usage_core::entities::{record, statistics_daily, statistics_hourly};
use gpu_usage_core::level::{Daily, Hourly, Level, Row};
use gpu_usage_core::query::*;
use gpu_usage_core::types::{ScopeFilter, ScopeType, TaskStatus, TimeRange};
use gpu_usage_testing::{TestDb, daily_row, hourly_row, record_row};
use rust_decimal::Decimal;
use sea_orm::{ActiveModelTrait, NotSet, Set};

fn t(s: &str) -> DateTime<Utc> {
    gpu_usage_core::types::parse_utc("t", s).unwrap()
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// An hourly row whose GPU time is `ms` and whose tasks all used
/// `gpus` GPUs.
async fn hourly(
    db: &TestDb,
    hour: &str,
    scope: ScopeType,
    value: Option<&str>,
    tasks: i32,
    gpus: i32,
    ms: i64,
) {
    let start = t(hour);
    statistics_hourly::ActiveModel {
        scope_type: Set(scope),
        scope_value: Set(value.map(str::to_owned)),
        total_tasks: Set(tasks),
        completed_tasks: Set(tasks),
        total_gpu_hours: Set(Decimal::from(ms) / Decimal::from(3_600_000)),
        avg_gpu_count: Set(if tasks > 0 {
            Decimal::from(gpus)
        } else {
            Decimal::ZERO
        }),
        max_gpu_count: Set(if tasks > 0 { gpus } else { 0 }),
        gpu_milliseconds: Set(ms),
        gpu_count_sum: Set(i64::from(tasks) * i64::from(gpus)),
        peak_minute: Set((ms > 0).then_some(start)),
        peak_gpu_hours: Set((ms > 0).then(|| dec("0.5"))),
        ..hourly_row(start)
    }
    .insert(&db.db)
    .await
    .unwrap();
}

fn query(scope: ScopeFilter, from: &str, to: &str, limit: u64) -> StatsQuery {
    StatsQuery {
        scope,
        range: TimeRange::new(t(from), t(to)).unwrap(),
        page: PageRequest::first(limit),
    }
}

async fn all_pages<L: Level>(
    db: &TestDb,
    mut q: StatsQuery,
) -> (Vec<L::Row>, Vec<StatsPage<L::Row>>) {
    let mut rows = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = statistics::<L>(&db.db, &q).await.unwrap();
        rows.extend(page.rows.clone());
        let next = page.next_cursor.clone();
        pages.push(page);
        match next {
            Some(c) => q.page.cursor = Some(c),
            None => break,
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
    (rows, pages)
}

/// Hourly rows of 00:00–03:00 per endpoint and global, inserted out of
/// order on purpose (the order must come from the query), and a global
/// one outside the range.
async fn seed_hours(db: &TestDb) {
    let (endpoint, global) = (ScopeType::Endpoint, ScopeType::Global);
    for (hour, scope, value, tasks, gpus, ms) in [
        ("2026-01-01T02:00:00Z", endpoint, Some("b"), 1, 8, 7_200_000),
        ("2026-01-01T00:00:00Z", endpoint, Some("b"), 2, 2, 3_600_000),
        ("2026-01-01T00:00:00Z", endpoint, Some("a"), 1, 1, 1_800_000),
        (
            "2026-01-01T01:00:00Z",
            endpoint,
            Some("a"),
            3,
            4,
            10_800_000,
        ),
        ("2026-01-01T02:00:00Z", endpoint, Some("a"), 0, 0, 3_600_000),
        ("2026-01-01T00:00:00Z", global, None, 3, 2, 5_400_000),
        ("2026-01-01T01:00:00Z", global, None, 3, 4, 10_800_000),
        ("2026-01-01T02:00:00Z", global, None, 1, 8, 10_800_000),
        // Outside the range: must not count.
        ("2026-01-01T03:00:00Z", global, None, 9, 9, 99_000_000),
    ] {
        hourly(db, hour, scope, value, tasks, gpus, ms).await;
    }
}

/// One page of `L` rows of `scope` in `[from, to)`.
async fn read_page<L: Level>(
    db: &TestDb,
    scope: ScopeFilter,
    from: &str,
    to: &str,
    limit: u64,
) -> StatsPage<L::Row> {
    statistics::<L>(&db.db, &query(scope, from, to, limit))
        .await
        .unwrap()
}

const HOUR_0: &str = "2026-01-01T00:00:00Z";
const HOUR_3: &str = "2026-01-01T03:00:00Z";

async fn pages_summary_and_order(t_db: TestDb) {
    let db = &t_db;
    seed_hours(db).await;
    let every_endpoint = ScopeFilter::new(ScopeType::Endpoint, None).unwrap();
    let full = read_page::<Hourly>(db, every_endpoint.clone(), HOUR_0, HOUR_3, 5000).await;
    let order: Vec<(String, String)> = full
        .rows
        .iter()
        .map(|r| {
            (
                r.time_bucket.format("%H").to_string(),
                r.scope_value.clone().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("00", "a"),
        ("00", "b"),
        ("01", "a"),
        ("02", "a"),
        ("02", "b"),
    ]
    .iter()
    .map(|(h, v)| (h.to_string(), v.to_string()))
    .collect();
    assert_eq!(order, expected);
    assert_eq!(full.total, 5);
    assert_eq!(full.next_cursor, None);
    let s = &full.summary;
    assert_eq!(s.total_tasks, 7);
    assert_eq!(s.gpu_milliseconds, 27_000_000);
    assert_eq!(s.total_gpu_hours, 7.5);
    // (1*1 + 2*2 + 3*4 + 1*8) / 7 = 25/7, task-weighted.
    assert_eq!(s.avg_gpu_count, 3.57);
    assert_eq!(s.max_gpu_count, 8);
    // Hour 02 has 3 h over both endpoints, hour 01 also 3 h: tie, earliest wins.
    assert_eq!(s.peak_time_bucket, Some(t("2026-01-01T01:00:00Z")));
    assert_eq!(s.peak_gpu_hours.map(f64::from), Some(3.0));
    assert_eq!(full.rows[0].total_gpu_hours, 0.5);
    assert!(full.rows[0].peak_gpu_hours.map(f64::from) == Some(0.5));

    // Every page size yields the same rows exactly once, and the same
    // total and summary on every page.
    for limit in 1..=6 {
        let (rows, pages) =
            all_pages::<Hourly>(db, query(every_endpoint.clone(), HOUR_0, HOUR_3, limit)).await;
        assert_eq!(rows, full.rows, "limit {limit}");
        for p in &pages {
            assert_eq!(p.total, 5);
            assert_eq!(p.summary, full.summary);
            assert!(p.rows.len() as u64 <= limit);
        }
    }

    scopes_cursors_and_empty_reads(db, &every_endpoint).await;
    t_db.cleanup().await;
}

/// The rest of `pages_summary_and_order` over the same rows.
async fn scopes_cursors_and_empty_reads(db: &TestDb, every_endpoint: &ScopeFilter) {
    // One value of a scope; global excludes endpoint rows.
    let one = read_page::<Hourly>(
        db,
        ScopeFilter::new(ScopeType::Endpoint, Some("a".into())).unwrap(),
        HOUR_0,
        HOUR_3,
        10,
    )
    .await;
    assert_eq!(one.total, 3);
    assert!(
        one.rows
            .iter()
            .all(|r| r.scope_value.as_deref() == Some("a"))
    );
    let global = read_page::<Hourly>(
        db,
        ScopeFilter::global(),
        "2026-01-01T01:00:00Z",
        "2026-01-01T03:00:00Z",
        10,
    )
    .await;
    assert_eq!(global.total, 2, "half-open: 01:00 and 02:00 only");
    assert!(global.rows.iter().all(|r| r.scope_value.is_none()));
    // Whole numbers stored in DECIMAL columns read back (SQLite keeps them as INTEGER).
    assert_eq!(global.rows[0].total_gpu_hours, 3.0);
    assert_eq!(global.rows[0].avg_gpu_count, 4.0);

    // A cursor from another query is refused, not misapplied.
    let first = read_page::<Hourly>(db, every_endpoint.clone(), HOUR_0, HOUR_3, 1).await;
    let mut other = query(ScopeFilter::global(), HOUR_0, HOUR_3, 1);
    other.page.cursor = first.next_cursor;
    assert!(matches!(
        statistics::<Hourly>(&db.db, &other).await,
        Err(DomainError::Invalid { .. })
    ));

    // Nothing matches: empty rows, zero summary, no peak.
    let none = read_page::<Hourly>(
        db,
        ScopeFilter::global(),
        "2025-01-01T00:00:00Z",
        "2025-01-02T00:00:00Z",
        10,
    )
    .await;
    assert!(none.rows.is_empty());
    assert_eq!(none.total, 0);
    assert_eq!(none.summary.total_gpu_hours, 0.0);
    assert_eq!(none.summary.avg_gpu_count, 0.0);
    assert_eq!(none.summary.peak_time_bucket, None);
    assert_eq!(none.summary.peak_gpu_hours, None);

    let scopes = scopes(&db.db).await.unwrap();
    assert_eq!(scopes.endpoints, vec!["a".to_owned(), "b".to_owned()]);
    assert!(scopes.specs.is_empty());
}

async fn daily_includes_the_day_holding_start(t_db: TestDb) {
    let db = &t_db;
    for day in ["2026-01-01", "2026-01-02", "2026-01-03"] {
        // No peak and no capacity but a utilization rate.
        statistics_daily::ActiveModel {
            total_gpu_hours: Set(dec("1.25")),
            gpu_milliseconds: Set(4_500_000),
            peak_hour: NotSet,
            peak_gpu_hours: NotSet,
            available_gpu_hours: NotSet,
            utilization_rate: Set(Some(dec("0.1234"))),
            ..daily_row(t(&format!("{day}T00:00:00Z")))
        }
        .insert(&db.db)
        .await
        .unwrap();
    }
    let page = read_page::<Daily>(
        db,
        ScopeFilter::global(),
        "2026-01-01T12:00:00Z",
        "2026-01-02T00:00:00Z",
        10,
    )
    .await;
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.rows[0].time_bucket(), t("2026-01-01T00:00:00Z"));
    let page = read_page::<Daily>(
        db,
        ScopeFilter::global(),
        "2026-01-01T12:00:00Z",
        "2026-01-02T00:00:01Z",
        10,
    )
    .await;
    assert_eq!(page.total, 2);
    assert_eq!(page.summary.total_gpu_hours, 2.5);
    let day = &page.rows[1];
    assert_eq!(day.utilization_rate.map(f64::from), Some(0.1234));
    assert_eq!(day.available_gpu_hours, None);
    assert_eq!(day.peak_hour, None);
    let (rows, _) = all_pages::<Daily>(
        db,
        query(
            ScopeFilter::global(),
            "2026-01-01T00:00:00Z",
            "2026-01-04T00:00:00Z",
            2,
        ),
    )
    .await;
    assert_eq!(rows.len(), 3);
    t_db.cleanup().await;
}

/// Seven records, four completing at the same instant (the id breaks the
/// tie), on endpoints a and b, one with a spec, one FAILED.
async fn seed_records(db: &TestDb) {
    for i in 0..7 {
        let completed = if i < 4 {
            t("2026-01-01T00:10:00.250Z")
        } else {
            t("2026-01-01T00:20:00Z")
        };
        let ep = if i % 2 == 0 { "a" } else { "b" };
        record::ActiveModel {
            spec_name: Set((i == 3).then(|| "h100".to_owned())),
            gpu_memory_gb: Set(Some(80)),
            status: Set(if i == 5 {
                TaskStatus::Failed
            } else {
                TaskStatus::Completed
            }),
            ..record_row(
                &format!("task-{i}"),
                ep,
                2,
                completed - TimeDelta::hours(1),
                completed,
            )
        }
        .insert(&db.db)
        .await
        .unwrap();
    }
}

async fn records_filter_and_paginate(t_db: TestDb) {
    let db = &t_db;
    seed_records(db).await;
    let range = TimeRange::new(t("2026-01-01T00:00:00Z"), t("2026-01-01T01:00:00Z")).unwrap();
    let all = RecordFilter {
        range,
        endpoint: None,
        spec_name: None,
        status: None,
    };
    let full = records(&db.db, &all, &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(full.total, 7);
    assert_eq!(full.rows[0].gpu_hours, 2.0);
    assert_eq!(
        full.rows[0].task.completed_at,
        t("2026-01-01T00:10:00.250Z")
    );
    for limit in 1..=7 {
        let mut page = PageRequest::first(limit);
        let mut seen = Vec::new();
        loop {
            let p = records(&db.db, &all, &page).await.unwrap();
            assert_eq!(p.total, 7);
            seen.extend(p.rows.iter().map(|r| r.task.task_id.clone()));
            match p.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        let expected: Vec<String> = full.rows.iter().map(|r| r.task.task_id.clone()).collect();
        assert_eq!(seen, expected, "limit {limit}");
    }
    let filtered = RecordFilter {
        range,
        endpoint: Some("b".into()),
        spec_name: None,
        status: Some(TaskStatus::Failed),
    };
    let p = records(&db.db, &filtered, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(
        p.rows
            .iter()
            .map(|r| r.task.task_id.as_str())
            .collect::<Vec<_>>(),
        ["task-5"]
    );
    let by_spec = RecordFilter {
        range,
        endpoint: None,
        spec_name: Some("h100".into()),
        status: None,
    };
    assert_eq!(
        records(&db.db, &by_spec, &PageRequest::first(10))
            .await
            .unwrap()
            .total,
        1
    );
    let later = RecordFilter {
        range: TimeRange::new(t("2026-01-01T00:10:00.251Z"), t("2026-01-01T01:00:00Z")).unwrap(),
        ..all.clone()
    };
    assert_eq!(
        records(&db.db, &later, &PageRequest::first(10))
            .await
            .unwrap()
            .total,
        3
    );
    t_db.cleanup().await;
}

gpu_usage_testing::dual_backend_tests! {
    pages_summary_and_order_all => pages_summary_and_order,
    daily_includes_the_day_holding_start_all => daily_includes_the_day_holding_start,
    records_filter_and_paginate_all => records_filter_and_paginate,
}
