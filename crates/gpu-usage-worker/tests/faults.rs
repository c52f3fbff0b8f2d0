//! Fault injection: the network between the services and their stores
//! breaks, and the end state is still exact. In every case the statistics
//! must equal one clean recompute of the stored records, and ingest loses
//! nothing: a client that got an answer of success has its records stored,
//! and one that got 503 retries until it succeeds (any other failure is
//! reported, as a real client would see a 500 and give up).
//!
//! - A database "restart": three workers, each with its own pool through a
//!   TCP proxy ([`gpu_usage_testing::proxy`]), while records keep arriving;
//!   in the middle of a minute rollup every connection is cut and new ones
//!   are refused for a few seconds, then allowed again. The workers must
//!   fail, back off (on the manual clock) and recover without a restart.
//! - Connections dropped at random points (after a random number of bytes
//!   or a random delay, seeded) during ingest and rollups.
//! - A Redis restart (kill -9 of a private `redis-server` with an
//!   append-only file, started again on the same port and directory) while
//!   the stream consumer runs: entries not acknowledged are delivered again
//!   and stored exactly once.
//!
//! MariaDB only: SQLite is an embedded file with no connection to cut, so
//! network faults do not apply to it. The shared MariaDB and Redis are never
//! restarted: the database faults happen in the proxy, the Redis one to a
//! private server on a port of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use deadpool_redis::redis::{self, AsyncCommands};
use gpu_usage_core::entities::{record, rollup_pending};
use gpu_usage_core::error::error_chain;
use gpu_usage_core::job_runs::{self, JobRun};
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::process as shutdown;
use gpu_usage_core::settings::DatabaseSettings;
use gpu_usage_core::types::{Granularity, TimeRange};
use gpu_usage_core::{DomainError, EngineConfig, ingest, status};
use gpu_usage_testing::proxy::{Proxy, RandomDrops};
use gpu_usage_testing::{Backend, TestDb, mysql_scalar, stored_task_ids, task_ids, wire};
use gpu_usage_worker::schedule::{RETRY_BASE, next_aligned};
use gpu_usage_worker::stream::{self, StreamConsumer};
use gpu_usage_worker::{Background, Clock, JobOutcome, ManualClock, TickReport};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------
// An ingest client that retries like a real one.
// ---------------------------------------------------------------------------

/// The HTTP status the API answers a domain error with (the mapping of
/// `gpu_usage_api::error`, which this crate does not link).
fn http_status(e: &DomainError) -> u16 {
    match e {
        DomainError::Invalid { .. } => 400,
        DomainError::InvalidRecords(_)
        | DomainError::InvalidReports { .. }
        | DomainError::NothingToBackfill => 422,
        DomainError::NotFound { .. } => 404,
        DomainError::Busy { .. } => 409,
        DomainError::LockLost { .. } | DomainError::Contention | DomainError::Unavailable(_) => 503,
        DomainError::Incomplete { source, .. } => http_status(source),
        DomainError::Database(_) | DomainError::Panicked(_) | DomainError::Partial(_) => 500,
    }
}

#[derive(Debug, Default)]
struct ClientLog {
    /// Records whose batch was answered with success.
    stored: Vec<Value>,
    calls: u64,
    /// Answers that were 503: retried.
    unavailable: u64,
    /// Answers that were neither success nor 503 (a client sees a 500 or a
    /// 4xx and gives up): each is a bug under these faults. Retried anyway,
    /// so the rest of the test still runs.
    other_errors: Vec<String>,
    inserted: usize,
    duplicates: usize,
}

/// Ingest through its own pool, retrying a batch until it is accepted.
struct Client {
    db: DatabaseConnection,
    clock: Arc<ManualClock>,
    log: Mutex<ClientLog>,
}

impl Client {
    fn new(db: DatabaseConnection, clock: Arc<ManualClock>) -> Arc<Client> {
        Arc::new(Client {
            db,
            clock,
            log: Mutex::new(ClientLog::default()),
        })
    }

    /// Sends `batch` until it is accepted (at most 60 s).
    async fn send(&self, batch: Vec<Value>) {
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let parsed = batch.iter().cloned().map(wire).collect();
            let result =
                ingest::ingest(&self.db, parsed, self.clock.now(), &EngineConfig::default()).await;
            let failed = {
                let mut log = self.log.lock().unwrap();
                log.calls += 1;
                match result {
                    Ok(r) => {
                        assert!(r.conflicts.is_empty(), "conflicts on a retry: {r:?}");
                        assert_eq!(r.inserted + r.duplicates, batch.len(), "{r:?}");
                        log.inserted += r.inserted;
                        log.duplicates += r.duplicates;
                        log.stored.extend(batch);
                        return;
                    }
                    Err(e) => {
                        let chain = error_chain(&e);
                        match http_status(&e) {
                            503 => log.unavailable += 1,
                            status => log.other_errors.push(format!("{status}: {chain}")),
                        }
                        chain
                    }
                }
            };
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "ingest still failing after 60 s: {failed}"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

/// Records arriving all the time: batches of 8 late records (up to three
/// hours old) every 40 ms, until `stop` is set.
fn spawn_feeder(client: Arc<Client>, prefix: &str, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let prefix = prefix.to_owned();
    tokio::spawn(async move {
        for k in 0u64.. {
            if *stop.borrow() {
                break;
            }
            let now = client.clock.now();
            let batch = records(
                1000 + k,
                &format!("{prefix}{k}"),
                8,
                now - TimeDelta::hours(3),
                now - TimeDelta::seconds(1),
            );
            client.send(batch).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    })
}

// ---------------------------------------------------------------------------
// Workers behind the proxy.
// ---------------------------------------------------------------------------

/// A pool on `settings`, retried while the proxy drops its first
/// connections (as a deployment restarts a replica that cannot connect).
async fn connect_retrying(settings: &DatabaseSettings) -> DatabaseConnection {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match gpu_usage_core::db::connect(settings).await {
            Ok(db) => return db,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct Worker {
    bg: Background,
    ticks: watch::Receiver<Option<TickReport>>,
    /// Every scheduler pass it reported.
    history: Arc<Mutex<Vec<TickReport>>>,
}

/// Keeps the passes `rx` reports. The channel holds the latest only, so
/// passes closer together than this task reacts can be missed; the passes
/// the outage checks look at are half a second apart or more.
fn record_passes(mut rx: watch::Receiver<Option<TickReport>>) -> Arc<Mutex<Vec<TickReport>>> {
    let history = Arc::new(Mutex::new(Vec::new()));
    let h = history.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            if let Some(r) = rx.borrow_and_update().clone() {
                h.lock().unwrap().push(r);
            }
        }
    });
    history
}

/// `n` workers, each with its own pool through the proxy.
async fn spawn_workers(
    settings: &DatabaseSettings,
    clock: &Arc<ManualClock>,
    n: usize,
) -> Vec<Worker> {
    let mut out = Vec::new();
    for i in 1..=n {
        let db = connect_retrying(settings).await;
        let bg = spawn_background(db, clock, &format!("worker-{i}"), Tasks::Scheduler);
        let ticks = bg.ticks().unwrap();
        let history = record_passes(ticks.clone());
        out.push(Worker { bg, ticks, history });
    }
    out
}

/// How both proxy tests start, at 10:00:30: a client through `proxy` that
/// has sent `n` records (seed `seed`, prefix `base`) from `from` to 10:00,
/// and three workers past their first scheduler pass.
async fn seeded_workers(
    proxy: &Proxy,
    t: &TestDb,
    seed: u64,
    n: usize,
    from: &str,
) -> (Arc<ManualClock>, Arc<Client>, Vec<Worker>) {
    let settings = proxy.settings_for(t);
    let clock = clock_at("2026-06-15T10:00:30Z");
    let client = Client::new(connect_retrying(&settings).await, clock.clone());
    client
        .send(records_in(seed, "base", n, from, "2026-06-15T10:00:00Z"))
        .await;
    let mut workers = spawn_workers(&settings, &clock, 3).await;
    for w in &mut workers {
        wait_tick(&mut w.ticks, ts("2026-06-15T10:00:30Z")).await;
    }
    (clock, client, workers)
}

/// Moves the clock to `at` and waits for every worker's pass starting then.
async fn tick_all(
    clock: &ManualClock,
    workers: &mut [Worker],
    at: DateTime<Utc>,
) -> Vec<TickReport> {
    clock.set(at);
    let mut out = Vec::new();
    for w in workers.iter_mut() {
        out.push(wait_tick(&mut w.ticks, at).await);
    }
    out
}

/// The jobs whose retries the outage test follows.
const BACKED_OFF: [JobName; 2] = [JobName::Capacity, JobName::MinuteRollup];

/// Failed attempts of each of [`BACKED_OFF`] counted by `w`'s metrics.
fn failed_attempts(w: &Worker) -> Vec<u64> {
    let text = w.bg.context().metrics.render();
    BACKED_OFF
        .iter()
        .map(|job| {
            let line = format!(
                "gpu_usage_job_runs_total{{job_name=\"{}\",outcome=\"failed\"}}",
                job.as_str()
            );
            metric(&text, &line)
        })
        .collect()
}

fn outcome_of(report: &TickReport, job: JobName) -> Option<&JobOutcome> {
    report
        .outcomes
        .iter()
        .find(|(j, _)| *j == job)
        .map(|(_, o)| o)
}

fn failures(report: &TickReport) -> Vec<String> {
    report
        .outcomes
        .iter()
        .filter_map(|(j, o)| match o {
            JobOutcome::Failed { error } => Some(format!("{j}: {error}")),
            _ => None,
        })
        .collect()
}

/// Hour ticks until nothing is pending at any level; the last tick's
/// reports.
async fn converge(t: &TestDb, clock: &ManualClock, workers: &mut [Worker]) -> Vec<TickReport> {
    for _ in 0..6 {
        let at = next_aligned(clock.now(), TimeDelta::hours(1));
        let reports = tick_all(clock, workers, at).await;
        let st = status::rollup_status(&t.db, clock.now()).await.unwrap();
        if st.iter().all(|s| s.pending_ranges == 0) {
            return reports;
        }
    }
    panic!(
        "still pending after six hour ticks: {:?}",
        status::rollup_status(&t.db, clock.now()).await.unwrap()
    );
}

async fn all_runs(db: &DatabaseConnection) -> Vec<JobRun> {
    let mut runs = job_runs::recent(db, None, 100_000).await.unwrap();
    runs.reverse();
    runs
}

/// What every fault test checks at the end, with the workers stopped:
/// ingest lost nothing and saw only 503s, no run is left `running`, the
/// latest run of every rollup succeeded, and the statistics equal a clean
/// recompute of every stored record.
async fn assert_exact_end_state(t: &TestDb, client: &Client, now: DateTime<Utc>) {
    let (sent, other_errors, all) = {
        let log = client.log.lock().unwrap();
        println!(
            "ingest: {} calls, {} answered 503 and retried, {} other errors; {} records accepted ({} inserted, {} duplicates of a retried commit)",
            log.calls,
            log.unavailable,
            log.other_errors.len(),
            log.stored.len(),
            log.inserted,
            log.duplicates
        );
        let sent = task_ids(&log.stored);
        (sent, log.other_errors.clone(), log.stored.clone())
    };
    let stored = stored_task_ids(&t.db).await;
    let missing: Vec<_> = sent.difference(&stored).take(10).collect();
    assert!(
        missing.is_empty(),
        "accepted records missing from the database: {missing:?}"
    );
    assert_eq!(stored.len(), sent.len(), "stored records beyond those sent");

    let runs = all_runs(&t.db).await;
    let stuck: Vec<_> = runs.iter().filter(|r| r.outcome == "running").collect();
    assert!(stuck.is_empty(), "runs left running: {stuck:?}");
    for job in [
        JobName::MinuteRollup,
        JobName::HourlyRollup,
        JobName::DailyRollup,
    ] {
        let last = runs.iter().rev().find(|r| r.job == job).unwrap();
        assert_eq!(last.outcome, "succeeded", "{last:?}");
    }
    let by_outcome = |o: &str| runs.iter().filter(|r| r.outcome == o).count();
    println!(
        "job runs: {} succeeded, {} failed, {} abandoned",
        by_outcome("succeeded"),
        by_outcome("failed"),
        by_outcome("abandoned")
    );

    let range = TimeRange::new(ts("2026-06-14T00:00:00Z"), ts("2026-06-17T00:00:00Z")).unwrap();
    assert_eq!(
        snapshot(&t.db).await,
        reference(Backend::MySql, all, range, now).await,
        "statistics equal one clean recompute of the stored records"
    );
    assert!(
        other_errors.is_empty(),
        "ingest answered {} time(s) with an error other than 503 under a database fault \
         (a client gives up on those): {:#?}",
        other_errors.len(),
        other_errors
    );
}

async fn stop_workers(workers: Vec<Worker>) {
    for w in workers {
        w.bg.shutdown(Duration::from_secs(20)).await;
    }
}

async fn max_pending_id(db: &DatabaseConnection, level: Granularity) -> i64 {
    rollup_pending::Entity::find()
        .filter(rollup_pending::Column::Level.eq(level))
        .order_by_desc(rollup_pending::Column::Id)
        .one(db)
        .await
        .unwrap()
        .map_or(0, |p| p.id)
}

/// Waits (on the direct connection) until a minute rollup is running and
/// has committed at least one chunk (it queued hourly work after
/// `hourly_before`) with more to do; the run.
async fn wait_mid_rollup(db: &DatabaseConnection, runs_before: i64, hourly_before: i64) -> JobRun {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let latest = job_runs::recent(db, Some(JobName::MinuteRollup), 1)
            .await
            .unwrap()
            .pop();
        if let Some(run) = latest.filter(|r| r.id > runs_before) {
            assert_eq!(
                run.outcome, "running",
                "the rollup finished before it could be cut: {run:?}"
            );
            if max_pending_id(db, Granularity::Hourly).await > hourly_before {
                return run;
            }
        }
        assert!(Instant::now() < deadline, "no minute rollup started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------
// 1. The database goes away mid-rollup and comes back.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_recover_from_a_database_restart_mid_rollup() {
    let t = TestDb::mysql().await;
    let proxy = Proxy::to_mysql().await;
    let (clock, client, mut workers) =
        seeded_workers(&proxy, &t, 1, 200, "2026-06-15T06:00:00Z").await;
    let (stop_feeding, stop) = watch::channel(false);
    let feeder = spawn_feeder(client.clone(), "live", stop);

    // A large late batch: the next minute rollup has four 6-hour chunks.
    client
        .send(records_in(
            2,
            "big",
            4000,
            "2026-06-14T14:00:00Z",
            "2026-06-15T10:00:00Z",
        ))
        .await;
    let runs_before = all_runs(&t.db).await.last().map_or(0, |r| r.id);
    let hourly_before = max_pending_id(&t.db, Granularity::Hourly).await;
    clock.set(ts("2026-06-15T10:01:00Z"));
    let victim = wait_mid_rollup(&t.db, runs_before, hourly_before).await;

    // The database goes away: every connection cut, new ones refused.
    let failed_before: Vec<Vec<u64>> = workers.iter().map(failed_attempts).collect();
    let outage = Instant::now();
    proxy.cut_all();
    proxy.refuse(true);
    println!("cut mid-rollup: {victim:?}");

    // While it is away every worker fails (nothing can succeed) and backs
    // off: a failed job is due again 5 s later, then 10 s, then 20 s. The
    // clock is moved to half a second before each of those and runs on from
    // there, so a worker retrying sooner would run at once (checked below).
    let down_from = ts("2026-06-15T10:02:00Z");
    for (jump, due) in [
        ("10:02:00", "10:02:00"),
        ("10:02:04.5", "10:02:05"),
        ("10:02:14.5", "10:02:15"),
        ("10:02:34.5", "10:02:35"),
    ] {
        clock.set(ts(&format!("2026-06-15T{jump}Z")));
        for w in &mut workers {
            let r = wait_tick(&mut w.ticks, ts(&format!("2026-06-15T{due}Z"))).await;
            assert!(
                r.outcomes.iter().all(|(_, o)| o.is_failure()),
                "every job fails while the database is away: {r:?}"
            );
        }
    }
    // A few seconds of outage in all.
    if let Some(left) = Duration::from_secs(3).checked_sub(outage.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let up_at = clock.now();
    let failed_during: Vec<Vec<u64>> = workers
        .iter()
        .zip(&failed_before)
        .map(|(w, before)| {
            let now = failed_attempts(w);
            now.iter().zip(before).map(|(n, b)| n - b).collect()
        })
        .collect();
    proxy.refuse(false);
    let interrupted = all_runs(&t.db)
        .await
        .into_iter()
        .find(|r| r.id == victim.id)
        .unwrap();
    assert_ne!(
        interrupted.outcome, "succeeded",
        "the rollup was cut before it finished: {interrupted:?}"
    );

    // Back: the next tick works for every worker, without a restart.
    let back = tick_all(&clock, &mut workers, ts("2026-06-15T10:03:00Z")).await;
    for (i, r) in back.iter().enumerate() {
        assert!(
            failures(r).is_empty(),
            "worker-{} did not recover at the first tick after the outage: {r:?}",
            i + 1
        );
    }
    tick_all(&clock, &mut workers, ts("2026-06-15T10:05:00Z")).await;
    stop_feeding.send(true).unwrap();
    feeder.await.unwrap();
    let last = converge(&t, &clock, &mut workers).await;
    for r in &last {
        assert!(failures(r).is_empty(), "{r:?}");
    }

    // Each worker kept retrying during the outage without spinning: a few
    // attempts per job over the half minute of clock time (counted), never
    // two within the first back-off delay of each other (seen in the passes
    // kept), and it ran normally afterwards.
    for (i, w) in workers.iter().enumerate() {
        let history = w.history.lock().unwrap().clone();
        for (j, job) in BACKED_OFF.into_iter().enumerate() {
            let n = failed_during[i][j];
            assert!(
                (2..=6).contains(&n),
                "worker-{} failed {job} {n} times during the outage",
                i + 1
            );
            let failed: Vec<DateTime<Utc>> = history
                .iter()
                .filter(|r| r.at >= down_from && r.at < up_at)
                .filter(|r| outcome_of(r, job).is_some_and(JobOutcome::is_failure))
                .map(|r| r.at)
                .collect();
            assert!(
                failed.windows(2).all(|w| w[1] - w[0] >= RETRY_BASE),
                "worker-{} retried {job} without backing off: {failed:?}\npasses: {:#?}",
                i + 1,
                history
                    .iter()
                    .map(|r| (r.at, &r.outcomes))
                    .collect::<Vec<_>>()
            );
        }
        let after = history.iter().filter(|r| r.at >= up_at).count();
        assert!(after >= 2, "worker-{} ran after the outage", i + 1);
    }
    println!("failed attempts during the outage (capacity, minute) per worker: {failed_during:?}");
    let s = proxy.stats();
    println!(
        "proxy: {s:?}; outage {:.1} s",
        outage.elapsed().as_secs_f64()
    );
    assert!(s.cut > 0 && s.refused > 0, "{s:?}");
    assert!(
        client.log.lock().unwrap().unavailable > 0,
        "ingest saw the outage"
    );

    let now = clock.now();
    stop_workers(workers).await;
    assert_exact_end_state(&t, &client, now).await;
    t.cleanup().await;
}

// ---------------------------------------------------------------------------
// 2. Connections dropped at random points.
// ---------------------------------------------------------------------------

/// `FAULTS_SEED` reproduces a run's drop plans.
fn seed() -> u64 {
    std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_260_615)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_dropped_at_random_points_lose_nothing() {
    let t = TestDb::mysql().await;
    let proxy = Proxy::to_mysql().await;
    let seed = seed();
    println!("FAULTS_SEED={seed}");
    proxy.random_drops(Some(RandomDrops {
        seed,
        probability: 0.5,
        max_bytes: 32 * 1024,
        max_delay: Duration::from_millis(1000),
    }));
    let (clock, client, mut workers) =
        seeded_workers(&proxy, &t, 3, 600, "2026-06-15T00:00:00Z").await;
    let (stop_feeding, stop) = watch::channel(false);
    let feeder = spawn_feeder(client.clone(), "rnd", stop);

    let mut failed_passes = 0;
    let mut job_errors = BTreeSet::new();
    for (k, at) in [
        "10:01", "10:02", "10:03", "10:04", "10:05", "10:06", "10:10", "10:15", "11:00", "11:01",
    ]
    .iter()
    .enumerate()
    {
        // Late records for old buckets between the ticks, too.
        client
            .send(records_in(
                40 + k as u64,
                &format!("late{k}-"),
                150,
                "2026-06-14T20:00:00Z",
                "2026-06-15T10:00:00Z",
            ))
            .await;
        let reports = tick_all(&clock, &mut workers, ts(&format!("2026-06-15T{at}:00Z"))).await;
        failed_passes += reports.iter().filter(|r| !failures(r).is_empty()).count();
        job_errors.extend(reports.iter().flat_map(failures));
    }

    // The faults stop; everything pending is folded in.
    proxy.random_drops(None);
    stop_feeding.send(true).unwrap();
    feeder.await.unwrap();
    let last = converge(&t, &clock, &mut workers).await;
    for r in &last {
        assert!(failures(r).is_empty(), "{r:?}");
    }
    let s = proxy.stats();
    let unavailable = client.log.lock().unwrap().unavailable;
    println!("proxy: {s:?}; passes with a failed job: {failed_passes}; ingest 503s: {unavailable}");
    println!("job failures seen: {job_errors:#?}");
    assert!(s.dropped > 0, "{s:?}");
    assert!(
        failed_passes + usize::try_from(unavailable).unwrap() > 0,
        "the drops reached ingest or the jobs"
    );

    let now = clock.now();
    stop_workers(workers).await;
    assert_exact_end_state(&t, &client, now).await;
    t.cleanup().await;
}

// ---------------------------------------------------------------------------
// 3. Redis restarts while the consumer runs.
// ---------------------------------------------------------------------------

/// A `redis-server` of this test's own, persisting to an append-only file
/// in a directory of its own; killed (and the directory removed) on drop,
/// also when the test fails.
struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let dir =
            std::env::temp_dir().join(format!("gu_faults_redis_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = PrivateRedis {
            port: free_port(),
            dir,
            child: None,
        };
        r.spawn().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and directory, and waits
    /// until it answers.
    async fn spawn(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--daemonize", "no"])
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

async fn xadd_all(pool: &deadpool_redis::Pool, stream: &str, recs: &[Value]) {
    let mut conn = pool.get().await.unwrap();
    for r in recs {
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("record")
            .arg(r.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

async fn record_count(db: &DatabaseConnection) -> u64 {
    record::Entity::find().count(db).await.unwrap()
}

async fn wait_for(what: &str, secs: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {secs} s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the metric line starting with `prefix`, 0 when absent.
fn metric(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_redelivers_unacknowledged_entries_stored_once() {
    let mut server = PrivateRedis::start().await;
    let s = fresh_streams(server.url(), "gu_faults", 5, 500);
    let pool = stream::create_pool(&s).unwrap();
    let (t, clock) = db_and_clock(Backend::MySql, "2026-06-15T10:00:00Z").await;
    let first = records_in(60, "ra", 60, "2026-06-15T06:00:00Z", "2026-06-15T09:59:00Z");
    let during = records_in(61, "rb", 30, "2026-06-15T06:00:00Z", "2026-06-15T09:59:00Z");
    let after = records_in(62, "rc", 30, "2026-06-15T06:00:00Z", "2026-06-15T09:59:00Z");
    xadd_all(&pool, &s.stream, &first).await;

    let ctx = context(t.db.clone(), clock.clone(), "consumer");
    let consumer = StreamConsumer::new(pool.clone(), s.clone(), ctx.clone(), "consumer");
    let (trigger, stop) = shutdown::channel();
    let task = tokio::spawn(consumer.run(stop));

    // Some batches stored and acknowledged ...
    wait_for("some batches stored", 20, async || {
        record_count(&t.db).await >= 20
    })
    .await;
    // ... then the next one held inside its database transaction (a
    // transaction holding the gap locks of the whole records table), so
    // that it is delivered and not acknowledged when Redis dies.
    let blocker = HeldLock::on(&t, "gpu_usage_records").await;
    xadd_all(&pool, &s.stream, &during).await;
    wait_for("the consumer blocked inside a batch", 20, async || {
        mysql_scalar(
            &t.db,
            "SELECT CAST(COUNT(*) AS SIGNED) AS v FROM information_schema.PROCESSLIST \
             WHERE DB = DATABASE() AND ID <> CONNECTION_ID() \
             AND INFO LIKE 'INSERT IGNORE INTO `gpu_usage_records`%'",
            vec![],
        )
        .await
            > Some(0)
    })
    .await;
    let stored_at_kill = record_count(&t.db).await;
    let mut conn = pool.get().await.unwrap();
    let pending: redis::streams::StreamPendingReply =
        conn.xpending(&s.stream, &s.group).await.unwrap();
    drop(conn);
    assert!(
        pending.count() > 0,
        "a batch is delivered and not acknowledged"
    );
    println!(
        "kill -9 with {stored_at_kill} of {} records stored, {} entries delivered and unacknowledged",
        first.len() + during.len(),
        pending.count()
    );

    server.kill();
    // The held batch commits now, and its acknowledgement fails.
    blocker.release().await.ok();
    wait_for("the held batch committed", 20, async || {
        record_count(&t.db).await > stored_at_kill
    })
    .await;
    // Started again only once the consumer has failed to acknowledge it.
    wait_for("a failed consumer round", 30, async || {
        metric(&ctx.metrics.render(), "gpu_usage_stream_errors_total") > 0
    })
    .await;

    server.spawn().await;
    xadd_all(&pool, &s.stream, &after).await;
    let total = first.len() + during.len() + after.len();
    wait_for("the stream drained", 60, async || {
        let lag = stream::stream_lag(&pool, &s).await.ok().flatten();
        record_count(&t.db).await == total as u64
            && lag.is_some_and(|l| l.pending == 0 && l.lag == Some(0))
    })
    .await;
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the consumer stopped")
        .unwrap();

    // Nothing lost from Redis by the kill, nothing dead-lettered.
    let mut conn = pool.get().await.unwrap();
    let len: usize = conn.xlen(&s.stream).await.unwrap();
    let dead: usize = conn.xlen(&s.dead_letter_stream).await.unwrap();
    drop(conn);
    assert_eq!((len, dead), (total, 0));
    // Redelivered (the held batch was stored while Redis was down) and
    // stored exactly once.
    let text = ctx.metrics.render();
    let redelivered = metric(
        &text,
        "gpu_usage_stream_entries_total{result=\"duplicate\"}",
    );
    let round_errors = metric(&text, "gpu_usage_stream_errors_total");
    println!("redelivered as duplicates: {redelivered}; failed rounds: {round_errors}");
    assert!(
        redelivered > 0,
        "unacknowledged entries delivered again\n{text}"
    );
    assert!(round_errors > 0, "{text}");
    let all: Vec<Value> = [first, during, after].concat();
    let ids = stored_task_ids(&t.db).await;
    let want = task_ids(&all);
    assert_eq!(record_count(&t.db).await, want.len() as u64);
    assert_eq!(ids, want);

    // The rows equal a clean recompute.
    clock.set(ts("2026-06-15T10:01:00Z"));
    let jobs = context(t.db.clone(), clock.clone(), "rollups");
    run_rollup_chain(&jobs).await;
    let range = TimeRange::new(ts("2026-06-15T00:00:00Z"), ts("2026-06-16T00:00:00Z")).unwrap();
    assert_eq!(
        snapshot(&t.db).await,
        reference(Backend::MySql, all, range, clock.now()).await
    );
    drop(server);
    t.cleanup().await;
}
