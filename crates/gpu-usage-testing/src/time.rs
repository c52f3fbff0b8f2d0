//! Time in the tests' own unit: UTC epoch milliseconds.

use chrono::{DateTime, Utc};
use gpu_usage_core::types::TimeRange;

pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 86_400_000;

/// UTC instant from epoch milliseconds.
pub fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("timestamp in range")
}

/// Epoch milliseconds of an RFC 3339 string (tests' own literals).
pub fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test timestamp {s:?}: {e}"))
        .timestamp_millis()
}

/// Start of the `len`-bucket holding `t` (UTC epoch ms; days start at UTC
/// midnight because the epoch does).
pub fn floor(t: i64, len: i64) -> i64 {
    t.div_euclid(len) * len
}

pub fn range(start_ms: i64, end_ms: i64) -> TimeRange {
    TimeRange::new(at(start_ms), at(end_ms)).expect("start < end")
}
