//! Time series for the dashboard's overview: per flow, what happened in each of the last 60
//! minutes and the last 24 hours — requests by outcome, runs by final state, and a latency
//! histogram of action attempts. Charts are drawn from these buckets, never by reading runs.
//!
//! The same counts answer the alerts' windows ([`Stats::sum`]), with a third ring of the last
//! 120 seconds for windows of seconds.
//!
//! Bounded by design: a flow gets its series the first time something happens to it, and a
//! series is three fixed rings (120 second buckets, 60 minute buckets, 24 hour buckets) of
//! fixed-size counters — about 14 KiB per flow, whatever the traffic. Kept in memory by this instance only: a restart
//! starts the charts afresh, and in a cluster each instance counts what it received and ran
//! (the run counters in `/api/flows` are the shared, durable totals).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::time::Ts;

/// What is counted in each bucket, in this order.
pub const KINDS: [&str; 8] = [
    "accepted",
    "ignored",
    "duplicate",
    "refused",
    "succeeded",
    "failed",
    "exited",
    "attempts",
];

/// Upper bounds of the latency histogram's buckets, in milliseconds (the last is open-ended).
pub const LATENCY_MS: [u64; 16] = [
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    120_000,
    300_000,
    u64::MAX,
];

const SECONDS: usize = 120;
const MINUTES: usize = 60;
const HOURS: usize = 24;

/// A ring's bucket: which slot it holds, and how to start an empty one.
trait Slotted: Copy {
    fn slot(&self) -> u64;
    fn empty(slot: u64) -> Self;
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// The minute (or hour) since the epoch this bucket holds; another value means it is stale.
    slot: u64,
    counts: [u32; KINDS.len()],
    latency: [u32; LATENCY_MS.len()],
}

impl Slotted for Bucket {
    fn slot(&self) -> u64 {
        self.slot
    }
    fn empty(slot: u64) -> Self {
        Bucket {
            slot,
            ..Bucket::default()
        }
    }
}

/// A second's counts, for alert windows of seconds: no latency histogram.
#[derive(Clone, Copy, Default)]
struct Counts {
    slot: u64,
    counts: [u32; KINDS.len()],
}

impl Slotted for Counts {
    fn slot(&self) -> u64 {
        self.slot
    }
    fn empty(slot: u64) -> Self {
        Counts {
            slot,
            counts: [0; KINDS.len()],
        }
    }
}

struct Ring<B, const N: usize> {
    width_ms: u64,
    buckets: [B; N],
}

impl<B: Slotted, const N: usize> Ring<B, N> {
    fn new(width: Duration) -> Self {
        Ring {
            width_ms: width.as_millis() as u64,
            buckets: [B::empty(u64::MAX); N],
        }
    }

    /// The bucket for `now`, emptied first if it still holds an older slot.
    fn at(&mut self, now: Ts) -> &mut B {
        let slot = now.0 / self.width_ms;
        let b = &mut self.buckets[(slot % N as u64) as usize];
        if b.slot() != slot {
            *b = B::empty(slot);
        }
        b
    }

    /// The last `n` (at most `N`) slots up to `now`, oldest first; slots nothing happened in
    /// are empty.
    fn last(&self, now: Ts, n: usize) -> impl Iterator<Item = B> + '_ {
        let last = now.0 / self.width_ms;
        let n = n.clamp(1, N) as u64;
        (last.saturating_sub(n - 1)..=last).map(move |slot| {
            let b = self.buckets[(slot % N as u64) as usize];
            if b.slot() == slot { b } else { B::empty(slot) }
        })
    }

    /// The last `N` slots up to `now`, oldest first.
    fn window(&self, now: Ts) -> impl Iterator<Item = B> + '_ {
        self.last(now, N)
    }
}

struct Series {
    seconds: Ring<Counts, SECONDS>,
    minutes: Ring<Bucket, MINUTES>,
    hours: Ring<Bucket, HOURS>,
    /// The last accepted request's time.
    last_accepted: Option<Ts>,
    /// The last refusals: when, from which client, why — so an attack's source shows.
    refusals: std::collections::VecDeque<Refusal>,
}

/// One refused request, as the alerts and the flow view show it.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Refusal {
    pub at: Ts,
    pub client: String,
    pub reason: String,
}

/// Refusals kept per flow.
const REFUSALS_KEPT: usize = 32;

impl Series {
    fn new() -> Self {
        Series {
            seconds: Ring::new(Duration::from_secs(1)),
            minutes: Ring::new(Duration::from_secs(60)),
            hours: Ring::new(Duration::from_secs(3600)),
            last_accepted: None,
            refusals: std::collections::VecDeque::new(),
        }
    }

    fn bump(&mut self, now: Ts, f: impl Fn(&mut [u32; KINDS.len()])) {
        f(&mut self.seconds.at(now).counts);
        f(&mut self.minutes.at(now).counts);
        f(&mut self.hours.at(now).counts);
    }

    /// Counts of `kind` (an index of [`KINDS`]) over the last `window` up to `now`: by the
    /// second up to two minutes, by the minute up to an hour, by the hour beyond — each
    /// counting the slot `now` is in whole.
    fn sum(&self, kind: usize, window: Duration, now: Ts) -> u64 {
        let ms = window.as_millis() as u64;
        let slots = |width: u64| ms.div_ceil(width) as usize;
        if ms <= SECONDS as u64 * 1000 {
            self.seconds
                .last(now, slots(1000))
                .map(|b| u64::from(b.counts[kind]))
                .sum()
        } else if ms <= MINUTES as u64 * 60_000 {
            self.minutes
                .last(now, slots(60_000))
                .map(|b| u64::from(b.counts[kind]))
                .sum()
        } else {
            self.hours
                .last(now, slots(3_600_000))
                .map(|b| u64::from(b.counts[kind]))
                .sum()
        }
    }
}

/// One flow's chart data over one window.
#[derive(Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Window {
    /// The start of the first bucket (milliseconds since the epoch) and each bucket's width.
    pub from: Ts,
    pub step_seconds: u64,
    /// For each of [`KINDS`], one count per bucket, oldest first.
    pub counts: std::collections::BTreeMap<&'static str, Vec<u32>>,
    /// Totals over the window, per kind.
    pub totals: std::collections::BTreeMap<&'static str, u64>,
    /// Action attempt latency over the window: the bucket bound at or under which half (p50)
    /// and 95 % (p95) of the attempts finished, in milliseconds; `None` without attempts.
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
}

/// The per-flow series; see the module docs for what it costs.
#[derive(Default)]
pub struct Stats {
    flows: Mutex<HashMap<String, Box<Series>>>,
}

impl Stats {
    /// Counts one `kind` (one of [`KINDS`]; others are ignored) for `flow` now.
    pub fn count(&self, flow: &str, kind: &str) {
        self.count_at(flow, kind, Ts::now());
    }

    fn count_at(&self, flow: &str, kind: &str, now: Ts) {
        let Some(i) = KINDS.iter().position(|k| *k == kind) else {
            return;
        };
        self.with(flow, |s| {
            s.bump(now, |c| c[i] = c[i].saturating_add(1));
            if kind == "accepted" {
                s.last_accepted = Some(now);
            }
        });
    }

    /// How many `kind` (one of [`KINDS`]) of `flow` in the last `window` (see
    /// [`Series::sum`] for the resolution); 0 for a flow or kind never counted.
    pub fn sum(&self, flow: &str, kind: &str, window: Duration, now: Ts) -> u64 {
        let Some(i) = KINDS.iter().position(|k| *k == kind) else {
            return 0;
        };
        self.flows
            .lock()
            .ok()
            .and_then(|m| m.get(flow).map(|s| s.sum(i, window, now)))
            .unwrap_or(0)
    }

    /// Remembers a refused request's client and reason (the last [`REFUSALS_KEPT`] per flow).
    pub fn refused_by(&self, flow: &str, client: &str, reason: &str) {
        let r = Refusal {
            at: Ts::now(),
            client: client.to_string(),
            reason: reason.to_string(),
        };
        self.with(flow, |s| {
            if s.refusals.len() == REFUSALS_KEPT {
                s.refusals.pop_front();
            }
            s.refusals.push_back(r);
        });
    }

    /// The refusals of `flow` remembered since `since`, oldest first.
    pub fn refusals_since(&self, flow: &str, since: Ts) -> Vec<Refusal> {
        let Ok(m) = self.flows.lock() else {
            return Vec::new();
        };
        m.get(flow)
            .map(|s| s.refusals.iter().filter(|r| r.at >= since).cloned().collect())
            .unwrap_or_default()
    }

    /// The last request of `flow` this instance accepted.
    pub fn last_accepted(&self, flow: &str) -> Option<Ts> {
        self.flows.lock().ok()?.get(flow)?.last_accepted
    }

    /// Counts one action attempt that took `took`.
    pub fn attempt(&self, flow: &str, took: Duration) {
        self.attempt_at(flow, took, Ts::now());
    }

    fn attempt_at(&self, flow: &str, took: Duration, now: Ts) {
        let ms = took.as_millis() as u64;
        let i = LATENCY_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_MS.len() - 1);
        let a = KINDS.len() - 1;
        self.with(flow, |s| {
            s.bump(now, |c| c[a] = c[a].saturating_add(1));
            for b in [s.minutes.at(now), s.hours.at(now)] {
                b.latency[i] = b.latency[i].saturating_add(1);
            }
        });
    }

    fn with(&self, flow: &str, f: impl FnOnce(&mut Series)) {
        if let Ok(mut m) = self.flows.lock() {
            match m.get_mut(flow) {
                Some(s) => f(s),
                None => f(m
                    .entry(flow.to_string())
                    .or_insert_with(|| Box::new(Series::new()))),
            }
        }
    }

    /// The last hour (per minute) and the last day (per hour) of every flow that has a series.
    pub fn snapshot(&self, now: Ts) -> Vec<(String, Window, Window)> {
        let Ok(m) = self.flows.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = m
            .iter()
            .map(|(name, s)| (name.clone(), window(&s.minutes, now), window(&s.hours, now)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn window<const N: usize>(ring: &Ring<Bucket, N>, now: Ts) -> Window {
    let buckets: Vec<Bucket> = ring.window(now).collect();
    let mut counts = std::collections::BTreeMap::new();
    let mut totals = std::collections::BTreeMap::new();
    for (i, kind) in KINDS.iter().enumerate() {
        let series: Vec<u32> = buckets.iter().map(|b| b.counts[i]).collect();
        totals.insert(*kind, series.iter().map(|n| u64::from(*n)).sum());
        counts.insert(*kind, series);
    }
    let mut latency = [0u64; LATENCY_MS.len()];
    for b in &buckets {
        for (sum, n) in latency.iter_mut().zip(b.latency) {
            *sum += u64::from(n);
        }
    }
    Window {
        from: Ts(buckets[0].slot * ring.width_ms),
        step_seconds: ring.width_ms / 1000,
        counts,
        totals,
        p50_ms: percentile(&latency, 0.50),
        p95_ms: percentile(&latency, 0.95),
    }
}

/// The bound of the histogram bucket that holds the `q` quantile; the open-ended last bucket
/// reports the bound below it.
fn percentile(histogram: &[u64; LATENCY_MS.len()], q: f64) -> Option<u64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(if i == LATENCY_MS.len() - 1 {
                LATENCY_MS[i - 1]
            } else {
                LATENCY_MS[i]
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn counts_land_in_their_minute_and_hour_and_old_ones_drop_out() {
        let s = Stats::default();
        let t0 = Ts(1_000 * 3600 * 1000); // on an hour boundary
        s.count_at("orders", "accepted", t0);
        s.count_at("orders", "accepted", Ts(t0.0 + 59_000));
        s.count_at("orders", "refused", Ts(t0.0 + MIN));
        s.count_at("orders", "no-such-kind", t0);
        let now = Ts(t0.0 + MIN + 1);
        let snap = s.snapshot(now);
        let (name, hour, day) = &snap[0];
        assert_eq!(name, "orders");
        assert_eq!(hour.counts["accepted"].len(), 60);
        assert_eq!(hour.counts["accepted"][58..], [2, 0]);
        assert_eq!(hour.counts["refused"][58..], [0, 1]);
        assert_eq!(hour.from, Ts(t0.0 - 58 * MIN));
        assert_eq!(day.counts["accepted"].len(), 24);
        assert_eq!(day.counts["accepted"][23], 2);
        assert_eq!(day.totals["refused"], 1);
        // An hour later the minutes are empty, the day still holds them.
        let later = Ts(t0.0 + 61 * MIN);
        let (_, hour, day) = &s.snapshot(later)[0];
        assert_eq!(hour.totals["accepted"], 0);
        assert_eq!(day.totals["accepted"], 2);
        // A write into a reused slot starts it afresh.
        s.count_at("orders", "accepted", later);
        let (_, hour, _) = &s.snapshot(later)[0];
        assert_eq!(hour.totals["accepted"], 1);
        // A day later nothing is left.
        let (_, hour, day) = &s.snapshot(Ts(later.0 + 25 * 60 * MIN))[0];
        assert_eq!(hour.totals["accepted"] + day.totals["accepted"], 0);
    }

    #[test]
    fn latency_percentiles_come_from_the_histogram() {
        let s = Stats::default();
        let now = Ts(500 * 3600 * 1000);
        assert_eq!(s.snapshot(now).len(), 0);
        for ms in [3, 7, 8, 9, 40, 45, 48, 49, 49, 700] {
            s.attempt_at("f", Duration::from_millis(ms), now);
        }
        let (_, hour, _) = &s.snapshot(now)[0];
        assert_eq!(hour.totals["attempts"], 10);
        assert_eq!(hour.p50_ms, Some(50));
        assert_eq!(hour.p95_ms, Some(1_000));
        s.attempt_at("g", Duration::from_secs(3600), now);
        let snap = s.snapshot(now);
        assert_eq!(snap[1].1.p95_ms, Some(300_000));
        assert_eq!(percentile(&[0; LATENCY_MS.len()], 0.5), None);
    }

    #[test]
    fn a_series_costs_a_fixed_size() {
        // What the module docs promise: about 14 KiB per flow, whatever the traffic (plus the
        // last 32 refusals' client and reason).
        let size = std::mem::size_of::<Series>();
        assert!(size <= 14 * 1024, "{size}");
        let s = Stats::default();
        for i in 0..100 {
            s.refused_by("f", &format!("10.0.0.{i}"), "bad_signature");
        }
        let kept = s.refusals_since("f", Ts(0));
        assert_eq!(kept.len(), REFUSALS_KEPT);
        assert_eq!(kept.last().unwrap().client, "10.0.0.99");
    }

    #[test]
    fn windows_sum_by_the_second_minute_or_hour() {
        let s = Stats::default();
        let t0 = Ts(1_700_000_000_000 - 1_700_000_000_000 % 3_600_000);
        for (at, n) in [(0u64, 3), (30, 2), (59, 1), (61, 4)] {
            for _ in 0..n {
                s.count_at("f", "refused", Ts(t0.0 + at * 1000));
            }
        }
        let now = Ts(t0.0 + 61_500);
        let sum = |secs: u64| s.sum("f", "refused", Duration::from_secs(secs), now);
        assert_eq!(sum(1), 4, "this second");
        assert_eq!(sum(3), 5, "seconds 59 to 61");
        assert_eq!(sum(62), 10, "everything");
        // Over two minutes: by the minute (minute 0 and minute 1 both counted).
        assert_eq!(sum(180), 10);
        assert_eq!(s.sum("f", "accepted", Duration::from_secs(60), now), 0);
        assert_eq!(s.sum("other", "refused", Duration::from_secs(60), now), 0);
        assert_eq!(s.last_accepted("f"), None);
        s.count_at("f", "accepted", now);
        assert_eq!(s.last_accepted("f"), Some(now));
    }
}
