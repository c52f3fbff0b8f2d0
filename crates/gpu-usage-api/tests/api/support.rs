//! `spawn_app`: the real server on port 0 over an isolated database, and a
//! reqwest client pointed at it.

use std::net::TcpListener;

use chrono::{DateTime, Utc};
use gpu_usage_api::{API_PREFIX, ApiOptions, Application};
use gpu_usage_core::aggregate::AggregateOptions;
use gpu_usage_core::clock::ManualClock;
use gpu_usage_core::settings::{ApiToken, Role, Settings};
use gpu_usage_core::types::parse_utc;
use gpu_usage_testing::TestDb;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

/// The instant the fixtures are written for: every default window, the
/// retention horizons and ingest's clock-skew check use it.
pub const NOW: &str = "2026-01-02T12:00:00Z";

pub const READ_TOKEN: &str = "read-token-0123456789";
pub const INGEST_TOKEN: &str = "ingest-token-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

pub fn t(s: &str) -> DateTime<Utc> {
    parse_utc("t", s).unwrap()
}

pub fn now() -> DateTime<Utc> {
    t(NOW)
}

pub fn settings() -> Settings {
    let mut s = Settings::load_with(&[]).unwrap();
    // Open (token-less) mode unless a test configures tokens.
    s.api.tokens.clear();
    s.api.read_token = None;
    s.api.ingest_token = None;
    s.api.admin_token = None;
    s.api.public_reads = true;
    s
}

/// Tokens of every role; reads need a token.
pub fn with_tokens(s: &mut Settings) {
    s.api.public_reads = false;
    s.api.tokens = vec![
        ApiToken {
            name: "dash".into(),
            role: Role::Read,
            token: SecretString::from(READ_TOKEN),
        },
        ApiToken {
            name: "ingestor".into(),
            role: Role::Ingest,
            token: SecretString::from(INGEST_TOKEN),
        },
    ];
    s.api.admin_token = Some(SecretString::from(ADMIN_TOKEN));
}

/// Tokens of every role, and reads open to callers without one.
pub fn with_public_reads(s: &mut Settings) {
    with_tokens(s);
    s.api.public_reads = true;
}

pub fn options() -> ApiOptions {
    ApiOptions {
        clock: std::sync::Arc::new(ManualClock::frozen(now())),
        workers: Some(1),
        aggregate: AggregateOptions {
            lock_wait: std::time::Duration::from_millis(200),
            ..AggregateOptions::default()
        },
        metrics: Vec::new(),
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub settings: Settings,
    handle: actix_web::dev::ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn spawn_app(db: TestDb) -> TestApp {
    spawn_app_with(db, |_, _| {}).await
}

pub async fn spawn_app_with(
    db: TestDb,
    configure: impl FnOnce(&mut Settings, &mut ApiOptions),
) -> TestApp {
    let pool = db.db.clone();
    spawn_on(db, pool, configure)
}

/// The app on another pool than the test database's (outage tests); `db`
/// is only cleaned up.
pub async fn spawn_app_on(db: TestDb, pool: sea_orm::DatabaseConnection) -> TestApp {
    spawn_on(db, pool, |_, _| {})
}

fn spawn_on(
    db: TestDb,
    pool: sea_orm::DatabaseConnection,
    configure: impl FnOnce(&mut Settings, &mut ApiOptions),
) -> TestApp {
    let mut settings = settings();
    let mut opts = options();
    configure(&mut settings, &mut opts);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = Application::build(&settings, pool, listener, opts).unwrap();
    let base = format!("http://{}", app.local_addr());
    let handle = app.handle();
    let server = tokio::spawn(app.into_server());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    TestApp {
        base,
        client,
        db,
        settings,
        handle,
        server,
    }
}

impl TestApp {
    /// `path` below the API prefix, e.g. `/hourly?scope_type=global`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{API_PREFIX}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// `method path` below the API prefix, with a bearer token and a JSON
    /// body if given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut r = self.request(method, path);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        r.send().await.unwrap()
    }

    /// POST of a raw body, with a `Content-Type` if given.
    pub async fn post_raw(&self, path: &str, body: &'static str, ct: Option<&str>) -> Response {
        let mut r = self.request(Method::POST, path).body(body);
        if let Some(ct) = ct {
            r = r.header("Content-Type", ct);
        }
        r.send().await.unwrap()
    }

    /// A GET of a path outside the API (probes, the dashboard, `/`), to
    /// add headers to.
    pub fn outside(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    /// GET of a path outside the API (probes, the dashboard, `/`).
    pub async fn get_outside(&self, path: &str) -> Response {
        self.outside(path).send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.get(path).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Asserts that the GET `path` lists nothing: a total of 0, no rows.
    pub async fn assert_nothing_listed(&self, path: &str) {
        let body = self.get_json(path).await;
        assert_eq!(body["total"], 0, "GET {path}: {body}");
        assert_eq!(body["data"], json!([]), "GET {path}: {body}");
    }

    /// Every page of the GET `path` (with a query string), following
    /// `next_cursor` (twenty at the most).
    pub async fn pages(&self, path: &str) -> Vec<Value> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let c = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
            let page = self.get_json(&format!("{path}{c}")).await;
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            pages.push(page);
            if cursor.is_none() {
                return pages;
            }
            assert!(pages.len() < 20, "pagination does not end");
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POST with no body at all, as the original dashboard's trigger
    /// buttons do.
    pub async fn post_empty(&self, path: &str) -> Response {
        self.request(Method::POST, path).send().await.unwrap()
    }

    /// Stores records through the API and checks they were all inserted.
    pub async fn ingest(&self, records: &Value) {
        let res = self.post_json("/records", records).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        let n = records.as_array().map(Vec::len).unwrap_or(1);
        assert_eq!(body["inserted"], n, "{body}");
    }

    /// Recomputes a range inline and checks it succeeded.
    pub async fn aggregate(&self, query: &str) -> Value {
        let res = self.post_empty(&format!("/aggregate?{query}")).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "aggregate {query}: {body}");
        body
    }

    /// Stops the server, then drops the database.
    pub async fn finish(self) {
        self.handle.stop(true).await;
        self.server.await.unwrap().unwrap();
        self.db.cleanup().await;
    }
}

/// Asserts the common error shape and returns the body.
pub async fn expect_error(res: Response, status: u16, code: &str) -> Value {
    let got = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct}: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(body["code"], code, "{body}");
    body
}

/// The record JSON a client posts, with only the required fields.
pub fn task(id: &str, ep: &str, gpus: u32, start: &str, end: &str, status: &str) -> Value {
    json!({"task_id": id, "endpoint": ep, "gpu_count": gpus,
        "started_at": start, "completed_at": end, "status": status})
}

/// The fixture: four tasks on 2026-01-01 whose statistics are worked out
/// by hand in `reads.rs`.
pub fn fixture_records() -> Value {
    json!([
        {"task_id": "t1", "endpoint": "ep-a", "spec_name": "a100", "worker_id": "w1", "gpu_count": 2,
         "gpu_type": "A100", "gpu_memory_gb": 80,
         "started_at": "2026-01-01T10:00:00Z", "completed_at": "2026-01-01T10:30:00Z", "status": "COMPLETED"},
        {"task_id": "t2", "endpoint": "ep-b", "spec_name": "h100", "gpu_count": 4,
         "started_at": "2026-01-01T10:15:00Z", "completed_at": "2026-01-01T11:15:00Z", "status": "FAILED"},
        {"task_id": "t3", "endpoint": "ep-a", "gpu_count": 1,
         "started_at": "2026-01-01T23:30:00Z", "completed_at": "2026-01-02T00:30:00Z", "status": "completed"},
        {"task_id": "t4", "endpoint": "ep-b", "spec_name": "a100", "gpu_count": 8,
         "started_at": "2026-01-01T11:00:00.000Z", "completed_at": "2026-01-01T11:00:30.500Z",
         "status": "COMPLETED"}
    ])
}

/// The app with the fixture ingested and every level recomputed over both
/// days.
pub async fn spawn_app_with_fixture(db: TestDb) -> TestApp {
    let app = spawn_app(db).await;
    app.ingest(&fixture_records()).await;
    app.aggregate("granularity=all&start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z")
        .await;
    // The default range: the last 24 hours before NOW.
    app.aggregate("granularity=all").await;
    app
}

/// `content-type` of a response.
pub fn content_type(res: &Response) -> &str {
    res.headers()["content-type"].to_str().unwrap()
}

/// `field` of every object in the JSON array `array`, read by `get`.
pub fn column<'a, T>(array: &'a Value, field: &str, get: fn(&'a Value) -> Option<T>) -> Vec<T> {
    array
        .as_array()
        .unwrap()
        .iter()
        .map(|item| get(&item[field]).unwrap_or_else(|| panic!("{field} of {item}")))
        .collect()
}

/// Generates `name::sqlite` and `name::mysql` for every `async fn
/// name(TestDb)` listed.
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        $(gpu_usage_testing::dual_backend_test!($name, super::$name);)+
    };
}
pub(crate) use both_backends;

/// (time_bucket, scope_value) of every row, in order.
pub fn keys(body: &Value) -> Vec<(String, Option<String>)> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["time_bucket"].as_str().unwrap().to_owned(),
                r["scope_value"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// One expected element of [`keys`].
pub fn k(bucket: &str, sv: Option<&str>) -> (String, Option<String>) {
    (bucket.to_owned(), sv.map(str::to_owned))
}

/// The expected [`keys`] of hourly rows on one `day` (`YYYY-MM-DD`), each
/// given as (hour, scope value), the way the fixtures are described.
pub fn hour_keys(day: &str, rows: &[(u32, &str)]) -> Vec<(String, Option<String>)> {
    rows.iter()
        .map(|&(hour, sv)| k(&format!("{day}T{hour:02}:00:00Z"), Some(sv)))
        .collect()
}
