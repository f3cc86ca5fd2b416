//! Backups of the embedded store taken while it serves, and restoring them.
//!
//! A backup is made on the store's writer thread, the only thread that writes to sled: while it
//! copies, no write lands in sled, so the copy is one moment of the store's history — every
//! write acknowledged before the backup began is in it, none is half in it. The runs accepted
//! but not yet moved out of the intake journal are copied too (their records, read from the
//! journal), and so are the runs parked outside sled (as the sled entries they become when
//! read back). Writes wait while the copy is made (about the time it takes to write the store's
//! size to disk, compressed); accepts do not, they go to the journal. Nothing is held in memory
//! but one record at a time and the list of pending journal records the store already keeps.
//!
//! The file: gzip of `HOOKFLOW-BACKUP 1\n`, a JSON header line, then records of a one-byte tag
//! and a length-prefixed body: `K` a sled key and value, `R` a pending run's JSON, `S` the data
//! directory's URL secret, and a final `E` with the count of records and a CRC-32 of everything
//! before it, so a truncated or damaged copy is refused as a whole.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use super::keys::{INTAKE_CURSOR, run_key};
use super::ops::Inner;
use super::{LAYOUT_VERSION, SledStore, journal};
use crate::run::Run;
use crate::store::{BackupInfo, Result, RunQueue, StoreError};
use crate::time::Ts;

const MAGIC: &[u8] = b"HOOKFLOW-BACKUP 1\n";

/// Writes records with a running checksum.
struct Out<W: Write> {
    w: W,
    crc: crc32fast::Hasher,
    records: u64,
}

impl<W: Write> Out<W> {
    fn raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc.update(b);
        self.w.write_all(b)
    }
    fn record(&mut self, tag: u8, body: &[u8]) -> std::io::Result<()> {
        self.raw(&[tag])?;
        self.raw(&(body.len() as u32).to_be_bytes())?;
        self.raw(body)?;
        self.records += 1;
        Ok(())
    }
    fn kv(&mut self, k: &[u8], v: &[u8]) -> std::io::Result<()> {
        let mut body = Vec::with_capacity(4 + k.len() + v.len());
        body.extend_from_slice(&(k.len() as u32).to_be_bytes());
        body.extend_from_slice(k);
        body.extend_from_slice(v);
        self.record(b'K', &body)
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{what}: {e}"))
}

impl Inner {
    /// The copy itself, on the writer thread (see the module docs).
    pub(super) fn write_backup(&self, to: &Path, secret: Option<Vec<u8>>) -> Result<BackupInfo> {
        let file = crate::private::create_file(to).map_err(io("creating the backup file"))?;
        let mut out = Out {
            w: GzEncoder::new(BufWriter::new(file), Compression::fast()),
            crc: crc32fast::Hasher::new(),
            records: 0,
        };
        let mut info = BackupInfo {
            layout: LAYOUT_VERSION.into(),
            created_at: Ts::now(),
            hookflow: crate::BUILD_VERSION.into(),
            entries: 0,
            pending_runs: 0,
            url_secret: secret.is_some(),
        };
        let w = io("writing the backup");
        out.raw(MAGIC).map_err(&w)?;
        let mut header = serde_json::to_vec(&info).map_err(|e| StoreError::Backend(e.to_string()))?;
        header.push(b'\n');
        out.raw(&header).map_err(&w)?;
        for item in self.db.iter() {
            let (k, v) = item?;
            // The journal position is this store's own; a restored store starts a new journal.
            // So are the parking files' summaries and marks: parked runs are copied below.
            if k.as_ref() == INTAKE_CURSOR.as_bytes()
                || [super::parking::SEGS, super::parking::READS, super::parking::MARKS]
                    .iter()
                    .any(|p| k.starts_with(p.as_bytes()))
            {
                continue;
            }
            out.kv(&k, &v).map_err(&w)?;
            info.entries += 1;
        }
        // Parked runs, as the sled entries they become when read back: a restored store holds
        // them in sled, waiting, each ended at once if an exit reached it meanwhile.
        self.parking.each(|payload| {
            let Ok(rec) = serde_json::from_slice::<super::parking::Record>(payload) else {
                return Ok(());
            };
            if self.db.contains_key(run_key(&rec.id))? {
                return Ok(());
            }
            let exit =
                super::parking::Parking::exit_of(&self.db, &rec)?.map(|(reason, at)| (reason, Some(at)));
            for (k, v) in super::ops::unparked_entries(&rec, exit)? {
                out.kv(&k, &v).map_err(&w)?;
                info.entries += 1;
            }
            Ok(())
        })?;
        // Every pending run, read from the journal (memory holds only some of them).
        let (from, until) = match self.intake.pending.lock() {
            Ok(p) => (p.front(), p.end()),
            Err(_) => return Err(StoreError::Backend("intake state poisoned".into())),
        };
        let mut failed = None;
        journal::read_range(&self.intake.dir, from, until, |_, payload| {
            let Ok(head) = serde_json::from_slice::<super::intake::Head>(payload) else {
                return true; // set aside and reported at open
            };
            let step = match self.db.contains_key(run_key(&head.id)) {
                Ok(true) => Ok(()),
                Ok(false) => out
                    .record(b'R', payload)
                    .map(|()| info.pending_runs += 1)
                    .map_err(&w),
                Err(e) => Err(e.into()),
            };
            match step {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })
        .map_err(io("reading the intake journal"))?;
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(s) = secret {
            out.record(b'S', &s).map_err(&w)?;
        }
        let mut end = out.records.to_be_bytes().to_vec();
        end.extend_from_slice(&out.crc.clone().finalize().to_be_bytes());
        out.w.write_all(b"E").map_err(&w)?;
        out.w.write_all(&end).map_err(&w)?;
        let buf = out.w.finish().map_err(&w)?;
        let file = buf.into_inner().map_err(|e| StoreError::Backend(e.to_string()))?;
        file.sync_all().map_err(&w)?;
        Ok(info)
    }
}

impl SledStore {
    /// Writes a consistent copy of the store — and of the data directory's URL secret, if
    /// there is one — to `to`, while the store keeps serving.
    pub async fn backup(&self, to: &Path) -> Result<BackupInfo> {
        let secret = self
            .dir
            .parent()
            .map(|d| d.join("secret"))
            .and_then(|p| std::fs::read(p).ok());
        let to = to.to_path_buf();
        self.submit(false, super::writer::Admit::No, move |inner, _| {
            inner.write_backup(&to, secret)
        })
        .await
    }

    /// Restores `from` into the data directory `data` (its `store/`, and `secret` when the
    /// backup holds one). Refuses a directory that already holds a store.
    pub async fn restore(from: &Path, data: &Path) -> Result<BackupInfo> {
        let store_dir = data.join("store");
        if store_dir.join("db").exists() || store_dir.join("conf").exists() {
            return Err(StoreError::Backend(format!(
                "{} already holds a store; restore into an empty data directory",
                store_dir.display()
            )));
        }
        let (from, dir) = (from.to_path_buf(), store_dir.clone());
        let read = tokio::task::spawn_blocking(move || read_into(&from, &dir))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let (info, runs, secret) = match read {
            Ok(r) => r,
            Err(e) => {
                // Nothing half-restored is left behind.
                let _ = std::fs::remove_dir_all(&store_dir);
                let _ = std::fs::remove_dir_all(data.join("restore-staging"));
                return Err(e);
            }
        };
        if let Some(s) = secret {
            crate::private::write_file(&data.join("secret"), &s).map_err(io("writing the URL secret"))?;
        }
        // The pending runs go in as they came: through the journal, in their order. The sled
        // that `read_into` wrote is dropped, but its flusher thread lets go of the file lock a
        // moment later (under load, later than the next open: CI once failed both backup
        // tests with "another process holds it"), so the lock is waited for, briefly.
        let mut tries = 0;
        let store = loop {
            match SledStore::open(&store_dir, super::Durability::Flush) {
                Err(e) if tries < 50 && e.to_string().contains("another process holds it") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => break other?,
            }
        };
        let mut restored = info;
        restored.pending_runs = 0;
        for path in runs.iter() {
            let json = std::fs::read(path).map_err(io("reading a staged run"))?;
            let run: Run = serde_json::from_slice(&json)
                .map_err(|e| StoreError::Corrupt(format!("a pending run in the backup: {e}")))?;
            store.insert_run(&run).await?;
            restored.pending_runs += 1;
        }
        store.sync().await?;
        let _ = std::fs::remove_dir_all(data.join("restore-staging"));
        Ok(restored)
    }
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// Checks the whole file, writing sled's entries into a fresh sled at `dir` and the pending
/// runs to files beside it (so a large backup is never held in memory).
type Read3 = (BackupInfo, Vec<PathBuf>, Option<Vec<u8>>);
fn read_into(from: &Path, dir: &Path) -> Result<Read3> {
    let bad = |why: String| StoreError::Corrupt(format!("{}: {why}", from.display()));
    let file = File::open(from).map_err(|e| bad(e.to_string()))?;
    let mut r = BufReader::new(GzDecoder::new(BufReader::new(file)));
    let mut crc = crc32fast::Hasher::new();
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic)
        .map_err(|e| bad(format!("not a hookflow backup ({e})")))?;
    if magic != MAGIC {
        return Err(bad("not a hookflow backup".into()));
    }
    crc.update(&magic);
    let mut header = Vec::new();
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).map_err(|e| bad(e.to_string()))?;
        header.push(b[0]);
        if b[0] == b'\n' || header.len() > 64 * 1024 {
            break;
        }
    }
    crc.update(&header);
    let mut info: BackupInfo = serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
    if !super::OPENS_LAYOUTS.contains(&info.layout.as_str()) {
        return Err(bad(format!(
            "taken from store layout {}; this hookflow reads layout {LAYOUT_VERSION}",
            info.layout
        )));
    }
    crate::private::create_dir(dir).map_err(|e| bad(e.to_string()))?;
    let staged = dir.with_file_name("restore-staging");
    crate::private::create_dir(&staged).map_err(|e| bad(e.to_string()))?;
    let db = super::open::sled_config(dir)
        .map_err(|e| bad(e.to_string()))?
        .open()?;
    let (mut records, mut runs, mut secret) = (0u64, Vec::new(), None);
    info.entries = 0;
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)
            .map_err(|_| bad("cut short: no end record".into()))?;
        if tag[0] == b'E' {
            let mut end = [0u8; 12];
            r.read_exact(&mut end)
                .map_err(|_| bad("cut short in the end record".into()))?;
            let n = u64::from_be_bytes(end[..8].try_into().unwrap());
            let sum = u32::from_be_bytes(end[8..].try_into().unwrap());
            if n != records || sum != crc.finalize() {
                return Err(bad("damaged: its checksum does not match".into()));
            }
            break;
        }
        let len = read_u32(&mut r).map_err(|_| bad("cut short".into()))?;
        let mut body = vec![0u8; len as usize];
        r.read_exact(&mut body).map_err(|_| bad("cut short".into()))?;
        crc.update(&tag);
        crc.update(&len.to_be_bytes());
        crc.update(&body);
        records += 1;
        match tag[0] {
            b'K' if body.len() >= 4 => {
                let klen = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
                let (k, v) = body[4..].split_at(klen.min(body.len() - 4));
                db.insert(k, v)?;
                info.entries += 1;
            }
            b'R' => {
                let p = staged.join(format!("{:012}.json", runs.len()));
                std::fs::write(&p, &body).map_err(|e| bad(e.to_string()))?;
                runs.push(p);
            }
            b'S' => secret = Some(body),
            t => return Err(bad(format!("unknown record {t}"))),
        }
    }
    db.flush()?;
    info.url_secret = secret.is_some();
    Ok((info, runs, secret))
}
