//! Admission: moving pending runs from the intake journal into sled, oldest first, and what
//! reaches runs still in the journal — lookups by id, the window's refills, and the exits that
//! reach runs beyond it (exit marks).

use std::collections::BTreeMap;

use super::intake::{Head, PendingRun};
use super::journal::{self, Located, Pos};
use super::keys::{
    EXIT_MARKS, ExitMark, ExitNote, INTAKE_CURSOR, exit_mark_key, exit_note_key, from_json, run_key,
};
use super::ops::{Inner, NewRun};
use super::view::View;
use crate::store::{Result, StoreError};

impl Inner {
    /// Moves up to `max` of the oldest pending runs from the journal into sled, recording the
    /// journal cursor past them in the same batch. Returns how many and the new cursor.
    pub(super) fn admit(&self, view: &mut View<'_>, max: usize) -> Result<Option<(usize, Pos)>> {
        let batch = match self.intake.pending.lock() {
            Ok(p) => p.oldest(max),
            Err(_) => return Err(StoreError::Backend("intake state poisoned".into())),
        };
        let Some(last) = batch.last().map(|p| p.rec.next) else {
            return Ok(None);
        };
        let marks = Self::exit_marks(view)?;
        let recs: Vec<Located> = batch.iter().map(|p| p.rec).collect();
        let payloads = journal::read_run(&self.intake.dir, &recs)
            .map_err(|e| StoreError::Backend(format!("reading the intake journal: {e}")))?;
        for (p, json) in batch.iter().zip(payloads) {
            if view.contains(run_key(&p.head.id).as_bytes())? {
                continue; // admitted before a crash that lost only the cursor's neighbours
            }
            let h = &p.head;
            self.insert_run(
                view,
                NewRun {
                    due: h.created_at,
                    id: h.id.clone(),
                    flow: h.flow.clone(),
                    order_key: h.order_key.clone(),
                    exit_keys: h.exit_keys.clone(),
                    json,
                },
            )?;
            let note = exit_note_key(&h.id);
            if let Some(bytes) = view.get(note.as_bytes())? {
                view.remove(note);
                let note = ExitNote::read(&bytes);
                self.exit_one(view, &h.id, &note.reason)?;
            } else if let Some(reason) = h.exit_keys.iter().find_map(|k| {
                let (until, reason) = marks.get(&exit_mark_key(&h.flow, k))?;
                (p.rec.at < *until).then_some(reason)
            }) {
                self.exit_one(view, &h.id, reason)?;
            }
        }
        // Marks the cursor has passed have reached every run they could.
        for (key, (until, _)) in &marks {
            if *until <= last {
                view.remove(key.as_bytes());
            }
        }
        view.insert(INTAKE_CURSOR.as_bytes(), last.encode().into_bytes());
        Ok(Some((batch.len(), last)))
    }

    /// Every exit mark (few: one per exit key whose exit met runs beyond the window, until
    /// those are admitted).
    fn exit_marks(view: &mut View<'_>) -> Result<BTreeMap<String, (Pos, String)>> {
        let mut out = BTreeMap::new();
        for item in view.scan_prefix(EXIT_MARKS.as_bytes()) {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let mark: ExitMark = from_json(&key, &v)?;
            let until = Pos::decode(&mark.until)
                .ok_or_else(|| StoreError::Corrupt(format!("bad exit mark {key}")))?;
            out.insert(key, (until, mark.reason));
        }
        Ok(out)
    }

    /// A run still in the intake journal: its record and payload. Memory says where, or which
    /// segments beyond the window may hold it (ids sort by creation, and each segment's range
    /// of ids is known), and only those are read.
    pub(super) fn find_pending(&self, id: &str) -> Result<Option<(Located, Vec<u8>)>> {
        let (held, beyond) = match self.intake.pending.lock() {
            Ok(p) => match p.get(id) {
                Some(rec) => (Some(rec), None),
                None => (None, p.segments_for(id)),
            },
            Err(_) => return Err(StoreError::Backend("intake state poisoned".into())),
        };
        let io = |e: std::io::Error| StoreError::Backend(format!("reading the intake journal: {e}"));
        if let Some(rec) = held {
            // Gone: admitted (and its segment forgotten) while we looked.
            return Ok(journal::read(&self.intake.dir, &rec).ok().map(|b| (rec, b)));
        }
        let Some(((from, until), segments)) = beyond else {
            return Ok(None);
        };
        for seg in segments {
            let start = from.max(Pos {
                segment: seg,
                offset: 0,
            });
            let stop = until.min(Pos {
                segment: seg + 1,
                offset: 0,
            });
            let mut found = None;
            journal::read_range(&self.intake.dir, start, stop, |rec, payload| {
                if serde_json::from_slice::<Head>(payload).is_ok_and(|h| h.id == id) {
                    found = Some((rec, payload.to_vec()));
                    return false;
                }
                true
            })
            .map_err(io)?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Tops the window of pending runs held in memory up from the journal once admission has
    /// drained it (see [`Pending`]). The journal is read outside the lock, so appends never
    /// wait for it; only the writer thread admits and refills, so the window cannot move
    /// meanwhile.
    pub(super) fn refill_pending(&self) -> Result<()> {
        let poisoned = |_| StoreError::Backend("intake state poisoned".into());
        let Some((from, until, n)) = self.intake.pending.lock().map_err(poisoned)?.needs_refill() else {
            return Ok(());
        };
        let mut runs = Vec::with_capacity(n);
        let mut failed = None;
        let resume = journal::read_range(&self.intake.dir, from, until, |rec, payload| {
            if runs.len() >= n {
                return false;
            }
            // As at open: a record that does not parse was reported and set aside then, a run
            // already in the store is not pending.
            if let Ok(head) = serde_json::from_slice::<Head>(payload) {
                match self.db.contains_key(run_key(&head.id)) {
                    Ok(false) => runs.push(PendingRun { head, rec }),
                    Ok(true) => {}
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                }
            }
            true
        })
        .map_err(|e| StoreError::Backend(format!("reading the intake journal: {e}")))?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        self.intake.pending.lock().map_err(poisoned)?.refill(runs, resume);
        Ok(())
    }
}
