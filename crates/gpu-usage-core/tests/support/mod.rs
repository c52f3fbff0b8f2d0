//! Shared support of the engine proof (`tests/engine_*.rs`):
//!
//! - [`Rec`]: a usage record as the tests think of it (UTC epoch
//!   milliseconds), and how it is spelled as ingest input;
//! - [`model`]: the reference model: SPEC §3 written out as plain loops over
//!   records and buckets, independent of the engine's `rollup::compute` (it
//!   computes every level directly from records, never by folding a finer
//!   level, and does its own integer rounding);
//! - readers that load every row of every statistics level into comparable
//!   [`Row`]s, and a diff that names missing, unexpected and different rows;
//! - the job runners every test uses (each rollup is run twice and must not
//!   change anything the second time);
//! - proptest strategies for random records and scenarios, and a tiny
//!   deterministic generator for the scripted tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::entities::{record, statistics_daily, statistics_hourly, statistics_minute};
use gpu_usage_core::ingest::{IngestReport, RecordInput};
use gpu_usage_core::rollup;
use gpu_usage_core::status::{self, LevelStatus};
use gpu_usage_core::types::{Granularity, ScopeType, TimeRange, day_start};
use gpu_usage_testing::TestDb;
use proptest::prelude::*;
use proptest::sample::Index;
use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, TransactionTrait};

pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 86_400_000;

// ---------------------------------------------------------------------------
// Time helpers
// ---------------------------------------------------------------------------

/// UTC instant from epoch milliseconds.
pub fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("timestamp in range")
}

/// Epoch milliseconds of an RFC 3339 string (tests' own literals).
pub fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test timestamp {s:?}: {e}"))
        .timestamp_millis()
}

/// Start of the `len`-bucket holding `t` (UTC epoch ms; days start at UTC
/// midnight because the epoch does).
pub fn floor(t: i64, len: i64) -> i64 {
    t.div_euclid(len) * len
}

pub fn range(start_ms: i64, end_ms: i64) -> TimeRange {
    TimeRange::new(at(start_ms), at(end_ms)).expect("start < end")
}

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

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

    fn rfc3339(&self, t: i64) -> String {
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

    /// The ingest input for this record.
    pub fn input(&self) -> RecordInput {
        RecordInput {
            task_id: Some(self.task_id.clone()),
            endpoint: Some(self.endpoint.clone()),
            worker_id: Some("worker-1".to_owned()),
            spec_name: self.spec_name.clone(),
            gpu_count: Some(self.gpu_count),
            gpu_type: Some("NVIDIA A100".to_owned()),
            gpu_memory_gb: Some(80),
            started_at: Some(self.rfc3339(self.start_ms)),
            completed_at: Some(self.rfc3339(self.end_ms)),
            status: Some(self.status_text().to_owned()),
        }
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

    /// Scopes the record counts in (SPEC §3): global, its endpoint, and its
    /// spec unless the spec name is NULL or empty (after trimming, as stored).
    pub fn scopes(&self) -> Vec<(ScopeType, Option<String>)> {
        let mut v = vec![
            (ScopeType::Global, None),
            (ScopeType::Endpoint, Some(self.endpoint.trim().to_owned())),
        ];
        if let Some(spec) = &self.spec_name {
            let spec = spec.trim();
            if !spec.is_empty() {
                v.push((ScopeType::Spec, Some(spec.to_owned())));
            }
        }
        v
    }

    /// GPU-milliseconds of the record inside `[from, to)`.
    pub fn gpu_ms_within(&self, from: i64, to: i64) -> i64 {
        let overlap = self.end_ms.min(to) - self.start_ms.max(from);
        if overlap > 0 {
            overlap * self.gpu_count
        } else {
            0
        }
    }
}

pub fn inputs(recs: &[Rec]) -> Vec<RecordInput> {
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

// ---------------------------------------------------------------------------
// Comparable rows
// ---------------------------------------------------------------------------

/// One statistics row, level-independent, with decimals as integers in
/// units of their column's last place (DB values rounded to the column
/// scale, which absorbs SQLite's float storage).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    /// Bucket start (midnight UTC for daily rows).
    pub bucket: DateTime<Utc>,
    pub scope_type: ScopeType,
    pub scope_value: Option<String>,
    pub total_tasks: i64,
    pub completed_tasks: i64,
    pub failed_tasks: i64,
    pub gpu_ms: i64,
    pub gpu_count_sum: i64,
    pub max_gpu_count: i64,
    /// total_gpu_seconds in milliseconds (minute rows only).
    pub gpu_seconds_milli: Option<i64>,
    /// total_gpu_hours in 1e-6 GPU-hours.
    pub gpu_hours_micro: i64,
    /// avg_gpu_count in hundredths.
    pub avg_centi: i64,
    /// peak_minute (hourly) / peak_hour (daily).
    pub peak_at: Option<DateTime<Utc>>,
    /// peak_gpu_hours in 1e-6 GPU-hours.
    pub peak_micro: Option<i64>,
    /// available_gpu_hours or utilization_rate set (daily; must stay NULL).
    pub capacity_set: bool,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Only from the database; `None` in the model and in `stripped()`.
    pub updated_at: Option<DateTime<Utc>>,
}

pub type Key = (DateTime<Utc>, ScopeType, Option<String>);

impl Row {
    pub fn key(&self) -> Key {
        (self.bucket, self.scope_type, self.scope_value.clone())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Levels {
    pub minute: Vec<Row>,
    pub hourly: Vec<Row>,
    pub daily: Vec<Row>,
}

impl Levels {
    pub fn stripped(&self) -> Levels {
        let strip = |v: &Vec<Row>| {
            v.iter()
                .cloned()
                .map(|r| Row {
                    updated_at: None,
                    ..r
                })
                .collect::<Vec<_>>()
        };
        Levels {
            minute: strip(&self.minute),
            hourly: strip(&self.hourly),
            daily: strip(&self.daily),
        }
    }

    pub fn level(&self, g: Granularity) -> &Vec<Row> {
        match g {
            Granularity::Minute => &self.minute,
            Granularity::Hourly => &self.hourly,
            Granularity::Daily => &self.daily,
        }
    }

    /// Rows whose bucket satisfies `keep`, per level.
    pub fn filter(&self, keep: impl Fn(Granularity, &Row) -> bool) -> Levels {
        let f = |g: Granularity, v: &Vec<Row>| {
            v.iter().filter(|r| keep(g, r)).cloned().collect::<Vec<_>>()
        };
        Levels {
            minute: f(Granularity::Minute, &self.minute),
            hourly: f(Granularity::Hourly, &self.hourly),
            daily: f(Granularity::Daily, &self.daily),
        }
    }

    pub fn row_count(&self) -> usize {
        self.minute.len() + self.hourly.len() + self.daily.len()
    }
}

/// Rounds a decimal to `scale` places and returns it in units of the last
/// place.
pub fn units(d: Decimal, scale: u32) -> i64 {
    let mut r = d.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(scale);
    i64::try_from(r.mantissa()).expect("decimal fits i64")
}

fn count(n: i32) -> i64 {
    i64::from(n)
}

fn minute_row(m: statistics_minute::Model) -> Row {
    Row {
        bucket: m.time_bucket,
        scope_type: m.scope_type,
        scope_value: m.scope_value,
        total_tasks: count(m.total_tasks),
        completed_tasks: count(m.completed_tasks),
        failed_tasks: count(m.failed_tasks),
        gpu_ms: m.gpu_milliseconds,
        gpu_count_sum: m.gpu_count_sum,
        max_gpu_count: count(m.max_gpu_count),
        gpu_seconds_milli: Some(units(m.total_gpu_seconds, 3)),
        gpu_hours_micro: units(m.total_gpu_hours, 6),
        avg_centi: units(m.avg_gpu_count, 2),
        peak_at: None,
        peak_micro: None,
        capacity_set: false,
        period_start: m.period_start,
        period_end: m.period_end,
        updated_at: Some(m.updated_at),
    }
}

fn hourly_row(m: statistics_hourly::Model) -> Row {
    Row {
        bucket: m.time_bucket,
        scope_type: m.scope_type,
        scope_value: m.scope_value,
        total_tasks: count(m.total_tasks),
        completed_tasks: count(m.completed_tasks),
        failed_tasks: count(m.failed_tasks),
        gpu_ms: m.gpu_milliseconds,
        gpu_count_sum: m.gpu_count_sum,
        max_gpu_count: count(m.max_gpu_count),
        gpu_seconds_milli: None,
        gpu_hours_micro: units(m.total_gpu_hours, 6),
        avg_centi: units(m.avg_gpu_count, 2),
        peak_at: m.peak_minute,
        peak_micro: m.peak_gpu_hours.map(|d| units(d, 6)),
        capacity_set: false,
        period_start: m.period_start,
        period_end: m.period_end,
        updated_at: Some(m.updated_at),
    }
}

fn daily_row(m: statistics_daily::Model) -> Row {
    Row {
        bucket: day_start(m.time_bucket),
        scope_type: m.scope_type,
        scope_value: m.scope_value,
        total_tasks: count(m.total_tasks),
        completed_tasks: count(m.completed_tasks),
        failed_tasks: count(m.failed_tasks),
        gpu_ms: m.gpu_milliseconds,
        gpu_count_sum: m.gpu_count_sum,
        max_gpu_count: count(m.max_gpu_count),
        gpu_seconds_milli: None,
        gpu_hours_micro: units(m.total_gpu_hours, 6),
        avg_centi: units(m.avg_gpu_count, 2),
        peak_at: m.peak_hour,
        peak_micro: m.peak_gpu_hours.map(|d| units(d, 6)),
        capacity_set: m.available_gpu_hours.is_some() || m.utilization_rate.is_some(),
        period_start: m.period_start,
        period_end: m.period_end,
        updated_at: Some(m.updated_at),
    }
}

/// Every row of every statistics level, sorted.
pub async fn read_levels(db: &impl ConnectionTrait) -> anyhow::Result<Levels> {
    let mut minute: Vec<Row> = statistics_minute::Entity::find()
        .all(db)
        .await
        .context("read minute rows")?
        .into_iter()
        .map(minute_row)
        .collect();
    let mut hourly: Vec<Row> = statistics_hourly::Entity::find()
        .all(db)
        .await
        .context("read hourly rows")?
        .into_iter()
        .map(hourly_row)
        .collect();
    let mut daily: Vec<Row> = statistics_daily::Entity::find()
        .all(db)
        .await
        .context("read daily rows")?
        .into_iter()
        .map(daily_row)
        .collect();
    minute.sort();
    hourly.sort();
    daily.sort();
    Ok(Levels {
        minute,
        hourly,
        daily,
    })
}

pub async fn record_count(db: &impl ConnectionTrait) -> anyhow::Result<u64> {
    Ok(record::Entity::find().count(db).await?)
}

/// Describes how `actual` differs from `expected` (at most a few lines per
/// kind), or Ok when equal.
pub fn diff_levels(actual: &Levels, expected: &Levels) -> Result<(), String> {
    let mut out = String::new();
    for g in Granularity::ALL {
        diff_rows(g, actual.level(g), expected.level(g), &mut out);
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

fn diff_rows(g: Granularity, actual: &[Row], expected: &[Row], out: &mut String) {
    use std::fmt::Write;
    const SHOW: usize = 8;
    let index =
        |rows: &[Row]| -> HashMap<Key, Row> { rows.iter().map(|r| (r.key(), r.clone())).collect() };
    let a = index(actual);
    let e = index(expected);
    if a.len() != actual.len() {
        let _ = writeln!(out, "[{g}] duplicate (bucket, scope) keys in the table");
    }
    let mut missing: Vec<&Row> = expected
        .iter()
        .filter(|r| !a.contains_key(&r.key()))
        .collect();
    let mut extra: Vec<&Row> = actual
        .iter()
        .filter(|r| !e.contains_key(&r.key()))
        .collect();
    let mut different: Vec<(&Row, &Row)> = expected
        .iter()
        .filter_map(|x| a.get(&x.key()).filter(|y| *y != x).map(|y| (y, x)))
        .collect();
    missing.sort();
    extra.sort();
    different.sort();
    if missing.is_empty() && extra.is_empty() && different.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "[{g}] {} rows, expected {}: {} missing, {} unexpected, {} different",
        actual.len(),
        expected.len(),
        missing.len(),
        extra.len(),
        different.len()
    );
    for r in missing.iter().take(SHOW) {
        let _ = writeln!(out, "  missing:    {r:?}");
    }
    for r in extra.iter().take(SHOW) {
        let _ = writeln!(out, "  unexpected: {r:?}");
    }
    for (got, want) in different.iter().take(SHOW) {
        let _ = writeln!(out, "  got:        {got:?}\n  want:       {want:?}");
    }
}

// ---------------------------------------------------------------------------
// The reference model (SPEC §3)
// ---------------------------------------------------------------------------

/// Per (bucket, scope) quantities while the model accumulates.
#[derive(Debug, Clone, Default)]
struct Tally {
    total_tasks: i64,
    completed_tasks: i64,
    failed_tasks: i64,
    gpu_ms: i64,
    gpu_count_sum: i64,
    max_gpu_count: i64,
}

type MKey = (i64, ScopeType, Option<String>);

/// round_half_away_from_zero(n / d) for n ≥ 0, d > 0.
fn div_round(n: i128, d: i128) -> i64 {
    assert!(n >= 0 && d > 0);
    i64::try_from((2 * n + d) / (2 * d)).expect("fits")
}

/// GPU-ms → 1e-6 GPU-hours, rounded half away from zero.
pub fn gpu_hours_micro(gpu_ms: i64) -> i64 {
    // gpu_ms / 3_600_000 h = gpu_ms * 10 / 36 micro-hours.
    div_round(i128::from(gpu_ms) * 10, 36)
}

/// Σ gpu_count / tasks in hundredths, rounded half away from zero; 0 when
/// there are no tasks.
pub fn avg_centi(gpu_count_sum: i64, tasks: i64) -> i64 {
    if tasks == 0 {
        0
    } else {
        div_round(i128::from(gpu_count_sum) * 100, i128::from(tasks))
    }
}

/// One level straight from the records: GPU time of every bucket the task
/// overlaps (by the overlap, to the millisecond), task figures in the bucket
/// holding completed_at.
fn tally(records: &[Rec], len: i64) -> HashMap<MKey, Tally> {
    let mut out: HashMap<MKey, Tally> = HashMap::new();
    for r in records {
        let scopes = r.scopes();
        let mut b = floor(r.start_ms, len);
        while b < r.end_ms {
            let gpu = r.gpu_ms_within(b, b + len);
            if gpu > 0 {
                for (t, v) in &scopes {
                    out.entry((b, *t, v.clone())).or_default().gpu_ms += gpu;
                }
            }
            b += len;
        }
        let done = floor(r.end_ms, len);
        for (t, v) in &scopes {
            let e = out.entry((done, *t, v.clone())).or_default();
            e.total_tasks += 1;
            if r.failed {
                e.failed_tasks += 1;
            } else {
                e.completed_tasks += 1;
            }
            e.gpu_count_sum += r.gpu_count;
            e.max_gpu_count = e.max_gpu_count.max(r.gpu_count);
        }
    }
    out
}

/// The sub-bucket (of length `sub`, `n` of them in the bucket) with the most
/// GPU time, earliest on ties; None without any GPU time.
fn peak(sub_level: &HashMap<MKey, Tally>, key: &MKey, sub: i64, n: i64) -> Option<(i64, i64)> {
    let mut best: Option<(i64, i64)> = None;
    for i in 0..n {
        let t = key.0 + i * sub;
        let g = sub_level
            .get(&(t, key.1, key.2.clone()))
            .map_or(0, |x| x.gpu_ms);
        if g > 0 && best.is_none_or(|(_, b)| g > b) {
            best = Some((t, g));
        }
    }
    best
}

fn rows_of(
    level: &HashMap<MKey, Tally>,
    len: i64,
    sub: Option<(&HashMap<MKey, Tally>, i64)>,
    minute: bool,
) -> Vec<Row> {
    let mut rows: Vec<Row> = level
        .iter()
        .map(|(key, t)| {
            let pk = sub.and_then(|(s, sub_len)| peak(s, key, sub_len, len / sub_len));
            Row {
                bucket: at(key.0),
                scope_type: key.1,
                scope_value: key.2.clone(),
                total_tasks: t.total_tasks,
                completed_tasks: t.completed_tasks,
                failed_tasks: t.failed_tasks,
                gpu_ms: t.gpu_ms,
                gpu_count_sum: t.gpu_count_sum,
                max_gpu_count: t.max_gpu_count,
                gpu_seconds_milli: minute.then_some(t.gpu_ms),
                gpu_hours_micro: gpu_hours_micro(t.gpu_ms),
                avg_centi: avg_centi(t.gpu_count_sum, t.total_tasks),
                peak_at: pk.map(|(p, _)| at(p)),
                peak_micro: pk.map(|(_, g)| gpu_hours_micro(g)),
                capacity_set: false,
                period_start: at(key.0),
                period_end: at(key.0 + len),
                updated_at: None,
            }
        })
        .collect();
    rows.sort();
    rows
}

/// Expected minute, hourly and daily rows of every scope from the stored
/// records.
pub fn model(records: &[Rec]) -> Levels {
    let minutes = tally(records, MINUTE);
    let hours = tally(records, HOUR);
    let days = tally(records, DAY);
    Levels {
        minute: rows_of(&minutes, MINUTE, None, true),
        hourly: rows_of(&hours, HOUR, Some((&minutes, MINUTE)), false),
        daily: rows_of(&days, DAY, Some((&hours, HOUR)), false),
    }
}

/// Records' GPU-milliseconds inside `[from, to)` per scope: the conservation
/// reference.
pub fn gpu_ms_by_scope(
    records: &[Rec],
    from: i64,
    to: i64,
) -> HashMap<(ScopeType, Option<String>), i64> {
    let mut out = HashMap::new();
    for r in records {
        for s in r.scopes() {
            *out.entry(s).or_insert(0) += r.gpu_ms_within(from, to);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Running the engine
// ---------------------------------------------------------------------------

pub fn cfg() -> EngineConfig {
    EngineConfig::default()
}

pub async fn ingest(
    db: &(impl ConnectionTrait + TransactionTrait),
    recs: &[Rec],
    now_ms: i64,
    cfg: &EngineConfig,
) -> anyhow::Result<IngestReport> {
    gpu_usage_core::ingest::ingest(db, inputs(recs), at(now_ms), cfg)
        .await
        .map_err(|e| anyhow::anyhow!("ingest failed: {e} ({e:?})"))
}

/// The periodic jobs once: minute, then hourly, then daily.
pub async fn run_jobs(
    db: &(impl ConnectionTrait + TransactionTrait),
    now_ms: i64,
    cfg: &EngineConfig,
) -> anyhow::Result<()> {
    for g in Granularity::ALL {
        rollup::process_pending(db, g, at(now_ms), cfg)
            .await
            .map_err(|e| anyhow::anyhow!("process_pending({g}) failed: {e} ({e:?})"))?;
    }
    Ok(())
}

/// The periodic jobs twice with the same `now`; the second run must not
/// change a single row (updated_at included). Returns the rows.
pub async fn run_jobs_twice(
    db: &(impl ConnectionTrait + TransactionTrait),
    now_ms: i64,
    cfg: &EngineConfig,
) -> anyhow::Result<Levels> {
    run_jobs(db, now_ms, cfg).await?;
    let first = read_levels(db).await?;
    run_jobs(db, now_ms, cfg).await?;
    let second = read_levels(db).await?;
    if let Err(d) = diff_levels(&second, &first) {
        bail!("a second run of the periodic jobs changed rows:\n{d}");
    }
    ensure!(
        second == first,
        "a second run of the periodic jobs changed updated_at"
    );
    Ok(second)
}

/// Recomputes `level` over `[from, to)`.
pub async fn recompute(
    db: &(impl ConnectionTrait + TransactionTrait),
    level: Granularity,
    from: i64,
    to: i64,
    now_ms: i64,
    cfg: &EngineConfig,
) -> anyhow::Result<rollup::RollupReport> {
    rollup::recompute(db, level, range(from, to), at(now_ms), cfg)
        .await
        .map_err(|e| anyhow::anyhow!("recompute({level}) failed: {e} ({e:?})"))
}

/// Recomputes every level over `[from, to)` (minute, hourly, daily), then
/// drains what that queued.
pub async fn recompute_all(
    db: &(impl ConnectionTrait + TransactionTrait),
    from: i64,
    to: i64,
    now_ms: i64,
    cfg: &EngineConfig,
) -> anyhow::Result<()> {
    for g in Granularity::ALL {
        recompute(db, g, from, to, now_ms, cfg).await?;
    }
    run_jobs(db, now_ms, cfg).await
}

pub async fn statuses(db: &impl ConnectionTrait, now_ms: i64) -> anyhow::Result<Vec<LevelStatus>> {
    status::rollup_status(db, at(now_ms))
        .await
        .map_err(|e| anyhow::anyhow!("rollup_status failed: {e}"))
}

pub fn status_of(st: &[LevelStatus], g: Granularity) -> LevelStatus {
    st.iter()
        .find(|s| s.level == g)
        .cloned()
        .expect("a status per level")
}

/// Nothing pending anywhere and every level complete through its current
/// bucket.
pub async fn assert_caught_up(db: &impl ConnectionTrait, now_ms: i64) -> anyhow::Result<()> {
    let st = statuses(db, now_ms).await?;
    for g in Granularity::ALL {
        let s = status_of(&st, g);
        ensure!(
            s.pending_ranges == 0 && s.oldest_pending.is_none(),
            "{g} still pending: {s:?}"
        );
        ensure!(
            s.complete_through == g.floor(at(now_ms)),
            "{g} complete_through: {s:?}"
        );
    }
    Ok(())
}

/// Runs a test body on its own task and drops the test database whatever
/// happens (a failing MariaDB test would otherwise leave its database
/// behind), then re-raises the body's panic.
pub async fn guarded<F, Fut>(t: TestDb, body: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let result = tokio::spawn(body(t.db.clone())).await;
    t.cleanup().await;
    if let Err(e) = result {
        match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

pub fn check(result: Result<(), String>, what: &str) -> anyhow::Result<()> {
    result.map_err(|d| anyhow::anyhow!("{what}:\n{d}"))
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// Endpoint names: quotes, backslash, SQL wildcards, non-ASCII, 4-byte
/// UTF-8, and two that differ only in case (binary collation keeps them
/// apart).
pub const ENDPOINTS: &[&str] = &[
    "ep-a",
    "EP-A",
    "it's",
    "say \"hi\"",
    "naïve-ünïcødé",
    "推理端点",
    "🚀 rocket",
    r"back\slash",
    "50%_off",
    "a,b;c",
    "__GLOBAL__",
    // 255 characters (the column maximum), 4-byte UTF-8 each but the last.
    "🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀x",
];

/// Spec names: NULL, empty and blank (all left out of spec scope), case
/// variants, quotes, non-ASCII.
pub const SPECS: &[Option<&str>] = &[
    None,
    Some(""),
    Some("   "),
    Some("A100"),
    Some("a100"),
    Some("H100 'sxm'"),
    Some("规格-β"),
];

/// UTC offsets (minutes) the records are written with.
pub const OFFSETS: &[i32] = &[0, 120, -330, 345, 840, -720];

fn arb_start(window_start: i64, window_len: i64) -> BoxedStrategy<i64> {
    let first_midnight = floor(window_start + DAY - 1, DAY);
    let midnights: Vec<i64> = (0..)
        .map(|i| first_midnight + i * DAY)
        .take_while(|m| *m < window_start + window_len)
        .collect();
    let mut options: Vec<(u32, BoxedStrategy<i64>)> = vec![
        // Any millisecond.
        (
            4,
            (0..window_len).prop_map(move |o| window_start + o).boxed(),
        ),
        // Exactly on a minute boundary.
        (
            2,
            (0..window_len / MINUTE)
                .prop_map(move |m| floor(window_start, MINUTE) + m * MINUTE)
                .boxed(),
        ),
        // Exactly on an hour boundary.
        (
            1,
            (0..window_len / HOUR)
                .prop_map(move |h| floor(window_start, HOUR) + h * HOUR)
                .boxed(),
        ),
    ];
    if !midnights.is_empty() {
        options.push((
            2,
            (prop::sample::select(midnights), -10 * MINUTE..10 * MINUTE)
                .prop_map(|(m, d)| m + d)
                .boxed(),
        ));
    }
    proptest::strategy::Union::new_weighted(options).boxed()
}

fn arb_duration() -> BoxedStrategy<i64> {
    prop_oneof![
        3 => Just(0i64),
        3 => 1i64..2_000,
        5 => 1i64..3 * MINUTE,
        3 => (1i64..=30).prop_map(|m| m * MINUTE),
        4 => 1i64..3 * HOUR,
        1 => (1i64..=3).prop_map(|h| h * HOUR),
        1 => 3 * HOUR..26 * HOUR,
    ]
    .boxed()
}

fn arb_gpu_count() -> BoxedStrategy<i64> {
    prop_oneof![2 => Just(0i64), 8 => 1i64..=8, 1 => Just(1024i64)].boxed()
}

/// A random record starting inside `[window_start, window_start +
/// window_len)` (or within 10 minutes of a midnight inside it).
pub fn arb_rec(window_start: i64, window_len: i64) -> impl Strategy<Value = Rec> {
    (
        (0u32..48, prop::bool::weighted(0.2)),
        0..ENDPOINTS.len(),
        0..SPECS.len(),
        arb_gpu_count(),
        arb_start(window_start, window_len),
        arb_duration(),
        prop::bool::weighted(0.25),
        0..OFFSETS.len(),
        0u8..3,
    )
        .prop_map(
            |((id, upper), ep, spec, gpus, start, dur, failed, off, spelling)| Rec {
                task_id: if upper {
                    format!("T{id}")
                } else {
                    format!("t{id}")
                },
                endpoint: ENDPOINTS[ep].to_owned(),
                spec_name: SPECS[spec].map(str::to_owned),
                gpu_count: gpus,
                start_ms: start,
                end_ms: start + dur,
                failed,
                offset_min: OFFSETS[off],
                status_spelling: spelling,
            },
        )
}

/// Records ingested in batches, optionally with the periodic jobs run
/// between batches, all at `now_ms`.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub batches: Vec<Vec<Rec>>,
    /// Run the periodic jobs after batch i (the last batch is always
    /// followed by a run).
    pub jobs_after: Vec<bool>,
    pub now_ms: i64,
}

pub fn arb_scenario(
    window_start: i64,
    window_len: i64,
    max_records: usize,
    nows: Vec<i64>,
) -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(arb_rec(window_start, window_len), 1..=max_records),
        prop::collection::vec(any::<Index>(), 0..4),
        prop::collection::vec((any::<Index>(), any::<Index>()), 0..6),
        prop::collection::vec(any::<bool>(), 5),
        prop::sample::select(nows),
    )
        .prop_map(|(recs, cuts, replays, jobs, now_ms)| {
            let mut cut_at: Vec<usize> = cuts
                .iter()
                .map(|c| c.index(recs.len()))
                .filter(|c| *c > 0)
                .collect();
            cut_at.sort_unstable();
            cut_at.dedup();
            let mut batches = Vec::new();
            let mut prev = 0;
            for c in cut_at.into_iter().chain([recs.len()]) {
                batches.push(recs[prev..c].to_vec());
                prev = c;
            }
            // Replays of generated records, verbatim, into some batch (a
            // duplicate if its original is stored, else a conflict).
            let n = batches.len();
            for (r, b) in replays {
                let rec = recs[r.index(recs.len())].clone();
                batches[b.index(n)].push(rec);
            }
            let jobs_after = (0..n).map(|i| i + 1 == n || jobs[i % jobs.len()]).collect();
            Scenario {
                batches,
                jobs_after,
                now_ms,
            }
        })
}

/// A small deterministic generator for scripted scenarios (no proptest).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo < hi);
        lo + i64::try_from(self.next_u64() % u64::try_from(hi - lo).unwrap()).unwrap()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[usize::try_from(self.range(0, i64::try_from(items.len()).unwrap())).unwrap()]
    }

    /// A record with a fresh task id `"{prefix}{n}"` starting in `[from, to)`
    /// lasting at most `max_len` ms.
    pub fn rec(&mut self, prefix: &str, n: usize, from: i64, to: i64, max_len: i64) -> Rec {
        let start = match self.range(0, 4) {
            0 => floor(self.range(from, to), MINUTE).max(from),
            _ => self.range(from, to),
        };
        let len = match self.range(0, 5) {
            0 => 0,
            1 => self.range(1, 2_000).min(max_len),
            _ => self.range(1, max_len.max(2)),
        };
        Rec {
            task_id: format!("{prefix}{n}"),
            endpoint: (*self.pick(ENDPOINTS)).to_owned(),
            spec_name: self.pick(SPECS).map(str::to_owned),
            gpu_count: if self.range(0, 6) == 0 {
                0
            } else {
                self.range(1, 9)
            },
            start_ms: start,
            end_ms: start + len,
            failed: self.range(0, 4) == 0,
            offset_min: *self.pick(OFFSETS),
            status_spelling: u8::try_from(self.range(0, 3)).unwrap(),
        }
    }
}

/// Distinct (bucket, scope) keys of a level, for quick sanity checks.
pub fn keys(rows: &[Row]) -> HashSet<Key> {
    rows.iter().map(Row::key).collect()
}

/// Runs a proptest strategy with a tokio runtime per test, `cases` cases
/// (overridable with `PROPTEST_CASES`), no persistence files, bounded
/// shrinking.
pub fn run_property<S, F, Fut>(name: &str, default_cases: u32, strategy: S, case: F)
where
    S: Strategy,
    S::Value: Clone + std::fmt::Debug,
    F: Fn(S::Value) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 48,
        ..Config::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut runner = TestRunner::new(config);
    let started = std::time::Instant::now();
    let result = runner.run(&strategy, |value| {
        rt.block_on(case(value))
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))
    });
    match result {
        Ok(()) => eprintln!("{name}: {cases} cases passed in {:.1?}", started.elapsed()),
        Err(TestError::Fail(why, value)) => {
            panic!("{name}: property failed: {why}\nminimal failing input: {value:#?}")
        }
        Err(e) => panic!("{name}: {e}"),
    }
}
