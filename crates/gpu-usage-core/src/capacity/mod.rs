//! Capacity: the GPUs workers made available, from worker sessions.
//!
//! A session (worker_id, started_at) is an interval a worker was up with
//! some GPUs, serving one endpoint. Workers report sessions
//! ([`store_sessions`]: idempotent by (worker_id, started_at); a later
//! report may set or move `ended_at`, nothing else) or heartbeat
//! ([`apply_heartbeats`]: the first heartbeat opens a session, later ones
//! keep it open, a changed offer splits it). An open session counts up to
//! its latest heartbeat plus one interval, never past now; the periodic
//! job ([`advance`]) moves that point forward so current buckets grow
//! live, and ends sessions that fell silent. Every change queues the
//! minutes whose available GPU time it moves, and the rollups recompute
//! them from the sessions table like they do from records.
//!
//! - [`wire`]: the domain types and their JSON forms.
//! - [`rules`]: what a report or a heartbeat does, as pure functions.
//! - [`ledger`]: loading a worker's sessions, settling, writing back.

pub mod ledger;
pub mod rules;
pub mod wire;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionSession, TransactionTrait};
use serde::Serialize;
use utoipa::ToSchema;

use crate::EngineConfig;
use crate::error::{DomainError, RecordProblem, Result};
use crate::fields::Invalid;
use crate::rollup::horizon::oldest_accepted_completion;
use ledger::Ledger;
use rules::{Beat, Reported};
pub use wire::{Heartbeat, HeartbeatJson, Offer, Session, SessionJson};

/// A reported session that was refused; the stored ones are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SessionConflict {
    /// Position in the batch, from 0.
    pub index: usize,
    pub worker_id: String,
    pub started_at: DateTime<Utc>,
    /// The fields at odds with the stored sessions.
    pub fields: Vec<String>,
    pub reason: String,
}

/// What a `POST /workers/sessions` batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SessionReport {
    pub received: usize,
    pub inserted: usize,
    /// Known sessions whose `ended_at` was set or moved.
    pub updated: usize,
    /// Replays (an open one refreshes its last_seen, nothing else).
    pub duplicates: usize,
    pub conflicts: Vec<SessionConflict>,
}

/// What a batch of heartbeats did, shaped like the other ingest answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct HeartbeatReport {
    pub received: usize,
    /// Sessions opened: a worker's first heartbeat, the first after a
    /// silence that ended its session, or one with a changed offer.
    pub inserted: usize,
    /// Heartbeats that kept an open session open.
    pub updated: usize,
    /// Heartbeats not newer than what is known of their worker: ignored.
    pub duplicates: usize,
    /// Always empty: a heartbeat never conflicts with a stored session.
    pub conflicts: Vec<SessionConflict>,
    /// Of `inserted`, the sessions opened because the worker's endpoint,
    /// spec, GPU type or count changed (its previous session was ended at
    /// the heartbeat).
    pub split: usize,
}

/// What one run of the periodic job did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdvanceReport {
    /// Open sessions looked at.
    pub open: usize,
    /// Sessions whose counted time moved (ended ones included).
    pub moved: usize,
    /// Sessions ended for silence.
    pub ended: usize,
}

/// A batch sorted into valid items (with their positions) and problems.
pub struct Sorted<T> {
    pub valid: Vec<(usize, T)>,
    pub problems: Vec<RecordProblem>,
}

/// What the checks against the moment need from a session or heartbeat.
pub trait Report {
    fn worker_id(&self) -> &str;
    /// Its instants, by field.
    fn instants(&self) -> Vec<(&'static str, DateTime<Utc>)>;
    /// Until when it says the worker was up (`None`: still up).
    fn up_until(&self) -> Option<(&'static str, DateTime<Utc>)>;
}

impl Report for Session {
    fn worker_id(&self) -> &str {
        &self.worker_id
    }
    fn instants(&self) -> Vec<(&'static str, DateTime<Utc>)> {
        let mut v = vec![("started_at", self.started_at)];
        v.extend(self.ended_at.map(|e| ("ended_at", e)));
        v
    }
    fn up_until(&self) -> Option<(&'static str, DateTime<Utc>)> {
        self.ended_at.map(|e| ("ended_at", e))
    }
}

impl Report for Heartbeat {
    fn worker_id(&self) -> &str {
        &self.worker_id
    }
    fn instants(&self) -> Vec<(&'static str, DateTime<Utc>)> {
        vec![("at", self.at)]
    }
    fn up_until(&self) -> Option<(&'static str, DateTime<Utc>)> {
        Some(("at", self.at))
    }
}

/// Applies the rules that depend on `now` and the configuration: nothing
/// in the future beyond the clock skew, nothing the rollups could no
/// longer rebuild (up until before the records' retention; open sessions
/// are kept like retention keeps them).
pub fn check<T: Report>(
    items: Vec<Result<T, Invalid>>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Sorted<T> {
    let latest = now + cfg.ingest.clock_skew();
    let oldest = oldest_accepted_completion(now, &cfg.retention);
    let mut out = Sorted {
        valid: Vec::new(),
        problems: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        let (key, problems) = match item {
            Ok(t) => {
                let mut p: Vec<(String, String)> = t
                    .instants()
                    .into_iter()
                    .filter(|(_, at)| *at > latest)
                    .map(|(f, _)| (f.to_owned(), "is in the future".to_owned()))
                    .collect();
                if let Some((field, _)) = t.up_until().filter(|(_, at)| *at < oldest) {
                    p.push((
                        field.to_owned(),
                        format!(
                            "is older than the {}-day record retention",
                            cfg.retention.records_days
                        ),
                    ));
                }
                if p.is_empty() {
                    out.valid.push((index, t));
                    continue;
                }
                (Some(t.worker_id().to_owned()), p)
            }
            Err(invalid) => (invalid.key, invalid.problems),
        };
        out.problems
            .extend(problems.into_iter().map(|(field, message)| RecordProblem {
                index,
                task_id: None,
                worker_id: key.clone(),
                field,
                message,
            }));
    }
    out
}

/// Refuses a batch with any problem whole, and bounds its size.
fn accept<T: Report>(
    what: &'static str,
    items: Vec<Result<T, Invalid>>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<Vec<(usize, T)>> {
    crate::ingest::check_batch_size(items.len(), cfg)?;
    let sorted = check(items, now, cfg);
    if sorted.problems.is_empty() {
        Ok(sorted.valid)
    } else {
        Err(DomainError::InvalidReports {
            what,
            problems: sorted.problems,
        })
    }
}

/// Stores reported sessions, a whole batch or nothing (every problem
/// listed). Idempotent: a replay changes nothing.
pub async fn store_sessions(
    db: &(impl ConnectionTrait + TransactionTrait),
    items: Vec<Result<Session, Invalid>>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<SessionReport> {
    let received = items.len();
    let valid = accept("sessions", items, now, cfg)?;
    let mut report = store_valid_sessions(db, valid, now, cfg).await?;
    report.received = received;
    Ok(report)
}

/// Stores sessions already checked by [`check`], with their positions in
/// the batch they came from (the stream consumer dead-letters the
/// others); `received` is the number given.
pub async fn store_valid_sessions(
    db: &(impl ConnectionTrait + TransactionTrait),
    valid: Vec<(usize, Session)>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<SessionReport> {
    if valid.is_empty() {
        return Ok(SessionReport::default());
    }
    let since = valid.iter().map(|(_, s)| s.started_at).min();
    let workers = distinct(valid.iter().map(|(_, s)| s.worker_id.clone()));
    settle(db, &workers, since, now, cfg, |ledger| {
        let mut report = SessionReport {
            received: valid.len(),
            ..SessionReport::default()
        };
        for (index, s) in valid.iter().cloned() {
            let (worker_id, started_at) = (s.worker_id.clone(), s.started_at);
            let sessions = ledger.sessions_of(&worker_id);
            match rules::report(sessions, s, now, &cfg.capacity) {
                Reported::Inserted => report.inserted += 1,
                Reported::Updated => report.updated += 1,
                Reported::Duplicate => report.duplicates += 1,
                Reported::Conflict { fields, reason } => report.conflicts.push(SessionConflict {
                    index,
                    worker_id,
                    started_at,
                    fields,
                    reason,
                }),
            }
        }
        report
    })
    .await
}

/// Applies heartbeats, a whole batch or nothing (every problem listed),
/// each worker's in time order.
pub async fn apply_heartbeats(
    db: &(impl ConnectionTrait + TransactionTrait),
    items: Vec<Result<Heartbeat, Invalid>>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<HeartbeatReport> {
    let received = items.len();
    let valid = accept("heartbeats", items, now, cfg)?;
    let valid: Vec<Heartbeat> = valid.into_iter().map(|(_, h)| h).collect();
    let mut report = apply_valid_heartbeats(db, valid, now, cfg).await?;
    report.received = received;
    Ok(report)
}

/// Applies heartbeats already checked by [`check`] (the stream consumer
/// dead-letters the others); `received` is the number given.
pub async fn apply_valid_heartbeats(
    db: &(impl ConnectionTrait + TransactionTrait),
    mut beats: Vec<Heartbeat>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<HeartbeatReport> {
    if beats.is_empty() {
        return Ok(HeartbeatReport::default());
    }
    beats.sort_by(|a, b| (&a.worker_id, a.at).cmp(&(&b.worker_id, b.at)));
    let received = beats.len();
    let since = beats.iter().map(|h| h.at).min();
    let workers = distinct(beats.iter().map(|h| h.worker_id.clone()));
    settle(db, &workers, since, now, cfg, |ledger| {
        let mut report = HeartbeatReport {
            received,
            ..HeartbeatReport::default()
        };
        for h in beats.iter().cloned() {
            let sessions = ledger.sessions_of(&h.worker_id);
            match rules::heartbeat(sessions, h, now, &cfg.capacity) {
                Beat::Opened => report.inserted += 1,
                Beat::Extended => report.updated += 1,
                Beat::Split => {
                    report.inserted += 1;
                    report.split += 1;
                }
                Beat::Ignored => report.duplicates += 1,
            }
        }
        report
    })
    .await
}

/// One retried transaction over some workers' sessions (those up since
/// `since`): load them, let `apply` change them, write them back, commit.
async fn settle<R: Send>(
    db: &(impl ConnectionTrait + TransactionTrait),
    workers: &[String],
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
    apply: impl Fn(&mut Ledger) -> R + Sync,
) -> Result<R> {
    crate::db::retrying(|| async {
        let txn = db.begin().await?;
        let workers = workers.iter().cloned();
        let mut ledger = Ledger::load(&txn, workers, since, now, &cfg.capacity).await?;
        let out = apply(&mut ledger);
        ledger.write(&txn, now).await?;
        txn.commit().await?;
        Ok(out)
    })
    .await
}

/// The periodic job's work: every open session counts up to where its
/// heartbeats vouch for at `now`, and silent ones are ended. Safe to run
/// any number of times, and concurrently with ingest (rows are locked on
/// MySQL; SQLite serialises writers).
pub async fn advance(
    db: &(impl ConnectionTrait + TransactionTrait),
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<AdvanceReport> {
    crate::db::retrying(|| async {
        let txn = db.begin().await?;
        let ledger = Ledger::load_open(&txn, now, &cfg.capacity).await?;
        let sessions = ledger.workers.values().flatten();
        let open = sessions.clone().count();
        let ended = sessions.filter(|s| s.ended_at.is_some()).count();
        let (_, moved) = ledger.write(&txn, now).await?;
        txn.commit().await?;
        Ok(AdvanceReport { open, moved, ended })
    })
    .await
}

fn distinct(ids: impl Iterator<Item = String>) -> Vec<String> {
    let set: BTreeMap<String, ()> = ids.map(|i| (i, ())).collect();
    set.into_keys().collect()
}
