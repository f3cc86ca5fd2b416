//! The runs API: `GET /api/runs`, `GET /api/runs/{id}`, `GET /api/flows` (segments are in
//! [`super::segments`]).
//! Every route applies the [access rule](super::access): a bearer token when one is
//! configured, otherwise clients on this machine only.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::flow::Trigger;
use crate::run::{Run, RunStatus};
use crate::store::{Exited, RunFilter};
use crate::time::Ts;

/// Applies the server's [access rule](super::access) and logs a refusal once.
pub(super) fn authorize(st: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    st.access.check(peer, headers).map_err(|denied| {
        tracing::warn!(%peer, reason = %denied, "API request refused");
        ApiError::from(denied)
    })
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    /// Only runs of this flow.
    pub flow: Option<String>,
    /// Only runs in this status (empty: any).
    #[schemars(extend("enum" = status_filter_values()))]
    pub status: Option<String>,
    /// The page after this run id (the previous page's `next_before`).
    pub before: Option<String>,
    /// Runs per page, default 50: any number is taken, as 1 to 500.
    #[schemars(range(max = usize::MAX))]
    pub limit: Option<usize>,
    /// RFC 3339 bounds on creation time.
    pub since: Option<Ts>,
    pub until: Option<Ts>,
    /// Text to find in the request or vars.
    pub q: Option<String>,
}

/// What `status=` takes: a status's name, or nothing.
fn status_filter_values() -> Vec<&'static str> {
    std::iter::once("")
        .chain(RunStatus::ALL.map(RunStatus::as_str))
        .collect()
}

/// A run without its request body and attempt details, for lists.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunSummary {
    pub id: String,
    pub flow: String,
    pub status: RunStatus,
    pub created_at: Ts,
    pub updated_at: Ts,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_attempt_at: Option<Ts>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub finished_at: Option<Ts>,
    pub attempts: usize,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl From<&Run> for RunSummary {
    fn from(r: &Run) -> Self {
        RunSummary {
            id: r.id.clone(),
            flow: r.flow.clone(),
            status: r.status,
            created_at: r.created_at,
            updated_at: r.updated_at,
            next_attempt_at: r.next_attempt_at,
            finished_at: r.finished_at,
            attempts: r.steps.iter().map(|s| s.attempts.len()).sum(),
            error: r.error.clone(),
        }
    }
}

pub const MAX_PAGE: usize = 500;

/// `GET /api/runs`: a page of runs, newest first.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    /// The `before` of the next page; null on the last page.
    pub next_before: Option<String>,
}

/// A run started again from a finished one.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Replayed {
    /// The new run.
    pub run_id: String,
    /// The run it replays.
    pub replay_of: String,
}

/// A run that could not be replayed, and why.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NotReplayed {
    pub run_id: String,
    pub error: String,
}

/// `POST /api/flows/{flow}/replay-failed`: how many failed runs matched, and each replay.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BulkReplayed {
    pub matched: usize,
    pub replayed: Vec<Replayed>,
    pub errors: Vec<NotReplayed>,
}

/// `POST /api/runs/{id}/exit`: the run ended as exited.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RunExited {
    pub run_id: String,
    pub exited: bool,
}

/// `POST /api/flows/{flow}/exit`: how many waiting runs matched, and how many were ended.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BulkExited {
    pub matched: usize,
    pub exited: usize,
}

pub async fn list_runs(
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<RunPage>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_status",
                format!(
                    "unknown status `{s}`: use one of {}",
                    RunStatus::ALL.map(RunStatus::as_str).join(", ")
                ),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let filter = RunFilter {
        flow: q.flow,
        status,
        before: q.before,
        limit,
        since: q.since,
        until: q.until,
        text: q.q.filter(|t| !t.is_empty()),
    };
    let runs = st.store().list_runs(&filter).await.map_err(internal)?;
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(RunPage {
        runs: runs.iter().map(RunSummary::from).collect(),
        next_before: next,
    }))
}

pub async fn show_run(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<Run>, ApiError> {
    match st.store().get_run(&id).await.map_err(internal)? {
        Some(run) => Ok(Json(run)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no run {id}"),
        )),
    }
}

/// `GET /api/runs/{id}/clicks`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RunClicks {
    pub clicks: Vec<crate::clicks::Click>,
}

/// `GET /api/runs/{id}/clicks`: the clicks on the tracked links of a run's emails, oldest
/// first, each with how it was judged (`pending`, `person`, `scanner`).
pub async fn run_clicks(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunClicks>, ApiError> {
    let clicks = st.store().clicks_of_run(&id).await.map_err(internal)?;
    Ok(Json(RunClicks { clicks }))
}

/// A flow's warning as the API shows it ([`crate::flow::warnings`]).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FlowWarning {
    pub line: Option<usize>,
    /// The key it is about, e.g. `on.webhook.verify.secret_env`.
    pub key: String,
    pub message: String,
}

/// A flow whose file is broken: what serves is the last version that loaded cleanly.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Stale {
    pub problems: Vec<String>,
}

/// What starts a flow's runs, as `GET /api/flows` shows it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerView {
    Webhook {},
    /// The event type.
    Event(String),
    Schedule(ScheduleView),
}

/// A cron flow's schedule.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ScheduleView {
    pub cron: String,
    pub timezone: String,
    pub last_fired: Option<Ts>,
    /// The next firing (`GET /api/flows/{flow}`: the next five).
    pub next: Value,
}

/// One flow in `GET /api/flows`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FlowEntry {
    pub name: String,
    pub description: String,
    /// A short hash of the file.
    pub version: String,
    pub file: std::path::PathBuf,
    /// Requests and runs counted by outcome (`accepted`, `ignored`, `refused:<reason>`, …).
    pub counters: std::collections::BTreeMap<String, u64>,
    pub warnings: Vec<FlowWarning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<Stale>,
    pub trigger: TriggerView,
    /// A webhook flow's URL path (it holds the flow's token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `GET /api/flows`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FlowList {
    pub flows: Vec<FlowEntry>,
    pub reload: crate::reload::ReloadStatus,
}

pub async fn list_flows(State(st): State<AppState>) -> Result<Json<FlowList>, ApiError> {
    let mut flows = Vec::new();
    let set = st.flows().load();
    let warnings = st.flows().warnings();
    for f in set.flows.values() {
        let (trigger, path) = match &f.trigger {
            Trigger::Webhook(_) => (
                TriggerView::Webhook {},
                Some(format!("/hooks/{}/{}", f.name, st.intake.tokens.token(&f.name))),
            ),
            Trigger::Event { event_type, .. } => (TriggerView::Event(event_type.clone()), None),
            Trigger::Schedule(s) => (
                TriggerView::Schedule(ScheduleView {
                    cron: s.expr.clone(),
                    timezone: s.tz.name().to_string(),
                    last_fired: st.store().last_firing(&f.name).await.map_err(internal)?,
                    next: json!(s.next_after(Ts::now())),
                }),
                None,
            ),
        };
        flows.push(FlowEntry {
            name: f.name.clone(),
            description: f.description.clone(),
            version: f.version.clone(),
            file: f.file.clone(),
            counters: st.store().counters(&f.name).await.map_err(internal)?,
            warnings: warnings_of(&warnings, &f.name),
            stale: stale_of(&set, &f.name),
            trigger,
            path,
        });
    }
    Ok(Json(FlowList {
        flows,
        reload: st.flows().status(),
    }))
}

/// Its file is broken: the problems, while the last version that loaded cleanly serves.
pub(super) fn stale_of(set: &crate::flow::FlowSet, flow: &str) -> Option<Stale> {
    set.stale.get(flow).map(|p| Stale { problems: p.clone() })
}

#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    #[serde(default)]
    pub from: crate::replay::From,
    #[serde(default)]
    pub version: crate::replay::Version,
}

/// `POST /api/runs/{id}/replay` `{"from": "start" | "failed" | "<action>"}`: a new run from this one's
/// request under the flow as loaded now.
pub async fn replay_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Option<super::body::JsonObject<ReplayBody>>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    let body = body.map(|b| b.0).unwrap_or_default();
    let old = st
        .store()
        .get_run(&id)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no run {id}")))?;
    let new = replay_one(&st, &old, body.from, body.version).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Replayed {
            run_id: new,
            replay_of: id,
        }),
    ))
}

async fn replay_one(
    st: &AppState,
    old: &Run,
    from: crate::replay::From,
    version: crate::replay::Version,
) -> Result<String, ApiError> {
    let flow = match version {
        crate::replay::Version::Current => st.flows().load().get(&old.flow).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "flow_not_loaded",
                format!("flow `{}` is not loaded any more", old.flow),
            )
        })?,
        crate::replay::Version::Original => original_flow(st, old).await?,
    };
    let names: Vec<String> = flow.actions.iter().map(|a| a.name.clone()).collect();
    let new = crate::replay::replay(old, from.clone(), &names, &flow.version)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "not_replayable", e))?;
    st.store().insert_run(&new).await.map_err(internal)?;
    st.intake.wake.notify_one();
    tracing::info!(flow = %old.flow, run_id = %new.id, replay_of = %old.id, ?from, "run replayed");
    Ok(new.id)
}

/// The flow as it was when `old` was accepted: in memory if remembered, else compiled from
/// the source kept in the store (and remembered for the engine).
async fn original_flow(st: &AppState, old: &Run) -> Result<std::sync::Arc<crate::flow::Flow>, ApiError> {
    if let Some((_, f)) = st.flows().find(&old.flow, &old.flow_version) {
        return Ok(f);
    }
    let gone = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "version_unknown",
            format!(
                "flow `{}` version {} is not kept any more",
                old.flow, old.flow_version
            ),
        )
    };
    let source = st
        .store()
        .flow_source(&old.flow, &old.flow_version)
        .await
        .map_err(internal)?
        .ok_or_else(gone)?;
    let set = crate::flow::load_source(&old.flow, &source, &st.templates_dir).map_err(|errors| {
        let detail: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ApiError::new(
            StatusCode::CONFLICT,
            "version_invalid",
            format!(
                "version {} no longer loads: {}",
                old.flow_version,
                detail.join("; ")
            ),
        )
    })?;
    let set = std::sync::Arc::new(set);
    let flow = set.get(&old.flow).cloned().ok_or_else(gone)?;
    st.flows().remember(set);
    Ok(flow)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReplay {
    /// RFC 3339 bounds on when the runs were created.
    pub since: Option<Ts>,
    pub until: Option<Ts>,
    #[serde(default)]
    pub from: crate::replay::From,
    #[serde(default)]
    pub version: crate::replay::Version,
    /// Only count what would be replayed.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /api/flows/{flow}/replay-failed`: replays every failed run of the flow created in the
/// range (or just counts them with `dry_run`).
pub async fn replay_failed(
    State(st): State<AppState>,
    Path(flow): Path<String>,
    super::body::JsonObject(req): super::body::JsonObject<BulkReplay>,
) -> Result<Json<BulkReplayed>, ApiError> {
    let mut failed = Vec::new();
    let mut before = None;
    loop {
        let page = st
            .store()
            .list_runs(&RunFilter {
                flow: Some(flow.clone()),
                status: Some(RunStatus::Failed),
                before: before.clone(),
                limit: MAX_PAGE,
                since: req.since,
                until: req.until,
                text: None,
            })
            .await
            .map_err(internal)?;
        let done = page.len() < MAX_PAGE;
        before = page.last().map(|r| r.id.clone());
        failed.extend(page);
        if done {
            break;
        }
    }
    failed.reverse(); // oldest first
    if req.dry_run {
        return Ok(Json(BulkReplayed {
            matched: failed.len(),
            replayed: Vec::new(),
            errors: Vec::new(),
        }));
    }
    let mut replayed = Vec::new();
    let mut errors = Vec::new();
    for old in &failed {
        match replay_one(&st, old, req.from.clone(), req.version).await {
            Ok(id) => replayed.push(Replayed {
                run_id: id,
                replay_of: old.id.clone(),
            }),
            Err(e) => errors.push(NotReplayed {
                run_id: old.id.clone(),
                error: e.detail,
            }),
        }
    }
    Ok(Json(BulkReplayed {
        matched: failed.len(),
        replayed,
        errors,
    }))
}

#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExitRequest {
    /// Recorded as the runs' exit reason.
    pub reason: Option<String>,
    /// Only runs whose request or vars contain this text (bulk exit).
    pub q: Option<String>,
    /// Only count what would be exited (bulk exit).
    #[serde(default)]
    pub dry_run: bool,
}

fn exit_reason(req: &ExitRequest) -> String {
    req.reason
        .clone()
        .unwrap_or_else(|| "ended by an operator".into())
}

/// `POST /api/runs/{id}/exit`: ends an unfinished run as exited (a run a worker holds ends
/// before its next action).
pub async fn exit_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Option<super::body::JsonObject<ExitRequest>>,
) -> Result<Json<RunExited>, ApiError> {
    let req = body.map(|b| b.0).unwrap_or_default();
    let exited = st
        .store()
        .exit_run(&id, &exit_reason(&req))
        .await
        .map_err(internal)?;
    if matches!(exited, Exited::Now | Exited::Noted)
        && let Some(run) = st.store().get_run(&id).await.map_err(internal)?
    {
        // Ended here, not by the engine: counted here (the engine counts the runs it ends).
        st.intake.metrics.run_finished(&run.flow, "exited");
    }
    if exited == Exited::No {
        return Err(match st.store().get_run(&id).await.map_err(internal)? {
            None => ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no run {id}")),
            Some(run) => ApiError::new(
                StatusCode::CONFLICT,
                "finished",
                format!("run {id} is already {}", run.status.as_str()),
            ),
        });
    }
    tracing::info!(run_id = %id, "run exited by the API");
    Ok(Json(RunExited {
        run_id: id,
        exited: true,
    }))
}

/// `POST /api/flows/{flow}/exit`: ends every waiting run of the flow (optionally only those
/// whose request or vars contain `q`), page by page — e.g. before moving a sequence to a new
/// version of its flow.
pub async fn exit_waiting(
    State(st): State<AppState>,
    Path(flow): Path<String>,
    super::body::JsonObject(req): super::body::JsonObject<ExitRequest>,
) -> Result<Json<BulkExited>, ApiError> {
    let reason = exit_reason(&req);
    let (mut matched, mut exited) = (0usize, 0usize);
    let mut before = None;
    loop {
        let page = st
            .store()
            .list_runs(&RunFilter {
                flow: Some(flow.clone()),
                status: Some(RunStatus::Waiting),
                before: before.clone(),
                limit: MAX_PAGE,
                text: req.q.clone(),
                ..RunFilter::default()
            })
            .await
            .map_err(internal)?;
        let done = page.len() < MAX_PAGE;
        before = page.last().map(|r| r.id.clone());
        matched += page.len();
        if !req.dry_run {
            for run in &page {
                match st.store().exit_run(&run.id, &reason).await.map_err(internal)? {
                    Exited::No => {}
                    Exited::Marked => exited += 1,
                    Exited::Now | Exited::Noted => {
                        st.intake.metrics.run_finished(&run.flow, "exited");
                        exited += 1;
                    }
                }
            }
        }
        if done {
            break;
        }
    }
    if req.dry_run {
        tracing::info!(%flow, matched, "dry run: waiting runs that would exit (none exited)");
    } else {
        tracing::info!(%flow, matched, exited, "waiting runs exited by the API");
    }
    Ok(Json(BulkExited { matched, exited }))
}

/// `?limit=` alone.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LimitQuery {
    /// How many, default 50: any number is taken, as 1 to 100 (what is kept per flow).
    #[schemars(range(max = usize::MAX))]
    pub limit: Option<usize>,
}

/// `GET /api/flows/{flow}/requests`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RecentRequests {
    pub flow: String,
    pub requests: Vec<crate::intake::log::Entry>,
}

/// `GET /api/flows/{flow}/requests?limit=`: the flow's last requests, newest first.
pub async fn recent_requests(
    State(st): State<AppState>,
    Path(flow): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<RecentRequests>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, crate::intake::log::PER_FLOW);
    let requests = st.intake.requests.recent(&flow, limit);
    Ok(Json(RecentRequests { flow, requests }))
}

/// `GET /api/store`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StoreHealth {
    /// Whether acknowledged data was damaged (a crash's torn last write is not).
    pub damaged: bool,
    pub damage: Vec<crate::store::Damage>,
}

/// `GET /api/instances`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Instances {
    /// The instance answering.
    pub this: String,
    pub instances: Vec<crate::store::coordination::Instance>,
    /// Flows that live instances serve in more than one version (a deploy under way, or one
    /// left behind).
    pub flows_with_mixed_versions: Vec<String>,
}

/// `GET /api/store`: what the store could not read when it was opened (set aside, with where
/// its bytes went), so an operator learns of damage without reading logs.
pub async fn store_health(State(st): State<AppState>) -> Result<Json<StoreHealth>, ApiError> {
    let damage = st.store().damage();
    Ok(Json(StoreHealth {
        damaged: damage.iter().any(|d| !d.torn_tail),
        damage,
    }))
}

/// `GET /api/instances`: the hookflow instances sharing this store that reported within the
/// last 15 s, each with the version of every flow it serves (`this` is the one answering), and
/// per flow whether every live instance serves the same version.
pub async fn list_instances(State(st): State<AppState>) -> Result<Json<Instances>, ApiError> {
    let live = st
        .membership
        .live(crate::time::Ts::now())
        .await
        .map_err(internal)?;
    let mut versions: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> = Default::default();
    for i in &live {
        for (flow, v) in &i.flows {
            versions.entry(flow).or_default().insert(v);
        }
    }
    let mixed: Vec<String> = versions
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(f, _)| f.to_string())
        .collect();
    Ok(Json(Instances {
        this: st.membership.id().to_string(),
        instances: live,
        flows_with_mixed_versions: mixed,
    }))
}

/// `POST /api/backup`: a consistent backup of the store taken now, while it serves, as a
/// download (`application/gzip`; what it holds is in the `x-hookflow-backup` header). The
/// file is written beside the store first and removed once sent. `hookflow backup` uses this.
pub async fn backup(State(st): State<AppState>) -> Result<axum::response::Response, ApiError> {
    let (path, info) = st.store().backup_file().await.map_err(|e| {
        tracing::error!(error = %e, "backup failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "backup_failed", e.to_string())
    })?;
    let file = tokio::fs::File::open(&path).await;
    // Open, then unlinked: the download holds the only reference to it.
    let _ = tokio::fs::remove_file(&path).await;
    let file =
        file.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backup_failed", e.to_string()))?;
    tracing::info!(
        entries = info.entries,
        pending_runs = info.pending_runs,
        "backup taken"
    );
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut resp = axum::response::IntoResponse::into_response(body);
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/gzip"),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&serde_json::to_string(&info).unwrap_or_default()) {
        resp.headers_mut().insert("x-hookflow-backup", v);
    }
    Ok(resp)
}

/// `flow`'s warnings as the API shows them (line, key, message).
pub(super) fn warnings_of(all: &[crate::flow::warnings::Warning], flow: &str) -> Vec<FlowWarning> {
    all.iter()
        .filter(|w| w.flow == flow)
        .map(|w| FlowWarning {
            line: w.line,
            key: w.path.clone(),
            message: w.message.clone(),
        })
        .collect()
}

pub(super) fn internal(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store error while serving the API");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", e.to_string())
}
