//! Flow sources' role in the store: every version of a flow file that was loaded, and which
//! version last loaded without a problem — what a start serves while a file is broken, and
//! what a run's flow looked like when it ran. Backends: `sled/mod.rs`, `postgres/mod.rs`.

use async_trait::async_trait;

use super::Result;

/// Flow file versions, kept by hash.
#[async_trait]
pub trait FlowSources: Send + Sync {
    /// Keeps a flow file's text under its version (idempotent).
    async fn put_flow_source(&self, flow: &str, version: &str, source: &str) -> Result<()>;

    /// A flow file's text at a version, if kept.
    async fn flow_source(&self, flow: &str, version: &str) -> Result<Option<String>>;

    /// Records that `version` of `flow` (kept with [`FlowSources::put_flow_source`]) loaded from its
    /// file without a problem: what a start serves while that file is broken.
    async fn put_last_good(&self, flow: &str, version: &str) -> Result<()>;

    /// The version of `flow` that last loaded without a problem, if any did.
    async fn last_good(&self, flow: &str) -> Result<Option<String>>;
}
