//! The value types of statistics rows on their way out: decimals that read
//! exactly on both backends and serialise as JSON numbers, and the daily
//! bucket that is a DATE in the table and an instant on the wire.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::{ColIdx, QueryResult, TryGetError, TryGetable};
use serde::{Serialize, Serializer};

use crate::types::day_start;

/// A decimal with `SCALE` places, as its column stores it.
///
/// Read through `Decimal` (MySQL returns DECIMAL exactly; SQLite keeps it
/// as REAL or INTEGER, read as `f64`) and rounded to the column's scale,
/// which removes the binary noise a REAL carries (0.016667, not
/// 0.016666999999999998). Serialised as a JSON number: dashboards call
/// number methods on every quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fixed<const SCALE: u32>(Decimal);

/// GPU-hours, DECIMAL(16,6).
pub type Hours = Fixed<6>;
/// GPU-seconds, DECIMAL(18,3).
pub type Seconds = Fixed<3>;
/// Average GPUs per task, DECIMAL(10,2).
pub type Average = Fixed<2>;
/// A fraction such as a utilisation rate, DECIMAL(14,4).
pub type Rate = Fixed<4>;

impl<const SCALE: u32> Fixed<SCALE> {
    /// Rounds half away from zero to the scale, like the database's own
    /// rounding on insert.
    pub fn new(d: Decimal) -> Self {
        Self(d.round_dp_with_strategy(SCALE, RoundingStrategy::MidpointAwayFromZero))
    }

    pub fn decimal(self) -> Decimal {
        self.0
    }

    pub fn to_f64(self) -> f64 {
        self.0.to_f64().unwrap_or(0.0)
    }
}

impl<const SCALE: u32> From<Fixed<SCALE>> for f64 {
    fn from(v: Fixed<SCALE>) -> f64 {
        v.to_f64()
    }
}

impl<const SCALE: u32> PartialEq<f64> for Fixed<SCALE> {
    fn eq(&self, other: &f64) -> bool {
        self.to_f64() == *other
    }
}

impl<const SCALE: u32> fmt::Display for Fixed<SCALE> {
    /// The shortest decimal that reads back as the same value: `3`, `0.5`,
    /// `5.567778` (as the JSON number shows it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_f64())
    }
}

impl<const SCALE: u32> Serialize for Fixed<SCALE> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.to_f64())
    }
}

impl<const SCALE: u32> TryGetable for Fixed<SCALE> {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        Decimal::try_get_by(res, idx).map(Self::new)
    }
}

/// A daily bucket: a DATE in the table, its UTC midnight on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub NaiveDate);

impl From<Day> for DateTime<Utc> {
    fn from(d: Day) -> Self {
        day_start(d.0)
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        DateTime::<Utc>::from(*self).serialize(s)
    }
}

impl TryGetable for Day {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        NaiveDate::try_get_by(res, idx).map(Day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_and_prints_like_the_column() {
        let h = Hours::new(Decimal::new(16_666_999_999, 12));
        assert_eq!(h.decimal(), Decimal::new(16_667, 6));
        assert_eq!(h.to_string(), "0.016667");
        assert_eq!(Hours::new(Decimal::from(3)).to_string(), "3");
        assert_eq!(
            serde_json::to_string(&Average::new(Decimal::new(1005, 3))).unwrap(),
            "1.01"
        );
        assert!(Rate::new(Decimal::new(5, 1)) == 0.5);
    }
}
