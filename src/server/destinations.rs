//! The destinations API: each destination's bulkhead (attempts in flight against its limit,
//! work sent back while full) and circuit breaker, as the engine's guards hold them now.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::time::Ts;

/// `GET /api/breakers`: every circuit that is not closed, or was recently.
pub async fn list_breakers(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "circuits": st.guards.circuits(Ts::now()) })))
}

/// `GET /api/destinations`: per destination, attempts in flight against its limit, how often
/// work was sent back because it was full, and its circuit.
pub async fn list_destinations(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let circuits = st.guards.circuits(Ts::now());
    let mut out: Vec<Value> = st
        .guards
        .bulkheads
        .destinations()
        .into_iter()
        .map(|d| {
            let circuit = circuits.iter().find(|c| c.destination == d.destination);
            json!({
                "destination": d.destination,
                "in_flight": d.in_flight,
                "limit": d.limit,
                "deferred": d.deferred,
                "typical_ms": d.typical_ms,
                "circuit": circuit.map_or("closed", |c| c.state),
                "consecutive_failures": circuit.map_or(0, |c| c.consecutive_failures),
            })
        })
        .collect();
    for c in &circuits {
        if !out.iter().any(|d| d["destination"] == c.destination.as_str()) {
            out.push(json!({"destination": c.destination, "in_flight": 0, "circuit": c.state, "consecutive_failures": c.consecutive_failures}));
        }
    }
    Ok(Json(json!({ "destinations": out })))
}
