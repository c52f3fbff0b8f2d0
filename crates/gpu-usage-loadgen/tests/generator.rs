//! The generator's promises: determinism, valid records, the shape of the
//! load, and sessions that agree with the records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use gpu_usage_loadgen::{Config, Generator, Record, Session, Status, TimeRange};

fn at(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
}

/// Monday 2026-11-02 to Monday 2026-11-09.
fn week() -> TimeRange {
    TimeRange::new(at(2, 0), at(9, 0)).unwrap()
}

/// About 10,000 records over the week.
fn config(seed: u64) -> Config {
    Config {
        seed,
        rate: 10_000.0 / week().seconds(),
        ..Config::default()
    }
}

fn records(c: Config, range: TimeRange) -> Vec<Record> {
    Generator::new(c).unwrap().records(range).collect()
}

fn jsonl<T: serde::Serialize>(items: impl Iterator<Item = T>) -> Vec<u8> {
    let mut out = Vec::new();
    for i in items {
        gpu_usage_loadgen::output::write_json_line(&mut out, &i).unwrap();
    }
    out
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let (a, b, c) = (
        Generator::new(config(1)).unwrap(),
        Generator::new(config(1)).unwrap(),
        Generator::new(config(2)).unwrap(),
    );
    let day = TimeRange::new(at(3, 0), at(4, 0)).unwrap();
    assert_eq!(jsonl(a.records(week())), jsonl(b.records(week())));
    assert_ne!(jsonl(a.records(week())), jsonl(c.records(week())));
    assert_eq!(jsonl(a.sessions(day)), jsonl(b.sessions(day)));
    assert_ne!(jsonl(a.sessions(day)), jsonl(c.sessions(day)));
    let beats = |g: &Generator| jsonl(g.heartbeats(day, Duration::from_secs(60)).unwrap());
    assert_eq!(beats(&a), beats(&b));
    assert_ne!(beats(&a), beats(&c));
}

#[test]
fn adjacent_ranges_add_up_to_their_union() {
    let whole = records(config(3), week());
    let first = TimeRange::new(
        at(2, 0),
        Utc.with_ymd_and_hms(2026, 11, 5, 7, 13, 1).unwrap(),
    )
    .unwrap();
    let second = TimeRange::new(first.end(), at(9, 0)).unwrap();
    let mut parts = records(config(3), first);
    parts.extend(records(config(3), second));
    assert_eq!(parts, whole);
}

#[test]
fn every_record_is_valid() {
    let range = week();
    let rs = records(config(4), range);
    assert!(
        rs.len() > 9_000 && rs.len() < 11_000,
        "{} records",
        rs.len()
    );
    let mut ids = HashSet::new();
    for (i, r) in rs.iter().enumerate() {
        assert!(r.completed_at >= r.started_at, "{r:?}");
        assert!(
            r.completed_at >= range.start() && r.completed_at < range.end(),
            "{r:?}"
        );
        assert!([0, 1, 2, 4, 8].contains(&r.gpu_count), "{r:?}");
        assert!(r.duration_ms() <= 30 * 3_600_000);
        assert!(r.created_at > r.completed_at);
        assert!(r.task_id.starts_with("lg-4-"));
        assert!(ids.insert(r.task_id.clone()), "duplicate {}", r.task_id);
        if i > 0 {
            assert!(rs[i - 1].completed_at <= r.completed_at, "completion order");
        }
    }
}

#[test]
fn about_ten_percent_fail_and_the_rare_cases_occur() {
    let rs = records(config(5), week());
    let n = rs.len() as f64;
    let share = |f: &dyn Fn(&Record) -> bool| rs.iter().filter(|r| f(r)).count() as f64 / n;
    let failed = share(&|r| r.status == Status::Failed);
    assert!((0.08..0.12).contains(&failed), "FAILED share {failed:.3}");
    let no_spec = share(&|r| r.spec_name.is_none());
    assert!(
        (0.015..0.05).contains(&no_spec),
        "no-spec share {no_spec:.3}"
    );
    let cpu = share(&|r| r.gpu_count == 0);
    assert!((0.01..0.035).contains(&cpu), "CPU-only share {cpu:.3}");
    let specs: HashSet<_> = rs.iter().filter_map(|r| r.spec_name.clone()).collect();
    assert!(specs.len() >= 3, "{specs:?}");
}

#[test]
fn durations_are_heavy_tailed() {
    for seed in [6, 7, 8] {
        let rs = records(config(seed), week());
        let mut secs: Vec<i64> = rs.iter().map(Record::duration_seconds).collect();
        secs.sort_unstable();
        let median = secs[secs.len() / 2];
        assert!((3..=40).contains(&median), "median {median} s");
        let minutes = secs.iter().filter(|&&s| (120..3_600).contains(&s)).count();
        assert!(minutes > rs.len() / 50, "{minutes} tasks of minutes");
        let hours = secs.iter().filter(|&&s| s > 3_600).count();
        assert!(hours >= 10, "seed {seed}: {hours} tasks over an hour");
        let midnight = rs
            .iter()
            .filter(|r| {
                let last = r.completed_at - chrono::Duration::milliseconds(1);
                r.duration_ms() > 0 && r.started_at.date_naive() != last.date_naive()
            })
            .count();
        assert!(midnight >= 1, "seed {seed}: no task crosses midnight");
    }
}

#[test]
fn arrivals_follow_the_rate() {
    let hour = TimeRange::new(at(3, 10), at(3, 11)).unwrap();
    let flat = Config {
        rate: 5.0,
        daily_cycle: 0.0,
        ..Config::default()
    };
    let n = records(flat, hour).len() as f64;
    // Poisson(18,000): sd 134.
    assert!((n - 18_000.0).abs() < 600.0, "{n} in an hour at 5/s");

    let g = Generator::new(Config {
        rate: 0.2,
        daily_cycle: 0.6,
        ..Config::default()
    })
    .unwrap();
    let rs: Vec<Record> = g.records(week()).collect();
    let expected = 0.2 * week().seconds();
    let n = rs.len() as f64;
    assert!(
        (n - expected).abs() < 4.0 * expected.sqrt(),
        "{n} vs {expected}"
    );
    let in_hours = |lo: u32, hi: u32| {
        rs.iter()
            .filter(|r| (lo..hi).contains(&r.completed_at.hour()))
            .count() as f64
    };
    // 12–16 UTC runs at about 1.55× the mean rate, 00–04 at about 0.45×.
    let ratio = in_hours(12, 16) / in_hours(0, 4);
    assert!(
        (2.8..4.2).contains(&ratio),
        "afternoon / night = {ratio:.2}"
    );
}

fn by_worker(sessions: &[Session]) -> HashMap<&str, Vec<&Session>> {
    let mut m: HashMap<&str, Vec<&Session>> = HashMap::new();
    for s in sessions {
        m.entry(s.worker.worker_id.as_str()).or_default().push(s);
    }
    m
}

#[test]
fn sessions_of_one_worker_never_overlap() {
    let g = Generator::new(Config {
        workers: Some(300),
        ..config(9)
    })
    .unwrap();
    let sessions: Vec<Session> = g.sessions(week()).collect();
    assert!(
        sessions
            .windows(2)
            .all(|w| w[0].started_at <= w[1].started_at)
    );
    let workers = by_worker(&sessions);
    assert_eq!(workers.len(), 300, "every worker was up at some point");
    for list in workers.values() {
        for w in list.windows(2) {
            let end = w[0].ended_at.unwrap();
            assert!(w[0].started_at < end);
            assert!(end < w[1].started_at, "{:?} overlaps {:?}", w[0], w[1]);
        }
    }
    // Sessions last hours.
    let hours: f64 = sessions
        .iter()
        .map(|s| (s.ended_at.unwrap() - s.started_at).num_seconds() as f64 / 3_600.0)
        .sum::<f64>()
        / sessions.len() as f64;
    assert!((2.0..12.0).contains(&hours), "mean session {hours:.1} h");
}

/// GPU milliseconds of `[s, e)` inside `range`.
fn clipped_ms(s: DateTime<Utc>, e: DateTime<Utc>, range: TimeRange) -> i64 {
    (e.min(range.end()) - s.max(range.start()))
        .num_milliseconds()
        .max(0)
}

/// Share of records inside a session of their worker, and the fleet's
/// utilisation (used / available GPU time) over the week.
fn attribution(rate: f64) -> (f64, f64) {
    let range = week();
    let g = Generator::new(Config { rate, ..config(10) }).unwrap();
    let sessions: Vec<Session> = g.sessions(range).collect();
    let workers = by_worker(&sessions);
    let rs: Vec<Record> = g.records(range).collect();
    let inside = rs
        .iter()
        .filter(|r| {
            workers[r.worker_id.as_deref().unwrap()]
                .iter()
                .any(|s| s.started_at <= r.started_at && r.completed_at <= s.ended_at.unwrap())
        })
        .count();
    let used: i64 = rs
        .iter()
        .map(|r| i64::from(r.gpu_count) * clipped_ms(r.started_at, r.completed_at, range))
        .sum();
    let available: i64 = sessions
        .iter()
        .map(|s| {
            i64::from(s.worker.gpu_count) * clipped_ms(s.started_at, s.ended_at.unwrap(), range)
        })
        .sum();
    (
        inside as f64 / rs.len() as f64,
        used as f64 / available as f64,
    )
}

#[test]
fn records_run_on_workers_that_are_up_and_utilisation_is_realistic() {
    // A small fleet (three workers an endpoint) and a larger one.
    for rate in [0.01, 0.3] {
        let (inside, _) = attribution(rate);
        assert!(
            inside > 0.98,
            "rate {rate}: only {inside:.3} of records inside a session"
        );
    }
    let (_, utilisation) = attribution(0.3);
    assert!(
        (0.3..0.9).contains(&utilisation),
        "utilisation {utilisation:.2}"
    );
}

#[test]
fn now_opens_sessions_and_bounds_reports() {
    let now = Utc.with_ymd_and_hms(2026, 11, 4, 12, 30, 0).unwrap();
    let g = Generator::new(Config {
        workers: Some(50),
        now: Some(now),
        ..config(11)
    })
    .unwrap();
    let sessions: Vec<Session> = g.sessions(week()).collect();
    assert!(sessions.iter().all(|s| s.started_at < now));
    let open: Vec<&Session> = sessions.iter().filter(|s| s.ended_at.is_none()).collect();
    assert!(!open.is_empty() && open.len() <= 50);
    assert!(sessions.iter().all(|s| s.ended_at.is_none_or(|e| e <= now)));
    let json = serde_json::to_string(open[0]).unwrap();
    assert!(json.ends_with(r#""ended_at":null}"#), "{json}");
    let beats = g.heartbeats(week(), Duration::from_secs(30)).unwrap();
    assert!(beats.last().is_some_and(|b| b.at < now));
}

#[test]
fn heartbeats_beat_inside_sessions_at_the_interval() {
    let day = TimeRange::new(at(5, 0), at(6, 0)).unwrap();
    let g = Generator::new(Config {
        workers: Some(40),
        ..config(12)
    })
    .unwrap();
    let sessions: Vec<Session> = g.sessions(day).collect();
    let workers = by_worker(&sessions);
    let beats: Vec<_> = g
        .heartbeats(day, Duration::from_secs(60))
        .unwrap()
        .collect();
    assert!(
        beats.windows(2).all(|w| w[0].at <= w[1].at),
        "ordered by time"
    );
    let mut last: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for b in &beats {
        assert!(b.at >= day.start() && b.at < day.end());
        let s = workers[b.worker.worker_id.as_str()]
            .iter()
            .find(|s| s.started_at <= b.at && b.at < s.ended_at.unwrap())
            .unwrap_or_else(|| panic!("{b:?} outside its sessions"));
        assert_eq!((b.at - s.started_at).num_milliseconds() % 60_000, 0);
        if let Some(prev) = last.insert(b.worker.worker_id.as_str(), b.at)
            && prev >= s.started_at
        {
            assert_eq!((b.at - prev).num_seconds(), 60, "{b:?}");
        }
    }
    let up_ms: i64 = sessions
        .iter()
        .map(|s| clipped_ms(s.started_at, s.ended_at.unwrap(), day))
        .sum();
    let expected = up_ms as f64 / 60_000.0;
    let n = beats.len() as f64;
    assert!(
        (n - expected).abs() <= sessions.len() as f64 + 1.0,
        "{n} vs {expected}"
    );
    assert!(g.heartbeats(day, Duration::from_millis(10)).is_err());
}
