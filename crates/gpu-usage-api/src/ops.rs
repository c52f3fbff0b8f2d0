//! Operations that take more than one domain call: recomputing several
//! levels under the worker's locks, and resolving a backfill's range.

use actix_web::http::StatusCode;
use gpu_usage_core::job_runs::{self, RunOutcome};
use gpu_usage_core::rollup::{self, RollupReport};
use gpu_usage_core::types::{Granularity, Levels, TimeRange};
use gpu_usage_core::{DomainError, backfill, locks};
use serde_json::json;

use crate::dto::LevelReportDto;
use crate::error::ApiError;
use crate::state::AppState;

pub enum AggregateOutcome {
    /// Every level ran, in order.
    Done(Vec<RollupReport>),
    /// The range is too long for one request: a backfill job will do it.
    Queued(backfill::BackfillJob),
}

/// Recomputes `levels` over `range` inside the request, or queues a
/// backfill job for long ranges.
///
/// Every lock is taken before anything runs, so a busy level means nothing
/// was done (409) rather than a half-done run. The levels run finest first
/// because each is built from the one below.
pub async fn aggregate(
    state: &AppState,
    levels: Levels,
    range: TimeRange,
) -> Result<AggregateOutcome, ApiError> {
    let now = state.now();
    if range.duration() > state.inline_aggregate_max {
        let job = backfill::create(&state.db, range, levels, now).await?;
        return Ok(AggregateOutcome::Queued(job));
    }

    let mut held = Vec::with_capacity(levels.levels().len());
    for level in levels.levels() {
        // A periodic rollup holds its lock briefly: wait a little before
        // calling the level busy.
        let taken = locks::lock_with_wait(
            &state.db,
            gpu_usage_core::jobs::JobName::rollup(*level),
            state.lock_wait,
        )
        .await;
        match taken {
            Ok(Some(lock)) => held.push(lock),
            Ok(None) => {
                release(held).await;
                let job = gpu_usage_core::jobs::JobName::rollup(*level)
                    .as_str()
                    .to_owned();
                return Err(DomainError::Busy { job }.into());
            }
            Err(e) => {
                release(held).await;
                return Err(e.into());
            }
        }
    }

    let mut done = Vec::with_capacity(levels.levels().len());
    let mut failure = None;
    for (level, lock) in levels.levels().iter().zip(&held) {
        match run_level(state, *level, lock, range).await {
            Ok(report) => done.push(report),
            Err(e) => {
                tracing::error!(%level, error = %e, "aggregation failed");
                failure = Some((*level, e));
                break;
            }
        }
    }
    release(held).await;

    let Some((failed, error)) = failure else {
        return Ok(AggregateOutcome::Done(done));
    };
    let not_run: Vec<&str> = levels
        .levels()
        .iter()
        .skip_while(|l| **l != failed)
        .skip(1)
        .map(|l| l.as_str())
        .collect();
    let completed: Vec<LevelReportDto> = done.into_iter().map(Into::into).collect();
    Err(ApiError::from(error).with_details(json!({
        "failed_level": failed.as_str(),
        "completed": completed,
        "not_run": not_run,
    })))
}

/// One level's recomputation, recorded as a run of that level's job so
/// `/status` shows manual runs beside the scheduled ones.
async fn run_level(
    state: &AppState,
    level: Granularity,
    lock: &locks::JobLock,
    range: TimeRange,
) -> Result<RollupReport, DomainError> {
    let run = job_runs::start(&state.db, lock, &state.runner, state.now()).await?;
    let result = rollup::recompute(&state.db, level, range, state.now(), &state.engine).await;
    let (outcome, rows, detail) = match &result {
        Ok(r) => (
            RunOutcome::Succeeded,
            r.rows_written,
            format!(
                "recomputed [{}, {}) on request",
                range
                    .start()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                range
                    .end()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
        ),
        Err(e) => (RunOutcome::Failed, 0, e.to_string()),
    };
    if let Err(e) = job_runs::finish(&state.db, run, state.now(), outcome, rows, Some(detail)).await
    {
        tracing::warn!(%level, error = %e, "recording the end of a manual rollup failed");
    }
    result
}

/// Queues a backfill of every level over `range`, or over everything still
/// retained when no range is given.
pub async fn start_backfill(
    state: &AppState,
    range: Option<TimeRange>,
) -> Result<backfill::BackfillJob, ApiError> {
    let now = state.now();
    let range = match range {
        Some(r) => r,
        None => backfill::retained_range(&state.db, now, &state.retention)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "nothing_to_backfill",
                    "no start_time/end_time given and no retained data to rebuild",
                )
            })?,
    };
    Ok(backfill::create(&state.db, range, Levels::All, now).await?)
}

async fn release(held: Vec<locks::JobLock>) {
    // Reverse order of taking; the order does not matter for correctness
    // (no lock is ever waited for) but it keeps logs readable.
    for lock in held.into_iter().rev() {
        let name = lock.name().to_owned();
        if let Err(e) = lock.release().await {
            // The lock's connection is closed regardless, which frees it.
            tracing::warn!(lock = %name, error = %e, "releasing a job lock failed");
        }
    }
}
