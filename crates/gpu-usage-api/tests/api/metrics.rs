//! `/metrics`: Prometheus text of this process, beside `/healthz` and
//! unauthenticated like it.

use gpu_usage_testing::{TestDb, assert_contains_all};

use crate::support::{both_backends, content_type, spawn_app_with, with_tokens};

async fn requests_are_counted_by_route_and_status(db: TestDb) {
    let app = spawn_app_with(db, |s, _| with_tokens(s)).await;
    // One authorised read, one refused, one unknown path.
    let ok = app
        .request(reqwest::Method::GET, "/hourly")
        .bearer_auth(crate::support::READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(app.get("/hourly").await.status(), 401);
    assert_eq!(app.get("/no-such-thing").await.status(), 404);

    let res = app.get_outside("/metrics").await;
    assert_eq!(res.status(), 200, "no token needed");
    assert!(content_type(&res).starts_with("text/plain; version=0.0.4"));
    let text = res.text().await.unwrap();
    assert_contains_all(
        &text,
        &[
            "gpu_usage_http_requests_total{method=\"GET\",route=\"/api/v1/gpu-usage/hourly\",status=\"200\"} 1\n",
            "gpu_usage_http_requests_total{method=\"GET\",route=\"/api/v1/gpu-usage/hourly\",status=\"401\"} 1\n",
            "gpu_usage_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n",
            "gpu_usage_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/gpu-usage/hourly\"} 2\n",
            "gpu_usage_rollup_status_up 1\n",
        ],
    );
    assert!(!text.contains("no-such-thing"), "raw paths are not labels");
    gpu_usage_testing::assert_exposition_well_formed(&text);

    let open = app
        .outside("/metrics")
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(content_type(&open).starts_with("application/openmetrics-text"));
    let open = open.text().await.unwrap();
    assert!(open.ends_with("# EOF\n"));
    gpu_usage_testing::assert_exposition_well_formed(&open);
    app.finish().await;
}
both_backends!(requests_are_counted_by_route_and_status);
