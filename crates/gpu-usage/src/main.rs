//! `gpu-usage`: the all-in-one first run. One process serves the API and
//! runs the worker's scheduled rollups, retention and backfills, on the
//! embedded SQLite database of `config/default.toml` unless configured
//! otherwise. Production runs `gpu-usage-api` and `gpu-usage-worker`
//! separately instead.
//!
//! The schema is created automatically on SQLite only; on MySQL migrations
//! are a deploy step and this binary refuses to touch them.

use anyhow::Context;
use gpu_usage_api::{API_PREFIX, ApiOptions, Application, bind};
use gpu_usage_core::settings::{Settings, redact_url};
use gpu_usage_core::{db, process, telemetry};
use gpu_usage_worker::{BackgroundOptions, Metrics};
use secrecy::ExposeSecret;
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("loading the configuration")?;
    telemetry::init(&settings.log)?;

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

    let listener = bind(&settings.api)
        .with_context(|| format!("binding {}:{}", settings.api.host, settings.api.port))?;
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

    let served = app.run_until(process::stop_requested()).await;
    // Jobs in progress get their grace period; their work is idempotent and
    // is redone later if cut short.
    background.shutdown(gpu_usage_worker::SHUTDOWN_GRACE).await;
    pool.close().await.ok();
    served.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}
