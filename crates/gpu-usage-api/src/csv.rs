//! CSV rendering of statistics pages (RFC 4180: comma-separated, CRLF,
//! quoted where needed, a header row). Nulls are empty cells.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::dto::{DailyRow, HourlyRow, MinuteRow};

pub trait CsvRow {
    const HEADER: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

pub fn render<R: CsvRow>(rows: &[R]) -> String {
    let mut out = String::with_capacity(64 * (rows.len() + 1));
    push_line(&mut out, R::HEADER.iter().map(|h| (*h).to_owned()));
    for r in rows {
        push_line(&mut out, r.cells().into_iter());
    }
    out
}

fn push_line(out: &mut String, cells: impl Iterator<Item = String>) {
    for (i, c) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(&c));
    }
    out.push_str("\r\n");
}

fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

/// Names come from clients; a leading `=`, `+`, `-` or `@` would run as a
/// formula when the file is opened in a spreadsheet.
fn text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

fn opt_text(s: &Option<String>) -> String {
    s.as_deref().map(text).unwrap_or_default()
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn opt_time(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(time).unwrap_or_default()
}

fn opt_num(v: &Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

impl CsvRow for MinuteRow {
    const HEADER: &'static [&'static str] = &[
        "time_bucket",
        "scope_type",
        "scope_value",
        "total_tasks",
        "completed_tasks",
        "failed_tasks",
        "total_gpu_seconds",
        "total_gpu_hours",
        "avg_gpu_count",
        "max_gpu_count",
        "period_start",
        "period_end",
        "updated_at",
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            time(&self.time_bucket),
            self.scope_type.clone(),
            opt_text(&self.scope_value),
            self.total_tasks.to_string(),
            self.completed_tasks.to_string(),
            self.failed_tasks.to_string(),
            self.total_gpu_seconds.to_string(),
            self.total_gpu_hours.to_string(),
            self.avg_gpu_count.to_string(),
            self.max_gpu_count.to_string(),
            time(&self.period_start),
            time(&self.period_end),
            time(&self.updated_at),
        ]
    }
}

impl CsvRow for HourlyRow {
    const HEADER: &'static [&'static str] = &[
        "time_bucket",
        "scope_type",
        "scope_value",
        "total_tasks",
        "completed_tasks",
        "failed_tasks",
        "total_gpu_hours",
        "avg_gpu_count",
        "max_gpu_count",
        "peak_minute",
        "peak_gpu_hours",
        "period_start",
        "period_end",
        "updated_at",
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            time(&self.time_bucket),
            self.scope_type.clone(),
            opt_text(&self.scope_value),
            self.total_tasks.to_string(),
            self.completed_tasks.to_string(),
            self.failed_tasks.to_string(),
            self.total_gpu_hours.to_string(),
            self.avg_gpu_count.to_string(),
            self.max_gpu_count.to_string(),
            opt_time(&self.peak_minute),
            opt_num(&self.peak_gpu_hours),
            time(&self.period_start),
            time(&self.period_end),
            time(&self.updated_at),
        ]
    }
}

impl CsvRow for DailyRow {
    const HEADER: &'static [&'static str] = &[
        "time_bucket",
        "scope_type",
        "scope_value",
        "total_tasks",
        "completed_tasks",
        "failed_tasks",
        "total_gpu_hours",
        "avg_gpu_count",
        "max_gpu_count",
        "peak_hour",
        "peak_gpu_hours",
        "available_gpu_hours",
        "utilization_rate",
        "period_start",
        "period_end",
        "updated_at",
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            time(&self.time_bucket),
            self.scope_type.clone(),
            opt_text(&self.scope_value),
            self.total_tasks.to_string(),
            self.completed_tasks.to_string(),
            self.failed_tasks.to_string(),
            self.total_gpu_hours.to_string(),
            self.avg_gpu_count.to_string(),
            self.max_gpu_count.to_string(),
            opt_time(&self.peak_hour),
            opt_num(&self.peak_gpu_hours),
            opt_num(&self.available_gpu_hours),
            opt_num(&self.utilization_rate),
            time(&self.period_start),
            time(&self.period_end),
            time(&self.updated_at),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_formula_guard() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(text("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(text("llama-70b"), "llama-70b");
    }
}
