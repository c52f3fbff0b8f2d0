//! The domain's vocabulary as types: scopes, granularities, statuses and
//! validated time ranges. Parsing happens once, at the edge.

use chrono::{DateTime, Datelike, Duration, DurationRound, NaiveDate, TimeDelta, Timelike, Utc};
use sea_orm::sea_query::StringLen;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

use crate::error::DomainError;

stored_enum! {
    /// Kind of statistics scope.
    pub enum ScopeType {
        Global = "global",
        Endpoint = "endpoint",
        Spec = "spec",
    }
}

impl FromStr for ScopeType {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScopeType::from_text(s).ok_or_else(|| unknown("scope_type", s, &ScopeType::ALL))
    }
}

/// "unknown x; expected a, b or c", for a parameter that takes one of
/// `values`.
fn unknown<T: fmt::Display>(field: &str, got: &str, values: &[T]) -> DomainError {
    let names: Vec<String> = values.iter().map(ToString::to_string).collect();
    let expected = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    let got = got.trim().to_ascii_lowercase();
    DomainError::invalid(
        field,
        format!("unknown {field} {got:?}; expected {expected}"),
    )
}

/// One concrete scope: the key of a statistics row besides its bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Global,
    Endpoint(String),
    Spec(String),
}

impl Scope {
    pub fn scope_type(&self) -> ScopeType {
        match self {
            Scope::Global => ScopeType::Global,
            Scope::Endpoint(_) => ScopeType::Endpoint,
            Scope::Spec(_) => ScopeType::Spec,
        }
    }

    /// The `scope_value` column: NULL exactly for global.
    pub fn value(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Endpoint(v) | Scope::Spec(v) => Some(v),
        }
    }

    pub fn from_parts(scope_type: ScopeType, value: Option<String>) -> Result<Self, DomainError> {
        match (scope_type, value) {
            (ScopeType::Global, None) => Ok(Scope::Global),
            (ScopeType::Global, Some(_)) => Err(DomainError::invalid(
                "scope_value",
                "scope_value must be omitted for the global scope",
            )),
            (ScopeType::Endpoint, Some(v)) => Ok(Scope::Endpoint(v)),
            (ScopeType::Spec, Some(v)) => Ok(Scope::Spec(v)),
            (t, None) => Err(DomainError::invalid(
                "scope_value",
                format!("a {t} scope needs a scope_value"),
            )),
        }
    }

    /// The scopes a record counts in: always global and its endpoint; its spec
    /// unless the spec name is NULL or empty.
    pub fn of_record(endpoint: &str, spec_name: Option<&str>) -> impl Iterator<Item = Scope> {
        let spec = spec_name
            .filter(|s| !s.is_empty())
            .map(|s| Scope::Spec(s.to_owned()));
        [
            Some(Scope::Global),
            Some(Scope::Endpoint(endpoint.to_owned())),
            spec,
        ]
        .into_iter()
        .flatten()
    }
}

/// What a query asks for: a scope type and optionally one value of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeFilter {
    pub scope_type: ScopeType,
    pub value: Option<String>,
}

impl ScopeFilter {
    pub fn new(scope_type: ScopeType, value: Option<String>) -> Result<Self, DomainError> {
        if scope_type == ScopeType::Global && value.is_some() {
            return Err(DomainError::invalid(
                "scope_value",
                "scope_value must be omitted for the global scope",
            ));
        }
        if let Some(v) = &value
            && (v.is_empty() || v.chars().count() > 255)
        {
            return Err(DomainError::invalid(
                "scope_value",
                "scope_value must be 1 to 255 characters",
            ));
        }
        Ok(Self { scope_type, value })
    }

    pub fn global() -> Self {
        Self {
            scope_type: ScopeType::Global,
            value: None,
        }
    }
}

stored_enum! {
    /// Statistics level.
    pub enum Granularity {
        Minute = "minute",
        Hourly = "hourly",
        Daily = "daily",
    }
}

impl Granularity {
    pub fn bucket_len(self) -> TimeDelta {
        match self {
            Granularity::Minute => TimeDelta::minutes(1),
            Granularity::Hourly => TimeDelta::hours(1),
            Granularity::Daily => TimeDelta::days(1),
        }
    }

    /// Start of the bucket holding `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        // duration_trunc only fails for out-of-range timestamps, which
        // validated input never has; fall back to `t` rather than panic.
        t.duration_trunc(self.bucket_len()).unwrap_or(t)
    }

    /// Smallest bucket start ≥ `t`.
    pub fn ceil(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let f = self.floor(t);
        if f == t { f } else { f + self.bucket_len() }
    }

    /// The next coarser level, whose buckets this level feeds.
    pub fn coarser(self) -> Option<Granularity> {
        match self {
            Granularity::Minute => Some(Granularity::Hourly),
            Granularity::Hourly => Some(Granularity::Daily),
            Granularity::Daily => None,
        }
    }

    /// How long this level's rows are kept; `None` = forever.
    pub fn retention(self, r: &crate::settings::RetentionSettings) -> Option<TimeDelta> {
        crate::settings::RetentionSettings::keep(match self {
            Granularity::Minute => r.minute_days,
            Granularity::Hourly => r.hourly_days,
            Granularity::Daily => r.daily_days,
        })
    }

    pub fn table_name(self) -> &'static str {
        match self {
            Granularity::Minute => "gpu_usage_statistics_minute",
            Granularity::Hourly => "gpu_usage_statistics_hourly",
            Granularity::Daily => "gpu_usage_statistics_daily",
        }
    }
}

impl FromStr for Granularity {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The original API spelled hourly and daily `hour` and `day`.
        let alias = match s.trim().to_ascii_lowercase().as_str() {
            "hour" => Some(Granularity::Hourly),
            "day" => Some(Granularity::Daily),
            _ => None,
        };
        alias
            .or_else(|| Granularity::from_text(s))
            .ok_or_else(|| unknown("granularity", s, &Levels::ALL))
    }
}

stored_enum! {
    /// Which levels a recomputation covers: one of them, or every level (run
    /// finest first, because each is built from the one below).
    pub enum Levels {
        All = "all",
        Minute = "minute",
        Hourly = "hourly",
        Daily = "daily",
    }
}

impl Levels {
    /// The levels covered, finest first.
    pub fn levels(self) -> &'static [Granularity] {
        match self {
            Levels::All => &Granularity::ALL,
            Levels::Minute => &[Granularity::Minute],
            Levels::Hourly => &[Granularity::Hourly],
            Levels::Daily => &[Granularity::Daily],
        }
    }
}

impl From<Granularity> for Levels {
    fn from(g: Granularity) -> Self {
        match g {
            Granularity::Minute => Levels::Minute,
            Granularity::Hourly => Levels::Hourly,
            Granularity::Daily => Levels::Daily,
        }
    }
}

impl FromStr for Levels {
    type Err = DomainError;
    /// `all`, or a granularity (with the original API's `hour`/`day`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(Levels::All);
        }
        s.parse::<Granularity>().map(Levels::from)
    }
}

stored_enum! {
    /// Outcome of a finished task.
    pub enum TaskStatus {
        Completed = "COMPLETED",
        Failed = "FAILED",
    }
}

impl FromStr for TaskStatus {
    type Err = DomainError;
    /// Any letter case is accepted; the stored form is upper case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::from_text(s).ok_or_else(|| {
            let got = s.trim().to_ascii_uppercase();
            DomainError::invalid(
                "status",
                format!("unknown status {got:?}; expected COMPLETED or FAILED"),
            )
        })
    }
}

/// Truncate to whole milliseconds: the precision of every stored timestamp.
pub fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

/// The years a timestamp may fall in (UTC).
pub const FIRST_YEAR: i32 = 1970;
pub const LAST_YEAR: i32 = 2037;

/// Parse an RFC 3339 timestamp with an explicit offset into UTC, truncated to
/// milliseconds. Naive timestamps are refused: their zone would be a guess.
pub fn parse_utc(field: &'static str, s: &str) -> Result<DateTime<Utc>, DomainError> {
    let t = DateTime::parse_from_rfc3339(s.trim()).map_err(|e| {
        DomainError::invalid(
            field,
            format!("{s:?} is not an RFC 3339 timestamp with an offset ({e})"),
        )
    })?;
    // chrono keeps second 60 as a leap second (nanoseconds ≥ 1e9), which no
    // bucket arithmetic accounts for: its GPU time would vanish.
    if t.nanosecond() >= 1_000_000_000 {
        return Err(DomainError::invalid(
            field,
            format!("{s:?} has second 60; seconds must be 0 to 59"),
        ));
    }
    let t = to_millis(t.with_timezone(&Utc));
    // The MySQL driver carries instants as TIMESTAMP, which ends at
    // 2038-01-19 (later ones arrive as NULL); ranges are widened to whole
    // days and reads look a week past their end, so the last accepted year
    // is 2037. Nothing this service accounts for predates 1970.
    if !(FIRST_YEAR..=LAST_YEAR).contains(&t.year()) {
        return Err(DomainError::invalid(
            field,
            format!("{s:?} is outside the supported years {FIRST_YEAR} to {LAST_YEAR}"),
        ));
    }
    Ok(t)
}

/// A half-open UTC interval `[start, end)` with `start < end`. Built only
/// through [`TimeRange::new`]; serialised as `{start_time, end_time}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
pub struct TimeRange {
    #[serde(rename = "start_time")]
    start: DateTime<Utc>,
    #[serde(rename = "end_time")]
    end: DateTime<Utc>,
}

impl TimeRange {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, DomainError> {
        if start >= end {
            return Err(DomainError::invalid(
                "start_time",
                format!("start_time {start} must be before end_time {end}"),
            ));
        }
        Ok(Self { start, end })
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    /// Widened outward to whole buckets of `g`.
    pub fn align(&self, g: Granularity) -> TimeRange {
        TimeRange {
            start: g.floor(self.start),
            end: g.ceil(self.end),
        }
    }

    /// Split into consecutive pieces of at most `len`, aligned to `len`
    /// boundaries from the epoch (so days split on midnight).
    pub fn chunks(&self, len: TimeDelta) -> Vec<TimeRange> {
        let mut out = Vec::new();
        let mut s = self.start;
        while s < self.end {
            let next_boundary = s.duration_trunc(len).map(|f| f + len).unwrap_or(self.end);
            let e = next_boundary.min(self.end);
            out.push(TimeRange { start: s, end: e });
            s = e;
        }
        out
    }

    /// Intersection, if not empty.
    pub fn clip_start(&self, from: DateTime<Utc>) -> Option<TimeRange> {
        let start = self.start.max(from);
        (start < self.end).then_some(TimeRange {
            start,
            end: self.end,
        })
    }
}

impl fmt::Display for TimeRange {
    /// `[start, end)` in RFC 3339 UTC.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        write!(f, "[{}, {})", t(self.start), t(self.end))
    }
}

/// Calendar day as stored in the daily table.
pub fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

pub fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0)
        .map(|n| n.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_offset_to_utc_millis() {
        let t = parse_utc("t", "2026-01-01T10:00:00.123456+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-01T08:00:00.123+00:00");
        assert!(parse_utc("t", "2026-01-01T10:00:00").is_err());
        assert!(parse_utc("t", "yesterday").is_err());
        assert!(parse_utc("t", "9999-12-31T00:00:00Z").is_err());
        assert!(parse_utc("t", "2038-01-01T00:00:00Z").is_err());
        assert!(parse_utc("t", "2037-12-31T23:59:59Z").is_ok());
        assert!(parse_utc("t", "0001-01-01T00:00:00Z").is_err());
        let leap = parse_utc("completed_at", "2026-01-01T10:03:60.5Z").unwrap_err();
        assert!(leap.to_string().contains("second 60"), "{leap}");
        assert!(parse_utc("t", "2026-01-01T10:03:59.999Z").is_ok());
    }

    #[test]
    fn enums_parse_strictly() {
        assert_eq!("Failed".parse::<TaskStatus>().unwrap(), TaskStatus::Failed);
        assert!("RUNNING".parse::<TaskStatus>().is_err());
        assert_eq!("hour".parse::<Granularity>().unwrap(), Granularity::Hourly);
        assert!("week".parse::<Granularity>().is_err());
        assert_eq!("ALL".parse::<Levels>().unwrap(), Levels::All);
        assert_eq!(
            "day".parse::<Levels>().unwrap().levels(),
            [Granularity::Daily]
        );
        assert!("worker".parse::<ScopeType>().is_err());
    }

    #[test]
    fn chunks_split_on_day_boundaries() {
        let s = parse_utc("s", "2026-01-01T12:00:00Z").unwrap();
        let e = parse_utc("e", "2026-01-03T06:00:00Z").unwrap();
        let chunks = TimeRange::new(s, e).unwrap().chunks(TimeDelta::days(1));
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].start().to_rfc3339(), "2026-01-02T00:00:00+00:00");
        assert_eq!(chunks[2].end(), e);
    }

    #[test]
    fn spec_scope_skips_null_and_empty() {
        assert_eq!(Scope::of_record("e", Some("")).count(), 2);
        assert_eq!(Scope::of_record("e", None).count(), 2);
        assert_eq!(Scope::of_record("e", Some("a100")).count(), 3);
    }
}
