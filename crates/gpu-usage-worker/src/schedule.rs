//! When each periodic job is due: wall-clock aligned ticks, one immediate
//! catch-up run for missed ticks, and backed-off retries after failures.
//! Pure functions of time, unit-tested here; the loop is in
//! [`crate::scheduler`].

use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::jobs::JobName;

use crate::jobs::JobOutcome;

/// First retry after a failure; doubled per further failure.
pub const RETRY_BASE: TimeDelta = TimeDelta::seconds(5);
/// Retries never wait longer than this (nor past the next regular tick).
pub const RETRY_CAP: TimeDelta = TimeDelta::minutes(5);
/// After an hourly or daily job was skipped because another runner held
/// it, look again this soon (once per tick): the holder may have read its
/// pending ranges just before this runner's finer level queued more, and
/// those would otherwise wait a whole interval (5 min, 1 h).
pub const SKIP_RECHECK: TimeDelta = TimeDelta::seconds(10);

fn every_ms(every: TimeDelta) -> i64 {
    every.num_milliseconds().max(1000)
}

/// Latest multiple of `every` since the Unix epoch at or before `t`.
pub fn floor_aligned(t: DateTime<Utc>, every: TimeDelta) -> DateTime<Utc> {
    let e = every_ms(every);
    let ms = t.timestamp_millis().div_euclid(e) * e;
    DateTime::from_timestamp_millis(ms).unwrap_or(t)
}

/// First multiple of `every` since the Unix epoch strictly after `t`.
pub fn next_aligned(t: DateTime<Utc>, every: TimeDelta) -> DateTime<Utc> {
    floor_aligned(t, every) + TimeDelta::milliseconds(every_ms(every))
}

/// Delay before retry number `failures` (1 = first retry).
pub fn retry_delay(failures: u32) -> TimeDelta {
    let factor = 1i32 << failures.saturating_sub(1).min(10);
    (RETRY_BASE * factor).min(RETRY_CAP)
}

/// One periodic job's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub job: JobName,
    pub every: TimeDelta,
    pub next_due: DateTime<Utc>,
    /// Consecutive failures; drives the retry back-off.
    pub failures: u32,
    /// Whether a skip is followed by a quick second look (hourly, daily).
    pub recheck_on_skip: bool,
    /// The quick second look of this tick is used up.
    rechecked: bool,
}

impl Slot {
    /// Due at start-up when nobody has run the job since its latest tick
    /// (this process or a replica was down, or it never ran); otherwise at
    /// its next tick.
    pub fn new(
        job: JobName,
        every: TimeDelta,
        last_started: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let missed = last_started.is_none_or(|t| t < floor_aligned(now, every));
        let next_due = if missed {
            now
        } else {
            next_aligned(now, every)
        };
        let recheck_on_skip = matches!(job, JobName::HourlyRollup | JobName::DailyRollup);
        Self {
            job,
            every,
            next_due,
            failures: 0,
            recheck_on_skip,
            rechecked: false,
        }
    }

    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.next_due <= now
    }

    /// Plans the next run after an attempt finished at `now`.
    pub fn after(&mut self, outcome: &JobOutcome, now: DateTime<Utc>) {
        if outcome.is_failure() {
            self.failures = self.failures.saturating_add(1);
            let retry = now + retry_delay(self.failures);
            self.next_due = retry.min(next_aligned(now, self.every));
            self.rechecked = false;
            return;
        }
        self.failures = 0;
        if outcome.is_skip() && self.recheck_on_skip && !self.rechecked {
            self.rechecked = true;
            self.next_due = (now + SKIP_RECHECK).min(next_aligned(now, self.every));
            return;
        }
        self.rechecked = false;
        let next = next_aligned(self.next_due, self.every);
        // Ticks that passed while this one ran (or while the process was
        // stalled) collapse into a single immediate run.
        self.next_due = if next <= now {
            floor_aligned(now, self.every)
        } else {
            next
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ticks_align_to_the_wall_clock() {
        let (m, five, day) = (
            TimeDelta::minutes(1),
            TimeDelta::minutes(5),
            TimeDelta::days(1),
        );
        let next = next_aligned as fn(DateTime<Utc>, TimeDelta) -> DateTime<Utc>;
        let floor = floor_aligned as fn(DateTime<Utc>, TimeDelta) -> DateTime<Utc>;
        for (f, at, every, want) in [
            (next, "2026-03-01T10:00:30Z", m, "2026-03-01T10:01:00Z"),
            (next, "2026-03-01T10:01:00Z", m, "2026-03-01T10:02:00Z"),
            (next, "2026-03-01T10:03:10Z", five, "2026-03-01T10:05:00Z"),
            (floor, "2026-03-01T10:03:10Z", five, "2026-03-01T10:00:00Z"),
            (next, "2026-03-01T23:10:00Z", day, "2026-03-02T00:00:00Z"),
        ] {
            assert_eq!(f(t(at), every), t(want), "{at} every {every}");
        }
    }

    /// A slot of `job` every `every` whose last run started at `last`,
    /// made at `now`.
    fn slot(job: JobName, every: TimeDelta, last: Option<&str>, now: &str) -> Slot {
        Slot::new(job, every, last.map(t), t(now))
    }

    /// Reports `outcome` at `at`; returns when the slot is due next.
    fn after(s: &mut Slot, outcome: &JobOutcome, at: DateTime<Utc>) -> DateTime<Utc> {
        s.after(outcome, at);
        s.next_due
    }

    #[test]
    fn start_up_runs_missed_ticks_once() {
        let (job, m, now) = (
            JobName::MinuteRollup,
            TimeDelta::minutes(1),
            "2026-03-01T10:00:40Z",
        );
        assert_eq!(slot(job, m, None, now).next_due, t(now));
        let missed = slot(job, m, Some("2026-03-01T09:58:00Z"), now);
        assert_eq!(missed.next_due, t(now));
        let recent = slot(job, m, Some("2026-03-01T10:00:01Z"), now);
        assert_eq!(recent.next_due, t("2026-03-01T10:01:00Z"));
    }

    #[test]
    fn long_runs_collapse_missed_ticks_into_one() {
        let at = "2026-03-01T10:00:00Z";
        let mut s = slot(JobName::MinuteRollup, TimeDelta::minutes(1), Some(at), at);
        assert_eq!(s.next_due, t("2026-03-01T10:01:00Z"));
        // The 10:01 run took until 10:04:30: one catch-up run now, not three.
        let idle = JobOutcome::NothingToDo;
        assert_eq!(
            after(&mut s, &idle, t("2026-03-01T10:04:30Z")),
            t("2026-03-01T10:04:00Z")
        );
        assert_eq!(
            after(&mut s, &idle, t("2026-03-01T10:04:31Z")),
            t("2026-03-01T10:05:00Z")
        );
    }

    #[test]
    fn failures_back_off_but_not_past_the_next_tick() {
        let at = "2026-03-01T10:00:00Z";
        let mut s = slot(JobName::DailyRollup, TimeDelta::hours(1), Some(at), at);
        let fail = JobOutcome::Failed {
            error: "boom".into(),
        };
        let now = t(at);
        for pause in [5, 10, 20] {
            assert_eq!(after(&mut s, &fail, now), now + TimeDelta::seconds(pause));
        }
        for _ in 0..10 {
            s.after(&fail, now);
        }
        assert_eq!(s.next_due, now + RETRY_CAP);
        assert_eq!(
            after(&mut s, &fail, t("2026-03-01T10:59:00Z")),
            t("2026-03-01T11:00:00Z")
        );
        let ok = after(&mut s, &JobOutcome::NothingToDo, t("2026-03-01T11:00:01Z"));
        assert_eq!(s.failures, 0);
        assert_eq!(ok, t("2026-03-01T12:00:00Z"));
    }

    #[test]
    fn a_skip_waits_for_the_next_tick() {
        let at = "2026-03-01T10:00:12Z";
        let mut s = slot(JobName::MinuteRollup, TimeDelta::minutes(1), None, at);
        assert_eq!(
            after(&mut s, &JobOutcome::Skipped, t(at)),
            t("2026-03-01T10:01:00Z")
        );
    }

    #[test]
    fn coarser_levels_look_again_once_after_a_skip() {
        let (at, five) = ("2026-03-01T10:05:00Z", TimeDelta::minutes(5));
        let now = t(at);
        let mut s = slot(JobName::HourlyRollup, five, None, at);
        for (outcome, at, due) in [
            (JobOutcome::Chained, now, now + SKIP_RECHECK),
            (
                JobOutcome::Skipped,
                now + SKIP_RECHECK,
                t("2026-03-01T10:10:00Z"),
            ),
            (
                JobOutcome::Skipped,
                t("2026-03-01T10:10:00Z"),
                t("2026-03-01T10:10:10Z"),
            ),
            (
                JobOutcome::NothingToDo,
                t("2026-03-01T10:10:10Z"),
                t("2026-03-01T10:15:00Z"),
            ),
        ] {
            assert_eq!(after(&mut s, &outcome, at), due, "{outcome:?} at {at}");
        }
        // Never past the next tick.
        let mut s = slot(JobName::HourlyRollup, five, None, at);
        let skipped = after(&mut s, &JobOutcome::Skipped, t("2026-03-01T10:09:55Z"));
        assert_eq!(skipped, t("2026-03-01T10:10:00Z"));
    }
}
