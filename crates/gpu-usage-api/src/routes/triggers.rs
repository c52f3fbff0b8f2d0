//! `POST /aggregate`, `POST /backfill`, `GET /backfill`, `GET
//! /backfill/{id}`: recomputation on demand.
//!
//! Triggers take their parameters from the query string (the original
//! dashboard's form) or a JSON object body, and accept an empty or `null`
//! body, which is what browser clients send.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use gpu_usage_core::aggregate::{self as manual, Aggregation};
use gpu_usage_core::backfill;
use gpu_usage_core::types::Levels;

use crate::API_PREFIX;
use crate::auth::{Admin, Reader};
use crate::error::{ApiError, ErrorBody, payload_error};
use crate::params::{AggregateParams, BackfillParams, ListParams, trigger_body};
use crate::routes::responses::{AdminErrors, QueryErrors, ReadErrors};
use crate::state::AppState;
use crate::wire::{AggregateResponse, BackfillListResponse, JobAccepted};
use gpu_usage_core::backfill::BackfillJob;

/// Recompute statistics for a range, under the same locks as the worker.
///
/// Levels run finest first (minute, hourly, daily), each a full
/// recomputation of the range's buckets from its source. Ranges up to the
/// inline limit (1 day by default) are done inside the request (200, with
/// what each level did); longer ones become a backfill job (202, poll
/// `status_url`), so no request runs into an HTTP timeout. If a level
/// fails, the response is an error whose `details` say which levels
/// completed.
#[utoipa::path(
    tag = "triggers",
    params(AggregateParams),
    request_body(
        content = Option<AggregateParams>,
        description = "Optional: empty, `null`, or the same parameters as a JSON object",
        content_type = "application/json"
    ),
    responses(
        (status = 200, description = "Recomputed inside the request", body = AggregateResponse),
        (status = 202, description = "Long range: queued as a backfill job", body = JobAccepted),
        (status = 409, description = "A rollup of one of these levels is running; nothing was done", body = ErrorBody),
        (status = 500, description = "A level failed; `details` says which completed", body = ErrorBody),
        AdminErrors,
    ),
    security(("bearer" = []))
)]
#[post("/aggregate")]
pub async fn aggregate(
    _auth: Admin,
    state: web::Data<AppState>,
    params: web::Query<AggregateParams>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner().merge(trigger_body(&body.0)?)?;
    let (levels, range) = params.parse(state.now(), &state.api)?;
    match manual::aggregate(&state.jobs, levels, range, &state.engine, state.aggregate).await? {
        Aggregation::Done(reports) => Ok(HttpResponse::Ok().json(AggregateResponse {
            status: "completed".to_owned(),
            granularity: levels,
            start_time: range.start(),
            end_time: range.end(),
            levels: reports,
        })),
        Aggregation::Queued(job) => Ok(accepted(job, levels, (range.start(), range.end()))),
    }
}

/// Rebuild every level for a range as a tracked background job.
///
/// Times come from the query string or a JSON body; with neither, every
/// range still retained is rebuilt. One job at a time per range: asking
/// again for an overlapping range returns the active job. The worker runs
/// the job chunk by chunk, resumably; poll `status_url` for progress.
#[utoipa::path(
    tag = "triggers",
    params(BackfillParams),
    request_body(
        content = Option<BackfillParams>,
        description = "Optional: empty, `null`, or `{\"start_time\": ..., \"end_time\": ...}`",
        content_type = "application/json"
    ),
    responses(
        (status = 202, description = "The job (new, or the active one for an overlapping range)", body = JobAccepted),
        (status = 422, description = "No times given and nothing is retained", body = ErrorBody),
        AdminErrors,
    ),
    security(("bearer" = []))
)]
#[post("/backfill")]
pub async fn start_backfill(
    _auth: Admin,
    state: web::Data<AppState>,
    params: web::Query<BackfillParams>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let range = params
        .into_inner()
        .merge(trigger_body(&body.0)?)?
        .parse(&state.api)?;
    let job = backfill::request(
        &state.db,
        range,
        Levels::All,
        state.now(),
        &state.engine.retention,
    )
    .await?;
    let asked = (job.start_time, job.end_time);
    Ok(accepted(job, Levels::All, asked))
}

/// One backfill job: state, progress and error.
#[utoipa::path(
    tag = "triggers",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = BackfillJob),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        ReadErrors,
    ),
)]
#[get("/backfill/{id}")]
pub async fn get_backfill(
    _auth: Reader,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let job = backfill::get(&state.db, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(job))
}

/// Backfill jobs, newest first.
#[utoipa::path(
    tag = "triggers",
    params(ListParams),
    responses((status = 200, description = "Jobs", body = BackfillListResponse), QueryErrors),
)]
#[get("/backfill")]
pub async fn list_backfills(
    _auth: Reader,
    state: web::Data<AppState>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.into_inner().parse()?;
    let jobs = backfill::list(&state.db, limit).await?;
    Ok(HttpResponse::Ok().json(BackfillListResponse { data: jobs }))
}

/// 202 with the job and the range it was asked for.
fn accepted(
    job: BackfillJob,
    granularity: Levels,
    range: (DateTime<Utc>, DateTime<Utc>),
) -> HttpResponse {
    let status_url = format!("{API_PREFIX}/backfill/{}", job.id);
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, status_url.clone()))
        .json(JobAccepted::new(job, granularity, range, status_url))
}

/// The raw body of a trigger, bounded by the app's `PayloadConfig`, with
/// errors in the API's JSON shape.
pub struct RawBody(pub web::Bytes);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            bytes.await.map(RawBody).map_err(|e| match e.as_error() {
                Some(p) => payload_error(p),
                None => ApiError::bad_request("invalid_body", format!("unreadable body: {e}")),
            })
        })
    }
}
