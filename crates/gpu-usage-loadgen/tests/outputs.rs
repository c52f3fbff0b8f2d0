//! Wire formats: the record JSON, CSV rows for LOAD DATA, stream entries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use gpu_usage_loadgen::load_data::{COLUMNS, CsvWriter, load_data_statement};
use gpu_usage_loadgen::output::{EntryFormat, stream_entry};
use gpu_usage_loadgen::{Config, Generator, Record, Session, Status, TimeRange, WorkerIdentity};

fn t(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_793_577_600_000 + ms).unwrap() // 2026-11-02T00:00:00Z
}

fn record(gpu_count: u32, duration_ms: i64) -> Record {
    Record {
        task_id: "t-1".into(),
        endpoint: "flux-dev".into(),
        worker_id: Some("flux-dev-w000".into()),
        spec_name: None,
        gpu_count,
        gpu_type: Some("A100".into()),
        gpu_memory_gb: Some(80),
        started_at: t(0),
        completed_at: t(duration_ms),
        status: Status::Failed,
        created_at: t(duration_ms + 1_500),
    }
}

#[test]
fn record_json_is_the_ingest_wire_format() {
    let json = serde_json::to_string(&record(2, 61_250)).unwrap();
    assert_eq!(
        json,
        r#"{"task_id":"t-1","endpoint":"flux-dev","worker_id":"flux-dev-w000","gpu_count":2,"gpu_type":"A100","gpu_memory_gb":80,"started_at":"2026-11-02T00:00:00.000Z","completed_at":"2026-11-02T00:01:01.250Z","status":"FAILED"}"#
    );
}

#[test]
fn gpu_hours_round_half_away_from_zero_and_seconds_floor() {
    let cases = [
        (1, 1, "0.000000", 0),     // 0.000000277…
        (1, 1_800, "0.000500", 1), // exact
        (1, 9, "0.000003", 0),     // 0.0000025: the half rounds up
        (8, 3_600_000, "8.000000", 3_600),
        (2, 5_399, "0.002999", 5), // 0.0029994…
        (0, 90_000, "0.000000", 90),
    ];
    for (gpus, ms, hours, secs) in cases {
        let r = record(gpus, ms);
        assert_eq!(r.gpu_hours_text(), hours, "{gpus} GPUs × {ms} ms");
        assert_eq!(r.duration_seconds(), secs);
    }
}

#[test]
fn csv_rows_round_trip_through_a_csv_reader() {
    let range = TimeRange::new(t(0), t(86_400_000)).unwrap();
    let g = Generator::new(Config {
        rate: 0.05,
        ..Config::default()
    })
    .unwrap();
    let records: Vec<Record> = g.records(range).collect();
    let mut w = CsvWriter::new(Vec::new()).unwrap();
    for r in &records {
        w.write(r).unwrap();
    }
    let bytes = w.finish().unwrap();
    assert!(
        !bytes.contains(&b'"') && !bytes.contains(&b'\r'),
        "nothing quoted, LF only"
    );

    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), records.len());
    let ts = |s: &str| {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.3f")
            .unwrap()
            .and_utc()
    };
    let mut nulls = 0;
    for (row, r) in rows.iter().zip(&records) {
        assert_eq!(row.len(), 13);
        assert_eq!(&row[0], r.task_id);
        assert_eq!(&row[1], r.endpoint);
        match &r.spec_name {
            Some(s) => assert_eq!(&row[3], s),
            None => {
                assert_eq!(&row[3], "\\N");
                nulls += 1;
            }
        }
        assert_eq!(row[4].parse::<u32>().unwrap(), r.gpu_count);
        assert_eq!(ts(&row[7]), r.started_at);
        assert_eq!(ts(&row[8]), r.completed_at);
        assert_eq!(row[9].parse::<i64>().unwrap(), r.duration_ms() / 1000);
        let hours: f64 = row[10].parse().unwrap();
        let exact = f64::from(r.gpu_count) * r.duration_ms() as f64 / 3.6e6;
        assert!((hours - exact).abs() <= 5.000_01e-7, "{hours} vs {exact}");
        assert_eq!(row[10].split('.').nth(1).map(str::len), Some(6));
        assert!(matches!(&row[11], "COMPLETED" | "FAILED"));
        assert_eq!(ts(&row[12]), r.created_at);
    }
    assert!(nulls > 0, "the no-spec case is in the file");
}

#[test]
fn load_data_statement_names_every_column() {
    let sql = load_data_statement("/tmp/week.csv");
    assert!(sql.starts_with("LOAD DATA LOCAL INFILE '/tmp/week.csv'"));
    assert!(sql.contains("IGNORE 1 LINES"));
    assert!(sql.contains("ESCAPED BY '\\\\'"));
    assert!(sql.ends_with(&format!("({});", COLUMNS.join(", "))));
}

/// The fields the worker's stream consumer reads.
const CONSUMER_FIELDS: &str = "task_id endpoint worker_id spec_name gpu_count gpu_type gpu_memory_gb started_at completed_at status";

#[test]
fn stream_entries() {
    let r = record(1, 1_000);
    let json = stream_entry(&r, EntryFormat::Json).unwrap();
    assert_eq!(json, vec![("record", serde_json::to_string(&r).unwrap())]);
    let fields = stream_entry(&r, EntryFormat::Fields).unwrap();
    assert!(
        fields
            .iter()
            .all(|(k, _)| CONSUMER_FIELDS.split(' ').any(|c| c == *k))
    );
    assert!(
        !fields.iter().any(|(k, _)| *k == "spec_name"),
        "absent, not empty"
    );
    assert!(fields.contains(&("completed_at", "2026-11-02T00:00:01.000Z".to_owned())));

    let s = Session {
        worker: WorkerIdentity {
            worker_id: "w".into(),
            endpoint: "e".into(),
            spec_name: Some("a100-80g".into()),
            gpu_type: Some("A100".into()),
            gpu_count: 4,
        },
        started_at: t(0),
        ended_at: None,
    };
    let entry = stream_entry(&s, EntryFormat::Json).unwrap();
    assert_eq!(entry[0], ("kind", "session".to_owned()));
    assert_eq!(entry[1].0, "session");
    assert!(entry[1].1.contains(r#""ended_at":null"#));
    let fields = stream_entry(&s, EntryFormat::Fields).unwrap();
    assert_eq!(fields[0], ("kind", "session".to_owned()));
    assert!(fields.contains(&("gpu_count", "4".to_owned())));
    assert!(!fields.iter().any(|(k, _)| *k == "ended_at"));
}
