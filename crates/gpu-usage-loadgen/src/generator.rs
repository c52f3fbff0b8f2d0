//! The entry point: a configuration turned into a fleet, and the streams
//! of records, sessions and heartbeats over any range.

use std::sync::Arc;
use std::time::Duration;

use crate::arrivals::Intensity;
use crate::catalog::Fleet;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::records::Records;
use crate::sessions::{Heartbeats, Sessions};
use crate::time::TimeRange;

/// What every stream shares; behind an `Arc` so the iterators own it.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) fleet: Fleet,
    pub(crate) intensity: Intensity,
    pub(crate) chunk_ms: i64,
}

/// A seeded generator. Cheap to clone; its iterators are `Send + 'static`.
///
/// Every output is a pure function of the configuration and the instants
/// asked for: `records(a..b)` followed by `records(b..c)` yields exactly
/// `records(a..c)`, and the sessions of any range agree with the workers
/// the records are attributed to.
#[derive(Debug, Clone)]
pub struct Generator {
    inner: Arc<Inner>,
}

impl Generator {
    /// Validates the configuration and draws the fleet.
    pub fn new(config: Config) -> Result<Self> {
        config.validate()?;
        let fleet = Fleet::build(&config);
        let intensity = Intensity::new(config.rate, config.daily_cycle);
        Ok(Self {
            inner: Arc::new(Inner {
                chunk_ms: intensity.chunk_ms(),
                intensity,
                fleet,
                config,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The specs, endpoints and workers the output refers to.
    pub fn fleet(&self) -> &Fleet {
        &self.inner.fleet
    }

    /// The records whose `completed_at` lies in `range`, in completion
    /// order (ties: generation order). `started_at` may precede the range.
    pub fn records(&self, range: TimeRange) -> Records {
        Records::new(Arc::clone(&self.inner), range)
    }

    /// Expected number of records in `range` (the mean of the Poisson
    /// count `records(range)` yields).
    pub fn expected_records(&self, range: TimeRange) -> f64 {
        self.inner
            .intensity
            .cumulative(range.start_ms(), range.seconds())
    }

    /// The worker sessions overlapping `range` (and starting before the
    /// configuration's `now`), ordered by `started_at`. A session keeps its
    /// true start and end even where they lie outside the range; it is open
    /// (`ended_at: None`) when it is still up at `now`. Sessions of one
    /// worker never overlap.
    pub fn sessions(&self, range: TimeRange) -> Sessions {
        Sessions::new(Arc::clone(&self.inner), range)
    }

    /// Heartbeats inside `range` (and before `now`), ordered by `at`: every
    /// `interval` from each session's start while it is up.
    pub fn heartbeats(&self, range: TimeRange, interval: Duration) -> Result<Heartbeats> {
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        if !(1_000..=3_600_000).contains(&interval_ms) {
            return Err(Error::Config(format!(
                "the heartbeat interval must be 1 s to 1 h, got {interval:?}"
            )));
        }
        Ok(Heartbeats::new(Arc::clone(&self.inner), range, interval_ms))
    }
}
