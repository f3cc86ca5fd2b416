//! The destinations API: each destination's bulkhead (attempts in flight against its limit,
//! work sent back while full) and circuit breaker, as the engine's guards hold them now.

use axum::Json;
use axum::extract::State;

use super::{ApiError, AppState};
use crate::action::breaker::CircuitView;
use crate::time::Ts;

/// `GET /api/breakers`: every destination's circuit that is not closed and quiet.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Circuits {
    pub circuits: Vec<CircuitView>,
}

/// One destination: attempts in flight against its limit, and its circuit.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Destination {
    /// Host and port, or the SMTP server.
    pub destination: String,
    pub in_flight: usize,
    /// Most attempts in flight at once (absent: no attempt made yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Attempts sent back to the queue because the destination was full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<u64>,
    /// A typical attempt's duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typical_ms: Option<u64>,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    pub consecutive_failures: u32,
}

/// `GET /api/destinations`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Destinations {
    pub destinations: Vec<Destination>,
}

pub async fn list_breakers(State(st): State<AppState>) -> Result<Json<Circuits>, ApiError> {
    Ok(Json(Circuits {
        circuits: st.guards.circuits(Ts::now()),
    }))
}

/// `GET /api/destinations`: each destination's attempts in flight, limit and circuit.
pub async fn list_destinations(State(st): State<AppState>) -> Result<Json<Destinations>, ApiError> {
    let circuits = st.guards.circuits(Ts::now());
    let circuit_of = |d: &str| circuits.iter().find(|c| c.destination == d);
    let mut out: Vec<Destination> = st
        .guards
        .bulkheads
        .destinations()
        .into_iter()
        .map(|d| {
            let circuit = circuit_of(&d.destination);
            Destination {
                circuit: circuit.map_or("closed", |c| c.state),
                consecutive_failures: circuit.map_or(0, |c| c.consecutive_failures),
                destination: d.destination,
                in_flight: d.in_flight,
                limit: Some(d.limit),
                deferred: Some(d.deferred),
                typical_ms: d.typical_ms,
            }
        })
        .collect();
    for c in &circuits {
        if !out.iter().any(|d| d.destination == c.destination) {
            out.push(Destination {
                destination: c.destination.clone(),
                in_flight: 0,
                limit: None,
                deferred: None,
                typical_ms: None,
                circuit: c.state,
                consecutive_failures: c.consecutive_failures,
            });
        }
    }
    Ok(Json(Destinations { destinations: out }))
}
