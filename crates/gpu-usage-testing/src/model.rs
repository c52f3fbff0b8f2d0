//! The reference model: the accounting rules written out as plain loops
//! over records, sessions and buckets, independent of the engine's
//! `rollup::compute` (every level directly from its sources, never by
//! folding a finer level, with its own integer rounding and its own way of
//! finding peak concurrency).

use std::collections::{HashMap, HashSet};

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
    avail_ms: i64,
}

type Scope = (ScopeType, Option<String>);
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

/// used / available in 1e-4, rounded half away from zero; None without
/// capacity.
pub fn util_basis(used_ms: i64, avail_ms: i64) -> Option<i64> {
    (avail_ms > 0).then(|| div_round(i128::from(used_ms) * 10_000, i128::from(avail_ms)))
}

/// An interval of GPUs `[start, end)` in one scope's timeline.
type Span = (i64, i64, i64);

/// A record (GPUs used) or a session (GPUs available) as the model reads
/// it: GPUs over an interval, counted in some scopes.
pub trait Interval {
    /// `(start_ms, end_ms, gpu_count)`.
    fn span(&self) -> Span;

    /// The scopes it counts in.
    fn scopes(&self) -> Vec<Scope>;

    /// GPU-milliseconds inside `[from, to)`.
    fn gpu_ms_within(&self, from: i64, to: i64) -> i64 {
        let (start, end, gpus) = self.span();
        let overlap = end.min(to) - start.max(from);
        if overlap > 0 { overlap * gpus } else { 0 }
    }
}

/// Global, `endpoint`, and the spec unless the spec name is NULL or blank
/// (it is trimmed, as stored): such an interval is left out of the spec
/// scope only.
pub fn scopes_of(endpoint: String, spec_name: Option<&str>) -> Vec<Scope> {
    let mut v = vec![
        (ScopeType::Global, None),
        (ScopeType::Endpoint, Some(endpoint)),
    ];
    if let Some(spec) = spec_name.map(str::trim).filter(|s| !s.is_empty()) {
        v.push((ScopeType::Spec, Some(spec.to_owned())));
    }
    v
}

/// What the model reads: records and sessions as intervals per scope.
struct Sources<'a> {
    records: &'a [Rec],
    sessions: &'a [Ses],
    tasks: HashMap<Scope, Vec<Span>>,
    offers: HashMap<Scope, Vec<Span>>,
}

impl<'a> Sources<'a> {
    fn new(records: &'a [Rec], sessions: &'a [Ses]) -> Self {
        Sources {
            records,
            sessions,
            tasks: timelines(records),
            offers: timelines(sessions),
        }
    }

    /// One level straight from the sources: GPU time used and available
    /// in every bucket by overlap, task figures in the bucket holding
    /// completed_at.
    fn tally(&self, len: i64) -> HashMap<MKey, Tally> {
        let mut out: HashMap<MKey, Tally> = HashMap::new();
        spread(self.records, len, &mut out, |t| &mut t.gpu_ms);
        spread(self.sessions, len, &mut out, |t| &mut t.avail_ms);
        for r in self.records {
            let done = floor(r.end_ms, len);
            for (t, v) in r.scopes() {
                let e = out.entry((done, t, v)).or_default();
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
}

/// Every scope's intervals of GPUs.
fn timelines<T: Interval>(items: &[T]) -> HashMap<Scope, Vec<Span>> {
    let mut out: HashMap<Scope, Vec<Span>> = HashMap::new();
    for x in items {
        for s in x.scopes() {
            out.entry(s).or_default().push(x.span());
        }
    }
    out
}

/// Adds each item's GPU time in every bucket of length `len` it overlaps
/// to the `field` of that bucket's tally, in each of its scopes.
fn spread<T: Interval>(
    items: &[T],
    len: i64,
    out: &mut HashMap<MKey, Tally>,
    field: fn(&mut Tally) -> &mut i64,
) {
    for x in items {
        let scopes = x.scopes();
        let (start, end, _) = x.span();
        each_bucket(start, end, len, |b| {
            let gpu = x.gpu_ms_within(b, b + len);
            for (t, v) in scopes.iter().filter(|_| gpu > 0) {
                *field(out.entry((b, *t, v.clone())).or_default()) += gpu;
            }
        });
    }
}

fn each_bucket(start: i64, end: i64, len: i64, mut f: impl FnMut(i64)) {
    let mut b = floor(start, len);
    while b < end {
        f(b);
        b += len;
    }
}

/// The most GPUs open at one instant of `[from, to)`: the level only
/// changes where an interval starts, so it is enough to look at `from`
/// and at every start inside.
fn peak_at_once(spans: Option<&Vec<Span>>, from: i64, to: i64) -> i64 {
    let Some(spans) = spans else { return 0 };
    let level = |t: i64| -> i64 {
        spans
            .iter()
            .filter(|(s, e, _)| *s <= t && t < *e)
            .map(|(_, _, g)| *g)
            .sum()
    };
    let mut instants: HashSet<i64> = spans
        .iter()
        .map(|(s, _, _)| *s)
        .filter(|s| from < *s && *s < to)
        .collect();
    instants.insert(from);
    instants.into_iter().map(level).max().unwrap_or(0)
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

/// Idle GPU-ms and over-used minutes of a bucket, minute by minute.
fn idle_and_overuse(minutes: &HashMap<MKey, Tally>, key: &MKey, len: i64) -> (i64, i64) {
    let (mut idle, mut over) = (0, 0);
    for i in 0..len / MINUTE {
        if let Some(m) = minutes.get(&(key.0 + i * MINUTE, key.1, key.2.clone())) {
            idle += (m.avail_ms - m.gpu_ms).max(0);
            over += i64::from(m.gpu_ms > m.avail_ms);
        }
    }
    (idle, over)
}

struct LevelSpec<'a> {
    len: i64,
    sub: Option<(&'a HashMap<MKey, Tally>, i64)>,
    minute: bool,
}

fn rows_of(
    src: &Sources,
    level: &HashMap<MKey, Tally>,
    minutes: &HashMap<MKey, Tally>,
    spec: LevelSpec,
) -> Vec<Row> {
    let len = spec.len;
    let mut rows: Vec<Row> = level
        .iter()
        .map(|(key, t)| {
            let pk = spec
                .sub
                .and_then(|(s, sub_len)| peak(s, key, sub_len, len / sub_len));
            let scope = (key.1, key.2.clone());
            let (idle_ms, overused) = idle_and_overuse(minutes, key, len);
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
                gpu_seconds_milli: spec.minute.then_some(t.gpu_ms),
                gpu_hours_micro: gpu_hours_micro(t.gpu_ms),
                avg_centi: avg_centi(t.gpu_count_sum, t.total_tasks),
                peak_at: pk.map(|(p, _)| at(p)),
                peak_micro: pk.map(|(_, g)| gpu_hours_micro(g)),
                avail_ms: t.avail_ms,
                idle_ms,
                overused_minutes: overused,
                avail_seconds_milli: spec.minute.then_some(t.avail_ms),
                avail_hours_micro: gpu_hours_micro(t.avail_ms),
                idle_hours_micro: gpu_hours_micro(idle_ms),
                util_basis: util_basis(t.gpu_ms, t.avail_ms),
                capacity_complete: (t.avail_ms > 0).then_some(overused == 0),
                peak_in_use: peak_at_once(src.tasks.get(&scope), key.0, key.0 + len),
                peak_available: peak_at_once(src.offers.get(&scope), key.0, key.0 + len),
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
/// records, without capacity reports.
pub fn model(records: &[Rec]) -> Levels {
    model_with(records, &[])
}

/// Expected rows of every level and scope from the stored records and the
/// GPU time the stored sessions make available.
pub fn model_with(records: &[Rec], sessions: &[Ses]) -> Levels {
    let src = Sources::new(records, sessions);
    let minutes = src.tally(MINUTE);
    let hours = src.tally(HOUR);
    let days = src.tally(DAY);
    let level = |len, sub, minute| LevelSpec { len, sub, minute };
    Levels {
        minute: rows_of(&src, &minutes, &minutes, level(MINUTE, None, true)),
        hourly: rows_of(
            &src,
            &hours,
            &minutes,
            level(HOUR, Some((&minutes, MINUTE)), false),
        ),
        daily: rows_of(
            &src,
            &days,
            &minutes,
            level(DAY, Some((&hours, HOUR)), false),
        ),
    }
}

/// Records' GPU-milliseconds inside `[from, to)` per scope: the conservation
/// reference.
pub fn gpu_ms_by_scope(records: &[Rec], from: i64, to: i64) -> HashMap<Scope, i64> {
    let mut out = HashMap::new();
    for r in records {
        for s in r.scopes() {
            *out.entry(s).or_insert(0) += r.gpu_ms_within(from, to);
        }
    }
    out
}
