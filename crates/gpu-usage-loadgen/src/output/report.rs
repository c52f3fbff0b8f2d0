//! What a run did: requests, items, errors by status, throughput, latency.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Figures of one sending run (HTTP or Redis).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Requests (or pipelines) sent, retries included.
    pub requests: u64,
    /// Retries after a 503 or 429.
    pub retries: u64,
    /// Items in batches that were accepted.
    pub items_ok: u64,
    /// Items in batches that finally failed.
    pub items_failed: u64,
    /// Failed attempts by HTTP status (`"503"`) or cause (`"transport"`,
    /// `"redis"`), retried ones included.
    pub errors: BTreeMap<String, u64>,
    /// Totals from the ingest responses that carry them (`inserted`,
    /// `duplicates`, `conflicts`).
    pub inserted: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    /// Wall time from the first send to the end.
    pub elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Report {
    /// Notes one request's latency.
    pub fn latency(&mut self, d: Duration) {
        self.latencies_us
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn error(&mut self, key: impl Into<String>) {
        *self.errors.entry(key.into()).or_insert(0) += 1;
    }

    /// The `p`-th percentile (`0.0..=1.0`, nearest rank) of the request
    /// latencies; `None` before any request.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let mut v = self.latencies_us.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let rank = ((p.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(Duration::from_micros(v[rank - 1]))
    }

    /// Accepted items per second of wall time.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.items_ok as f64 / secs
        } else {
            0.0
        }
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "requests {} (retries {}), items ok {}, failed {}",
            self.requests, self.retries, self.items_ok, self.items_failed
        )?;
        if self.inserted + self.duplicates + self.conflicts > 0 {
            writeln!(
                f,
                "ingest: inserted {}, duplicates {}, conflicts {}",
                self.inserted, self.duplicates, self.conflicts
            )?;
        }
        if !self.errors.is_empty() {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            writeln!(f, "errors: {}", list.join(", "))?;
        }
        write!(
            f,
            "elapsed {:.2} s, {:.0} items/s, latency p50 {}, p99 {}",
            self.elapsed.as_secs_f64(),
            self.throughput(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut r = Report::default();
        assert_eq!(r.percentile(0.5), None);
        for ms in (1..=100).rev() {
            r.latency(Duration::from_millis(ms));
        }
        assert_eq!(r.percentile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(r.percentile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(r.percentile(1.0), Some(Duration::from_millis(100)));
        r.items_ok = 10;
        r.elapsed = Duration::from_secs(2);
        assert!((r.throughput() - 5.0).abs() < 1e-9);
        r.error("503");
        r.error("503");
        assert!(r.to_string().contains("errors: 503: 2"));
    }
}
