//! Connecting, and telling transient database failures from bugs.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};
use secrecy::ExposeSecret;

use crate::settings::DatabaseSettings;

/// Opens the pool. Every MySQL session is pinned to UTC on connect, so
/// `CURRENT_TIMESTAMP` defaults and DATETIME reads never depend on the
/// server's zone. SQLite files are created if missing.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(settings.url.expose_secret().to_owned());
    options
        .max_connections(settings.max_connections.max(2))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
        .sqlx_logging(false)
        .map_sqlx_mysql_opts(|o| o.timezone(Some("+00:00".to_owned())))
        .map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .busy_timeout(Duration::from_secs(30))
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .foreign_keys(true)
        });
    if let Some(dir) = sqlite_file(settings.url.expose_secret())
        .as_deref()
        .and_then(std::path::Path::parent)
    {
        // The embedded default points at ./data; create it for a first run.
        let _ = std::fs::create_dir_all(dir);
    }
    Database::connect(options).await
}

/// The file an SQLite URL keeps its data in (`sqlite://data/x.db?mode=rwc`
/// → `data/x.db`, relative paths as given); `None` for other databases and
/// in-memory SQLite.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Messages of failures where retrying later can succeed and the client
/// should see 503: the server is unreachable, the pool is exhausted, a
/// connection dropped.
const UNAVAILABLE: &[&str] = &[
    "pool timed out",
    "connection refused",
    "broken pipe",
    "connection reset",
    "server has gone away",
    "lost connection",
    "error communicating with database",
    "pool closed",
];

/// Messages of deadlocks and lock wait timeouts (MySQL errors 1213 and
/// 1205, SQLite's busy database): the transaction was rolled back and can
/// simply be run again (rollups are idempotent recomputations).
const CONFLICT: &[&str] = &[
    "deadlock",
    "lock wait timeout",
    "database is locked",
    "1213",
    "1205",
];

/// Whether the error's message names one of `needles`, in any case: the
/// drivers report these conditions only as text.
fn mentions(e: &DbErr, needles: &[&str]) -> bool {
    let s = e.to_string().to_ascii_lowercase();
    needles.iter().any(|n| s.contains(n))
}

/// True for failures where retrying later can succeed and the client should
/// see 503 (see [`UNAVAILABLE`]).
pub fn is_unavailable(e: &DbErr) -> bool {
    matches!(e, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) || mentions(e, UNAVAILABLE)
}

/// Deadlocks and lock wait timeouts (see [`CONFLICT`]).
pub fn is_retryable_conflict(e: &DbErr) -> bool {
    mentions(e, CONFLICT)
}

pub fn is_mysql(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::MySql
}

/// Name of the current MySQL database, or the SQLite file, for namespacing
/// lock names per deployment.
pub async fn database_name(db: &DatabaseConnection) -> Result<String, DbErr> {
    match db.get_database_backend() {
        DbBackend::MySql => {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    DbBackend::MySql,
                    "SELECT COALESCE(DATABASE(), '') AS name",
                ))
                .await?;
            Ok(row
                .map(|r| r.try_get::<String>("", "name"))
                .transpose()?
                .unwrap_or_default())
        }
        _ => Ok("sqlite".to_owned()),
    }
}

/// Deadlocks and lock-wait timeouts between writers touching the same rows
/// in different orders are expected under InnoDB (and "database is locked"
/// under SQLite); the loser's transaction was rolled back, so it is run
/// again, a few times, and then reported as contention (503 with
/// Retry-After, never 500).
const WRITE_ATTEMPTS: u32 = 6;

/// Runs `work` (one transaction) until it does not collide, at most
/// [`WRITE_ATTEMPTS`] times.
/// (A closure returning a future rather than an async closure: the futures
/// of async closures are not `Send` for every lifetime, which spawned tasks
/// need.)
pub async fn retrying<T, F, Fut>(mut work: F) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match work().await {
            Err(e) if e.is_retryable_conflict() && attempt < WRITE_ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "write conflicted; retrying");
                let pause = 10 * u64::from(attempt) * u64::from(attempt);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(e) if e.is_retryable_conflict() => return Err(crate::DomainError::Contention),
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_file_is_found() {
        assert_eq!(
            sqlite_file("sqlite://data/gpu_usage.db?mode=rwc"),
            Some(std::path::PathBuf::from("data/gpu_usage.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("mysql://db/x"), None);
        assert_eq!(
            sqlite_file("sqlite://x.db")
                .as_deref()
                .and_then(std::path::Path::parent),
            Some(std::path::Path::new(""))
        );
    }
}
