//! Counters kept in process and rendered in the Prometheus text format
//! (exposition format 0.0.4) by hand: a few families, no registry crate.
//!
//! Counters are per process (Prometheus sums replicas); gauges that
//! describe the shared database (rollup lag) or Redis (stream lag) are read
//! at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::status::LevelStatus;

use crate::jobs::JobOutcome;

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: BTreeMap<(&'static str, &'static str), u64>,
    duration: BTreeMap<&'static str, (f64, u64)>,
    rows: BTreeMap<&'static str, u64>,
    lock_skips: BTreeMap<&'static str, u64>,
    last_success: BTreeMap<&'static str, i64>,
    stream: BTreeMap<&'static str, u64>,
    stream_errors: u64,
    backfill_chunks: u64,
}

/// Values read at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    pub rollup: Vec<LevelStatus>,
    pub rollup_error: bool,
    pub stream: Option<StreamLag>,
    pub stream_error: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLag {
    pub stream: String,
    pub group: String,
    /// Entries not yet delivered to the group (`XINFO GROUPS` lag); `None`
    /// when Redis cannot tell (after trimming or deletions).
    pub lag: Option<u64>,
    /// Delivered but not acknowledged (`XINFO GROUPS` pending).
    pub pending: u64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A panic while holding this lock cannot leave counters
        // inconsistent in a way that matters; keep counting.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut inner)
    }

    pub fn job_finished(
        &self,
        job: JobName,
        outcome: &JobOutcome,
        took: Duration,
        at: DateTime<Utc>,
    ) {
        let name = job.as_str();
        self.with(|m| {
            *m.runs.entry((name, outcome.label())).or_default() += 1;
            match outcome {
                JobOutcome::Skipped | JobOutcome::Chained => {
                    *m.lock_skips.entry(name).or_default() += 1;
                }
                JobOutcome::Ran { rows_written, .. } => {
                    *m.rows.entry(name).or_default() += rows_written;
                    m.last_success.insert(name, at.timestamp());
                    let d = m.duration.entry(name).or_default();
                    d.0 += took.as_secs_f64();
                    d.1 += 1;
                }
                JobOutcome::NothingToDo => {
                    m.last_success.insert(name, at.timestamp());
                    let d = m.duration.entry(name).or_default();
                    d.0 += took.as_secs_f64();
                    d.1 += 1;
                }
                JobOutcome::Failed { .. } => {
                    let d = m.duration.entry(name).or_default();
                    d.0 += took.as_secs_f64();
                    d.1 += 1;
                }
            }
        });
    }

    /// Stream entries by what became of them: `inserted`, `duplicate`,
    /// `dead_lettered`.
    pub fn stream_entries(&self, result: &'static str, n: u64) {
        if n > 0 {
            self.with(|m| *m.stream.entry(result).or_default() += n);
        }
    }

    pub fn stream_error(&self) {
        self.with(|m| m.stream_errors += 1);
    }

    pub fn backfill_chunk(&self) {
        self.with(|m| m.backfill_chunks += 1);
    }

    pub fn job_runs(&self, job: JobName, outcome: &str) -> u64 {
        self.with(|m| {
            m.runs
                .iter()
                .filter(|((j, o), _)| *j == job.as_str() && *o == outcome)
                .map(|(_, n)| *n)
                .sum()
        })
    }

    pub fn render(&self, gauges: &Gauges, now: DateTime<Utc>) -> String {
        let mut out = String::with_capacity(4096);
        self.with(|m| {
            family(
                &mut out,
                "gpu_usage_job_runs_total",
                "counter",
                "Job executions by job and outcome (skipped = another runner held the lock).",
            );
            for ((job, outcome), n) in &m.runs {
                sample(
                    &mut out,
                    "gpu_usage_job_runs_total",
                    &[("job", job), ("outcome", outcome)],
                    *n as f64,
                );
            }
            family(
                &mut out,
                "gpu_usage_job_duration_seconds",
                "summary",
                "Time spent in executed jobs.",
            );
            for (job, (sum, count)) in &m.duration {
                sample(
                    &mut out,
                    "gpu_usage_job_duration_seconds_sum",
                    &[("job", job)],
                    *sum,
                );
                sample(
                    &mut out,
                    "gpu_usage_job_duration_seconds_count",
                    &[("job", job)],
                    *count as f64,
                );
            }
            family(
                &mut out,
                "gpu_usage_job_rows_written_total",
                "counter",
                "Rows written by jobs (statistics rows; deleted rows for cleanup).",
            );
            for (job, n) in &m.rows {
                sample(
                    &mut out,
                    "gpu_usage_job_rows_written_total",
                    &[("job", job)],
                    *n as f64,
                );
            }
            family(
                &mut out,
                "gpu_usage_job_lock_skips_total",
                "counter",
                "Ticks skipped because another runner held the job's lock.",
            );
            for (job, n) in &m.lock_skips {
                sample(
                    &mut out,
                    "gpu_usage_job_lock_skips_total",
                    &[("job", job)],
                    *n as f64,
                );
            }
            family(
                &mut out,
                "gpu_usage_job_last_success_timestamp_seconds",
                "gauge",
                "When this process last finished the job successfully.",
            );
            for (job, t) in &m.last_success {
                sample(
                    &mut out,
                    "gpu_usage_job_last_success_timestamp_seconds",
                    &[("job", job)],
                    *t as f64,
                );
            }
            family(
                &mut out,
                "gpu_usage_stream_entries_total",
                "counter",
                "Redis stream entries by result.",
            );
            for (result, n) in &m.stream {
                sample(
                    &mut out,
                    "gpu_usage_stream_entries_total",
                    &[("result", result)],
                    *n as f64,
                );
            }
            family(
                &mut out,
                "gpu_usage_stream_errors_total",
                "counter",
                "Failed rounds of the Redis stream consumer.",
            );
            sample(
                &mut out,
                "gpu_usage_stream_errors_total",
                &[],
                m.stream_errors as f64,
            );
            family(
                &mut out,
                "gpu_usage_backfill_chunks_total",
                "counter",
                "Backfill chunks (days) completed by this process.",
            );
            sample(
                &mut out,
                "gpu_usage_backfill_chunks_total",
                &[],
                m.backfill_chunks as f64,
            );
        });

        family(
            &mut out,
            "gpu_usage_rollup_lag_seconds",
            "gauge",
            "How far behind now each level is complete (now - complete_through).",
        );
        for s in &gauges.rollup {
            let lag = (now - s.complete_through).num_milliseconds().max(0) as f64 / 1000.0;
            sample(
                &mut out,
                "gpu_usage_rollup_lag_seconds",
                &[("level", s.level.as_str())],
                lag,
            );
        }
        family(
            &mut out,
            "gpu_usage_rollup_pending_ranges",
            "gauge",
            "Ranges queued for recomputation per level.",
        );
        for s in &gauges.rollup {
            sample(
                &mut out,
                "gpu_usage_rollup_pending_ranges",
                &[("level", s.level.as_str())],
                s.pending_ranges as f64,
            );
        }
        family(
            &mut out,
            "gpu_usage_rollup_status_up",
            "gauge",
            "1 when the rollup status could be read at this scrape.",
        );
        sample(
            &mut out,
            "gpu_usage_rollup_status_up",
            &[],
            if gauges.rollup_error { 0.0 } else { 1.0 },
        );

        if let Some(s) = &gauges.stream {
            let labels = [("stream", s.stream.as_str()), ("group", s.group.as_str())];
            family(
                &mut out,
                "gpu_usage_stream_lag",
                "gauge",
                "Stream entries not yet delivered to the consumer group.",
            );
            if let Some(lag) = s.lag {
                sample(&mut out, "gpu_usage_stream_lag", &labels, lag as f64);
            }
            family(
                &mut out,
                "gpu_usage_stream_pending",
                "gauge",
                "Stream entries delivered but not yet acknowledged.",
            );
            sample(
                &mut out,
                "gpu_usage_stream_pending",
                &labels,
                s.pending as f64,
            );
        }
        if gauges.stream.is_some() || gauges.stream_error {
            family(
                &mut out,
                "gpu_usage_stream_up",
                "gauge",
                "1 when Redis answered at this scrape.",
            );
            sample(
                &mut out,
                "gpu_usage_stream_up",
                &[],
                if gauges.stream_error { 0.0 } else { 1.0 },
            );
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        }
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        let now = Utc::now();
        m.job_finished(
            JobName::MinuteRollup,
            &JobOutcome::Ran {
                rows_written: 12,
                detail: String::new(),
            },
            Duration::from_millis(250),
            now,
        );
        m.job_finished(
            JobName::MinuteRollup,
            &JobOutcome::Skipped,
            Duration::ZERO,
            now,
        );
        m.stream_entries("inserted", 3);
        let gauges = Gauges {
            stream: Some(StreamLag {
                stream: "s\"x".into(),
                group: "g".into(),
                lag: Some(4),
                pending: 1,
            }),
            ..Default::default()
        };
        let text = m.render(&gauges, now);
        assert!(
            text.contains(
                "gpu_usage_job_runs_total{job=\"rollup_minute\",outcome=\"succeeded\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "gpu_usage_job_runs_total{job=\"rollup_minute\",outcome=\"skipped\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("gpu_usage_job_rows_written_total{job=\"rollup_minute\"} 12\n"),
            "{text}"
        );
        assert!(
            text.contains("gpu_usage_job_lock_skips_total{job=\"rollup_minute\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gpu_usage_job_duration_seconds_sum{job=\"rollup_minute\"} 0.25\n"),
            "{text}"
        );
        assert!(
            text.contains("gpu_usage_stream_lag{stream=\"s\\\"x\",group=\"g\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("gpu_usage_stream_entries_total{result=\"inserted\"} 3\n"),
            "{text}"
        );
        for line in text.lines() {
            assert!(
                line.starts_with('#') || line.split(' ').count() == 2,
                "bad line {line:?}"
            );
        }
    }
}
