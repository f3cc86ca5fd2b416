//! Tracked links' role in the store: what each tracked message was sent with, the clicks on
//! it, and the counts per flow and link. Backends: `sled/clicks.rs`, `postgres/clicks.rs`.
//!
//! A click is written at once, pending, before the redirect; [`Clicks::settle_clicks`] later
//! judges it ([`crate::clicks::judge`]) and, for a person's click, puts `email.clicked` in the
//! event outbox — in the write that marks it judged and counts it, so a crash neither loses
//! the event nor raises it twice. On PostgreSQL the message's row is locked while one of its
//! clicks is judged, so two instances settling clicks of one message agree on which was first.
//!
//! Disk: one record per tracked message (its links) and at most 200 per message for its
//! clicks, pruned with the message ([`Clicks::prune_messages`]); counts are one record per
//! flow and link.

use async_trait::async_trait;

use super::Result;
use crate::clicks::{Click, Judged, LinkCount, Message, judge};
use crate::event::Event;
use crate::time::Ts;

/// Most clicks of one run listed.
pub const MAX_LISTED: usize = 500;

#[async_trait]
pub trait Clicks: Send + Sync {
    /// Keeps what a tracked message is sent with, adding to what earlier attempts of it kept
    /// (see [`Message::merge`]). Durable on return: the message is sent after.
    async fn remember_message(&self, message: Message) -> Result<()>;

    /// A tracked message by its key.
    async fn message(&self, key: &str) -> Result<Option<Message>>;

    /// Records a click, pending. Durable on return. `false`: its message has
    /// [`MAX_CLICKS_PER_MESSAGE`](crate::clicks::MAX_CLICKS_PER_MESSAGE) clicks already, and
    /// this one was not recorded.
    async fn record_click(&self, click: Click) -> Result<bool>;

    /// Judges the pending clicks that arrived before `before`, oldest first, at most `limit`,
    /// each in one write with its count and (a person's) `email.clicked` event. Returns them,
    /// judged.
    async fn settle_clicks(&self, before: Ts, limit: usize) -> Result<Vec<Click>>;

    /// The clicks on a run's messages, oldest first, at most [`MAX_LISTED`].
    async fn clicks_of_run(&self, run_id: &str) -> Result<Vec<Click>>;

    /// A flow's clicks per link, by link.
    async fn link_counts(&self, flow: &str) -> Result<Vec<LinkCount>>;

    /// Forgets messages sent before `before` and their clicks, at most `max` messages; their
    /// links then answer 404. Counts are kept.
    async fn prune_messages(&self, before: Ts, max: usize) -> Result<usize>;
}

/// Judges `click` (see [`judge`]) and returns the event a person's click raises, at `depth`.
pub fn settle(click: &mut Click, around: &[Click], clicked_before: bool, depth: u32) -> Option<Event> {
    click.judged = judge(click, around, clicked_before);
    matches!(click.judged, Judged::Person { .. }).then(|| crate::clicks::event(click, depth))
}
