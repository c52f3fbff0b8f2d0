//! On SQLite the job locks hold across processes: while this process holds
//! the minute rollup's lock, `gpu-usage-worker run-job minute` on the same
//! database file skips (exit 3); once it is released, the other process
//! runs the job. The lock also frees when its holder's process dies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use gpu_usage_core::jobs::JobName;
use gpu_usage_core::locks;
use gpu_usage_testing::TestDb;

fn run_job(db_url: &str, job: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-usage-worker"))
        .args(["run-job", job])
        .env("GPU_USAGE__DATABASE__URL", db_url)
        .env("GPU_USAGE__LOG__FILTER", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_skips_a_job_this_one_holds() {
    let t = TestDb::sqlite().await;
    let url = secrecy::ExposeSecret::expose_secret(&t.settings.url).to_owned();

    let held = locks::try_lock(&t.db, JobName::MinuteRollup)
        .await
        .unwrap()
        .expect("the lock is free");
    let (code, out) = run_job(&url, "minute");
    assert_eq!(code, 3, "skipped while held elsewhere: {out}");
    assert!(out.contains("skipped"), "{out}");
    // Other jobs are not blocked by it.
    let (code, out) = run_job(&url, "hourly");
    assert_eq!(code, 0, "{out}");

    held.release().await.unwrap();
    let (code, out) = run_job(&url, "minute");
    assert_eq!(code, 0, "runs once released: {out}");

    // The other way round: a lock of this process is refused while a
    // child holds it, and free again once the child is gone (killed).
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-usage-worker"))
        .args(["run"])
        .env("GPU_USAGE__DATABASE__URL", &url)
        .env("GPU_USAGE__WORKER__HTTP_PORT", "0")
        .env("GPU_USAGE__LOG__FILTER", "warn")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // The child's scheduler and backfill poller take job locks briefly at
    // start-up and on every poll; look until one of them is seen held.
    let mut seen_busy = false;
    while std::time::Instant::now() < deadline && !seen_busy {
        for job in JobName::ALL {
            match locks::try_lock(&t.db, job).await.unwrap() {
                Some(l) => l.release().await.unwrap(),
                None => seen_busy = true,
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen_busy, "the child process never held a job lock");
    for job in JobName::ALL {
        let l = locks::try_lock(&t.db, job).await.unwrap();
        assert!(l.is_some(), "{job} still held after the child died");
        l.unwrap().release().await.unwrap();
    }
}
