//! Rollup and ingest throughput against the database doing the same work by
//! itself, in the same run, so a noisy machine does not fool the figures.
//!
//! `cargo bench -p gpu-usage-core --bench rollup` (MariaDB at
//! GPU_USAGE_TEST_MYSQL_URL, default mysql://root@127.0.0.1:3306; an
//! isolated database is created and dropped). `BENCH_RECORDS` (default
//! 100000) records over `BENCH_DAYS` (default 1) days, `BENCH_BACKEND=sqlite`
//! for SQLite.
//!
//! Printed: ingest rate; per level the rollup time, rows written and
//! statements; the baseline = an ordered read of the same source rows plus
//! one INSERT…SELECT copying as many rows as the level wrote; the ratio
//! rollup / baseline; and the process's peak RSS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::ingest::ingest;
use gpu_usage_core::record::{Record, RecordJson};
use gpu_usage_core::rollup::{self, pending};
use gpu_usage_core::types::{Granularity, TimeRange, parse_utc};
use gpu_usage_testing::{Backend, TestDb};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

/// Deterministic xorshift, so every run benchmarks the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The records as clients post them (JSON), so ingest's figure includes
/// parsing; in completion order, as a platform posts finished tasks.
fn records(n: usize, day: DateTime<Utc>, days: u64) -> Vec<serde_json::Value> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut ends: Vec<u64> = (0..n).map(|_| rng.below(days * 86_400_000)).collect();
    ends.sort_unstable();
    ends.into_iter()
        .enumerate()
        .map(|(i, end_ms)| {
            let end = day + TimeDelta::milliseconds(end_ms as i64);
            // Mostly short inference calls, some long jobs (up to 2 h).
            let dur_ms = if rng.below(10) == 0 {
                rng.below(7_200_000)
            } else {
                rng.below(60_000)
            };
            let start = end - TimeDelta::milliseconds(dur_ms as i64);
            let spec = match rng.below(6) {
                0 => None,
                k => Some(format!("spec-{k}")),
            };
            serde_json::json!({
                "task_id": format!("bench-{i}"),
                "endpoint": format!("endpoint-{}", rng.below(20)),
                "spec_name": spec,
                "gpu_count": rng.below(9) as i64,
                "started_at": start.to_rfc3339(),
                "completed_at": end.to_rfc3339(),
                "status": if rng.below(20) == 0 { "FAILED" } else { "COMPLETED" },
            })
        })
        .collect()
}

/// Resets the kernel's peak-RSS mark (Linux), so each phase's peak is its own.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").ok();
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn exec(db: &impl ConnectionTrait, sql: &str) {
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The database reading the source ordered and writing `rows` rows itself
/// (the scratch table's creation is not timed: the rollup does no DDL).
async fn baseline(db: &impl ConnectionTrait, source_sql: &str, table: &str, rows: u64) -> Duration {
    let t0 = Instant::now();
    let read = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            source_sql.to_owned(),
        ))
        .await
        .unwrap();
    std::hint::black_box(read.len());
    let read_time = t0.elapsed();
    exec(db, "DROP TABLE IF EXISTS bench_copy").await;
    let create = match db.get_database_backend() {
        DbBackend::Sqlite => format!("CREATE TABLE bench_copy AS SELECT * FROM {table} WHERE 0"),
        _ => format!("CREATE TABLE bench_copy LIKE {table}"),
    };
    exec(db, &create).await;
    let t1 = Instant::now();
    exec(
        db,
        &format!(
            "INSERT INTO bench_copy (time_bucket, scope_type, scope_value, total_tasks, completed_tasks, \
             failed_tasks, total_gpu_hours, avg_gpu_count, max_gpu_count, gpu_milliseconds, gpu_count_sum, \
             period_start, period_end, updated_at) SELECT time_bucket, scope_type, scope_value, total_tasks, \
             completed_tasks, failed_tasks, total_gpu_hours, avg_gpu_count, max_gpu_count, gpu_milliseconds, \
             gpu_count_sum, period_start, period_end, updated_at FROM {table} ORDER BY id LIMIT {rows}"
        ),
    )
    .await;
    read_time + t1.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let days: u64 = std::env::var("BENCH_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("sqlite") => Backend::Sqlite,
        _ => Backend::MySql,
    };
    let mut tdb = TestDb::new(backend).await;
    let cfg = EngineConfig::default();
    let day = parse_utc("day", "2026-06-01T00:00:00Z").unwrap();
    let end = day + TimeDelta::days(days as i64);
    let now = end + TimeDelta::hours(1);
    println!("backend {backend:?}, {n} records over {days} day(s)");

    let inputs = records(n, day, days);
    let t0 = Instant::now();
    for batch in inputs.chunks(5_000) {
        let parsed = batch
            .iter()
            .map(|v| Record::try_from(serde_json::from_value::<RecordJson>(v.clone()).unwrap()))
            .collect();
        ingest(&tdb.db, parsed, now, &cfg).await.unwrap();
    }
    let ingest_time = t0.elapsed();
    println!(
        "ingest: {:.2} s, {:.0} records/s (batches of 5000)",
        ingest_time.as_secs_f64(),
        n as f64 / ingest_time.as_secs_f64()
    );
    let queued = pending::take(&tdb.db, Granularity::Minute, 1_000_000)
        .await
        .unwrap();
    pending::consume(
        &tdb.db,
        &queued.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
    )
    .await
    .unwrap();

    let statements = Arc::new(AtomicU64::new(0));
    let counter = statements.clone();
    tdb.db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let range = TimeRange::new(day, end).unwrap();
    let records_sql = format!(
        "SELECT endpoint, spec_name, gpu_count, started_at, completed_at, status FROM gpu_usage_records \
         WHERE completed_at >= '{}' AND started_at < '{}' ORDER BY completed_at",
        day.format("%Y-%m-%d"),
        end.format("%Y-%m-%d")
    );
    let rss_before = peak_rss_mib();
    let levels = [
        (Granularity::Minute, records_sql.as_str()),
        (
            Granularity::Hourly,
            "SELECT time_bucket, scope_type, scope_value, total_tasks, completed_tasks, failed_tasks, \
             gpu_milliseconds, gpu_count_sum, max_gpu_count FROM gpu_usage_statistics_minute ORDER BY time_bucket",
        ),
        (
            Granularity::Daily,
            "SELECT time_bucket, scope_type, scope_value, total_tasks, completed_tasks, failed_tasks, \
             gpu_milliseconds, gpu_count_sum, max_gpu_count FROM gpu_usage_statistics_hourly ORDER BY time_bucket",
        ),
    ];
    // All rollups first, then the baselines: the baselines' reads would
    // otherwise inflate the rollups' peak RSS.
    let mut measured = Vec::new();
    for (level, _) in &levels {
        statements.store(0, Ordering::Relaxed);
        reset_peak_rss();
        let t = Instant::now();
        let report = rollup::recompute(&tdb.db, *level, range, now, &cfg)
            .await
            .unwrap();
        measured.push((
            t.elapsed(),
            report.rows_written,
            statements.load(Ordering::Relaxed),
            peak_rss_mib(),
        ));
    }
    for ((level, source_sql), (rollup_time, rows, stmts, rss)) in levels.iter().zip(measured) {
        let base = baseline(&tdb.db, source_sql, level.table_name(), rows).await;
        println!(
            "{:<6} rollup {:>8.3} s  rows {:>7}  statements {:>4}  peak RSS {:>6.1} MiB  baseline {:>8.3} s  ratio {:>5.2}",
            level.as_str(),
            rollup_time.as_secs_f64(),
            rows,
            stmts,
            rss,
            base.as_secs_f64(),
            rollup_time.as_secs_f64() / base.as_secs_f64()
        );
    }
    exec(&tdb.db, "DROP TABLE IF EXISTS bench_copy").await;
    println!("peak RSS of ingest and set-up: {rss_before:.1} MiB");
    tdb.cleanup().await;
}
