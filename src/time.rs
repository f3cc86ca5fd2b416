//! Time as runs, queues and schedules keep it: milliseconds since the Unix epoch.
//!
//! The clock can be moved ahead for a whole process ([`follow_offset_file`]), so drills can
//! pass the days of a sequence's waits without waiting them: every reading — the engine's
//! claims, wake-ups, leases, the store's due times — moves together.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

impl Ts {
    pub fn now() -> Ts {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ts(system + OFFSET_MS.load(Ordering::Relaxed))
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

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom)?;
        Ok(Ts(t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)))
    }
}
