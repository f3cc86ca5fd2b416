//! Parking: runs waiting at a `wait` step, kept on disk outside sled until shortly before they
//! wake, so that 100,000 waiting runs cost the process nothing.
//!
//! Why: sled 0.34 keeps an entry in memory for every page it has ever written, and its leaves
//! hold at most 16 keys, so each key costs ~50 bytes of RSS for as long as it exists, whatever
//! its size (BENCHMARKS.md, "Waiting runs"). A waiting run kept in sled (its record and its due
//! key) therefore costs memory for days. Parked, it costs none: its record goes to a file, and
//! sled keeps one small summary per file segment.
//!
//! Layout: `parked/{bucket}/{segment}.log`, where the bucket is the hour the run wakes in
//! ([`BUCKET_MS`]) and segments are files of checksummed records in the intake journal's
//! format (at most [`SEGMENT_BYTES`] each, read one at a time). sled holds:
//!
//! | key                          | value                                              |
//! |------------------------------|----------------------------------------------------|
//! | `parked:{bucket}:{segment}`  | [`SegInfo`]: bytes written, runs, id range, flows   |
//! | `parkread:{bucket}`          | how far the bucket has been read back into sled    |
//! | `parkmark:{flow}\0{key}`     | [`Mark`]: an exit that reached parked runs          |
//!
//! **Parking** happens in the commit group that saves the run's wait: its records are appended
//! and `fdatasync`ed before the group's sled batch — which removes the run's keys and moves the
//! segment's end — is applied. A crash before that batch is durable leaves the run in sled
//! (it wakes from there) and the appended bytes past the recorded end, never read.
//!
//! **Waking**: a claim reads back the earliest bucket whose hour begins within [`LEAD_MS`],
//! some runs per group, into sled as ordinary runs due at their wake time, with the read
//! position in the same batch. Once a bucket is read, its keys go in that batch and its files
//! once the batch is flushed (segment files without keys, left by a crash, are removed at
//! open). A bucket whose hour is near is not parked into; a park that still meets a segment
//! being read back in its own group starts a new one.
//!
//! **Exits** cannot find a parked run through sled's exit index (that would be a key per run
//! again). An exit by key leaves a [`Mark`] for the flow and key; a parked run whose exit keys
//! carry a mark made after it was parked ends as exited when it is read back — and is shown
//! as exited at once by `get_run` and listings. Ending one run (`runs exit ID`) leaves a note,
//! as for runs still in the intake journal. Marks go once no segment holds a run parked before
//! them.
//!
//! Runs with an ordering key (they hold their lane while they wait) are not parked, nor runs
//! waking in less than [`PARK_AFTER_MS`].

use std::collections::{BTreeMap, BinaryHeap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::journal::Pos;
use super::journal::format::{self, Format, SEGMENT_MAGIC};
use super::keys::{ExitNote, exit_note_key, from_json, to_json};
pub(super) use super::staged::{Changes, SegInfo, Staged};
use super::view::View;
use crate::run::Run;
use crate::store::{Result, RunFilter, StoreError};
use crate::time::Ts;

/// A run is parked when it wakes at least this far ahead.
pub const PARK_AFTER_MS: u64 = 10 * 60 * 1000;
/// Parked runs are filed by the hour they wake in.
pub const BUCKET_MS: u64 = 60 * 60 * 1000;
/// A bucket is read back into sled this long before its hour begins.
pub const LEAD_MS: u64 = 2 * 60 * 1000;
/// A segment is closed at about this size: reading one back holds its bytes in memory.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Most runs read back into sled per commit group.
pub(super) const MAX_UNPARK: usize = 2048;

pub(super) const SEGS: &str = "parked:";
pub(super) const READS: &str = "parkread:";
pub(super) const MARKS: &str = "parkmark:";

fn seg_key(bucket: u64, seg: u64) -> String {
    format!("{SEGS}{bucket:012}:{seg:06}")
}
fn read_key(bucket: u64) -> String {
    format!("{READS}{bucket:012}")
}
pub(super) fn mark_key(flow: &str, key: &str) -> String {
    format!("{MARKS}{flow}\0{key}")
}

/// An exit that reached parked runs of a flow with this exit key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Mark {
    pub at: u64,
    pub reason: String,
}

/// A parked run as written: its record and queue facts.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Record {
    pub parked_at: u64,
    pub due: u64,
    pub flow: String,
    pub id: String,
    #[serde(default)]
    pub exit_keys: Vec<String>,
    pub run: Box<RawValue>,
}

/// The parked runs of a store.
pub(super) struct Parking {
    pub dir: PathBuf,
    /// Committed segment summaries (the `parked:` keys), by bucket and segment.
    segs: Mutex<BTreeMap<(u64, u64), SegInfo>>,
    /// [`PARK_AFTER_MS`]; smaller in tests.
    pub park_after_ms: AtomicU64,
}

fn io_err(what: &str) -> impl Fn(io::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{what}: {e}"))
}

fn segment_path(dir: &Path, bucket: u64, seg: u64) -> PathBuf {
    dir.join(format!("{bucket:012}")).join(format!("{seg:016}.log"))
}

impl Parking {
    /// The summaries kept in `db`; bucket directories no summary names (read back before a
    /// crash took the chance to delete them) are removed. Reads no parked run.
    pub fn open(dir: PathBuf, db: &sled::Db) -> Result<Parking> {
        let mut segs = BTreeMap::new();
        for item in db.scan_prefix(SEGS) {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let (b, s) = key[SEGS.len()..]
                .split_once(':')
                .and_then(|(b, s)| Some((b.parse().ok()?, s.parse().ok()?)))
                .ok_or_else(|| StoreError::Corrupt(format!("bad parking key {key}")))?;
            segs.insert((b, s), from_json(&key, &v)?);
        }
        // Segment files sled no longer names: read back before a crash took the chance to
        // delete them.
        for bucket_dir in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Some(b) = bucket_dir
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            for file in std::fs::read_dir(bucket_dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let named = file
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".log")?.parse::<u64>().ok());
                if named.is_some_and(|s| !segs.contains_key(&(b, s))) {
                    let _ = std::fs::remove_file(file.path());
                }
            }
            let _ = std::fs::remove_dir(bucket_dir.path());
        }
        Ok(Parking {
            dir,
            segs: Mutex::new(segs),
            park_after_ms: AtomicU64::new(PARK_AFTER_MS),
        })
    }

    fn segs(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<(u64, u64), SegInfo>>> {
        self.segs
            .lock()
            .map_err(|_| StoreError::Backend("parking state poisoned".into()))
    }

    /// Whether a run waking at `due` (now `now`) is parked: far enough ahead, and in an hour
    /// whose bucket is not being read back already.
    pub fn parks(&self, due: u64, now: u64) -> bool {
        due >= now.saturating_add(self.park_after_ms.load(Ordering::Relaxed))
            && (due / BUCKET_MS * BUCKET_MS).saturating_sub(LEAD_MS) > now
    }

    /// When the earliest parked bucket is due to be read back.
    pub fn next_due(&self) -> Option<Ts> {
        let segs = self.segs().ok()?;
        let (b, _) = segs.keys().next()?;
        Some(Ts((b * BUCKET_MS).saturating_sub(LEAD_MS)))
    }

    /// How many runs are parked (not yet read back), and in how many segments.
    pub fn count(&self) -> (u64, usize) {
        self.segs()
            .map(|s| (s.values().map(|i| i.count).sum(), s.len()))
            .unwrap_or_default()
    }

    pub fn has_flow(&self, flow: &str) -> bool {
        self.segs()
            .map(|s| s.values().any(|i| i.flows.contains_key(flow)))
            .unwrap_or(false)
    }

    /// Writes the group's parks to their segments and syncs them, and puts the segments' new
    /// summaries in the group's batch. Must run before the batch is applied.
    pub fn write(&self, view: &mut View<'_>) -> Result<()> {
        let parks = std::mem::take(&mut view.parking.parks);
        if parks.is_empty() {
            return Ok(());
        }
        let mut by_bucket: BTreeMap<u64, Vec<Staged>> = BTreeMap::new();
        for p in parks {
            by_bucket.entry(p.bucket).or_default().push(p);
        }
        let committed = self.segs()?.clone();
        let io = io_err("writing parked runs");
        for (bucket, parks) in by_bucket {
            let bucket_dir = self.dir.join(format!("{bucket:012}"));
            let new_dir = !bucket_dir.exists();
            crate::private::create_dir(&bucket_dir).map_err(&io)?;
            if new_dir {
                sync_dir(&self.dir).map_err(&io)?;
            }
            // The bucket's last segment, as this group has left it so far.
            let last = view
                .parking
                .segs
                .iter()
                .rev()
                .find(|((b, _), _)| *b == bucket)
                .map(|((_, s), i)| (*s, i.clone()))
                .or_else(|| {
                    committed
                        .range((bucket, 0)..=(bucket, u64::MAX))
                        .next_back()
                        .map(|((_, s), i)| (*s, i.clone()))
                });
            let (mut seg, mut info) = match last {
                Some((s, i)) if i.end < SEGMENT_BYTES && !view.parking.done.contains(&(bucket, s)) => (s, i),
                Some((s, _)) => (s + 1, SegInfo::default()),
                None => (0, SegInfo::default()),
            };
            let mut at = info.end;
            let mut buf = Vec::new();
            let mut touched = Vec::new();
            let n = parks.len();
            for (k, p) in parks.into_iter().enumerate() {
                if info.end == 0 {
                    buf.extend_from_slice(SEGMENT_MAGIC);
                }
                format::encode(&p.payload, &mut buf);
                info.end = at + buf.len() as u64;
                if info.count == 0 || p.id < info.min_id {
                    info.min_id = p.id.clone();
                }
                if p.id > info.max_id {
                    info.max_id = p.id.clone();
                }
                if info.count == 0 {
                    info.first_parked = p.parked_at;
                }
                info.count += 1;
                *info.flows.entry(p.flow).or_insert(0) += 1;
                if info.end >= SEGMENT_BYTES && k + 1 < n {
                    write_at(&bucket_dir, seg, at, &buf).map_err(&io)?;
                    touched.push((seg, std::mem::take(&mut info)));
                    (seg, at) = (seg + 1, 0);
                    buf.clear();
                }
            }
            write_at(&bucket_dir, seg, at, &buf).map_err(&io)?;
            touched.push((seg, info));
            for (seg, info) in touched {
                view.insert(seg_key(bucket, seg), to_json(&info)?);
                view.parking.segs.push(((bucket, seg), info));
            }
        }
        Ok(())
    }

    /// After the group's batch is committed: the summaries it wrote become the known ones.
    pub fn committed(&self, changes: &Changes) {
        if let Ok(mut segs) = self.segs() {
            for (k, info) in &changes.segs {
                segs.insert(*k, info.clone());
            }
            for k in &changes.done {
                segs.remove(k);
            }
        }
    }

    /// After the batch that forgot them is flushed: the files of buckets read back.
    pub fn forget(&self, done: &[(u64, u64)]) {
        for (b, s) in done {
            if let Err(e) = std::fs::remove_file(segment_path(&self.dir, *b, *s)) {
                tracing::warn!(bucket = b, segment = s, error = %e, "could not delete a parked segment read back");
            }
            // Gone once its last segment is (a park may have started a new one meanwhile).
            let _ = std::fs::remove_dir(self.dir.join(format!("{b:012}")));
        }
    }

    /// Reads back into sled (through `put`, which stores one run as queued at its wake time)
    /// up to `max` runs of the earliest bucket whose hour begins by `now` + [`LEAD_MS`].
    /// Returns how many were read.
    pub fn unpark(
        &self,
        view: &mut View<'_>,
        now: u64,
        max: usize,
        mut put: impl FnMut(&mut View<'_>, Record) -> Result<()>,
    ) -> Result<usize> {
        let (bucket, bucket_segs): (u64, Vec<(u64, SegInfo)>) = {
            let segs = self.segs()?;
            let Some(&(bucket, _)) = segs.keys().find(|k| !view.parking.done.contains(k)) else {
                return Ok(0);
            };
            if (bucket * BUCKET_MS).saturating_sub(LEAD_MS) > now {
                return Ok(0);
            }
            let of_bucket = segs
                .range((bucket, 0)..=(bucket, u64::MAX))
                .filter(|(k, _)| !view.parking.done.contains(k))
                .map(|((_, s), i)| (*s, i.clone()))
                .collect();
            (bucket, of_bucket)
        };
        let from = match view.get(read_key(bucket).as_bytes())? {
            Some(v) => Pos::decode(&String::from_utf8_lossy(&v)).ok_or_else(|| {
                StoreError::Corrupt(format!("bad parking read position for bucket {bucket}"))
            })?,
            None => Pos {
                segment: bucket_segs.first().map_or(0, |(s, _)| *s),
                offset: 0,
            },
        };
        let mut taken = 0;
        for (seg, info) in &bucket_segs {
            if *seg < from.segment {
                continue;
            }
            let start = if *seg == from.segment {
                from.offset as usize
            } else {
                0
            };
            let bytes = read_segment(&self.dir, bucket, *seg, info.end)
                .map_err(io_err("reading parked runs back"))?;
            let scanned = format::scan(&bytes, Format::V2, start);
            for range in &scanned.damaged {
                tracing::error!(
                    bucket,
                    segment = seg,
                    from = range.start,
                    to = range.end,
                    "a parked segment is damaged: these bytes hold no readable run and are passed over"
                );
            }
            for (at, payload) in scanned.records {
                if taken >= max {
                    let here = Pos {
                        segment: *seg,
                        offset: at as u64,
                    };
                    view.insert(read_key(bucket), here.encode().into_bytes());
                    return Ok(taken);
                }
                match serde_json::from_slice::<Record>(&bytes[payload.clone()]) {
                    Ok(rec) => put(view, rec)?,
                    Err(e) => tracing::error!(bucket, segment = seg, at = payload.start, error = %e,
                        "a parked record does not parse; passed over"),
                }
                taken += 1;
            }
        }
        // The whole bucket is in sled now.
        view.remove(read_key(bucket));
        for (seg, _) in &bucket_segs {
            view.remove(seg_key(bucket, *seg));
        }
        view.parking
            .done
            .extend(bucket_segs.iter().map(|(seg, _)| (bucket, *seg)));
        self.forget_old_marks(view)?;
        Ok(taken)
    }

    /// Marks older than every run still parked have reached all they could.
    fn forget_old_marks(&self, view: &mut View<'_>) -> Result<()> {
        let oldest = self
            .segs()?
            .iter()
            .filter(|(k, _)| !view.parking.done.contains(k))
            .map(|(_, i)| i.first_parked)
            .min();
        let stale: Vec<Vec<u8>> = view
            .scan_prefix(MARKS.as_bytes())
            .filter_map(|item| {
                let (k, v) = item.ok()?;
                let mark: Mark = serde_json::from_slice(&v).ok()?;
                oldest.is_none_or(|o| mark.at < o).then_some(k)
            })
            .collect();
        for k in stale {
            view.remove(k);
        }
        Ok(())
    }

    /// The exit that has reached a parked run, if one has: a note for it, or a mark on one of
    /// its exit keys made after it was parked.
    pub fn exit_of(db: &sled::Db, rec: &Record) -> Result<Option<(String, u64)>> {
        if let Some(bytes) = db.get(exit_note_key(&rec.id))? {
            let note = ExitNote::read(&bytes);
            return Ok(Some((note.reason, note.at.unwrap_or(rec.parked_at))));
        }
        Self::mark_of(|k| Ok(db.get(k)?.map(|v| v.to_vec())), rec)
    }

    /// The reason of a mark that reached `rec`, read through a commit group's view.
    pub fn mark_for(view: &View<'_>, rec: &Record) -> Result<Option<String>> {
        Ok(Self::mark_of(|k| view.get(k), rec)?.map(|(reason, _)| reason))
    }

    fn mark_of(
        get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>>,
        rec: &Record,
    ) -> Result<Option<(String, u64)>> {
        for k in &rec.exit_keys {
            if let Some(v) = get(mark_key(&rec.flow, k).as_bytes())? {
                let mark: Mark = from_json("parkmark", &v)?;
                if mark.at > rec.parked_at {
                    return Ok(Some((mark.reason, mark.at)));
                }
            }
        }
        Ok(None)
    }

    /// A parked run as it should be shown: exited if an exit has reached it.
    pub fn shown(db: &sled::Db, rec: &Record) -> Result<Run> {
        let mut run = super::keys::read_run_db(db, &rec.id, rec.run.get().as_bytes())?;
        if let Some((reason, at)) = Self::exit_of(db, rec)? {
            run.end_exited(&reason, Ts(at));
        }
        Ok(run)
    }

    /// Calls `f` on each parked record of the segments `pick` chooses, newest segments (by
    /// their newest run) first, until `f` returns false.
    fn scan(
        &self,
        mut pick: impl FnMut(&SegInfo) -> bool,
        mut f: impl FnMut(&SegInfo, Record) -> Result<bool>,
    ) -> Result<()> {
        let mut chosen: Vec<((u64, u64), SegInfo)> = self
            .segs()?
            .iter()
            .filter(|(_, i)| pick(i))
            .map(|(k, i)| (*k, i.clone()))
            .collect();
        chosen.sort_by(|a, b| b.1.max_id.cmp(&a.1.max_id));
        for ((bucket, seg), info) in chosen {
            let bytes = match read_segment(&self.dir, bucket, seg, info.end) {
                Ok(b) => b,
                // Read back and forgotten while we looked: those runs are in sled now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("reading parked runs")(e)),
            };
            for (_, payload) in format::scan(&bytes, Format::V2, 0).records {
                let Ok(rec) = serde_json::from_slice::<Record>(&bytes[payload]) else {
                    continue;
                };
                if !f(&info, rec)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// A parked run by id: only segments whose id range holds it are read.
    pub fn find(&self, db: &sled::Db, id: &str) -> Result<Option<Run>> {
        let mut found = None;
        self.scan(
            |i| i.min_id.as_str() <= id && id <= i.max_id.as_str(),
            |_, rec| {
                if rec.id == id {
                    found = Some(Self::shown(db, &rec)?);
                    return Ok(false);
                }
                Ok(true)
            },
        )?;
        Ok(found)
    }

    /// The newest `limit` parked runs passing `filter` (and newer than `above`, when the page
    /// is already full of runs newer than that): only segments that can hold such runs are
    /// read, newest first, and reading stops once no further segment can hold a newer one.
    pub fn list(
        &self,
        db: &sled::Db,
        filter: &RunFilter,
        limit: usize,
        above: Option<&str>,
    ) -> Result<Vec<Run>> {
        if filter
            .status
            .is_some_and(|s| s != crate::run::RunStatus::Waiting && s != crate::run::RunStatus::Exited)
        {
            return Ok(Vec::new());
        }
        // The `limit` newest found so far, oldest on top.
        let mut best: BinaryHeap<std::cmp::Reverse<(String, RunBox)>> = BinaryHeap::new();
        self.scan(
            |i| {
                filter.flow.as_ref().is_none_or(|f| i.flows.contains_key(f))
                    && filter
                        .before
                        .as_ref()
                        .is_none_or(|b| i.min_id.as_str() < b.as_str())
                    && above.is_none_or(|a| i.max_id.as_str() > a)
            },
            |info, rec| {
                if best.len() >= limit
                    && best
                        .peek()
                        .is_some_and(|std::cmp::Reverse((oldest, _))| info.max_id.as_str() <= oldest.as_str())
                {
                    return Ok(false);
                }
                if filter
                    .before
                    .as_ref()
                    .is_some_and(|b| rec.id.as_str() >= b.as_str())
                    || above.is_some_and(|a| rec.id.as_str() <= a)
                    || filter.flow.as_ref().is_some_and(|f| *f != rec.flow)
                {
                    return Ok(true);
                }
                let run = Self::shown(db, &rec)?;
                if filter.matches(&run) {
                    best.push(std::cmp::Reverse((run.id.clone(), RunBox(Box::new(run)))));
                    if best.len() > limit {
                        best.pop();
                    }
                }
                Ok(true)
            },
        )?;
        let mut out: Vec<Run> = best.into_iter().map(|std::cmp::Reverse((_, r))| *r.0).collect();
        out.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(out)
    }

    /// Every parked record, oldest bucket first (for backups and checks).
    pub fn each(&self, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let segs: Vec<((u64, u64), SegInfo)> = self.segs()?.iter().map(|(k, i)| (*k, i.clone())).collect();
        for ((bucket, seg), info) in segs {
            let bytes =
                read_segment(&self.dir, bucket, seg, info.end).map_err(io_err("reading parked runs"))?;
            for (_, payload) in format::scan(&bytes, Format::V2, 0).records {
                f(&bytes[payload])?;
            }
        }
        Ok(())
    }
}

/// Reads every parked segment a store's sled names, changing nothing (for `hookflow store
/// check`): how many runs are parked, and each problem in words.
pub(super) fn check(dir: &Path, db: &sled::Db) -> (u64, Vec<String>) {
    let (mut runs, mut problems) = (0, Vec::new());
    for item in db.scan_prefix(SEGS) {
        let Ok((k, v)) = item else {
            problems.push("sled could not read a parked segment's summary".into());
            continue;
        };
        let key = String::from_utf8_lossy(&k).into_owned();
        let parsed = key[SEGS.len()..]
            .split_once(':')
            .and_then(|(b, s)| Some((b.parse::<u64>().ok()?, s.parse::<u64>().ok()?)));
        let (Some((bucket, seg)), Ok(info)) = (parsed, serde_json::from_slice::<SegInfo>(&v)) else {
            problems.push(format!("{key} does not parse: serve refuses to open the store"));
            continue;
        };
        let path = segment_path(dir, bucket, seg);
        match read_segment(dir, bucket, seg, info.end) {
            Ok(bytes) => {
                let scanned = format::scan(&bytes, Format::V2, 0);
                runs += scanned.records.len() as u64;
                if (scanned.records.len() as u64) < info.count {
                    problems.push(format!(
                        "{}: {} parked run(s) where sled counts {}: serve wakes the readable ones and logs the rest as lost",
                        path.display(),
                        scanned.records.len(),
                        info.count
                    ));
                }
                for r in &scanned.damaged {
                    problems.push(format!(
                        "{} bytes {}..{}: no readable parked run (those runs are lost); serve passes over them with an ERROR when the bucket wakes",
                        path.display(),
                        r.start,
                        r.end
                    ));
                }
            }
            Err(e) => problems.push(format!(
                "{}: {e}: its {} parked run(s) are lost; serve reports it when the bucket wakes",
                path.display(),
                info.count
            )),
        }
    }
    (runs, problems)
}

/// A run ordered by nothing (the heap orders by id alone).
struct RunBox(Box<Run>);
impl PartialEq for RunBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for RunBox {}
impl PartialOrd for RunBox {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RunBox {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// Writes `buf` at `at` in a segment file (creating it) and syncs it.
fn write_at(bucket_dir: &Path, seg: u64, at: u64, buf: &[u8]) -> io::Result<()> {
    let path = bucket_dir.join(format!("{seg:016}.log"));
    let created = !path.exists();
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)?;
    file.write_all_at(buf, at)?;
    file.sync_data()?;
    if created {
        sync_dir(bucket_dir)?;
    }
    Ok(())
}

/// A segment's bytes up to `end` (what sled says was written; anything after is not a record).
fn read_segment(dir: &Path, bucket: u64, seg: u64, end: u64) -> io::Result<Vec<u8>> {
    let file = File::open(segment_path(dir, bucket, seg))?;
    let len = file.metadata()?.len().min(end);
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(id: &str, bucket: u64) -> Staged {
        let rec = Record {
            parked_at: 1,
            due: bucket * BUCKET_MS + 5,
            flow: "f".into(),
            id: id.into(),
            exit_keys: vec![],
            run: RawValue::from_string(format!("{{\"id\":\"{id}\"}}")).unwrap(),
        };
        Staged {
            bucket,
            id: id.into(),
            flow: "f".into(),
            parked_at: 1,
            payload: serde_json::to_vec(&rec).unwrap(),
        }
    }

    /// Parks through a view as the writer does: records written and synced, summaries in the
    /// batch, the batch applied.
    fn park(p: &Parking, db: &sled::Db, runs: Vec<Staged>) {
        let mut view = View::new(db);
        view.parking.parks = runs;
        p.write(&mut view).unwrap();
        let (batch, changes) = view.into_batch();
        db.apply_batch(batch.unwrap()).unwrap();
        p.committed(&changes);
    }

    fn read_back(p: &Parking, db: &sled::Db, now: u64, max: usize) -> (Vec<String>, Changes) {
        let mut view = View::new(db);
        let mut got = Vec::new();
        p.unpark(&mut view, now, max, |_, rec| {
            got.push(rec.id);
            Ok(())
        })
        .unwrap();
        let (batch, changes) = view.into_batch();
        if let Some(b) = batch {
            db.apply_batch(b).unwrap();
        }
        p.committed(&changes);
        (got, changes)
    }

    #[test]
    fn parked_runs_come_back_in_order_in_groups_and_only_when_their_hour_is_near() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let p = Parking::open(dir.path().join("parked"), &db).unwrap();
        park(
            &p,
            &db,
            vec![staged("a1", 10), staged("a2", 10), staged("b1", 11)],
        );
        park(&p, &db, vec![staged("a3", 10)]);
        assert_eq!(p.count(), (4, 2));
        assert_eq!(p.next_due(), Some(Ts(10 * BUCKET_MS - LEAD_MS)));
        // Not yet.
        assert!(read_back(&p, &db, 10 * BUCKET_MS - LEAD_MS - 1, 10).0.is_empty());
        // Two at a time, from where the last group stopped.
        let (got, changes) = read_back(&p, &db, 10 * BUCKET_MS - LEAD_MS, 2);
        assert_eq!(
            (got, changes.done.len()),
            (vec!["a1".to_string(), "a2".to_string()], 0)
        );
        let (got, changes) = read_back(&p, &db, 10 * BUCKET_MS, 2);
        assert_eq!(
            (got, changes.done.clone()),
            (vec!["a3".to_string()], vec![(10, 0)])
        );
        p.forget(&changes.done);
        assert!(!dir.path().join("parked/000000000010").exists());
        assert_eq!(p.count(), (1, 1));
        // Known again after a restart without reading a file; nothing of bucket 10 returns.
        let p = Parking::open(dir.path().join("parked"), &db).unwrap();
        assert_eq!(p.count(), (1, 1));
        assert_eq!(read_back(&p, &db, 11 * BUCKET_MS, 10).0, vec!["b1".to_string()]);
    }

    /// A group that reads a bucket back to its end and parks into the same hour: the park
    /// starts a new segment, which outlives the deletion of the ones read.
    #[test]
    fn a_park_into_a_bucket_read_back_in_the_same_group_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let p = Parking::open(dir.path().join("parked"), &db).unwrap();
        park(&p, &db, vec![staged("a1", 10)]);
        let mut view = View::new(&db);
        p.unpark(&mut view, 10 * BUCKET_MS, 10, |_, _| Ok(())).unwrap();
        view.parking.parks = vec![staged("late", 10)];
        p.write(&mut view).unwrap();
        let (batch, changes) = view.into_batch();
        db.apply_batch(batch.unwrap()).unwrap();
        p.committed(&changes);
        p.forget(&changes.done);
        assert_eq!(p.count(), (1, 1));
        let p = Parking::open(dir.path().join("parked"), &db).unwrap();
        assert_eq!(read_back(&p, &db, 10 * BUCKET_MS, 10).0, vec!["late".to_string()]);
    }

    /// A crash after the records were written but before sled recorded them: the bytes past
    /// the segment's recorded end are never read (those runs are still in sled), and the next
    /// park writes over them.
    #[test]
    fn bytes_past_the_recorded_end_are_never_read_and_damage_costs_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let p = Parking::open(dir.path().join("parked"), &db).unwrap();
        park(&p, &db, vec![staged("a1", 7)]);
        // The lost group: written, never committed.
        let mut lost = View::new(&db);
        lost.parking.parks = vec![staged("ghost", 7)];
        p.write(&mut lost).unwrap();
        drop(lost);
        let p = Parking::open(dir.path().join("parked"), &db).unwrap();
        park(&p, &db, vec![staged("a2", 7), staged("a3", 7)]);
        // Damage in the middle record: the others are kept.
        let file = dir.path().join("parked/000000000007/0000000000000000.log");
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes.windows(2).position(|w| w == b"a2").unwrap();
        bytes[at] = b'X';
        std::fs::write(&file, &bytes).unwrap();
        let (got, _) = read_back(&p, &db, 8 * BUCKET_MS, 10);
        assert_eq!(got, vec!["a1".to_string(), "a3".to_string()]);
    }
}
