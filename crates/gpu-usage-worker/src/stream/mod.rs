//! Redis Stream ingest: the platform may `XADD` finished-task records,
//! worker sessions and heartbeats to a stream instead of calling the HTTP
//! API.
//!
//! - A consumer group (`XREADGROUP`); each replica is one consumer, named
//!   by its runner id.
//! - A batch goes through the domain's idempotent ingest and is
//!   acknowledged (`XACK`) only after the database commit. A crash in
//!   between redelivers the batch, which ingest then counts as duplicates:
//!   stored exactly once.
//! - Entries left pending by a dead consumer for longer than
//!   `claim_idle_ms` are taken over with `XAUTOCLAIM`; this consumer's own
//!   pending entries (after a failed round) are re-read first.
//! - A group lost with its stream (Redis restarted without persistence,
//!   `FLUSHALL`, the key deleted) is recreated from id 0 in the round that
//!   meets the `NOGROUP`, which then reads on: what producers add after the
//!   loss is consumed, with a WARN saying so.
//! - Malformed entries (unparsable fields, invalid items) and records or
//!   sessions that conflict with stored ones go to the dead-letter stream with the reason
//!   and the original fields, in the same `MULTI` as the `XACK`: never
//!   blocking the stream, never silently dropped. The valid items of a
//!   batch are stored whatever the others are.
//!
//! The entry format is [`entry`]'s.

pub mod entry;

pub use entry::{Entry, Item};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_redis::redis::{
    self, AsyncCommands,
    streams::{StreamAutoClaimOptions, StreamInfoGroupsReply, StreamReadOptions, StreamReadReply},
};
use deadpool_redis::{Manager, Pool, Runtime};
use gpu_usage_core::fields::Invalid;
use gpu_usage_core::settings::RedisSettings;
use gpu_usage_core::{capacity, ingest};
use secrecy::ExposeSecret;

use crate::jobs::JobContext;
use crate::metrics::StreamLag;
use gpu_usage_core::process::Shutdown;

/// Opens the pool. Redis' default 500 ms response timeout would cut every
/// blocking `XREADGROUP` short, so the timeout is the block time plus slack.
pub fn create_pool(settings: &RedisSettings) -> anyhow::Result<Pool> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(
            Duration::from_millis(settings.block_ms) + Duration::from_secs(10),
        ));
    let manager = Manager::new_with_config(settings.url.expose_secret(), config)
        .context("invalid Redis URL")?;
    Pool::builder(manager)
        .max_size(4)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .context("building the Redis pool")
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub read: usize,
    pub inserted: usize,
    pub duplicates: usize,
    pub conflicts: usize,
    /// Worker sessions stored (new, moved or replayed).
    pub sessions: usize,
    /// Heartbeats applied (or ignored as older than what is known).
    pub heartbeats: usize,
    pub dead_lettered: usize,
    pub acked: usize,
}

pub struct StreamConsumer {
    pool: Pool,
    settings: RedisSettings,
    ctx: Arc<JobContext>,
    name: String,
    /// Re-read this consumer's own pending entries before new ones.
    backlog: bool,
    claim_cursor: String,
}

impl StreamConsumer {
    pub fn new(
        pool: Pool,
        settings: RedisSettings,
        ctx: Arc<JobContext>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            pool,
            settings,
            ctx,
            name: name.into(),
            backlog: true,
            claim_cursor: "0-0".to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    async fn conn(&self) -> anyhow::Result<deadpool_redis::Connection> {
        self.pool.get().await.context("connecting to Redis")
    }

    /// Creates the group (and the stream) if missing, reading from the
    /// stream's beginning so nothing published before the first start is
    /// skipped.
    pub async fn ensure_group(&self) -> anyhow::Result<()> {
        self.create_group().await.map(|_| ())
    }

    /// `XGROUP CREATE … 0 MKSTREAM`: `true` if this call created the group,
    /// `false` if it existed (`BUSYGROUP`).
    async fn create_group(&self) -> anyhow::Result<bool> {
        let mut conn = self.conn().await?;
        let created: redis::RedisResult<()> = conn
            .xgroup_create_mkstream(&self.settings.stream, &self.settings.group, "0")
            .await;
        match created {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some("BUSYGROUP") || e.to_string().contains("BUSYGROUP") => {
                Ok(false)
            }
            Err(e) => Err(e).context("creating the consumer group"),
        }
    }

    /// After Redis said the group is gone (`lost`): creates it again, from
    /// id 0 so that what producers added since the loss is consumed. The
    /// claim cursor and the own-backlog read start over, as in a new group.
    async fn recreate_group(&mut self, lost: &anyhow::Error) -> anyhow::Result<()> {
        let created = self
            .create_group()
            .await
            .context("recreating the lost consumer group")?;
        self.claim_cursor = "0-0".to_owned();
        self.backlog = true;
        if created {
            tracing::warn!(
                stream = %self.settings.stream,
                group = %self.settings.group,
                consumer = %self.name,
                error = format!("{lost:#}"),
                "consumer group missing (the stream was deleted or Redis lost it); \
                 recreated it from id 0: entries added before the loss are gone, \
                 entries added since are consumed"
            );
        } else {
            tracing::info!(
                stream = %self.settings.stream,
                group = %self.settings.group,
                consumer = %self.name,
                error = format!("{lost:#}"),
                "consumer group missing, then found again (recreated by another consumer)"
            );
        }
        Ok(())
    }

    /// Entries idle longer than `claim_idle_ms` in any consumer (a dead one,
    /// usually), now owned by this one.
    pub async fn claim_stale(&mut self) -> anyhow::Result<Vec<Entry>> {
        let mut conn = self.conn().await?;
        let reply: redis::streams::StreamAutoClaimReply = conn
            .xautoclaim_options(
                &self.settings.stream,
                &self.settings.group,
                &self.name,
                self.settings.claim_idle_ms,
                &self.claim_cursor,
                StreamAutoClaimOptions::default().count(self.settings.batch_size.max(1)),
            )
            .await
            .context("XAUTOCLAIM")?;
        self.claim_cursor = reply.next_stream_id;
        if !reply.claimed.is_empty() {
            tracing::info!(
                consumer = %self.name,
                claimed = reply.claimed.len(),
                "claimed stream entries left pending by another consumer"
            );
        }
        Ok(reply
            .claimed
            .into_iter()
            .map(Entry::from_stream_id)
            .collect())
    }

    /// `id` `>`: new entries, blocking up to `block_ms`; `0`: this
    /// consumer's pending ones.
    async fn read_group(&self, id: &str, block: bool) -> anyhow::Result<Vec<Entry>> {
        let mut conn = self.conn().await?;
        let mut opts = StreamReadOptions::default()
            .group(&self.settings.group, &self.name)
            .count(self.settings.batch_size.max(1));
        if block {
            opts = opts.block(usize::try_from(self.settings.block_ms).unwrap_or(usize::MAX));
        }
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[&self.settings.stream], &[id], &opts)
            .await
            .context("XREADGROUP")?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(Entry::from_stream_id)
            .collect())
    }

    /// The next batch to handle: stale entries of dead consumers first,
    /// then this consumer's own backlog, then new entries.
    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<Entry>> {
        let claimed = self.claim_stale().await?;
        if !claimed.is_empty() {
            return Ok(claimed);
        }
        if self.backlog {
            let own = self.read_group("0", false).await?;
            if !own.is_empty() {
                return Ok(own);
            }
            self.backlog = false;
        }
        self.read_group(">", true).await
    }

    /// Stores the batch, dead-letters what cannot be stored, and
    /// acknowledges everything, in that order. On an error nothing is
    /// acknowledged and the entries stay pending for a retry.
    pub async fn handle(&self, entries: &[Entry]) -> anyhow::Result<BatchReport> {
        let mut report = BatchReport {
            read: entries.len(),
            ..BatchReport::default()
        };
        if entries.is_empty() {
            return Ok(report);
        }
        let now = self.ctx.now();
        let mut dead: Vec<(usize, String)> = Vec::new();
        let max = self.ctx.engine.ingest.max_batch.max(1);
        for (c, chunk) in entries.chunks(max).enumerate() {
            let kinds = Kinds::split(chunk, c * max);
            self.store_records(kinds.records, now, &mut report, &mut dead)
                .await?;
            self.store_capacity(
                kinds.sessions,
                kinds.heartbeats,
                now,
                &mut report,
                &mut dead,
            )
            .await?;
        }
        dead.sort_by_key(|(i, _)| *i);
        self.dead_letter_and_ack(entries, &dead, now).await?;
        report.dead_lettered = dead.len();
        report.acked = entries.len();
        let m = &self.ctx.metrics;
        m.stream_entries("inserted", report.inserted as u64);
        m.stream_entries("duplicate", report.duplicates as u64);
        m.stream_entries("session", report.sessions as u64);
        m.stream_entries("heartbeat", report.heartbeats as u64);
        m.stream_entries("dead_lettered", report.dead_lettered as u64);
        Ok(report)
    }

    async fn store_records(
        &self,
        records: Kind<gpu_usage_core::record::Record>,
        now: chrono::DateTime<chrono::Utc>,
        report: &mut BatchReport,
        dead: &mut Vec<(usize, String)>,
    ) -> anyhow::Result<()> {
        let n = records.items.len();
        let checked = ingest::check(records.items, now, &self.ctx.engine);
        dead.extend(invalid_reasons(
            "record",
            checked.problems,
            &records.positions,
        ));
        let stored = ingest::store(self.ctx.db(), checked.valid, n, now)
            .await
            .context("storing stream records")?;
        report.inserted += stored.inserted;
        report.duplicates += stored.duplicates;
        report.conflicts += stored.conflicts.len();
        dead.extend(
            stored
                .conflicts
                .iter()
                .map(|c| (records.positions[c.index], conflict_reason(c))),
        );
        Ok(())
    }

    async fn store_capacity(
        &self,
        sessions: Kind<capacity::Session>,
        beats: Kind<capacity::Heartbeat>,
        now: chrono::DateTime<chrono::Utc>,
        report: &mut BatchReport,
        dead: &mut Vec<(usize, String)>,
    ) -> anyhow::Result<()> {
        let (db, engine) = (self.ctx.db(), &self.ctx.engine);
        let checked = capacity::check(sessions.items, now, engine);
        dead.extend(invalid_reasons(
            "session",
            checked.problems,
            &sessions.positions,
        ));
        let stored = capacity::store_valid_sessions(db, checked.valid, now, engine)
            .await
            .context("storing stream sessions")?;
        report.sessions += stored.received - stored.conflicts.len();
        report.conflicts += stored.conflicts.len();
        dead.extend(stored.conflicts.iter().map(|c| {
            let reason = format!(
                "conflict: session of {} from {} ({}): {}",
                c.worker_id,
                c.started_at.to_rfc3339(),
                c.fields.join(", "),
                c.reason
            );
            (sessions.positions[c.index], reason)
        }));
        let checked = capacity::check(beats.items, now, engine);
        dead.extend(invalid_reasons(
            "heartbeat",
            checked.problems,
            &beats.positions,
        ));
        let valid = checked.valid.into_iter().map(|(_, h)| h).collect();
        let applied = capacity::apply_valid_heartbeats(db, valid, now, engine)
            .await
            .context("applying stream heartbeats")?;
        report.heartbeats += applied.received;
        Ok(())
    }

    async fn dead_letter_and_ack(
        &self,
        entries: &[Entry],
        dead: &[(usize, String)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<()> {
        let s = &self.settings;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (i, reason) in dead {
            let Some(e) = entries.get(*i) else { continue };
            tracing::warn!(stream = %s.stream, id = %e.id, reason = %reason, "stream entry dead-lettered");
            pipe.cmd("XADD")
                .arg(&s.dead_letter_stream)
                .arg("*")
                .arg("dead_letter_reason")
                .arg(reason)
                .arg("source_stream")
                .arg(&s.stream)
                .arg("source_id")
                .arg(&e.id)
                .arg("dead_lettered_at")
                .arg(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            for (k, v) in &e.fields {
                pipe.arg(k).arg(v.as_slice());
            }
            pipe.ignore();
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        pipe.cmd("XACK")
            .arg(&s.stream)
            .arg(&s.group)
            .arg(&ids)
            .ignore();
        let mut conn = self.conn().await?;
        pipe.query_async::<()>(&mut conn)
            .await
            .context("dead-lettering and acknowledging the batch")
    }

    /// One round: read a batch and handle it. If Redis answers that the
    /// group does not exist (the stream was lost with it), the group is
    /// recreated and the read retried once, in the same round.
    pub async fn run_once(&mut self) -> anyhow::Result<BatchReport> {
        let entries = match self.next_batch().await {
            Err(e) if group_lost(&e) => {
                self.recreate_group(&e).await?;
                self.next_batch().await?
            }
            read => read?,
        };
        let result = self.handle(&entries).await;
        if result.is_err() {
            // The batch is in this consumer's pending list; read it again
            // from there next round.
            self.backlog = true;
        }
        result
    }

    /// Consumes until shutdown. A round in progress is finished (it is
    /// bounded by `block_ms` and one batch), so nothing is left half-done.
    pub async fn run(mut self, shutdown: Shutdown) {
        tracing::info!(
            stream = %self.settings.stream,
            group = %self.settings.group,
            consumer = %self.name,
            "Redis stream consumer started"
        );
        let mut group_ready = false;
        let mut failures = 0u32;
        while !shutdown.is_triggered() {
            let result = if group_ready {
                self.run_once().await.map(Some)
            } else {
                self.ensure_group().await.map(|()| {
                    group_ready = true;
                    None
                })
            };
            match result {
                Ok(round) => {
                    failures = 0;
                    self.ctx.metrics.stream_round(true);
                    if let Some(r) = round.filter(|r| r.read > 0) {
                        tracing::debug!(
                            read = r.read,
                            inserted = r.inserted,
                            duplicates = r.duplicates,
                            dead_lettered = r.dead_lettered,
                            "stream batch stored"
                        );
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.ctx.metrics.stream_round(false);
                    let pause = Duration::from_secs(1 << failures.min(5));
                    tracing::warn!(
                        error = format!("{e:#}"),
                        failures,
                        retry_in_secs = pause.as_secs(),
                        "stream round failed"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.wait() => {}
                    }
                }
            }
        }
        tracing::info!(consumer = %self.name, "Redis stream consumer stopped");
    }
}

/// Whether Redis said the consumer group (or its stream) no longer
/// exists: `NOGROUP` from `XAUTOCLAIM` / `XREADGROUP`, or the `UNBLOCKED`
/// a blocked `XREADGROUP` gets when its stream key is deleted.
fn group_lost(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<redis::RedisError>())
        .any(|r| match r.code() {
            Some("NOGROUP") => true,
            Some("UNBLOCKED") => r.detail().is_some_and(|d| d.contains("no longer exists")),
            _ => false,
        })
}

fn conflict_reason(c: &ingest::Conflict) -> String {
    format!(
        "conflict: task_id {} is already stored with different {}",
        c.task_id,
        c.fields.join(", ")
    )
}

/// One dead-letter reason per invalid entry, every problem of it named;
/// `positions` maps a problem's index to the entry's place in the batch.
fn invalid_reasons(
    kind: &str,
    problems: Vec<gpu_usage_core::error::RecordProblem>,
    positions: &[usize],
) -> Vec<(usize, String)> {
    let mut reasons: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for p in problems {
        let reason = if p.field == entry::ENTRY_FIELD {
            format!("malformed entry: {}", p.message)
        } else {
            format!("{}: {}", p.field, p.message)
        };
        let at = positions.get(p.index).copied().unwrap_or(p.index);
        reasons.entry(at).or_default().push(reason);
    }
    reasons
        .into_iter()
        .map(|(i, r)| match r.as_slice() {
            [one] if one.starts_with("malformed") => (i, one.clone()),
            _ => (i, format!("invalid {kind}: {}", r.join("; "))),
        })
        .collect()
}

/// The items of one kind in a chunk, with each one's place in the batch.
struct Kind<T> {
    positions: Vec<usize>,
    items: Vec<Result<T, Invalid>>,
}

impl<T> Default for Kind<T> {
    fn default() -> Self {
        Kind {
            positions: Vec::new(),
            items: Vec::new(),
        }
    }
}

impl<T> Kind<T> {
    fn push(&mut self, at: usize, item: Result<T, Invalid>) {
        self.positions.push(at);
        self.items.push(item);
    }
}

/// A chunk sorted by kind. Entries that are no item at all are handled
/// with the records (whose parsing they failed), as before kinds existed.
#[derive(Default)]
struct Kinds {
    records: Kind<gpu_usage_core::record::Record>,
    sessions: Kind<capacity::Session>,
    heartbeats: Kind<capacity::Heartbeat>,
}

impl Kinds {
    fn split(chunk: &[Entry], base: usize) -> Self {
        let mut k = Kinds::default();
        for (i, e) in chunk.iter().enumerate() {
            match e.item() {
                Ok(Item::Record(r)) => k.records.push(base + i, Ok(r)),
                Ok(Item::Session(s)) => k.sessions.push(base + i, Ok(s)),
                Ok(Item::Heartbeat(h)) => k.heartbeats.push(base + i, Ok(h)),
                Err(invalid) => match e.kind() {
                    Some("session") => k.sessions.push(base + i, Err(invalid)),
                    Some("heartbeat") => k.heartbeats.push(base + i, Err(invalid)),
                    _ => k.records.push(base + i, Err(invalid)),
                },
            }
        }
        k
    }
}

/// Lag and pending count of the group, for `/metrics`; `None` when the
/// stream or the group does not exist yet.
pub async fn stream_lag(
    pool: &Pool,
    settings: &RedisSettings,
) -> anyhow::Result<Option<StreamLag>> {
    let mut conn = pool.get().await.context("connecting to Redis")?;
    let reply: redis::RedisResult<StreamInfoGroupsReply> =
        conn.xinfo_groups(&settings.stream).await;
    let reply = match reply {
        Ok(r) => r,
        Err(e) if e.to_string().to_ascii_lowercase().contains("no such key") => return Ok(None),
        Err(e) => return Err(e).context("XINFO GROUPS"),
    };
    Ok(reply
        .groups
        .into_iter()
        .find(|g| g.name == settings.group)
        .map(|g| StreamLag {
            stream: settings.stream.clone(),
            group: settings.group.clone(),
            lag: g.lag.map(|l| l as u64),
            pending: g.pending as u64,
        }))
}
