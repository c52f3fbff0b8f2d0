//! [`Ses`]: a worker session as the tests think of it (UTC epoch
//! milliseconds, the interval it makes GPUs available), how it is posted,
//! and which of a list of reports a worker's sessions end up as.

use gpu_usage_core::capacity::{Session, SessionJson};
use gpu_usage_core::fields::Invalid;
use gpu_usage_core::types::ScopeType;

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

    /// Scopes it counts in: like a record's (an empty spec leaves the spec
    /// scope only).
    pub fn scopes(&self) -> Vec<(ScopeType, Option<String>)> {
        let mut v = vec![
            (ScopeType::Global, None),
            (ScopeType::Endpoint, Some(self.endpoint.clone())),
        ];
        if let Some(spec) = self.spec_name.as_deref().filter(|s| !s.is_empty()) {
            v.push((ScopeType::Spec, Some(spec.to_owned())));
        }
        v
    }

    pub fn gpu_ms_within(&self, from: i64, to: i64) -> i64 {
        let overlap = self.end_ms.min(to) - self.start_ms.max(from);
        if overlap > 0 {
            overlap * self.gpu_count
        } else {
            0
        }
    }

    fn overlaps(&self, other: &Ses) -> bool {
        self.worker_id == other.worker_id
            && self.start_ms < other.end_ms
            && other.start_ms < self.end_ms
            && self.start_ms < self.end_ms
            && other.start_ms < other.end_ms
    }
}

/// The sessions stored from closed reports in order: a report of a known
/// (worker, start) keeps the stored values but moves the end, unless the
/// other values differ or the new interval overlaps another session of
/// the worker; a new one overlapping a stored one is refused.
pub fn stored_sessions(reports: &[Ses]) -> Vec<Ses> {
    let mut stored: Vec<Ses> = Vec::new();
    for r in reports {
        let same = |s: &Ses| s.worker_id == r.worker_id && s.start_ms == r.start_ms;
        let clash = |stored: &[Ses], skip: Option<usize>| {
            stored
                .iter()
                .enumerate()
                .any(|(i, s)| Some(i) != skip && s.overlaps(r))
        };
        match stored.iter().position(same) {
            Some(i) => {
                let s = &stored[i];
                let values_equal = (s.endpoint.as_str(), s.spec_name.as_deref(), s.gpu_count)
                    == (r.endpoint.as_str(), r.spec_name.as_deref(), r.gpu_count);
                if values_equal && !clash(&stored, Some(i)) {
                    stored[i].end_ms = r.end_ms;
                }
            }
            None if !clash(&stored, None) => stored.push(r.clone()),
            None => {}
        }
    }
    stored
}
