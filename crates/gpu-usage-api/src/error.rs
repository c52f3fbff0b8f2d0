//! Every failure the API can answer with, and the one place where domain
//! errors become HTTP statuses. Every error body has the same JSON shape,
//! [`ErrorBody`], including those produced by actix's own extractors and
//! by routing, so a client never has to parse a plain-text error.

use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use gpu_usage_core::DomainError;
use gpu_usage_core::error::{RecordProblem, error_chain};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    #[schema(example = "invalid start_time: \"yesterday\" is not an RFC 3339 timestamp")]
    pub error: String,
    /// Stable machine-readable kind: `invalid_parameter`, `invalid_body`,
    /// `invalid_records`, `invalid_sessions`, `invalid_heartbeats`,
    /// `payload_too_large`, `unsupported_media_type`,
    /// `unauthorized`, `forbidden`, `not_found`, `no_route`, `busy`,
    /// `nothing_to_backfill`, `unavailable`, `internal`.
    #[schema(example = "invalid_parameter")]
    pub code: String,
    /// The offending parameter, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem of a rejected ingest batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<RecordProblem>>,
    /// Extra context, e.g. which levels an aggregation finished before it
    /// failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    // Boxed: errors travel in every handler's `Result`, which should stay
    // small on the happy path.
    body: Box<ErrorBody>,
    retry_after_secs: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ErrorBody {
                error: message.into(),
                code: code.to_owned(),
                field: None,
                problems: None,
                details: None,
            }),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A failure of ours, not the client's: logged in full, answered
    /// without detail.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.body.details = Some(details);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.body.code,
            self.body.error
        )
    }
}

/// The one mapping of domain errors to HTTP: status, stable code, and
/// whether the client should retry (`Retry-After` seconds). Transient
/// failures are 503 with a retry hint; our own failures 500 without
/// detail (the cause goes to the log, where hosts and users may be named).
impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let retry = |mut err: ApiError, secs: u32| {
            err.retry_after_secs = Some(secs);
            err
        };
        let message = e.to_string();
        match e {
            DomainError::Invalid { field, message } => invalid(field, message),
            DomainError::InvalidRecords(problems) => invalid_items("records", message, problems),
            DomainError::InvalidReports { what, problems } => {
                invalid_items(what, message, problems)
            }
            DomainError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            DomainError::Busy { job } => retry(
                ApiError::new(
                    StatusCode::CONFLICT,
                    "busy",
                    format!("job {job} is running elsewhere; nothing was done, try again shortly"),
                ),
                5,
            ),
            DomainError::LockLost { .. } => retry(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "lock_lost", message),
                5,
            ),
            DomainError::Contention => retry(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "contention", message),
                1,
            ),
            DomainError::NothingToBackfill => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "nothing_to_backfill",
                message,
            ),
            DomainError::Incomplete {
                failed,
                completed,
                source,
            } => incomplete(failed, completed, *source),
            DomainError::Unavailable(source) => {
                tracing::error!(error = %source, "database unavailable");
                let err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; try again later",
                );
                retry(err, 5)
            }
            e @ (DomainError::Database(_) | DomainError::Panicked(_) | DomainError::Partial(_)) => {
                ApiError::internal(error_chain(&e))
            }
        }
    }
}

fn invalid(field: String, message: String) -> ApiError {
    // Batch-level problems (empty, too many records) concern the body.
    let code = if field == "body" || field == "records" {
        "invalid_body"
    } else {
        "invalid_parameter"
    };
    let mut err = ApiError::bad_request(code, format!("invalid {field}: {message}"));
    err.body.field = Some(field);
    err
}

/// A rejected batch: 422 with every problem; the code names the items
/// (`invalid_records`, `invalid_sessions`, `invalid_heartbeats`).
fn invalid_items(what: &str, message: String, problems: Vec<RecordProblem>) -> ApiError {
    let mut err = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        &format!("invalid_{what}"),
        message,
    );
    err.body.problems = Some(problems);
    err
}

/// The failed level's own error, with which levels completed before it.
fn incomplete(
    failed: gpu_usage_core::types::Granularity,
    completed: Vec<gpu_usage_core::rollup::RollupReport>,
    source: DomainError,
) -> ApiError {
    tracing::error!(level = %failed, error = %source, "aggregation failed");
    let not_run: Vec<_> = gpu_usage_core::types::Granularity::ALL
        .into_iter()
        .filter(|g| *g > failed)
        .collect();
    ApiError::from(source).with_details(serde_json::json!({
        "failed_level": failed,
        "completed": completed,
        "not_run": not_run,
    }))
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after_secs {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(&self.body)
    }
}

/// `web::JsonConfig` error handler.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    json_payload_error(&err).into()
}

pub fn json_payload_error(err: &JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => too_large(*limit),
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON, sent with Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request("invalid_body", format!("malformed JSON body: {e}"))
        }
        JsonPayloadError::Payload(e) => payload_error(e),
        other => ApiError::bad_request("invalid_body", format!("unreadable body: {other}")),
    }
}

pub fn payload_error(err: &PayloadError) -> ApiError {
    match err {
        PayloadError::Overflow => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than this endpoint accepts",
        ),
        other => ApiError::bad_request("invalid_body", format!("unreadable body: {other}")),
    }
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than the limit of {limit} bytes"),
    )
}

/// `web::QueryConfig` error handler: unknown, repeated or malformed query
/// parameters.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let QueryPayloadError::Deserialize(e) = &err else {
        return ApiError::bad_request("invalid_parameter", err.to_string()).into();
    };
    ApiError::bad_request("invalid_parameter", format!("invalid query string: {e}")).into()
}

/// `web::PathConfig` error handler.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let PathError::Deserialize(e) = &err else {
        return ApiError::bad_request("invalid_parameter", err.to_string()).into();
    };
    ApiError::bad_request("invalid_parameter", format!("invalid path parameter: {e}")).into()
}

/// Last line of defence for errors produced outside our handlers (routing,
/// method mismatches, actix internals): give them the common JSON shape
/// unless they already have a JSON body.
pub fn normalize_error_body<B>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("no_route", "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed".to_owned()),
        s if s.is_server_error() => ("internal", "internal error".to_owned()),
        s => (
            "invalid_request",
            s.canonical_reason().unwrap_or("bad request").to_owned(),
        ),
    };
    let body = ApiError::new(status, code, message).body;
    let (req, mut res) = res.into_parts();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let res = res.set_body(serde_json::to_string(&body).unwrap_or_default());
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, res)
            .map_into_boxed_body()
            .map_into_right_body(),
    ))
}
