//! Arrival times: a Poisson process whose rate follows the time of day.
//!
//! Intensity `λ(t) = rate × (1 + a·sin(ω·t + φ))` with a one-day period,
//! peaking at 14:00 UTC. Time is cut into fixed chunks aligned to the epoch
//! (length chosen from the rate, about a thousand arrivals each); a chunk's
//! arrivals come from its own random stream, as a unit-rate Poisson
//! process in "operational time" `s = Λ(t)` (the integral of λ over the
//! chunk) mapped back through `Λ⁻¹`, which is exact for any intensity.
//! So the arrivals of a chunk do not depend on which range asked for them.

use std::f64::consts::TAU;

use crate::time::{DAY_MS, SECOND_MS};

const OMEGA: f64 = TAU / 86_400.0;
/// Phase putting the peak (sin = 1) at 14:00 UTC.
const PHASE: f64 = TAU / 4.0 - OMEGA * 14.0 * 3_600.0;
/// Mean arrivals per chunk.
const PER_CHUNK: f64 = 1_000.0;

/// The time-varying arrival rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Intensity {
    rate: f64,
    amp: f64,
}

impl Intensity {
    pub(crate) fn new(rate: f64, amp: f64) -> Self {
        Self { rate, amp }
    }

    /// Chunk length: about `PER_CHUNK` arrivals, whole seconds, one second
    /// to one day.
    pub(crate) fn chunk_ms(&self) -> i64 {
        let secs = (PER_CHUNK / self.rate).clamp(1.0, 86_400.0) as i64;
        secs * SECOND_MS
    }

    /// Angle of the daily cycle at epoch millisecond `t` (time of day only,
    /// so precision does not depend on the date).
    fn angle(t_ms: i64) -> f64 {
        OMEGA * (t_ms.rem_euclid(DAY_MS) as f64 / 1000.0) + PHASE
    }

    /// Arrivals per second at `c0 + u` seconds.
    fn at(&self, c0_ms: i64, u: f64) -> f64 {
        self.rate * (1.0 + self.amp * (Self::angle(c0_ms) + OMEGA * u).sin())
    }

    /// Expected arrivals in `[c0, c0 + u seconds)`.
    pub(crate) fn cumulative(&self, c0_ms: i64, u: f64) -> f64 {
        if self.amp == 0.0 {
            return self.rate * u;
        }
        let a0 = Self::angle(c0_ms);
        self.rate * (u - self.amp / OMEGA * ((a0 + OMEGA * u).cos() - a0.cos()))
    }

    /// The offset `u` in `[0, len]` seconds from `c0` where `cumulative`
    /// reaches `s` (`0 <= s <= cumulative(len)`): Newton's method kept
    /// inside a shrinking bracket, so it always converges.
    pub(crate) fn invert(&self, c0_ms: i64, s: f64, len: f64) -> f64 {
        if self.amp == 0.0 {
            return (s / self.rate).clamp(0.0, len);
        }
        let (mut lo, mut hi) = (0.0, len);
        let mut u = (s / self.rate).clamp(lo, hi);
        for _ in 0..50 {
            let f = self.cumulative(c0_ms, u) - s;
            if f > 0.0 {
                hi = u;
            } else {
                lo = u;
            }
            let mut next = u - f / self.at(c0_ms, u);
            if !(next > lo && next < hi) {
                next = (lo + hi) / 2.0;
            }
            if (next - u).abs() < 1e-7 {
                return next;
            }
            u = next;
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_day_averages_the_rate() {
        let i = Intensity::new(2.0, 0.6);
        let day = i.cumulative(1_764_000_000_000, 86_400.0);
        assert!((day - 2.0 * 86_400.0).abs() < 1e-6, "{day}");
    }

    #[test]
    fn afternoon_is_busier_than_night() {
        let i = Intensity::new(1.0, 0.5);
        let midnight = 1_764_028_800_000; // 2025-11-25T00:00:00Z
        let night = i.cumulative(midnight + 2 * 3_600_000 - 1_800_000, 3_600.0);
        let peak = i.cumulative(midnight + 14 * 3_600_000 - 1_800_000, 3_600.0);
        assert!((night - 1_800.0).abs() < 10.0, "{night}");
        assert!((peak - 5_400.0).abs() < 10.0, "{peak}");
    }

    #[test]
    fn invert_undoes_cumulative() {
        let i = Intensity::new(3.0, 0.9);
        let c0 = 1_764_000_123_000;
        for u in [0.0, 0.5, 10.0, 3_000.0, 40_000.0, 86_400.0] {
            let s = i.cumulative(c0, u);
            let back = i.invert(c0, s, 86_400.0);
            assert!((back - u).abs() < 1e-4, "{u} -> {s} -> {back}");
        }
    }
}
