//! Capacity reports: worker sessions (`POST`/`GET /workers/sessions`) and
//! heartbeats (`POST /workers/heartbeats`).

use actix_web::{HttpResponse, get, post, web};
use gpu_usage_core::capacity::{self, HeartbeatReport, SessionReport};
use gpu_usage_core::query::{self, WorkerSession};
use serde_json::Value;

use crate::auth::{Ingester, Reader};
use crate::error::ApiError;
use crate::params::SessionsParams;
use crate::routes::responses::{IngestErrors, QueryErrors};
use crate::state::AppState;
use crate::wire::{HeartbeatsBody, ListResponse, SessionsBody};

/// Report worker sessions: one object or an array.
///
/// Identified by (worker_id, started_at): a replay is a duplicate (an
/// open one refreshes the session's last_seen); a later report may set or
/// move `ended_at`, never clear it. A session overlapping another of the
/// same worker, or a known one with other values, is a conflict and the
/// stored one is kept. If any item is invalid the whole batch is rejected
/// (422, every problem listed) and nothing is stored.
#[utoipa::path(
    tag = "capacity",
    request_body(content = SessionsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "What was stored", body = SessionReport),
        IngestErrors,
    ),
    security(("bearer" = []))
)]
#[post("/workers/sessions")]
pub async fn report_sessions(
    _auth: Ingester,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let sessions = SessionsBody::parse(body.into_inner())?;
    let report = capacity::store_sessions(&state.db, sessions, state.now(), &state.engine).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Report worker heartbeats: one object or an array.
///
/// The first heartbeat of a worker with no open session opens one at
/// `at`; later ones keep it open (older ones are ignored); one with a
/// different endpoint, spec, GPU type or count ends it at `at` and opens a
/// new one. An open session counts up to its latest heartbeat plus
/// `capacity.heartbeat_interval_secs`, and is ended after
/// `capacity.missed_heartbeats` intervals of silence.
#[utoipa::path(
    tag = "capacity",
    request_body(content = HeartbeatsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "What the heartbeats did", body = HeartbeatReport),
        IngestErrors,
    ),
    security(("bearer" = []))
)]
#[post("/workers/heartbeats")]
pub async fn heartbeats(
    _auth: Ingester,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let beats = HeartbeatsBody::parse(body.into_inner())?;
    let report = capacity::apply_heartbeats(&state.db, beats, state.now(), &state.engine).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Stored worker sessions up at some time in the range, optionally
/// filtered; ascending by (started_at, id), paginated like records.
#[utoipa::path(
    tag = "capacity",
    params(SessionsParams),
    responses(
        (status = 200, description = "A page of sessions", body = ListResponse<WorkerSession>),
        QueryErrors,
    ),
)]
#[get("/workers/sessions")]
pub async fn list_sessions(
    _auth: Reader,
    state: web::Data<AppState>,
    params: web::Query<SessionsParams>,
) -> Result<HttpResponse, ApiError> {
    let (filter, page) = params.into_inner().parse(state.now(), &state.api)?;
    let result = query::sessions(&state.db, &filter, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(result, filter.range, page.limit)))
}
