//! Worker sessions and heartbeats through the Redis stream (docs/CAPACITY.md),
//! against a real Redis and each database: entries of `kind` session and
//! heartbeat, as one JSON field named like the kind or as flat string
//! fields, stored as sessions; malformed, invalid and conflicting ones
//! dead-lettered with their reason and original fields; everything acked;
//! then the worker's own capacity and rollup jobs turn them into the
//! statistics' capacity figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{context, fresh_streams, publish_flat, test_redis_url, ts, xadd};
use deadpool_redis::redis::{self, AsyncCommands, streams::StreamRangeReply};
use gpu_usage_core::capacity;
use gpu_usage_core::entities::{record, statistics_hourly, worker_session};
use gpu_usage_core::jobs::{JobName, JobOutcome};
use gpu_usage_core::settings::RedisSettings;
use gpu_usage_core::types::ScopeType;
use gpu_usage_testing::TestDb;
use gpu_usage_worker::stream::{self, BatchReport, StreamConsumer};
use gpu_usage_worker::{JobContext, ManualClock, run_job};
use sea_orm::prelude::Decimal;
use sea_orm::{EntityTrait, PaginatorTrait, QueryOrder};
use serde_json::{Value, json};

const NOW: &str = "2026-06-15T10:00:00Z";

fn redis_settings() -> RedisSettings {
    // Small batches: conflicts and replays land in other batches than
    // the sessions they refer to.
    fresh_streams(test_redis_url(), "gu_cap_test", 5, 60_000)
}

/// What each dead-lettered entry's reason must say: its start, and words
/// it must contain.
struct Dead {
    prefix: &'static str,
    contains: &'static [&'static str],
}

/// An entry must be dead-lettered with a reason like this.
fn dead(prefix: &'static str, contains: &'static [&'static str]) -> Option<Dead> {
    Some(Dead { prefix, contains })
}

/// A session or heartbeat entry as one JSON field named like its kind.
fn as_json(kind: &str, body: &Value) -> Value {
    json!({"kind": kind, kind: body.to_string()})
}

/// Publishes the scenario; the ids of the entries that must be
/// dead-lettered, and how many entries there are. Each entry is written as
/// a JSON object of its stream fields.
async fn publish(
    pool: &deadpool_redis::Pool,
    s: &RedisSettings,
) -> (BTreeMap<String, Dead>, usize) {
    let st = s.stream.as_str();
    let mut dead_letters = BTreeMap::new();
    let mut n = 0;
    let mut add = async |fields: Value, reason: Option<Dead>| {
        n += 1;
        let id = publish_flat(pool, st, &fields).await;
        if let Some(reason) = reason {
            dead_letters.insert(id, reason);
        }
    };

    // sw1: a closed session as JSON.
    let sw1 = json!({"worker_id": "sw1", "endpoint": "ep-s", "spec_name": "a100",
        "gpu_type": "A100", "gpu_count": 2,
        "started_at": "2026-06-15T08:00:00Z", "ended_at": "2026-06-15T09:00:00Z"});
    add(as_json("session", &sw1), None).await;
    // sw2: an open session as flat fields (empty ended_at = open).
    let sw2 = json!({"kind": "session", "worker_id": "sw2", "endpoint": "ep-s",
        "spec_name": "a100", "gpu_count": "4",
        "started_at": "2026-06-15T09:00:00Z", "ended_at": ""});
    add(sw2, None).await;
    // hw1: a heartbeat as JSON, then one as flat fields extending it.
    let hb = json!({"worker_id": "hw1", "endpoint": "ep-h", "gpu_count": 1,
        "at": "2026-06-15T09:59:00Z"});
    add(as_json("heartbeat", &hb), None).await;
    let hb_flat = json!({"kind": "heartbeat", "worker_id": "hw1", "endpoint": "ep-h",
        "gpu_count": "1", "at": "2026-06-15T09:59:30Z"});
    add(hb_flat, None).await;
    // hw2: another worker's first heartbeat.
    let hw2 = json!({"kind": "heartbeat", "worker_id": "hw2", "endpoint": "ep-h",
        "spec_name": "h100", "gpu_count": "8", "at": "2026-06-15T09:59:40Z"});
    add(hw2, None).await;

    // Malformed: the JSON field is no JSON.
    let not_json = json!({"kind": "session", "session": "{not json"});
    add(not_json, dead("malformed", &["session"])).await;
    // Invalid: a GPU count that is no integer.
    let bad1 = json!({"kind": "session", "worker_id": "bad1", "endpoint": "ep-s",
        "gpu_count": "two", "started_at": "2026-06-15T09:00:00Z"});
    add(bad1, dead("invalid session", &["gpu_count"])).await;
    // Invalid: a heartbeat time that is no time.
    let bad2 = json!({"kind": "heartbeat", "worker_id": "bad2", "endpoint": "ep-h",
        "gpu_count": "1", "at": "yesterday"});
    add(bad2, dead("invalid heartbeat", &["at:"])).await;
    // Conflict: overlaps sw1's stored session (another batch).
    let overlap = json!({"kind": "session", "worker_id": "sw1", "endpoint": "ep-s",
        "spec_name": "a100", "gpu_type": "A100", "gpu_count": "2",
        "started_at": "2026-06-15T08:30:00Z", "ended_at": "2026-06-15T09:30:00Z"});
    add(overlap, dead("conflict", &["sw1"])).await;
    // A replay of sw1 as flat fields: a duplicate, stored once.
    let replay = json!({"kind": "session", "worker_id": "sw1", "endpoint": "ep-s",
        "spec_name": "a100", "gpu_type": "A100", "gpu_count": "2",
        "started_at": "2026-06-15T08:00:00Z", "ended_at": "2026-06-15T09:00:00Z"});
    add(replay, None).await;
    // An unknown kind.
    let pod = json!({"kind": "pod", "worker_id": "x"});
    add(pod, dead("malformed", &["kind"])).await;
    // Conflict: sw1's session with another GPU count.
    let mut more = sw1.clone();
    more["gpu_count"] = 3.into();
    add(
        as_json("session", &more),
        dead("conflict", &["sw1", "gpu_count"]),
    )
    .await;
    // Invalid: a heartbeat beyond the 300 s clock skew.
    let hw3 = json!({"kind": "heartbeat", "worker_id": "hw3", "endpoint": "ep-h",
        "gpu_count": "1", "at": "2026-06-15T10:05:01Z"});
    add(hw3, dead("invalid heartbeat", &["at:", "future"])).await;
    // A finished-task record (no kind) among them.
    let r1 = json!({"task_id": "r1", "endpoint": "ep-s", "spec_name": "a100",
        "gpu_count": "1", "started_at": "2026-06-15T08:15:00Z",
        "completed_at": "2026-06-15T08:45:00Z", "status": "COMPLETED"});
    add(r1, None).await;
    // sw3: opened as JSON, its end set later as flat fields (an update).
    let mut sw3 = json!({"worker_id": "sw3", "endpoint": "ep-s", "gpu_count": 1,
        "started_at": "2026-06-15T07:00:00Z"});
    add(as_json("session", &sw3), None).await;
    sw3["kind"] = "session".into();
    sw3["ended_at"] = "2026-06-15T07:30:00Z".into();
    add(sw3, None).await;
    // Invalid: a wrong type inside the JSON heartbeat.
    let bad = json!({"worker_id": "bad3", "endpoint": "ep-h", "gpu_count": "x",
        "at": "2026-06-15T09:59:00Z"});
    add(
        as_json("heartbeat", &bad),
        dead("invalid heartbeat", &["gpu_count"]),
    )
    .await;
    // Invalid: a session kind with no session in it.
    add(
        json!({"kind": "session"}),
        dead("invalid session", &["worker_id"]),
    )
    .await;
    (dead_letters, n)
}

/// Runs one consumer until nothing is pending or undelivered; the sum of
/// its rounds.
async fn drain(
    consumer: &mut StreamConsumer,
    pool: &deadpool_redis::Pool,
    s: &RedisSettings,
) -> BatchReport {
    consumer.ensure_group().await.unwrap();
    let mut total = BatchReport::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = consumer.run_once().await.unwrap();
        total.read += r.read;
        total.inserted += r.inserted;
        total.duplicates += r.duplicates;
        total.conflicts += r.conflicts;
        total.sessions += r.sessions;
        total.heartbeats += r.heartbeats;
        total.dead_lettered += r.dead_lettered;
        total.acked += r.acked;
        let lag = stream::stream_lag(pool, s).await.unwrap().unwrap();
        if r.read == 0 && lag.pending == 0 && lag.lag == Some(0) {
            return total;
        }
        assert!(Instant::now() < deadline, "stream not drained: {lag:?}");
    }
}

/// Every expected entry dead-lettered once, with its reason and its
/// original fields; nothing else.
async fn assert_dead_letters(
    pool: &deadpool_redis::Pool,
    s: &RedisSettings,
    expected: &BTreeMap<String, Dead>,
) {
    let mut conn = pool.get().await.unwrap();
    let reply: StreamRangeReply = conn.xrange_all(&s.dead_letter_stream).await.unwrap();
    let text = |e: &redis::streams::StreamId, k: &str| -> String {
        redis::from_redis_value(
            e.map
                .get(k)
                .unwrap_or_else(|| panic!("dead letter without {k}: {:?}", e.map))
                .clone(),
        )
        .unwrap()
    };
    let mut seen = BTreeMap::new();
    for e in &reply.ids {
        let source = text(e, "source_id");
        let reason = text(e, "dead_letter_reason");
        let want = expected
            .get(&source)
            .unwrap_or_else(|| panic!("unexpected dead letter {source}: {reason}"));
        assert!(reason.starts_with(want.prefix), "{source}: {reason}");
        for word in want.contains {
            assert!(reason.contains(word), "{source}: {reason} lacks {word}");
        }
        assert_eq!(text(e, "source_stream"), s.stream);
        assert!(
            seen.insert(source.clone(), e.map.clone()).is_none(),
            "dead-lettered twice: {source}"
        );
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "dead-lettered entries"
    );
    // The original fields travel with the reason.
    let bad1 = seen
        .values()
        .find(|m| {
            m.get("worker_id")
                .is_some_and(|v| *v == redis::Value::BulkString(b"bad1".to_vec()))
        })
        .expect("the invalid session's fields are kept");
    assert_eq!(bad1["kind"], redis::Value::BulkString(b"session".to_vec()));
    assert_eq!(bad1["gpu_count"], redis::Value::BulkString(b"two".to_vec()));
}

/// A stored session as (worker, endpoint, spec, gpu type, GPUs, start,
/// end, counted until).
type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    i32,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

/// `offer`: (worker, endpoint, spec, gpu type, GPUs); `times`: (start,
/// end, counted until).
fn row(
    (w, ep, spec, gpu_type, gpus): (&str, &str, Option<&str>, Option<&str>, i32),
    (start, end, counted): (&str, Option<&str>, &str),
) -> Row {
    (
        w.to_owned(),
        ep.to_owned(),
        spec.map(str::to_owned),
        gpu_type.map(str::to_owned),
        gpus,
        ts(start),
        end.map(ts),
        ts(counted),
    )
}

async fn stored_sessions(t: &TestDb) -> Vec<(Row, DateTime<Utc>)> {
    let mut rows: Vec<(Row, DateTime<Utc>)> = worker_session::Entity::find()
        .order_by_asc(worker_session::Column::WorkerId)
        .order_by_asc(worker_session::Column::StartedAt)
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                (
                    s.worker_id,
                    s.endpoint,
                    s.spec_name,
                    s.gpu_type,
                    s.gpu_count,
                    s.started_at,
                    s.ended_at,
                    s.counted_until,
                ),
                s.last_seen,
            )
        })
        .collect();
    rows.sort_by(|a, b| (&a.0.0, a.0.5).cmp(&(&b.0.0, b.0.5)));
    rows
}

/// Hourly endpoint rows as (hour, endpoint, available GPU-ms, used GPU-ms,
/// utilisation, peak GPUs available).
async fn hourly_by_endpoint(
    t: &TestDb,
) -> Vec<(DateTime<Utc>, String, i64, i64, Option<Decimal>, i32)> {
    let mut rows: Vec<_> = statistics_hourly::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.scope_type == ScopeType::Endpoint)
        .map(|r| {
            (
                r.time_bucket,
                r.scope_value.unwrap_or_default(),
                r.available_gpu_ms,
                r.gpu_milliseconds,
                r.utilization_rate,
                r.peak_gpus_available,
            )
        })
        .collect();
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    rows
}

async fn job(ctx: &Arc<JobContext>, name: JobName) {
    let outcome = run_job(ctx, name).await;
    assert!(
        matches!(outcome, JobOutcome::Ran { .. } | JobOutcome::NothingToDo),
        "{name:?}: {outcome:?}"
    );
}

async fn sessions_and_heartbeats_through_the_stream(t: TestDb) {
    let s = redis_settings();
    let pool = stream::create_pool(&s).unwrap();
    let clock = Arc::new(ManualClock::frozen(ts(NOW)));
    let ctx = context(t.db.clone(), clock.clone(), "cap-consumer");
    let (dead, published) = publish(&pool, &s).await;

    let mut consumer = StreamConsumer::new(pool.clone(), s.clone(), ctx.clone(), "cap-consumer");
    let report = drain(&mut consumer, &pool, &s).await;
    assert_eq!(report.read, published, "every entry read once: {report:?}");
    assert_eq!(report.acked, published, "every entry acked: {report:?}");
    assert_eq!(report.dead_lettered, dead.len(), "{report:?}");
    // sw1, sw2, the replay of sw1, sw3 and its end.
    assert_eq!(report.sessions, 5, "{report:?}");
    assert_eq!(report.heartbeats, 3, "{report:?}");
    assert_eq!(report.inserted, 1, "the record: {report:?}");
    let mut conn = pool.get().await.unwrap();
    let pending: redis::streams::StreamPendingReply =
        conn.xpending(&s.stream, &s.group).await.unwrap();
    assert_eq!(pending.count(), 0, "nothing left unacknowledged");

    assert_dead_letters(&pool, &s, &dead).await;
    assert_eq!(record::Entity::find().count(&t.db).await.unwrap(), 1);

    // Open sessions count up to min(now, last_seen + 30 s); a stream
    // report of an open session was last seen when it was read (now).
    let n = "2026-06-15T10:00:00Z";
    let stored = stored_sessions(&t).await;
    let rows: Vec<Row> = stored.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(
        rows,
        vec![
            row(
                ("hw1", "ep-h", None, None, 1),
                ("2026-06-15T09:59:00Z", None, n),
            ),
            row(
                ("hw2", "ep-h", Some("h100"), None, 8),
                ("2026-06-15T09:59:40Z", None, n),
            ),
            row(
                ("sw1", "ep-s", Some("a100"), Some("A100"), 2),
                (
                    "2026-06-15T08:00:00Z",
                    Some("2026-06-15T09:00:00Z"),
                    "2026-06-15T09:00:00Z"
                ),
            ),
            row(
                ("sw2", "ep-s", Some("a100"), None, 4),
                ("2026-06-15T09:00:00Z", None, n),
            ),
            row(
                ("sw3", "ep-s", None, None, 1),
                (
                    "2026-06-15T07:00:00Z",
                    Some("2026-06-15T07:30:00Z"),
                    "2026-06-15T07:30:00Z"
                ),
            ),
        ],
        "stored sessions"
    );
    let last_seen: Vec<(String, DateTime<Utc>)> = stored
        .iter()
        .filter(|(r, _)| r.6.is_none())
        .map(|(r, seen)| (r.0.clone(), *seen))
        .collect();
    assert_eq!(
        last_seen,
        vec![
            ("hw1".to_owned(), ts("2026-06-15T09:59:30Z")),
            ("hw2".to_owned(), ts("2026-06-15T09:59:40Z")),
            ("sw2".to_owned(), ts(n)),
        ],
        "last_seen of the open sessions"
    );

    // The worker's own jobs: the capacity job (two minutes on, every open
    // session silent for more than 3 × 30 s: ended at last_seen + 30 s),
    // then the rollups.
    clock.set(ts("2026-06-15T10:02:00Z"));
    job(&ctx, JobName::Capacity).await;
    let ends: Vec<(String, Option<DateTime<Utc>>)> = stored_sessions(&t)
        .await
        .into_iter()
        .map(|(r, _)| (r.0, r.6))
        .collect();
    assert_eq!(
        ends,
        vec![
            ("hw1".to_owned(), Some(ts("2026-06-15T10:00:00Z"))),
            ("hw2".to_owned(), Some(ts("2026-06-15T10:00:10Z"))),
            ("sw1".to_owned(), Some(ts("2026-06-15T09:00:00Z"))),
            ("sw2".to_owned(), Some(ts("2026-06-15T10:00:30Z"))),
            ("sw3".to_owned(), Some(ts("2026-06-15T07:30:00Z"))),
        ]
    );
    job(&ctx, JobName::MinuteRollup).await;
    job(&ctx, JobName::HourlyRollup).await;

    let h = |at: &str| ts(at);
    let hour_ms = 3_600_000;
    assert_eq!(
        hourly_by_endpoint(&t).await,
        vec![
            // sw3: 1 GPU for 30 minutes.
            (
                h("2026-06-15T07:00:00Z"),
                "ep-s".to_owned(),
                hour_ms / 2,
                0,
                Some(Decimal::ZERO),
                1
            ),
            // sw1: 2 GPUs for the hour; r1: 1 GPU for 30 minutes.
            (
                h("2026-06-15T08:00:00Z"),
                "ep-s".to_owned(),
                2 * hour_ms,
                hour_ms / 2,
                Some(Decimal::new(25, 2)),
                2
            ),
            // hw1 09:59:00–10:00:00 × 1, hw2 09:59:40–10:00:10 × 8.
            (
                h("2026-06-15T09:00:00Z"),
                "ep-h".to_owned(),
                60_000 + 20_000 * 8,
                0,
                Some(Decimal::ZERO),
                9
            ),
            // sw2: 4 GPUs 09:00–10:00:30.
            (
                h("2026-06-15T09:00:00Z"),
                "ep-s".to_owned(),
                4 * hour_ms,
                0,
                Some(Decimal::ZERO),
                4
            ),
            (
                h("2026-06-15T10:00:00Z"),
                "ep-h".to_owned(),
                10_000 * 8,
                0,
                Some(Decimal::ZERO),
                8
            ),
            (
                h("2026-06-15T10:00:00Z"),
                "ep-s".to_owned(),
                30_000 * 4,
                0,
                Some(Decimal::ZERO),
                4
            ),
        ]
    );

    let _: () = conn.del(&[&s.stream, &s.dead_letter_stream]).await.unwrap();
    drop(conn);
    t.cleanup().await;
}

/// A consumer that stored a batch of sessions and heartbeats and died
/// before acknowledging it: the batch is redelivered to another consumer,
/// which finds replays (nothing changes, nothing is dead-lettered) and
/// acknowledges it.
async fn redelivered_capacity_entries_change_nothing(t: TestDb) {
    let mut s = redis_settings();
    s.claim_idle_ms = 300;
    let pool = stream::create_pool(&s).unwrap();
    let clock = Arc::new(ManualClock::frozen(ts(NOW)));
    let ctx = context(t.db.clone(), clock.clone(), "c1");
    let st = s.stream.as_str();
    xadd(
        &pool,
        st,
        &[
            ("kind", "session"),
            ("worker_id", "wr1"),
            ("endpoint", "ep-r"),
            ("gpu_count", "2"),
            ("started_at", "2026-06-15T09:00:00Z"),
        ],
    )
    .await;
    xadd(
        &pool,
        st,
        &[
            ("kind", "heartbeat"),
            ("worker_id", "wr2"),
            ("endpoint", "ep-r"),
            ("gpu_count", "1"),
            ("at", "2026-06-15T09:59:50Z"),
        ],
    )
    .await;
    let closed = json!({"worker_id": "wr3", "endpoint": "ep-r", "gpu_count": 4,
        "started_at": "2026-06-15T08:00:00Z", "ended_at": "2026-06-15T09:00:00Z"});
    xadd(
        &pool,
        st,
        &[("kind", "session"), ("session", &closed.to_string())],
    )
    .await;

    // Consumer 1 reads the batch and commits it to the database itself...
    let mut c1 = StreamConsumer::new(pool.clone(), s.clone(), ctx.clone(), "c1");
    c1.ensure_group().await.unwrap();
    let batch = c1.next_batch().await.unwrap();
    assert_eq!(batch.len(), 3);
    let (mut sessions, mut beats) = (Vec::new(), Vec::new());
    for e in &batch {
        match e.item().unwrap() {
            stream::Item::Session(x) => sessions.push(Ok(x)),
            stream::Item::Heartbeat(h) => beats.push(Ok(h)),
            stream::Item::Record(_) => panic!("no records here"),
        }
    }
    let now = ts(NOW);
    let r = capacity::store_sessions(&t.db, sessions, now, &ctx.engine)
        .await
        .unwrap();
    assert_eq!(r.inserted, 2, "{r:?}");
    let r = capacity::apply_heartbeats(&t.db, beats, now, &ctx.engine)
        .await
        .unwrap();
    assert_eq!(r.inserted, 1, "{r:?}");
    let before = stored_sessions(&t).await;
    // ...and dies before the XACK.
    drop(c1);

    let ctx2 = context(t.db.clone(), clock.clone(), "c2");
    let mut c2 = StreamConsumer::new(pool.clone(), s.clone(), ctx2, "c2");
    let report = drain(&mut c2, &pool, &s).await;
    assert_eq!(report.read, 3, "redelivered once: {report:?}");
    assert_eq!(report.acked, 3, "{report:?}");
    assert_eq!(
        report.dead_lettered, 0,
        "replays are not conflicts: {report:?}"
    );
    assert_eq!((report.sessions, report.heartbeats), (2, 1), "{report:?}");
    assert_eq!(stored_sessions(&t).await, before, "nothing changed");
    assert_eq!(before.len(), 3, "{before:?}");
    let mut conn = pool.get().await.unwrap();
    let dead: usize = conn.xlen(&s.dead_letter_stream).await.unwrap();
    assert_eq!(dead, 0);
    let pending: redis::streams::StreamPendingReply =
        conn.xpending(&s.stream, &s.group).await.unwrap();
    assert_eq!(pending.count(), 0);
    let _: () = conn.del(&[&s.stream, &s.dead_letter_stream]).await.unwrap();
    drop(conn);
    t.cleanup().await;
}

gpu_usage_testing::dual_backend_test!(
    redelivered_capacity_entries_change_nothing,
    super::redelivered_capacity_entries_change_nothing
);

gpu_usage_testing::dual_backend_test!(
    sessions_and_heartbeats_through_the_stream,
    super::sessions_and_heartbeats_through_the_stream
);
