//! Request parameters as they arrive (all text, so every problem gets our
//! own message) and their parsing into domain types. A bad value is always
//! an error, never replaced by a default; only an absent (or empty) value
//! takes its documented default.

use actix_web::HttpRequest;
use actix_web::http::header::{self, Header};
use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::query::{PageRequest, RecordFilter, SessionFilter, StatsQuery};
use gpu_usage_core::settings::ApiSettings;
use gpu_usage_core::types::{
    Granularity, Levels, ScopeFilter, ScopeType, TaskStatus, TimeRange, parse_utc,
};
use gpu_usage_core::{DomainError, Result};
use serde::Deserialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};

/// What a timestamp parameter must look like: RFC 3339 with an offset,
/// years 1970 to 2037 (`gpu_usage_core::types::FIRST_YEAR`..`LAST_YEAR`),
/// seconds 00 to 59.
const TIME_PATTERN: &str = r"^(19[7-9][0-9]|20[0-2][0-9]|203[0-7])-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|z|[+-][0-9]{2}:[0-9]{2})$";

/// A timestamp parameter as it arrives, parsed by [`time`]; documented
/// with its format and pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct TimeText(pub String);

impl From<&str> for TimeText {
    fn from(s: &str) -> Self {
        TimeText(s.to_owned())
    }
}

impl utoipa::PartialSchema for TimeText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .pattern(Some(TIME_PATTERN))
            .examples(["2026-01-01T00:00:00Z"])
            .into()
    }
}

impl ToSchema for TimeText {}

/// Query of `GET /minute`, `/hourly`, `/daily`. A parameter given is never
/// empty: `x=` is refused (omit it for its default).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Default `global`.
    #[param(value_type = Option<ScopeType>, inline)]
    pub scope_type: Option<String>,
    /// One endpoint or spec name. Omitted: every value of the scope type.
    /// Must be omitted for `global`.
    #[param(min_length = 1, max_length = 255)]
    pub scope_value: Option<String>,
    /// Inclusive. Default: `end_time` minus 1 hour (minute), 24 hours
    /// (hourly) or 30 days (daily). A daily query includes the day holding
    /// `start_time`. Before `end_time`, at most `api.max_range_days` (400)
    /// days before it.
    #[param(inline)]
    pub start_time: Option<TimeText>,
    /// Exclusive. Default: now.
    #[param(inline)]
    pub end_time: Option<TimeText>,
    /// Rows per page, 1 to `api.max_limit` (50000 by default); default
    /// `api.default_limit` (5000).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 50000)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page of the same query.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// Overrides the Accept header. Default JSON.
    #[param(value_type = Option<Format>, inline)]
    pub format: Option<String>,
}

/// Query of `GET /records`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordsParams {
    /// Filters `completed_at`, inclusive. Default: `end_time` minus 24
    /// hours.
    #[param(inline)]
    pub start_time: Option<TimeText>,
    /// Exclusive. Default: now.
    #[param(inline)]
    pub end_time: Option<TimeText>,
    #[param(min_length = 1, max_length = 255)]
    pub endpoint: Option<String>,
    /// Spec name (`spec` is accepted too).
    #[serde(alias = "spec")]
    #[param(min_length = 1, max_length = 255)]
    pub spec_name: Option<String>,
    /// Any letter case.
    #[param(value_type = Option<TaskStatus>, inline)]
    pub status: Option<String>,
    #[param(value_type = Option<u64>, minimum = 1, maximum = 50000)]
    pub limit: Option<String>,
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

/// Query of `GET /workers/sessions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionsParams {
    /// Sessions up at some time in [start_time, end_time). Default:
    /// `end_time` minus 24 hours.
    #[param(inline)]
    pub start_time: Option<TimeText>,
    /// Exclusive. Default: now.
    #[param(inline)]
    pub end_time: Option<TimeText>,
    #[param(min_length = 1, max_length = 255)]
    pub worker_id: Option<String>,
    #[param(min_length = 1, max_length = 255)]
    pub endpoint: Option<String>,
    /// Spec name (`spec` is accepted too).
    #[serde(alias = "spec")]
    #[param(min_length = 1, max_length = 255)]
    pub spec_name: Option<String>,
    /// `true`: only sessions still open; `false`: only ended ones.
    #[param(value_type = Option<bool>)]
    pub open: Option<String>,
    #[param(value_type = Option<u64>, minimum = 1, maximum = 50000)]
    pub limit: Option<String>,
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

/// Query (or JSON body) of `POST /aggregate`. Each parameter once: in the
/// query string or in the body, not both.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AggregateParams {
    /// Default `all`: minute, then hourly, then daily (`hour` and `day` are
    /// accepted for `hourly` and `daily`).
    #[param(value_type = Option<Levels>, inline)]
    #[schema(value_type = Option<Levels>)]
    pub granularity: Option<String>,
    /// Default: `end_time` minus 24 hours.
    #[param(inline)]
    #[schema(inline)]
    pub start_time: Option<TimeText>,
    /// Default: now.
    #[param(inline)]
    #[schema(inline)]
    pub end_time: Option<TimeText>,
}

/// Query (or JSON body) of `POST /backfill`. Both times or neither
/// (neither = everything still retained); each parameter once, in the
/// query string or in the body.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BackfillParams {
    #[param(inline)]
    #[schema(inline)]
    pub start_time: Option<TimeText>,
    #[param(inline)]
    #[schema(inline)]
    pub end_time: Option<TimeText>,
    /// The original service's page size for re-reading records. Accepted
    /// and ignored: this service rebuilds whole days in bounded chunks.
    #[param(value_type = Option<u64>, minimum = 1)]
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub batch_size: Option<String>,
    /// The original service's cap on records to process (0 = no cap).
    /// Accepted and ignored: a backfill always covers its whole range.
    #[param(value_type = Option<u64>, minimum = 0)]
    #[schema(value_type = Option<u64>, minimum = 0)]
    pub max_tasks: Option<String>,
}

/// Query of `GET /backfill`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Newest first; 1 to 500, default 50.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// The representation of a statistics page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
}

/// A parameter's value, or `None` when it is absent. An empty value is
/// refused rather than read as "absent": a client that sends `limit=`
/// meant something, and silently applying the default hides its bug.
fn present(field: &str, v: Option<String>) -> Result<Option<String>> {
    match v {
        Some(s) if s.trim().is_empty() => Err(DomainError::invalid(
            field,
            "is empty; omit the parameter for its default",
        )),
        other => Ok(other),
    }
}

/// RFC 3339 with an offset. A `+` offset that arrived unencoded in a query
/// string has been decoded to a space; put it back rather than refuse a
/// timestamp the client clearly meant.
pub fn time(field: &'static str, v: Option<TimeText>) -> Result<Option<DateTime<Utc>>> {
    let Some(s) = present(field, v.map(|t| t.0))? else {
        return Ok(None);
    };
    let s = s.trim();
    let repaired = match s.rsplit_once(' ') {
        Some((head, offset))
            if head.contains('T')
                && offset.len() == 5
                && offset.as_bytes().get(2) == Some(&b':') =>
        {
            format!("{head}+{offset}")
        }
        _ => s.to_owned(),
    };
    parse_utc(field, &repaired).map(Some)
}

/// Both ends with defaults: end = now, start = end − `window`.
pub fn range(
    start: Option<TimeText>,
    end: Option<TimeText>,
    window: TimeDelta,
    now: DateTime<Utc>,
    max: TimeDelta,
) -> Result<TimeRange> {
    let end = time("end_time", end)?.unwrap_or(now);
    let start = time("start_time", start)?.unwrap_or(end - window);
    let r = TimeRange::new(start, end)?;
    if r.duration() > max {
        return Err(DomainError::invalid(
            "end_time",
            format!(
                "the range is longer than the maximum of {} days",
                max.num_days()
            ),
        ));
    }
    Ok(r)
}

pub fn limit(v: Option<String>, default: u64, max: u64) -> Result<u64> {
    let Some(s) = present("limit", v)? else {
        return Ok(default.clamp(1, max.max(1)));
    };
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(DomainError::invalid(
            "limit",
            format!("{s:?} is not an integer from 1 to {max}"),
        )),
    }
}

pub fn default_window(level: Granularity) -> TimeDelta {
    match level {
        Granularity::Minute => TimeDelta::hours(1),
        Granularity::Hourly => TimeDelta::hours(24),
        Granularity::Daily => TimeDelta::days(30),
    }
}

impl StatsParams {
    pub fn parse(
        self,
        level: Granularity,
        now: DateTime<Utc>,
        api: &ApiSettings,
    ) -> Result<(StatsQuery, Option<Format>)> {
        let scope_type = match present("scope_type", self.scope_type)? {
            Some(s) => s.parse::<ScopeType>()?,
            None => ScopeType::Global,
        };
        let scope = ScopeFilter::new(scope_type, present("scope_value", self.scope_value)?)?;
        let range = range(
            self.start_time,
            self.end_time,
            default_window(level),
            now,
            api.max_range(),
        )?;
        let limit = limit(self.limit, api.default_limit, api.max_limit)?;
        let format = present("format", self.format)?
            .map(|f| parse_format(&f))
            .transpose()?;
        Ok((
            StatsQuery {
                scope,
                range,
                page: PageRequest {
                    limit,
                    cursor: present("cursor", self.cursor)?,
                },
            },
            format,
        ))
    }
}

impl RecordsParams {
    pub fn parse(
        self,
        now: DateTime<Utc>,
        api: &ApiSettings,
    ) -> Result<(RecordFilter, PageRequest)> {
        let range = range(
            self.start_time,
            self.end_time,
            TimeDelta::hours(24),
            now,
            api.max_range(),
        )?;
        let status = present("status", self.status)?
            .map(|s| s.parse::<TaskStatus>())
            .transpose()?;
        let limit = limit(self.limit, api.default_limit, api.max_limit)?;
        Ok((
            RecordFilter {
                range,
                endpoint: present("endpoint", self.endpoint)?,
                spec_name: present("spec_name", self.spec_name)?,
                status,
            },
            PageRequest {
                limit,
                cursor: present("cursor", self.cursor)?,
            },
        ))
    }
}

impl SessionsParams {
    pub fn parse(
        self,
        now: DateTime<Utc>,
        api: &ApiSettings,
    ) -> Result<(SessionFilter, PageRequest)> {
        let range = range(
            self.start_time,
            self.end_time,
            TimeDelta::hours(24),
            now,
            api.max_range(),
        )?;
        let open = match present("open", self.open)?.as_deref() {
            None => None,
            Some("false") => Some(false),
            Some("true") => Some(true),
            Some(other) => {
                return Err(DomainError::invalid(
                    "open",
                    format!("expected true or false, got {other:?}"),
                ));
            }
        };
        Ok((
            SessionFilter {
                range,
                worker_id: present("worker_id", self.worker_id)?,
                endpoint: present("endpoint", self.endpoint)?,
                spec_name: present("spec_name", self.spec_name)?,
                open,
            },
            PageRequest {
                limit: limit(self.limit, api.default_limit, api.max_limit)?,
                cursor: present("cursor", self.cursor)?,
            },
        ))
    }
}

impl AggregateParams {
    /// Fills what the query string left out from the body; giving one value
    /// in both places is ambiguous and refused.
    pub fn merge(self, body: Option<AggregateParams>) -> Result<AggregateParams> {
        let Some(b) = body else { return Ok(self) };
        Ok(AggregateParams {
            granularity: pick("granularity", self.granularity, b.granularity)?,
            start_time: pick_time("start_time", self.start_time, b.start_time)?,
            end_time: pick_time("end_time", self.end_time, b.end_time)?,
        })
    }

    pub fn parse(self, now: DateTime<Utc>, api: &ApiSettings) -> Result<(Levels, TimeRange)> {
        let levels = match present("granularity", self.granularity)? {
            None => Levels::All,
            Some(g) => g.parse::<Levels>()?,
        };
        let range = range(
            self.start_time,
            self.end_time,
            TimeDelta::hours(24),
            now,
            api.max_range(),
        )?;
        Ok((levels, range))
    }
}

impl BackfillParams {
    pub fn merge(self, body: Option<BackfillParams>) -> Result<BackfillParams> {
        let Some(b) = body else { return Ok(self) };
        Ok(BackfillParams {
            start_time: pick_time("start_time", self.start_time, b.start_time)?,
            end_time: pick_time("end_time", self.end_time, b.end_time)?,
            batch_size: pick("batch_size", self.batch_size, b.batch_size)?,
            max_tasks: pick("max_tasks", self.max_tasks, b.max_tasks)?,
        })
    }

    /// `None` = no times given: the caller backfills everything retained.
    pub fn parse(self, api: &ApiSettings) -> Result<Option<TimeRange>> {
        // Checked so a nonsense value is still refused, then ignored.
        limit(self.batch_size, 1, u64::MAX)
            .map_err(|_| DomainError::invalid("batch_size", "must be a positive integer"))?;
        if let Some(m) = present("max_tasks", self.max_tasks)?
            && m.trim().parse::<u64>().is_err()
        {
            return Err(DomainError::invalid(
                "max_tasks",
                "must be an integer, 0 or more",
            ));
        }
        let start = time("start_time", self.start_time)?;
        let end = time("end_time", self.end_time)?;
        match (start, end) {
            (None, None) => Ok(None),
            (Some(s), Some(e)) => {
                let r = TimeRange::new(s, e)?;
                if r.duration() > api.max_range() {
                    return Err(DomainError::invalid(
                        "end_time",
                        format!(
                            "the range is longer than the maximum of {} days",
                            api.max_range_days
                        ),
                    ));
                }
                Ok(Some(r))
            }
            (Some(_), None) => Err(DomainError::invalid(
                "end_time",
                "give both start_time and end_time, or neither to backfill everything retained",
            )),
            (None, Some(_)) => Err(DomainError::invalid(
                "start_time",
                "give both start_time and end_time, or neither to backfill everything retained",
            )),
        }
    }
}

impl ListParams {
    pub fn parse(self) -> Result<u64> {
        limit(self.limit, 50, 500)
    }
}

fn pick(field: &str, query: Option<String>, body: Option<String>) -> Result<Option<String>> {
    match (present(field, query)?, present(field, body)?) {
        (Some(_), Some(_)) => Err(DomainError::invalid(
            field,
            "given both in the query string and in the body; give it once",
        )),
        (q, b) => Ok(q.or(b)),
    }
}

fn pick_time(
    field: &str,
    query: Option<TimeText>,
    body: Option<TimeText>,
) -> Result<Option<TimeText>> {
    Ok(pick(field, query.map(|t| t.0), body.map(|t| t.0))?.map(TimeText))
}

fn parse_format(f: &str) -> Result<Format> {
    match f.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(Format::Json),
        "csv" => Ok(Format::Csv),
        other => Err(DomainError::invalid(
            "format",
            format!("unknown format {other:?}; expected json or csv"),
        )),
    }
}

/// `format=` wins; otherwise the most preferred of JSON and CSV in the
/// Accept header; JSON when the header names neither.
pub fn negotiate(explicit: Option<Format>, req: &HttpRequest) -> Format {
    if let Some(f) = explicit {
        return f;
    }
    let Ok(accept) = header::Accept::parse(req) else {
        return Format::Json;
    };
    for mime in accept.ranked() {
        match (mime.type_().as_str(), mime.subtype().as_str()) {
            ("text", "csv") => return Format::Csv,
            ("application", "json") | ("*", "*") | ("application", "*") => return Format::Json,
            _ => {}
        }
    }
    Format::Json
}

/// The body of a POST trigger: empty, `null`, or a JSON object of the
/// trigger's parameters.
pub fn trigger_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| DomainError::invalid("body", "the body is not UTF-8"))?
        .trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| DomainError::invalid("body", format!("malformed JSON body: {e}")))?;
    match value {
        serde_json::Value::Null => Ok(None),
        v @ serde_json::Value::Object(_) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| DomainError::invalid("body", e.to_string())),
        _ => Err(DomainError::invalid(
            "body",
            "expected no body, null or a JSON object",
        )),
    }
}

#[cfg(test)]
mod tests;
