//! Concurrent batches inserting overlapping new task_ids in different
//! orders deadlock under InnoDB; ingest retries them, so every batch
//! succeeds (or, if collisions persisted, would report contention — never a
//! database error), and every record is stored exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gpu_usage_core::EngineConfig;
use gpu_usage_core::entities::record;
use gpu_usage_core::ingest::ingest;
use gpu_usage_testing::{Lcg, MINUTE, Rec, TestDb, at, ms, stored_task_ids};
use sea_orm::{EntityTrait, PaginatorTrait};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_concurrent_batches_all_succeed() {
    let t = TestDb::mysql().await;
    let now = ms("2026-03-10T12:00:00Z");
    let base = now - 60 * MINUTE;
    let all: Vec<Rec> = (0..600)
        .map(|i| {
            let start = base + (i % 50) * MINUTE;
            Rec::new(
                &format!("task-{i}"),
                "ep",
                Some("a100"),
                1,
                start,
                start + MINUTE,
                false,
            )
        })
        .collect();
    let mut clients = Vec::new();
    for c in 0..6u64 {
        let db = t.db.clone();
        let all = all.clone();
        clients.push(tokio::spawn(async move {
            let mut rng = Lcg::new(c + 1);
            let mut outcomes = Vec::new();
            for _ in 0..6 {
                let mut ids: Vec<usize> = (0..all.len()).collect();
                // Fisher–Yates with the tests' deterministic generator.
                for k in (1..ids.len()).rev() {
                    let j = usize::try_from(rng.range(0, k as i64 + 1)).unwrap();
                    ids.swap(k, j);
                }
                let batch = ids[..300].iter().map(|&i| all[i].input()).collect();
                outcomes.push(ingest(&db, batch, at(now), &EngineConfig::default()).await);
            }
            outcomes
        }));
    }
    let mut inserted = 0;
    for c in clients {
        for outcome in c.await.unwrap() {
            let report = outcome.unwrap_or_else(|e| panic!("a batch failed: {e:?}"));
            assert!(report.conflicts.is_empty(), "{report:?}");
            assert_eq!(report.inserted + report.duplicates, 300);
            inserted += report.inserted;
        }
    }
    assert_eq!(inserted, 600, "each record inserted by exactly one batch");
    assert_eq!(record::Entity::find().count(&t.db).await.unwrap(), 600);
    let ids = stored_task_ids(&t.db).await;
    assert_eq!(ids.len(), 600);
}
