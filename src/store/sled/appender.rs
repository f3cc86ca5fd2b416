//! Group commit of accepted runs to the intake journal, without a thread to hand them to.
//!
//! An accepted run is queued; the caller that finds no commit under way becomes the group's
//! *leader*: it takes everything queued, appends it with one journal write, answers every
//! waiter, and repeats until the queue is empty. Runs queued meanwhile join the next group,
//! as with a writer thread, but nobody is woken to start a group and the answers come from
//! the thread that wrote them.
//!
//! Why not a thread (the first design): each group cost two cross-thread hand-offs — the
//! request's worker waking the intake thread, and the intake thread waking the workers back —
//! and on two cores shared with the HTTP load, thread switches were the largest single cost of
//! an accept (BENCHMARKS.md, "Where the time goes" and "The accept path's hand-offs").
//!
//! The leader must not depend on its own request: a client that disconnects drops the
//! request's future, and a group half written must still be answered and the queue still
//! drained. So the leader's work is one synchronous call that no await interrupts — run
//! in place with `Flush` durability (a `write` into the page cache), and on tokio's blocking
//! pool with `Fsync`, where an `fdatasync` would otherwise stall a worker thread and every
//! request on it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::intake::{Head, Intake, PendingRun};
use super::journal::Journal;
use crate::store::{Result, StoreError};

/// One run to append, with the caller waiting for it to be durable.
pub struct Append {
    pub head: Head,
    pub payload: Vec<u8>,
    pub reply: oneshot::Sender<Result<()>>,
}

/// Most runs one journal write takes; the rest wait for the next.
const MAX_GROUP: usize = 1024;

#[derive(Default)]
struct Queue {
    waiting: Vec<Append>,
    /// A leader is appending; whoever queues now is answered by it.
    leading: bool,
    closed: bool,
}

/// The journal and the runs waiting for it.
pub struct Appender {
    queue: Mutex<Queue>,
    /// `None` once closed. Only a leader locks it, so it is never contended on the path.
    journal: Mutex<Option<Journal>>,
    /// Whether a group's write ends with an `fdatasync` (leaders then run on the blocking pool).
    fsyncs: bool,
}

impl Appender {
    pub fn new(journal: Journal, fsyncs: bool) -> Appender {
        Appender {
            queue: Mutex::default(),
            journal: Mutex::new(Some(journal)),
            fsyncs,
        }
    }

    /// Queues `append`; leads the group commit if none is under way. Its answer comes on
    /// `append.reply`.
    pub fn submit(inner: &Arc<super::Inner>, append: Append) -> Result<()> {
        let appender = &inner.appender;
        let lead = {
            let mut q = appender.queue.lock().map_err(|_| StoreError::Closed)?;
            if q.closed {
                return Err(StoreError::Closed);
            }
            q.waiting.push(append);
            !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            if appender.fsyncs {
                let inner = Arc::clone(inner);
                tokio::task::spawn_blocking(move || lead_groups(&inner.appender, &inner.intake));
            } else {
                lead_groups(appender, &inner.intake);
            }
        }
        Ok(())
    }

    /// Refuses new runs and waits for the group under way; the journal is synced as it drops.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.closed = true;
        }
        let journal = self.journal.lock().ok().and_then(|mut j| j.take());
        drop(journal);
        // A run queued after the last leader looked can only be answered as refused.
        let left = self.queue.lock().map(|mut q| std::mem::take(&mut q.waiting));
        for a in left.unwrap_or_default() {
            let _ = a.reply.send(Err(StoreError::Closed));
        }
    }
}

/// Gives the lead up if the leader's work panics, so later runs are refused (the journal's
/// lock is poisoned then) instead of queued behind a leader that is gone.
struct Lead<'a>(&'a Appender);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(mut q) = self.0.queue.lock()
        {
            q.leading = false;
            for a in q.waiting.drain(..) {
                let _ = a.reply.send(Err(StoreError::Closed));
            }
        }
    }
}

/// The leader's work: appends groups until nobody waits, then gives the lead up.
fn lead_groups(appender: &Appender, intake: &Intake) {
    let _lead = Lead(appender);
    let mut journal = appender.journal.lock().ok();
    loop {
        let group = {
            let Ok(mut q) = appender.queue.lock() else {
                return;
            };
            if q.waiting.is_empty() {
                q.leading = false;
                return;
            }
            let n = q.waiting.len().min(MAX_GROUP);
            q.waiting.drain(..n).collect::<Vec<_>>()
        };
        match journal.as_mut().and_then(|j| j.as_mut()) {
            Some(j) => commit(j, intake, group),
            None => {
                for a in group {
                    let _ = a.reply.send(Err(StoreError::Closed));
                }
            }
        }
    }
}

/// Appends one group with one journal write, then makes its runs pending and answers.
fn commit(journal: &mut Journal, intake: &Intake, mut group: Vec<Append>) {
    let payloads: Vec<Vec<u8>> = group.iter_mut().map(|a| std::mem::take(&mut a.payload)).collect();
    intake.writes.fetch_add(1, Ordering::Relaxed);
    match journal.append(&payloads) {
        Ok(located) => {
            let mut replies = Vec::with_capacity(group.len());
            if let Ok(mut pending) = intake.pending.lock() {
                for (a, rec) in group.into_iter().zip(located) {
                    pending.push(PendingRun { head: a.head, rec });
                    replies.push(a.reply);
                }
            }
            for r in replies {
                let _ = r.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "writing the intake journal failed");
            for a in group {
                let _ = a
                    .reply
                    .send(Err(StoreError::Backend(format!("intake journal: {e}"))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Ts;

    fn append() -> (Append, oneshot::Receiver<Result<()>>) {
        let (reply, rx) = oneshot::channel();
        let head = Head {
            id: "r1".into(),
            flow: "f".into(),
            order_key: None,
            created_at: Ts(0),
            exit_keys: Vec::new(),
        };
        (
            Append {
                head,
                payload: b"{}".to_vec(),
                reply,
            },
            rx,
        )
    }

    /// A leader that panics must not leave the lead taken: every later run would queue behind
    /// a leader that is gone, and its caller would wait for ever.
    #[test]
    fn a_leader_that_panics_gives_the_lead_up_and_refuses_what_waited() {
        let dir = tempfile::tempdir().unwrap();
        let start = super::super::journal::Pos {
            segment: 0,
            offset: 0,
        };
        let (journal, _) = Journal::open(dir.path(), start, false, |_, _| {}).unwrap();
        let appender = Appender::new(journal, false);
        let (waiting, mut answer) = append();
        {
            let mut q = appender.queue.lock().unwrap();
            q.waiting.push(waiting);
            q.leading = true;
        }
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _lead = Lead(&appender);
            panic!("a bug in the leader's write");
        }));
        assert!(panicked.is_err());
        let q = appender.queue.lock().unwrap();
        assert!(!q.leading, "the lead was given up");
        assert!(q.waiting.is_empty());
        assert!(matches!(answer.try_recv(), Ok(Err(StoreError::Closed))));
        drop(q);
        // Without a panic the guard leaves the lead to the leader's own bookkeeping.
        appender.queue.lock().unwrap().leading = true;
        drop(Lead(&appender));
        assert!(appender.queue.lock().unwrap().leading);
    }
}
