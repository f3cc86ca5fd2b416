//! Alerts: what a flow's `alerts:` block says to watch, and the pure judgement of whether an
//! alert holds, given the figures. The engine (`engine/alerts.rs`) gathers the figures, keeps
//! each alert's state in the store and raises `alert.raised` / `alert.resolved` on a change.
//!
//! Per flow: **silence** (no accepted request for longer than a duration, optionally counted
//! only inside a weekly window in a time zone), **failure rate** of the runs that ended in a
//! window, **refusals** (bad signatures, wrong tokens, addresses not allowed) in a window, and
//! **dead letters** (runs failed for good) in a window. For the whole server: **backlog** (the
//! oldest due run waited longer than) and **circuit open** (a destination's circuit open
//! longer than) — set by `serve` flags, not per flow.
//!
//! Defaults page nobody for a flow that never had traffic: silence is judged only once a flow
//! has had an accepted request (or when its `silence` is written out).

use std::time::Duration;

use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::time::Ts;

/// Event raised when an alert starts.
pub const RAISED: &str = "alert.raised";
/// Event raised when an alert clears.
pub const RESOLVED: &str = "alert.resolved";
/// The longest window a rule can count over (the figures kept reach back a day).
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What an alert is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Silence,
    FailureRate,
    Refusals,
    DeadLetters,
    Backlog,
    CircuitOpen,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Silence => "silence",
            Kind::FailureRate => "failure_rate",
            Kind::Refusals => "refusals",
            Kind::DeadLetters => "dead_letters",
            Kind::Backlog => "backlog",
            Kind::CircuitOpen => "circuit_open",
        }
    }
}

// ---- The flow file's `alerts:` -------------------------------------------------------------

/// `alerts:` in a flow file. Each rule is a table, or `off`; a rule left out takes its default.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsSpec {
    /// No accepted request for longer than `after`. Default: `after: 24h`, once the flow
    /// has had traffic.
    pub silence: Option<Toggle<SilenceSpec>>,
    /// More than `above` of the runs that ended in `window` failed, once at least `min_runs`
    /// ended. Default: `above: 50%`, `window: 15m`, `min_runs: 10`.
    pub failure_rate: Option<Toggle<FailureRateSpec>>,
    /// At least `at_least` requests refused (bad signature, wrong token, address not allowed,
    /// stale timestamp) in `window`. Default: `at_least: 50`, `window: 5m`.
    pub refusals: Option<Toggle<CountSpec>>,
    /// At least `at_least` runs failed for good (retries spent) in `window`. Default:
    /// `at_least: 1`, `window: 1h`.
    pub dead_letters: Option<Toggle<CountSpec>>,
}

/// A rule, or `off` (also `false`).
#[derive(Debug, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Toggle<T> {
    Off(OffWord),
    On(T),
}

/// By hand rather than `untagged`: a mistake inside the table is reported as itself
/// (`unknown field `windw``), not as "matched no variant".
impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Bool(false) => Ok(Toggle::Off(OffWord)),
            Value::String(s) if s == "off" => Ok(Toggle::Off(OffWord)),
            Value::Object(_) => T::deserialize(v)
                .map(Toggle::On)
                .map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom("expected a table of settings, or `off`")),
        }
    }
}

/// `off` or `false`.
#[derive(Debug, schemars::JsonSchema)]
#[schemars(with = "OffSchema")]
pub struct OffWord;

#[allow(dead_code)]
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
enum OffSchema {
    /// `off`
    Word(OffLiteral),
    /// `false`
    No(bool),
}

#[allow(dead_code)]
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum OffLiteral {
    Off,
}

impl<'de> Deserialize<'de> for OffWord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(false) => Ok(OffWord),
            Value::String(s) if s == "off" => Ok(OffWord),
            _ => Err(serde::de::Error::custom("expected `off`")),
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    /// How long without an accepted request, e.g. `2h`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String", transform = crate::flow::schema::duration)]
    pub after: Duration,
    /// Count only this weekly window, e.g. `Mon-Fri 08:00-20:00` (days: Mon…Sun, a range or a
    /// comma list; times in 24 h). Silence outside it is not counted.
    pub during: Option<String>,
    /// IANA time zone of `during`, e.g. `Europe/Berlin`; default UTC.
    #[schemars(transform = crate::flow::schema::timezone)]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureRateSpec {
    /// A percentage, e.g. `20%`.
    #[schemars(transform = crate::flow::schema::percent)]
    pub above: String,
    /// The window the rate is over, e.g. `15m`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String", transform = crate::flow::schema::duration)]
    pub window: Duration,
    /// Runs that must have ended in the window before the rate counts, e.g. `20`; default 10.
    pub min_runs: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountSpec {
    /// How many in the window raise the alert, e.g. `10`.
    #[schemars(range(min = 1))]
    pub at_least: u64,
    /// The window they are counted in, e.g. `5m`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String", transform = crate::flow::schema::duration)]
    pub window: Duration,
}

// ---- Compiled rules ------------------------------------------------------------------------

/// A flow's rules, checked and with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub silence: Option<Silence>,
    pub failure_rate: Option<FailureRate>,
    pub refusals: Option<Count>,
    pub dead_letters: Option<Count>,
    /// Which rules the file wrote (a table or `off`); the others take the server's defaults.
    pub written: Written,
}

/// Which of a flow's rules its file wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Written {
    pub silence: bool,
    pub failure_rate: bool,
    pub refusals: bool,
    pub dead_letters: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub after: Duration,
    pub during: Option<Weekly>,
    /// Written out in the flow file: judged from the start even before any traffic.
    pub explicit: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailureRate {
    /// A fraction in (0, 1).
    pub above: f64,
    pub window: Duration,
    pub min_runs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Count {
    pub at_least: u64,
    pub window: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            silence: Some(Silence {
                after: Duration::from_secs(24 * 3600),
                during: None,
                explicit: false,
            }),
            failure_rate: Some(FailureRate {
                above: 0.5,
                window: Duration::from_secs(15 * 60),
                min_runs: 10,
            }),
            refusals: Some(Count {
                at_least: 50,
                window: Duration::from_secs(5 * 60),
            }),
            dead_letters: Some(Count {
                at_least: 1,
                window: Duration::from_secs(3600),
            }),
            written: Written::default(),
        }
    }
}

/// Which rule a problem is about (its key in the flow file) and what is wrong.
pub type RuleError = (&'static str, String);

fn window_ok(key: &'static str, w: Duration) -> Result<Duration, RuleError> {
    if w.is_zero() || w > MAX_WINDOW {
        return Err((
            key,
            format!(
                "window must be more than 0 and at most 24h, not {}",
                humantime::format_duration(w)
            ),
        ));
    }
    Ok(w)
}

impl Rules {
    /// The rules a flow runs under: those its file wrote, the server's `defaults` for the
    /// others; silence and refusals only for a webhook flow.
    pub fn with_defaults(&self, defaults: &Rules, webhook: bool) -> Rules {
        let w = self.written;
        let silence = if w.silence {
            &self.silence
        } else {
            &defaults.silence
        };
        let failure_rate = if w.failure_rate {
            &self.failure_rate
        } else {
            &defaults.failure_rate
        };
        Rules {
            silence: silence.clone().filter(|_| webhook),
            failure_rate: failure_rate.clone(),
            refusals: if w.refusals {
                self.refusals
            } else {
                defaults.refusals
            }
            .filter(|_| webhook),
            dead_letters: if w.dead_letters {
                self.dead_letters
            } else {
                defaults.dead_letters
            },
            written: w,
        }
    }

    /// These rules as the server's defaults for every flow (`serve --alert-defaults FILE`):
    /// a silence written there still pages nobody for a flow that never had traffic.
    pub fn as_defaults(mut self) -> Rules {
        if let Some(s) = &mut self.silence {
            s.explicit = false;
        }
        self
    }

    /// The rules of a flow's `alerts:` (absent: every default).
    pub fn compile(spec: Option<&AlertsSpec>) -> Result<Rules, RuleError> {
        let mut rules = Rules::default();
        let Some(spec) = spec else { return Ok(rules) };
        rules.written = Written {
            silence: spec.silence.is_some(),
            failure_rate: spec.failure_rate.is_some(),
            refusals: spec.refusals.is_some(),
            dead_letters: spec.dead_letters.is_some(),
        };
        match &spec.silence {
            None => {}
            Some(Toggle::Off(_)) => rules.silence = None,
            Some(Toggle::On(s)) => {
                if s.after.is_zero() {
                    return Err(("silence", "after must be more than 0".into()));
                }
                let tz = match &s.timezone {
                    Some(name) => crate::schedule::parse_tz(name).map_err(|e| ("silence", e))?,
                    None => Tz::UTC,
                };
                if s.timezone.is_some() && s.during.is_none() {
                    return Err(("silence", "timezone is for `during`; give `during` too".into()));
                }
                let during = match &s.during {
                    Some(d) => Some(Weekly::parse(d, tz).map_err(|e| ("silence", e))?),
                    None => None,
                };
                rules.silence = Some(Silence {
                    after: s.after,
                    during,
                    explicit: true,
                });
            }
        }
        match &spec.failure_rate {
            None => {}
            Some(Toggle::Off(_)) => rules.failure_rate = None,
            Some(Toggle::On(f)) => {
                let above = parse_percent(&f.above).map_err(|e| ("failure_rate", e))?;
                rules.failure_rate = Some(FailureRate {
                    above,
                    window: window_ok("failure_rate", f.window)?,
                    min_runs: f.min_runs.unwrap_or(10).max(1),
                });
            }
        }
        for (key, spec, slot) in [
            ("refusals", &spec.refusals, &mut rules.refusals),
            ("dead_letters", &spec.dead_letters, &mut rules.dead_letters),
        ] {
            match spec {
                None => {}
                Some(Toggle::Off(_)) => *slot = None,
                Some(Toggle::On(c)) => {
                    if c.at_least == 0 {
                        return Err((key, "at_least must be 1 or more".into()));
                    }
                    *slot = Some(Count {
                        at_least: c.at_least,
                        window: window_ok(key, c.window)?,
                    });
                }
            }
        }
        Ok(rules)
    }
}

/// `20%` (or `0.2`) as a fraction strictly between 0 and 1.
pub(crate) fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("above: `{s}` is not a percentage such as `20%`"))?;
    if !(v > 0.0 && v < 1.0) {
        return Err(format!("above: `{s}` must be more than 0% and less than 100%"));
    }
    Ok(v)
}

// ---- A weekly window -----------------------------------------------------------------------

/// `Mon-Fri 08:00-20:00` in a time zone: days of the week and a span of each (to may be past
/// midnight: `Fri 22:00-02:00` runs into Saturday).
#[derive(Debug, Clone, PartialEq)]
pub struct Weekly {
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes after midnight.
    pub from: u32,
    pub to: u32,
    pub tz: Tz,
    pub text: String,
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `Mon` or `Monday` (any case) as 0 … `Sun` as 6.
fn day(s: &str) -> Result<usize, String> {
    let l = s.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|d| l == *d || (l.len() == 3 && d.starts_with(&l)))
        .ok_or_else(|| format!("`{}` is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)", s.trim()))
}

fn minutes(s: &str) -> Result<u32, String> {
    let (h, m) = s
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not a time such as 08:00"))?;
    let (h, m): (u32, u32) = (
        h.parse()
            .map_err(|_| format!("`{s}` is not a time such as 08:00"))?,
        m.parse()
            .map_err(|_| format!("`{s}` is not a time such as 08:00"))?,
    );
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(format!("`{s}` is not a time of day"));
    }
    Ok(h * 60 + m)
}

impl Weekly {
    pub fn parse(text: &str, tz: Tz) -> Result<Weekly, String> {
        let (days_part, times) = text
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("during: `{text}` is not days and hours such as `Mon-Fri 08:00-20:00`"))?;
        let mut days = [false; 7];
        for part in days_part.split(',') {
            match part.split_once(['-', '–']) {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut d = a;
                    loop {
                        days[d] = true;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[day(part)?] = true,
            }
        }
        let (from, to) = times
            .trim()
            .split_once(['-', '–'])
            .ok_or_else(|| format!("during: `{times}` is not hours such as 08:00-20:00"))?;
        let (from, to) = (minutes(from)?, minutes(to)?);
        if from == to {
            return Err(format!("during: `{times}` is an empty span"));
        }
        Ok(Weekly {
            days,
            from,
            to,
            tz,
            text: text.trim().to_string(),
        })
    }

    /// How much of `[start, end)` lies inside the window. Walks the days in between, at most
    /// 15 of them: silence is judged against durations well under that.
    pub fn overlap(&self, start: Ts, end: Ts) -> Duration {
        if end <= start {
            return Duration::ZERO;
        }
        let local = |t: Ts| {
            self.tz
                .timestamp_millis_opt(t.0 as i64)
                .single()
                .map(|d| d.date_naive())
        };
        let from = Ts(start.0.max(end.0.saturating_sub(15 * 24 * 3600 * 1000)));
        let (Some(first), Some(last)) = (local(from), local(end)) else {
            return Duration::ZERO;
        };
        // From the day before: its span may run past midnight into the first day.
        let mut date = first.pred_opt().unwrap_or(first);
        let mut total = 0u64;
        while date <= last {
            if self.days[date.weekday().num_days_from_monday() as usize] {
                let span_end = if self.to > self.from {
                    self.to
                } else {
                    self.to + 24 * 60
                };
                let at = |mins: u32| {
                    let day_start = date.and_hms_opt(0, 0, 0)?;
                    let naive = day_start + chrono::Duration::minutes(i64::from(mins));
                    self.tz
                        .from_local_datetime(&naive)
                        .earliest()
                        .map(|d| d.timestamp_millis() as u64)
                };
                if let (Some(a), Some(b)) = (at(self.from), at(span_end)) {
                    let (a, b) = (a.max(start.0), b.min(end.0));
                    if b > a {
                        total += b - a;
                    }
                }
            }
            match date.succ_opt() {
                Some(d) => date = d,
                None => break,
            }
        }
        Duration::from_millis(total)
    }

    /// Whether `t` is inside the window.
    pub fn contains(&self, t: Ts) -> bool {
        let Some(local) = self.tz.timestamp_millis_opt(t.0 as i64).single() else {
            return false;
        };
        let mins = local.hour() * 60 + local.minute();
        let today = local.weekday().num_days_from_monday() as usize;
        if self.from < self.to {
            self.days[today] && mins >= self.from && mins < self.to
        } else {
            // Past midnight: the evening belongs to today's span, the early hours to
            // yesterday's.
            (self.days[today] && mins >= self.from) || (self.days[(today + 6) % 7] && mins < self.to)
        }
    }
}

// ---- Judgement -----------------------------------------------------------------------------

/// What the engine counted for one flow, over each rule's window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowFigures {
    /// The last accepted request this instance or the store knows of.
    pub last_accepted: Option<Ts>,
    /// When this instance started watching the flow (explicit silence counts from there).
    pub watched_since: Ts,
    /// Runs that ended in the failure-rate window: succeeded and failed.
    pub ended_ok: u64,
    pub ended_failed: u64,
    /// Refused requests in the refusals window.
    pub refused: u64,
    /// Runs failed for good in the dead-letters window.
    pub dead: u64,
}

/// An alert that holds now, with the figures that make it hold and a sentence for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub kind: Kind,
    pub figures: Value,
    pub message: String,
}

fn secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Silence of a flow at `now`, if it holds.
pub fn silence(rule: &Silence, f: &FlowFigures, now: Ts) -> Option<Firing> {
    let since = match f.last_accepted {
        Some(t) => t,
        None if rule.explicit => f.watched_since,
        None => return None,
    };
    let silent = match &rule.during {
        Some(w) => w.overlap(since, now),
        None => Duration::from_millis(now.0.saturating_sub(since.0)),
    };
    (silent > rule.after).then(|| Firing {
        kind: Kind::Silence,
        figures: json!({
            "last_accepted": f.last_accepted,
            "silent_seconds": silent.as_secs(),
            "after_seconds": rule.after.as_secs(),
            "during": rule.during.as_ref().map(|w| format!("{} {}", w.text, w.tz.name())),
        }),
        message: match f.last_accepted {
            Some(t) => format!("no accepted request for {} (the last at {t})", secs(silent)),
            None => format!(
                "no accepted request for {} (none since hookflow started)",
                secs(silent)
            ),
        },
    })
}

/// The failure-rate alert, if it holds.
pub fn failure_rate(rule: &FailureRate, f: &FlowFigures) -> Option<Firing> {
    let ended = f.ended_ok + f.ended_failed;
    if ended < rule.min_runs || ended == 0 {
        return None;
    }
    let rate = f.ended_failed as f64 / ended as f64;
    (rate > rule.above).then(|| Firing {
        kind: Kind::FailureRate,
        figures: json!({
            "failed": f.ended_failed, "ended": ended, "rate": (rate * 1000.0).round() / 1000.0,
            "above": rule.above, "window_seconds": rule.window.as_secs(),
        }),
        message: format!(
            "{} of {ended} runs failed in the last {} ({:.0}%, the alert is above {:.0}%)",
            f.ended_failed,
            secs(rule.window),
            rate * 100.0,
            rule.above * 100.0
        ),
    })
}

/// A count alert (refusals, dead letters), if it holds.
pub fn count(kind: Kind, rule: &Count, n: u64) -> Option<Firing> {
    let what = match kind {
        Kind::Refusals => "requests refused",
        _ => "runs failed for good",
    };
    (n >= rule.at_least).then(|| Firing {
        kind,
        figures: json!({"count": n, "at_least": rule.at_least, "window_seconds": rule.window.as_secs()}),
        message: format!("{n} {what} in the last {}", secs(rule.window)),
    })
}

/// Every alert of a flow's rules that holds now.
pub fn judge(rules: &Rules, f: &FlowFigures, now: Ts) -> Vec<Firing> {
    let mut out = Vec::new();
    out.extend(rules.silence.as_ref().and_then(|r| silence(r, f, now)));
    out.extend(rules.failure_rate.as_ref().and_then(|r| failure_rate(r, f)));
    out.extend(
        rules
            .refusals
            .as_ref()
            .and_then(|r| count(Kind::Refusals, r, f.refused)),
    );
    out.extend(
        rules
            .dead_letters
            .as_ref()
            .and_then(|r| count(Kind::DeadLetters, r, f.dead)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Ts {
        Ts(chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis() as u64)
    }

    #[test]
    fn defaults_page_nobody_for_a_flow_without_traffic() {
        let rules = Rules::default();
        let f = FlowFigures {
            watched_since: at("2026-01-01T00:00:00Z"),
            ..Default::default()
        };
        assert!(judge(&rules, &f, at("2026-03-01T00:00:00Z")).is_empty());
        let had = FlowFigures {
            last_accepted: Some(at("2026-01-01T00:00:00Z")),
            ..f.clone()
        };
        let fired = judge(&rules, &had, at("2026-01-02T00:00:01Z"));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].kind, Kind::Silence);
        assert!(judge(&rules, &had, at("2026-01-01T23:59:59Z")).is_empty());
    }

    #[test]
    fn silence_counts_only_the_weekly_window() {
        let w = Weekly::parse(
            "Mon-Fri 08:00-20:00",
            crate::schedule::parse_tz("Europe/Berlin").unwrap(),
        )
        .unwrap();
        // Friday 2026-03-06 18:00 Berlin (17:00 UTC) to Monday 09:30 Berlin (08:30 UTC):
        // two hours on Friday and one and a half on Monday.
        let d = w.overlap(at("2026-03-06T17:00:00Z"), at("2026-03-09T08:30:00Z"));
        assert_eq!(d, Duration::from_secs(3 * 3600 + 1800));
        assert!(w.contains(at("2026-03-09T08:30:00Z")));
        assert!(!w.contains(at("2026-03-07T10:00:00Z")), "Saturday");
        assert!(!w.contains(at("2026-03-09T06:59:00Z")), "07:59 Berlin");
        let rule = Silence {
            after: Duration::from_secs(3 * 3600),
            during: Some(w),
            explicit: true,
        };
        let f = FlowFigures {
            last_accepted: Some(at("2026-03-06T17:00:00Z")),
            ..Default::default()
        };
        assert!(
            silence(&rule, &f, at("2026-03-09T07:59:00Z")).is_none(),
            "the weekend does not count"
        );
        assert!(silence(&rule, &f, at("2026-03-09T08:30:00Z")).is_some());
        let overnight = Weekly::parse("Fri 22:00-02:00", Tz::UTC).unwrap();
        assert!(
            overnight.contains(at("2026-03-07T01:00:00Z")),
            "Saturday 01:00 is Friday's night"
        );
        assert_eq!(
            overnight.overlap(at("2026-03-06T00:00:00Z"), at("2026-03-08T00:00:00Z")),
            Duration::from_secs(4 * 3600)
        );
    }

    #[test]
    fn rates_and_counts_need_their_minimum() {
        let rule = FailureRate {
            above: 0.2,
            window: Duration::from_secs(60),
            min_runs: 10,
        };
        let f = |ok, failed| FlowFigures {
            ended_ok: ok,
            ended_failed: failed,
            ..Default::default()
        };
        assert!(failure_rate(&rule, &f(2, 7)).is_none(), "9 runs are not enough");
        assert!(failure_rate(&rule, &f(8, 2)).is_none(), "20% is not above 20%");
        let fired = failure_rate(&rule, &f(5, 5)).unwrap();
        assert_eq!(fired.figures["rate"], 0.5);
        assert!(fired.message.contains("5 of 10 runs failed"), "{}", fired.message);
        let c = Count {
            at_least: 50,
            window: Duration::from_secs(300),
        };
        assert!(count(Kind::Refusals, &c, 49).is_none());
        assert!(count(Kind::Refusals, &c, 50).is_some());
    }

    #[test]
    fn rules_compile_with_defaults_and_name_what_is_wrong() {
        let spec: AlertsSpec = serde_yaml::from_str(
            "silence: { after: 2h, during: \"Mon-Fri 08:00-20:00\", timezone: Europe/Berlin }\nfailure_rate: off\nrefusals: { at_least: 5, window: 10s }\n",
        )
        .unwrap();
        let r = Rules::compile(Some(&spec)).unwrap();
        assert!(r.silence.as_ref().unwrap().explicit);
        assert_eq!(r.failure_rate, None);
        assert_eq!(r.refusals.unwrap().at_least, 5);
        assert_eq!(r.dead_letters, Rules::default().dead_letters);
        for (yaml, words) in [
            ("failure_rate: { above: 120%, window: 1m }", "less than 100%"),
            ("failure_rate: { above: lots, window: 1m }", "not a percentage"),
            ("refusals: { at_least: 0, window: 1m }", "1 or more"),
            ("dead_letters: { at_least: 1, window: 2d }", "at most 24h"),
            (
                "silence: { after: 1h, during: \"Mon-Fry 08:00-20:00\" }",
                "not a day",
            ),
            ("silence: { after: 1h, timezone: Europe/Berlin }", "give `during`"),
            (
                "silence: { after: 1h, during: \"Mon 08:00-20:00\", timezone: Europe/Berln }",
                "Europe/Berlin",
            ),
        ] {
            let spec: AlertsSpec = serde_yaml::from_str(yaml).unwrap();
            let (_, e) = Rules::compile(Some(&spec)).unwrap_err();
            assert!(e.contains(words), "{yaml}: {e}");
        }
        assert!(serde_yaml::from_str::<AlertsSpec>("silence: on").is_err());
        let typo = serde_yaml::from_str::<AlertsSpec>("refusals: { at_least: 5, windw: 1m }").unwrap_err();
        assert!(typo.to_string().contains("unknown field `windw`"), "{typo}");

        // The server's defaults fill what the file left out; webhook-only rules stay off
        // for other flows.
        let defaults: AlertsSpec = serde_yaml::from_str(
            "silence: { after: 6h }\nrefusals: off\ndead_letters: { at_least: 3, window: 10m }\n",
        )
        .unwrap();
        let mut defaults = Rules::compile(Some(&defaults)).unwrap();
        defaults.silence.as_mut().unwrap().explicit = false;
        let eff = r.with_defaults(&defaults, true);
        assert_eq!(eff.silence, r.silence, "written in the flow");
        assert_eq!(eff.failure_rate, None, "written `off` in the flow");
        assert_eq!(eff.refusals, r.refusals, "written in the flow");
        assert_eq!(eff.dead_letters.unwrap().at_least, 3, "from the defaults");
        let bare = Rules::compile(None).unwrap().with_defaults(&defaults, true);
        assert_eq!(bare.silence.unwrap().after, Duration::from_secs(6 * 3600));
        assert_eq!(bare.refusals, None);
        let event_flow = Rules::compile(None)
            .unwrap()
            .with_defaults(&Rules::default(), false);
        assert!(event_flow.silence.is_none() && event_flow.refusals.is_none());
        assert!(event_flow.failure_rate.is_some());
        assert!(serde_yaml::from_str::<AlertsSpec>("silence: false").is_ok());
    }
}
