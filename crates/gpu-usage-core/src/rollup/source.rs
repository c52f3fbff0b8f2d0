//! Reading a chunk's source and computing its buckets.
//!
//! A task adds GPU time to every chunk it overlaps, so reading each chunk's
//! records as "everything overlapping it" reads a long task once per chunk
//! and every short one in the window the longest task imposes (hours past
//! the chunk's end). The [`Reader`] goes newest chunk first instead: it
//! reads the records completing in the chunk, and the ones still running
//! at the chunk's end come from the chunk after it (read just before),
//! carried back; only the first chunk of a contiguous run asks the
//! database for tasks running across its end.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::compute::{self, Buckets, RecordSlice, SessionSlice};
use super::{Source, store};
use crate::error::{DomainError, Result};
use crate::level::{Hourly, Minute};
use crate::types::{Granularity, TimeRange};

/// What one chunk is computed from.
pub(super) enum Input {
    /// Rows of the finer level, to fold.
    Finer(Buckets),
    /// Records and worker sessions, to spread over minutes (and fold up to
    /// the level).
    Sources(Vec<RecordSlice>, Vec<SessionSlice>),
}

/// Reads chunks of one level, newest first.
pub(super) struct Reader {
    level: Granularity,
    /// Records read so far that started before `.0`, the start of the
    /// chunk read last.
    carry: Option<(DateTime<Utc>, Vec<RecordSlice>)>,
}

impl Reader {
    pub(super) fn new(level: Granularity) -> Self {
        Self { level, carry: None }
    }

    pub(super) async fn read(
        &mut self,
        db: &impl ConnectionTrait,
        chunk: TimeRange,
        source: Source,
    ) -> Result<Input> {
        Ok(match (self.level, source) {
            (Granularity::Hourly, Source::Finer) => {
                Input::Finer(store::read_buckets::<Minute>(db, chunk).await?)
            }
            (Granularity::Daily, Source::Finer) => {
                Input::Finer(store::read_buckets::<Hourly>(db, chunk).await?)
            }
            (_, _) => Input::Sources(
                self.records(db, chunk).await?,
                store::read_sessions(db, chunk).await?,
            ),
        })
    }

    /// Every record overlapping `chunk` (`completed_at >= start AND
    /// started_at < end`), each read from the database once per run.
    async fn records(
        &mut self,
        db: &impl ConnectionTrait,
        chunk: TimeRange,
    ) -> Result<Vec<RecordSlice>> {
        let running_at_end = match self.carry.take() {
            Some((start, carried)) if start == chunk.end() => carried,
            _ => store::read_records_running_at(db, chunk.end()).await?,
        };
        let mut records = store::read_records_completing(db, chunk).await?;
        records.extend(running_at_end);
        let carried = records
            .iter()
            .filter(|r| r.started_at < chunk.start())
            .cloned()
            .collect();
        self.carry = Some((chunk.start(), carried));
        Ok(records)
    }
}

/// The level's buckets of one chunk, computed on a blocking thread so the
/// next chunk's read proceeds meanwhile.
pub(super) async fn compute_chunk(
    level: Granularity,
    chunk: TimeRange,
    input: Input,
) -> Result<Buckets> {
    let work = move || match input {
        Input::Finer(finer) => compute::fold(&finer, level),
        Input::Sources(records, sessions) => {
            let mut buckets = compute::minutes_from_sources(&records, &sessions, chunk);
            for coarser in [Granularity::Hourly, Granularity::Daily] {
                if coarser <= level {
                    buckets = compute::fold(&buckets, coarser);
                }
            }
            buckets
        }
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DomainError::Panicked(e.to_string()))
}
