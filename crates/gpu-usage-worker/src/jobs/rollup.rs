//! The periodic rollup of one level: fold in everything pending for it
//! (new records, late data, downtime), not only "the previous period".

use anyhow::Context;
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::rollup;

use super::{JobContext, JobReport};

pub async fn run(ctx: &JobContext, job: JobName) -> anyhow::Result<JobReport> {
    let level = job
        .level()
        .with_context(|| format!("{job} is not a rollup job"))?;
    let report = rollup::process_pending(&ctx.db, level, ctx.now(), &ctx.engine)
        .await
        .with_context(|| format!("{level} rollup"))?;
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
