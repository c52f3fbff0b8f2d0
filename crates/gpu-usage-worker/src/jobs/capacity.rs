//! The capacity job: every open worker session counted up to where its
//! heartbeats vouch for now (so the current buckets' available GPU time
//! grows live), and sessions silent for too long ended. Runs before the
//! minute rollup in each tick, which then folds the queued minutes in.

use gpu_usage_core::DomainError;
use gpu_usage_core::capacity;
use gpu_usage_core::jobs::JobReport;

use super::JobContext;

pub async fn run(ctx: &JobContext) -> Result<JobReport, DomainError> {
    let report = capacity::advance(ctx.db(), ctx.now(), &ctx.engine).await?;
    Ok(JobReport {
        rows_written: u64::try_from(report.moved).unwrap_or(u64::MAX),
        nothing_to_do: report.moved == 0,
        detail: format!(
            "{} open session(s), {} moved, {} ended for silence",
            report.open, report.moved, report.ended
        ),
    })
}
