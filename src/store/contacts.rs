//! The contacts' role in the store: named segments and their members, and the outbox of events
//! that segment changes (and actions) raise until the engine dispatches them.
//! Backends: `sled/segments.rs`, `postgres/queue.rs`.

use async_trait::async_trait;

use super::{ExitMatch, ExitedRun, Result};
use crate::event::{Event, Origin};
use crate::run::Run;
use crate::segment::{ContactView, Member, SegmentChange, SegmentInfo, SegmentOp};
use crate::time::Ts;

/// Segments, contacts and the event outbox.
#[async_trait]
pub trait Contacts: Send + Sync {
    /// Applies segment changes outside any run (the admin API), raising their events from
    /// `origin` at depth 1. Durable on return.
    async fn change_segments(&self, ops: Vec<SegmentOp>, origin: Origin) -> Result<Vec<SegmentChange>>;

    /// The oldest events of the outbox.
    async fn pending_events(&self, limit: usize) -> Result<Vec<Event>>;

    /// Removes an event from the outbox, queues the runs it triggers and applies the exits it
    /// meets ([`RunQueue::exit_runs`](super::RunQueue::exit_runs)), atomically.
    async fn dispatch_event(
        &self,
        event_id: &str,
        runs: Vec<Run>,
        exits: Vec<ExitMatch>,
    ) -> Result<Vec<ExitedRun>>;

    /// Segments with their member counts, by name.
    async fn segments(&self) -> Result<Vec<SegmentInfo>>;

    /// Members by email, those after `after` (exclusive), at most `limit`.
    async fn segment_members(&self, segment: &str, after: Option<&str>, limit: usize) -> Result<Vec<Member>>;

    /// How many members joined `segment` at or after `since`.
    async fn segment_added_since(&self, segment: &str, since: Ts) -> Result<u64>;

    /// A contact (by normalised email) and its segments.
    async fn contact(&self, email: &str) -> Result<Option<ContactView>>;
}
