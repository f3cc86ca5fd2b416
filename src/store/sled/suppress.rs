//! The suppression list in sled: `supp:{email}\0{list or *}` → [`Suppression`] (JSON). One
//! address's entries sit together, so the check at send time is one short prefix scan per
//! recipient; the list pages in address order.

use async_trait::async_trait;

use super::SledStore;
use super::keys::{from_json, to_json};
use super::ops::get;
use super::segments;
use super::view::View;
use crate::event::Origin;
use crate::segment::{SegmentChange, SegmentOp};
use crate::store::Result;
use crate::store::suppress::{SuppressionQuery, Suppressions};
use crate::suppression::{EVERY_LIST, Lifted, Suppression};
use crate::time::Ts;

const PREFIX: &str = "supp:";

fn key(email: &str, scope: &str) -> String {
    format!("{PREFIX}{email}\0{scope}")
}

/// Writes `entries` into the commit group; how many took effect (see
/// [`Suppressions::suppress`]).
pub(super) fn suppress(view: &mut View<'_>, entries: &[Suppression]) -> Result<usize> {
    let mut n = 0;
    for e in entries {
        let k = key(&e.email, e.scope());
        let active = get::<Suppression>(view, &k)
            .ok()
            .flatten()
            .is_some_and(|s| s.lifted.is_none());
        if !active {
            view.insert(k, to_json(e)?);
            n += 1;
        }
    }
    Ok(n)
}

fn lift(view: &mut View<'_>, email: &str, list: Option<&str>, reason: &str) -> Result<bool> {
    let k = key(email, list.unwrap_or(EVERY_LIST));
    match get::<Suppression>(view, &k)? {
        Some(mut s) if s.lifted.is_none() => {
            s.lifted = Some(Lifted {
                at: Ts::now(),
                reason: reason.to_string(),
            });
            view.insert(k, to_json(&s)?);
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[async_trait]
impl Suppressions for SledStore {
    async fn suppressed(&self, emails: &[String], list: Option<&str>) -> Result<Vec<Suppression>> {
        let (emails, list) = (emails.to_vec(), list.map(str::to_string));
        self.read(move |i| {
            let mut out = Vec::new();
            for email in &emails {
                for item in i.db.scan_prefix(format!("{PREFIX}{email}\0")) {
                    let (k, v) = item?;
                    let s: Suppression = from_json(&String::from_utf8_lossy(&k), &v)?;
                    if s.applies_to(list.as_deref()) {
                        out.push(s);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn suppress(&self, entries: Vec<Suppression>) -> Result<usize> {
        self.submit(true, super::writer::Admit::No, move |_, v| suppress(v, &entries))
            .await
    }

    async fn lift(&self, email: &str, list: Option<&str>, reason: &str) -> Result<bool> {
        let (email, list, reason) = (email.to_string(), list.map(str::to_string), reason.to_string());
        self.submit(true, super::writer::Admit::No, move |_, v| {
            lift(v, &email, list.as_deref(), &reason)
        })
        .await
    }

    async fn suppression_list(&self, query: &SuppressionQuery) -> Result<Vec<Suppression>> {
        let query = query.clone();
        self.read(move |i| {
            let start = match &query.after {
                // The first key after the entry `after` names.
                Some(a) => match a.split_once(' ') {
                    Some((email, scope)) => format!("{}\0", key(email, scope)),
                    None => key(a, ""),
                },
                None => PREFIX.to_string(),
            };
            let mut out = Vec::new();
            for item in i.db.range(start.as_bytes()..) {
                let (k, v) = item?;
                if !k.starts_with(PREFIX.as_bytes()) || out.len() >= query.limit {
                    break;
                }
                // A damaged entry harms only itself: it is left out, and said so.
                match from_json::<Suppression>(&String::from_utf8_lossy(&k), &v) {
                    Ok(s) if query.matches(&s) => out.push(s),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "a suppression entry could not be read; left out of the list"),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn unsubscribe(&self, entry: Suppression, origin: Origin) -> Result<Vec<SegmentChange>> {
        self.submit(true, super::writer::Admit::No, move |_, v| {
            suppress(v, std::slice::from_ref(&entry))?;
            let op = SegmentOp {
                segment: entry.list.clone().unwrap_or_default(),
                email: entry.email.clone(),
                add: false,
                attributes: Default::default(),
            };
            segments::change_segments(v, &[op], Some(&(origin, 1)))
        })
        .await
    }
}
