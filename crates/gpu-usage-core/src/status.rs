//! How far each rollup level is complete, from the pending queue.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::SimpleExpr;
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{ConnectionTrait, EntityTrait, FromQueryResult, QuerySelect};
use serde::Serialize;

use crate::entities::rollup_pending;
use crate::error::Result;
use crate::rollup::pending;
use crate::types::Granularity;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LevelStatus {
    pub level: Granularity,
    /// Pending entries queued for this level.
    pub pending_ranges: u64,
    /// Distinct buckets of this level those entries cover (overlaps merged;
    /// counted over the oldest 10,000 entries).
    pub pending_buckets: u64,
    /// Start of the oldest range waiting at this level.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Every bucket of this level before this instant reflects every stored
    /// record: nothing is pending for it here or at a finer level.
    pub complete_through: DateTime<Utc>,
    /// `now - complete_through`, in seconds.
    pub lag_seconds: i64,
}

#[derive(Debug, FromQueryResult)]
struct PendingRow {
    level: Granularity,
    n: i64,
    oldest: Option<DateTime<Utc>>,
}

pub async fn rollup_status(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<Vec<LevelStatus>> {
    let rows = rollup_pending::Entity::find()
        .select_only()
        .column(rollup_pending::Column::Level)
        .column_as(
            SimpleExpr::from(Func::count(Expr::col(rollup_pending::Column::Id))),
            "n",
        )
        .column_as(
            SimpleExpr::from(Func::min(Expr::col(rollup_pending::Column::RangeStart))),
            "oldest",
        )
        .group_by(rollup_pending::Column::Level)
        .into_model::<PendingRow>()
        .all(db)
        .await?;
    let find = |g: Granularity| rows.iter().find(|r| r.level == g);
    let mut out = Vec::new();
    let mut oldest_so_far: Option<DateTime<Utc>> = None;
    for level in Granularity::ALL {
        let row = find(level);
        let oldest = row.and_then(|r| r.oldest);
        oldest_so_far = match (oldest_so_far, oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let complete_through = level.floor(oldest_so_far.unwrap_or(now).min(now));
        let pending_ranges = row.map(|r| u64::try_from(r.n).unwrap_or(0)).unwrap_or(0);
        let pending_buckets = if pending_ranges == 0 {
            0
        } else {
            let taken = pending::take(db, level, 10_000).await?;
            pending::merge(taken.into_iter().map(|(_, r)| r.align(level)).collect())
                .iter()
                .map(|r| {
                    let n = r.duration().num_seconds() / level.bucket_len().num_seconds();
                    u64::try_from(n).unwrap_or(0)
                })
                .sum()
        };
        out.push(LevelStatus {
            level,
            pending_ranges,
            pending_buckets,
            oldest_pending: oldest,
            complete_through,
            lag_seconds: (now - complete_through).num_seconds().max(0),
        });
    }
    Ok(out)
}
