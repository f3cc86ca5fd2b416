//! What the dashboard's views read beyond runs and segments: the per-flow time series and the
//! queue (`/api/stats`), the request log of every flow at once (`/api/requests`) and one flow
//! in full (`/api/flows/{flow}`). Each answer is built from bounded in-memory state or one
//! store question; none reads every run.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::{FlowWarning, ScheduleView, Stale, internal, stale_of, warnings_of};
use super::{ApiError, AppState};
use crate::flow::{Flow, Trigger};
use crate::time::Ts;

/// Scheduled firings shown for a cron flow.
const NEXT_FIRINGS: usize = 5;

/// One flow's charts: the last hour per minute, the last day per hour.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FlowStats {
    pub flow: String,
    pub hour: crate::stats::Window,
    pub day: crate::stats::Window,
}

/// The queue: runs due now, and how long the oldest has waited.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct QueueView {
    pub depth: u64,
    pub oldest_due: Option<Ts>,
    pub oldest_due_seconds: u64,
}

/// `GET /api/stats`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Stats {
    pub now: Ts,
    /// What the series count.
    pub kinds: Vec<&'static str>,
    pub flows: Vec<FlowStats>,
    pub queue: QueueView,
    /// Waiting runs per flow.
    pub waiting: BTreeMap<String, u64>,
    pub open_circuits: Vec<crate::action::breaker::CircuitView>,
}

/// `GET /api/stats`: per flow, the last hour per minute and the last day per hour (requests
/// by outcome, runs by end state, attempts and their p50/p95 latency), plus the queue, the
/// waiting runs and the open circuits. See [`crate::stats`] for what is kept and what it costs.
pub async fn stats(State(st): State<AppState>) -> Result<Json<Stats>, ApiError> {
    let now = Ts::now();
    let (depth, oldest) = st.store().queue_stats(now).await.map_err(internal)?;
    let waiting = st.store().waiting_counts().await.map_err(internal)?;
    let flows = st
        .intake
        .metrics
        .stats
        .snapshot(now)
        .into_iter()
        .map(|(flow, hour, day)| FlowStats { flow, hour, day })
        .collect();
    Ok(Json(Stats {
        now,
        kinds: crate::stats::KINDS.to_vec(),
        flows,
        queue: QueueView {
            depth,
            oldest_due: oldest,
            oldest_due_seconds: oldest.map_or(0, |t| now.since(t).as_secs()),
        },
        waiting,
        open_circuits: st.guards.open_circuits(now),
    }))
}

#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
pub struct RequestsQuery {
    /// Only this flow's (`(unknown)`: requests that named no known flow or a wrong token).
    pub flow: Option<String>,
    /// `accepted`, `ignored`, `duplicate`, `ping` or `refused`.
    pub outcome: Option<String>,
    /// Requests, default 100: any number is taken, as 1 to 500.
    #[schemars(range(max = usize::MAX))]
    pub limit: Option<usize>,
}

/// One logged request with its flow.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FlowRequest {
    pub flow: String,
    #[serde(flatten)]
    pub entry: crate::intake::log::Entry,
}

/// `GET /api/requests`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Requests {
    pub requests: Vec<FlowRequest>,
}

/// `GET /api/requests?flow=&outcome=&limit=`: the newest requests of every flow (or one),
/// each with its flow, outcome, status and reason — requests that named no known flow or a
/// wrong token are listed under `(unknown)`.
pub async fn requests(
    State(st): State<AppState>,
    Query(q): Query<RequestsQuery>,
) -> Result<Json<Requests>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let requests = st
        .intake
        .requests
        .newest(q.flow.as_deref(), q.outcome.as_deref(), limit)
        .into_iter()
        .map(|(flow, entry)| FlowRequest { flow, entry })
        .collect();
    Ok(Json(Requests { requests }))
}

/// `GET /api/flows/{flow}`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FlowDetail {
    pub name: String,
    pub description: String,
    pub version: String,
    pub file: std::path::PathBuf,
    /// The file as written.
    pub source: String,
    /// The same as JSON (null if it is not one YAML document).
    pub spec: Value,
    pub counters: BTreeMap<String, u64>,
    /// Clicks on each tracked link of the flow's emails.
    pub link_clicks: Vec<crate::clicks::LinkCount>,
    pub warnings: Vec<FlowWarning>,
    pub stale: Option<Stale>,
    pub recent_refusals: Vec<crate::stats::Refusal>,
    /// A webhook flow's URL path (it holds the flow's token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleView>,
}

/// `GET /api/flows/{flow}`: one flow as the dashboard draws it — its file as written (source
/// and the same as JSON), version, trigger with its URL or next firings, warnings, whether a
/// broken file left it on its last good version, and its counters.
pub async fn show_flow(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<FlowDetail>, ApiError> {
    let set = st.flows().load();
    let f = set
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no flow {name}")))?;
    let counters = st.store().counters(&f.name).await.map_err(internal)?;
    let link_clicks = st.store().link_counts(&f.name).await.map_err(internal)?;
    let mut out = FlowDetail {
        name: f.name.clone(),
        description: f.description.clone(),
        version: f.version.clone(),
        file: f.file.clone(),
        source: f.source.clone(),
        spec: spec_of(f),
        counters,
        link_clicks,
        warnings: warnings_of(&st.flows().warnings(), &f.name),
        stale: stale_of(&set, &f.name),
        recent_refusals: st.intake.metrics.stats.refusals_since(&f.name, Ts(0)),
        path: None,
        schedule: None,
    };
    match &f.trigger {
        Trigger::Webhook(_) => {
            out.path = Some(format!("/hooks/{}/{}", f.name, st.intake.tokens.token(&f.name)));
        }
        Trigger::Schedule(s) => {
            let mut next = Vec::new();
            let mut t = Ts::now();
            while next.len() < NEXT_FIRINGS {
                let Some(at) = s.next_after(t) else { break };
                next.push(at);
                t = at;
            }
            out.schedule = Some(ScheduleView {
                cron: s.expr.clone(),
                timezone: s.tz.name().to_string(),
                last_fired: st.store().last_firing(&f.name).await.map_err(internal)?,
                next: serde_json::json!(next),
            });
        }
        Trigger::Event { .. } => {}
    }
    Ok(Json(out))
}

/// The flow file as JSON (the keys and values as written), for drawing; `null` if it cannot
/// be read as one YAML document (a flow that loaded always can).
fn spec_of(f: &Flow) -> Value {
    serde_yaml::from_str::<Value>(f.source.trim_start_matches('\u{feff}')).unwrap_or(Value::Null)
}
