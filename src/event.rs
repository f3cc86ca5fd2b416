//! Internal events: what segment changes, `emit` actions and failed runs raise, and what
//! event-triggered flows run on.
//!
//! The envelope is a public contract — flows match on it and forward it to other systems — so
//! it is versioned ([`ENVELOPE_VERSION`]) and documented in docs/flows.md. Fields are only ever
//! added within a version.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::run::new_run_id;
use crate::time::Ts;

/// Version of the envelope's shape.
pub const ENVELOPE_VERSION: u32 = 1;

/// A contact joined a segment (not raised when an existing member is updated).
pub const SEGMENT_ADDED: &str = "segment.added";
/// A contact left a segment.
pub const SEGMENT_REMOVED: &str = "segment.removed";
/// A run ended failed (retries exhausted or a permanent error).
pub const RUN_FAILED: &str = "run.failed";

/// The type prefixes hookflow raises events under: `emit` may not use them, and a trigger on
/// one must name an event hookflow raises.
const RESERVED_FAMILIES: [&str; 4] = ["segment.", "run.", "alert.", "email."];

/// Longest chain of event-triggered runs, unless configured otherwise.
pub const DEFAULT_MAX_CHAIN_DEPTH: u32 = 8;

/// Where an event came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// The flow and run that raised it; absent for the admin API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `run`, `api`, `unsubscribe` (a recipient's one-click unsubscribe).
    pub via: String,
}

impl Origin {
    pub fn run(flow: &str, run_id: &str, action: Option<&str>) -> Origin {
        Origin {
            flow: Some(flow.into()),
            run_id: Some(run_id.into()),
            action: action.map(str::to_string),
            via: "run".into(),
        }
    }

    pub fn api() -> Origin {
        Self::via("api")
    }

    /// Raised outside any run, by `via` (`api`, `unsubscribe`).
    pub fn via(via: &str) -> Origin {
        Origin {
            flow: None,
            run_id: None,
            action: None,
            via: via.into(),
        }
    }
}

/// The event envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub version: u32,
    #[serde(rename = "type")]
    pub kind: String,
    /// Unique, and sorted by creation (a ULID with an `evt_` prefix).
    pub id: String,
    pub time: Ts,
    pub source: Origin,
    /// How many event hops led here: 1 for an event raised by a webhook, schedule or API
    /// action; one more for each event-triggered run in between.
    pub depth: u32,
    pub data: Value,
}

impl Event {
    pub fn new(kind: &str, source: Origin, depth: u32, data: Value) -> Event {
        Event {
            version: ENVELOPE_VERSION,
            kind: kind.to_string(),
            id: format!("evt_{}", new_run_id()),
            time: Ts::now(),
            source,
            depth,
            data,
        }
    }

    /// The envelope as event-triggered runs see it (their `body`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }
}

/// Event types users may raise with `emit`: dotted lower-case words, not one of hookflow's own
/// families (`segment.*`, `run.*`).
pub fn check_custom_type(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 100
        && t.split('.').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        });
    if !ok {
        return Err(format!(
            "event type `{t}` must be dot-separated lower-case words (e.g. `order.flagged`)"
        ));
    }
    if RESERVED_FAMILIES.iter().any(|family| t.starts_with(family)) {
        return Err(format!(
            "event type `{t}`: `segment.*`, `run.*`, `alert.*` and `email.*` are raised by hookflow itself"
        ));
    }
    Ok(())
}

/// Event types a flow may be triggered by: hookflow's own or a valid custom one.
pub fn check_trigger_type(t: &str) -> Result<(), String> {
    if [
        SEGMENT_ADDED,
        SEGMENT_REMOVED,
        RUN_FAILED,
        crate::alert::RAISED,
        crate::alert::RESOLVED,
        crate::clicks::CLICKED,
    ]
    .contains(&t)
    {
        return Ok(());
    }
    if RESERVED_FAMILIES.iter().any(|family| t.starts_with(family)) {
        return Err(format!(
            "unknown event type `{t}`: hookflow raises `segment.added`, `segment.removed`, `run.failed`, `alert.raised`, `alert.resolved` and `email.clicked`"
        ));
    }
    check_custom_type(t)
}

/// An `on: event:` type: one type, or a family ending in `.*` (`alert.*`: `alert.raised`
/// and `alert.resolved`).
pub fn check_trigger_pattern(t: &str) -> Result<(), String> {
    match t.strip_suffix(".*") {
        Some(family) => {
            let ok = !family.is_empty()
                && family.split('.').all(|w| {
                    !w.is_empty()
                        && w.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                });
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "event type `{t}`: a family is dot-separated lower-case words then `.*` (e.g. `alert.*`)"
                ))
            }
        }
        None => check_trigger_type(t),
    }
}

/// Whether an event of type `kind` triggers a flow on `pattern` (see [`check_trigger_pattern`]).
pub fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('.') => kind.starts_with(prefix),
        _ => pattern == kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape_is_stable() {
        let e = Event::new("order.flagged", Origin::api(), 1, json!({"x": 1}));
        let v = e.to_json();
        assert_eq!(v["version"], 1);
        assert_eq!(v["type"], "order.flagged");
        assert!(v["id"].as_str().unwrap().starts_with("evt_"));
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["source"], json!({"via": "api"}));
        assert_eq!(v["depth"], 1);
        assert_eq!(v["data"], json!({"x": 1}));
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn event_type_rules() {
        assert!(check_custom_type("order.flagged").is_ok());
        assert!(check_custom_type("ping").is_ok());
        assert!(check_custom_type("Order.Flagged").is_err());
        assert!(check_custom_type("order..x").is_err());
        assert!(check_custom_type("segment.added").is_err());
        assert!(check_custom_type("run.custom").is_err());
        assert!(check_trigger_type("segment.removed").is_ok());
        assert!(check_trigger_type("run.failed").is_ok());
        assert!(check_trigger_type("segment.changed").is_err());
        assert!(check_trigger_type("order.flagged").is_ok());
        assert!(check_trigger_type("alert.raised").is_ok());
        assert!(check_trigger_type("alert.fired").is_err());
        assert!(check_trigger_type("email.clicked").is_ok());
        assert!(check_trigger_type("email.opened").is_err());
        assert!(check_custom_type("email.clicked").is_err());
        assert!(check_trigger_pattern("alert.*").is_ok());
        assert!(check_trigger_pattern(".*").is_err());
        assert!(type_matches("alert.*", "alert.resolved"));
        assert!(!type_matches("alert.*", "alerts.resolved"));
        assert!(!type_matches("alert.raised", "alert.resolved"));
    }
}
