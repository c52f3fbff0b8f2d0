//! Pending ranges: the rollups' work queue (`gpu_usage_rollup_pending`).
//!
//! Ingest inserts the minute ranges its new records touch in the same
//! transaction as the records, so a committed record is always either
//! already folded in or still pending: late data and worker downtime are
//! caught up by the next periodic run, whatever the bucket's age. A level,
//! once it has rewritten a range, queues that range for the next coarser
//! level in the same transaction as its rows. Consumers delete exactly the
//! ids they read, never "everything up to id N", because auto-increment ids
//! can commit out of order.

use chrono::{DateTime, DurationRound, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::entities::rollup_pending;
use crate::error::Result;
use crate::types::{Granularity, TimeRange};

/// Sorts and coalesces overlapping or touching ranges.
pub fn merge(mut ranges: Vec<TimeRange>) -> Vec<TimeRange> {
    ranges.sort_by_key(|r| (r.start(), r.end()));
    let mut out: Vec<TimeRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start() <= last.end() => {
                if r.end() > last.end() {
                    // start < end holds: last.start <= r.start < r.end.
                    if let Ok(m) = TimeRange::new(last.start(), r.end()) {
                        *last = m;
                    }
                }
            }
            _ => out.push(r),
        }
    }
    out
}

/// The pending work of one recompute chunk: the hull of the taken ranges'
/// pieces inside the chunk, and the taken entries touching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkWork {
    pub hull: TimeRange,
    pub ids: Vec<i64>,
}

/// Groups taken entries by the chunk grid of `len` (aligned to the epoch,
/// like [`TimeRange::chunks`]): folding a scattered backlog then reads each
/// chunk's source once, however many small ranges fall into it, so it
/// costs at most a rebuild of those chunks. Newest chunk first: live
/// minutes are folded before an old backlog.
pub fn by_chunk(
    taken: &[(i64, TimeRange)],
    level: Granularity,
    len: chrono::TimeDelta,
) -> Vec<ChunkWork> {
    let mut chunks: std::collections::BTreeMap<DateTime<Utc>, ChunkWork> = Default::default();
    for (id, range) in taken {
        for piece in range.align(level).chunks(len) {
            let key = piece.start().duration_trunc(len).unwrap_or(piece.start());
            let w = chunks.entry(key).or_insert_with(|| ChunkWork {
                hull: piece,
                ids: Vec::new(),
            });
            if let Ok(h) = TimeRange::new(
                w.hull.start().min(piece.start()),
                w.hull.end().max(piece.end()),
            ) {
                w.hull = h;
            }
            if w.ids.last() != Some(id) {
                w.ids.push(*id);
            }
        }
    }
    chunks.into_values().rev().collect()
}

/// Queues `ranges` (aligned outward to `level`, merged) for `level`.
pub async fn mark(
    db: &impl ConnectionTrait,
    level: Granularity,
    ranges: impl IntoIterator<Item = TimeRange>,
    now: DateTime<Utc>,
) -> Result<usize, DbErr> {
    let merged = merge(ranges.into_iter().map(|r| r.align(level)).collect());
    if merged.is_empty() {
        return Ok(0);
    }
    let n = merged.len();
    for chunk in merged.chunks(500) {
        rollup_pending::Entity::insert_many(chunk.iter().map(|r| rollup_pending::ActiveModel {
            id: NotSet,
            level: Set(level),
            range_start: Set(r.start()),
            range_end: Set(r.end()),
            created_at: Set(now),
        }))
        .exec_without_returning(db)
        .await?;
    }
    Ok(n)
}

/// Up to `limit` pending ranges of `level`, oldest first.
pub async fn take(
    db: &impl ConnectionTrait,
    level: Granularity,
    limit: u64,
) -> Result<Vec<(i64, TimeRange)>> {
    let rows = rollup_pending::Entity::find()
        .filter(rollup_pending::Column::Level.eq(level))
        .order_by_asc(rollup_pending::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            TimeRange::new(r.range_start, r.range_end)
                .ok()
                .map(|t| (r.id, t))
        })
        .collect())
}

/// Ids of pending entries of `level` lying wholly inside `range`.
pub async fn ids_within(
    db: &impl ConnectionTrait,
    level: Granularity,
    range: TimeRange,
) -> Result<Vec<i64>> {
    Ok(rollup_pending::Entity::find()
        .select_only()
        .column(rollup_pending::Column::Id)
        .filter(rollup_pending::Column::Level.eq(level))
        .filter(rollup_pending::Column::RangeStart.gte(range.start()))
        .filter(rollup_pending::Column::RangeEnd.lte(range.end()))
        .into_tuple::<i64>()
        .all(db)
        .await?)
}

/// Deletes exactly these ids.
pub async fn consume(db: &impl ConnectionTrait, ids: &[i64]) -> Result<u64> {
    let mut n = 0;
    for chunk in ids.chunks(1000) {
        n += rollup_pending::Entity::delete_many()
            .filter(rollup_pending::Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?
            .rows_affected;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::parse_utc;

    fn r(a: &str, b: &str) -> TimeRange {
        TimeRange::new(parse_utc("a", a).unwrap(), parse_utc("b", b).unwrap()).unwrap()
    }

    #[test]
    fn groups_by_chunk_newest_first() {
        let taken = vec![
            (1, r("2026-01-01T01:00:10Z", "2026-01-01T01:00:20Z")),
            (2, r("2026-01-01T03:00:00Z", "2026-01-01T03:01:00Z")),
            // Crosses the 06:00 chunk boundary.
            (3, r("2026-01-01T05:59:00Z", "2026-01-01T06:02:00Z")),
            (4, r("2026-01-02T10:00:00Z", "2026-01-02T10:01:00Z")),
        ];
        let w = by_chunk(&taken, Granularity::Minute, chrono::TimeDelta::hours(6));
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].hull, r("2026-01-02T10:00:00Z", "2026-01-02T10:01:00Z"));
        assert_eq!(w[1].hull, r("2026-01-01T06:00:00Z", "2026-01-01T06:02:00Z"));
        assert_eq!(w[1].ids, vec![3]);
        assert_eq!(w[2].hull, r("2026-01-01T01:00:00Z", "2026-01-01T06:00:00Z"));
        assert_eq!(w[2].ids, vec![1, 2, 3]);
    }

    #[test]
    fn merges_overlapping_and_touching() {
        let m = merge(vec![
            r("2026-01-01T10:05:00Z", "2026-01-01T10:06:00Z"),
            r("2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z"),
            r("2026-01-01T12:00:00Z", "2026-01-01T12:01:00Z"),
            r("2026-01-01T10:01:00Z", "2026-01-01T10:02:00Z"),
        ]);
        assert_eq!(
            m,
            vec![
                r("2026-01-01T10:00:00Z", "2026-01-01T10:06:00Z"),
                r("2026-01-01T12:00:00Z", "2026-01-01T12:01:00Z"),
            ]
        );
    }
}
