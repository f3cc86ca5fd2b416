//! The suppression list's role in the store: one small trait each backend implements (sled in
//! `sled/suppress.rs`, PostgreSQL in `postgres/suppress.rs`). Entries are keyed by address and
//! scope (a list name, or `*` for every email); see [`crate::suppression`] for the rules.
//! Entries that come from a run (a hard bounce, a flow's `suppress`) are written with the
//! run's step through [`super::Effects::suppress`], so a crash neither loses nor doubles them.

use async_trait::async_trait;

use super::Result;
use crate::event::Origin;
use crate::segment::SegmentChange;
use crate::suppression::Suppression;

/// A page of the suppression list.
#[derive(Debug, Clone, Default)]
pub struct SuppressionQuery {
    /// Entries after this key (`{email} {list or *}`), for paging.
    pub after: Option<String>,
    /// Case-insensitive text the address must contain.
    pub search: Option<String>,
    /// Include lifted entries (history).
    pub include_lifted: bool,
    pub limit: usize,
}

impl SuppressionQuery {
    /// Whether `s` passes the filters other than paging.
    pub fn matches(&self, s: &Suppression) -> bool {
        (self.include_lifted || s.lifted.is_none())
            && self
                .search
                .as_ref()
                .is_none_or(|t| s.email.contains(&t.trim().to_lowercase()))
    }
}

/// The paging key of an entry (see [`SuppressionQuery::after`]).
pub fn page_key(s: &Suppression) -> String {
    format!("{} {}", s.email, s.scope())
}

/// What an import did, as the API answers and `hookflow suppressions import` prints it.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ImportReport {
    /// Rows that named an address to suppress.
    pub rows: usize,
    pub added: usize,
    pub already_suppressed: usize,
    pub rejected_count: usize,
    /// The first rejected rows, each with its line and why.
    pub rejected: Vec<RejectedRow>,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct RejectedRow {
    pub line: usize,
    pub error: String,
}

/// Writes what a CSV import read (see [`crate::suppression::from_csv`]) a chunk at a time, and
/// reports it, listing at most `show` of the rejected rows.
pub async fn import(
    store: &dyn Suppressions,
    read: crate::suppression::Imported,
    show: usize,
) -> Result<ImportReport> {
    let rows = read.entries.len();
    let added = suppress_in_chunks(store, read.entries).await?;
    Ok(ImportReport {
        rows,
        added,
        already_suppressed: rows - added,
        rejected_count: read.rejected.len(),
        rejected: read
            .rejected
            .into_iter()
            .take(show)
            .map(|(line, error)| RejectedRow { line, error })
            .collect(),
    })
}

/// Entries written per store write by [`suppress_in_chunks`].
const CHUNK: usize = 500;

/// Adds many entries (an import) a chunk at a time, so one large import neither holds the
/// store for long nor builds one huge write; returns how many took effect. A failure leaves
/// the chunks before it written — an import can be repeated, an entry already there is kept.
async fn suppress_in_chunks(store: &dyn Suppressions, mut entries: Vec<Suppression>) -> Result<usize> {
    let mut added = 0;
    while !entries.is_empty() {
        let rest = entries.split_off(entries.len().min(CHUNK));
        added += store.suppress(entries).await?;
        entries = rest;
    }
    Ok(added)
}

#[async_trait]
pub trait Suppressions: Send + Sync {
    /// The active entries that keep an email of `list` (`None`: transactional) from any of
    /// `emails` (normalised).
    async fn suppressed(&self, emails: &[String], list: Option<&str>) -> Result<Vec<Suppression>>;

    /// Adds entries, in one durable write. An address already suppressed for that scope keeps
    /// its first entry; a lifted one is suppressed again. Returns how many took effect.
    async fn suppress(&self, entries: Vec<Suppression>) -> Result<usize>;

    /// Lifts the active entry of `email` for `list` (`None`: the every-email one), keeping it
    /// as history with `reason`; `false` if there was none.
    async fn lift(&self, email: &str, list: Option<&str>, reason: &str) -> Result<bool>;

    /// Entries in address order.
    async fn suppression_list(&self, query: &SuppressionQuery) -> Result<Vec<Suppression>>;

    /// An unsubscribe: `entry` suppresses the address for its list and the contact leaves the
    /// segment of that name (raising `segment.removed` from `origin`), in one atomic, durable
    /// write — so flows that react to the removal and sequences that exit on it see it exactly
    /// when the suppression holds.
    async fn unsubscribe(&self, entry: Suppression, origin: Origin) -> Result<Vec<SegmentChange>>;
}
