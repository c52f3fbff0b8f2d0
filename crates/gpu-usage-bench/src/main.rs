//! `gpu-usage-bench`: the benchmark suite of the GPU usage accounting
//! service. Every figure is measured beside the database doing the same
//! work by itself in the same run — on a shared, noisy machine a ratio
//! holds where an absolute time does not — and everything ends up in one
//! table. `--only` reruns single figures; size flags shrink them.
//!
//! Figures: 1 full rebuild (+ set-based SQL, + sessions), 2 growth,
//! 3 ingest (HTTP, stream), 4 steady state, 5 catch-up, 6 reads,
//! 7 memory, 8 SQLite (1, 3, 5, 6 at 100k records).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod data;
mod env;
mod http;
mod reads;
mod rebuild;
mod steady;
mod table;

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Result;
use chrono::Utc;
use clap::Parser;

use crate::env::{Backend, Env};
use crate::http::ApiMemory;
use crate::rebuild::{DataSet, Floor, Rebuild, count};
use crate::table::Row;

#[derive(Debug, Parser)]
#[command(
    name = "gpu-usage-bench",
    about = "Benchmark suite: every figure beside the database doing the same work itself, one table"
)]
struct Cli {
    /// Figures to run (comma-separated: 1..8); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Records of figure 1 (7 days, 20 endpoints, 5 specs).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Sizes of figure 2 (growth) and of the rebuild memory of figure 7.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000,300000,1000000,3000000"
    )]
    sizes: Vec<u64>,
    /// Drops every size (of every figure) above this.
    #[arg(long)]
    max_records: Option<u64>,
    /// Records posted per ingest run of figure 3.
    #[arg(long, default_value_t = 100_000)]
    ingest_records: u64,
    /// Minutes of each steady-state run of figure 4 (two runs: without and
    /// with heart-beating workers).
    #[arg(long, default_value_t = 10)]
    steady_minutes: u64,
    /// Hours of records at the steady rate stored before figure 4 starts.
    #[arg(long, default_value_t = 1)]
    steady_prefill_hours: u64,
    /// Records per second of figure 4.
    #[arg(long, default_value_t = 100.0)]
    steady_rate: f64,
    /// Late-record counts of figure 5.
    #[arg(long, value_delimiter = ',', default_value = "20000,200000")]
    catchup: Vec<u64>,
    /// Records (over 30 days) behind the reads of figure 6.
    #[arg(long, default_value_t = 200_000)]
    read_records: u64,
    /// Seconds of each read measurement (wrk and the replay).
    #[arg(long, default_value_t = 10)]
    read_secs: u64,
    /// Records of every SQLite figure (8).
    #[arg(long, default_value_t = 100_000)]
    sqlite_records: u64,
    /// Longest run of the set-based SQL of figure 1 (MariaDB
    /// max_statement_time); past it the figure reports a bound.
    #[arg(long, default_value_t = 600)]
    set_sql_timeout: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(
        long,
        env = "GPU_USAGE_TEST_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306"
    )]
    mysql_url: String,
    #[arg(
        long,
        env = "GPU_USAGE_TEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// First port of the services the suite starts (two per service).
    #[arg(long, default_value_t = 18400)]
    port_base: u16,
}

impl Cli {
    fn wants(&self, fig: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == fig)
    }
    fn cap(&self, n: u64) -> Option<u64> {
        match self.max_records {
            Some(m) if n > m => None,
            _ => Some(n),
        }
    }
    fn set(&self, count: u64, prefix: &str) -> DataSet {
        DataSet {
            seed: self.seed,
            prefix: prefix.to_owned(),
            count,
            days: 7,
            anchor: data::midnight(Utc::now()),
            workers: Some(1000),
        }
    }
}

/// Results some figures share (figure 7 reads them).
#[derive(Default)]
struct Shared {
    growth: Vec<(u64, Rebuild, Floor)>,
    api_ingest: Option<ApiMemory>,
    api_reads: Option<ApiMemory>,
}

struct Suite {
    cli: Cli,
    env: Env,
    rows: Vec<Row>,
    skipped: Vec<String>,
    shared: Shared,
}

impl Suite {
    /// Runs one part; a failure becomes a line of the table, not the end
    /// of the suite.
    fn record(&mut self, label: &str, r: Result<Vec<Row>>) {
        match r {
            Ok(rows) => {
                for row in &rows {
                    eprintln!(
                        "{}",
                        table::render(std::slice::from_ref(row))
                            .lines()
                            .last()
                            .unwrap_or_default()
                    );
                }
                self.rows.extend(rows);
            }
            Err(e) => {
                eprintln!("[{label}] failed: {e:#}");
                self.rows
                    .push(Row::new(label).ours("failed").note(format!("{e:#}")));
            }
        }
    }

    async fn growth(&mut self, n: u64) -> Result<()> {
        if self.shared.growth.iter().any(|(m, ..)| *m == n) {
            return Ok(());
        }
        let set = self.cli.set(n, &format!("g{n}"));
        let (r, f) = rebuild::growth_point(&self.env, &set).await?;
        self.shared.growth.push((n, r, f));
        Ok(())
    }

    async fn run(&mut self) -> Result<()> {
        let cli = &self.cli;
        let (seed, records) = (cli.seed, cli.records);
        if self.cli.wants("1") {
            match self.cli.cap(records) {
                Some(n) => {
                    let set = self.cli.set(n, "r1");
                    let r = rebuild::figure1(
                        &self.env,
                        Backend::MySql,
                        &set,
                        "1",
                        self.cli.set_sql_timeout,
                    )
                    .await;
                    self.record("1 full rebuild", r);
                }
                None => self
                    .skipped
                    .push(format!("1 at {} (above --max-records)", count(records))),
            }
        }
        let sizes: Vec<u64> = self.cli.sizes.clone();
        if self.cli.wants("2") {
            for n in &sizes {
                let Some(n) = self.cli.cap(*n) else {
                    self.skipped
                        .push(format!("2 at {} (above --max-records)", count(*n)));
                    continue;
                };
                let r = self.growth(n).await;
                match r {
                    Ok(()) => {
                        let rows = self
                            .shared
                            .growth
                            .iter()
                            .filter(|(m, ..)| *m == n)
                            .map(|(n, r, f)| rebuild::growth_row(*n, r, f))
                            .collect();
                        self.record("2 growth", Ok(rows));
                    }
                    Err(e) => self.record(&format!("2 growth {}", count(n)), Err(e)),
                }
            }
        }
        if self.cli.wants("3") {
            let n = self.cli.ingest_records;
            match http::figure3(&self.env, Backend::MySql, n, seed, "3").await {
                Ok((rows, mem)) => {
                    self.shared.api_ingest = Some(mem);
                    self.record("3 ingest", Ok(rows));
                }
                Err(e) => self.record("3 ingest", Err(e)),
            }
        }
        if self.cli.wants("4") {
            let o = steady::SteadyOptions {
                minutes: self.cli.steady_minutes,
                prefill_hours: self.cli.steady_prefill_hours,
                rate: self.cli.steady_rate,
                seed,
            };
            for workers in [0usize, 1000] {
                let r = steady::figure4(&self.env, &o, workers).await;
                self.record("4 steady", r);
            }
        }
        if self.cli.wants("5") {
            for n in self.cli.catchup.clone() {
                let Some(n) = self.cli.cap(n) else {
                    self.skipped
                        .push(format!("5 at {} (above --max-records)", count(n)));
                    continue;
                };
                let r = http::figure5(&self.env, Backend::MySql, n, seed, "5").await;
                self.record("5 catch-up", r.map(|r| vec![r]));
            }
        }
        if self.cli.wants("6") {
            let (n, s) = (self.cli.read_records, self.cli.read_secs);
            match reads::figure6(&self.env, Backend::MySql, n, s, seed, "6").await {
                Ok((rows, mem)) => {
                    self.shared.api_reads = Some(mem);
                    self.record("6 reads", Ok(rows));
                }
                Err(e) => self.record("6 reads", Err(e)),
            }
        }
        if self.cli.wants("7") {
            self.memory().await;
        }
        if self.cli.wants("8") {
            self.sqlite().await;
        }
        Ok(())
    }

    async fn memory(&mut self) {
        for n in [100_000u64, 1_000_000, 3_000_000] {
            if self.cli.cap(n).is_none() {
                self.skipped.push(format!(
                    "7 rebuild RSS at {} (above --max-records)",
                    count(n)
                ));
                continue;
            }
            if let Err(e) = self.growth(n).await {
                self.record(&format!("7 worker RSS, rebuild {}", count(n)), Err(e));
                continue;
            }
            let rows = self
                .shared
                .growth
                .iter()
                .filter(|(m, ..)| *m == n)
                .map(|(n, r, _)| {
                    Row::new(format!("7 worker peak RSS, rebuild {}", count(*n)))
                        .ours(format!("{:.0} MiB", r.peak_rss_mib))
                        .target("≤ 256 MiB")
                        .note(format!(
                            "gpu-usage-worker backfill, VmHWM; {:.1} KiB/record",
                            r.peak_rss_mib * 1024.0 / *n as f64
                        ))
                })
                .collect();
            self.record("7 memory", Ok(rows));
        }
        if self.shared.api_ingest.is_none() && self.shared.api_reads.is_none() {
            let n = self.cli.ingest_records.min(20_000);
            match http::figure3(&self.env, Backend::MySql, n, self.cli.seed, "7").await {
                Ok((_, mem)) => self.shared.api_ingest = Some(mem),
                Err(e) => self.record("7 API memory", Err(e)),
            }
        }
        let mut rows = Vec::new();
        let idle = [self.shared.api_ingest, self.shared.api_reads]
            .iter()
            .flatten()
            .map(|m| m.idle_mib)
            .fold(f64::NAN, f64::max);
        rows.push(
            Row::new("7 API RSS, idle")
                .ours(format!("{idle:.0} MiB"))
                .target("≤ 64 MiB")
                .note("gpu-usage-api after start, VmRSS"),
        );
        if let Some(m) = self.shared.api_ingest {
            rows.push(
                Row::new("7 API peak RSS, ingest load")
                    .ours(format!("{:.0} MiB", m.loaded_peak_mib))
                    .target("≤ 256 MiB")
                    .note("VmHWM after POST /records ×1000 at 1 and 4 clients"),
            );
        }
        if let Some(m) = self.shared.api_reads {
            rows.push(
                Row::new("7 API peak RSS, read load")
                    .ours(format!("{:.0} MiB", m.loaded_peak_mib))
                    .target("≤ 256 MiB")
                    .note("VmHWM after the reads of figure 6 (up to 32 clients)"),
            );
        }
        self.record("7 memory", Ok(rows));
    }

    async fn sqlite(&mut self) {
        let n = self.cli.sqlite_records;
        let seed = self.cli.seed;
        let set = self.cli.set(n, "s1");
        let r = rebuild::figure1(&self.env, Backend::Sqlite, &set, "8 SQLite:", 0).await;
        self.record("8 SQLite rebuild", r);
        match http::figure3(&self.env, Backend::Sqlite, n, seed, "8 SQLite:").await {
            Ok((rows, _)) => self.record("8 SQLite ingest", Ok(rows)),
            Err(e) => self.record("8 SQLite ingest", Err(e)),
        }
        let r = http::figure5(&self.env, Backend::Sqlite, n, seed, "8 SQLite:").await;
        self.record("8 SQLite catch-up", r.map(|r| vec![r]));
        let s = self.cli.read_secs;
        match reads::figure6(&self.env, Backend::Sqlite, n, s, seed, "8 SQLite:").await {
            Ok((rows, _)) => self.record("8 SQLite reads", Ok(rows)),
            Err(e) => self.record("8 SQLite reads", Err(e)),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let env = Env::new(cli.mysql_url.clone(), cli.redis_url.clone(), cli.port_base)?;
    env.sweep_leftovers().await?;
    let started = Instant::now();
    let mut suite = Suite {
        cli,
        env,
        rows: Vec::new(),
        skipped: Vec::new(),
        shared: Shared::default(),
    };
    suite.run().await?;
    suite.env.drop_own().await?;
    let order: BTreeSet<String> = suite.cli.only.iter().cloned().collect();
    println!(
        "\ngpu-usage-bench: {} figure row(s) in {:.0} s{}\n",
        suite.rows.len(),
        started.elapsed().as_secs_f64(),
        if order.is_empty() {
            String::new()
        } else {
            format!(
                " (--only {})",
                order.into_iter().collect::<Vec<_>>().join(",")
            )
        }
    );
    print!("{}", table::render(&suite.rows));
    if !suite.skipped.is_empty() {
        println!("\nnot run: {}", suite.skipped.join("; "));
    }
    println!(
        "\nratio = ours / the database's own time for the same work (for rates: their rate / ours); above 1 = slower than the database alone."
    );
    Ok(())
}
