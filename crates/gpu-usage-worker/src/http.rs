//! The worker's own HTTP port: `/healthz` (the process is up), `/readyz`
//! (the database answers) and `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::Server, web};
use gpu_usage_core::clock::Clock;
use gpu_usage_core::metrics::{Exposition, wants_openmetrics};
use gpu_usage_core::settings::RedisSettings;
use sea_orm::DatabaseConnection;

use crate::metrics::Metrics;

/// Bounds every probe so a hung database or Redis cannot hang a scrape.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub redis: Option<(deadpool_redis::Pool, RedisSettings)>,
}

/// Binds and returns the server (not yet running: await or spawn it) and
/// the addresses it listens on (port 0 picks a free one).
pub fn start(host: &str, port: u16, state: AppState) -> std::io::Result<(Server, Vec<SocketAddr>)> {
    let exposition = web::Data::new(Exposition::new(&[state.metrics.as_ref()]));
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(exposition.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    // The worker owns signal handling and stops the server itself.
    .disable_signals()
    .shutdown_timeout(5)
    .bind((host, port))?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match tokio::time::timeout(PROBE_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("ready\n"),
        Ok(Err(e)) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body(format!("database unavailable: {e}\n")),
        Err(_) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("database did not answer in time\n"),
    }
}

async fn metrics(
    state: web::Data<AppState>,
    exposition: web::Data<Exposition>,
    req: HttpRequest,
) -> HttpResponse {
    if let Some((pool, settings)) = &state.redis {
        let read = tokio::time::timeout(PROBE_TIMEOUT, crate::stream::stream_lag(pool, settings))
            .await
            .ok()
            .and_then(Result::ok);
        state.metrics.set_stream(read);
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let (body, content_type) = exposition
        .render(&state.db, state.clock.now(), wants_openmetrics(accept))
        .await;
    HttpResponse::Ok().content_type(content_type).body(body)
}
