//! A flow's counters (`GET /api/flows`: accepted, duplicates, ignored, rejected:<reason>),
//! gathered in memory and written to the store once a second: at most one write per counter
//! and second however many requests arrive, instead of one per request on the accept path.
//! What a crash or stop catches unwritten (under a second of requests) is not counted; the
//! counters are figures to look at, not records. Memory: one entry per (flow, counter) with
//! requests in the last second — bounded by the flows and the kinds of counter.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::store::Store;

/// How long counts gather before they are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Counters {
    /// flow → counter → count since the last write.
    pending: std::sync::Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    scheduled: AtomicBool,
}

impl Counters {
    /// Adds one to `flow`'s counter `what`; the first add after a write schedules the next.
    pub fn add(self: &Arc<Self>, store: &Arc<dyn Store>, flow: &str, what: &str) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            // No allocation once the flow's counter is there (the accept path's usual case).
            match pending.get_mut(flow).and_then(|m| m.get_mut(what)) {
                Some(n) => *n += 1,
                None => {
                    pending
                        .entry(flow.to_string())
                        .or_default()
                        .insert(what.to_string(), 1);
                }
            }
        }
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        // The store is not held while the counts gather: a stopped app's store closes (and a
        // restart can open it again) without waiting for this second to pass.
        let (this, store) = (Arc::clone(self), Arc::downgrade(store));
        tokio::spawn(async move {
            tokio::time::sleep(FLUSH_EVERY).await;
            let Some(store) = store.upgrade() else { return };
            // Cleared before the counts are taken: an add after this schedules the next write.
            this.scheduled.store(false, Ordering::Release);
            let counts = std::mem::take(&mut *this.pending.lock().unwrap_or_else(|p| p.into_inner()));
            for (flow, counters) in counts {
                for (what, n) in counters {
                    if let Err(e) = store.add_counter(&flow, &what, n).await {
                        tracing::warn!(%flow, counter = %what, error = %e, "could not update a flow counter");
                    }
                }
            }
        });
    }
}
