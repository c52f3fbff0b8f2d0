//! [`Rec`]: a usage record as the tests think of it (UTC epoch
//! milliseconds), how it is spelled for ingest, and what ingest should
//! report for a sequence of batches.

use std::collections::HashMap;

use chrono::{FixedOffset, SecondsFormat};
use gpu_usage_core::ingest::IngestReport;
use gpu_usage_core::record::{InvalidRecord, Record, RecordJson};
use gpu_usage_core::types::ScopeType;

use crate::*;

/// A finished task. Times are UTC epoch milliseconds; `offset_min` and
/// `status_spelling` only change how the record is written for ingest (the
/// engine must convert any RFC 3339 offset to UTC and accept any case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub task_id: String,
    pub endpoint: String,
    pub spec_name: Option<String>,
    pub gpu_count: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub failed: bool,
    pub offset_min: i32,
    pub status_spelling: u8,
}

impl Rec {
    /// A plain record: UTC, upper-case status.
    pub fn new(
        task_id: &str,
        endpoint: &str,
        spec_name: Option<&str>,
        gpu_count: i64,
        start_ms: i64,
        end_ms: i64,
        failed: bool,
    ) -> Rec {
        Rec {
            task_id: task_id.to_owned(),
            endpoint: endpoint.to_owned(),
            spec_name: spec_name.map(str::to_owned),
            gpu_count,
            start_ms,
            end_ms,
            failed,
            offset_min: 0,
            status_spelling: 0,
        }
    }

    pub fn rfc3339(&self, t: i64) -> String {
        let offset = FixedOffset::east_opt(self.offset_min * 60).expect("offset in range");
        at(t)
            .with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn status_text(&self) -> &'static str {
        let spellings: [&str; 3] = if self.failed {
            ["FAILED", "failed", "Failed"]
        } else {
            ["COMPLETED", "completed", "Completed"]
        };
        spellings[usize::from(self.status_spelling) % 3]
    }

    /// The record as a client posts it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "task_id": self.task_id,
            "endpoint": self.endpoint,
            "worker_id": "worker-1",
            "spec_name": self.spec_name,
            "gpu_count": self.gpu_count,
            "gpu_type": "NVIDIA A100",
            "gpu_memory_gb": 80,
            "started_at": self.rfc3339(self.start_ms),
            "completed_at": self.rfc3339(self.end_ms),
            "status": self.status_text(),
        })
    }

    /// The record parsed as ingest gets it from a transport.
    pub fn input(&self) -> Result<Record, InvalidRecord> {
        let wire: RecordJson = serde_json::from_value(self.json()).expect("a JSON object");
        Record::try_from(wire)
    }

    /// What the service stores, for comparing two records under one task_id
    /// (ingest trims identifiers; offsets and status case are spelling).
    fn content(&self) -> (String, Option<String>, i64, i64, i64, bool) {
        (
            self.endpoint.trim().to_owned(),
            self.spec_name.as_deref().map(|s| s.trim().to_owned()),
            self.gpu_count,
            self.start_ms,
            self.end_ms,
            self.failed,
        )
    }

    fn key(&self) -> String {
        self.task_id.trim().to_owned()
    }
}

impl Interval for Rec {
    fn span(&self) -> (i64, i64, i64) {
        (self.start_ms, self.end_ms, self.gpu_count)
    }

    /// Global, its endpoint, and its spec (trimmed, as stored).
    fn scopes(&self) -> Vec<(ScopeType, Option<String>)> {
        scopes_of(self.endpoint.trim().to_owned(), self.spec_name.as_deref())
    }
}

pub fn inputs(recs: &[Rec]) -> Vec<Result<Record, InvalidRecord>> {
    recs.iter().map(Rec::input).collect()
}

/// What ingest should report for one batch, given what is stored already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedReport {
    pub received: usize,
    pub inserted: usize,
    pub duplicates: usize,
    pub conflict_indices: Vec<usize>,
}

/// Replays ingest's idempotency rules over batches in order: the first
/// record under a task_id is stored; a later one with the same content is a
/// duplicate, with other content a conflict. Returns the stored records and
/// the report each batch should get.
pub fn ingest_model(batches: &[Vec<Rec>]) -> (Vec<Rec>, Vec<ExpectedReport>) {
    let mut stored: Vec<Rec> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut reports = Vec::new();
    for batch in batches {
        let mut rep = ExpectedReport {
            received: batch.len(),
            inserted: 0,
            duplicates: 0,
            conflict_indices: Vec::new(),
        };
        for (i, r) in batch.iter().enumerate() {
            match by_id.get(&r.key()) {
                Some(&j) if stored[j].content() == r.content() => rep.duplicates += 1,
                Some(_) => rep.conflict_indices.push(i),
                None => {
                    by_id.insert(r.key(), stored.len());
                    stored.push(r.clone());
                    rep.inserted += 1;
                }
            }
        }
        reports.push(rep);
    }
    (stored, reports)
}

/// Received, inserted and rejected (duplicates + conflicts) counts only:
/// which of the rejected ones is a duplicate and which a conflict is
/// checked by the explicit tests in `engine_idempotent.rs`.
pub fn check_report_totals(got: &IngestReport, want: &ExpectedReport) -> Result<(), String> {
    if got.received != want.received
        || got.inserted != want.inserted
        || got.duplicates + got.conflicts.len() != want.duplicates + want.conflict_indices.len()
    {
        return Err(format!("ingest report: got {got:?}, want {want:?}"));
    }
    Ok(())
}

/// The whole report: counts and which records are conflicts.
pub fn check_report(got: &IngestReport, want: &ExpectedReport) -> Result<(), String> {
    let got_conflicts: Vec<usize> = got.conflicts.iter().map(|c| c.index).collect();
    if got.received != want.received
        || got.inserted != want.inserted
        || got.duplicates != want.duplicates
        || got_conflicts != want.conflict_indices
    {
        return Err(format!("ingest report: got {got:?}, want {want:?}"));
    }
    Ok(())
}

/// A JSON record parsed the way a transport parses it.
pub fn wire(v: serde_json::Value) -> Result<Record, InvalidRecord> {
    let wire: RecordJson = serde_json::from_value(v).expect("a JSON object");
    Record::try_from(wire)
}
