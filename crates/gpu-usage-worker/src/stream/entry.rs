//! The stream's wire forms, and their conversion into domain items.
//!
//! An entry carries a finished-task record, a worker session or a
//! heartbeat, told apart by an optional field `kind` (`record`, the
//! default, `session` or `heartbeat`). Its content is either one field
//! named like the kind (`record`, `session`, `heartbeat`) holding the JSON
//! object the HTTP API takes, or the JSON fields as stream fields of their
//! own (`task_id`, `endpoint`, `gpu_count`, `started_at`, ...; every value a
//! string, as Redis keeps them; an empty integer or `ended_at` counts as
//! absent).

use std::collections::HashMap;

use deadpool_redis::redis::{Value, streams::StreamId};
use gpu_usage_core::capacity::wire::OfferJson;
use gpu_usage_core::capacity::{Heartbeat, HeartbeatJson, Session, SessionJson};
use gpu_usage_core::fields::{Field, Invalid};
use gpu_usage_core::record::{Record, RecordJson};
use serde::de::DeserializeOwned;

/// The problem "field" of an entry that is not an item at all.
pub const ENTRY_FIELD: &str = "entry";

/// One stream entry with its fields as raw bytes (a malformed entry may not
/// even be UTF-8, and is dead-lettered as it came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(String, Vec<u8>)>,
}

/// What an entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Record(Record),
    Session(Session),
    Heartbeat(Heartbeat),
}

impl Entry {
    pub(crate) fn from_stream_id(s: StreamId) -> Self {
        let mut fields: Vec<(String, Vec<u8>)> = s
            .map
            .into_iter()
            .map(|(k, v)| (k, value_bytes(v)))
            .collect();
        fields.sort();
        Entry { id: s.id, fields }
    }

    /// The item this entry carries, or every reason it is not one.
    pub fn item(&self) -> Result<Item, Invalid> {
        let mut fields = self.text_fields()?;
        let kind = fields.remove("kind").unwrap_or_else(|| "record".to_owned());
        match kind.trim() {
            "record" => {
                parse::<RecordJson, Record>(fields, "record", record_json).map(Item::Record)
            }
            "session" => {
                parse::<SessionJson, Session>(fields, "session", session_json).map(Item::Session)
            }
            "heartbeat" => parse::<HeartbeatJson, Heartbeat>(fields, "heartbeat", heartbeat_json)
                .map(Item::Heartbeat),
            other => Err(Invalid::malformed(
                ENTRY_FIELD,
                format!("unknown kind {other:?}; expected record, session or heartbeat"),
            )),
        }
    }

    /// The `kind` field, if readable.
    pub fn kind(&self) -> Option<&str> {
        let (_, v) = self.fields.iter().find(|(k, _)| k == "kind")?;
        std::str::from_utf8(v).ok().map(str::trim)
    }

    /// The record this entry carries, or every reason it is not one.
    pub fn record(&self) -> Result<Record, Invalid> {
        match self.item()? {
            Item::Record(r) => Ok(r),
            _ => Err(Invalid::malformed(ENTRY_FIELD, "not a record")),
        }
    }

    fn text_fields(&self) -> Result<HashMap<String, String>, Invalid> {
        if self.fields.is_empty() {
            return Err(Invalid::malformed(
                ENTRY_FIELD,
                "the entry has no fields (deleted from the stream?)",
            ));
        }
        let mut fields = HashMap::with_capacity(self.fields.len());
        for (k, v) in &self.fields {
            let v = String::from_utf8(v.clone())
                .map_err(|_| Invalid::malformed(ENTRY_FIELD, format!("field {k}: not UTF-8")))?;
            fields.insert(k.clone(), v);
        }
        Ok(fields)
    }
}

/// The item from its JSON field `name`, or from the flat fields.
fn parse<J, T>(
    mut fields: HashMap<String, String>,
    name: &str,
    flat: fn(&mut Fields) -> J,
) -> Result<T, Invalid>
where
    J: DeserializeOwned,
    T: TryFrom<J, Error = Invalid>,
{
    let json = match fields.remove(name) {
        Some(text) => serde_json::from_str::<J>(&text).map_err(|e| {
            Invalid::malformed(ENTRY_FIELD, format!("field {name}: invalid JSON: {e}"))
        })?,
        None => flat(&mut Fields(fields)),
    };
    T::try_from(json)
}

/// Flat string fields, taken one by one into a wire form.
struct Fields(HashMap<String, String>);

impl Fields {
    fn text(&mut self, k: &str) -> Field<String> {
        Field::from(self.0.remove(k))
    }

    /// An optional instant: empty means absent (an open session).
    fn time(&mut self, k: &str) -> Field<String> {
        Field::from(self.0.remove(k).filter(|v| !v.trim().is_empty()))
    }

    /// Integers arrive as text.
    fn integer(&mut self, k: &str) -> Field<i64> {
        match self.0.remove(k).as_deref().map(str::trim) {
            None | Some("") => Field::Absent,
            Some(t) => t.parse::<i64>().map_or_else(
                |_| Field::Wrong(serde_json::Value::String(t.to_owned())),
                Field::Value,
            ),
        }
    }

    fn offer(&mut self) -> OfferJson {
        OfferJson {
            worker_id: self.text("worker_id"),
            endpoint: self.text("endpoint"),
            spec_name: self.text("spec_name"),
            gpu_type: self.text("gpu_type"),
            gpu_count: self.integer("gpu_count"),
        }
    }
}

fn record_json(f: &mut Fields) -> RecordJson {
    RecordJson {
        task_id: f.text("task_id"),
        endpoint: f.text("endpoint"),
        worker_id: f.text("worker_id"),
        spec_name: f.text("spec_name"),
        gpu_type: f.text("gpu_type"),
        started_at: f.text("started_at"),
        completed_at: f.text("completed_at"),
        status: f.text("status"),
        gpu_count: f.integer("gpu_count"),
        gpu_memory_gb: f.integer("gpu_memory_gb"),
    }
}

fn session_json(f: &mut Fields) -> SessionJson {
    SessionJson {
        offer: f.offer(),
        started_at: f.text("started_at"),
        ended_at: f.time("ended_at"),
    }
}

fn heartbeat_json(f: &mut Fields) -> HeartbeatJson {
    HeartbeatJson {
        offer: f.offer(),
        at: f.text("at"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn string_fields_and_json_parse() {
        let fields = [
            ("task_id", "a"),
            ("endpoint", "ep"),
            ("gpu_count", "4"),
            ("started_at", "2026-01-01T00:00:00Z"),
            ("completed_at", "2026-01-01T00:01:00Z"),
            ("status", "COMPLETED"),
        ];
        assert_eq!(entry(&fields).record().unwrap().gpu_count, 4);
        let json = r#"{"task_id":"x","endpoint":"ep","gpu_count":1,"started_at":"2026-01-01T00:00:00Z","completed_at":"2026-01-01T00:00:01Z","status":"FAILED"}"#;
        assert_eq!(entry(&[("record", json)]).record().unwrap().task_id, "x");
    }

    #[test]
    fn bad_entries_name_the_field() {
        let e = entry(&[("task_id", "a"), ("gpu_count", "four")])
            .record()
            .unwrap_err();
        assert_eq!(e.problems[0].0, "gpu_count");
        assert!(e.problems[0].1.contains("four"), "{e:?}");
        let e = entry(&[("record", "{not json")]).record().unwrap_err();
        assert_eq!(e.problems[0].0, ENTRY_FIELD);
        assert!(entry(&[]).record().is_err());
    }

    #[test]
    fn sessions_and_heartbeats_by_kind() {
        let flat = [
            ("kind", "session"),
            ("worker_id", "w1"),
            ("endpoint", "ep"),
            ("gpu_count", "2"),
            ("started_at", "2026-01-01T00:00:00Z"),
            ("ended_at", ""),
        ];
        let Item::Session(s) = entry(&flat).item().unwrap() else {
            panic!("a session")
        };
        assert_eq!((s.offer.gpu_count, s.ended_at), (2, None));
        let json =
            r#"{"worker_id":"w1","endpoint":"ep","gpu_count":1,"at":"2026-01-01T00:00:30Z"}"#;
        let beat = entry(&[("kind", "heartbeat"), ("heartbeat", json)]).item();
        assert!(matches!(beat, Ok(Item::Heartbeat(_))), "{beat:?}");
        let e = entry(&[("kind", "pod"), ("x", "1")]).item().unwrap_err();
        assert!(e.problems[0].1.contains("unknown kind"), "{e:?}");
    }
}
