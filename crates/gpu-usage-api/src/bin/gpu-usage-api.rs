//! `gpu-usage-api`: the HTTP API alone, for production beside separately
//! deployed workers. On MySQL it never touches the schema (migrations are a
//! deploy step); on SQLite it creates the schema, as the embedded mode
//! promises.

use anyhow::Context;
use gpu_usage_api::{API_PREFIX, ApiOptions, Application, bind};
use gpu_usage_core::settings::Settings;
use gpu_usage_core::{process, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("loading the configuration")?;
    telemetry::init(&settings.log)?;
    let db = gpu_usage_core::db::connect(&settings.database)
        .await
        .context("connecting to the database")?;
    if settings.database.is_sqlite() {
        gpu_usage_core::migrate(&db)
            .await
            .context("creating the SQLite schema")?;
    }
    let listener = bind(&settings.api)
        .with_context(|| format!("binding {}:{}", settings.api.host, settings.api.port))?;
    let app = Application::build(&settings, db.clone(), listener, ApiOptions::default())?;
    tracing::info!(url = %format!("http://{}{API_PREFIX}/docs", app.local_addr()), "API listening");
    app.run_until(process::stop_requested())
        .await
        .context("serving HTTP")?;
    db.close().await.ok();
    tracing::info!("stopped");
    Ok(())
}
