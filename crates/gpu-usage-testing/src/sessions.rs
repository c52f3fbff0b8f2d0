//! [`Ses`]: a worker session as the tests think of it (UTC epoch
//! milliseconds, the interval it makes GPUs available), how it is posted,
//! and which of a list of reports a worker's sessions end up as.

use gpu_usage_core::capacity::{Session, SessionJson};
use gpu_usage_core::fields::Invalid;
use gpu_usage_core::types::ScopeType;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::*;

/// A closed session: `gpu_count` GPUs of `worker_id` serving `endpoint`
/// over `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ses {
    pub worker_id: String,
    pub endpoint: String,
    pub spec_name: Option<String>,
    pub gpu_count: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Ses {
    pub fn new(
        worker_id: &str,
        endpoint: &str,
        spec_name: Option<&str>,
        gpu_count: i64,
        start_ms: i64,
        end_ms: i64,
    ) -> Ses {
        Ses {
            worker_id: worker_id.to_owned(),
            endpoint: endpoint.to_owned(),
            spec_name: spec_name.map(str::to_owned),
            gpu_count,
            start_ms,
            end_ms,
        }
    }

    /// The session as a worker posts it once it ended.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "worker_id": self.worker_id,
            "endpoint": self.endpoint,
            "spec_name": self.spec_name,
            "gpu_type": "NVIDIA A100",
            "gpu_count": self.gpu_count,
            "started_at": at(self.start_ms).to_rfc3339(),
            "ended_at": at(self.end_ms).to_rfc3339(),
        })
    }

    pub fn input(&self) -> Result<Session, Invalid> {
        let wire: SessionJson = serde_json::from_value(self.json()).expect("a JSON object");
        Session::try_from(wire)
    }

    fn overlaps(&self, other: &Ses) -> bool {
        self.worker_id == other.worker_id
            && self.start_ms < other.end_ms
            && other.start_ms < self.end_ms
            && self.start_ms < self.end_ms
            && other.start_ms < other.end_ms
    }
}

impl Interval for Ses {
    fn span(&self) -> (i64, i64, i64) {
        (self.start_ms, self.end_ms, self.gpu_count)
    }

    /// Like a record's, but with the endpoint as reported.
    fn scopes(&self) -> Vec<(ScopeType, Option<String>)> {
        scopes_of(self.endpoint.clone(), self.spec_name.as_deref())
    }
}

/// What ingest should answer for one reported session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Inserted,
    Updated,
    Duplicate,
    Conflict,
}

/// Replays the session rules over closed reports in order: a report of a
/// known (worker, start) with the same values moves its end (a duplicate
/// when the end is the same), unless the new interval overlaps another
/// session of the worker; other values are a conflict; a new session
/// overlapping a stored one is a conflict. Returns the stored sessions and
/// each report's outcome.
pub fn session_model(reports: &[Ses]) -> (Vec<Ses>, Vec<Outcome>) {
    let mut stored: Vec<Ses> = Vec::new();
    let mut outcomes = Vec::new();
    for r in reports {
        let clash = |stored: &[Ses], skip: Option<usize>| {
            stored
                .iter()
                .enumerate()
                .any(|(i, s)| Some(i) != skip && s.overlaps(r))
        };
        let same = stored
            .iter()
            .position(|s| s.worker_id == r.worker_id && s.start_ms == r.start_ms);
        let outcome = match same {
            Some(i) if stored[i].offer() != r.offer() => Outcome::Conflict,
            Some(i) if stored[i].end_ms == r.end_ms => Outcome::Duplicate,
            Some(i) if clash(&stored, Some(i)) => Outcome::Conflict,
            Some(i) => {
                stored[i].end_ms = r.end_ms;
                Outcome::Updated
            }
            None if clash(&stored, None) => Outcome::Conflict,
            None => {
                stored.push(r.clone());
                Outcome::Inserted
            }
        };
        outcomes.push(outcome);
    }
    (stored, outcomes)
}

impl Ses {
    /// What must match for a report to be the same session: the values
    /// as stored (trimmed; an empty spec is none).
    fn offer(&self) -> (String, Option<String>, i64) {
        let spec = self
            .spec_name
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        (self.endpoint.trim().to_owned(), spec, self.gpu_count)
    }
}

/// Worker ids the generated sessions use: few, so reports collide.
pub const WORKERS: &[&str] = &["w-0", "w-1", "W-1", "wörker \"2\""];

fn arb_ses(window_start: i64, window_len: i64) -> impl Strategy<Value = Ses> {
    let durations = prop_oneof![
        1 => Just(0i64),
        3 => 1i64..3 * MINUTE,
        4 => MINUTE..3 * HOUR,
        2 => 3 * HOUR..30 * HOUR,
    ];
    (
        0..WORKERS.len(),
        0..4usize,
        0..SPECS.len(),
        prop_oneof![1 => Just(0i64), 6 => 1i64..=8],
        0..window_len,
        durations,
        prop::bool::weighted(0.3),
    )
        .prop_map(move |(w, ep, spec, gpus, off, dur, on_minute)| {
            let start = window_start + off;
            let start = if on_minute {
                floor(start, MINUTE)
            } else {
                start
            };
            Ses {
                worker_id: WORKERS[w].to_owned(),
                endpoint: ENDPOINTS[ep].to_owned(),
                spec_name: SPECS[spec].map(str::to_owned),
                gpu_count: gpus,
                start_ms: start,
                end_ms: start + dur,
            }
        })
}

/// Session reports: random sessions, then replays, moved ends and changed
/// values of some of them, in random order.
pub fn arb_session_reports(
    window_start: i64,
    window_len: i64,
    max: usize,
) -> impl Strategy<Value = Vec<Ses>> {
    (
        prop::collection::vec(arb_ses(window_start, window_len), 1..=max),
        prop::collection::vec((any::<Index>(), 0u8..3, -2 * HOUR..2 * HOUR), 0..8),
        any::<Index>(),
    )
        .prop_map(|(mut reports, echoes, shuffle)| {
            let n = reports.len();
            for (i, how, delta) in echoes {
                let mut r = reports[i.index(n)].clone();
                match how {
                    0 => {}
                    1 => r.end_ms = (r.end_ms + delta).max(r.start_ms),
                    _ => r.gpu_count += 1,
                }
                reports.push(r);
            }
            // A deterministic rotation keeps some echoes before their
            // originals.
            let k = shuffle.index(reports.len());
            reports.rotate_left(k);
            reports
        })
}
