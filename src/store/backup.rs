//! Online backups' role in the store: a consistent copy of the store taken while it serves,
//! written to a file the caller streams (`POST /api/backup`, `hookflow backup`). The embedded
//! store takes them itself (`sled/backup.rs`, which holds the file format); a database is
//! backed up with its own tools, and its store says so.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Result;
use crate::time::Ts;

/// What a backup holds, as its header says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupInfo {
    /// The store layout version it was taken from.
    pub layout: String,
    pub created_at: Ts,
    /// The hookflow that took it.
    pub hookflow: String,
    /// Filled in when it is finished or read back.
    #[serde(default)]
    pub entries: u64,
    #[serde(default)]
    pub pending_runs: u64,
    #[serde(default)]
    pub url_secret: bool,
}

/// A store that can back itself up while it serves.
#[async_trait]
pub trait Backup: Send + Sync {
    /// Writes a consistent backup of the store, while it serves, to a new file beside it and
    /// returns the file (the caller moves or streams it, then removes it); a store that cannot
    /// answers why, and what to use instead.
    async fn backup_file(&self) -> Result<(PathBuf, BackupInfo)>;
}
