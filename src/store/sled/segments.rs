//! Segments, the event outbox and schedule state in sled. Writes run in the writer thread
//! through the commit group's [`View`], so a segment change, the events it raises and the run
//! that caused it land in one atomic batch.
//!
//! | key                           | value                                   |
//! |-------------------------------|-----------------------------------------|
//! | `contact:{email}`             | [`Contact`]                             |
//! | `member:{segment}\0{email}`   | when it joined (ms, u64 BE)             |
//! | `cseg:{email}\0{segment}`     | empty: the contact's segments           |
//! | `segcount:{segment}`          | member count (u64 BE)                   |
//! | `evt:{event id}`              | [`Event`] waiting in the outbox         |
//! | `fired:{flow}`                | last cron firing (ms, u64 BE)           |
//! | `dedupe:{flow}\0{key}`        | [`Seen`]: first run id and expiry       |

use super::keys::{from_json, to_json};
use super::ops::{Inner, NewRun, get};
use super::view::View;
use crate::event::{Event, Origin};
use crate::run::Run;
use crate::segment::{self, Change, Contact, ContactView, Member, SegmentChange, SegmentInfo, SegmentOp};
use crate::store::{Result, StoreError};
use crate::time::Ts;

fn contact_key(email: &str) -> String {
    format!("contact:{email}")
}
fn member_prefix(segment: &str) -> String {
    format!("member:{segment}\0")
}
fn cseg_prefix(email: &str) -> String {
    format!("cseg:{email}\0")
}
fn count_key(segment: &str) -> String {
    format!("segcount:{segment}")
}
fn event_key(id: &str) -> String {
    format!("evt:{id}")
}
fn dedupe_key(flow: &str, key: &str) -> String {
    format!("dedupe:{flow}\0{key}")
}
fn firing_key(flow: &str) -> String {
    format!("fired:{flow}")
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn bump(view: &mut View<'_>, key: &str, delta: i64) -> Result<()> {
    let n = view.get(key.as_bytes())?.map(|b| be_u64(&b)).unwrap_or(0);
    let n = n.saturating_add_signed(delta);
    view.insert(key.as_bytes(), n.to_be_bytes().to_vec());
    Ok(())
}

/// Removes dedupe keys found expired, unless renewed meanwhile.
pub(super) fn expire_dedupe(view: &mut View<'_>, keys: &[Vec<u8>], now: Ts) -> Result<usize> {
    let mut n = 0;
    for k in keys {
        if let Some(b) = view.get(k)? {
            let seen: Seen = from_json("dedupe", &b)?;
            if seen.expires <= now.0 {
                view.remove(k.clone());
                n += 1;
            }
        }
    }
    Ok(n)
}

pub(super) fn put_event(view: &mut View<'_>, event: &Event) -> Result<()> {
    view.insert(event_key(&event.id), to_json(event)?);
    Ok(())
}

/// Applies `ops` in order; raises `segment.added`/`segment.removed` into the outbox from
/// `origin` when given.
pub(super) fn change_segments(
    view: &mut View<'_>,
    ops: &[SegmentOp],
    origin: Option<&(Origin, u32)>,
) -> Result<Vec<SegmentChange>> {
    let now = Ts::now();
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let ck = contact_key(&op.email);
        let existing: Option<Contact> = get(view, &ck)?;
        let known = existing.is_some();
        let mk = format!("{}{}", member_prefix(&op.segment), op.email);
        let was_member = view.contains(mk.as_bytes())?;
        let (contact, _, change) = segment::apply(existing, was_member, op, now);
        // Removing someone unknown does not create a contact.
        if known || change != Change::NotMember {
            view.insert(ck, to_json(&contact)?);
        }
        let csk = format!("{}{}", cseg_prefix(&op.email), op.segment);
        match change {
            Change::Added => {
                view.insert(mk, now.0.to_be_bytes().to_vec());
                view.insert(csk, Vec::new());
                bump(view, &count_key(&op.segment), 1)?;
            }
            Change::Removed => {
                view.remove(mk);
                view.remove(csk);
                bump(view, &count_key(&op.segment), -1)?;
            }
            Change::Updated | Change::NotMember => {}
        }
        let sc = SegmentChange {
            segment: op.segment.clone(),
            email: op.email.clone(),
            change,
            contact,
        };
        if let (Some((kind, data)), Some((origin, depth))) = (sc.event(), origin) {
            put_event(view, &Event::new(kind, origin.clone(), *depth, data))?;
        }
        out.push(sc);
    }
    Ok(out)
}

/// A remembered delivery.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Seen {
    run_id: String,
    expires: u64,
}

impl Inner {
    pub(super) fn insert_run_once(
        &self,
        view: &mut View<'_>,
        run: &Run,
        key: &str,
        expires: Ts,
    ) -> Result<Option<String>> {
        let k = dedupe_key(&run.flow, key);
        if let Some(seen) = get::<Seen>(view, &k)?
            && seen.expires > Ts::aged_now().0
        {
            return Ok(Some(seen.run_id));
        }
        self.insert_run(view, new_run(run)?)?;
        let seen = Seen {
            run_id: run.id.clone(),
            expires: expires.0,
        };
        view.insert(k, to_json(&seen)?);
        Ok(None)
    }

    /// Keys whose window is over, for [`expire_dedupe`].
    pub(super) fn expired_dedupe(&self, now: Ts) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix("dedupe:") {
            let (k, v) = item?;
            let seen: Seen = from_json(&String::from_utf8_lossy(&k), &v)?;
            if seen.expires <= now.0 {
                out.push(k.to_vec());
            }
        }
        Ok(out)
    }

    /// Queues the runs an event triggers and removes it from the outbox. An event already
    /// dispatched (by another worker or before a crash) is left alone.
    pub(super) fn dispatch_event(
        &self,
        view: &mut View<'_>,
        event_id: &str,
        runs: &[Run],
        exits: &[crate::store::ExitMatch],
    ) -> Result<Vec<crate::store::ExitedRun>> {
        let key = event_key(event_id);
        if !view.contains(key.as_bytes())? {
            return Ok(Vec::new());
        }
        for run in runs {
            self.insert_run(view, new_run(run)?)?;
        }
        let exited = self.exit_runs(view, exits)?;
        view.remove(key);
        Ok(exited)
    }

    pub(super) fn record_firing(
        &self,
        view: &mut View<'_>,
        flow: &str,
        at: Ts,
        run: Option<&Run>,
    ) -> Result<bool> {
        let key = firing_key(flow);
        if let Some(b) = view.get(key.as_bytes())?
            && be_u64(&b) >= at.0
        {
            return Ok(false);
        }
        view.insert(key, at.0.to_be_bytes().to_vec());
        if let Some(run) = run {
            self.insert_run(view, new_run(run)?)?;
        }
        Ok(true)
    }

    pub(super) fn pending_events(&self, limit: usize) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix("evt:").take(limit) {
            let (k, v) = item?;
            out.push(from_json(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    pub(super) fn segments(&self) -> Result<Vec<SegmentInfo>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix("segcount:") {
            let (k, v) = item?;
            out.push(SegmentInfo {
                name: String::from_utf8_lossy(&k["segcount:".len()..]).into_owned(),
                members: be_u64(&v),
            });
        }
        Ok(out)
    }

    fn read_contact(&self, email: &str) -> Result<Option<Contact>> {
        let key = contact_key(email);
        match self.db.get(&key)? {
            Some(b) => Ok(Some(from_json(&key, &b)?)),
            None => Ok(None),
        }
    }

    pub(super) fn segment_members(
        &self,
        segment: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Member>> {
        let prefix = member_prefix(segment);
        let start = match after {
            // The first key after `after`: append the smallest byte.
            Some(a) => format!("{prefix}{a}\0"),
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for item in self.db.range(start.as_bytes()..) {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) || out.len() >= limit {
                break;
            }
            let email = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let contact = self
                .read_contact(&email)?
                .ok_or_else(|| StoreError::Corrupt(format!("member {email} of {segment} has no contact")))?;
            out.push(Member {
                contact,
                added_at: Ts(be_u64(&v)),
            });
        }
        Ok(out)
    }

    pub(super) fn segment_added_since(&self, segment: &str, since: Ts) -> Result<u64> {
        let mut n = 0;
        for v in self.db.scan_prefix(member_prefix(segment).as_bytes()).values() {
            if be_u64(&v?) >= since.0 {
                n += 1;
            }
        }
        Ok(n)
    }

    pub(super) fn contact(&self, email: &str) -> Result<Option<ContactView>> {
        let Some(contact) = self.read_contact(email)? else {
            return Ok(None);
        };
        let prefix = cseg_prefix(email);
        let mut segments = Vec::new();
        for item in self.db.scan_prefix(prefix.as_bytes()).keys() {
            let k = item?;
            segments.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(Some(ContactView { contact, segments }))
    }

    pub(super) fn last_firing(&self, flow: &str) -> Result<Option<Ts>> {
        Ok(self.db.get(firing_key(flow))?.map(|b| Ts(be_u64(&b))))
    }
}

fn new_run(run: &Run) -> Result<NewRun> {
    Ok(NewRun {
        due: run.created_at,
        id: run.id.clone(),
        flow: run.flow.clone(),
        order_key: run.order_key.clone(),
        exit_keys: run.exit_keys.clone(),
        json: to_json(run)?,
    })
}
