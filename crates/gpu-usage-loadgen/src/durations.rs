//! Task durations: heavy-tailed, a mixture of three lognormals.
//!
//! | share | component | median | σ |
//! |------:|-----------|-------:|--:|
//! | 90 %  | the endpoint's own work | 3–30 s (per endpoint) | 0.8 |
//! | 9 %   | minutes (long prompts, video) | 4 min | 0.7 |
//! | 1 %   | hours (batch jobs, fine-tunes) | 90 min | 0.5 |
//!
//! capped at 30 h (ingest refuses tasks above 168 h). Hour-long tasks are
//! what crosses midnight now and then.

use rand::RngExt;
use rand_distr::StandardNormal;

use crate::time::HOUR_MS;

const BODY_SHARE: f64 = 0.90;
const BODY_SIGMA: f64 = 0.8;
const MINUTES_SHARE: f64 = 0.09;
const MINUTES_MEDIAN_S: f64 = 240.0;
const MINUTES_SIGMA: f64 = 0.7;
const HOURS_MEDIAN_S: f64 = 5_400.0;
const HOURS_SIGMA: f64 = 0.5;
/// Longest task generated.
pub const MAX_DURATION_MS: i64 = 30 * HOUR_MS;

/// The duration distribution of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DurationModel {
    body_median_s: f64,
}

impl DurationModel {
    pub(crate) fn new(body_median_s: f64) -> Self {
        Self { body_median_s }
    }

    /// One duration in milliseconds, `0..=MAX_DURATION_MS`.
    pub(crate) fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> i64 {
        let u: f64 = rng.random();
        let (median, sigma) = if u < BODY_SHARE {
            (self.body_median_s, BODY_SIGMA)
        } else if u < BODY_SHARE + MINUTES_SHARE {
            (MINUTES_MEDIAN_S, MINUTES_SIGMA)
        } else {
            (HOURS_MEDIAN_S, HOURS_SIGMA)
        };
        let z: f64 = rng.sample(StandardNormal);
        let ms = median * 1000.0 * (sigma * z).exp();
        (ms as i64).clamp(0, MAX_DURATION_MS)
    }

    /// Mean duration in seconds (ignoring the cap, which moves it by far
    /// less than a second).
    pub(crate) fn mean_s(&self) -> f64 {
        let lognormal_mean = |median: f64, sigma: f64| median * (sigma * sigma / 2.0).exp();
        BODY_SHARE * lognormal_mean(self.body_median_s, BODY_SIGMA)
            + MINUTES_SHARE * lognormal_mean(MINUTES_MEDIAN_S, MINUTES_SIGMA)
            + (1.0 - BODY_SHARE - MINUTES_SHARE) * lognormal_mean(HOURS_MEDIAN_S, HOURS_SIGMA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, stream};

    #[test]
    fn sample_mean_matches_the_formula() {
        let m = DurationModel::new(10.0);
        let mut rng = stream(7, Purpose::Arrivals, 0, 0);
        let n = 200_000;
        let total: f64 = (0..n).map(|_| m.sample(&mut rng) as f64 / 1000.0).sum();
        let mean = total / f64::from(n);
        let expected = m.mean_s();
        assert!(
            (mean - expected).abs() / expected < 0.05,
            "sample mean {mean:.1} s, formula {expected:.1} s"
        );
    }
}
