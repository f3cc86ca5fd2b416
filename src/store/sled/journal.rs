//! The intake journal: where accepted runs wait, durably, until the engine first claims them.
//!
//! Accepting a run appends one record to the current segment file — no sled write on the
//! request path. Records are `[len: u32 LE][crc32: u32 LE][run JSON]`. A group of appends is
//! written with one `write` and answered after it (process-kill safe); with
//! [`Durability::Fsync`](super::Durability) after an `fdatasync` too. With `Flush`, a
//! background thread `fdatasync`s the current segment every half second, like sled's own
//! flusher, off the path of the appends.
//!
//! The engine *admits* runs from the journal into sled, oldest first, as it claims them. The
//! admitted prefix is a cursor `(segment, offset)` stored in sled in the same atomic batch as
//! the admitted runs, so after a crash every record past the cursor is pending again and none
//! before it is. Segments wholly before a cursor that sled has flushed are deleted.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Segments are closed at about this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: usize = 8;
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

/// A record read back at open: where it lies, and its payload.
pub type Record = (Located, Vec<u8>);

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
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(segment_path(dir, segment))?;
    if file.metadata()?.len() < size {
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

impl Journal {
    /// Opens the journal in `dir` and returns every valid record from `cursor` on, in order,
    /// with its payload. A torn record at the end of the last segment (a crash mid-write) is
    /// cut off.
    pub fn open(dir: &Path, cursor: Pos, fsync_each: bool) -> io::Result<(Journal, Vec<Record>)> {
        crate::private::create_dir(dir)?;
        let segs = segments(dir)?;
        let mut records = Vec::new();
        let mut end = Pos {
            segment: cursor.segment,
            offset: 0,
        };
        for (i, &seg) in segs.iter().enumerate() {
            if seg < cursor.segment {
                continue;
            }
            let last = i + 1 == segs.len();
            let mut bytes = Vec::new();
            File::open(segment_path(dir, seg))?.read_to_end(&mut bytes)?;
            let mut off = if seg == cursor.segment {
                cursor.offset as usize
            } else {
                0
            };
            let valid_end = loop {
                if off + HEADER > bytes.len() {
                    break off;
                }
                let len = u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes")) as usize;
                if len == 0 {
                    break off; // the preallocated, never written rest of the segment
                }
                let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().expect("4 bytes"));
                let body = off + HEADER;
                if body + len > bytes.len() || crc32fast::hash(&bytes[body..body + len]) != crc {
                    break off;
                }
                let at = Pos {
                    segment: seg,
                    offset: off as u64,
                };
                let next = Pos {
                    segment: seg,
                    offset: (body + len) as u64,
                };
                records.push((
                    Located {
                        at,
                        len: len as u32,
                        next,
                    },
                    bytes[body..body + len].to_vec(),
                ));
                off = body + len;
            };
            if bytes[valid_end..].iter().any(|b| *b != 0) {
                if !last {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("intake segment {seg} is corrupt at byte {valid_end}"),
                    ));
                }
                tracing::warn!(
                    segment = seg,
                    at = valid_end,
                    "cutting a torn record off the intake journal"
                );
                OpenOptions::new()
                    .write(true)
                    .open(segment_path(dir, seg))?
                    .set_len(valid_end as u64)?;
            }
            end = Pos {
                segment: seg,
                offset: valid_end as u64,
            };
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
        Ok((journal, records))
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
                offset: 0,
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
            buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            buf.extend_from_slice(p);
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

/// Reads one record's payload (for admission and for showing a pending run).
pub fn read(dir: &Path, rec: &Located) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = File::open(segment_path(dir, rec.at.segment))?;
    let mut buf = vec![0; rec.len as usize];
    file.read_exact_at(&mut buf, rec.at.offset + HEADER as u64)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "hookflow-journal-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn append_reopen_and_cut_a_torn_tail() {
        let dir = tmp();
        let start = Pos {
            segment: 0,
            offset: 0,
        };
        let (mut j, recs) = Journal::open(&dir, start, false).unwrap();
        assert!(recs.is_empty());
        let located = j.append(&[b"one".to_vec(), b"two".to_vec()]).unwrap();
        j.append(&[b"three".to_vec()]).unwrap();
        assert_eq!(read(&dir, &located[1]).unwrap(), b"two");
        drop(j);
        // A crash mid-write leaves half a record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(&dir, 0))
            .unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (mut j, recs) = Journal::open(&dir, start, false).unwrap();
        let payloads: Vec<&[u8]> = recs.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(payloads, [b"one".as_slice(), b"two", b"three"]);
        // From a cursor, only what follows it.
        let (_, from) = Journal::open(&dir, located[1].next, false).unwrap();
        assert_eq!(from.len(), 1);
        j.append(&[b"four".to_vec()]).unwrap();
        drop(j);
        let (_, recs) = Journal::open(&dir, start, false).unwrap();
        assert_eq!(recs.last().unwrap().1, b"four");
        assert_eq!(Pos::decode(&located[0].next.encode()), Some(located[0].next));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn segments_roll_over_and_admitted_ones_are_deleted() {
        let dir = tmp();
        let start = Pos {
            segment: 0,
            offset: 0,
        };
        let (mut j, _) = Journal::open(&dir, start, false).unwrap();
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
        let (_, recs) = Journal::open(&dir, start, false).unwrap();
        assert_eq!(
            recs.iter().map(|(_, p)| p[0]).collect::<Vec<_>>(),
            (0..20).collect::<Vec<u8>>()
        );
        let cursor = all[12].next;
        forget_before(&dir, cursor).unwrap();
        assert_eq!(segments(&dir).unwrap()[0], cursor.segment);
        let (_, recs) = Journal::open(&dir, cursor, false).unwrap();
        assert_eq!(
            recs.iter().map(|(_, p)| p[0]).collect::<Vec<_>>(),
            (13..20).collect::<Vec<u8>>()
        );
        assert_eq!(read(&dir, &all[19]).unwrap(), vec![19; 20]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
