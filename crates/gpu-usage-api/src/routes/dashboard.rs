//! The built-in web dashboard (`/dashboard`, `/` redirects to it) and
//! `GET /whoami`, which the page asks to decide whether to offer admin
//! actions.
//!
//! The page is static: `dashboard/` beside this crate's `src/` holds
//! `index.html`, `app.js`, `app.css` and the vendored uPlot files, embedded
//! in the binary at compile time; there is no build step and nothing is
//! fetched from elsewhere at run time. The page reads the same JSON API as
//! any client. See `docs/DASHBOARD.md`.
//!
//! Assets answer `Cache-Control: no-cache` with a content-hash `ETag`, so a
//! browser revalidates (cheap `304`) and never runs a stale page against a
//! newer binary.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Auth, Reader, role_name};
use crate::error::{ApiError, ErrorBody};
use crate::routes::responses::Unauthorized;

/// An embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: u64,
}

const fn asset(body: &'static [u8], content_type: &'static str) -> Asset {
    Asset {
        body,
        content_type,
        etag: fnv1a(body),
    }
}

/// FNV-1a, 64 bit: stable, evaluated at compile time, good enough to tell
/// two versions of a file apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

static INDEX: Asset = asset(include_bytes!("../../dashboard/index.html"), HTML);
static APP_JS: Asset = asset(include_bytes!("../../dashboard/app.js"), JS);
static APP_CSS: Asset = asset(include_bytes!("../../dashboard/app.css"), CSS);
static UPLOT_JS: Asset = asset(
    include_bytes!("../../dashboard/vendor/uPlot.iife.min.js"),
    JS,
);
static UPLOT_CSS: Asset = asset(include_bytes!("../../dashboard/vendor/uPlot.min.css"), CSS);
static UPLOT_LICENSE: Asset = asset(include_bytes!("../../dashboard/vendor/LICENSE"), TEXT);

/// Only this origin's scripts, styles and API; no framing. uPlot sets
/// element styles through the CSSOM, which `style-src 'self'` allows.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn serve(asset: &Asset, req: &HttpRequest) -> HttpResponse {
    let etag = format!("\"{:016x}\"", asset.etag);
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if asset.content_type == HTML {
        res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .insert_header((header::REFERRER_POLICY, "no-referrer"));
    }
    if not_modified {
        res.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ));
        return res.finish();
    }
    res.content_type(asset.content_type).body(asset.body)
}

/// The root: redirects to the dashboard.
#[utoipa::path(
    tag = "dashboard",
    responses((status = 302, description = "Redirect to `/dashboard`",
        headers(("location" = String, description = "`dashboard`, relative to this URL")))),
    security()
)]
#[get("/")]
pub async fn root_redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "dashboard"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .finish()
}

/// The web dashboard: usage over time per endpoint and spec, tasks and
/// failures, capacity, freshness; admin actions for admin tokens. A static
/// page over this API (it asks for a token when reads need one).
#[utoipa::path(
    tag = "dashboard",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)),
    security()
)]
#[get("/dashboard")]
pub async fn page(req: HttpRequest) -> HttpResponse {
    serve(&INDEX, &req)
}

/// The dashboard's script.
#[utoipa::path(
    tag = "dashboard",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String)),
    security()
)]
#[get("/dashboard/app.js")]
pub async fn app_js(req: HttpRequest) -> HttpResponse {
    serve(&APP_JS, &req)
}

/// The dashboard's style sheet.
#[utoipa::path(
    tag = "dashboard",
    responses((status = 200, description = "CSS", content_type = "text/css", body = String)),
    security()
)]
#[get("/dashboard/app.css")]
pub async fn app_css(req: HttpRequest) -> HttpResponse {
    serve(&APP_CSS, &req)
}

/// Vendored third-party files of the dashboard: `uPlot.iife.min.js`,
/// `uPlot.min.css` (uPlot 1.6.32) and its `LICENSE` (MIT).
#[utoipa::path(
    tag = "dashboard",
    params(("file" = String, Path, description = "`uPlot.iife.min.js`, `uPlot.min.css` or `LICENSE`")),
    responses(
        (status = 200, description = "The file", content_type = "text/javascript", body = String),
        (status = 404, description = "No such file", body = ErrorBody),
    ),
    security()
)]
#[get("/dashboard/vendor/{file}")]
pub async fn vendor(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let asset = match file.as_str() {
        "uPlot.iife.min.js" => &UPLOT_JS,
        "uPlot.min.css" => &UPLOT_CSS,
        "LICENSE" => &UPLOT_LICENSE,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such dashboard file",
            ));
        }
    };
    Ok(serve(asset, &req))
}

/// Who the caller is, as the API sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmIResponse {
    /// `read`, `ingest` or `admin` (roles nest: read < ingest < admin).
    pub role: String,
    /// The token's configured name (never the token).
    pub name: String,
    /// `open` (no token configured: every caller is admin, loopback only),
    /// `token` (a valid bearer token was sent) or `anonymous` (no token sent,
    /// reads are public).
    pub auth: String,
}

/// The caller's role and token name. Needs read access like any read: 401
/// without a valid token where reads need one.
#[utoipa::path(
    tag = "system",
    responses((status = 200, description = "The caller", body = WhoAmIResponse), Unauthorized),
)]
#[get("/whoami")]
pub async fn whoami(auth: Reader, tokens: web::Data<Auth>, req: HttpRequest) -> HttpResponse {
    let mode = if tokens.is_open() {
        "open"
    } else if req.headers().contains_key(header::AUTHORIZATION) {
        "token"
    } else {
        "anonymous"
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(WhoAmIResponse {
            role: role_name(auth.caller.role).to_owned(),
            name: auth.caller.name,
            auth: mode.to_owned(),
        })
}
