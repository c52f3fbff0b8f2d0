//! `GET /minute`, `/hourly`, `/daily`, `/scopes`: the dashboards' reads.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use gpu_usage_core::level::{Daily, DailyRow, Hourly, HourlyRow, Level, Minute, MinuteRow};
use gpu_usage_core::query::{self, Scopes};

use crate::auth::Reader;
use crate::csv;
use crate::error::ApiError;
use crate::params::{Format, StatsParams, negotiate};
use crate::routes::responses::{QueryErrors, ReadErrors};
use crate::state::AppState;
use crate::wire::StatsResponse;

/// Declares the handler of one statistics level: `GET $path`, answering a
/// page of `$row`s (JSON or CSV) through [`stats_page`]. The three levels
/// differ in nothing else, so their handlers and documentation are written
/// once here; each invocation below names the handler first.
macro_rules! stats_handler {
    ($(#[$doc:meta])* $name:ident, $path:literal, $level:ident, $row:ident, $ok:literal) => {
        $(#[$doc])*
        #[utoipa::path(
            tag = "statistics",
            params(StatsParams),
            responses(
                (status = 200, description = $ok, content(
                    (StatsResponse<$row> = "application/json"),
                    (String = "text/csv")
                )),
                QueryErrors,
            ),
        )]
        #[get($path)]
        pub async fn $name(
            _auth: Reader,
            state: web::Data<AppState>,
            params: web::Query<StatsParams>,
            req: HttpRequest,
        ) -> Result<HttpResponse, ApiError> {
            stats_page::<$level>(&state, params.into_inner(), &req).await
        }
    };
}

stats_handler!(
    /// Minute statistics.
    ///
    /// GPU time is attributed to the minutes it was used in; task counts to the
    /// minute holding `completed_at`. Rows ascend by (time_bucket,
    /// scope_value). Answers CSV for `Accept: text/csv` or `format=csv` (with
    /// `X-Total-Count` and `X-Next-Cursor` headers).
    minute, "/minute", Minute, MinuteRow, "A page of minute rows"
);

stats_handler!(
    /// Hourly statistics, with each hour's peak minute.
    hourly, "/hourly", Hourly, HourlyRow, "A page of hourly rows"
);

stats_handler!(
    /// Daily statistics (UTC days), with each day's peak hour. The day holding
    /// `start_time` is included.
    daily, "/daily", Daily, DailyRow, "A page of daily rows"
);

/// The endpoints and specs that have statistics, for pickers.
#[utoipa::path(
    tag = "statistics",
    responses((status = 200, description = "Scope values with data", body = Scopes), ReadErrors),
)]
#[get("/scopes")]
pub async fn scopes(_auth: Reader, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let scopes = query::scopes(&state.db).await?;
    Ok(HttpResponse::Ok().json(scopes))
}

async fn stats_page<L: Level>(
    state: &AppState,
    params: StatsParams,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (query, format) = params.parse(L::GRANULARITY, state.now(), &state.api)?;
    let page = query::statistics::<L>(&state.db, &query).await?;
    let mut res = HttpResponse::Ok();
    res.insert_header((header::VARY, "Accept"));
    match negotiate(format, req) {
        Format::Csv => {
            res.insert_header(("X-Total-Count", page.total.to_string()));
            if let Some(c) = &page.next_cursor {
                res.insert_header(("X-Next-Cursor", c.as_str()));
            }
            res.insert_header((
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"gpu_usage_{}.csv\"", L::GRANULARITY),
            ));
            let body = csv::render(&page.rows).map_err(ApiError::internal)?;
            Ok(res.content_type("text/csv; charset=utf-8").body(body))
        }
        Format::Json => Ok(res.json(StatsResponse {
            data: page.rows,
            total: page.total,
            start_time: query.range.start(),
            end_time: query.range.end(),
            summary: page.summary,
            next_cursor: page.next_cursor,
            limit: query.page.limit,
        })),
    }
}
