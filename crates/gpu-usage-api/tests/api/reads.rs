//! Ingest → aggregate → read through the API: the numbers are the ones
//! worked out by hand from the fixture records (support::fixture_records).
//!
//! t1 ep-a/a100 2 GPUs 10:00–10:30 COMPLETED → 1 GPU-h in hour 10
//! t2 ep-b/h100 4 GPUs 10:15–11:15 FAILED    → 3 GPU-h in hour 10, 1 in 11
//! t3 ep-a/-    1 GPU  23:30–00:30 COMPLETED → 0.5 GPU-h on each day
//! t4 ep-b/a100 8 GPUs 11:00:00–11:00:30.5   → 244 GPU-s in minute 11:00

use gpu_usage_testing::TestDb;
use serde_json::{Value, json};

use crate::support::{
    TestApp, both_backends, column, content_type, expect_error, hour_keys, keys, spawn_app,
    spawn_app_with_fixture, task,
};

fn close(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-9)
}

#[track_caller]
fn assert_num(row: &Value, field: &str, expected: f64) {
    assert!(
        row[field].is_number(),
        "{field} is not a JSON number: {row}"
    );
    assert!(
        close(&row[field], expected),
        "{field}: expected {expected}, got {}",
        row[field]
    );
}

#[track_caller]
fn assert_utc(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a time string: {v}"));
    assert!(s.ends_with('Z'), "not RFC 3339 UTC with Z: {s}");
    chrono::DateTime::parse_from_rfc3339(s).unwrap();
}

/// Every field of `expected` in `row`: numbers as JSON numbers close to
/// them, anything else equal.
#[track_caller]
fn assert_fields(row: &Value, expected: &Value) {
    for (field, want) in expected.as_object().unwrap() {
        match want.as_f64() {
            Some(n) => assert_num(row, field, n),
            None => assert_eq!(&row[field], want, "{field}: {row}"),
        }
    }
}

async fn dashboard_hourly_numbers(db: TestDb) {
    let app = spawn_app_with_fixture(db).await;

    // The original dashboard's exact request.
    let body = app
        .get_json("/hourly?scope_type=global&start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z")
        .await;
    assert_eq!(body["total"], 3, "{body}");
    assert_eq!(body["start_time"], "2026-01-01T00:00:00Z");
    assert_eq!(body["end_time"], "2026-01-02T00:00:00Z");
    assert_eq!(body["next_cursor"], Value::Null);
    assert_eq!(body["limit"], 5000);
    let rows = body["data"].as_array().unwrap();
    assert_eq!(
        column(&body["data"], "time_bucket", Value::as_str),
        [
            "2026-01-01T10:00:00Z",
            "2026-01-01T11:00:00Z",
            "2026-01-01T23:00:00Z"
        ]
    );

    let expected = [
        // 10:15–10:29 carry both tasks (360 GPU-s); ties go to the earliest.
        json!({"scope_type": "global", "scope_value": null,
            "total_tasks": 1, "completed_tasks": 1, "failed_tasks": 0, "total_gpu_hours": 4,
            "avg_gpu_count": 2, "max_gpu_count": 2,
            "peak_minute": "2026-01-01T10:15:00Z", "peak_gpu_hours": 0.1}),
        json!({"total_tasks": 2, "completed_tasks": 1, "failed_tasks": 1,
            "total_gpu_hours": 1.067778, "avg_gpu_count": 6, "max_gpu_count": 8,
            "peak_minute": "2026-01-01T11:00:00Z", "peak_gpu_hours": 0.134444}),
        // GPU time without a completion still makes a row, with no tasks.
        json!({"total_tasks": 0, "avg_gpu_count": 0, "total_gpu_hours": 0.5}),
    ];
    for (row, want) in rows.iter().zip(expected) {
        assert_fields(row, &want);
    }
    for f in [
        "time_bucket",
        "period_start",
        "period_end",
        "updated_at",
        "peak_minute",
    ] {
        assert_utc(&rows[0][f]);
    }

    // The average is task-weighted: (2 + 4 + 8) / 3, not the mean of row
    // averages.
    let summary = json!({"total_tasks": 3, "completed_tasks": 2, "failed_tasks": 1,
        "total_gpu_hours": 5.567778, "avg_gpu_count": 4.67, "max_gpu_count": 8,
        "peak_time_bucket": "2026-01-01T10:00:00Z", "peak_gpu_hours": 4});
    assert_fields(&body["summary"], &summary);
    app.finish().await;
}

/// Reads of the fixture by scope: every value of one, one value, the spec
/// scope without the records lacking a spec, the scopes themselves.
async fn scope_reads(app: &TestApp) {
    // Every value of a scope when scope_value is omitted, ordered by
    // (time_bucket, scope_value).
    let eps = app
        .get_json("/hourly?scope_type=endpoint&start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z")
        .await;
    assert_eq!(
        keys(&eps),
        hour_keys(
            "2026-01-01",
            &[(10, "ep-a"), (10, "ep-b"), (11, "ep-b"), (23, "ep-a")]
        )
    );
    assert_num(&eps["data"][1], "total_gpu_hours", 3.0);
    assert_num(&eps["summary"], "total_gpu_hours", 5.567778);

    let one = app
        .get_json("/hourly?scope_type=endpoint&scope_value=ep-a&start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z")
        .await;
    assert_eq!(one["total"], 2);
    assert_num(&one["summary"], "total_gpu_hours", 1.5);

    // Records without a spec are left out of the spec scope only.
    let specs = app
        .get_json(
            "/hourly?scope_type=spec&start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z",
        )
        .await;
    assert_eq!(specs["total"], 4);
    assert_num(&specs["summary"], "total_gpu_hours", 5.067778);
    let a100 = app
        .get_json("/daily?scope_type=spec&scope_value=a100&start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z")
        .await;
    assert_num(&a100["data"][0], "total_tasks", 2.0);
    assert_num(&a100["data"][0], "avg_gpu_count", 5.0);

    let scopes = app.get_json("/scopes").await;
    assert_eq!(
        scopes,
        serde_json::json!({"endpoints": ["ep-a", "ep-b"], "specs": ["a100", "h100"]})
    );
}

async fn minute_daily_and_scopes(db: TestDb) {
    let app = spawn_app_with_fixture(db).await;

    let body = app
        .get_json("/minute?scope_type=global&start_time=2026-01-01T10:29:00Z&end_time=2026-01-01T10:31:00Z")
        .await;
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    assert_num(&rows[0], "total_gpu_seconds", 360.0);
    assert_num(&rows[0], "total_gpu_hours", 0.1);
    assert_num(&rows[0], "total_tasks", 0.0);
    // t1 completes at 10:30:00 exactly: its task counts in minute 10:30,
    // while its GPU time ended with minute 10:29.
    assert_num(&rows[1], "total_gpu_seconds", 240.0);
    assert_num(&rows[1], "total_tasks", 1.0);
    assert_num(&rows[1], "avg_gpu_count", 2.0);
    assert!(rows[0].get("peak_minute").is_none());

    let m11 = app
        .get_json("/minute?start_time=2026-01-01T11:00:00Z&end_time=2026-01-01T11:01:00Z")
        .await;
    assert_num(&m11["data"][0], "total_gpu_seconds", 484.0);
    assert_num(&m11["data"][0], "max_gpu_count", 8.0);

    // Conservation: the minute level over the day holds the same GPU time.
    let day = app
        .get_json("/minute?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z")
        .await;
    assert_num(&day["summary"], "total_gpu_hours", 5.567778);
    assert_num(&day["summary"], "total_tasks", 3.0);

    // A daily query includes the day holding start_time.
    let daily = app
        .get_json("/daily?scope_type=global&start_time=2026-01-01T12:00:00Z&end_time=2026-01-02T12:00:00Z")
        .await;
    let rows = daily["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{daily}");
    assert_eq!(rows[0]["time_bucket"], "2026-01-01T00:00:00Z");
    assert_num(&rows[0], "total_tasks", 3.0);
    assert_num(&rows[0], "total_gpu_hours", 5.567778);
    assert_num(&rows[0], "avg_gpu_count", 4.67);
    assert_eq!(rows[0]["peak_hour"], "2026-01-01T10:00:00Z");
    assert_num(&rows[0], "peak_gpu_hours", 4.0);
    // No worker sessions reported: nothing available (0, by the capacity
    // rules), so no rate and no completeness verdict.
    assert_num(&rows[0], "available_gpu_hours", 0.0);
    assert_eq!(rows[0]["utilization_rate"], Value::Null);
    assert_eq!(rows[0]["capacity_complete"], Value::Null);
    assert_eq!(rows[1]["time_bucket"], "2026-01-02T00:00:00Z");
    assert_num(&rows[1], "total_tasks", 1.0);
    assert_num(&rows[1], "total_gpu_hours", 0.5);
    assert_num(&daily["summary"], "total_gpu_hours", 6.067778);

    scope_reads(&app).await;
    app.finish().await;
}

async fn records_listing(db: TestDb) {
    let app = spawn_app_with_fixture(db).await;

    // Default window: the 24 hours before now, by completed_at.
    let recent = app.get_json("/records").await;
    assert_eq!(recent["total"], 1, "{recent}");
    assert_eq!(recent["data"][0]["task_id"], "t3");
    assert_eq!(recent["data"][0]["status"], "COMPLETED");
    assert_eq!(recent["start_time"], "2026-01-01T12:00:00Z");
    assert_eq!(recent["end_time"], "2026-01-02T12:00:00Z");

    let day = "start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z";
    let all = app.get_json(&format!("/records?{day}")).await;
    assert_eq!(
        column(&all["data"], "task_id", Value::as_str),
        ["t1", "t4", "t2"]
    );
    let t4 = &all["data"][1];
    assert_num(t4, "gpu_hours", 0.067778);
    assert_num(t4, "duration_seconds", 30.0);
    assert_num(t4, "gpu_count", 8.0);
    assert_eq!(t4["completed_at"], "2026-01-01T11:00:30.500Z");
    assert_eq!(t4["spec_name"], "a100");
    assert_eq!(all["data"][0]["gpu_memory_gb"], 80);

    let ep_b = app.get_json(&format!("/records?{day}&endpoint=ep-b")).await;
    assert_eq!(ep_b["total"], 2);
    let failed = app.get_json(&format!("/records?{day}&status=failed")).await;
    assert_eq!(failed["data"][0]["task_id"], "t2");
    assert_eq!(failed["total"], 1);
    let a100 = app.get_json(&format!("/records?{day}&spec=a100")).await;
    assert_eq!(a100["total"], 2);

    // Paging through records one at a time yields the same sequence.
    let mut seen = Vec::new();
    for page in app.pages(&format!("/records?{day}&limit=1")).await {
        assert_eq!(page["total"], 3);
        seen.extend(column(&page["data"], "task_id", |v| {
            v.as_str().map(str::to_owned)
        }));
    }
    assert_eq!(seen, ["t1", "t4", "t2"]);
    app.finish().await;
}

async fn pagination_across_pages(db: TestDb) {
    let app = spawn_app_with_fixture(db).await;
    let range = "scope_type=endpoint&start_time=2026-01-01T10:00:00Z&end_time=2026-01-01T12:00:00Z";
    let full = app.get_json(&format!("/minute?{range}")).await;
    let total = full["total"].as_u64().unwrap();
    // ep-a: 10:00–10:30 (31 rows); ep-b: 10:15–11:15 (61 rows).
    assert_eq!(total, 92, "{}", full["total"]);
    assert_eq!(full["data"].as_array().unwrap().len(), 92);

    let mut rows: Vec<Value> = Vec::new();
    let pages = app.pages(&format!("/minute?{range}&limit=7")).await;
    for page in &pages {
        assert_eq!(page["total"], total);
        assert_eq!(
            page["summary"], full["summary"],
            "summary covers the whole range on every page"
        );
        assert_eq!(page["limit"], 7);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 7);
        rows.extend(data.iter().cloned());
    }
    assert_eq!(pages.len(), 14);
    assert_eq!(
        &rows,
        full["data"].as_array().unwrap(),
        "no row lost or repeated"
    );

    // New rows arriving between pages do not shift the pages already read.
    let first = app.get_json(&format!("/minute?{range}&limit=10")).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    app.ingest(&serde_json::json!({
        "task_id": "late", "endpoint": "ep-0", "gpu_count": 1,
        "started_at": "2026-01-01T10:00:00Z", "completed_at": "2026-01-01T10:01:00Z", "status": "COMPLETED"
    }))
    .await;
    app.aggregate(
        "granularity=minute&start_time=2026-01-01T10:00:00Z&end_time=2026-01-01T10:05:00Z",
    )
    .await;
    let second = app
        .get_json(&format!("/minute?{range}&limit=10&cursor={cursor}"))
        .await;
    assert_eq!(second["data"][0], full["data"][10]);
    assert_eq!(second["total"], total + 2);

    // Cursors are opaque and bound to their query.
    let hourly = app.get_json(&format!("/hourly?{range}&limit=1")).await;
    let foreign = hourly["next_cursor"].as_str().unwrap();
    expect_error(
        app.get(&format!("/minute?{range}&cursor={foreign}")).await,
        400,
        "invalid_parameter",
    )
    .await;
    expect_error(
        app.get(&format!("/minute?{range}&cursor=not-a-cursor"))
            .await,
        400,
        "invalid_parameter",
    )
    .await;
    app.finish().await;
}

async fn csv_output(db: TestDb) {
    let app = spawn_app_with_fixture(db).await;
    let q =
        "/hourly?scope_type=endpoint&start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z";

    let accepting = |path: String, accept: &'static str| {
        let r = app.request(reqwest::Method::GET, &path);
        async move { r.header("Accept", accept).send().await.unwrap() }
    };
    let res = accepting(q.to_owned(), "text/csv").await;
    assert_eq!(res.status(), 200);
    assert!(content_type(&res).starts_with("text/csv"));
    assert_eq!(res.headers()["x-total-count"], "4");
    let text = res.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "time_bucket,scope_type,scope_value,total_tasks,completed_tasks,failed_tasks,total_gpu_hours,\
avg_gpu_count,max_gpu_count,peak_minute,peak_gpu_hours,available_gpu_hours,utilization_rate,\
idle_gpu_hours,capacity_complete,peak_gpus_in_use,peak_gpus_available,period_start,period_end,updated_at"
    );
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[2]
            .starts_with("2026-01-01T10:00:00Z,endpoint,ep-b,0,0,0,3,0,0,2026-01-01T10:15:00Z,"),
        "{}",
        lines[2]
    );

    // format=csv does the same without headers; paging headers included.
    let res = app.get(&format!("{q}&format=csv&limit=3")).await;
    assert_eq!(res.headers()["x-total-count"], "4");
    assert!(res.headers().get("x-next-cursor").is_some());
    let text = res.text().await.unwrap();
    assert_eq!(text.split("\r\n").filter(|l| !l.is_empty()).count(), 4);

    // format= wins over Accept; browsers' Accept lists get JSON.
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for (path, accept) in [
        (format!("{q}&format=json"), "text/csv"),
        (q.to_owned(), browser),
    ] {
        let res = accepting(path, accept).await;
        assert!(content_type(&res).starts_with("application/json"));
    }

    let minute = app
        .get("/minute?start_time=2026-01-01T11:00:00Z&end_time=2026-01-01T11:01:00Z&format=csv")
        .await;
    let text = minute.text().await.unwrap();
    assert!(text.starts_with("time_bucket,scope_type,scope_value,total_tasks,completed_tasks,failed_tasks,total_gpu_seconds,"));
    assert!(
        text.contains("2026-01-01T11:00:00Z,global,,1,1,0,484,"),
        "{text}"
    );
    let daily = app
        .get("/daily?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z&format=csv")
        .await;
    let text = daily.text().await.unwrap();
    assert!(
        text.contains(",peak_hour,peak_gpu_hours,available_gpu_hours,utilization_rate,"),
        "{text}"
    );
    assert!(
        text.contains(
            "2026-01-01T00:00:00Z,global,,3,2,1,5.567778,4.67,8,2026-01-01T10:00:00Z,4,0,,0,,"
        ),
        "{text}"
    );
    app.finish().await;
}

async fn defaults_and_empty_results(db: TestDb) {
    let app = spawn_app(db).await;
    // Nothing stored: an empty array, zero totals, no peak.
    for (path, start) in [
        ("/minute", "2026-01-02T11:00:00Z"),
        ("/hourly", "2026-01-01T12:00:00Z"),
        ("/daily", "2025-12-03T12:00:00Z"),
    ] {
        let body = app.get_json(path).await;
        assert_eq!(body["start_time"], start, "{path}");
        assert_eq!(body["end_time"], "2026-01-02T12:00:00Z", "{path}");
        assert_eq!(body["data"], serde_json::json!([]));
        assert_eq!(body["total"], 0);
        assert_num(&body["summary"], "total_gpu_hours", 0.0);
        assert_num(&body["summary"], "avg_gpu_count", 0.0);
        assert_eq!(body["summary"]["peak_time_bucket"], Value::Null);
        assert_eq!(body["next_cursor"], Value::Null);
    }
    // Only start given: end defaults to now.
    let body = app
        .get_json("/hourly?start_time=2026-01-02T00:00:00Z")
        .await;
    assert_eq!(body["end_time"], "2026-01-02T12:00:00Z");
    // An empty value is not "absent": refused, naming the parameter.
    for (query, field) in [
        ("start_time=2026-01-02T00:00:00Z&end_time=", "end_time"),
        ("scope_type=endpoint&scope_value=", "scope_value"),
        ("limit=", "limit"),
    ] {
        let body = crate::support::expect_error(
            app.get(&format!("/hourly?{query}")).await,
            400,
            "invalid_parameter",
        )
        .await;
        assert_eq!(body["field"], field, "{body}");
    }
    // Any offset is accepted and answered in UTC; an unencoded `+` too.
    let body = app
        .get_json(
            "/hourly?start_time=2026-01-02T09:00:00%2B09:00&end_time=2026-01-02T10:00:00+01:00",
        )
        .await;
    assert_eq!(body["start_time"], "2026-01-02T00:00:00Z");
    assert_eq!(body["end_time"], "2026-01-02T09:00:00Z");
    let scopes = app.get_json("/scopes").await;
    assert_eq!(scopes, serde_json::json!({"endpoints": [], "specs": []}));
    app.finish().await;
}

/// A row rewritten between two page requests (a late record, a recompute)
/// gets a new id; the cursor names (bucket, scope value), so the next page
/// continues after the row itself and never returns it again.
async fn a_rewritten_row_is_not_served_twice(db: TestDb) {
    let app = spawn_app(db).await;
    let task =
        |id: &str, ep: &str, start: &str, end: &str| task(id, ep, 1, start, end, "COMPLETED");
    let (start, end) = ("2026-01-01T10:00:00Z", "2026-01-01T10:10:00Z");
    app.ingest(&serde_json::json!([
        task("a1", "cur-a", start, end),
        task("b1", "cur-b", start, end),
        task("c1", "cur-c", start, end),
    ]))
    .await;
    let range = "start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z";
    app.aggregate(&format!("granularity=all&{range}")).await;

    let q = format!("/hourly?scope_type=endpoint&{range}&limit=1");
    let mut page = app.get_json(&q).await;
    let mut seen = vec![page["data"][0]["scope_value"].as_str().unwrap().to_owned()];
    // The row at the cursor is rewritten before the next page is asked for.
    app.ingest(&serde_json::json!([task(
        "a2",
        "cur-a",
        "2026-01-01T10:20:00Z",
        "2026-01-01T10:30:00Z"
    )]))
    .await;
    app.aggregate(&format!("granularity=all&{range}")).await;
    while let Some(cursor) = page["next_cursor"].as_str() {
        page = app.get_json(&format!("{q}&cursor={cursor}")).await;
        for row in page["data"].as_array().unwrap() {
            seen.push(row["scope_value"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, ["cur-a", "cur-b", "cur-c"]);
    app.finish().await;
}

/// The summary's average is the exact task-weighted fraction rounded half
/// away from zero, like the rows: 199 tasks on 1 GPU and one on 2 give
/// 201/200 = 1.005 → 1.01 (floating point rounding gave 1.0).
async fn summary_average_rounds_the_exact_fraction(db: TestDb) {
    let app = spawn_app(db).await;
    let records: Vec<Value> = (0..200)
        .map(|i| {
            serde_json::json!({"task_id": format!("t{i}"), "endpoint": "ep",
                "gpu_count": if i == 0 { 2 } else { 1 },
                "started_at": "2026-01-01T10:00:00Z", "completed_at": "2026-01-01T10:00:01Z",
                "status": "COMPLETED"})
        })
        .collect();
    app.ingest(&Value::Array(records)).await;
    let range = "start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z";
    app.aggregate(&format!("granularity=all&{range}")).await;
    for level in ["minute", "hourly", "daily"] {
        let page = app.get_json(&format!("/{level}?{range}")).await;
        assert_num(&page["data"][0], "avg_gpu_count", 1.01);
        assert_num(&page["summary"], "avg_gpu_count", 1.01);
    }
    app.finish().await;
}

both_backends!(
    dashboard_hourly_numbers,
    minute_daily_and_scopes,
    records_listing,
    pagination_across_pages,
    csv_output,
    defaults_and_empty_results,
    a_rewritten_row_is_not_served_twice,
    summary_average_rounds_the_exact_fraction,
);
