//! Runs accepted but not yet admitted into sled: their journal records, in arrival order, and
//! the thread that appends to the journal with group commit.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use serde::Deserialize;

use super::journal::{Located, Pos};
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

/// Most pending runs whose heads [`Pending`] holds in memory: the oldest, next to be admitted.
pub const WINDOW: usize = 8192;
/// The newest pending runs [`Pending`] also holds, to show and list runs just accepted.
const RECENT: usize = 1024;

/// What [`Pending`] keeps of each journal segment that holds pending runs: enough to know
/// which segments a lookup by id, or a listing by flow, has to read.
#[derive(Debug, Clone, Default)]
struct SegmentSummary {
    /// Lowest and highest run id in it (ids sort by creation).
    min: String,
    max: String,
    /// Flows with runs in it.
    flows: BTreeSet<String>,
}

/// The journal's unadmitted records, held in **bounded** memory whatever the backlog: the
/// heads of the oldest [`WINDOW`] (next to be admitted, in journal order), of the newest
/// [`RECENT`], a count, and a summary per journal segment. The pending runs in between live
/// only in the journal: `spill` says where the first of them starts, and the writer refills
/// the window from there ([`Pending::needs_refill`]) as admission drains it.
///
/// Pending runs are exactly the records at or after [`Pending::front`]: admission takes them
/// in journal order. The window and the newest are B-trees and a ring: they do not reallocate
/// in bulk, which once stalled whole commit groups for tens of milliseconds.
pub struct Pending {
    /// The oldest, by journal position (arrival order: appends only ever go at the end).
    window: BTreeMap<Pos, PendingRun>,
    by_id: BTreeMap<String, Located>,
    /// Where the first pending record not in `window` starts.
    spill: Option<Pos>,
    /// The newest pushed (some may be admitted since: see [`Pending::front`]).
    recent: VecDeque<PendingRun>,
    /// Just past the last pending record.
    end: Pos,
    count: usize,
    segments: BTreeMap<u64, SegmentSummary>,
    /// The highest id among runs that left `recent` while beyond the window: no run in the
    /// gap has a higher one (a bound, kept until the gap is gone).
    gap_max: Option<String>,
    limit: usize,
    recent_limit: usize,
}

impl Default for Pending {
    fn default() -> Self {
        Pending::with_window(WINDOW)
    }
}

/// Pending runs a listing found in memory, and the journal segments it may still have to read.
///
/// A listing is by run id, not by journal position: ids are made when a request arrives, and
/// concurrent requests reach the journal in another order. A page cut by position once left a
/// run with a low id on the first page, and the next page (`before` that id) skipped the runs
/// above it.
pub struct Newest {
    /// The best `n` held in memory (the newest and the window), highest id first.
    pub found: Vec<(String, Located)>,
    /// Journal segments (newest first) between the window and the newest runs held, with the
    /// highest id their unheld runs can have: a segment whose bound is below the `n`-th id
    /// found so far cannot change the page and need not be read.
    pub to_read: Vec<(u64, String)>,
    /// The stretch of journal (`[from, until)`) whose runs memory does not hold.
    pub gap: (Pos, Pos),
}

impl Pending {
    /// A view that holds at most `limit` oldest runs (smaller in tests).
    pub fn with_window(limit: usize) -> Pending {
        Pending {
            window: BTreeMap::new(),
            by_id: BTreeMap::new(),
            spill: None,
            recent: VecDeque::new(),
            end: Pos {
                segment: 0,
                offset: 0,
            },
            count: 0,
            segments: BTreeMap::new(),
            gap_max: None,
            limit: limit.max(2),
            recent_limit: RECENT.min(limit.max(2)),
        }
    }

    /// Where the oldest pending record starts; every record from here to `end` is pending.
    pub fn front(&self) -> Pos {
        self.window
            .keys()
            .next()
            .copied()
            .or(self.spill)
            .unwrap_or(self.end)
    }

    /// Just past the newest pending record.
    pub fn end(&self) -> Pos {
        self.end
    }

    pub fn push(&mut self, run: PendingRun) {
        self.count += 1;
        self.end = self.end.max(run.rec.next);
        let seg = self.segments.entry(run.rec.at.segment).or_default();
        let id = &run.head.id;
        if seg.min.is_empty() || *id < seg.min {
            seg.min.clone_from(id);
        }
        if *id > seg.max {
            seg.max.clone_from(id);
        }
        if !seg.flows.contains(&run.head.flow) {
            seg.flows.insert(run.head.flow.clone());
        }
        if self.recent.len() == self.recent_limit
            && let Some(old) = self.recent.pop_front()
            && self.spill.is_some_and(|s| old.rec.at >= s)
            && self.gap_max.as_ref().is_none_or(|g| old.head.id > *g)
        {
            self.gap_max = Some(old.head.id);
        }
        self.recent.push_back(run.clone());
        if self.spill.is_some() {
            return;
        }
        if self.window.len() < self.limit {
            self.by_id.insert(run.head.id.clone(), run.rec);
            self.window.insert(run.rec.at, run);
        } else {
            self.spill = Some(run.rec.at);
        }
    }

    /// The oldest `n` (at most the window), left in place until [`Pending::pop`] confirms
    /// their admission.
    pub fn oldest(&self, n: usize) -> Vec<PendingRun> {
        self.window.values().take(n).cloned().collect()
    }

    /// Forgets the oldest `n`, which [`Pending::oldest`] returned and which are now admitted.
    pub fn pop(&mut self, n: usize) {
        for _ in 0..n {
            let Some((_, run)) = self.window.pop_first() else {
                break;
            };
            self.by_id.remove(&run.head.id);
            self.count = self.count.saturating_sub(1);
        }
        // Segments wholly before the front hold no pending run any more.
        let front = self.front().segment;
        while self.segments.first_key_value().is_some_and(|(s, _)| *s < front) {
            self.segments.pop_first();
        }
    }

    /// When the window has run low and runs wait in the journal beyond it: the stretch to
    /// read (`[from, until)`) and how many runs to take from it.
    pub fn needs_refill(&self) -> Option<(Pos, Pos, usize)> {
        let from = self.spill?;
        (self.window.len() <= self.limit / 2).then(|| (from, self.end, self.limit - self.window.len()))
    }

    /// Adds runs read from the journal after [`Pending::needs_refill`], in order, and moves
    /// the spill to `resume`, where the read stopped. The reader leaves out what opening the
    /// journal left out (records that do not parse, runs already in the store), so the count
    /// stays right.
    pub fn refill(&mut self, runs: Vec<PendingRun>, resume: Pos) {
        for run in runs {
            self.by_id.insert(run.head.id.clone(), run.rec);
            self.window.insert(run.rec.at, run);
        }
        self.spill = (resume < self.end).then_some(resume);
        if self.spill.is_none() {
            self.gap_max = None;
        }
    }

    /// A pending run held in memory; see [`Pending::segments_for`] for the others.
    pub fn get(&self, id: &str) -> Option<Located> {
        if let Some(l) = self.by_id.get(id) {
            return Some(*l);
        }
        let front = self.front();
        self.recent
            .iter()
            .rev()
            .find(|p| p.head.id == id && p.rec.at >= front)
            .map(|p| p.rec)
    }

    /// The stretch of journal not held in memory, and the segments in it whose ids span
    /// `id`: where a pending run not found by [`Pending::get`] may be.
    pub fn segments_for(&self, id: &str) -> Option<((Pos, Pos), Vec<u64>)> {
        let from = self.spill?;
        let segs = self
            .segments
            .range(from.segment..)
            .filter(|(_, s)| s.min.as_str() <= id && id <= s.max.as_str())
            .map(|(n, _)| *n)
            .collect();
        Some(((from, self.end), segs))
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// The oldest pending run's acceptance time.
    pub fn oldest_created(&self) -> Option<crate::time::Ts> {
        self.window.values().next().map(|p| p.head.created_at)
    }

    /// Pending runs of `flow` held in memory that are indexed under exit `key` once admitted,
    /// and — when runs wait in the journal beyond the window — the position up to which those
    /// must be checked as they are admitted (an exit mark).
    pub fn with_exit_key(&self, flow: &str, key: &str) -> (Vec<String>, Option<Pos>) {
        let ids = self
            .window
            .values()
            .filter(|p| p.head.flow == flow && p.head.exit_keys.iter().any(|k| k == key))
            .map(|p| p.head.id.clone())
            .collect();
        let beyond = self
            .spill
            .is_some_and(|_| self.segments.values().any(|s| s.flows.contains(flow)));
        (ids, beyond.then_some(self.end))
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `n` highest ids (below `before` when given) that memory holds, and which journal
    /// segments the caller still has to read: those in the gap that may hold a higher one.
    pub fn newest(&self, flow: Option<&str>, before: Option<&str>, n: usize) -> Newest {
        let front = self.front();
        let wanted = |p: &&PendingRun| {
            p.rec.at >= front
                && before.is_none_or(|b| p.head.id.as_str() < b)
                && flow.is_none_or(|f| p.head.flow == f)
        };
        // The newest and the window overlap: keyed by id, each once; at most `n` kept.
        let mut best: BTreeMap<&str, Located> = BTreeMap::new();
        for p in self.recent.iter().chain(self.window.values()).filter(wanted) {
            best.insert(&p.head.id, p.rec);
            if best.len() > n {
                best.pop_first();
            }
        }
        let nth = (best.len() >= n)
            .then(|| best.keys().next().map(|k| k.to_string()))
            .flatten();
        // The gap: pending runs held neither in the window nor among the newest.
        let gap_end = self.recent.front().map_or(self.end, |p| p.rec.at.max(front));
        let gap = match self.spill {
            Some(s) if s < gap_end => (s, gap_end),
            _ => (gap_end, gap_end),
        };
        let to_read = if gap.0 < gap.1 {
            // (A gap that ends at a segment's start holds nothing of that segment.)
            let last = gap.1.segment + u64::from(gap.1.offset > 0);
            self.segments
                .range(gap.0.segment..last)
                .rev()
                .filter(|(_, s)| flow.is_none_or(|f| s.flows.contains(f)))
                .filter(|(_, s)| before.is_none_or(|b| s.min.as_str() < b))
                .map(|(n, s)| {
                    let bound = match &self.gap_max {
                        Some(g) if *g < s.max => g.clone(),
                        _ => s.max.clone(),
                    };
                    (*n, bound)
                })
                .filter(|(_, bound)| nth.as_ref().is_none_or(|nth| bound > nth))
                .collect()
        } else {
            Vec::new()
        };
        Newest {
            found: best
                .into_iter()
                .rev()
                .map(|(id, l)| (id.to_string(), l))
                .collect(),
            to_read,
            gap,
        }
    }
}

/// What the store shares about its intake.
pub struct Intake {
    pub dir: PathBuf,
    pub pending: Mutex<Pending>,
    /// Journal writes made, for observing group commit.
    pub writes: AtomicU64,
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

    fn listed(n: Newest) -> Vec<u64> {
        n.found.iter().map(|(_, l)| l.at.offset).collect()
    }

    /// Regression: a page cut by journal position held a run with a low id (made first,
    /// appended last), and the next page — below that id — skipped the runs between.
    #[test]
    fn newest_pages_by_id_whatever_the_journal_order() {
        let mut p = Pending::default();
        for (i, id) in ["a2", "a3", "a4", "a1"].iter().enumerate() {
            p.push(run(id, i as u64 * 18));
        }
        let page = p.newest(None, None, 2);
        assert_eq!(
            page.found.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            ["a4", "a3"]
        );
        assert_eq!(listed(p.newest(None, Some("a3"), 2)), [0, 54], "a2 then a1");
    }

    /// With a gap in memory, a segment is read only when its runs may rank on the page.
    #[test]
    fn the_gap_is_read_only_when_it_may_hold_a_higher_id() {
        let mut p = Pending::with_window(2);
        let seg = |s: u64, id: &str| {
            let mut r = run(id, u64::from(id.as_bytes()[1]) * 18);
            r.rec.at.segment = s;
            r.rec.next.segment = s;
            r
        };
        // Window: s0; gap: s1 and s2; newest (two of them): s3.
        for (s, id) in [(0, "b0"), (0, "b1"), (1, "b2"), (2, "b5"), (3, "b3"), (3, "b4")] {
            p.push(seg(s, id));
        }
        let l = p.newest(None, None, 2);
        assert_eq!(
            l.found.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            ["b4", "b3"]
        );
        // s2 holds b5, above the page: read (and s3 before b3, by its bounds); s1's b2
        // cannot rank: not read.
        assert_eq!(l.to_read, vec![(3, "b4".to_string()), (2, "b5".to_string())]);
        // A page that memory cannot fill reads every segment of the gap with ids below the
        // cursor (s2's only run is above it).
        let l = p.newest(None, Some("b3"), 3);
        assert_eq!(l.to_read.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1]);
        let l = p.newest(None, Some("b6"), 9);
        assert_eq!(l.to_read.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 2, 1]);
    }

    #[test]
    fn newest_lists_backwards_with_a_flow_and_a_cursor() {
        let mut p = Pending::default();
        for (i, id) in ["a1", "a2", "a3", "a4"].iter().enumerate() {
            p.push(run(id, i as u64 * 18));
        }
        assert_eq!(listed(p.newest(None, None, 2)), [54, 36]);
        assert_eq!(listed(p.newest(Some("f"), Some("a3"), 5)), [18, 0]);
        assert!(listed(p.newest(Some("other"), None, 5)).is_empty());
        // Admitted runs are no longer listed as pending, though still among the newest held.
        p.pop(3);
        assert_eq!(listed(p.newest(None, None, 5)), [54]);
    }

    /// Memory holds the oldest `limit` and the newest few, whatever the backlog; the rest is
    /// counted, summarised per segment, and read back from the journal as admission drains
    /// the window.
    #[test]
    fn a_large_backlog_is_held_in_bounded_memory() {
        let mut p = Pending::with_window(4);
        let ids: Vec<String> = (0..20).map(|i| format!("{i:02}")).collect();
        let runs: Vec<PendingRun> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| run(id, i as u64 * 18))
            .collect();
        for r in &runs {
            p.push(r.clone());
        }
        assert_eq!((p.len(), p.window.len(), p.recent.len()), (20, 4, 4));
        assert_eq!(p.front(), runs[0].rec.at);
        assert_eq!(p.end(), runs[19].rec.next);
        assert!(p.needs_refill().is_none(), "the window is full");
        // Held: the window and the newest; the middle only by its segment's id range.
        assert!(p.get("02").is_some() && p.get("18").is_some());
        assert!(p.get("09").is_none());
        let ((from, until), segs) = p.segments_for("09").unwrap();
        assert_eq!((from, until, segs), (runs[4].rec.at, p.end(), vec![0]));
        assert!(
            p.segments_for("zz").unwrap().1.is_empty(),
            "no segment spans that id"
        );
        // An exit for this flow must be marked up to the end: runs beyond the window.
        let (held, beyond) = p.with_exit_key("f", "k");
        assert!(held.is_empty());
        assert_eq!(beyond, Some(p.end()));
        // A listing finds the newest in memory and is told which stretch to read for more.
        let l = p.newest(None, None, 6);
        assert_eq!(l.found.len(), 6, "the newest four and two of the window");
        assert_eq!(l.gap, (runs[4].rec.at, runs[16].rec.at));
        assert_eq!(
            l.to_read,
            vec![(0, "15".to_string())],
            "the gap outranks the window"
        );
        let l = p.newest(None, None, 4);
        assert!(
            l.to_read.is_empty(),
            "the gap's ids are all below the newest four"
        );
        let l = p.newest(None, Some("16"), 6);
        assert_eq!(l.found.len(), 4, "the window only");
        assert_eq!(l.to_read, vec![(0, "15".to_string())]);
        // Admission drains the window; a refill is asked for from the spill on.
        p.pop(2);
        let (from, until, n) = p.needs_refill().unwrap();
        assert_eq!((from, until, n), (runs[4].rec.at, p.end(), 2));
        // More arrive while the journal is read: they stay beyond the spill.
        p.push(run("20", 20 * 18));
        p.refill(runs[4..6].to_vec(), runs[6].rec.at);
        assert_eq!(ids_of(&p.oldest(10)), ["02", "03", "04", "05"]);
        assert_eq!(p.len(), 19);
        // A read that reaches the end of the journal ends the spill: new runs go straight
        // into the window again.
        p.pop(4);
        let (from, until, _) = p.needs_refill().unwrap();
        assert_eq!(from, runs[6].rec.at);
        let rest: Vec<PendingRun> = runs[6..].iter().cloned().chain([run("20", 20 * 18)]).collect();
        p.refill(rest, until);
        assert!(p.needs_refill().is_none());
        assert_eq!(p.len(), 15);
        p.pop(15);
        assert!(p.is_empty());
        p.push(run("21", 21 * 18));
        assert_eq!(ids_of(&p.oldest(1)), ["21"]);
        assert_eq!(p.with_exit_key("f", "k").1, None, "nothing beyond the window");
    }

    fn ids_of(runs: &[PendingRun]) -> Vec<&str> {
        ids(runs)
    }
}
