//! Time as runs, queues and schedules keep it: milliseconds since the Unix epoch.
//!
//! The clock can be moved ahead for a whole process ([`follow_offset_file`]), so drills can
//! pass the days of a sequence's waits without waiting them: every reading — the engine's
//! claims, wake-ups, leases, the store's due times — moves together.
//!
//! **Which clock decides** (docs/operations.md, "Time"): the wall clock ([`Ts::now`]) for what
//! users schedule and for timestamps shown; the monotonic clock ([`std::time::Instant`]) for
//! what runs inside one process — leases, timeouts, attempt durations; on PostgreSQL, the
//! database's clock for leases between instances, and each instance follows the database's
//! clock when its own is more than [`FOLLOW_ABOVE`] off ([`set_reference_offset`]). NTP may
//! step the wall clock by hours (after a suspend, a VM migration, a bad RTC): [`watch_steps`]
//! notices, says so, and keeps the windows that age stored data (dedupe keys, retention) from
//! jumping ahead with it ([`Ts::aged_now`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch; shown as RFC 3339 in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ts(pub u64);

/// Milliseconds added to the system clock (see [`follow_offset_file`]).
static OFFSET_MS: AtomicU64 = AtomicU64::new(0);

/// Adds to every [`Ts::now`] of this process the number of milliseconds written in `path`,
/// read again every 20 ms (a missing or unreadable file counts as 0; the offset never goes
/// back). For testing sequences: `HOOKFLOW_TEST_CLOCK_OFFSET_FILE`.
pub fn follow_offset_file(path: PathBuf) {
    let read = move || {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    OFFSET_MS.fetch_max(read(), Ordering::Relaxed);
    std::thread::Builder::new()
        .name("hookflow-test-clock".into())
        .spawn(move || {
            loop {
                OFFSET_MS.fetch_max(read(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .expect("start the test clock's thread");
}

/// Milliseconds added to the system clock to follow a reference clock (the database's).
static REFERENCE_MS: AtomicI64 = AtomicI64::new(0);
/// Net milliseconds the wall clock has been stepped forward while this process ran.
static STEPPED_MS: AtomicI64 = AtomicI64::new(0);
/// How many steps [`watch_steps`] has seen.
static STEPS: AtomicU64 = AtomicU64::new(0);

/// An instance follows the database's clock only when its own is off by more than this: a
/// reading's own error (half a round trip) must not make timestamps jitter.
pub const FOLLOW_ABOVE: Duration = Duration::from_secs(1);
/// A wall clock this far off the database's is reported loudly (a WARN and a metric).
pub const WARN_ABOVE: Duration = Duration::from_secs(5);

/// The last measured `reference - system` offset, followed or not (for the metric).
static MEASURED_MS: AtomicI64 = AtomicI64::new(0);

/// Sets how far the system clock is from the reference clock (`reference - system`, in ms):
/// followed when more than [`FOLLOW_ABOVE`] (a smaller offset sets it back to zero). Returns
/// whether it is followed.
pub fn set_reference_offset(ms: i64) -> bool {
    MEASURED_MS.store(ms, Ordering::Relaxed);
    let follow = ms.unsigned_abs() > FOLLOW_ABOVE.as_millis() as u64;
    REFERENCE_MS.store(if follow { ms } else { 0 }, Ordering::Relaxed);
    follow
}

/// The last measured offset of the reference clock from this system's (0 without one).
pub fn measured_offset_ms() -> i64 {
    MEASURED_MS.load(Ordering::Relaxed)
}

/// The wall clock without the test offset nor the reference: what the operating system says.
pub fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The wall clock in whole seconds since the Unix epoch, as the operating system says: what a
/// signature's timestamp is made from and checked against (senders sign with their own clock,
/// not with a test offset).
pub fn unix_secs() -> i64 {
    (system_ms() / 1000) as i64
}

/// How many wall-clock steps this process has seen, and their net size in ms.
pub fn steps_seen() -> (u64, i64) {
    (STEPS.load(Ordering::Relaxed), STEPPED_MS.load(Ordering::Relaxed))
}

/// A step is a difference between the wall clock's and the monotonic clock's progress larger
/// than this over one look (NTP slews small errors; it steps only large ones).
const STEP_ABOVE: Duration = Duration::from_secs(2);

/// The step of the wall clock over one look, if it moved more than [`STEP_ABOVE`] away from
/// the monotonic clock's progress.
fn step_between(wall_ms: i64, mono: Duration) -> Option<i64> {
    let step = wall_ms - mono.as_millis() as i64;
    (step.unsigned_abs() > STEP_ABOVE.as_millis() as u64).then_some(step)
}

fn record_step(ms: i64) {
    STEPS.fetch_add(1, Ordering::Relaxed);
    STEPPED_MS.fetch_add(ms, Ordering::Relaxed);
}

/// Watches the wall clock against the monotonic clock, once a second: a step is logged (WARN),
/// counted, and added to the net step that [`Ts::aged_now`] takes out.
pub fn watch_steps() {
    std::thread::Builder::new()
        .name("hookflow-clock-watch".into())
        .spawn(|| {
            let (mut wall, mut mono) = (system_ms() as i64, Instant::now());
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let (w, m) = (system_ms() as i64, Instant::now());
                if let Some(step) = step_between(w - wall, m.duration_since(mono)) {
                    record_step(step);
                    tracing::warn!(
                        step_s = step as f64 / 1000.0,
                        "the wall clock was stepped; leases and timeouts are unaffected (monotonic), schedules follow the new time, dedupe and retention windows keep their length"
                    );
                }
                (wall, mono) = (w, m);
            }
        })
        .expect("start the clock watch's thread");
}

impl Ts {
    pub fn now() -> Ts {
        let adjusted = system_ms() as i64 + REFERENCE_MS.load(Ordering::Relaxed);
        Ts((adjusted.max(0) as u64).saturating_add(OFFSET_MS.load(Ordering::Relaxed)))
    }

    /// The time to age stored data by (dedupe keys, retention): [`Ts::now`] less the net
    /// forward steps of the wall clock seen while this process ran — a step of +1 day must
    /// not expire a day's dedupe keys in a second. (A backward step only keeps data longer.)
    pub fn aged_now() -> Ts {
        Ts::now().aged(STEPPED_MS.load(Ordering::Relaxed))
    }

    /// This time less the net forward steps `stepped_ms` (a net step back counts as none).
    fn aged(self, stepped_ms: i64) -> Ts {
        Ts(self.0.saturating_sub(stepped_ms.max(0) as u64))
    }
    pub fn plus(self, d: Duration) -> Ts {
        Ts(self.0.saturating_add(d.as_millis() as u64))
    }
    pub fn since(self, earlier: Ts) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
    pub fn to_system(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

impl std::fmt::Display for Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(self.to_system()))
    }
}

impl schemars::JsonSchema for Ts {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-",
            "description": "RFC 3339, from 1970 on: `2026-12-07T09:30:00.123Z` (hookflow writes UTC with milliseconds; it reads any offset)."
        })
    }
}

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // Any RFC 3339 time, with its offset (`2026-12-07T10:30:00+01:00`), from 1970 on.
        let t = chrono::DateTime::parse_from_rfc3339(s.trim())
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not an RFC 3339 time: {e}")))?;
        u64::try_from(t.timestamp_millis())
            .map(Ts)
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is before 1970")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_told_from_drift_and_aged_time_leaves_out_forward_steps() {
        assert_eq!(step_between(1_000, Duration::from_millis(1_000)), None);
        assert_eq!(
            step_between(2_900, Duration::from_millis(1_000)),
            None,
            "within 2 s"
        );
        assert_eq!(step_between(3_601_000, Duration::from_secs(1)), Some(3_600_000));
        assert_eq!(step_between(-3_599_000, Duration::from_secs(1)), Some(-3_600_000));
        let now = Ts(1_000_000_000_000);
        assert_eq!(now.aged(86_400_000), Ts(now.0 - 86_400_000));
        assert_eq!(now.aged(0), now);
        // A step back only keeps data longer: nothing is added.
        assert_eq!(now.aged(-3_600_000), now);
    }
}
