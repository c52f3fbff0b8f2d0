//! `POST /aggregate` and the backfill endpoints, including the original
//! dashboard's exact trigger forms.

use chrono::TimeDelta;
use gpu_usage_core::jobs::JobName;
use gpu_usage_core::locks;
use gpu_usage_core::{EngineConfig, backfill};
use gpu_usage_testing::TestDb;
use serde_json::{Value, json};

use crate::support::{both_backends, column, expect_error, fixture_records, now, spawn_app};

/// The fixture's day, as a JSON body.
fn day_body() -> Value {
    json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z"})
}

async fn dashboard_trigger_forms(db: TestDb) {
    let app = spawn_app(db).await;
    app.ingest(&fixture_records()).await;

    // `POST /aggregate?granularity=all` with no body, as the original UI.
    let res = app.post_empty("/aggregate?granularity=all").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "completed");
    assert_eq!(body["granularity"], "all");
    // Default range: the 24 hours before now.
    assert_eq!(body["start_time"], "2026-01-01T12:00:00Z");
    assert_eq!(body["end_time"], "2026-01-02T12:00:00Z");
    let levels = column(&body["levels"], "level", Value::as_str);
    assert_eq!(levels, ["minute", "hourly", "daily"], "finest first");
    for l in body["levels"].as_array().unwrap() {
        assert!(l["rows_written"].as_u64().unwrap() > 0, "{body}");
        assert!(l["buckets"].is_number());
    }

    // The same with a literal `null` JSON body, as browser clients send.
    let res = app
        .post_raw(
            "/aggregate?granularity=all",
            "null",
            Some("application/json"),
        )
        .await;
    assert_eq!(res.status(), 200);

    // Parameters in a JSON body, and the original's spellings. Each level
    // is built from the one below, so they are run finest first.
    let res = app
        .post_json("/aggregate?granularity=minute", &day_body())
        .await;
    assert_eq!(res.status(), 200);
    let res = app.post_empty("/aggregate?granularity=hour&start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["granularity"], "hourly");
    assert_eq!(body["levels"].as_array().unwrap().len(), 1);
    let res = app.post_json("/aggregate", &json!({"granularity": "day", "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z"})).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["granularity"], "daily", "{body}");
    // Recomputing again is idempotent: the day still reads the same.
    let daily = app
        .get_json("/daily?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z")
        .await;
    assert_eq!(daily["data"][0]["total_tasks"], 3);
    assert!((daily["data"][0]["total_gpu_hours"].as_f64().unwrap() - 5.567778).abs() < 1e-9);
    app.finish().await;
}

async fn busy_levels_answer_409(db: TestDb) {
    let app = spawn_app(db).await;
    let held = locks::try_lock(&app.db.db, JobName::HourlyRollup)
        .await
        .unwrap()
        .unwrap();

    let res = app.post_empty("/aggregate?granularity=hourly").await;
    assert_eq!(res.headers()["retry-after"], "5");
    let body = expect_error(res, 409, "busy").await;
    assert!(
        body["error"].as_str().unwrap().contains("rollup_hourly"),
        "{body}"
    );
    // `all` needs every level's lock: nothing runs, and the minute lock it
    // took first is given back.
    expect_error(
        app.post_empty("/aggregate?granularity=all").await,
        409,
        "busy",
    )
    .await;
    let minute = locks::try_lock(&app.db.db, JobName::MinuteRollup)
        .await
        .unwrap();
    assert!(minute.is_some(), "the minute lock leaked");
    minute.unwrap().release().await.unwrap();
    // Other levels are not blocked.
    assert_eq!(
        app.post_empty("/aggregate?granularity=minute")
            .await
            .status(),
        200
    );

    held.release().await.unwrap();
    assert_eq!(
        app.post_empty("/aggregate?granularity=all").await.status(),
        200
    );
    app.finish().await;
}

async fn long_ranges_become_backfill_jobs(db: TestDb) {
    let app = spawn_app(db).await;
    app.ingest(&fixture_records()).await;

    // Longer than the inline limit (1 day): answered at once with a job.
    let res = app.post_empty("/aggregate?granularity=all&start_time=2025-12-31T00:00:00Z&end_time=2026-01-02T12:00:00Z").await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["status_url"], location.as_str());
    let job = &body["job"];
    assert_eq!(job["granularity"], "all");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["chunks_done"], 0);
    assert_eq!(job["chunks_total"], 3);
    let id = job["id"].as_i64().unwrap();
    assert_eq!(location, format!("/api/v1/gpu-usage/backfill/{id}"));

    // Asking again for the same range returns the active job.
    let again: Value = app
        .post_empty("/aggregate?granularity=all&start_time=2025-12-31T00:00:00Z&end_time=2026-01-02T12:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["job"]["id"], id);

    // The worker executes jobs; here the test plays the worker.
    let cfg = EngineConfig::from_settings(&app.settings);
    let ran = backfill::run_next(
        &gpu_usage_testing::job_env(&app.db.db, now()),
        &cfg,
        &backfill::RunOptions::default(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(ran.id, id);
    let done = app.get_json(&format!("/backfill/{id}")).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["chunks_done"], 3);
    assert_eq!(done["progress"], 1.0);
    expect_error(app.get("/backfill/0").await, 404, "not_found").await;

    let daily = app
        .get_json("/daily?start_time=2026-01-01T00:00:00Z&end_time=2026-01-03T00:00:00Z")
        .await;
    assert_eq!(daily["total"], 2);
    assert!(
        (daily["summary"]["total_gpu_hours"].as_f64().unwrap() - 6.067778).abs() < 1e-9,
        "{daily}"
    );

    // One level only.
    let res = app.post_empty("/aggregate?granularity=daily&start_time=2025-12-01T00:00:00Z&end_time=2026-01-01T00:00:00Z").await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["job"]["granularity"], "daily");
    app.finish().await;
}

async fn backfill_endpoints(db: TestDb) {
    let app = spawn_app(db).await;
    // Nothing retained and no times given: nothing to do, said plainly.
    expect_error(
        app.post_empty("/backfill").await,
        422,
        "nothing_to_backfill",
    )
    .await;

    app.ingest(&fixture_records()).await;
    let res = app
        .post_empty("/backfill?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z")
        .await;
    assert_eq!(res.status(), 202);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["job"]["granularity"], "all");
    assert_eq!(first["job"]["start_time"], "2026-01-01T00:00:00Z");
    assert_eq!(first["job"]["end_time"], "2026-01-02T00:00:00Z");

    // The same request as a JSON body: the active job is returned.
    let res = app.post_json("/backfill", &day_body()).await;
    assert_eq!(res.status(), 202);
    let same: Value = res.json().await.unwrap();
    assert_eq!(same["job"]["id"], first["job"]["id"]);

    // Neither time: everything still retained, from the earliest record.
    let res = app
        .post_raw("/backfill", "null", Some("application/json"))
        .await;
    assert_eq!(res.status(), 202);
    let all: Value = res.json().await.unwrap();
    assert_eq!(all["job"]["start_time"], "2026-01-01T10:00:00Z", "{all}");
    let end =
        chrono::DateTime::parse_from_rfc3339(all["job"]["end_time"].as_str().unwrap()).unwrap();
    assert!(end.to_utc() >= now() - TimeDelta::minutes(1), "{all}");

    let list = app.get_json("/backfill").await;
    let ids = column(&list["data"], "id", Value::as_i64);
    assert_eq!(
        ids,
        [
            all["job"]["id"].as_i64().unwrap(),
            first["job"]["id"].as_i64().unwrap()
        ],
        "newest first"
    );
    let limited = app.get_json("/backfill?limit=1").await;
    assert_eq!(limited["data"].as_array().unwrap().len(), 1);
    let one = app
        .get_json(&format!("/backfill/{}", first["job"]["id"]))
        .await;
    assert_eq!(one["status"], "pending");
    assert_eq!(one["progress"], 0.0);
    app.finish().await;
}

async fn engine_status(db: TestDb) {
    let app = spawn_app(db).await;
    app.ingest(&fixture_records()).await;
    let before = app.get_json("/status").await;
    assert_eq!(before["now"], "2026-01-02T12:00:00Z");
    let levels = before["levels"].as_array().unwrap();
    assert_eq!(
        column(&before["levels"], "level", Value::as_str),
        ["minute", "hourly", "daily"]
    );
    // Ingest queued the records' minutes: the minute level is behind.
    assert!(
        levels[0]["pending_ranges"].as_u64().unwrap() > 0,
        "{before}"
    );
    assert_eq!(
        levels[0]["oldest_pending"], "2026-01-01T10:00:00Z",
        "{before}"
    );
    assert!(levels[0]["lag_seconds"].as_i64().unwrap() > 0);
    assert!(before["jobs"].is_array());

    // Manual runs are recorded like scheduled ones.
    app.aggregate("granularity=all&start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z")
        .await;
    let after = app.get_json("/status").await;
    let jobs = after["jobs"].as_array().unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j["job"].as_str().unwrap()).collect();
    for job in ["rollup_minute", "rollup_hourly", "rollup_daily"] {
        assert!(names.contains(&job), "{after}");
    }
    let minute = jobs.iter().find(|j| j["job"] == "rollup_minute").unwrap();
    assert_eq!(minute["outcome"], "succeeded");
    assert!(minute["runner"].as_str().unwrap().starts_with("api:"));
    assert!(minute["rows_written"].as_i64().unwrap() > 0);
    assert_eq!(minute["last_success_at"], "2026-01-02T12:00:00Z");
    app.finish().await;
}

both_backends!(
    dashboard_trigger_forms,
    busy_levels_answer_409,
    long_ranges_become_backfill_jobs,
    backfill_endpoints,
    engine_status,
);
