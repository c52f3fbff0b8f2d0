//! Storing finished-task records: validated, idempotent by `task_id`,
//! set-based.
//!
//! Batch policy: a batch with any invalid record is rejected whole and
//! every problem is reported (index, task_id, field, reason). Clients fix
//! and resend; nothing is half-stored, and replays are free because
//! ingestion is idempotent.
//!
//! A replayed record (same content) is a duplicate and changes nothing; a
//! different record under a known task_id is a conflict: the stored one is
//! kept and the conflict is reported with the fields that differ.
//! `duration_seconds` and `gpu_hours` are always derived here.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait,
    TransactionSession, TransactionTrait, TryInsertResult,
};
use serde::{Deserialize, Serialize};

use crate::EngineConfig;
use crate::entities::record;
use crate::error::{DomainError, RecordProblem, Result};
use crate::rollup::pending;
use crate::types::{Granularity, TaskStatus, TimeRange, parse_utc};

/// A record as a client sends it: every field optional so that validation,
/// not deserialization, names what is missing. Unknown and server-derived
/// fields (`id`, `duration_seconds`, `gpu_hours`, `created_at`) are ignored.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct RecordInput {
    pub task_id: Option<String>,
    pub endpoint: Option<String>,
    pub worker_id: Option<String>,
    pub spec_name: Option<String>,
    pub gpu_count: Option<i64>,
    pub gpu_type: Option<String>,
    pub gpu_memory_gb: Option<i64>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub status: Option<String>,
}

impl RecordInput {
    /// From string fields (a Redis stream entry): either the record's
    /// columns as fields, or one field `record` holding the JSON object.
    pub fn from_fields(
        fields: impl IntoIterator<Item = (String, String)>,
    ) -> std::result::Result<RecordInput, String> {
        let map: HashMap<String, String> = fields.into_iter().collect();
        if let Some(json) = map.get("record") {
            return serde_json::from_str(json)
                .map_err(|e| format!("field record: invalid JSON: {e}"));
        }
        let int = |k: &str| -> std::result::Result<Option<i64>, String> {
            map.get(k)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("field {k}: {v:?} is not an integer"))
                })
                .transpose()
        };
        let text = |k: &str| map.get(k).cloned();
        Ok(RecordInput {
            task_id: text("task_id"),
            endpoint: text("endpoint"),
            worker_id: text("worker_id"),
            spec_name: text("spec_name"),
            gpu_count: int("gpu_count")?,
            gpu_type: text("gpu_type"),
            gpu_memory_gb: int("gpu_memory_gb")?,
            started_at: text("started_at"),
            completed_at: text("completed_at"),
            status: text("status"),
        })
    }
}

/// A validated record, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
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
}

impl NewRecord {
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
    fn touched(&self) -> Option<TimeRange> {
        TimeRange::new(
            Granularity::Minute.floor(self.started_at),
            Granularity::Minute.floor(self.completed_at) + Granularity::Minute.bucket_len(),
        )
        .ok()
    }

    /// Fields that differ from another record with the same task_id.
    fn differences(&self, stored: &NewRecord) -> Vec<String> {
        let mut d = Vec::new();
        let mut check = |name: &str, same: bool| {
            if !same {
                d.push(name.to_owned());
            }
        };
        check("endpoint", self.endpoint == stored.endpoint);
        check("worker_id", self.worker_id == stored.worker_id);
        check("spec_name", self.spec_name == stored.spec_name);
        check("gpu_count", self.gpu_count == stored.gpu_count);
        check("gpu_type", self.gpu_type == stored.gpu_type);
        check("gpu_memory_gb", self.gpu_memory_gb == stored.gpu_memory_gb);
        check("started_at", self.started_at == stored.started_at);
        check("completed_at", self.completed_at == stored.completed_at);
        check("status", self.status == stored.status);
        d
    }

    fn into_active_model(self, now: DateTime<Utc>) -> record::ActiveModel {
        record::ActiveModel {
            id: NotSet,
            duration_seconds: Set(self.duration_seconds()),
            gpu_hours: Set(self.gpu_hours()),
            task_id: Set(self.task_id),
            endpoint: Set(self.endpoint),
            worker_id: Set(self.worker_id),
            spec_name: Set(self.spec_name),
            gpu_count: Set(self.gpu_count),
            gpu_type: Set(self.gpu_type),
            gpu_memory_gb: Set(self.gpu_memory_gb),
            started_at: Set(self.started_at),
            completed_at: Set(self.completed_at),
            status: Set(self.status),
            created_at: Set(now),
        }
    }
}

impl From<record::Model> for NewRecord {
    fn from(m: record::Model) -> Self {
        NewRecord {
            task_id: m.task_id,
            endpoint: m.endpoint,
            worker_id: m.worker_id,
            spec_name: m.spec_name,
            gpu_count: m.gpu_count,
            gpu_type: m.gpu_type,
            gpu_memory_gb: m.gpu_memory_gb,
            started_at: m.started_at,
            completed_at: m.completed_at,
            status: m.status,
        }
    }
}

/// Largest gpu_count accepted: above it is a client bug, not a machine.
pub const MAX_GPU_COUNT: i64 = 1024;

struct Check<'a> {
    index: usize,
    task_id: Option<String>,
    problems: &'a mut Vec<RecordProblem>,
}

impl Check<'_> {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(RecordProblem {
            index: self.index,
            task_id: self.task_id.clone(),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Identifiers are trimmed: MySQL's PAD SPACE collations would make
    /// "a" and "a " the same key anyway.
    fn text(
        &mut self,
        field: &str,
        v: Option<String>,
        max: usize,
        required: bool,
    ) -> Option<String> {
        let v = v.map(|s| s.trim().to_owned());
        match v {
            None if required => {
                self.fail(field, "is required");
                None
            }
            Some(s) if required && s.is_empty() => {
                self.fail(field, "must not be empty");
                None
            }
            Some(s) if s.chars().count() > max => {
                self.fail(field, format!("is longer than {max} characters"));
                None
            }
            other => other,
        }
    }

    fn time(&mut self, field: &'static str, v: Option<&str>) -> Option<DateTime<Utc>> {
        match v {
            None => {
                self.fail(field, "is required");
                None
            }
            Some(s) => match parse_utc(field, s) {
                Ok(t) => Some(t),
                Err(e) => {
                    let msg = match e {
                        DomainError::Invalid { message, .. } => message,
                        other => other.to_string(),
                    };
                    self.fail(field, msg);
                    None
                }
            },
        }
    }
}

/// Validates one record; pushes every problem found.
pub fn validate(
    index: usize,
    input: RecordInput,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
    problems: &mut Vec<RecordProblem>,
) -> Option<NewRecord> {
    let before = problems.len();
    let mut c = Check {
        index,
        task_id: input.task_id.clone(),
        problems,
    };
    let task_id = c.text("task_id", input.task_id, 255, true);
    let endpoint = c.text("endpoint", input.endpoint, 255, true);
    let worker_id = c.text("worker_id", input.worker_id, 255, false);
    let spec_name = c.text("spec_name", input.spec_name, 255, false);
    let gpu_type = c.text("gpu_type", input.gpu_type, 100, false);
    let gpu_count = match input.gpu_count {
        None => {
            c.fail("gpu_count", "is required");
            None
        }
        Some(n) if !(0..=MAX_GPU_COUNT).contains(&n) => {
            c.fail(
                "gpu_count",
                format!("must be between 0 and {MAX_GPU_COUNT}, got {n}"),
            );
            None
        }
        Some(n) => i32::try_from(n).ok(),
    };
    let gpu_memory_gb = match input.gpu_memory_gb {
        Some(n) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            c.fail(
                "gpu_memory_gb",
                format!("must be between 0 and {}, got {n}", i32::MAX),
            );
            None
        }
        other => other.and_then(|n| i32::try_from(n).ok()),
    };
    let started_at = c.time("started_at", input.started_at.as_deref());
    let completed_at = c.time("completed_at", input.completed_at.as_deref());
    let status = match input.status.as_deref().map(str::parse::<TaskStatus>) {
        None => {
            c.fail("status", "is required");
            None
        }
        Some(Err(_)) => {
            c.fail(
                "status",
                format!(
                    "must be COMPLETED or FAILED, got {:?}",
                    input.status.unwrap_or_default()
                ),
            );
            None
        }
        Some(Ok(s)) => Some(s),
    };
    if let (Some(s), Some(e)) = (started_at, completed_at) {
        if e < s {
            c.fail("completed_at", "is before started_at");
        } else if e - s > cfg.ingest.max_task_duration() {
            c.fail(
                "completed_at",
                format!(
                    "task is longer than the maximum of {} hours",
                    cfg.ingest.max_task_duration_hours
                ),
            );
        }
        if e > now + cfg.ingest.clock_skew() {
            c.fail("completed_at", "is in the future");
        }
        if e < crate::rollup::horizon::oldest_accepted_completion(now, &cfg.retention) {
            c.fail(
                "completed_at",
                format!(
                    "is older than the {}-day record retention",
                    cfg.retention.records_days
                ),
            );
        }
    }
    if c.problems.len() > before {
        return None;
    }
    Some(NewRecord {
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

/// A known task_id arrived with different content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Conflict {
    /// Position in the batch, from 0.
    pub index: usize,
    pub task_id: String,
    /// Fields whose values differ from the stored record.
    pub fields: Vec<String>,
}

/// What an ingest call did. Replays of stored records are duplicates;
/// different content under a stored task_id is a conflict, and the stored
/// record is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    pub received: usize,
    pub inserted: usize,
    pub duplicates: usize,
    pub conflicts: Vec<Conflict>,
}

/// Validates the whole batch (rejecting it whole on any problem), then
/// stores the new records and queues their minutes for the rollup, in one
/// transaction.
pub async fn ingest(
    db: &(impl ConnectionTrait + TransactionTrait),
    inputs: Vec<RecordInput>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<IngestReport> {
    if inputs.is_empty() {
        return Err(DomainError::invalid("records", "the batch is empty"));
    }
    if inputs.len() > cfg.ingest.max_batch {
        return Err(DomainError::invalid(
            "records",
            format!(
                "the batch has {} records; the maximum is {}",
                inputs.len(),
                cfg.ingest.max_batch
            ),
        ));
    }
    let received = inputs.len();
    let mut problems = Vec::new();
    let valid: Vec<(usize, NewRecord)> = inputs
        .into_iter()
        .enumerate()
        .filter_map(|(i, input)| validate(i, input, now, cfg, &mut problems).map(|r| (i, r)))
        .collect();
    if !problems.is_empty() {
        return Err(DomainError::InvalidRecords(problems));
    }

    let mut report = IngestReport {
        received,
        ..Default::default()
    };
    // Each record is judged against the stored record with its task_id or,
    // for a task new to the database, against its first copy in the batch.
    let ids: Vec<String> = valid.iter().map(|(_, r)| r.task_id.clone()).collect();
    let mut reference: HashMap<String, NewRecord> = existing(db, ids).await?;
    let mut new_records = Vec::new();
    for (i, r) in valid {
        match reference.get(&r.task_id) {
            Some(known) => {
                let fields = r.differences(known);
                if fields.is_empty() {
                    report.duplicates += 1;
                } else {
                    report.conflicts.push(Conflict {
                        index: i,
                        task_id: r.task_id,
                        fields,
                    });
                }
            }
            None => {
                reference.insert(r.task_id.clone(), r.clone());
                new_records.push((i, r));
            }
        }
    }
    report.conflicts.sort_by_key(|c| c.index);
    if new_records.is_empty() {
        return Ok(report);
    }

    let touched: Vec<TimeRange> = new_records
        .iter()
        .filter_map(|(_, r)| r.touched())
        .collect();
    let attempted = new_records.len();
    let txn = db.begin().await?;
    let mut inserted = 0usize;
    for chunk in new_records.chunks(500) {
        let chunk: Vec<record::ActiveModel> = chunk
            .iter()
            .map(|(_, r)| r.clone().into_active_model(now))
            .collect();
        // A concurrent ingest of the same task may win the race between
        // our read and this insert; the unique key settles it.
        inserted += insert_new(&txn, chunk).await?;
    }
    pending::mark(&txn, Granularity::Minute, touched, now).await?;
    txn.commit().await?;
    report.inserted = inserted;
    let lost = attempted - inserted.min(attempted);
    if lost > 0 {
        // Someone else stored some of these tasks first: theirs is kept, and
        // ours is a duplicate or, if it differs, a conflict.
        let ids = new_records.iter().map(|(_, r)| r.task_id.clone()).collect();
        let stored = existing(db, ids).await?;
        let mut conflicts = 0;
        for (i, r) in &new_records {
            if let Some(s) = stored.get(&r.task_id) {
                let fields = r.differences(s);
                if !fields.is_empty() {
                    conflicts += 1;
                    report.conflicts.push(Conflict {
                        index: *i,
                        task_id: r.task_id.clone(),
                        fields,
                    });
                }
            }
        }
        report.conflicts.sort_by_key(|c| c.index);
        report.duplicates += lost.saturating_sub(conflicts);
    }
    Ok(report)
}

/// Inserts records whose task_id may meanwhile exist, returning how many
/// were really inserted. MySQL gets `INSERT IGNORE`: with the
/// CLIENT_FOUND_ROWS flag sqlx always sets, an `ON DUPLICATE KEY UPDATE`
/// no-op counts a duplicate as an affected row. Lengths and values were
/// validated, so IGNORE can only skip duplicates here.
async fn insert_new(db: &impl ConnectionTrait, chunk: Vec<record::ActiveModel>) -> Result<usize> {
    let insert = record::Entity::insert_many(chunk);
    let n = match db.get_database_backend() {
        DbBackend::MySql => {
            let mut stmt = insert.build(DbBackend::MySql);
            stmt.sql = stmt.sql.replacen("INSERT INTO", "INSERT IGNORE INTO", 1);
            db.execute_raw(stmt).await?.rows_affected()
        }
        _ => match insert
            .on_conflict_do_nothing_on([record::Column::TaskId])
            .exec_without_returning(db)
            .await?
        {
            TryInsertResult::Inserted(n) => n,
            _ => 0,
        },
    };
    Ok(usize::try_from(n).unwrap_or(0))
}

async fn existing(
    db: &impl ConnectionTrait,
    task_ids: Vec<String>,
) -> Result<HashMap<String, NewRecord>> {
    let mut out = HashMap::new();
    for chunk in task_ids.chunks(1000) {
        let rows = record::Entity::find()
            .filter(record::Column::TaskId.is_in(chunk.iter().cloned()))
            .all(db)
            .await?;
        out.extend(
            rows.into_iter()
                .map(|r| (r.task_id.clone(), NewRecord::from(r))),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> RecordInput {
        RecordInput {
            task_id: Some("t1".into()),
            endpoint: Some("ep".into()),
            gpu_count: Some(2),
            started_at: Some("2026-01-01T10:00:00+02:00".into()),
            completed_at: Some("2026-01-01T08:30:00Z".into()),
            status: Some("completed".into()),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        parse_utc("now", "2026-01-02T00:00:00Z").unwrap()
    }

    #[test]
    fn derives_duration_and_gpu_hours() {
        let mut p = Vec::new();
        let r = validate(0, input(), now(), &EngineConfig::default(), &mut p).unwrap();
        assert!(p.is_empty());
        assert_eq!(r.status, TaskStatus::Completed);
        assert_eq!(r.duration_seconds(), 1800);
        assert_eq!(r.gpu_hours(), Decimal::new(1, 0));
    }

    #[test]
    fn names_every_problem() {
        let bad = RecordInput {
            task_id: Some(" ".into()),
            gpu_count: Some(-1),
            started_at: Some("2026-01-01T10:00:00".into()),
            completed_at: Some("2026-01-01T08:30:00Z".into()),
            status: Some("RUNNING".into()),
            ..Default::default()
        };
        let mut p = Vec::new();
        assert!(validate(3, bad, now(), &EngineConfig::default(), &mut p).is_none());
        let fields: Vec<&str> = p.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(
            fields,
            ["task_id", "endpoint", "gpu_count", "started_at", "status"]
        );
        assert!(p.iter().all(|x| x.index == 3));
    }

    #[test]
    fn rejects_inverted_future_too_long_and_expired() {
        let cfg = EngineConfig::default();
        let case = |s: &str, e: &str| {
            let mut p = Vec::new();
            let i = RecordInput {
                started_at: Some(s.into()),
                completed_at: Some(e.into()),
                ..input()
            };
            validate(0, i, now(), &cfg, &mut p);
            p.into_iter()
                .map(|x| x.message)
                .collect::<Vec<_>>()
                .join(";")
        };
        assert!(case("2026-01-01T09:00:00Z", "2026-01-01T08:00:00Z").contains("before"));
        assert!(case("2026-01-01T09:00:00Z", "2026-01-03T08:00:00Z").contains("future"));
        assert!(case("2025-12-01T09:00:00Z", "2026-01-01T08:00:00Z").contains("longer"));
        assert!(case("2025-01-01T09:00:00Z", "2025-01-01T10:00:00Z").contains("retention"));
    }

    #[test]
    fn string_fields_parse() {
        let r = RecordInput::from_fields([
            ("task_id".to_owned(), "a".to_owned()),
            ("gpu_count".to_owned(), "4".to_owned()),
        ])
        .unwrap();
        assert_eq!(r.gpu_count, Some(4));
        assert!(RecordInput::from_fields([("gpu_count".to_owned(), "four".to_owned())]).is_err());
        let j = RecordInput::from_fields([(
            "record".to_owned(),
            r#"{"task_id":"x","gpu_count":1}"#.to_owned(),
        )])
        .unwrap();
        assert_eq!(j.task_id.as_deref(), Some("x"));
    }
}
