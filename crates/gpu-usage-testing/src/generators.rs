//! Proptest strategies for random records and scenarios, and a tiny
//! deterministic generator for scripted tests.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::*;

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

/// `items` cut into consecutive batches at the positions `cuts` pick
/// (position 0 and repeats ignored): one batch at least, none empty
/// unless `items` is.
pub fn split_at_cuts<T: Clone>(items: &[T], cuts: &[Index]) -> Vec<Vec<T>> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| c.index(items.len()))
        .filter(|c| *c > 0)
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut batches = Vec::new();
    let mut prev = 0;
    for c in at.into_iter().chain([items.len()]) {
        batches.push(items[prev..c].to_vec());
        prev = c;
    }
    batches
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
            let mut batches = split_at_cuts(&recs, &cuts);
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

/// Deterministic records as clients post them, inside `[from, to)`
/// (completion included): tasks crossing minutes and hours, zero-length and
/// CPU-only tasks, FAILED ones, NULL and empty spec names, an endpoint name
/// with quotes and non-ASCII.
pub fn spread_records(
    seed: u64,
    prefix: &str,
    n: usize,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<serde_json::Value> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    let span = (to - from).num_milliseconds().max(1) as u64;
    (0..n)
        .map(|i| {
            let a = from + chrono::TimeDelta::milliseconds((next() % span) as i64);
            let max_len = (to - a).num_milliseconds().clamp(0, 2 * 3_600_000) as u64;
            let len = if i % 9 == 0 {
                0
            } else {
                next() % (max_len + 1)
            };
            let b = a + chrono::TimeDelta::milliseconds(len as i64);
            serde_json::json!({
                "task_id": format!("{prefix}-{i}"),
                "endpoint": (["alpha", "beta", "gämma \"q\""][i % 3]),
                "worker_id": format!("w{}", i % 4),
                "spec_name": ([Some("s1"), None, Some(""), Some("s2")][i % 4]),
                "gpu_count": (next() % 5) as i64,
                "started_at": a.to_rfc3339(),
                "completed_at": b.to_rfc3339(),
                "status": if i % 7 == 0 { "FAILED" } else { "COMPLETED" },
            })
        })
        .collect()
}
