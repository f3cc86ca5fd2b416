//! `GET /api/alerts`: the alerts raised now and the ones resolved lately, with the figures that
//! raised them — what the dashboard, `hookflow alerts` and a health check read. The runs API's
//! access rule applies.

use crate::store::alerts::AlertState;
use axum::Json;
use axum::extract::State;

use super::api::internal;
use super::{ApiError, AppState};
use crate::store::alerts::active_and_recent;

/// Resolved alerts listed, newest first.
const RECENT: usize = 50;

/// `GET /api/alerts`: the alerts raised now, and the last ones resolved.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Alerts {
    pub active: Vec<AlertState>,
    /// The last 50 resolved, newest first.
    pub recent: Vec<AlertState>,
}

pub async fn list(State(st): State<AppState>) -> Result<Json<Alerts>, ApiError> {
    let states = st.store().alert_states().await.map_err(internal)?;
    let (active, mut recent) = active_and_recent(states);
    recent.truncate(RECENT);
    Ok(Json(Alerts { active, recent }))
}
