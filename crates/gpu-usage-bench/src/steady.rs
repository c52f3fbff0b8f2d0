//! Figure 4: the worker in steady state while 100 records/s arrive over
//! the API, with and without 1,000 heart-beating workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gpu_usage_core::entities::{job_run, rollup_pending};
use gpu_usage_core::rollup::pending;
use gpu_usage_core::types::{Granularity, TimeRange};
use gpu_usage_loadgen::output::Batch;
use gpu_usage_loadgen::output::http::{HttpOptions, HttpSender};
use gpu_usage_loadgen::{Config, Generator};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Value};

use crate::data;
use crate::env::{self, Backend, CpuSampler, Env};
use crate::http::start;
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
    let now = Utc::now().duration_trunc(TimeDelta::seconds(1))?;
    if o.prefill_hours > 0 {
        let r = data::range(now - TimeDelta::hours(o.prefill_hours as i64), now)?;
        let recs: Vec<_> = g.records(r).collect();
        data::insert_records(&bdb.db, &recs).await?;
        if let Some((s, _)) = data::day_span(&recs) {
            let end = Granularity::Minute.ceil(now);
            let rb = rebuild::rebuild_in_process(&bdb, rebuild::core_range(s, end)?).await?;
            eprintln!(
                "[4] prefilled {} records ({} h at {}/s), rebuilt in {}",
                recs.len(),
                o.prefill_hours,
                o.rate,
                secs(rb.elapsed)
            );
        }
    }
    let extra = [("GPU_USAGE__WORKER__DAILY_INTERVAL_SECS", "300".to_owned())];
    let api = start(env, "gpu-usage-api", &[], &bdb.url, &[]).await?;
    let worker = start(env, "gpu-usage-worker", &["run"], &bdb.url, &extra).await?;
    let base = api.api.clone().context("no API")?;
    let tck = env::clock_ticks_per_sec();
    let worker_cpu = CpuSampler::start(worker.pid, Duration::from_millis(20));
    let db_cpu = env::mariadbd_pid().map(|p| CpuSampler::start(p, Duration::from_millis(500)));
    let api_cpu = CpuSampler::start(api.pid, Duration::from_millis(200));

    // The pending poller: which minute entries each run consumed.
    let seen: Arc<Mutex<HashMap<i64, Seen>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (seen, stop, db) = (seen.clone(), stop.clone(), bdb.db.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
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

    let window_start = Utc::now();
    let t0 = Instant::now();
    let mut sender = HttpSender::new(HttpOptions {
        base_url: base.clone(),
        concurrency: 4,
        ..HttpOptions::default()
    })?;
    let mut prev = Utc::now();
    let mut sent = 0usize;
    let mut beats = 0usize;
    let total = Duration::from_secs(o.minutes * 60);
    while t0.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Utc::now();
        let r = data::range(prev, t)?;
        let recs: Vec<_> = g.records(r).collect();
        sent += recs.len();
        for c in recs.chunks(1000) {
            sender.send(Batch::json_array(c)?).await;
        }
        if workers > 0 {
            let hb: Vec<_> = g.heartbeats(r, Duration::from_secs(30))?.collect();
            beats += hb.len();
            for c in hb.chunks(1000) {
                sender.send(Batch::json_array(c)?).await;
            }
        }
        prev = t;
    }
    let report = sender.finish().await;
    let window_end = Utc::now();
    let window = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.await.ok();
    let wsamples = worker_cpu.finish();
    let asamples = api_cpu.finish();
    let dsamples = db_cpu.map(CpuSampler::finish).unwrap_or_default();
    drop(worker);
    drop(api);
    if report.items_failed > 0 {
        eprintln!(
            "note: {} items failed: {:?}",
            report.items_failed, report.errors
        );
    }

    let runs = job_run::Entity::find()
        .filter(job_run::Column::StartedAt.gte(window_start))
        .filter(job_run::Column::StartedAt.lt(window_end))
        .all(&bdb.db)
        .await?;
    let seen = seen.lock().map(|m| m.clone()).unwrap_or_default();
    let ws = to_system(window_start);
    let we = to_system(window_end);
    let worker_pct =
        env::ticks_between(&wsamples, ws, we) as f64 / tck / window.as_secs_f64() * 100.0;
    let api_pct = env::ticks_between(&asamples, ws, we) as f64 / tck / window.as_secs_f64() * 100.0;
    let db_pct = env::ticks_between(&dsamples, ws, we) as f64 / tck / window.as_secs_f64() * 100.0;
    let mut rows = Vec::new();
    for (job, name) in [
        ("rollup_minute", "minute job"),
        ("rollup_hourly", "hourly job"),
        ("rollup_daily", "daily job"),
        ("capacity", "capacity job"),
    ] {
        let mine: Vec<&job_run::Model> = runs
            .iter()
            .filter(|r| r.job.as_str() == job && r.finished_at.is_some())
            .collect();
        if mine.is_empty() {
            rows.push(
                Row::new(format!("4 steady {name}, {label}"))
                    .ours("no run in the window")
                    .note(format!("{} min window", o.minutes)),
            );
            continue;
        }
        let mut wall = 0.0;
        let mut cpu = 0.0;
        let mut max_wall: f64 = 0.0;
        let mut rows_written = 0i64;
        let mut floors = Vec::new();
        for r in &mine {
            let (s, f) = (r.started_at, r.finished_at.unwrap_or(r.started_at));
            let w = (f - s).num_milliseconds() as f64;
            wall += w;
            max_wall = max_wall.max(w);
            cpu += env::ticks_between(&wsamples, to_system(s), to_system(f)) as f64 / tck * 1e3;
            rows_written += r.rows_written;
            if job == "rollup_minute" {
                floors.push(minute_floor(&bdb, &seen, r, workers > 0).await?);
            }
        }
        let k = mine.len() as f64;
        let (mean_wall, mean_cpu) = (wall / k, cpu / k);
        let mut row = Row::new(format!("4 steady {name}, {label}"))
            .ours(format!(
                "wall {} (max {}), CPU {} per run",
                ms(mean_wall),
                ms(max_wall),
                ms(mean_cpu)
            ))
            .note(format!(
                "{} runs in {} min; {:.0} rows/run; CPU in runs {:.0}% of a core",
                mine.len(),
                o.minutes,
                rows_written as f64 / k,
                if wall > 0.0 {
                    mean_cpu / mean_wall * 100.0
                } else {
                    0.0
                }
            ));
        if job == "rollup_minute" {
            let f = floors.iter().sum::<f64>() / floors.len().max(1) as f64;
            let note = row.note.clone();
            row = row
                .db(format!("{} floor per run (read its chunks + write its rows)", ms(f)))
                .ratio(mean_wall / f)
                .target("< 2 % of a core")
                .note(format!(
                    "{note}; worker CPU over the window {worker_pct:.1}% of a core, API {api_pct:.1}%, mariadbd {db_pct:.0}% (shared server); {sent} records, {beats} heartbeats sent"
                ));
        }
        rows.push(row);
    }
    bdb.drop_db().await?;
    Ok(rows)
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
