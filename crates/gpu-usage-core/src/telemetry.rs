//! Structured logs for every binary: `tracing` events through
//! `tracing-subscriber` to stderr, human readable (`pretty`, coloured only
//! at a terminal) or one JSON object per line (`json`). `RUST_LOG`
//! overrides `log.filter` when set.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::LogSettings;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("unknown log format {0:?}; expected pretty or json")]
    Format(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber; call once at start-up.
pub fn init(log: &LogSettings) -> Result<(), TelemetryError> {
    let filter_text = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| log.filter.clone());
    let filter =
        EnvFilter::builder()
            .parse(&filter_text)
            .map_err(|source| TelemetryError::Filter {
                filter: filter_text.clone(),
                source,
            })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match log.format.trim().to_ascii_lowercase().as_str() {
        "json" => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        "pretty" | "" => builder.try_init(),
        other => return Err(TelemetryError::Format(other.to_owned())),
    };
    installed.map_err(|_| TelemetryError::AlreadyInstalled)
}
