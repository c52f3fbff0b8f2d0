//! The schema, proven on real databases.
//!
//! - `scripts/gpu_usage_schema.sql` builds exactly what the migrations build on
//!   MariaDB/MySQL (columns, indexes, engines, collations, `SHOW CREATE
//!   TABLE`), marks every migration as applied, and can be run twice.
//! - Every migration can be rolled back and applied again, on both backends.
//! - The NULL-safe unique key of the statistics tables: one global row per
//!   bucket, however NULL `scope_value` is; scoped rows beside it.
//! - The migration CLI reads its database URL from `GPU_USAGE__DATABASE__URL`.
//!
//! MariaDB tests need the server of `GPU_USAGE_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306`); `scripts/test.sh` starts it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gpu_usage_testing::TestDb;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, SqlErr, Statement};
use secrecy::ExposeSecret;

mod inspect;
mod script;

use inspect::*;
use script::*;

const SCHEMA_SQL: &str = include_str!("../../../../scripts/gpu_usage_schema.sql");

/// The tables the migrations create, plus the CLI's bookkeeping table.
const TABLES: [&str; 10] = [
    "gpu_usage_backfill_jobs",
    "gpu_usage_job_runs",
    "gpu_usage_records",
    "gpu_usage_retention_horizons",
    "gpu_usage_rollup_pending",
    "gpu_usage_statistics_daily",
    "gpu_usage_statistics_hourly",
    "gpu_usage_statistics_minute",
    "gpu_usage_worker_sessions",
    "seaql_migrations",
];

const STATISTICS_TABLES: [&str; 3] = [
    "gpu_usage_statistics_minute",
    "gpu_usage_statistics_hourly",
    "gpu_usage_statistics_daily",
];

// ---------------------------------------------------------------------------
// The SQL script and the migrations agree
// ---------------------------------------------------------------------------

#[test]
fn script_lists_every_migration_file() {
    // Every migration file is registered in the Migrator and recorded as
    // applied by the script, in order; a new migration cannot be forgotten.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migration/src");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('m') && n.ends_with(".rs") && n.as_bytes()[1].is_ascii_digit())
        .map(|n| n.trim_end_matches(".rs").to_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 13, "{files:?}");
    assert_eq!(
        migration_names(),
        files,
        "Migrator::migrations() vs migration/src/m*.rs"
    );

    let insert = script_statements(SCHEMA_SQL)
        .into_iter()
        .find(|s| s.contains("INTO `seaql_migrations`"))
        .expect("the script records the applied migrations");
    let in_script: Vec<String> = insert
        .split('\'')
        .filter(|part| {
            part.starts_with('m') && part.as_bytes().get(1).is_some_and(u8::is_ascii_digit)
        })
        .map(str::to_owned)
        .collect();
    assert_eq!(in_script, files, "versions in scripts/gpu_usage_schema.sql");

    for table in TABLES {
        assert!(
            SCHEMA_SQL.contains(&format!("CREATE TABLE IF NOT EXISTS `{table}`")),
            "the script creates {table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_script_creates_the_same_schema_as_the_migrations() {
    let migrated = TestDb::mysql_unmigrated().await;
    let scripted = TestDb::mysql_unmigrated().await;
    let migrated_name = migrated.database_name().unwrap().to_owned();
    let scripted_name = scripted.database_name().unwrap().to_owned();

    Migrator::up(&migrated.db, None).await.unwrap();
    apply_script(&scripted.db).await;
    // Idempotent: a second run changes nothing and does not fail.
    apply_script(&scripted.db).await;

    let from_migrations = mysql_snapshot(&migrated.db, &migrated_name).await;
    let from_script = mysql_snapshot(&scripted.db, &scripted_name).await;

    assert_eq!(
        table_names(&from_migrations),
        TABLES,
        "tables created by the migrations"
    );
    assert_same_schema(
        ("migrations", &from_migrations),
        ("script", &from_script),
        "scripts/gpu_usage_schema.sql and the migrations disagree",
    );

    // The generated column is really there, with the exact expression.
    let generated: Vec<&String> = from_script[1]
        .rows
        .iter()
        .filter(|r| r.contains("column=scope_value_key |"))
        .collect();
    assert_eq!(generated.len(), 3, "{generated:?}");
    for row in generated {
        assert!(row.contains("extra=STORED GENERATED"), "{row}");
        assert!(
            row.contains("generated=coalesce(`scope_value`,'__GLOBAL__')"),
            "{row}"
        );
        assert!(row.contains("type=varchar(255)"), "{row}");
    }

    // The script records every migration as applied: the CLI's `status`
    // shows nothing pending, `up` is a no-op and leaves the schema as is.
    assert_eq!(applied_versions(&scripted.db).await, migration_names());
    let pending = Migrator::get_pending_migrations(&scripted.db)
        .await
        .unwrap();
    assert!(
        pending.is_empty(),
        "pending after the script: {:?}",
        pending
            .iter()
            .map(|m| m.name().to_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        Migrator::get_applied_migrations(&scripted.db)
            .await
            .unwrap()
            .len(),
        migration_names().len()
    );
    Migrator::up(&scripted.db, None).await.unwrap();
    assert_schema_of(
        &scripted,
        "script + migrate up",
        ("script", &from_script),
        "`migration up` after the script changed the schema",
    )
    .await;

    migrated.cleanup().await;
    scripted.cleanup().await;
}

/// The operators' way, `mysql ... <db> < scripts/gpu_usage_schema.sql`,
/// when a client binary is installed (the comparison above does not need
/// one): the client accepts the file as it is, twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_client_accepts_the_script() {
    let Some(client) = ["mariadb", "mysql"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("no mariadb/mysql client installed: skipping the client run");
        return;
    };
    let migrated = TestDb::mysql_unmigrated().await;
    let scripted = TestDb::mysql_unmigrated().await;
    let migrated_name = migrated.database_name().unwrap().to_owned();
    let scripted_name = scripted.database_name().unwrap().to_owned();
    Migrator::up(&migrated.db, None).await.unwrap();

    let (user, password, host, port) = server_account(&gpu_usage_testing::mysql_server_url());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/gpu_usage_schema.sql"
    );
    for _ in 0..2 {
        let output = std::process::Command::new(client)
            .args([
                "--protocol=tcp",
                "-h",
                &host,
                "-P",
                &port,
                "-u",
                &user,
                &scripted_name,
            ])
            .env("MYSQL_PWD", &password)
            .stdin(std::fs::File::open(script).unwrap())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{client} < scripts/gpu_usage_schema.sql failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let from_migrations = mysql_snapshot(&migrated.db, &migrated_name).await;
    assert_schema_of(
        &scripted,
        "mysql client",
        ("migrations", &from_migrations),
        &format!("the script run by {client} differs"),
    )
    .await;
    assert!(
        Migrator::get_pending_migrations(&scripted.db)
            .await
            .unwrap()
            .is_empty()
    );

    migrated.cleanup().await;
    scripted.cleanup().await;
}

// ---------------------------------------------------------------------------
// Down and up again
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_migrations_go_down_and_up_again() {
    let t = TestDb::mysql_unmigrated().await;
    let name = t.database_name().unwrap().to_owned();

    Migrator::up(&t.db, None).await.unwrap();
    let first = mysql_snapshot(&t.db, &name).await;
    assert_eq!(table_names(&first), TABLES);

    Migrator::down(&t.db, None).await.unwrap();
    let after_down = mysql_snapshot(&t.db, &name).await;
    assert_eq!(
        table_names(&after_down),
        ["seaql_migrations"],
        "down leaves only the bookkeeping"
    );
    assert!(applied_versions(&t.db).await.is_empty());
    assert_eq!(
        Migrator::get_pending_migrations(&t.db).await.unwrap().len(),
        migration_names().len()
    );

    Migrator::up(&t.db, None).await.unwrap();
    let what = "down + up does not rebuild the same schema";
    assert_schema_of(&t, "down + up", ("first up", &first), what).await;
    assert_eq!(applied_versions(&t.db).await, migration_names());

    // One step down and up (the last migration alone), then `fresh`.
    Migrator::down(&t.db, Some(1)).await.unwrap();
    assert_eq!(
        applied_versions(&t.db).await.len(),
        migration_names().len() - 1
    );
    Migrator::up(&t.db, None).await.unwrap();
    Migrator::fresh(&t.db).await.unwrap();
    let what = "fresh does not rebuild the same schema";
    assert_schema_of(&t, "fresh", ("first up", &first), what).await;

    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrations_go_down_and_up_again() {
    let t = TestDb::sqlite_unmigrated().await;

    Migrator::up(&t.db, None).await.unwrap();
    let first = sqlite_master(&t.db).await;
    let mut expected: Vec<&str> = TABLES.to_vec();
    expected.sort_unstable();
    assert_eq!(user_tables_sqlite(&t.db).await, expected);
    // Every index of the migrations exists on SQLite too, named
    // `<table>_<index>` there (SQLite index names are per database).
    let mut indexes: Vec<(&str, &str)> = [
        "idx_task_id_unique",
        "idx_endpoint",
        "idx_spec_name",
        "idx_started_at",
        "idx_completed_at",
        "idx_created_at",
        "idx_duration",
    ]
    .map(|i| ("gpu_usage_records", i))
    .to_vec();
    for table in STATISTICS_TABLES {
        for index in [
            "uk_time_scope",
            "idx_time_bucket",
            "idx_scope",
            "idx_updated_at",
        ] {
            indexes.push((table, index));
        }
    }
    indexes.push(("gpu_usage_rollup_pending", "idx_pending_level_start"));
    indexes.push(("gpu_usage_job_runs", "idx_job_runs_job_started"));
    indexes.push(("gpu_usage_backfill_jobs", "idx_backfill_status"));
    for index in [
        "uk_worker_started",
        "idx_sessions_started_at",
        "idx_sessions_counted_until",
        "idx_sessions_ended_at",
        "idx_sessions_endpoint",
    ] {
        indexes.push(("gpu_usage_worker_sessions", index));
    }
    for (table, index) in &indexes {
        let prefix = format!("index|{table}_{index}|{table}|");
        assert!(
            first.iter().any(|row| row.starts_with(&prefix)),
            "index {index} of {table} missing on SQLite: {first:#?}"
        );
    }
    let uniques: Vec<&String> = first
        .iter()
        .filter(|r| r.contains("CREATE UNIQUE INDEX"))
        .collect();
    assert_eq!(uniques.len(), 5, "{uniques:#?}");
    assert_eq!(
        first.iter().filter(|r| r.starts_with("index|")).count(),
        indexes.len(),
        "{first:#?}"
    );

    Migrator::down(&t.db, None).await.unwrap();
    assert_eq!(user_tables_sqlite(&t.db).await, ["seaql_migrations"]);
    assert!(applied_versions(&t.db).await.is_empty());

    Migrator::up(&t.db, None).await.unwrap();
    assert_eq!(
        sqlite_master(&t.db).await,
        first,
        "down + up rebuilds the same schema"
    );
    assert_eq!(applied_versions(&t.db).await, migration_names());

    Migrator::fresh(&t.db).await.unwrap();
    assert_eq!(
        sqlite_master(&t.db).await,
        first,
        "fresh rebuilds the same schema"
    );

    t.cleanup().await;
}

// ---------------------------------------------------------------------------
// The NULL-safe unique key of the statistics tables
// ---------------------------------------------------------------------------

async fn insert_stat(
    db: &DatabaseConnection,
    table: &str,
    bucket: &str,
    scope_type: &str,
    scope_value: Option<&str>,
) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let sql = format!(
        "INSERT INTO {table} (time_bucket, scope_type, scope_value, period_start, period_end) \
         VALUES (?, ?, ?, ?, ?)"
    );
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [
            bucket.into(),
            scope_type.into(),
            scope_value.map(str::to_owned).into(),
            "2026-11-29 10:00:00".into(),
            "2026-11-29 10:01:00".into(),
        ],
    ))
    .await
    .map(|_| ())
}

fn assert_duplicate(result: Result<(), DbErr>, what: &str) {
    match result {
        Ok(()) => panic!("{what}: inserted, but the unique key should have rejected it"),
        Err(e) => assert!(
            matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
            "{what}: expected a unique-key violation, got {e:?}"
        ),
    }
}

async fn null_safe_unique_key(t: TestDb) {
    let db = &t.db;
    for table in STATISTICS_TABLES {
        let (bucket, other_bucket) = if table.ends_with("daily") {
            ("2026-11-29", "2026-11-30")
        } else {
            ("2026-11-29 10:00:00", "2026-11-29 10:01:00")
        };

        // (bucket, scope, value, refused as a duplicate: what).
        for (bucket, scope_type, scope_value, duplicate) in [
            (bucket, "global", None, None),
            (
                bucket,
                "global",
                None,
                Some("second global row for one bucket"),
            ),
            // Scoped rows of the same bucket coexist with the global one.
            (bucket, "endpoint", Some("ep-a"), None),
            (bucket, "endpoint", Some("ep-b"), None),
            (bucket, "spec", Some("ep-a"), None),
            (
                bucket,
                "endpoint",
                Some("ep-a"),
                Some("second endpoint row for one bucket"),
            ),
            // Keys are case-sensitive (binary collation): two specs.
            (bucket, "spec", Some("A100"), None),
            (bucket, "spec", Some("a100"), None),
            // A global row of another bucket is fine.
            (other_bucket, "global", None, None),
        ] {
            let inserted = insert_stat(db, table, bucket, scope_type, scope_value).await;
            match duplicate {
                None => inserted.unwrap(),
                Some(what) => assert_duplicate(inserted, &format!("{table}: {what}")),
            }
        }

        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT scope_type, scope_value_key FROM {table} \
                     ORDER BY time_bucket, scope_type, scope_value_key"
                ),
            ))
            .await
            .unwrap();
        let keys: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{}:{}",
                    r.try_get::<String>("", "scope_type").unwrap(),
                    r.try_get::<String>("", "scope_value_key").unwrap()
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                "endpoint:ep-a",
                "endpoint:ep-b",
                "global:__GLOBAL__",
                "spec:A100",
                "spec:a100",
                "spec:ep-a",
                "global:__GLOBAL__",
            ],
            "{table}"
        );
    }
    t.cleanup().await;
}

gpu_usage_testing::dual_backend_test!(null_safe_unique_key, super::null_safe_unique_key);

// ---------------------------------------------------------------------------
// The migration CLI's configuration
// ---------------------------------------------------------------------------

const CHILD_MARKER: &str = "GU_SCHEMA_TEST_SETTINGS_CHILD";
const CHILD_EXPECT: &str = "GU_SCHEMA_TEST_EXPECTED_URL";

/// Runs only inside the child process started by
/// `migration_cli_reads_database_url_from_env` (environment variables are
/// process-global and cannot be set safely in a threaded test process).
#[test]
fn settings_source_child() {
    let Ok(expected) = std::env::var(CHILD_EXPECT) else {
        return;
    };
    assert!(std::env::var_os(CHILD_MARKER).is_some());
    // The migration CLI and the services both read `Settings::load()`.
    let settings = gpu_usage_core::settings::Settings::load().unwrap();
    assert_eq!(
        settings.database.url.expose_secret(),
        expected,
        "Settings::load()"
    );
    println!("settings child checked {expected}");
}

fn run_settings_child(env_url: Option<&str>, expected: &str) {
    let empty_config_dir =
        std::env::temp_dir().join(format!("gu_test_config_{}", std::process::id()));
    std::fs::create_dir_all(&empty_config_dir).unwrap();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "settings_source_child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_MARKER, "1")
    .env(CHILD_EXPECT, expected)
    .env("GPU_USAGE_CONFIG_DIR", &empty_config_dir)
    .env_remove("APP_ENVIRONMENT");
    match env_url {
        Some(url) => cmd.env("GPU_USAGE__DATABASE__URL", url),
        None => cmd.env_remove("GPU_USAGE__DATABASE__URL"),
    };
    let output = cmd.output().unwrap();
    std::fs::remove_dir(&empty_config_dir).ok();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(&format!("settings child checked {expected}"))
            && stdout.contains("1 passed"),
        "the child did not run the check\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[test]
fn migration_cli_reads_database_url_from_env() {
    // The environment variable wins over the built-in default ...
    let url = "mysql://gpu:s3cret@db.internal:3307/waverless_gpu";
    run_settings_child(Some(url), url);
    // ... and without it the built-in default of config/default.toml applies.
    let default_url = config::Config::builder()
        .add_source(config::File::from_str(
            include_str!("../../../../config/default.toml"),
            config::FileFormat::Toml,
        ))
        .build()
        .unwrap()
        .get_string("database.url")
        .unwrap();
    assert_ne!(default_url, url);
    run_settings_child(None, &default_url);
}
