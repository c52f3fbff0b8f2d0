//! What capacity costs the per-minute tick: 1,000 workers heart-beating
//! every 30 s beside a task load of 100,000 records a day, against the same
//! run without workers, in the same process, so a noisy machine cannot
//! fool the ratio.
//!
//! `cargo bench -p gpu-usage-core --bench capacity` (MariaDB at
//! GPU_USAGE_TEST_MYSQL_URL, default mysql://root@127.0.0.1:3306;
//! `BENCH_BACKEND=sqlite` for SQLite; `BENCH_WORKERS`, default 1000;
//! `BENCH_MINUTES`, default 30).
//!
//! Each simulated minute: the minute's records are ingested, every
//! worker's two heartbeats are applied (batches of 200, as the API or the
//! stream would receive them), then the tick runs: the capacity job, then
//! the minute rollup. Printed: mean and p95 of the tick with and without
//! workers and their ratio; the heartbeat rate; and the floor, the
//! database moving every open session's counted_until by itself in one
//! UPDATE.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::capacity::{self, Heartbeat, HeartbeatJson};
use gpu_usage_core::ingest::ingest;
use gpu_usage_core::record::{Record, RecordJson};
use gpu_usage_core::rollup;
use gpu_usage_core::types::{Granularity, parse_utc};
use gpu_usage_testing::{Backend, TestDb};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

const RECORDS_PER_MINUTE: u64 = 70;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The records completing in minute `m` (deterministic).
fn records(m: u64, start: DateTime<Utc>) -> Vec<Record> {
    (0..RECORDS_PER_MINUTE)
        .map(|i| {
            let k = m * RECORDS_PER_MINUTE + i;
            let end = start + TimeDelta::milliseconds((m * 60_000 + (k * 7_919) % 60_000) as i64);
            let dur = (k * 104_729) % 120_000;
            let j: RecordJson = serde_json::from_value(serde_json::json!({
                "task_id": format!("b-{k}"),
                "endpoint": format!("endpoint-{}", k % 20),
                "spec_name": format!("spec-{}", k % 5),
                "gpu_count": (k % 8) as i64 + 1,
                "started_at": (end - TimeDelta::milliseconds(dur as i64)).to_rfc3339(),
                "completed_at": end.to_rfc3339(),
                "status": "COMPLETED",
            }))
            .unwrap();
            Record::try_from(j).unwrap()
        })
        .collect()
}

/// Worker `w`'s heartbeats in minute `m`, at seconds w % 30 and +30.
fn heartbeats(workers: usize, m: u64, start: DateTime<Utc>) -> Vec<Heartbeat> {
    let mut out = Vec::with_capacity(workers * 2);
    for half in 0..2u64 {
        for w in 0..workers {
            let s = m * 60 + half * 30 + (w % 30) as u64;
            let j: HeartbeatJson = serde_json::from_value(serde_json::json!({
                "worker_id": format!("worker-{w}"),
                "endpoint": format!("endpoint-{}", w % 20),
                "spec_name": format!("spec-{}", w % 5),
                "gpu_count": (w % 4) as i64 + 1,
                "at": (start + TimeDelta::seconds(s as i64)).to_rfc3339(),
            }))
            .unwrap();
            out.push(Heartbeat::try_from(j).unwrap());
        }
    }
    out.sort_by_key(|h| h.at);
    out
}

struct Run {
    ticks: Vec<Duration>,
    beats: usize,
    beat_time: Duration,
}

async fn run(db: &DatabaseConnection, workers: usize, minutes: u64) -> Run {
    let cfg = EngineConfig::default();
    let start = parse_utc("s", "2026-06-01T10:00:00Z").unwrap();
    let mut r = Run {
        ticks: Vec::new(),
        beats: 0,
        beat_time: Duration::ZERO,
    };
    for m in 0..minutes {
        let minute_end = start + TimeDelta::minutes(m as i64 + 1);
        let recs = records(m, start).into_iter().map(Ok).collect();
        ingest(db, recs, minute_end, &cfg).await.unwrap();
        let beats = heartbeats(workers, m, start);
        let t = Instant::now();
        for chunk in beats.chunks(200) {
            let last = chunk.last().map_or(minute_end, |h| h.at);
            capacity::apply_valid_heartbeats(db, chunk.to_vec(), last, &cfg)
                .await
                .unwrap();
        }
        r.beat_time += t.elapsed();
        r.beats += beats.len();
        let t = Instant::now();
        capacity::advance(db, minute_end, &cfg).await.unwrap();
        rollup::process_pending(db, Granularity::Minute, minute_end, &cfg)
            .await
            .unwrap();
        r.ticks.push(t.elapsed());
    }
    r
}

fn mean_p95(v: &[Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    let p95 = ms[((ms.len() as f64 * 0.95) as usize).min(ms.len() - 1)];
    (mean, p95)
}

/// The database alone moving every open session forward, once.
async fn floor(db: &DatabaseConnection) -> Duration {
    let sql = "UPDATE gpu_usage_worker_sessions SET counted_until = counted_until, \
               updated_at = CURRENT_TIMESTAMP WHERE ended_at IS NULL";
    let t = Instant::now();
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let workers = env("BENCH_WORKERS", 1000);
    let minutes = env("BENCH_MINUTES", 30) as u64;
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("sqlite") => Backend::Sqlite,
        _ => Backend::MySql,
    };
    println!(
        "backend {backend:?}, {minutes} minutes of {RECORDS_PER_MINUTE} records/min, {workers} workers heart-beating every 30 s"
    );
    let without = TestDb::new(backend).await;
    let plain = run(&without.db, 0, minutes).await;
    without.cleanup().await;
    let with = TestDb::new(backend).await;
    let loaded = run(&with.db, workers, minutes).await;
    let floor = floor(&with.db).await;
    with.cleanup().await;

    let (pm, pp) = mean_p95(&plain.ticks);
    let (lm, lp) = mean_p95(&loaded.ticks);
    println!("tick without workers: mean {pm:>8.2} ms  p95 {pp:>8.2} ms");
    println!(
        "tick with workers:    mean {lm:>8.2} ms  p95 {lp:>8.2} ms  ratio {:.2}",
        lm / pm
    );
    println!(
        "heartbeats: {} in {:.2} s = {:.0}/s (batches of 200)",
        loaded.beats,
        loaded.beat_time.as_secs_f64(),
        loaded.beats as f64 / loaded.beat_time.as_secs_f64()
    );
    println!(
        "floor: one UPDATE of every open session by the database: {:.2} ms; capacity share of the tick {:.2} ms = {:.1}x the floor",
        floor.as_secs_f64() * 1e3,
        lm - pm,
        (lm - pm) / (floor.as_secs_f64() * 1e3)
    );
}
