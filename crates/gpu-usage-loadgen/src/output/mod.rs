//! Delivering what the generator makes: the item kinds and their wire
//! forms, batching, and the senders ([`http`], [`redis`]) with the figures
//! they report ([`Report`]).

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::records::Record;
use crate::sessions::{Heartbeat, Session, WorkerIdentity};
use crate::time::rfc3339;

pub mod http;
pub mod redis;
mod report;

pub use report::Report;

/// The three things the generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Records,
    Sessions,
    Heartbeats,
}

impl Kind {
    /// Path of the ingest endpoint, under the service's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Records => "/api/v1/gpu-usage/records",
            Kind::Sessions => "/api/v1/gpu-usage/workers/sessions",
            Kind::Heartbeats => "/api/v1/gpu-usage/workers/heartbeats",
        }
    }

    /// The stream field `kind` (absent for records, which the consumer
    /// reads without one).
    pub fn stream_kind(self) -> Option<&'static str> {
        match self {
            Kind::Records => None,
            Kind::Sessions => Some("session"),
            Kind::Heartbeats => Some("heartbeat"),
        }
    }

    /// The stream field holding the item's JSON in the one-field format.
    pub fn json_field(self) -> &'static str {
        match self {
            Kind::Records => "record",
            Kind::Sessions => "session",
            Kind::Heartbeats => "heartbeat",
        }
    }
}

/// Something the outputs can deliver.
pub trait Item: Serialize + Send + Sync + 'static {
    const KIND: Kind;
    /// The item's wire fields as text, absent ones left out: the
    /// field-per-field stream format.
    fn fields(&self) -> Vec<(&'static str, String)>;
    /// The instant it is about: completion, session start, beat.
    fn at(&self) -> DateTime<Utc>;
}

fn push_opt<T: ToString>(out: &mut Vec<(&'static str, String)>, k: &'static str, v: &Option<T>) {
    if let Some(v) = v {
        out.push((k, v.to_string()));
    }
}

impl Item for Record {
    const KIND: Kind = Kind::Records;

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("task_id", self.task_id.clone()),
            ("endpoint", self.endpoint.clone()),
        ];
        push_opt(&mut f, "worker_id", &self.worker_id);
        push_opt(&mut f, "spec_name", &self.spec_name);
        f.push(("gpu_count", self.gpu_count.to_string()));
        push_opt(&mut f, "gpu_type", &self.gpu_type);
        push_opt(&mut f, "gpu_memory_gb", &self.gpu_memory_gb);
        f.push(("started_at", rfc3339(self.started_at)));
        f.push(("completed_at", rfc3339(self.completed_at)));
        f.push(("status", self.status.as_str().to_owned()));
        f
    }

    fn at(&self) -> DateTime<Utc> {
        self.completed_at
    }
}

/// The fields every session and heartbeat starts with.
fn worker_fields(w: &WorkerIdentity) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("worker_id", w.worker_id.clone()),
        ("endpoint", w.endpoint.clone()),
    ];
    push_opt(&mut f, "spec_name", &w.spec_name);
    push_opt(&mut f, "gpu_type", &w.gpu_type);
    f.push(("gpu_count", w.gpu_count.to_string()));
    f
}

impl Item for Session {
    const KIND: Kind = Kind::Sessions;

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = worker_fields(&self.worker);
        f.push(("started_at", rfc3339(self.started_at)));
        push_opt(&mut f, "ended_at", &self.ended_at.map(rfc3339));
        f
    }

    fn at(&self) -> DateTime<Utc> {
        self.started_at
    }
}

impl Item for Heartbeat {
    const KIND: Kind = Kind::Heartbeats;

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = worker_fields(&self.worker);
        f.push(("at", rfc3339(self.at)));
        f
    }

    fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// How an item becomes a stream entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntryFormat {
    /// One field (`record`, `session` or `heartbeat`) holding the JSON.
    #[default]
    Json,
    /// Every wire field as its own stream field.
    Fields,
}

/// The stream entry for `item`: `kind` first for sessions and heartbeats,
/// then the JSON field or the item's fields.
pub fn stream_entry<T: Item>(item: &T, format: EntryFormat) -> Result<Vec<(&'static str, String)>> {
    let mut entry = Vec::new();
    if let Some(kind) = T::KIND.stream_kind() {
        entry.push(("kind", kind.to_owned()));
    }
    match format {
        EntryFormat::Json => entry.push((T::KIND.json_field(), serde_json::to_string(item)?)),
        EntryFormat::Fields => entry.extend(item.fields()),
    }
    Ok(entry)
}

/// A request body: a JSON array of `count` items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub kind: Kind,
    pub count: usize,
    pub body: Vec<u8>,
}

impl Batch {
    pub fn json_array<T: Item>(items: &[T]) -> Result<Self> {
        Ok(Self {
            kind: T::KIND,
            count: items.len(),
            body: serde_json::to_vec(items)?,
        })
    }
}

/// Writes `item` as one line of JSON.
pub fn write_json_line<W: Write, T: Serialize>(out: &mut W, item: &T) -> Result<()> {
    serde_json::to_writer(&mut *out, item)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Groups an iterator's items into vectors of `size` (the last may be
/// shorter).
pub fn chunks<I: Iterator>(iter: I, size: usize) -> Chunks<I> {
    Chunks {
        iter,
        size: size.max(1),
    }
}

/// See [`chunks`].
pub struct Chunks<I> {
    iter: I,
    size: usize,
}

impl<I: Iterator> Iterator for Chunks<I> {
    type Item = Vec<I::Item>;

    fn next(&mut self) -> Option<Self::Item> {
        let chunk: Vec<I::Item> = self.iter.by_ref().take(self.size).collect();
        (!chunk.is_empty()).then_some(chunk)
    }
}
