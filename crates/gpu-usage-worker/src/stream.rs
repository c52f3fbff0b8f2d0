//! Redis Stream ingest: the platform may `XADD` finished-task records to a
//! stream instead of calling the HTTP API.
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
//! - Malformed entries (unparsable fields, invalid records) and records that
//!   conflict with a stored one go to the dead-letter stream with the reason
//!   and the original fields, in the same `MULTI` as the `XACK`: never
//!   blocking the stream, never silently dropped. When ingest rejects a
//!   batch for invalid records, the invalid ones are set aside and the rest
//!   ingested.
//!
//! Entry format: the record's column names as fields (`task_id`,
//! `endpoint`, `worker_id`, `spec_name`, `gpu_count`, `gpu_type`,
//! `gpu_memory_gb`, `started_at`, `completed_at`, `status`), or one field
//! `record` holding the JSON object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_redis::redis::{
    self, AsyncCommands, Value,
    streams::{
        StreamAutoClaimOptions, StreamId, StreamInfoGroupsReply, StreamReadOptions, StreamReadReply,
    },
};
use deadpool_redis::{Manager, Pool, Runtime};
use gpu_usage_core::DomainError;
use gpu_usage_core::ingest::{self, RecordInput};
use gpu_usage_core::settings::RedisSettings;
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

/// One stream entry with its fields as raw bytes (a malformed entry may not
/// even be UTF-8, and is dead-lettered as it came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    fn from_stream_id(s: StreamId) -> Self {
        let mut fields: Vec<(String, Vec<u8>)> = s
            .map
            .into_iter()
            .map(|(k, v)| (k, value_bytes(v)))
            .collect();
        fields.sort();
        Entry { id: s.id, fields }
    }

    /// The record, or why this entry cannot be one.
    pub fn parse(&self) -> Result<RecordInput, String> {
        if self.fields.is_empty() {
            return Err("the entry has no fields (deleted from the stream?)".to_owned());
        }
        let mut pairs = Vec::with_capacity(self.fields.len());
        for (k, v) in &self.fields {
            let v = String::from_utf8(v.clone()).map_err(|_| format!("field {k}: not UTF-8"))?;
            pairs.push((k.clone(), v));
        }
        RecordInput::from_fields(pairs)
    }
}

fn value_bytes(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Okay => b"OK".to_vec(),
        Value::Nil => Vec::new(),
        other => format!("{other:?}").into_bytes(),
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub read: usize,
    pub inserted: usize,
    pub duplicates: usize,
    pub conflicts: usize,
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
        let mut conn = self.conn().await?;
        let created: redis::RedisResult<()> = conn
            .xgroup_create_mkstream(&self.settings.stream, &self.settings.group, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e).context("creating the consumer group"),
        }
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
        let mut parsed: Vec<(usize, RecordInput)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e.parse() {
                Ok(r) => parsed.push((i, r)),
                Err(reason) => dead.push((i, format!("malformed entry: {reason}"))),
            }
        }
        for chunk in parsed.chunks(self.ctx.engine.ingest.max_batch.max(1)) {
            let mut batch = chunk.to_vec();
            while !batch.is_empty() {
                let inputs = batch.iter().map(|(_, r)| r.clone()).collect();
                match ingest::ingest(self.ctx.db(), inputs, now, &self.ctx.engine).await {
                    Ok(r) => {
                        report.inserted += r.inserted;
                        report.duplicates += r.duplicates;
                        for c in r.conflicts {
                            if let Some((i, _)) = batch.get(c.index) {
                                report.conflicts += 1;
                                dead.push((*i, conflict_reason(&c)));
                            }
                        }
                        break;
                    }
                    Err(DomainError::InvalidRecords(problems)) => {
                        batch = set_aside_invalid(batch, problems, &mut dead)?;
                    }
                    // A refusal of the batch as a whole that names no record:
                    // one record at a time tells which one(s) it is about.
                    Err(DomainError::Invalid { field, message }) if batch.len() > 1 => {
                        tracing::warn!(
                            field,
                            message,
                            "batch refused as a whole; storing records one by one"
                        );
                        let singles = std::mem::take(&mut batch);
                        for (i, r) in singles {
                            self.ingest_one(i, r, now, &mut report, &mut dead).await?;
                        }
                    }
                    Err(DomainError::Invalid { field, message }) => {
                        if let Some((i, _)) = batch.first() {
                            dead.push((*i, format!("invalid record: {field}: {message}")));
                        }
                        batch.clear();
                    }
                    Err(e) => return Err(e).context("storing stream records"),
                }
            }
        }
        dead.sort_by_key(|(i, _)| *i);
        self.dead_letter_and_ack(entries, &dead, now).await?;
        report.dead_lettered = dead.len();
        report.acked = entries.len();
        let m = &self.ctx.metrics;
        m.stream_entries("inserted", report.inserted as u64);
        m.stream_entries("duplicate", report.duplicates as u64);
        m.stream_entries("dead_lettered", report.dead_lettered as u64);
        Ok(report)
    }

    async fn ingest_one(
        &self,
        index: usize,
        input: RecordInput,
        now: chrono::DateTime<chrono::Utc>,
        report: &mut BatchReport,
        dead: &mut Vec<(usize, String)>,
    ) -> anyhow::Result<()> {
        match ingest::ingest(self.ctx.db(), vec![input], now, &self.ctx.engine).await {
            Ok(r) => {
                report.inserted += r.inserted;
                report.duplicates += r.duplicates;
                if let Some(c) = r.conflicts.first() {
                    report.conflicts += 1;
                    dead.push((index, conflict_reason(c)));
                }
                Ok(())
            }
            Err(DomainError::InvalidRecords(problems)) => {
                let reasons: Vec<String> = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.field, p.message))
                    .collect();
                dead.push((index, format!("invalid record: {}", reasons.join("; "))));
                Ok(())
            }
            Err(DomainError::Invalid { field, message }) => {
                dead.push((index, format!("invalid record: {field}: {message}")));
                Ok(())
            }
            Err(e) => Err(e).context("storing a stream record"),
        }
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

    /// One round: read a batch and handle it.
    pub async fn run_once(&mut self) -> anyhow::Result<BatchReport> {
        let entries = self.next_batch().await?;
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
                Ok(Some(r)) if r.read > 0 => {
                    failures = 0;
                    tracing::debug!(
                        read = r.read,
                        inserted = r.inserted,
                        duplicates = r.duplicates,
                        dead_lettered = r.dead_lettered,
                        "stream batch stored"
                    );
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.ctx.metrics.stream_error();
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

fn conflict_reason(c: &ingest::Conflict) -> String {
    format!(
        "conflict: task_id {} is already stored with different {}",
        c.task_id,
        c.fields.join(", ")
    )
}

/// Moves the records ingest named as invalid to `dead`; returns the rest.
fn set_aside_invalid(
    batch: Vec<(usize, RecordInput)>,
    problems: Vec<gpu_usage_core::error::RecordProblem>,
    dead: &mut Vec<(usize, String)>,
) -> anyhow::Result<Vec<(usize, RecordInput)>> {
    let mut reasons: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for p in problems {
        reasons
            .entry(p.index)
            .or_default()
            .push(format!("{}: {}", p.field, p.message));
    }
    // Every retry must shrink the batch, or this would loop forever.
    if reasons.is_empty() || reasons.keys().any(|i| *i >= batch.len()) {
        anyhow::bail!("ingest rejected the batch without naming records in it");
    }
    let mut keep = Vec::with_capacity(batch.len());
    for (pos, item) in batch.into_iter().enumerate() {
        match reasons.remove(&pos) {
            Some(r) => dead.push((item.0, format!("invalid record: {}", r.join("; ")))),
            None => keep.push(item),
        }
    }
    Ok(keep)
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
