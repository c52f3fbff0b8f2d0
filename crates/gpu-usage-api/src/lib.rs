//! HTTP API of the GPU usage accounting service (actix-web), over the
//! domain crate `gpu_usage_core`. Paths and field names are those of the
//! original service, under [`API_PREFIX`]; the OpenAPI document is served at
//! `{API_PREFIX}/openapi.json` and a readable reference at
//! `{API_PREFIX}/docs`.
//!
//! Layout:
//! - [`startup`]: [`Application::build`] turns settings, a pool and a bound
//!   listener into a server (binaries and tests alike); middleware and
//!   extractor configuration live there.
//! - [`routes`]: the handlers, thin: extract, parse, one domain call,
//!   respond. `routes::api`/`routes::root` is the single registration list
//!   that both the server and the OpenAPI document are built from.
//! - [`params`]: query strings and trigger bodies parsed into domain types
//!   (`ScopeFilter`, `Granularity`, `TimeRange`, pages); defaults apply only
//!   to absent values, bad values are errors.
//! - [`dto`]: the wire format (response and documented request types),
//!   built from domain types, never from entities.
//! - [`error`]: the one mapping from `DomainError` (and actix's own
//!   extractor and routing errors) to status codes and the JSON error shape.
//! - [`auth`]: bearer tokens with roles read < ingest < admin.
//! - [`ops`]: multi-level aggregation under the worker's locks, or a
//!   backfill job for long ranges.
//! - [`csv`]: CSV rendering of statistics pages.
//! - [`openapi`]: document metadata and the reference page.
//! - [`telemetry`]: the tracing subscriber (pretty or JSON logs).
//! - [`state`]: what handlers share, and the injectable clock.
//!
//! Binaries: `gpu-usage` (`src/main.rs`, the all-in-one first run: API and
//! the worker's scheduler in one process on SQLite) and `gpu-usage-api`
//! (`src/bin/gpu-usage-api.rs`, the API alone for production).

pub mod auth;
pub mod csv;
pub mod dto;
pub mod error;
pub mod openapi;
pub mod ops;
pub mod params;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use startup::{Application, StartupError, bind, openapi_document};
pub use state::{ApiOptions, Clock};

/// Every API route is under this prefix (the original service's).
pub const API_PREFIX: &str = "/api/v1/gpu-usage";

/// Resolves when the process is asked to stop: Ctrl-C, or SIGTERM on Unix
/// (what container runtimes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Where an SQLite URL keeps its data, as an absolute path for logs;
/// `None` for other databases and in-memory SQLite.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    let p = std::path::Path::new(path);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    })
}
