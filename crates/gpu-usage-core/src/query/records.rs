//! Raw usage records, filtered and paginated like the statistics.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DerivePartialModel};
use serde::Serialize;
use utoipa::ToSchema;

use super::PageRequest;
use super::cursor;
use super::keyset::{self, Keyset, RowsPage};
use crate::entities::record;
use crate::error::Result;
use crate::level::values::Hours;
use crate::record::Record;
use crate::types::{TaskStatus, TimeRange};

/// Which raw records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFilter {
    /// Half-open on `completed_at`.
    pub range: TimeRange,
    pub endpoint: Option<String>,
    pub spec_name: Option<String>,
    pub status: Option<TaskStatus>,
}

/// One stored usage record: the task as reported, and what the service
/// derived and recorded of it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, DerivePartialModel)]
#[sea_orm(entity = "record::Entity")]
pub struct UsageRecord {
    pub id: i64,
    #[serde(flatten)]
    #[sea_orm(nested)]
    pub task: Record,
    /// Whole seconds, rounded down.
    pub duration_seconds: i32,
    #[schema(value_type = f64)]
    pub gpu_hours: Hours,
    pub created_at: DateTime<Utc>,
}

/// A page of raw records.
pub type RecordsPage = RowsPage<UsageRecord>;

/// A page of raw records ascending by (completed_at, id), with the total.
pub async fn records(
    db: &impl ConnectionTrait,
    filter: &RecordFilter,
    page: &PageRequest,
) -> Result<RecordsPage> {
    use record::Column as C;
    let mut cond = Condition::all()
        .add(C::CompletedAt.gte(filter.range.start()))
        .add(C::CompletedAt.lt(filter.range.end()));
    if let Some(e) = &filter.endpoint {
        cond = cond.add(C::Endpoint.eq(e.clone()));
    }
    if let Some(s) = &filter.spec_name {
        cond = cond.add(C::SpecName.eq(s.clone()));
    }
    if let Some(s) = filter.status {
        cond = cond.add(C::Status.eq(s));
    }
    let keyset = Keyset {
        time: C::CompletedAt,
        id: C::Id,
        tag: cursor::RECORDS,
    };
    keyset::page::<record::Entity, _>(db, cond, keyset, page, |r: &UsageRecord| {
        (r.task.completed_at, r.id)
    })
    .await
}
