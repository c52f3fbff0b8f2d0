//! The service's jobs: what each is called, and the one protocol every
//! runner follows (see [`run`]).

use std::fmt;
use std::str::FromStr;

use sea_orm::sea_query::StringLen;

use crate::error::DomainError;
use crate::types::Granularity;

/// Every job that must not run twice at once.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(64))")]
pub enum JobName {
    #[serde(rename = "rollup_minute")]
    #[sea_orm(string_value = "rollup_minute")]
    MinuteRollup,
    #[serde(rename = "rollup_hourly")]
    #[sea_orm(string_value = "rollup_hourly")]
    HourlyRollup,
    #[serde(rename = "rollup_daily")]
    #[sea_orm(string_value = "rollup_daily")]
    DailyRollup,
    #[serde(rename = "cleanup")]
    #[sea_orm(string_value = "cleanup")]
    Cleanup,
    /// Claiming and running tracked backfill jobs.
    #[serde(rename = "backfill")]
    #[sea_orm(string_value = "backfill")]
    Backfill,
}

impl JobName {
    pub const ALL: [JobName; 5] = [
        JobName::MinuteRollup,
        JobName::HourlyRollup,
        JobName::DailyRollup,
        JobName::Cleanup,
        JobName::Backfill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobName::MinuteRollup => "rollup_minute",
            JobName::HourlyRollup => "rollup_hourly",
            JobName::DailyRollup => "rollup_daily",
            JobName::Cleanup => "cleanup",
            JobName::Backfill => "backfill",
        }
    }

    /// The periodic rollup job of a level.
    pub fn rollup(level: Granularity) -> JobName {
        match level {
            Granularity::Minute => JobName::MinuteRollup,
            Granularity::Hourly => JobName::HourlyRollup,
            Granularity::Daily => JobName::DailyRollup,
        }
    }

    /// The level a rollup job computes.
    pub fn level(self) -> Option<Granularity> {
        match self {
            JobName::MinuteRollup => Some(Granularity::Minute),
            JobName::HourlyRollup => Some(Granularity::Hourly),
            JobName::DailyRollup => Some(Granularity::Daily),
            JobName::Cleanup | JobName::Backfill => None,
        }
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobName {
    type Err = DomainError;
    /// Accepts the stored names and the short forms operators type
    /// (`minute`, `hourly`, `daily`, `cleanup`, `backfill`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        if let Some(job) = JobName::ALL.into_iter().find(|j| j.as_str() == s) {
            return Ok(job);
        }
        match s.as_str() {
            "cleanup" | "retention" => Ok(JobName::Cleanup),
            "backfill" => Ok(JobName::Backfill),
            other => other.parse::<Granularity>().map(JobName::rollup).map_err(|_| {
                DomainError::invalid(
                    "job",
                    format!("unknown job {other:?}; expected minute, hourly, daily, cleanup or backfill"),
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_parse() {
        for job in JobName::ALL {
            assert_eq!(job.as_str().parse::<JobName>().ok(), Some(job));
        }
        assert_eq!(
            "minute".parse::<JobName>().ok(),
            Some(JobName::MinuteRollup)
        );
        assert_eq!(
            "hourly".parse::<JobName>().ok(),
            Some(JobName::HourlyRollup)
        );
        assert_eq!("daily".parse::<JobName>().ok(), Some(JobName::DailyRollup));
        assert!("weekly".parse::<JobName>().is_err());
        assert_eq!(
            JobName::rollup(Granularity::Hourly).level(),
            Some(Granularity::Hourly)
        );
    }
}
