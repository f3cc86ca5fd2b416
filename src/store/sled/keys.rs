//! The sled tree's key layout and the small records stored under its keys: one place that says
//! what lives where, read by the queue's operations, parking, admission, backup and check alike.

use serde::{Deserialize, Serialize};

use crate::store::{Result, StoreError};

/// How many `run:` records the store holds (u64, big-endian): kept as runs are inserted and
/// pruned, so nothing has to count them by reading every run (in sled 0.34, a page once read
/// stays in memory until writes evict it).
pub(super) const RUN_COUNT: &str = "meta:runs";

/// Where admission into sled has reached in the intake journal.
pub(super) const INTAKE_CURSOR: &str = "meta:intake";

pub(super) fn run_key(id: &str) -> String {
    format!("run:{id}")
}
/// A run's input (its request and vars), written once at admission: `input:{id}` (see
/// [`crate::store::record`]). Runs stored before layout 3 have none; their `run:` record is
/// whole.
pub(super) fn input_key(id: &str) -> String {
    format!("input:{id}")
}
pub(super) fn due_key(at: u64, id: &str) -> String {
    format!("due:{at:016x}:{id}")
}
pub(super) fn lease_key(id: &str) -> String {
    format!("lease:{id}")
}
/// The exit index: `exit:{flow}\0{key}\0{run id}` → run id.
pub(super) fn exit_prefix(flow: &str, key: &str) -> String {
    format!("exit:{flow}\0{key}\0")
}
pub(super) fn exit_key(flow: &str, key: &str, run_id: &str) -> String {
    format!("{}{run_id}", exit_prefix(flow, key))
}
/// An exit that reached a run still in the intake journal: `exitnote:{run id}` → reason; the
/// run ends as exited when it is admitted.
pub(super) fn exit_note_key(run_id: &str) -> String {
    format!("exitnote:{run_id}")
}

/// Parked runs an exit note has reached (`meta:parkexits`): the waiting and parked figures
/// leave them out from the exit on, not only from when they are read back.
pub(super) const PARKED_EXITS: &str = "meta:parkexits";

/// An exit note's value: why, when, and whether the run was parked then (its waiting count was
/// lowered with the note). Notes of stores written before hold the reason alone.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ExitNote {
    pub reason: String,
    #[serde(default)]
    pub at: Option<u64>,
    #[serde(default)]
    pub parked: bool,
}

impl ExitNote {
    pub(super) fn encode(reason: &str, at: u64, parked: bool) -> Vec<u8> {
        serde_json::to_vec(&ExitNote {
            reason: reason.to_string(),
            at: Some(at),
            parked,
        })
        .expect("an exit note serialises")
    }

    pub(super) fn read(bytes: &[u8]) -> ExitNote {
        serde_json::from_slice(bytes).unwrap_or_else(|_| ExitNote {
            reason: String::from_utf8_lossy(bytes).into_owned(),
            at: None,
            parked: false,
        })
    }
}

/// An exit that reached runs still in the intake journal beyond what memory holds of it:
/// `exitmark:{flow}\0{key}` → [`ExitMark`]. Runs of `flow` with exit key `key` that lie before
/// `until` end as exited when they are admitted; the mark goes once the cursor passes it.
pub(super) fn exit_mark_key(flow: &str, key: &str) -> String {
    format!("{EXIT_MARKS}{flow}\0{key}")
}
pub(super) const EXIT_MARKS: &str = "exitmark:";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ExitMark {
    pub until: String,
    pub reason: String,
}

/// Runs of a flow waiting at a `wait` step.
pub(super) fn waiting_key(flow: &str) -> String {
    format!("waiting:{flow}")
}

pub(super) fn lane_prefix(flow: &str, key: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(key.as_bytes());
    format!("lane:{flow}:{}:", hex::encode(&h[..12]))
}

/// The run whose stored record (its `run` member) is `record`, joined to its `input` as stored
/// (compressed or plain, see [`super::packed`]) when it has one apart (see
/// [`crate::store::record`]).
pub(super) fn parse_run(id: &str, input: Option<&[u8]>, record: &[u8]) -> Result<crate::run::Run> {
    let input = match input {
        Some(stored) => Some(super::packed::unpack(&input_key(id), stored)?),
        None => None,
    };
    crate::store::record::parse(input.as_deref(), record)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", run_key(id))))
}

/// [`parse_run`] reading the input from sled itself (outside a commit group).
pub(super) fn read_run_db(db: &sled::Db, id: &str, record: &[u8]) -> Result<crate::run::Run> {
    parse_run(id, db.get(input_key(id))?.as_deref(), record)
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}
pub(super) fn from_json<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T> {
    let bytes = super::packed::unpack(key, bytes)?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))
}
