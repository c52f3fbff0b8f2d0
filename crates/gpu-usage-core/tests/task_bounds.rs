//! The minute rollup's read of records is bounded by the longest task
//! stored, not by `ingest.max_task_duration_hours`: a maximum lowered after
//! longer tasks were stored (or configured differently in the API and the
//! worker) must not drop their GPU time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gpu_usage_core::EngineConfig;
use sea_orm::DatabaseConnection;
use support::*;

async fn lowered_maximum_keeps_longer_tasks(db: &DatabaseConnection) {
    let now = now();
    let start = floor(now, DAY) - 5 * DAY;
    // 100 hours, accepted under the default maximum of 168 hours.
    let recs = [
        Rec::new(
            "long",
            "ep",
            Some("A100"),
            2,
            start,
            start + 100 * HOUR,
            false,
        ),
        Rec::new("short", "ep", None, 1, start + HOUR, start + 2 * HOUR, true),
    ];
    ingest(db, &recs, now, &cfg()).await.unwrap();
    // The worker runs with a maximum of 24 hours.
    let mut lowered = EngineConfig::default();
    lowered.ingest.max_task_duration_hours = 24;
    let rows = run_jobs_twice(db, now, &lowered).await.unwrap();
    assert_model(&rows, &recs, "rows with a lowered maximum");
    recompute_all(db, start - DAY, now, now, &lowered)
        .await
        .unwrap();
    assert_model(
        &read_levels(db).await.unwrap(),
        &recs,
        "rows after a recompute",
    );
}

gpu_usage_testing::guarded_dual_backend_tests! {
    a_lowered_task_maximum_keeps_longer_stored_tasks => lowered_maximum_keeps_longer_tasks,
}
