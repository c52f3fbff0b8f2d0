//! Figures about the HTTP path and the release binaries: ingest (3),
//! catch-up (5) and reads (6).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use gpu_usage_core::level::{Daily, Hourly, Level};
use gpu_usage_core::query::{self, PageRequest, StatsQuery};
use gpu_usage_core::types::{ScopeFilter, ScopeType};
use gpu_usage_loadgen::Record;
use gpu_usage_loadgen::output::Batch;
use gpu_usage_loadgen::output::http::{HttpOptions, HttpSender};
use gpu_usage_loadgen::output::redis::{RedisOptions, RedisSender};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::data;
use crate::env::{self, Backend, BenchDb, Env, Service};
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

pub async fn start(
    env: &Env,
    bin: &str,
    args: &[&str],
    url: &str,
    extra: &[(&str, String)],
) -> Result<Service> {
    let mut s = Service::start(env, bin, args, url, extra)?;
    s.ready().await?;
    Ok(s)
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
    let mut rows = Vec::new();
    let mut mem = ApiMemory::default();
    let mut http = Vec::new();
    for clients in [1usize, 4] {
        let bdb = env.create_db(backend, "ingest_http").await?;
        let svc = start(env, api_binary(backend), &[], &bdb.url, &[]).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if clients == 1 {
            mem.idle_mib = svc.rss_mib();
        }
        let base = svc.api.clone().context("no API")?;
        let (t, p50, p99, inserted) = post_all(&base, batches(&recs, 1000)?, clients).await?;
        mem.loaded_peak_mib = mem.loaded_peak_mib.max(svc.peak_rss_mib());
        if inserted != n {
            eprintln!("note: {inserted} of {n} records inserted");
        }
        drop(svc);
        bdb.drop_db().await?;
        http.push((clients, t, p50, p99));
    }
    let mut direct = Vec::new();
    for clients in [1usize, 4] {
        let bdb = env.create_db(backend, "ingest_direct").await?;
        let t = if clients == 1 {
            data::insert_records(&bdb.db, &recs).await?
        } else {
            data::insert_records_concurrently(&bdb.db, &recs, clients).await?
        };
        bdb.drop_db().await?;
        direct.push(t);
    }
    for ((clients, t, p50, p99), d) in http.iter().zip(&direct) {
        rows.push(
            Row::new(format!(
                "{fig} ingest POST /records ×1000, {clients} client{}",
                if *clients == 1 { "" } else { "s" }
            ))
            .ours(format!(
                "{} ({})",
                rate(n as f64 / t.as_secs_f64(), "rec"),
                secs(*t)
            ))
            .db(format!(
                "{} ({}) multi-row INSERT ×1000, {clients} conn",
                rate(n as f64 / d.as_secs_f64(), "rec"),
                secs(*d)
            ))
            .ratio(ratio_of(*t, *d))
            .target("≤ 1.43× (≥ 0.7× its rate)")
            .note(format!(
                "{} records; request p50 {} p99 {}; {}",
                count(n),
                ms(*p50),
                ms(*p99),
                api_binary(backend)
            )),
        );
    }
    if backend == Backend::MySql {
        let t = stream_ingest(env, &recs).await?;
        rows.push(
            Row::new(format!("{fig} ingest Redis stream (worker consumer)"))
                .ours(format!(
                    "{} ({})",
                    rate(n as f64 / t.as_secs_f64(), "rec"),
                    secs(t)
                ))
                .db(format!(
                    "{} multi-row INSERT ×1000, 1 conn",
                    rate(n as f64 / direct[0].as_secs_f64(), "rec")
                ))
                .ratio(ratio_of(t, direct[0]))
                .target("≤ 1.43× (≥ 0.7× its rate)")
                .note(
                    "entries XADDed beforehand (one JSON field each); timed from worker start to the last record stored",
                ),
        );
    }
    Ok((rows, mem))
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
    let api = start(env, api_binary(backend), &[], &live.url, &fast).await?;
    let base = api.api.clone().context("no API")?;
    if backend == Backend::MySql {
        services.push(start(env, "gpu-usage-worker", &["run"], &live.url, &fast).await?);
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

/// Percentiles (ms) of latencies.
fn pcts(mut v: Vec<Duration>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

/// wrk's figures: p50, p99 (ms), requests/s.
fn wrk(url: &str, conns: usize, secs: u64) -> Result<(f64, f64, f64)> {
    let threads = conns.clamp(1, 2);
    let out = std::process::Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--timeout",
            "30s",
            "--latency",
            url,
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if text.contains("Non-2xx") {
        bail!("wrk saw errors: {text}");
    }
    let lat = |label: &str| -> f64 {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .map_or(f64::NAN, parse_wrk_time)
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    Ok((lat("50%"), lat("99%"), rps))
}

fn parse_wrk_time(s: &str) -> f64 {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v / 1e3,
        "ms" => v,
        "s" => v * 1e3,
        "m" => v * 60e3,
        _ => f64::NAN,
    }
}

/// One connection (or `conns`) to the database for the replay.
async fn pool(url: &str, conns: u32) -> Result<DatabaseConnection> {
    let mut o = ConnectOptions::new(url.to_owned());
    o.max_connections(conns)
        .min_connections(conns)
        .sqlx_logging(false)
        .map_sqlx_mysql_opts(|o| o.timezone(Some("+00:00".to_owned())));
    Ok(Database::connect(o).await?)
}

/// The statements `query::statistics` issues for `q` (captured through the
/// connection's metric callback).
async fn captured<L: Level>(url: &str, q: &StatsQuery) -> Result<Vec<Statement>> {
    let mut db = env::connect(url, 2).await?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    db.set_metric_callback(move |info| {
        if let Ok(mut v) = s.lock() {
            v.push(info.statement.clone());
        }
    });
    query::statistics::<L>(&db, q).await?;
    db.close().await.ok();
    let v = seen.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(v)
}

/// Runs the statements of one API request in a loop on `conns`
/// connections for `secs`: p50, p99 (ms), requests/s.
async fn replay(url: &str, stmts: &[Statement], conns: u32, secs: u64) -> Result<(f64, f64, f64)> {
    let db = pool(url, conns).await?;
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    let t = Instant::now();
    for _ in 0..conns {
        let (db, stmts) = (db.clone(), stmts.to_vec());
        set.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < stop {
                let t = Instant::now();
                for s in &stmts {
                    std::hint::black_box(db.query_all_raw(s.clone()).await?);
                }
                lat.push(t.elapsed());
            }
            Ok::<_, sea_orm::DbErr>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    let elapsed = t.elapsed();
    db.close().await.ok();
    let n = all.len() as f64;
    let (p50, p99) = pcts(all);
    Ok((p50, p99, n / elapsed.as_secs_f64()))
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Figure 6 on one backend: the data set is `n` records over 30 days,
/// rebuilt, plus daily rows copied back over a year.
pub async fn figure6(
    env: &Env,
    backend: Backend,
    n: u64,
    secs_each: u64,
    seed: u64,
    fig: &str,
) -> Result<(Vec<Row>, ApiMemory)> {
    let now = Utc::now();
    let end = now.duration_trunc(TimeDelta::hours(1))?;
    let start = end - TimeDelta::days(30);
    let range = data::range(start, end)?;
    let g = data::generator(seed, "reads", n, range, Some(1000))?;
    let endpoint = g.fleet().endpoints[0].name.clone();
    let bdb = env.create_db(backend, "reads").await?;
    let recs = data::records(&g, range, n);
    data::insert_records(&bdb.db, &recs).await?;
    let (s, e) = data::day_span(&recs).context("no records")?;
    drop(recs);
    let rb = rebuild::rebuild_in_process(&bdb, rebuild::core_range(s, e)?).await?;
    extend_daily_to_a_year(&bdb).await?;
    eprintln!(
        "[{fig}] read data set: {n} records over 30 d rebuilt in {}",
        secs(rb.elapsed)
    );
    let svc = self::start(env, api_binary(backend), &[], &bdb.url, &[]).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut mem = ApiMemory {
        idle_mib: svc.rss_mib(),
        ..ApiMemory::default()
    };
    let base = format!("{}/api/v1/gpu-usage", svc.api.clone().context("no API")?);
    let year_start = end - TimeDelta::days(365);
    let cases: Vec<(String, String, StatsQuery, bool)> = vec![
        (
            "GET /hourly 30 d, one endpoint".to_owned(),
            format!(
                "{base}/hourly?scope_type=endpoint&scope_value={endpoint}&start_time={}&end_time={}",
                rfc(start),
                rfc(end)
            ),
            stats_query(ScopeType::Endpoint, Some(endpoint.clone()), start, end)?,
            true,
        ),
        (
            "GET /hourly 30 d, all endpoints, 1st page".to_owned(),
            format!(
                "{base}/hourly?scope_type=endpoint&start_time={}&end_time={}",
                rfc(start),
                rfc(end)
            ),
            stats_query(ScopeType::Endpoint, None, start, end)?,
            true,
        ),
        (
            "GET /daily 365 d, global".to_owned(),
            format!(
                "{base}/daily?scope_type=global&start_time={}&end_time={}",
                rfc(year_start),
                rfc(end)
            ),
            stats_query(ScopeType::Global, None, year_start, end)?,
            false,
        ),
    ];
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    for (label, url, q, hourly) in cases {
        let body: serde_json::Value = client
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let got = body["data"].as_array().map_or(0, Vec::len);
        let total = body["total"].as_u64().unwrap_or(0);
        let stmts = if hourly {
            captured::<Hourly>(&bdb.url, &q).await?
        } else {
            captured::<Daily>(&bdb.url, &q).await?
        };
        for conns in [1usize, 32] {
            let (p50, p99, rps) = wrk(&url, conns, secs_each)?;
            let (d50, d99, drps) = replay(&bdb.url, &stmts, conns as u32, secs_each).await?;
            let (ratio, what) = if conns == 1 {
                (p99 / d99, "p99")
            } else {
                (drps / rps, "req/s")
            };
            rows.push(
                Row::new(format!(
                    "{fig} {label}, {conns} client{}",
                    if conns == 1 { "" } else { "s" }
                ))
                .ours(format!("p50 {} p99 {}, {rps:.0} req/s", ms(p50), ms(p99)))
                .db(format!(
                    "p50 {} p99 {}, {drps:.0} req/s ({} stmts, {conns} conn)",
                    ms(d50),
                    ms(d99),
                    stmts.len()
                ))
                .ratio(ratio)
                .target(if conns == 1 {
                    "≤ 1.5×"
                } else {
                    "≤ 2× (≥ half its rate)"
                })
                .note(format!(
                    "ratio of {what}; {got} rows of {total}; wrk {conns} conn, {secs_each} s"
                )),
            );
        }
    }
    mem.loaded_peak_mib = svc.peak_rss_mib();
    drop(svc);
    bdb.drop_db().await?;
    Ok((rows, mem))
}

fn stats_query(
    scope: ScopeType,
    value: Option<String>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<StatsQuery> {
    Ok(StatsQuery {
        scope: ScopeFilter::new(scope, value).map_err(|e| anyhow::anyhow!("{e}"))?,
        range: rebuild::core_range(start, end)?,
        page: PageRequest::first(5000),
    })
}

/// Copies the rebuilt daily rows 11 times, 33 days apart each, so a year
/// of days has rows (only the bucket moves; reads filter on it).
async fn extend_daily_to_a_year(bdb: &BenchDb) -> Result<()> {
    let cols = "scope_type, scope_value, total_tasks, completed_tasks, failed_tasks, total_gpu_hours, \
        avg_gpu_count, max_gpu_count, gpu_milliseconds, gpu_count_sum, peak_hour, peak_gpu_hours, \
        available_gpu_hours, utilization_rate, period_start, period_end, updated_at, available_gpu_ms, \
        idle_gpu_ms, overused_minutes, idle_gpu_hours, capacity_complete, peak_gpus_in_use, peak_gpus_available";
    let bucket = match bdb.backend {
        Backend::MySql => "d.time_bucket - INTERVAL (33 * k.k) DAY",
        Backend::Sqlite => "date(d.time_bucket, '-' || (33 * k.k) || ' days')",
    };
    let ks = (1..=11)
        .map(|k| format!("SELECT {k} AS k"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let d_cols = cols
        .split(", ")
        .map(|c| format!("d.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    bdb.exec(&format!(
        "INSERT INTO gpu_usage_statistics_daily (time_bucket, {cols}) \
         SELECT {bucket}, {d_cols} FROM (SELECT * FROM gpu_usage_statistics_daily) d CROSS JOIN ({ks}) k"
    ))
    .await?;
    Ok(())
}
