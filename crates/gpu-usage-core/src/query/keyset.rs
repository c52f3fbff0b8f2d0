//! Pages ascending by (time, id): raw records by `completed_at`, worker
//! sessions by `started_at`. The listing differs only in its filter, its
//! columns and its cursor's tag; the paging is this one function.

use chrono::{DateTime, Utc};
use sea_orm::{
    Condition, ConnectionTrait, EntityTrait, PaginatorTrait, PartialModelTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::cursor::TimeIdCursor;
use super::{PageRequest, take_page};
use crate::error::Result;

/// A page of rows with the total matching the filter and the cursor of
/// the next page (`None` on the last).
#[derive(Debug, Clone, PartialEq)]
pub struct RowsPage<T> {
    pub rows: Vec<T>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

/// What a listing pages by: its time and id columns and its cursor's tag.
pub(super) struct Keyset<C> {
    pub time: C,
    pub id: C,
    pub tag: &'static str,
}

/// Rows of `E` matching `cond` after the request's cursor, ascending by
/// (time, id), and the total matching `cond`; `key` is a row's (time, id).
/// The page and the count run at once on separate pooled connections.
pub(super) async fn page<E, M>(
    db: &impl ConnectionTrait,
    cond: Condition,
    keyset: Keyset<E::Column>,
    page: &PageRequest,
    key: impl Fn(&M) -> (DateTime<Utc>, i64),
) -> Result<RowsPage<M>>
where
    E: EntityTrait,
    E::Model: Sync,
    M: PartialModelTrait + Send + Sync,
{
    let after = page
        .cursor
        .as_deref()
        .map(|c| TimeIdCursor::decode(c, keyset.tag))
        .transpose()?;
    let mut select = E::find().filter(cond.clone());
    if let Some(c) = after {
        select = select.filter(c.after(keyset.time, keyset.id));
    }
    let rows = select
        .order_by_asc(keyset.time)
        .order_by_asc(keyset.id)
        // One extra row tells whether another page follows.
        .limit(page.limit().saturating_add(1))
        .into_partial_model::<M>()
        .all(db);
    let total = E::find().filter(cond).count(db);
    let (rows, total) = tokio::join!(rows, total);
    let (rows, more) = take_page(rows?, page.limit());
    let next_cursor = rows.last().filter(|_| more).map(|r| {
        let (at, id) = key(r);
        TimeIdCursor { at, id }.encode(keyset.tag)
    });
    Ok(RowsPage {
        rows,
        total: total?,
        next_cursor,
    })
}
