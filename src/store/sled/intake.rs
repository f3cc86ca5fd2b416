//! Runs accepted but not yet admitted into sled: their journal records, in arrival order, and
//! the thread that appends to the journal with group commit.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use serde::Deserialize;
use tokio::sync::oneshot;

use super::journal::{Journal, Located};
use crate::run::Ts;
use crate::store::{Result, StoreError};

/// Identity of a pending run, enough to admit it without parsing the record again.
#[derive(Debug, Clone, Deserialize)]
pub struct Head {
    pub id: String,
    pub flow: String,
    #[serde(default)]
    pub order_key: Option<String>,
    /// When the run was accepted: it is due from then, whenever it is admitted.
    pub created_at: Ts,
}

#[derive(Debug, Clone)]
pub struct PendingRun {
    pub head: Head,
    pub rec: Located,
}

/// The journal's unadmitted records, oldest first; the payloads stay on disk.
#[derive(Default)]
pub struct Pending {
    queue: VecDeque<PendingRun>,
    by_id: HashMap<String, Located>,
}

impl Pending {
    pub fn push(&mut self, run: PendingRun) {
        self.by_id.insert(run.head.id.clone(), run.rec);
        self.queue.push_back(run);
    }

    /// The oldest `n`, left in place until [`Pending::pop`] confirms their admission.
    pub fn oldest(&self, n: usize) -> Vec<PendingRun> {
        self.queue.iter().take(n).cloned().collect()
    }

    pub fn pop(&mut self, n: usize) {
        for run in self.queue.drain(..n.min(self.queue.len())) {
            self.by_id.remove(&run.head.id);
        }
    }

    pub fn get(&self, id: &str) -> Option<Located> {
        self.by_id.get(id).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Newest first, with ids below `before` when given.
    pub fn newest(&self, flow: Option<&str>, before: Option<&str>, n: usize) -> Vec<Located> {
        self.queue
            .iter()
            .rev()
            .filter(|p| before.is_none_or(|b| p.head.id.as_str() < b))
            .filter(|p| flow.is_none_or(|f| p.head.flow == f))
            .take(n)
            .map(|p| p.rec)
            .collect()
    }
}

/// What the store shares about its intake.
pub struct Intake {
    pub dir: PathBuf,
    pub pending: Mutex<Pending>,
    /// Journal writes made, for observing group commit.
    pub writes: AtomicU64,
}

/// One run to append, with the caller waiting for it to be durable.
pub struct Append {
    pub head: Head,
    pub payload: Vec<u8>,
    pub reply: oneshot::Sender<Result<()>>,
}

const MAX_GROUP: usize = 1024;

/// Appends every waiting run with one journal write, then makes them pending and answers.
pub fn intake_loop(mut journal: Journal, intake: &Intake, rx: mpsc::Receiver<Append>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(a) => group.push(a),
                Err(_) => break,
            }
        }
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
}
