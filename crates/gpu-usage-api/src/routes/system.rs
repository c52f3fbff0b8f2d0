//! Probes, engine status and the API's own documentation.

use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, web};
use gpu_usage_core::metrics::{Exposition, wants_openmetrics};
use gpu_usage_core::{job_runs, status};

use crate::auth::Reader;
use crate::error::{ApiError, ErrorBody};
use crate::openapi::{OpenApiJson, REFERENCE_PAGE};
use crate::routes::responses::ReadErrors;
use crate::state::AppState;
use crate::wire::{HealthResponse, StatusResponse};

/// Liveness: the process serves HTTP. Touches no dependency.
#[utoipa::path(
    tag = "system",
    responses((status = 200, description = "Alive", body = HealthResponse)),
    security()
)]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: "ok".to_owned(),
    })
}

/// Readiness: the database answers within 2 seconds.
#[utoipa::path(
    tag = "system",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "Database unreachable", body = ErrorBody),
    ),
    security()
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(HealthResponse {
            status: "ready".to_owned(),
        })),
        outcome => {
            match outcome {
                Ok(Err(e)) => tracing::warn!(error = %e, "readiness check failed"),
                _ => tracing::warn!("readiness check timed out"),
            }
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unavailable",
            ))
        }
    }
}

/// Prometheus metrics of this process: requests by route and status and
/// their latency, rollup lag per level (and, in the all-in-one binary, the
/// worker's job and stream metrics). Prometheus text format, or OpenMetrics
/// when asked for in `Accept`. Unauthenticated like `/healthz`: keep it
/// behind the network boundary.
#[utoipa::path(
    tag = "system",
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String)),
    security()
)]
#[get("/metrics")]
pub async fn metrics(
    state: web::Data<AppState>,
    exposition: web::Data<Exposition>,
    req: HttpRequest,
) -> HttpResponse {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let (body, content_type) = exposition
        .render(&state.db, state.now(), wants_openmetrics(accept))
        .await;
    HttpResponse::Ok().content_type(content_type).body(body)
}

/// Per-level completeness and lag, and the last run of every job.
#[utoipa::path(
    tag = "system",
    responses((status = 200, description = "Engine status", body = StatusResponse), ReadErrors),
)]
#[get("/status")]
pub async fn engine_status(
    _auth: Reader,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.now();
    let levels = status::rollup_status(&state.db, now).await?;
    let jobs = job_runs::latest_per_job(&state.db).await?;
    Ok(HttpResponse::Ok().json(StatusResponse { now, levels, jobs }))
}

/// This document (OpenAPI 3).
#[utoipa::path(
    tag = "system",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
    security()
)]
#[get("/openapi.json")]
pub async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// A human-readable reference of this API, rendered from the OpenAPI
/// document by a self-contained page (no external assets).
#[utoipa::path(
    tag = "system",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)),
    security()
)]
#[get("/docs")]
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(REFERENCE_PAGE)
}
