//! The embedded default store on sled 0.34.
//!
//! Layout (version 1, one tree, string-prefixed keys so every change of one operation is a
//! single atomic `apply_batch`):
//!
//! | key                              | value                                 |
//! |----------------------------------|---------------------------------------|
//! | `meta:layout`                    | `1`                                   |
//! | `run:{id}`                       | `{"q": QEntry or null, "run": Run}`: the run record and, while unfinished, its queue state |
//! | `due:{ms as 16 hex}:{id}`        | flow name; the time-ordered due index |
//! | `lease:{id}`                     | flow and expiry of a held lease       |
//! | `lane:{flow}:{key hash}:{seq}`   | run id, in arrival order              |
//! | `ctr:{flow}:{name}`              | u64 counter                           |
//!
//! **Group commit.** All writes go through one writer thread. It takes every operation waiting
//! in its channel, runs them against an overlay ([`view::View`]), applies the whole group as one
//! atomic `apply_batch`, calls `flush()` once and only then answers the callers. sled's `flush_async` is never used: it deadlocks with about eight
//! flushes in flight (sled #1308). With [`Durability::Fsync`] the writer also `fdatasync`s
//! sled's data file after the flush, since sled's `flush` uses `sync_file_range` and is not
//! power-loss safe on its own.
//!
//! sled locks its directory, so one process owns the store: on open, every lease left by a
//! previous process is orphaned and is released at once.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

mod view;

use self::view::View;
use super::{ClaimRequest, Claimed, Lease, Next, Result, RunFilter, Store, StoreError};
use crate::run::{Run, RunStatus, Ts};

const LAYOUT_VERSION: &str = "2";

/// What an acknowledgement guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// sled `flush()`: survives the process being killed; a power loss may lose the last
    /// ~500 ms of acknowledged writes.
    #[default]
    Flush,
    /// `flush()` then `fdatasync` on the data file: survives power loss.
    Fsync,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseInfo {
    token: u64,
    until: u64,
}

/// Queue state of an unfinished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct QEntry {
    flow: String,
    /// `None` while waiting behind an earlier run of its lane.
    due: Option<u64>,
    lease: Option<LeaseInfo>,
    /// Its key in the lane index, if it has an ordering key.
    lane: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LeaseRow {
    flow: String,
    until: u64,
}

fn run_key(id: &str) -> String {
    format!("run:{id}")
}
fn due_key(at: u64, id: &str) -> String {
    format!("due:{at:016x}:{id}")
}
fn lease_key(id: &str) -> String {
    format!("lease:{id}")
}
fn lane_prefix(flow: &str, key: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(key.as_bytes());
    format!("lane:{flow}:{}:", hex::encode(&h[..12]))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}
fn from_json<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))
}

struct Inner {
    db: sled::Db,
    data_file: Option<File>,
    /// Flushes made, for observing group commit.
    flushes: std::sync::atomic::AtomicU64,
}

fn get<T: for<'de> Deserialize<'de>>(view: &View<'_>, key: &str) -> Result<Option<T>> {
    match view.get(key.as_bytes())? {
        Some(b) => Ok(Some(from_json(key, &b)?)),
        None => Ok(None),
    }
}

/// The stored form of a run: queue state and record in one value, so queueing a run is one key
/// plus its due-index entry (a third key cost sled about a fifth more per run, see
/// `examples/sled_cost.rs`).
fn envelope(q: Option<&QEntry>, run_json: &[u8]) -> Result<Vec<u8>> {
    let q_json = match q {
        Some(q) => to_json(q)?,
        None => b"null".to_vec(),
    };
    let mut out = Vec::with_capacity(run_json.len() + q_json.len() + 16);
    out.extend_from_slice(b"{\"q\":");
    out.extend_from_slice(&q_json);
    out.extend_from_slice(b",\"run\":");
    out.extend_from_slice(run_json);
    out.push(b'}');
    Ok(out)
}

/// A stored run read for its queue state only; the record stays unparsed.
#[derive(Deserialize)]
struct StoredQ {
    q: Option<QEntry>,
    run: Box<serde_json::value::RawValue>,
}

/// A stored run read for its record.
#[derive(Deserialize)]
struct StoredRun {
    run: Run,
}

/// A stored run read whole.
#[derive(Deserialize)]
struct Stored {
    q: Option<QEntry>,
    run: Run,
}

/// The queue state of an unfinished run and its record's JSON.
fn load_q(view: &View<'_>, id: &str) -> Result<Option<(QEntry, Vec<u8>)>> {
    Ok(get::<StoredQ>(view, &run_key(id))?.and_then(|s| s.q.map(|q| (q, s.run.get().as_bytes().to_vec()))))
}

fn store(view: &mut View<'_>, id: &str, q: Option<&QEntry>, run_json: &[u8]) -> Result<()> {
    view.insert(run_key(id), envelope(q, run_json)?);
    Ok(())
}

/// The operations, each reading and writing through the group's [`View`].
impl Inner {
    fn sync(&self) -> std::result::Result<(), String> {
        self.flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.db.flush().map_err(|e| e.to_string())?;
        if let Some(f) = &self.data_file {
            f.sync_data().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Loads the queue entry (and record) of a claimed run, checking the lease is still ours.
    fn held(view: &View<'_>, lease: &Lease) -> Result<(QEntry, Vec<u8>)> {
        let (q, raw) =
            load_q(view, &lease.run_id)?.ok_or_else(|| StoreError::LeaseLost(lease.run_id.clone()))?;
        match &q.lease {
            Some(l) if l.token == lease.token => Ok((q, raw)),
            _ => Err(StoreError::LeaseLost(lease.run_id.clone())),
        }
    }

    fn insert_run(&self, view: &mut View<'_>, run: NewRun) -> Result<()> {
        let NewRun {
            id,
            flow,
            order_key,
            json,
        } = run;
        let rk = run_key(&id);
        if view.contains(rk.as_bytes())? {
            return Err(StoreError::Duplicate(id));
        }
        let mut q = QEntry {
            flow,
            due: Some(Ts::now().0),
            lease: None,
            lane: None,
        };
        if let Some(key) = &order_key {
            let prefix = lane_prefix(&q.flow, key);
            if view.scan_prefix(prefix.as_bytes()).next().is_some() {
                q.due = None; // waits behind an earlier run of its lane
            }
            let lk = format!("{prefix}{:016x}", self.db.generate_id()?);
            view.insert(lk.clone(), id.as_bytes());
            q.lane = Some(lk);
        }
        if let Some(at) = q.due {
            view.insert(due_key(at, &id), q.flow.as_bytes());
        }
        view.insert(rk, envelope(Some(&q), &json)?);
        Ok(())
    }

    fn active_leases(view: &View<'_>, now: u64) -> Result<BTreeMap<String, u32>> {
        let mut counts = BTreeMap::new();
        for item in view.scan_prefix(b"lease:") {
            let (k, v) = item?;
            let row: LeaseRow = from_json(&String::from_utf8_lossy(&k), &v)?;
            if row.until > now {
                *counts.entry(row.flow).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    fn claim(&self, view: &mut View<'_>, req: &ClaimRequest) -> Result<Vec<Claimed>> {
        let now = req.now.0;
        let mut active = Self::active_leases(view, now)?;
        let mut out = Vec::new();
        let end = format!("due:{:016x}", now + 1);
        // Pick candidates from the due index alone (its values name the flow), so a capped
        // flow's backlog is skipped without reading it and cannot starve other flows.
        let mut picked = Vec::new();
        for item in view.range(b"due:", end.as_bytes()) {
            if picked.len() >= req.limit {
                break;
            }
            let (key, flow) = item?;
            let flow = String::from_utf8_lossy(&flow).into_owned();
            if let Some(cap) = req.caps.get(&flow) {
                let n = active.entry(flow.clone()).or_insert(0);
                if *n >= *cap {
                    continue;
                }
                *n += 1;
            }
            picked.push(String::from_utf8_lossy(&key).into_owned());
        }
        for key in picked {
            let Some(id) = key.rsplit(':').next().map(str::to_string) else {
                continue;
            };
            let Some(Stored {
                q: Some(mut q),
                mut run,
            }) = get::<Stored>(view, &run_key(&id))?
            else {
                view.remove(key); // stale index entry
                continue;
            };
            let token = self.db.generate_id()?;
            let until = req.now.plus(req.lease_for).0;
            view.remove(key);
            q.due = Some(until);
            q.lease = Some(LeaseInfo { token, until });
            run.status = RunStatus::Running;
            run.next_attempt_at = None;
            run.updated_at = req.now;
            view.insert(due_key(until, &id), q.flow.as_bytes());
            view.insert(
                lease_key(&id),
                to_json(&LeaseRow {
                    flow: q.flow.clone(),
                    until,
                })?,
            );
            store(view, &id, Some(&q), &to_json(&run)?)?;
            out.push(Claimed {
                run,
                lease: Lease { run_id: id, token },
            });
        }
        Ok(out)
    }

    /// Moves a queue entry's due time.
    fn move_due(view: &mut View<'_>, q: &mut QEntry, id: &str, at: Option<u64>) {
        if let Some(old) = q.due {
            view.remove(due_key(old, id));
        }
        if let Some(new) = at {
            view.insert(due_key(new, id), q.flow.as_bytes());
        }
        q.due = at;
    }

    fn hold_until(
        view: &mut View<'_>,
        mut q: QEntry,
        lease: &Lease,
        until: u64,
        run_json: &[u8],
    ) -> Result<()> {
        let id = &lease.run_id;
        Self::move_due(view, &mut q, id, Some(until));
        q.lease = Some(LeaseInfo {
            token: lease.token,
            until,
        });
        view.insert(
            lease_key(id),
            to_json(&LeaseRow {
                flow: q.flow.clone(),
                until,
            })?,
        );
        store(view, id, Some(&q), run_json)
    }

    fn extend_lease(view: &mut View<'_>, lease: &Lease, until: Ts) -> Result<()> {
        let (q, raw) = Self::held(view, lease)?;
        Self::hold_until(view, q, lease, until.0, &raw)
    }

    fn save(view: &mut View<'_>, lease: &Lease, run_json: Vec<u8>, next: Next) -> Result<()> {
        let id = &lease.run_id;
        let (mut q, _) = Self::held(view, lease)?;
        match next {
            Next::Continue { lease_until } => Self::hold_until(view, q, lease, lease_until.0, &run_json)?,
            Next::RetryAt(at) => {
                Self::move_due(view, &mut q, id, Some(at.0));
                q.lease = None;
                view.remove(lease_key(id));
                store(view, id, Some(&q), &run_json)?;
            }
            Next::Done => {
                Self::move_due(view, &mut q, id, None);
                view.remove(lease_key(id));
                store(view, id, None, &run_json)?;
                if let Some(lk) = &q.lane {
                    view.remove(lk.as_bytes());
                    Self::release_lane_successor(view, lk)?;
                }
            }
        }
        Ok(())
    }

    /// Makes the next run of the lane that `finished` belonged to due now.
    fn release_lane_successor(view: &mut View<'_>, finished: &str) -> Result<()> {
        let prefix = &finished[..=finished.rfind(':').unwrap_or(0)];
        loop {
            // `finished` was removed from the view already; the first entry left is next.
            let next = view
                .scan_prefix(prefix.as_bytes())
                .find(|item| !matches!(item, Ok((k, _)) if k.as_slice() == finished.as_bytes()))
                .transpose()?;
            let Some((lane_key, id)) = next else { return Ok(()) };
            let next_id = String::from_utf8_lossy(&id).into_owned();
            match load_q(view, &next_id)? {
                Some((mut nq, raw)) => {
                    if nq.due.is_none() {
                        Self::move_due(view, &mut nq, &next_id, Some(Ts::now().0));
                        store(view, &next_id, Some(&nq), &raw)?;
                    }
                    return Ok(());
                }
                // A lane entry without a queued run must not hold the lane forever.
                None => view.remove(lane_key),
            }
        }
    }

    /// Releases every lease: called at open, when no other process can hold one.
    fn release_orphaned_leases(view: &mut View<'_>) -> Result<usize> {
        let now = Ts::now().0;
        let ids: Vec<String> = view
            .scan_prefix(b"lease:")
            .map(|item| item.map(|(k, _)| String::from_utf8_lossy(&k["lease:".len()..]).into_owned()))
            .collect::<Result<_>>()?;
        for id in &ids {
            view.remove(lease_key(id));
            if let Some((mut q, raw)) = load_q(view, id)? {
                Self::move_due(view, &mut q, id, Some(now));
                q.lease = None;
                store(view, id, Some(&q), &raw)?;
            }
        }
        Ok(ids.len())
    }

    fn add_counter(view: &mut View<'_>, key: &str, by: u64) -> Result<()> {
        let n = view
            .get(key.as_bytes())?
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        view.insert(key.as_bytes(), (n + by).to_be_bytes().to_vec());
        Ok(())
    }
}

/// A run serialized by the caller, so the writer thread only moves bytes.
struct NewRun {
    id: String,
    flow: String,
    order_key: Option<String>,
    json: Vec<u8>,
}

/// A write handed to the writer thread; it returns the closure that answers its caller with
/// the outcome of the group's commit.
type Reply = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Inner, &mut View<'_>) -> Reply + Send>;

struct Op {
    job: Job,
    durable: bool,
}

/// Largest number of operations committed together.
const MAX_GROUP: usize = 1024;

fn writer_loop(inner: Arc<Inner>, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let any_durable = ops.iter().any(|o| o.durable);
        let mut view = View::new(&inner.db);
        let replies: Vec<Reply> = ops
            .into_iter()
            .map(|op| {
                view.mark();
                (op.job)(&inner, &mut view)
            })
            .collect();
        // One atomic batch for the group; if anything in it must be durable, everyone waits
        // for the flush (a claim must not hand out a run whose insert could still vanish).
        let committed = match view.into_batch() {
            Some(batch) => inner.db.apply_batch(batch).map_err(|e| e.to_string()),
            None => Ok(()),
        };
        let outcome = committed.and_then(|()| if any_durable { inner.sync() } else { Ok(()) });
        for reply in replies {
            reply(outcome.clone());
        }
    }
    if let Err(e) = inner.sync() {
        tracing::error!(error = %e, "final flush of the store failed");
    }
}

/// The sled-backed [`Store`].
pub struct SledStore {
    inner: Arc<Inner>,
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<SledStore> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend(format!("{}: {e}", dir.display())))?;
        let db = sled::Config::new().path(dir).open().map_err(|e| {
            StoreError::Backend(format!(
                "cannot open the store in {}: {e} (is another hookflow using it?)",
                dir.display()
            ))
        })?;
        Self::with_db(db, Some(dir), durability)
    }

    /// A store deleted when dropped; for tests.
    pub fn temporary() -> Result<SledStore> {
        let db = sled::Config::new().temporary(true).open()?;
        Self::with_db(db, None, Durability::Flush)
    }

    fn with_db(db: sled::Db, dir: Option<&Path>, durability: Durability) -> Result<SledStore> {
        match db.get("meta:layout")? {
            None => {
                db.insert("meta:layout", LAYOUT_VERSION)?;
            }
            Some(v) if v.as_ref() == LAYOUT_VERSION.as_bytes() => {}
            Some(v) => {
                return Err(StoreError::Corrupt(format!(
                    "store layout version {} is not supported by this hookflow (expects {LAYOUT_VERSION})",
                    String::from_utf8_lossy(&v)
                )));
            }
        }
        let data_file =
            match (durability, dir) {
                (Durability::Fsync, Some(d)) => Some(File::open(d.join("db")).map_err(|e| {
                    StoreError::Backend(format!("cannot open sled's data file for fsync: {e}"))
                })?),
                _ => None,
            };
        let inner = Arc::new(Inner {
            db,
            data_file,
            flushes: Default::default(),
        });
        let mut view = View::new(&inner.db);
        let released = Inner::release_orphaned_leases(&mut view)?;
        if let Some(batch) = view.into_batch() {
            inner.db.apply_batch(batch)?;
        }
        if released > 0 {
            tracing::info!(
                runs = released,
                "resuming runs that were in progress when the previous process stopped"
            );
        }
        inner.sync().map_err(StoreError::Backend)?;
        let (tx, rx) = mpsc::channel();
        let w = Arc::clone(&inner);
        let writer = std::thread::Builder::new()
            .name("hookflow-store-writer".into())
            .spawn(move || writer_loop(w, rx))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(SledStore {
            inner,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    async fn submit<T: Send + 'static>(
        &self,
        durable: bool,
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
            sender.send(Op { job, durable }).map_err(|_| StoreError::Closed)?;
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

    /// How many times the store has flushed since it was opened: with group commit, far fewer
    /// than the durable writes it acknowledged.
    pub fn flush_count(&self) -> u64 {
        self.inner.flushes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the writer after it has applied and flushed everything queued.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait]
impl Store for SledStore {
    async fn insert_run(&self, run: &Run) -> Result<()> {
        let new = NewRun {
            id: run.id.clone(),
            flow: run.flow.clone(),
            order_key: run.order_key.clone(),
            json: to_json(run)?,
        };
        self.submit(true, move |i, v| i.insert_run(v, new)).await
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>> {
        self.submit(false, move |i, v| i.claim(v, &req)).await
    }

    async fn extend_lease(&self, lease: &Lease, until: Ts) -> Result<()> {
        let lease = lease.clone();
        self.submit(false, move |_, v| Inner::extend_lease(v, &lease, until))
            .await
    }

    async fn save(&self, lease: &Lease, run: &Run, next: Next) -> Result<()> {
        let (lease, json) = (lease.clone(), to_json(run)?);
        self.submit(true, move |_, v| Inner::save(v, &lease, json, next))
            .await
    }

    async fn get_run(&self, id: &str) -> Result<Option<Run>> {
        let key = run_key(id);
        self.read(move |i| match i.db.get(&key)? {
            Some(b) => Ok(Some(from_json::<StoredRun>(&key, &b)?.run)),
            None => Ok(None),
        })
        .await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let f = filter.clone();
        self.read(move |i| {
            let end = match &f.before {
                Some(b) => run_key(b),
                None => "run;".to_string(), // ';' sorts right after ':'
            };
            let mut out = Vec::new();
            for item in i.db.range("run:".as_bytes()..end.as_bytes()).rev() {
                let (k, v) = item?;
                let run = from_json::<StoredRun>(&String::from_utf8_lossy(&k), &v)?.run;
                if f.flow.as_ref().is_some_and(|fl| *fl != run.flow)
                    || f.status.is_some_and(|s| s != run.status)
                {
                    continue;
                }
                out.push(run);
                if out.len() >= f.limit.max(1) {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<Ts>> {
        self.read(|i| {
            let Some(item) = i.db.scan_prefix("due:").keys().next() else {
                return Ok(None);
            };
            let k = item?;
            let s = String::from_utf8_lossy(&k);
            let hexpart = s.get(4..20).unwrap_or("");
            u64::from_str_radix(hexpart, 16)
                .map(|t| Some(Ts(t)))
                .map_err(|_| StoreError::Corrupt(format!("bad due key {s}")))
        })
        .await
    }

    async fn add_counter(&self, flow: &str, name: &str, by: u64) -> Result<()> {
        let key = format!("ctr:{flow}:{name}");
        self.submit(false, move |_, v| Inner::add_counter(v, &key, by))
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
        self.submit(true, |_, _| Ok(())).await
    }
}
