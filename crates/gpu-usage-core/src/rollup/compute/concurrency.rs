//! Peak concurrency, exact to the millisecond: the largest Σ gpu_count of
//! the intervals covering one instant, per minute. Intervals are half-open
//! (`start ≤ t < end`), so one ending at t and one starting at t never
//! overlap; empty intervals count nothing.

use std::collections::BTreeMap;

/// The +gpu/−gpu steps of one scope's intervals inside a chunk.
#[derive(Debug, Default, Clone)]
pub struct Steps(Vec<(i64, i64)>);

const MINUTE_MS: i64 = 60_000;

impl Steps {
    /// An interval `[start_ms, end_ms)` of `gpus`, already clipped to the
    /// chunk.
    pub fn add(&mut self, start_ms: i64, end_ms: i64, gpus: i64) {
        if gpus > 0 && start_ms < end_ms {
            self.0.push((start_ms, gpus));
            self.0.push((end_ms, -gpus));
        }
    }

    /// The peak of every minute (start, epoch ms) where some interval is
    /// open; minutes at level 0 throughout are left out.
    pub fn minute_peaks(mut self) -> BTreeMap<i64, i64> {
        // Ends before starts at one instant: the half-open rule.
        self.0.sort_unstable();
        let steps = self.0;
        let mut out = BTreeMap::new();
        let mut level = 0i64;
        let mut i = 0;
        while i < steps.len() {
            let minute = steps[i].0.div_euclid(MINUTE_MS) * MINUTE_MS;
            // The level at the minute's first instant: what was carried in
            // plus every step exactly there.
            while i < steps.len() && steps[i].0 == minute {
                level += steps[i].1;
                i += 1;
            }
            let mut peak = level;
            while i < steps.len() && steps[i].0 < minute + MINUTE_MS {
                level += steps[i].1;
                i += 1;
                // After every step of one instant, not in between.
                if i == steps.len() || steps[i].0 != steps[i - 1].0 {
                    peak = peak.max(level);
                }
            }
            if peak > 0 {
                out.insert(minute, peak);
            }
            // Minutes without a step keep the level they inherit.
            let next = steps.get(i).map_or(minute + MINUTE_MS, |s| {
                s.0.div_euclid(MINUTE_MS) * MINUTE_MS
            });
            if level > 0 {
                let mut m = minute + MINUTE_MS;
                while m < next {
                    out.insert(m, level);
                    m += MINUTE_MS;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_open_and_carried() {
        let mut s = Steps::default();
        s.add(0, 30_000, 2); // [0, 30 s) of minute 0
        s.add(30_000, 200_000, 3); // starts as the first ends: no overlap
        s.add(10_000, 20_000, 1);
        s.add(5_000, 5_000, 9); // empty: nothing
        let p = s.minute_peaks();
        assert_eq!(p[&0], 3, "2 + 1 at 10 s, then 3 from 30 s");
        assert_eq!(p[&60_000], 3, "carried through a minute without steps");
        assert_eq!(p[&120_000], 3);
        assert_eq!(p.get(&180_000), Some(&3), "open until 200 s");
        assert_eq!(p.get(&240_000), None);
    }

    #[test]
    fn an_end_at_the_minute_start_does_not_count() {
        let mut s = Steps::default();
        s.add(0, 60_000, 4);
        s.add(60_000, 70_000, 1);
        let p = s.minute_peaks();
        assert_eq!((p[&0], p[&60_000]), (4, 1));
    }
}
