//! Where "now" comes from, for every process: the API's defaults and
//! validation windows, the scheduler's ticks, job records and backfills all
//! read one injected [`Clock`], so tests pin or drive time instead of
//! sleeping through real minutes. Domain functions still take an explicit
//! `now`; the clock is how callers obtain it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

pub type SleepFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync + 'static {
    /// The current instant. Callers truncate to milliseconds where it is
    /// stored ([`crate::types::to_millis`]).
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once `now() >= deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> SleepFuture<'_>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// Sleeps are cut into slices so a wall-clock step (NTP, VM resume) delays
/// a tick by at most this much.
const MAX_SLEEP_SLICE: Duration = Duration::from_secs(15);

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> SleepFuture<'_> {
        Box::pin(async move {
            loop {
                let Some(left) = remaining(Utc::now(), deadline) else {
                    return;
                };
                tokio::time::sleep(left.min(MAX_SLEEP_SLICE)).await;
            }
        })
    }
}

/// `deadline - now` when positive. Rounded up to whole milliseconds so a
/// sleep never ends a hair before the deadline and spins.
fn remaining(now: DateTime<Utc>, deadline: DateTime<Utc>) -> Option<Duration> {
    let left = deadline - now;
    if left <= TimeDelta::zero() {
        return None;
    }
    let ms = left.num_milliseconds() + i64::from(left.subsec_nanos() % 1_000_000 != 0);
    Some(Duration::from_millis(u64::try_from(ms.max(1)).unwrap_or(1)))
}

/// A clock set by hand. [`ManualClock::set`] or [`ManualClock::advance`]
/// jump it and wake every sleeper whose deadline has passed. Between jumps
/// it runs at real speed ([`ManualClock::new`]: durations and the order of
/// events stay real, so job records of different workers sharing it can be
/// compared) or stands still ([`ManualClock::frozen`]: request handlers see
/// exactly the instant their fixtures were written for).
pub struct ManualClock {
    base: Mutex<(DateTime<Utc>, Instant)>,
    frozen: bool,
    jumps: watch::Sender<u64>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            base: Mutex::new((start, Instant::now())),
            frozen: false,
            jumps: watch::Sender::new(0),
        }
    }

    pub fn frozen(at: DateTime<Utc>) -> Self {
        Self {
            frozen: true,
            ..Self::new(at)
        }
    }

    /// Jumps to `t` (backwards too, though the scheduler never expects it).
    pub fn set(&self, t: DateTime<Utc>) {
        {
            let mut base = self.base.lock().unwrap_or_else(|p| p.into_inner());
            *base = (t, Instant::now());
        }
        self.jumps.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn advance(&self, by: TimeDelta) {
        self.set(self.now() + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let (t, at) = *self.base.lock().unwrap_or_else(|p| p.into_inner());
        if self.frozen {
            return t;
        }
        let elapsed = TimeDelta::from_std(at.elapsed()).unwrap_or(TimeDelta::zero());
        t + elapsed
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> SleepFuture<'_> {
        Box::pin(async move {
            loop {
                // Subscribe before reading the time: a jump in between is
                // then seen as a change rather than missed.
                let mut jumps = self.jumps.subscribe();
                let Some(left) = remaining(self.now(), deadline) else {
                    return;
                };
                tokio::select! {
                    _ = tokio::time::sleep(left) => {}
                    _ = jumps.changed() => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_on_jumps() {
        let t0 = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = std::sync::Arc::new(ManualClock::new(t0));
        let c = clock.clone();
        let sleeper = tokio::spawn(async move { c.sleep_until(t0 + TimeDelta::hours(1)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished());
        clock.set(t0 + TimeDelta::hours(1));
        tokio::time::timeout(Duration::from_secs(2), sleeper)
            .await
            .unwrap()
            .unwrap();
        assert!(clock.now() >= t0 + TimeDelta::hours(1));
    }

    #[test]
    fn remaining_rounds_up() {
        let t0 = Utc::now();
        assert_eq!(remaining(t0, t0), None);
        assert_eq!(
            remaining(t0, t0 + TimeDelta::microseconds(10)),
            Some(Duration::from_millis(1))
        );
        assert_eq!(
            remaining(t0, t0 + TimeDelta::seconds(2)),
            Some(Duration::from_secs(2))
        );
    }
}
