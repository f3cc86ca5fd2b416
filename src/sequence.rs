//! Sequences: `wait` steps between a flow's actions and the `exit` conditions that end a
//! waiting run early. Pure: when a wait ends, given the rendered values and a clock reading, and
//! the index keys under which a run is found when something that exits it happens.
//!
//! A waiting run is a queue entry due at its wake-up time, like a retry — no memory, no worker.
//! What the flow file says (`wait:`, `exit:`) is read in `flow::spec`; this is what runs.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::time::Ts;

/// A compiled wait; `until` and `timezone` are template names.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    pub duration: Option<Duration>,
    pub until: Option<String>,
    pub at: Option<NaiveTime>,
    pub timezone: Option<String>,
}

/// A compiled exit; strings holding values are template names.
#[derive(Debug)]
pub enum Exit {
    SegmentLeft {
        segment: String,
        email: String,
    },
    Event {
        kind: String,
        matches: Vec<(String, String)>,
    },
    Contact {
        email: String,
        when: Vec<crate::matching::Condition>,
    },
}

/// Parses `HH:MM` (or `HH:MM:SS`).
pub fn parse_at(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(s.trim(), "%H:%M:%S"))
        .map_err(|_| format!("`{s}` is not a time of day like 09:00"))
}

pub fn parse_tz(s: &str) -> Result<Tz, String> {
    s.trim()
        .parse::<Tz>()
        .map_err(|_| format!("`{s}` is not an IANA time zone such as Europe/Berlin or America/New_York"))
}

/// The rendered parts of a wait, ready to compute its end.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub duration: Option<Duration>,
    pub until: Option<String>,
    pub at: Option<NaiveTime>,
    pub timezone: Option<Tz>,
}

impl Wait {
    /// Renders the wait's templates for one run.
    pub fn resolve(
        &self,
        templates: &crate::template::Templates,
        ctx: &minijinja::Value,
    ) -> Result<Resolved, String> {
        let render = |name: &str| templates.render(name, ctx).map_err(|e| e.to_string());
        Ok(Resolved {
            duration: self.duration,
            until: self.until.as_deref().map(render).transpose()?,
            at: self.at,
            timezone: match &self.timezone {
                Some(t) => Some(parse_tz(&render(t)?)?),
                None => None,
            },
        })
    }
}

/// When a wait that starts at `now` ends.
///
/// `until` (a moment, or a day taken at `at` or midnight) or `now + for`; then, when `at` is
/// given with `for` or alone, the first `at` local time at or after that. A local time that a
/// clock change skips moves to the first valid minute after it; one it repeats is taken the
/// first time. A moment already past ends the wait at once.
pub fn wake_at(now: Ts, w: &Resolved) -> Result<Ts, String> {
    let tz = w.timezone.unwrap_or(Tz::UTC);
    let now_utc = DateTime::<Utc>::from_timestamp_millis(now.0 as i64).ok_or("clock out of range")?;
    let base = match (&w.until, w.duration) {
        (Some(u), _) => {
            let u = u.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(u) {
                return Ok(at_least(now, t.with_timezone(&Utc)));
            }
            let day = NaiveDate::parse_from_str(u, "%Y-%m-%d")
                .map_err(|_| format!("until `{u}` is neither an RFC 3339 moment nor a day (YYYY-MM-DD)"))?;
            let local = day.and_time(w.at.unwrap_or(NaiveTime::MIN));
            return Ok(at_least(now, local_to_utc(tz, local)));
        }
        (None, Some(d)) => now_utc + chrono::Duration::from_std(d).map_err(|e| e.to_string())?,
        (None, None) => now_utc,
    };
    let Some(at) = w.at else {
        return Ok(at_least(now, base));
    };
    let local_base = base.with_timezone(&tz).naive_local();
    let mut day = local_base.date();
    loop {
        let candidate = local_to_utc(tz, day.and_time(at));
        if candidate >= base {
            return Ok(at_least(now, candidate));
        }
        day = day.checked_add_days(Days::new(1)).ok_or("date out of range")?;
    }
}

fn at_least(now: Ts, t: DateTime<Utc>) -> Ts {
    Ts((t.timestamp_millis().max(0) as u64).max(now.0))
}

/// A local wall time in `tz` as a UTC moment, through clock changes.
fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut t = local;
    for _ in 0..(4 * 60) {
        match tz.from_local_datetime(&t) {
            chrono::LocalResult::Single(d) => return d.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            chrono::LocalResult::None => t += chrono::Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&local)
}

/// The index keys under which the store finds a run of a flow with these exits: each
/// `segment_left` and `event` exit rendered for the run (`contact` exits are checked at
/// wake-ups instead). An exit that cannot be rendered for this run is left out, with why.
pub fn exit_keys(
    exits: &[Exit],
    templates: &crate::template::Templates,
    ctx: &minijinja::Value,
) -> (Vec<String>, Vec<String>) {
    let render = |t: &str| templates.render(t, ctx).map(|s| s.trim().to_string());
    let (mut keys, mut problems) = (Vec::new(), Vec::new());
    for exit in exits {
        let key = match exit {
            Exit::SegmentLeft { segment, email } => render(email).map(|e| segment_left_key(segment, &e)),
            Exit::Event { kind, matches } => matches
                .iter()
                .map(|(f, t)| render(t).map(|v| (f.clone(), Value::String(v))))
                .collect::<Result<Vec<_>, _>>()
                .map(|values| event_key(kind, &values)),
            Exit::Contact { .. } => continue,
        };
        match key {
            Ok(k) => keys.push(k),
            Err(e) => problems.push(e.to_string()),
        }
    }
    (keys, problems)
}

/// [`exit_keys`], logging each exit that cannot apply to the run.
pub fn exit_keys_logged(
    exits: &[Exit],
    templates: &crate::template::Templates,
    ctx: &minijinja::Value,
) -> Vec<String> {
    let (keys, problems) = exit_keys(exits, templates, ctx);
    for e in problems {
        tracing::warn!(error = %e, "an exit of this run could not be rendered; it cannot exit this way");
    }
    keys
}

/// The index key of a `segment_left` exit: the segment and the normalised address.
pub fn segment_left_key(segment: &str, email: &str) -> String {
    let email = crate::segment::normalize_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
    format!("segment_left/{segment}/{email}")
}

/// The index key of an `event` exit: its type and the field values, in field order, as JSON
/// (a number and the string of its digits are different values).
pub fn event_key(kind: &str, fields: &[(String, Value)]) -> String {
    let mut sorted: Vec<&(String, Value)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let parts: Vec<String> = sorted
        .iter()
        .map(|(f, v)| format!("{f}={}", canonical(v)))
        .collect();
    format!("event/{kind}/{}", parts.join("&"))
}

/// JSON with numbers written alike whatever their origin (`4711` and `4711.0`) and strings that
/// hold a number matching the number, as conditions compare them.
fn canonical(v: &Value) -> String {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), |f| format!("{f}")),
        Value::String(s) if s.trim().parse::<f64>().is_ok() => {
            format!("{}", s.trim().parse::<f64>().unwrap_or(0.0))
        }
        other => other.to_string(),
    }
}

/// The value at a dotted path (`order.id`) of an event's `data`.
pub fn field<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(data, |v, part| v.get(part))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Ts {
        Ts(DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis() as u64)
    }
    fn show(t: Ts) -> String {
        DateTime::<Utc>::from_timestamp_millis(t.0 as i64)
            .unwrap()
            .to_rfc3339()
    }
    fn berlin() -> Option<Tz> {
        Some(parse_tz("Europe/Berlin").unwrap())
    }

    #[test]
    fn durations_and_times_of_day() {
        let now = ts("2026-03-02T15:30:00Z");
        let w = |d: Option<u64>, at: Option<&str>, tz: Option<Tz>| Resolved {
            duration: d.map(Duration::from_secs),
            at: at.map(|a| parse_at(a).unwrap()),
            timezone: tz,
            until: None,
        };
        assert_eq!(
            show(wake_at(now, &w(Some(3 * 86400), None, None)).unwrap()),
            "2026-03-05T15:30:00+00:00"
        );
        // 7 days, then 09:00 Berlin (UTC+1 in winter).
        assert_eq!(
            show(wake_at(now, &w(Some(7 * 86400), Some("09:00"), berlin())).unwrap()),
            "2026-03-10T08:00:00+00:00"
        );
        // `at` alone: the next 09:00, tomorrow when today's has passed.
        assert_eq!(
            show(wake_at(now, &w(None, Some("09:00"), berlin())).unwrap()),
            "2026-03-03T08:00:00+00:00"
        );
        assert_eq!(
            show(wake_at(now, &w(None, Some("18:00"), berlin())).unwrap()),
            "2026-03-02T17:00:00+00:00"
        );
    }

    #[test]
    fn clock_changes() {
        let w = |at: &str| Resolved {
            at: Some(parse_at(at).unwrap()),
            timezone: berlin(),
            ..Resolved::default()
        };
        // 29 March 2026: Berlin skips 02:00–03:00. 02:30 that day becomes 03:00 (CEST, UTC+2).
        let before = ts("2026-03-28T23:00:00Z");
        assert_eq!(
            show(wake_at(before, &w("02:30")).unwrap()),
            "2026-03-29T01:00:00+00:00"
        );
        // After the change 09:00 is UTC+2.
        assert_eq!(
            show(wake_at(before, &w("09:00")).unwrap()),
            "2026-03-29T07:00:00+00:00"
        );
        // 25 October 2026: 02:30 happens twice; the first is taken (CEST, UTC+2).
        let before = ts("2026-10-24T23:00:00Z");
        assert_eq!(
            show(wake_at(before, &w("02:30")).unwrap()),
            "2026-10-25T00:30:00+00:00"
        );
    }

    #[test]
    fn until_a_moment_or_a_day_and_the_past_is_now() {
        let now = ts("2026-06-01T12:00:00Z");
        let until = |u: &str, at: Option<&str>| Resolved {
            until: Some(u.into()),
            at: at.map(|a| parse_at(a).unwrap()),
            timezone: berlin(),
            ..Resolved::default()
        };
        assert_eq!(
            show(wake_at(now, &until("2026-06-03T10:00:00+02:00", None)).unwrap()),
            "2026-06-03T08:00:00+00:00"
        );
        assert_eq!(
            show(wake_at(now, &until("2026-06-24", Some("10:00"))).unwrap()),
            "2026-06-24T08:00:00+00:00"
        );
        assert_eq!(wake_at(now, &until("2020-01-01T00:00:00Z", None)).unwrap(), now);
        assert!(
            wake_at(now, &until("next tuesday", None))
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(parse_tz("Mars/Olympus").is_err());
        assert!(parse_at("9am").is_err());
    }

    #[test]
    fn exit_keys_match_however_values_are_spelled() {
        assert_eq!(
            segment_left_key("newsletter", " Ada@Example.com "),
            "segment_left/newsletter/ada@example.com"
        );
        let a = event_key(
            "shop.refund",
            &[("order_id".into(), json!(4711)), ("shop".into(), json!("a"))],
        );
        let b = event_key(
            "shop.refund",
            &[("shop".into(), json!("a")), ("order_id".into(), json!("4711"))],
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            event_key(
                "shop.refund",
                &[("order_id".into(), json!(4712)), ("shop".into(), json!("a"))]
            )
        );
        assert_eq!(field(&json!({"order": {"id": 7}}), "order.id"), Some(&json!(7)));
    }
}
