//! Redis stream ingest against a real Redis and MariaDB: every valid record
//! stored exactly once despite duplicates and a consumer killed between
//! reading and acknowledging; every malformed entry in the dead-letter
//! stream with its reason and original fields; nothing left pending.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use deadpool_redis::redis::{self, AsyncCommands, Value, streams::StreamRangeReply};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::entities::record;
use gpu_usage_core::ingest;
use gpu_usage_core::process as shutdown;
use gpu_usage_core::settings::RedisSettings;
use gpu_usage_testing::{Backend, TestDb};
use gpu_usage_worker::stream::{self, StreamConsumer};
use gpu_usage_worker::{Clock, JobContext, ManualClock};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use serde_json::Value as Json;

/// A stream of this test's own, small batches, quick reclaims.
fn redis_settings() -> RedisSettings {
    fresh_streams(test_redis_url(), "gu_test", 7, 300)
}

async fn publish_json(pool: &deadpool_redis::Pool, stream: &str, r: &Json) -> String {
    let json = r.to_string();
    xadd(pool, stream, &[("record", json.as_bytes())]).await
}

async fn pending(pool: &deadpool_redis::Pool, s: &RedisSettings) -> usize {
    let mut conn = pool.get().await.unwrap();
    let reply: redis::streams::StreamPendingReply =
        conn.xpending(&s.stream, &s.group).await.unwrap();
    reply.count()
}

/// A MariaDB test database, a stream (and group) of its own on the test
/// Redis with a pool, and a clock at 10:00.
async fn fixture() -> (
    TestDb,
    RedisSettings,
    deadpool_redis::Pool,
    Arc<ManualClock>,
) {
    let s = redis_settings();
    let pool = stream::create_pool(&s).unwrap();
    let (t, clock) = db_and_clock(Backend::MySql, "2026-06-15T10:00:00Z").await;
    (t, s, pool, clock)
}

/// `n` records completed in the hour before the fixture's clock.
fn last_hour(seed: u64, prefix: &str, n: usize) -> Vec<Json> {
    records_in(
        seed,
        prefix,
        n,
        "2026-06-15T09:00:00Z",
        "2026-06-15T09:59:00Z",
    )
}

/// A consumer named `name`, with a job context of its own, running its
/// loop on a task of its own.
struct Running {
    ctx: Arc<JobContext>,
    trigger: shutdown::ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(
        t: &TestDb,
        clock: &Arc<ManualClock>,
        pool: &deadpool_redis::Pool,
        s: &RedisSettings,
        name: &str,
    ) -> Running {
        let ctx = context(t.db.clone(), clock.clone(), name);
        let consumer = StreamConsumer::new(pool.clone(), s.clone(), ctx.clone(), name);
        let (trigger, stop) = shutdown::channel();
        let task = tokio::spawn(consumer.run(stop));
        Running { ctx, trigger, task }
    }

    /// Asks the loop to stop; panics unless it has within 5 s.
    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stopped")
            .unwrap();
    }
}

/// Drops the streams, then the database.
async fn finish(t: TestDb, s: &RedisSettings, pool: &deadpool_redis::Pool) {
    let mut conn = pool.get().await.unwrap();
    let _: () = conn.del(&[&s.stream, &s.dead_letter_stream]).await.unwrap();
    t.cleanup().await;
}

/// Malformed entry number `n`: a bad type, bad JSON, no record, bytes that
/// are no UTF-8, an invalid record.
fn malformed(n: usize) -> Vec<(&'static str, Vec<u8>)> {
    match n {
        0 => vec![
            ("task_id", b"bad-int".to_vec()),
            ("endpoint", b"e".to_vec()),
            ("gpu_count", b"two".to_vec()),
        ],
        1 => vec![("record", b"{not json".to_vec())],
        2 => vec![("unrelated", b"x".to_vec())],
        3 => vec![
            ("task_id", b"bad-bytes".to_vec()),
            ("endpoint", vec![0xff, 0xfe, 0x00]),
        ],
        _ => vec![
            ("task_id", b"bad-status".to_vec()),
            ("endpoint", b"e".to_vec()),
            ("gpu_count", b"1".to_vec()),
            ("started_at", b"2026-06-15T09:00:00Z".to_vec()),
            ("completed_at", b"2026-06-15T08:00:00Z".to_vec()),
            ("status", b"DONE".to_vec()),
        ],
    }
}

/// Publishes every valid record (as JSON or field by field, some twice),
/// malformed entries among them and a conflicting record at the end; the
/// ids of the entries to be dead-lettered with their kind, and the stream
/// length.
async fn publish_all(
    pool: &deadpool_redis::Pool,
    s: &RedisSettings,
    valid: &[Json],
) -> (BTreeMap<String, &'static str>, usize) {
    let mut expected_dead = BTreeMap::new();
    for (i, r) in valid.iter().enumerate() {
        if i % 4 == 0 {
            publish_json(pool, &s.stream, r).await;
        } else {
            publish_flat(pool, &s.stream, r).await;
        }
        // Replays: the platform retried some publishes.
        if i % 5 == 0 {
            publish_flat(pool, &s.stream, r).await;
        }
        if i % 8 == 3 {
            let fields = malformed(i / 8);
            let refs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let id = xadd(pool, &s.stream, &refs).await;
            expected_dead.insert(id, "malformed");
        }
    }
    // A different record under a known task_id: kept out, dead-lettered as
    // a conflict (never silently dropped). The last record's original is
    // read after consumer 1's lost batches, so it is the one stored.
    let last = valid.last().unwrap();
    let mut conflicting = last.clone();
    conflicting["gpu_count"] = (last["gpu_count"].as_i64().unwrap() + 1).into();
    let id = publish_flat(pool, &s.stream, &conflicting).await;
    expected_dead.insert(id, "conflict");
    let mut conn = pool.get().await.unwrap();
    let total: usize = conn.xlen(&s.stream).await.unwrap();
    (expected_dead, total)
}

/// Every valid record stored exactly once, as first published.
async fn assert_stored_once(db: &DatabaseConnection, valid: &[Json]) {
    assert_eq!(
        record::Entity::find().count(db).await.unwrap(),
        valid.len() as u64
    );
    let stored: BTreeMap<String, i32> = record::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.task_id, r.gpu_count))
        .collect();
    for r in valid {
        assert_eq!(
            stored.get(r["task_id"].as_str().unwrap()),
            Some(&(r["gpu_count"].as_i64().unwrap() as i32))
        );
    }
}

/// Every malformed (and the conflicting) entry dead-lettered once, with
/// the reason and its original fields.
async fn assert_dead_lettered(
    pool: &deadpool_redis::Pool,
    s: &RedisSettings,
    expected_dead: &BTreeMap<String, &str>,
) {
    let mut conn = pool.get().await.unwrap();
    let dead: StreamRangeReply = conn.xrange_all(&s.dead_letter_stream).await.unwrap();
    let mut seen = BTreeSet::new();
    for e in &dead.ids {
        let source: String = redis::from_redis_value(e.map["source_id"].clone()).unwrap();
        let reason: String = redis::from_redis_value(e.map["dead_letter_reason"].clone()).unwrap();
        let kind = expected_dead
            .get(&source)
            .unwrap_or_else(|| panic!("unexpected dead letter {source}: {reason}"));
        match *kind {
            "conflict" => assert!(reason.starts_with("conflict"), "{reason}"),
            _ => assert!(
                reason.starts_with("malformed") || reason.starts_with("invalid"),
                "{reason}"
            ),
        }
        assert!(seen.insert(source.clone()), "dead-lettered twice: {source}");
        if e.map.get("task_id") == Some(&Value::BulkString(b"bad-bytes".to_vec())) {
            assert_eq!(
                e.map["endpoint"],
                Value::BulkString(vec![0xff, 0xfe, 0x00]),
                "original bytes kept"
            );
        }
    }
    assert_eq!(seen, expected_dead.keys().cloned().collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_valid_record_once_every_malformed_one_dead_lettered_nothing_pending() {
    let (t, s, pool, clock) = fixture().await;
    let valid = records_in(30, "rs", 40, "2026-06-15T06:00:00Z", "2026-06-15T09:59:00Z");
    let (expected_dead, total) = publish_all(&pool, &s, &valid).await;

    // Consumer 1 reads a batch and dies before acknowledging it.
    let ctx = context(t.db.clone(), clock.clone(), "c1");
    let mut c1 = StreamConsumer::new(pool.clone(), s.clone(), ctx.clone(), "c1");
    c1.ensure_group().await.unwrap();
    let lost = c1.next_batch().await.unwrap();
    assert_eq!(lost.len(), s.batch_size);
    // ... and another one after its database commit, before the XACK.
    let committed = c1.next_batch().await.unwrap();
    for e in &committed {
        if let Ok(r) = e.record() {
            let _ = ingest::ingest(&t.db, vec![Ok(r)], clock.now(), &EngineConfig::default()).await;
        }
    }
    drop(c1);
    assert_eq!(pending(&pool, &s).await, 2 * s.batch_size);

    // Consumer 2 works the stream until nothing is pending or undelivered;
    // it claims consumer 1's entries once they are idle long enough.
    let ctx2 = context(t.db.clone(), clock.clone(), "c2");
    let mut c2 = StreamConsumer::new(pool.clone(), s.clone(), ctx2.clone(), "c2");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut handled = 0;
    loop {
        let r = c2.run_once().await.unwrap();
        handled += r.read;
        let lag = stream::stream_lag(&pool, &s).await.unwrap().unwrap();
        if r.read == 0 && lag.pending == 0 && lag.lag == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "stream not drained: {lag:?}");
    }
    assert!(
        handled >= total,
        "every entry handled ({handled} of {total}, some twice)"
    );
    assert_eq!(pending(&pool, &s).await, 0);

    assert_stored_once(&t.db, &valid).await;
    assert_dead_lettered(&pool, &s, &expected_dead).await;
    finish(t, &s, &pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_loop_stores_what_arrives_and_stops_on_shutdown() {
    let (t, s, pool, clock) = fixture().await;
    let consumer = Running::start(&t, &clock, &pool, &s, "looper");

    let recs = last_hour(31, "loop", 5);
    // Published before and after the group exists: both are consumed.
    for r in &recs {
        publish_flat(&pool, &s.stream, r).await;
    }
    wait_until("the records stored", 20, async || {
        record::Entity::find().count(&t.db).await.unwrap() >= recs.len() as u64
    })
    .await;
    let text = consumer.ctx.metrics.render();
    assert!(
        text.contains("gpu_usage_stream_entries_total{result=\"inserted\"} 5"),
        "{text}"
    );

    let asked = Instant::now();
    consumer.stop().await;
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stopped within about one block time"
    );
    assert_eq!(pending(&pool, &s).await, 0);
    finish(t, &s, &pool).await;
}

/// Polls `done` every 50 ms for up to `secs` seconds; panics naming `what`.
async fn wait_until(what: &str, secs: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {secs} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stream key deleted under a running consumer (as a Redis restart
/// without persistence or a `FLUSHALL` would): the consumer group goes
/// with it. The consumer recreates the group in the round that meets the
/// `NOGROUP` (or the `UNBLOCKED` of its blocked read), so no round fails
/// and no back-off applies: the record added after the loss is stored
/// within a block time or so, once. The 10 s wait would still cover one
/// failed round (2 s back-off); before the fix every round failed, backing
/// off to 32 s, and the record was never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_stream_group_is_recreated_and_later_entries_are_stored_once() {
    let (t, s, pool, clock) = fixture().await;
    let consumer = Running::start(&t, &clock, &pool, &s, "phoenix");
    let recs = last_hour(32, "lost", 2);
    let count = async || record::Entity::find().count(&t.db).await.unwrap();
    let drained = async || {
        stream::stream_lag(&pool, &s)
            .await
            .unwrap()
            .is_some_and(|l| l.pending == 0 && l.lag == Some(0))
    };

    publish_flat(&pool, &s.stream, &recs[0]).await;
    wait_until("the first record stored and acknowledged", 20, async || {
        count().await == 1 && drained().await
    })
    .await;

    // The stream is lost, and the group with it (the consumer may
    // recreate it at once: no asserting that it is still missing).
    let mut conn = pool.get().await.unwrap();
    let deleted: usize = conn.del(&s.stream).await.unwrap();
    drop(conn);
    assert_eq!(deleted, 1);

    publish_flat(&pool, &s.stream, &recs[1]).await;
    let lost = Instant::now();
    wait_until("the record added after the loss stored", 10, async || {
        count().await == 2
    })
    .await;
    println!("stored {} ms after the loss", lost.elapsed().as_millis());
    wait_until("the stream drained", 10, drained).await;

    assert_stored_once(&t.db, &recs).await;
    let text = consumer.ctx.metrics.render();
    for needle in [
        "gpu_usage_stream_entries_total{result=\"inserted\"} 2\n",
        "gpu_usage_stream_errors_total 0\n",
        "gpu_usage_stream_up 1\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(
        !text.contains("result=\"duplicate\""),
        "nothing delivered twice\n{text}"
    );

    consumer.stop().await;
    assert_eq!(pending(&pool, &s).await, 0);
    finish(t, &s, &pool).await;
}

/// The same loss met by `XAUTOCLAIM` at the start of a round (the stream
/// deleted between rounds): `NOGROUP`, and the round recreates the group
/// and reads what was added since, without failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_meeting_nogroup_recreates_the_group_and_reads_on() {
    let (t, s, pool, clock) = fixture().await;
    let ctx = context(t.db.clone(), clock.clone(), "between");
    let mut c = StreamConsumer::new(pool.clone(), s.clone(), ctx.clone(), "between");
    c.ensure_group().await.unwrap();
    let recs = last_hour(33, "nogroup", 1);
    let mut conn = pool.get().await.unwrap();
    let _: usize = conn.del(&s.stream).await.unwrap();
    drop(conn);
    publish_flat(&pool, &s.stream, &recs[0]).await;

    let r = c.run_once().await.unwrap();
    assert_eq!((r.read, r.inserted, r.acked), (1, 1, 1));
    assert_stored_once(&t.db, &recs).await;
    assert_eq!(pending(&pool, &s).await, 0);
    finish(t, &s, &pool).await;
}
