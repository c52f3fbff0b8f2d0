//! CSV for MySQL / MariaDB `LOAD DATA LOCAL INFILE` into
//! `gpu_usage_records`.
//!
//! One header line, then one row per record, columns in [`COLUMNS`]
//! order; NULL as `\N`; timestamps `YYYY-MM-DD HH:MM:SS.mmm` (UTC, as the
//! service stores them); `duration_seconds` floored; `gpu_hours` with six
//! decimals rounded half away from zero, exactly as ingest derives them.
//! Generated names never hold a comma, quote or backslash, so no field is
//! ever quoted or escaped. Load it with [`load_data_statement`]:
//!
//! ```sql
//! LOAD DATA LOCAL INFILE 'records.csv'
//! INTO TABLE gpu_usage_records
//! CHARACTER SET utf8mb4
//! FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' ESCAPED BY '\\'
//! LINES TERMINATED BY '\n'
//! IGNORE 1 LINES
//! (task_id, endpoint, worker_id, spec_name, gpu_count, gpu_type, gpu_memory_gb,
//!  started_at, completed_at, duration_seconds, gpu_hours, status, created_at);
//! ```
//!
//! Rows loaded this way bypass ingest, so nothing queues them for the
//! rollups: run a backfill over the loaded range afterwards.

use std::io::Write;

use crate::error::Result;
use crate::records::Record;
use crate::time::mysql_datetime;

/// The columns, in file order.
pub const COLUMNS: [&str; 13] = [
    "task_id",
    "endpoint",
    "worker_id",
    "spec_name",
    "gpu_count",
    "gpu_type",
    "gpu_memory_gb",
    "started_at",
    "completed_at",
    "duration_seconds",
    "gpu_hours",
    "status",
    "created_at",
];

/// NULL in `LOAD DATA` with `ESCAPED BY '\\'`.
pub const NULL: &str = "\\N";

/// The `LOAD DATA` statement for a file written by [`CsvWriter`] (with its
/// header line).
pub fn load_data_statement(path: &str) -> String {
    let path = path.replace('\\', "\\\\").replace('\'', "\\'");
    format!(
        "LOAD DATA LOCAL INFILE '{path}'\n\
         INTO TABLE gpu_usage_records\n\
         CHARACTER SET utf8mb4\n\
         FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\'\n\
         LINES TERMINATED BY '\\n'\n\
         IGNORE 1 LINES\n\
         ({});",
        COLUMNS.join(", ")
    )
}

/// One record as the CSV row's fields.
pub fn row(r: &Record) -> [String; 13] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| NULL.to_owned());
    [
        r.task_id.clone(),
        r.endpoint.clone(),
        opt(&r.worker_id),
        opt(&r.spec_name),
        r.gpu_count.to_string(),
        opt(&r.gpu_type),
        r.gpu_memory_gb
            .map_or_else(|| NULL.to_owned(), |m| m.to_string()),
        mysql_datetime(r.started_at),
        mysql_datetime(r.completed_at),
        r.duration_seconds().to_string(),
        r.gpu_hours_text(),
        r.status.as_str().to_owned(),
        mysql_datetime(r.created_at),
    ]
}

/// Writes the header, then rows.
pub struct CsvWriter<W: Write> {
    inner: csv::Writer<W>,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W) -> Result<Self> {
        let mut inner = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(out);
        inner.write_record(COLUMNS)?;
        Ok(Self { inner })
    }

    pub fn write(&mut self, r: &Record) -> Result<()> {
        self.inner.write_record(row(r))?;
        Ok(())
    }

    /// Flushes and hands the output back.
    pub fn finish(self) -> Result<W> {
        self.inner
            .into_inner()
            .map_err(|e| crate::Error::Io(e.into_error()))
    }
}
