//! Running the figures one after the other into one table: each figure's
//! runner, the results figures share, and a failure kept as a row.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Result;

use crate::Cli;
use crate::env::{Backend, Env};
use crate::http::{self, ApiMemory};
use crate::rebuild::{self, Floor, Rebuild, count};
use crate::table::{self, Row};
use crate::{full_rebuild, reads, steady};

/// Results some figures share (figure 7 reads them).
#[derive(Default)]
pub struct Shared {
    growth: Vec<(u64, Rebuild, Floor)>,
    api_ingest: Option<ApiMemory>,
    api_reads: Option<ApiMemory>,
}

pub struct Suite {
    cli: Cli,
    env: Env,
    rows: Vec<Row>,
    skipped: Vec<String>,
    shared: Shared,
}

impl Suite {
    pub fn new(cli: Cli, env: Env) -> Self {
        Self {
            cli,
            env,
            rows: Vec::new(),
            skipped: Vec::new(),
            shared: Shared::default(),
        }
    }

    /// Runs the figures `--only` asks for (all by default), drops the
    /// databases of this run and prints the table.
    pub async fn run(mut self) -> Result<()> {
        let started = Instant::now();
        self.run_figures().await;
        self.env.drop_own().await?;
        let order: BTreeSet<String> = self.cli.only.iter().cloned().collect();
        println!(
            "\ngpu-usage-bench: {} figure row(s) in {:.0} s{}\n",
            self.rows.len(),
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
        print!("{}", table::render(&self.rows));
        if !self.skipped.is_empty() {
            println!("\nnot run: {}", self.skipped.join("; "));
        }
        println!(
            "\nratio = ours / the database's own time for the same work (for rates: their rate / ours); above 1 = slower than the database alone."
        );
        Ok(())
    }

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

    /// The growth point measured at `n`, if it was.
    fn growth_at(&self, n: u64) -> impl Iterator<Item = &(u64, Rebuild, Floor)> {
        self.shared.growth.iter().filter(move |(m, ..)| *m == n)
    }

    /// `n` unless it is above `--max-records`; then the part (`what`) is
    /// listed as not run.
    fn within_cap(&mut self, what: &str, n: u64) -> Option<u64> {
        let capped = self.cli.cap(n);
        if capped.is_none() {
            self.skipped
                .push(format!("{what} at {} (above --max-records)", count(n)));
        }
        capped
    }

    async fn run_figures(&mut self) {
        for fig in 1..=8 {
            if !self.cli.wants(&fig.to_string()) {
                continue;
            }
            match fig {
                1 => self.full_rebuild().await,
                2 => self.growth_sizes().await,
                3 => self.ingest().await,
                4 => self.steady_state().await,
                5 => self.catch_up().await,
                6 => self.reads().await,
                7 => self.memory().await,
                8 => self.sqlite().await,
                _ => {}
            }
        }
    }

    /// Figure 1 on MariaDB at `--records`.
    async fn full_rebuild(&mut self) {
        let Some(n) = self.within_cap("1", self.cli.records) else {
            return;
        };
        let set = self.cli.set(n, "r1");
        let timeout = self.cli.set_sql_timeout;
        let r = full_rebuild::figure1(&self.env, Backend::MySql, &set, "1", timeout).await;
        self.record("1 full rebuild", r);
    }

    /// Figure 2: a growth point per `--sizes` (figure 7 reuses them).
    async fn growth_sizes(&mut self) {
        for n in self.cli.sizes.clone() {
            let Some(n) = self.within_cap("2", n) else {
                continue;
            };
            match self.growth(n).await {
                Ok(()) => {
                    let rows = self
                        .growth_at(n)
                        .map(|(n, r, f)| rebuild::growth_row(*n, r, f))
                        .collect();
                    self.record("2 growth", Ok(rows));
                }
                Err(e) => self.record(&format!("2 growth {}", count(n)), Err(e)),
            }
        }
    }

    /// Figure 3 on MariaDB; the API's memory is kept for figure 7.
    async fn ingest(&mut self) {
        let (n, seed) = (self.cli.ingest_records, self.cli.seed);
        match http::figure3(&self.env, Backend::MySql, n, seed, "3").await {
            Ok((rows, mem)) => {
                self.shared.api_ingest = Some(mem);
                self.record("3 ingest", Ok(rows));
            }
            Err(e) => self.record("3 ingest", Err(e)),
        }
    }

    /// Figure 4: without, then with 1,000 heart-beating workers.
    async fn steady_state(&mut self) {
        let o = steady::SteadyOptions {
            minutes: self.cli.steady_minutes,
            prefill_hours: self.cli.steady_prefill_hours,
            rate: self.cli.steady_rate,
            seed: self.cli.seed,
        };
        for workers in [0usize, 1000] {
            let r = steady::figure4(&self.env, &o, workers).await;
            self.record("4 steady", r);
        }
    }

    /// Figure 5 on MariaDB, once per `--catchup` count.
    async fn catch_up(&mut self) {
        for n in self.cli.catchup.clone() {
            let Some(n) = self.within_cap("5", n) else {
                continue;
            };
            let r = http::figure5(&self.env, Backend::MySql, n, self.cli.seed, "5").await;
            self.record("5 catch-up", r.map(|r| vec![r]));
        }
    }

    /// Figure 6 on MariaDB; the API's memory is kept for figure 7.
    async fn reads(&mut self) {
        let (n, s, seed) = (self.cli.read_records, self.cli.read_secs, self.cli.seed);
        match reads::figure6(&self.env, Backend::MySql, n, s, seed, "6").await {
            Ok((rows, mem)) => {
                self.shared.api_reads = Some(mem);
                self.record("6 reads", Ok(rows));
            }
            Err(e) => self.record("6 reads", Err(e)),
        }
    }

    async fn memory(&mut self) {
        for n in [100_000u64, 1_000_000, 3_000_000] {
            if self.within_cap("7 rebuild RSS", n).is_none() {
                continue;
            }
            if let Err(e) = self.growth(n).await {
                self.record(&format!("7 worker RSS, rebuild {}", count(n)), Err(e));
                continue;
            }
            let rows = self
                .growth_at(n)
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
        let loads = [
            (
                self.shared.api_ingest,
                "ingest load",
                "VmHWM after POST /records ×1000 at 1 and 4 clients",
            ),
            (
                self.shared.api_reads,
                "read load",
                "VmHWM after the reads of figure 6 (up to 32 clients)",
            ),
        ];
        for (mem, load, note) in loads {
            if let Some(m) = mem {
                rows.push(
                    Row::new(format!("7 API peak RSS, {load}"))
                        .ours(format!("{:.0} MiB", m.loaded_peak_mib))
                        .target("≤ 256 MiB")
                        .note(note),
                );
            }
        }
        self.record("7 memory", Ok(rows));
    }

    async fn sqlite(&mut self) {
        let n = self.cli.sqlite_records;
        let seed = self.cli.seed;
        let set = self.cli.set(n, "s1");
        let r = full_rebuild::figure1(&self.env, Backend::Sqlite, &set, "8 SQLite:", 0).await;
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
