//! Capacity and utilisation (docs/CAPACITY.md) through the API, as a client sees
//! it: worker sessions and heartbeats posted, statistics recomputed, and
//! every capacity figure compared with one worked out by hand.
//!
//! The fixture day, 2026-01-01 (sessions S, tasks T):
//!
//! S1 w1 ep-a a100 2 GPUs 10:00–11:00          T1 ep-a a100 1 GPU  10:15–10:45
//! S2 w2 ep-b  -   4 GPUs 10:30–11:30          T3 ep-z  -   1 GPU  12:00–12:30
//! S5 w2 ep-b  -   4 GPUs 11:30–12:00          T2 ep-c h100 4 GPUs 14:00–14:30
//! S3 w3 ep-c h100 1 GPU  14:00–15:00          T4 ep-d l4   4 GPUs 16:00–16:10
//! S4 w4 ep-d l4   2 GPUs 16:00–17:00          T6 ep-d l4   2 GPUs 16:10–16:20
//!                                             T7 ep-d l4   8 GPUs 16:30–16:30 (zero length)
//!
//! Global hours (GPU-hours; peaks in GPUs):
//!
//! hour  used      avail  util    idle      complete  peak used/avail
//! 10    0.5       4      0.125   3.5       true      1 / 6   (S1+S2 from 10:30)
//! 11    0         4      0       4         true      0 / 4   (S2 then S5: half-open)
//! 12    0.5       0      null    0         null      1 / 0   (no capacity reported)
//! 14    2         1      2       0.5       false     4 / 1   (over-used, not clamped;
//!                                                             idle in 14:30–14:59)
//! 16    1         2      0.5     1.333333  false     4 / 2   (16:00–16:09 over-used;
//!                                                             T4 ends as T6 starts;
//!                                                             T7 counts 0)
//! day   4         11     0.3636  9.333333  false     4 / 6

use chrono::TimeDelta;
use gpu_usage_core::EngineConfig;
use gpu_usage_core::capacity;
use gpu_usage_core::clock::ManualClock;
use gpu_usage_core::rollup;
use gpu_usage_core::types::Granularity;
use gpu_usage_testing::TestDb;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::support::{
    ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN, TestApp, both_backends, column, content_type,
    expect_error, hour_keys, k, keys, now, spawn_app, spawn_app_with, t, with_public_reads,
    with_tokens,
};

const DAY: &str = "start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z";

// ---------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------

/// A session as a worker reports it; `end` None = still up.
fn ses(
    worker: &str,
    ep: &str,
    spec: Option<&str>,
    gpus: i64,
    start: &str,
    end: Option<&str>,
) -> Value {
    let mut v = json!({"worker_id": worker, "endpoint": ep, "gpu_count": gpus,
        "started_at": start, "ended_at": end});
    if let Some(s) = spec {
        v["spec_name"] = s.into();
    }
    v
}

/// A heartbeat of `worker` serving `ep` with `gpus` GPUs (no spec, no type).
fn beat(worker: &str, ep: &str, gpus: i64, at: &str) -> Value {
    json!({"worker_id": worker, "endpoint": ep, "gpu_count": gpus, "at": at})
}

/// A finished task with a spec (or none).
fn job(id: &str, ep: &str, spec: Option<&str>, gpus: i64, start: &str, end: &str) -> Value {
    let mut v = json!({"task_id": id, "endpoint": ep, "gpu_count": gpus,
        "started_at": start, "completed_at": end, "status": "COMPLETED"});
    if let Some(s) = spec {
        v["spec_name"] = s.into();
    }
    v
}

/// POSTs `body` to `path` (open mode) and returns the 200 answer.
async fn post_ok(app: &TestApp, path: &str, body: &Value) -> Value {
    let res = app.post_json(path, body).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "POST {path} {body}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// `POST /workers/sessions`, checking the counts of the answer.
#[track_caller]
fn assert_session_report(
    r: &Value,
    received: u64,
    inserted: u64,
    updated: u64,
    duplicates: u64,
    conflicts: usize,
) {
    assert_eq!(r["received"], received, "received: {r}");
    assert_eq!(r["inserted"], inserted, "inserted: {r}");
    assert_eq!(r["updated"], updated, "updated: {r}");
    assert_eq!(r["duplicates"], duplicates, "duplicates: {r}");
    let c = r["conflicts"]
        .as_array()
        .unwrap_or_else(|| panic!("conflicts is not an array: {r}"));
    assert_eq!(c.len(), conflicts, "conflicts: {r}");
}

async fn sessions(app: &TestApp, body: &Value) -> Value {
    post_ok(app, "/workers/sessions", body).await
}

async fn beats(app: &TestApp, body: &Value) -> Value {
    post_ok(app, "/workers/heartbeats", body).await
}

/// What heartbeats did, as `[received, opened, extended, split, ignored]`,
/// checked against the answer, which is shaped like the other ingest
/// answers (docs/CAPACITY.md): `inserted` = sessions opened (a split opens
/// one too), `updated` = extended, `duplicates` = ignored, `split` = of
/// the inserted, those opened by a changed offer, `conflicts` = [].
#[track_caller]
fn assert_beat_report(r: &Value, [received, opened, extended, split, ignored]: [u64; 5]) {
    let got: Vec<Value> = ["received", "inserted", "updated", "duplicates", "split"]
        .iter()
        .map(|k| r[*k].clone())
        .collect();
    let want = json!([received, opened + split, extended, ignored, split]);
    assert_eq!(
        Value::Array(got),
        want,
        "[received, inserted, updated, duplicates, split]: {r}"
    );
    assert_eq!(r["conflicts"], json!([]), "{r}");
}

/// Rates are exact to their 4 decimals; hours are DECIMAL(16,6).
fn tolerance(field: &str) -> f64 {
    if field == "utilization_rate" {
        1e-9
    } else {
        5e-7
    }
}

/// Every field of `expected` in `row`: numbers as JSON numbers close to
/// them, anything else (null, booleans, strings) equal.
#[track_caller]
fn assert_fields(row: &Value, expected: &Value) {
    for (field, want) in expected.as_object().unwrap() {
        match want.as_f64() {
            Some(n) => {
                let got = &row[field];
                assert!(
                    got.is_number(),
                    "{field}: expected the number {n}, got {got} in {row}"
                );
                let x = got.as_f64().unwrap();
                assert!(
                    (x - n).abs() < tolerance(field),
                    "{field}: expected {n}, got {x} in {row}"
                );
            }
            None => assert_eq!(&row[field], want, "{field}: {row}"),
        }
    }
}

/// The capacity figures of a row (or summary) and its used GPU-hours.
fn cap(
    used: f64,
    avail: f64,
    util: Option<f64>,
    idle: f64,
    complete: Option<bool>,
    peak_in_use: i64,
    peak_available: i64,
) -> Value {
    json!({
        "total_gpu_hours": used,
        "available_gpu_hours": avail,
        "utilization_rate": util,
        "idle_gpu_hours": idle,
        "capacity_complete": complete,
        "peak_gpus_in_use": peak_in_use,
        "peak_gpus_available": peak_available,
    })
}

/// The one row of `body` for (`bucket`, `scope_value`).
#[track_caller]
fn row<'a>(body: &'a Value, bucket: &str, scope_value: Option<&str>) -> &'a Value {
    let sv = scope_value.map_or(Value::Null, Value::from);
    let hits: Vec<&Value> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["time_bucket"] == bucket && r["scope_value"] == sv)
        .collect();
    assert_eq!(hits.len(), 1, "one row for {bucket} {sv}: {body}");
    hits[0]
}

/// (worker_id, started_at, ended_at) of every listed session, in order.
fn listed(body: &Value) -> Vec<(String, String, Option<String>)> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data is not an array: {body}"))
        .iter()
        .map(|s| {
            (
                s["worker_id"].as_str().unwrap().to_owned(),
                s["started_at"].as_str().unwrap().to_owned(),
                s["ended_at"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn l(worker: &str, start: &str, end: Option<&str>) -> (String, String, Option<String>) {
    (worker.to_owned(), start.to_owned(), end.map(str::to_owned))
}

/// The one listed session of `worker` starting at `start`.
#[track_caller]
fn listed_one<'a>(body: &'a Value, worker: &str, start: &str) -> &'a Value {
    let hits: Vec<&Value> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["worker_id"] == worker && s["started_at"] == start)
        .collect();
    assert_eq!(hits.len(), 1, "one session {worker} {start}: {body}");
    hits[0]
}

// ---------------------------------------------------------------------
// the fixture day
// ---------------------------------------------------------------------

fn fixture_sessions() -> Value {
    let mut s1 = ses(
        "w1",
        "ep-a",
        Some("a100"),
        2,
        "2026-01-01T10:00:00Z",
        Some("2026-01-01T11:00:00Z"),
    );
    s1["gpu_type"] = "A100".into();
    json!([
        s1,
        // An empty spec leaves the spec scope only.
        ses(
            "w2",
            "ep-b",
            Some(""),
            4,
            "2026-01-01T10:30:00Z",
            Some("2026-01-01T11:30:00Z")
        ),
        ses(
            "w3",
            "ep-c",
            Some("h100"),
            1,
            "2026-01-01T14:00:00Z",
            Some("2026-01-01T15:00:00Z")
        ),
        ses(
            "w4",
            "ep-d",
            Some("l4"),
            2,
            "2026-01-01T16:00:00Z",
            Some("2026-01-01T17:00:00Z")
        ),
        // Same worker, starting when its previous session ends: no overlap.
        ses(
            "w2",
            "ep-b",
            None,
            4,
            "2026-01-01T11:30:00Z",
            Some("2026-01-01T12:00:00Z")
        ),
    ])
}

fn fixture_tasks() -> Value {
    json!([
        job(
            "T1",
            "ep-a",
            Some("a100"),
            1,
            "2026-01-01T10:15:00Z",
            "2026-01-01T10:45:00Z"
        ),
        job(
            "T2",
            "ep-c",
            Some("h100"),
            4,
            "2026-01-01T14:00:00Z",
            "2026-01-01T14:30:00Z"
        ),
        job(
            "T3",
            "ep-z",
            None,
            1,
            "2026-01-01T12:00:00Z",
            "2026-01-01T12:30:00Z"
        ),
        job(
            "T4",
            "ep-d",
            Some("l4"),
            4,
            "2026-01-01T16:00:00Z",
            "2026-01-01T16:10:00Z"
        ),
        job(
            "T6",
            "ep-d",
            Some("l4"),
            2,
            "2026-01-01T16:10:00Z",
            "2026-01-01T16:20:00Z"
        ),
        job(
            "T7",
            "ep-d",
            Some("l4"),
            8,
            "2026-01-01T16:30:00Z",
            "2026-01-01T16:30:00Z"
        ),
    ])
}

/// The app with the fixture day's sessions and tasks posted and every
/// level recomputed over the day.
async fn spawn_with_fixture_day(db: TestDb) -> TestApp {
    let app = spawn_app(db).await;
    let r = sessions(&app, &fixture_sessions()).await;
    assert_session_report(&r, 5, 5, 0, 0, 0);
    app.ingest(&fixture_tasks()).await;
    app.aggregate(&format!("granularity=all&{DAY}")).await;
    app
}

// ---------------------------------------------------------------------
// figures by hand
// ---------------------------------------------------------------------

async fn hourly_daily_and_summary_figures(db: TestDb) {
    let app = spawn_with_fixture_day(db).await;
    global_hours(&app).await;
    endpoint_and_spec_hours(&app).await;
    daily_rows(&app).await;
    minute_rows(&app).await;
    app.finish().await;
}

async fn global_hours(app: &TestApp) {
    let body = app
        .get_json(&format!("/hourly?scope_type=global&{DAY}"))
        .await;
    assert_eq!(
        column(&body["data"], "time_bucket", Value::as_str),
        [
            "2026-01-01T10:00:00Z",
            "2026-01-01T11:00:00Z",
            "2026-01-01T12:00:00Z",
            "2026-01-01T14:00:00Z",
            "2026-01-01T16:00:00Z",
        ],
        "a row wherever a session adds capacity or a task GPU time: {body}"
    );
    let rows = body["data"].as_array().unwrap();
    let expected = [
        cap(0.5, 4.0, Some(0.125), 3.5, Some(true), 1, 6),
        cap(0.0, 4.0, Some(0.0), 4.0, Some(true), 0, 4),
        cap(0.5, 0.0, None, 0.0, None, 1, 0),
        cap(2.0, 1.0, Some(2.0), 0.5, Some(false), 4, 1),
        cap(1.0, 2.0, Some(0.5), 1.333333, Some(false), 4, 2),
    ];
    for (r, want) in rows.iter().zip(&expected) {
        assert_fields(r, want);
    }
    // Hour 16: three completions; the zero-length 8-GPU task is the largest
    // task but uses no GPU at any instant.
    assert_fields(&rows[4], &json!({"total_tasks": 3, "max_gpu_count": 8}));
    let summary = cap(4.0, 11.0, Some(0.3636), 9.333333, Some(false), 4, 6);
    assert_fields(&body["summary"], &summary);

    // A range with one flag true and one NULL: the AND of the non-null ones.
    let morning = app
        .get_json("/hourly?start_time=2026-01-01T10:00:00Z&end_time=2026-01-01T13:00:00Z")
        .await;
    assert_eq!(morning["total"], 3, "{morning}");
    assert_fields(
        &morning["summary"],
        &cap(1.0, 8.0, Some(0.125), 7.5, Some(true), 1, 6),
    );
    // Nothing available in the range: no rate, no verdict.
    let noon = app
        .get_json("/hourly?start_time=2026-01-01T12:00:00Z&end_time=2026-01-01T13:00:00Z")
        .await;
    assert_fields(&noon["summary"], &cap(0.5, 0.0, None, 0.0, None, 1, 0));
}

async fn endpoint_and_spec_hours(app: &TestApp) {
    let eps = app
        .get_json(&format!("/hourly?scope_type=endpoint&{DAY}"))
        .await;
    assert_eq!(
        keys(&eps),
        hour_keys(
            "2026-01-01",
            &[
                (10, "ep-a"),
                (10, "ep-b"),
                (11, "ep-b"),
                (12, "ep-z"),
                (14, "ep-c"),
                (16, "ep-d")
            ]
        )
    );
    // 2 GPUs for exactly one hour, a 1-GPU task of 30 minutes inside it.
    let a = row(&eps, "2026-01-01T10:00:00Z", Some("ep-a"));
    assert_fields(a, &cap(0.5, 2.0, Some(0.25), 1.5, Some(true), 1, 2));
    // Capacity without any task: a row of its own, fully idle.
    let b10 = row(&eps, "2026-01-01T10:00:00Z", Some("ep-b"));
    assert_fields(b10, &cap(0.0, 2.0, Some(0.0), 2.0, Some(true), 0, 4));
    assert_fields(b10, &json!({"total_tasks": 0}));
    let b11 = row(&eps, "2026-01-01T11:00:00Z", Some("ep-b"));
    assert_fields(b11, &cap(0.0, 4.0, Some(0.0), 4.0, Some(true), 0, 4));
    let z = row(&eps, "2026-01-01T12:00:00Z", Some("ep-z"));
    assert_fields(z, &cap(0.5, 0.0, None, 0.0, None, 1, 0));

    let one = app
        .get_json(&format!(
            "/hourly?scope_type=endpoint&scope_value=ep-a&{DAY}"
        ))
        .await;
    assert_eq!(one["total"], 1, "{one}");
    assert_fields(
        &one["summary"],
        &cap(0.5, 2.0, Some(0.25), 1.5, Some(true), 1, 2),
    );

    // Sessions with no spec are left out of the spec scope: no row for
    // hour 11, which only w2 (no spec) covers.
    let specs = app
        .get_json(&format!("/hourly?scope_type=spec&{DAY}"))
        .await;
    assert_eq!(
        keys(&specs),
        hour_keys("2026-01-01", &[(10, "a100"), (14, "h100"), (16, "l4")])
    );
    let a100 = row(&specs, "2026-01-01T10:00:00Z", Some("a100"));
    assert_fields(a100, &cap(0.5, 2.0, Some(0.25), 1.5, Some(true), 1, 2));
    let h100 = row(&specs, "2026-01-01T14:00:00Z", Some("h100"));
    assert_fields(h100, &cap(2.0, 1.0, Some(2.0), 0.5, Some(false), 4, 1));
    assert_fields(
        &specs["summary"],
        &cap(3.5, 5.0, Some(0.7), 3.333333, Some(false), 4, 2),
    );
}

async fn daily_rows(app: &TestApp) {
    let global = app.get_json(&format!("/daily?{DAY}")).await;
    assert_eq!(global["total"], 1, "{global}");
    let day = &global["data"][0];
    assert_eq!(day["time_bucket"], "2026-01-01T00:00:00Z");
    assert_fields(
        day,
        &cap(4.0, 11.0, Some(0.3636), 9.333333, Some(false), 4, 6),
    );
    assert_fields(day, &json!({"total_tasks": 6}));
    assert_fields(
        &global["summary"],
        &cap(4.0, 11.0, Some(0.3636), 9.333333, Some(false), 4, 6),
    );

    let eps = app
        .get_json(&format!("/daily?scope_type=endpoint&{DAY}"))
        .await;
    assert_eq!(eps["total"], 5, "{eps}");
    let d = "2026-01-01T00:00:00Z";
    let expected = [
        ("ep-a", cap(0.5, 2.0, Some(0.25), 1.5, Some(true), 1, 2)),
        ("ep-b", cap(0.0, 6.0, Some(0.0), 6.0, Some(true), 0, 4)),
        ("ep-c", cap(2.0, 1.0, Some(2.0), 0.5, Some(false), 4, 1)),
        (
            "ep-d",
            cap(1.0, 2.0, Some(0.5), 1.333333, Some(false), 4, 2),
        ),
        ("ep-z", cap(0.5, 0.0, None, 0.0, None, 1, 0)),
    ];
    for (ep, want) in &expected {
        assert_fields(row(&eps, d, Some(ep)), want);
    }

    let specs = app.get_json(&format!("/daily?scope_type=spec&{DAY}")).await;
    assert_eq!(specs["total"], 3, "{specs}");
    assert_fields(
        row(&specs, d, Some("l4")),
        &cap(1.0, 2.0, Some(0.5), 1.333333, Some(false), 4, 2),
    );
    assert_fields(
        &specs["summary"],
        &cap(3.5, 5.0, Some(0.7), 3.333333, Some(false), 4, 2),
    );
}

/// Minute rows, one minute at a time.
async fn minute(app: &TestApp, at: &str) -> Value {
    let end = (t(at) + TimeDelta::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = app
        .get_json(&format!("/minute?start_time={at}&end_time={end}"))
        .await;
    assert_eq!(body["total"], 1, "one global row at {at}: {body}");
    body["data"][0].clone()
}

/// (minute, used GPU-s, available GPU-s, util, idle GPU-h, complete, peak
/// used, peak available)
type MinuteCase = (
    &'static str,
    f64,
    f64,
    Option<f64>,
    f64,
    Option<bool>,
    i64,
    i64,
);

async fn minute_rows(app: &TestApp) {
    // (minute, used GPU-s, available GPU-s, util, idle GPU-h, complete,
    //  peak used, peak available)
    let cases: [MinuteCase; 7] = [
        (
            "2026-01-01T10:00:00Z",
            0.0,
            120.0,
            Some(0.0),
            0.033333,
            Some(true),
            0,
            2,
        ),
        (
            "2026-01-01T10:30:00Z",
            60.0,
            360.0,
            Some(0.1667),
            0.083333,
            Some(true),
            1,
            6,
        ),
        ("2026-01-01T12:00:00Z", 60.0, 0.0, None, 0.0, None, 1, 0),
        (
            "2026-01-01T14:00:00Z",
            240.0,
            60.0,
            Some(4.0),
            0.0,
            Some(false),
            4,
            1,
        ),
        (
            "2026-01-01T14:30:00Z",
            0.0,
            60.0,
            Some(0.0),
            0.016667,
            Some(true),
            0,
            1,
        ),
        // T4 ends at 16:10 exactly as T6 starts: 2 GPUs at once, not 6;
        // used = available is complete.
        (
            "2026-01-01T16:10:00Z",
            120.0,
            120.0,
            Some(1.0),
            0.0,
            Some(true),
            2,
            2,
        ),
        (
            "2026-01-01T16:30:00Z",
            0.0,
            120.0,
            Some(0.0),
            0.033333,
            Some(true),
            0,
            2,
        ),
    ];
    for (at, used, avail, util, idle, complete, peak_used, peak_avail) in cases {
        let r = minute(app, at).await;
        let mut want = cap(
            used / 3600.0,
            avail / 3600.0,
            util,
            idle,
            complete,
            peak_used,
            peak_avail,
        );
        want["total_gpu_seconds"] = used.into();
        want["available_gpu_seconds"] = avail.into();
        assert_fields(&r, &want);
    }
    // Minute summaries: idle summed minute by minute, over-use flagged.
    for (range, want) in [
        (
            "start_time=2026-01-01T14:00:00Z&end_time=2026-01-01T15:00:00Z",
            cap(2.0, 1.0, Some(2.0), 0.5, Some(false), 4, 1),
        ),
        (
            "start_time=2026-01-01T16:00:00Z&end_time=2026-01-01T17:00:00Z",
            cap(1.0, 2.0, Some(0.5), 1.333333, Some(false), 4, 2),
        ),
        (
            "start_time=2026-01-01T16:10:00Z&end_time=2026-01-01T17:00:00Z",
            cap(0.333333, 1.666667, Some(0.2), 1.333333, Some(true), 2, 2),
        ),
    ] {
        let body = app.get_json(&format!("/minute?{range}")).await;
        assert_fields(&body["summary"], &want);
    }
    // The zero-length task completes in 16:30 with 8 GPUs and uses none.
    let r = minute(app, "2026-01-01T16:30:00Z").await;
    assert_fields(&r, &json!({"total_tasks": 1, "max_gpu_count": 8}));
}

/// Utilisation is rounded once, half away from zero, to 4 decimals from
/// the exact sums: 0.00015 → 0.0002 and 0.00025 → 0.0003 (a binary
/// float rounds the first down, half-to-even rounds the second down).
async fn utilisation_rounds_half_away_from_zero(db: TestDb) {
    let app = spawn_app(db).await;
    let r = sessions(
        &app,
        &json!([
            ses(
                "r1",
                "ep-r1",
                None,
                1,
                "2026-01-01T08:00:00Z",
                Some("2026-01-01T09:00:00Z")
            ),
            ses(
                "r2",
                "ep-r2",
                None,
                1,
                "2026-01-01T08:00:00Z",
                Some("2026-01-01T09:00:00Z")
            ),
        ]),
    )
    .await;
    assert_session_report(&r, 2, 2, 0, 0, 0);
    app.ingest(&json!([
        job(
            "u1",
            "ep-r1",
            None,
            1,
            "2026-01-01T08:00:00.000Z",
            "2026-01-01T08:00:00.540Z"
        ),
        job(
            "u2",
            "ep-r2",
            None,
            1,
            "2026-01-01T08:00:00.000Z",
            "2026-01-01T08:00:00.900Z"
        ),
    ]))
    .await;
    app.aggregate(&format!("granularity=all&{DAY}")).await;
    let hours = app
        .get_json(&format!("/hourly?scope_type=endpoint&{DAY}"))
        .await;
    let h = "2026-01-01T08:00:00Z";
    assert_fields(
        row(&hours, h, Some("ep-r1")),
        &json!({"available_gpu_hours": 1, "total_gpu_hours": 0.00015, "utilization_rate": 0.0002}),
    );
    assert_fields(
        row(&hours, h, Some("ep-r2")),
        &json!({"available_gpu_hours": 1, "total_gpu_hours": 0.00025, "utilization_rate": 0.0003}),
    );
    let days = app
        .get_json(&format!(
            "/daily?scope_type=endpoint&scope_value=ep-r2&{DAY}"
        ))
        .await;
    assert_fields(&days["data"][0], &json!({"utilization_rate": 0.0003}));
    assert_fields(&days["summary"], &json!({"utilization_rate": 0.0003}));
    // Global: 1.44 s of 7200 s = 0.0002 exactly.
    let global = app.get_json(&format!("/hourly?{DAY}")).await;
    assert_fields(&global["data"][0], &json!({"utilization_rate": 0.0002}));
    app.finish().await;
}

/// Hours are rounded once from the exact GPU-milliseconds: three hours of
/// 20 minutes at 1 GPU are 0.333333 each and exactly 1 together.
async fn hours_are_rounded_once_from_exact_sums(db: TestDb) {
    let app = spawn_app(db).await;
    let mut batch = Vec::new();
    let mut tasks = Vec::new();
    for h in 1..=3 {
        let at = |m: u32| format!("2026-01-01T{h:02}:{m:02}:00Z");
        batch.push(ses("wr", "ep-r", None, 1, &at(0), Some(&at(20))));
        tasks.push(job(&format!("r{h}"), "ep-r", None, 1, &at(5), &at(15)));
    }
    let r = sessions(&app, &Value::Array(batch)).await;
    assert_session_report(&r, 3, 3, 0, 0, 0);
    app.ingest(&Value::Array(tasks)).await;
    app.aggregate(&format!("granularity=all&{DAY}")).await;
    let hours = app.get_json(&format!("/hourly?{DAY}")).await;
    assert_eq!(hours["total"], 3, "{hours}");
    for r in hours["data"].as_array().unwrap() {
        assert_fields(
            r,
            &cap(0.166667, 0.333333, Some(0.5), 0.166667, Some(true), 1, 1),
        );
    }
    let whole = cap(0.5, 1.0, Some(0.5), 0.5, Some(true), 1, 1);
    assert_fields(&hours["summary"], &whole);
    let days = app.get_json(&format!("/daily?{DAY}")).await;
    assert_fields(&days["data"][0], &whole);
    assert_fields(&days["summary"], &whole);
    let minutes = app.get_json(&format!("/minute?{DAY}")).await;
    assert_fields(&minutes["summary"], &whole);
    app.finish().await;
}

/// The CSV of hourly rows carries the capacity columns with the same
/// figures; NULL is an empty cell.
async fn hourly_csv_has_capacity_columns(db: TestDb) {
    let app = spawn_with_fixture_day(db).await;
    let res = app
        .get(&format!("/hourly?scope_type=endpoint&{DAY}&format=csv"))
        .await;
    assert_eq!(res.status(), 200);
    assert!(content_type(&res).starts_with("text/csv"));
    let text = res.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    for c in [
        "available_gpu_hours",
        "utilization_rate",
        "idle_gpu_hours",
        "capacity_complete",
        "peak_gpus_in_use",
        "peak_gpus_available",
    ] {
        assert!(header.contains(&c), "column {c} missing: {}", lines[0]);
    }
    assert_eq!(lines.len(), 7, "header and six rows: {text}");
    let cells = |bucket: &str, ep: &str| -> std::collections::HashMap<String, String> {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{bucket},endpoint,{ep},")))
            .unwrap_or_else(|| panic!("no CSV row {bucket} {ep}: {text}"));
        let values: Vec<&str> = line.split(',').collect();
        assert_eq!(values.len(), header.len(), "{line}");
        header
            .iter()
            .zip(values)
            .map(|(h, v)| ((*h).to_owned(), v.to_owned()))
            .collect()
    };
    let num = |v: &str| {
        v.parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {v:?}"))
    };
    let a = cells("2026-01-01T10:00:00Z", "ep-a");
    assert!((num(&a["available_gpu_hours"]) - 2.0).abs() < 1e-9, "{a:?}");
    assert!((num(&a["utilization_rate"]) - 0.25).abs() < 1e-9, "{a:?}");
    assert!((num(&a["idle_gpu_hours"]) - 1.5).abs() < 1e-9, "{a:?}");
    assert_eq!(a["capacity_complete"], "true", "{a:?}");
    assert_eq!(a["peak_gpus_in_use"], "1", "{a:?}");
    assert_eq!(a["peak_gpus_available"], "2", "{a:?}");
    let c = cells("2026-01-01T14:00:00Z", "ep-c");
    assert!((num(&c["utilization_rate"]) - 2.0).abs() < 1e-9, "{c:?}");
    assert_eq!(c["capacity_complete"], "false", "{c:?}");
    let z = cells("2026-01-01T12:00:00Z", "ep-z");
    assert!(num(&z["available_gpu_hours"]).abs() < 1e-9, "{z:?}");
    assert_eq!(z["utilization_rate"], "", "{z:?}");
    assert_eq!(z["capacity_complete"], "", "{z:?}");

    let minute = app
        .get("/minute?start_time=2026-01-01T10:30:00Z&end_time=2026-01-01T10:31:00Z&format=csv")
        .await;
    let text = minute.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let at = header
        .iter()
        .position(|h| *h == "available_gpu_seconds")
        .unwrap_or_else(|| panic!("no available_gpu_seconds: {}", lines[0]));
    let values: Vec<&str> = lines[1].split(',').collect();
    assert!((num(values[at]) - 360.0).abs() < 1e-9, "{text}");
    app.finish().await;
}

// ---------------------------------------------------------------------
// session reports
// ---------------------------------------------------------------------

const TODAY: &str = "start_time=2026-01-02T00:00:00Z&end_time=2026-01-02T12:00:00Z";
/// Today up to a little after now: sessions starting at now are in it.
const SOON: &str = "start_time=2026-01-02T00:00:00Z&end_time=2026-01-02T12:10:00Z";

async fn list_today(app: &TestApp) -> Value {
    app.get_json(&format!("/workers/sessions?{TODAY}")).await
}

fn session_a(end: Option<&str>) -> Value {
    ses("w1", "ep-a", Some("a100"), 2, "2026-01-02T08:00:00Z", end)
}

async fn replays_updates_conflicts_and_overlaps(db: TestDb) {
    let app = spawn_app(db).await;
    let b_open = ses("w2", "ep-b", None, 1, "2026-01-02T10:00:00Z", None);
    let r = sessions(
        &app,
        &json!([session_a(Some("2026-01-02T09:00:00Z")), b_open]),
    )
    .await;
    assert_session_report(&r, 2, 2, 0, 0, 0);

    // A replay, also with the same instant in another offset.
    let r = sessions(&app, &session_a(Some("2026-01-02T09:00:00Z"))).await;
    assert_session_report(&r, 1, 0, 0, 1, 0);
    let mut offset = session_a(Some("2026-01-02T11:00:00+02:00"));
    offset["started_at"] = "2026-01-02T10:00:00+02:00".into();
    let r = sessions(&app, &offset).await;
    assert_session_report(&r, 1, 0, 0, 1, 0);

    // ended_at moved later: an update.
    let r = sessions(&app, &session_a(Some("2026-01-02T09:30:00Z"))).await;
    assert_session_report(&r, 1, 0, 1, 0, 0);
    // ...and never cleared by a report without it.
    let r = sessions(&app, &session_a(None)).await;
    assert_eq!(r["inserted"], 0, "{r}");
    assert_eq!(r["updated"], 0, "{r}");
    let list = list_today(&app).await;
    let a = listed_one(&list, "w1", "2026-01-02T08:00:00Z");
    assert_eq!(a["ended_at"], "2026-01-02T09:30:00Z", "{a}");
    assert_eq!(a["counted_until"], "2026-01-02T09:30:00Z", "{a}");

    other_values_conflict(&app).await;
    overlaps_conflict(&app).await;

    // The open session gets its end: an update.
    let r = sessions(
        &app,
        &ses(
            "w2",
            "ep-b",
            None,
            1,
            "2026-01-02T10:00:00Z",
            Some("2026-01-02T11:00:00Z"),
        ),
    )
    .await;
    assert_session_report(&r, 1, 0, 1, 0, 0);

    mixed_batch(&app).await;
    app.finish().await;
}

/// A known (worker, start) with other values: a conflict naming the
/// fields, the stored session kept.
async fn other_values_conflict(app: &TestApp) {
    let mut more_gpus = session_a(Some("2026-01-02T09:30:00Z"));
    more_gpus["gpu_count"] = 4.into();
    let r = sessions(app, &more_gpus).await;
    assert_session_report(&r, 1, 0, 0, 0, 1);
    let c = &r["conflicts"][0];
    assert_eq!(c["index"], 0, "{c}");
    assert_eq!(c["worker_id"], "w1", "{c}");
    assert_eq!(c["started_at"], "2026-01-02T08:00:00Z", "{c}");
    assert_eq!(c["fields"], json!(["gpu_count"]), "{c}");
    assert!(c["reason"].as_str().is_some_and(|s| !s.is_empty()), "{c}");

    let mut elsewhere = session_a(Some("2026-01-02T09:30:00Z"));
    elsewhere["endpoint"] = "ep-x".into();
    elsewhere["spec_name"] = "h100".into();
    let r = sessions(app, &elsewhere).await;
    assert_session_report(&r, 1, 0, 0, 0, 1);
    let fields: Vec<&str> = r["conflicts"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"endpoint") && fields.contains(&"spec_name"),
        "{r}"
    );

    let list = list_today(app).await;
    let a = listed_one(&list, "w1", "2026-01-02T08:00:00Z");
    assert_eq!(
        (&a["gpu_count"], &a["endpoint"], &a["spec_name"]),
        (&json!(2), &json!("ep-a"), &json!("a100")),
        "the stored session is kept: {a}"
    );
}

/// Sessions of one worker never overlap; half-open intervals that touch
/// do not.
async fn overlaps_conflict(app: &TestApp) {
    // A (08:00–09:30) is stored for w1.
    for (i, overlapping) in [
        ses(
            "w1",
            "ep-a",
            Some("a100"),
            2,
            "2026-01-02T09:00:00Z",
            Some("2026-01-02T10:00:00Z"),
        ),
        ses(
            "w1",
            "ep-a",
            Some("a100"),
            2,
            "2026-01-02T07:00:00Z",
            Some("2026-01-02T08:30:00Z"),
        ),
        ses(
            "w1",
            "ep-a",
            Some("a100"),
            2,
            "2026-01-02T07:00:00Z",
            Some("2026-01-02T10:00:00Z"),
        ),
        ses("w1", "ep-q", None, 1, "2026-01-02T08:30:00Z", None),
    ]
    .into_iter()
    .enumerate()
    {
        let r = sessions(app, &overlapping).await;
        assert_session_report(&r, 1, 0, 0, 0, 1);
        let c = &r["conflicts"][0];
        assert_eq!(c["worker_id"], "w1", "case {i}: {c}");
        assert_eq!(c["started_at"], overlapping["started_at"], "case {i}: {c}");
        assert!(c["reason"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
    }
    // Another worker may run at the same time.
    let r = sessions(
        app,
        &ses(
            "w9",
            "ep-a",
            Some("a100"),
            2,
            "2026-01-02T08:30:00Z",
            Some("2026-01-02T09:00:00Z"),
        ),
    )
    .await;
    assert_session_report(&r, 1, 1, 0, 0, 0);
    // Starting where A ends does not overlap it.
    let e = ses(
        "w1",
        "ep-a",
        Some("a100"),
        2,
        "2026-01-02T09:30:00Z",
        Some("2026-01-02T10:30:00Z"),
    );
    let r = sessions(app, &e).await;
    assert_session_report(&r, 1, 1, 0, 0, 0);
    // Moving A's end into E is an overlap: refused, A keeps 09:30.
    let r = sessions(app, &session_a(Some("2026-01-02T10:00:00Z"))).await;
    assert_session_report(&r, 1, 0, 0, 0, 1);

    let list = app
        .get_json(&format!("/workers/sessions?{TODAY}&worker_id=w1"))
        .await;
    assert_eq!(
        listed(&list),
        vec![
            l("w1", "2026-01-02T08:00:00Z", Some("2026-01-02T09:30:00Z")),
            l("w1", "2026-01-02T09:30:00Z", Some("2026-01-02T10:30:00Z")),
        ]
    );
}

/// One batch mixing every outcome: counts and conflict positions.
async fn mixed_batch(app: &TestApp) {
    let mut conflicting = session_a(Some("2026-01-02T09:30:00Z"));
    conflicting["gpu_count"] = 3.into();
    let batch = json!([
        session_a(Some("2026-01-02T09:30:00Z")),
        ses(
            "w3",
            "ep-c",
            None,
            8,
            "2026-01-02T07:00:00Z",
            Some("2026-01-02T08:00:00Z")
        ),
        conflicting,
        ses(
            "w1",
            "ep-a",
            Some("a100"),
            2,
            "2026-01-02T10:00:00Z",
            Some("2026-01-02T10:15:00Z")
        ),
        ses(
            "w2",
            "ep-b",
            None,
            1,
            "2026-01-02T10:00:00Z",
            Some("2026-01-02T11:00:00Z")
        ),
    ]);
    let r = sessions(app, &batch).await;
    assert_session_report(&r, 5, 1, 0, 2, 2);
    assert_eq!(
        column(&r["conflicts"], "index", Value::as_u64),
        [2, 3],
        "{r}"
    );
    assert_eq!(
        column(&r["conflicts"], "started_at", Value::as_str),
        ["2026-01-02T08:00:00Z", "2026-01-02T10:00:00Z"],
        "{r}"
    );

    let list = list_today(app).await;
    assert_eq!(list["total"], 5, "{list}");
    assert_eq!(
        listed(&list),
        vec![
            l("w3", "2026-01-02T07:00:00Z", Some("2026-01-02T08:00:00Z")),
            l("w1", "2026-01-02T08:00:00Z", Some("2026-01-02T09:30:00Z")),
            l("w9", "2026-01-02T08:30:00Z", Some("2026-01-02T09:00:00Z")),
            l("w1", "2026-01-02T09:30:00Z", Some("2026-01-02T10:30:00Z")),
            l("w2", "2026-01-02T10:00:00Z", Some("2026-01-02T11:00:00Z")),
        ]
    );
}

// ---------------------------------------------------------------------
// validation
// ---------------------------------------------------------------------

/// (index → field) of every problem, checking the problem shape.
#[track_caller]
fn problems(body: &Value) -> Vec<(u64, String)> {
    body["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems array: {body}"))
        .iter()
        .map(|p| {
            assert!(p["task_id"].is_null(), "task_id is null for sessions: {p}");
            assert!(
                p["message"].as_str().is_some_and(|m| !m.is_empty()),
                "a message: {p}"
            );
            (
                p["index"].as_u64().unwrap(),
                p["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn invalid_reports_are_refused_whole(db: TestDb) {
    let app = spawn_app(db).await;
    invalid_sessions(&app).await;
    invalid_heartbeats(&app).await;
    not_batches(&app).await;

    // None of it was stored: not even the valid first items.
    app.assert_nothing_listed(
        "/workers/sessions?start_time=2025-01-01T00:00:00Z&end_time=2026-01-02T12:05:00Z",
    )
    .await;

    // The limits themselves are accepted.
    let r = sessions(
        &app,
        &json!([
            ses(
                &"x".repeat(255),
                "ep",
                None,
                1024,
                "2026-01-02T11:00:00Z",
                None
            ),
            ses(
                "zero",
                "ep",
                None,
                0,
                "2026-01-02T11:00:00Z",
                Some("2026-01-02T11:00:00Z")
            ),
            // Exactly the 300 s of clock skew ahead of now.
            ses("ahead", "ep", None, 1, "2026-01-02T12:05:00Z", None),
        ]),
    )
    .await;
    assert_session_report(&r, 3, 3, 0, 0, 0);
    let r = beats(&app, &beat("hb-ahead", "ep", 1, "2026-01-02T12:05:00Z")).await;
    assert_beat_report(&r, [1, 1, 0, 0, 0]);
    app.finish().await;
}

async fn invalid_sessions(app: &TestApp) {
    let good = || {
        ses(
            "v",
            "ep",
            None,
            1,
            "2026-01-02T08:00:00Z",
            Some("2026-01-02T09:00:00Z"),
        )
    };
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut no_worker = good();
    no_worker.as_object_mut().unwrap().remove("worker_id");
    cases.push((no_worker, "worker_id"));
    let mut long_worker = good();
    long_worker["worker_id"] = "x".repeat(256).into();
    cases.push((long_worker, "worker_id"));
    let mut empty_worker = good();
    empty_worker["worker_id"] = "".into();
    cases.push((empty_worker, "worker_id"));
    let mut no_endpoint = good();
    no_endpoint.as_object_mut().unwrap().remove("endpoint");
    cases.push((no_endpoint, "endpoint"));
    let mut too_many = good();
    too_many["gpu_count"] = 1025.into();
    cases.push((too_many, "gpu_count"));
    let mut negative = good();
    negative["gpu_count"] = (-1).into();
    cases.push((negative, "gpu_count"));
    let mut no_gpus = good();
    no_gpus.as_object_mut().unwrap().remove("gpu_count");
    cases.push((no_gpus, "gpu_count"));
    let mut no_start = good();
    no_start.as_object_mut().unwrap().remove("started_at");
    cases.push((no_start, "started_at"));
    let mut no_offset = good();
    no_offset["started_at"] = "2026-01-02T08:00:00".into();
    cases.push((no_offset, "started_at"));
    let mut backwards = good();
    backwards["ended_at"] = "2026-01-02T07:59:59Z".into();
    cases.push((backwards, "ended_at"));
    let future_open = ses("v", "ep", None, 1, "2026-01-02T12:05:01Z", None);
    cases.push((future_open, "started_at"));
    let mut future_end = good();
    future_end["ended_at"] = "2026-01-02T12:10:00Z".into();
    cases.push((future_end, "ended_at"));
    // Ended before the 90-day record retention: the rollups could not
    // rebuild it.
    let ancient = ses(
        "v",
        "ep",
        None,
        1,
        "2025-09-01T00:00:00Z",
        Some("2025-09-01T01:00:00Z"),
    );
    cases.push((ancient, "ended_at"));

    let mut batch = vec![good()];
    batch.extend(cases.iter().map(|(v, _)| v.clone()));
    let res = app
        .post_json("/workers/sessions", &Value::Array(batch))
        .await;
    let body = expect_error(res, 422, "invalid_sessions").await;
    let got = problems(&body);
    assert!(
        !got.iter().any(|(i, _)| *i == 0),
        "the valid item has no problem: {body}"
    );
    for (n, (_, field)) in cases.iter().enumerate() {
        let index = n as u64 + 1;
        assert!(
            got.contains(&(index, (*field).to_owned())),
            "item {index} should have a problem with {field}: {body}"
        );
    }
    // Problems carry the worker when it is known.
    let by_index = |i: u64| {
        body["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["index"] == i)
            .unwrap()
            .clone()
    };
    assert_eq!(by_index(5)["worker_id"], "v", "{body}");
}

async fn invalid_heartbeats(app: &TestApp) {
    let good = || beat("h", "ep", 1, "2026-01-02T11:00:00Z");
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut no_at = good();
    no_at.as_object_mut().unwrap().remove("at");
    cases.push((no_at, "at"));
    let mut bad_at = good();
    bad_at["at"] = "yesterday".into();
    cases.push((bad_at, "at"));
    let mut future = good();
    future["at"] = "2026-01-02T12:05:01Z".into();
    cases.push((future, "at"));
    let mut ancient = good();
    ancient["at"] = "2025-09-01T00:00:00Z".into();
    cases.push((ancient, "at"));
    let mut no_worker = good();
    no_worker.as_object_mut().unwrap().remove("worker_id");
    cases.push((no_worker, "worker_id"));
    let mut no_endpoint = good();
    no_endpoint["endpoint"] = Value::Null;
    cases.push((no_endpoint, "endpoint"));
    let mut too_many = good();
    too_many["gpu_count"] = 2000.into();
    cases.push((too_many, "gpu_count"));
    let mut text_count = good();
    text_count["gpu_count"] = "two".into();
    cases.push((text_count, "gpu_count"));

    let mut batch = vec![good()];
    batch.extend(cases.iter().map(|(v, _)| v.clone()));
    let res = app
        .post_json("/workers/heartbeats", &Value::Array(batch))
        .await;
    let body = expect_error(res, 422, "invalid_heartbeats").await;
    let got = problems(&body);
    assert!(!got.iter().any(|(i, _)| *i == 0), "{body}");
    for (n, (_, field)) in cases.iter().enumerate() {
        let index = n as u64 + 1;
        assert!(
            got.contains(&(index, (*field).to_owned())),
            "heartbeat {index} should have a problem with {field}: {body}"
        );
    }
}

/// Bodies that are no batch at all: a 400 naming the body.
async fn not_batches(app: &TestApp) {
    let json = Some("application/json");
    for path in ["/workers/sessions", "/workers/heartbeats"] {
        for body in ["[]", "42", "null", "{\"worker_id\": "] {
            let res = app.post_raw(path, body, json).await;
            expect_error(res, 400, "invalid_body").await;
        }
        let res = app.post_raw(path, "{}", Some("text/plain")).await;
        expect_error(res, 415, "unsupported_media_type").await;
    }
}

// ---------------------------------------------------------------------
// roles
// ---------------------------------------------------------------------

async fn roles_for_capacity_endpoints(db: TestDb) {
    let app = spawn_app_with(db, |s, _| with_tokens(s)).await;
    let session = ses(
        "w-auth",
        "ep",
        None,
        1,
        "2026-01-02T10:00:00Z",
        Some("2026-01-02T11:00:00Z"),
    );
    let hb = beat("hb-auth", "ep", 1, "2026-01-02T11:00:00Z");
    for (path, body) in [
        ("/workers/sessions", &session),
        ("/workers/heartbeats", &hb),
    ] {
        let post = |token| app.send(Method::POST, path, token, Some(body));
        expect_error(post(None).await, 401, "unauthorized").await;
        expect_error(post(Some("wrong")).await, 401, "unauthorized").await;
        expect_error(post(Some(READ_TOKEN)).await, 403, "forbidden").await;
        let res = post(Some(INGEST_TOKEN)).await;
        assert_eq!(res.status(), 200, "{path} with the ingest token");
        let res = post(Some(ADMIN_TOKEN)).await;
        assert_eq!(res.status(), 200, "{path} with the admin token");
    }
    // The ingest token stored the session, the admin one replayed it; the
    // refused attempts stored nothing.
    let second = app
        .send(
            Method::POST,
            "/workers/sessions",
            Some(INGEST_TOKEN),
            Some(&session),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_session_report(&second, 1, 0, 0, 1, 0);

    // Reads need a token here (public_reads = false), any role's.
    let path = format!("/workers/sessions?{TODAY}");
    let res = app.send(Method::GET, &path, None, None).await;
    expect_error(res, 401, "unauthorized").await;
    for token in [READ_TOKEN, INGEST_TOKEN, ADMIN_TOKEN] {
        let res = app.send(Method::GET, &path, Some(token), None).await;
        assert_eq!(res.status(), 200, "GET with a token");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["total"], 2, "{body}");
    }
    app.finish().await;
}

async fn public_reads_of_sessions(db: TestDb) {
    let app = spawn_app_with(db, |s, _| with_public_reads(s)).await;
    assert_eq!(app.get("/workers/sessions").await.status(), 200);
    let res = app
        .send(Method::GET, "/workers/sessions", Some("nope"), None)
        .await;
    expect_error(res, 401, "unauthorized").await;
    let session = ses("w", "ep", None, 1, "2026-01-02T10:00:00Z", None);
    expect_error(
        app.post_json("/workers/sessions", &session).await,
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        app.post_json(
            "/workers/heartbeats",
            &beat("w", "ep", 1, "2026-01-02T11:00:00Z"),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    app.assert_nothing_listed("/workers/sessions").await;
    app.finish().await;
}

// ---------------------------------------------------------------------
// listing
// ---------------------------------------------------------------------

async fn session_listing_filters_and_pages(db: TestDb) {
    let app = spawn_app(db).await;
    let mut p1 = ses(
        "w1",
        "ep-a",
        Some("a100"),
        1,
        "2026-01-02T06:00:00Z",
        Some("2026-01-02T07:00:00Z"),
    );
    p1["gpu_type"] = "A100".into();
    let r = sessions(
        &app,
        &json!([
            p1,
            ses(
                "w2",
                "ep-a",
                Some("h100"),
                2,
                "2026-01-02T06:30:00Z",
                Some("2026-01-02T08:00:00Z")
            ),
            ses("w3", "ep-b", Some("a100"), 1, "2026-01-02T07:00:00Z", None),
            ses(
                "w1",
                "ep-b",
                None,
                4,
                "2026-01-02T08:00:00Z",
                Some("2026-01-02T09:00:00Z")
            ),
            ses("w4", "ep-a", Some("a100"), 8, "2026-01-02T09:00:00Z", None),
            ses(
                "w5",
                "ep-c",
                Some("a100"),
                1,
                "2026-01-01T05:00:00Z",
                Some("2026-01-01T06:00:00Z")
            ),
        ]),
    )
    .await;
    assert_session_report(&r, 6, 6, 0, 0, 0);
    // Posted later, same start as w1's first: after it by id.
    let r = sessions(
        &app,
        &ses(
            "w6",
            "ep-a",
            None,
            1,
            "2026-01-02T06:00:00Z",
            Some("2026-01-02T06:10:00Z"),
        ),
    )
    .await;
    assert_session_report(&r, 1, 1, 0, 0, 0);

    let q = |extra: &str| {
        format!(
            "/workers/sessions?start_time=2026-01-02T06:00:00Z&end_time=2026-01-02T10:00:00Z{extra}"
        )
    };
    let all = app.get_json(&q("")).await;
    assert_eq!(all["total"], 6, "{all}");
    assert_eq!(all["start_time"], "2026-01-02T06:00:00Z");
    assert_eq!(all["end_time"], "2026-01-02T10:00:00Z");
    assert_eq!(all["next_cursor"], Value::Null);
    assert!(all["limit"].is_number(), "{all}");
    let workers = |b: &Value| column(&b["data"], "worker_id", Value::as_str).join(",");
    assert_eq!(workers(&all), "w1,w6,w2,w3,w1,w4");
    session_fields(&all);

    for (filter, expected) in [
        ("&worker_id=w1", "w1,w1"),
        ("&endpoint=ep-a", "w1,w6,w2,w4"),
        ("&spec_name=a100", "w1,w3,w4"),
        ("&open=true", "w3,w4"),
        ("&open=true&endpoint=ep-a", "w4"),
        ("&open=false", "w1,w6,w2,w1"),
        ("&endpoint=ep-b&spec_name=a100", "w3"),
        ("&worker_id=nobody", ""),
    ] {
        let body = app.get_json(&q(filter)).await;
        assert_eq!(workers(&body), expected, "{filter}: {body}");
        assert_eq!(
            body["total"],
            expected.split(',').filter(|s| !s.is_empty()).count(),
            "{filter}"
        );
    }

    // Up at some time in [07:00, 08:00): w1's first ended at 07:00 and w1's
    // second starts at 08:00, so neither.
    let hour = app
        .get_json("/workers/sessions?start_time=2026-01-02T07:00:00Z&end_time=2026-01-02T08:00:00Z")
        .await;
    assert_eq!(workers(&hour), "w2,w3", "{hour}");

    // Default range: the 24 hours before now.
    let recent = app.get_json("/workers/sessions").await;
    assert_eq!(recent["start_time"], "2026-01-01T12:00:00Z");
    assert_eq!(recent["end_time"], "2026-01-02T12:00:00Z");
    assert_eq!(workers(&recent), "w1,w6,w2,w3,w1,w4", "{recent}");

    // Pages of two, across the tie at 06:00 and to the end.
    let pages = app
        .pages("/workers/sessions?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T12:00:00Z&limit=2")
        .await;
    let mut seen = Vec::new();
    for p in &pages {
        assert_eq!(p["total"], 7, "{p}");
        assert_eq!(p["limit"], 2, "{p}");
        assert!(p["data"].as_array().unwrap().len() <= 2, "{p}");
        seen.extend(listed(p));
    }
    assert!(
        pages.len() >= 4,
        "seven sessions in pages of two: {pages:?}"
    );
    assert_eq!(
        seen.iter()
            .map(|(w, s, _)| format!("{w}@{s}"))
            .collect::<Vec<_>>(),
        [
            "w5@2026-01-01T05:00:00Z",
            "w1@2026-01-02T06:00:00Z",
            "w6@2026-01-02T06:00:00Z",
            "w2@2026-01-02T06:30:00Z",
            "w3@2026-01-02T07:00:00Z",
            "w1@2026-01-02T08:00:00Z",
            "w4@2026-01-02T09:00:00Z",
        ]
    );

    bad_listing_parameters(&app).await;
    app.finish().await;
}

/// Every field of a listed session, closed and open.
#[track_caller]
fn session_fields(body: &Value) {
    let first = &body["data"][0];
    assert!(first["id"].is_i64(), "{first}");
    assert_fields(
        first,
        &json!({"worker_id": "w1", "endpoint": "ep-a", "spec_name": "a100", "gpu_type": "A100",
            "gpu_count": 1, "started_at": "2026-01-02T06:00:00Z",
            "ended_at": "2026-01-02T07:00:00Z", "counted_until": "2026-01-02T07:00:00Z"}),
    );
    assert!(first["last_seen"].is_string(), "{first}");
    // A POSTed open session was last seen when it was received (now), and
    // counts up to min(now, last_seen + 30 s) = now.
    let open = listed_one(body, "w3", "2026-01-02T07:00:00Z");
    assert_fields(
        open,
        &json!({"ended_at": null, "last_seen": "2026-01-02T12:00:00Z",
            "counted_until": "2026-01-02T12:00:00Z", "gpu_type": null}),
    );
    // No spec stored for a session posted without one.
    let no_spec = listed_one(body, "w6", "2026-01-02T06:00:00Z");
    assert!(
        no_spec["spec_name"].is_null() || no_spec["spec_name"] == "",
        "{no_spec}"
    );
}

async fn bad_listing_parameters(app: &TestApp) {
    for (path, field) in [
        ("/workers/sessions?cursor=zz", "cursor"),
        ("/workers/sessions?cursor=eyJ4IjoxfQ", "cursor"),
        ("/workers/sessions?open=maybe", "open"),
        ("/workers/sessions?limit=0", "limit"),
        ("/workers/sessions?limit=many", "limit"),
        ("/workers/sessions?start_time=yesterday", "start_time"),
        (
            "/workers/sessions?start_time=2026-01-02T10:00:00Z&end_time=2026-01-02T09:00:00Z",
            "start_time",
        ),
    ] {
        let body = expect_error(app.get(path).await, 400, "invalid_parameter").await;
        assert_eq!(body["field"], field, "{path}: {body}");
    }
    // A cursor of another listing is no cursor here.
    let page = app
        .get_json("/workers/sessions?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T12:00:00Z&limit=1")
        .await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let res = app.get(&format!("/hourly?{DAY}&cursor={cursor}")).await;
    expect_error(res, 400, "invalid_parameter").await;
    // Unknown parameters are refused, not ignored.
    let res = app.get("/workers/sessions?worker=w1").await;
    expect_error(res, 400, "invalid_parameter").await;
}

// ---------------------------------------------------------------------
// heartbeats
// ---------------------------------------------------------------------

/// The app with a manual clock the test moves, and the clock.
async fn spawn_with_clock(db: TestDb, at: &str) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::frozen(t(at)));
    let c = clock.clone();
    let app = spawn_app_with(db, move |_, o| o.clock = c).await;
    (app, clock)
}

/// Heartbeats arrive as they are sent: the clock is moved to `received`
/// before they are posted.
async fn beats_at(app: &TestApp, clock: &ManualClock, received: &str, body: &Value) -> Value {
    clock.set(t(received));
    beats(app, body).await
}

async fn sessions_of(app: &TestApp, worker: &str) -> Value {
    app.get_json(&format!(
        "/workers/sessions?start_time=2026-01-02T11:00:00Z&end_time=2026-01-02T12:00:00Z&worker_id={worker}"
    ))
    .await
}

async fn heartbeats_open_extend_split_and_ignore(db: TestDb) {
    let (app, clock) = spawn_with_clock(db, "2026-01-02T11:20:00Z").await;
    // In time order: the clock only moves forward.
    offer_changes_split(&app, &clock).await;
    silence_boundary(&app, &clock).await;
    batch_of_beats(&app, &clock).await;
    one_worker_through_its_life(&app, &clock).await;
    heartbeat_capacity_in_statistics(&app, &clock).await;
    app.finish().await;
}

/// hb1: opened, extended, older and equal heartbeats ignored, split by a
/// GPU count change, ended by silence and opened again.
async fn one_worker_through_its_life(app: &TestApp, clock: &ManualClock) {
    let hb = |gpus, at| beat("hb1", "ep-hb", gpus, at);
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:50:05Z",
        &hb(1, "2026-01-02T11:50:00Z"),
    )
    .await;
    assert_beat_report(&r, [1, 1, 0, 0, 0]);
    let s = sessions_of(app, "hb1").await;
    // Counted up to min(now, last_seen + 30 s) = now.
    assert_fields(
        &s["data"][0],
        &json!({"started_at": "2026-01-02T11:50:00Z", "ended_at": null,
            "last_seen": "2026-01-02T11:50:00Z", "counted_until": "2026-01-02T11:50:05Z",
            "endpoint": "ep-hb", "gpu_count": 1}),
    );
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:50:35Z",
        &hb(1, "2026-01-02T11:50:30Z"),
    )
    .await;
    assert_beat_report(&r, [1, 0, 1, 0, 0]);
    // Older and equal heartbeats change nothing.
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:50:40Z",
        &hb(1, "2026-01-02T11:50:15Z"),
    )
    .await;
    assert_beat_report(&r, [1, 0, 0, 0, 1]);
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:50:40Z",
        &hb(1, "2026-01-02T11:50:30Z"),
    )
    .await;
    assert_beat_report(&r, [1, 0, 0, 0, 1]);
    let s = sessions_of(app, "hb1").await;
    assert_eq!(s["total"], 1, "{s}");
    assert_fields(
        &s["data"][0],
        &json!({"ended_at": null, "last_seen": "2026-01-02T11:50:30Z"}),
    );

    // Another GPU count: the session ends there and a new one opens.
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:51:05Z",
        &hb(2, "2026-01-02T11:51:00Z"),
    )
    .await;
    assert_beat_report(&r, [1, 0, 0, 1, 0]);
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:51:35Z",
        &hb(2, "2026-01-02T11:51:30Z"),
    )
    .await;
    assert_beat_report(&r, [1, 0, 1, 0, 0]);
    // 210 s of silence (more than 3 × 30 s): the session ended at its last
    // heartbeat + 30 s; this one opens a new one.
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:55:05Z",
        &hb(2, "2026-01-02T11:55:00Z"),
    )
    .await;
    assert_beat_report(&r, [1, 1, 0, 0, 0]);
    let s = sessions_of(app, "hb1").await;
    let open = listed_one(&s, "hb1", "2026-01-02T11:55:00Z");
    assert_fields(
        open,
        &json!({"ended_at": null, "last_seen": "2026-01-02T11:55:00Z",
            "counted_until": "2026-01-02T11:55:05Z"}),
    );
    // Older than everything known of the worker.
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:55:10Z",
        &hb(2, "2026-01-02T11:52:30Z"),
    )
    .await;
    assert_beat_report(&r, [1, 0, 0, 0, 1]);

    let s = sessions_of(app, "hb1").await;
    assert_eq!(
        listed(&s),
        vec![
            l("hb1", "2026-01-02T11:50:00Z", Some("2026-01-02T11:51:00Z")),
            l("hb1", "2026-01-02T11:51:00Z", Some("2026-01-02T11:52:00Z")),
            l("hb1", "2026-01-02T11:55:00Z", None),
        ]
    );
    assert_eq!(column(&s["data"], "gpu_count", Value::as_i64), [1, 2, 2]);
    assert_eq!(
        column(&s["data"], "counted_until", Value::as_str)[..2],
        ["2026-01-02T11:51:00Z", "2026-01-02T11:52:00Z"],
        "{s}"
    );
}

/// Endpoint, spec and GPU type changes split like a GPU count change.
async fn offer_changes_split(app: &TestApp, clock: &ManualClock) {
    let base = json!({"worker_id": "hb4", "endpoint": "ep-1", "spec_name": "a100",
        "gpu_type": "A100", "gpu_count": 1, "at": "2026-01-02T11:20:00Z"});
    let r = beats_at(app, clock, "2026-01-02T11:20:00Z", &base).await;
    assert_beat_report(&r, [1, 1, 0, 0, 0]);
    let mut b = base.clone();
    for (field, value, at) in [
        ("endpoint", "ep-2", "2026-01-02T11:20:30Z"),
        ("spec_name", "h100", "2026-01-02T11:21:00Z"),
        ("gpu_type", "H100", "2026-01-02T11:21:30Z"),
    ] {
        b[field] = value.into();
        b["at"] = at.into();
        let r = beats_at(app, clock, at, &b).await;
        assert_beat_report(&r, [1, 0, 0, 1, 0]);
    }
    let s = sessions_of(app, "hb4").await;
    assert_eq!(
        listed(&s),
        vec![
            l("hb4", "2026-01-02T11:20:00Z", Some("2026-01-02T11:20:30Z")),
            l("hb4", "2026-01-02T11:20:30Z", Some("2026-01-02T11:21:00Z")),
            l("hb4", "2026-01-02T11:21:00Z", Some("2026-01-02T11:21:30Z")),
            l("hb4", "2026-01-02T11:21:30Z", None),
        ]
    );
    assert_fields(
        &s["data"][3],
        &json!({"endpoint": "ep-2", "spec_name": "h100", "gpu_type": "H100", "gpu_count": 1}),
    );
}

/// Exactly 3 intervals of silence keeps the session; one second more ends
/// it at last_seen + 30 s.
async fn silence_boundary(app: &TestApp, clock: &ManualClock) {
    let hb = |at| beat("hb3", "ep-3", 1, at);
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:30:00Z",
        &hb("2026-01-02T11:30:00Z"),
    )
    .await;
    assert_beat_report(&r, [1, 1, 0, 0, 0]);
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:31:30Z",
        &hb("2026-01-02T11:31:30Z"),
    )
    .await;
    assert_beat_report(&r, [1, 0, 1, 0, 0]);
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:33:01Z",
        &hb("2026-01-02T11:33:01Z"),
    )
    .await;
    assert_beat_report(&r, [1, 1, 0, 0, 0]);
    let s = sessions_of(app, "hb3").await;
    assert_eq!(
        listed(&s),
        vec![
            l("hb3", "2026-01-02T11:30:00Z", Some("2026-01-02T11:32:00Z")),
            l("hb3", "2026-01-02T11:33:01Z", None),
        ]
    );
}

/// A batch: each worker's heartbeats applied in time order.
async fn batch_of_beats(app: &TestApp, clock: &ManualClock) {
    let r = beats_at(
        app,
        clock,
        "2026-01-02T11:40:31Z",
        &json!([
            beat("hb2", "ep-2b", 1, "2026-01-02T11:40:30Z"),
            beat("hb2", "ep-2b", 1, "2026-01-02T11:40:00Z"),
            beat("hb5", "ep-5", 3, "2026-01-02T11:40:00Z"),
        ]),
    )
    .await;
    assert_beat_report(&r, [3, 2, 1, 0, 0]);
    let s = sessions_of(app, "hb2").await;
    assert_eq!(s["total"], 1, "{s}");
    assert_fields(
        &s["data"][0],
        &json!({"started_at": "2026-01-02T11:40:00Z", "last_seen": "2026-01-02T11:40:30Z",
            "ended_at": null}),
    );
}

/// hb1's sessions as capacity, folded in by the periodic jobs: 1 GPU ×
/// 60 s, 2 × 60 s, and the open one 2 × 30 s — counted to last_seen + 30 s,
/// not to now.
async fn heartbeat_capacity_in_statistics(app: &TestApp, clock: &ManualClock) {
    let at = t("2026-01-02T11:56:00Z");
    clock.set(at);
    let cfg = EngineConfig::from_settings(&app.settings);
    capacity::advance(&app.db.db, at, &cfg).await.unwrap();
    let s = sessions_of(app, "hb1").await;
    let open = listed_one(&s, "hb1", "2026-01-02T11:55:00Z");
    assert_fields(
        open,
        &json!({"ended_at": null, "counted_until": "2026-01-02T11:55:30Z"}),
    );
    for level in [Granularity::Minute, Granularity::Hourly] {
        rollup::process_pending(&app.db.db, level, at, &cfg)
            .await
            .unwrap();
    }
    let m = app
        .get_json("/minute?scope_type=endpoint&scope_value=ep-hb&start_time=2026-01-02T11:00:00Z&end_time=2026-01-02T11:56:00Z")
        .await;
    assert_eq!(
        column(&m["data"], "time_bucket", Value::as_str),
        [
            "2026-01-02T11:50:00Z",
            "2026-01-02T11:51:00Z",
            "2026-01-02T11:55:00Z"
        ],
        "{m}"
    );
    let secs = column(&m["data"], "available_gpu_seconds", Value::as_f64);
    assert_eq!(secs, [60.0, 120.0, 60.0], "{m}");
    let h = app
        .get_json("/hourly?scope_type=endpoint&scope_value=ep-hb&start_time=2026-01-02T11:00:00Z&end_time=2026-01-02T11:56:00Z")
        .await;
    assert_fields(
        &h["data"][0],
        &cap(0.0, 0.066667, Some(0.0), 0.066667, Some(true), 0, 2),
    );
}

// ---------------------------------------------------------------------
// open sessions, the capacity job and the rollup queue
// ---------------------------------------------------------------------

async fn open_session_counts_to_now_and_the_job_ends_silence(db: TestDb) {
    let (app, clock) = spawn_with_clock(db, "2026-01-02T12:00:00Z").await;
    let cfg = EngineConfig::from_settings(&app.settings);
    let db = app.db.db.clone();
    let open = ses("wo", "ep-o", None, 3, "2026-01-02T11:00:00Z", None);
    let r = sessions(&app, &open).await;
    assert_session_report(&r, 1, 1, 0, 0, 0);

    // The queued minutes are folded in by the periodic rollups (no
    // /aggregate): 3 GPUs for the hour up to now.
    let fold = |at: &str| {
        let (db, cfg, at) = (db.clone(), cfg.clone(), t(at));
        async move {
            for level in [Granularity::Minute, Granularity::Hourly] {
                rollup::process_pending(&db, level, at, &cfg).await.unwrap();
            }
        }
    };
    fold("2026-01-02T12:00:00Z").await;
    let hour = |start: &str, end: &str| {
        format!("/hourly?scope_type=endpoint&scope_value=ep-o&start_time={start}&end_time={end}")
    };
    let h = app
        .get_json(&hour("2026-01-02T11:00:00Z", "2026-01-02T12:00:00Z"))
        .await;
    assert_fields(
        &h["data"][0],
        &json!({"available_gpu_hours": 3.0, "peak_gpus_available": 3}),
    );

    // A replay of the open session 20 s later refreshes last_seen.
    clock.set(t("2026-01-02T12:00:20Z"));
    assert_session_report(&sessions(&app, &open).await, 1, 0, 0, 1, 0);
    let s = open_session(&app).await;
    assert_eq!(s["last_seen"], "2026-01-02T12:00:20Z", "{s}");
    assert_eq!(s["counted_until"], "2026-01-02T12:00:20Z", "{s}");

    // The job moves counted_until up to last_seen + 30 s, never past it.
    let at = t("2026-01-02T12:01:00Z");
    clock.set(at);
    let report = capacity::advance(&db, at, &cfg).await.unwrap();
    assert_eq!((report.open, report.ended), (1, 0), "{report:?}");
    let s = open_session(&app).await;
    assert_eq!(s["counted_until"], "2026-01-02T12:00:50Z", "{s}");
    assert_eq!(s["ended_at"], Value::Null, "{s}");
    fold("2026-01-02T12:01:00Z").await;
    let m = app
        .get_json("/minute?scope_type=endpoint&scope_value=ep-o&start_time=2026-01-02T12:00:00Z&end_time=2026-01-02T12:02:00Z")
        .await;
    assert_eq!(m["total"], 1, "{m}");
    assert_fields(&m["data"][0], &json!({"available_gpu_seconds": 150.0}));

    // Silent for exactly 3 intervals: still open.
    let at = t("2026-01-02T12:01:50Z");
    clock.set(at);
    let report = capacity::advance(&db, at, &cfg).await.unwrap();
    assert_eq!(report.ended, 0, "{report:?}");
    assert_eq!(open_session(&app).await["ended_at"], Value::Null);
    // One second more: ended at last_seen + 30 s.
    let at = t("2026-01-02T12:01:51Z");
    clock.set(at);
    let report = capacity::advance(&db, at, &cfg).await.unwrap();
    assert_eq!(report.ended, 1, "{report:?}");
    let s = open_session(&app).await;
    assert_eq!(s["ended_at"], "2026-01-02T12:00:50Z", "{s}");
    assert_eq!(s["counted_until"], "2026-01-02T12:00:50Z", "{s}");
    app.assert_nothing_listed("/workers/sessions?worker_id=wo&open=true")
        .await;

    // A later run changes nothing; the statistics hold 11:00–12:00:50.
    let at = t("2026-01-02T12:03:00Z");
    clock.set(at);
    let report = capacity::advance(&db, at, &cfg).await.unwrap();
    assert_eq!((report.open, report.ended), (0, 0), "{report:?}");
    fold("2026-01-02T12:03:00Z").await;
    let h = app
        .get_json(&hour("2026-01-02T11:00:00Z", "2026-01-02T13:00:00Z"))
        .await;
    assert_eq!(
        column(&h["data"], "available_gpu_hours", Value::as_f64),
        [3.0, 0.041667],
        "{h}"
    );
    assert_fields(&h["summary"], &json!({"available_gpu_hours": 3.041667}));
    app.finish().await;
}

async fn open_session(app: &TestApp) -> Value {
    let s = app
        .get_json("/workers/sessions?worker_id=wo&start_time=2026-01-02T11:00:00Z&end_time=2026-01-02T12:05:00Z")
        .await;
    assert_eq!(s["total"], 1, "{s}");
    s["data"][0].clone()
}

/// A session's `ended_at` moved later is queued for the rollups too.
async fn updates_are_queued_for_the_rollups(db: TestDb) {
    let app = spawn_app(db).await;
    let cfg = EngineConfig::from_settings(&app.settings);
    let fold = || async {
        for level in [Granularity::Minute, Granularity::Hourly, Granularity::Daily] {
            rollup::process_pending(&app.db.db, level, now(), &cfg)
                .await
                .unwrap();
        }
    };
    let s = |end| {
        ses(
            "wq",
            "ep-q",
            Some("a100"),
            2,
            "2026-01-02T09:00:00Z",
            Some(end),
        )
    };
    assert_session_report(
        &sessions(&app, &s("2026-01-02T09:30:00Z")).await,
        1,
        1,
        0,
        0,
        0,
    );
    fold().await;
    let q = "/hourly?scope_type=spec&scope_value=a100&start_time=2026-01-02T09:00:00Z&end_time=2026-01-02T11:00:00Z";
    assert_eq!(
        column(
            &app.get_json(q).await["data"],
            "available_gpu_hours",
            Value::as_f64
        ),
        [1.0]
    );
    assert_session_report(
        &sessions(&app, &s("2026-01-02T10:30:00Z")).await,
        1,
        0,
        1,
        0,
        0,
    );
    fold().await;
    let body = app.get_json(q).await;
    assert_eq!(
        column(&body["data"], "available_gpu_hours", Value::as_f64),
        [2.0, 1.0],
        "{body}"
    );
    let d = app
        .get_json("/daily?scope_type=spec&scope_value=a100&start_time=2026-01-02T00:00:00Z&end_time=2026-01-02T12:00:00Z")
        .await;
    assert_fields(
        &d["data"][0],
        &json!({"available_gpu_hours": 3.0, "utilization_rate": 0.0, "idle_gpu_hours": 3.0,
            "capacity_complete": true, "peak_gpus_available": 2}),
    );

    // Moved earlier: the vacated minutes lose their capacity, and the hour
    // left with nothing has no row.
    let r = sessions(&app, &s("2026-01-02T09:15:00Z")).await;
    assert_session_report(&r, 1, 0, 1, 0, 0);
    fold().await;
    let body = app.get_json(q).await;
    assert_eq!(
        keys(&body),
        vec![k("2026-01-02T09:00:00Z", Some("a100"))],
        "{body}"
    );
    assert_fields(
        &body["data"][0],
        &json!({"available_gpu_hours": 0.5, "idle_gpu_hours": 0.5, "peak_gpus_available": 2}),
    );
    let d = app
        .get_json("/daily?scope_type=spec&scope_value=a100&start_time=2026-01-02T00:00:00Z&end_time=2026-01-02T12:00:00Z")
        .await;
    assert_fields(&d["data"][0], &json!({"available_gpu_hours": 0.5}));
    app.finish().await;
}

/// A session starting in the future (within the clock skew) counts
/// nothing before it starts and never ends before it starts.
async fn future_starts_count_nothing_early(db: TestDb) {
    let (app, clock) = spawn_with_clock(db, "2026-01-02T12:00:00Z").await;
    let cfg = EngineConfig::from_settings(&app.settings);
    let r = sessions(
        &app,
        &ses("wf", "ep-f", None, 2, "2026-01-02T12:04:00Z", None),
    )
    .await;
    assert_session_report(&r, 1, 1, 0, 0, 0);
    let r = beats(&app, &beat("hf", "ep-h", 2, "2026-01-02T12:04:00Z")).await;
    assert_beat_report(&r, [1, 1, 0, 0, 0]);
    let q = "/workers/sessions?start_time=2026-01-02T11:00:00Z&end_time=2026-01-02T12:10:00Z";
    let m =
        "/minute?scope_type=endpoint&start_time=2026-01-02T11:00:00Z&end_time=2026-01-02T12:10:00Z";
    let fold = |at| {
        let (db, cfg) = (app.db.db.clone(), cfg.clone());
        async move {
            for level in [Granularity::Minute, Granularity::Hourly] {
                rollup::process_pending(&db, level, at, &cfg).await.unwrap();
            }
        }
    };
    let not_before_start = |list: &Value| {
        for s in list["data"].as_array().unwrap() {
            let start = t(s["started_at"].as_str().unwrap());
            assert!(t(s["counted_until"].as_str().unwrap()) >= start, "{s}");
            if let Some(end) = s["ended_at"].as_str() {
                assert!(t(end) >= start, "ended before it started: {s}");
            }
        }
    };
    not_before_start(&app.get_json(q).await);
    fold(now()).await;
    let rows = app.get_json(m).await;
    assert_eq!(rows["total"], 0, "nothing available yet: {rows}");

    // Both fell silent: ended, never before their start; the heartbeat one
    // at its heartbeat + 30 s.
    let at = t("2026-01-02T12:06:00Z");
    clock.set(at);
    let report = capacity::advance(&app.db.db, at, &cfg).await.unwrap();
    assert_eq!(report.ended, 2, "{report:?}");
    let list = app.get_json(q).await;
    not_before_start(&list);
    assert_eq!(
        listed_one(&list, "hf", "2026-01-02T12:04:00Z")["ended_at"],
        "2026-01-02T12:04:30Z"
    );
    fold(at).await;
    let rows = app.get_json(m).await;
    assert_eq!(
        keys(&rows),
        vec![k("2026-01-02T12:04:00Z", Some("ep-h"))],
        "{rows}"
    );
    assert_fields(
        &rows["data"][0],
        &json!({"available_gpu_seconds": 60.0, "peak_gpus_available": 2}),
    );
    for r in rows["data"].as_array().unwrap() {
        assert!(r["available_gpu_seconds"].as_f64().unwrap() >= 0.0, "{r}");
    }
    app.finish().await;
}

/// Sessions that add no GPU time (no GPUs, no length) make no rows; one
/// across midnight is split between the days.
async fn rows_only_where_time_is_added(db: TestDb) {
    let app = spawn_app(db).await;
    let r = sessions(
        &app,
        &json!([
            ses(
                "w-z0",
                "ep-zero",
                None,
                0,
                "2026-01-01T13:00:00Z",
                Some("2026-01-01T14:00:00Z")
            ),
            ses(
                "w-zl",
                "ep-zlen",
                None,
                4,
                "2026-01-01T13:00:00Z",
                Some("2026-01-01T13:00:00Z")
            ),
            ses(
                "w-mid",
                "ep-mid",
                Some("a100"),
                2,
                "2026-01-01T23:00:00Z",
                Some("2026-01-02T01:00:00Z")
            ),
        ]),
    )
    .await;
    assert_session_report(&r, 3, 3, 0, 0, 0);
    // The default range: the 24 hours before now, every level.
    app.aggregate("granularity=all").await;
    let range = "start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T12:00:00Z";
    let hours = app
        .get_json(&format!("/hourly?scope_type=endpoint&{range}"))
        .await;
    assert_eq!(
        keys(&hours),
        vec![
            k("2026-01-01T23:00:00Z", Some("ep-mid")),
            k("2026-01-02T00:00:00Z", Some("ep-mid")),
        ],
        "{hours}"
    );
    let days = app
        .get_json(&format!("/daily?scope_type=spec&{range}"))
        .await;
    assert_eq!(
        keys(&days),
        vec![
            k("2026-01-01T00:00:00Z", Some("a100")),
            k("2026-01-02T00:00:00Z", Some("a100")),
        ],
        "{days}"
    );
    for d in days["data"].as_array().unwrap() {
        assert_fields(d, &cap(0.0, 2.0, Some(0.0), 2.0, Some(true), 0, 2));
    }
    assert_fields(
        &days["summary"],
        &cap(0.0, 4.0, Some(0.0), 4.0, Some(true), 0, 2),
    );
    app.finish().await;
}

/// Sessions posted and heartbeats of the same worker act on the same
/// sessions.
async fn reports_and_heartbeats_mix(db: TestDb) {
    let (app, clock) = spawn_with_clock(db, "2026-01-02T12:00:00Z").await;
    let open = ses("wm", "ep-m", None, 1, "2026-01-02T11:00:00Z", None);
    assert_session_report(&sessions(&app, &open).await, 1, 1, 0, 0, 0);
    let r = beats_at(
        &app,
        &clock,
        "2026-01-02T12:00:30Z",
        &beat("wm", "ep-m", 1, "2026-01-02T12:00:30Z"),
    )
    .await;
    assert_beat_report(&r, [1, 0, 1, 0, 0]);
    let list = app
        .get_json(&format!("/workers/sessions?worker_id=wm&{SOON}"))
        .await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(
        list["data"][0]["last_seen"], "2026-01-02T12:00:30Z",
        "{list}"
    );

    // The open session covers everything after 11:00: any other session of
    // the worker overlaps it.
    for other in [
        ses(
            "wm",
            "ep-m",
            None,
            1,
            "2026-01-02T11:30:00Z",
            Some("2026-01-02T11:45:00Z"),
        ),
        ses("wm", "ep-m", None, 1, "2026-01-02T12:00:10Z", None),
        ses(
            "wm",
            "ep-m",
            None,
            1,
            "2026-01-02T10:00:00Z",
            Some("2026-01-02T11:00:01Z"),
        ),
    ] {
        let r = sessions(&app, &other).await;
        assert_session_report(&r, 1, 0, 0, 0, 1);
    }
    // Ending exactly where the open one starts does not overlap it.
    let before = ses(
        "wm",
        "ep-m",
        None,
        1,
        "2026-01-02T10:00:00Z",
        Some("2026-01-02T11:00:00Z"),
    );
    assert_session_report(&sessions(&app, &before).await, 1, 1, 0, 0, 0);

    // A heartbeat with another GPU count splits the posted session; the
    // worker's own end report of it is then a replay.
    let r = beats_at(
        &app,
        &clock,
        "2026-01-02T12:01:00Z",
        &beat("wm", "ep-m", 2, "2026-01-02T12:01:00Z"),
    )
    .await;
    assert_beat_report(&r, [1, 0, 0, 1, 0]);
    let closed = ses(
        "wm",
        "ep-m",
        None,
        1,
        "2026-01-02T11:00:00Z",
        Some("2026-01-02T12:01:00Z"),
    );
    assert_session_report(&sessions(&app, &closed).await, 1, 0, 0, 1, 0);
    let list = app
        .get_json(&format!("/workers/sessions?worker_id=wm&{SOON}"))
        .await;
    assert_eq!(
        listed(&list),
        vec![
            l("wm", "2026-01-02T10:00:00Z", Some("2026-01-02T11:00:00Z")),
            l("wm", "2026-01-02T11:00:00Z", Some("2026-01-02T12:01:00Z")),
            l("wm", "2026-01-02T12:01:00Z", None),
        ]
    );

    // A heartbeat inside a closed session is older than what is known; one
    // after it opens the next session.
    let done = ses(
        "wc",
        "ep-c",
        None,
        1,
        "2026-01-02T11:00:00Z",
        Some("2026-01-02T12:00:00Z"),
    );
    assert_session_report(&sessions(&app, &done).await, 1, 1, 0, 0, 0);
    let r = beats_at(
        &app,
        &clock,
        "2026-01-02T12:01:05Z",
        &beat("wc", "ep-c", 1, "2026-01-02T11:30:00Z"),
    )
    .await;
    assert_beat_report(&r, [1, 0, 0, 0, 1]);
    let r = beats_at(
        &app,
        &clock,
        "2026-01-02T12:01:05Z",
        &beat("wc", "ep-c", 1, "2026-01-02T12:01:00Z"),
    )
    .await;
    assert_beat_report(&r, [1, 1, 0, 0, 0]);
    let list = app
        .get_json(&format!("/workers/sessions?worker_id=wc&{SOON}"))
        .await;
    assert_eq!(
        listed(&list),
        vec![
            l("wc", "2026-01-02T11:00:00Z", Some("2026-01-02T12:00:00Z")),
            l("wc", "2026-01-02T12:01:00Z", None),
        ]
    );
    app.finish().await;
}

/// Sessions are kept like records (by ended_at; open ones stay), and one
/// ended before the records' retention cannot be posted again.
async fn sessions_retained_like_records(db: TestDb) {
    let (app, clock) = spawn_with_clock(db, "2026-01-02T12:00:00Z").await;
    let old = ses(
        "w-old",
        "ep",
        None,
        1,
        "2025-12-01T00:00:00Z",
        Some("2025-12-01T01:00:00Z"),
    );
    let r = sessions(
        &app,
        &json!([
            old,
            ses(
                "w-recent",
                "ep",
                None,
                1,
                "2025-12-10T00:00:00Z",
                Some("2025-12-10T01:00:00Z")
            ),
            ses("w-up", "ep", None, 1, "2025-11-20T00:00:00Z", None),
        ]),
    )
    .await;
    assert_session_report(&r, 3, 3, 0, 0, 0);

    // 90 days later than 2025-12-05.
    let later = t("2026-03-05T00:00:00Z");
    let report =
        gpu_usage_core::retention::cleanup(&app.db.db, later, &app.settings.retention).await;
    let table = report
        .table(gpu_usage_core::retention::SESSIONS_TABLE)
        .unwrap_or_else(|| panic!("sessions not cleaned: {report:?}"));
    assert_eq!(table.deleted, 1, "{report:?}");
    let list = app
        .get_json("/workers/sessions?start_time=2025-11-01T00:00:00Z&end_time=2026-01-02T12:00:00Z")
        .await;
    assert_eq!(
        column(&list["data"], "worker_id", Value::as_str),
        ["w-up", "w-recent"],
        "{list}"
    );

    clock.set(later);
    let res = app.post_json("/workers/sessions", &old).await;
    let body = expect_error(res, 422, "invalid_sessions").await;
    assert_eq!(problems(&body), [(0, "ended_at".to_owned())], "{body}");
    app.finish().await;
}

both_backends!(
    hourly_daily_and_summary_figures,
    utilisation_rounds_half_away_from_zero,
    hourly_csv_has_capacity_columns,
    hours_are_rounded_once_from_exact_sums,
    replays_updates_conflicts_and_overlaps,
    invalid_reports_are_refused_whole,
    roles_for_capacity_endpoints,
    public_reads_of_sessions,
    session_listing_filters_and_pages,
    heartbeats_open_extend_split_and_ignore,
    open_session_counts_to_now_and_the_job_ends_silence,
    updates_are_queued_for_the_rollups,
    future_starts_count_nothing_early,
    rows_only_where_time_is_added,
    reports_and_heartbeats_mix,
    sessions_retained_like_records,
);
