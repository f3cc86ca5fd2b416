//! `hookflow alerts`: the alerts raised now and those resolved lately, through the running
//! server's API or the store when no server runs.

use std::process::ExitCode;

use anyhow::Result;

use super::Source;
use crate::settings::ClientArgs;
use crate::store::alerts::{AlertState, active_and_recent};

/// Prints the alerts; exit 0 when none is raised, 1 when one is (for a health check).
pub async fn alerts_cmd(json: bool, client: &ClientArgs) -> Result<ExitCode> {
    let source = Source::connect(client).await?;
    let (active, recent): (Vec<AlertState>, Vec<AlertState>) = match &source {
        Source::Api { .. } => {
            let v = source.get("/api/alerts").await?;
            (
                serde_json::from_value(v["active"].clone())?,
                serde_json::from_value(v["recent"].clone())?,
            )
        }
        Source::Store(store) => active_and_recent(store.alert_states().await?),
    };
    if json {
        println!("{}", serde_json::json!({"active": active, "recent": recent}));
    } else {
        if active.is_empty() {
            println!("no alert is raised");
        }
        for s in &active {
            println!("RAISED    {}  since {}: {}", s.key, s.raised_at, s.message);
        }
        for s in recent.iter().take(10) {
            let at = s.resolved_at.map(|t| t.to_string()).unwrap_or_default();
            println!("resolved  {}  at {at}: {}", s.key, s.message);
        }
    }
    Ok(if active.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
