//! Stage 6, persist: blank the fields the flow redacts, work out the delivery's dedupe key,
//! and write the run durably — the sender's 2xx waits for this write.

use minijinja::value::Value as JValue;

use super::Refusal;
use crate::flow::Webhook;
use crate::run::Run;
use crate::store::Store;
use crate::template::Templates;
use crate::time::Ts;

pub enum Persisted {
    Stored,
    /// A repeat of a delivery seen within the dedupe window: the first run's id.
    Duplicate(String),
}

pub async fn persist(
    store: &dyn Store,
    webhook: &Webhook,
    templates: &Templates,
    ctx: &JValue,
    run: &mut Run,
) -> Result<Persisted, Refusal> {
    for p in &webhook.redact {
        p.redact(&mut run.request.body);
    }
    let flow = run.flow.as_str();
    let dedupe_key = match &webhook.dedupe {
        None => None,
        Some(d) => match templates.render(&d.key, ctx) {
            Ok(k) if !k.trim().is_empty() => Some((k.trim().to_string(), d.window)),
            // Accepting without deduplication loses nothing; refusing would lose the event.
            Ok(_) => {
                tracing::warn!(flow, "dedupe key rendered empty; accepting without deduplication");
                None
            }
            Err(e) => {
                tracing::warn!(flow, error = %e, "dedupe key failed to render; accepting without deduplication");
                None
            }
        },
    };
    let stored = match &dedupe_key {
        None => store.insert_run(run).await.map(|()| None),
        Some((key, window)) => store.insert_run_once(run, key, Ts::now().plus(*window)).await,
    };
    match stored {
        Ok(None) => Ok(Persisted::Stored),
        Ok(Some(original)) => Ok(Persisted::Duplicate(original)),
        Err(e) => Err(Refusal::StoreUnavailable(e.to_string())),
    }
}
