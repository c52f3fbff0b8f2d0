//! Command-line arguments and how they become a generator and a range.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use gpu_usage_loadgen::output::EntryFormat;
use gpu_usage_loadgen::output::http::HttpOptions;
use gpu_usage_loadgen::output::redis::RedisOptions;
use gpu_usage_loadgen::{Config, Generator, Kind, TimeRange};

const LOAD_DATA_HELP: &str = "\
Load the file (then backfill the range: rows loaded this way bypass ingest):

  LOAD DATA LOCAL INFILE 'records.csv'
  INTO TABLE gpu_usage_records
  CHARACTER SET utf8mb4
  FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\'
  LINES TERMINATED BY '\\n'
  IGNORE 1 LINES
  (task_id, endpoint, worker_id, spec_name, gpu_count, gpu_type, gpu_memory_gb,
   started_at, completed_at, duration_seconds, gpu_hours, status, created_at);

e.g. mariadb --local-infile=1 waverless -e \"LOAD DATA LOCAL INFILE ...\"";

/// Realistic, seeded GPU usage records, worker sessions and heartbeats for
/// the GPU usage accounting service. Same options and --start/--end/--now ⇒
/// byte-identical output.
#[derive(Debug, Parser)]
#[command(name = "gpu-usage-loadgen", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write one JSON object per line (stdout or --out).
    Jsonl {
        #[command(flatten)]
        args: GenArgs,
        /// File to write; stdout when absent.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Write records as CSV for `LOAD DATA LOCAL INFILE` into gpu_usage_records.
    #[command(after_long_help = LOAD_DATA_HELP)]
    Csv {
        #[command(flatten)]
        args: GenArgs,
        /// File to write; stdout when absent.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// POST batches (JSON arrays) to the service.
    Http {
        #[command(flatten)]
        args: GenArgs,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// XADD entries to a Redis stream, one pipeline per batch.
    Redis {
        #[command(flatten)]
        args: GenArgs,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Live load: records completing now, at --rate for --duration, over HTTP
    /// (and/or the stream with --redis-url).
    Steady(SteadyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Records,
    Sessions,
    Heartbeats,
}

/// The fleet and the load: what every command shares.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Seeds everything.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Mean records per second [default: 1].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Daily cycle amplitude 0..0.95 (peak 14:00 UTC) [default: 0.5; steady: 0].
    #[arg(long)]
    pub daily_cycle: Option<f64>,
    /// Number of endpoints (flux-dev, llama-70b, …, then endpoint-NN).
    #[arg(long, default_value_t = 8)]
    pub endpoints: usize,
    /// Number of GPU specs (a100-80g, h100-80g, l40s-48g, rtx4090-24g, …).
    #[arg(long, default_value_t = 4)]
    pub specs: usize,
    /// Worker pool size [default: sized from the load for ~60 % utilisation,
    /// at least 3 per endpoint].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Share of records with status FAILED.
    #[arg(long, default_value_t = 0.10)]
    pub failed_share: f64,
    /// Share of records without spec_name.
    #[arg(long, default_value_t = 0.03)]
    pub no_spec_share: f64,
    /// Share of CPU-only records (gpu_count 0).
    #[arg(long, default_value_t = 0.02)]
    pub cpu_only_share: f64,
    /// task_id prefix: <prefix>-<seed>-<chunk>-<n>.
    #[arg(long, default_value = "lg")]
    pub prefix: String,
    /// Show a progress bar on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

/// What to generate over which range.
#[derive(Debug, Args)]
pub struct GenArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// What to generate.
    #[arg(long, value_enum, default_value_t = KindArg::Records)]
    pub kind: KindArg,
    /// Range start (RFC 3339) [default: --end minus --days].
    #[arg(long)]
    pub start: Option<String>,
    /// Range end, exclusive (RFC 3339) [default: now].
    #[arg(long)]
    pub end: Option<String>,
    /// Range length in days when --start is absent.
    #[arg(long, default_value_t = 1.0)]
    pub days: f64,
    /// About this many records over the range (sets --rate; the count is
    /// Poisson, add --limit to cap it).
    #[arg(long, conflicts_with = "rate")]
    pub count: Option<u64>,
    /// Stop after this many items.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Heartbeat interval in seconds.
    #[arg(long, default_value_t = 30)]
    pub interval: u64,
    /// The present for sessions (open ones have ended_at null; nothing later
    /// is reported) [default: the wall clock].
    #[arg(long)]
    pub now: Option<String>,
}

#[derive(Debug, Args)]
pub struct HttpArgs {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base: String,
    /// Bearer token (ingest role).
    #[arg(long, env = "GPU_USAGE_LOADGEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Items per request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Retries of a batch answered 503/429 (after its Retry-After).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Request timeout in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct RedisArgs {
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    #[arg(long, default_value = "gpu_usage:records")]
    pub stream: String,
    /// Each wire field as its own stream field instead of one JSON field.
    #[arg(long)]
    pub fields: bool,
    /// Entries per pipeline.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Trim the stream to about this many entries (XADD MAXLEN ~).
    #[arg(long)]
    pub max_len: Option<usize>,
}

#[derive(Debug, Args)]
pub struct SteadyArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// How long to run: 90s, 10m, 2h (or plain seconds).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Send the records at most this long after they complete (ms).
    #[arg(long, default_value_t = 1000)]
    pub flush_ms: u64,
    /// Also XADD every record to this Redis (see --stream, --fields).
    #[arg(long)]
    pub redis_url: Option<String>,
    #[arg(long, default_value = "gpu_usage:records")]
    pub stream: String,
    #[arg(long)]
    pub fields: bool,
    /// Do not POST; only the stream (needs --redis-url).
    #[arg(long, requires = "redis_url")]
    pub no_http: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3_600,
        _ => return Err(format!("unknown unit in {s:?} (use s, m or h)")),
    };
    Ok(Duration::from_secs(secs))
}

fn parse_time(name: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("--{name} {s:?} is not an RFC 3339 time"))
}

impl FleetArgs {
    pub fn config(&self, rate: f64, daily_cycle: f64, now: DateTime<Utc>) -> Config {
        Config {
            seed: self.seed,
            rate,
            daily_cycle: self.daily_cycle.unwrap_or(daily_cycle),
            endpoints: self.endpoints,
            specs: self.specs,
            workers: self.workers,
            failed_share: self.failed_share,
            no_spec_share: self.no_spec_share,
            cpu_only_share: self.cpu_only_share,
            task_prefix: self.prefix.clone(),
            now: Some(now),
        }
    }
}

/// A resolved batch run: the generator, the range and what to make.
pub struct Setup {
    pub generator: Generator,
    pub range: TimeRange,
    pub kind: Kind,
    pub interval: Duration,
    pub limit: Option<u64>,
    pub progress: bool,
}

impl GenArgs {
    pub fn setup(&self) -> anyhow::Result<Setup> {
        let wall = Utc::now();
        let now = self
            .now
            .as_deref()
            .map(|s| parse_time("now", s))
            .transpose()?;
        let now = now.unwrap_or(wall);
        let end = self
            .end
            .as_deref()
            .map(|s| parse_time("end", s))
            .transpose()?;
        let end = end.unwrap_or(wall);
        let start = match &self.start {
            Some(s) => parse_time("start", s)?,
            None if self.days > 0.0 && self.days <= 3_660.0 => {
                end - chrono::Duration::milliseconds((self.days * 86_400_000.0) as i64)
            }
            None => bail!("--days must be in (0, 3660]"),
        };
        let range = TimeRange::new(start, end)?;
        let rate = match self.count {
            Some(n) => n as f64 / range.seconds(),
            None => self.fleet.rate.unwrap_or(1.0),
        };
        let kind = match self.kind {
            KindArg::Records => Kind::Records,
            KindArg::Sessions => Kind::Sessions,
            KindArg::Heartbeats => Kind::Heartbeats,
        };
        if kind == Kind::Records && end > wall + chrono::Duration::minutes(5) {
            eprintln!("warning: records completing in the future are refused by ingest");
        }
        Ok(Setup {
            generator: Generator::new(self.fleet.config(rate, 0.5, now))?,
            range,
            kind,
            interval: Duration::from_secs(self.interval),
            limit: self.limit,
            progress: self.fleet.progress,
        })
    }
}

impl HttpArgs {
    pub fn options(&self) -> HttpOptions {
        HttpOptions {
            base_url: self.base.clone(),
            token: self.token.clone(),
            concurrency: self.concurrency,
            max_retries: self.retries,
            timeout: Duration::from_secs(self.timeout),
            ..HttpOptions::default()
        }
    }
}

pub fn entry_format(fields: bool) -> EntryFormat {
    if fields {
        EntryFormat::Fields
    } else {
        EntryFormat::Json
    }
}

impl RedisArgs {
    pub fn options(&self) -> RedisOptions {
        RedisOptions {
            url: self.redis_url.clone(),
            stream: self.stream.clone(),
            format: entry_format(self.fields),
            max_len: self.max_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
