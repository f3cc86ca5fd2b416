//! `hookflow store check`: reads the intake journal, every stored run and every parked one of a
//! store that no server has open, changing nothing, and says what is intact, what is damaged (file, byte
//! range, which records) and what `serve` will do about it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::LAYOUT_VERSION;
use super::journal::{self, Pos};
use super::keys::INTAKE_CURSOR;
use super::ops::StoredRun;

/// What the check found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub store: PathBuf,
    pub layout: Option<String>,
    /// Runs in sled, and how many of them are finished.
    pub runs: u64,
    pub finished: u64,
    /// Runs accepted and still in the journal.
    pub pending: u64,
    /// Waiting runs parked outside sled until shortly before they wake.
    pub parked: u64,
    pub journal: Vec<journal::SegmentCheck>,
    /// Keys in sled whose value does not parse.
    pub unreadable: Vec<String>,
    /// Problems, each in words with what `serve` does about it.
    pub problems: Vec<String>,
    /// Notes that are not damage (a torn tail).
    pub notes: Vec<String>,
}

impl CheckReport {
    pub fn damaged(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// Checks the store in `dir` (its sled files and `dir/intake`). An error means it could not be
/// checked at all (e.g. a running server holds it).
pub fn check(dir: &Path) -> Result<CheckReport, String> {
    let mut r = CheckReport {
        store: dir.to_path_buf(),
        ..Default::default()
    };
    if !dir.join("db").exists() {
        return Err(format!("there is no store in {}", dir.display()));
    }
    let config = super::open::sled_config(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let db = config.open().map_err(|e| {
        if e.to_string().contains("lock") || e.to_string().contains("WouldBlock") {
            format!(
                "{} is open in a running hookflow: stop it to check the files, or see GET /api/store \
                 for what it found when it opened them",
                dir.display()
            )
        } else {
            format!("sled cannot open {}: {e}", dir.display())
        }
    })?;
    r.layout = db
        .get("meta:layout")
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    if !r
        .layout
        .as_deref()
        .is_some_and(|l| super::OPENS_LAYOUTS.contains(&l))
    {
        r.problems.push(format!(
            "store layout {:?}, this hookflow reads {LAYOUT_VERSION}: serve refuses to open it",
            r.layout
        ));
    }
    for item in db.scan_prefix("run:") {
        match item {
            Ok((k, v)) => match super::keys::from_json::<StoredRun>(&String::from_utf8_lossy(&k), &v)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    let id = String::from_utf8_lossy(&k["run:".len()..]).into_owned();
                    super::keys::read_run_db(&db, &id, s.run.get().as_bytes()).map_err(|e| e.to_string())
                }) {
                Ok(run) => {
                    r.runs += 1;
                    if run.finished_at.is_some() {
                        r.finished += 1;
                    }
                }
                Err(e) => {
                    let key = String::from_utf8_lossy(&k).into_owned();
                    r.problems.push(format!(
                        "{key} does not parse ({e}): serve keeps serving every other run; this one cannot be shown or run"
                    ));
                    r.unreadable.push(key);
                }
            },
            Err(e) => r.problems.push(format!("sled could not read a run: {e}")),
        }
    }
    let (parked, problems) = super::parking::check(&dir.join("parked"), &db);
    r.parked = parked;
    r.problems.extend(problems);
    let cursor = match db.get(INTAKE_CURSOR).ok().flatten() {
        Some(v) => match Pos::decode(&String::from_utf8_lossy(&v)) {
            Some(p) => p,
            None => {
                r.problems
                    .push("the intake cursor does not parse: serve refuses to open the store".into());
                return Ok(r);
            }
        },
        None => Pos {
            segment: 0,
            offset: 0,
        },
    };
    r.journal =
        journal::check(&dir.join("intake"), cursor).map_err(|e| format!("reading the journal: {e}"))?;
    for seg in &r.journal {
        r.pending += seg.records as u64;
        for &(from, to, torn, after) in &seg.damaged {
            let at = format!("{} bytes {from}..{to} ({} bytes)", seg.file.display(), to - from);
            if torn {
                r.notes.push(format!(
                    "{at}: a record a crash cut short at the very end (never acknowledged); serve sets it aside with a WARN and appends from there"
                ));
            } else {
                r.problems.push(format!(
                    "{at}: no readable record (runs in it are lost); {after} readable record(s) after it are kept. \
                     serve copies the bytes to intake/quarantine/, reports them (GET /api/store) and runs everything readable"
                ));
            }
        }
    }
    Ok(r)
}
