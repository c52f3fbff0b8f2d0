//! The stream's wire form of a record, and its conversion into the domain
//! record.
//!
//! An entry holds either the record's column names as fields (`task_id`,
//! `endpoint`, `worker_id`, `spec_name`, `gpu_count`, `gpu_type`,
//! `gpu_memory_gb`, `started_at`, `completed_at`, `status`; every value a
//! string, as Redis keeps them), or one field `record` holding the JSON
//! object `POST /records` takes.

use std::collections::HashMap;

use deadpool_redis::redis::{Value, streams::StreamId};
use gpu_usage_core::record::{Field, InvalidRecord, Record, RecordJson};

/// The problem "field" of an entry that is not a record at all.
pub const ENTRY_FIELD: &str = "entry";

/// One stream entry with its fields as raw bytes (a malformed entry may not
/// even be UTF-8, and is dead-lettered as it came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(String, Vec<u8>)>,
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

    /// The record this entry carries, or every reason it is not one.
    pub fn record(&self) -> Result<Record, InvalidRecord> {
        StreamRecord::parse(self).and_then(Record::try_from)
    }
}

/// A record as the stream carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRecord {
    /// One `record` field of JSON.
    Json(Box<RecordJson>),
    /// The columns as string fields.
    Fields(HashMap<String, String>),
}

impl StreamRecord {
    fn parse(e: &Entry) -> Result<Self, InvalidRecord> {
        let malformed = |why: String| InvalidRecord {
            key: None,
            problems: vec![(ENTRY_FIELD.to_owned(), why)],
        };
        if e.fields.is_empty() {
            return Err(malformed(
                "the entry has no fields (deleted from the stream?)".to_owned(),
            ));
        }
        let mut fields = HashMap::with_capacity(e.fields.len());
        for (k, v) in &e.fields {
            let v = String::from_utf8(v.clone())
                .map_err(|_| malformed(format!("field {k}: not UTF-8")))?;
            fields.insert(k.clone(), v);
        }
        match fields.get("record") {
            Some(json) => serde_json::from_str(json)
                .map(StreamRecord::Json)
                .map_err(|e| malformed(format!("field record: invalid JSON: {e}"))),
            None => Ok(StreamRecord::Fields(fields)),
        }
    }
}

impl TryFrom<StreamRecord> for Record {
    type Error = InvalidRecord;

    fn try_from(s: StreamRecord) -> Result<Self, InvalidRecord> {
        let mut map = match s {
            StreamRecord::Json(json) => return Record::try_from(*json),
            StreamRecord::Fields(map) => map,
        };
        let mut text = |k: &str| Field::from(map.remove(k));
        let json = RecordJson {
            task_id: text("task_id"),
            endpoint: text("endpoint"),
            worker_id: text("worker_id"),
            spec_name: text("spec_name"),
            gpu_type: text("gpu_type"),
            started_at: text("started_at"),
            completed_at: text("completed_at"),
            status: text("status"),
            gpu_count: integer(map.remove("gpu_count")),
            gpu_memory_gb: integer(map.remove("gpu_memory_gb")),
        };
        Record::try_from(json)
    }
}

/// Integers arrive as text; an empty value counts as absent.
fn integer(v: Option<String>) -> Field<i64> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Field::Absent,
        Some(t) => t.parse::<i64>().map_or_else(
            |_| Field::Wrong(serde_json::Value::String(t.to_owned())),
            Field::Value,
        ),
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
}
