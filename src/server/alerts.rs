//! `GET /api/alerts`: the alerts raised now and the ones resolved lately, with the figures that
//! raised them — what the dashboard, `hookflow alerts` and a health check read. The runs API's
//! access rule applies.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::api::{authorize, internal};
use super::{ApiError, AppState};
use crate::store::alerts::active_and_recent;

/// Resolved alerts listed, newest first.
const RECENT: usize = 50;

pub async fn list(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&st, peer, &headers)?;
    let states = st.store().alert_states().await.map_err(internal)?;
    let (active, mut recent) = active_and_recent(states);
    recent.truncate(RECENT);
    Ok(Json(json!({ "active": active, "recent": recent })))
}
