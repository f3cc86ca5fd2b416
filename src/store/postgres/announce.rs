//! New runs announced between instances. A transaction that stores runs sends
//! `NOTIFY hookflow_runs` ([`announce`]; PostgreSQL delivers it at commit, once per transaction
//! however many runs it stored), and every instance LISTENs ([`watch`]) and wakes its engine:
//! an idle instance picks a run another one accepted up at once instead of at its next poll
//! (`--poll-interval`, which stays the fallback for anything a notification misses).
//!
//! The listener holds one of the pool's connections (`--pg-max-connections`) for as long as
//! the instance runs; a lost connection is made again, and the engine woken, since runs may
//! have been stored meanwhile.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::Result;

const CHANNEL: &str = "hookflow_runs";

/// Tells the other instances, when the transaction commits, that it stored new runs.
pub(super) async fn announce(tx: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify('hookflow_runs', '')")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Wakes `wake` on every announcement until `stop`.
pub(super) async fn watch(pool: PgPool, wake: Arc<Notify>, stop: CancellationToken) {
    let mut logged = false;
    while !stop.is_cancelled() {
        let mut listener = match listen(&pool).await {
            Ok(l) => l,
            Err(e) => {
                if !logged {
                    tracing::warn!(error = %e, "cannot listen for new runs; polling until it can");
                    logged = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        logged = false;
        wake.notify_one(); // whatever was stored before the listening began
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = listener.try_recv() => match got {
                    Ok(Some(_)) => wake.notify_one(),
                    // The connection was lost and is made again: runs stored meanwhile.
                    Ok(None) => wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for new runs failed; listening again");
                        break;
                    }
                },
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
