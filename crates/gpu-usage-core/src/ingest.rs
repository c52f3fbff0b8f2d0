//! Storing finished-task records: checked against the moment and the
//! configuration, idempotent by `task_id`, set-based.
//!
//! Two steps, so every transport applies its own batch policy:
//! [`check`] sorts a batch into valid records and per-record problems, and
//! [`store`] stores valid records. `POST /records` rejects a batch with any
//! problem whole ([`ingest`]): nothing is half-stored, and replays are free
//! because storing is idempotent. The Redis consumer dead-letters the
//! invalid entries and stores the rest.
//!
//! A replayed record (same content) is a duplicate and changes nothing; a
//! different record under a known task_id is a conflict: the stored one is
//! kept and the conflict is reported with the fields that differ.
//! `duration_seconds` and `gpu_hours` are always derived here.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait,
    TransactionSession, TransactionTrait, TryInsertResult,
};
use serde::Serialize;

use crate::EngineConfig;
use crate::entities::record;
use crate::error::{DomainError, RecordProblem, Result};
use crate::record::{InvalidRecord, Record};
use crate::rollup::pending;
use crate::types::{Granularity, TimeRange};

/// A batch sorted by [`check`]: positions are the records' places in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    pub valid: Vec<(usize, Record)>,
    pub problems: Vec<RecordProblem>,
}

/// Applies the rules that depend on `now` and the configuration (not in the
/// future beyond the clock skew, not past the records' retention, not
/// longer than the longest task) to records already parsed by their
/// transport, and sorts the batch.
pub fn check(
    items: impl IntoIterator<Item = Result<Record, InvalidRecord>>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Checked {
    let mut out = Checked::default();
    for (index, item) in items.into_iter().enumerate() {
        let (task_id, problems) = match item {
            Ok(r) => match context_problems(&r, now, cfg) {
                p if p.is_empty() => {
                    out.valid.push((index, r));
                    continue;
                }
                p => (Some(r.task_id), p),
            },
            Err(invalid) => (invalid.key, invalid.problems),
        };
        out.problems
            .extend(problems.into_iter().map(|(field, message)| RecordProblem {
                index,
                task_id: task_id.clone(),
                worker_id: None,
                field,
                message,
            }));
    }
    out
}

fn context_problems(r: &Record, now: DateTime<Utc>, cfg: &EngineConfig) -> Vec<(String, String)> {
    let mut p = Vec::new();
    let mut fail = |m: String| p.push(("completed_at".to_owned(), m));
    if r.completed_at - r.started_at > cfg.ingest.max_task_duration() {
        fail(format!(
            "task is longer than the maximum of {} hours",
            cfg.ingest.max_task_duration_hours
        ));
    }
    if r.completed_at > now + cfg.ingest.clock_skew() {
        fail("is in the future".to_owned());
    }
    if r.completed_at < crate::rollup::horizon::oldest_accepted_completion(now, &cfg.retention) {
        fail(format!(
            "is older than the {}-day record retention",
            cfg.retention.records_days
        ));
    } else {
        let first_day = crate::rollup::horizon::first_rebuildable_day(now, &cfg.retention);
        if r.started_at < first_day {
            p.push((
                "started_at".to_owned(),
                format!(
                    "is before {}, the first day the daily statistics can still be rebuilt \
                     from records (kept {} days)",
                    first_day.format("%Y-%m-%d"),
                    cfg.retention.records_days
                ),
            ));
        }
    }
    p
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

/// A whole batch or nothing: checks it, refuses it whole when any record
/// has a problem (every problem listed), else [`store`]s it.
pub async fn ingest(
    db: &(impl ConnectionTrait + TransactionTrait),
    items: Vec<Result<Record, InvalidRecord>>,
    now: DateTime<Utc>,
    cfg: &EngineConfig,
) -> Result<IngestReport> {
    check_batch_size(items.len(), cfg)?;
    let received = items.len();
    let checked = check(items, now, cfg);
    if !checked.problems.is_empty() {
        return Err(DomainError::InvalidRecords(checked.problems));
    }
    store(db, checked.valid, received, now).await
}

/// Batches are bounded: one transaction, bounded memory.
pub fn check_batch_size(n: usize, cfg: &EngineConfig) -> Result<()> {
    if n == 0 {
        return Err(DomainError::invalid("records", "the batch is empty"));
    }
    if n > cfg.ingest.max_batch {
        return Err(DomainError::invalid(
            "records",
            format!(
                "the batch has {n} records; the maximum is {}",
                cfg.ingest.max_batch
            ),
        ));
    }
    Ok(())
}

/// Stores the new records of `valid` and queues their minutes for the
/// rollup, in one transaction. `received` is the size of the batch they
/// came from (invalid records included), for the report.
pub async fn store(
    db: &(impl ConnectionTrait + TransactionTrait),
    valid: Vec<(usize, Record)>,
    received: usize,
    now: DateTime<Utc>,
) -> Result<IngestReport> {
    let mut report = IngestReport {
        received,
        ..Default::default()
    };
    let ids: Vec<String> = valid.iter().map(|(_, r)| r.task_id.clone()).collect();
    let stored = existing(db, ids).await?;
    let new_records = judge(valid, stored, &mut report);
    if new_records.is_empty() {
        return Ok(report);
    }
    let attempted = new_records.len();
    let inserted = insert_with_retry(db, &new_records, now).await?;
    report.inserted = inserted;
    let lost = attempted - inserted.min(attempted);
    if lost > 0 {
        // Someone else stored some of these tasks first: theirs is kept, and
        // ours is a duplicate or, if it differs, a conflict.
        let ids = new_records.iter().map(|(_, r)| r.task_id.clone()).collect();
        let stored = existing(db, ids).await?;
        let before = report.conflicts.len();
        for (i, r) in &new_records {
            if let Some(s) = stored.get(&r.task_id) {
                push_conflict(&mut report, *i, r, s);
            }
        }
        report.duplicates += lost.saturating_sub(report.conflicts.len() - before);
        report.conflicts.sort_by_key(|c| c.index);
    }
    Ok(report)
}

/// Sorts a batch against the stored records: each record is judged against
/// the stored one with its task_id or, for a task new to the database,
/// against its first copy in the batch. Returns the records to insert.
fn judge(
    valid: Vec<(usize, Record)>,
    mut reference: HashMap<String, Record>,
    report: &mut IngestReport,
) -> Vec<(usize, Record)> {
    let mut new_records = Vec::new();
    for (i, r) in valid {
        match reference.get(&r.task_id) {
            Some(known) => {
                if !push_conflict(report, i, &r, known) {
                    report.duplicates += 1;
                }
            }
            None => {
                reference.insert(r.task_id.clone(), r.clone());
                new_records.push((i, r));
            }
        }
    }
    report.conflicts.sort_by_key(|c| c.index);
    new_records
}

/// Reports `r` as a conflict with `known` if they differ; `false` when they
/// are the same record.
fn push_conflict(report: &mut IngestReport, index: usize, r: &Record, known: &Record) -> bool {
    let fields = r.differences(known);
    if fields.is_empty() {
        return false;
    }
    report.conflicts.push(Conflict {
        index,
        task_id: r.task_id.clone(),
        fields,
    });
    true
}

async fn insert_with_retry(
    db: &(impl ConnectionTrait + TransactionTrait),
    new_records: &[(usize, Record)],
    now: DateTime<Utc>,
) -> Result<usize> {
    crate::db::retrying(|| insert_batch(db, new_records, now)).await
}

/// The new records and the minutes they touch, in one transaction.
async fn insert_batch(
    db: &(impl ConnectionTrait + TransactionTrait),
    new_records: &[(usize, Record)],
    now: DateTime<Utc>,
) -> Result<usize> {
    let touched: Vec<TimeRange> = new_records
        .iter()
        .filter_map(|(_, r)| r.touched())
        .collect();
    let txn = db.begin().await?;
    let mut inserted = 0usize;
    for chunk in new_records.chunks(500) {
        let chunk: Vec<record::ActiveModel> =
            chunk.iter().map(|(_, r)| r.clone().into_row(now)).collect();
        // A concurrent ingest of the same task may win the race between
        // our read and this insert; the unique key settles it.
        inserted += insert_new(&txn, chunk).await?;
    }
    pending::mark(&txn, Granularity::Minute, touched, now).await?;
    txn.commit().await?;
    Ok(inserted)
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
) -> Result<HashMap<String, Record>> {
    let mut out = HashMap::new();
    for chunk in task_ids.chunks(1000) {
        let rows = record::Entity::find()
            .filter(record::Column::TaskId.is_in(chunk.iter().cloned()))
            .into_partial_model::<Record>()
            .all(db)
            .await?;
        out.extend(rows.into_iter().map(|r| (r.task_id.clone(), r)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordJson;
    use crate::types::parse_utc;

    fn now() -> DateTime<Utc> {
        parse_utc("now", "2026-01-02T00:00:00Z").unwrap()
    }

    fn record(start: &str, end: &str) -> Result<Record, InvalidRecord> {
        let j: RecordJson = serde_json::from_value(serde_json::json!({
            "task_id": "t1", "endpoint": "ep", "gpu_count": 1,
            "started_at": start, "completed_at": end, "status": "COMPLETED"
        }))
        .unwrap();
        Record::try_from(j)
    }

    fn messages(start: &str, end: &str) -> String {
        let checked = check([record(start, end)], now(), &EngineConfig::default());
        checked
            .problems
            .into_iter()
            .map(|p| p.message)
            .collect::<Vec<_>>()
            .join(";")
    }

    #[test]
    fn rejects_inverted_future_too_long_and_expired() {
        assert!(messages("2026-01-01T09:00:00Z", "2026-01-01T08:00:00Z").contains("before"));
        assert!(messages("2026-01-01T09:00:00Z", "2026-01-03T08:00:00Z").contains("future"));
        assert!(messages("2025-12-01T09:00:00Z", "2026-01-01T08:00:00Z").contains("longer"));
        assert!(messages("2025-01-01T09:00:00Z", "2025-01-01T10:00:00Z").contains("retention"));
        let ok = check(
            [record("2026-01-01T09:00:00Z", "2026-01-01T10:00:00Z")],
            now(),
            &EngineConfig::default(),
        );
        assert_eq!((ok.valid.len(), ok.problems.len()), (1, 0));
    }

    #[test]
    fn problems_carry_position_and_task() {
        let checked = check(
            [
                record("2026-01-01T09:00:00Z", "2026-01-01T10:00:00Z"),
                record("2026-01-01T09:00:00Z", "2026-01-01T08:00:00Z"),
            ],
            now(),
            &EngineConfig::default(),
        );
        assert_eq!(checked.valid.len(), 1);
        assert_eq!(checked.problems[0].index, 1);
        assert_eq!(checked.problems[0].task_id.as_deref(), Some("t1"));
    }
}
