//! Runs accepted but not yet admitted into sled: their journal records, in arrival order, and
//! the thread that appends to the journal with group commit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use serde::Deserialize;
use tokio::sync::oneshot;

use super::journal::{Journal, Located, Pos};
use crate::store::{Result, StoreError};
use crate::time::Ts;

/// Identity of a pending run, enough to admit it without parsing the record again.
#[derive(Debug, Clone, Deserialize)]
pub struct Head {
    pub id: String,
    pub flow: String,
    #[serde(default)]
    pub order_key: Option<String>,
    /// When the run was accepted: it is due from then, whenever it is admitted.
    pub created_at: Ts,
    /// Its keys in the exit index, written when it is admitted (flows with `exit:` only).
    #[serde(default)]
    pub exit_keys: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PendingRun {
    pub head: Head,
    pub rec: Located,
}

/// The journal's unadmitted records in journal order, plus an index by run id. Both are
/// B-trees: they grow without the large reallocations of a hash map or ring buffer, which
/// stalled whole commit groups for tens of milliseconds once the backlog was large.
#[derive(Default)]
pub struct Pending {
    /// By journal position, which is arrival order (appends only ever go at the end).
    queue: BTreeMap<Pos, PendingRun>,
    by_id: BTreeMap<String, Located>,
}

impl Pending {
    pub fn push(&mut self, run: PendingRun) {
        self.by_id.insert(run.head.id.clone(), run.rec);
        self.queue.insert(run.rec.at, run);
    }

    /// The oldest `n`, left in place until [`Pending::pop`] confirms their admission.
    pub fn oldest(&self, n: usize) -> Vec<PendingRun> {
        self.queue.values().take(n).cloned().collect()
    }

    /// Forgets the oldest `n`, which [`Pending::oldest`] returned and which are now admitted.
    pub fn pop(&mut self, n: usize) {
        for _ in 0..n {
            match self.queue.pop_first() {
                Some((_, run)) => self.by_id.remove(&run.head.id),
                None => break,
            };
        }
    }

    pub fn get(&self, id: &str) -> Option<Located> {
        self.by_id.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Pending runs of `flow` indexed under exit `key` once admitted (a scan of memory).
    pub fn with_exit_key(&self, flow: &str, key: &str) -> Vec<String> {
        self.queue
            .values()
            .filter(|p| p.head.flow == flow && p.head.exit_keys.iter().any(|k| k == key))
            .map(|p| p.head.id.clone())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Newest first, with ids below `before` when given.
    pub fn newest(&self, flow: Option<&str>, before: Option<&str>, n: usize) -> Vec<Located> {
        self.queue
            .values()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, offset: u64) -> PendingRun {
        let pos = |offset| Pos { segment: 0, offset };
        PendingRun {
            head: Head {
                id: id.into(),
                flow: "f".into(),
                order_key: None,
                created_at: Ts(0),
                exit_keys: Vec::new(),
            },
            rec: Located {
                at: pos(offset),
                len: 10,
                next: pos(offset + 18),
            },
        }
    }

    fn ids(runs: &[PendingRun]) -> Vec<&str> {
        runs.iter().map(|r| r.head.id.as_str()).collect()
    }

    /// Ids are made before the append, so two racing requests can reach the journal out of id
    /// order; admission must follow the journal, or the cursor skips a run.
    #[test]
    fn admission_follows_journal_order_not_id_order() {
        let mut p = Pending::default();
        p.push(run("02", 0));
        p.push(run("01", 18));
        p.push(run("03", 36));
        let batch = p.oldest(2);
        assert_eq!(ids(&batch), ["02", "01"]);
        // More arrive between choosing a batch and confirming it.
        p.push(run("00", 54));
        p.pop(batch.len());
        assert_eq!(ids(&p.oldest(10)), ["03", "00"]);
        assert!(p.get("01").is_none() && p.get("02").is_none());
        assert_eq!(p.get("00").map(|l| l.at.offset), Some(54));
        p.pop(5);
        assert!(p.is_empty() && p.get("03").is_none());
    }

    #[test]
    fn newest_lists_backwards_with_a_flow_and_a_cursor() {
        let mut p = Pending::default();
        for (i, id) in ["a1", "a2", "a3", "a4"].iter().enumerate() {
            p.push(run(id, i as u64 * 18));
        }
        let offsets = |v: Vec<Located>| v.iter().map(|l| l.at.offset).collect::<Vec<_>>();
        assert_eq!(offsets(p.newest(None, None, 2)), [54, 36]);
        assert_eq!(offsets(p.newest(Some("f"), Some("a3"), 5)), [18, 0]);
        assert!(p.newest(Some("other"), None, 5).is_empty());
    }
}
