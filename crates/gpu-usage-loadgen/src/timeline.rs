//! When each worker is up: its sessions, as a pure function of the seed,
//! the worker and the time.
//!
//! A worker's life is cut into blocks of one day, offset by a per-worker
//! phase (pods are recycled daily, each at its own hour). Each block holds
//! alternating gaps and sessions drawn from the block's own random stream:
//! a first gap (median 20 min), then sessions (median 6 h) separated by gaps
//! (median 45 min), the last session ending at least a minute before the
//! block does. Sessions never cross a block boundary, so the sessions around
//! any instant come from one block, regenerated on demand: no history is
//! kept, any range can be asked for in any order, and a worker is up about
//! 80–85 % of the time.

use rand::RngExt;
use rand_distr::StandardNormal;

use crate::rng::{Purpose, Stream, stream};
use crate::time::{DAY_MS, MINUTE_MS};

pub(crate) const BLOCK_MS: i64 = DAY_MS;
const FIRST_GAP_MEDIAN_MS: f64 = 20.0 * MINUTE_MS as f64;
const SESSION_MEDIAN_MS: f64 = 6.0 * 60.0 * MINUTE_MS as f64;
const GAP_MEDIAN_MS: f64 = 45.0 * MINUTE_MS as f64;
const MIN_SESSION_MS: i64 = 10 * MINUTE_MS;
const MIN_GAP_MS: i64 = MINUTE_MS;

/// A half-open up interval `[start, end)` in epoch milliseconds.
pub(crate) type Span = (i64, i64);

/// The block holding instant `t` for a worker with phase `phase_ms`.
pub(crate) fn block_of(t: i64, phase_ms: i64) -> i64 {
    (t - phase_ms).div_euclid(BLOCK_MS)
}

fn lognormal_ms(rng: &mut Stream, median: f64, sigma: f64, min: i64) -> i64 {
    let z: f64 = rng.sample(StandardNormal);
    ((median * (sigma * z).exp()) as i64).max(min)
}

/// The sessions of `worker` in `block`, in order, into `out` (cleared first).
pub(crate) fn block_sessions(
    seed: u64,
    worker: usize,
    phase_ms: i64,
    block: i64,
    out: &mut Vec<Span>,
) {
    out.clear();
    let mut rng = stream(seed, Purpose::Timeline, worker as u64, block as u64);
    let block_start = block * BLOCK_MS + phase_ms;
    let last_end = block_start + BLOCK_MS - MIN_GAP_MS;
    let mut pos = block_start + lognormal_ms(&mut rng, FIRST_GAP_MEDIAN_MS, 0.8, MIN_GAP_MS);
    while pos + MIN_SESSION_MS <= last_end {
        let len = lognormal_ms(&mut rng, SESSION_MEDIAN_MS, 0.6, MIN_SESSION_MS);
        let end = (pos + len).min(last_end);
        out.push((pos, end));
        pos = end + lognormal_ms(&mut rng, GAP_MEDIAN_MS, 0.8, MIN_GAP_MS);
    }
}

/// One worker's current block, cached: looking instants up in time order
/// regenerates each block once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cursor {
    block: Option<i64>,
    sessions: Vec<Span>,
}

impl Cursor {
    /// The session holding instant `t` (`start <= t < end`), if the worker
    /// is up then.
    pub(crate) fn session_at(
        &mut self,
        seed: u64,
        worker: usize,
        phase_ms: i64,
        t: i64,
    ) -> Option<Span> {
        let block = block_of(t, phase_ms);
        if self.block != Some(block) {
            block_sessions(seed, worker, phase_ms, block, &mut self.sessions);
            self.block = Some(block);
        }
        self.sessions
            .iter()
            .copied()
            .find(|&(s, e)| s <= t && t < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hold_ordered_sessions_with_gaps_and_are_reproducible() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut up = 0i64;
        for block in 20_000..20_200 {
            block_sessions(9, 3, 12_345, block, &mut a);
            block_sessions(9, 3, 12_345, block, &mut b);
            assert_eq!(a, b);
            let start = block * BLOCK_MS + 12_345;
            let mut prev_end = start;
            for &(s, e) in &a {
                assert!(s > prev_end, "a gap precedes every session");
                assert!(e - s >= MIN_SESSION_MS && e < start + BLOCK_MS);
                prev_end = e;
                up += e - s;
            }
        }
        let share = up as f64 / (200 * BLOCK_MS) as f64;
        assert!((0.7..0.92).contains(&share), "up {share:.2} of the time");
    }

    #[test]
    fn cursor_finds_the_session_or_none() {
        let mut sessions = Vec::new();
        block_sessions(1, 0, 0, 20_500, &mut sessions);
        let (s, e) = sessions[0];
        let mut c = Cursor::default();
        assert_eq!(c.session_at(1, 0, 0, s), Some((s, e)));
        assert_eq!(c.session_at(1, 0, 0, e - 1), Some((s, e)));
        assert_eq!(c.session_at(1, 0, 0, s - 1), None);
    }
}
