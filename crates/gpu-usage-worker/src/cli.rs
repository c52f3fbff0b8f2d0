//! The `gpu-usage-worker` command line: `run` (the default), `run-job`,
//! `backfill` and `status`. Settings come from `Settings::load()`; in
//! SQLite mode the schema is created on start, in MySQL mode never
//! (migrations are a deploy step).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use gpu_usage_core::backfill::{self, BackfillJob, BackfillStatus, RunOptions};
use gpu_usage_core::jobs::{JobEnv, JobName};
use gpu_usage_core::settings::{Settings, redact_url};
use gpu_usage_core::types::{Levels, TimeRange, parse_utc};
use gpu_usage_core::{EngineConfig, job_runs, process, status};
use indicatif::{ProgressBar, ProgressStyle};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

use crate::jobs::{self, JobContext, JobOutcome};
use crate::metrics::Metrics;
use gpu_usage_core::clock::SystemClock;

#[derive(Debug, Parser)]
#[command(
    name = "gpu-usage-worker",
    version,
    about = "Scheduled rollups, retention, backfills and Redis stream ingest of the GPU usage accounting service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker until SIGTERM/SIGINT: scheduler, backfill poller, Redis
    /// consumer (when configured) and the HTTP port. The default.
    Run,
    /// Run one job now, under its lock, and print what it did. Exit code 3
    /// when another runner holds the lock, 1 when the job failed.
    RunJob {
        #[arg(value_enum)]
        job: JobArg,
    },
    /// Rebuild statistics over a range as a tracked backfill job, showing
    /// progress. Without --start: from the oldest retained record; without
    /// --end: until now.
    Backfill {
        /// RFC 3339 with an offset, e.g. 2026-03-01T00:00:00Z.
        #[arg(long)]
        start: Option<String>,
        /// RFC 3339 with an offset; default now.
        #[arg(long)]
        end: Option<String>,
        /// minute, hourly, daily or all.
        #[arg(long, default_value = "all")]
        granularity: String,
    },
    /// Print rollup status per level, the last run of every job and recent
    /// backfills.
    Status {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobArg {
    Minute,
    Hourly,
    Daily,
    Capacity,
    Cleanup,
}

impl From<JobArg> for JobName {
    fn from(j: JobArg) -> Self {
        match j {
            JobArg::Minute => JobName::MinuteRollup,
            JobArg::Hourly => JobName::HourlyRollup,
            JobArg::Daily => JobName::DailyRollup,
            JobArg::Capacity => JobName::Capacity,
            JobArg::Cleanup => JobName::Cleanup,
        }
    }
}

/// Parses the command line and runs the command.
pub async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let settings = Settings::load().context("loading settings")?;
    gpu_usage_core::telemetry::init(&settings.log)?;
    let db = connect(&settings).await?;
    let env = JobEnv {
        db: db.clone(),
        runner: job_runs::runner_id(&settings.worker.instance_id),
        clock: Arc::new(SystemClock),
    };
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            crate::run(settings, db.clone(), process::stop_requested()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::RunJob { job } => Ok(run_job(&settings, env, job.into()).await),
        Command::Backfill {
            start,
            end,
            granularity,
        } => run_backfill(&settings, &env, start, end, &granularity).await,
        Command::Status { json } => print_status(&env, json).await.map(|()| ExitCode::SUCCESS),
    };
    db.close().await.ok();
    result
}

pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = redact_url(settings.database.url.expose_secret());
    let db = gpu_usage_core::db::connect(&settings.database)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    if settings.database.is_sqlite() {
        gpu_usage_core::migrate(&db)
            .await
            .context("creating the SQLite schema")?;
    }
    Ok(db)
}

async fn run_job(settings: &Settings, env: JobEnv, job: JobName) -> ExitCode {
    let ctx = Arc::new(JobContext {
        env,
        engine: EngineConfig::from_settings(settings),
        metrics: Arc::new(Metrics::new()),
    });
    match jobs::run_job(&ctx, job).await {
        JobOutcome::Ran {
            rows_written,
            detail,
        } => {
            println!("{job}: ran, {rows_written} row(s); {detail}");
            ExitCode::SUCCESS
        }
        JobOutcome::NothingToDo => {
            println!("{job}: nothing to do");
            ExitCode::SUCCESS
        }
        JobOutcome::Skipped | JobOutcome::Chained => {
            println!("{job}: skipped, another runner holds its lock");
            // 2 is clap's usage-error code.
            ExitCode::from(3)
        }
        JobOutcome::Failed { error } => {
            eprintln!("{job}: failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_backfill(
    settings: &Settings,
    env: &JobEnv,
    start: Option<String>,
    end: Option<String>,
    granularity: &str,
) -> anyhow::Result<ExitCode> {
    let range = backfill_range(settings, env, start, end).await?;
    let levels = granularity.parse::<Levels>()?;
    let job = backfill::create(&env.db, range, levels, env.now()).await?;
    eprintln!(
        "backfill job {}: {} .. {} ({}), {} day chunk(s)",
        job.id, job.start_time, job.end_time, levels, job.chunks_total
    );
    let bar = progress_bar(&job);
    let show = |j: &BackfillJob| {
        bar.set_position(u64::try_from(j.chunks_done).unwrap_or(0));
        bar.set_message(format!("{} (next {})", j.status, j.next_chunk_start));
    };
    show(&job);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_on_signal = stop.clone();
    let signal_task = tokio::spawn(async move {
        process::stop_requested().await;
        stop_on_signal.store(true, Ordering::Relaxed);
    });
    let stop_fn = || stop.load(Ordering::Relaxed);
    let opts = RunOptions {
        stop: &stop_fn,
        on_progress: &show,
        ..RunOptions::default()
    };
    let engine = EngineConfig::from_settings(settings);
    let finished = follow(env, job.id, &engine, &opts, &show).await?;
    signal_task.abort();
    bar.finish_and_clear();
    report_backfill(env, job.id, finished).await
}

/// `--start`/`--end`, or everything retained when neither is given.
async fn backfill_range(
    settings: &Settings,
    env: &JobEnv,
    start: Option<String>,
    end: Option<String>,
) -> anyhow::Result<TimeRange> {
    let now = env.now();
    Ok(match (start, end) {
        (Some(s), Some(e)) => TimeRange::new(parse_utc("start", &s)?, parse_utc("end", &e)?)?,
        (Some(s), None) => TimeRange::new(parse_utc("start", &s)?, now)?,
        (None, None) => backfill::retained_range(&env.db, now, &settings.retention)
            .await?
            .ok_or_else(|| anyhow!("no records are retained: nothing to backfill"))?,
        (None, Some(_)) => bail!("--end needs --start (give neither for all retained data)"),
    })
}

fn progress_bar(job: &BackfillJob) -> ProgressBar {
    let bar = ProgressBar::new(u64::try_from(job.chunks_total).unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} days {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Runs the job here, or follows a worker that runs it, until it finishes
/// (`Some`) or a stop is requested (`None`).
async fn follow(
    env: &JobEnv,
    id: i64,
    engine: &EngineConfig,
    opts: &RunOptions<'_>,
    show: &dyn Fn(&BackfillJob),
) -> anyhow::Result<Option<BackfillJob>> {
    loop {
        match backfill::run_job(env, id, engine, opts).await? {
            Some(j) if j.is_finished() => return Ok(Some(j)),
            Some(_) if (opts.stop)() => return Ok(None),
            // A rollup lock stayed busy; try again shortly.
            Some(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            // Another runner (a worker) holds the backfill lock, or already
            // finished this job: follow the job's record.
            None => {
                let j = backfill::get(&env.db, id).await?;
                show(&j);
                if j.is_finished() {
                    return Ok(Some(j));
                }
                if (opts.stop)() {
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn report_backfill(
    env: &JobEnv,
    id: i64,
    finished: Option<BackfillJob>,
) -> anyhow::Result<ExitCode> {
    match finished {
        None => {
            let j = backfill::get(&env.db, id).await?;
            eprintln!(
                "interrupted: backfill job {} stays {} at {} ({}/{} days); a worker resumes it",
                j.id, j.status, j.next_chunk_start, j.chunks_done, j.chunks_total
            );
            Ok(ExitCode::from(130))
        }
        Some(j) if j.status == BackfillStatus::Succeeded => {
            eprintln!(
                "backfill job {} succeeded: {} day chunk(s)",
                j.id, j.chunks_done
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(j) => {
            eprintln!(
                "backfill job {} {}: {}",
                j.id,
                j.status,
                j.error.as_deref().unwrap_or("no error recorded")
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn print_status(env: &JobEnv, json: bool) -> anyhow::Result<()> {
    let (db, now) = (&env.db, env.now());
    let levels = status::rollup_status(db, now).await?;
    let runs = job_runs::latest_per_job(db).await?;
    let backfills = backfill::list(db, 10).await?;
    if json {
        let doc = serde_json::json!({
            "now": now,
            "rollup": levels,
            "job_runs": runs,
            "backfills": backfills,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("rollup status at {now}");
    println!(
        "  {:<8} {:>8} {:>8} {:<32} {:<32}",
        "level", "pending", "buckets", "oldest pending", "complete through"
    );
    for l in &levels {
        println!(
            "  {:<8} {:>8} {:>8} {:<32} {:<32}",
            l.level.as_str(),
            l.pending_ranges,
            l.pending_buckets,
            l.oldest_pending
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "-".into()),
            l.complete_through.to_rfc3339()
        );
    }
    println!("last job runs");
    if runs.is_empty() {
        println!("  (none)");
    }
    for s in &runs {
        let r = &s.last_run;
        println!(
            "  {:<14} {:<10} started {} by {} rows {} took {} last success {}{}",
            s.last_run.job.as_str(),
            r.outcome.as_str(),
            r.started_at.to_rfc3339(),
            r.runner,
            r.rows_written,
            s.last_duration_ms
                .map(|ms| format!("{ms} ms"))
                .unwrap_or_else(|| "-".into()),
            s.last_success_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into()),
            r.detail
                .as_deref()
                .map(|d| format!("\n      {d}"))
                .unwrap_or_default()
        );
    }
    println!("recent backfills");
    if backfills.is_empty() {
        println!("  (none)");
    }
    for b in &backfills {
        println!(
            "  #{:<5} {:<9} {} .. {} {:<6} {}/{} days{}",
            b.id,
            b.status.as_str(),
            b.start_time.to_rfc3339(),
            b.end_time.to_rfc3339(),
            b.granularity.as_str(),
            b.chunks_done,
            b.chunks_total,
            b.error
                .as_deref()
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
