//! The writer thread: group commit of every store write. It takes every operation waiting in
//! its channel, admits pending runs from the intake journal first if a claim is among them,
//! runs the operations against one overlay ([`View`]), writes the runs they parked to their
//! files, applies the whole group as one atomic `apply_batch`, flushes once if anything in the
//! group must be durable, and only then answers the callers.

use std::sync::Arc;
use std::sync::mpsc;

use super::fatal::give_up;
use super::journal::{self, Pos};
use super::ops::{Inner, LOOK_AHEAD};
use super::view::View;

/// Answers a caller with the outcome of its group's commit.
pub(super) type Reply = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
pub(super) type Job = Box<dyn FnOnce(&Inner, &mut View<'_>) -> Reply + Send>;

pub(super) struct Op {
    pub(super) job: Job,
    pub(super) durable: bool,
    /// Pending runs it needs admitted from the journal before the group runs.
    pub(super) admit: Admit,
}

/// What an operation needs of the runs still pending in the intake journal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    No,
    /// A claim of up to this many runs, with no flow capped: admission tops sled's due runs
    /// up to what the claim looks through ([`LOOK_AHEAD`] per run), and no further.
    /// Admitting far ahead of the claims (a full group each time) moved the whole backlog
    /// into sled before the first runs were executed — ~7 s of admission for 170,000 runs at
    /// ~250 runs/s delivered — and kept it in sled's memory.
    Claim(usize),
    /// As many as a group admits ([`MAX_ADMIT`]): exits look for runs by their keys, and a
    /// claim with capped flows (`max_in_flight`) must see past a capped flow's backlog to
    /// the other flows' runs behind it.
    Most,
}

/// Largest number of operations committed together.
const MAX_GROUP: usize = 1024;
/// Most runs admitted from the journal per group.
const MAX_ADMIT: usize = 2048;

pub(super) fn writer_loop(inner: Arc<Inner>, rx: mpsc::Receiver<Op>) {
    // Admitted into sled, and whether sled has been flushed since.
    let mut admitted: Option<(Pos, bool)> = None;
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
        let mut admission = None;
        let wanted = to_admit(&inner, &ops, &view);
        if wanted > 0 {
            if let Err(e) = inner.refill_pending() {
                tracing::error!(error = %e, "reading pending runs from the intake journal failed");
            }
            view.mark();
            match inner.admit(&mut view, wanted) {
                Ok(a) => admission = a,
                Err(e) => {
                    view.rollback();
                    tracing::error!(error = %e, "admitting runs from the intake journal failed");
                }
            }
        }
        let replies: Vec<Reply> = ops
            .into_iter()
            .map(|op| {
                view.mark();
                (op.job)(&inner, &mut view)
            })
            .collect();
        // Runs parked by the group go to their files, synced, before the batch that removes
        // them from sled (see `parking`); if that fails, nothing of the group is applied.
        let parked = inner.parking.write(&mut view).map_err(|e| e.to_string());
        // One atomic batch for the group; if anything in it must be durable, everyone waits
        // for the flush (a claim must not hand out a run whose insert could still vanish).
        let (batch, parking) = view.into_batch();
        let committed = parked.and_then(|()| match batch {
            Some(batch) => inner.db.apply_batch(batch).map_err(|e| match e {
                sled::Error::Io(_) => give_up("a commit", &e),
                e => e.to_string(),
            }),
            None => Ok(()),
        });
        if committed.is_ok() {
            inner.parking.committed(&parking);
        }
        if committed.is_ok()
            && let Some((n, cursor)) = admission
        {
            if let Ok(mut pending) = inner.intake.pending.lock() {
                pending.pop(n);
            }
            admitted = Some((cursor, false));
        }
        let outcome = committed.and_then(|()| {
            if any_durable || !parking.done.is_empty() {
                inner.sync()
            } else {
                Ok(())
            }
        });
        if outcome.is_ok() {
            if any_durable {
                forget_admitted(&inner, &mut admitted);
            }
            inner.parking.forget(&parking.done);
        }
        for reply in replies {
            reply(outcome.clone());
        }
    }
    if let Err(e) = inner.sync() {
        tracing::error!(error = %e, "final flush of the store failed");
    } else {
        forget_admitted(&inner, &mut admitted);
    }
}

/// How many pending runs the group should admit: see [`Admit`].
fn to_admit(inner: &Inner, ops: &[Op], view: &View<'_>) -> usize {
    if ops.iter().any(|o| o.admit == Admit::Most) {
        return MAX_ADMIT;
    }
    let claimed: usize = ops
        .iter()
        .map(|o| match o.admit {
            Admit::Claim(n) => n,
            _ => 0,
        })
        .sum();
    if claimed == 0 {
        return 0;
    }
    if inner
        .claim_short
        .swap(false, std::sync::atomic::Ordering::Relaxed)
    {
        return MAX_ADMIT;
    }
    let target = claimed.saturating_mul(LOOK_AHEAD).min(MAX_ADMIT);
    // Due now, in sled: counted up to the target (a claim reads the same keys next).
    let end = format!("due:{:016x}", crate::time::Ts::now().0 + 1);
    let due = view.range(b"due:", end.as_bytes()).take(target).count();
    target - due
}

/// After a flush, journal segments wholly behind the admitted cursor are no longer needed.
fn forget_admitted(inner: &Inner, admitted: &mut Option<(Pos, bool)>) {
    if let Some((cursor, flushed)) = admitted
        && !*flushed
    {
        *flushed = true;
        if let Err(e) = journal::forget_before(&inner.intake.dir, *cursor) {
            tracing::warn!(error = %e, "could not delete admitted intake segments");
        }
    }
}
