//! Which hookflow instances share the store. Each instance writes a heartbeat (who it is, where
//! it listens, which version of each flow it serves) every [`HEARTBEAT`]; an instance is live
//! while its last heartbeat is younger than [`LIVE_WITHIN`]. The API shows the list, so an
//! operator rolling out a flow change can see when every instance serves the new version.
//!
//! Nothing depends on this list for correctness: leases, lanes, dedupe and cron slots are held
//! by the store itself. On the embedded store the list holds just this process.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::reload::Flows;
use crate::store::{Instance, Store};
use crate::time::{self, Ts};

/// How often an instance reports.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// An instance not heard from for this long counts as gone (three missed heartbeats).
pub const LIVE_WITHIN: Duration = Duration::from_secs(15);

/// This process as the other instances see it.
pub struct Membership {
    store: Arc<dyn Store>,
    flows: Arc<Flows>,
    base: Instance,
    /// The offset last warned about, while this instance's clock is far off the database's.
    clock_warned: std::sync::Mutex<Option<i64>>,
}

impl Membership {
    /// `listen` is where this instance accepts webhooks (shown, not used).
    pub fn new(store: Arc<dyn Store>, flows: Arc<Flows>, listen: String) -> Membership {
        let now = Ts::now();
        let base = Instance {
            id: ulid::Ulid::new().to_string().to_lowercase(),
            host: hostname(),
            pid: std::process::id(),
            version: crate::BUILD_VERSION.to_string(),
            listen,
            started_at: now,
            seen_at: now,
            flows: Default::default(),
        };
        Membership {
            store,
            flows,
            base,
            clock_warned: Default::default(),
        }
    }

    /// This instance's id.
    pub fn id(&self) -> &str {
        &self.base.id
    }

    /// The report as of now: the flows of the current set with their versions.
    pub fn report(&self) -> Instance {
        let mut me = self.base.clone();
        me.seen_at = Ts::now();
        me.flows = self
            .flows
            .load()
            .flows
            .iter()
            .map(|(name, f)| (name.clone(), f.version.clone()))
            .collect();
        me
    }

    /// Reports now; a failure is logged (the database may be down) and tried again next time.
    /// Measures this instance's clock against the database's, too.
    pub async fn beat(&self) {
        self.measure_clock().await;
        if let Err(e) = self.store.heartbeat(&self.report()).await {
            tracing::warn!(error = %e, "could not record this instance's heartbeat");
        }
    }

    /// Follows the database's clock when this instance's is far off it, and says so (see
    /// `time`): a reading whose round trip took over a second is not trusted.
    async fn measure_clock(&self) {
        let before = time::system_ms();
        let Ok(Some(shared)) = self.store.shared_clock().await else {
            return;
        };
        let after = time::system_ms();
        if after.saturating_sub(before) > 1000 {
            return;
        }
        let offset = shared as i64 - ((before + after) / 2) as i64;
        let followed = time::set_reference_offset(offset);
        let far = offset.unsigned_abs() > time::WARN_ABOVE.as_millis() as u64;
        let mut warned = self.clock_warned.lock().unwrap_or_else(|e| e.into_inner());
        // Once when it goes off (or its offset moves by a second), once when it comes back.
        match (*warned, far) {
            (Some(w), true) if (w - offset).abs() < 1000 => {}
            (_, true) => {
                tracing::warn!(
                    offset_s = offset as f64 / 1000.0,
                    followed,
                    "this instance's clock is far off the database's; it follows the database's clock (leases are always on the database's clock) — fix its time sync (NTP)"
                );
                *warned = Some(offset);
            }
            (Some(_), false) => {
                tracing::info!(
                    offset_s = offset as f64 / 1000.0,
                    "this instance's clock agrees with the database's again"
                );
                *warned = None;
            }
            (None, false) => {}
        }
    }

    /// Reports every [`HEARTBEAT`] until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.beat().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(HEARTBEAT) => {}
            }
        }
    }

    /// The instances heard from within [`LIVE_WITHIN`] of `now`.
    pub async fn live(&self, now: Ts) -> crate::store::Result<Vec<Instance>> {
        Ok(live_among(self.store.instances().await?, now))
    }
}

/// Those of `all` seen within [`LIVE_WITHIN`] of `now`, oldest start first.
pub fn live_among(mut all: Vec<Instance>, now: Ts) -> Vec<Instance> {
    all.retain(|i| now.since(i.seen_at) <= LIVE_WITHIN);
    all.sort_by(|a, b| a.started_at.cmp(&b.started_at).then_with(|| a.id.cmp(&b.id)));
    all
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str, started: u64, seen: u64) -> Instance {
        Instance {
            id: id.into(),
            host: "h".into(),
            pid: 1,
            version: "0".into(),
            listen: "127.0.0.1:1".into(),
            started_at: Ts(started),
            seen_at: Ts(seen),
            flows: Default::default(),
        }
    }

    #[test]
    fn only_recent_heartbeats_are_live_oldest_start_first() {
        let now: u64 = 100_000;
        let all = vec![
            at("b", 50, now - 1_000),
            at("gone", 10, now - 15_001),
            at("a", 20, now - 15_000),
        ];
        let ids: Vec<_> = live_among(all, Ts(now)).into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
