//! Time: milliseconds since the Unix epoch inside the generator, `chrono`
//! at the edges, and the two text forms the outputs use.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::Serializer;

use crate::error::{Error, Result};

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// A half-open interval `[start, end)` of UTC instants, millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl TimeRange {
    /// Truncates both ends to whole milliseconds; refuses `start >= end`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self> {
        let (s, e) = (start.timestamp_millis(), end.timestamp_millis());
        if s >= e {
            return Err(Error::Config(format!(
                "the range must end after it starts ({} .. {})",
                rfc3339(start),
                rfc3339(end)
            )));
        }
        Ok(Self {
            start: from_ms(s),
            end: from_ms(e),
        })
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        (self.end_ms() - self.start_ms()) as f64 / 1000.0
    }

    pub(crate) fn start_ms(&self) -> i64 {
        self.start.timestamp_millis()
    }

    pub(crate) fn end_ms(&self) -> i64 {
        self.end.timestamp_millis()
    }
}

/// Milliseconds since the epoch as a UTC instant (saturating at chrono's
/// limits, far outside any range the generator accepts).
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// RFC 3339, UTC with `Z`, always three fractional digits:
/// `2026-11-29T10:03:12.250Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// MySQL `DATETIME(3)` text: `2026-11-29 10:03:12.250` (UTC).
pub fn mysql_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// `#[serde(serialize_with = ...)]` for instants.
pub(crate) fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

/// `#[serde(serialize_with = ...)]` for optional instants (`null` when absent).
pub(crate) fn ser_opt_time<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = from_ms(1_764_410_592_250);
        assert_eq!(rfc3339(t), "2025-11-29T10:03:12.250Z");
        assert_eq!(mysql_datetime(t), "2025-11-29 10:03:12.250");
        let whole = from_ms(1_764_410_592_000);
        assert_eq!(rfc3339(whole), "2025-11-29T10:03:12.000Z");
    }

    #[test]
    fn empty_range_is_refused() {
        let t = from_ms(1_000);
        assert!(TimeRange::new(t, t).is_err());
        assert!(TimeRange::new(t, from_ms(1_001)).is_ok());
    }
}
