//! What a session report or a heartbeat does to the sessions of its
//! worker: pure functions on the loaded sessions, so every rule is
//! unit-tested without a database.

use chrono::{DateTime, Utc};

use super::ledger::Stored;
use super::wire::{Heartbeat, Session};
use crate::settings::CapacitySettings;

/// What one reported session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    Inserted,
    /// Its `ended_at` was set or moved.
    Updated,
    /// A replay: nothing changed (an open report refreshes `last_seen`).
    Duplicate,
    /// Refused; the stored sessions are kept.
    Conflict {
        fields: Vec<String>,
        reason: String,
    },
}

/// Applies one reported session to its worker's sessions.
pub fn report(
    sessions: &mut Vec<Stored>,
    s: Session,
    now: DateTime<Utc>,
    cfg: &CapacitySettings,
) -> Reported {
    if let Some(i) = sessions.iter().position(|x| x.started_at == s.started_at) {
        return update(sessions, i, s, now, cfg);
    }
    if let Some(other) = sessions
        .iter()
        .find(|x| x.overlaps(s.started_at, s.ended_at))
    {
        return overlap(other);
    }
    let last_seen = s.ended_at.unwrap_or(now);
    let mut new = Stored::new(s.worker_id, s.offer, s.started_at, s.ended_at, last_seen);
    new.settle(now, cfg);
    sessions.push(new);
    Reported::Inserted
}

/// A report of a known session: only `ended_at` may be set or moved, and
/// a set one is never cleared.
fn update(
    sessions: &mut [Stored],
    i: usize,
    s: Session,
    now: DateTime<Utc>,
    cfg: &CapacitySettings,
) -> Reported {
    let fields = s.offer.differences(&sessions[i].offer);
    if !fields.is_empty() {
        return Reported::Conflict {
            fields,
            reason: "a stored session of this worker starts at the same time with other values"
                .to_owned(),
        };
    }
    let stored_end = sessions[i].ended_at;
    match (s.ended_at, stored_end) {
        (None, None) => {
            let x = &mut sessions[i];
            x.last_seen = x.last_seen.max(now);
            x.settle(now, cfg);
            Reported::Duplicate
        }
        (None, Some(_)) => Reported::Duplicate,
        (Some(end), stored) if Some(end) == stored => Reported::Duplicate,
        (Some(end), _) => {
            let other = sessions
                .iter()
                .enumerate()
                .find(|(j, x)| *j != i && x.overlaps(s.started_at, Some(end)));
            if let Some((_, other)) = other {
                return overlap(other);
            }
            let x = &mut sessions[i];
            x.ended_at = Some(end);
            x.settle(now, cfg);
            Reported::Updated
        }
    }
}

fn overlap(other: &Stored) -> Reported {
    let until = other.ended_at.map_or("still open".to_owned(), |e| {
        format!("until {}", e.to_rfc3339())
    });
    Reported::Conflict {
        fields: vec!["started_at".to_owned(), "ended_at".to_owned()],
        reason: format!(
            "overlaps the stored session of this worker from {} ({until})",
            other.started_at.to_rfc3339()
        ),
    }
}

/// What one heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Opened a session (the worker had none open).
    Opened,
    /// Moved the open session's last_seen forward.
    Extended,
    /// Ended the open session (the worker now offers something else) and
    /// opened a new one at the heartbeat.
    Split,
    /// Older than what is known of the worker; changes nothing.
    Ignored,
}

/// Applies one heartbeat to its worker's sessions. Heartbeats of a batch
/// are applied in time order.
pub fn heartbeat(
    sessions: &mut Vec<Stored>,
    h: Heartbeat,
    now: DateTime<Utc>,
    cfg: &CapacitySettings,
) -> Beat {
    let open = sessions
        .iter_mut()
        .filter(|x| x.ended_at.is_none())
        .max_by_key(|x| x.started_at);
    if let Some(open) = open {
        if h.at <= open.last_seen {
            return Beat::Ignored;
        }
        // A heartbeat after a silence the session would have been ended
        // for: it was, whether or not the periodic job got there first.
        if h.at - open.last_seen > cfg.silence_limit() {
            open.ended_at = Some(open.last_seen + cfg.interval());
            open.settle(now, cfg);
        } else if open.offer != h.offer {
            open.ended_at = Some(h.at);
            open.settle(now, cfg);
            push_open(sessions, h, now, cfg);
            return Beat::Split;
        } else {
            open.last_seen = h.at;
            open.settle(now, cfg);
            return Beat::Extended;
        }
    }
    let known_after = sessions
        .iter()
        .any(|x| x.started_at >= h.at || x.end_or_max() > h.at);
    if known_after {
        return Beat::Ignored;
    }
    push_open(sessions, h, now, cfg);
    Beat::Opened
}

fn push_open(sessions: &mut Vec<Stored>, h: Heartbeat, now: DateTime<Utc>, cfg: &CapacitySettings) {
    let mut new = Stored::new(h.worker_id, h.offer, h.at, None, h.at);
    new.settle(now, cfg);
    sessions.push(new);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::wire::Offer;
    use chrono::TimeDelta;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + min * 60, 0).unwrap()
    }

    fn offer(gpus: i32) -> Offer {
        Offer {
            endpoint: "ep".into(),
            spec_name: Some("A100".into()),
            gpu_type: None,
            gpu_count: gpus,
        }
    }

    fn session(start: i64, end: Option<i64>) -> Session {
        Session {
            worker_id: "w".into(),
            offer: offer(1),
            started_at: t(start),
            ended_at: end.map(t),
        }
    }

    fn beat(at: DateTime<Utc>, gpus: i32) -> Heartbeat {
        Heartbeat {
            worker_id: "w".into(),
            offer: offer(gpus),
            at,
        }
    }

    fn cfg() -> CapacitySettings {
        CapacitySettings::default()
    }

    #[test]
    fn reports_insert_replay_close_and_conflict() {
        let mut v = Vec::new();
        let now = t(100);
        assert_eq!(
            report(&mut v, session(0, None), now, &cfg()),
            Reported::Inserted
        );
        assert_eq!(v[0].counted_until, now);
        assert_eq!(
            report(&mut v, session(0, None), now, &cfg()),
            Reported::Duplicate
        );
        assert_eq!(
            report(&mut v, session(0, Some(50)), now, &cfg()),
            Reported::Updated
        );
        assert_eq!(v[0].counted_until, t(50));
        // Moved, then never cleared.
        assert_eq!(
            report(&mut v, session(0, Some(40)), now, &cfg()),
            Reported::Updated
        );
        assert_eq!(
            report(&mut v, session(0, None), now, &cfg()),
            Reported::Duplicate
        );
        assert_eq!(v[0].ended_at, Some(t(40)));
        // Touching is fine, overlapping is not.
        assert_eq!(
            report(&mut v, session(40, Some(60)), now, &cfg()),
            Reported::Inserted
        );
        assert!(matches!(
            report(&mut v, session(30, Some(45)), now, &cfg()),
            Reported::Conflict { .. }
        ));
        assert!(matches!(
            report(&mut v, session(0, Some(41)), now, &cfg()),
            Reported::Conflict { .. }
        ));
        let mut other = session(0, Some(40));
        other.offer.gpu_count = 2;
        assert_eq!(
            report(&mut v, other, now, &cfg()),
            Reported::Conflict {
                fields: vec!["gpu_count".into()],
                reason: "a stored session of this worker starts at the same time with other values"
                    .into()
            }
        );
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn heartbeats_open_extend_split_and_ignore() {
        let mut v = Vec::new();
        let s = |n: i64| t(0) + TimeDelta::seconds(n);
        assert_eq!(heartbeat(&mut v, beat(s(0), 1), s(0), &cfg()), Beat::Opened);
        assert_eq!(
            heartbeat(&mut v, beat(s(30), 1), s(30), &cfg()),
            Beat::Extended
        );
        assert_eq!(
            heartbeat(&mut v, beat(s(10), 1), s(30), &cfg()),
            Beat::Ignored
        );
        assert_eq!(v[0].counted_until, s(30));
        assert_eq!(
            heartbeat(&mut v, beat(s(60), 2), s(60), &cfg()),
            Beat::Split
        );
        assert_eq!((v[0].ended_at, v[0].counted_until), (Some(s(60)), s(60)));
        assert_eq!((v[1].started_at, v[1].offer.gpu_count), (s(60), 2));
        // Silent for more than 3 intervals: ended at last_seen + 30 s, and a
        // new session opens at the late heartbeat.
        assert_eq!(
            heartbeat(&mut v, beat(s(200), 2), s(200), &cfg()),
            Beat::Opened
        );
        assert_eq!(v[1].ended_at, Some(s(90)));
        assert_eq!(v.len(), 3);
        // A heartbeat from inside known history opens nothing.
        v[2].ended_at = Some(s(230));
        assert_eq!(
            heartbeat(&mut v, beat(s(220), 2), s(240), &cfg()),
            Beat::Ignored
        );
    }

    #[test]
    fn settling_counts_up_to_the_vouched_time_and_ends_silent_sessions() {
        let mut x = Stored::new("w".into(), offer(1), t(0), None, t(0));
        x.settle(t(0) + TimeDelta::seconds(20), &cfg());
        assert_eq!(x.counted_until, t(0) + TimeDelta::seconds(20));
        x.settle(t(1), &cfg());
        assert_eq!(
            (x.ended_at, x.counted_until),
            (None, t(0) + TimeDelta::seconds(30))
        );
        x.settle(t(2), &cfg());
        assert_eq!(x.ended_at, Some(t(0) + TimeDelta::seconds(30)));
    }
}
