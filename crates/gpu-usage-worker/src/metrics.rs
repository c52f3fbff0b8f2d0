//! What this worker process counts, as Prometheus metrics (through
//! `prometheus-client`; names are declared once, in [`Metrics::register`]).
//!
//! Counters are per process (Prometheus sums replicas); the gauges that
//! describe shared state — rollup lag (the database), stream lag (Redis) —
//! are refreshed at scrape time by [`crate::http`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gpu_usage_core::jobs::{JobName, JobOutcome};
use gpu_usage_core::metrics::Registry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// The job's name, as label `job_name`: not `job`, which Prometheus sets on
/// every scraped series itself (a scraped `job` would be renamed
/// `exported_job`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    job_name: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
    group: String,
}

fn duration_histogram() -> Histogram {
    // 10 ms to about 2 h.
    Histogram::new(exponential_buckets(0.01, 3.0, 12))
}

/// The worker's metric handles; clones share the same values.
#[derive(Clone)]
pub struct Metrics {
    runs: Family<OutcomeLabels, Counter>,
    duration: Family<JobLabels, Histogram, fn() -> Histogram>,
    rows: Family<JobLabels, Counter>,
    lock_skips: Family<JobLabels, Counter>,
    last_success: Family<JobLabels, Gauge>,
    stream: Family<ResultLabels, Counter>,
    stream_errors: Counter,
    backfill_chunks: Counter,
    stream_lag: Family<StreamLabels, Gauge>,
    stream_pending: Family<StreamLabels, Gauge>,
    stream_up: Gauge,
    /// The consumer's last round failed: `stream_up` is 0 whatever a
    /// scrape-time read of Redis says.
    stream_failing: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Stream lag and pending count of the consumer group, read at scrape time.
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
        Self {
            runs: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            rows: Family::default(),
            lock_skips: Family::default(),
            last_success: Family::default(),
            stream: Family::default(),
            stream_errors: Counter::default(),
            backfill_chunks: Counter::default(),
            stream_lag: Family::default(),
            stream_pending: Family::default(),
            stream_up: Gauge::default(),
            stream_failing: Arc::default(),
        }
    }

    /// Adds every metric to `r`, under its name and help text.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "gpu_usage_job_runs",
            "Job executions by job and outcome (skipped = another runner held the lock)",
            self.runs.clone(),
        );
        r.register(
            "gpu_usage_job_duration_seconds",
            "Time spent in executed jobs",
            self.duration.clone(),
        );
        r.register(
            "gpu_usage_job_rows_written",
            "Rows written by jobs (statistics rows; deleted rows for cleanup)",
            self.rows.clone(),
        );
        r.register(
            "gpu_usage_job_lock_skips",
            "Ticks skipped because another runner held the job's lock",
            self.lock_skips.clone(),
        );
        r.register(
            "gpu_usage_job_last_success_timestamp_seconds",
            "When this process last finished the job successfully",
            self.last_success.clone(),
        );
        r.register(
            "gpu_usage_stream_entries",
            "Redis stream entries by result",
            self.stream.clone(),
        );
        r.register(
            "gpu_usage_stream_errors",
            "Failed rounds of the Redis stream consumer",
            self.stream_errors.clone(),
        );
        r.register(
            "gpu_usage_backfill_chunks",
            "Backfill chunks (days) completed by this process",
            self.backfill_chunks.clone(),
        );
        r.register(
            "gpu_usage_stream_lag",
            "Stream entries not yet delivered to the consumer group",
            self.stream_lag.clone(),
        );
        r.register(
            "gpu_usage_stream_pending",
            "Stream entries delivered but not yet acknowledged",
            self.stream_pending.clone(),
        );
        r.register(
            "gpu_usage_stream_up",
            "1 when Redis answered at the last scrape and the consumer's last round succeeded \
             (0 also when no stream is configured)",
            self.stream_up.clone(),
        );
    }

    pub fn job_finished(
        &self,
        job: JobName,
        outcome: &JobOutcome,
        took: Duration,
        at: DateTime<Utc>,
    ) {
        let label = JobLabels {
            job_name: job.to_string(),
        };
        self.runs
            .get_or_create(&OutcomeLabels {
                job_name: job.to_string(),
                outcome: outcome.label().to_owned(),
            })
            .inc();
        if outcome.is_skip() {
            self.lock_skips.get_or_create(&label).inc();
            return;
        }
        self.duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        match outcome {
            JobOutcome::Ran { rows_written, .. } => {
                self.rows.get_or_create(&label).inc_by(*rows_written);
                self.last_success.get_or_create(&label).set(at.timestamp());
            }
            JobOutcome::NothingToDo => {
                self.last_success.get_or_create(&label).set(at.timestamp());
            }
            _ => {}
        }
    }

    /// Stream entries by what became of them: records `inserted` or
    /// `duplicate`, worker `session`s stored, `heartbeat`s applied, and
    /// `dead_lettered` (any kind).
    pub fn stream_entries(&self, result: &str, n: u64) {
        if n > 0 {
            let label = ResultLabels {
                result: result.to_owned(),
            };
            self.stream.get_or_create(&label).inc_by(n);
        }
    }

    /// How the consumer's last round ended: while rounds fail,
    /// `gpu_usage_stream_up` is 0 (and each failed round is counted in
    /// `gpu_usage_stream_errors`); a round that succeeds sets it to 1.
    pub fn stream_round(&self, ok: bool) {
        if !ok {
            self.stream_errors.inc();
        }
        self.stream_failing.store(!ok, Ordering::Relaxed);
        self.stream_up.set(i64::from(ok));
    }

    pub fn backfill_chunk(&self) {
        self.backfill_chunks.inc();
    }

    /// The stream gauges from a scrape-time read (`None`: Redis failed);
    /// `gpu_usage_stream_up` is 1 only if the consumer's rounds succeed too.
    pub fn set_stream(&self, read: Option<Option<StreamLag>>) {
        let Some(lag) = read else {
            self.stream_up.set(0);
            return;
        };
        let failing = self.stream_failing.load(Ordering::Relaxed);
        self.stream_up.set(i64::from(!failing));
        if let Some(s) = lag {
            let labels = StreamLabels {
                stream: s.stream,
                group: s.group,
            };
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            if let Some(l) = s.lag {
                self.stream_lag.get_or_create(&labels).set(gauge(l));
            }
            self.stream_pending
                .get_or_create(&labels)
                .set(gauge(s.pending));
        }
    }

    /// Runs of `job` that ended as `outcome` (a [`JobOutcome::label`]).
    pub fn job_runs(&self, job: JobName, outcome: &str) -> u64 {
        self.runs
            .get(&OutcomeLabels {
                job_name: job.to_string(),
                outcome: outcome.to_owned(),
            })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// These metrics alone, in the Prometheus text format (tests).
    pub fn render(&self) -> String {
        let mut r = Registry::default();
        self.register(&mut r);
        gpu_usage_core::metrics::render(&r, false).0
    }
}

impl gpu_usage_core::metrics::RegisterMetrics for Metrics {
    fn register(&self, r: &mut Registry) {
        Metrics::register(self, r);
    }
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
        m.set_stream(Some(Some(StreamLag {
            stream: "s\"x".into(),
            group: "g".into(),
            lag: Some(4),
            pending: 1,
        })));
        let text = m.render();
        for needle in [
            "gpu_usage_job_runs_total{job_name=\"rollup_minute\",outcome=\"succeeded\"} 1\n",
            "gpu_usage_job_runs_total{job_name=\"rollup_minute\",outcome=\"skipped\"} 1\n",
            "gpu_usage_job_rows_written_total{job_name=\"rollup_minute\"} 12\n",
            "gpu_usage_job_lock_skips_total{job_name=\"rollup_minute\"} 1\n",
            "gpu_usage_job_duration_seconds_sum{job_name=\"rollup_minute\"} 0.25\n",
            "gpu_usage_stream_lag{stream=\"s\\\"x\",group=\"g\"} 4\n",
            "gpu_usage_stream_entries_total{result=\"inserted\"} 3\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert_eq!(m.job_runs(JobName::MinuteRollup, "succeeded"), 1);
        gpu_usage_testing::assert_exposition_well_formed(&text);
    }

    #[test]
    fn stream_up_is_0_while_rounds_fail() {
        let m = Metrics::new();
        let up = |m: &Metrics| m.render().contains("gpu_usage_stream_up 1\n");
        m.set_stream(Some(None));
        assert!(up(&m), "Redis answered, no round failed");
        m.stream_round(false);
        assert!(!up(&m));
        // Redis answers the scrape, yet the consumer's rounds fail.
        m.set_stream(Some(None));
        assert!(!up(&m));
        m.stream_round(true);
        assert!(up(&m));
        m.set_stream(Some(None));
        assert!(up(&m));
        m.set_stream(None);
        assert!(!up(&m));
    }
}
