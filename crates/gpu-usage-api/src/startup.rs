//! Building the server: one function from settings, a pool and a bound
//! listener to a running-ready [`Application`], used by both binaries and
//! by the tests (which bind port 0).

use std::net::{SocketAddr, TcpListener};
use std::time::Instant;

use actix_web::dev::ResourceDef;
use actix_web::dev::{
    Server, ServerHandle, Service, ServiceFactory, ServiceRequest, ServiceResponse,
};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::ErrorHandlers;
use actix_web::web::{self, JsonConfig, PathConfig, PayloadConfig, QueryConfig};
use actix_web::{App, HttpMessage, HttpRequest, HttpResponse, HttpServer, ResponseError};
use gpu_usage_core::settings::{ApiSettings, Settings};
use sea_orm::DatabaseConnection;
use tracing_actix_web::{RequestId, TracingLogger};
use utoipa_actix_web::{AppExt, UtoipaApp};

use gpu_usage_core::metrics::{Exposition, RegisterMetrics};

use crate::API_PREFIX;
use crate::auth::Auth;
use crate::error::{ApiError, json_error, normalize_error_body, path_error, query_error};
use crate::metrics::HttpMetrics;
use crate::openapi::{self, OpenApiJson};
use crate::routes;
use crate::state::{ApiOptions, AppState};

/// Trigger bodies hold at most three short parameters.
const TRIGGER_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "refusing to serve on {0}: it is not a loopback address and no API token is configured \
         (set GPU_USAGE__API__ADMIN_TOKEN, GPU_USAGE__API__INGEST_TOKEN, GPU_USAGE__API__READ_TOKEN \
         or api.tokens, or bind api.host to 127.0.0.1)"
    )]
    Unprotected(SocketAddr),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot serialize the OpenAPI document: {0}")]
    OpenApi(#[from] serde_json::Error),
}

pub struct Application {
    server: Server,
    addr: SocketAddr,
}

impl Application {
    /// Builds the server on an already bound listener. Must be called inside
    /// a Tokio runtime; the server runs once [`Application::run`] is awaited
    /// (or the future is spawned).
    pub fn build(
        settings: &Settings,
        db: DatabaseConnection,
        listener: TcpListener,
        options: ApiOptions,
    ) -> Result<Self, StartupError> {
        let addr = listener.local_addr()?;
        let state = web::Data::new(AppState::new(settings, db, &options));
        let auth = web::Data::new(Auth::from_settings(&settings.api));
        if auth.is_open() {
            if !addr.ip().is_loopback() {
                return Err(StartupError::Unprotected(addr));
            }
            tracing::warn!(
                %addr,
                "no API token configured: every endpoint is open to local callers"
            );
        }
        let document = openapi_document();
        let known = web::Data::new(KnownRoutes::from_document(&document));
        let doc = web::Data::new(OpenApiJson(document.to_json()?));
        let http = HttpMetrics::default();
        let mut components: Vec<&dyn RegisterMetrics> = vec![&http];
        components.extend(options.metrics.iter().map(|m| m.as_ref()));
        let exposition = web::Data::new(Exposition::new(&components));
        let max_body = settings.api.max_body_bytes;
        let mut server = HttpServer::new(move || {
            let (app, _) = with_routes(App::new().into_utoipa_app()).split_for_parts();
            let http = http.clone();
            app.app_data(state.clone())
                .app_data(auth.clone())
                .app_data(doc.clone())
                .app_data(known.clone())
                .app_data(exposition.clone())
                .app_data(
                    JsonConfig::default()
                        .limit(max_body)
                        .error_handler(json_error),
                )
                .app_data(QueryConfig::default().error_handler(query_error))
                .app_data(PathConfig::default().error_handler(path_error))
                .app_data(PayloadConfig::new(TRIGGER_BODY_LIMIT))
                .default_service(web::to(no_route))
                .wrap(ErrorHandlers::new().default_handler(normalize_error_body))
                .wrap_fn(move |req, srv| observe(http.clone(), req, srv))
                .wrap(TracingLogger::default())
        })
        // The binaries own signal handling (they also stop the in-process
        // worker); tests must not react to signals at all.
        .disable_signals()
        .shutdown_timeout(30);
        if let Some(n) = options.workers {
            server = server.workers(n.max(1));
        }
        let server = server.listen(listener)?.run();
        Ok(Self { server, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// For stopping the server from elsewhere (`stop(true)` drains
    /// in-flight requests).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through a [`ServerHandle`].
    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }

    /// Serves until `shutdown` resolves, then stops accepting connections
    /// and lets in-flight requests finish (up to the shutdown timeout).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        // The server future must keep being polled while it stops: it is
        // what processes the stop command.
        let mut server = tokio::spawn(self.server);
        tokio::pin!(shutdown);
        let finished = tokio::select! {
            res = &mut server => Some(res),
            () = &mut shutdown => None,
        };
        let res = match finished {
            Some(res) => res,
            None => {
                handle.stop(true).await;
                server.await
            }
        };
        res.map_err(std::io::Error::other)?
    }

    /// The future that serves; spawn it (tests do).
    pub fn into_server(self) -> Server {
        self.server
    }
}

/// Every request: its id echoed in `x-request-id`, one structured log line,
/// and the request metrics (by route pattern, never by raw path).
fn observe<S, B>(
    metrics: HttpMetrics,
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let request_id = req.extensions().get::<RequestId>().map(ToString::to_string);
    let method = req.method().clone();
    let path = req.path().to_owned();
    let route = req.match_pattern();
    let started = Instant::now();
    let response = srv.call(req);
    async move {
        let mut res = response.await?;
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            res.headers_mut()
                .insert(HeaderName::from_static("x-request-id"), id);
        }
        let status = res.status().as_u16();
        let took = started.elapsed();
        metrics.observe(method.as_str(), route.as_deref(), status, took);
        tracing::info!(
            %method,
            %path,
            status,
            elapsed_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "request"
        );
        Ok(res)
    }
}

/// `api.host:api.port`.
pub fn bind(api: &ApiSettings) -> std::io::Result<TcpListener> {
    TcpListener::bind((api.host.as_str(), api.port))
}

/// The OpenAPI document of exactly the routes the server registers (both
/// are built by [`with_routes`]).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, doc) = with_routes(App::new().into_utoipa_app()).split_for_parts();
    doc
}

fn with_routes<T>(app: UtoipaApp<T>) -> UtoipaApp<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    app.openapi(openapi::base())
        .configure(routes::root)
        .service(utoipa_actix_web::scope(API_PREFIX).configure(routes::api))
}

/// Every served path with its methods, from the same registration list as
/// the routes themselves (the OpenAPI document), for telling "wrong method"
/// (405 with `Allow`) from "no such path" (404).
pub struct KnownRoutes(Vec<(ResourceDef, Vec<&'static str>)>);

impl KnownRoutes {
    fn from_document(doc: &utoipa::openapi::OpenApi) -> Self {
        let methods = |item: &utoipa::openapi::PathItem| {
            [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
            ]
            .into_iter()
            .filter_map(|(m, present)| present.then_some(m))
            .collect::<Vec<_>>()
        };
        Self(
            doc.paths
                .paths
                .iter()
                .map(|(path, item)| (ResourceDef::new(path.as_str()), methods(item)))
                .collect(),
        )
    }

    /// The methods `path` is served for; empty when it is not served at all.
    fn allowed(&self, path: &str) -> Vec<&'static str> {
        self.0
            .iter()
            .filter(|(def, _)| def.is_match(path))
            .flat_map(|(_, m)| m.iter().copied())
            .collect()
    }
}

async fn no_route(req: HttpRequest, known: web::Data<KnownRoutes>) -> HttpResponse {
    let allowed = known.allowed(req.path());
    if allowed.is_empty() {
        return ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route").error_response();
    }
    let allow = allowed.join(", ");
    let mut res = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not served here; allowed: {allow}", req.method()),
    )
    .error_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        res.headers_mut().insert(header::ALLOW, v);
    }
    res
}
