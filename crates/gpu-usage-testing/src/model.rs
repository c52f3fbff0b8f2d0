//! The reference model: the accounting rules written out as plain loops
//! over records and buckets, independent of the engine's `rollup::compute`
//! (every level directly from records, never by folding a finer level,
//! with its own integer rounding).

use std::collections::HashMap;

use gpu_usage_core::types::ScopeType;

use crate::*;

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
