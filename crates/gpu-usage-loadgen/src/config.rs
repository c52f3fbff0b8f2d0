//! What to generate: the knobs, their defaults, and their limits.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// The generator's configuration. Together with the time range asked for,
/// it determines the output completely: same configuration ⇒ the same
/// bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Seeds every random stream.
    pub seed: u64,
    /// Mean arrival rate of records (completions per second), averaged over
    /// a whole day when `daily_cycle` is non-zero.
    pub rate: f64,
    /// Amplitude of the daily cycle, `0.0..=0.95`: the rate swings between
    /// `rate × (1 − a)` (around 02:00 UTC) and `rate × (1 + a)` (14:00 UTC).
    /// `0.0` is a flat Poisson process.
    pub daily_cycle: f64,
    /// Number of endpoints (`flux-dev`, `llama-70b`, …, then `endpoint-17`).
    pub endpoints: usize,
    /// Number of GPU specs (`a100-80g`, `h100-80g`, …).
    pub specs: usize,
    /// Size of the worker pool (at least one per endpoint); `None` sizes it
    /// from the load so that the fleet runs at roughly 60 % utilisation
    /// while up, with at least three workers per endpoint.
    pub workers: Option<usize>,
    /// Share of records with status `FAILED`.
    pub failed_share: f64,
    /// Share of records without `spec_name` (the "no spec" case).
    pub no_spec_share: f64,
    /// Share of CPU-only records (`gpu_count` 0).
    pub cpu_only_share: f64,
    /// First part of every `task_id`: `<prefix>-<seed>-<chunk>-<n>`.
    pub task_prefix: String,
    /// The present, for sessions and heartbeats: a session still up at
    /// `now` is reported open (`ended_at: null`), and nothing later than
    /// `now` is reported. `None`: every session is reported with its end,
    /// as in a finished past.
    pub now: Option<DateTime<Utc>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 42,
            rate: 1.0,
            daily_cycle: 0.5,
            endpoints: 8,
            specs: 4,
            workers: None,
            failed_share: 0.10,
            no_spec_share: 0.03,
            cpu_only_share: 0.02,
            task_prefix: "lg".to_owned(),
            now: None,
        }
    }
}

/// Largest accepted rate; far above what one process can send.
pub const MAX_RATE: f64 = 1_000_000.0;

impl Config {
    /// Refuses values the generator cannot honour, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return bad(format!(
                "rate must be in (0, {MAX_RATE}], got {}",
                self.rate
            ));
        }
        if !(0.0..=0.95).contains(&self.daily_cycle) {
            return bad(format!(
                "daily_cycle must be in [0, 0.95], got {}",
                self.daily_cycle
            ));
        }
        if !(1..=10_000).contains(&self.endpoints) {
            return bad(format!(
                "endpoints must be 1..=10000, got {}",
                self.endpoints
            ));
        }
        if !(1..=1_000).contains(&self.specs) {
            return bad(format!("specs must be 1..=1000, got {}", self.specs));
        }
        if let Some(w) = self.workers
            && !(self.endpoints..=10_000_000).contains(&w)
        {
            return bad(format!(
                "workers must be at least one per endpoint ({}) and at most 10000000, got {w}",
                self.endpoints
            ));
        }
        for (name, v) in [
            ("failed_share", self.failed_share),
            ("no_spec_share", self.no_spec_share),
            ("cpu_only_share", self.cpu_only_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} must be in [0, 1], got {v}"));
            }
        }
        check_name("task_prefix", &self.task_prefix, 64)
    }
}

/// Names go into CSV for `LOAD DATA` and into URLs: keep them to letters,
/// digits, `.`, `_` and `-`, so no quoting or escaping is ever needed.
pub(crate) fn check_name(field: &str, v: &str, max: usize) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{field} must be 1 to {max} of [A-Za-z0-9._-], got {v:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        type Spoil = fn(&mut Config);
        let cases: [(Spoil, &str); 7] = [
            (|c| c.rate = 0.0, "rate"),
            (|c| c.rate = f64::NAN, "rate"),
            (|c| c.daily_cycle = 1.0, "daily_cycle"),
            (|c| c.endpoints = 0, "endpoints"),
            (|c| c.workers = Some(3), "workers"),
            (|c| c.failed_share = 1.5, "failed_share"),
            (|c| c.task_prefix = "a b".into(), "task_prefix"),
        ];
        for (bad, field) in cases {
            let mut c = Config::default();
            bad(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e} should name {field}");
        }
    }
}
