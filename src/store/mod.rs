//! Storage behind traits, one per role: the run queue (`queue.rs`), contacts and the outbox
//! (`contacts.rs`), coordination between instances (`coordination.rs`), flow sources
//! (`sources.rs`), online backups (`backup.rs`), the suppression list (`suppress.rs`), the
//! alerts' state (`alerts.rs`) and tracked links' clicks (`clicks.rs`). Each backend — the
//! embedded `sled/` and the shared `postgres/` — implements every role; [`Store`] is all of them, what `serve` opens. A part that needs one
//! role can take just that (the email action holds `Arc<dyn Suppressions>`); the engine and
//! the API still hold the whole store.

pub mod alerts;
pub mod backup;
pub mod clicks;
pub mod contacts;
pub mod coordination;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod queue;
pub mod record;
pub mod sled;
pub mod sources;
pub mod suppress;

pub use self::backup::{Backup, BackupInfo};
pub use self::contacts::Contacts;
pub use self::coordination::{Coordination, Instance, Pace};
#[cfg(feature = "postgres")]
pub use self::postgres::PgStore;
pub use self::queue::{
    ClaimRequest, Claimed, Effects, ExitMatch, Exited, ExitedRun, Lease, Next, RunFilter, RunQueue, Saved,
    WaitOp,
};
pub use self::sled::{Durability, SledStore, sled_config};
pub use self::sources::FlowSources;

/// Stored bytes that could not be read, found when the store was opened: set aside, reported,
/// and harming nothing else (every readable record around them is kept).
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
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
    + clicks::Clicks
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

/// What a build without the `postgres` feature answers to `--store postgres://…`.
pub const WITHOUT_POSTGRES: &str = "this hookflow was built without PostgreSQL (cargo build --no-default-features): build it with the default features (the `postgres` Cargo feature) to use --store postgres://…";

/// How the pool reaches the database; see `--store` and the README.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Connections this instance keeps at most.
    pub max_connections: u32,
    /// How long an operation waits for a connection before failing (a webhook then gets 503).
    pub acquire_timeout: std::time::Duration,
    /// Server-side limit on one statement.
    pub statement_timeout: std::time::Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            max_connections: 16,
            acquire_timeout: std::time::Duration::from_secs(3),
            statement_timeout: std::time::Duration::from_secs(10),
        }
    }
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
        #[cfg(feature = "postgres")]
        Backend::Postgres { url, settings } => std::sync::Arc::new(PgStore::connect(url, settings).await?),
        #[cfg(not(feature = "postgres"))]
        Backend::Postgres { .. } => return Err(StoreError::Backend(WITHOUT_POSTGRES.into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in both builds: `scripts/test.sh` also runs it with `--no-default-features`.
    #[tokio::test]
    async fn a_postgres_url_opens_postgres_or_says_this_build_has_none() {
        let settings = PgSettings {
            acquire_timeout: std::time::Duration::from_millis(500),
            ..PgSettings::default()
        };
        // Port 1 on loopback: nothing answers, so a build with PostgreSQL fails to connect.
        let opened = open(Backend::Postgres {
            url: "postgres://nobody@127.0.0.1:1/none",
            settings: &settings,
        })
        .await;
        let error = opened.err().expect("nothing answers on port 1").to_string();
        if cfg!(feature = "postgres") {
            assert!(!error.contains(WITHOUT_POSTGRES), "{error}");
        } else {
            assert_eq!(error, format!("storage error: {WITHOUT_POSTGRES}"));
        }
    }
}
