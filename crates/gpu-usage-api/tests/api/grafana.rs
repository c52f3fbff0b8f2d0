//! The Grafana dashboard `deploy/grafana/gpu-usage.json` against the real
//! service.
//!
//! - Every SQL query in it (panels and template variables) is interpolated
//!   the way Grafana's MySQL data source does it — template variables first,
//!   as the browser does (`interpolateVariable`: one value escaped, several
//!   values or Include All quoted and comma-joined), then the backend's
//!   macros (`pkg/tsdb/mysql/macros.go`) — and run on MariaDB over known
//!   data ingested and aggregated through the API. The GPU-hours, task and
//!   capacity panels must show what the API answers for the same range, for
//!   one, several and all endpoints and specs, at the minute, hourly and
//!   daily levels.
//! - Every metric its PromQL uses must be in the `/metrics` output of the
//!   process its job selector names: the API's (`$api_job`) or the worker's
//!   (`$worker_job`), both with samples, and every label it groups or
//!   filters by must be on that metric.
//!
//! MariaDB only: that is what the dashboard's MySQL data source reads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gpu_usage_core::clock::ManualClock;
use gpu_usage_core::jobs::{JobEnv, JobName};
use gpu_usage_testing::{Backend, TestDb};
use gpu_usage_worker::metrics::StreamLag;
use gpu_usage_worker::{JobContext, JobOutcome, Metrics, run_job};
use sea_orm::prelude::Decimal;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryResult, Statement};
use serde_json::{Value, json};

use crate::support::{TestApp, now, spawn_app, t, task};

const DASHBOARD: &str = include_str!("../../../../deploy/grafana/gpu-usage.json");

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("deploy/grafana/gpu-usage.json is JSON")
}

// ---------------------------------------------------------------------
// the dashboard's parts
// ---------------------------------------------------------------------

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

fn panel<'a>(d: &'a Value, title: &str) -> &'a Value {
    let found: Vec<_> = panels(d)
        .into_iter()
        .filter(|p| p["title"] == title)
        .collect();
    assert_eq!(found.len(), 1, "one panel titled {title:?}");
    found[0]
}

fn is_mysql(ds: &Value) -> bool {
    ds["type"] == "mysql"
}

fn is_prometheus(ds: &Value) -> bool {
    ds["type"] == "prometheus"
}

/// One SQL query of the dashboard: where it is, its format and text.
#[derive(Debug, Clone)]
struct SqlQuery {
    place: String,
    format: String,
    sql: String,
}

fn sql_queries(d: &Value) -> Vec<SqlQuery> {
    let mut out = Vec::new();
    for p in panels(d) {
        for target in p["targets"].as_array().into_iter().flatten() {
            if is_mysql(&target["datasource"]) {
                out.push(SqlQuery {
                    place: format!("panel {:?} target {}", p["title"], target["refId"]),
                    format: target["format"].as_str().unwrap_or("").to_owned(),
                    sql: target["rawSql"].as_str().expect("rawSql").to_owned(),
                });
            }
        }
    }
    for v in variables(d) {
        if v["type"] == "query" && is_mysql(&v["datasource"]) {
            out.push(SqlQuery {
                place: format!("variable {}", v["name"]),
                format: "table".into(),
                sql: variable_query(v).to_owned(),
            });
        }
    }
    out
}

fn variables(d: &Value) -> &Vec<Value> {
    d["templating"]["list"].as_array().expect("templating.list")
}

fn variable<'a>(d: &'a Value, name: &str) -> &'a Value {
    variables(d)
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no variable {name}"))
}

/// A query variable's query: a string, or `{query: ...}` (Prometheus).
fn variable_query(v: &Value) -> &str {
    v["query"]
        .as_str()
        .or_else(|| v["query"]["query"].as_str())
        .unwrap_or_else(|| panic!("variable {} has no query", v["name"]))
}

/// The one SQL target of the panel `title`.
fn panel_sql(d: &Value, title: &str) -> String {
    let targets = panel(d, title)["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{title}: one query");
    targets[0]["rawSql"].as_str().unwrap().to_owned()
}

/// What an importable dashboard needs: current schema, data sources as
/// variables, one id per panel, a grid 24 wide, every query complete.
#[test]
fn the_dashboard_is_importable() {
    let d = dashboard();
    assert_eq!(d["schemaVersion"], 39, "Grafana 10.4 / 11");
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(d["id"].is_null(), "no instance id in a dashboard to import");
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24 && w > 0 && g["h"].as_u64().unwrap() > 0, "{p}");
        if p["type"] == "row" {
            continue;
        }
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}: no query", p["title"]);
        for target in targets {
            let ds = &target["datasource"];
            if is_mysql(ds) {
                assert_eq!(ds["uid"], "${mysql_ds}", "{}", p["title"]);
                assert_eq!(target["rawQuery"], true);
                assert_eq!(target["editorMode"], "code");
                let format = target["format"].as_str().unwrap();
                let want = if p["type"] == "timeseries" {
                    "time_series"
                } else {
                    "table"
                };
                assert_eq!(format, want, "{}", p["title"]);
            } else if is_prometheus(ds) {
                assert_eq!(ds["uid"], "${prom_ds}", "{}", p["title"]);
                assert!(target["expr"].as_str().is_some_and(|e| !e.is_empty()));
            } else {
                panic!("{}: data source {ds}", p["title"]);
            }
            assert_eq!(&target["datasource"], &p["datasource"], "{}", p["title"]);
        }
    }
    let names: Vec<&str> = variables(&d)
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for want in [
        "mysql_ds",
        "prom_ds",
        "granularity",
        "level",
        "endpoint",
        "spec",
        "api_job",
        "worker_job",
    ] {
        assert!(names.contains(&want), "variable {want}");
    }
    for multi in ["endpoint", "spec"] {
        let v = variable(&d, multi);
        assert_eq!(v["multi"], true);
        assert_eq!(v["includeAll"], true);
        assert_eq!(v["refresh"], 2, "{multi}: refreshed with the time range");
    }
    assert_eq!(variable(&d, "level")["refresh"], 2);
    // Grafana shows `definition` and runs `query`: they must be the same.
    for v in variables(&d).iter().filter(|v| v["type"] == "query") {
        assert_eq!(
            v["definition"].as_str(),
            Some(variable_query(v)),
            "{}",
            v["name"]
        );
    }
}

// ---------------------------------------------------------------------
// Grafana's interpolation for the MySQL data source
// ---------------------------------------------------------------------

/// A template variable's value: `Multi` for a variable with Multi-value or
/// Include All (Grafana then quotes every value, even a single one).
#[derive(Debug, Clone)]
enum Var {
    One(String),
    Multi(Vec<String>),
}

/// What a panel query is run with: the variables, the dashboard's time
/// range and `$__interval`.
struct Ctx<'a> {
    vars: &'a BTreeMap<&'a str, Var>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    interval: &'a str,
}

fn quote_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// The data source's own formatting (`SqlDatasource.interpolateVariable`).
fn format_default(v: &Var) -> String {
    match v {
        Var::One(s) => s.replace('\'', "''"),
        Var::Multi(vs) => vs
            .iter()
            .map(|s| quote_literal(s))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// `${var:format}`: Grafana's named formats.
fn format_named(v: &Var, format: &str) -> Result<String, String> {
    let values: Vec<&str> = match v {
        Var::One(s) => vec![s.as_str()],
        Var::Multi(vs) => vs.iter().map(String::as_str).collect(),
    };
    Ok(match format {
        "sqlstring" => values
            .iter()
            .map(|s| quote_literal(s))
            .collect::<Vec<_>>()
            .join(","),
        "raw" | "csv" => values.join(","),
        "singlequote" => values
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(","),
        "doublequote" => values
            .iter()
            .map(|s| format!("\"{}\"", s.replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(","),
        other => {
            return Err(format!(
                "variable format {other:?} is not known to this test"
            ));
        }
    })
}

/// `name` or `name:format`: what stands inside `${…}` or `[[…]]`.
fn split_format(inner: &str) -> (&str, Option<&str>) {
    match inner.split_once(':') {
        Some((name, format)) => (name, Some(format)),
        None => (inner, None),
    }
}

/// A variable in the named `format`, or in the data source's own.
fn format_var(v: &Var, format: Option<&str>) -> Result<String, String> {
    match format {
        Some(f) => format_named(v, f),
        None => Ok(format_default(v)),
    }
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The browser's step (`templateSrv.replace`): `$var`, `${var}`,
/// `${var:format}`, `[[var]]`, and the global `$__interval`,
/// `$__interval_ms`. Names it does not know (the macros) stay as they are.
fn replace_variables(sql: &str, ctx: &Ctx) -> Result<String, String> {
    let interval_ms = (parse_interval(ctx.interval)? * 1000.0).round() as i64;
    let mut globals: BTreeMap<&str, Var> = BTreeMap::new();
    globals.insert("__interval", Var::One(ctx.interval.to_owned()));
    globals.insert("__interval_ms", Var::One(interval_ms.to_string()));
    let lookup = |name: &str| ctx.vars.get(name).or_else(|| globals.get(name));
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest: String = chars[i..].iter().collect();
        if c == '$' && chars.get(i + 1) == Some(&'{') {
            let end = rest
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {sql}"))?;
            let (name, format) = split_format(&rest[2..end]);
            let name = name.split('.').next().unwrap_or(name);
            match lookup(name) {
                Some(v) => out.push_str(&format_var(v, format)?),
                None => out.push_str(&rest[..=end]),
            }
            i += rest[..=end].chars().count();
        } else if c == '$' {
            let name: String = chars[i + 1..].iter().take_while(|c| is_word(**c)).collect();
            match lookup(&name) {
                Some(v) if !name.is_empty() => out.push_str(&format_default(v)),
                _ => {
                    out.push('$');
                    out.push_str(&name);
                }
            }
            i += 1 + name.chars().count();
        } else if rest.starts_with("[[") {
            let end = rest
                .find("]]")
                .ok_or_else(|| format!("unclosed [[ in {sql}"))?;
            let (name, format) = split_format(&rest[2..end]);
            match lookup(name) {
                Some(v) => out.push_str(&format_var(v, format)?),
                None => out.push_str(&rest[..end + 2]),
            }
            i += rest[..end + 2].chars().count();
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

/// `gtime.ParseInterval` for the units a dashboard uses.
fn parse_interval(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("interval {s:?} has no unit"))?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("interval {s:?}"))?;
    let unit_secs = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 7.0 * 86400.0,
        other => return Err(format!("interval unit {other:?}")),
    };
    Ok(n * unit_secs)
}

/// The backend's step: `$__name(args)` macros of the MySQL data source,
/// exactly as `pkg/tsdb/mysql/macros.go` writes them (its regex is
/// `\$([_a-zA-Z0-9]+)\(([^\)]*)\)`).
fn expand_macros(sql: &str, ctx: &Ctx) -> Result<String, String> {
    let from = ctx.from.timestamp();
    let to = ctx.to.timestamp();
    let mut out = String::new();
    let mut rest = sql;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let name_len = after.find(|c: char| !is_word(c)).unwrap_or(after.len());
        let name = &after[..name_len];
        let tail = &after[name_len..];
        if name.is_empty() || !tail.starts_with('(') {
            out.push('$');
            rest = after;
            continue;
        }
        let close = tail
            .find(')')
            .ok_or_else(|| format!("unclosed macro ${name} in {sql}"))?;
        let args: Vec<&str> = tail[1..close].split(',').map(str::trim).collect();
        let arg = |i: usize| {
            args.get(i)
                .filter(|a| !a.is_empty())
                .copied()
                .ok_or_else(|| format!("macro ${name} needs argument {}", i + 1))
        };
        let group = |col: &str, interval: &str| -> Result<String, String> {
            let secs = parse_interval(interval.trim_matches(|c| c == '\'' || c == '"'))?;
            Ok(format!("UNIX_TIMESTAMP({col}) DIV {secs:.0} * {secs:.0}"))
        };
        let expanded = match name {
            "__time" | "__timeEpoch" => format!("UNIX_TIMESTAMP({}) as time_sec", arg(0)?),
            "__timeFilter" => format!(
                "{} BETWEEN FROM_UNIXTIME({from}) AND FROM_UNIXTIME({to})",
                arg(0)?
            ),
            "__timeFrom" => format!("FROM_UNIXTIME({from})"),
            "__timeTo" => format!("FROM_UNIXTIME({to})"),
            "__timeGroup" => group(arg(0)?, arg(1)?)?,
            "__timeGroupAlias" => format!("{} AS \"time\"", group(arg(0)?, arg(1)?)?),
            "__unixEpochFilter" => {
                let c = arg(0)?;
                format!("{c} >= {from} AND {c} <= {to}")
            }
            "__unixEpochFrom" => from.to_string(),
            "__unixEpochTo" => to.to_string(),
            other => return Err(format!("unknown macro ${other} in {sql}")),
        };
        out.push_str(&expanded);
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The SQL Grafana sends to MariaDB for `sql` in `ctx`.
fn interpolate(sql: &str, ctx: &Ctx) -> Result<String, String> {
    let sql = expand_macros(&replace_variables(sql, ctx)?, ctx)?;
    if sql.contains('$') {
        return Err(format!("something was not interpolated: {sql}"));
    }
    Ok(sql)
}

/// The interpolation reproduces what Grafana's documentation and sources
/// give for each form.
#[test]
fn interpolation_is_grafanas() {
    let vars = BTreeMap::from([
        ("level", Var::One("hourly".into())),
        ("one", Var::One("it's".into())),
        ("endpoint", Var::Multi(vec!["a".into(), "o'b".into()])),
        ("single", Var::Multi(vec!["x".into()])),
    ]);
    let ctx = Ctx {
        vars: &vars,
        from: t("2017-05-10T10:06:23Z"),
        to: t("2017-05-11T10:06:23.999Z"),
        interval: "5m",
    };
    let cases = [
        (
            "$__timeFilter(time_bucket)",
            "time_bucket BETWEEN FROM_UNIXTIME(1494410783) AND FROM_UNIXTIME(1494497183)",
        ),
        (
            "$__timeFrom() $__timeTo()",
            "FROM_UNIXTIME(1494410783) FROM_UNIXTIME(1494497183)",
        ),
        (
            "$__timeGroup(dateColumn,'5m')",
            "UNIX_TIMESTAMP(dateColumn) DIV 300 * 300",
        ),
        (
            "$__timeGroupAlias(dateColumn, $__interval)",
            "UNIX_TIMESTAMP(dateColumn) DIV 300 * 300 AS \"time\"",
        ),
        (
            "$__timeGroup(c, '1h', 0)",
            "UNIX_TIMESTAMP(c) DIV 3600 * 3600",
        ),
        ("$__interval $__interval_ms", "5m 300000"),
        ("t_$level x", "t_hourly x"),
        ("t_${level}_x", "t_hourly_x"),
        ("'$one'", "'it''s'"),
        ("IN ($endpoint)", "IN ('a','o''b')"),
        ("IN ($single)", "IN ('x')"),
        ("IN (${endpoint:sqlstring})", "IN ('a','o''b')"),
        ("IN (${one:sqlstring})", "IN ('it''s')"),
        ("'${endpoint:csv}'", "'a,o'b'"),
        ("[[level]]", "hourly"),
        (
            "$__unixEpochFilter(e)",
            "e >= 1494410783 AND e <= 1494497183",
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(interpolate(sql, &ctx).unwrap(), want, "{sql}");
    }
    assert!(
        interpolate("$nope", &ctx).is_err(),
        "unknown variables stay"
    );
    assert!(
        interpolate("$__nope(x)", &ctx).is_err(),
        "unknown macros fail"
    );
}

// ---------------------------------------------------------------------
// running a query
// ---------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Num(f64),
    Text(String),
}

impl Cell {
    fn num(&self) -> Option<f64> {
        match self {
            Cell::Num(n) => Some(*n),
            Cell::Null => None,
            Cell::Text(s) => panic!("{s:?} is not a number"),
        }
    }
}

type Frame = Vec<BTreeMap<String, Cell>>;

fn cell(row: &QueryResult, i: usize) -> Cell {
    if let Ok(v) = row.try_get_by_index::<Option<i64>>(i) {
        return v.map_or(Cell::Null, |v| Cell::Num(v as f64));
    }
    if let Ok(v) = row.try_get_by_index::<Option<f64>>(i) {
        return v.map_or(Cell::Null, Cell::Num);
    }
    if let Ok(v) = row.try_get_by_index::<Option<Decimal>>(i) {
        return v.map_or(Cell::Null, |d| Cell::Num(d.to_string().parse().unwrap()));
    }
    if let Ok(v) = row.try_get_by_index::<Option<String>>(i) {
        return v.map_or(Cell::Null, Cell::Text);
    }
    if let Ok(v) = row.try_get_by_index::<Option<chrono::NaiveDateTime>>(i) {
        return v.map_or(Cell::Null, |d| Cell::Text(d.to_string()));
    }
    if let Ok(v) = row.try_get_by_index::<Option<chrono::NaiveDate>>(i) {
        return v.map_or(Cell::Null, |d| Cell::Text(d.to_string()));
    }
    panic!(
        "column {i} ({:?}) of an unexpected type",
        row.column_names().get(i)
    );
}

/// MySQL 8's default `sql_mode` (ONLY_FULL_GROUP_BY among it): the
/// queries must hold there too, not only on MariaDB's laxer default.
const MYSQL8_SQL_MODE: &str = "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";

/// Runs `sql` (one statement) under [`MYSQL8_SQL_MODE`], for this
/// statement only (MariaDB's `SET STATEMENT ... FOR`).
async fn run(db: &DatabaseConnection, sql: &str) -> Result<Frame, String> {
    let sql = format!("SET STATEMENT sql_mode = '{MYSQL8_SQL_MODE}' FOR {sql}");
    let rows = db
        .query_all_raw(Statement::from_string(DbBackend::MySql, sql))
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows
        .iter()
        .map(|row| {
            row.column_names()
                .into_iter()
                .enumerate()
                .map(|(i, name)| (name, cell(row, i)))
                .collect()
        })
        .collect())
}

async fn run_ok(db: &DatabaseConnection, place: &str, sql: &str, ctx: &Ctx<'_>) -> Frame {
    let q = interpolate(sql, ctx).unwrap_or_else(|e| panic!("{place}: {e}"));
    run(db, &q)
        .await
        .unwrap_or_else(|e| panic!("{place}: {e}\n{q}"))
}

/// The query of the panel titled `title`, run.
async fn run_panel(conn: &DatabaseConnection, d: &Value, title: &str, ctx: &Ctx<'_>) -> Frame {
    run_ok(conn, title, &panel_sql(d, title), ctx).await
}

/// The query of the template variable `name`, run.
async fn run_variable(conn: &DatabaseConnection, d: &Value, name: &str, ctx: &Ctx<'_>) -> Frame {
    let place = format!("variable {name}");
    run_ok(conn, &place, variable_query(variable(d, name)), ctx).await
}

/// A time series frame as Grafana reads it: a `time` column in seconds,
/// ascending; an optional `metric` column naming the series (long
/// format); every other column a number or NULL.
fn check_time_series(place: &str, frame: &Frame) {
    let mut last = f64::MIN;
    for row in frame {
        let time = row
            .get("time")
            .and_then(Cell::num)
            .unwrap_or_else(|| panic!("{place}: no numeric time column in {row:?}"));
        assert!(time >= last, "{place}: not sorted by time");
        last = time;
        for (name, c) in row {
            match (name.as_str(), c) {
                ("metric", Cell::Text(_)) | (_, Cell::Num(_) | Cell::Null) => {}
                _ => panic!("{place}: column {name} is {c:?}"),
            }
        }
    }
}

/// `(time, series) → value` of a long-format frame (`metric` names the
/// series) or of one value column of a wide one.
fn points(frame: &Frame, value: &str) -> BTreeMap<(i64, String), Option<f64>> {
    frame
        .iter()
        .map(|row| {
            let time = row["time"].num().unwrap() as i64;
            let series = match row.get("metric") {
                Some(Cell::Text(m)) => m.clone(),
                _ => value.to_owned(),
            };
            let v = row
                .get(value)
                .unwrap_or_else(|| panic!("no column {value} in {row:?}"))
                .num();
            ((time, series), v)
        })
        .collect()
}

/// The single value of a one-row, one-column stat query (NULL: no value).
fn single(frame: &Frame, column: &str) -> Option<f64> {
    assert_eq!(frame.len(), 1, "one row: {frame:?}");
    frame[0]
        .get(column)
        .unwrap_or_else(|| panic!("no column {column} in {frame:?}"))
        .num()
}

#[track_caller]
fn close(what: &str, got: Option<f64>, want: Option<f64>, tolerance: f64) {
    match (got, want) {
        (None, None) => {}
        (Some(g), Some(w)) => assert!((g - w).abs() <= tolerance, "{what}: Grafana {g}, API {w}"),
        _ => panic!("{what}: Grafana {got:?}, API {want:?}"),
    }
}

/// Points compared so far (a view must compare some).
static POINTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[track_caller]
fn same_points(
    what: &str,
    got: &BTreeMap<(i64, String), Option<f64>>,
    want: &BTreeMap<(i64, String), Option<f64>>,
    tolerance: f64,
) {
    let gk: Vec<_> = got.keys().collect();
    POINTS.fetch_add(want.len(), std::sync::atomic::Ordering::Relaxed);
    let wk: Vec<_> = want.keys().collect();
    assert_eq!(gk, wk, "{what}: the points");
    for (k, w) in want {
        close(&format!("{what} at {k:?}"), got[k], *w, tolerance);
    }
}

// ---------------------------------------------------------------------
// the data: 2026-01-01 and the first hours of 2026-01-02
// ---------------------------------------------------------------------

/// An endpoint whose name needs quoting in SQL.
const QUOTED: &str = "o'neil-chat";

fn session(worker: &str, ep: &str, spec: &str, gpus: i64, start: &str, end: &str) -> Value {
    json!({"worker_id": worker, "endpoint": ep, "spec_name": spec, "gpu_count": gpus,
        "started_at": start, "ended_at": end})
}

fn with_spec(mut r: Value, spec: &str) -> Value {
    r["spec_name"] = spec.into();
    r
}

/// Sessions for ep-a, ep-b and the quoted endpoint; tasks on them, one
/// using more GPUs than its session offers (an incomplete capacity
/// picture), tasks of ep-c and of the next morning without any session
/// (no capacity), a task without a spec and one across midnight.
async fn seed(app: &TestApp) {
    let sessions = json!([
        session(
            "w1",
            "ep-a",
            "a100",
            2,
            "2026-01-01T10:00:00Z",
            "2026-01-01T12:00:00Z"
        ),
        session(
            "w2",
            "ep-b",
            "h100",
            4,
            "2026-01-01T10:30:00Z",
            "2026-01-01T11:30:00Z"
        ),
        session(
            "w3",
            QUOTED,
            "a100",
            1,
            "2026-01-01T13:00:00Z",
            "2026-01-01T14:05:00Z"
        ),
    ]);
    let res = app.post_json("/workers/sessions", &sessions).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["inserted"], 3, "{body}");
    let tasks = json!([
        with_spec(
            task(
                "T1",
                "ep-a",
                1,
                "2026-01-01T10:15:00Z",
                "2026-01-01T10:45:00Z",
                "COMPLETED"
            ),
            "a100"
        ),
        with_spec(
            task(
                "T2",
                "ep-a",
                2,
                "2026-01-01T11:00:00Z",
                "2026-01-01T11:30:30Z",
                "FAILED"
            ),
            "a100"
        ),
        with_spec(
            task(
                "T3",
                "ep-b",
                4,
                "2026-01-01T10:40:00Z",
                "2026-01-01T11:10:00Z",
                "COMPLETED"
            ),
            "h100"
        ),
        task(
            "T4",
            "ep-c",
            1,
            "2026-01-01T12:00:00Z",
            "2026-01-01T12:30:00Z",
            "COMPLETED"
        ),
        with_spec(
            task(
                "T5",
                QUOTED,
                2,
                "2026-01-01T13:10:00Z",
                "2026-01-01T13:20:00Z",
                "COMPLETED"
            ),
            "a100"
        ),
        with_spec(
            task(
                "T6",
                "ep-b",
                1,
                "2026-01-01T23:30:00Z",
                "2026-01-02T00:30:00Z",
                "FAILED"
            ),
            "h100"
        ),
        with_spec(
            task(
                "T7",
                "ep-a",
                2,
                "2026-01-02T01:00:00Z",
                "2026-01-02T01:20:00.500Z",
                "COMPLETED"
            ),
            "l4"
        ),
    ]);
    app.ingest(&tasks).await;
    app.aggregate("granularity=all&start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z")
        .await;
    app.aggregate("granularity=all&start_time=2026-01-02T00:00:00Z&end_time=2026-01-02T12:00:00Z")
        .await;
}

// ---------------------------------------------------------------------
// the API's answer for a range
// ---------------------------------------------------------------------

struct ApiRead {
    rows: Vec<Value>,
    summary: Value,
}

async fn api(
    app: &TestApp,
    level: &str,
    scope: &str,
    value: Option<&str>,
    from: &str,
    to: &str,
) -> ApiRead {
    let mut path = format!("/{level}?scope_type={scope}&start_time={from}&end_time={to}");
    if let Some(v) = value {
        path.push_str(&format!("&scope_value={}", encode(v)));
    }
    let pages = app.pages(&path).await;
    ApiRead {
        summary: pages[0]["summary"].clone(),
        rows: pages
            .iter()
            .flat_map(|p| p["data"].as_array().unwrap().clone())
            .collect(),
    }
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn bucket_secs(row: &Value) -> i64 {
    t(row["time_bucket"].as_str().unwrap()).timestamp()
}

/// `(bucket, series) → field` of API rows; `series` is the scope value
/// (or `name` for global rows).
fn api_points(
    rows: &[Value],
    field: &str,
    name: &str,
    keep: &dyn Fn(&str) -> bool,
) -> BTreeMap<(i64, String), Option<f64>> {
    rows.iter()
        .filter(|r| r["scope_value"].as_str().is_none_or(keep))
        .map(|r| {
            let series = r["scope_value"].as_str().unwrap_or(name).to_owned();
            ((bucket_secs(r), series), r[field].as_f64())
        })
        .collect()
}

fn opt(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn ratio(num: &Value, den: &Value) -> Option<f64> {
    let d = den.as_f64().unwrap();
    (d > 0.0).then(|| num.as_f64().unwrap() / d)
}

/// capacity_complete as the dashboard shows it: 1, 0, or NULL.
fn complete_flag(v: &Value) -> Option<f64> {
    v.as_bool().map(|b| if b { 1.0 } else { 0.0 })
}

/// What a stat or table panel shows of an API summary.
#[derive(Clone, Copy)]
enum Figure {
    /// A field as it is.
    Field(&'static str),
    /// failed_tasks / total_tasks, NULL without tasks.
    FailureRate,
    /// capacity_complete as 1, 0 or NULL.
    Complete,
}
use Figure::{Complete, FailureRate, Field};

impl Figure {
    fn of(self, summary: &Value) -> Option<f64> {
        match self {
            Field(f) => opt(&summary[f]),
            FailureRate => ratio(&summary["failed_tasks"], &summary["total_tasks"]),
            Complete => complete_flag(&summary["capacity_complete"]),
        }
    }
}

// ---------------------------------------------------------------------
// the SQL panels against the API
// ---------------------------------------------------------------------

/// One view: a time range as Grafana sends it, the level it reads, the
/// interval of one bucket of that level, and the API's half-open range.
struct View {
    name: &'static str,
    granularity: &'static str,
    from: &'static str,
    /// Grafana's `to`: the end itself, or a millisecond before it as
    /// Grafana's "Yesterday" / "Today so far" ranges end.
    to: &'static str,
    api_end: &'static str,
    level: &'static str,
    bucket: &'static str,
    /// A coarser `$__interval` (several buckets in one point).
    coarse: &'static str,
}

const VIEWS: [View; 4] = [
    View {
        name: "a day, hourly (auto)",
        granularity: "auto",
        from: "2026-01-01T00:00:00Z",
        to: "2026-01-01T23:59:59.999Z",
        api_end: "2026-01-02T00:00:00Z",
        level: "hourly",
        bucket: "1h",
        coarse: "1d",
    },
    View {
        name: "four hours, minute (auto)",
        granularity: "auto",
        from: "2026-01-01T10:00:00Z",
        to: "2026-01-01T14:00:00Z",
        api_end: "2026-01-01T14:00:00Z",
        level: "minute",
        bucket: "1m",
        coarse: "1h",
    },
    View {
        name: "two days, daily (chosen)",
        granularity: "daily",
        from: "2026-01-01T00:00:00Z",
        to: "2026-01-02T23:59:59.999Z",
        api_end: "2026-01-03T00:00:00Z",
        level: "daily",
        bucket: "1d",
        coarse: "1w",
    },
    View {
        name: "a morning with tasks and no sessions, minute (auto)",
        granularity: "auto",
        from: "2026-01-02T00:00:00Z",
        to: "2026-01-02T06:00:00Z",
        api_end: "2026-01-02T06:00:00Z",
        level: "minute",
        bucket: "1m",
        coarse: "6h",
    },
];

/// Endpoints and specs to select: all (what Include All sends: every
/// option of the variable), one, and several.
fn selections(all: &[String], one: &str, several: &[&str]) -> Vec<Vec<String>> {
    vec![
        all.to_vec(),
        vec![one.to_owned()],
        several.iter().map(|s| (*s).to_owned()).collect(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_panels_show_what_the_api_returns() {
    let app = spawn_app(TestDb::new(Backend::MySql).await).await;
    seed(&app).await;
    let d = dashboard();
    let conn = app.db.db.clone();
    for view in &VIEWS {
        check_view(&app, &conn, &d, view).await;
    }
    // Auto picks the daily level beyond 7 days.
    let vars = BTreeMap::from([("granularity", Var::One("auto".into()))]);
    let ctx = Ctx {
        vars: &vars,
        from: t("2025-12-04T00:00:00Z"),
        to: t("2026-01-03T00:00:00Z"),
        interval: "1h",
    };
    let level = run_variable(&conn, &d, "level", &ctx).await;
    assert_eq!(level[0]["level"], Cell::Text("daily".into()));
    app.finish().await;
}

async fn check_view(app: &TestApp, conn: &DatabaseConnection, d: &Value, view: &View) {
    let what = view.name;
    let (from, to) = (t(view.from), t(view.to));
    // The hidden `level` variable from Granularity and the range.
    let gran = BTreeMap::from([("granularity", Var::One(view.granularity.into()))]);
    let base = Ctx {
        vars: &gran,
        from,
        to,
        interval: view.bucket,
    };
    let level = run_variable(conn, d, "level", &base).await;
    assert_eq!(level.len(), 1);
    assert_eq!(level[0]["level"], Cell::Text(view.level.into()), "{what}");

    // The endpoint and spec options: what has statistics in the range.
    let options = |frame: Frame| -> Vec<String> {
        frame
            .into_iter()
            .map(|r| match r.into_values().next() {
                Some(Cell::Text(s)) => s,
                other => panic!("option {other:?}"),
            })
            .collect()
    };
    let endpoints = options(run_variable(conn, d, "endpoint", &base).await);
    let specs = options(run_variable(conn, d, "spec", &base).await);
    let api_ep = api(app, "daily", "endpoint", None, view.from, view.api_end).await;
    let api_sp = api(app, "daily", "spec", None, view.from, view.api_end).await;
    let distinct = |r: &ApiRead| -> Vec<String> {
        let s: BTreeSet<String> = r
            .rows
            .iter()
            .map(|x| x["scope_value"].as_str().unwrap().to_owned())
            .collect();
        s.into_iter().collect()
    };
    assert_eq!(endpoints, distinct(&api_ep), "{what}: endpoint options");
    assert_eq!(specs, distinct(&api_sp), "{what}: spec options");

    let (lvl, from_s, end_s) = (view.level, view.from, view.api_end);
    let global = api(app, lvl, "global", None, from_s, end_s).await;
    let ep_rows = api(app, lvl, "endpoint", None, from_s, end_s).await.rows;
    let sp_rows = api(app, lvl, "spec", None, from_s, end_s).await.rows;
    // The summary of every value with rows at this level in the range.
    let mut summaries = Summaries::new();
    for (kind, rows) in [("endpoint", &ep_rows), ("spec", &sp_rows)] {
        let present: BTreeSet<&str> = rows
            .iter()
            .map(|r| r["scope_value"].as_str().unwrap())
            .collect();
        for n in present {
            let s = api(app, lvl, kind, Some(n), from_s, end_s).await.summary;
            summaries.insert((kind.to_owned(), n.to_owned()), s);
        }
    }

    let ep_choices = selections(&endpoints, "ep-b", &["ep-a", QUOTED]);
    let sp_choices = selections(&specs, "a100", &["a100", "h100"]);
    for (ep_sel, sp_sel) in ep_choices.iter().zip(sp_choices.iter().cycle()) {
        let vars = BTreeMap::from([
            ("granularity", Var::One(view.granularity.into())),
            ("level", Var::One(view.level.into())),
            ("endpoint", Var::Multi(ep_sel.clone())),
            ("spec", Var::Multi(sp_sel.clone())),
        ]);
        let cmp = Compare {
            conn,
            d,
            ctx: Ctx {
                vars: &vars,
                from,
                to,
                interval: view.bucket,
            },
            sel: Selection {
                endpoints: ep_sel,
                specs: sp_sel,
            },
            what: format!("{what}, endpoints {ep_sel:?}, specs {sp_sel:?}"),
        };
        // Every query of the dashboard runs and is shaped as Grafana needs.
        for q in sql_queries(d) {
            let frame = run_ok(conn, &q.place, &q.sql, &cmp.ctx).await;
            if q.format == "time_series" {
                check_time_series(&format!("{}: {}", cmp.what, q.place), &frame);
            }
        }
        cmp.stats(&global.summary).await;
        let before = POINTS.load(std::sync::atomic::Ordering::Relaxed);
        cmp.series(&global.rows, &ep_rows, &sp_rows).await;
        let compared = POINTS.load(std::sync::atomic::Ordering::Relaxed) - before;
        let what = &cmp.what;
        assert!(compared >= 10, "{what}: only {compared} points compared");
        cmp.tables(&summaries).await;
        cmp.coarse_sums(&summaries, view.coarse).await;
    }
}

/// The API's summary of every scope value with rows at the view's level,
/// by (scope type, value).
type Summaries = BTreeMap<(String, String), Value>;

/// The values of `chosen` that have rows (a summary).
fn with_rows<'c>(summaries: &Summaries, kind: &str, chosen: &'c [String]) -> BTreeSet<&'c String> {
    chosen
        .iter()
        .filter(|c| summaries.contains_key(&(kind.to_owned(), (*c).clone())))
        .collect()
}

struct Selection<'a> {
    endpoints: &'a [String],
    specs: &'a [String],
}

/// One selection of one view: what its panels are run with and compared
/// in, and how a failure names it.
struct Compare<'a> {
    conn: &'a DatabaseConnection,
    d: &'a Value,
    ctx: Ctx<'a>,
    sel: Selection<'a>,
    what: String,
}

/// The stat panels: (title, value column, whether the panel shows its
/// NULL as 0, the API's figure, tolerance). SUM over no rows is NULL; the
/// summing panels show 0 for it (noValue). The API rounds utilisation to
/// 4 decimals.
const STATS: [(&str, &str, bool, Figure, f64); 11] = [
    (
        "GPU-hours",
        "gpu_hours",
        true,
        Field("total_gpu_hours"),
        HOURS,
    ),
    ("Tasks", "tasks", true, Field("total_tasks"), 0.0),
    (
        "Completed tasks",
        "completed_tasks",
        true,
        Field("completed_tasks"),
        0.0,
    ),
    (
        "Failed tasks",
        "failed_tasks",
        true,
        Field("failed_tasks"),
        0.0,
    ),
    ("Failure rate", "failure_rate", false, FailureRate, 1e-12),
    (
        "Utilisation",
        "utilisation",
        false,
        Field("utilization_rate"),
        RATE,
    ),
    (
        "Available GPU-hours",
        "available_gpu_hours",
        true,
        Field("available_gpu_hours"),
        HOURS,
    ),
    (
        "Idle GPU-hours",
        "idle_gpu_hours",
        true,
        Field("idle_gpu_hours"),
        HOURS,
    ),
    (
        "Peak GPUs in use",
        "peak_gpus_in_use",
        true,
        Field("peak_gpus_in_use"),
        0.0,
    ),
    (
        "Peak GPUs available",
        "peak_gpus_available",
        true,
        Field("peak_gpus_available"),
        0.0,
    ),
    (
        "Capacity reports",
        "capacity_complete",
        false,
        Complete,
        0.0,
    ),
];

impl Compare<'_> {
    /// The query of the panel titled `title`, run.
    async fn panel(&self, title: &str) -> Frame {
        run_panel(self.conn, self.d, title, &self.ctx).await
    }

    /// The stat panels: the global summary of the range.
    async fn stats(&self, s: &Value) {
        for (title, column, null_is_zero, figure, tolerance) in STATS {
            let got = single(&self.panel(title).await, column);
            let got = if null_is_zero { got.or(Some(0.0)) } else { got };
            let what = format!("{}: {title}", self.what);
            close(&what, got, figure.of(s), tolerance);
        }
    }
}

impl Compare<'_> {
    /// The time series panels, one point per bucket of the level.
    async fn series(&self, global: &[Value], endpoints: &[Value], specs: &[Value]) {
        let all = |_: &str| true;
        let in_ep = |v: &str| self.sel.endpoints.iter().any(|e| e == v);
        let in_sp = |v: &str| self.sel.specs.iter().any(|e| e == v);
        let w = |p: &str| format!("{}: {p}", self.what);
        // (API rows, which of their scope values the panel shows) per scope.
        let scope = |s: Of| -> (&[Value], Keep<'_>) {
            match s {
                Of::Global => (global, &all),
                Of::Endpoints => (endpoints, &in_ep),
                Of::Specs => (specs, &in_sp),
            }
        };
        for (title, series) in SERIES {
            let f = self.panel(title).await;
            for &(label, column, of, field, name, tolerance) in *series {
                let (rows, keep) = scope(of);
                same_points(
                    &w(label),
                    &points(&f, column),
                    &api_points(rows, field, name, keep),
                    tolerance,
                );
            }
        }
        // The failure rate is a ratio of two API fields.
        let f = self.panel("Failure rate per interval").await;
        let want: BTreeMap<_, _> = global
            .iter()
            .map(|r| {
                (
                    (bucket_secs(r), "failure_rate".to_owned()),
                    ratio(&r["failed_tasks"], &r["total_tasks"]),
                )
            })
            .collect();
        same_points(
            &w("Failure rate"),
            &points(&f, "failure_rate"),
            &want,
            1e-12,
        );
    }
}

/// Which scope values of the API's rows a panel shows.
type Keep<'a> = &'a dyn Fn(&str) -> bool;

#[derive(Clone, Copy)]
enum Of {
    Global,
    Endpoints,
    Specs,
}

/// One series of a time-series panel and the API field it must equal:
/// (label, the panel's value column, whose API rows, API field, the series
/// name of a global panel (`""`: the scope value), tolerance).
type Series = (
    &'static str,
    &'static str,
    Of,
    &'static str,
    &'static str,
    f64,
);

/// Hours to 6 decimals, rates to 4 (half a unit of the last), counts exact.
const HOURS: f64 = 1e-6;
const RATE: f64 = 5.0001e-5;

/// Every time-series panel compared point by point, by title.
const SERIES: &[(&str, &[Series])] = &[
    (
        "GPU-hours by endpoint",
        &[(
            "GPU-hours by endpoint",
            "gpu_hours",
            Of::Endpoints,
            "total_gpu_hours",
            "",
            HOURS,
        )],
    ),
    (
        "GPU-hours by spec",
        &[(
            "GPU-hours by spec",
            "gpu_hours",
            Of::Specs,
            "total_gpu_hours",
            "",
            HOURS,
        )],
    ),
    (
        "Tasks completed vs failed",
        &[
            (
                "completed",
                "completed",
                Of::Global,
                "completed_tasks",
                "completed",
                0.0,
            ),
            (
                "failed",
                "failed",
                Of::Global,
                "failed_tasks",
                "failed",
                0.0,
            ),
        ],
    ),
    (
        "Failed tasks by endpoint",
        &[(
            "Failed tasks by endpoint",
            "failed",
            Of::Endpoints,
            "failed_tasks",
            "",
            0.0,
        )],
    ),
    (
        "Used, available and idle GPU-hours",
        &[
            ("used", "used", Of::Global, "total_gpu_hours", "used", HOURS),
            (
                "available",
                "available",
                Of::Global,
                "available_gpu_hours",
                "available",
                HOURS,
            ),
            ("idle", "idle", Of::Global, "idle_gpu_hours", "idle", HOURS),
        ],
    ),
    (
        "Utilisation per interval",
        &[(
            "Utilisation",
            "utilisation",
            Of::Global,
            "utilization_rate",
            "utilisation",
            RATE,
        )],
    ),
    (
        "Utilisation by endpoint",
        &[(
            "Utilisation by endpoint",
            "utilisation",
            Of::Endpoints,
            "utilization_rate",
            "",
            RATE,
        )],
    ),
    (
        "Utilisation by spec",
        &[(
            "Utilisation by spec",
            "utilisation",
            Of::Specs,
            "utilization_rate",
            "",
            RATE,
        )],
    ),
    (
        "Idle GPU-hours by spec",
        &[(
            "Idle by spec",
            "idle_gpu_hours",
            Of::Specs,
            "idle_gpu_hours",
            "",
            HOURS,
        )],
    ),
    (
        "Peak concurrency",
        &[
            (
                "peak in use",
                "in_use",
                Of::Global,
                "peak_gpus_in_use",
                "in_use",
                0.0,
            ),
            (
                "peak available",
                "available",
                Of::Global,
                "peak_gpus_available",
                "available",
                0.0,
            ),
        ],
    ),
];

/// The columns of the Endpoints and Specs tables: (column, the API's
/// figure of the value's summary, tolerance).
const TABLE_COLUMNS: [(&str, Figure, f64); 10] = [
    ("gpu_hours", Field("total_gpu_hours"), HOURS),
    ("tasks", Field("total_tasks"), 0.0),
    ("failed", Field("failed_tasks"), 0.0),
    ("failure_rate", FailureRate, 1e-12),
    ("available_gpu_hours", Field("available_gpu_hours"), HOURS),
    ("idle_gpu_hours", Field("idle_gpu_hours"), HOURS),
    ("utilisation", Field("utilization_rate"), RATE),
    ("peak_gpus_in_use", Field("peak_gpus_in_use"), 0.0),
    ("peak_gpus_available", Field("peak_gpus_available"), 0.0),
    ("capacity_complete", Complete, 0.0),
];

impl Compare<'_> {
    /// The Endpoints and Specs tables: one row per selected value with
    /// data, its figures the API's summary for that value.
    async fn tables(&self, summaries: &Summaries) {
        let what = &self.what;
        for (title, kind, chosen) in [
            ("Endpoints", "endpoint", self.sel.endpoints),
            ("Specs", "spec", self.sel.specs),
        ] {
            let frame = self.panel(title).await;
            let name_of = |r: &BTreeMap<String, Cell>| match &r[kind] {
                Cell::Text(s) => s.clone(),
                other => panic!("{title}: name {other:?}"),
            };
            let names: BTreeSet<String> = frame.iter().map(name_of).collect();
            assert_eq!(
                names.iter().collect::<BTreeSet<_>>(),
                with_rows(summaries, kind, chosen),
                "{what}: {title} rows: the chosen values with data"
            );
            let mut last = f64::MAX;
            for row in &frame {
                let name = name_of(row);
                let s = &summaries[&(kind.to_owned(), name.clone())];
                let gpu = row["gpu_hours"].num().unwrap_or(0.0);
                assert!(gpu <= last, "{what}: {title} sorted by GPU-hours");
                last = gpu;
                for (column, figure, tolerance) in TABLE_COLUMNS {
                    let w = format!("{what}: {title} {name} {column}");
                    close(&w, row[column].num(), figure.of(s), tolerance);
                }
            }
        }
    }

    /// With `$__interval` (here `interval`) wider than a bucket, points
    /// sum several buckets: over the range they add up to each value's
    /// summary.
    async fn coarse_sums(&self, summaries: &Summaries, interval: &str) {
        let (what, ctx) = (
            &self.what,
            Ctx {
                interval,
                ..self.ctx
            },
        );
        let step = parse_interval(interval).unwrap() as i64;
        for (title, kind, chosen) in [
            ("GPU-hours by endpoint", "endpoint", self.sel.endpoints),
            ("GPU-hours by spec", "spec", self.sel.specs),
        ] {
            let f = run_panel(self.conn, self.d, title, &ctx).await;
            check_time_series(title, &f);
            let mut sums: BTreeMap<String, f64> = BTreeMap::new();
            for ((time, series), v) in points(&f, "gpu_hours") {
                assert_eq!(
                    time % step,
                    0,
                    "{what}: {title} points on {interval} boundaries"
                );
                *sums.entry(series).or_default() += v.unwrap();
            }
            let want = with_rows(summaries, kind, chosen);
            assert_eq!(
                sums.keys().collect::<BTreeSet<_>>(),
                want,
                "{what}: {title} series"
            );
            for name in want {
                let s = &summaries[&(kind.to_owned(), name.clone())];
                close(
                    &format!("{what}: {title} {name} per {interval}"),
                    sums.get(name).copied(),
                    opt(&s["total_gpu_hours"]),
                    1e-6,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------
// PromQL against the API's and the worker's /metrics
// ---------------------------------------------------------------------

/// The PromQL words a label list in parentheses follows.
const GROUPING_WORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Words that are PromQL, not metric names, besides the grouping ones:
/// operators and the aggregations (which may stand before `by (...)`
/// without a parenthesis).
const PROMQL_WORDS: [&str; 19] = [
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
];

/// What one PromQL expression reads: metric names, the labels it groups
/// by, and the labels its matchers test (`job`, the scrape's own label,
/// left out).
#[derive(Debug, Default)]
struct PromUse {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

fn promql_use(expr: &str) -> PromUse {
    let c: Vec<char> = expr.chars().collect();
    let mut u = PromUse::default();
    let mut i = 0;
    let skip_quoted = |i: &mut usize| {
        let q = c[*i];
        *i += 1;
        while *i < c.len() && c[*i] != q {
            if c[*i] == '\\' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    let word = |i: &mut usize| -> String {
        let start = *i;
        while *i < c.len() && (c[*i].is_ascii_alphanumeric() || c[*i] == '_' || c[*i] == ':') {
            *i += 1;
        }
        c[start..*i].iter().collect()
    };
    let next_non_space = |mut i: usize| {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        i
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' || ch == '`' {
            skip_quoted(&mut i);
        } else if ch == '[' {
            while i < c.len() && c[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if ch == '{' {
            // Label matchers: name op "value", ...
            i += 1;
            while i < c.len() && c[i] != '}' {
                if c[i] == '"' || c[i] == '\'' || c[i] == '`' {
                    skip_quoted(&mut i);
                } else if c[i].is_ascii_alphabetic() || c[i] == '_' {
                    let label = word(&mut i);
                    if label != "job" {
                        u.labels.insert(label);
                    }
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let w = word(&mut i);
            let j = next_non_space(i);
            let lower = w.to_ascii_lowercase();
            if GROUPING_WORDS.contains(&w.as_str()) && c.get(j) == Some(&'(') {
                let close = (j..c.len()).find(|&k| c[k] == ')').expect("closing )");
                let list: String = c[j + 1..close].iter().collect();
                for l in list.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                    u.labels.insert(l.to_owned());
                }
                i = close + 1;
            } else if c.get(j) == Some(&'(')
                || GROUPING_WORDS.contains(&lower.as_str())
                || PROMQL_WORDS.contains(&lower.as_str())
            {
                // a function, or an operator word
            } else {
                u.metrics.insert(w);
            }
        } else if ch == '$' {
            i += 1;
            word(&mut i);
        } else {
            i += 1;
        }
    }
    u
}

#[test]
fn promql_use_reads_names_and_labels() {
    let u = promql_use(
        r#"histogram_quantile(0.95, sum by (job_name, le) (rate(a_b_bucket{job=~"$w", level="x"}[$__rate_interval]))) / on (x) b_total - 60 > bool 1e3"#,
    );
    assert_eq!(
        u.metrics,
        BTreeSet::from(["a_b_bucket".into(), "b_total".into()])
    );
    assert_eq!(
        u.labels,
        BTreeSet::from(["job_name".into(), "le".into(), "level".into(), "x".into()])
    );
}

/// Sample lines of an exposition: metric name → the label names seen on it.
fn samples(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            let body = &line[name_end + 1..line.rfind('}').unwrap()];
            // label="value",... (values may hold commas; names never do)
            let mut rest = body;
            while let Some(eq) = rest.find("=\"") {
                labels.insert(rest[..eq].trim_start_matches(',').to_owned());
                let mut k = eq + 2;
                let bytes = rest.as_bytes();
                while k < bytes.len() && bytes[k] != b'"' {
                    if bytes[k] == b'\\' {
                        k += 1;
                    }
                    k += 1;
                }
                rest = &rest[k + 1..];
            }
        }
    }
    out
}

/// Checks every metric and label of `expr` against the exposition of the
/// process it selects. No metric has a label `job` of its own (the worker's
/// job metrics name it `job_name`), so `job` is always the scrape's and
/// nothing is renamed `exported_job`.
fn check_expr(
    place: &str,
    expr: &str,
    api: &BTreeMap<String, BTreeSet<String>>,
    worker: &BTreeMap<String, BTreeSet<String>>,
) {
    let (process, exposition) = if expr.contains("$api_job") {
        ("API", api)
    } else if expr.contains("$worker_job") {
        ("worker", worker)
    } else {
        panic!("{place}: {expr} selects neither $api_job nor $worker_job");
    };
    let u = promql_use(expr);
    assert!(!u.metrics.is_empty(), "{place}: no metric in {expr}");
    let mut labels_seen = BTreeSet::new();
    for m in &u.metrics {
        assert!(
            m.starts_with("gpu_usage_"),
            "{place}: {m} is not one of the service's metrics"
        );
        let labels = exposition
            .get(m)
            .unwrap_or_else(|| panic!("{place}: {m} is not in the {process}'s /metrics"));
        labels_seen.extend(labels.iter().cloned());
    }
    for l in &u.labels {
        assert!(
            labels_seen.contains(l),
            "{place}: label {l} is on none of {:?} in the {process}'s /metrics",
            u.metrics
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_metrics_are_served() {
    let app = spawn_app(TestDb::new(Backend::MySql).await).await;
    // Requests of each kind the API counts: reads, an ingest, a refusal.
    app.ingest(&json!([task(
        "m1",
        "ep-a",
        1,
        "2026-01-02T10:00:00Z",
        "2026-01-02T10:05:00Z",
        "COMPLETED"
    )]))
    .await;
    app.get_json("/hourly?scope_type=global").await;
    assert_eq!(app.get("/hourly?scope_type=nope").await.status(), 400);
    let api_text = app.get_outside("/metrics").await.text().await.unwrap();

    let worker_text = worker_metrics(&app).await;
    gpu_usage_testing::assert_exposition_well_formed(&api_text);
    gpu_usage_testing::assert_exposition_well_formed(&worker_text);
    let (api_s, worker_s) = (samples(&api_text), samples(&worker_text));

    let d = dashboard();
    let mut n = 0;
    for p in panels(&d) {
        for target in p["targets"].as_array().into_iter().flatten() {
            if is_prometheus(&target["datasource"]) {
                let place = format!("panel {:?} {}", p["title"], target["refId"]);
                check_expr(&place, target["expr"].as_str().unwrap(), &api_s, &worker_s);
                n += 1;
            }
        }
    }
    assert!(n >= 20, "{n} PromQL queries");
    // The job variables: label_values(metric, job).
    for (name, exposition) in [("api_job", &api_s), ("worker_job", &worker_s)] {
        let q = variable_query(variable(&d, name));
        let metric = q
            .strip_prefix("label_values(")
            .and_then(|r| r.split(',').next())
            .unwrap_or_else(|| panic!("{name}: {q}"))
            .trim();
        assert!(
            exposition.contains_key(metric),
            "{name}: {metric} not served"
        );
    }
    app.finish().await;
}

/// The worker's `/metrics` (its own HTTP server) after the jobs ran, one
/// skipped on a held lock; the stream gauges and counts are what the
/// consumer and the scrape record from Redis, set the same way here. The
/// worker runs on `app`'s database and is scraped with its client.
async fn worker_metrics(app: &TestApp) -> String {
    let db = &app.db.db;
    let clock = Arc::new(ManualClock::frozen(now()));
    let ctx = Arc::new(JobContext {
        env: JobEnv {
            db: db.clone(),
            runner: "grafana-test".into(),
            clock: clock.clone(),
        },
        engine: gpu_usage_core::EngineConfig::default(),
        metrics: Arc::new(Metrics::new()),
    });
    let ran = run_job(&ctx, JobName::MinuteRollup).await;
    assert!(
        matches!(ran, JobOutcome::Ran { rows_written, .. } if rows_written > 0),
        "{ran:?}"
    );
    for job in [JobName::Capacity, JobName::DailyRollup, JobName::Cleanup] {
        let outcome = run_job(&ctx, job).await;
        assert!(
            !matches!(outcome, JobOutcome::Failed { .. }),
            "{job}: {outcome:?}"
        );
    }
    {
        let _held = gpu_usage_core::locks::try_lock(db, JobName::HourlyRollup)
            .await
            .unwrap()
            .expect("the hourly lock is free");
        assert!(matches!(
            run_job(&ctx, JobName::HourlyRollup).await,
            JobOutcome::Skipped
        ));
    }
    ctx.metrics.stream_entries("inserted", 2);
    ctx.metrics.set_stream(Some(Some(StreamLag {
        stream: "gpu_usage:records".into(),
        group: "gpu-usage-worker".into(),
        lag: Some(0),
        pending: 0,
    })));
    let state = gpu_usage_worker::http::AppState {
        db: db.clone(),
        metrics: ctx.metrics.clone(),
        clock,
        redis: None,
    };
    let (server, addrs) = gpu_usage_worker::http::start("127.0.0.1", 0, state).unwrap();
    let handle = server.handle();
    let task = tokio::spawn(server);
    let url = format!("http://{}/metrics", addrs[0]);
    let res = app.client.get(url).send().await.unwrap();
    let text = res.text().await.unwrap();
    handle.stop(true).await;
    task.await.unwrap().unwrap();
    text
}
