//! Bad input: always a 4xx with the JSON error shape naming the problem,
//! never a 500, and nothing changes.

use gpu_usage_testing::TestDb;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    TestApp, both_backends, column, expect_error, fixture_records, spawn_app_with,
};

async fn bad_query_parameters(db: TestDb) {
    let app = spawn_app_with(db, |s, _| s.api.max_range_days = 31).await;
    let day = "start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z";
    let cases: Vec<(String, &str)> = vec![
        (format!("/hourly?{day}&scope_type=worker"), "scope_type"),
        (
            format!("/hourly?{day}&scope_type=global&scope_value=ep-a"),
            "scope_value",
        ),
        (
            format!(
                "/hourly?{day}&scope_type=endpoint&scope_value={}",
                "x".repeat(256)
            ),
            "scope_value",
        ),
        ("/hourly?start_time=yesterday".to_owned(), "start_time"),
        (
            "/hourly?start_time=2026-01-01T00:00:00".to_owned(),
            "start_time",
        ),
        (
            "/minute?end_time=2026-13-01T00:00:00Z".to_owned(),
            "end_time",
        ),
        (
            "/hourly?start_time=2026-01-02T00:00:00Z&end_time=2026-01-01T00:00:00Z".to_owned(),
            "start_time",
        ),
        (
            "/hourly?start_time=2026-01-01T00:00:00Z&end_time=2026-01-01T00:00:00Z".to_owned(),
            "start_time",
        ),
        // A start after "now" with no end: end defaults to now, so start ≥ end.
        (
            "/daily?start_time=2027-01-01T00:00:00Z".to_owned(),
            "start_time",
        ),
        (
            "/daily?start_time=2025-01-01T00:00:00Z&end_time=2026-01-01T00:00:00Z".to_owned(),
            "end_time",
        ),
        (format!("/hourly?{day}&limit=0"), "limit"),
        (format!("/hourly?{day}&limit=50001"), "limit"),
        (format!("/hourly?{day}&limit=-1"), "limit"),
        (format!("/hourly?{day}&limit=many"), "limit"),
        (format!("/hourly?{day}&cursor=zz"), "cursor"),
        (format!("/hourly?{day}&format=xml"), "format"),
        (format!("/records?{day}&status=RUNNING"), "status"),
        (format!("/records?{day}&limit=0"), "limit"),
        ("/backfill?limit=501".to_owned(), "limit"),
    ];
    for (path, field) in cases {
        let body = expect_error(app.get(&path).await, 400, "invalid_parameter").await;
        assert_eq!(body["field"], field, "{path}: {body}");
    }
    // Unknown or repeated parameters are refused, not ignored: a typo
    // would otherwise silently widen the query.
    for path in [
        format!("/hourly?{day}&scope=endpoint"),
        format!("/hourly?{day}&start_time=2026-01-01T00:00:00Z"),
        format!("/records?{day}&granularity=minute"),
    ] {
        let body = expect_error(app.get(&path).await, 400, "invalid_parameter").await;
        assert!(
            body["error"].as_str().unwrap().contains("query"),
            "{path}: {body}"
        );
    }
    expect_error(app.get("/backfill/abc").await, 400, "invalid_parameter").await;
    expect_error(app.get("/backfill/999999").await, 404, "not_found").await;
    expect_error(app.get("/nothing-here").await, 404, "no_route").await;
    expect_error(app.get_outside("/no-such-page").await, 404, "no_route").await;
    // A wrong method on a served path is 405 with the methods it has.
    let res = app.request(Method::POST, "/hourly").send().await.unwrap();
    assert_eq!(res.headers()["allow"], "GET");
    expect_error(res, 405, "method_not_allowed").await;
    for path in [
        "/healthz",
        "/readyz",
        "/api/v1/gpu-usage/status",
        "/api/v1/gpu-usage/backfill",
    ] {
        let res = app
            .client
            .request(Method::TRACE, format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        let allow = res.headers()["allow"].to_str().unwrap().to_owned();
        expect_error(res, 405, "method_not_allowed").await;
        let expected = if path.ends_with("/backfill") {
            "GET, POST"
        } else {
            "GET"
        };
        assert_eq!(allow, expected, "{path}");
    }
    let res = app
        .client
        .request(
            Method::TRACE,
            format!("{}/api/v1/gpu-usage/backfill/7", app.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET");
    app.finish().await;
}

async fn bad_bodies_change_nothing(db: TestDb) {
    let app = spawn_app_with(db, |s, _| {
        s.api.max_body_bytes = 4096;
        s.ingest.max_batch = 5;
    })
    .await;
    bad_record_bodies(&app).await;
    bad_records(&app).await;
    bad_triggers(&app).await;

    // Nothing was stored or computed by any of it.
    for path in [
        "/records?start_time=2025-12-01T00:00:00Z&end_time=2026-01-03T00:00:00Z",
        "/minute?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z",
    ] {
        app.assert_nothing_listed(path).await;
    }
    let jobs = app.get_json("/backfill").await;
    assert_eq!(jobs["data"], json!([]));
    app.finish().await;
}

/// `POST /records` bodies that are no batch at all.
async fn bad_record_bodies(app: &TestApp) {
    let json = Some("application/json");
    for (body, ct, status, code) in [
        ("{\"task_id\": ", json, 400, "invalid_body"),
        ("{}", Some("text/plain"), 415, "unsupported_media_type"),
        ("{}", None, 415, "unsupported_media_type"),
        ("null", json, 400, "invalid_body"),
        ("42", json, 400, "invalid_body"),
        ("[]", json, 400, "invalid_body"),
    ] {
        let res = app.post_raw("/records", body, ct).await;
        expect_error(res, status, code).await;
    }
    let big = json!([{"task_id": "x".repeat(5000)}]);
    let res = app.post_json("/records", &big).await;
    expect_error(res, 413, "payload_too_large").await;
    let six: Vec<Value> = (0..6)
        .map(|i| json!({"task_id": format!("b{i}")}))
        .collect();
    let res = app.post_json("/records", &Value::Array(six)).await;
    expect_error(res, 400, "invalid_body").await;
}

/// One bad record rejects the whole batch; every problem is listed.
async fn bad_records(app: &TestApp) {
    let mut batch = fixture_records();
    let records = batch.as_array_mut().unwrap();
    records[1]["gpu_count"] = json!(-1);
    records[2]["completed_at"] = json!("2026-01-01T23:00:00Z");
    records[3]["status"] = json!("RUNNING");
    records.push(json!({"task_id": "t5", "endpoint": "e", "gpu_count": "two",
        "started_at": "2026-01-01T00:00:00Z", "completed_at": "2026-01-01T00:01:00Z", "status": "FAILED"}));
    let res = app.post_json("/records", &batch).await;
    let body = expect_error(res, 422, "invalid_records").await;
    let problems = body["problems"].as_array().unwrap();
    let at: Vec<(u64, &str)> = problems
        .iter()
        .map(|p| {
            (
                p["index"].as_u64().unwrap(),
                p["task_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(at.contains(&(4, "t5")), "{body}");
    let gpu_problem = problems.iter().find(|p| p["task_id"] == "t5").unwrap();
    assert_eq!(gpu_problem["field"], "gpu_count");
    // Type errors are caught before domain validation; the domain's own
    // checks are exercised on a batch without them.
    batch.as_array_mut().unwrap().pop();
    let res = app.post_json("/records", &batch).await;
    let body = expect_error(res, 422, "invalid_records").await;
    let indexes = column(&body["problems"], "index", Value::as_u64);
    for i in [1, 2, 3] {
        assert!(indexes.contains(&i), "record {i} not reported: {body}");
    }
    assert!(!indexes.contains(&0), "{body}");

    // Second 60 would be kept as a leap second whose GPU time falls into no
    // minute: refused, naming the record and the field.
    let mut leap = fixture_records();
    leap[0]["completed_at"] = json!("2026-01-01T10:03:60.5Z");
    let res = app.post_json("/records", &leap).await;
    let body = expect_error(res, 422, "invalid_records").await;
    let p = &body["problems"][0];
    assert_eq!(
        (&p["index"], &p["task_id"], &p["field"]),
        (&json!(0), &json!("t1"), &json!("completed_at")),
        "{body}"
    );
    assert!(
        p["message"].as_str().unwrap().contains("second 60"),
        "{body}"
    );
}

async fn bad_triggers(app: &TestApp) {
    let json = Some("application/json");
    for (path, body, code) in [
        ("/aggregate?granularity=week", None, "invalid_parameter"),
        (
            "/aggregate?granularity=all&start_time=soon",
            None,
            "invalid_parameter",
        ),
        // Years MySQL's DATETIME cannot hold once a range is widened to whole
        // days: refused as input, not a 500 from the database.
        (
            "/aggregate?granularity=all&start_time=9999-12-31T00:00:00Z&end_time=9999-12-31T23:00:00Z",
            None,
            "invalid_parameter",
        ),
        (
            "/backfill?start_time=0999-01-01T00:00:00Z&end_time=0999-01-02T00:00:00Z",
            None,
            "invalid_parameter",
        ),
        ("/aggregate?granularity=all", Some("[1]"), "invalid_body"),
        ("/aggregate?granularity=all", Some("{"), "invalid_body"),
        (
            "/aggregate?granularity=all",
            Some("{\"granularity\":\"daily\"}"),
            "invalid_parameter",
        ),
        (
            "/aggregate?granularity=all",
            Some("{\"level\":\"daily\"}"),
            "invalid_body",
        ),
        ("/aggregate?verbose=1", None, "invalid_parameter"),
        (
            "/backfill?start_time=2026-01-01T00:00:00Z",
            None,
            "invalid_parameter",
        ),
        (
            "/backfill",
            Some("{\"end_time\":\"2026-01-01T00:00:00Z\"}"),
            "invalid_parameter",
        ),
        (
            "/backfill?start_time=2026-01-02T00:00:00Z&end_time=2026-01-01T00:00:00Z",
            None,
            "invalid_parameter",
        ),
    ] {
        let res = match body {
            Some(b) => app.post_raw(path, b, json).await,
            None => app.post_empty(path).await,
        };
        expect_error(res, 400, code).await;
    }
    let huge = "x".repeat(70 * 1024);
    let res = app
        .request(Method::POST, "/aggregate")
        .body(huge)
        .send()
        .await
        .unwrap();
    expect_error(res, 413, "payload_too_large").await;
}
/// Times the database cannot hold, or that no range limit allows, are a
/// 400 naming the parameter; no input gives a 5xx.
async fn far_times_are_refused_not_failed(db: TestDb) {
    let app = crate::support::spawn_app(db).await;
    for (path, field) in [
        ("/aggregate?end_time=3293-08-31T14:26:51Z", "end_time"),
        (
            "/aggregate?start_time=2038-01-18T00:00:00Z&end_time=2038-01-18T12:00:00Z",
            "end_time",
        ),
        (
            "/backfill?start_time=3293-08-30T00:00:00Z&end_time=3293-08-31T00:00:00Z",
            "start_time",
        ),
    ] {
        let res = app
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body("null")
            .send()
            .await
            .unwrap();
        let body = expect_error(res, 400, "invalid_parameter").await;
        assert_eq!(body["field"], field, "{path}: {body}");
    }
    for path in [
        "/hourly?start_time=2037-12-30T00:00:00Z&end_time=2037-12-31T23:59:59Z",
        "/daily?start_time=2037-12-01T00:00:00Z&end_time=2037-12-31T23:59:59Z",
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
    }
    app.finish().await;
}

both_backends!(
    bad_query_parameters,
    bad_bodies_change_nothing,
    far_times_are_refused_not_failed
);
