//! Keyset cursors: opaque to clients, bound to the query they came from.
//!
//! A statistics cursor names the last row returned by its key, (bucket,
//! scope value) — unique per level and scope type. No row id: a recompute
//! deletes and re-inserts rows, and a rewritten row with a new id must not
//! come back on the next page.

use chrono::{DateTime, Utc};

use sea_orm::{ColumnTrait, Condition};

use crate::error::{DomainError, Result};
use crate::types::{Granularity, ScopeType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatsCursor {
    pub level: Granularity,
    pub scope_type: ScopeType,
    pub bucket: DateTime<Utc>,
    /// `None` exactly for global rows.
    pub scope_value: Option<String>,
}

pub(crate) fn bad_cursor() -> DomainError {
    DomainError::invalid(
        "cursor",
        "not a cursor returned by this query; start again without it",
    )
}

/// A cursor's `|`-separated parts: exactly `N`, the first being `tag` (the
/// last may hold `|` itself).
fn parts<const N: usize>(s: &str, tag: &str) -> Result<[String; N]> {
    let text = hex_decode(s).ok_or_else(bad_cursor)?;
    let parts: Vec<String> = text.splitn(N, '|').map(str::to_owned).collect();
    let parts: [String; N] = parts.try_into().map_err(|_| bad_cursor())?;
    if parts.first().map(String::as_str) != Some(tag) {
        return Err(bad_cursor());
    }
    Ok(parts)
}

/// A cursor's time: milliseconds since the epoch.
fn millis(s: &str) -> Result<DateTime<Utc>> {
    s.parse::<i64>()
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .ok_or_else(bad_cursor)
}

impl StatsCursor {
    pub fn encode(&self) -> String {
        let value = match &self.scope_value {
            None => "-".to_owned(),
            Some(v) => format!("={v}"),
        };
        hex_encode(&format!(
            "s2|{}|{}|{}|{value}",
            self.level,
            self.scope_type,
            self.bucket.timestamp_millis()
        ))
    }

    /// Refuses cursors of another level or scope type: their keys would
    /// silently skip or repeat rows of this query.
    pub fn decode(s: &str, level: Granularity, scope_type: ScopeType) -> Result<Self> {
        let [_, l, st, bucket, value] = parts(s, "s2")?;
        if l != level.as_str() || st != scope_type.as_str() {
            return Err(bad_cursor());
        }
        let bucket = millis(&bucket)?;
        let scope_value = match (value.split_at_checked(1), scope_type) {
            (Some(("-", "")), ScopeType::Global) => None,
            (Some(("=", v)), ScopeType::Endpoint | ScopeType::Spec) => Some(v.to_owned()),
            _ => return Err(bad_cursor()),
        };
        Ok(Self {
            level,
            scope_type,
            bucket,
            scope_value,
        })
    }
}

/// A cursor of a list ordered by (time, id): raw records by completed_at
/// (tag `r1`), worker sessions by started_at (tag `w1`). The tag binds it
/// to its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeIdCursor {
    pub at: DateTime<Utc>,
    pub id: i64,
}

pub(crate) const RECORDS: &str = "r1";
pub(crate) const SESSIONS: &str = "w1";

impl TimeIdCursor {
    pub fn encode(&self, tag: &str) -> String {
        hex_encode(&format!("{tag}|{}|{}", self.at.timestamp_millis(), self.id))
    }

    pub fn decode(s: &str, tag: &str) -> Result<Self> {
        let [_, t, id] = parts(s, tag)?;
        let at = millis(&t)?;
        let id = id.parse::<i64>().map_err(|_| bad_cursor())?;
        Ok(Self { at, id })
    }

    /// Rows after this cursor in (time, id) order.
    pub fn after(&self, time: impl ColumnTrait, id: impl ColumnTrait) -> Condition {
        Condition::any()
            .add(time.gt(self.at))
            .add(Condition::all().add(time.eq(self.at)).add(id.gt(self.id)))
    }
}

fn hex_encode(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<String> {
    // Cursors are short; a bound keeps a hostile one from costing memory.
    if !s.len().is_multiple_of(2) || s.len() > 4096 {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::types::parse_utc("t", s).unwrap()
    }

    #[test]
    fn stats_cursor_round_trips_and_is_bound_to_its_query() {
        let c = StatsCursor {
            level: Granularity::Hourly,
            scope_type: ScopeType::Endpoint,
            bucket: t("2026-01-01T05:00:00Z"),
            scope_value: Some("ep|with|pipes".to_owned()),
        };
        let s = c.encode();
        assert!(s.chars().all(|ch| ch.is_ascii_hexdigit()));
        assert_eq!(
            StatsCursor::decode(&s, Granularity::Hourly, ScopeType::Endpoint).unwrap(),
            c
        );
        assert!(StatsCursor::decode(&s, Granularity::Minute, ScopeType::Endpoint).is_err());
        assert!(StatsCursor::decode(&s, Granularity::Hourly, ScopeType::Spec).is_err());

        let d = StatsCursor {
            level: Granularity::Daily,
            scope_type: ScopeType::Global,
            bucket: t("2026-01-02T00:00:00Z"),
            scope_value: None,
        };
        assert_eq!(
            StatsCursor::decode(&d.encode(), Granularity::Daily, ScopeType::Global).unwrap(),
            d
        );
    }

    #[test]
    fn garbage_cursors_are_invalid_input() {
        for bad in [
            "",
            "zz",
            "abc",
            "00",
            &hex_encode("s1|minute|global|x|1|k"),
            &hex_encode("s2|minute|global|1|=x"),
            &hex_encode("r1|1"),
        ] {
            assert!(matches!(
                StatsCursor::decode(bad, Granularity::Minute, ScopeType::Global),
                Err(DomainError::Invalid { .. })
            ));
            assert!(matches!(
                TimeIdCursor::decode(bad, RECORDS),
                Err(DomainError::Invalid { .. })
            ));
        }
        let r = TimeIdCursor {
            at: t("2026-01-01T00:00:00.123Z"),
            id: 9,
        };
        assert_eq!(
            TimeIdCursor::decode(&r.encode(RECORDS), RECORDS).unwrap(),
            r
        );
        assert!(TimeIdCursor::decode(&r.encode(SESSIONS), RECORDS).is_err());
    }
}
