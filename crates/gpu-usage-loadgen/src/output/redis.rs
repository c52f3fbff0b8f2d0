//! `XADD` to a Redis stream, one pipeline per batch.
//!
//! Entries as [`stream_entry`](super::stream_entry()) builds them: for records
//! the one field `record` with the JSON (or the record's fields), which the
//! worker's consumer reads; for sessions and heartbeats a field `kind`
//! (`session` / `heartbeat`) first.

use std::time::{Duration, Instant};

use deadpool_redis::{Config as PoolConfig, Pool, Runtime, redis};

use super::{EntryFormat, Item, Report, stream_entry};
use crate::error::{Error, Result};

/// Where and how to add entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    pub url: String,
    pub stream: String,
    pub format: EntryFormat,
    /// `MAXLEN ~ n` on every `XADD`, to keep the stream bounded.
    pub max_len: Option<usize>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            stream: "gpu_usage:records".to_owned(),
            format: EntryFormat::Json,
            max_len: None,
        }
    }
}

/// Adds batches of entries; failures are counted, not returned.
pub struct RedisSender {
    pool: Pool,
    opts: RedisOptions,
    report: Report,
    started: Instant,
}

impl RedisSender {
    pub fn new(opts: RedisOptions) -> Result<Self> {
        let pool = PoolConfig::from_url(&opts.url)
            .builder()
            .map_err(|e| Error::RedisPool(e.to_string()))?
            .max_size(2)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::RedisPool(e.to_string()))?;
        Ok(Self {
            pool,
            opts,
            report: Report::default(),
            started: Instant::now(),
        })
    }

    /// The pipeline of `XADD`s for `items`.
    fn pipeline<T: Item>(&self, items: &[T]) -> Result<redis::Pipeline> {
        let mut pipe = redis::pipe();
        for item in items {
            let cmd = pipe.cmd("XADD").arg(&self.opts.stream);
            if let Some(n) = self.opts.max_len {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg("*");
            for (k, v) in stream_entry(item, self.opts.format)? {
                cmd.arg(k).arg(v);
            }
            cmd.ignore();
        }
        Ok(pipe)
    }

    /// Adds `items` in one round trip.
    pub async fn send<T: Item>(&mut self, items: &[T]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let pipe = self.pipeline(items)?;
        let sent = Instant::now();
        let result = match self.pool.get().await {
            Ok(mut conn) => pipe
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| format!("redis {:?}", e.kind())),
            Err(_) => Err("redis connect".to_owned()),
        };
        let r = &mut self.report;
        r.requests += 1;
        r.latency(sent.elapsed());
        match result {
            Ok(()) => r.items_ok += items.len() as u64,
            Err(key) => {
                r.error(key);
                r.items_failed += items.len() as u64;
            }
        }
        Ok(())
    }

    pub fn report(&self) -> Report {
        let mut r = self.report.clone();
        r.elapsed = self.started.elapsed();
        r
    }

    pub fn finish(mut self) -> Report {
        self.report.elapsed = self.started.elapsed();
        self.report
    }
}
