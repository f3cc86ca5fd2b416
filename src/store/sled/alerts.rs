//! Alert states in sled: `alert:{key}` → [`AlertState`] (JSON), changed in one commit with
//! the event that announces the change.

use async_trait::async_trait;

use super::SledStore;
use super::keys::{from_json, to_json};
use super::ops::get;
use super::segments;
use crate::event::Event;
use crate::store::Result;
use crate::store::alerts::{AlertState, Alerts};

const PREFIX: &str = "alert:";

#[async_trait]
impl Alerts for SledStore {
    async fn alert_states(&self) -> Result<Vec<AlertState>> {
        self.read(|i| {
            let mut out = Vec::new();
            for item in i.db.scan_prefix(PREFIX) {
                let (k, v) = item?;
                // A damaged state harms only itself: judged afresh, and said so.
                match from_json::<AlertState>(&String::from_utf8_lossy(&k), &v) {
                    Ok(s) => out.push(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "an alert's state could not be read; it is judged afresh")
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn change_alert(&self, next: AlertState, event: Option<Event>) -> Result<bool> {
        self.submit(true, super::writer::Admit::No, move |_, v| {
            let k = format!("{PREFIX}{}", next.key);
            let stored = get::<AlertState>(v, &k).ok().flatten().map_or(0, |s| s.changes);
            if stored + 1 != next.changes {
                return Ok(false);
            }
            v.insert(k, to_json(&next)?);
            if let Some(e) = &event {
                segments::put_event(v, e)?;
            }
            Ok(true)
        })
        .await
    }
}
