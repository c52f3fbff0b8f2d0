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
//! - [`wire`]: the API's own envelopes (pages, job acceptance, status)
//!   around the domain's row, summary, job and report types, which are
//!   serialised and documented as they are.
//! - [`error`]: the one mapping from `DomainError` (and actix's own
//!   extractor and routing errors) to status codes and the JSON error shape.
//! - [`auth`]: bearer tokens with roles read < ingest < admin.
//! - [`metrics`]: request counts and latency, served at `/metrics` with
//!   whatever else the process counts.
//! - [`csv`]: CSV of any row type, from its serde and OpenAPI derives.
//! - [`openapi`]: document metadata and the reference page.
//! - [`state`]: what handlers share.
//!
//! Binary: `gpu-usage-api` (`src/bin/gpu-usage-api.rs`), the API alone for
//! production. The all-in-one first run (`gpu-usage`) is a crate of its own
//! that embeds this one and the worker.

pub mod auth;
pub mod csv;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod routes;
pub mod startup;
pub mod state;
pub mod wire;

pub use startup::{Application, StartupError, bind, openapi_document};
pub use state::ApiOptions;

/// Every API route is under this prefix (the original service's).
pub const API_PREFIX: &str = "/api/v1/gpu-usage";
