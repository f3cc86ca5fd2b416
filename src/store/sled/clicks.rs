//! Tracked messages and their clicks in sled:
//!
//! - `clkm:{message}` → [`Message`] (JSON), and `clkt:{sent_at}:{message}` → `` to prune by age;
//! - `clk:{message}\0{at}{id}` → [`Click`] (a run's clicks sit together: a message's key
//!   starts with its run's id), and `clkp:{at}{id}` → the click's key while it is pending;
//! - `clkf:{message}\0{link}` → `` once a person clicked that link of that message;
//! - `clkn:{flow}\0{link}` → [`LinkCount`].
//!
//! Times are zero-padded milliseconds, so keys sort by time.

use async_trait::async_trait;

use super::SledStore;
use super::keys::{from_json, to_json};
use super::ops::get;
use super::segments;
use super::view::View;
use crate::clicks::{BURST, Click, Judged, LinkCount, MAX_CLICKS_PER_MESSAGE, Message};
use crate::store::Result;
use crate::store::clicks::{Clicks, MAX_LISTED, settle};
use crate::time::Ts;

fn message_key(key: &str) -> String {
    format!("clkm:{key}")
}

fn sent_key(at: Ts, key: &str) -> String {
    format!("clkt:{:020}:{key}", at.0)
}

fn click_key(message: &str, at: Ts, id: &str) -> String {
    format!("clk:{message}\0{:020}{id}", at.0)
}

fn pending_key(at: Ts, id: &str) -> String {
    format!("clkp:{:020}{id}", at.0)
}

fn first_key(message: &str, link: &str) -> String {
    format!("clkf:{message}\0{link}")
}

fn count_key(flow: &str, label: &str) -> String {
    format!("clkn:{flow}\0{label}")
}

/// The clicks on `message` from `from` (inclusive) to `to` (exclusive), in milliseconds.
fn clicks_between(view: &View<'_>, message: &str, from: u64, to: u64) -> Result<Vec<Click>> {
    let (start, end) = (
        format!("clk:{message}\0{from:020}"),
        format!("clk:{message}\0{to:020}"),
    );
    let mut out = Vec::new();
    for item in view.range(start.as_bytes(), end.as_bytes()) {
        let (k, v) = item?;
        out.push(from_json(&String::from_utf8_lossy(&k), &v)?);
    }
    Ok(out)
}

/// Judges one pending click (its key in the pending index is `pending`), in the commit group.
fn settle_one(view: &mut View<'_>, pending: &[u8], key: &str) -> Result<Option<Click>> {
    view.remove(pending.to_vec());
    let Some(mut click) = get::<Click>(view, key)? else {
        return Ok(None);
    };
    if click.judged != Judged::Pending {
        return Ok(None);
    }
    let window = BURST.as_millis() as u64;
    let around = clicks_between(
        view,
        &click.message,
        click.at.0.saturating_sub(window - 1),
        click.at.0 + window,
    )?;
    let first = first_key(&click.message, &click.link);
    let clicked_before = view.contains(first.as_bytes())?;
    let depth = get::<Message>(view, &message_key(&click.message))?.map_or(1, |m| m.depth);
    let event = settle(&mut click, &around, clicked_before, depth);
    if let Some(e) = &event {
        segments::put_event(view, e)?;
        view.insert(first, Vec::new());
    }
    let counted = count_key(&click.flow, click.label());
    let mut count = get::<LinkCount>(view, &counted)?.unwrap_or_else(|| LinkCount {
        link: click.label().to_string(),
        ..LinkCount::default()
    });
    count.add(&click.judged);
    view.insert(counted, to_json(&count)?);
    view.insert(key.to_string(), to_json(&click)?);
    Ok(Some(click))
}

#[async_trait]
impl Clicks for SledStore {
    async fn remember_message(&self, message: Message) -> Result<()> {
        self.submit(true, super::writer::Admit::No, move |_, v| {
            let k = message_key(&message.key);
            let merged = match get::<Message>(v, &k)? {
                Some(mut stored) => {
                    v.remove(sent_key(stored.sent_at, &stored.key));
                    stored.merge(message);
                    stored
                }
                None => message,
            };
            v.insert(sent_key(merged.sent_at, &merged.key), Vec::new());
            v.insert(k, to_json(&merged)?);
            Ok(())
        })
        .await
    }

    async fn message(&self, key: &str) -> Result<Option<Message>> {
        let k = message_key(key);
        self.read(move |i| match i.db.get(&k)? {
            Some(v) => Ok(Some(from_json(&k, &v)?)),
            None => Ok(None),
        })
        .await
    }

    async fn record_click(&self, click: Click) -> Result<bool> {
        self.submit(true, super::writer::Admit::No, move |_, v| {
            let recorded = v
                .scan_prefix(format!("clk:{}\0", click.message).as_bytes())
                .take(MAX_CLICKS_PER_MESSAGE)
                .count();
            if recorded >= MAX_CLICKS_PER_MESSAGE {
                return Ok(false);
            }
            let k = click_key(&click.message, click.at, &click.id);
            v.insert(pending_key(click.at, &click.id), k.clone());
            v.insert(k, to_json(&click)?);
            Ok(true)
        })
        .await
    }

    async fn settle_clicks(&self, before: Ts, limit: usize) -> Result<Vec<Click>> {
        // The event dispatcher asks every round: with nothing pending, a read answers it
        // without a turn of the writer.
        let bound = format!("clkp:{:020}", before.0);
        let due = self
            .read(move |i| Ok(i.db.range("clkp:".as_bytes()..bound.as_bytes()).next().is_some()))
            .await?;
        if !due {
            return Ok(Vec::new());
        }
        self.submit(true, super::writer::Admit::No, move |_, v| {
            let due: Vec<(Vec<u8>, Vec<u8>)> = v
                .range(b"clkp:", format!("clkp:{:020}", before.0).as_bytes())
                .take(limit)
                .collect::<Result<_>>()?;
            let mut out = Vec::new();
            for (pending, key) in due {
                let key = String::from_utf8_lossy(&key).into_owned();
                // A damaged click harms only itself: it leaves the pending index, said so.
                match settle_one(v, &pending, &key) {
                    Ok(Some(c)) => out.push(c),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, click = %key, "a click could not be read; it is not judged")
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn clicks_of_run(&self, run_id: &str) -> Result<Vec<Click>> {
        let prefix = format!("clk:{run_id}.");
        self.read(move |i| {
            let mut out = Vec::new();
            for item in i.db.scan_prefix(prefix.as_bytes()).take(MAX_LISTED) {
                let (k, v) = item?;
                out.push(from_json::<Click>(&String::from_utf8_lossy(&k), &v)?);
            }
            out.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(out)
        })
        .await
    }

    async fn link_counts(&self, flow: &str) -> Result<Vec<LinkCount>> {
        let prefix = count_key(flow, "");
        self.read(move |i| {
            let mut out = Vec::new();
            for item in i.db.scan_prefix(prefix.as_bytes()) {
                let (k, v) = item?;
                out.push(from_json(&String::from_utf8_lossy(&k), &v)?);
            }
            Ok(out)
        })
        .await
    }

    async fn prune_messages(&self, before: Ts, max: usize) -> Result<usize> {
        self.submit(true, super::writer::Admit::No, move |_, v| {
            let old: Vec<Vec<u8>> = v
                .range(b"clkt:", format!("clkt:{:020}", before.0).as_bytes())
                .take(max)
                .map(|r| r.map(|(k, _)| k))
                .collect::<Result<_>>()?;
            for k in &old {
                v.remove(k.clone());
                let text = String::from_utf8_lossy(k);
                let Some(message) = text.get("clkt:".len() + 21..) else {
                    continue;
                };
                v.remove(message_key(message));
                let gone: Vec<Vec<u8>> = v
                    .scan_prefix(format!("clk:{message}\0").as_bytes())
                    .chain(v.scan_prefix(format!("clkf:{message}\0").as_bytes()))
                    .map(|r| r.map(|(k, _)| k))
                    .collect::<Result<_>>()?;
                for g in gone {
                    v.remove(g);
                }
            }
            Ok(old.len())
        })
        .await
    }
}
