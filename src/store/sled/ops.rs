//! The store's operations, each reading and writing through its commit group's [`View`], and
//! the stored forms of runs and queue entries.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::intake::Intake;
use super::keys::*;
use super::view::View;
use crate::run::{Run, RunStatus};
use crate::store::{
    ClaimRequest, Claimed, ExitMatch, Exited, ExitedRun, Lease, Next, Result, StoreError, WaitOp,
};
use crate::time::Ts;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LeaseInfo {
    token: u64,
    until: u64,
}

/// Queue state of an unfinished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct QEntry {
    flow: String,
    /// `None` while waiting behind an earlier run of its lane.
    due: Option<u64>,
    lease: Option<LeaseInfo>,
    /// Its key in the lane index, if it has an ordering key.
    lane: Option<String>,
    /// An exit condition matched while a worker held the run: the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit: Option<String>,
    /// When that exit came, if it came before the run was read into sled (a parked run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit_at: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LeaseRow {
    flow: String,
    until: u64,
}

pub(super) struct Inner {
    pub(super) db: sled::Db,
    /// Waiting runs kept on disk outside sled ([`super::parking`]).
    pub(super) parking: super::parking::Parking,
    pub(super) data_file: Option<File>,
    /// Flushes made, for observing group commit.
    pub(super) flushes: std::sync::atomic::AtomicU64,
    pub(super) intake: Intake,
    /// The journal, appended to by group commit ([`super::appender`]).
    pub(super) appender: super::appender::Appender,
    /// The leases this process holds, on the monotonic clock: the authority on whether a
    /// lease holds (one process owns a sled store, and every lease is released when it
    /// opens). The wall-clock expiry written with each lease only orders the due index; a
    /// step of the wall clock once let a claim take a run whose attempt was still in flight.
    pub(super) leases: std::sync::Mutex<HashMap<String, Held>>,
    /// The last claim took fewer runs than it asked for: the next admits a full group, in
    /// case the due runs sled holds are all of capped flows ([`super::writer::Admit`]).
    pub(super) claim_short: std::sync::atomic::AtomicBool,
}

/// A lease held by this process.
#[derive(Debug, Clone)]
pub(super) struct Held {
    flow: String,
    token: u64,
    deadline: Instant,
}

pub(super) fn get<T: for<'de> Deserialize<'de>>(view: &View<'_>, key: &str) -> Result<Option<T>> {
    match view.get(key.as_bytes())? {
        Some(b) => Ok(Some(from_json(key, &b)?)),
        None => Ok(None),
    }
}

/// The stored form of a run: queue state and record in one value, so queueing a run is one key
/// plus its due-index entry (a third key cost sled about a fifth more per run, see
/// `examples/sled_cost.rs`).
pub(super) fn envelope(q: Option<&QEntry>, run_json: &[u8]) -> Result<Vec<u8>> {
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
pub(super) struct StoredQ {
    q: Option<QEntry>,
    run: Box<serde_json::value::RawValue>,
}

/// A stored run read for its record (progress, or whole before layout 3), unparsed.
#[derive(Deserialize)]
pub(super) struct StoredRun {
    pub(super) run: Box<serde_json::value::RawValue>,
}

/// A stored run read for its status and times alone.
#[derive(Deserialize)]
pub(super) struct StoredSummary {
    pub(super) run: crate::store::record::Summary,
}

/// A stored run read whole: its queue state and its record (progress, or a whole run from
/// before layout 3).
#[derive(Deserialize)]
pub(super) struct Stored {
    q: Option<QEntry>,
    run: Box<serde_json::value::RawValue>,
}

/// A stored run read through the group's view.
struct Loaded {
    q: Option<QEntry>,
    run: Run,
    /// Stored whole before layout 3: no input apart yet ([`store_run`] writes it).
    whole: bool,
}

fn load(view: &View<'_>, id: &str) -> Result<Option<Loaded>> {
    let Some(Stored { q, run: record }) = get::<Stored>(view, &run_key(id))? else {
        return Ok(None);
    };
    let input = view.get(input_key(id).as_bytes())?;
    let run = parse_run(id, input.as_deref(), record.get().as_bytes())?;
    Ok(Some(Loaded {
        q,
        run,
        whole: input.is_none(),
    }))
}

/// The progress JSON of `run` (see [`crate::store::record`]).
pub(super) fn progress_json(run: &Run) -> Result<Vec<u8>> {
    crate::store::record::progress_json(run).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The queue state of an unfinished run and its record's JSON.
pub(super) fn load_q(view: &View<'_>, id: &str) -> Result<Option<(QEntry, Vec<u8>)>> {
    Ok(get::<StoredQ>(view, &run_key(id))?.and_then(|s| s.q.map(|q| (q, s.run.get().as_bytes().to_vec()))))
}

/// Writes a run's record as it is (`run_json`: progress, or a whole run from before layout 3,
/// unchanged). A finished run's record (no queue state) is written compressed ([`super::packed`]):
/// it is written once more at most (a replay), while an unfinished one is rewritten at every
/// claim and save and stays plain.
pub(super) fn store(view: &mut View<'_>, id: &str, q: Option<&QEntry>, run_json: &[u8]) -> Result<()> {
    let value = match q {
        Some(_) => envelope(q, run_json)?,
        None => finished_record(run_json)?,
    };
    view.insert(run_key(id), value);
    Ok(())
}

/// The stored value of a finished run whose progress is `run_json`: no queue state, compressed.
pub(super) fn finished_record(run_json: &[u8]) -> Result<Vec<u8>> {
    Ok(super::packed::pack(envelope(None, run_json)?))
}

/// Writes `run`'s progress — and its input, if it was stored `whole` before layout 3: a claim
/// does this, so every save after it (which holds the claim's lease) finds the input apart.
fn store_run(view: &mut View<'_>, q: Option<&QEntry>, run: &Run, whole: bool) -> Result<()> {
    if whole {
        let input = crate::store::record::input_json(run).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        view.insert(input_key(&run.id), super::packed::pack(input));
    }
    store(view, &run.id, q, &progress_json(run)?)
}

/// The sled entries of a parked run read back: its record queued at its wake time, its due
/// key and its exit index — or, when an exit reached it while parked, due at once with the
/// exit requested, so the engine ends it (and counts and logs it) as it ends any run asked to
/// exit. For reading a bucket back, and for backups (which hold parked runs this way).
pub(super) fn unparked_entries(
    rec: &super::parking::Record,
    exit: Option<(String, Option<u64>)>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let due = if exit.is_some() {
        Ts::now().0.min(rec.due)
    } else {
        rec.due
    };
    let (exit, exit_at) = match exit {
        Some((reason, at)) => (Some(reason), at),
        None => (None, None),
    };
    let q = QEntry {
        flow: rec.flow.clone(),
        due: Some(due),
        lease: None,
        lane: None,
        exit,
        exit_at,
    };
    let mut out = vec![(due_key(due, &rec.id).into_bytes(), rec.flow.as_bytes().to_vec())];
    for key in &rec.exit_keys {
        out.push((
            exit_key(&rec.flow, key, &rec.id).into_bytes(),
            rec.id.as_bytes().to_vec(),
        ));
    }
    out.push((
        run_key(&rec.id).into_bytes(),
        envelope(Some(&q), rec.run.get().as_bytes())?,
    ));
    Ok(out)
}

/// How many due runs a claim of `n` looks through, per run it takes, to give each flow its
/// fair share; admission keeps at least that many due in sled when there are more pending.
pub(super) const LOOK_AHEAD: usize = 16;

/// The operations, each reading and writing through the group's [`View`].
impl Inner {
    /// [`RUN_COUNT`].
    pub(super) fn run_count(&self) -> Result<u64> {
        Ok(self
            .db
            .get(RUN_COUNT)?
            .and_then(|b| b.as_ref().try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    pub(super) fn sync(&self) -> std::result::Result<(), String> {
        self.flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.db.flush().map_err(|e| match e {
            sled::Error::Io(_) => super::fatal::give_up("a flush", &e),
            e => e.to_string(),
        })?;
        if let Some(f) = &self.data_file {
            f.sync_data().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Loads the queue entry (and record) of a claimed run, checking the lease is still ours.
    pub(super) fn held(view: &View<'_>, lease: &Lease) -> Result<(QEntry, Vec<u8>)> {
        let (q, raw) =
            load_q(view, &lease.run_id)?.ok_or_else(|| StoreError::LeaseLost(lease.run_id.clone()))?;
        match &q.lease {
            Some(l) if l.token == lease.token => Ok((q, raw)),
            _ => Err(StoreError::LeaseLost(lease.run_id.clone())),
        }
    }

    pub(super) fn insert_run(&self, view: &mut View<'_>, run: NewRun) -> Result<()> {
        let NewRun {
            due,
            id,
            flow,
            order_key,
            exit_keys,
            json,
        } = run;
        let rk = run_key(&id);
        if view.contains(rk.as_bytes())? {
            return Err(StoreError::Duplicate(id));
        }
        Self::add_signed(view, RUN_COUNT, 1)?;
        for key in &exit_keys {
            view.insert(exit_key(&flow, key, &id), id.as_bytes());
        }
        let mut q = QEntry {
            flow,
            due: Some(due.0),
            lease: None,
            lane: None,
            exit: None,
            exit_at: None,
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
        let (input, progress) =
            crate::store::record::split(&json).map_err(|e| StoreError::Corrupt(format!("{rk}: {e}")))?;
        view.insert(input_key(&id), super::packed::pack(input));
        view.insert(rk, envelope(Some(&q), &progress)?);
        Ok(())
    }

    fn held_leases(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Held>>> {
        self.leases
            .lock()
            .map_err(|_| StoreError::Backend("lease table poisoned".into()))
    }

    /// Leases whose monotonic deadline has passed (their worker is gone or stuck) are ended:
    /// their runs are due now, whatever the wall clock says their expiry is.
    fn end_lapsed_leases(&self, view: &mut View<'_>, now: u64, mono: Instant) -> Result<()> {
        let lapsed: Vec<(String, u64)> = {
            let mut held = self.held_leases()?;
            let ids: Vec<(String, u64)> = held
                .iter()
                .filter(|(_, h)| h.deadline <= mono)
                .map(|(id, h)| (id.clone(), h.token))
                .collect();
            for (id, _) in &ids {
                held.remove(id);
            }
            ids
        };
        for (id, token) in lapsed {
            if let Some((mut q, raw)) = load_q(view, &id)?
                && q.lease.as_ref().is_some_and(|l| l.token == token)
            {
                Self::move_due(view, &mut q, &id, Some(now));
                store(view, &id, Some(&q), &raw)?;
            }
        }
        Ok(())
    }

    /// Records that this process holds `lease` for `lease_for` from now.
    fn hold(&self, lease: &Lease, flow: &str, lease_for: Duration) -> Result<()> {
        self.held_leases()?.insert(
            lease.run_id.clone(),
            Held {
                flow: flow.to_string(),
                token: lease.token,
                deadline: Instant::now() + lease_for,
            },
        );
        Ok(())
    }

    fn unhold(&self, id: &str) -> Result<()> {
        self.held_leases()?.remove(id);
        Ok(())
    }

    pub(super) fn claim(&self, view: &mut View<'_>, req: &ClaimRequest) -> Result<Vec<Claimed>> {
        let now = req.now.0;
        // Parked runs whose hour is near come back into sled first, due at their wake time.
        self.parking
            .unpark(view, now, super::parking::MAX_UNPARK, |v, rec| {
                self.unparked(v, rec)
            })?;
        let mono = Instant::now();
        self.end_lapsed_leases(view, now, mono)?;
        // Runs held by a live lease are skipped, and counted against their flow's cap.
        let held: HashMap<String, String> = self
            .held_leases()?
            .iter()
            .map(|(id, h)| (id.clone(), h.flow.clone()))
            .collect();
        let mut active: BTreeMap<String, u32> = BTreeMap::new();
        for flow in held.values() {
            *active.entry(flow.clone()).or_insert(0) += 1;
        }
        let mut out = Vec::new();
        let end = format!("due:{:016x}", now + 1);
        // Pick candidates from the due index alone (its values name the flow), so a capped
        // flow's backlog is skipped without reading it and cannot starve other flows. A flow
        // gets at most its fair share of the batch while others have due runs too (within a
        // bounded look ahead); the batch is then filled with the runs passed over.
        let mut picked = Vec::new();
        let mut passed_over = Vec::new();
        let mut in_batch: BTreeMap<String, usize> = BTreeMap::new();
        let look_ahead = req.limit.saturating_mul(LOOK_AHEAD);
        for (seen, item) in view.range(b"due:", end.as_bytes()).enumerate() {
            if picked.len() >= req.limit
                || (seen >= look_ahead && picked.len() + passed_over.len() >= req.limit)
            {
                break;
            }
            let (key, flow) = item?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if key.rsplit(':').next().is_some_and(|id| held.contains_key(id)) {
                continue; // leased, with its wall-clock expiry passed by a step of the clock
            }
            let flow = String::from_utf8_lossy(&flow).into_owned();
            if let Some(cap) = req.caps.get(&flow) {
                let n = active.entry(flow.clone()).or_insert(0);
                if *n >= *cap {
                    continue;
                }
                *n += 1;
            }
            let share = in_batch.entry(flow).or_insert(0);
            if req.fair_share > 0 && *share >= req.fair_share {
                if passed_over.len() < req.limit {
                    passed_over.push(key);
                }
                continue;
            }
            *share += 1;
            picked.push(key);
        }
        let room = req.limit.saturating_sub(picked.len());
        picked.extend(passed_over.into_iter().take(room));
        for key in picked {
            let Some(id) = key.rsplit(':').next().map(str::to_string) else {
                continue;
            };
            let Some(Loaded {
                q: Some(mut q),
                mut run,
                whole,
            }) = load(view, &id)?
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
            store_run(view, Some(&q), &run, whole)?;
            let lease = Lease { run_id: id, token };
            self.hold(&lease, &q.flow, req.lease_for)?;
            out.push(Claimed {
                run,
                lease,
                exit_requested: q.exit.clone(),
                exit_requested_at: q.exit_at.map(Ts),
            });
        }
        self.claim_short
            .store(out.len() < req.limit, std::sync::atomic::Ordering::Relaxed);
        Ok(out)
    }

    /// Moves a queue entry's due time.
    pub(super) fn move_due(view: &mut View<'_>, q: &mut QEntry, id: &str, at: Option<u64>) {
        if let Some(old) = q.due {
            view.remove(due_key(old, id));
        }
        if let Some(new) = at {
            view.insert(due_key(new, id), q.flow.as_bytes());
        }
        q.due = at;
    }

    pub(super) fn hold_until(
        &self,
        view: &mut View<'_>,
        mut q: QEntry,
        lease: &Lease,
        lease_for: Duration,
        run_json: &[u8],
    ) -> Result<()> {
        let id = &lease.run_id;
        self.hold(lease, &q.flow, lease_for)?;
        let until = Ts::now().plus(lease_for).0;
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

    pub(super) fn extend_lease(&self, view: &mut View<'_>, lease: &Lease, lease_for: Duration) -> Result<()> {
        let (q, raw) = Self::held(view, lease)?;
        self.hold_until(view, q, lease, lease_for, &raw)
    }

    /// Records a held run's progress; returns the exit requested for it meanwhile, if any.
    /// `finished` is the stored value of the run finished ([`finished_record`]), made by the
    /// caller when `next` is [`Next::Done`].
    pub(super) fn save(
        &self,
        view: &mut View<'_>,
        lease: &Lease,
        run_json: Vec<u8>,
        finished: Option<Vec<u8>>,
        next: Next,
    ) -> Result<Option<String>> {
        let id = &lease.run_id;
        let (mut q, _) = Self::held(view, lease)?;
        let exit = q.exit.clone();
        match next {
            Next::Continue { lease_for } => self.hold_until(view, q, lease, lease_for, &run_json)?,
            Next::RetryAt(at) => {
                self.unhold(id)?;
                // A run asked to exit is due at once, so the exit is applied without waiting.
                let at = if exit.is_some() { Ts::now() } else { at };
                Self::move_due(view, &mut q, id, Some(at.0));
                q.lease = None;
                view.remove(lease_key(id));
                store(view, id, Some(&q), &run_json)?;
            }
            Next::Done => {
                self.unhold(id)?;
                Self::move_due(view, &mut q, id, None);
                view.remove(lease_key(id));
                match finished {
                    Some(record) => view.insert(run_key(id), record),
                    None => store(view, id, None, &run_json)?,
                }
                if let Some(lk) = &q.lane {
                    view.remove(lk.as_bytes());
                    Self::release_lane_successor(view, lk)?;
                }
            }
        }
        Ok(match next {
            Next::Continue { .. } => exit,
            _ => None,
        })
    }

    /// Makes the next run of the lane that `finished` belonged to due now.
    pub(super) fn release_lane_successor(view: &mut View<'_>, finished: &str) -> Result<()> {
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
    pub(super) fn release_orphaned_leases(view: &mut View<'_>) -> Result<usize> {
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

    /// Parks a run that has just been saved waiting until `due`, if it wakes far enough ahead
    /// ([`super::parking`]): its record is staged for the parking files and its keys leave
    /// sled in the same group. Runs holding an ordering lane, or asked to exit, stay.
    pub(super) fn park(&self, view: &mut View<'_>, run: &Run, run_json: &[u8], due: u64) -> Result<bool> {
        let now = Ts::now().0;
        if run.status != RunStatus::Waiting || !self.parking.parks(due, now) {
            return Ok(false);
        }
        let Some((mut q, _)) = load_q(view, &run.id)? else {
            return Ok(false);
        };
        if q.lane.is_some() || q.lease.is_some() || q.exit.is_some() {
            return Ok(false);
        }
        let id = &run.id;
        Self::move_due(view, &mut q, id, None);
        view.remove(run_key(id));
        for key in &run.exit_keys {
            view.remove(exit_key(&run.flow, key, id));
        }
        let raw = serde_json::value::RawValue::from_string(String::from_utf8_lossy(run_json).into_owned())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let record = super::parking::Record {
            parked_at: now,
            due,
            flow: run.flow.clone(),
            id: id.clone(),
            exit_keys: run.exit_keys.clone(),
            run: raw,
        };
        view.parking.parks.push(super::parking::Staged {
            bucket: due / super::parking::BUCKET_MS,
            id: id.clone(),
            flow: run.flow.clone(),
            parked_at: now,
            payload: to_json(&record)?,
        });
        Ok(true)
    }

    /// A parked run read back: stored as queued at its wake time, indexed for exits again —
    /// or ended as exited, if an exit reached it while it was parked.
    fn unparked(&self, view: &mut View<'_>, rec: super::parking::Record) -> Result<()> {
        let id = rec.id.clone();
        if view.contains(run_key(&id).as_bytes())? {
            return Ok(()); // in sled already: never parked for good, or read back before
        }
        let note = exit_note_key(&id);
        let reached = match view.get(note.as_bytes())? {
            Some(bytes) => {
                view.remove(note);
                let note = ExitNote::read(&bytes);
                if note.parked {
                    // Counted out at the exit; the engine counts it out again as it ends it.
                    Self::add_signed(view, &waiting_key(&rec.flow), 1)?;
                    Self::add_signed(view, PARKED_EXITS, -1)?;
                }
                Some((note.reason, note.at))
            }
            None => super::parking::Parking::mark_for(view, &rec)?.map(|r| (r, None)),
        };
        for (k, v) in unparked_entries(&rec, reached)? {
            view.insert(k, v);
        }
        Ok(())
    }

    /// Applies the wait-related effects of a save.
    pub(super) fn apply_waits(view: &mut View<'_>, ops: &[WaitOp]) -> Result<()> {
        for op in ops {
            match op {
                WaitOp::IndexExit { flow, key, run_id } => {
                    view.insert(exit_key(flow, key, run_id), run_id.as_bytes())
                }
                WaitOp::UnindexExit { flow, key, run_id } => view.remove(exit_key(flow, key, run_id)),
                WaitOp::Waiting { flow, by } => Self::add_signed(view, &waiting_key(flow), *by)?,
            }
        }
        Ok(())
    }

    pub(super) fn add_signed(view: &mut View<'_>, key: &str, by: i64) -> Result<()> {
        let n = view
            .get(key.as_bytes())?
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        view.insert(key.as_bytes(), n.saturating_add_signed(by).to_be_bytes().to_vec());
        Ok(())
    }

    /// Ends the runs indexed under each exit, or marks those a worker holds (see
    /// [`crate::store::Store::exit_runs`]).
    pub(super) fn exit_runs(&self, view: &mut View<'_>, exits: &[ExitMatch]) -> Result<Vec<ExitedRun>> {
        let mut out = Vec::new();
        for e in exits {
            // Parked runs with this key: ended as they are read back (and shown so at once).
            if self.parking.has_flow(&e.flow) {
                let mark = super::parking::Mark {
                    at: Ts::now().0,
                    reason: e.reason.clone(),
                };
                view.insert(super::parking::mark_key(&e.flow, &e.key), to_json(&mark)?);
            }
            let prefix = exit_prefix(&e.flow, &e.key);
            let ids: Vec<(Vec<u8>, String)> = view
                .scan_prefix(prefix.as_bytes())
                .map(|item| item.map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())))
                .collect::<Result<_>>()?;
            // Runs still in the intake journal: noted (or, beyond what memory holds, marked),
            // ended as they are admitted.
            let (pending, beyond) = match self.intake.pending.lock() {
                Ok(p) => p.with_exit_key(&e.flow, &e.key),
                Err(_) => return Err(StoreError::Backend("intake state poisoned".into())),
            };
            if let Some(until) = beyond {
                let mark = ExitMark {
                    until: until.encode(),
                    reason: e.reason.clone(),
                };
                view.insert(exit_mark_key(&e.flow, &e.key), to_json(&mark)?);
            }
            for id in pending {
                if !view.contains(run_key(&id).as_bytes())? {
                    view.insert(
                        exit_note_key(&id),
                        ExitNote::encode(&e.reason, Ts::now().0, false),
                    );
                    out.push(ExitedRun {
                        flow: e.flow.clone(),
                        run_id: id,
                        now: false,
                    });
                }
            }
            for (index_key, id) in ids {
                let now = match self.exit_one(view, &id, &e.reason)? {
                    Exited::No => {
                        view.remove(index_key);
                        continue;
                    }
                    Exited::Now => true,
                    Exited::Marked | Exited::Noted => false,
                };
                out.push(ExitedRun {
                    flow: e.flow.clone(),
                    run_id: id,
                    now,
                });
            }
        }
        Ok(out)
    }

    /// Ends one unfinished run as exited now, or marks it when a worker holds it.
    pub(super) fn exit_one(&self, view: &mut View<'_>, id: &str, reason: &str) -> Result<Exited> {
        let Some(Loaded {
            q: Some(mut q),
            mut run,
            whole,
        }) = load(view, id)?
        else {
            let pending = self.find_pending(id)?.is_some();
            // Parked, and no exit has reached it yet.
            let parked = match pending || view.contains(exit_note_key(id).as_bytes())? {
                true => None,
                false => self
                    .parking
                    .find(&self.db, id)?
                    .filter(|r| r.status == RunStatus::Waiting),
            };
            if (pending || parked.is_some()) && !view.contains(run_key(id).as_bytes())? {
                // Still in the intake journal, or parked: ended as it is read into sled. A
                // parked run stops counting as waiting (and parked) now.
                if let Some(rec) = &parked {
                    Self::add_signed(view, &waiting_key(&rec.flow), -1)?;
                    Self::add_signed(view, PARKED_EXITS, 1)?;
                }
                view.insert(
                    exit_note_key(id),
                    ExitNote::encode(reason, Ts::now().0, parked.is_some()),
                );
                return Ok(if parked.is_some() {
                    Exited::Noted
                } else {
                    Exited::Marked
                });
            }
            return Ok(Exited::No);
        };
        let now = Ts::now().0;
        if q.lease.as_ref().is_some_and(|l| l.until > now) {
            q.exit = Some(reason.to_string());
            store_run(view, Some(&q), &run, whole)?;
            return Ok(Exited::Marked);
        }
        let was_waiting = run.status == RunStatus::Waiting;
        run.end_exited(reason, Ts(now));
        for key in std::mem::take(&mut run.exit_keys) {
            view.remove(exit_key(&run.flow, &key, id));
        }
        if was_waiting {
            Self::add_signed(view, &waiting_key(&run.flow), -1)?;
        }
        Self::move_due(view, &mut q, id, None);
        view.remove(lease_key(id));
        store_run(view, None, &run, whole)?;
        if let Some(lk) = &q.lane {
            view.remove(lk.as_bytes());
            Self::release_lane_successor(view, lk)?;
        }
        Ok(Exited::Now)
    }

    pub(super) fn add_counter(view: &mut View<'_>, key: &str, by: u64) -> Result<()> {
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
pub(super) struct NewRun {
    pub(super) due: Ts,
    pub(super) id: String,
    pub(super) flow: String,
    pub(super) order_key: Option<String>,
    pub(super) exit_keys: Vec<String>,
    pub(super) json: Vec<u8>,
}
