//! Worker sessions as stored, filtered and paginated like records: what an
//! operator looks at to see why capacity is what it is.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DerivePartialModel};
use serde::Serialize;
use utoipa::ToSchema;

use super::PageRequest;
use super::cursor;
use super::keyset::{self, Keyset, RowsPage};
use crate::capacity::Offer;
use crate::entities::worker_session;
use crate::error::Result;
use crate::types::TimeRange;

/// Which sessions: those up at some time inside `range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFilter {
    pub range: TimeRange,
    pub worker_id: Option<String>,
    pub endpoint: Option<String>,
    pub spec_name: Option<String>,
    /// `Some(true)`: only sessions still open; `Some(false)`: only ended
    /// ones; `None`: both.
    pub open: Option<bool>,
}

/// One stored worker session.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, DerivePartialModel)]
#[sea_orm(entity = "worker_session::Entity")]
pub struct WorkerSession {
    pub id: i64,
    pub worker_id: String,
    #[serde(flatten)]
    #[sea_orm(nested)]
    pub offer: Offer,
    pub started_at: DateTime<Utc>,
    /// Null while the worker is up.
    pub ended_at: Option<DateTime<Utc>>,
    /// Its latest heartbeat or report.
    pub last_seen: DateTime<Utc>,
    /// How far the statistics count it.
    pub counted_until: DateTime<Utc>,
}

/// A page of worker sessions.
pub type SessionsPage = RowsPage<WorkerSession>;

/// A page of sessions ascending by (started_at, id), with the total.
pub async fn sessions(
    db: &impl ConnectionTrait,
    filter: &SessionFilter,
    page: &PageRequest,
) -> Result<SessionsPage> {
    use worker_session::Column as C;
    let mut cond = Condition::all()
        .add(C::StartedAt.lt(filter.range.end()))
        .add(
            Condition::any()
                .add(C::EndedAt.is_null())
                .add(C::EndedAt.gt(filter.range.start())),
        );
    for (col, value) in [
        (C::WorkerId, &filter.worker_id),
        (C::Endpoint, &filter.endpoint),
        (C::SpecName, &filter.spec_name),
    ] {
        if let Some(v) = value {
            cond = cond.add(col.eq(v.clone()));
        }
    }
    match filter.open {
        Some(true) => cond = cond.add(C::EndedAt.is_null()),
        Some(false) => cond = cond.add(C::EndedAt.is_not_null()),
        None => {}
    }
    let keyset = Keyset {
        time: C::StartedAt,
        id: C::Id,
        tag: cursor::SESSIONS,
    };
    keyset::page::<worker_session::Entity, _>(db, cond, keyset, page, |r: &WorkerSession| {
        (r.started_at, r.id)
    })
    .await
}
