//! Running the engine the way every test does: each rollup twice (the
//! second run must change nothing), and proptest with a runtime per case.

use crate::{Backend, TestDb};
use anyhow::{bail, ensure};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::ingest::IngestReport;
use gpu_usage_core::rollup;
use gpu_usage_core::status::{self, LevelStatus};
use gpu_usage_core::types::Granularity;
use proptest::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use crate::*;

pub fn cfg() -> EngineConfig {
    EngineConfig::default()
}

pub async fn ingest(
    db: &(impl ConnectionTrait + TransactionTrait),
    recs: &[Rec],
    now_ms: i64,
    cfg: &EngineConfig,
) -> anyhow::Result<IngestReport> {
    gpu_usage_core::ingest::ingest(db, inputs(recs), at(now_ms), cfg)
        .await
        .map_err(|e| anyhow::anyhow!("ingest failed: {e} ({e:?})"))
}

/// The periodic jobs once: minute, then hourly, then daily.
pub async fn run_jobs(
    db: &(impl ConnectionTrait + TransactionTrait),
    now_ms: i64,
    cfg: &EngineConfig,
) -> anyhow::Result<()> {
    for g in Granularity::ALL {
        rollup::process_pending(db, g, at(now_ms), cfg)
            .await
            .map_err(|e| anyhow::anyhow!("process_pending({g}) failed: {e} ({e:?})"))?;
    }
    Ok(())
}

/// The periodic jobs twice with the same `now`; the second run must not
/// change a single row (updated_at included). Returns the rows.
pub async fn run_jobs_twice(
    db: &(impl ConnectionTrait + TransactionTrait),
    now_ms: i64,
    cfg: &EngineConfig,
) -> anyhow::Result<Levels> {
    run_jobs(db, now_ms, cfg).await?;
    let first = read_levels(db).await?;
    run_jobs(db, now_ms, cfg).await?;
    let second = read_levels(db).await?;
    if let Err(d) = diff_levels(&second, &first) {
        bail!("a second run of the periodic jobs changed rows:\n{d}");
    }
    ensure!(
        second == first,
        "a second run of the periodic jobs changed updated_at"
    );
    Ok(second)
}

/// Recomputes `level` over `[from, to)`.
pub async fn recompute(
    db: &(impl ConnectionTrait + TransactionTrait),
    level: Granularity,
    from: i64,
    to: i64,
    now_ms: i64,
    cfg: &EngineConfig,
) -> anyhow::Result<rollup::RollupReport> {
    rollup::recompute(db, level, range(from, to), at(now_ms), cfg)
        .await
        .map_err(|e| anyhow::anyhow!("recompute({level}) failed: {e} ({e:?})"))
}

/// Recomputes every level over `[from, to)` (minute, hourly, daily), then
/// drains what that queued.
pub async fn recompute_all(
    db: &(impl ConnectionTrait + TransactionTrait),
    from: i64,
    to: i64,
    now_ms: i64,
    cfg: &EngineConfig,
) -> anyhow::Result<()> {
    for g in Granularity::ALL {
        recompute(db, g, from, to, now_ms, cfg).await?;
    }
    run_jobs(db, now_ms, cfg).await
}

pub async fn statuses(db: &impl ConnectionTrait, now_ms: i64) -> anyhow::Result<Vec<LevelStatus>> {
    status::rollup_status(db, at(now_ms))
        .await
        .map_err(|e| anyhow::anyhow!("rollup_status failed: {e}"))
}

pub fn status_of(st: &[LevelStatus], g: Granularity) -> LevelStatus {
    st.iter()
        .find(|s| s.level == g)
        .cloned()
        .expect("a status per level")
}

/// Nothing pending anywhere and every level complete through its current
/// bucket.
pub async fn assert_caught_up(db: &impl ConnectionTrait, now_ms: i64) -> anyhow::Result<()> {
    let st = statuses(db, now_ms).await?;
    for g in Granularity::ALL {
        let s = status_of(&st, g);
        ensure!(
            s.pending_ranges == 0 && s.oldest_pending.is_none(),
            "{g} still pending: {s:?}"
        );
        ensure!(
            s.complete_through == g.floor(at(now_ms)),
            "{g} complete_through: {s:?}"
        );
    }
    Ok(())
}

/// Runs `body` on a task of its own, then drops the test database whatever
/// happened (a failing MariaDB test would otherwise leave its database
/// behind); the task's outcome.
async fn on_own_task<T: Send + 'static>(
    t: TestDb,
    body: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let result = tokio::spawn(body).await;
    t.cleanup().await;
    result
}

/// Runs a test body on its own task and drops the test database whatever
/// happens, then re-raises the body's panic.
pub async fn guarded<F, Fut>(t: TestDb, body: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let body = body(t.db.clone());
    if let Err(e) = on_own_task(t, body).await {
        match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

/// One property case on a fresh database of `backend`, run like
/// [`guarded`]; a panic is the case's failure.
pub async fn fresh_db_case<F, Fut>(backend: Backend, body: F) -> anyhow::Result<()>
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let t = TestDb::new(backend).await;
    let body = body(t.db.clone());
    on_own_task(t, body)
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the case panicked: {e}")))
}

pub fn check(result: Result<(), String>, what: &str) -> anyhow::Result<()> {
    result.map_err(|d| anyhow::anyhow!("{what}:\n{d}"))
}

/// Panics, naming `what` and showing the diff, unless `rows` (without
/// `updated_at`) are the model's rows of `recs`.
#[track_caller]
pub fn assert_model(rows: &Levels, recs: &[Rec], what: &str) {
    assert_model_where(rows, recs, |_, _| true, what);
}

/// [`assert_model`] for the rows `keep` keeps, on both sides.
#[track_caller]
pub fn assert_model_where(
    rows: &Levels,
    recs: &[Rec],
    keep: impl Fn(Granularity, &Row) -> bool,
    what: &str,
) {
    let diff = diff_levels(&rows.stripped().filter(&keep), &model(recs).filter(&keep));
    check(diff, what).unwrap();
}

/// Panics unless `after` equals `before` row for row, `updated_at`
/// included: `what` changed nothing.
#[track_caller]
pub fn assert_unchanged(after: &Levels, before: &Levels, what: &str) {
    check(diff_levels(after, before), &format!("{what} changed rows")).unwrap();
    assert_eq!(after, before, "{what} changed updated_at");
}

/// Runs a proptest strategy with a tokio runtime per test, `cases` cases
/// (overridable with `PROPTEST_CASES`), no persistence files, bounded
/// shrinking.
pub fn run_property<S, F, Fut>(name: &str, default_cases: u32, strategy: S, case: F)
where
    S: Strategy,
    S::Value: Clone + std::fmt::Debug,
    F: Fn(S::Value) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 48,
        ..Config::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut runner = TestRunner::new(config);
    let started = std::time::Instant::now();
    let result = runner.run(&strategy, |value| {
        rt.block_on(case(value))
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))
    });
    match result {
        Ok(()) => eprintln!("{name}: {cases} cases passed in {:.1?}", started.elapsed()),
        Err(TestError::Fail(why, value)) => {
            panic!("{name}: property failed: {why}\nminimal failing input: {value:#?}")
        }
        Err(e) => panic!("{name}: {e}"),
    }
}

/// The property tests `$sqlite` and `$mysql`: [`run_property`] with
/// `$cases` cases of `$strategy()`, each case run by `$body(&db, &case)`
/// on a fresh database of that backend ([`fresh_db_case`]).
#[macro_export]
macro_rules! dual_backend_property {
    ($sqlite:ident, $mysql:ident, $cases:expr, $strategy:path, $body:path) => {
        $crate::__backend_property!($sqlite, Sqlite, $cases, $strategy, $body);
        $crate::__backend_property!($mysql, MySql, $cases, $strategy, $body);
    };
}

/// One test of [`dual_backend_property!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_property {
    ($name:ident, $backend:ident, $cases:expr, $strategy:path, $body:path) => {
        #[test]
        fn $name() {
            $crate::run_property(stringify!($name), $cases, $strategy(), |c| {
                $crate::fresh_db_case($crate::Backend::$backend, |db| async move {
                    $body(&db, &c).await
                })
            });
        }
    };
}
