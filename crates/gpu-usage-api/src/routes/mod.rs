//! HTTP handlers, thin by rule: extract, parse into domain types, one
//! domain call, map to a response type. Registration lives here so the
//! server and the OpenAPI document are built from the same list.

pub mod dashboard;
pub mod records;
pub mod responses;
pub mod stats;
pub mod system;
pub mod triggers;
pub mod workers;

use utoipa_actix_web::service_config::ServiceConfig;

/// Routes under [`crate::API_PREFIX`].
pub fn api(cfg: &mut ServiceConfig) {
    cfg.service(stats::minute)
        .service(stats::hourly)
        .service(stats::daily)
        .service(stats::scopes)
        .service(records::list_records)
        .service(records::ingest_records)
        .service(workers::report_sessions)
        .service(workers::heartbeats)
        .service(workers::list_sessions)
        .service(triggers::aggregate)
        .service(triggers::start_backfill)
        .service(triggers::list_backfills)
        .service(triggers::get_backfill)
        .service(system::engine_status)
        .service(dashboard::whoami)
        .service(system::openapi_json)
        .service(system::docs);
}

/// Routes at the root: probes for orchestrators, the web dashboard.
pub fn root(cfg: &mut ServiceConfig) {
    cfg.service(system::healthz)
        .service(system::readyz)
        .service(system::metrics)
        .service(dashboard::root_redirect)
        .service(dashboard::page)
        .service(dashboard::app_js)
        .service(dashboard::app_css)
        .service(dashboard::vendor);
}
