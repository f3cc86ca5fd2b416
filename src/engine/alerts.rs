//! The alert watcher: every `alerts.every`, judges each flow's rules ([`crate::alert`]) on the
//! figures this instance counted ([`crate::stats::Stats`]), and the server's own (the oldest
//! due run, open circuits); where the judgement differs from the stored state it changes the
//! state and raises `alert.raised` or `alert.resolved` in one compare-and-set write — so of
//! several instances on one database, one raises each change.
//!
//! Windowed figures (failure rate, refusals, dead letters) are what this instance counted;
//! silence is confirmed against the store (a run accepted by any instance) before it is
//! raised. Memory: the last-accepted time the store gave per silent flow, and nothing else
//! beyond the stats' rings.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::alert::{self, Firing, FlowFigures, Kind};
use crate::event::{Event, Origin};
use crate::flow::Flow;
use crate::store::RunFilter;
use crate::store::alerts::AlertState;
use crate::time::Ts;

/// The server's own alerts, set by `serve` flags.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// How often the rules are judged; zero: never (no alerts).
    pub every: Duration,
    /// The oldest due run waited longer than this; `None`: off.
    pub backlog: Option<Duration>,
    /// A destination's circuit open longer than this; `None`: off.
    pub circuit_open: Option<Duration>,
    /// The rules of every flow where its file does not say (`--alert-defaults`).
    pub defaults: alert::Rules,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            every: Duration::from_secs(15),
            backlog: Some(Duration::from_secs(15 * 60)),
            circuit_open: Some(Duration::from_secs(30 * 60)),
            defaults: alert::Rules::default(),
        }
    }
}

/// What should hold now for one alert key.
struct Judged {
    flow: Option<String>,
    kind: Kind,
    subject: Option<String>,
    firing: Option<Firing>,
    /// For silence: the last accepted request known, the evidence that resolves it.
    last_accepted: Option<Ts>,
}

fn key(flow: Option<&str>, kind: Kind, subject: Option<&str>) -> String {
    match subject {
        Some(s) => format!("{}/{}/{s}", flow.unwrap_or("*"), kind.as_str()),
        None => format!("{}/{}", flow.unwrap_or("*"), kind.as_str()),
    }
}

impl Engine {
    pub(super) async fn watch_alerts(self: Arc<Self>, shutdown: CancellationToken) {
        let every = self.config.alerts.every;
        if every.is_zero() {
            return;
        }
        let started = Ts::now();
        let me = format!("watch_{}", crate::run::new_run_id());
        // flow → the last accepted run's time the store gave (any instance's).
        let mut confirmed: HashMap<String, Option<Ts>> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = self.judge_alerts(&me, started, &mut confirmed).await {
                tracing::warn!(error = %e, "judging alerts failed; trying again next round");
            }
        }
    }

    async fn judge_alerts(
        &self,
        me: &str,
        started: Ts,
        confirmed: &mut HashMap<String, Option<Ts>>,
    ) -> crate::store::Result<()> {
        let now = Ts::now();
        let stored: BTreeMap<String, AlertState> = self
            .store
            .alert_states()
            .await?
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect();
        let set = self.flows.load();
        confirmed.retain(|f, _| set.flows.contains_key(f));
        let mut judged: BTreeMap<String, Judged> = BTreeMap::new();
        for flow in set.flows.values() {
            for j in self.judge_flow(flow, started, now, confirmed, &stored).await {
                judged.insert(key(j.flow.as_deref(), j.kind, j.subject.as_deref()), j);
            }
        }
        for j in self.judge_server(now).await {
            judged.insert(key(None, j.kind, j.subject.as_deref()), j);
        }
        // What holds and is not stored as active is raised. What is stored as active and
        // no longer holds resolves — given evidence: silence once a request was accepted
        // after it was raised; the alerts judged on one instance's own figures by that
        // instance, or by any once it stopped confirming them (it stopped, or was killed); a
        // flow removed or a rule turned off, at once.
        let mut after = stored.clone();
        for (k, j) in &judged {
            let before = stored.get(k);
            match (&j.firing, before) {
                (Some(_), Some(s)) if s.active => {
                    let due = s.raised_by == me
                        && now.0.saturating_sub(s.confirmed_at.0) >= CONFIRM_EVERY.as_millis() as u64;
                    if due && let Some(s) = self.write(still_holds(s, now), None).await {
                        after.insert(k.clone(), s);
                    }
                }
                (Some(f), _) => {
                    let next = raised(k, before, j, f, me, now);
                    if let Some(s) = self.write(next, Some(alert::RAISED)).await {
                        after.insert(k.clone(), s);
                    }
                }
                (None, _) => {}
            }
        }
        for (k, s) in stored.iter().filter(|(_, s)| s.active) {
            let may = match judged.get(k) {
                None => true,
                Some(j) if j.firing.is_some() => false,
                Some(j) => match s.kind {
                    Kind::Silence => j.last_accepted.is_some_and(|t| t > s.raised_at),
                    Kind::Backlog => true,
                    _ => {
                        s.raised_by == me
                            || now.0.saturating_sub(s.confirmed_at.0) > 3 * CONFIRM_EVERY.as_millis() as u64
                    }
                },
            };
            if may {
                // A circuit that closed is no longer listed: that is its resolution.
                let words = if judged.contains_key(k) || s.kind == Kind::CircuitOpen {
                    "resolved"
                } else {
                    "no longer watched"
                };
                if let Some(s) = self.write(resolved(s, words, now), Some(alert::RESOLVED)).await {
                    after.insert(k.clone(), s);
                }
            }
        }
        self.metrics.set_alerts(after.values());
        Ok(())
    }

    async fn judge_flow(
        &self,
        flow: &Flow,
        started: Ts,
        now: Ts,
        confirmed: &mut HashMap<String, Option<Ts>>,
        stored: &BTreeMap<String, AlertState>,
    ) -> Vec<Judged> {
        let rules = &flow
            .alerts
            .with_defaults(&self.config.alerts.defaults, flow.webhook().is_some());
        let stats = &self.metrics.stats;
        let name = flow.name.as_str();
        let sum = |kind: &str, window: Duration| stats.sum(name, kind, window, now);
        let local = stats.last_accepted(name);
        let known = confirmed.get(name).copied().flatten();
        let mut figures = FlowFigures {
            last_accepted: local.max(known),
            watched_since: started,
            ..Default::default()
        };
        if let Some(r) = &rules.failure_rate {
            figures.ended_ok = sum("succeeded", r.window);
            figures.ended_failed = sum("failed", r.window);
        }
        if let Some(r) = &rules.refusals {
            figures.refused = sum("refused", r.window);
        }
        if let Some(r) = &rules.dead_letters {
            figures.dead = sum("failed", r.window);
        }
        let mut fired = alert::judge(rules, &figures, now);
        // Silence is this instance's view until the store confirms it: another instance may
        // have accepted requests (or this one, before a restart).
        let silent_key = key(Some(name), Kind::Silence, None);
        let raising_silence = fired.iter().any(|f| f.kind == Kind::Silence)
            && !stored.get(&silent_key).is_some_and(|s| s.active);
        if raising_silence {
            let filter = RunFilter {
                flow: Some(name.to_string()),
                limit: 1,
                ..Default::default()
            };
            if let Ok(runs) = self.store.list_runs(&filter).await {
                let last = runs.first().map(|r| r.created_at);
                confirmed.insert(name.to_string(), last);
                figures.last_accepted = figures.last_accepted.max(last);
                fired = alert::judge(rules, &figures, now);
            }
        }
        // Where refusals come from: the clients of the last refusals this instance remembers.
        if let (Some(f), Some(r)) = (
            fired.iter_mut().find(|f| f.kind == Kind::Refusals),
            &rules.refusals,
        ) {
            let since = Ts(now.0.saturating_sub(r.window.as_millis() as u64));
            let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
            let remembered = stats.refusals_since(name, since);
            // The last few are remembered (not every one of a flood): say of how many.
            f.figures["clients_of_the_last"] = json!(remembered.len());
            for x in remembered {
                *by.entry((x.client, x.reason)).or_default() += 1;
            }
            let mut clients: Vec<_> = by.into_iter().collect();
            clients.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            if let Some(((client, reason), _)) = clients.first() {
                f.message.push_str(&format!(", most from {client} ({reason})"));
            }
            f.figures["clients"] = clients
                .iter()
                .map(|((client, reason), n)| json!({"client": client, "reason": reason, "count": n}))
                .collect();
        }
        let watched = [
            (Kind::Silence, rules.silence.is_some()),
            (Kind::FailureRate, rules.failure_rate.is_some()),
            (Kind::Refusals, rules.refusals.is_some()),
            (Kind::DeadLetters, rules.dead_letters.is_some()),
        ];
        watched
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(kind, _)| Judged {
                flow: Some(name.to_string()),
                kind,
                subject: None,
                firing: fired.iter().find(|f| f.kind == kind).cloned(),
                last_accepted: figures.last_accepted,
            })
            .collect()
    }

    async fn judge_server(&self, now: Ts) -> Vec<Judged> {
        let mut out = Vec::new();
        if let Some(limit) = self.config.alerts.backlog
            && let Ok((depth, oldest)) = self.store.queue_stats(now).await
        {
            let waited = oldest.map_or(Duration::ZERO, |o| {
                Duration::from_millis(now.0.saturating_sub(o.0))
            });
            out.push(Judged {
                flow: None,
                kind: Kind::Backlog,
                subject: None,
                last_accepted: None,
                firing: (waited > limit).then(|| Firing {
                    kind: Kind::Backlog,
                    figures: json!({"due": depth, "oldest_due": oldest, "waited_seconds": waited.as_secs(), "limit_seconds": limit.as_secs()}),
                    message: format!(
                        "the oldest of {depth} due runs has waited {} (the alert is at {})",
                        humantime::format_duration(Duration::from_secs(waited.as_secs())),
                        humantime::format_duration(limit)
                    ),
                }),
            });
        }
        if let Some(limit) = self.config.alerts.circuit_open {
            for c in self.guards.open_circuits(now) {
                let Some(opened) = c.opened_at else { continue };
                let open = Duration::from_millis(now.0.saturating_sub(opened.0));
                out.push(Judged {
                    flow: None,
                    kind: Kind::CircuitOpen,
                    subject: Some(c.destination.clone()),
                    last_accepted: None,
                    firing: (open > limit).then(|| Firing {
                        kind: Kind::CircuitOpen,
                        figures: json!({"destination": c.destination, "opened_at": opened, "open_seconds": open.as_secs(), "consecutive_failures": c.consecutive_failures}),
                        message: format!(
                            "the circuit to {} has been open for {} after {} failures in a row",
                            c.destination,
                            humantime::format_duration(Duration::from_secs(open.as_secs())),
                            c.consecutive_failures
                        ),
                    }),
                });
            }
        }
        out
    }

    /// Writes one change of state, with its event when `kind` is given; another instance may
    /// have made it first.
    async fn write(&self, next: AlertState, kind: Option<&str>) -> Option<AlertState> {
        let event = kind.map(|kind| {
            let origin = Origin {
                flow: next.flow.clone(),
                run_id: None,
                action: None,
                via: "alerts".into(),
            };
            Event::new(kind, origin, 1, event_data(&next))
        });
        match self.store.change_alert(next.clone(), event).await {
            Ok(true) => {
                match kind {
                    Some(alert::RAISED) => {
                        tracing::warn!(alert = %next.key, message = %next.message, "alert raised")
                    }
                    Some(_) => tracing::info!(alert = %next.key, message = %next.message, "alert resolved"),
                    None => tracing::debug!(alert = %next.key, "alert still holds"),
                }
                if kind.is_some() {
                    self.events_wake.notify_one();
                }
                Some(next)
            }
            Ok(false) => {
                tracing::debug!(alert = %next.key, "another instance changed the alert first");
                None
            }
            Err(e) => {
                tracing::warn!(alert = %next.key, error = %e, "could not change an alert's state; trying again next round");
                None
            }
        }
    }
}

/// How often the instance that raised an alert records that it still holds.
const CONFIRM_EVERY: Duration = Duration::from_secs(60);

fn raised(k: &str, before: Option<&AlertState>, j: &Judged, f: &Firing, me: &str, now: Ts) -> AlertState {
    AlertState {
        key: k.to_string(),
        flow: j.flow.clone(),
        kind: j.kind,
        subject: j.subject.clone(),
        active: true,
        raised_at: now,
        resolved_at: None,
        changes: before.map_or(0, |b| b.changes) + 1,
        figures: f.figures.clone(),
        message: f.message.clone(),
        raised_by: me.to_string(),
        confirmed_at: now,
    }
}

fn still_holds(s: &AlertState, now: Ts) -> AlertState {
    AlertState {
        changes: s.changes + 1,
        confirmed_at: now,
        ..s.clone()
    }
}

fn resolved(s: &AlertState, words: &str, now: Ts) -> AlertState {
    AlertState {
        active: false,
        resolved_at: Some(now),
        changes: s.changes + 1,
        message: format!("{words}: {}", s.message),
        ..s.clone()
    }
}

/// The `data` of `alert.raised` / `alert.resolved` (documented in docs/flows.md).
fn event_data(s: &AlertState) -> Value {
    json!({
        "alert": s.kind.as_str(),
        "key": s.key,
        "flow": s.flow,
        "subject": s.subject,
        "state": if s.active { "raised" } else { "resolved" },
        "message": s.message,
        "figures": s.figures,
        "raised_at": s.raised_at,
        "resolved_at": s.resolved_at,
    })
}
