//! What the dashboard's views read beyond runs and segments: the per-flow time series and the
//! queue (`/api/stats`), the request log of every flow at once (`/api/requests`) and one flow
//! in full (`/api/flows/{flow}`). Each answer is built from bounded in-memory state or one
//! store question; none reads every run.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{internal, warnings_of};
use super::{ApiError, AppState};
use crate::flow::{Flow, Trigger};
use crate::time::Ts;

/// Scheduled firings shown for a cron flow.
const NEXT_FIRINGS: usize = 5;

/// `GET /api/stats`: per flow, the last hour per minute and the last day per hour (requests
/// by outcome, runs by end state, attempts and their p50/p95 latency), plus the queue, the
/// waiting runs and the open circuits. See [`crate::stats`] for what is kept and what it costs.
pub async fn stats(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = Ts::now();
    let (depth, oldest) = st.store().queue_stats(now).await.map_err(internal)?;
    let waiting = st.store().waiting_counts().await.map_err(internal)?;
    let flows: Vec<Value> = st
        .intake
        .metrics
        .stats
        .snapshot(now)
        .into_iter()
        .map(|(flow, hour, day)| json!({ "flow": flow, "hour": hour, "day": day }))
        .collect();
    Ok(Json(json!({
        "now": now,
        "kinds": crate::stats::KINDS,
        "flows": flows,
        "queue": {
            "depth": depth,
            "oldest_due": oldest,
            "oldest_due_seconds": oldest.map_or(0, |t| now.since(t).as_secs()),
        },
        "waiting": waiting,
        "open_circuits": st.guards.open_circuits(now),
    })))
}

#[derive(Debug, Deserialize, Default)]
pub struct RequestsQuery {
    pub flow: Option<String>,
    /// `accepted`, `ignored`, `duplicate`, `ping` or `refused`.
    pub outcome: Option<String>,
    pub limit: Option<usize>,
}

/// `GET /api/requests?flow=&outcome=&limit=`: the newest requests of every flow (or one),
/// each with its flow, outcome, status and reason — requests that named no known flow or a
/// wrong token are listed under `(unknown)`.
pub async fn requests(
    State(st): State<AppState>,
    Query(q): Query<RequestsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let entries = st
        .intake
        .requests
        .newest(q.flow.as_deref(), q.outcome.as_deref(), limit);
    let out: Vec<Value> = entries
        .into_iter()
        .map(|(flow, e)| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            v["flow"] = json!(flow);
            v
        })
        .collect();
    Ok(Json(json!({ "requests": out })))
}

/// `GET /api/flows/{flow}`: one flow as the dashboard draws it — its file as written (source
/// and the same as JSON), version, trigger with its URL or next firings, warnings, whether a
/// broken file left it on its last good version, and its counters.
pub async fn show_flow(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let set = st.flows().load();
    let f = set
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no flow {name}")))?;
    let counters = st.store().counters(&f.name).await.map_err(internal)?;
    let link_clicks = st.store().link_counts(&f.name).await.map_err(internal)?;
    let mut out = json!({
        "name": f.name,
        "description": f.description,
        "version": f.version,
        "file": f.file,
        "source": f.source,
        "spec": spec_of(f),
        "counters": counters,
        "link_clicks": link_clicks,
        "warnings": warnings_of(&st.flows().warnings(), &f.name),
        "stale": set.stale.get(&f.name).map(|p| json!({ "problems": p })),
        "recent_refusals": st.intake.metrics.stats.refusals_since(&f.name, Ts(0)),
    });
    match &f.trigger {
        Trigger::Webhook(_) => {
            out["path"] = json!(format!("/hooks/{}/{}", f.name, st.intake.tokens.token(&f.name)));
        }
        Trigger::Schedule(s) => {
            let mut next = Vec::new();
            let mut t = Ts::now();
            while next.len() < NEXT_FIRINGS {
                let Some(at) = s.next_after(t) else { break };
                next.push(at);
                t = at;
            }
            out["schedule"] = json!({
                "cron": s.expr,
                "timezone": s.tz.name(),
                "last_fired": st.store().last_firing(&f.name).await.map_err(internal)?,
                "next": next,
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
