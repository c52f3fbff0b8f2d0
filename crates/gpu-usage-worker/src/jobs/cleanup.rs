//! Retention cleanup (docs/OPERATIONS.md, "Retention"). A table that fails is
//! reported and the run counts as failed (so it is retried with back-off),
//! but the other tables' deletes have been done.

use gpu_usage_core::DomainError;
use gpu_usage_core::jobs::JobReport;
use gpu_usage_core::retention;

use super::JobContext;

pub async fn run(ctx: &JobContext) -> Result<JobReport, DomainError> {
    let report = retention::cleanup(ctx.db(), ctx.now(), &ctx.engine.retention).await;
    let summary = report.summary();
    for t in &report.tables {
        tracing::info!(
            table = t.table,
            cutoff = ?t.cutoff,
            deleted = t.deleted,
            batches = t.batches,
            error = t.error.as_deref().unwrap_or(""),
            "retention"
        );
    }
    if !report.is_ok() {
        return Err(DomainError::Partial(format!(
            "cleanup incomplete: {summary}"
        )));
    }
    Ok(JobReport {
        rows_written: report.deleted(),
        nothing_to_do: report.deleted() == 0,
        detail: format!("deleted: {summary}"),
    })
}
