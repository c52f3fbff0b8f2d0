//! Job locks: at most one runner of each job per database at a time.
//!
//! MySQL/MariaDB: `GET_LOCK(name, 0)` on one dedicated connection taken out
//! of the pool and marked close-on-drop before the lock is requested. The
//! connection is held for the whole job and the lock released on it, then
//! the connection is closed. A lock-holding connection therefore never goes
//! back to the pool (where, `GET_LOCK` being re-entrant per session, the
//! next borrower would silently "own" it), and a holder that dies or is
//! cancelled frees the lock because its connection closes.
//!
//! Names are namespaced by database name so deployments sharing a server do
//! not block each other, and kept within MySQL 8's 64-character limit.
//!
//! SQLite has no server-side lock. Two things stand in: a process-global
//! map of tokio mutexes keyed by the database file, and an OS file lock
//! (`flock`) on a file beside the database, `<database>.<job>.lock`, so a
//! `gpu-usage-worker run-job` or `backfill` started beside the all-in-one
//! process (or an API and a worker on one file) cannot run a job at the
//! same time as it. The kernel drops the file lock when its holder exits,
//! however it exits.
//!
//! Correctness never depends on the lock alone (every job is an idempotent
//! recomputation); the lock saves work and keeps job records readable.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sea_orm::sqlx::{self, MySql, pool::PoolConnection};
use sea_orm::{ConnAcquireErr, DatabaseConnection, DbBackend, DbErr, RuntimeErr};
use tokio::sync::OwnedMutexGuard;

use crate::error::{DomainError, Result};
use crate::jobs::JobName;

/// MySQL 8 rejects longer lock names (MariaDB accepts them silently).
pub const MAX_LOCK_NAME_LEN: usize = 64;
const PREFIX: &str = "gpu_usage";

/// `gpu_usage:<database>:<job>`; when that is too long the database part is
/// replaced by a stable hash of it, so the name stays unique per database
/// and the job part stays readable in `performance_schema`.
pub fn lock_name(database: &str, job: JobName) -> String {
    let plain = format!("{PREFIX}:{database}:{job}");
    if plain.len() <= MAX_LOCK_NAME_LEN {
        return plain;
    }
    format!("{PREFIX}:#{:016x}:{job}", fnv1a64(database.as_bytes()))
}

/// FNV-1a: tiny, and identical in every build and process (std's hasher
/// makes no such promise, and replicas may run different builds).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A held job lock. Release it with [`JobLock::release`]; dropping it also
/// frees the lock (the MySQL connection is closed in the background).
pub struct JobLock {
    job: JobName,
    name: String,
    holder: Holder,
}

enum Holder {
    /// Behind a mutex so [`Guard::verify`] can use the connection through a
    /// shared reference while the job runs.
    MySql(tokio::sync::Mutex<PoolConnection<MySql>>),
    /// The process's own mutex and, for a database file, the OS lock on
    /// the file beside it (released when the file is closed).
    Local(OwnedMutexGuard<()>, Option<std::fs::File>),
}

impl fmt::Debug for JobLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobLock")
            .field("job", &self.job)
            .field("name", &self.name)
            .field(
                "holder",
                &match self.holder {
                    Holder::MySql(_) => "mysql",
                    Holder::Local(_, None) => "in-process",
                    Holder::Local(_, Some(_)) => "file",
                },
            )
            .finish()
    }
}

/// What a job checks before each write transaction and before consuming
/// pending entries: that it still holds its lock. A MySQL session can die
/// under a running job (wait_timeout, a proxy's idle timeout, `KILL`, a
/// failover) and take the lock with it while the job's writes continue on
/// pool connections; another runner could then run the same level at once,
/// which is the one race the recomputation cannot absorb (see
/// docs/ROLLUPS.md). A job whose lock is gone stops; its work is redone.
pub trait Guard: Sync {
    fn verify(&self) -> impl std::future::Future<Output = Result<()>> + Send;
}

/// No lock at all: direct calls (tests, one-off tools) that know they are
/// alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unguarded;

impl Guard for Unguarded {
    async fn verify(&self) -> Result<()> {
        Ok(())
    }
}

impl Guard for JobLock {
    async fn verify(&self) -> Result<()> {
        let Holder::MySql(conn) = &self.holder else {
            // A local lock cannot be lost while its guard and file live.
            return Ok(());
        };
        let mut conn = conn.lock().await;
        let held: std::result::Result<Option<i64>, sqlx::Error> =
            sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(?) = CONNECTION_ID() AS SIGNED)")
                .bind(&self.name)
                .fetch_one(&mut **conn)
                .await;
        match held {
            Ok(Some(1)) => Ok(()),
            Ok(_) => Err(self.lost()),
            // The lock's session is gone with its connection.
            Err(e) => {
                tracing::warn!(lock = %self.name, error = %e, "the lock connection failed");
                Err(self.lost())
            }
        }
    }
}

impl JobLock {
    pub fn job(&self) -> JobName {
        self.job
    }

    /// The name the lock is held under (the `GET_LOCK` name on MySQL).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lost(&self) -> DomainError {
        DomainError::LockLost {
            job: self.job.to_string(),
        }
    }

    /// Releases the lock on the connection that holds it, then closes that
    /// connection.
    pub async fn release(self) -> Result<()> {
        match self.holder {
            Holder::Local(guard, file) => {
                drop(file);
                drop(guard);
                Ok(())
            }
            Holder::MySql(conn) => {
                let mut conn = conn.into_inner();
                let released: std::result::Result<Option<i64>, sqlx::Error> =
                    sqlx::query_scalar("SELECT CAST(RELEASE_LOCK(?) AS SIGNED)")
                        .bind(&self.name)
                        .fetch_one(&mut *conn)
                        .await;
                // Closing is what guarantees the lock is gone, whatever
                // RELEASE_LOCK said; do it before reporting.
                let closed = conn.close().await;
                match released {
                    Ok(Some(1)) => {}
                    Ok(other) => tracing::warn!(
                        lock = %self.name,
                        result = ?other,
                        "RELEASE_LOCK did not find the lock held by this connection; it was lost during the job"
                    ),
                    Err(e) => return Err(query_err(e)),
                }
                if let Err(e) = closed {
                    tracing::debug!(lock = %self.name, error = %e, "closing the lock connection failed");
                }
                Ok(())
            }
        }
    }
}

/// Takes the job's lock if it is free; `None` means another runner holds it
/// and the caller should skip.
pub async fn try_lock(db: &DatabaseConnection, job: JobName) -> Result<Option<JobLock>> {
    match db.get_database_backend() {
        DbBackend::MySql => try_lock_mysql(db, job).await,
        _ => try_lock_sqlite(db, job),
    }
}

/// Like [`try_lock`], polling until `max_wait` has passed. For callers that
/// must run rather than skip (backfill chunks, manual triggers).
pub async fn lock_with_wait(
    db: &DatabaseConnection,
    job: JobName,
    max_wait: Duration,
) -> Result<Option<JobLock>> {
    let deadline = tokio::time::Instant::now() + max_wait;
    let mut pause = Duration::from_millis(50);
    loop {
        if let Some(lock) = try_lock(db, job).await? {
            return Ok(Some(lock));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn try_lock_mysql(db: &DatabaseConnection, job: JobName) -> Result<Option<JobLock>> {
    let database = crate::db::database_name(db).await?;
    let name = lock_name(&database, job);
    let mut conn = db
        .get_mysql_connection_pool()
        .acquire()
        .await
        .map_err(acquire_err)?;
    // Before GET_LOCK, not after: if this future is cancelled while the
    // query is in flight, the connection may hold the lock and must not go
    // back to the pool.
    conn.close_on_drop();
    let got: Option<i64> = sqlx::query_scalar("SELECT CAST(GET_LOCK(?, 0) AS SIGNED)")
        .bind(&name)
        .fetch_one(&mut *conn)
        .await
        .map_err(query_err)?;
    match got {
        Some(1) => Ok(Some(JobLock {
            job,
            name,
            holder: Holder::MySql(tokio::sync::Mutex::new(conn)),
        })),
        Some(_) => Ok(None),
        None => Err(DomainError::Database(DbErr::Custom(format!(
            "GET_LOCK({name}) returned NULL"
        )))),
    }
}

fn acquire_err(e: sqlx::Error) -> DomainError {
    DomainError::from(match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        other => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(other))),
    })
}

fn query_err(e: sqlx::Error) -> DomainError {
    DomainError::from(DbErr::Query(RuntimeErr::SqlxError(Arc::new(e))))
}

type LocalLocks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

fn local_locks() -> &'static LocalLocks {
    static LOCKS: OnceLock<LocalLocks> = OnceLock::new();
    LOCKS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The SQLite file behind the pool, canonical when it exists, so two pools
/// on the same file share their locks; `None` for in-memory databases.
fn sqlite_file(db: &DatabaseConnection) -> Option<std::path::PathBuf> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    let options = db.get_sqlite_connection_pool().connect_options();
    let file = options.get_filename();
    if file.as_os_str().is_empty() || file.to_string_lossy().contains(":memory:") {
        return None;
    }
    Some(std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf()))
}

fn try_lock_sqlite(db: &DatabaseConnection, job: JobName) -> Result<Option<JobLock>> {
    let file = sqlite_file(db);
    let key = file.as_ref().map_or_else(
        || "memory".to_owned(),
        |f| format!("sqlite:{}", f.display()),
    );
    let Some(mut lock) = try_lock_local(key, job) else {
        return Ok(None);
    };
    if let Some(db_file) = file {
        let mut path = db_file.into_os_string();
        path.push(format!(".{job}.lock"));
        match try_lock_file(std::path::Path::new(&path))? {
            Some(f) => {
                if let Holder::Local(_, slot) = &mut lock.holder {
                    *slot = Some(f);
                }
            }
            // Another process holds it; our mutex guard drops with `lock`.
            None => return Ok(None),
        }
    }
    Ok(Some(lock))
}

/// An exclusive `flock` on `path` (created if missing), if free.
fn try_lock_file(path: &std::path::Path) -> Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| file_err(path, &e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(file_err(path, &e)),
    }
}

fn file_err(path: &std::path::Path, e: &std::io::Error) -> DomainError {
    DomainError::Database(DbErr::Custom(format!(
        "the job lock file {} cannot be locked: {e}",
        path.display()
    )))
}

fn try_lock_local(key: String, job: JobName) -> Option<JobLock> {
    let name = format!("{PREFIX}:{key}:{job}");
    let mutex = {
        // A poisoned map only means another thread panicked while inserting;
        // the map itself is still consistent.
        let mut map = local_locks().lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.clone()).or_default().clone()
    };
    mutex.try_lock_owned().ok().map(|guard| JobLock {
        job,
        name,
        holder: Holder::Local(guard, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_namespaced_and_bounded() {
        assert_eq!(
            lock_name("waverless", JobName::MinuteRollup),
            "gpu_usage:waverless:rollup_minute"
        );
        let long = "d".repeat(64);
        let n = lock_name(&long, JobName::MinuteRollup);
        assert!(n.len() <= MAX_LOCK_NAME_LEN, "{n}");
        assert!(n.ends_with(":rollup_minute"));
        assert_ne!(n, lock_name(&"e".repeat(64), JobName::MinuteRollup));
        assert_eq!(n, lock_name(&long, JobName::MinuteRollup));
        for job in JobName::ALL {
            assert!(lock_name(&long, job).len() <= MAX_LOCK_NAME_LEN);
        }
    }

    #[tokio::test]
    async fn local_lock_is_exclusive_per_key() {
        let a = try_lock_local("k1".into(), JobName::Cleanup);
        assert!(a.is_some());
        assert!(try_lock_local("k1".into(), JobName::Cleanup).is_none());
        assert!(try_lock_local("k2".into(), JobName::Cleanup).is_some());
        assert!(try_lock_local("k1".into(), JobName::Backfill).is_some());
        if let Some(a) = a {
            a.release().await.ok();
        }
        assert!(try_lock_local("k1".into(), JobName::Cleanup).is_some());
    }
}
