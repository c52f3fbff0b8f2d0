//! `steady`: a live load test. Records of the range [now, now + duration)
//! are sent as they complete, in batches flushed when full or when the
//! oldest has waited `--flush-ms`; Ctrl-C stops early and still reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::Utc;
use gpu_usage_loadgen::output::http::HttpSender;
use gpu_usage_loadgen::output::redis::{RedisOptions, RedisSender};
use gpu_usage_loadgen::output::{Batch, Report};
use gpu_usage_loadgen::{Generator, Record, TimeRange};
use tokio::sync::Notify;
use tokio::time::sleep_until;

use crate::cli::{SteadyArgs, entry_format};
use indicatif::{ProgressBar, ProgressStyle};

use crate::run::draw_target;

struct Sinks {
    http: Option<HttpSender>,
    redis: Option<RedisSender>,
    sent: u64,
}

impl Sinks {
    fn open(args: &SteadyArgs) -> anyhow::Result<Self> {
        let redis = args.redis_url.as_ref().map(|url| {
            RedisSender::new(RedisOptions {
                url: url.clone(),
                stream: args.stream.clone(),
                format: entry_format(args.fields),
                max_len: None,
            })
        });
        Ok(Self {
            http: (!args.no_http)
                .then(|| HttpSender::new(args.http.options()))
                .transpose()?,
            redis: redis.transpose()?,
            sent: 0,
        })
    }

    /// Waits for what is in flight, prints the figures, and fails when
    /// records were sent and none accepted.
    async fn finish(self) -> anyhow::Result<()> {
        let mut accepted = 0;
        if let Some(h) = self.http {
            let r = h.finish().await;
            accepted += r.items_ok;
            eprintln!("http: {r}");
        }
        if let Some(r) = self.redis {
            let r = r.finish();
            accepted += r.items_ok;
            eprintln!("redis: {r}");
        }
        if accepted == 0 && self.sent > 0 {
            bail!("nothing was accepted");
        }
        Ok(())
    }

    async fn flush(&mut self, pending: &mut Vec<Record>) -> anyhow::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        if let Some(h) = &mut self.http {
            h.send(Batch::json_array(pending)?).await;
        }
        if let Some(r) = &mut self.redis {
            r.send(pending).await?;
        }
        self.sent += pending.len() as u64;
        pending.clear();
        Ok(())
    }

    fn errors(&self) -> u64 {
        let count = |r: Report| r.errors.values().sum::<u64>();
        self.http.as_ref().map_or(0, |h| count(h.report()))
            + self.redis.as_ref().map_or(0, |r| count(r.report()))
    }
}

/// Set by Ctrl-C; `nap` wakes up early for it.
struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    fn on_ctrl_c() -> Arc<Stop> {
        let stop = Arc::new(Stop {
            flag: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let s = Arc::clone(&stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                s.flag.store(true, Ordering::Relaxed);
                s.notify.notify_one();
            }
        });
        stop
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Sleeps until `until`, or until Ctrl-C.
    async fn nap(&self, until: Instant) {
        tokio::select! {
            () = sleep_until(until.into()) => {}
            () = self.notify.notified() => {}
        }
    }
}

pub async fn steady(args: &SteadyArgs) -> anyhow::Result<()> {
    let start = Utc::now();
    let rate = args.fleet.rate.unwrap_or(1.0);
    let end = start + chrono::Duration::from_std(args.duration)?;
    let range = TimeRange::new(start, end)?;
    let generator = Generator::new(args.fleet.config(rate, 0.0, end))?;
    let mut sinks = Sinks::open(args)?;
    let t0 = Instant::now();
    // A bar only on long runs (on a terminal, or with --progress).
    let bar = match draw_target(args.fleet.progress) {
        Some(target) if args.duration >= Duration::from_secs(30) => {
            let bar = ProgressBar::with_draw_target(Some(args.duration.as_secs()), target);
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} s {msg}")
            {
                bar.set_style(style);
            }
            bar
        }
        _ => ProgressBar::hidden(),
    };
    let tick = |sinks: &Sinks| {
        bar.set_position(t0.elapsed().as_secs());
        bar.set_message(format!("sent {}, errors {}", sinks.sent, sinks.errors()));
    };
    let stop = Stop::on_ctrl_c();
    let flush = Duration::from_millis(args.flush_ms.max(1));
    let batch = args.http.batch.max(1);
    let mut pending: Vec<Record> = Vec::with_capacity(batch);
    let mut oldest: Option<Instant> = None;
    let mut records = generator.records(range).peekable();
    while !stop.is_set() {
        let Some(next) = records.peek() else { break };
        let offset = (next.completed_at - start).to_std().unwrap_or_default();
        let due = t0 + offset;
        if let Some(deadline) = oldest.map(|t| t + flush)
            && deadline < due
        {
            stop.nap(deadline).await;
            sinks.flush(&mut pending).await?;
            oldest = None;
            tick(&sinks);
            continue;
        }
        if due > Instant::now() + Duration::from_millis(1) {
            stop.nap(due).await;
            if stop.is_set() {
                break;
            }
        }
        pending.extend(records.next());
        oldest.get_or_insert(due);
        if pending.len() >= batch {
            sinks.flush(&mut pending).await?;
            oldest = None;
            tick(&sinks);
        }
    }
    sinks.flush(&mut pending).await?;
    bar.finish_and_clear();
    if stop.is_set() {
        eprintln!("stopped early after {:.1} s", t0.elapsed().as_secs_f64());
    }
    sinks.finish().await
}
