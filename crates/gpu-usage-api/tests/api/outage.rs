//! A database outage answers 503 with a generic body: never a 500, a
//! panic or connection details.

use std::time::Duration;

use gpu_usage_testing::{Backend, TestDb};
use reqwest::Method;
use sea_orm::{ConnectOptions, Database};
use serde_json::json;

use crate::support::{both_backends, expect_error, fixture_records, spawn_app_on};

/// A pool whose database cannot be reached. MySQL: a lazily connecting
/// pool aimed at a closed local port. SQLite opens its file eagerly and
/// has no server to lose, so its outage is a pool that has been closed
/// under the app (every acquire fails).
async fn unreachable(t: &TestDb) -> (sea_orm::DatabaseConnection, String) {
    match t.backend {
        Backend::MySql => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let url = format!("mysql://root:secret-pw@127.0.0.1:{port}/gone");
            let mut opts = ConnectOptions::new(url.clone());
            opts.connect_lazy(true)
                .connect_timeout(Duration::from_secs(1))
                .acquire_timeout(Duration::from_secs(1))
                .max_connections(2)
                .sqlx_logging(false);
            (Database::connect(opts).await.unwrap(), url)
        }
        Backend::Sqlite => {
            let path =
                std::env::temp_dir().join(format!("gu-outage-{}-nowhere.db", std::process::id()));
            let url = format!("sqlite://{}?mode=rwc", path.display());
            let pool = Database::connect(url.as_str()).await.unwrap();
            pool.clone().close().await.unwrap();
            std::fs::remove_file(&path).ok();
            (pool, url)
        }
    }
}

async fn outage_is_503(t: TestDb) {
    let (dead, url) = unreachable(&t).await;
    let app = spawn_app_on(t, dead).await;

    let requests = [
        (
            Method::GET,
            "/hourly?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z",
            None,
        ),
        (Method::GET, "/minute", None),
        (Method::GET, "/daily?scope_type=endpoint", None),
        (Method::GET, "/scopes", None),
        (Method::GET, "/records", None),
        (Method::GET, "/status", None),
        (Method::GET, "/backfill", None),
        (Method::GET, "/backfill/1", None),
        (Method::POST, "/records", Some(fixture_records())),
        (Method::POST, "/aggregate?granularity=all", None),
        (
            Method::POST,
            "/backfill?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z",
            None,
        ),
        (Method::POST, "/backfill", Some(json!(null))),
    ];
    for (method, path, body) in requests {
        let mut r = app.request(method.clone(), path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        assert_eq!(
            res.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("5"),
            "{method} {path}"
        );
        let body = expect_error(res, 503, "unavailable").await;
        let text = body.to_string();
        for secret in ["127.0.0.1", "secret-pw", "nowhere.db", "root"] {
            assert!(
                !text.contains(secret),
                "{method} {path} leaks {secret}: {text} ({url})"
            );
        }
    }
    // Bad input is still a 400: it is refused before the database is asked.
    expect_error(
        app.get("/hourly?scope_type=nope").await,
        400,
        "invalid_parameter",
    )
    .await;

    expect_error(app.get_outside("/readyz").await, 503, "unavailable").await;
    let live = app.get_outside("/healthz").await;
    assert_eq!(
        live.status(),
        200,
        "liveness does not depend on the database"
    );
    app.finish().await;
}

both_backends!(outage_is_503,);
