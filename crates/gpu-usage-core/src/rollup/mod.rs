//! The accounting engine: minute rows from records, hourly rows from minute
//! rows, daily rows from hourly rows (docs/ROLLUPS.md).
//!
//! Every entry point is an idempotent recomputation of whole buckets: it
//! reads the source for a range, computes the rows in memory
//! ([`compute`]) and replaces the level's rows for that range in one
//! transaction ([`store`]). Running it again, concurrently, or over a range
//! already done yields identical rows.
//!
//! Sources per bucket ([`horizon`]): the finer level while its rows are
//! retained; the records themselves once the finer level has been cleaned
//! but records remain; otherwise the bucket is left as it is, never
//! overwritten with less.
//!
//! What to recompute comes from [`pending`]: ingest queues the minutes its
//! records touch, each level queues what it rewrote for the next one.

pub mod compute;
pub mod horizon;
pub mod pending;
mod source;
pub mod store;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};

use self::compute::Buckets;
use self::horizon::Horizons;
use self::source::{Reader, compute_chunk};
use crate::EngineConfig;
use crate::error::Result;
use crate::locks::{Guard, Unguarded};
use crate::types::{Granularity, TimeRange};
use crate::with_level;

/// What one rollup call did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RollupReport {
    pub level: Granularity,
    /// Merged ranges recomputed.
    pub ranges: usize,
    /// Buckets (of this level) covered by the recomputed ranges.
    pub buckets: u64,
    /// Statistics rows written.
    pub rows_written: u64,
    /// Queued late-data ranges this run made unnecessary.
    pub pending_consumed: u64,
    /// Parts left as they were because their source data is gone
    /// (retention); never overwritten with less.
    pub skipped: Vec<TimeRange>,
}

impl RollupReport {
    fn new(level: Granularity) -> Self {
        Self {
            level,
            ranges: 0,
            buckets: 0,
            rows_written: 0,
            pending_consumed: 0,
            skipped: Vec::new(),
        }
    }

    fn absorb(&mut self, other: RollupReport) {
        self.ranges += other.ranges;
        self.buckets += other.buckets;
        self.rows_written += other.rows_written;
        self.pending_consumed += other.pending_consumed;
        self.skipped.extend(other.skipped);
    }
}

/// How much is recomputed per transaction: bounds memory (one chunk's
/// source rows) and lock time. Chunks read from records are a quarter day
/// where the level's buckets allow it, so reading the next overlaps
/// computing this one; daily buckets need whole days.
fn chunk_len(level: Granularity, source: Source) -> TimeDelta {
    match (level, source) {
        (Granularity::Minute, _) | (Granularity::Hourly, Source::Records) => TimeDelta::hours(6),
        (Granularity::Hourly | Granularity::Daily, _) => TimeDelta::days(1),
    }
}

/// Pending entries read per round of `process_pending`: enough for a large
/// backlog to be folded chunk by chunk in one pass (a few MB).
const PENDING_BATCH: u64 = 200_000;
/// Past this much work in one call, a run stops between chunks and leaves
/// the rest for the next tick: the level's lock is released regularly
/// (manual triggers, backfills), and newest chunks come first, so live
/// minutes never wait behind an old backlog.
const PENDING_BUDGET: Duration = Duration::from_secs(30);

/// [`recompute_guarded`] for callers that know they are alone (tests,
/// one-off tools): no lock is checked.
pub async fn recompute(
    db: &(impl ConnectionTrait + TransactionTrait),
    level: Granularity,
    range: TimeRange,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<RollupReport> {
    recompute_guarded(db, &Unguarded, level, range, now, cfg).await
}

/// Rebuilds `level` over `range` (widened to whole buckets), queues the
/// range for the next coarser level, and drops this level's pending entries
/// that lay wholly inside it. `guard` (the level's job lock) is verified
/// before every write.
pub async fn recompute_guarded(
    db: &(impl ConnectionTrait + TransactionTrait),
    guard: &impl Guard,
    level: Granularity,
    range: TimeRange,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<RollupReport> {
    let aligned = range.align(level);
    // Pending entries this run makes redundant. Read before the source, so
    // anything queued after the read stays queued.
    let covered = pending::ids_within(db, level, aligned).await?;
    let horizons = horizon::load(db, now, &cfg.retention).await?;
    let mut report = recompute_with(db, guard, level, aligned, &horizons, now).await?;
    report.ranges = 1;
    guard.verify().await?;
    report.pending_consumed = pending::consume(db, &covered).await?;
    Ok(report)
}

/// [`process_pending_guarded`] without a lock check (tests).
pub async fn process_pending(
    db: &(impl ConnectionTrait + TransactionTrait),
    level: Granularity,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<RollupReport> {
    process_pending_guarded(db, &Unguarded, level, now, cfg).await
}

/// The periodic job of one level: folds in what is pending for it, one
/// recompute per chunk of the grid however many ranges fall into it,
/// newest chunk first, within [`PENDING_BUDGET`].
pub async fn process_pending_guarded(
    db: &(impl ConnectionTrait + TransactionTrait),
    guard: &impl Guard,
    level: Granularity,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<RollupReport> {
    let started = std::time::Instant::now();
    let mut report = RollupReport::new(level);
    loop {
        let taken = pending::take(db, level, PENDING_BATCH).await?;
        if taken.is_empty() {
            break;
        }
        let horizons = horizon::load(db, now, &cfg.retention).await?;
        let work = pending::by_chunk(&taken, level, chunk_len(level, Source::Finer));
        // An entry is consumed once every chunk it touches is done.
        let mut open: HashMap<i64, usize> = HashMap::new();
        for w in &work {
            for id in &w.ids {
                *open.entry(*id).or_default() += 1;
            }
        }
        let mut done = Vec::new();
        let mut out_of_time = false;
        for w in work {
            if report.ranges > 0 && started.elapsed() > PENDING_BUDGET {
                out_of_time = true;
                break;
            }
            report.absorb(recompute_with(db, guard, level, w.hull, &horizons, now).await?);
            report.ranges += 1;
            for id in w.ids {
                if let Some(n) = open.get_mut(&id) {
                    *n -= 1;
                    if *n == 0 {
                        done.push(id);
                    }
                }
            }
        }
        guard.verify().await?;
        report.pending_consumed += pending::consume(db, &done).await?;
        if out_of_time || (taken.len() as u64) < PENDING_BATCH {
            break;
        }
    }
    Ok(report)
}

/// Where a part of a range is rebuilt from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Records,
    Finer,
}

/// Splits an aligned range by source: finer level where complete, records
/// where they are retained but the finer level is not, nothing before.
fn plan(
    level: Granularity,
    range: TimeRange,
    h: &Horizons,
) -> (Vec<(TimeRange, Source)>, Vec<TimeRange>) {
    let records_from = level.ceil(h.records);
    let mut parts = Vec::new();
    let covered_from = match level {
        Granularity::Minute => {
            if let Some(r) = range.clip_start(records_from) {
                parts.push((r, Source::Records));
            }
            records_from
        }
        _ => {
            let finer_from = level.ceil(h.finer_of(level));
            if let Some(r) = range.clip_start(finer_from) {
                parts.push((r, Source::Finer));
            }
            let end = range.end().min(finer_from);
            let start = range.start().max(records_from);
            if let Ok(r) = TimeRange::new(start, end) {
                parts.push((r, Source::Records));
            }
            records_from.min(finer_from)
        }
    };
    let skipped = TimeRange::new(range.start(), range.end().min(covered_from))
        .ok()
        .into_iter()
        .collect();
    (parts, skipped)
}

async fn recompute_with(
    db: &(impl ConnectionTrait + TransactionTrait),
    guard: &impl Guard,
    level: Granularity,
    range: TimeRange,
    horizons: &Horizons,
    now: DateTime<Utc>,
) -> Result<RollupReport> {
    let mut report = RollupReport::new(level);
    let (parts, skipped) = plan(level, range, horizons);
    for s in &skipped {
        tracing::warn!(
            level = %level,
            start = %s.start(),
            end = %s.end(),
            "not rebuilding: source rows are past retention; keeping the stored rows"
        );
    }
    report.skipped = skipped;
    // Newest chunk first: a record running across a chunk's start was
    // read with a later chunk and is carried back, so each record is read
    // once however long it ran.
    let chunks: Vec<(TimeRange, Source)> = parts
        .into_iter()
        .rev()
        .flat_map(|(part, source)| {
            let mut chunks = part.chunks(chunk_len(level, source));
            chunks.reverse();
            chunks.into_iter().map(move |c| (c, source))
        })
        .collect();
    // The next chunk's source is read (on another pooled connection)
    // while this chunk is computed (on a blocking thread) and written: a
    // rebuild then costs about the largest of reading, computing and
    // writing, not their sum. A chunk never reads what the one before it
    // writes (a level reads records or the finer level, and writes itself).
    let mut reader = Reader::new(level);
    let mut next = match chunks.first() {
        Some(&(chunk, source)) => Some(reader.read(db, chunk, source).await),
        None => None,
    };
    for (i, &(chunk, _)) in chunks.iter().enumerate() {
        let Some(input) = next.take() else { break };
        let input = input?;
        let work = async {
            let buckets = compute_chunk(level, chunk, input).await?;
            guard.verify().await?;
            write_with_retry(db, level, chunk, &buckets, now).await
        };
        let prefetch = async {
            match chunks.get(i + 1) {
                Some(&(c, s)) => Some(reader.read(db, c, s).await),
                None => None,
            }
        };
        let (prefetched, written) = tokio::join!(prefetch, work);
        report.rows_written += written?;
        report.buckets += bucket_count(level, chunk);
        next = prefetched;
    }
    Ok(report)
}

fn bucket_count(level: Granularity, range: TimeRange) -> u64 {
    let n = range.duration().num_seconds() / level.bucket_len().num_seconds();
    u64::try_from(n).unwrap_or(0)
}

/// Deadlocks between concurrent recomputations of the same range are
/// expected on InnoDB (gap locks of the delete against the other's inserts);
/// the loser's transaction was rolled back and simply runs again.
async fn write_with_retry(
    db: &(impl ConnectionTrait + TransactionTrait),
    level: Granularity,
    chunk: TimeRange,
    buckets: &Buckets,
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut attempt = 0u32;
    loop {
        let written = with_level!(level, L => store::replace::<L>(db, chunk, buckets, now).await);
        match written {
            Ok(n) => return Ok(n),
            Err(e) if attempt < 8 && crate::db::is_retryable_conflict(&e) => {
                attempt += 1;
                tracing::debug!(level = %level, attempt, error = %e, "write conflict; retrying");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            Err(e) => return Err(from_db(e)),
        }
    }
}

fn from_db(e: DbErr) -> crate::DomainError {
    e.into()
}
