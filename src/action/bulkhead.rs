//! Bulkheads: at most `limit` attempts in flight to one destination (host and port, or the SMTP
//! server), so one partner that hangs holds a few workers, not all of them. An attempt that
//! finds its destination full waits in its worker only when a place is due to free within
//! moments (a fast destination: [`Full::soon`]); otherwise the run goes back to the queue and
//! the worker takes other work.
//!
//! When it comes back is paced at the destination's own speed: each deferred run gets the next
//! turn in a line (one turn per `typical attempt time / limit`), so a backlog of thousands for a
//! slow destination is spread out instead of coming due all at once, over and over — the work
//! (store writes) it costs follows what the destination can take, not the size of the
//! backlog. Turns are never given more than [`MAX_PARK`] ahead, so a destination that recovers
//! is back at full speed within that time.
//!
//! State is in memory, per instance; the logic takes `now` as an argument so it is tested
//! without clocks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::time::Ts;

/// Shortest time a run waits for a full destination before it is tried again.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest: runs whose turn would be later are spread over the second half of this.
pub const MAX_PARK: Duration = Duration::from_secs(120);

/// A full destination whose next place is expected within this is waited for in the worker;
/// sending the run back to the queue would cost more than the wait.
pub const WAIT_IN_WORKER: Duration = Duration::from_millis(200);

/// Why an attempt did not get a place.
#[derive(Debug)]
pub struct Full {
    /// When to try again if the run goes back to the queue.
    pub retry_in: Duration,
    /// A place is expected within [`WAIT_IN_WORKER`]: wait on `freed` and try again.
    pub soon: bool,
    /// Rings when a place of this destination is given back.
    pub freed: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct Destination {
    /// Start times of the attempts in flight.
    in_flight: Vec<Ts>,
    limit: usize,
    /// Moving average of attempt durations, in milliseconds.
    typical_ms: Option<f64>,
    /// Attempts sent back to the queue because the destination was full.
    deferred: u64,
    /// The next free turn for a deferred run.
    next_turn: Ts,
    freed: Arc<tokio::sync::Notify>,
}

/// A destination as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DestinationView {
    pub destination: String,
    pub in_flight: usize,
    pub limit: usize,
    pub deferred: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typical_ms: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Bulkheads {
    destinations: Mutex<HashMap<String, Destination>>,
}

/// A place in a destination's bulkhead, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    heads: Arc<Bulkheads>,
    destination: String,
    started: Ts,
}

impl Bulkheads {
    /// A place for an attempt to `destination` if fewer than `limit` are in flight; otherwise
    /// how long the run should wait: its turn in the destination's line, one turn per
    /// `typical / limit` (the typical attempt time being the moving average, or the age of the
    /// oldest attempt in flight when that is longer), jittered by `jitter` (in -1..=1).
    pub fn enter(
        self: &Arc<Self>,
        destination: &str,
        limit: usize,
        now: Ts,
        jitter: f64,
    ) -> Result<Permit, Full> {
        let Ok(mut all) = self.destinations.lock() else {
            return Err(Full {
                retry_in: MIN_BACKOFF,
                soon: false,
                freed: Default::default(),
            });
        };
        let d = all.entry(destination.to_string()).or_default();
        d.limit = limit.max(1);
        if d.in_flight.len() < d.limit {
            d.in_flight.push(now);
            return Ok(Permit {
                heads: Arc::clone(self),
                destination: destination.to_string(),
                started: now,
            });
        }
        let oldest = d
            .in_flight
            .iter()
            .min()
            .map_or(0.0, |t| now.since(*t).as_millis() as f64);
        // Known to be quick, and nothing in flight is stuck: a place frees up in moments.
        if d.typical_ms
            .is_some_and(|t| t < WAIT_IN_WORKER.as_millis() as f64)
            && oldest < (WAIT_IN_WORKER * 5).as_millis() as f64
        {
            return Err(Full {
                retry_in: MIN_BACKOFF,
                soon: true,
                freed: Arc::clone(&d.freed),
            });
        }
        d.deferred += 1;
        let typical = d.typical_ms.unwrap_or(0.0).max(oldest);
        let per_turn = Duration::from_millis((typical / d.limit as f64) as u64);
        let turn = d.next_turn.max(now.plus(MIN_BACKOFF));
        d.next_turn = turn.plus(per_turn);
        let jitter = jitter.clamp(-1.0, 1.0);
        let wait = turn.since(now);
        let retry_in = if wait < MAX_PARK {
            wait.mul_f64(1.0 + 0.1 * jitter).max(MIN_BACKOFF)
        } else {
            // Past the horizon: anywhere in its second half, so these do not all come at once.
            MAX_PARK.mul_f64(0.75 + 0.25 * jitter)
        };
        Err(Full {
            retry_in,
            soon: false,
            freed: Arc::clone(&d.freed),
        })
    }

    fn leave(&self, destination: &str, started: Ts, now: Ts) {
        let Ok(mut all) = self.destinations.lock() else {
            return;
        };
        if let Some(d) = all.get_mut(destination) {
            if let Some(i) = d.in_flight.iter().position(|t| *t == started) {
                d.in_flight.swap_remove(i);
            }
            let took = now.since(started).as_millis() as f64;
            d.typical_ms = Some(d.typical_ms.map_or(took, |avg| 0.8 * avg + 0.2 * took));
            d.freed.notify_one();
        }
    }

    pub fn destinations(&self) -> Vec<DestinationView> {
        let Ok(all) = self.destinations.lock() else {
            return Vec::new();
        };
        let mut out: Vec<DestinationView> = all
            .iter()
            .map(|(name, d)| DestinationView {
                destination: name.clone(),
                in_flight: d.in_flight.len(),
                limit: d.limit,
                deferred: d.deferred,
                typical_ms: d.typical_ms.map(|m| m as u64),
            })
            .collect();
        out.sort_by(|a, b| a.destination.cmp(&b.destination));
        out
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.heads.leave(&self.destination, self.started, Ts::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_destination_gives_out_turns_at_its_own_speed() {
        let b = Arc::new(Bulkheads::default());
        let one = b.enter("slow:443", 2, Ts(0), 0.0).unwrap();
        let _two = b.enter("slow:443", 2, Ts(0), 0.0).unwrap();
        // Full. The oldest attempt has been going 10 s: with 2 places, a turn every 5 s.
        let waits: Vec<Duration> = (0..4)
            .map(|_| b.enter("slow:443", 2, Ts(10_000), 0.0).unwrap_err().retry_in)
            .collect();
        assert_eq!(
            waits,
            [100, 5_100, 10_100, 15_100].map(Duration::from_millis).to_vec()
        );
        // Another destination is not affected.
        assert!(b.enter("fast:443", 2, Ts(10_000), 0.0).is_ok());
        let view = b.destinations();
        assert_eq!(
            (view[1].destination.as_str(), view[1].in_flight, view[1].deferred),
            ("slow:443", 2, 4)
        );
        drop(one);
        assert!(
            b.enter("slow:443", 2, Ts(11_000), 0.0).is_ok(),
            "a place was given back"
        );
    }

    #[test]
    fn turns_past_the_horizon_are_spread_over_its_second_half() {
        let b = Arc::new(Bulkheads::default());
        let _p = b.enter("d", 1, Ts(0), 0.0).unwrap();
        // An attempt going for an hour: each turn is an hour apart.
        let now = Ts(3_600_000);
        assert_eq!(b.enter("d", 1, now, 0.0).unwrap_err().retry_in, MIN_BACKOFF);
        for jitter in [-1.0, 0.0, 1.0] {
            let w = b.enter("d", 1, now, jitter).unwrap_err().retry_in;
            assert!(w >= MAX_PARK / 2 && w <= MAX_PARK, "{w:?}");
        }
    }

    #[test]
    fn a_quick_destination_is_waited_for_in_the_worker() {
        let b = Arc::new(Bulkheads::default());
        let first = b.enter("fast", 1, Ts::now(), 0.0).unwrap();
        drop(first); // took well under a millisecond: the destination is known to be quick
        let _held = b.enter("fast", 1, Ts::now(), 0.0).unwrap();
        let full = b.enter("fast", 1, Ts::now(), 0.0).unwrap_err();
        assert!(full.soon);
        assert_eq!(b.destinations()[0].deferred, 0, "waiting is not deferring");
        // One stuck in flight for seconds: no longer quick, the run goes back to the queue.
        let full = b
            .enter("fast", 1, Ts::now().plus(Duration::from_secs(5)), 0.0)
            .unwrap_err();
        assert!(!full.soon);
        assert_eq!(b.destinations()[0].deferred, 1);
    }
}
