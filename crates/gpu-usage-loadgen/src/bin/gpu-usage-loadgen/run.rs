//! The batch commands: generate a range and write or send it.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use gpu_usage_loadgen::Kind;
use gpu_usage_loadgen::load_data::{CsvWriter, load_data_statement};
use gpu_usage_loadgen::output::http::{HttpOptions, HttpSender};
use gpu_usage_loadgen::output::redis::{RedisOptions, RedisSender};
use gpu_usage_loadgen::output::{Batch, Item, Report, chunks, write_json_line};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use crate::cli::Setup;

/// Runs `$body` with `$items` bound to the iterator of the setup's kind.
macro_rules! with_items {
    ($setup:expr, $items:ident => $body:expr) => {{
        let s = &$setup;
        let limit = usize::try_from(s.limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
        match s.kind {
            Kind::Records => {
                let $items = s.generator.records(s.range).take(limit);
                $body
            }
            Kind::Sessions => {
                let $items = s.generator.sessions(s.range).take(limit);
                $body
            }
            Kind::Heartbeats => {
                let $items = s.generator.heartbeats(s.range, s.interval)?.take(limit);
                $body
            }
        }
    }};
}

/// Progress for a stderr that is not a terminal (a log): one line a
/// second instead of a bar redrawn in place.
#[derive(Debug)]
struct LogLines;

impl TermLike for LogLines {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write_str(s)
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        if !s.trim().is_empty() {
            writeln!(io::stderr(), "{s}")?;
        }
        Ok(())
    }
    fn clear_line(&self) -> io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Where progress goes: stderr when it is a terminal; with `--progress`
/// also when it is not (as a line a second); else nowhere.
pub fn draw_target(force: bool) -> Option<ProgressDrawTarget> {
    if io::stderr().is_terminal() {
        Some(ProgressDrawTarget::stderr())
    } else if force {
        Some(ProgressDrawTarget::term_like_with_hz(Box::new(LogLines), 1))
    } else {
        None
    }
}

/// A bar (with the expected total) or a counter (without one).
pub fn progress_bar(force: bool, expected: Option<u64>) -> ProgressBar {
    let Some(target) = draw_target(force) else {
        return ProgressBar::hidden();
    };
    let template = if expected.is_some() {
        "{elapsed_precise} [{wide_bar}] {human_pos}/~{human_len} ({per_sec}) {msg}"
    } else {
        "{elapsed_precise} {spinner} {human_pos} ({per_sec}) {msg}"
    };
    let bar = ProgressBar::with_draw_target(expected, target);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

fn expected(setup: &Setup) -> Option<u64> {
    let n = match setup.kind {
        Kind::Records => setup.generator.expected_records(setup.range),
        _ => return None,
    };
    Some(setup.limit.map_or(n as u64, |l| l.min(n as u64)))
}

fn open_out(out: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match out {
        Some(p) => Box::new(BufWriter::with_capacity(
            1 << 16,
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 16, std::io::stdout().lock())),
    })
}

fn done(what: &str, n: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{n} {what} in {secs:.2} s ({:.0}/s)",
        n as f64 / secs.max(1e-9)
    );
}

pub fn jsonl(setup: &Setup, out: Option<&Path>) -> anyhow::Result<()> {
    let mut w = open_out(out)?;
    let bar = progress_bar(setup.progress, expected(setup));
    let started = Instant::now();
    let mut n = 0u64;
    with_items!(setup, items => {
        for item in items {
            write_json_line(&mut w, &item)?;
            n += 1;
            bar.inc(1);
        }
    });
    w.flush()?;
    bar.finish_and_clear();
    done("items written", n, started);
    Ok(())
}

pub fn csv(setup: &Setup, out: Option<&Path>) -> anyhow::Result<()> {
    if setup.kind != Kind::Records {
        bail!("csv writes records only (gpu_usage_records); use jsonl for sessions and heartbeats");
    }
    let mut w = CsvWriter::new(open_out(out)?)?;
    let bar = progress_bar(setup.progress, expected(setup));
    let started = Instant::now();
    let mut n = 0u64;
    let limit = usize::try_from(setup.limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    for r in setup.generator.records(setup.range).take(limit) {
        w.write(&r)?;
        n += 1;
        bar.inc(1);
    }
    w.finish()?.flush()?;
    bar.finish_and_clear();
    done("records written", n, started);
    if let Some(p) = out {
        eprintln!(
            "\nload it with:\n{}",
            load_data_statement(&p.display().to_string())
        );
    }
    Ok(())
}

/// Where [`send_all`] delivers: a sender of the library's outputs.
trait Sink {
    async fn send_chunk<T: Item>(&mut self, chunk: &[T]) -> anyhow::Result<()>;
    async fn finish(self) -> Report;
}

impl Sink for HttpSender {
    async fn send_chunk<T: Item>(&mut self, chunk: &[T]) -> anyhow::Result<()> {
        self.send(Batch::json_array(chunk)?).await;
        Ok(())
    }

    async fn finish(self) -> Report {
        HttpSender::finish(self).await
    }
}

impl Sink for RedisSender {
    async fn send_chunk<T: Item>(&mut self, chunk: &[T]) -> anyhow::Result<()> {
        Ok(self.send(chunk).await?)
    }

    async fn finish(self) -> Report {
        RedisSender::finish(self)
    }
}

/// Delivers `items` to `sink` in chunks of `batch`, counting them on `bar`.
async fn send_all<T: Item>(
    mut sink: impl Sink,
    items: impl Iterator<Item = T>,
    batch: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Report> {
    for chunk in chunks(items, batch) {
        sink.send_chunk(&chunk).await?;
        bar.inc(chunk.len() as u64);
    }
    Ok(sink.finish().await)
}

/// Prints the report; an error when nothing was taken.
fn conclude(bar: &ProgressBar, report: &Report, refused: &str) -> anyhow::Result<()> {
    bar.finish_and_clear();
    eprintln!("{report}");
    if report.items_ok == 0 && report.items_failed > 0 {
        bail!("{refused}");
    }
    Ok(())
}

pub async fn http(setup: &Setup, opts: HttpOptions, batch: usize) -> anyhow::Result<()> {
    let bar = progress_bar(setup.progress, expected(setup));
    let report =
        with_items!(setup, items => send_all(HttpSender::new(opts)?, items, batch, &bar).await?);
    conclude(&bar, &report, "nothing was accepted")
}

pub async fn redis(setup: &Setup, opts: RedisOptions, batch: usize) -> anyhow::Result<()> {
    let bar = progress_bar(setup.progress, expected(setup));
    let report =
        with_items!(setup, items => send_all(RedisSender::new(opts)?, items, batch, &bar).await?);
    conclude(&bar, &report, "nothing was added")
}
