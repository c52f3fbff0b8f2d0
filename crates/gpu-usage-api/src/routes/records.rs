//! `GET /records` (raw usage records) and `POST /records` (ingest).

use actix_web::{HttpResponse, get, post, web};
use gpu_usage_core::error::RecordProblem;
use gpu_usage_core::ingest::{self, RecordInput};
use gpu_usage_core::query;
use gpu_usage_core::{DomainError, Result as DomainResult};
use serde_json::Value;

use crate::auth::{Ingester, Reader};
use crate::error::{ApiError, ErrorBody};
use crate::params::RecordsParams;
use crate::state::AppState;
use crate::wire::{IngestBodyDoc, RecordsResponse};
use gpu_usage_core::ingest::IngestReport;

/// Raw usage records by `completed_at`, optionally filtered by endpoint,
/// spec and status; paginated like the statistics.
#[utoipa::path(
    tag = "records",
    params(RecordsParams),
    responses(
        (status = 200, description = "A page of records", body = RecordsResponse),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
#[get("/records")]
pub async fn list_records(
    _auth: Reader,
    state: web::Data<AppState>,
    params: web::Query<RecordsParams>,
) -> Result<HttpResponse, ApiError> {
    let (filter, page) = params.into_inner().parse(state.now(), &state.api)?;
    let result = query::records(&state.db, &filter, &page).await?;
    Ok(HttpResponse::Ok().json(RecordsResponse {
        data: result.rows,
        total: result.total,
        start_time: filter.range.start(),
        end_time: filter.range.end(),
        next_cursor: result.next_cursor,
        limit: page.limit,
    }))
}

/// Store finished-task records: one object or an array.
///
/// Idempotent by `task_id`: a replay is counted as a duplicate; different
/// content under a stored task_id is reported as a conflict and the stored
/// record is kept. If any record is invalid the whole batch is rejected
/// (422, every problem listed) and nothing is stored.
#[utoipa::path(
    tag = "records",
    request_body(content = IngestBodyDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "What was stored", body = IngestReport),
        (status = 400, description = "Malformed JSON or an empty or oversized batch", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Token lacks the ingest role", body = ErrorBody),
        (status = 413, description = "Body larger than api.max_body_bytes", body = ErrorBody),
        (status = 415, description = "Not sent as application/json", body = ErrorBody),
        (status = 422, description = "Invalid records; nothing stored", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/records")]
pub async fn ingest_records(
    _auth: Ingester,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let inputs = record_inputs(body.into_inner())?;
    let report = ingest::ingest(&state.db, inputs, state.now(), &state.engine).await?;
    Ok(HttpResponse::Ok().json(report))
}

const STRING_FIELDS: [&str; 8] = [
    "task_id",
    "endpoint",
    "worker_id",
    "spec_name",
    "gpu_type",
    "started_at",
    "completed_at",
    "status",
];
const INTEGER_FIELDS: [&str; 2] = ["gpu_count", "gpu_memory_gb"];

/// One object or an array of objects. JSON type errors are reported per
/// record and field, like the domain's own validation, instead of serde's
/// first error without a position.
fn record_inputs(body: Value) -> DomainResult<Vec<RecordInput>> {
    let items = match body {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return Err(DomainError::invalid(
                "body",
                "expected a record object or an array of record objects",
            ));
        }
    };
    let mut problems = Vec::new();
    let mut inputs = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let Value::Object(fields) = &item else {
            problems.push(problem(index, None, "record", "expected a JSON object"));
            continue;
        };
        let task_id = fields
            .get("task_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut ok = true;
        for name in STRING_FIELDS {
            if let Some(v) = fields.get(name).filter(|v| !v.is_null() && !v.is_string()) {
                problems.push(problem(
                    index,
                    task_id.clone(),
                    name,
                    &format!("expected a string, got {v}"),
                ));
                ok = false;
            }
        }
        for name in INTEGER_FIELDS {
            if let Some(v) = fields.get(name).filter(|v| !v.is_null() && !v.is_i64()) {
                problems.push(problem(
                    index,
                    task_id.clone(),
                    name,
                    &format!("expected an integer, got {v}"),
                ));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        match serde_json::from_value::<RecordInput>(item) {
            Ok(input) => inputs.push(input),
            Err(e) => problems.push(problem(index, task_id, "record", &e.to_string())),
        }
    }
    if problems.is_empty() {
        Ok(inputs)
    } else {
        Err(DomainError::InvalidRecords(problems))
    }
}

fn problem(index: usize, task_id: Option<String>, field: &str, message: &str) -> RecordProblem {
    RecordProblem {
        index,
        task_id,
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_object_or_an_array() {
        assert_eq!(record_inputs(json!({"task_id": "a"})).unwrap().len(), 1);
        assert_eq!(
            record_inputs(json!([{"task_id": "a"}, {"task_id": "b"}]))
                .unwrap()
                .len(),
            2
        );
        assert!(matches!(
            record_inputs(json!(null)),
            Err(DomainError::Invalid { .. })
        ));
        assert!(matches!(
            record_inputs(json!("x")),
            Err(DomainError::Invalid { .. })
        ));
    }

    #[test]
    fn type_errors_name_record_and_field() {
        let Err(DomainError::InvalidRecords(p)) = record_inputs(json!([
            {"task_id": "ok"},
            {"task_id": "t1", "gpu_count": "two", "endpoint": 5},
            7
        ])) else {
            panic!("expected InvalidRecords");
        };
        let got: Vec<(usize, &str)> = p.iter().map(|p| (p.index, p.field.as_str())).collect();
        assert_eq!(got, vec![(1, "endpoint"), (1, "gpu_count"), (2, "record")]);
        assert_eq!(p[0].task_id.as_deref(), Some("t1"));
    }
}
