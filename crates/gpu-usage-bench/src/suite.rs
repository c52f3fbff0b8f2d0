//! Running the figures one after the other into one table: each figure's
//! runner, the results figures share, and a failure kept as a row.

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
    pub cli: Cli,
    pub env: Env,
    pub rows: Vec<Row>,
    pub skipped: Vec<String>,
    pub shared: Shared,
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

    pub async fn run(&mut self) -> Result<()> {
        if self.cli.wants("1") {
            self.full_rebuild().await;
        }
        if self.cli.wants("2") {
            self.growth_sizes().await;
        }
        if self.cli.wants("3") {
            self.ingest().await;
        }
        if self.cli.wants("4") {
            self.steady_state().await;
        }
        if self.cli.wants("5") {
            self.catch_up().await;
        }
        if self.cli.wants("6") {
            self.reads().await;
        }
        if self.cli.wants("7") {
            self.memory().await;
        }
        if self.cli.wants("8") {
            self.sqlite().await;
        }
        Ok(())
    }

    /// Figure 1 on MariaDB at `--records`.
    async fn full_rebuild(&mut self) {
        let records = self.cli.records;
        match self.cli.cap(records) {
            Some(n) => {
                let set = self.cli.set(n, "r1");
                let timeout = self.cli.set_sql_timeout;
                let r = full_rebuild::figure1(&self.env, Backend::MySql, &set, "1", timeout).await;
                self.record("1 full rebuild", r);
            }
            None => self
                .skipped
                .push(format!("1 at {} (above --max-records)", count(records))),
        }
    }

    /// Figure 2: a growth point per `--sizes` (figure 7 reuses them).
    async fn growth_sizes(&mut self) {
        for n in self.cli.sizes.clone() {
            let Some(n) = self.cli.cap(n) else {
                self.skipped
                    .push(format!("2 at {} (above --max-records)", count(n)));
                continue;
            };
            match self.growth(n).await {
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
            let Some(n) = self.cli.cap(n) else {
                self.skipped
                    .push(format!("5 at {} (above --max-records)", count(n)));
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
