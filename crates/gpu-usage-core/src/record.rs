//! A finished task's usage record: the domain type ([`Record`]), its JSON
//! wire form ([`RecordJson`], what `POST /records` and the stream's
//! `record` field carry) and the one conversion between them.
//!
//! Parse, don't validate: a [`Record`] exists only with every field in its
//! domain type and within its bounds (lengths, gpu_count range, RFC 3339
//! times with an offset, known status). What depends on the moment and the
//! configuration (clock skew, retention, task length) is checked by
//! [`crate::ingest::check`].

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::{DeriveIntoActiveModel, DerivePartialModel, IntoActiveModel, Set};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::entities::record;
use crate::fields::Checks;
use crate::types::{Granularity, TaskStatus, TimeRange};

pub use crate::fields::{Field, Invalid, MAX_GPU_COUNT};

/// Declares a struct with a task's reported fields, listed once here:
/// [`Record`] is exactly these, and the stored row
/// ([`crate::entities::record::Model`]) has them between its id and the
/// columns the service derives. The types are named as the caller has them
/// in scope (`DateTime<Utc>`, `TaskStatus`).
macro_rules! task_fields {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($head:tt)* } { $($tail:tt)* }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($head)*
            pub task_id: String,
            pub endpoint: String,
            pub worker_id: Option<String>,
            pub spec_name: Option<String>,
            pub gpu_count: i32,
            pub gpu_type: Option<String>,
            pub gpu_memory_gb: Option<i32>,
            pub started_at: DateTime<Utc>,
            pub completed_at: DateTime<Utc>,
            pub status: TaskStatus,
            $($tail)*
        }
    };
}
pub(crate) use task_fields;

task_fields! {
    /// A finished task as reported, every field checked.
    #[derive(
        Debug, Clone, PartialEq, Eq, Serialize, ToSchema, DerivePartialModel, DeriveIntoActiveModel,
    )]
    #[sea_orm(entity = "record::Entity", active_model = "record::ActiveModel")]
    pub struct Record {} {}
}

impl Record {
    /// Whole seconds, rounded down.
    pub fn duration_seconds(&self) -> i32 {
        let ms = (self.completed_at - self.started_at).num_milliseconds();
        i32::try_from(ms / 1000).unwrap_or(i32::MAX)
    }

    pub fn gpu_hours(&self) -> Decimal {
        let ms = (self.completed_at - self.started_at).num_milliseconds();
        (Decimal::from(ms) * Decimal::from(self.gpu_count) / Decimal::from(3_600_000))
            .round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
    }

    /// The minutes whose rows this record changes.
    pub fn touched(&self) -> Option<TimeRange> {
        let minute = Granularity::Minute;
        TimeRange::new(
            minute.floor(self.started_at),
            minute.floor(self.completed_at) + minute.bucket_len(),
        )
        .ok()
    }

    /// Fields whose values differ from another record (same task_id).
    pub fn differences(&self, other: &Record) -> Vec<String> {
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
            (serde_json::to_value(self), serde_json::to_value(other))
        else {
            return Vec::new();
        };
        a.iter()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The row to insert, with the derived columns the service computes.
    pub fn into_row(self, now: DateTime<Utc>) -> record::ActiveModel {
        let (duration, hours) = (self.duration_seconds(), self.gpu_hours());
        let mut row = self.into_active_model();
        row.duration_seconds = Set(duration);
        row.gpu_hours = Set(hours);
        row.created_at = Set(now);
        row
    }
}

/// One finished task as JSON. Unknown fields and the server-derived ones
/// (`id`, `duration_seconds`, `gpu_hours`, `created_at`) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct RecordJson {
    /// Unique per task; the idempotency key. 1–255 characters.
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 255)]
    pub task_id: Field<String>,
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 255)]
    pub endpoint: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 255)]
    pub worker_id: Field<String>,
    /// Absent, null or empty: the record counts in no spec scope.
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 255)]
    pub spec_name: Field<String>,
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0, maximum = 1024)]
    pub gpu_count: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 100)]
    pub gpu_type: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub gpu_memory_gb: Field<i64>,
    /// RFC 3339 with an offset (`Z` or `±hh:mm`), seconds 0–59.
    #[serde(default)]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Field<String>,
    /// RFC 3339 with an offset; not before `started_at`.
    #[serde(default)]
    #[schema(value_type = String, format = DateTime)]
    pub completed_at: Field<String>,
    /// `COMPLETED` or `FAILED`, any letter case.
    #[serde(default)]
    #[schema(value_type = String, example = "COMPLETED")]
    pub status: Field<String>,
}

/// Why a record could not be taken; its key is the task_id it claims.
pub type InvalidRecord = Invalid;

impl TryFrom<RecordJson> for Record {
    type Error = InvalidRecord;

    fn try_from(j: RecordJson) -> Result<Self, InvalidRecord> {
        let mut c = Checks::new(j.task_id.text()).types(&[
            ("task_id", j.task_id.wrong(), "a string"),
            ("endpoint", j.endpoint.wrong(), "a string"),
            ("worker_id", j.worker_id.wrong(), "a string"),
            ("spec_name", j.spec_name.wrong(), "a string"),
            ("gpu_type", j.gpu_type.wrong(), "a string"),
            ("started_at", j.started_at.wrong(), "a string"),
            ("completed_at", j.completed_at.wrong(), "a string"),
            ("status", j.status.wrong(), "a string"),
            ("gpu_count", j.gpu_count.wrong(), "an integer"),
            ("gpu_memory_gb", j.gpu_memory_gb.wrong(), "an integer"),
        ])?;
        let record = parse(&mut c, j);
        c.finish(record)
    }
}

fn parse(c: &mut Checks, j: RecordJson) -> Option<Record> {
    let task_id = c.text("task_id", j.task_id, 255, true);
    let endpoint = c.text("endpoint", j.endpoint, 255, true);
    let worker_id = c.text("worker_id", j.worker_id, 255, false);
    let spec_name = c.text("spec_name", j.spec_name, 255, false);
    let gpu_type = c.text("gpu_type", j.gpu_type, 100, false);
    let gpu_count = c.gpu_count(j.gpu_count);
    let gpu_memory_gb = gpu_memory(c, j.gpu_memory_gb.into_option());
    let started_at = c.time("started_at", j.started_at);
    let completed_at = c.time("completed_at", j.completed_at);
    let status = status(c, j.status.into_option());
    c.ordered("completed_at", "started_at", started_at, completed_at);
    Some(Record {
        task_id: task_id?,
        endpoint: endpoint?,
        worker_id,
        spec_name,
        gpu_count: gpu_count?,
        gpu_type,
        gpu_memory_gb,
        started_at: started_at?,
        completed_at: completed_at?,
        status: status?,
    })
}

fn gpu_memory(c: &mut Checks, v: Option<i64>) -> Option<i32> {
    match v {
        Some(n) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            c.fail(
                "gpu_memory_gb",
                format!("must be between 0 and {}, got {n}", i32::MAX),
            );
            None
        }
        other => other.and_then(|n| i32::try_from(n).ok()),
    }
}

fn status(c: &mut Checks, v: Option<String>) -> Option<TaskStatus> {
    match v.as_deref().map(str::parse::<TaskStatus>) {
        None => {
            c.fail("status", "is required");
            None
        }
        Some(Err(_)) => {
            let got = v.unwrap_or_default();
            c.fail(
                "status",
                format!("must be COMPLETED or FAILED, got {got:?}"),
            );
            None
        }
        Some(Ok(s)) => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: serde_json::Value) -> RecordJson {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn parses_and_derives() {
        let r = Record::try_from(json(serde_json::json!({
            "task_id": "t1", "endpoint": "ep", "gpu_count": 2,
            "started_at": "2026-01-01T10:00:00+02:00", "completed_at": "2026-01-01T08:30:00Z",
            "status": "completed", "unknown": 1
        })))
        .unwrap();
        assert_eq!(r.status, TaskStatus::Completed);
        assert_eq!(r.duration_seconds(), 1800);
        assert_eq!(r.gpu_hours(), Decimal::new(1, 0));
    }

    #[test]
    fn names_every_problem_in_field_order() {
        let e = Record::try_from(json(serde_json::json!({
            "task_id": " ", "gpu_count": -1,
            "started_at": "2026-01-01T10:00:00", "completed_at": "2026-01-01T08:30:00Z",
            "status": "RUNNING"
        })))
        .unwrap_err();
        let fields: Vec<&str> = e.problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["task_id", "endpoint", "gpu_count", "started_at", "status"]
        );
    }

    #[test]
    fn wrong_types_are_reported_alone() {
        let e = Record::try_from(json(serde_json::json!({
            "task_id": "t1", "endpoint": 5, "gpu_count": "two"
        })))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("t1"));
        let fields: Vec<&str> = e.problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["endpoint", "gpu_count"]);
        assert!(e.problems[0].1.contains("expected a string, got 5"));
    }

    #[test]
    fn differences_name_fields() {
        let a = Record::try_from(json(serde_json::json!({
            "task_id": "t1", "endpoint": "ep", "gpu_count": 2,
            "started_at": "2026-01-01T08:00:00Z", "completed_at": "2026-01-01T08:30:00Z",
            "status": "FAILED"
        })))
        .unwrap();
        let b = Record {
            gpu_count: 4,
            status: TaskStatus::Completed,
            ..a.clone()
        };
        assert_eq!(a.differences(&b), ["gpu_count", "status"]);
        assert!(a.differences(&a).is_empty());
    }
}
