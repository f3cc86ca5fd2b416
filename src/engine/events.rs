//! The event dispatcher: takes events from the store's outbox, finds the flows they trigger
//! (`on: event:` with the type and conditions), and queues their runs — removing the event
//! and inserting the runs in one atomic write, so an event is dispatched exactly once even
//! across a crash.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::clicks::{Judged, SETTLE};
use crate::event::Event;
use crate::request::Request;
use crate::run::Run;
use crate::time::Ts;
use crate::trigger::{Cause, Prepared, prepare};

/// Events taken from the outbox per round.
const BATCH: usize = 64;

impl Engine {
    pub(super) async fn dispatch_events(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let settled = self.settle_clicks().await;
            let events = match self.store.pending_events(BATCH).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "reading the event outbox failed");
                    Vec::new()
                }
            };
            let full = events.len() == BATCH || settled == BATCH;
            for event in events {
                let runs = self.runs_for(&event);
                let exits = self.exits_for(&event);
                let (n, x) = (runs.len(), exits.len());
                match self.store.dispatch_event(&event.id, runs, exits).await {
                    Ok(exited) => {
                        for e in exited.iter().filter(|e| e.now) {
                            tracing::info!(flow = %e.flow, run_id = %e.run_id, event_id = %event.id, "run exited");
                            self.metrics.run_finished(&e.flow, "exited");
                        }
                        tracing::info!(event = %event.kind, event_id = %event.id, runs = n, exit_keys = x, "event dispatched");
                        if n > 0 {
                            self.wake.notify_one();
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, event_id = %event.id, "dispatching an event failed; will retry")
                    }
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = self.events_wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// Judges the clicks on tracked links that have settled (see [`crate::clicks::SETTLE`]):
    /// a person's click puts `email.clicked` in the outbox, which this loop dispatches next.
    async fn settle_clicks(&self) -> usize {
        let before = Ts(Ts::now().0.saturating_sub(SETTLE.as_millis() as u64));
        match self.store.settle_clicks(before, BATCH).await {
            Ok(clicks) => {
                for c in &clicks {
                    match &c.judged {
                        Judged::Scanner { why } => {
                            tracing::info!(flow = %c.flow, run_id = %c.run_id, link = %c.label(), %why, "click judged a mail scanner's: no event")
                        }
                        judged => {
                            tracing::info!(flow = %c.flow, run_id = %c.run_id, link = %c.label(), ?judged, "click judged a person's: email.clicked raised")
                        }
                    }
                }
                clicks.len()
            }
            Err(e) => {
                tracing::error!(error = %e, "judging clicks failed; will retry");
                0
            }
        }
    }

    /// The runs `event` starts: one per listening flow whose conditions hold.
    fn runs_for(&self, event: &Event) -> Vec<Run> {
        let envelope = event.to_json();
        let mut runs = Vec::new();
        let set = self.flows.load();
        for flow in set.flows.values().filter(|f| f.listens_to(&event.kind)) {
            let request = Request {
                method: "EVENT".into(),
                headers: Default::default(),
                query: Default::default(),
                body: envelope.clone(),
            };
            let cause = Cause {
                depth: event.depth,
                event: Some(event.kind.clone()),
            };
            match prepare(flow, flow.when(), &set.templates, request, cause) {
                Ok(Prepared::Run(run, _)) => runs.push(*run),
                Ok(Prepared::Ignored(why)) => {
                    tracing::debug!(flow = %flow.name, event_id = %event.id, condition = %why, "event does not meet the flow's conditions")
                }
                Err(e) => {
                    tracing::warn!(flow = %flow.name, event_id = %event.id, error = %e, "event not run by this flow")
                }
            }
        }
        runs
    }
}
