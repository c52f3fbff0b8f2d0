//! Figures 1, 2 and the rebuild half of 7: a full rebuild of every level ×
//! scope, as `gpu-usage-worker backfill` does it, beside the database's
//! floor for the same work and a set-based SQL formulation of the minute
//! level. Figure 1's rows are built in `full_rebuild.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use gpu_usage_core::EngineConfig;
use gpu_usage_core::backfill::{self, BackfillStatus, RunOptions};
use gpu_usage_core::clock::SystemClock;
use gpu_usage_core::jobs::JobEnv;
use gpu_usage_core::types::{Levels, TimeRange};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, StreamTrait, Value};

use crate::data;
use crate::env::{self, Backend, BenchDb, Env, Service};
use crate::table::{Row, ratio_of, secs};

/// What one rebuild did.
#[derive(Debug, Clone)]
pub struct Rebuild {
    pub elapsed: Duration,
    pub rows: i64,
    pub statements: Option<u64>,
    pub peak_rss_mib: f64,
}

/// The database's floor for a rebuild: the ordered read and the write.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub read: Duration,
    pub write: Duration,
}

impl Floor {
    pub fn total(&self) -> Duration {
        self.read + self.write
    }
    pub fn describe(&self) -> String {
        format!(
            "{} (read {} + write {})",
            secs(self.total()),
            secs(self.read),
            secs(self.write)
        )
    }
}

pub fn core_range(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<TimeRange> {
    TimeRange::new(start, end).map_err(|e| anyhow::anyhow!("{e}"))
}

fn dt(v: DateTime<Utc>) -> Value {
    Value::from(v)
}

/// Every level over `range` through the domain calls the CLI makes
/// (`backfill::create` + `run_next`), counting statements and the peak RSS
/// of this process.
pub async fn rebuild_in_process(bdb: &BenchDb, range: TimeRange) -> Result<Rebuild> {
    let mut db = env::connect(&bdb.url, 10).await?;
    let statements = Arc::new(AtomicU64::new(0));
    let counter = statements.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let job_env = JobEnv {
        db: db.clone(),
        runner: "bench".to_owned(),
        clock: Arc::new(SystemClock),
    };
    let cfg = EngineConfig::default();
    env::reset_self_peak();
    let t = Instant::now();
    let job = backfill::create(&job_env.db, range, Levels::All, job_env.now()).await?;
    let done = backfill::run_next(&job_env, &cfg, &RunOptions::default())
        .await?
        .context("the backfill did not run (its lock was busy)")?;
    let elapsed = t.elapsed();
    let peak = env::self_peak_rss_mib();
    if done.id != job.id || done.status != BackfillStatus::Succeeded {
        bail!(
            "backfill {} ended {:?}: {:?}",
            done.id,
            done.status,
            done.error
        );
    }
    let n = statements.load(Ordering::Relaxed);
    db.close().await.ok();
    Ok(Rebuild {
        elapsed,
        rows: bdb.stats_rows().await?,
        statements: Some(n),
        peak_rss_mib: peak,
    })
}

/// The same with the release CLI, `gpu-usage-worker backfill`: wall time
/// of the process and its peak RSS.
pub async fn rebuild_cli(env: &Env, bdb: &BenchDb, range: TimeRange) -> Result<Rebuild> {
    let start = range.start().to_rfc3339();
    let end = range.end().to_rfc3339();
    let t = Instant::now();
    let mut svc = Service::start(
        env,
        "gpu-usage-worker",
        &["backfill", "--start", &start, "--end", &end],
        &bdb.url,
        &[],
    )?;
    let (status, peak) = svc.wait_exit().await?;
    let elapsed = t.elapsed();
    if !status.success() {
        bail!(
            "gpu-usage-worker backfill: {status}; see {}",
            svc.log.display()
        );
    }
    Ok(Rebuild {
        elapsed,
        rows: bdb.stats_rows().await?,
        statements: None,
        peak_rss_mib: peak,
    })
}

/// Reads every row of `sql` to this client, ordered as given.
pub async fn read_all(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> Result<u64> {
    let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    let mut stream = db.stream_raw(stmt).await?;
    let mut n = 0u64;
    while let Some(row) = stream.next().await {
        std::hint::black_box(row?);
        n += 1;
    }
    Ok(n)
}

pub const RECORD_READ: &str = "SELECT endpoint, spec_name, gpu_count, started_at, completed_at, status \
     FROM gpu_usage_records WHERE completed_at >= ? AND started_at < ? ORDER BY completed_at";
const SESSION_READ: &str = "SELECT endpoint, spec_name, gpu_count, started_at, counted_until \
     FROM gpu_usage_worker_sessions WHERE started_at < ? AND counted_until > ? ORDER BY started_at";

/// Columns of a minute row (all but the id and the generated key).
const MINUTE_COLUMNS: &str = "time_bucket, scope_type, scope_value, total_tasks, completed_tasks, \
     failed_tasks, total_gpu_seconds, total_gpu_hours, avg_gpu_count, max_gpu_count, gpu_milliseconds, \
     gpu_count_sum, period_start, period_end, updated_at, available_gpu_ms, idle_gpu_ms, overused_minutes, \
     available_gpu_hours, utilization_rate, idle_gpu_hours, capacity_complete, peak_gpus_in_use, \
     peak_gpus_available, available_gpu_seconds";

/// The database writing `rows` statistics rows in one INSERT … SELECT
/// (copies of the minute rows; the scratch table's DDL is not timed).
pub async fn write_floor(bdb: &BenchDb, rows: i64) -> Result<Duration> {
    bdb.exec("DROP TABLE IF EXISTS bench_copy").await?;
    let (create, bucket) = match bdb.backend {
        Backend::MySql => (
            "CREATE TABLE bench_copy LIKE gpu_usage_statistics_minute",
            "time_bucket + INTERVAL (10 * k.k) YEAR",
        ),
        Backend::Sqlite => (
            "CREATE TABLE bench_copy AS SELECT * FROM gpu_usage_statistics_minute WHERE 0",
            "time_bucket",
        ),
    };
    bdb.exec(create).await?;
    let source_cols = MINUTE_COLUMNS.replacen("time_bucket", bucket, 1);
    let sql = format!(
        "INSERT INTO bench_copy ({MINUTE_COLUMNS}) SELECT {source_cols} FROM gpu_usage_statistics_minute \
         CROSS JOIN (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) k LIMIT {rows}"
    );
    let t = Instant::now();
    let written = bdb.exec(&sql).await?;
    let elapsed = t.elapsed();
    bdb.exec("DROP TABLE IF EXISTS bench_copy").await?;
    if (written as i64) < rows {
        eprintln!("note: the write floor wrote {written} of {rows} rows");
    }
    Ok(elapsed)
}

/// The floor of a rebuild of `range` that wrote `rows` rows.
pub async fn floor(bdb: &BenchDb, range: TimeRange, rows: i64, sessions: bool) -> Result<Floor> {
    let t = Instant::now();
    read_all(
        &bdb.db,
        RECORD_READ,
        vec![dt(range.start()), dt(range.end())],
    )
    .await?;
    if sessions {
        read_all(
            &bdb.db,
            SESSION_READ,
            vec![dt(range.end()), dt(range.start())],
        )
        .await?;
    }
    let read = t.elapsed();
    let write = write_floor(bdb, rows).await?;
    Ok(Floor { read, write })
}

/// The minute level as a DBA would write it in MariaDB: every record
/// joined with a sequence of the minutes it spans, the overlap of each
/// minute computed in SQL, grouped by minute × scope, written with one
/// INSERT … SELECT. Returns the time and the rows written. (The sequence
/// table's DDL is not timed; capacity columns are left at their defaults.)
pub async fn set_based_minute(
    bdb: &BenchDb,
    range: TimeRange,
    timeout_secs: u64,
) -> Result<(Duration, Option<u64>)> {
    let max_minutes = bdb
        .scalar_i64("SELECT CAST(COALESCE(MAX(duration_seconds), 0) DIV 60 + 2 AS SIGNED) FROM gpu_usage_records")
        .await?;
    bdb.exec("DROP TABLE IF EXISTS bench_seq").await?;
    bdb.exec("CREATE TABLE bench_seq (n INT PRIMARY KEY)")
        .await?;
    bdb.exec(&format!(
        "INSERT INTO bench_seq WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < {max_minutes}) SELECT n FROM s"
    ))
    .await?;
    bdb.exec("DROP TABLE IF EXISTS bench_setmin").await?;
    bdb.exec("CREATE TABLE bench_setmin LIKE gpu_usage_statistics_minute")
        .await?;
    let sql = "SET STATEMENT max_statement_time = {timeout} FOR INSERT INTO bench_setmin (time_bucket, scope_type, scope_value, total_tasks, completed_tasks, \
        failed_tasks, total_gpu_seconds, total_gpu_hours, avg_gpu_count, max_gpu_count, gpu_milliseconds, \
        gpu_count_sum, period_start, period_end, updated_at) \
      SELECT x.b, sc.t, CASE sc.t WHEN 'global' THEN NULL WHEN 'endpoint' THEN x.endpoint ELSE x.spec_name END AS sv, \
        SUM(x.done), SUM(x.done * (x.status = 'COMPLETED')), SUM(x.done * (x.status = 'FAILED')), \
        SUM(x.ms) / 1000, ROUND(SUM(x.ms) / 3600000, 6), \
        COALESCE(ROUND(SUM(x.done * x.gpu_count) / NULLIF(SUM(x.done), 0), 2), 0), \
        MAX(x.done * x.gpu_count), SUM(x.ms), SUM(x.done * x.gpu_count), x.b, x.b + INTERVAL 1 MINUTE, NOW(3) \
      FROM ( \
        SELECT r.endpoint, r.spec_name, r.status, r.gpu_count, r.m0 + INTERVAL s.n MINUTE AS b, \
          r.gpu_count * GREATEST(0, TIMESTAMPDIFF(MICROSECOND, \
              GREATEST(r.started_at, r.m0 + INTERVAL s.n MINUTE), \
              LEAST(r.completed_at, r.m0 + INTERVAL (s.n + 1) MINUTE)) DIV 1000) AS ms, \
          (s.n = r.span) AS done \
        FROM ( \
          SELECT q.*, TIMESTAMPDIFF(MINUTE, q.m0, q.completed_at) AS span FROM ( \
            SELECT endpoint, NULLIF(spec_name, '') AS spec_name, status, gpu_count, started_at, completed_at, \
              CAST(DATE_FORMAT(started_at, '%Y-%m-%d %H:%i:00') AS DATETIME) AS m0 \
            FROM gpu_usage_records WHERE completed_at >= ? AND started_at < ?) q \
        ) r JOIN bench_seq s ON s.n <= r.span \
      ) x \
      JOIN (SELECT 'global' AS t UNION ALL SELECT 'endpoint' UNION ALL SELECT 'spec') sc \
        ON sc.t <> 'spec' OR x.spec_name IS NOT NULL \
      WHERE x.b >= ? AND x.b < ? \
      GROUP BY x.b, sc.t, sv \
      HAVING SUM(x.ms) > 0 OR SUM(x.done) > 0";
    let sql = sql.replace("{timeout}", &timeout_secs.to_string());
    let stmt = Statement::from_sql_and_values(
        DbBackend::MySql,
        sql,
        [
            dt(range.start()),
            dt(range.end()),
            dt(range.start()),
            dt(range.end()),
        ],
    );
    let t = Instant::now();
    let written = match bdb.db.execute_raw(stmt).await {
        Ok(r) => Some(r.rows_affected()),
        Err(e) if e.to_string().contains("max_statement_time") => None,
        Err(e) => return Err(e.into()),
    };
    let elapsed = t.elapsed();
    bdb.exec("DROP TABLE IF EXISTS bench_setmin").await?;
    bdb.exec("DROP TABLE IF EXISTS bench_seq").await?;
    Ok((elapsed, written))
}

/// The 7 days before `anchor` (a midnight), and N records completing in them.
pub struct DataSet {
    pub seed: u64,
    pub prefix: String,
    pub count: u64,
    pub days: i64,
    pub anchor: DateTime<Utc>,
    pub workers: Option<usize>,
}

impl DataSet {
    pub fn range(&self) -> Result<gpu_usage_loadgen::TimeRange> {
        data::range(self.anchor - TimeDelta::days(self.days), self.anchor)
    }

    /// Generates and loads the records (and, if asked, the fleet's
    /// sessions); returns the rebuild range: [midnight before the earliest
    /// start, `anchor`).
    pub async fn load(&self, bdb: &BenchDb, sessions: bool) -> Result<(TimeRange, Duration)> {
        let range = self.range()?;
        let g = data::generator(self.seed, &self.prefix, self.count, range, self.workers)?;
        let recs = data::records(&g, range, self.count);
        let (first, _) = data::day_span(&recs).context("no records generated")?;
        let load = data::insert_records(&bdb.db, &recs).await?;
        drop(recs);
        if sessions {
            let ss: Vec<_> = g.sessions(range).collect();
            data::insert_sessions(&bdb.db, &ss, Utc::now()).await?;
        }
        Ok((core_range(first, self.anchor)?, load))
    }
}

/// One size of figure 2, through the release CLI: (rebuild, floor).
pub async fn growth_point(env: &Env, set: &DataSet) -> Result<(Rebuild, Floor)> {
    let bdb = env.create_db(Backend::MySql, "growth").await?;
    let (range, load) = set.load(&bdb, false).await?;
    eprintln!(
        "[2] {} records loaded in {}; gpu-usage-worker backfill over {} days",
        set.count,
        secs(load),
        (range.end() - range.start()).num_days()
    );
    let r = rebuild_cli(env, &bdb, range).await?;
    let f = floor(&bdb, range, r.rows, false).await?;
    bdb.drop_db().await?;
    Ok((r, f))
}

pub fn growth_row(n: u64, r: &Rebuild, f: &Floor) -> Row {
    Row::new(format!("2 growth: rebuild {}", count(n)))
        .ours(format!(
            "{} = {} µs/record",
            secs(r.elapsed),
            per_record_us(r.elapsed, n)
        ))
        .db(format!(
            "{} = {} µs/record",
            secs(f.total()),
            per_record_us(f.total(), n)
        ))
        .ratio(ratio_of(r.elapsed, f.total()))
        .target("µs/record flat; ≤ 1.5× floor")
        .note(format!(
            "gpu-usage-worker backfill (release CLI); {} rows; worker peak RSS {:.0} MiB",
            r.rows, r.peak_rss_mib
        ))
}

pub fn per_record_us(d: Duration, n: u64) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6 / n.max(1) as f64)
}

pub fn count(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(100_000) {
        format!("{}M", n as f64 / 1e6)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}
