//! Logging: `tracing-subscriber` with the configured filter (RUST_LOG wins)
//! and format (`pretty` or `json`), to stderr, timestamps in UTC.

use std::io::IsTerminal;

use gpu_usage_core::settings::LogSettings;
use tracing_subscriber::EnvFilter;

pub fn init(log: &LogSettings) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(&log.filter)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in collected logs.
        .with_ansi(std::io::stderr().is_terminal());
    let result = if log.format.eq_ignore_ascii_case("json") {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("initialising logging: {e}"))
}
