//! The embedded default store: an intake journal in front of sled 0.34.
//!
//! **Accepting** a run appends it to the intake journal ([`journal`]) with group commit and
//! nothing else: sled is not touched on the request path. **Claiming** admits the oldest
//! pending runs from the journal into sled (oldest first, so ordering lanes keep arrival order)
//! and leases due runs from there. Everything after admission lives in sled.
//!
//! sled layout (version 4, one tree, string-prefixed keys so every change of a commit group is
//! a single atomic `apply_batch`; the keys and their small records are written in [`keys`]):
//!
//! | key                              | value                                 |
//! |----------------------------------|---------------------------------------|
//! | `meta:layout`                    | `4` (layout 3: inputs plain JSON; layout 2: runs whole, no `input:`) |
//! | `meta:intake`                    | journal cursor: admitted up to here   |
//! | `meta:runs`                      | how many `run:` records there are (u64) |
//! | `exitmark:{flow}\0{key}`         | an exit for runs still in the journal beyond memory's window ([`admission`]) |
//! | `run:{id}`                       | `{"q": QEntry or null, "run": progress}`: the run's progress ([`crate::store::record`]) and, while unfinished, its queue state; compressed once finished ([`packed`]) |
//! | `input:{id}`                     | the run's input (request and vars), written once at admission, compressed ([`packed`]) |
//! | `due:{ms as 16 hex}:{id}`        | flow name; the time-ordered due index |
//! | `lease:{id}`                     | flow and expiry of a held lease       |
//! | `lane:{flow}:{key hash}:{seq}`   | run id, in arrival order              |
//! | `ctr:{flow}:{name}`              | u64 counter                           |
//! | `flowsrc:{flow}\0{version}`      | the flow file's text at that version  |
//! | `flowgood:{flow}`                | the version that last loaded cleanly  |
//! | `supp:{email}\0{list or *}`      | a suppression ([`suppress`])          |
//! | `alert:{key}`                    | an alert's state ([`alerts`])          |
//!
//! **Group commit.** All sled writes go through one writer thread ([`writer`]); journal appends
//! are led by whichever request finds no append under way ([`appender`]). Each takes every
//! operation waiting, does them together, makes them durable once, then answers. sled's
//! `flush_async` is never used: it deadlocks with about eight flushes in flight (sled #1308). With [`Durability::Fsync`] both
//! also `fdatasync`, since sled's `flush` uses `sync_file_range` and is not power-loss safe on
//! its own.
//!
//! sled locks its directory, so one process owns the store: on open, every lease left by a
//! previous process is orphaned and is released at once, and every journal record past the
//! cursor is pending again.

mod admission;
mod alerts;
mod appender;
mod backup;
pub mod check;
mod clicks;
mod fatal;
mod intake;
mod journal;
mod keys;
mod open;
mod ops;
mod packed;
mod parking;
mod segments;
mod staged;
mod suppress;
mod view;
mod writer;

pub use self::open::sled_config;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use self::appender::{Append, Appender};
use self::intake::{Head, Intake, Pending, PendingRun};
use self::journal::{Journal, Located, Pos};
use self::keys::{INTAKE_CURSOR, from_json, run_key, to_json};
use self::ops::{Inner, StoredRun, StoredSummary};
use self::view::View;
use self::writer::{Admit, Job, Op, writer_loop};
use super::{
    Backup, BackupInfo, ClaimRequest, Claimed, Contacts, Coordination, Damage, Effects, ExitMatch, ExitedRun,
    FlowSources, Instance, Lease, Next, Result, RunFilter, RunQueue, Saved, Store, StoreError,
};
use crate::event::{Event, Origin};
use crate::run::{Run, RunStatus};
use crate::segment::{ContactView, Member, SegmentChange, SegmentInfo, SegmentOp};
use crate::time::Ts;

const LAYOUT_VERSION: &str = "4";

/// Layouts this hookflow opens. Layout 2 kept each run as one whole record; layout 3 adds the
/// runs' inputs apart (`input:{id}`, see [`crate::store::record`]) and reads layout 2's whole
/// records as they are; layout 4 compresses the inputs and finished records it writes
/// ([`packed`]) and reads plain ones as they are. So an older store is opened without converting anything and marked 4
/// (from then on it holds records an older hookflow cannot read).
const OPENS_LAYOUTS: [&str; 3] = ["2", "3", LAYOUT_VERSION];

/// Default of `--store-cache`: sled's page cache.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// What an acknowledgement guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Written to the journal file: survives the process being killed; a power loss may lose
    /// the last ~500 ms of acknowledged runs.
    #[default]
    Flush,
    /// Also `fdatasync`ed before the answer: survives power loss.
    Fsync,
}

/// The sled-backed [`Store`] with its intake journal.
pub struct SledStore {
    inner: Arc<Inner>,
    /// What could not be read at open.
    damage: Vec<Damage>,
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Removed on drop (stores made by [`SledStore::temporary`]).
    temp_dir: Option<PathBuf>,
    dir: PathBuf,
    /// The one instance an embedded store has (its directory is locked to one process).
    me: Mutex<Option<Instance>>,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`: sled in `dir`, the intake journal in `dir/intake`.
    pub fn open(dir: &Path, durability: Durability) -> Result<SledStore> {
        Self::open_in(dir, durability, DEFAULT_CACHE_BYTES, None, intake::WINDOW, false)
    }

    /// [`SledStore::open`] with sled's page cache limited to `cache_bytes` (sled's own default
    /// is 1 GiB, which a busy store fills), compressing sled's pages if `compress_new` and the
    /// store is new (`--store-compression`; an existing store keeps what it was made with).
    pub fn open_with(
        dir: &Path,
        durability: Durability,
        cache_bytes: u64,
        compress_new: bool,
    ) -> Result<SledStore> {
        Self::open_in(dir, durability, cache_bytes, None, intake::WINDOW, compress_new)
    }

    /// [`SledStore::open`] holding at most `window` pending runs in memory (the default is
    /// 8,192), so tests can reach the journal beyond it with a small backlog.
    #[doc(hidden)]
    pub fn open_with_window(dir: &Path, window: usize) -> Result<SledStore> {
        Self::open_in(dir, Durability::Flush, DEFAULT_CACHE_BYTES, None, window, false)
    }

    /// A store in a fresh temporary directory, deleted when dropped; for tests.
    pub fn temporary() -> Result<SledStore> {
        let dir = std::env::temp_dir().join(format!("hookflow-store-{}", crate::run::new_run_id()));
        Self::open_in(
            &dir.clone(),
            Durability::Flush,
            DEFAULT_CACHE_BYTES,
            Some(dir),
            intake::WINDOW,
            false,
        )
    }

    async fn submit<T: Send + 'static>(
        &self,
        durable: bool,
        admit: Admit,
        f: impl FnOnce(&Inner, &mut View<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |inner, view| {
            let result = f(inner, view);
            if result.is_err() {
                view.rollback();
            }
            Box::new(move |flushed| {
                let r = match (result, flushed) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Ok(_), Err(e)) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                    (Err(e), _) => Err(e),
                };
                let _ = tx.send(r);
            })
        });
        {
            let guard = self.tx.lock().map_err(|_| StoreError::Closed)?;
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender
                .send(Op { job, durable, admit })
                .map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    /// Waits at least this long are parked on disk ([`parking`]); the default is
    /// ten minutes.
    pub fn set_park_after(&self, after: std::time::Duration) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.inner.parking.park_after_ms.store(ms, Ordering::Relaxed);
    }

    /// How many times the store has flushed sled since it was opened.
    pub fn flush_count(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }

    /// How many journal writes accepted runs took: with group commit, far fewer than runs.
    pub fn intake_write_count(&self) -> u64 {
        self.inner.intake.writes.load(Ordering::Relaxed)
    }

    /// How many accepted runs wait in the intake journal, not yet admitted into sled.
    #[doc(hidden)]
    pub fn journal_pending(&self) -> usize {
        self.inner.intake.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Holds the next journal write's leader after its write until the hold is dropped, so a
    /// test can pile appends up behind it and observe group commit deterministically.
    #[doc(hidden)]
    pub fn hold_intake(&self) -> IntakeHold<'_> {
        IntakeHold(self.inner.intake.pending.lock().ok())
    }

    /// Stops intake and the writer thread after they have made everything queued durable.
    pub fn close(&self) {
        self.inner.appender.close();
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}

/// See [`SledStore::hold_intake`].
#[doc(hidden)]
pub struct IntakeHold<'a>(#[allow(dead_code)] Option<std::sync::MutexGuard<'a, Pending>>);

impl Drop for SledStore {
    fn drop(&mut self) {
        self.close();
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Reads a run from sled, or from the journal while it is still pending.
fn find_run(inner: &Inner, id: &str) -> Result<Option<Run>> {
    let key = run_key(id);
    if let Some(b) = inner.db.get(&key)? {
        return Ok(Some(stored_run(inner, id, &b)?));
    }
    if let Some((_, payload)) = inner.find_pending(id)? {
        return Ok(Some(from_json(&key, &payload)?));
    }
    if let Some(run) = inner.parking.find(&inner.db, id)? {
        return Ok(Some(run));
    }
    // Admitted (and its segment forgotten) while we looked.
    match inner.db.get(&key)? {
        Some(b) => Ok(Some(stored_run(inner, id, &b)?)),
        None => Ok(None),
    }
}

/// The run stored in sled under `run:{id}` with value `value`.
fn stored_run(inner: &Inner, id: &str, value: &[u8]) -> Result<Run> {
    let record = from_json::<StoredRun>(&run_key(id), value)?.run;
    keys::read_run_db(&inner.db, id, record.get().as_bytes())
}

/// The `limit` pending runs with the highest ids (below `before`), highest first: those memory
/// holds, and from the journal between the window and the newest runs held only the segments
/// that may hold a higher id (and runs of the flow asked for).
fn newest_pending(inner: &Inner, flow: Option<&str>, before: Option<&str>, limit: usize) -> Result<Vec<Run>> {
    let listing = match inner.intake.pending.lock() {
        Ok(p) => p.newest(flow, before, limit),
        Err(_) => return Ok(Vec::new()),
    };
    let mut best: BTreeMap<String, Located> = listing.found.into_iter().collect();
    let (from, until) = listing.gap;
    for (seg, bound) in listing.to_read {
        if best.len() >= limit && best.keys().next().is_some_and(|nth| bound <= *nth) {
            continue;
        }
        journal::read_range(
            &inner.intake.dir,
            from.max(Pos {
                segment: seg,
                offset: 0,
            }),
            until.min(Pos {
                segment: seg + 1,
                offset: 0,
            }),
            |rec, payload| {
                if let Ok(h) = serde_json::from_slice::<Head>(payload)
                    && flow.is_none_or(|f| h.flow == f)
                    && before.is_none_or(|b| h.id.as_str() < b)
                {
                    best.insert(h.id, rec);
                    if best.len() > limit {
                        best.pop_first();
                    }
                }
                true
            },
        )
        .map_err(|e| StoreError::Backend(format!("reading the intake journal: {e}")))?;
    }
    let recs: Vec<Located> = best.into_values().rev().collect();
    let mut out = Vec::with_capacity(recs.len());
    for rec in recs {
        if let Ok(payload) = journal::read(&inner.intake.dir, &rec) {
            out.push(from_json::<Run>("intake record", &payload)?);
        }
    }
    Ok(out)
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

#[async_trait]
impl RunQueue for SledStore {
    fn damage(&self) -> Vec<Damage> {
        self.damage.clone()
    }

    async fn insert_run(&self, run: &Run) -> Result<()> {
        let head = Head {
            id: run.id.clone(),
            flow: run.flow.clone(),
            order_key: run.order_key.clone(),
            created_at: run.created_at,
            exit_keys: run.exit_keys.clone(),
        };
        let (reply, rx) = oneshot::channel();
        let append = Append {
            head,
            payload: to_json(run)?,
            reply,
        };
        Appender::submit(&self.inner, append)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn insert_run_once(&self, run: &Run, key: &str, expires: Ts) -> Result<Option<String>> {
        let (run, key) = (run.clone(), key.to_string());
        self.submit(true, Admit::No, move |i, v| {
            i.insert_run_once(v, &run, &key, expires)
        })
        .await
    }

    async fn expire_dedupe(&self, now: Ts) -> Result<usize> {
        let keys = self.read(move |i| i.expired_dedupe(now)).await?;
        if keys.is_empty() {
            return Ok(0);
        }
        self.submit(false, Admit::No, move |_, v| {
            segments::expire_dedupe(v, &keys, now)
        })
        .await
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>> {
        let admit = match req.caps.is_empty() {
            true => Admit::Claim(req.limit),
            false => Admit::Most,
        };
        self.submit(false, admit, move |i, v| i.claim(v, &req)).await
    }

    async fn extend_lease(&self, lease: &Lease, lease_for: Duration) -> Result<()> {
        let lease = lease.clone();
        self.submit(false, Admit::No, move |i, v| i.extend_lease(v, &lease, lease_for))
            .await
    }

    async fn save_with(&self, lease: &Lease, run: &Run, next: Next, effects: Effects) -> Result<Saved> {
        let (lease, json, run) = (lease.clone(), ops::progress_json(run)?, run.clone());
        // A finished run's record is compressed here, by the worker, not by the writer thread
        // that every store operation waits on.
        let finished = match next {
            Next::Done => Some(ops::finished_record(&json)?),
            _ => None,
        };
        self.submit(true, Admit::No, move |i, v| {
            let exit_requested = i.save(v, &lease, json.clone(), finished.clone(), next)?;
            Inner::apply_waits(v, &effects.waits)?;
            if let Next::RetryAt(at) = next {
                i.park(v, &run, &json, at.0)?;
            }
            let changes = segments::change_segments(v, &effects.segment_ops, effects.origin.as_ref())?;
            suppress::suppress(v, &effects.suppress)?;
            for e in &effects.events {
                segments::put_event(v, e)?;
            }
            Ok(Saved {
                changes,
                exit_requested,
            })
        })
        .await
    }

    async fn exit_runs(&self, exits: Vec<ExitMatch>) -> Result<Vec<ExitedRun>> {
        self.submit(true, Admit::Most, move |i, v| i.exit_runs(v, &exits))
            .await
    }

    async fn exit_run(&self, run_id: &str, reason: &str) -> Result<crate::store::Exited> {
        let (id, reason) = (run_id.to_string(), reason.to_string());
        self.submit(true, Admit::Most, move |i, v| i.exit_one(v, &id, &reason))
            .await
    }

    async fn waiting_counts(&self) -> Result<BTreeMap<String, u64>> {
        self.read(|i| {
            let mut out = BTreeMap::new();
            for item in i.db.scan_prefix("waiting:") {
                let (k, v) = item?;
                let flow = String::from_utf8_lossy(&k["waiting:".len()..]).into_owned();
                let n = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
                out.insert(flow, n);
            }
            Ok(out)
        })
        .await
    }

    fn parked(&self) -> u64 {
        // Less the parked runs an exit has already ended (they leave when read back).
        let exited = self
            .inner
            .db
            .get(keys::PARKED_EXITS)
            .ok()
            .flatten()
            .and_then(|b| b.as_ref().try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        self.inner.parking.count().0.saturating_sub(exited)
    }

    async fn get_run(&self, id: &str) -> Result<Option<Run>> {
        let id = id.to_string();
        self.read(move |i| find_run(i, &id)).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let f = filter.clone();
        self.read(move |i| {
            let limit = f.limit.max(1);
            let mut out = Vec::new();
            // Up to `limit` from the journal and up to `limit` from sled, merged by id: runs
            // raised by events and schedules go straight into sled, so either side may hold
            // the newest.
            if f.status.is_none_or(|s| s == RunStatus::Queued) {
                for run in newest_pending(i, f.flow.as_deref(), f.before.as_deref(), limit)? {
                    if f.matches(&run) {
                        out.push(run);
                    }
                }
            }
            let end = match &f.before {
                Some(b) => run_key(b),
                None => "run;".to_string(), // ';' sorts right after ':'
            };
            let mut from_sled = 0;
            for item in i.db.range("run:".as_bytes()..end.as_bytes()).rev() {
                if from_sled >= limit {
                    break;
                }
                let (k, v) = item?;
                let run = stored_run(i, &String::from_utf8_lossy(&k["run:".len()..]), &v)?;
                if !f.matches(&run) {
                    continue;
                }
                out.push(run);
                from_sled += 1;
            }
            // Parked runs newer than the page found so far (all of them if it is not full).
            out.sort_by(|a, b| b.id.cmp(&a.id));
            let above = (out.len() >= limit).then(|| out[limit - 1].id.clone());
            out.extend(i.parking.list(&i.db, &f, limit, above.as_deref())?);
            // Admitted while we looked: in both; the later state first, and kept.
            out.sort_by(|a, b| b.id.cmp(&a.id).then(b.updated_at.cmp(&a.updated_at)));
            out.dedup_by(|a, b| a.id == b.id);
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn queue_stats(&self, now: Ts) -> Result<(u64, Option<Ts>)> {
        self.read(move |i| {
            let (pending, oldest_pending) = match i.intake.pending.lock() {
                Ok(p) => (p.len() as u64, p.oldest_created()),
                Err(_) => (0, None),
            };
            // Only the entries due by now: runs waiting for a later retry or wake-up (which
            // may be many, for days) are neither counted nor read.
            let (mut depth, mut oldest) = (pending, oldest_pending);
            let end = format!("due:{:016x};", now.0);
            for k in i.db.range("due:".as_bytes()..end.as_bytes()).keys() {
                let k = k?;
                let s = String::from_utf8_lossy(&k);
                if depth == pending
                    && let Some(t) = s.get(4..20).and_then(|h| u64::from_str_radix(h, 16).ok()).map(Ts)
                {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                }
                depth += 1;
            }
            Ok((depth, oldest))
        })
        .await
    }

    async fn prune(&self, before: Ts, keep: usize, max: usize) -> Result<usize> {
        let doomed = self
            .read(move |i| {
                // Two passes, so memory holds at most `max` keys however many runs are kept:
                // the count (keys only), then the oldest finished runs (ids sort by creation)
                // over the count or past the age.
                let total = i.run_count()? as usize;
                let mut over = total.saturating_sub(keep);
                let mut out = Vec::new();
                for item in i.db.scan_prefix("run:") {
                    if out.len() >= max {
                        break;
                    }
                    let (k, v) = item?;
                    // The progress alone: pruning never reads a run's input.
                    let run = from_json::<StoredSummary>(&String::from_utf8_lossy(&k), &v)?.run;
                    if over == 0 && run.created_at >= before {
                        break; // neither over the count nor old enough, nor any after it
                    }
                    if !run.status.is_terminal() {
                        continue;
                    }
                    if over > 0 || run.finished_at.unwrap_or(run.updated_at) < before {
                        over = over.saturating_sub(1);
                        out.push(k.to_vec());
                    }
                }
                Ok(out)
            })
            .await?;
        if doomed.is_empty() {
            return Ok(0);
        }
        self.submit(true, Admit::No, move |_, v| {
            let mut n = 0;
            for k in doomed {
                // Still finished? (A replay never reuses an id, so only deletion races.)
                if v.get(&k)?.is_some() {
                    let id = String::from_utf8_lossy(&k["run:".len()..]).into_owned();
                    v.remove(keys::input_key(&id));
                    v.remove(k);
                    n += 1;
                }
            }
            Inner::add_signed(v, keys::RUN_COUNT, -(n as i64))?;
            Ok(n)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<Ts>> {
        self.read(|i| {
            if i.intake.pending.lock().map(|p| !p.is_empty()).unwrap_or(false) {
                return Ok(Some(Ts::now()));
            }
            let parked = i.parking.next_due();
            let Some(item) = i.db.scan_prefix("due:").keys().next() else {
                return Ok(parked);
            };
            let k = item?;
            let s = String::from_utf8_lossy(&k);
            let hexpart = s.get(4..20).unwrap_or("");
            let due = u64::from_str_radix(hexpart, 16)
                .map(Ts)
                .map_err(|_| StoreError::Corrupt(format!("bad due key {s}")))?;
            Ok(Some(parked.map_or(due, |p| p.min(due))))
        })
        .await
    }

    async fn add_counter(&self, flow: &str, name: &str, by: u64) -> Result<()> {
        let key = format!("ctr:{flow}:{name}");
        self.submit(false, Admit::No, move |_, v| Inner::add_counter(v, &key, by))
            .await
    }

    async fn counters(&self, flow: &str) -> Result<BTreeMap<String, u64>> {
        let prefix = format!("ctr:{flow}:");
        self.read(move |i| {
            let mut out = BTreeMap::new();
            for item in i.db.scan_prefix(&prefix) {
                let (k, v) = item?;
                let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                let n = v.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
                out.insert(name, n);
            }
            Ok(out)
        })
        .await
    }

    async fn sync(&self) -> Result<()> {
        self.submit(true, Admit::No, |_, _| Ok(())).await
    }
}

#[async_trait]
impl Contacts for SledStore {
    async fn change_segments(&self, ops: Vec<SegmentOp>, origin: Origin) -> Result<Vec<SegmentChange>> {
        self.submit(true, Admit::No, move |_, v| {
            segments::change_segments(v, &ops, Some(&(origin, 1)))
        })
        .await
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<Event>> {
        self.read(move |i| i.pending_events(limit)).await
    }

    async fn dispatch_event(
        &self,
        event_id: &str,
        runs: Vec<Run>,
        exits: Vec<ExitMatch>,
    ) -> Result<Vec<ExitedRun>> {
        let id = event_id.to_string();
        // Exits admit the journal first, so runs accepted a moment ago are found and ended now
        // (deeper in a backlog they are noted and ended as they are admitted).
        self.submit(
            true,
            if exits.is_empty() { Admit::No } else { Admit::Most },
            move |i, v| i.dispatch_event(v, &id, &runs, &exits),
        )
        .await
    }

    async fn segments(&self) -> Result<Vec<SegmentInfo>> {
        self.read(|i| i.segments()).await
    }

    async fn segment_members(&self, segment: &str, after: Option<&str>, limit: usize) -> Result<Vec<Member>> {
        let (segment, after) = (segment.to_string(), after.map(str::to_string));
        self.read(move |i| i.segment_members(&segment, after.as_deref(), limit))
            .await
    }

    async fn segment_added_since(&self, segment: &str, since: Ts) -> Result<u64> {
        let segment = segment.to_string();
        self.read(move |i| i.segment_added_since(&segment, since)).await
    }

    async fn contact(&self, email: &str) -> Result<Option<ContactView>> {
        let email = email.to_string();
        self.read(move |i| i.contact(&email)).await
    }
}

#[async_trait]
impl Coordination for SledStore {
    async fn last_firing(&self, flow: &str) -> Result<Option<Ts>> {
        let flow = flow.to_string();
        self.read(move |i| i.last_firing(&flow)).await
    }

    async fn record_firing(&self, flow: &str, at: Ts, run: Option<Run>) -> Result<bool> {
        let flow = flow.to_string();
        self.submit(true, Admit::No, move |i, v| {
            i.record_firing(v, &flow, at, run.as_ref())
        })
        .await
    }

    async fn heartbeat(&self, me: &Instance) -> Result<()> {
        if let Ok(mut slot) = self.me.lock() {
            *slot = Some(me.clone());
        }
        Ok(())
    }

    async fn instances(&self) -> Result<Vec<Instance>> {
        Ok(self.me.lock().ok().and_then(|m| m.clone()).into_iter().collect())
    }

    async fn shared_setting(&self, key: &str, value: String) -> Result<String> {
        let key = format!("meta:shared:{key}");
        self.submit(true, Admit::No, move |_, v| match v.get(key.as_bytes())? {
            Some(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            None => {
                v.insert(key.into_bytes(), value.clone().into_bytes());
                Ok(value)
            }
        })
        .await
    }
}

#[async_trait]
impl FlowSources for SledStore {
    async fn put_flow_source(&self, flow: &str, version: &str, source: &str) -> Result<()> {
        let (key, source) = (format!("flowsrc:{flow}\0{version}"), source.to_string());
        self.submit(true, Admit::No, move |_, v| {
            if !v.contains(key.as_bytes())? {
                v.insert(key.into_bytes(), source.into_bytes());
            }
            Ok(())
        })
        .await
    }

    async fn flow_source(&self, flow: &str, version: &str) -> Result<Option<String>> {
        let key = format!("flowsrc:{flow}\0{version}");
        self.read(move |i| Ok(i.db.get(key)?.map(|b| String::from_utf8_lossy(&b).into_owned())))
            .await
    }

    async fn put_last_good(&self, flow: &str, version: &str) -> Result<()> {
        let (key, version) = (format!("flowgood:{flow}"), version.to_string());
        self.submit(true, Admit::No, move |_, v| {
            v.insert(key.into_bytes(), version.into_bytes());
            Ok(())
        })
        .await
    }

    async fn last_good(&self, flow: &str) -> Result<Option<String>> {
        let key = format!("flowgood:{flow}");
        self.read(move |i| Ok(i.db.get(key)?.map(|b| String::from_utf8_lossy(&b).into_owned())))
            .await
    }
}

#[async_trait]
impl Backup for SledStore {
    async fn backup_file(&self) -> Result<(PathBuf, BackupInfo)> {
        let base = self.dir.parent().unwrap_or(&self.dir);
        let path = base.join(format!(".backup-{}.partial", crate::run::new_run_id()));
        match self.backup(&path).await {
            Ok(info) => Ok((path, info)),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }
}

impl Store for SledStore {
    fn describe(&self) -> String {
        format!("sled at {}", self.dir.display())
    }
}
