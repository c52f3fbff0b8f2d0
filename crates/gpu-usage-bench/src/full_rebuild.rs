//! Figure 1: the full rebuild on one backend beside the database's floor,
//! its minute level beside set-based SQL (MariaDB), and the rebuild with
//! 1,000 workers' sessions. The rebuild and floor machinery is in
//! `rebuild.rs`.

use std::time::Instant;

use anyhow::Result;
use chrono::Utc;
use gpu_usage_core::EngineConfig;
use gpu_usage_core::rollup;
use gpu_usage_core::types::{Granularity, TimeRange};

use crate::env::{Backend, BenchDb, Env};
use crate::rebuild::{
    DataSet, Floor, Rebuild, count, floor, per_record_us, rebuild_in_process, set_based_minute,
};
use crate::table::{Row, ratio_of, secs};

const REBUILD_TARGET: &str = "≤ 1.5× floor";

/// Figure 1 on one backend: the plain rebuild, the set-based minute level
/// (MariaDB), and the rebuild with 1,000 workers' sessions.
pub async fn figure1(
    env: &Env,
    backend: Backend,
    set: &DataSet,
    fig: &str,
    set_sql_timeout: u64,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let n = set.count;
    let bdb = env.create_db(backend, "rebuild").await?;
    let (range, load) = set.load(&bdb, false).await?;
    let days = (range.end() - range.start()).num_days();
    eprintln!(
        "[{fig}] {n} records loaded in {} ({:.0}/s); rebuilding {days} days",
        secs(load),
        n as f64 / load.as_secs_f64()
    );
    rows.push(plain_rebuild(&bdb, range, n, days, fig).await?);
    if backend == Backend::MySql {
        rows.push(minute_vs_set_sql(&bdb, range, n, fig, set_sql_timeout).await?);
    }
    bdb.drop_db().await?;
    rows.push(rebuild_with_sessions(env, backend, set, fig).await?);
    Ok(rows)
}

/// The rebuild of the loaded records beside the floor of its read and write.
async fn plain_rebuild(
    bdb: &BenchDb,
    range: TimeRange,
    n: u64,
    days: i64,
    fig: &str,
) -> Result<Row> {
    let r = rebuild_in_process(bdb, range).await?;
    let f = floor(bdb, range, r.rows, false).await?;
    Ok(beside_floor(
        format!("{fig} full rebuild, {}, {days} d", count(n)),
        &r,
        &f,
    )
    .note(format!(
        "{} (in-process domain call); {} µs/record",
        rebuild_figures(&r),
        per_record_us(r.elapsed, n)
    )))
}

/// A rebuild's row: its time beside the floor's, against the target.
fn beside_floor(figure: String, r: &Rebuild, f: &Floor) -> Row {
    Row::new(figure)
        .ours(secs(r.elapsed))
        .db(f.describe())
        .ratio(ratio_of(r.elapsed, f.total()))
        .target(REBUILD_TARGET)
}

/// What a rebuild wrote and cost, for a row's note.
fn rebuild_figures(r: &Rebuild) -> String {
    format!(
        "{} rows, {} statements, peak RSS {:.0} MiB",
        r.rows,
        r.statements.unwrap_or(0),
        r.peak_rss_mib
    )
}

/// Our minute level recomputed over the range beside the same level as
/// one set-based INSERT … SELECT (MariaDB only).
async fn minute_vs_set_sql(
    bdb: &BenchDb,
    range: TimeRange,
    n: u64,
    fig: &str,
    set_sql_timeout: u64,
) -> Result<Row> {
    let t = Instant::now();
    let minute = rollup::recompute(
        &bdb.db,
        Granularity::Minute,
        range,
        Utc::now(),
        &EngineConfig::default(),
    )
    .await?;
    let ours = t.elapsed();
    let (sb, sb_rows) = set_based_minute(bdb, range, set_sql_timeout).await?;
    let (db_text, sql_rows) = match sb_rows {
        Some(r) => (
            format!("{} (one INSERT…SELECT…GROUP BY)", secs(sb)),
            format!("SQL {r} rows (no capacity columns)"),
        ),
        None => (
            format!("> {} (stopped by max_statement_time)", secs(sb)),
            "SQL did not finish: the ratio is an upper bound".to_owned(),
        ),
    };
    Ok(
        Row::new(format!("{fig} minute level vs set-based SQL, {}", count(n)))
            .ours(secs(ours))
            .db(db_text)
            .ratio(ratio_of(ours, sb))
            .target("≤ 1×")
            .note(format!(
                "ours rollup::recompute(minute) {} rows; {sql_rows}",
                minute.rows_written
            )),
    )
}

/// The same records again in a database of their own, with the fleet's
/// sessions, rebuilt beside the floor that also reads the sessions.
async fn rebuild_with_sessions(
    env: &Env,
    backend: Backend,
    set: &DataSet,
    fig: &str,
) -> Result<Row> {
    let bdb = env.create_db(backend, "rebuild_sessions").await?;
    let (range, _) = set.load(&bdb, true).await?;
    let sessions = bdb
        .scalar_i64("SELECT CAST(COUNT(*) AS SIGNED) FROM gpu_usage_worker_sessions")
        .await?;
    let r = rebuild_in_process(&bdb, range).await?;
    let f = floor(&bdb, range, r.rows, true).await?;
    let figure = format!(
        "{fig} full rebuild + 1,000 workers' sessions, {}",
        count(set.count)
    );
    let row =
        beside_floor(figure, &r, &f).note(format!("{sessions} sessions; {}", rebuild_figures(&r)));
    bdb.drop_db().await?;
    Ok(row)
}
