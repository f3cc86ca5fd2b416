//! Storage behind traits, one per role: the run queue (`queue.rs`), contacts and the outbox
//! (`contacts.rs`), coordination between instances (`coordination.rs`), flow sources
//! (`sources.rs`), online backups (`backup.rs`), the suppression list (`suppress.rs`) and the
//! alerts' state (`alerts.rs`). Each backend — the embedded `sled/` and the shared `postgres/` —
//! implements every role; [`Store`] is all of them, what `serve` opens. A part that needs one
//! role can take just that (the email action holds `Arc<dyn Suppressions>`); the engine and
//! the API still hold the whole store.

pub mod alerts;
pub mod backup;
pub mod contacts;
pub mod coordination;
pub mod postgres;
pub mod queue;
pub mod sled;
pub mod sources;
pub mod suppress;

pub use self::backup::{Backup, BackupInfo};
pub use self::contacts::Contacts;
pub use self::coordination::{Coordination, Instance, Pace};
pub use self::postgres::{PgSettings, PgStore};
pub use self::queue::{
    ClaimRequest, Claimed, Effects, ExitMatch, Exited, ExitedRun, Lease, Next, RunFilter, RunQueue, Saved,
    WaitOp,
};
pub use self::sled::{Durability, SledStore, sled_config};
pub use self::sources::FlowSources;

/// Stored bytes that could not be read, found when the store was opened: set aside, reported,
/// and harming nothing else (every readable record around them is kept).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Damage {
    /// The damaged file.
    pub file: String,
    /// Byte range in it.
    pub from: u64,
    pub to: u64,
    /// A write a crash cut short at the very end (never acknowledged), not damage to
    /// acknowledged data.
    pub torn_tail: bool,
    /// Readable records after it in the same file, all kept.
    pub kept_after: usize,
    /// Where the bytes were copied.
    pub quarantined: String,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the lease on run {0} was lost (it expired and another worker took the run)")]
    LeaseLost(String),
    #[error("run {0} already exists")]
    Duplicate(String),
    #[error("storage error: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is closed")]
    Closed,
    /// The disk holding the store has no room: nothing is wrong with the data, and starting
    /// again once there is room succeeds.
    #[error("{0}")]
    Full(String),
    /// Another transaction got in the way (a deadlock, a serialisation failure); running the
    /// operation again is expected to succeed.
    #[error("conflicting with another instance's write: {0}")]
    Conflict(String),
}

/// The exit status when the store's disk is full or failed (`EX_TEMPFAIL`): nothing is lost,
/// and a supervisor starting hookflow again once there is room is the way on.
pub const EXIT_STORE_FAILED: i32 = 75;

pub type Result<T> = std::result::Result<T, StoreError>;

/// Every role: what `serve` opens and hands out.
pub trait Store:
    RunQueue
    + Contacts
    + Coordination
    + FlowSources
    + Backup
    + suppress::Suppressions
    + alerts::Alerts
    + Send
    + Sync
    + 'static
{
    /// What the store is, for the log at start (`sled at data/store`, `PostgreSQL at …`).
    fn describe(&self) -> String;
}

/// Where runs are kept.
pub enum Backend<'a> {
    /// The embedded store in a directory.
    Sled {
        dir: &'a std::path::Path,
        durability: Durability,
        cache_bytes: u64,
        /// Compress sled's pages, if the store is new.
        compress_new: bool,
        /// Waits at least this long are parked on disk (see the sled store's `parking`).
        park_after: std::time::Duration,
    },
    /// A PostgreSQL database several instances may share.
    Postgres { url: &'a str, settings: &'a PgSettings },
}

/// Opens the store `backend` names.
pub async fn open(backend: Backend<'_>) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match backend {
        Backend::Sled {
            dir,
            durability,
            cache_bytes,
            compress_new,
            park_after,
        } => {
            let dir = dir.to_path_buf();
            let store = tokio::task::spawn_blocking(move || {
                SledStore::open_with(&dir, durability, cache_bytes, compress_new)
            })
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))??;
            store.set_park_after(park_after);
            std::sync::Arc::new(store)
        }
        Backend::Postgres { url, settings } => std::sync::Arc::new(PgStore::connect(url, settings).await?),
    })
}
