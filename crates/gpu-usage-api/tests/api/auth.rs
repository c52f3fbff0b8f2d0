//! Roles per endpoint, anonymous reads by configuration, and the refusal
//! to serve unprotected on a public address.

use std::net::TcpListener;

use gpu_usage_api::{Application, StartupError};
use gpu_usage_testing::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{
    ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN, TestApp, both_backends, expect_error, options, settings,
    spawn_app_with, task, with_public_reads, with_tokens,
};

async fn roles_per_endpoint(db: TestDb) {
    let app = spawn_app_with(db, |s, _| with_tokens(s)).await;
    reads_need_a_token(&app).await;
    ingest_needs_ingest_or_admin(&app).await;

    // Triggers need admin.
    let day = "start_time=2026-01-02T00:00:00Z&end_time=2026-01-02T12:00:00Z";
    for path in [
        format!("/aggregate?granularity=minute&{day}"),
        format!("/backfill?{day}"),
    ] {
        for (token, status, code) in [
            (None, 401, "unauthorized"),
            (Some(READ_TOKEN), 403, "forbidden"),
            (Some(INGEST_TOKEN), 403, "forbidden"),
        ] {
            let res = app.send(Method::POST, &path, token, None).await;
            expect_error(res, status, code).await;
        }
        let res = app.send(Method::POST, &path, Some(ADMIN_TOKEN), None).await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }
    // The refusal happens before anything is parsed or done.
    let res = app
        .send(
            Method::POST,
            "/aggregate?granularity=week",
            Some(READ_TOKEN),
            None,
        )
        .await;
    expect_error(res, 403, "forbidden").await;

    // Probes and documentation are open.
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(app.get_outside(probe).await.status(), 200, "{probe}");
    }
    for doc in ["/openapi.json", "/docs"] {
        let res = app.send(Method::GET, doc, None, None).await;
        assert_eq!(res.status(), 200, "{doc}");
    }
    app.finish().await;
}

/// Reads need a token here (public_reads = false).
async fn reads_need_a_token(app: &TestApp) {
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
        let res = app.send(Method::GET, path, None, None).await;
        assert_eq!(res.headers()["www-authenticate"], "Bearer", "{path}");
        expect_error(res, 401, "unauthorized").await;
        let res = app.send(Method::GET, path, Some("wrong"), None).await;
        expect_error(res, 401, "unauthorized").await;
        for token in [READ_TOKEN, INGEST_TOKEN, ADMIN_TOKEN] {
            let res = app.send(Method::GET, path, Some(token), None).await;
            assert_ne!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert_ne!(res.status(), StatusCode::FORBIDDEN, "{path}");
        }
    }
    let res = app
        .request(Method::GET, "/hourly")
        .header("Authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    expect_error(res, 401, "unauthorized").await;
}

/// Ingest needs ingest or admin.
async fn ingest_needs_ingest_or_admin(app: &TestApp) {
    let record = task(
        "a1",
        "e",
        1,
        "2026-01-02T10:00:00Z",
        "2026-01-02T10:10:00Z",
        "COMPLETED",
    );
    let post = |token| app.send(Method::POST, "/records", token, Some(&record));
    expect_error(post(None).await, 401, "unauthorized").await;
    expect_error(post(Some(READ_TOKEN)).await, 403, "forbidden").await;
    assert_eq!(post(Some(INGEST_TOKEN)).await.status(), 200);
    let res = post(Some(ADMIN_TOKEN)).await;
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["duplicates"],
        1
    );
}

async fn public_reads(db: TestDb) {
    let app = spawn_app_with(db, |s, _| with_public_reads(s)).await;
    assert_eq!(app.get("/hourly").await.status(), 200);
    assert_eq!(app.get("/records").await.status(), 200);
    // A wrong token is still refused: the client should learn it is wrong.
    let res = app.send(Method::GET, "/hourly", Some("nope"), None).await;
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

both_backends!(roles_per_endpoint, public_reads);

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
