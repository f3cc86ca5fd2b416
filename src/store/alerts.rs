//! The alerts' role in the store: each alert's state, shared by every instance, changed only
//! by compare-and-set together with the event that announces the change. So an alert is
//! raised once however many instances judge it, and a crash between the change and the
//! event's delivery neither loses nor doubles the event (it waits in the outbox like any
//! other). Backends: `sled/alerts.rs`, `postgres/alerts.rs`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Result;
use crate::alert::Kind;
use crate::event::Event;
use crate::time::Ts;

/// One alert's state. Memory and disk: one per (flow, kind) that ever held, plus one per
/// destination whose circuit stayed open too long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AlertState {
    /// `{flow}/{kind}`, `*/backlog`, `*/circuit_open/{destination}`.
    pub key: String,
    /// The flow it is about; `None` for the server's own (backlog, circuits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    pub kind: Kind,
    /// What else it is about (a circuit's destination).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub active: bool,
    /// When it was last raised, and last resolved.
    pub raised_at: Ts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Ts>,
    /// How many times it changed: a change is written only over the state it was judged
    /// against.
    pub changes: u64,
    /// The figures that raised it (or, once resolved, that resolved it).
    pub figures: Value,
    /// The same in words.
    pub message: String,
    /// The watcher (one per process start) that raised it. Alerts judged on one instance's
    /// own figures are resolved by it, or by another once it stopped confirming them.
    #[serde(default)]
    pub raised_by: String,
    /// When its raiser last found it still holding.
    #[serde(default)]
    pub confirmed_at: Ts,
}

/// The raised alerts (newest raise first) and the resolved ones (newest resolution first).
pub fn active_and_recent(states: Vec<AlertState>) -> (Vec<AlertState>, Vec<AlertState>) {
    let (mut active, mut recent): (Vec<_>, Vec<_>) = states.into_iter().partition(|s| s.active);
    active.sort_by_key(|s| std::cmp::Reverse(s.raised_at));
    recent.sort_by_key(|s| std::cmp::Reverse(s.resolved_at));
    (active, recent)
}

#[async_trait]
pub trait Alerts: Send + Sync {
    /// Every alert's state.
    async fn alert_states(&self) -> Result<Vec<AlertState>>;

    /// Writes `next` and puts `event` (if any: a confirmation raises none) in the outbox,
    /// atomically — if the stored state of `next.key` has `next.changes - 1` changes (none
    /// stored counts as 0). `false`: another instance changed it first, and nothing was
    /// written.
    async fn change_alert(&self, next: AlertState, event: Option<Event>) -> Result<bool>;
}
