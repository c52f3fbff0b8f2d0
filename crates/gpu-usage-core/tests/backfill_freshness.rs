//! A long backfill holds the rollup locks most of the time, so the
//! periodic jobs' attempts are mostly skipped; live data must still reach
//! the minute, hourly and daily rows while it runs. Records arrive between
//! the chunks of an eight-day backfill (no periodic job runs at all): each
//! one is in the rows of every level after the next chunk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Mutex;

use gpu_usage_core::backfill::{self, RunOptions};
use gpu_usage_core::types::{Granularity, Levels};
use sea_orm::DatabaseConnection;
use support::*;

async fn live_data_during_a_backfill(db: &DatabaseConnection) {
    let now = now();
    let cfg = cfg();
    let old: Vec<Rec> = (0..8)
        .map(|d| {
            let s = floor(now, DAY) - (9 - d) * DAY + 3 * HOUR;
            Rec::new(
                &format!("old-{d}"),
                "ep",
                Some("A100"),
                2,
                s,
                s + 2 * HOUR,
                false,
            )
        })
        .collect();
    ingest(db, &old, now, &cfg).await.unwrap();
    let first_live = Rec::new(
        "live-0",
        "ep",
        None,
        1,
        now - 2 * MINUTE,
        now - MINUTE,
        false,
    );
    ingest(db, std::slice::from_ref(&first_live), now, &cfg)
        .await
        .unwrap();
    let range = range(floor(now, DAY) - 9 * DAY, floor(now, DAY) - DAY);
    backfill::create(db, range, Levels::All, at(now))
        .await
        .unwrap();

    let live = Mutex::new(vec![first_live]);
    let problems = Mutex::new(Vec::<String>::new());
    let handle = tokio::runtime::Handle::current();
    let on_progress = |job: &backfill::BackfillJob| {
        if job.chunks_done == 0 || job.is_finished() {
            return;
        }
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                // Everything live so far is in every level by now.
                let rows = read_levels(db).await.unwrap();
                let so_far = live.lock().unwrap().clone();
                let recent = |_: Granularity, r: &Row| r.bucket >= at(floor(now, DAY));
                let want = model(&so_far).filter(recent);
                if let Err(d) = diff_levels(&rows.stripped().filter(recent), &want) {
                    problems
                        .lock()
                        .unwrap()
                        .push(format!("after chunk {}:\n{d}", job.chunks_done));
                }
                let k = job.chunks_done as i64;
                let r = Rec::new(
                    &format!("live-{k}"),
                    "ep",
                    None,
                    1,
                    now - MINUTE + k * SECOND,
                    now,
                    false,
                );
                ingest(db, std::slice::from_ref(&r), now, &cfg)
                    .await
                    .unwrap();
                live.lock().unwrap().push(r);
            });
        });
    };
    let opts = RunOptions {
        on_progress: &on_progress,
        ..RunOptions::default()
    };
    let env = job_env(db, at(now));
    let job = backfill::run_next(&env, &cfg, &opts)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.chunks_done, 8);
    let problems = problems.into_inner().unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let mut all = old;
    all.extend(live.into_inner().unwrap());
    // The last live record arrived after the last chunk: the periodic
    // jobs fold it in.
    let rows = run_jobs_twice(db, now, &cfg).await.unwrap();
    assert_model(&rows, &all, "rows after the backfill");
}

gpu_usage_testing::guarded_dual_backend_tests! {
    live_data_reaches_every_level_during_a_backfill => live_data_during_a_backfill,
}
