//! The error answers the handlers document, as named sets for
//! `#[utoipa::path(responses(...))]`: each status and its reason is written
//! once here, and a handler lists the sets its errors come from next to its
//! own success (and special-case) responses.

use std::collections::BTreeMap;

use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

use crate::error::ErrorBody;

/// A documented error answer: its status and when it is given.
type ErrorDoc = (u16, &'static str);

const BAD_PARAMETER: ErrorDoc = (400, "Bad parameter");
const BAD_BATCH: ErrorDoc = (400, "Malformed JSON or an empty or oversized batch");
const UNAUTHORIZED: ErrorDoc = (401, "Missing or invalid token");
const NOT_INGESTER: ErrorDoc = (403, "Token lacks the ingest role");
const NOT_ADMIN: ErrorDoc = (403, "Token lacks the admin role");
const TOO_LARGE: ErrorDoc = (413, "Body larger than api.max_body_bytes");
const NOT_JSON: ErrorDoc = (415, "Not sent as application/json");
const INVALID_ITEMS: ErrorDoc = (
    422,
    "An invalid item (every problem listed); the whole batch is refused",
);
const UNAVAILABLE: ErrorDoc = (503, "Database unavailable");
const UNAVAILABLE_OR_BUSY: ErrorDoc = (503, "Database unavailable or busy");

/// Each error with the API's error body, keyed by status.
fn error_responses(errors: &[ErrorDoc]) -> BTreeMap<String, RefOr<Response>> {
    errors
        .iter()
        .map(|&(status, when)| {
            let body = Content::new(Some(Ref::from_schema_name(ErrorBody::name())));
            let response = ResponseBuilder::new()
                .description(when)
                .content("application/json", body)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// Any read where reads need a token: no valid one (401).
pub struct Unauthorized;

impl IntoResponses for Unauthorized {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[UNAUTHORIZED])
    }
}

/// A read without parameters: 401, or 503 when the database is down.
pub struct ReadErrors;

impl IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[UNAUTHORIZED, UNAVAILABLE])
    }
}

/// A read with query parameters: [`ReadErrors`], or 400 for a bad one.
pub struct QueryErrors;

impl IntoResponses for QueryErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[BAD_PARAMETER, UNAUTHORIZED, UNAVAILABLE])
    }
}

/// A batch ingest (records, sessions, heartbeats): everything that can be
/// wrong with the body or the token; 422 when an item is invalid, in which
/// case the whole batch is refused.
pub struct IngestErrors;

impl IntoResponses for IngestErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[
            BAD_BATCH,
            UNAUTHORIZED,
            NOT_INGESTER,
            TOO_LARGE,
            NOT_JSON,
            INVALID_ITEMS,
            UNAVAILABLE_OR_BUSY,
        ])
    }
}

/// An admin trigger: a bad parameter, a token without the admin role, the
/// database down. Each trigger adds its own further answers.
pub struct AdminErrors;

impl IntoResponses for AdminErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[BAD_PARAMETER, UNAUTHORIZED, NOT_ADMIN, UNAVAILABLE])
    }
}
