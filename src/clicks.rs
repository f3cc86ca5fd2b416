//! Tracked links and the clicks on them. Pure: how an email's links are rewritten, what a
//! click record holds, how a click is judged (a person, or a mail scanner) and the
//! `email.clicked` event it raises. The redirect is served in `server/clicks.rs`, records are
//! kept by the store's [`Clicks`](crate::store::clicks::Clicks) role, and the engine's event
//! dispatcher settles pending clicks.
//!
//! Why clicks are judged a moment after they arrive: mail security scanners (Microsoft Safe
//! Links, Mimecast, Barracuda …) fetch every link of a message within a second of each other,
//! usually right after delivery. The first link of such a burst looks like a person until the
//! second one comes, so a click is recorded at once (and redirected at once), and judged
//! [`SETTLE`] later, when its neighbours are known. Only a person's click raises
//! `email.clicked`; a scanner's is kept, marked, and counted apart.
//!
//! No open tracking: since Apple Mail Privacy Protection (2021) fetches every image of every
//! message, an "open" counts robots, not people.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::event::{Event, Origin};
use crate::time::Ts;

mod rewrite;
pub use rewrite::{Rewritten, rewrite};

/// The event a person's click raises.
pub const CLICKED: &str = "email.clicked";

/// How long after a click it is judged: long enough for a scanner's burst to be complete.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Clicks on two different links of one message closer than this are a scanner's: a person
/// reads, clicks, and lands on a page before clicking again.
pub const BURST: Duration = Duration::from_millis(1000);

/// Most distinct links tracked in one message; further links are left as they are.
pub const MAX_LINKS: usize = 100;

/// Longest link name (`data-track="…"`) kept; longer ones are cut.
pub const MAX_NAME: usize = 100;

/// Most clicks kept per message: one reader (or a script with one of their links) clicking
/// on and on costs no more disk than this; later clicks still redirect, unrecorded.
pub const MAX_CLICKS_PER_MESSAGE: usize = 200;

/// Longest User-Agent kept with a click.
pub const MAX_USER_AGENT: usize = 200;

/// Which links of an email are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrackLinks {
    /// Every http(s) link of the HTML part and of the text part.
    All,
    /// Only the HTML part's `<a>` with a `data-track` attribute (its value names the link),
    /// and the same addresses where the text part has them.
    Marked,
}

/// One link of a sent message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentLink {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl SentLink {
    /// The link's id (see [`link_id`]).
    pub fn id(&self) -> [u8; 8] {
        link_id(&self.url, self.name.as_deref())
    }

    /// What counts are kept under: the name if the template gave one, else the address.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.url)
    }
}

/// A link's id within its message: the first 8 bytes of SHA-256 over its address and name.
/// Tokens carry it (not an index), so a retry that renders the links in another order leaves
/// the links of an earlier attempt's email working.
pub fn link_id(url: &str, name: Option<&str>) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(url.as_bytes());
    h.update([0]);
    h.update(name.unwrap_or("").as_bytes());
    h.finalize()[..8].try_into().expect("8 bytes")
}

/// What a tracked message was sent with: written before it is sent, so every click on it
/// finds the target its token stands for. The links of every attempt are kept (a retry may
/// render them differently; the earlier email may have arrived all the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The send's idempotency key (`{run}.{action}`, `{run}.{action}.{item}`).
    pub key: String,
    pub flow: String,
    pub run_id: String,
    pub action: String,
    /// The one recipient (normalised address).
    pub contact: String,
    pub sent_at: Ts,
    /// Depth of the events its clicks raise (the run's + 1).
    pub depth: u32,
    pub links: Vec<SentLink>,
}

impl Message {
    /// The link with `id`, if the message has it.
    pub fn link(&self, id: [u8; 8]) -> Option<&SentLink> {
        self.links.iter().find(|l| l.id() == id)
    }

    /// Adds the links of another attempt that this record does not have yet (up to
    /// [`MAX_LINKS`] in all).
    pub fn merge(&mut self, other: Message) {
        for l in other.links {
            if self.links.len() < MAX_LINKS && !self.links.contains(&l) {
                self.links.push(l);
            }
        }
        self.sent_at = self.sent_at.max(other.sent_at);
    }
}

/// What a click was judged to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Judged {
    /// Not judged yet (within [`SETTLE`] of arriving).
    Pending,
    /// A person: `first` when it is their first click on this link of this message.
    Person { first: bool },
    /// A mail scanner or link checker, and why it looks like one.
    Scanner { why: String },
}

/// One click on a tracked link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Click {
    /// `clk_` and a ULID: unique, sorted by arrival.
    pub id: String,
    pub message: String,
    pub flow: String,
    pub run_id: String,
    pub action: String,
    pub contact: String,
    /// The link's id, hex.
    pub link: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub at: Ts,
    /// `GET` or `HEAD`.
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub judged: Judged,
}

impl Click {
    /// A click on `link` of `message`, not judged yet.
    pub fn new(message: &Message, link: &SentLink, method: &str, user_agent: Option<&str>) -> Click {
        Click {
            id: format!("clk_{}", crate::run::new_run_id()),
            message: message.key.clone(),
            flow: message.flow.clone(),
            run_id: message.run_id.clone(),
            action: message.action.clone(),
            contact: message.contact.clone(),
            link: hex::encode(link.id()),
            url: link.url.clone(),
            name: link.name.clone(),
            at: Ts::now(),
            method: method.to_string(),
            user_agent: user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT).collect()),
            judged: Judged::Pending,
        }
    }

    /// What counts are kept under (see [`SentLink::label`]).
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.url)
    }

    /// Whether `self` is within `window` of `other`.
    fn near(&self, other: &Click, window: Duration) -> bool {
        self.at.0.abs_diff(other.at.0) < window.as_millis() as u64
    }
}

/// Judges `click` given the other clicks on its message around it (`around`: those within
/// [`BURST`] of it, any state) and whether a person clicked this link of the message before.
///
/// A scanner: a `HEAD` request (browsers do not send them to open a link), or a click within
/// [`BURST`] of a click on another link of the same message (a person cannot open two links
/// of one email in one second; scanners open all of them at once). Anything else is a person.
pub fn judge(click: &Click, around: &[Click], clicked_before: bool) -> Judged {
    if click.method.eq_ignore_ascii_case("HEAD") {
        return Judged::Scanner {
            why: "a HEAD request: link checkers and mail scanners send them, browsers do not".into(),
        };
    }
    let others: std::collections::BTreeSet<&str> = around
        .iter()
        .filter(|c| c.id != click.id && c.link != click.link && c.near(click, BURST))
        .map(|c| c.link.as_str())
        .collect();
    if !others.is_empty() {
        return Judged::Scanner {
            why: format!(
                "{} links of this message opened within a second: a mail scanner, not a person",
                others.len() + 1
            ),
        };
    }
    Judged::Person {
        first: !clicked_before,
    }
}

/// The `email.clicked` event of a person's click.
pub fn event(click: &Click, depth: u32) -> Event {
    let first = matches!(click.judged, Judged::Person { first: true });
    let source = Origin {
        flow: Some(click.flow.clone()),
        run_id: Some(click.run_id.clone()),
        action: Some(click.action.clone()),
        via: "click".into(),
    };
    Event::new(
        CLICKED,
        source,
        depth,
        json!({
            "contact": {"email": click.contact},
            "flow": click.flow,
            "run_id": click.run_id,
            "action": click.action,
            "message": click.message,
            "url": click.url,
            "link": click.name,
            "first": first,
            "click_id": click.id,
            "clicked_at": click.at,
        }),
    )
}

/// A flow's clicks on one link (by [`SentLink::label`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinkCount {
    pub link: String,
    /// Clicks by people.
    pub clicks: u64,
    /// First clicks by people: each (message, link) once.
    pub first_clicks: u64,
    /// Clicks judged a scanner's, left out of the two above.
    pub scanner_clicks: u64,
}

impl LinkCount {
    /// Counts `judged` in.
    pub fn add(&mut self, judged: &Judged) {
        match judged {
            Judged::Pending => {}
            Judged::Person { first } => {
                self.clicks += 1;
                self.first_clicks += u64::from(*first);
            }
            Judged::Scanner { .. } => self.scanner_clicks += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        Message {
            key: "01J.recovery".into(),
            flow: "cart".into(),
            run_id: "01J".into(),
            action: "recovery".into(),
            contact: "ada@example.com".into(),
            sent_at: Ts(1_000_000),
            depth: 1,
            links: vec![
                SentLink {
                    url: "https://shop.example/cart".into(),
                    name: Some("cart".into()),
                },
                SentLink {
                    url: "https://shop.example/".into(),
                    name: None,
                },
            ],
        }
    }

    fn click(link: usize, at: u64, method: &str) -> Click {
        let m = msg();
        let mut c = Click::new(&m, &m.links[link], method, Some("Mozilla/5.0"));
        c.at = Ts(at);
        c
    }

    #[test]
    fn a_lone_get_is_a_person_and_first_once() {
        let c = click(0, 2_000_000, "GET");
        assert_eq!(judge(&c, &[], false), Judged::Person { first: true });
        assert_eq!(judge(&c, &[], true), Judged::Person { first: false });
        // The same link twice in a second is a double click, not a scanner.
        let again = click(0, 2_000_300, "GET");
        assert_eq!(judge(&c, &[again], false), Judged::Person { first: true });
    }

    #[test]
    fn head_requests_and_bursts_over_several_links_are_scanners() {
        let c = click(0, 2_000_000, "HEAD");
        assert!(matches!(judge(&c, &[], false), Judged::Scanner { .. }));
        let a = click(0, 2_000_000, "GET");
        let b = click(1, 2_000_400, "GET");
        let Judged::Scanner { why } = judge(&a, &[a.clone(), b.clone()], false) else {
            panic!("a burst is a scanner")
        };
        assert!(why.contains("2 links"), "{why}");
        assert!(matches!(
            judge(&b, std::slice::from_ref(&a), false),
            Judged::Scanner { .. }
        ));
        // A second apart or more: a person reading on.
        let later = click(1, 2_001_000, "GET");
        assert_eq!(judge(&later, &[a], false), Judged::Person { first: true });
    }

    #[test]
    fn link_ids_depend_on_address_and_name_and_merge_keeps_every_attempts_links() {
        let m = msg();
        assert_ne!(m.links[0].id(), m.links[1].id());
        assert_ne!(
            link_id("https://a.example/", Some("x")),
            link_id("https://a.example/", Some("y"))
        );
        assert_eq!(m.link(m.links[1].id()), Some(&m.links[1]));
        assert_eq!(m.link(link_id("https://elsewhere.example/", None)), None);
        let mut merged = m.clone();
        let mut retry = m.clone();
        retry.links.reverse();
        retry.links.push(SentLink {
            url: "https://shop.example/new".into(),
            name: None,
        });
        merged.merge(retry);
        assert_eq!(merged.links.len(), 3);
        assert_eq!(merged.links[..2], m.links[..]);
    }

    #[test]
    fn the_event_says_who_clicked_what() {
        let mut c = click(0, 2_000_000, "GET");
        c.judged = Judged::Person { first: true };
        let e = event(&c, 2).to_json();
        assert_eq!(e["type"], "email.clicked");
        assert_eq!(e["depth"], 2);
        assert_eq!(e["source"]["via"], "click");
        assert_eq!(e["data"]["contact"]["email"], "ada@example.com");
        assert_eq!(e["data"]["link"], "cart");
        assert_eq!(e["data"]["url"], "https://shop.example/cart");
        assert_eq!(e["data"]["first"], true);
        let mut count = LinkCount::default();
        count.add(&c.judged);
        count.add(&Judged::Person { first: false });
        count.add(&Judged::Scanner { why: "x".into() });
        assert_eq!(
            (count.clicks, count.first_clicks, count.scanner_clicks),
            (2, 1, 1)
        );
    }
}
