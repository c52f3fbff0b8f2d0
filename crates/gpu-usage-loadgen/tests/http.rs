//! The HTTP output against a tiny local server: batching, the bearer token,
//! concurrency, 503 retries with Retry-After, and the figures reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gpu_usage_loadgen::output::http::{HttpOptions, HttpSender};
use gpu_usage_loadgen::output::{Batch, chunks};
use gpu_usage_loadgen::{Config, Generator, Record, TimeRange};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the server saw.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    records: AtomicUsize,
    paths: Mutex<Vec<String>>,
    auth: Mutex<Vec<String>>,
}

/// Answers request number `n` (from 0): status, extra headers, body.
type Answer = fn(usize) -> (u16, &'static str, String);

async fn serve_one(stream: TcpStream, seen: Arc<Seen>, answer: Answer) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "authorization" => seen.auth.lock().unwrap().push(v.trim().to_owned()),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let n = seen.requests.fetch_add(1, Ordering::SeqCst);
        seen.paths.lock().unwrap().push(path);
        let (status, headers, reply) = answer(n);
        if status == 200 {
            let items: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            seen.records.fetch_add(items.len(), Ordering::SeqCst);
        }
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{headers}\r\n",
            reply.len()
        );
        reader.get_mut().write_all(head.as_bytes()).await?;
        reader.get_mut().write_all(reply.as_bytes()).await?;
    }
}

/// Starts the server; returns its base URL.
async fn server(seen: Arc<Seen>, answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_one(stream, Arc::clone(&seen), answer));
        }
    });
    format!("http://{addr}")
}

fn records(n: usize) -> Vec<Record> {
    let g = Generator::new(Config {
        rate: 50.0,
        daily_cycle: 0.0,
        ..Config::default()
    })
    .unwrap();
    let range = TimeRange::new(
        "2026-11-02T00:00:00Z".parse().unwrap(),
        "2026-11-02T01:00:00Z".parse().unwrap(),
    )
    .unwrap();
    g.records(range).take(n).collect()
}

async fn send_all(
    base: String,
    items: Vec<Record>,
    batch: usize,
) -> gpu_usage_loadgen::output::Report {
    let mut sender = HttpSender::new(HttpOptions {
        base_url: base,
        token: Some("s3cret".into()),
        concurrency: 3,
        ..HttpOptions::default()
    })
    .unwrap();
    for chunk in chunks(items.into_iter(), batch) {
        sender.send(Batch::json_array(&chunk).unwrap()).await;
    }
    sender.finish().await
}

/// `n` records sent in batches of `batch` to a server answering with
/// `answer`: what the server saw and what the sender reports.
async fn serve_and_send(
    answer: Answer,
    n: usize,
    batch: usize,
) -> (Arc<Seen>, gpu_usage_loadgen::output::Report) {
    let seen = Arc::new(Seen::default());
    let base = server(Arc::clone(&seen), answer).await;
    let report = send_all(base, records(n), batch).await;
    (seen, report)
}

fn ok(_: usize) -> (u16, &'static str, String) {
    (
        200,
        "",
        r#"{"received":1000,"inserted":1000,"duplicates":0,"conflicts":[]}"#.into(),
    )
}

#[tokio::test]
async fn batches_reach_the_server_with_the_token() {
    let (seen, report) = serve_and_send(ok, 2_500, 1_000).await;
    assert_eq!(seen.records.load(Ordering::SeqCst), 2_500);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
    let all_are =
        |seen: &Mutex<Vec<String>>, want: &str| seen.lock().unwrap().iter().all(|s| s == want);
    assert!(all_are(&seen.paths, "/api/v1/gpu-usage/records"));
    assert!(all_are(&seen.auth, "Bearer s3cret"));
    assert_eq!(report.requests, 3);
    assert_eq!(report.items_ok, 2_500);
    assert_eq!(report.items_failed, 0);
    assert!(report.errors.is_empty());
    assert_eq!(report.inserted, 3_000, "summed from the responses");
    assert!(report.percentile(0.5).is_some() && report.percentile(0.99).is_some());
}

fn unavailable_twice(n: usize) -> (u16, &'static str, String) {
    if n < 2 {
        (
            503,
            "retry-after: 0\r\n",
            r#"{"error":"database unavailable"}"#.into(),
        )
    } else {
        ok(n)
    }
}

#[tokio::test]
async fn a_503_is_retried_after_its_retry_after() {
    let (seen, report) = serve_and_send(unavailable_twice, 10, 1_000).await;
    assert_eq!(seen.records.load(Ordering::SeqCst), 10);
    assert_eq!(report.requests, 3);
    assert_eq!(report.retries, 2);
    assert_eq!(report.items_ok, 10);
    assert_eq!(report.errors.get("503"), Some(&2));
}

fn unprocessable(_: usize) -> (u16, &'static str, String) {
    (422, "", r#"{"error":"invalid records"}"#.into())
}

#[tokio::test]
async fn other_errors_are_counted_by_status_and_not_retried() {
    let (seen, report) = serve_and_send(unprocessable, 1_200, 500).await;
    assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
    assert_eq!(report.items_ok, 0);
    assert_eq!(report.items_failed, 1_200);
    assert_eq!(report.errors.get("422"), Some(&3));
    assert_eq!(report.retries, 0);
}

#[tokio::test]
async fn an_unreachable_service_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let report = send_all(base, records(5), 1_000).await;
    assert_eq!(report.items_failed, 5);
    assert_eq!(report.errors.get("transport"), Some(&1));
}
