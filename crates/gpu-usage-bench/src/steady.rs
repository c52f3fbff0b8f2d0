//! Figure 4: the worker in steady state while 100 records/s arrive over
//! the API, with and without 1,000 heart-beating workers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpu_usage_core::entities::{job_run, rollup_pending};
use gpu_usage_core::rollup::pending;
use gpu_usage_core::types::{Granularity, TimeRange};
use gpu_usage_loadgen::output::http::{HttpOptions, HttpSender};
use gpu_usage_loadgen::output::{Batch, Report};
use gpu_usage_loadgen::{Config, Generator};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Value};

use crate::data;
use crate::env::{self, Backend, CpuSampler, Env, Service};
use crate::rebuild::{self, RECORD_READ, read_all, write_floor};
use crate::table::{Row, ms, secs};

pub struct SteadyOptions {
    pub minutes: u64,
    pub prefill_hours: u64,
    pub rate: f64,
    pub seed: u64,
}

/// A pending minute entry as the poller last saw it.
#[derive(Clone, Copy)]
struct Seen {
    range: TimeRange,
    last: SystemTime,
}

fn to_system(t: DateTime<Utc>) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(t.timestamp_millis().max(0) as u64)
}

pub async fn figure4(env: &Env, o: &SteadyOptions, workers: usize) -> Result<Vec<Row>> {
    let label = if workers == 0 {
        "no workers".to_owned()
    } else {
        format!("{workers} workers heart-beating")
    };
    let g = Generator::new(Config {
        seed: o.seed,
        rate: o.rate,
        endpoints: data::ENDPOINTS,
        specs: data::SPECS,
        workers: Some(1000),
        task_prefix: format!("steady{workers}"),
        ..Config::default()
    })?;
    let bdb = env.create_db(Backend::MySql, "steady").await?;
    prefill(&bdb, &g, o).await?;
    let stack = Stack::start(env, &bdb).await?;
    let poller = Poller::spawn(bdb.db.clone());
    let (window, load) = send_load(&g, &stack.base, o.minutes, workers > 0).await?;
    let seen = poller.stop().await;
    let tck = stack.tck;
    let samples = stack.stop();
    if load.report.items_failed > 0 {
        eprintln!(
            "note: {} items failed: {:?}",
            load.report.items_failed, load.report.errors
        );
    }

    let runs = job_run::Entity::find()
        .filter(job_run::Column::StartedAt.gte(window.start))
        .filter(job_run::Column::StartedAt.lt(window.end))
        .all(&bdb.db)
        .await?;
    let m = Measured {
        label,
        minutes: o.minutes,
        sessions: workers > 0,
        runs,
        seen: seen.lock().map(|m| m.clone()).unwrap_or_default(),
        samples,
        tck,
        window,
        load,
    };
    let mut rows = Vec::new();
    for (job, name) in [
        ("rollup_minute", "minute job"),
        ("rollup_hourly", "hourly job"),
        ("rollup_daily", "daily job"),
        ("capacity", "capacity job"),
    ] {
        rows.push(m.job_row(&bdb, job, name).await?);
    }
    bdb.drop_db().await?;
    Ok(rows)
}

/// Stores `prefill_hours` of records at the steady rate and rebuilds them,
/// so the jobs run over a database that already has data.
async fn prefill(bdb: &env::BenchDb, g: &Generator, o: &SteadyOptions) -> Result<()> {
    let now = Utc::now().duration_trunc(TimeDelta::seconds(1))?;
    if o.prefill_hours == 0 {
        return Ok(());
    }
    let r = data::range(now - TimeDelta::hours(o.prefill_hours as i64), now)?;
    let recs: Vec<_> = g.records(r).collect();
    data::insert_records(&bdb.db, &recs).await?;
    if let Some((s, _)) = data::day_span(&recs) {
        let end = Granularity::Minute.ceil(now);
        let rb = rebuild::rebuild_in_process(bdb, rebuild::core_range(s, end)?).await?;
        eprintln!(
            "[4] prefilled {} records ({} h at {}/s), rebuilt in {}",
            recs.len(),
            o.prefill_hours,
            o.rate,
            secs(rb.elapsed)
        );
    }
    Ok(())
}

/// The API and the worker under test, with CPU samplers on them and on
/// the database server. (Fields drop in order: the worker is stopped
/// before the API, as `stop` does.)
struct Stack {
    worker: Service,
    api: Service,
    base: String,
    tck: f64,
    worker_cpu: CpuSampler,
    db_cpu: Option<CpuSampler>,
    api_cpu: CpuSampler,
}

/// CPU samples of the worker, the API and mariadbd (empty when its process
/// was not found).
struct Samples {
    worker: Vec<(SystemTime, u64)>,
    api: Vec<(SystemTime, u64)>,
    db: Vec<(SystemTime, u64)>,
}

impl Stack {
    async fn start(env: &Env, bdb: &env::BenchDb) -> Result<Self> {
        let extra = [("GPU_USAGE__WORKER__DAILY_INTERVAL_SECS", "300".to_owned())];
        let api = Service::start(env, "gpu-usage-api", &[], &bdb.url, &[])?
            .ready()
            .await?;
        let worker = Service::start(env, "gpu-usage-worker", &["run"], &bdb.url, &extra)?
            .ready()
            .await?;
        let base = api.api.clone().context("no API")?;
        let tck = env::clock_ticks_per_sec();
        // The worker finely: each job run's CPU is read from these samples.
        let worker_cpu = CpuSampler::start(worker.pid, Duration::from_millis(20));
        let db_cpu = env::mariadbd_pid().map(|p| CpuSampler::start(p, Duration::from_millis(500)));
        let api_cpu = CpuSampler::start(api.pid, Duration::from_millis(200));
        Ok(Self {
            worker,
            api,
            base,
            tck,
            worker_cpu,
            db_cpu,
            api_cpu,
        })
    }

    /// Stops the samplers, then the services.
    fn stop(self) -> Samples {
        let samples = Samples {
            worker: self.worker_cpu.finish(),
            api: self.api_cpu.finish(),
            db: self.db_cpu.map(CpuSampler::finish).unwrap_or_default(),
        };
        drop(self.worker);
        drop(self.api);
        samples
    }
}

/// Polls the pending minute entries, to know which entries each minute
/// run consumed (an entry's last sighting before the run).
struct Poller {
    seen: Arc<Mutex<HashMap<i64, Seen>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    fn spawn(db: DatabaseConnection) -> Self {
        let seen: Arc<Mutex<HashMap<i64, Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (seen, stop) = (seen.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let rows = rollup_pending::Entity::find()
                        .filter(rollup_pending::Column::Level.eq(Granularity::Minute))
                        .all(&db)
                        .await;
                    let t = SystemTime::now();
                    if let (Ok(rows), Ok(mut map)) = (rows, seen.lock()) {
                        for r in rows {
                            if let Ok(range) = TimeRange::new(r.range_start, r.range_end) {
                                map.insert(r.id, Seen { range, last: t });
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };
        Self { seen, stop, task }
    }

    /// Ends the polling after its current round; what it saw.
    async fn stop(self) -> Arc<Mutex<HashMap<i64, Seen>>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.ok();
        self.seen
    }
}

/// The measured window: wall-clock ends (to match job runs and CPU
/// samples) and its monotonic length.
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    elapsed: Duration,
}

/// What was sent over the window.
struct Load {
    report: Report,
    records: usize,
    heartbeats: usize,
}

/// Posts each second's records (and, with `heartbeats`, the fleet's
/// heartbeats) for `minutes`.
async fn send_load(
    g: &Generator,
    base: &str,
    minutes: u64,
    heartbeats: bool,
) -> Result<(Window, Load)> {
    let start = Utc::now();
    let t0 = Instant::now();
    let mut sender = HttpSender::new(HttpOptions {
        base_url: base.to_owned(),
        concurrency: 4,
        ..HttpOptions::default()
    })?;
    let mut prev = Utc::now();
    let mut sent = 0usize;
    let mut beats = 0usize;
    let total = Duration::from_secs(minutes * 60);
    while t0.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Utc::now();
        let r = data::range(prev, t)?;
        let recs: Vec<_> = g.records(r).collect();
        sent += recs.len();
        for c in recs.chunks(1000) {
            sender.send(Batch::json_array(c)?).await;
        }
        if heartbeats {
            let hb: Vec<_> = g.heartbeats(r, Duration::from_secs(30))?.collect();
            beats += hb.len();
            for c in hb.chunks(1000) {
                sender.send(Batch::json_array(c)?).await;
            }
        }
        prev = t;
    }
    let report = sender.finish().await;
    let window = Window {
        start,
        end: Utc::now(),
        elapsed: t0.elapsed(),
    };
    let load = Load {
        report,
        records: sent,
        heartbeats: beats,
    };
    Ok((window, load))
}

/// Everything a figure-4 row is made of, once the run is over.
struct Measured {
    label: String,
    minutes: u64,
    sessions: bool,
    runs: Vec<job_run::Model>,
    seen: HashMap<i64, Seen>,
    samples: Samples,
    tck: f64,
    window: Window,
    load: Load,
}

/// Wall time and worker CPU (ms) summed over one job's runs.
struct Tally {
    wall: f64,
    cpu: f64,
    max_wall: f64,
    rows_written: i64,
}

impl Measured {
    /// Percent of a core `samples` used over the window.
    fn window_pct(&self, samples: &[(SystemTime, u64)]) -> f64 {
        let (ws, we) = (to_system(self.window.start), to_system(self.window.end));
        env::ticks_between(samples, ws, we) as f64 / self.tck / self.window.elapsed.as_secs_f64()
            * 100.0
    }

    fn tally(&self, mine: &[&job_run::Model]) -> Tally {
        let mut t = Tally {
            wall: 0.0,
            cpu: 0.0,
            max_wall: 0.0,
            rows_written: 0,
        };
        for r in mine {
            let (s, f) = (r.started_at, r.finished_at.unwrap_or(r.started_at));
            let w = (f - s).num_milliseconds() as f64;
            t.wall += w;
            t.max_wall = t.max_wall.max(w);
            t.cpu += env::ticks_between(&self.samples.worker, to_system(s), to_system(f)) as f64
                / self.tck
                * 1e3;
            t.rows_written += r.rows_written;
        }
        t
    }

    /// The row of one job: its finished runs in the window; the minute job
    /// also gets the database's floor and the window's CPU figures.
    async fn job_row(&self, bdb: &env::BenchDb, job: &str, name: &str) -> Result<Row> {
        let label = &self.label;
        let mine: Vec<&job_run::Model> = self
            .runs
            .iter()
            .filter(|r| r.job.as_str() == job && r.finished_at.is_some())
            .collect();
        if mine.is_empty() {
            return Ok(Row::new(format!("4 steady {name}, {label}"))
                .ours("no run in the window")
                .note(format!("{} min window", self.minutes)));
        }
        let t = self.tally(&mine);
        let k = mine.len() as f64;
        let (mean_wall, mean_cpu) = (t.wall / k, t.cpu / k);
        let row = Row::new(format!("4 steady {name}, {label}"))
            .ours(format!(
                "wall {} (max {}), CPU {} per run",
                ms(mean_wall),
                ms(t.max_wall),
                ms(mean_cpu)
            ))
            .note(format!(
                "{} runs in {} min; {:.0} rows/run; CPU in runs {:.0}% of a core",
                mine.len(),
                self.minutes,
                t.rows_written as f64 / k,
                if t.wall > 0.0 {
                    mean_cpu / mean_wall * 100.0
                } else {
                    0.0
                }
            ));
        if job != "rollup_minute" {
            return Ok(row);
        }
        let mut floors = Vec::new();
        for r in &mine {
            floors.push(minute_floor(bdb, &self.seen, r, self.sessions).await?);
        }
        let f = floors.iter().sum::<f64>() / floors.len().max(1) as f64;
        let note = row.note.clone();
        let worker_pct = self.window_pct(&self.samples.worker);
        let api_pct = self.window_pct(&self.samples.api);
        let db_pct = self.window_pct(&self.samples.db);
        let (sent, beats) = (self.load.records, self.load.heartbeats);
        Ok(row
            .db(format!("{} floor per run (read its chunks + write its rows)", ms(f)))
            .ratio(mean_wall / f)
            .target("< 2 % of a core")
            .note(format!(
                "{note}; worker CPU over the window {worker_pct:.1}% of a core, API {api_pct:.1}%, mariadbd {db_pct:.0}% (shared server); {sent} records, {beats} heartbeats sent"
            )))
    }
}

/// The database's floor for one minute run: an ordered read of the records
/// (and sessions) of each chunk the run recomputed, plus writing as many
/// rows as it wrote.
async fn minute_floor(
    bdb: &env::BenchDb,
    seen: &HashMap<i64, Seen>,
    run: &job_run::Model,
    sessions: bool,
) -> Result<f64> {
    let start = to_system(run.started_at) - Duration::from_millis(1500);
    let end = to_system(run.finished_at.unwrap_or(run.started_at));
    let taken: Vec<(i64, TimeRange)> = seen
        .iter()
        .filter(|(_, s)| s.last >= start && s.last <= end)
        .map(|(id, s)| (*id, s.range))
        .collect();
    let work = pending::by_chunk(&taken, Granularity::Minute, TimeDelta::hours(6));
    let t = Instant::now();
    for w in &work {
        read_all(
            &bdb.db,
            RECORD_READ,
            vec![Value::from(w.hull.start()), Value::from(w.hull.end())],
        )
        .await?;
        if sessions {
            read_all(
                &bdb.db,
                "SELECT endpoint, spec_name, gpu_count, started_at, counted_until FROM gpu_usage_worker_sessions \
                 WHERE started_at < ? AND counted_until > ? ORDER BY started_at",
                vec![Value::from(w.hull.end()), Value::from(w.hull.start())],
            )
            .await?;
        }
    }
    let read = t.elapsed();
    let write = if run.rows_written > 0 {
        write_floor(bdb, run.rows_written).await?
    } else {
        Duration::ZERO
    };
    Ok((read + write).as_secs_f64() * 1e3)
}
