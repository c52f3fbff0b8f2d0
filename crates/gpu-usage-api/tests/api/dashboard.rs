//! The built-in dashboard: `/` redirects to it, its embedded assets are
//! served with the right types and caching headers, and `GET /whoami` tells
//! the page who is calling. The page itself is tested in a browser by
//! `scripts/browser-tests.sh`.

use gpu_usage_testing::TestDb;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN, TestApp, both_backends, expect_error, spawn_app,
    spawn_app_with, with_public_reads, with_tokens,
};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn fetch(app: &TestApp, path: &str) -> reqwest::Response {
    no_redirects()
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap()
}

async fn fetch_if_none_match(app: &TestApp, path: &str, etag: &str) -> reqwest::Response {
    no_redirects()
        .get(format!("{}{path}", app.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap()
}

/// `path` is served with its type, no caching without revalidation and its
/// content; its ETag revalidates to a 304, another ETag gets the asset.
async fn assert_asset(app: &TestApp, path: &str, content_type: &str, needle: &str) {
    let res = fetch(app, path).await;
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], content_type, "{path}");
    assert_eq!(headers["cache-control"], "no-cache", "{path}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "{path}: {etag}"
    );
    let body = res.text().await.unwrap();
    assert!(body.contains(needle), "{path} lacks {needle:?}");

    // Revalidation answers 304 without a body.
    let res = fetch_if_none_match(app, path, &etag).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{path}");
    assert_eq!(res.headers()["etag"], etag.as_str());
    assert!(res.bytes().await.unwrap().is_empty());
    let res = fetch_if_none_match(app, path, "\"something-else\"").await;
    assert_eq!(res.status(), StatusCode::OK, "{path}");
}

async fn assets_and_redirect(db: TestDb) {
    // Reads need a token here: the page and its assets must not (the page
    // asks for the token itself).
    let app = spawn_app_with(db, |s, _| with_tokens(s)).await;

    let res = fetch(&app, "/").await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()["location"], "dashboard");

    let cases = [
        ("/dashboard", "text/html; charset=utf-8", "<title>GPU usage"),
        (
            "/dashboard/app.js",
            "text/javascript; charset=utf-8",
            "window.__dashboard",
        ),
        ("/dashboard/app.css", "text/css; charset=utf-8", ".cards"),
        (
            "/dashboard/vendor/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
            "uPlot (v1.6.32)",
        ),
        (
            "/dashboard/vendor/uPlot.min.css",
            "text/css; charset=utf-8",
            ".uplot",
        ),
        (
            "/dashboard/vendor/LICENSE",
            "text/plain; charset=utf-8",
            "The MIT License",
        ),
    ];
    for (path, content_type, needle) in cases {
        assert_asset(&app, path, content_type, needle).await;
    }

    // The page loads nothing from elsewhere and is locked to this origin.
    let res = fetch(&app, "/dashboard").await;
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = res.text().await.unwrap();
    let js = fetch(&app, "/dashboard/app.js").await.text().await.unwrap();
    for (name, text) in [("index.html", &html), ("app.js", &js)] {
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{name} must not refer to other hosts"
        );
    }
    for asset in [
        "dashboard/app.js",
        "dashboard/app.css",
        "dashboard/vendor/uPlot.iife.min.js",
        "dashboard/vendor/uPlot.min.css",
    ] {
        assert!(html.contains(asset), "index.html loads {asset}");
    }

    // Unknown files are a JSON 404, and only GET is served.
    let res = fetch(&app, "/dashboard/vendor/uPlot.esm.js").await;
    expect_error(res, 404, "not_found").await;
    let res = fetch(&app, "/dashboard/nope.js").await;
    expect_error(res, 404, "no_route").await;
    let res = no_redirects()
        .post(format!("{}/dashboard", app.base))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    app.finish().await;
}

async fn whoami_with_tokens(db: TestDb) {
    let app = spawn_app_with(db, |s, _| with_tokens(s)).await;
    let who = |token: Option<&'static str>| {
        let mut r = app.request(reqwest::Method::GET, "/whoami");
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    for (token, role, name) in [
        (READ_TOKEN, "read", "dash"),
        (INGEST_TOKEN, "ingest", "ingestor"),
        (ADMIN_TOKEN, "admin", "admin_token"),
    ] {
        let res = who(Some(token)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body, json!({"role": role, "name": name, "auth": "token"}));
        assert!(
            !body.to_string().contains(token),
            "the token is never echoed"
        );
    }
    // Reads need a token: so does whoami.
    let res = who(None).await.unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    expect_error(res, 401, "unauthorized").await;
    let body = expect_error(who(Some("not-a-token")).await.unwrap(), 401, "unauthorized").await;
    assert_eq!(body["error"], "the bearer token is not valid");
    app.finish().await;
}

async fn whoami_public_reads(db: TestDb) {
    let app = spawn_app_with(db, |s, _| with_public_reads(s)).await;
    let body = app.get_json("/whoami").await;
    assert_eq!(
        body,
        json!({"role": "read", "name": "anonymous", "auth": "anonymous"})
    );
    // A token still counts when sent, and a wrong one is refused.
    let res = app
        .request(reqwest::Method::GET, "/whoami")
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["role"], "admin");
    assert_eq!(body["auth"], "token");
    let res = app
        .request(reqwest::Method::GET, "/whoami")
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    expect_error(res, 401, "unauthorized").await;
    app.finish().await;
}

async fn whoami_open(db: TestDb) {
    // No token configured: the local first run, everyone is admin.
    let app = spawn_app(db).await;
    let body = app.get_json("/whoami").await;
    assert_eq!(body["role"], "admin");
    assert_eq!(body["auth"], "open");
    assert!(body["name"].as_str().is_some_and(|n| !n.is_empty()));
    // Following the redirect lands on the page.
    let res = app.get_outside("/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.url().path().ends_with("/dashboard"));
    app.finish().await;
}

both_backends!(
    assets_and_redirect,
    whoami_with_tokens,
    whoami_public_reads,
    whoami_open,
);
