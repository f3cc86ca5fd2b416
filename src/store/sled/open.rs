//! Opening a store: sled, the layout version, the intake journal read back (and its damage set
//! aside), leases of a previous process released, and the writer threads started.

use super::*;

/// zstd level of sled's pages, for a store made with `--store-compression`: runs of one flow
/// are much alike, and a page of them compresses to about a sixth (BENCHMARKS.md, "A compact
/// store").
const COMPRESSION_LEVEL: i32 = 3;

/// Whether sled compresses this store's pages: as its settings file says; a new store as
/// `compress_new` asks, and then marked so by a file `compressed` beside sled's, which tells
/// when sled's settings file is lost (a store with data and no mark is not compressed). sled
/// cannot change this across restarts.
fn compressed(dir: &Path, compress_new: bool) -> std::io::Result<bool> {
    let mark = dir.join("compressed");
    if let Ok(conf) = std::fs::read(dir.join("conf"))
        && let Some(line) = String::from_utf8_lossy(&conf)
            .lines()
            .find(|l| l.starts_with("use_compression:"))
    {
        return Ok(line.trim_end().ends_with("true"));
    }
    if mark.exists() {
        return Ok(true);
    }
    if dir.join("db").exists() || !compress_new {
        return Ok(false);
    }
    crate::private::write_file(
        &mark,
        b"sled compresses this store's pages (zstd); kept so if sled's settings file is lost\n",
    )?;
    Ok(true)
}

/// sled's settings for the store in `dir`, as hookflow opens it (for the store itself, its
/// checks and restores, and tools and tests that read a store's sled directly).
pub fn sled_config(dir: &Path) -> std::io::Result<sled::Config> {
    config(dir, false)
}

fn config(dir: &Path, compress_new: bool) -> std::io::Result<sled::Config> {
    Ok(sled::Config::new()
        .path(dir)
        .use_compression(compressed(dir, compress_new)?)
        .compression_factor(COMPRESSION_LEVEL))
}

impl SledStore {
    pub(super) fn open_in(
        dir: &Path,
        durability: Durability,
        cache_bytes: u64,
        temp_dir: Option<PathBuf>,
        window: usize,
        compress_new: bool,
    ) -> Result<SledStore> {
        let backend = |e: std::io::Error| StoreError::Backend(format!("{}: {e}", dir.display()));
        crate::private::create_dir(dir).map_err(backend)?;
        refuse_a_full_disk(dir)?;
        let db = config(dir, compress_new)
            .map_err(backend)?
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|e| explain_open_error(dir, &e))?;
        match db.get("meta:layout")? {
            None => {
                db.insert("meta:layout", LAYOUT_VERSION)?;
            }
            Some(v) if v.as_ref() == LAYOUT_VERSION.as_bytes() => {}
            // Read as it is (whole run records); marked, so an older hookflow refuses it.
            Some(v) if super::OPENS_LAYOUTS.iter().any(|l| v.as_ref() == l.as_bytes()) => {
                db.insert("meta:layout", LAYOUT_VERSION)?;
            }
            Some(v) => return Err(layout_mismatch(dir, &String::from_utf8_lossy(&v))),
        }
        if db.get(super::keys::RUN_COUNT)?.is_none() {
            // A store from before the count was kept: counted once.
            let n = db.scan_prefix("run:").keys().count() as u64;
            db.insert(super::keys::RUN_COUNT, &n.to_be_bytes())?;
        }
        let fsync = durability == Durability::Fsync;
        let data_file =
            if fsync {
                Some(File::open(dir.join("db")).map_err(|e| {
                    StoreError::Backend(format!("cannot open sled's data file for fsync: {e}"))
                })?)
            } else {
                None
            };

        let journal_dir = dir.join("intake");
        let (journal, pending, damage) = replay_journal(&db, &journal_dir, fsync, window)?;

        let parking = super::parking::Parking::open(dir.join("parked"), &db)?;
        let inner = Arc::new(Inner {
            db,
            parking,
            data_file,
            flushes: Default::default(),
            intake: Intake {
                dir: journal_dir,
                pending: Mutex::new(pending),
                writes: Default::default(),
            },
            appender: Appender::new(journal, fsync),
            leases: Default::default(),
            claim_short: Default::default(),
        });
        let mut view = View::new(&inner.db);
        let released = Inner::release_orphaned_leases(&mut view)?;
        if let (Some(batch), _) = view.into_batch() {
            inner.db.apply_batch(batch)?;
        }
        if released > 0 {
            tracing::info!(
                runs = released,
                "resuming runs that were in progress when the previous process stopped"
            );
        }
        inner.sync().map_err(StoreError::Backend)?;

        let (tx, rx) = mpsc::channel();
        let w = Arc::clone(&inner);
        let writer = std::thread::Builder::new()
            .name("hookflow-store-writer".into())
            .spawn(move || writer_loop(w, rx))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(SledStore {
            inner,
            damage,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            temp_dir,
            dir: dir.to_path_buf(),
            me: Mutex::new(None),
        })
    }
}

/// Opens the intake journal: every readable record past sled's cursor whose run is not in sled
/// yet is pending again (memory holds a bounded view of them, see `Pending`); what cannot be
/// read is set aside and reported as damage, harming only itself.
fn replay_journal(
    db: &sled::Db,
    journal_dir: &Path,
    fsync: bool,
    window: usize,
) -> Result<(Journal, Pending, Vec<Damage>)> {
    // Whatever the journal holds past the cursor is pending again.
    let cursor = match db.get(INTAKE_CURSOR)? {
        Some(v) => Pos::decode(&String::from_utf8_lossy(&v))
            .ok_or_else(|| StoreError::Corrupt("bad intake cursor".into()))?,
        None => Pos {
            segment: 0,
            offset: 0,
        },
    };
    // Every readable record past the cursor is pending again. Memory holds a bounded view
    // of them (see `Pending`); a record that checks out but does not parse harms only
    // itself.
    let mut pending = Pending::with_window(window);
    let mut unparsed = Vec::new();
    let mut lookup_failed = None;
    let (journal, found) = Journal::open(journal_dir, cursor, fsync, |rec, payload| {
        match from_json::<Head>("intake record", payload) {
            Ok(head) => match db.contains_key(run_key(&head.id)) {
                Ok(false) => pending.push(PendingRun { head, rec }),
                Ok(true) => {}
                Err(e) => lookup_failed = Some(e),
            },
            Err(e) => unparsed.push((rec, payload.to_vec(), e)),
        }
    })
    .map_err(|e| StoreError::Backend(format!("{}: {e}", journal_dir.display())))?;
    if let Some(e) = lookup_failed {
        return Err(e.into());
    }
    let segment_file = |seg: u64| journal_dir.join(format!("{seg:016}.log")).display().to_string();
    let mut damage: Vec<Damage> = found
        .into_iter()
        .map(|d| Damage {
            file: segment_file(d.segment),
            from: d.from,
            to: d.to,
            torn_tail: d.torn_tail,
            kept_after: d.kept_after,
            quarantined: d.quarantined.display().to_string(),
            detail: if d.torn_tail {
                "a record cut short at the end of the intake journal (never acknowledged)".into()
            } else {
                "bytes of the intake journal that hold no readable run".into()
            },
        })
        .collect();
    for (rec, payload, e) in unparsed {
        tracing::error!(segment = rec.at.segment, offset = rec.at.offset, error = %e, "an intake record does not parse; it was set aside");
        let file = journal_dir
            .join("quarantine")
            .join(format!("{:016}-{}.json", rec.at.segment, rec.at.offset));
        let _ = crate::private::create_dir(&journal_dir.join("quarantine"))
            .and_then(|()| std::fs::write(&file, &payload));
        damage.push(Damage {
            file: segment_file(rec.at.segment),
            from: rec.at.offset,
            to: rec.next.offset,
            torn_tail: false,
            kept_after: 0,
            quarantined: file.display().to_string(),
            detail: e.to_string(),
        });
    }
    Ok((journal, pending, damage))
}

/// Why sled would not open `dir`, in words a person can act on.
/// Space sled needs to open a store: it writes a snapshot while opening.
const ROOM_TO_OPEN: u64 = 4 * 1024 * 1024;

/// sled opened on a full disk leaves an empty snapshot file behind, after which every open
/// fails with "Read corrupted data", room or not (seen in the full-disk drill): so a full disk
/// is found before sled touches anything.
fn refuse_a_full_disk(dir: &Path) -> Result<()> {
    let Ok(fs) = rustix::fs::statvfs(dir) else {
        return Ok(());
    };
    let free = fs.f_bavail.saturating_mul(fs.f_frsize);
    if free < ROOM_TO_OPEN {
        return Err(StoreError::Full(format!(
            "cannot open the store in {}: the disk is full ({free} bytes free; opening needs {ROOM_TO_OPEN}). Nothing is damaged: free space on that file system and start hookflow again (it exits with status 75, so a supervisor restarts it)",
            dir.display()
        )));
    }
    Ok(())
}

fn explain_open_error(dir: &Path, e: &sled::Error) -> StoreError {
    let conf = dir.join("conf");
    let conf_damaged = std::fs::read(&conf)
        .is_ok_and(|b| b.len() < 4 || crc32fast::hash(&b[..b.len() - 4]).to_le_bytes() != b[b.len() - 4..]);
    if conf_damaged {
        return StoreError::Corrupt(format!(
            "the store's settings file {c} is damaged (its checksum does not match). It holds only sled's settings, which hookflow leaves at sled's defaults, so it can be made again: move it aside (mv {c} {c}.damaged) and start hookflow again; the runs in {d} are not touched. ({e})",
            c = conf.display(),
            d = dir.join("db").display(),
        ));
    }
    if let sled::Error::Io(io) = e
        && io.kind() == std::io::ErrorKind::StorageFull
    {
        return StoreError::Full(format!(
            "cannot open the store in {}: the disk is full ({io}). Nothing is damaged: free space on that file system and start hookflow again (it exits with status 75, so a supervisor restarts it)",
            dir.display()
        ));
    }
    let text = e.to_string();
    if text.contains("could not acquire lock") {
        return StoreError::Backend(format!(
            "cannot open the store in {}: another process holds it (is another hookflow using the same --data?)",
            dir.display()
        ));
    }
    StoreError::Corrupt(format!(
        "cannot open the store in {}: {text}. If its files were damaged (a disk fault, an interrupted copy), restore the data directory from a backup",
        dir.display()
    ))
}

/// Why a store of another layout is not opened, and what to do: a newer store needs the newer
/// hookflow that wrote it; an older one the release that wrote it (to take a backup or drain
/// it) — nothing is changed either way.
fn layout_mismatch(dir: &Path, found: &str) -> StoreError {
    let ours: u32 = LAYOUT_VERSION.parse().unwrap_or(0);
    let why = match found.parse::<u32>() {
        Ok(n) if n > ours => format!(
            "was written by a newer hookflow (store layout {n}; this {} reads layout {ours}). \
             Run the newer release on it; this one changed nothing",
            crate::BUILD_VERSION
        ),
        Ok(n) => format!(
            "has store layout {n}, from an earlier hookflow release that this {} cannot convert \
             (it reads layout {ours}). Let the release that wrote it finish its runs, or keep it \
             serving; this one changed nothing",
            crate::BUILD_VERSION
        ),
        Err(_) => format!("has an unreadable layout version `{found}`"),
    };
    StoreError::Corrupt(format!("the store in {} {why}", dir.display()))
}
