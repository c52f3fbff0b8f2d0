//! The calls the original Waverless "GPU Usage" page makes, with no token
//! (its login is client-side only), exactly as it makes them.

use gpu_usage_testing::TestDb;
use serde_json::Value;

use crate::support::{both_backends, spawn_app_with_fixture};

async fn the_original_page_works(db: TestDb) {
    let app = spawn_app_with_fixture(db).await;

    // "Avg GPU Hours/Day": total_gpu_hours ÷ the number of daily rows.
    let daily = app
        .get_json("/daily?start_time=2026-01-01T00:00:00Z&end_time=2026-01-03T00:00:00Z")
        .await;
    let total = daily["summary"]["total_gpu_hours"].as_f64().unwrap();
    let rows = daily["total"].as_u64().unwrap() as f64;
    assert!(rows > 0.0);
    let per_day = daily["summary"]["avg_gpu_hours_per_day"].as_f64().unwrap();
    assert!((per_day - total / rows).abs() < 1e-6, "{daily}");
    let none = app
        .get_json("/daily?start_time=2025-01-01T00:00:00Z&end_time=2025-01-03T00:00:00Z")
        .await;
    assert_eq!(none["summary"]["avg_gpu_hours_per_day"], 0.0);
    let hourly = app.get_json("/hourly").await;
    assert!(hourly["summary"].get("avg_gpu_hours_per_day").is_none());

    // Its backfill button: the original's knobs, a `null` body.
    let res = app
        .request(
            reqwest::Method::POST,
            "/backfill?batch_size=1000&max_tasks=0",
        )
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    for (field, expected) in [
        ("totalTasksProcessed", Value::from(0)),
        ("recordsCreated", Value::from(0)),
        ("recordsSkipped", Value::from(0)),
        ("duration", Value::from(0.0)),
        ("errors", Value::Array(vec![])),
    ] {
        assert_eq!(body[field], expected, "{field}: {body}");
    }
    assert!(body["job"]["id"].is_number(), "{body}");

    // Its aggregate button over 7 days: queued, and the answer still says
    // what was asked for.
    let q = "granularity=all&start_time=2025-12-26T00:00:00Z&end_time=2026-01-02T00:00:00Z";
    let res = app.post_empty(&format!("/aggregate?{q}")).await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["granularity"], "all", "{body}");
    assert_eq!(body["start_time"], "2025-12-26T00:00:00Z");
    assert_eq!(body["end_time"], "2026-01-02T00:00:00Z");
    app.finish().await;
}
both_backends!(the_original_page_works);
