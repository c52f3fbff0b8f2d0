//! All timestamps are stored and read as UTC: every MySQL session opened by
//! `gpu_usage_core::db::connect` runs in UTC whatever the server's zone, and a
//! `DateTime<Utc>` written through the entities comes back as the same instant.
//!
//! The MariaDB test changes the server's GLOBAL time zone for a few
//! milliseconds (only sessions opened in that window inherit it; the pools of
//! tests running in parallel pin their sessions to UTC themselves) and puts it
//! back in a guard that also runs on panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use gpu_usage_core::db;
use gpu_usage_core::entities::record;
use gpu_usage_testing::{
    Backend, TestDb, database_settings, find_record, mysql_server_url, record_row,
};
use sea_orm::sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection, MySqlPool};
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, Connection as _};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
};
use secrecy::ExposeSecret;

/// The zone the server is switched to: far enough from UTC that any session
/// inheriting it is caught by a seconds-scale comparison.
const FOREIGN_ZONE: &str = "+05:00";

fn quoted_zone(zone: &str) -> String {
    assert!(
        !zone.is_empty()
            && zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-:/_".contains(c)),
        "unexpected time zone name {zone:?}"
    );
    format!("'{zone}'")
}

async fn text(db: &impl ConnectionTrait, sql: &str) -> String {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap();
    row.try_get_by_index::<String>(0).unwrap()
}

async fn set_global_zone(admin: &DatabaseConnection, zone: &str) {
    let sql = format!("SET GLOBAL time_zone = {}", quoted_zone(zone));
    admin.execute_unprepared(&sql).await.unwrap();
}

/// Sets `@@GLOBAL.time_zone` and puts the original back when restored or
/// dropped (also while unwinding from a panic).
struct GlobalTimeZone {
    server_url: String,
    original: Option<String>,
}

impl GlobalTimeZone {
    async fn set(admin: &DatabaseConnection, server_url: &str, zone: &str) -> GlobalTimeZone {
        let original = text(admin, "SELECT CAST(@@GLOBAL.time_zone AS CHAR)").await;
        quoted_zone(&original);
        let guard = GlobalTimeZone {
            server_url: server_url.to_owned(),
            original: Some(original),
        };
        set_global_zone(admin, zone).await;
        guard
    }

    async fn restore(mut self, admin: &DatabaseConnection) {
        if let Some(original) = self.original.take() {
            set_global_zone(admin, &original).await;
        }
    }
}

impl Drop for GlobalTimeZone {
    fn drop(&mut self) {
        let Some(original) = self.original.take() else {
            return;
        };
        // Drop cannot await: restore from a thread with its own runtime.
        let url = self.server_url.clone();
        let restored = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let admin = db::connect(&database_settings(&url, 2)).await.unwrap();
                set_global_zone(&admin, &original).await;
                admin.close().await.ok();
            });
        })
        .join();
        if restored.is_err() {
            eprintln!(
                "utc test: could not restore the server's GLOBAL time_zone; \
                 run SET GLOBAL time_zone = 'SYSTEM'"
            );
        }
    }
}

fn close_to_now(t: DateTime<Utc>, what: &str) {
    let drift = (Utc::now() - t).abs();
    assert!(
        drift < TimeDelta::seconds(10),
        "{what} = {t} is {drift} away from Utc::now(): the session is not UTC"
    );
}

/// Acquires `n` connections of `pool` at once: them, their connection ids,
/// and the (global, session) zone each sees.
async fn every_connection(
    pool: &MySqlPool,
    n: u32,
) -> (
    Vec<PoolConnection<MySql>>,
    BTreeSet<i64>,
    Vec<(String, String)>,
) {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.acquire().await.unwrap());
    }
    let mut ids = BTreeSet::new();
    let mut zones = Vec::new();
    for conn in &mut held {
        let (global, session, id): (String, String, i64) = sqlx::query_as(
            "SELECT CAST(@@GLOBAL.time_zone AS CHAR), CAST(@@SESSION.time_zone AS CHAR), \
                    CAST(CONNECTION_ID() AS SIGNED)",
        )
        .fetch_one(&mut **conn)
        .await
        .unwrap();
        ids.insert(id);
        zones.push((global, session));
    }
    (held, ids, zones)
}

/// The zone of a session opened on `url` without pinning one.
async fn unpinned_session_zone(url: &str) -> String {
    let options = MySqlConnectOptions::from_str(url).unwrap().timezone(None);
    let mut unpinned = MySqlConnection::connect_with(&options).await.unwrap();
    let (zone,): (String,) = sqlx::query_as("SELECT CAST(@@SESSION.time_zone AS CHAR)")
        .fetch_one(&mut unpinned)
        .await
        .unwrap();
    unpinned.close().await.ok();
    zone
}

/// A one-minute record written by SQL, `created_at` left to its default.
async fn insert_without_created_at(
    db: &impl ConnectionTrait,
    task_id: &str,
    started: DateTime<Utc>,
) {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO gpu_usage_records \
             (task_id, endpoint, gpu_count, started_at, completed_at, duration_seconds, \
              gpu_hours, status) \
         VALUES (?, 'ep-utc', 1, ?, ?, 60, 0.016667, 'COMPLETED')",
        [
            task_id.into(),
            started.into(),
            (started + TimeDelta::seconds(60)).into(),
        ],
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sessions_are_utc_even_when_the_server_is_not() {
    let t = TestDb::mysql().await;
    let server = mysql_server_url();
    let admin = db::connect(&database_settings(&server, 2)).await.unwrap();
    let pool_size = 2;

    // --- The window: the server's default zone is +05:00. -----------------
    let guard = GlobalTimeZone::set(&admin, &server, FOREIGN_ZONE).await;
    let app = db::connect(&database_settings(
        t.settings.url.expose_secret(),
        pool_size,
    ))
    .await;
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            guard.restore(&admin).await;
            panic!("db::connect: {e}");
        }
    };
    let pool = app.get_mysql_connection_pool().clone();
    // Every connection the pool may ever hold is opened now, inside the window.
    let (held, born_in_window, observed) = every_connection(&pool, pool_size).await;
    // Control: a session that does not pin its zone inherits the server's,
    // so the window really would have shifted an unpinned pool.
    let unpinned_zone = unpinned_session_zone(t.settings.url.expose_secret()).await;
    drop(held);
    guard.restore(&admin).await;
    // --- End of the window. -------------------------------------------------

    for (global, session) in &observed {
        assert_eq!(global, FOREIGN_ZONE, "the window was in force");
        assert_eq!(session, "+00:00", "db::connect pins every session to UTC");
    }
    assert_eq!(
        unpinned_zone, FOREIGN_ZONE,
        "control: an unpinned session inherits the server zone"
    );
    assert_eq!(born_in_window.len(), pool_size as usize);

    // The pool's sessions (all opened in the window) write UTC defaults.
    let task_id = "utc-default-created-at";
    let started = Utc::now() - TimeDelta::minutes(2);
    let txn = app.begin().await.unwrap();
    let row = txn
        .query_one_raw(Statement::from_string(
            DbBackend::MySql,
            "SELECT CAST(CONNECTION_ID() AS SIGNED) AS id, \
                    CAST(@@SESSION.time_zone AS CHAR) AS zone, \
                    CAST(TIMESTAMPDIFF(SECOND, NOW(), UTC_TIMESTAMP()) AS SIGNED) AS utc_offset",
        ))
        .await
        .unwrap()
        .unwrap();
    let id: i64 = row.try_get("", "id").unwrap();
    assert!(
        born_in_window.contains(&id),
        "connection {id} was opened outside the window"
    );
    assert_eq!(row.try_get::<String>("", "zone").unwrap(), "+00:00");
    assert_eq!(
        row.try_get::<i64>("", "utc_offset").unwrap(),
        0,
        "NOW() = UTC_TIMESTAMP()"
    );
    insert_without_created_at(&txn, task_id, started).await;
    txn.commit().await.unwrap();

    let stored = find_record(&app, task_id).await.unwrap();
    close_to_now(stored.created_at, "created_at DEFAULT CURRENT_TIMESTAMP(3)");
    assert!(stored.created_at > stored.started_at, "{stored:?}");

    // The same holds for a pool opened after the window (the normal case).
    close_to_now(
        find_record(&t.db, task_id).await.unwrap().created_at,
        "created_at read through another pool",
    );

    app.close().await.ok();
    admin.close().await.ok();
    t.cleanup().await;
}

/// 2026-03-29 01:30:15.123 UTC: a daylight-saving switch in Europe, with
/// milliseconds (DATETIME(3) keeps them).
fn instant() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 15).unwrap() + TimeDelta::milliseconds(123)
}

async fn datetime_round_trip(t: TestDb) {
    let db = &t.db;
    let started = instant();
    let completed = started + TimeDelta::milliseconds(3_600_456);
    let created =
        Utc.with_ymd_and_hms(2026, 11, 29, 23, 59, 59).unwrap() + TimeDelta::milliseconds(999);
    let inserted = record::ActiveModel {
        spec_name: Set(Some("A100".to_owned())),
        created_at: Set(created),
        ..record_row("utc-round-trip", "ep-utc", 2, started, completed)
    }
    .insert(db)
    .await
    .unwrap();

    // Read back through the entity: the same instants, to the millisecond.
    let read = record::Entity::find_by_id(inserted.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.started_at, started);
    assert_eq!(read.completed_at, completed);
    assert_eq!(read.created_at, created);

    // Filtering by a DateTime<Utc> (sea-query binds it) finds the row, and
    // a half-open range around it does too.
    let by_instant = record::Entity::find()
        .filter(record::Column::StartedAt.eq(started))
        .all(db)
        .await
        .unwrap();
    assert_eq!(by_instant.len(), 1);
    let in_range: Vec<DateTime<Utc>> = record::Entity::find()
        .select_only()
        .column(record::Column::CompletedAt)
        .filter(record::Column::CompletedAt.gte(completed))
        .filter(record::Column::CompletedAt.lt(completed + TimeDelta::milliseconds(1)))
        .order_by_asc(record::Column::CompletedAt)
        .into_tuple()
        .all(db)
        .await
        .unwrap();
    assert_eq!(in_range, [completed]);

    // The stored wall clock is the UTC one, not shifted to any local zone.
    let raw = text(
        db,
        &format!(
            "SELECT CAST(started_at AS CHAR) FROM gpu_usage_records WHERE id = {}",
            inserted.id
        ),
    )
    .await;
    match t.backend {
        Backend::MySql => assert_eq!(raw, "2026-03-29 01:30:15.123"),
        Backend::Sqlite => assert!(
            raw.starts_with("2026-03-29") && raw.contains("01:30:15.123"),
            "stored as {raw:?}"
        ),
    }
    t.cleanup().await;
}

/// A row whose `created_at` comes from the column default reads back as now.
async fn default_timestamp_is_utc(t: TestDb) {
    let db = &t.db;
    let started = Utc::now() - TimeDelta::minutes(2);
    insert_without_created_at(db, "utc-default", started).await;
    let stored = find_record(db, "utc-default").await.unwrap();
    close_to_now(stored.created_at, "created_at from the column default");
    t.cleanup().await;
}

gpu_usage_testing::dual_backend_tests! {
    round_trip => datetime_round_trip,
    default_timestamp => default_timestamp_is_utc,
}
