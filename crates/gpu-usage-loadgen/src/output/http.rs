//! POSTing batches to the service, several requests in flight.
//!
//! Each batch is one JSON array to `<base><kind path>` with an optional
//! bearer token. A 503 or 429 is retried after its `Retry-After` (seconds;
//! 1 s when absent or unparsable, capped) a bounded number of times; any
//! other failure is counted by status and the batch given up. Sending never
//! fails as a whole: what happened is in the [`Report`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Batch, Report};
use crate::error::{Error, Result};

/// Where and how to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// The service's base URL, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    pub token: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Retries of one batch after 503/429.
    pub max_retries: u32,
    /// Longest `Retry-After` honoured.
    pub max_retry_wait: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080".to_owned(),
            token: None,
            concurrency: 4,
            max_retries: 5,
            max_retry_wait: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
        }
    }
}

/// How one batch ended.
#[derive(Debug, Default)]
struct Outcome {
    count: usize,
    ok: bool,
    attempts: Vec<(Duration, Option<String>)>,
    ingest: Option<(u64, u64, u64)>,
}

/// Sends batches with bounded concurrency; see the module docs.
pub struct HttpSender {
    client: reqwest::Client,
    base: String,
    opts: Arc<HttpOptions>,
    slots: Arc<Semaphore>,
    tasks: JoinSet<Outcome>,
    report: Report,
    started: Instant,
}

impl HttpSender {
    pub fn new(opts: HttpOptions) -> Result<Self> {
        if opts.concurrency == 0 {
            return Err(Error::Config("concurrency must be at least 1".to_owned()));
        }
        let client = reqwest::Client::builder().timeout(opts.timeout).build()?;
        Ok(Self {
            client,
            base: opts.base_url.trim_end_matches('/').to_owned(),
            slots: Arc::new(Semaphore::new(opts.concurrency)),
            opts: Arc::new(opts),
            tasks: JoinSet::new(),
            report: Report::default(),
            started: Instant::now(),
        })
    }

    /// Starts sending `batch` as soon as a request slot is free (waiting
    /// for one if need be).
    pub async fn send(&mut self, batch: Batch) {
        let permit = Arc::clone(&self.slots).acquire_owned().await;
        while let Some(done) = self.tasks.try_join_next() {
            self.absorb(done);
        }
        let url = format!("{}{}", self.base, batch.kind.path());
        let (client, opts) = (self.client.clone(), Arc::clone(&self.opts));
        self.tasks.spawn(async move {
            let outcome = post(&client, &url, &opts, batch).await;
            drop(permit);
            outcome
        });
    }

    /// The figures so far (batches still in flight not included).
    pub fn report(&self) -> Report {
        let mut r = self.report.clone();
        r.elapsed = self.started.elapsed();
        r
    }

    /// Waits for every batch in flight and returns the figures.
    pub async fn finish(mut self) -> Report {
        while let Some(done) = self.tasks.join_next().await {
            self.absorb(done);
        }
        self.report.elapsed = self.started.elapsed();
        self.report
    }

    fn absorb(&mut self, done: std::result::Result<Outcome, tokio::task::JoinError>) {
        let o = done.unwrap_or_else(|_| Outcome {
            attempts: vec![(Duration::ZERO, Some("panic".to_owned()))],
            ..Outcome::default()
        });
        let r = &mut self.report;
        r.requests += o.attempts.len() as u64;
        r.retries += o.attempts.len().saturating_sub(1) as u64;
        for (latency, error) in o.attempts {
            r.latency(latency);
            if let Some(e) = error {
                r.error(e);
            }
        }
        if o.ok {
            r.items_ok += o.count as u64;
        } else {
            r.items_failed += o.count as u64;
        }
        if let Some((inserted, duplicates, conflicts)) = o.ingest {
            r.inserted += inserted;
            r.duplicates += duplicates;
            r.conflicts += conflicts;
        }
    }
}

/// The wait a 503/429 asks for.
fn retry_after(res: &reqwest::Response, cap: Duration) -> Duration {
    res.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
        .min(cap)
}

/// `inserted`, `duplicates` and `conflicts` (a count or a list) of an
/// ingest response, when it has them.
fn ingest_counts(body: &[u8]) -> Option<(u64, u64, u64)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let n = |k: &str| match v.get(k) {
        Some(serde_json::Value::Array(a)) => Some(a.len() as u64),
        Some(x) => x.as_u64(),
        None => None,
    };
    let inserted = n("inserted")?;
    Some((
        inserted,
        n("duplicates").unwrap_or(0),
        n("conflicts").unwrap_or(0),
    ))
}

async fn post(client: &reqwest::Client, url: &str, opts: &HttpOptions, batch: Batch) -> Outcome {
    let mut outcome = Outcome {
        count: batch.count,
        ..Outcome::default()
    };
    loop {
        let mut req = client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(batch.body.clone());
        if let Some(t) = &opts.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let sent = Instant::now();
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) => {
                let cause = if e.is_timeout() {
                    "timeout"
                } else {
                    "transport"
                };
                outcome
                    .attempts
                    .push((sent.elapsed(), Some(cause.to_owned())));
                return outcome;
            }
        };
        let status = res.status();
        let retryable = matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        );
        let wait = retry_after(&res, opts.max_retry_wait);
        let body = res.bytes().await.unwrap_or_default();
        let latency = sent.elapsed();
        if status.is_success() {
            outcome.attempts.push((latency, None));
            outcome.ok = true;
            outcome.ingest = ingest_counts(&body);
            return outcome;
        }
        outcome
            .attempts
            .push((latency, Some(status.as_u16().to_string())));
        if !retryable || outcome.attempts.len() > opts.max_retries as usize {
            return outcome;
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_counts_read_numbers_or_lists() {
        let body = br#"{"received":3,"inserted":2,"duplicates":1,"conflicts":[]}"#;
        assert_eq!(ingest_counts(body), Some((2, 1, 0)));
        let body = br#"{"inserted":1,"conflicts":[{"index":0}]}"#;
        assert_eq!(ingest_counts(body), Some((1, 0, 1)));
        assert_eq!(ingest_counts(b"not json"), None);
        assert_eq!(ingest_counts(br#"{"stored":5}"#), None);
    }
}
