//! The HTTP edge: one router for webhooks (`hooks`) and the runs API (`api`), errors rendered
//! as `{"error": code, "detail": message}` with the cause logged once.

pub mod access;
pub mod alerts;
pub mod api;
pub mod assets;
pub mod body;
pub mod clicks;
pub mod destinations;
pub mod hooks;
pub mod listen;
pub mod openapi;
pub mod overview;
pub mod segments;
pub mod suppressions;
pub mod unsubscribe;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::intake::Intake;
use crate::store::Store;

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The webhook intake, and with it the flows, the store, the metrics and the request log.
    pub intake: Arc<Intake>,
    /// Wakes the event dispatcher when the API raised events.
    pub events_wake: Arc<Notify>,
    /// For compiling an earlier flow version to replay under.
    pub templates_dir: std::path::PathBuf,
    /// Circuit breakers, for the API.
    pub guards: Arc<crate::action::breaker::Guards>,
    /// Largest request head (line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Who may use the API, the metrics and the dashboard's data.
    pub access: Arc<access::Access>,
    /// This instance and the others sharing the store.
    pub membership: Arc<crate::cluster::Membership>,
    /// Link keys and the public URL, for unsubscribe links.
    pub mail: Arc<crate::action::email::MailContext>,
}

impl AppState {
    pub fn flows(&self) -> &Arc<crate::reload::Flows> {
        &self.intake.flows
    }
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.intake.store
    }
}

/// Everything on one listener: webhooks, the API, the metrics and the dashboard.
pub fn app(state: AppState) -> Router {
    finish(
        hook_routes().merge(admin_routes(&state)).merge(health_routes()),
        state,
    )
}

/// The webhook listener's routes when the API has a listener of its own (`--admin-listen`):
/// webhooks and health checks, nothing else.
pub fn hooks_app(state: AppState) -> Router {
    finish(hook_routes().merge(health_routes()), state)
}

/// The admin listener's routes (`--admin-listen`): the API, the metrics, the dashboard and
/// health checks, never `/hooks`.
pub fn admin_app(state: AppState) -> Router {
    finish(admin_routes(&state).merge(health_routes()), state)
}

fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .layer(axum::middleware::from_fn_with_state(
            state.max_header_bytes,
            limit_headers,
        ))
        .with_state(state)
}

fn hook_routes() -> Router<AppState> {
    Router::new()
        .route("/hooks/{flow}/{token}", any(hooks::receive))
        .route("/u/{token}", get(unsubscribe::show).post(unsubscribe::one_click))
        .route("/c/{token}", get(clicks::follow))
}

fn health_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
}

/// The dashboard's page and files (public: they hold no data), then the API and the metrics,
/// every one of which passes the access rule ([`require_access`]) before its handler runs.
fn admin_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(assets::page))
        .route("/favicon.ico", get(assets::favicon))
        .route("/favicon.svg", get(assets::favicon))
        .route("/assets/{file}", get(assets::file))
        .route("/api/openapi.json", get(openapi_document))
        .merge(api_routes(state))
}

/// The API and `/metrics`. Authorised by construction: the access check is a layer over the
/// whole router, so a route added here cannot forget it.
fn api_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/runs", get(api::list_runs))
        .route("/api/runs/{id}", get(api::show_run))
        .route("/api/runs/{id}/clicks", get(api::run_clicks))
        .route("/api/runs/{id}/replay", post(api::replay_run))
        .route("/api/runs/{id}/exit", post(api::exit_run))
        .route("/api/flows/{flow}/exit", post(api::exit_waiting))
        .route("/api/flows/{flow}/replay-failed", post(api::replay_failed))
        .route("/api/flows/{flow}/requests", get(api::recent_requests))
        .route("/api/flows", get(api::list_flows))
        .route("/api/flows/{flow}", get(overview::show_flow))
        .route("/api/stats", get(overview::stats))
        .route("/api/requests", get(overview::requests))
        .route("/api/segments", get(segments::list_segments))
        .route(
            "/api/segments/{name}/members",
            get(segments::list_members).post(segments::add_member),
        )
        .route(
            "/api/segments/{name}/members/{email}",
            delete(segments::remove_member),
        )
        .route("/api/segments/{name}/export", get(segments::export_members))
        .route("/api/contacts/{email}", get(segments::show_contact))
        .route(
            "/api/suppressions",
            get(suppressions::list).post(suppressions::add),
        )
        .route("/api/suppressions/import", post(suppressions::import))
        .route("/api/alerts", get(alerts::list))
        .route("/api/suppressions/{email}", delete(suppressions::lift))
        .route("/api/breakers", get(destinations::list_breakers))
        .route("/api/destinations", get(destinations::list_destinations))
        .route("/api/store", get(api::store_health))
        .route("/api/instances", get(api::list_instances))
        .route("/api/backup", post(api::backup))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::map_response(json_errors))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_access,
        ))
}

/// The API's description ([`openapi`]), built once. Public, as the dashboard's files are: it
/// describes the routes and holds no data.
async fn openapi_document() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi::DOCUMENT,
    )
        .into_response()
}

/// The API's error code for a status whose handler gave none (an extractor's refusal).
fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        s if s >= 500 => "internal",
        _ => "refused",
    }
}

/// Every failure of the API answers JSON ([`ErrorBody`]), also those axum's extractors make
/// (a query or body it cannot read: plain text by default), so a client reads one shape; the
/// headers that say what to do next (`Allow`, `Retry-After`) are kept.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&text).trim().to_string();
    let code = error_code(status);
    let detail = if detail.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        detail
    };
    let mut out = ApiError::new(status, code, detail).into_response();
    for name in [axum::http::header::ALLOW, axum::http::header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// The server's [access rule](access) for the API and the metrics; a refusal is logged once
/// and answered with its status (401, 403) before any handler runs.
async fn require_access(
    axum::extract::State(st): axum::extract::State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    api::authorize(&st, peer, req.headers())?;
    Ok(next.run(req).await)
}

/// Ready when the store answers.
async fn readyz(axum::extract::State(st): axum::extract::State<AppState>) -> Response {
    // One point read: cheap however many runs are stored.
    match st.store().get_run("readyz").await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")).into_response(),
    }
}

/// Prometheus metrics, OpenMetrics or the classic text format by `Accept`. Same access rule
/// as the API.
async fn metrics(
    axum::extract::State(st): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let now = crate::time::Ts::now();
    let (depth, oldest) = st.store().queue_stats(now).await.map_err(api::internal)?;
    let age = oldest.map_or(0, |t| now.since(t).as_secs());
    let open: std::collections::BTreeSet<String> = st
        .guards
        .open_circuits(now)
        .into_iter()
        .map(|c| c.destination)
        .collect();
    let mut destinations: Vec<(String, usize, bool)> = st
        .guards
        .bulkheads
        .destinations()
        .into_iter()
        .map(|d| {
            let is_open = open.contains(&d.destination);
            (d.destination, d.in_flight, is_open)
        })
        .collect();
    for name in &open {
        if !destinations.iter().any(|d| &d.0 == name) {
            destinations.push((name.clone(), 0, true));
        }
    }
    let facts = crate::metrics::Facts {
        queue_depth: depth,
        oldest_due_seconds: age,
        damage: st
            .store()
            .damage()
            .iter()
            .map(|d| (d.torn_tail, d.to - d.from))
            .collect(),
        destinations,
        waiting: st
            .store()
            .waiting_counts()
            .await
            .map_err(api::internal)?
            .into_iter()
            .collect(),
        parked: st.store().parked(),
    };
    let format = crate::metrics::Format::negotiate(
        headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let mut resp = format.convert(st.intake.metrics.render(&facts)).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}

/// 431 for a request head over the limit (hyper's own buffer limit is only a rough bound).
async fn limit_headers(
    axum::extract::State(max): axum::extract::State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().to_string().len();
    if size > max {
        tracing::warn!(size, max, "request head too large");
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request head exceeds {max} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Serves until `shutdown` is cancelled, then finishes in-flight requests (plain HTTP, default
/// limits; see [`listen::serve_with`] for TLS and limits).
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    listen::serve_with(listener, app, shutdown, listen::ListenOptions::default()).await
}

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
        }
    }
}

/// What every refusal and failure of the API answers with.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// A stable code for programs, e.g. `not_found`, `bad_status`, `unauthorized`.
    pub error: String,
    /// What went wrong, for people.
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(ErrorBody {
                error: self.code.to_string(),
                detail: self.detail,
            }),
        )
            .into_response()
    }
}
