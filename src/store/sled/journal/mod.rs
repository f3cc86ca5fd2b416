//! The intake journal: where accepted runs wait, durably, until the engine first claims them.
//!
//! Accepting a run appends one record to the current segment file — no sled write on the
//! request path. Records carry a magic and a checksum ([`format`]). A group of appends is
//! written with one `write` and answered after it (process-kill safe); with
//! [`Durability::Fsync`](super::Durability) after an `fdatasync` too. With `Flush`, a
//! background thread `fdatasync`s the current segment every half second, like sled's own
//! flusher, off the path of the appends.
//!
//! The engine *admits* runs from the journal into sled, oldest first, as it claims them. The
//! admitted prefix is a cursor `(segment, offset)` stored in sled in the same atomic batch as
//! the admitted runs, so after a crash every record past the cursor is pending again and none
//! before it is. Segments wholly before a cursor that sled has flushed are deleted.
//!
//! Damage is kept where it happened. At open, bytes that hold no readable record are copied to
//! `quarantine/` and reported ([`Damage`]); every readable record after them is kept. A
//! record cut short at the very end — the write a crash interrupted, never acknowledged — is
//! a torn tail: quarantined too, and the segment continues where it began.

pub mod format;

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use self::format::{Format, HEADER, SEGMENT_MAGIC, scan};

/// Segments are closed at about this size. Reading the journal (at open, and when the engine
/// fetches the next pending runs) holds one segment's bytes at a time, so this is also the
/// most memory a read takes.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// With `Flush` durability, the longest time an appended record waits for an `fdatasync`.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Where a record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub segment: u64,
    pub offset: u64,
}

impl Pos {
    pub fn encode(&self) -> String {
        format!("{}:{}", self.segment, self.offset)
    }
    pub fn decode(s: &str) -> Option<Pos> {
        let (a, b) = s.split_once(':')?;
        Some(Pos {
            segment: a.parse().ok()?,
            offset: b.parse().ok()?,
        })
    }
}

/// A record: where it is, its length, and where the next one starts.
#[derive(Debug, Clone, Copy)]
pub struct Located {
    pub at: Pos,
    pub len: u32,
    pub next: Pos,
}

pub struct Journal {
    dir: PathBuf,
    file: File,
    pos: Pos,
    fsync_each: bool,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    /// The segment the background syncer (`Flush` durability) keeps syncing.
    synced: Arc<Mutex<Option<(File, u64)>>>,
    /// Bytes appended to that segment.
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// How often the syncer starts writeback of what was appended since its last look.
const WRITEBACK_TICK: Duration = Duration::from_millis(25);

/// `fdatasync`s the current segment every [`FLUSH_INTERVAL`] until stopped, and in between
/// starts the kernel's writeback of newly appended data (`POSIX_FADV_DONTNEED` does that
/// without waiting), so dirty pages do not pile up until a sync has to write them all at once.
fn syncer(current: Arc<Mutex<Option<(File, u64)>>>, written: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let ticks_per_sync = (FLUSH_INTERVAL.as_millis() / WRITEBACK_TICK.as_millis()).max(1) as u32;
    let mut tick = 0u32;
    let mut advised: (u64, u64) = (u64::MAX, 0); // (segment, offset)
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(WRITEBACK_TICK);
        tick += 1;
        let Some((file, segment)) = current
            .lock()
            .ok()
            .and_then(|g| g.as_ref().and_then(|(f, s)| f.try_clone().ok().map(|f| (f, *s))))
        else {
            continue;
        };
        if advised.0 != segment {
            advised = (segment, 0);
        }
        let end = written.load(Ordering::Relaxed);
        if end > advised.1
            && let Some(len) = std::num::NonZeroU64::new(end - advised.1)
        {
            let _ = rustix::fs::fadvise(&file, advised.1, Some(len), rustix::fs::Advice::DontNeed);
            advised.1 = end;
        }
        if tick.is_multiple_of(ticks_per_sync)
            && let Err(e) = file.sync_data()
        {
            tracing::error!(error = %e, "background sync of the intake journal failed");
        }
    }
}

/// Opens a segment for writing, sized to [`SEGMENT_BYTES`] up front (sparse) so appends
/// overwrite within the file instead of growing it: growing changes the inode on every write,
/// which makes writes wait on the filesystem's journal commits.
fn open_segment(dir: &Path, segment: u64, size: u64) -> io::Result<File> {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(segment_path(dir, segment))?;
    let len = file.metadata()?.len();
    if len == 0 {
        file.write_all_at(SEGMENT_MAGIC, 0)?;
    }
    if len < size {
        file.set_len(size)?;
    }
    Ok(file)
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016}.log"))
}

fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Bytes of the journal that held no readable record, found at open.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Damage {
    pub segment: u64,
    /// Byte range in the segment file.
    pub from: u64,
    pub to: u64,
    /// The record a crash cut short at the very end (never acknowledged), not damage to
    /// acknowledged data.
    pub torn_tail: bool,
    /// Readable records after it in the same segment, all kept.
    pub kept_after: usize,
    /// Where its bytes were copied.
    pub quarantined: PathBuf,
}

/// One segment as [`check`] found it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SegmentCheck {
    pub file: PathBuf,
    /// Readable records from the cursor on (runs not yet moved into the store).
    pub records: usize,
    /// Byte ranges that hold no readable record, with whether the last is a torn tail and how
    /// many readable records follow each.
    pub damaged: Vec<(u64, u64, bool, usize)>,
}

/// Reads the journal from `cursor` on as [`Journal::open`] does, changing nothing: no
/// quarantine, no truncation (for `hookflow store check`).
pub fn check(dir: &Path, cursor: Pos) -> io::Result<Vec<SegmentCheck>> {
    let mut out = Vec::new();
    let segs = match segments(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for (i, &seg) in segs.iter().enumerate() {
        if seg < cursor.segment {
            continue;
        }
        let from = if seg == cursor.segment {
            cursor.offset as usize
        } else {
            0
        };
        let (bytes, format) = read_written(&segment_path(dir, seg), from)?;
        let scanned = scan(&bytes, format, from);
        let torn = scanned.torn_tail() && i + 1 == segs.len();
        let n = scanned.damaged.len();
        let damaged = scanned
            .damaged
            .iter()
            .enumerate()
            .map(|(k, r)| {
                let after = scanned.records.iter().filter(|(s, _)| *s >= r.end).count();
                (r.start as u64, r.end as u64, torn && k + 1 == n, after)
            })
            .collect();
        out.push(SegmentCheck {
            file: segment_path(dir, seg),
            records: scanned.records.len(),
            damaged,
        });
    }
    Ok(out)
}

impl Journal {
    /// Opens the journal in `dir`, handing every readable record from `cursor` on to
    /// `on_record` in order (one segment in memory at a time), and returns what could not be
    /// read (copied to `dir/quarantine`).
    pub fn open(
        dir: &Path,
        cursor: Pos,
        fsync_each: bool,
        mut on_record: impl FnMut(Located, &[u8]),
    ) -> io::Result<(Journal, Vec<Damage>)> {
        crate::private::create_dir(dir)?;
        let segs = segments(dir)?;
        let mut damage = Vec::new();
        let mut end = Pos {
            segment: cursor.segment,
            offset: 0,
        };
        for (i, &seg) in segs.iter().enumerate() {
            if seg < cursor.segment {
                continue;
            }
            let from = if seg == cursor.segment {
                cursor.offset as usize
            } else {
                0
            };
            let (bytes, format) = read_written(&segment_path(dir, seg), from)?;
            let scanned = scan(&bytes, format, from);
            for (start, payload) in &scanned.records {
                let at = |o: usize| Pos {
                    segment: seg,
                    offset: o as u64,
                };
                let located = Located {
                    at: at(*start),
                    len: payload.len() as u32,
                    next: at(payload.end),
                };
                on_record(located, &bytes[payload.clone()]);
            }
            let torn = scanned.torn_tail();
            for (n, range) in scanned.damaged.iter().enumerate() {
                let quarantined = quarantine(dir, seg, range, &bytes[range.clone()])?;
                let kept_after = scanned.records.iter().filter(|(s, _)| *s >= range.end).count();
                let d = Damage {
                    segment: seg,
                    from: range.start as u64,
                    to: range.end as u64,
                    torn_tail: torn && n + 1 == scanned.damaged.len() && i + 1 == segs.len(),
                    kept_after,
                    quarantined,
                };
                if d.torn_tail {
                    tracing::warn!(segment = seg, from = d.from, to = d.to, quarantined = %d.quarantined.display(),
                        "a record cut short at the end of the intake journal (a write a crash interrupted, never acknowledged) was set aside");
                } else {
                    tracing::error!(segment = seg, from = d.from, to = d.to, bytes = d.to - d.from, kept_after, quarantined = %d.quarantined.display(),
                        "the intake journal is damaged: these bytes hold no readable run and were copied to quarantine; every readable run after them is kept");
                }
                damage.push(d);
            }
            if torn && i + 1 == segs.len() {
                // Appends continue where the cut-short record began.
                OpenOptions::new()
                    .write(true)
                    .open(segment_path(dir, seg))?
                    .set_len(scanned.end as u64)?;
            }
            end = match format {
                Format::V2 => Pos {
                    segment: seg,
                    offset: scanned.end as u64,
                },
                // Never appended to: the next append starts a segment of the current format.
                Format::V1 => Pos {
                    segment: seg + 1,
                    offset: 0,
                },
            };
        }
        if end.offset == 0 {
            end.offset = Format::V2.first_offset() as u64;
        }
        let file = open_segment(dir, end.segment, SEGMENT_BYTES)?;
        let synced = Arc::new(Mutex::new(Some((file.try_clone()?, end.segment))));
        let written = Arc::new(AtomicU64::new(end.offset));
        let stop = Arc::new(AtomicBool::new(false));
        if !fsync_each {
            let (current, written, stop) = (Arc::clone(&synced), Arc::clone(&written), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("hookflow-intake-sync".into())
                .spawn(move || syncer(current, written, stop))?;
        }
        let journal = Journal {
            dir: dir.to_path_buf(),
            file,
            pos: end,
            fsync_each,
            segment_bytes: SEGMENT_BYTES,
            synced,
            written,
            stop,
        };
        Ok((journal, damage))
    }

    /// Appends a group of records with one write; durable as configured when it returns.
    pub fn append(&mut self, payloads: &[Vec<u8>]) -> io::Result<Vec<Located>> {
        if self.pos.offset >= self.segment_bytes {
            // Syncing a full segment here would stall the commit group behind it; its records
            // are already written (and, with fsync durability, already synced).
            let full = self.file.try_clone()?;
            std::thread::spawn(move || full.sync_data());
            self.pos = Pos {
                segment: self.pos.segment + 1,
                offset: Format::V2.first_offset() as u64,
            };
            self.file = open_segment(&self.dir, self.pos.segment, self.segment_bytes)?;
            if let Ok(mut current) = self.synced.lock() {
                *current = Some((self.file.try_clone()?, self.pos.segment));
                self.written.store(0, Ordering::Relaxed);
            }
        }
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.len() + HEADER).sum());
        let mut out = Vec::with_capacity(payloads.len());
        let mut off = self.pos.offset;
        for p in payloads {
            format::encode(p, &mut buf);
            let at = Pos {
                segment: self.pos.segment,
                offset: off,
            };
            off += (HEADER + p.len()) as u64;
            out.push(Located {
                at,
                len: p.len() as u32,
                next: Pos {
                    segment: self.pos.segment,
                    offset: off,
                },
            });
        }
        {
            use std::os::unix::fs::FileExt;
            self.file.write_all_at(&buf, self.pos.offset)?;
        }
        self.pos.offset = off;
        self.written.store(off, Ordering::Relaxed);
        if self.fsync_each {
            self.file.sync_data()?;
        }
        Ok(out)
    }
}

impl Drop for Journal {
    /// A clean stop leaves nothing for the kernel to write back later.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.file.sync_data() {
            tracing::error!(error = %e, "final sync of the intake journal failed");
        }
    }
}

/// Deletes segments wholly before `cursor` (their records are all in sled, flushed). The
/// segment being appended to is never before an admitted cursor.
pub fn forget_before(dir: &Path, cursor: Pos) -> io::Result<()> {
    for seg in segments(dir)? {
        if seg < cursor.segment {
            std::fs::remove_file(segment_path(dir, seg))?;
        }
    }
    Ok(())
}

/// Hands each readable record in `[from, until)` to `f`, in order, one segment's bytes in
/// memory at a time, until `f` returns `false` (that record is not taken). Returns where to go
/// on from: the first record not taken, or `until`. Damaged bytes are passed over: they were
/// reported and set aside when the journal was opened. For reading pending runs that are not
/// held in memory.
pub fn read_range(
    dir: &Path,
    from: Pos,
    until: Pos,
    mut f: impl FnMut(Located, &[u8]) -> bool,
) -> io::Result<Pos> {
    for seg in segments(dir)? {
        if seg < from.segment {
            continue;
        }
        if seg > until.segment || (seg == until.segment && until.offset == 0) {
            break;
        }
        let start = if seg == from.segment {
            from.offset as usize
        } else {
            0
        };
        let (bytes, format) = match read_written(&segment_path(dir, seg), start) {
            Ok(b) => b,
            // Admitted and deleted while we looked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for (at, payload) in scan(&bytes, format, start).records {
            let located = Located {
                at: Pos {
                    segment: seg,
                    offset: at as u64,
                },
                len: payload.len() as u32,
                next: Pos {
                    segment: seg,
                    offset: payload.end as u64,
                },
            };
            if located.at >= until {
                return Ok(until);
            }
            if !f(located, &bytes[payload]) {
                return Ok(located.at);
            }
        }
    }
    Ok(until)
}

/// Reads one record's payload (for admission and for showing a pending run).
pub fn read(dir: &Path, rec: &Located) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = File::open(segment_path(dir, rec.at.segment))?;
    let mut buf = vec![0; rec.len as usize];
    // The payload ends where the next record begins, whatever the record format.
    file.read_exact_at(&mut buf, rec.next.offset - u64::from(rec.len))?;
    Ok(buf)
}

/// The payloads of records that follow one another in the journal (as a batch to admit does),
/// with one open and one read per segment they span instead of one per record.
pub fn read_run(dir: &Path, recs: &[Located]) -> io::Result<Vec<Vec<u8>>> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::with_capacity(recs.len());
    for same in recs.chunk_by(|a, b| a.at.segment == b.at.segment) {
        let (first, last) = (same[0], same[same.len() - 1]);
        let start = first.next.offset - u64::from(first.len);
        if last.next.offset < start {
            // Not in journal order: read one by one.
            for rec in same {
                out.push(read(dir, rec)?);
            }
            continue;
        }
        let file = File::open(segment_path(dir, first.at.segment))?;
        let mut span = vec![0; (last.next.offset - start) as usize];
        file.read_exact_at(&mut span, start)?;
        for rec in same {
            let from = (rec.next.offset - u64::from(rec.len)).checked_sub(start);
            match from.and_then(|f| span.get(f as usize..f as usize + rec.len as usize)) {
                Some(bytes) => out.push(bytes.to_vec()),
                None => out.push(read(dir, rec)?),
            }
        }
    }
    Ok(out)
}

/// A segment's bytes up to the end of what was written (the preallocated rest is a hole), of
/// which only the part from `from` on is read: the buffer is the file's length in zeroed pages
/// the kernel supplies only when touched, so what was admitted before the cursor — and the
/// unwritten rest — costs no memory.
fn read_written(path: &Path, from: usize) -> io::Result<(Vec<u8>, Format)> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path)?;
    let len = file.metadata()?.len() as usize;
    let mut head = [0u8; 8];
    let n = file.read_at(&mut head, 0)?;
    let format = Format::of(&head[..n]);
    let start = from.max(format.first_offset()).min(len);
    let end = match rustix::fs::seek(&file, rustix::fs::SeekFrom::Hole(start as u64)) {
        Ok(hole) => (hole as usize).min(len),
        Err(_) => len,
    };
    let mut bytes = vec![0u8; end];
    bytes[..n.min(end)].copy_from_slice(&head[..n.min(end)]);
    file.read_exact_at(&mut bytes[start..end], start as u64)?;
    Ok((bytes, format))
}

/// Copies damaged bytes to `dir/quarantine/<segment>-<from>-<to>.bin` (once) and says where.
fn quarantine(dir: &Path, segment: u64, range: &std::ops::Range<usize>, bytes: &[u8]) -> io::Result<PathBuf> {
    let qdir = dir.join("quarantine");
    crate::private::create_dir(&qdir)?;
    let path = qdir.join(format!("{segment:016}-{}-{}.bin", range.start, range.end));
    if !path.exists() {
        std::fs::write(&path, bytes)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Record = (Located, Vec<u8>);

    fn open_collect(dir: &Path, cursor: Pos, fsync: bool) -> io::Result<(Journal, Vec<Record>, Vec<Damage>)> {
        let mut recs = Vec::new();
        let (j, damage) = Journal::open(dir, cursor, fsync, |at, p| recs.push((at, p.to_vec())))?;
        Ok((j, recs, damage))
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "hookflow-journal-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Admission reads a batch of records in one read per segment; what it gets must be what
    /// reading each record alone gives, across groups and out of order alike.
    #[test]
    fn records_read_together_are_the_records_read_alone() {
        let dir = tmp().with_extension("run");
        let _ = std::fs::remove_dir_all(&dir);
        let start = Pos {
            segment: 0,
            offset: 0,
        };
        let (mut j, _, _) = open_collect(&dir, start, false).unwrap();
        let mut recs = j.append(&[b"a".to_vec(), b"bb".to_vec()]).unwrap();
        recs.extend(j.append(&[b"ccc".to_vec()]).unwrap());
        recs.extend(j.append(&[vec![7; 300], b"e".to_vec()]).unwrap());
        let alone: Vec<Vec<u8>> = recs.iter().map(|r| read(&dir, r).unwrap()).collect();
        assert_eq!(read_run(&dir, &recs).unwrap(), alone);
        assert_eq!(read_run(&dir, &recs[1..4]).unwrap(), alone[1..4]);
        let backwards: Vec<Located> = recs.iter().rev().copied().collect();
        let expected: Vec<Vec<u8>> = alone.iter().rev().cloned().collect();
        assert_eq!(read_run(&dir, &backwards).unwrap(), expected);
        drop(j);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn append_reopen_and_set_a_torn_tail_aside() {
        let dir = tmp();
        let start = Pos {
            segment: 0,
            offset: 0,
        };
        let (mut j, recs, damage) = open_collect(&dir, start, false).unwrap();
        assert!(recs.is_empty() && damage.is_empty());
        let located = j.append(&[b"one".to_vec(), b"two".to_vec()]).unwrap();
        let three = j.append(&[b"three".to_vec()]).unwrap();
        assert_eq!(read(&dir, &located[1]).unwrap(), b"two");
        drop(j);
        // A crash mid-write leaves half a record after the last one.
        {
            use std::os::unix::fs::FileExt;
            let f = OpenOptions::new()
                .write(true)
                .open(segment_path(&dir, 0))
                .unwrap();
            let mut torn = format::RECORD_MAGIC.to_vec();
            torn.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
            f.write_all_at(&torn, three[0].next.offset).unwrap();
        }
        let (mut j, recs, damage) = open_collect(&dir, start, false).unwrap();
        let payloads: Vec<&[u8]> = recs.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(payloads, [b"one".as_slice(), b"two", b"three"]);
        assert_eq!(damage.len(), 1);
        assert!(damage[0].torn_tail);
        assert_eq!(std::fs::read(&damage[0].quarantined).unwrap().len(), 10);
        // From a cursor, only what follows it.
        let (_, from, _) = open_collect(&dir, located[1].next, false).unwrap();
        assert_eq!(from.len(), 1);
        j.append(&[b"four".to_vec()]).unwrap();
        drop(j);
        let (_, recs, damage) = open_collect(&dir, start, false).unwrap();
        assert_eq!(recs.last().unwrap().1, b"four");
        assert!(damage.is_empty(), "the append went where the torn record began");
        assert_eq!(Pos::decode(&located[0].next.encode()), Some(located[0].next));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_record_in_the_middle_costs_only_itself() {
        let dir = tmp();
        let start = Pos {
            segment: 0,
            offset: 0,
        };
        let (mut j, _, _) = open_collect(&dir, start, false).unwrap();
        let recs: Vec<Located> = (0..100u32)
            .flat_map(|i| j.append(&[format!("{{\"run\":{i}}}").into_bytes()]).unwrap())
            .collect();
        drop(j);
        {
            use std::os::unix::fs::FileExt;
            let f = OpenOptions::new()
                .write(true)
                .open(segment_path(&dir, 0))
                .unwrap();
            f.write_all_at(&[0xAA], recs[50].at.offset + 14).unwrap();
        }
        let (mut j, read_back, damage) = open_collect(&dir, start, false).unwrap();
        assert_eq!(read_back.len(), 99);
        assert_eq!(damage.len(), 1);
        let d = &damage[0];
        assert!(!d.torn_tail);
        assert_eq!((d.from, d.to), (recs[50].at.offset, recs[51].at.offset));
        assert_eq!(d.kept_after, 49);
        // Appends go after the last record, not over anything readable.
        let more = j.append(&[b"{\"run\":100}".to_vec()]).unwrap();
        assert_eq!(more[0].at, recs[99].next);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn segments_roll_over_and_admitted_ones_are_deleted() {
        let dir = tmp();
        let start = Pos {
            segment: 0,
            offset: 0,
        };
        let (mut j, _, _) = open_collect(&dir, start, false).unwrap();
        j.segment_bytes = 64;
        let mut all = Vec::new();
        for i in 0..20u8 {
            all.extend(j.append(&[vec![i; 20]]).unwrap());
        }
        drop(j);
        let segs = segments(&dir).unwrap();
        assert!(segs.len() >= 5, "{segs:?}");
        assert!(all.windows(2).all(|w| w[0].at < w[1].at));
        // Everything reads back in order across segments, and from a cursor in a later one.
        let (_, recs, _) = open_collect(&dir, start, false).unwrap();
        assert_eq!(
            recs.iter().map(|(_, p)| p[0]).collect::<Vec<_>>(),
            (0..20).collect::<Vec<u8>>()
        );
        let cursor = all[12].next;
        forget_before(&dir, cursor).unwrap();
        assert_eq!(segments(&dir).unwrap()[0], cursor.segment);
        let (_, recs, _) = open_collect(&dir, cursor, false).unwrap();
        assert_eq!(
            recs.iter().map(|(_, p)| p[0]).collect::<Vec<_>>(),
            (13..20).collect::<Vec<u8>>()
        );
        assert_eq!(read(&dir, &all[19]).unwrap(), vec![19; 20]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_range_reads_across_segments_stops_where_asked_and_says_where_to_go_on() {
        let dir = tmp();
        let start = Pos {
            segment: 0,
            offset: 0,
        };
        let (mut j, _, _) = open_collect(&dir, start, false).unwrap();
        j.segment_bytes = 100;
        let all: Vec<Located> = (0..30u8)
            .flat_map(|i| j.append(&[vec![i; 20]]).unwrap())
            .collect();
        let end = all[29].next;
        let take = |from: Pos, until: Pos, n: usize| {
            let mut got = Vec::new();
            let resume = read_range(&dir, from, until, |_, p| {
                if got.len() == n {
                    return false;
                }
                got.push(p[0]);
                true
            })
            .unwrap();
            (got, resume)
        };
        let (got, resume) = take(all[3].at, end, 10);
        assert_eq!(got, (3..13).collect::<Vec<u8>>());
        assert_eq!(resume, all[13].at);
        let (got, resume) = take(resume, end, 100);
        assert_eq!(got, (13..30).collect::<Vec<u8>>());
        assert_eq!(resume, end);
        // `until` bounds the read even where more was written.
        let (got, resume) = take(all[0].at, all[5].at, 100);
        assert_eq!((got, resume), ((0..5).collect::<Vec<u8>>(), all[5].at));
        drop(j);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
