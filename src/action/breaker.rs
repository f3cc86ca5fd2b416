//! Protecting destinations: outgoing rate limits and circuit breakers.
//!
//! Both delay work rather than fail it. A rate limit spaces attempts of one action evenly
//! (`10/s` → one every 100 ms); a run over the limit waits. A circuit breaker counts
//! consecutive transient failures per destination (host and port, or the SMTP server); at
//! the threshold it **opens**: attempts to that destination are postponed without being made
//! or counted against the retry budget, until the cool-down is over and one probe attempt is
//! let through. A successful probe closes it; a failed one reopens it.
//!
//! State is in memory, per instance; the logic takes `now` as an argument so it is tested
//! without clocks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Ts;

#[derive(Debug, Deserialize, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// Consecutive failures that open the circuit, e.g. `5` (the default); `0` disables it.
    #[serde(default = "default_breaker_failures")]
    pub failures: u32,
    /// How long the circuit stays open before one attempt probes the destination, e.g. `1m`;
    /// default 30s.
    #[serde(default = "default_breaker_cooldown", with = "humantime_serde")]
    #[schemars(with = "String", transform = crate::flow::schema::duration)]
    pub cooldown: Duration,
}

fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Duration {
    Duration::from_secs(30)
}

/// `N/s`, `N/m` or `N/h`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub text: String,
    /// Time between two attempts.
    pub interval: Duration,
}

impl RateLimit {
    pub fn parse(s: &str) -> Result<RateLimit, String> {
        let err =
            || format!("rate limit `{s}`: expected a count per unit, such as `10/s`, `100/m` or `1000/h`");
        let (n, unit) = s.trim().split_once('/').ok_or_else(err)?;
        let n: u32 = n.trim().parse().map_err(|_| err())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(err()),
        };
        if n == 0 {
            return Err(format!("rate limit `{s}`: the count must be at least 1"));
        }
        Ok(RateLimit {
            text: s.trim().to_string(),
            interval: per / n,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive transient failures that open the circuit.
    pub failures: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// What to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// Over the rate limit: the next free slot.
    Paced(Ts),
    /// The destination's circuit is open until then.
    Open(Ts),
}

#[derive(Debug, Default)]
struct Circuit {
    consecutive: u32,
    open_until: Option<Ts>,
    probing: bool,
    /// When it opened, kept through half-open probes that fail: how long the destination
    /// has been given up on (the `circuit_open` alert).
    opened_at: Option<Ts>,
}

/// A circuit as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct CircuitView {
    pub destination: String,
    /// `closed`, `open` or `half_open` (a probe is being made).
    pub state: &'static str,
    pub consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_until: Option<Ts>,
    /// When it opened (kept while probes fail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<Ts>,
}

/// Rate-limit slots per action, and circuits and bulkheads per destination.
#[derive(Debug, Default)]
pub struct Guards {
    slots: Mutex<HashMap<String, Ts>>,
    circuits: Mutex<HashMap<String, Circuit>>,
    pub bulkheads: std::sync::Arc<super::bulkhead::Bulkheads>,
}

impl Guards {
    /// Takes the next slot of `limit` for `key` if it is due by `now`; otherwise says when it
    /// is and takes nothing.
    pub fn pace(&self, key: &str, limit: &RateLimit, now: Ts) -> Gate {
        let Ok(mut slots) = self.slots.lock() else {
            return Gate::Go;
        };
        let next = slots.get(key).copied().unwrap_or(Ts(0));
        if next > now {
            return Gate::Paced(next);
        }
        slots.insert(key.to_string(), now.plus(limit.interval));
        Gate::Go
    }

    /// Whether an attempt against `destination` may be made now.
    pub fn check(&self, destination: &str, cfg: &BreakerConfig, now: Ts) -> Gate {
        if cfg.failures == 0 {
            return Gate::Go;
        }
        let Ok(mut circuits) = self.circuits.lock() else {
            return Gate::Go;
        };
        let c = circuits.entry(destination.to_string()).or_default();
        match c.open_until {
            None => Gate::Go,
            Some(until) if now < until => Gate::Open(until),
            Some(_) if c.probing => {
                // One probe at a time; others look again shortly.
                Gate::Open(now.plus(cfg.cooldown.min(Duration::from_secs(1))))
            }
            Some(_) => {
                c.probing = true;
                tracing::info!(%destination, "circuit half-open: letting one probe through");
                Gate::Go
            }
        }
    }

    /// Records an attempt's outcome: `true` for success, `false` for a transient failure
    /// (permanent failures say nothing about the destination's health and are not recorded).
    pub fn record(&self, destination: &str, cfg: &BreakerConfig, ok: bool, now: Ts) {
        if cfg.failures == 0 {
            return;
        }
        let Ok(mut circuits) = self.circuits.lock() else {
            return;
        };
        let c = circuits.entry(destination.to_string()).or_default();
        if ok {
            if c.open_until.is_some() {
                tracing::info!(%destination, "circuit closed: the destination answers again");
            }
            *c = Circuit::default();
            return;
        }
        c.consecutive = c.consecutive.saturating_add(1);
        let was_probe = std::mem::take(&mut c.probing);
        if was_probe || (c.open_until.is_none() && c.consecutive >= cfg.failures) {
            let until = now.plus(cfg.cooldown);
            c.open_until = Some(until);
            c.opened_at.get_or_insert(now);
            tracing::warn!(%destination, failures = c.consecutive, %until, "circuit open: pausing attempts to this destination");
        }
    }

    pub fn circuits(&self, now: Ts) -> Vec<CircuitView> {
        let Ok(circuits) = self.circuits.lock() else {
            return Vec::new();
        };
        let mut out: Vec<CircuitView> = circuits
            .iter()
            .map(|(d, c)| CircuitView {
                destination: d.clone(),
                state: match c.open_until {
                    None => "closed",
                    Some(_) if c.probing => "half_open",
                    Some(u) if now < u => "open",
                    Some(_) => "half_open",
                },
                consecutive_failures: c.consecutive,
                open_until: c.open_until,
                opened_at: c.opened_at,
            })
            .collect();
        out.sort_by(|a, b| a.destination.cmp(&b.destination));
        out
    }

    /// The circuits that hold attempts back now (open or half open).
    pub fn open_circuits(&self, now: Ts) -> Vec<CircuitView> {
        let mut all = self.circuits(now);
        all.retain(|c| c.state != "closed");
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_parse() {
        assert_eq!(
            RateLimit::parse("10/s").unwrap().interval,
            Duration::from_millis(100)
        );
        assert_eq!(RateLimit::parse("2/m").unwrap().interval, Duration::from_secs(30));
        assert_eq!(
            RateLimit::parse(" 3600/h ").unwrap().interval,
            Duration::from_secs(1)
        );
        assert!(RateLimit::parse("10").is_err());
        assert!(RateLimit::parse("0/s").is_err());
        assert!(RateLimit::parse("ten/s").is_err());
        assert!(RateLimit::parse("10/d").is_err());
    }

    #[test]
    fn pacing_spaces_attempts() {
        let g = Guards::default();
        let five = RateLimit::parse("5/s").unwrap();
        assert_eq!(g.pace("a", &five, Ts(1000)), Gate::Go);
        assert_eq!(g.pace("a", &five, Ts(1000)), Gate::Paced(Ts(1200)));
        assert_eq!(g.pace("a", &five, Ts(1199)), Gate::Paced(Ts(1200)));
        assert_eq!(g.pace("a", &five, Ts(1200)), Gate::Go);
        // Other keys are independent.
        assert_eq!(g.pace("b", &five, Ts(1200)), Gate::Go);
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let g = Guards::default();
        let cfg = BreakerConfig {
            failures: 3,
            cooldown: Duration::from_secs(10),
        };
        let d = "api.example.com:443";
        for i in 0..2 {
            assert_eq!(g.check(d, &cfg, Ts(i)), Gate::Go);
            g.record(d, &cfg, false, Ts(i));
        }
        assert_eq!(g.check(d, &cfg, Ts(2)), Gate::Go);
        g.record(d, &cfg, false, Ts(2));
        assert_eq!(g.check(d, &cfg, Ts(3)), Gate::Open(Ts(10_002)));
        assert_eq!(g.circuits(Ts(3))[0].state, "open");
        // Cool-down over: one probe, the others wait.
        assert_eq!(g.check(d, &cfg, Ts(10_002)), Gate::Go);
        assert!(matches!(g.check(d, &cfg, Ts(10_003)), Gate::Open(_)));
        assert_eq!(g.circuits(Ts(10_003))[0].state, "half_open");
        // The probe fails: open again for a full cool-down.
        g.record(d, &cfg, false, Ts(10_100));
        assert_eq!(g.check(d, &cfg, Ts(10_101)), Gate::Open(Ts(20_100)));
        // Next probe succeeds: closed, counters reset.
        assert_eq!(g.check(d, &cfg, Ts(20_100)), Gate::Go);
        g.record(d, &cfg, true, Ts(20_200));
        assert_eq!(g.check(d, &cfg, Ts(20_201)), Gate::Go);
        assert_eq!(g.circuits(Ts(20_201))[0].state, "closed");
        assert_eq!(g.circuits(Ts(20_201))[0].consecutive_failures, 0);
    }

    #[test]
    fn successes_reset_the_count_and_zero_disables() {
        let g = Guards::default();
        let cfg = BreakerConfig {
            failures: 2,
            cooldown: Duration::from_secs(1),
        };
        g.record("d", &cfg, false, Ts(0));
        g.record("d", &cfg, true, Ts(1));
        g.record("d", &cfg, false, Ts(2));
        assert_eq!(g.check("d", &cfg, Ts(3)), Gate::Go);
        let off = BreakerConfig {
            failures: 0,
            cooldown: Duration::from_secs(1),
        };
        for i in 0..10 {
            g.record("e", &off, false, Ts(i));
        }
        assert_eq!(g.check("e", &off, Ts(11)), Gate::Go);
    }
}
