//! Retention interplay (docs/ROLLUPS.md, "horizons"): once the finer level of
//! a bucket has been removed, re-aggregating the bucket rebuilds it from the
//! records while they are retained, and leaves it exactly as it is
//! (updated_at included) once the records are gone too: never overwrite good
//! totals with less.
//!
//! Cleanup is simulated the way `retention::cleanup` does it: first
//! `horizon::record_deletion(table, cutoff)`, then a DELETE of the rows
//! older than the cutoff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gpu_usage_core::entities::{record, statistics_hourly, statistics_minute};
use gpu_usage_core::rollup::horizon::{self, RECORDS_TABLE};
use gpu_usage_core::types::Granularity;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use support::*;

/// The day before `now`, and an hour of it (08:00), both well inside every
/// configured retention: only recorded deletions make them "old".
fn day() -> i64 {
    floor(now(), DAY) - DAY
}

fn hour() -> i64 {
    day() + 8 * HOUR
}

/// Records over the day and the next morning, with tasks inside the hour
/// and crossing both its edges.
fn records() -> Vec<Rec> {
    let (d, h) = (day(), hour());
    let mut g = Lcg::new(5);
    let mut recs: Vec<Rec> = (0..80)
        .map(|i| g.rec("r", i, d - HOUR, d + 34 * HOUR, 2 * HOUR))
        .collect();
    recs.extend((0..30).map(|i| g.rec("h", i, h, h + HOUR, 20 * MINUTE)));
    recs.extend([
        Rec::new(
            "into-h",
            "ep-a",
            Some("A100"),
            2,
            h - 30 * MINUTE,
            h + 15 * MINUTE + 500,
            false,
        ),
        Rec::new(
            "out-of-h",
            "ep-a",
            Some("A100"),
            3,
            h + 50 * MINUTE,
            h + HOUR + 10 * MINUTE,
            true,
        ),
        Rec::new("whole-h", "EP-A", None, 1, h, h + HOUR, false),
    ]);
    recs
}

async fn setup(db: &DatabaseConnection) -> (Vec<Rec>, Levels) {
    let recs = records();
    ingest(db, &recs, now(), &cfg()).await.unwrap();
    let rows = run_jobs_twice(db, now(), &cfg()).await.unwrap();
    assert_model(&rows, &recs, "initial rows");
    (recs, rows)
}

/// What `retention::cleanup` does to `table`: the deletion before `cutoff`
/// recorded, then the rows whose `column` is older deleted.
async fn delete_before<C>(db: &DatabaseConnection, table: &str, column: C, cutoff: i64, now: i64)
where
    C: ColumnTrait,
    C::EntityName: EntityTrait,
{
    horizon::record_deletion(db, table, at(cutoff), at(now))
        .await
        .unwrap();
    <C::EntityName as EntityTrait>::delete_many()
        .filter(column.lt(at(cutoff)))
        .exec(db)
        .await
        .unwrap();
}

async fn delete_minutes_before(db: &DatabaseConnection, cutoff: i64, now: i64) {
    let column = statistics_minute::Column::TimeBucket;
    delete_before(db, Granularity::Minute.table_name(), column, cutoff, now).await;
}

async fn delete_hours_before(db: &DatabaseConnection, cutoff: i64, now: i64) {
    let column = statistics_hourly::Column::TimeBucket;
    delete_before(db, Granularity::Hourly.table_name(), column, cutoff, now).await;
}

async fn delete_records_before(db: &DatabaseConnection, cutoff: i64, now: i64) {
    delete_before(db, RECORDS_TABLE, record::Column::CompletedAt, cutoff, now).await;
}

/// Recomputes `level` over `[from, to)` twice; the second run must not
/// change anything.
async fn recompute_twice(
    db: &DatabaseConnection,
    level: Granularity,
    from: i64,
    to: i64,
    now: i64,
) -> Levels {
    recompute(db, level, from, to, now, &cfg()).await.unwrap();
    let first = read_levels(db).await.unwrap();
    recompute(db, level, from, to, now, &cfg()).await.unwrap();
    let second = read_levels(db).await.unwrap();
    assert_unchanged(&second, &first, "a second recompute");
    second
}

fn hourly_and_daily(g: Granularity, _: &Row) -> bool {
    g != Granularity::Minute
}

fn minute(g: Granularity, _: &Row) -> bool {
    g == Granularity::Minute
}

fn daily(g: Granularity, _: &Row) -> bool {
    g == Granularity::Daily
}

/// Minute rows of an old hour removed (whole hour, and everything before):
/// recompute and a late record there rebuild the hour from records.
async fn rebuilt_from_records_after_minute_cleanup(db: &DatabaseConnection) {
    let (mut recs, _) = setup(db).await;
    let (d, h) = (day(), hour());
    let cutoff = h + HOUR;
    delete_minutes_before(db, cutoff, now()).await;

    // Recompute the hour alone, then the whole day (both sides of the cutoff).
    let later = now() + MINUTE;
    let rows = recompute_twice(db, Granularity::Hourly, h, h + HOUR, later).await;
    assert_model_where(
        &rows,
        &recs,
        hourly_and_daily,
        "after recompute of the hour",
    );
    let rows = recompute_twice(db, Granularity::Hourly, d, d + DAY, later).await;
    assert_model_where(&rows, &recs, hourly_and_daily, "after recompute of the day");
    let rows = run_jobs_twice(db, later, &cfg()).await.unwrap();
    assert_model_where(&rows, &recs, hourly_and_daily, "daily after the jobs");
    // Minute rows: exactly the model's from the cutoff on, none before.
    let kept = |_: Granularity, r: &Row| r.bucket >= at(cutoff);
    assert_model_where(
        &rows,
        &recs,
        |g, r| g != Granularity::Minute || kept(g, r),
        "minute rows after the cutoff",
    );
    assert!(
        rows.minute.iter().all(|r| r.bucket >= at(cutoff)),
        "minute rows came back before the cutoff"
    );

    // A late record inside the cleaned hour, through the periodic jobs.
    let late = vec![
        Rec::new(
            "late-1",
            "ep-a",
            Some("A100"),
            4,
            h + 20 * MINUTE + 7,
            h + 25 * MINUTE,
            false,
        ),
        Rec::new(
            "late-2",
            "late-ep",
            Some("l40s"),
            1,
            h - 5 * MINUTE,
            h + 2 * MINUTE,
            true,
        ),
    ];
    let now3 = now() + 10 * MINUTE;
    ingest(db, &late, now3, &cfg()).await.unwrap();
    recs.extend(late.iter().cloned());
    let rows = run_jobs_twice(db, now3, &cfg()).await.unwrap();
    assert_model_where(
        &rows,
        &recs,
        hourly_and_daily,
        "after a late record in the cleaned hour",
    );
    // The minutes the late records touch were rebuilt (from records, whole).
    // Folding recomputes the hull of what is pending in a chunk, so other
    // cleaned minutes between them may come back too: every minute row
    // present must then be exactly the model's.
    let touched = |r: &Row| {
        let b = r.bucket.timestamp_millis();
        late.iter()
            .any(|l| b >= floor(l.start_ms, MINUTE) && b <= floor(l.end_ms, MINUTE))
    };
    let model_minutes = model(&recs).filter(|g, _| g == Granularity::Minute);
    let want_touched = model_minutes.filter(|_, r| r.bucket >= at(cutoff) || touched(r));
    let present = rows.stripped().filter(minute);
    check(
        diff_levels(
            &present.filter(|_, r| r.bucket >= at(cutoff) || touched(r)),
            &want_touched,
        ),
        "minute rows after the late record",
    )
    .unwrap();
    let present_keys = keys(&present.minute);
    let want_present = model_minutes.filter(|_, r| present_keys.contains(&r.key()));
    check(
        diff_levels(&present, &want_present),
        "rebuilt cleaned minutes equal the model",
    )
    .unwrap();
    assert_caught_up(db, now3).await.unwrap();
}

/// The cleanup cut through the middle of the hour: the hour's remaining
/// minute rows are partial and must not be trusted.
async fn mid_hour_minute_cleanup(db: &DatabaseConnection) {
    let (recs, _) = setup(db).await;
    let (d, h) = (day(), hour());
    delete_minutes_before(db, h + 30 * MINUTE, now()).await;
    let rows = recompute_twice(db, Granularity::Hourly, d, d + DAY, now() + MINUTE).await;
    assert_model_where(&rows, &recs, hourly_and_daily, "after recompute");
    // Also through the periodic jobs: the recompute queued the day for daily.
    let rows = run_jobs_twice(db, now() + MINUTE, &cfg()).await.unwrap();
    assert_model_where(&rows, &recs, hourly_and_daily, "after the jobs");
}

/// Hourly rows of the day removed, records retained: the daily row is
/// rebuilt from records.
async fn daily_rebuilt_from_records_after_hourly_cleanup(db: &DatabaseConnection) {
    let (recs, _) = setup(db).await;
    let d = day();
    delete_minutes_before(db, d + DAY, now()).await;
    delete_hours_before(db, d + DAY, now()).await;
    let rows = recompute_twice(db, Granularity::Daily, d - DAY, d + 2 * DAY, now() + MINUTE).await;
    assert_model_where(&rows, &recs, daily, "daily after hourly cleanup");
    assert!(
        rows.hourly.iter().all(|r| r.bucket >= at(d + DAY)),
        "hourly rows came back"
    );
}

/// Minute rows and records of the old hour (and everything before) are
/// gone: re-aggregating leaves the hourly and daily rows untouched.
async fn untouched_when_records_are_gone(db: &DatabaseConnection) {
    let (recs, _) = setup(db).await;
    let (d, h) = (day(), hour());
    let cutoff = h + HOUR;
    delete_minutes_before(db, cutoff, now()).await;
    delete_records_before(db, cutoff, now()).await;
    let before = read_levels(db).await.unwrap();
    let later = now() + 5 * MINUTE;

    // Hours before the cutoff: no source left; nothing may change.
    let rows = recompute_twice(db, Granularity::Hourly, d, cutoff, later).await;
    assert_unchanged(&rows, &before, "recompute of cleaned hours");
    let rows = recompute_twice(db, Granularity::Minute, h, cutoff, later).await;
    assert_eq!(
        rows, before,
        "minute recompute without records changed rows"
    );
    let rows = run_jobs_twice(db, later, &cfg()).await.unwrap();
    assert_eq!(rows, before, "the jobs changed rows");

    // The whole day: hours after the cutoff are rebuilt (from minute rows),
    // the cleaned ones kept; the daily row, from hourly rows, stays right.
    recompute_twice(db, Granularity::Hourly, d, d + DAY, later).await;
    let rows = run_jobs_twice(db, later, &cfg()).await.unwrap();
    assert_model_where(&rows, &recs, hourly_and_daily, "after recompute of the day");

    // Now the day's hourly rows go too: the daily row has no source left.
    delete_hours_before(db, d + DAY, later).await;
    let before = read_levels(db).await.unwrap();
    let rows = recompute_twice(db, Granularity::Daily, d, d + DAY, later + MINUTE).await;
    assert_unchanged(&rows, &before, "daily recompute without sources");
    let rows = run_jobs_twice(db, later + MINUTE, &cfg()).await.unwrap();
    assert_eq!(rows, before);
    // And the daily rows still equal the model of every record ever stored.
    assert_model_where(&rows, &recs, daily, "daily rows kept");
}

gpu_usage_testing::guarded_dual_backend_tests! {
    minute_cleanup_then_reaggregate => rebuilt_from_records_after_minute_cleanup,
    mid_hour_minute_cleanup_then_reaggregate => mid_hour_minute_cleanup,
    hourly_cleanup_then_reaggregate_daily => daily_rebuilt_from_records_after_hourly_cleanup,
    records_cleanup_leaves_rows_untouched => untouched_when_records_are_gone,
}
