//! Retention cleanup on SQLite and MariaDB: expired rows go,
//! fresh rows and daily rows stay, deletes are batched, horizons are
//! recorded before deleting, a failing table does not stop the others.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::backfill::BackfillStatus;
use gpu_usage_core::entities::{
    backfill_job, job_run, record, retention_horizon, statistics_daily, statistics_hourly,
    statistics_minute,
};
use gpu_usage_core::job_runs::RunOutcome;
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::retention::{self, BACKFILL_JOBS_TABLE, JOB_RUNS_TABLE};
use gpu_usage_core::settings::RetentionSettings;
use gpu_usage_core::types::Granularity;
use gpu_usage_core::types::Levels;
use gpu_usage_testing::{TestDb, daily_row, hourly_row, insert_row, minute_row, record_row};
use sea_orm::ActiveEnum;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryOrder};

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    ts("2026-06-15T12:34:56.789Z")
}

async fn add_record(db: &DatabaseConnection, task: &str, completed: DateTime<Utc>) {
    let started = completed - TimeDelta::minutes(10);
    insert_row(db, record_row(task, "ep", 1, started, completed)).await;
}

async fn add_job_run(db: &DatabaseConnection, started: DateTime<Utc>) {
    let run = job_run::ActiveModel {
        id: NotSet,
        job: Set(JobName::MinuteRollup),
        runner: Set("test".to_owned()),
        started_at: Set(started),
        finished_at: Set(Some(started + TimeDelta::seconds(1))),
        outcome: Set(RunOutcome::Succeeded),
        rows_written: Set(0),
        detail: Set(None),
    };
    insert_row(db, run).await;
}

async fn add_backfill(db: &DatabaseConnection, status: &str, finished: Option<DateTime<Utc>>) {
    let start = ts("2026-01-01T00:00:00Z");
    let job = backfill_job::ActiveModel {
        id: NotSet,
        range_start: Set(start),
        range_end: Set(start + TimeDelta::days(1)),
        granularity: Set(Levels::All),
        status: Set(BackfillStatus::try_from_value(&status.to_owned()).unwrap()),
        next_chunk_start: Set(start),
        chunks_total: Set(1),
        chunks_done: Set(0),
        error: Set(None),
        created_at: Set(start),
        updated_at: Set(start),
        started_at: Set(None),
        finished_at: Set(finished),
    };
    insert_row(db, job).await;
}

/// One expired and one fresh row per table (daily: one very old, one fresh;
/// backfills: an old finished one, a fresh finished one, an old pending one).
async fn seed(db: &DatabaseConnection) {
    let n = now();
    let ago = |days| n - TimeDelta::days(days);
    add_record(db, "old", ago(91)).await;
    add_record(db, "fresh", ago(1)).await;
    insert_row(db, minute_row(Granularity::Minute.floor(ago(4)))).await;
    insert_row(db, minute_row(Granularity::Minute.floor(ago(1)))).await;
    insert_row(db, hourly_row(Granularity::Hourly.floor(ago(31)))).await;
    insert_row(db, hourly_row(Granularity::Hourly.floor(ago(1)))).await;
    insert_row(db, daily_row(Granularity::Daily.floor(ago(400)))).await;
    insert_row(db, daily_row(Granularity::Daily.floor(ago(1)))).await;
    add_job_run(db, ago(15)).await;
    add_job_run(db, ago(1)).await;
    add_backfill(db, "succeeded", Some(ago(15))).await;
    add_backfill(db, "failed", Some(ago(1))).await;
    add_backfill(db, "pending", None).await;
}

async fn counts(db: &DatabaseConnection) -> [u64; 6] {
    [
        record::Entity::find().count(db).await.unwrap(),
        statistics_minute::Entity::find().count(db).await.unwrap(),
        statistics_hourly::Entity::find().count(db).await.unwrap(),
        statistics_daily::Entity::find().count(db).await.unwrap(),
        job_run::Entity::find().count(db).await.unwrap(),
        backfill_job::Entity::find().count(db).await.unwrap(),
    ]
}

/// What `seed` stored fresh is still there, and only that.
async fn assert_fresh_rows_kept(db: &DatabaseConnection) {
    let tasks: Vec<String> = record::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.task_id)
        .collect();
    assert_eq!(tasks, ["fresh"]);
    let yesterday = now() - TimeDelta::days(1);
    let minute = statistics_minute::Entity::find().one(db).await.unwrap();
    assert_eq!(
        minute.unwrap().time_bucket,
        Granularity::Minute.floor(yesterday)
    );
    let hour = statistics_hourly::Entity::find().one(db).await.unwrap();
    assert_eq!(
        hour.unwrap().time_bucket,
        Granularity::Hourly.floor(yesterday)
    );
    let statuses: Vec<String> = backfill_job::Entity::find()
        .order_by_asc(backfill_job::Column::Id)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.status.to_value())
        .collect();
    assert_eq!(
        statuses,
        ["failed", "pending"],
        "an old pending backfill is still work to do"
    );
}

/// Horizons were recorded at the cutoffs, for the rollup tables only.
async fn assert_horizons_at_the_cutoffs(db: &DatabaseConnection) {
    let horizons = retention_horizon::Entity::find()
        .order_by_asc(retention_horizon::Column::TableName)
        .all(db)
        .await
        .unwrap();
    let h: Vec<(String, DateTime<Utc>)> = horizons
        .into_iter()
        .map(|h| (h.table_name, h.deleted_before))
        .collect();
    assert_eq!(
        h,
        vec![
            ("gpu_usage_records".to_owned(), now() - TimeDelta::days(90)),
            (
                "gpu_usage_statistics_hourly".to_owned(),
                Granularity::Hourly.floor(now() - TimeDelta::days(30))
            ),
            (
                "gpu_usage_statistics_minute".to_owned(),
                Granularity::Minute.floor(now() - TimeDelta::days(3))
            ),
        ]
    );
}

async fn expired_rows_go_fresh_rows_stay(t: TestDb) {
    let db = &t.db;
    seed(db).await;
    let settings = RetentionSettings::default();
    let report = retention::cleanup(db, now(), &settings).await;
    assert!(report.is_ok(), "{report:?}");
    let deleted = |table: &str| report.table(table).unwrap().deleted;
    assert_eq!(deleted("gpu_usage_records"), 1);
    assert_eq!(deleted(Granularity::Minute.table_name()), 1);
    assert_eq!(deleted(Granularity::Hourly.table_name()), 1);
    assert_eq!(deleted(Granularity::Daily.table_name()), 0);
    assert_eq!(
        report
            .table(Granularity::Daily.table_name())
            .unwrap()
            .cutoff,
        None,
        "daily kept forever"
    );
    assert_eq!(deleted(JOB_RUNS_TABLE), 1);
    assert_eq!(deleted(BACKFILL_JOBS_TABLE), 1);
    assert_eq!(report.deleted(), 5);
    assert_eq!(counts(db).await, [1, 1, 1, 2, 1, 2]);

    assert_fresh_rows_kept(db).await;
    assert_horizons_at_the_cutoffs(db).await;

    // Idempotent: a second run deletes nothing.
    let again = retention::cleanup(db, now(), &settings).await;
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(again.deleted(), 0, "{}", again.summary());
    assert_eq!(counts(db).await, [1, 1, 1, 2, 1, 2]);

    // An earlier clock never moves a horizon back.
    retention::cleanup(db, now() - TimeDelta::days(10), &settings).await;
    let records_h = retention_horizon::Entity::find_by_id("gpu_usage_records".to_owned())
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(records_h.deleted_before, now() - TimeDelta::days(90));

    // daily_days > 0 deletes old daily rows.
    let with_daily = RetentionSettings {
        daily_days: 365,
        ..RetentionSettings::default()
    };
    let r = retention::cleanup(db, now(), &with_daily).await;
    assert_eq!(r.table(Granularity::Daily.table_name()).unwrap().deleted, 1);
    assert_eq!(statistics_daily::Entity::find().count(db).await.unwrap(), 1);
    t.cleanup().await;
}

async fn small_batches_delete_everything(t: TestDb) {
    let db = &t.db;
    let old = Granularity::Minute.floor(now() - TimeDelta::days(5));
    for i in 0..25 {
        insert_row(db, minute_row(old + TimeDelta::minutes(i))).await;
        add_record(
            db,
            &format!("old-{i}"),
            now() - TimeDelta::days(100) + TimeDelta::minutes(i),
        )
        .await;
    }
    insert_row(db, minute_row(Granularity::Minute.floor(now()))).await;
    let settings = RetentionSettings {
        delete_batch_size: 4,
        ..RetentionSettings::default()
    };
    let report = retention::cleanup(db, now(), &settings).await;
    assert!(report.is_ok(), "{report:?}");
    let minute = report.table(Granularity::Minute.table_name()).unwrap();
    assert_eq!(minute.deleted, 25);
    assert_eq!(minute.batches, 7, "ceil(25 / 4) rounds");
    assert_eq!(report.table("gpu_usage_records").unwrap().deleted, 25);
    assert_eq!(
        statistics_minute::Entity::find().count(db).await.unwrap(),
        1
    );
    assert_eq!(record::Entity::find().count(db).await.unwrap(), 0);
    t.cleanup().await;
}

async fn a_failing_table_does_not_stop_the_others(t: TestDb) {
    let db = &t.db;
    seed(db).await;
    db.execute_unprepared("DROP TABLE gpu_usage_statistics_minute")
        .await
        .unwrap();
    let report = retention::cleanup(db, now(), &RetentionSettings::default()).await;
    assert!(!report.is_ok());
    let failed: Vec<&str> = report.failures().map(|f| f.table).collect();
    assert_eq!(failed, [Granularity::Minute.table_name()]);
    assert!(report.summary().contains("failed"), "{}", report.summary());
    assert_eq!(report.table("gpu_usage_records").unwrap().deleted, 1);
    assert_eq!(
        report
            .table(Granularity::Hourly.table_name())
            .unwrap()
            .deleted,
        1
    );
    assert_eq!(report.table(JOB_RUNS_TABLE).unwrap().deleted, 1);
    assert_eq!(report.table(BACKFILL_JOBS_TABLE).unwrap().deleted, 1);
    t.cleanup().await;
}

gpu_usage_testing::dual_backend_tests! {
    expired_rows_go_fresh_rows_stay => expired_rows_go_fresh_rows_stay,
    small_batches_delete_everything => small_batches_delete_everything,
    a_failing_table_does_not_stop_the_others => a_failing_table_does_not_stop_the_others,
}
