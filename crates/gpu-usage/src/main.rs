//! `gpu-usage`: the all-in-one first run. One process serves the API and
//! runs the worker's scheduled rollups, retention and backfills, on the
//! embedded SQLite database of `config/default.toml` unless configured
//! otherwise. Production runs `gpu-usage-api` and `gpu-usage-worker`
//! separately instead.
//!
//! `--demo` fills a database of its own with a generated recent week and
//! keeps live traffic flowing ([`gpu_usage::demo`]).
//!
//! The schema is created automatically on SQLite only; on MySQL migrations
//! are a deploy step and this binary refuses to touch them.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use gpu_usage::demo::{self, live::Live};
use gpu_usage_api::{API_PREFIX, ApiOptions, Application, bind};
use gpu_usage_core::clock::SystemClock;
use gpu_usage_core::jobs::JobEnv;
use gpu_usage_core::settings::{Settings, redact_url};
use gpu_usage_core::{EngineConfig, db, process, telemetry};
use gpu_usage_worker::{BackgroundOptions, Metrics};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

#[derive(Debug, Parser)]
#[command(
    name = "gpu-usage",
    version,
    about = "The GPU usage accounting service in one process: API, dashboard and scheduled jobs, on an embedded SQLite file by default"
)]
struct Args {
    /// Demo data: a generated recent week (records and worker sessions)
    /// plus live traffic, in ./data/gpu_usage_demo.db unless a database is
    /// configured. Seeded only while the database holds no records.
    #[arg(long)]
    demo: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut settings = Settings::load().context("loading the configuration")?;
    telemetry::init(&settings.log)?;
    let own_demo_file = args.demo && demo::use_demo_database(&mut settings);

    let pool = open_database(&settings).await?;
    let listener = bind(&settings.api)
        .with_context(|| format!("binding {}:{}", settings.api.host, settings.api.port))?;
    let live = if args.demo {
        Some(start_demo(&settings, &pool, own_demo_file).await?)
    } else {
        None
    };
    // One process, one /metrics: the API serves the worker's metrics too.
    let metrics = Arc::new(Metrics::new());
    let api_options = ApiOptions {
        metrics: vec![metrics.clone()],
        ..ApiOptions::default()
    };
    let app = Application::build(&settings, pool.clone(), listener, api_options)?;
    let worker_options = BackgroundOptions {
        metrics,
        ..BackgroundOptions::default()
    };
    let background = gpu_usage_worker::spawn_with(&settings, pool.clone(), worker_options)
        .context("starting the scheduled jobs")?;

    let base = format!("http://{}", app.local_addr());
    tracing::info!(
        dashboard = %format!("{base}/dashboard"),
        docs = %format!("{base}{API_PREFIX}/docs"),
        hourly = %format!("{base}{API_PREFIX}/hourly"),
        health = %format!("{base}/healthz"),
        "GPU usage service ready (API and scheduled jobs); open the dashboard URL in a browser; Ctrl-C stops"
    );
    if live.is_some() {
        tracing::info!(
            dashboard = %format!("{base}/dashboard#range=7d"),
            "DEMO MODE: the dashboard shows generated demo data (the last 7 days, and live traffic every few seconds)"
        );
    }

    let served = app.run_until(process::stop_requested()).await;
    if let Some(live) = live {
        live.stop(gpu_usage_worker::SHUTDOWN_GRACE).await;
    }
    // Jobs in progress get their grace period; their work is idempotent and
    // is redone later if cut short.
    background.shutdown(gpu_usage_worker::SHUTDOWN_GRACE).await;
    pool.close().await.ok();
    served.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// Connects, creates the schema on SQLite, and says where the data lives.
async fn open_database(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database.url.expose_secret().to_owned();
    let pool = db::connect(&settings.database)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&url)))?;
    if settings.database.is_sqlite() {
        gpu_usage_core::migrate(&pool)
            .await
            .context("creating the SQLite schema")?;
        match db::sqlite_file(&url).map(std::path::absolute) {
            Some(Ok(path)) => {
                tracing::info!(file = %path.display(), "data lives in this SQLite file")
            }
            Some(Err(_)) => tracing::info!(url = %url, "data lives in this SQLite database"),
            None => tracing::info!("data lives in an in-memory SQLite database (lost on exit)"),
        }
    } else {
        tracing::info!(
            database = %redact_url(&url),
            "using MySQL; the schema must already be migrated (cargo run -p migration -- up)"
        );
    }
    Ok(pool)
}

/// Seeds the demo week when the database has no records yet, and starts
/// the live traffic.
async fn start_demo(
    settings: &Settings,
    pool: &DatabaseConnection,
    own_file: bool,
) -> anyhow::Result<Live> {
    let url = settings.database.url.expose_secret();
    let file = db::sqlite_file(url)
        .and_then(|p| std::path::absolute(p).ok())
        .map_or_else(|| redact_url(url), |p| p.display().to_string());
    if own_file {
        tracing::info!(
            file = %file,
            "DEMO MODE: generated demo data, kept apart from ./data/gpu_usage.db; \
             delete this file to start the demo over, run without --demo for an empty database"
        );
    } else {
        tracing::warn!(
            database = %file,
            "DEMO MODE on the configured database: demo data is added to it while it holds no records"
        );
    }
    let cfg = EngineConfig::from_settings(settings);
    let env = JobEnv {
        db: pool.clone(),
        runner: "demo".to_owned(),
        clock: Arc::new(SystemClock),
    };
    tracing::info!("demo: looking for data, seeding a week when there is none (a few seconds)");
    let seeded = demo::seed(&env, &cfg)
        .await
        .context("seeding the demo week")?;
    if seeded.skipped() {
        tracing::info!(
            records = seeded.existing_records,
            "demo: the database already holds records; not seeding again, live traffic only"
        );
    } else {
        tracing::info!(
            records = seeded.records,
            sessions = seeded.sessions,
            rows_written = seeded.rows_written,
            seconds = format!("{:.1}", seeded.took.as_secs_f64()),
            "demo: seeded a week of records and worker sessions, every level rebuilt"
        );
    }
    Ok(Live::spawn(pool.clone(), cfg, env.clock, seeded.until))
}
