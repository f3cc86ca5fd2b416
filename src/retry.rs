//! Retry policy as data plus the pure maths on it: which outcomes are retried, how long to
//! wait (exponential backoff with jitter, `Retry-After` honoured), and when to give up.
//!
//! Default schedule (documented in README): 12 attempts, first retry after 5 s, doubling, capped
//! at 1 h between attempts, giving up once a run is 24 h old — about 3.4 hours of trying.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize, Default, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all, the first included, e.g. `8`.
    #[schemars(range(min = 1))]
    pub max_attempts: Option<u32>,
    /// The wait before the second attempt, e.g. `30s`.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>", transform = crate::flow::schema::duration)]
    pub initial_delay: Option<Duration>,
    /// Each wait is this many times the one before, e.g. `2`.
    #[schemars(range(min = 1, max = 100))]
    pub multiplier: Option<f64>,
    /// The longest wait between attempts, e.g. `1h`.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>", transform = crate::flow::schema::duration)]
    pub max_delay: Option<Duration>,
    /// No attempt starts later than this after the run's first, e.g. `3d`.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>", transform = crate::flow::schema::duration)]
    pub max_age: Option<Duration>,
    /// Extra statuses to retry besides 5xx, 408 and 429, e.g. `[409, "4xx"]`.
    #[serde(default)]
    pub retry_on: Vec<StatusSpec>,
}

/// A status code (`404`), a class (`"4xx"`) or a range (`"200-299"`).
#[derive(Debug, Deserialize, Clone, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(transform = crate::flow::schema::status)]
pub enum StatusSpec {
    Code(u16),
    Text(String),
}

/// A set of HTTP statuses as inclusive ranges.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    pub fn success_default() -> Self {
        StatusSet(vec![(200, 299)])
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }

    /// Parses `404`, `"4xx"` or `"200-299"` entries.
    pub fn parse(specs: &[StatusSpec]) -> Result<Self, String> {
        let mut out = Vec::new();
        for spec in specs {
            let range = match spec {
                StatusSpec::Code(c) => (*c, *c),
                StatusSpec::Text(t) => parse_status_text(t.trim()).ok_or_else(|| {
                    format!("`{t}` is not a status, a class like \"4xx\" or a range like \"200-299\"")
                })?,
            };
            if range.0 < 100 || range.1 > 599 || range.0 > range.1 {
                return Err(format!("status range {}-{} is outside 100-599", range.0, range.1));
            }
            out.push(range);
        }
        Ok(StatusSet(out))
    }
}

fn parse_status_text(t: &str) -> Option<(u16, u16)> {
    if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
        let d: u16 = class.parse().ok()?;
        return Some((d * 100, d * 100 + 99));
    }
    if let Some((a, b)) = t.split_once('-') {
        return Some((a.trim().parse().ok()?, b.trim().parse().ok()?));
    }
    let c: u16 = t.parse().ok()?;
    Some((c, c))
}

/// How an action is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub multiplier: f64,
    pub max_delay: Duration,
    pub max_age: Duration,
    /// Statuses retried in addition to 5xx, 408 and 429.
    pub retry_on: StatusSet,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 12,
            initial_delay: Duration::from_secs(5),
            multiplier: 2.0,
            max_delay: Duration::from_secs(3600),
            max_age: Duration::from_secs(24 * 3600),
            retry_on: StatusSet::default(),
        }
    }
}

/// How much the computed delay may vary either way, so retries of many runs spread out.
const JITTER: f64 = 0.2;

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    RetryIn(Duration),
    GiveUp(String),
}

/// How a finished HTTP exchange is classified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatusClass {
    Success,
    Retry,
    Fail,
}

impl RetryPolicy {
    /// `base` overlaid with the fields `spec` sets. The error names the key it is about
    /// (`""` for settings that contradict each other).
    pub fn overlay(base: &RetryPolicy, spec: &RetrySpec) -> Result<RetryPolicy, (&'static str, String)> {
        let mut p = base.clone();
        if let Some(n) = spec.max_attempts {
            if n == 0 {
                return Err(("max_attempts", "max_attempts must be at least 1".into()));
            }
            p.max_attempts = n;
        }
        if let Some(d) = spec.initial_delay {
            p.initial_delay = d;
        }
        if let Some(m) = spec.multiplier {
            if !(1.0..=100.0).contains(&m) {
                return Err((
                    "multiplier",
                    "multiplier must be between 1 and 100 (each wait is this many times the one before)"
                        .into(),
                ));
            }
            p.multiplier = m;
        }
        if let Some(d) = spec.max_delay {
            p.max_delay = d;
        }
        if let Some(d) = spec.max_age {
            p.max_age = d;
        }
        if !spec.retry_on.is_empty() {
            p.retry_on = StatusSet::parse(&spec.retry_on).map_err(|e| ("retry_on", e))?;
        }
        let show = |d: Duration| humantime::format_duration(d).to_string();
        if p.initial_delay > p.max_delay {
            return Err((
                "",
                format!(
                    "initial_delay ({}) is longer than max_delay ({}): the first wait could never happen",
                    show(p.initial_delay),
                    show(p.max_delay)
                ),
            ));
        }
        if p.max_attempts > 1 && p.max_age < p.initial_delay {
            return Err((
                "",
                format!(
                    "max_age ({}) is shorter than initial_delay ({}): the action would never be retried (set max_attempts: 1 for that)",
                    show(p.max_age),
                    show(p.initial_delay)
                ),
            ));
        }
        Ok(p)
    }

    /// Classifies a response status against the action's success set and this policy.
    pub fn classify(&self, status: u16, success: &StatusSet) -> StatusClass {
        if success.contains(status) {
            StatusClass::Success
        } else if status >= 500 || status == 408 || status == 429 || self.retry_on.contains(status) {
            StatusClass::Retry
        } else {
            StatusClass::Fail
        }
    }

    /// Backoff before the attempt after `failed_attempts` failures; `jitter` is in [-1, 1].
    pub fn backoff(&self, failed_attempts: u32, jitter: f64) -> Duration {
        let exp = failed_attempts.saturating_sub(1).min(64) as i32;
        let base = self.initial_delay.as_secs_f64() * self.multiplier.powi(exp);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jittered = capped * (1.0 + JITTER * jitter.clamp(-1.0, 1.0));
        Duration::from_secs_f64(jittered.min(self.max_delay.as_secs_f64()).max(0.0))
    }

    /// Decides whether to try again after the `failed_attempts`-th failure of an action of a run
    /// that is `age` old. A `Retry-After` from the server replaces the computed backoff (capped
    /// at `max_delay`).
    pub fn decide(
        &self,
        failed_attempts: u32,
        age: Duration,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Decision {
        if failed_attempts >= self.max_attempts {
            return Decision::GiveUp(format!("gave up after {failed_attempts} attempts"));
        }
        let delay = match retry_after {
            Some(d) => d.min(self.max_delay),
            None => self.backoff(failed_attempts, jitter),
        };
        if age + delay > self.max_age {
            return Decision::GiveUp(format!(
                "gave up: the next attempt would come after the run's maximum age of {}",
                humantime::format_duration(self.max_age)
            ));
        }
        Decision::RetryIn(delay)
    }
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_grows_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 0.0), Duration::from_secs(5));
        assert_eq!(p.backoff(2, 0.0), Duration::from_secs(10));
        assert_eq!(p.backoff(3, 0.0), Duration::from_secs(20));
        assert_eq!(p.backoff(20, 0.0), Duration::from_secs(3600));
        assert_eq!(p.backoff(20, 1.0), Duration::from_secs(3600));
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(6));
        assert_eq!(p.backoff(1, -1.0), Duration::from_secs(4));
    }

    #[test]
    fn jitter_never_makes_gaps_shrink() {
        let p = RetryPolicy::default();
        for n in 1..8 {
            assert!(p.backoff(n, 1.0) < p.backoff(n + 1, -1.0));
        }
    }

    #[test]
    fn classification() {
        let p = RetryPolicy::default();
        let ok = StatusSet::success_default();
        assert_eq!(p.classify(200, &ok), StatusClass::Success);
        assert_eq!(p.classify(503, &ok), StatusClass::Retry);
        assert_eq!(p.classify(429, &ok), StatusClass::Retry);
        assert_eq!(p.classify(408, &ok), StatusClass::Retry);
        assert_eq!(p.classify(400, &ok), StatusClass::Fail);
        assert_eq!(p.classify(302, &ok), StatusClass::Fail);
        let spec = RetrySpec {
            retry_on: vec![StatusSpec::Code(409), StatusSpec::Text("423-424".into())],
            ..RetrySpec::default()
        };
        let p = RetryPolicy::overlay(&p, &spec).map_err(|(_, e)| e).unwrap();
        assert_eq!(p.classify(409, &ok), StatusClass::Retry);
        assert_eq!(p.classify(424, &ok), StatusClass::Retry);
        let custom = StatusSet::parse(&[StatusSpec::Text("2xx".into()), StatusSpec::Code(404)]).unwrap();
        assert_eq!(p.classify(404, &custom), StatusClass::Success);
    }

    #[test]
    fn status_set_errors() {
        assert!(StatusSet::parse(&[StatusSpec::Text("abc".into())]).is_err());
        assert!(StatusSet::parse(&[StatusSpec::Code(700)]).is_err());
        assert!(StatusSet::parse(&[StatusSpec::Text("300-200".into())]).is_err());
    }

    #[test]
    fn gives_up_on_attempts_and_age() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.decide(1, Duration::ZERO, None, 0.0),
            Decision::RetryIn(Duration::from_secs(5))
        );
        assert!(matches!(
            p.decide(3, Duration::ZERO, None, 0.0),
            Decision::GiveUp(_)
        ));
        assert!(matches!(
            p.decide(1, Duration::from_secs(24 * 3600), None, 0.0),
            Decision::GiveUp(_)
        ));
        assert_eq!(
            p.decide(1, Duration::ZERO, Some(Duration::from_secs(30)), 0.0),
            Decision::RetryIn(Duration::from_secs(30))
        );
        assert_eq!(
            p.decide(1, Duration::ZERO, Some(Duration::from_secs(99999)), 0.0),
            Decision::RetryIn(Duration::from_secs(3600))
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(60));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
