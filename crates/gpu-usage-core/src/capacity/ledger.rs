//! The sessions one capacity operation works on, loaded inside its
//! transaction (row-locked on MySQL, so reports of one worker are applied
//! one after another), changed in memory by the rules in
//! [`super::rules`], and written back with the minutes whose available
//! GPU time changed queued for the rollups.
//!
//! Every operation first *settles* what it loaded: an open session silent
//! for longer than the limit is ended at its latest heartbeat plus one
//! interval, and an open session counts up to
//! `min(now, last_seen + interval)`. Which operation settles a session
//! first (a report, a heartbeat or the periodic job) does not change the
//! outcome.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QuerySelect, Set,
};

use super::wire::Offer;
use crate::entities::worker_session;
use crate::error::Result;
use crate::rollup::pending;
use crate::settings::CapacitySettings;
use crate::types::{Granularity, TimeRange};

/// One session as an operation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `None` until inserted.
    pub id: Option<i64>,
    pub worker_id: String,
    pub offer: Offer,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub last_seen: DateTime<Utc>,
    pub counted_until: DateTime<Utc>,
    /// As loaded, to tell what changed; `None` for a new session.
    loaded: Option<Loaded>,
}

/// The columns an operation may change, as loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loaded {
    counted_until: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    last_seen: DateTime<Utc>,
}

impl Stored {
    /// A session not in the database yet.
    pub fn new(
        worker_id: String,
        offer: Offer,
        started_at: DateTime<Utc>,
        ended_at: Option<DateTime<Utc>>,
        last_seen: DateTime<Utc>,
    ) -> Self {
        Stored {
            id: None,
            worker_id,
            offer,
            started_at,
            ended_at,
            last_seen,
            counted_until: started_at,
            loaded: None,
        }
    }

    fn from_model(m: worker_session::Model) -> Self {
        Stored {
            id: Some(m.id),
            offer: Offer {
                endpoint: m.endpoint,
                spec_name: m.spec_name,
                gpu_type: m.gpu_type,
                gpu_count: m.gpu_count,
            },
            worker_id: m.worker_id,
            started_at: m.started_at,
            ended_at: m.ended_at,
            last_seen: m.last_seen,
            counted_until: m.counted_until,
            loaded: Some(Loaded {
                counted_until: m.counted_until,
                ended_at: m.ended_at,
                last_seen: m.last_seen,
            }),
        }
    }

    /// The end for overlap checks: open sessions reach into the future.
    pub fn end_or_max(&self) -> DateTime<Utc> {
        self.ended_at.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Half-open intervals: touching sessions do not overlap, and a
    /// zero-length one overlaps nothing.
    pub fn overlaps(&self, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> bool {
        let end = end.unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mine = self.end_or_max();
        self.started_at < end && start < mine && start < end && self.started_at < mine
    }

    /// Ends a silent open session and brings `counted_until` to where the
    /// session vouches for GPUs at `now`.
    pub fn settle(&mut self, now: DateTime<Utc>, cfg: &CapacitySettings) {
        if self.ended_at.is_none() && now - self.last_seen > cfg.silence_limit() {
            self.ended_at = Some((self.last_seen + cfg.interval()).max(self.started_at));
        }
        self.counted_until = match self.ended_at {
            Some(end) => end,
            None => (self.last_seen + cfg.interval())
                .min(now)
                .max(self.started_at)
                .max(self.counted_until),
        };
    }

    /// The minutes whose available GPU time this session's change moves.
    fn changed_range(&self) -> Option<TimeRange> {
        let (from, to) = match self.loaded {
            None => (self.started_at, self.counted_until),
            Some(l) => (
                l.counted_until.min(self.counted_until),
                l.counted_until.max(self.counted_until),
            ),
        };
        TimeRange::new(from, to).ok()
    }

    fn is_changed(&self) -> bool {
        self.loaded != Some(self.current())
    }

    fn current(&self) -> Loaded {
        Loaded {
            counted_until: self.counted_until,
            ended_at: self.ended_at,
            last_seen: self.last_seen,
        }
    }
}

/// The loaded sessions, by worker, in start order.
#[derive(Debug, Default)]
pub struct Ledger {
    pub workers: BTreeMap<String, Vec<Stored>>,
}

impl Ledger {
    pub fn sessions_of(&mut self, worker: &str) -> &mut Vec<Stored> {
        self.workers.entry(worker.to_owned()).or_default()
    }

    /// Loads the sessions of `workers` that are open or end at or after
    /// `since` (all of them without it), and settles them.
    pub async fn load(
        db: &impl ConnectionTrait,
        workers: impl IntoIterator<Item = String>,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        cfg: &CapacitySettings,
    ) -> Result<Ledger> {
        let mut ledger = Ledger::default();
        let workers: Vec<String> = workers.into_iter().collect();
        for chunk in workers.chunks(500) {
            let mut query = worker_session::Entity::find()
                .filter(worker_session::Column::WorkerId.is_in(chunk.iter().cloned()));
            if let Some(t) = since {
                query = query.filter(
                    Condition::any()
                        .add(worker_session::Column::EndedAt.is_null())
                        .add(worker_session::Column::EndedAt.gte(t)),
                );
            }
            let rows = query.lock_exclusive().all(db).await?;
            ledger.add(rows, now, cfg);
        }
        Ok(ledger)
    }

    /// Every open session, settled (the periodic job).
    pub async fn load_open(
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        cfg: &CapacitySettings,
    ) -> Result<Ledger> {
        let rows = worker_session::Entity::find()
            .filter(worker_session::Column::EndedAt.is_null())
            .lock_exclusive()
            .all(db)
            .await?;
        let mut ledger = Ledger::default();
        ledger.add(rows, now, cfg);
        Ok(ledger)
    }

    fn add(
        &mut self,
        rows: Vec<worker_session::Model>,
        now: DateTime<Utc>,
        cfg: &CapacitySettings,
    ) {
        for m in rows {
            let mut s = Stored::from_model(m);
            s.settle(now, cfg);
            self.sessions_of(&s.worker_id.clone()).push(s);
        }
        for v in self.workers.values_mut() {
            v.sort_by_key(|s| s.started_at);
        }
    }

    /// Writes what changed and queues the minutes it moves. Returns the
    /// number of sessions inserted and updated.
    pub async fn write(
        self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
    ) -> Result<(usize, usize)> {
        let mut ranges = Vec::new();
        let mut inserts = Vec::new();
        // Sessions whose only change is how far they count, by that value:
        // the periodic job moves most open sessions to the same `now`.
        let mut counted_only: BTreeMap<DateTime<Utc>, Vec<i64>> = BTreeMap::new();
        let mut updates = Vec::new();
        for s in self.workers.into_values().flatten() {
            if !s.is_changed() {
                continue;
            }
            ranges.extend(s.changed_range());
            match (s.id, s.loaded) {
                (None, _) => inserts.push(insert_row(s, now)),
                (Some(id), Some(l)) if l.ended_at == s.ended_at && l.last_seen == s.last_seen => {
                    counted_only.entry(s.counted_until).or_default().push(id);
                }
                (Some(_), _) => updates.push(s),
            }
        }
        let (inserted, mut updated) = (inserts.len(), updates.len());
        for chunk in inserts.chunks(500) {
            worker_session::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(db)
                .await?;
        }
        for s in updates {
            update_row(db, s, now).await?;
        }
        for (counted, ids) in counted_only {
            updated += ids.len();
            for chunk in ids.chunks(500) {
                worker_session::Entity::update_many()
                    .col_expr(worker_session::Column::CountedUntil, Expr::value(counted))
                    .col_expr(worker_session::Column::UpdatedAt, Expr::value(now))
                    .filter(worker_session::Column::Id.is_in(chunk.iter().copied()))
                    .exec(db)
                    .await?;
            }
        }
        pending::mark(db, Granularity::Minute, ranges, now).await?;
        Ok((inserted, updated))
    }
}

fn insert_row(s: Stored, now: DateTime<Utc>) -> worker_session::ActiveModel {
    worker_session::ActiveModel {
        id: NotSet,
        worker_id: Set(s.worker_id),
        endpoint: Set(s.offer.endpoint),
        spec_name: Set(s.offer.spec_name),
        gpu_type: Set(s.offer.gpu_type),
        gpu_count: Set(s.offer.gpu_count),
        started_at: Set(s.started_at),
        ended_at: Set(s.ended_at),
        last_seen: Set(s.last_seen),
        counted_until: Set(s.counted_until),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

async fn update_row(db: &impl ConnectionTrait, s: Stored, now: DateTime<Utc>) -> Result<()> {
    let Some(id) = s.id else { return Ok(()) };
    worker_session::Entity::update_many()
        .col_expr(worker_session::Column::EndedAt, Expr::value(s.ended_at))
        .col_expr(worker_session::Column::LastSeen, Expr::value(s.last_seen))
        .col_expr(
            worker_session::Column::CountedUntil,
            Expr::value(s.counted_until),
        )
        .col_expr(worker_session::Column::UpdatedAt, Expr::value(now))
        .filter(worker_session::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}
