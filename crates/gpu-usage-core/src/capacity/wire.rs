//! Worker sessions and heartbeats: the domain types ([`Session`],
//! [`Heartbeat`]), their JSON wire forms and the one conversion between
//! them. Like records, a value of a domain type exists only with every
//! field checked; what depends on the moment and the configuration is
//! checked by [`super::check`].

use chrono::{DateTime, Utc};
use sea_orm::DerivePartialModel;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::entities::worker_session;
use crate::fields::{Checks, Field, Invalid};

/// What a worker offers while it is up: the same in every session and
/// heartbeat, and what a session's scopes are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, ToSchema, DerivePartialModel)]
#[sea_orm(entity = "worker_session::Entity")]
pub struct Offer {
    pub endpoint: String,
    /// `None`: the session counts in no spec scope.
    pub spec_name: Option<String>,
    pub gpu_type: Option<String>,
    pub gpu_count: i32,
}

impl Offer {
    /// Fields whose values differ from another offer.
    pub fn differences(&self, other: &Offer) -> Vec<String> {
        let mut out = Vec::new();
        if self.endpoint != other.endpoint {
            out.push("endpoint".to_owned());
        }
        if self.spec_name != other.spec_name {
            out.push("spec_name".to_owned());
        }
        if self.gpu_type != other.gpu_type {
            out.push("gpu_type".to_owned());
        }
        if self.gpu_count != other.gpu_count {
            out.push("gpu_count".to_owned());
        }
        out
    }
}

/// An interval a GPU worker was up, as reported: identified by
/// (worker_id, started_at); `ended_at` is `None` while it is still up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    pub worker_id: String,
    #[serde(flatten)]
    pub offer: Offer,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A worker saying it is up at `at`, offering `offer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    pub worker_id: String,
    #[serde(flatten)]
    pub offer: Offer,
    pub at: DateTime<Utc>,
}

/// The fields sessions and heartbeats share, as JSON.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct OfferJson {
    /// The worker (pod) id. 1–255 characters.
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 255)]
    pub worker_id: Field<String>,
    /// The endpoint the worker serves. 1–255 characters.
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 255)]
    pub endpoint: Field<String>,
    /// Absent, null or empty: the worker counts in no spec scope.
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 255)]
    pub spec_name: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 100)]
    pub gpu_type: Field<String>,
    /// GPUs the worker holds, 0–1024.
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0, maximum = 1024)]
    pub gpu_count: Field<i64>,
}

/// One worker session as JSON. Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct SessionJson {
    #[serde(flatten)]
    pub offer: OfferJson,
    /// RFC 3339 with an offset (`Z` or `±hh:mm`).
    #[serde(default)]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Field<String>,
    /// RFC 3339 with an offset, not before `started_at`; absent or null
    /// while the worker is up.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Field<String>,
}

/// One heartbeat as JSON. Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct HeartbeatJson {
    #[serde(flatten)]
    pub offer: OfferJson,
    /// When the worker was seen up; RFC 3339 with an offset.
    #[serde(default)]
    #[schema(value_type = String, format = DateTime)]
    pub at: Field<String>,
}

/// Checks the shared fields' types, then their values.
fn offer(
    j: OfferJson,
    times: &[(&str, Option<&serde_json::Value>)],
) -> Result<(Checks, Option<(String, Offer)>), Invalid> {
    let mut types = vec![
        ("worker_id", j.worker_id.wrong(), "a string"),
        ("endpoint", j.endpoint.wrong(), "a string"),
        ("spec_name", j.spec_name.wrong(), "a string"),
        ("gpu_type", j.gpu_type.wrong(), "a string"),
        ("gpu_count", j.gpu_count.wrong(), "an integer"),
    ];
    types.extend(times.iter().map(|(f, v)| (*f, *v, "a string")));
    let mut c = Checks::new(j.worker_id.text()).types(&types)?;
    let worker_id = c.text("worker_id", j.worker_id, 255, true);
    let endpoint = c.text("endpoint", j.endpoint, 255, true);
    let spec_name = c
        .text("spec_name", j.spec_name, 255, false)
        .filter(|s| !s.is_empty());
    let gpu_type = c.text("gpu_type", j.gpu_type, 100, false);
    let gpu_count = c.gpu_count(j.gpu_count);
    let parsed = match (worker_id, endpoint, gpu_count) {
        (Some(w), Some(endpoint), Some(gpu_count)) => Some((
            w,
            Offer {
                endpoint,
                spec_name,
                gpu_type,
                gpu_count,
            },
        )),
        _ => None,
    };
    Ok((c, parsed))
}

impl TryFrom<SessionJson> for Session {
    type Error = Invalid;

    fn try_from(j: SessionJson) -> Result<Self, Invalid> {
        let times = [
            ("started_at", j.started_at.wrong()),
            ("ended_at", j.ended_at.wrong()),
        ];
        let (mut c, parsed) = offer(j.offer.clone(), &times)?;
        let started_at = c.time("started_at", j.started_at);
        let ended_at = c.optional_time("ended_at", j.ended_at);
        let ended = ended_at.flatten();
        c.ordered("ended_at", "started_at", started_at, ended);
        let session = match (parsed, started_at, ended_at) {
            (Some((worker_id, offer)), Some(started_at), Some(ended_at)) => Some(Session {
                worker_id,
                offer,
                started_at,
                ended_at,
            }),
            _ => None,
        };
        c.finish(session)
    }
}

impl TryFrom<HeartbeatJson> for Heartbeat {
    type Error = Invalid;

    fn try_from(j: HeartbeatJson) -> Result<Self, Invalid> {
        let (mut c, parsed) = offer(j.offer, &[("at", j.at.wrong())])?;
        let at = c.time("at", j.at);
        let beat = match (parsed, at) {
            (Some((worker_id, offer)), Some(at)) => Some(Heartbeat {
                worker_id,
                offer,
                at,
            }),
            _ => None,
        };
        c.finish(beat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(v: serde_json::Value) -> Result<Session, Invalid> {
        Session::try_from(serde_json::from_value::<SessionJson>(v).unwrap())
    }

    #[test]
    fn sessions_parse_open_and_closed() {
        let open = session(serde_json::json!({
            "worker_id": " w1 ", "endpoint": "ep", "spec_name": "", "gpu_count": 2,
            "started_at": "2026-01-01T10:00:00+02:00", "ended_at": null
        }))
        .unwrap();
        assert_eq!(open.worker_id, "w1");
        assert_eq!(open.offer.spec_name, None);
        assert_eq!(open.ended_at, None);
        let closed = session(serde_json::json!({
            "worker_id": "w1", "endpoint": "ep", "gpu_count": 2,
            "started_at": "2026-01-01T08:00:00Z", "ended_at": "2026-01-01T09:00:00Z"
        }))
        .unwrap();
        assert_eq!(closed.started_at, open.started_at);
        assert!(closed.ended_at.is_some());
    }

    #[test]
    fn every_problem_is_named() {
        let e = session(serde_json::json!({
            "worker_id": "w1", "gpu_count": 5000,
            "started_at": "2026-01-01T09:00:00Z", "ended_at": "2026-01-01T08:00:00Z"
        }))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("w1"));
        let fields: Vec<&str> = e.problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["endpoint", "gpu_count", "ended_at"]);
        let e = session(serde_json::json!({"worker_id": 7, "ended_at": 3})).unwrap_err();
        let fields: Vec<&str> = e.problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["worker_id", "ended_at"]);
    }

    #[test]
    fn heartbeats_parse() {
        let j: HeartbeatJson = serde_json::from_value(serde_json::json!({
            "worker_id": "w1", "endpoint": "ep", "gpu_count": 1, "at": "2026-01-01T08:00:00Z"
        }))
        .unwrap();
        let h = Heartbeat::try_from(j).unwrap();
        assert_eq!(h.offer.gpu_count, 1);
        let j: HeartbeatJson =
            serde_json::from_value(serde_json::json!({"worker_id": "w1"})).unwrap();
        let e = Heartbeat::try_from(j).unwrap_err();
        let fields: Vec<&str> = e.problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["endpoint", "gpu_count", "at"]);
    }
}
