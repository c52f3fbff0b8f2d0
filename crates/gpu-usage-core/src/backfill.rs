//! Tracked backfills (`gpu_usage_backfill_jobs`): rebuild a range at one
//! level or at every level, one day per chunk, as a background job whose
//! progress is visible and which resumes where it stopped.
//!
//! - [`create`] queues a job (or returns the active one that already covers
//!   the request).
//! - [`run_next`] claims the oldest pending or interrupted job under the
//!   `backfill` job lock (so backfills run one at a time across replicas)
//!   and executes it. Per chunk it recomputes minute, then hourly, then
//!   daily rows, each under that level's rollup lock, and then records the
//!   chunk as done: a crash costs at most the chunk in progress.
//! - A chunk that fails marks the job `failed` with the error. A database
//!   outage instead leaves it `running`, to be resumed by the next poll.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::StringLen;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;

use crate::EngineConfig;
use crate::entities::{backfill_job, record};
use crate::error::{DomainError, Result};
use crate::jobs::{Acquire, Attempt, JobEnv, JobName, JobReport, Record};
use crate::rollup;
use crate::settings::RetentionSettings;
use crate::types::{Granularity, Levels, TimeRange};

/// One chunk of work: a UTC day (midnight-aligned, except at the ends).
pub const CHUNK_LEN: TimeDelta = TimeDelta::days(1);

/// How long a chunk waits for a level's rollup lock (held by a periodic
/// job, normally for seconds) before leaving the job for the next poll.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

stored_enum! {
    pub enum BackfillStatus {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

impl BackfillStatus {
    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }

    /// Work still to do: queued, or interrupted and to be resumed.
    pub const ACTIVE: [BackfillStatus; 2] = [BackfillStatus::Pending, BackfillStatus::Running];
}

/// A tracked backfill job, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BackfillJob {
    pub id: i64,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// One level, or every level.
    pub granularity: Levels,
    pub status: BackfillStatus,
    /// Where work resumes: everything before it is done.
    pub next_chunk_start: DateTime<Utc>,
    pub chunks_total: i32,
    pub chunks_done: i32,
    /// chunks_done / chunks_total, 0 to 1.
    pub progress: f64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl BackfillJob {
    pub fn range(&self) -> Result<TimeRange> {
        TimeRange::new(self.start_time, self.end_time)
    }

    /// The levels rebuilt, finest first.
    pub fn levels(&self) -> &'static [Granularity] {
        self.granularity.levels()
    }

    pub fn is_finished(&self) -> bool {
        !self.status.is_active()
    }

    fn from_model(m: backfill_job::Model) -> Self {
        let progress = progress(m.chunks_done, m.chunks_total);
        Self {
            id: m.id,
            start_time: m.range_start,
            end_time: m.range_end,
            granularity: m.granularity,
            status: m.status,
            next_chunk_start: m.next_chunk_start,
            chunks_total: m.chunks_total,
            chunks_done: m.chunks_done,
            progress,
            error: m.error,
            created_at: m.created_at,
            updated_at: m.updated_at,
            started_at: m.started_at,
            finished_at: m.finished_at,
        }
    }
}

/// Queues a rebuild of `range` (widened to whole minutes) at `levels`.
///
/// If an active job of the same granularity already covers the range and
/// has not yet passed its start, that job is returned instead: repeated
/// requests do not pile up. A job that only partly overlaps is not reused
/// (it would leave part of the request undone); the new job runs after it,
/// since backfills run one at a time.
pub async fn create(
    db: &impl ConnectionTrait,
    range: TimeRange,
    levels: Levels,
    now: DateTime<Utc>,
) -> Result<BackfillJob> {
    let range = range.align(Granularity::Minute);
    let covering = backfill_job::Entity::find()
        .filter(backfill_job::Column::Status.is_in(BackfillStatus::ACTIVE))
        .filter(backfill_job::Column::Granularity.eq(levels))
        .filter(backfill_job::Column::NextChunkStart.lte(range.start()))
        .filter(backfill_job::Column::RangeEnd.gte(range.end()))
        .order_by_asc(backfill_job::Column::Id)
        .one(db)
        .await?;
    if let Some(existing) = covering {
        return Ok(BackfillJob::from_model(existing));
    }
    let chunks = range.chunks(CHUNK_LEN).len();
    let chunks_total = i32::try_from(chunks).map_err(|_| {
        DomainError::invalid(
            "end_time",
            format!("the range spans {chunks} days; too long"),
        )
    })?;
    let inserted = backfill_job::Entity::insert(backfill_job::ActiveModel {
        id: NotSet,
        range_start: Set(range.start()),
        range_end: Set(range.end()),
        granularity: Set(levels),
        status: Set(BackfillStatus::Pending),
        next_chunk_start: Set(range.start()),
        chunks_total: Set(chunks_total),
        chunks_done: Set(0),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
    })
    .exec(db)
    .await?;
    get(db, inserted.last_insert_id).await
}

pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<BackfillJob> {
    let model = backfill_job::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("backfill job {id}")))?;
    Ok(BackfillJob::from_model(model))
}

/// The most recent jobs, newest first.
pub async fn list(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<BackfillJob>> {
    Ok(backfill_job::Entity::find()
        .order_by_desc(backfill_job::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(BackfillJob::from_model)
        .collect())
}

/// "Neither start nor end": from the start of the earliest record still
/// inside retention to now (or to the latest completion, if later).
/// `None` when there are no such records.
pub async fn retained_range(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    retention: &RetentionSettings,
) -> Result<Option<TimeRange>> {
    let mut q = record::Entity::find()
        .select_only()
        .column_as(Expr::col(record::Column::StartedAt).min(), "first_start")
        .column_as(Expr::col(record::Column::CompletedAt).max(), "last_end");
    if retention.records_days > 0 {
        q = q.filter(record::Column::CompletedAt.gte(now - retention.records()));
    }
    type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let bounds: Option<Bounds> = q.into_tuple().one(db).await?;
    let Some((Some(first), last)) = bounds else {
        return Ok(None);
    };
    let end = Granularity::Minute.ceil(Ord::max(last.unwrap_or(now), now));
    let end = if end > first {
        end
    } else {
        first + Granularity::Minute.bucket_len()
    };
    Ok(TimeRange::new(first, end).ok())
}

/// Queues a backfill of `levels` over `range`, or over everything still
/// retained when no range is given.
pub async fn request(
    db: &impl ConnectionTrait,
    range: Option<TimeRange>,
    levels: Levels,
    now: DateTime<Utc>,
    retention: &RetentionSettings,
) -> Result<BackfillJob> {
    let range = match range {
        Some(r) => r,
        None => retained_range(db, now, retention)
            .await?
            .ok_or(DomainError::NothingToBackfill)?,
    };
    create(db, range, levels, now).await
}

/// Hooks for [`run_next`] and [`run_job`].
pub struct RunOptions<'a> {
    /// Checked between chunks: `true` stops, leaving the job `running` to be
    /// resumed later (graceful shutdown).
    pub stop: &'a (dyn Fn() -> bool + Send + Sync),
    /// Called after every chunk and at the end (progress bars, metrics).
    pub on_progress: &'a (dyn Fn(&BackfillJob) + Send + Sync),
    /// How long a chunk waits for a rollup lock before yielding.
    pub lock_wait: Duration,
}

fn never() -> bool {
    false
}

fn ignore(_: &BackfillJob) {}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        Self {
            stop: &never,
            on_progress: &ignore,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }
}

/// Claims the oldest pending or interrupted job and executes it, under the
/// `backfill` job lock (one runner at a time across replicas). `None`:
/// nothing to do, or another runner is executing backfills.
pub async fn run_next(
    env: &JobEnv,
    cfg: &EngineConfig,
    opts: &RunOptions<'_>,
) -> Result<Option<BackfillJob>> {
    // A cheap look first: the poller asks every few seconds, and an idle
    // poll must not leave a job record.
    if next_active(&env.db).await?.is_none() {
        return Ok(None);
    }
    run_claimed(env, None, cfg, opts).await
}

/// Executes one given job (the CLI's foreground backfill). `None` when
/// another runner holds the backfill lock; the job stays queued for it.
pub async fn run_job(
    env: &JobEnv,
    id: i64,
    cfg: &EngineConfig,
    opts: &RunOptions<'_>,
) -> Result<Option<BackfillJob>> {
    run_claimed(env, Some(id), cfg, opts).await
}

async fn run_claimed(
    env: &JobEnv,
    id: Option<i64>,
    cfg: &EngineConfig,
    opts: &RunOptions<'_>,
) -> Result<Option<BackfillJob>> {
    let attempt = env
        .run(JobName::Backfill, Acquire::Try, async |_| {
            let job = match id {
                Some(id) => Some(get(&env.db, id).await?).filter(|j| j.status.is_active()),
                None => next_active(&env.db).await?,
            };
            let Some(job) = job else {
                return Ok((None, JobReport::nothing()));
            };
            let job = execute(env, job, cfg, opts).await?;
            let report = JobReport {
                rows_written: 0,
                detail: format!(
                    "backfill {}: {:?} after {}/{} day(s)",
                    job.id, job.status, job.chunks_done, job.chunks_total
                ),
                nothing_to_do: false,
            };
            Ok((Some(job), report))
        })
        .await;
    match attempt {
        Attempt::Done(job, _) => Ok(job),
        Attempt::Skipped => Ok(None),
        Attempt::Failed(e) => Err(e),
    }
}

/// Oldest job still to do. Under the backfill lock, a `running` one was
/// interrupted (its runner died or stopped) and is resumed.
async fn next_active(db: &impl ConnectionTrait) -> Result<Option<BackfillJob>> {
    Ok(backfill_job::Entity::find()
        .filter(backfill_job::Column::Status.is_in(BackfillStatus::ACTIVE))
        .order_by_asc(backfill_job::Column::Id)
        .one(db)
        .await?
        .map(BackfillJob::from_model))
}

async fn execute(
    env: &JobEnv,
    mut job: BackfillJob,
    cfg: &EngineConfig,
    opts: &RunOptions<'_>,
) -> Result<BackfillJob> {
    let db = &env.db;
    mark_running(db, &mut job, env.now()).await?;
    tracing::info!(
        backfill_id = job.id,
        start = %job.start_time,
        end = %job.end_time,
        granularity = %job.granularity,
        next_chunk_start = %job.next_chunk_start,
        chunks_done = job.chunks_done,
        chunks_total = job.chunks_total,
        "backfill running"
    );
    (opts.on_progress)(&job);

    let remaining = TimeRange::new(job.next_chunk_start, job.end_time)
        .map(|r| r.chunks(CHUNK_LEN))
        .unwrap_or_default();
    for chunk in remaining {
        if (opts.stop)() {
            tracing::info!(backfill_id = job.id, next_chunk_start = %job.next_chunk_start, "backfill paused");
            return Ok(job);
        }
        match rebuild_levels(env, job.levels(), chunk, cfg, opts.lock_wait).await {
            Rebuilt::Done(_) => {}
            Rebuilt::Busy(level) => {
                tracing::info!(
                    backfill_id = job.id,
                    level = %level,
                    "rollup lock still busy; the backfill resumes at the next poll"
                );
                return Ok(job);
            }
            // An outage: the job stays running and resumes once the
            // database is back.
            Rebuilt::Failed(_, e @ DomainError::Unavailable(_)) => return Err(e),
            // The chunk's rollup lock was lost (its session cut) or writers
            // kept colliding: nothing is wrong with the job, the chunk is
            // simply redone, as after a busy lock.
            Rebuilt::Failed(
                level,
                e @ (DomainError::LockLost { .. } | DomainError::Contention),
            ) => {
                tracing::warn!(
                    backfill_id = job.id,
                    level = %level,
                    error = %e,
                    "backfill chunk interrupted; it is redone at the next poll"
                );
                return Ok(job);
            }
            Rebuilt::Failed(level, e) => {
                let message = format!(
                    "chunk {} .. {} at level {level}: {e}",
                    chunk.start(),
                    chunk.end()
                );
                finish(db, &mut job, Some(message), env.now()).await?;
                return Ok(job);
            }
        }
        chunk_done(db, &mut job, chunk.end(), env.now()).await?;
        (opts.on_progress)(&job);
    }
    finish(db, &mut job, None, env.now()).await?;
    (opts.on_progress)(&job);
    Ok(job)
}

/// Marks the job `running` (keeping the first start time when resumed).
async fn mark_running(
    db: &impl ConnectionTrait,
    job: &mut BackfillJob,
    t: DateTime<Utc>,
) -> Result<()> {
    let started_at = job.started_at.unwrap_or(t);
    update(
        db,
        job.id,
        Condition::all().add(backfill_job::Column::Status.is_in(BackfillStatus::ACTIVE)),
        [
            (
                backfill_job::Column::Status,
                Expr::value(BackfillStatus::Running),
            ),
            (
                backfill_job::Column::StartedAt,
                Expr::value(Some(started_at)),
            ),
            (backfill_job::Column::UpdatedAt, Expr::value(t)),
        ],
    )
    .await?;
    job.status = BackfillStatus::Running;
    job.started_at = Some(started_at);
    job.updated_at = t;
    Ok(())
}

/// What [`rebuild_levels`] did.
#[derive(Debug)]
pub enum Rebuilt {
    /// Every level done; rows written.
    Done(u64),
    /// A level's rollup lock stayed busy; the levels before it are done.
    Busy(Granularity),
    Failed(Granularity, DomainError),
}

/// `levels` over `range`, finest first, each under its rollup lock, as a
/// backfill rebuilds a chunk (not recorded as a run: the backfill job, or
/// whoever asked, is the record).
///
/// Holding a level's lock, it also folds in what is pending for the level,
/// as the periodic job would: while a long backfill holds the locks most of
/// the time, the periodic jobs' attempts are mostly skipped, and live data
/// must still reach every level within its freshness bound.
pub async fn rebuild_levels(
    env: &JobEnv,
    levels: &[Granularity],
    range: TimeRange,
    cfg: &EngineConfig,
    lock_wait: Duration,
) -> Rebuilt {
    let mut rows = 0;
    for &level in levels {
        let attempt = env
            .run_as(
                JobName::rollup(level),
                Acquire::Wait(lock_wait),
                Record::No,
                async |lock| {
                    let r = rollup::recompute_guarded(&env.db, lock, level, range, env.now(), cfg)
                        .await?;
                    let live =
                        rollup::process_pending_guarded(&env.db, lock, level, env.now(), cfg)
                            .await?;
                    let written = r.rows_written + live.rows_written;
                    Ok((written, JobReport::rows(written)))
                },
            )
            .await;
        match attempt {
            Attempt::Done(written, _) => rows += written,
            Attempt::Skipped => return Rebuilt::Busy(level),
            Attempt::Failed(e) => return Rebuilt::Failed(level, e),
        }
    }
    Rebuilt::Done(rows)
}

async fn chunk_done(
    db: &impl ConnectionTrait,
    job: &mut BackfillJob,
    next: DateTime<Utc>,
    t: DateTime<Utc>,
) -> Result<()> {
    let done = job.chunks_done.saturating_add(1);
    update(
        db,
        job.id,
        Condition::all(),
        [
            (backfill_job::Column::NextChunkStart, Expr::value(next)),
            (backfill_job::Column::ChunksDone, Expr::value(done)),
            (backfill_job::Column::UpdatedAt, Expr::value(t)),
        ],
    )
    .await?;
    job.next_chunk_start = next;
    job.chunks_done = done;
    job.updated_at = t;
    job.progress = progress(done, job.chunks_total);
    Ok(())
}

/// Ends the job: succeeded (every chunk done), or failed with `error`.
async fn finish(
    db: &impl ConnectionTrait,
    job: &mut BackfillJob,
    error: Option<String>,
    t: DateTime<Utc>,
) -> Result<()> {
    use backfill_job::Column as C;
    // The columns written: the status, then the resume point on success or
    // the error on failure.
    let (status, last) = match &error {
        None => (
            BackfillStatus::Succeeded,
            (C::NextChunkStart, Expr::value(job.end_time)),
        ),
        Some(message) => {
            tracing::warn!(backfill_id = job.id, error = %message, "backfill failed");
            let error = (C::Error, Expr::value(Some(message.clone())));
            (BackfillStatus::Failed, error)
        }
    };
    let values = [
        (C::Status, Expr::value(status)),
        last,
        (C::FinishedAt, Expr::value(Some(t))),
        (C::UpdatedAt, Expr::value(t)),
    ];
    update(db, job.id, Condition::all(), values).await?;
    job.status = status;
    job.finished_at = Some(t);
    job.updated_at = t;
    match error {
        None => {
            job.next_chunk_start = job.end_time;
            job.progress = 1.0;
            let chunks = job.chunks_done;
            tracing::info!(backfill_id = job.id, chunks, "backfill succeeded");
        }
        Some(message) => job.error = Some(message),
    }
    Ok(())
}

fn progress(done: i32, total: i32) -> f64 {
    if total > 0 {
        (f64::from(done) / f64::from(total)).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

async fn update<const N: usize>(
    db: &impl ConnectionTrait,
    id: i64,
    extra: Condition,
    values: [(backfill_job::Column, Expr); N],
) -> Result<()> {
    let mut q = backfill_job::Entity::update_many();
    for (col, value) in values {
        q = q.col_expr(col, value);
    }
    q.filter(backfill_job::Column::Id.eq(id))
        .filter(extra)
        .exec(db)
        .await?;
    Ok(())
}
