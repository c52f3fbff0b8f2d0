//! Figures about the HTTP path and the release binaries: ingest (3) and
//! catch-up (5); the reads (6) are in `reads.rs`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{TimeDelta, Utc};
use gpu_usage_loadgen::Record;
use gpu_usage_loadgen::output::Batch;
use gpu_usage_loadgen::output::http::{HttpOptions, HttpSender};
use gpu_usage_loadgen::output::redis::{RedisOptions, RedisSender};

use crate::data;
use crate::env::{Backend, Env, Service};
use crate::rebuild::{self, count};
use crate::table::{Row, ms, rate, ratio_of, secs};

/// The service binary serving the API on a backend: the API alone on
/// MariaDB, the all-in-one (API and jobs in one process) on SQLite.
pub fn api_binary(backend: Backend) -> &'static str {
    match backend {
        Backend::MySql => "gpu-usage-api",
        Backend::Sqlite => "gpu-usage",
    }
}

/// Batches of 1,000 as JSON bodies, serialised before any timing.
pub fn batches(recs: &[Record], size: usize) -> Result<Vec<Batch>> {
    recs.chunks(size)
        .map(|c| Ok(Batch::json_array(c)?))
        .collect()
}

/// POSTs every batch with `clients` requests in flight; the time and the
/// per-request latencies p50/p99 (ms).
pub async fn post_all(
    base: &str,
    batches: Vec<Batch>,
    clients: usize,
) -> Result<(Duration, f64, f64, u64)> {
    let mut sender = HttpSender::new(HttpOptions {
        base_url: base.to_owned(),
        concurrency: clients,
        timeout: Duration::from_secs(600),
        ..HttpOptions::default()
    })?;
    let t = Instant::now();
    for b in batches {
        sender.send(b).await;
    }
    let report = sender.finish().await;
    let elapsed = t.elapsed();
    if report.items_failed > 0 {
        bail!("{} items failed: {:?}", report.items_failed, report.errors);
    }
    let p = |q: f64| {
        report
            .percentile(q)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    Ok((elapsed, p(0.5), p(0.99), report.inserted))
}

/// Memory of the API process, for figure 7.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiMemory {
    pub idle_mib: f64,
    pub loaded_peak_mib: f64,
}

/// One ingest run through the API: clients, time, request p50 and p99 (ms).
type HttpRun = (usize, Duration, f64, f64);

/// Figure 3 on one backend.
pub async fn figure3(
    env: &Env,
    backend: Backend,
    n: u64,
    seed: u64,
    fig: &str,
) -> Result<(Vec<Row>, ApiMemory)> {
    let now = Utc::now();
    let range = data::range(now - TimeDelta::days(7), now - TimeDelta::minutes(2))?;
    let g = data::generator(seed, "ingest", n, range, Some(1000))?;
    let recs = data::records(&g, range, n);
    let n = recs.len() as u64;
    let (http, mem) = ingest_http(env, backend, &recs).await?;
    let direct = ingest_direct(env, backend, &recs).await?;
    let mut rows: Vec<Row> = http
        .iter()
        .zip(&direct)
        .map(|(h, d)| ingest_row(fig, backend, n, h, *d))
        .collect();
    if backend == Backend::MySql {
        let t = stream_ingest(env, &recs).await?;
        rows.push(stream_row(fig, n, t, direct[0]));
    }
    Ok((rows, mem))
}

/// The records POSTed to a fresh API at 1 and 4 clients, a database of
/// its own each; the API's memory is read while it runs.
async fn ingest_http(
    env: &Env,
    backend: Backend,
    recs: &[Record],
) -> Result<(Vec<HttpRun>, ApiMemory)> {
    let n = recs.len() as u64;
    let mut mem = ApiMemory::default();
    let mut http = Vec::new();
    for clients in [1usize, 4] {
        let bdb = env.create_db(backend, "ingest_http").await?;
        let svc = Service::start(env, api_binary(backend), &[], &bdb.url, &[])?
            .ready()
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if clients == 1 {
            mem.idle_mib = svc.rss_mib();
        }
        let base = svc.api.clone().context("no API")?;
        let (t, p50, p99, inserted) = post_all(&base, batches(recs, 1000)?, clients).await?;
        mem.loaded_peak_mib = mem.loaded_peak_mib.max(svc.peak_rss_mib());
        if inserted != n {
            eprintln!("note: {inserted} of {n} records inserted");
        }
        drop(svc);
        bdb.drop_db().await?;
        http.push((clients, t, p50, p99));
    }
    Ok((http, mem))
}

/// The database's own time for the same records: multi-row INSERTs on 1
/// and 4 connections.
async fn ingest_direct(env: &Env, backend: Backend, recs: &[Record]) -> Result<Vec<Duration>> {
    let mut direct = Vec::new();
    for clients in [1usize, 4] {
        let bdb = env.create_db(backend, "ingest_direct").await?;
        let t = if clients == 1 {
            data::insert_records(&bdb.db, recs).await?
        } else {
            data::insert_records_concurrently(&bdb.db, recs, clients).await?
        };
        bdb.drop_db().await?;
        direct.push(t);
    }
    Ok(direct)
}

/// One API run's row, beside the direct insert on as many connections.
fn ingest_row(fig: &str, backend: Backend, n: u64, http: &HttpRun, d: Duration) -> Row {
    let (clients, t, p50, p99) = *http;
    Row::new(format!(
        "{fig} ingest POST /records ×1000, {clients} client{}",
        if clients == 1 { "" } else { "s" }
    ))
    .ours(format!(
        "{} ({})",
        rate(n as f64 / t.as_secs_f64(), "rec"),
        secs(t)
    ))
    .db(format!(
        "{} ({}) multi-row INSERT ×1000, {clients} conn",
        rate(n as f64 / d.as_secs_f64(), "rec"),
        secs(d)
    ))
    .ratio(ratio_of(t, d))
    .target("≤ 1.43× (≥ 0.7× its rate)")
    .note(format!(
        "{} records; request p50 {} p99 {}; {}",
        count(n),
        ms(p50),
        ms(p99),
        api_binary(backend)
    ))
}

/// The stream ingest beside the single-connection direct insert.
fn stream_row(fig: &str, n: u64, t: Duration, direct: Duration) -> Row {
    Row::new(format!("{fig} ingest Redis stream (worker consumer)"))
        .ours(format!(
            "{} ({})",
            rate(n as f64 / t.as_secs_f64(), "rec"),
            secs(t)
        ))
        .db(format!(
            "{} multi-row INSERT ×1000, 1 conn",
            rate(n as f64 / direct.as_secs_f64(), "rec")
        ))
        .ratio(ratio_of(t, direct))
        .target("≤ 1.43× (≥ 0.7× its rate)")
        .note(
            "entries XADDed beforehand (one JSON field each); timed from worker start to the last record stored",
        )
}

/// Fills a stream of its own, starts the worker on it and times until
/// every record is stored.
async fn stream_ingest(env: &Env, recs: &[Record]) -> Result<Duration> {
    let bdb = env.create_db(Backend::MySql, "ingest_stream").await?;
    let stream = env.unique("stream");
    let mut sender = RedisSender::new(RedisOptions {
        url: env.redis.clone(),
        stream: stream.clone(),
        ..RedisOptions::default()
    })?;
    for c in recs.chunks(1000) {
        sender.send(c).await?;
    }
    let rep = sender.finish();
    if rep.items_failed > 0 {
        bail!(
            "XADD failed for {} entries: {:?}",
            rep.items_failed,
            rep.errors
        );
    }
    let n = recs.len() as i64;
    let t = Instant::now();
    let svc = Service::start(
        env,
        "gpu-usage-worker",
        &["run"],
        &bdb.url,
        &[
            ("GPU_USAGE__REDIS__URL", env.redis.clone()),
            ("GPU_USAGE__REDIS__STREAM", stream.clone()),
            (
                "GPU_USAGE__REDIS__DEAD_LETTER_STREAM",
                format!("{stream}:dead"),
            ),
        ],
    )?;
    let mut stored = 0;
    while t.elapsed() < Duration::from_secs(1800) {
        stored = bdb
            .scalar_i64("SELECT CAST(COUNT(*) AS SIGNED) FROM gpu_usage_records")
            .await?;
        if stored >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = t.elapsed();
    drop(svc);
    redis_del(&env.redis, &[&stream, &format!("{stream}:dead")]).await?;
    bdb.drop_db().await?;
    if stored < n {
        bail!("the stream consumer stored {stored} of {n} records in 30 min");
    }
    Ok(elapsed)
}

async fn redis_del(url: &str, keys: &[&str]) -> Result<()> {
    let pool =
        deadpool_redis::Config::from_url(url).create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    let mut conn = pool.get().await?;
    let mut cmd = deadpool_redis::redis::cmd("DEL");
    for k in keys {
        cmd.arg(*k);
    }
    let _: i64 = cmd.query_async(&mut conn).await?;
    Ok(())
}

/// `/status`: pending ranges at minute and hourly level.
async fn pending(client: &reqwest::Client, base: &str) -> Result<(u64, u64)> {
    let v: serde_json::Value = client
        .get(format!("{base}/api/v1/gpu-usage/status"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let levels = v["levels"].as_array().context("status without levels")?;
    let of = |name: &str| {
        levels
            .iter()
            .find(|l| l["level"] == name)
            .and_then(|l| l["pending_ranges"].as_u64())
            .unwrap_or(u64::MAX)
    };
    Ok((of("minute"), of("hourly")))
}

/// Figure 5 on one backend, `n` late records over 30 days.
pub async fn figure5(env: &Env, backend: Backend, n: u64, seed: u64, fig: &str) -> Result<Row> {
    let now = Utc::now();
    let range = data::range(now - TimeDelta::days(30), now - TimeDelta::hours(1))?;
    let g = data::generator(seed, &format!("late{n}"), n, range, Some(1000))?;
    let recs = data::records(&g, range, n);
    let n = recs.len() as u64;
    let fast = [
        ("GPU_USAGE__WORKER__MINUTE_INTERVAL_SECS", "1".to_owned()),
        ("GPU_USAGE__WORKER__HOURLY_INTERVAL_SECS", "1".to_owned()),
    ];
    let live = env.create_db(backend, "catchup").await?;
    let mut services = Vec::new();
    let api = Service::start(env, api_binary(backend), &[], &live.url, &fast)?
        .ready()
        .await?;
    let base = api.api.clone().context("no API")?;
    if backend == Backend::MySql {
        let worker = Service::start(env, "gpu-usage-worker", &["run"], &live.url, &fast)?;
        services.push(worker.ready().await?);
    }
    services.push(api);
    // The first ticks (everything is due at start) are over before the load.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (post_time, _, _, _) = post_all(&base, batches(&recs, 1000)?, 4).await?;
    let t = Instant::now();
    let client = reqwest::Client::new();
    loop {
        let (m, h) = pending(&client, &base).await?;
        if m == 0 && h == 0 {
            break;
        }
        if t.elapsed() > Duration::from_secs(3600) {
            bail!("still pending after an hour: minute {m}, hourly {h}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let catch_up = t.elapsed();
    drop(services);
    live.drop_db().await?;

    let second = env.create_db(backend, "catchup_backfill").await?;
    data::insert_records(&second.db, &recs).await?;
    let (s, e) = data::day_span(&recs).context("no records")?;
    let r = rebuild::rebuild_in_process(&second, rebuild::core_range(s, e)?).await?;
    second.drop_db().await?;
    Ok(
        Row::new(format!("{fig} catch-up, {} late records over 30 d", count(n)))
            .ours(format!("{} after the last POST", secs(catch_up)))
            .db(format!(
                "{} backfill of {} d, same records",
                secs(r.elapsed),
                (e - s).num_days()
            ))
            .ratio(ratio_of(catch_up, r.elapsed))
            .target("≤ 1.5×")
            .note(format!(
                "POSTs took {} (4 clients, ×1000); minute+hourly jobs every 1 s; 'nothing pending' from GET /status",
                secs(post_time)
            )),
    )
}
