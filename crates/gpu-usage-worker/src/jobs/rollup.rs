//! The periodic rollup of one level: fold in everything pending for it
//! (new records, late data, downtime), not only "the previous period".

use gpu_usage_core::DomainError;
use gpu_usage_core::jobs::JobReport;
use gpu_usage_core::locks::JobLock;
use gpu_usage_core::rollup;
use gpu_usage_core::types::Granularity;

use super::JobContext;

pub async fn run(
    ctx: &JobContext,
    level: Granularity,
    lock: &JobLock,
) -> Result<JobReport, DomainError> {
    let report =
        rollup::process_pending_guarded(ctx.db(), lock, level, ctx.now(), &ctx.engine).await?;
    let mut detail = format!(
        "{} range(s), {} bucket(s), {} pending entr(ies) consumed",
        report.ranges, report.buckets, report.pending_consumed
    );
    if !report.skipped.is_empty() {
        detail.push_str(&format!(
            "; {} range(s) left as they are (source past retention)",
            report.skipped.len()
        ));
    }
    Ok(JobReport {
        rows_written: report.rows_written,
        nothing_to_do: report.pending_consumed == 0 && report.rows_written == 0,
        detail,
    })
}
