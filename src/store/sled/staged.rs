//! What a commit group stages for the parking files ([`super::parking`]) beyond its sled keys,
//! and what sled knows of each segment file. Apart from parking itself so that the commit
//! group's overlay ([`super::view::View`]) can carry these without depending on parking.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What sled knows of one segment file.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub(super) struct SegInfo {
    /// Bytes written: the next record goes here, and nothing past it is read.
    pub end: u64,
    pub count: u64,
    pub min_id: String,
    pub max_id: String,
    /// Runs per flow.
    pub flows: BTreeMap<String, u64>,
    /// When its first run was parked (ms): exits made before that cannot concern it.
    pub first_parked: u64,
}

/// A park an operation of a commit group asked for, written by the writer before the group's
/// batch is applied.
#[derive(Debug, Clone)]
pub(super) struct Staged {
    pub bucket: u64,
    pub id: String,
    pub flow: String,
    pub parked_at: u64,
    pub payload: Vec<u8>,
}

/// What a commit group changes in parking, beyond its sled keys: records to write first, and
/// what to do once the batch is committed.
#[derive(Debug, Default)]
pub(super) struct Changes {
    pub parks: Vec<Staged>,
    /// Segments (bucket, segment) wholly read back in this group: forgotten after the commit,
    /// their files deleted after the flush. A park in the same group never writes into them.
    pub done: Vec<(u64, u64)>,
    /// Segment summaries as the batch leaves them.
    pub segs: Vec<((u64, u64), SegInfo)>,
}
