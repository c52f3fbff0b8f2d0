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
mod full_rebuild;
mod http;
mod reads;
mod rebuild;
mod steady;
mod suite;
mod table;

use anyhow::Result;
use chrono::Utc;
use clap::Parser;

use crate::env::Env;
use crate::rebuild::DataSet;
use crate::suite::Suite;

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let env = Env::new(cli.mysql_url.clone(), cli.redis_url.clone(), cli.port_base)?;
    env.sweep_leftovers().await?;
    Suite::new(cli, env).run().await
}
