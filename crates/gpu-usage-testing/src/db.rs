//! An isolated, migrated database per test, on SQLite or on MariaDB/MySQL.
//!
//! MySQL tests connect to `GPU_USAGE_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306`) and create a database `gu_test_<random>`;
//! SQLite tests a file in the temporary directory. Either is removed when
//! the [`TestDb`] is dropped, so a failing test does not leak it;
//! `scripts/test.sh` still drops leftovers of killed runs before starting.

use std::collections::BTreeSet;
use std::time::Duration;

use gpu_usage_core::entities::record;
use gpu_usage_core::settings::DatabaseSettings;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, Statement};
use secrecy::SecretString;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

pub struct TestDb {
    pub db: DatabaseConnection,
    pub backend: Backend,
    pub settings: DatabaseSettings,
    mysql_name: Option<String>,
    sqlite_path: Option<std::path::PathBuf>,
}

pub fn mysql_server_url() -> String {
    std::env::var("GPU_USAGE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// Pool settings for `url`: short timeouts, `max_connections` connections
/// (the test databases' pools have 8).
pub fn database_settings(url: &str, max_connections: u32) -> DatabaseSettings {
    DatabaseSettings {
        url: SecretString::from(url.to_owned()),
        max_connections,
        connect_timeout_secs: 5,
        acquire_timeout_secs: 10,
    }
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::MySql => Self::mysql().await,
        }
    }

    /// A fresh SQLite file (not `:memory:`: pooled connections must share it).
    pub async fn sqlite() -> TestDb {
        Self::sqlite_unmigrated_inner(true).await
    }

    /// An empty SQLite database without schema.
    pub async fn sqlite_unmigrated() -> TestDb {
        Self::sqlite_unmigrated_inner(false).await
    }

    async fn sqlite_unmigrated_inner(migrate: bool) -> TestDb {
        let path = std::env::temp_dir().join(format!("gu_test_{}.db", unique_suffix()));
        let settings = database_settings(&format!("sqlite://{}?mode=rwc", path.display()), 8);
        let mut t = Self::open(settings, Backend::Sqlite, migrate).await;
        t.sqlite_path = Some(path);
        t
    }

    pub async fn mysql() -> TestDb {
        Self::mysql_inner(true).await
    }

    /// An empty MySQL database without schema (for schema tests).
    pub async fn mysql_unmigrated() -> TestDb {
        Self::mysql_inner(false).await
    }

    async fn mysql_inner(migrate: bool) -> TestDb {
        let server = mysql_server_url();
        let name = format!("gu_test_{}", unique_suffix());
        let admin = gpu_usage_core::db::connect(&database_settings(&server, 8))
            .await
            .unwrap_or_else(|e| {
                panic!("MariaDB/MySQL at {server} is not reachable ({e}); run scripts/test.sh")
            });
        admin
            .execute_unprepared(&format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let settings = database_settings(&format!("{}/{name}", server.trim_end_matches('/')), 8);
        let mut t = Self::open(settings, Backend::MySql, migrate).await;
        t.mysql_name = Some(name);
        t
    }

    /// Connects to the (existing, empty) database of `settings`, migrated
    /// if asked.
    async fn open(settings: DatabaseSettings, backend: Backend, migrate: bool) -> TestDb {
        let db = gpu_usage_core::db::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("connect to the {backend:?} test database: {e}"));
        if migrate {
            gpu_usage_core::migrate(&db)
                .await
                .unwrap_or_else(|e| panic!("migrate the {backend:?} test database: {e}"));
        }
        TestDb {
            db,
            backend,
            settings,
            mysql_name: None,
            sqlite_path: None,
        }
    }

    pub fn database_name(&self) -> Option<&str> {
        self.mysql_name.as_deref()
    }

    /// Closes the pool, then drops the database (what `Drop` does, with
    /// the pool closed gracefully first).
    pub async fn cleanup(self) {
        self.db.clone().close().await.ok();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.mysql_name.take() {
            // Drop cannot await, and may run inside the test's runtime:
            // a thread of its own with its own small runtime does the work.
            let dropped = std::thread::spawn(move || drop_mysql_database(&name)).join();
            if dropped.is_err() {
                eprintln!("could not drop a test database; scripts/test.sh removes leftovers");
            }
        }
        if let Some(path) = self.sqlite_path.take() {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                std::fs::remove_file(p).ok();
            }
            // The job lock files beside it.
            for job in gpu_usage_core::jobs::JobName::ALL {
                let mut p = path.clone().into_os_string();
                p.push(format!(".{job}.lock"));
                std::fs::remove_file(p).ok();
            }
        }
    }
}

/// The `v` column (a nullable integer) of the one row MariaDB returns for
/// `sql` with `values` bound: lock and process-list queries.
pub async fn mysql_scalar(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Option<i64> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            sql,
            values,
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"));
    row.try_get::<Option<i64>>("", "v").unwrap()
}

fn drop_mysql_database(name: &str) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let Ok(admin) =
            gpu_usage_core::db::connect(&database_settings(&mysql_server_url(), 8)).await
        else {
            return;
        };
        // A connection of a panicked test may still hold a metadata lock;
        // give up after a few seconds rather than hang the suite.
        let drop = async {
            admin
                .execute_unprepared("SET SESSION lock_wait_timeout = 10")
                .await
                .ok();
            admin
                .execute_raw(Statement::from_string(
                    DbBackend::MySql,
                    format!("DROP DATABASE IF EXISTS `{name}`"),
                ))
                .await
                .ok();
        };
        tokio::time::timeout(Duration::from_secs(15), drop)
            .await
            .ok();
        admin.close().await.ok();
    });
}

/// Generates one `#[tokio::test]` per backend for an `async fn(TestDb)`:
/// `dual_backend_test!(name, body);` gives `name::sqlite` and `name::mysql`.
#[macro_export]
macro_rules! dual_backend_test {
    ($name:ident, $body:path) => {
        $crate::__dual_backend_mod!($name, |t| $body(t).await);
    };
}

/// [`dual_backend_test!`] for several tests at once:
/// `dual_backend_tests! { name => body, other => other_body }`.
#[macro_export]
macro_rules! dual_backend_tests {
    ($($name:ident => $body:path),+ $(,)?) => {
        $($crate::dual_backend_test!($name, $body);)+
    };
}

/// Like [`dual_backend_tests!`] for bodies `async fn(&DatabaseConnection)`
/// run by [`guarded`](crate::guarded): on a task of their own, the test
/// database dropped whatever happens.
#[macro_export]
macro_rules! guarded_dual_backend_tests {
    ($($name:ident => $body:path),+ $(,)?) => {
        $($crate::__dual_backend_mod!(
            $name,
            |t| $crate::guarded(t, |db| async move { $body(&db).await }).await
        );)+
    };
}

/// `mod $name` with a test per backend, each running `$run` with the
/// fresh [`TestDb`] bound to `$t`.
#[doc(hidden)]
#[macro_export]
macro_rules! __dual_backend_mod {
    ($name:ident, |$t:ident| $run:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $t = $crate::TestDb::new($crate::Backend::Sqlite).await;
                $run;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                let $t = $crate::TestDb::new($crate::Backend::MySql).await;
                $run;
            }
        }
    };
}

/// The task ids of every stored record: what the tests compare with the
/// ids they sent.
pub async fn stored_task_ids(db: &DatabaseConnection) -> BTreeSet<String> {
    record::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.task_id)
        .collect()
}

/// The `task_id`s of records in their JSON form.
pub fn task_ids(recs: &[Value]) -> BTreeSet<String> {
    recs.iter()
        .map(|r| r["task_id"].as_str().unwrap().to_owned())
        .collect()
}
