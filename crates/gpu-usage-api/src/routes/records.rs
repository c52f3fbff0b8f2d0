//! `GET /records` (raw usage records) and `POST /records` (ingest).

use actix_web::{HttpResponse, get, post, web};
use gpu_usage_core::ingest;
use gpu_usage_core::query::{self, UsageRecord};
use serde_json::Value;

use crate::auth::{Ingester, Reader};
use crate::error::ApiError;
use crate::params::RecordsParams;
use crate::routes::responses::{IngestErrors, QueryErrors};
use crate::state::AppState;
use crate::wire::{IngestBody, ListResponse};
use gpu_usage_core::ingest::IngestReport;

/// Raw usage records by `completed_at`, optionally filtered by endpoint,
/// spec and status; paginated like the statistics.
#[utoipa::path(
    tag = "records",
    params(RecordsParams),
    responses(
        (status = 200, description = "A page of records", body = ListResponse<UsageRecord>),
        QueryErrors,
    ),
)]
#[get("/records")]
pub async fn list_records(
    _auth: Reader,
    state: web::Data<AppState>,
    params: web::Query<RecordsParams>,
) -> Result<HttpResponse, ApiError> {
    let (filter, page) = params.into_inner().parse(state.now(), &state.api)?;
    let result = query::records(&state.db, &filter, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(result, filter.range, page.limit)))
}

/// Store finished-task records: one object or an array.
///
/// Idempotent by `task_id`: a replay is counted as a duplicate; different
/// content under a stored task_id is reported as a conflict and the stored
/// record is kept. If any record is invalid the whole batch is rejected
/// (422, every problem listed) and nothing is stored.
#[utoipa::path(
    tag = "records",
    request_body(content = IngestBody, content_type = "application/json"),
    responses(
        (status = 200, description = "What was stored", body = IngestReport),
        IngestErrors,
    ),
    security(("bearer" = []))
)]
#[post("/records")]
pub async fn ingest_records(
    _auth: Ingester,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let records = IngestBody::parse(body.into_inner())?;
    let report = ingest::ingest(&state.db, records, state.now(), &state.engine).await?;
    Ok(HttpResponse::Ok().json(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpu_usage_core::DomainError;
    use serde_json::json;

    #[test]
    fn one_object_or_an_array() {
        assert_eq!(IngestBody::parse(json!({"task_id": "a"})).unwrap().len(), 1);
        assert_eq!(
            IngestBody::parse(json!([{"task_id": "a"}, {"task_id": "b"}]))
                .unwrap()
                .len(),
            2
        );
        assert!(matches!(
            IngestBody::parse(json!(null)),
            Err(DomainError::Invalid { .. })
        ));
        assert!(matches!(
            IngestBody::parse(json!("x")),
            Err(DomainError::Invalid { .. })
        ));
    }

    #[test]
    fn type_errors_name_record_and_field() {
        let items = IngestBody::parse(json!([
            {"task_id": "ok"},
            {"task_id": "t1", "gpu_count": "two", "endpoint": 5},
            7
        ]))
        .unwrap();
        let got: Vec<(usize, &str)> = items
            .iter()
            .enumerate()
            .skip(1)
            .flat_map(|(i, r)| {
                let e = r.as_ref().unwrap_err();
                e.problems.iter().map(move |(f, _)| (i, f.as_str()))
            })
            .collect();
        assert_eq!(got, vec![(1, "endpoint"), (1, "gpu_count"), (2, "record")]);
        assert_eq!(items[1].as_ref().unwrap_err().key.as_deref(), Some("t1"));
    }
}
