//! Roles per endpoint, anonymous reads by configuration, and the refusal
//! to serve unprotected on a public address.

use std::net::TcpListener;

use gpu_usage_api::{Application, StartupError};
use gpu_usage_testing::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{
    ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN, both_backends, expect_error, options, settings,
    spawn_app_with, with_tokens,
};

async fn roles_per_endpoint(db: TestDb) {
    let app = spawn_app_with(db, |s, _| with_tokens(s)).await;
    let send =
        |method: Method, path: &str, token: Option<&str>, body: Option<serde_json::Value>| {
            let mut r = app.request(method, path);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            if let Some(b) = body {
                r = r.json(&b);
            }
            r.send()
        };
    let record = json!({"task_id": "a1", "endpoint": "e", "gpu_count": 1,
        "started_at": "2026-01-02T10:00:00Z", "completed_at": "2026-01-02T10:10:00Z", "status": "COMPLETED"});
    let day = "start_time=2026-01-02T00:00:00Z&end_time=2026-01-02T12:00:00Z";

    // Reads need a token here (public_reads = false).
    for path in [
        "/hourly",
        "/minute",
        "/daily",
        "/scopes",
        "/records",
        "/status",
        "/backfill",
        "/backfill/1",
    ] {
        let res = send(Method::GET, path, None, None).await.unwrap();
        assert_eq!(res.headers()["www-authenticate"], "Bearer", "{path}");
        expect_error(res, 401, "unauthorized").await;
        expect_error(
            send(Method::GET, path, Some("wrong"), None).await.unwrap(),
            401,
            "unauthorized",
        )
        .await;
        for token in [READ_TOKEN, INGEST_TOKEN, ADMIN_TOKEN] {
            let res = send(Method::GET, path, Some(token), None).await.unwrap();
            assert_ne!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert_ne!(res.status(), StatusCode::FORBIDDEN, "{path}");
        }
    }
    let res = app
        .client
        .get(format!("{}/api/v1/gpu-usage/hourly", app.base))
        .header("Authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    expect_error(res, 401, "unauthorized").await;

    // Ingest needs ingest or admin.
    expect_error(
        send(Method::POST, "/records", None, Some(record.clone()))
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        send(
            Method::POST,
            "/records",
            Some(READ_TOKEN),
            Some(record.clone()),
        )
        .await
        .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let res = send(
        Method::POST,
        "/records",
        Some(INGEST_TOKEN),
        Some(record.clone()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let res = send(
        Method::POST,
        "/records",
        Some(ADMIN_TOKEN),
        Some(record.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["duplicates"],
        1
    );

    // Triggers need admin.
    for path in [
        format!("/aggregate?granularity=minute&{day}"),
        format!("/backfill?{day}"),
    ] {
        expect_error(
            send(Method::POST, &path, None, None).await.unwrap(),
            401,
            "unauthorized",
        )
        .await;
        expect_error(
            send(Method::POST, &path, Some(READ_TOKEN), None)
                .await
                .unwrap(),
            403,
            "forbidden",
        )
        .await;
        expect_error(
            send(Method::POST, &path, Some(INGEST_TOKEN), None)
                .await
                .unwrap(),
            403,
            "forbidden",
        )
        .await;
        let res = send(Method::POST, &path, Some(ADMIN_TOKEN), None)
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }
    // The refusal happens before anything is parsed or done.
    expect_error(
        send(
            Method::POST,
            "/aggregate?granularity=week",
            Some(READ_TOKEN),
            None,
        )
        .await
        .unwrap(),
        403,
        "forbidden",
    )
    .await;

    // Probes and documentation are open.
    assert_eq!(
        app.client
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(Method::GET, "/openapi.json", None, None)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(Method::GET, "/docs", None, None)
            .await
            .unwrap()
            .status(),
        200
    );
    app.finish().await;
}
both_backends!(roles_per_endpoint);

async fn public_reads(db: TestDb) {
    let app = spawn_app_with(db, |s, _| {
        with_tokens(s);
        s.api.public_reads = true;
    })
    .await;
    assert_eq!(app.get("/hourly").await.status(), 200);
    assert_eq!(app.get("/records").await.status(), 200);
    // A wrong token is still refused: the client should learn it is wrong.
    let res = app
        .request(Method::GET, "/hourly")
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    expect_error(res, 401, "unauthorized").await;
    expect_error(
        app.post_empty("/aggregate?granularity=all").await,
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        app.post_json("/records", &json!({})).await,
        401,
        "unauthorized",
    )
    .await;
    app.finish().await;
}
both_backends!(public_reads);

/// Binding to every interface without a token would publish an open
/// admin API; the server refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_unprotected_public_address() {
    let t = TestDb::sqlite().await;
    let open = settings();
    let public = TcpListener::bind("0.0.0.0:0").unwrap();
    match Application::build(&open, t.db.clone(), public, options()) {
        Err(StartupError::Unprotected(addr)) => assert!(addr.ip().is_unspecified()),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("an open API started on a public address"),
    }
    let mut protected = settings();
    with_tokens(&mut protected);
    let public = TcpListener::bind("0.0.0.0:0").unwrap();
    let app = Application::build(&protected, t.db.clone(), public, options()).unwrap();
    stop(app).await;
    // Loopback without tokens is the local first-run mode.
    let local = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = Application::build(&open, t.db.clone(), local, options()).unwrap();
    stop(app).await;
    t.cleanup().await;
}

async fn stop(app: Application) {
    let handle = app.handle();
    let server = tokio::spawn(app.into_server());
    handle.stop(true).await;
    server.await.unwrap().unwrap();
}
