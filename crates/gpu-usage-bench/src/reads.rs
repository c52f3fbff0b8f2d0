//! Figure 6: reads through the API (wrk) beside the same statements
//! replayed straight against the database over persistent connections.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use gpu_usage_core::level::{Daily, Hourly, Level};
use gpu_usage_core::query::{self, PageRequest, StatsQuery};
use gpu_usage_core::types::{ScopeFilter, ScopeType};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::data;
use crate::env::{self, Backend, BenchDb, Env, Service};
use crate::http::{ApiMemory, api_binary};
use crate::rebuild;
use crate::table::{Row, ms, secs};

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

/// One request of figure 6: its label, its URL, the same query for the
/// domain call whose statements are replayed, and its level.
struct Case {
    label: String,
    url: String,
    query: StatsQuery,
    hourly: bool,
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
    let (bdb, endpoint) =
        load_read_set(env, backend, n, seed, fig, data::range(start, end)?).await?;
    let svc = Service::start(env, api_binary(backend), &[], &bdb.url, &[])?
        .ready()
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut mem = ApiMemory {
        idle_mib: svc.rss_mib(),
        ..ApiMemory::default()
    };
    let base = format!("{}/api/v1/gpu-usage", svc.api.clone().context("no API")?);
    let cases = cases(&base, &endpoint, start, end)?;
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    for case in cases {
        rows.extend(measure(&client, &bdb.url, &case, secs_each, fig).await?);
    }
    mem.loaded_peak_mib = svc.peak_rss_mib();
    drop(svc);
    bdb.drop_db().await?;
    Ok((rows, mem))
}

/// Creates the database of figure 6 and fills it: `n` records over
/// `range`, rebuilt, and the daily rows stretched over a year. Returns it
/// with the endpoint the one-endpoint read asks for.
async fn load_read_set(
    env: &Env,
    backend: Backend,
    n: u64,
    seed: u64,
    fig: &str,
    range: gpu_usage_loadgen::TimeRange,
) -> Result<(BenchDb, String)> {
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
    Ok((bdb, endpoint))
}

/// The three reads: hourly for one endpoint and for all (first page) over
/// 30 days, daily global over 365.
fn cases(
    base: &str,
    endpoint: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Case>> {
    let year_start = end - TimeDelta::days(365);
    Ok(vec![
        Case {
            label: "GET /hourly 30 d, one endpoint".to_owned(),
            url: format!(
                "{base}/hourly?scope_type=endpoint&scope_value={endpoint}&start_time={}&end_time={}",
                rfc(start),
                rfc(end)
            ),
            query: stats_query(ScopeType::Endpoint, Some(endpoint.to_owned()), start, end)?,
            hourly: true,
        },
        Case {
            label: "GET /hourly 30 d, all endpoints, 1st page".to_owned(),
            url: format!(
                "{base}/hourly?scope_type=endpoint&start_time={}&end_time={}",
                rfc(start),
                rfc(end)
            ),
            query: stats_query(ScopeType::Endpoint, None, start, end)?,
            hourly: true,
        },
        Case {
            label: "GET /daily 365 d, global".to_owned(),
            url: format!(
                "{base}/daily?scope_type=global&start_time={}&end_time={}",
                rfc(year_start),
                rfc(end)
            ),
            query: stats_query(ScopeType::Global, None, year_start, end)?,
            hourly: false,
        },
    ])
}

/// One read at 1 and 32 clients: wrk against the API beside the replay of
/// its statements against the database. One row per client count.
async fn measure(
    client: &reqwest::Client,
    db_url: &str,
    case: &Case,
    secs_each: u64,
    fig: &str,
) -> Result<Vec<Row>> {
    let body: serde_json::Value = client
        .get(&case.url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let got = body["data"].as_array().map_or(0, Vec::len);
    let total = body["total"].as_u64().unwrap_or(0);
    let stmts = if case.hourly {
        captured::<Hourly>(db_url, &case.query).await?
    } else {
        captured::<Daily>(db_url, &case.query).await?
    };
    let mut rows = Vec::new();
    for conns in [1usize, 32] {
        let (p50, p99, rps) = wrk(&case.url, conns, secs_each)?;
        let (d50, d99, drps) = replay(db_url, &stmts, conns as u32, secs_each).await?;
        let (ratio, what) = if conns == 1 {
            (p99 / d99, "p99")
        } else {
            (drps / rps, "req/s")
        };
        rows.push(
            Row::new(format!(
                "{fig} {}, {conns} client{}",
                case.label,
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
    Ok(rows)
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
