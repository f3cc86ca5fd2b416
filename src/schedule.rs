//! Cron schedules for `on: schedule` flows: crontab syntax in, firing times out.
//!
//! Users write crontab lines (`0 8 * * 1-5`). The `cron` crate wants seconds first and numbers
//! weekdays from 1 = Sunday, so a line is translated before it is parsed: a 5-field line gets
//! `0` seconds, and day-of-week numbers are mapped from crontab's (0 or 7 = Sunday, 1 = Monday)
//! to the crate's — in the 6-field form too, so `1-5` means Monday to Friday everywhere.

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;

use crate::time::Ts;

/// What happens to firings that fell while hookflow was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Forget them; the next firing is the next one in the future.
    #[default]
    Skip,
    /// Fire once, for the latest missed time, at start.
    RunOnce,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written in the flow file.
    pub expr: String,
    pub tz: Tz,
    pub missed: Missed,
    cron: cron::Schedule,
}

/// An IANA time zone name, with a suggestion when it is near one (`Europe/Berln`, `berlin`).
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| {
        let wanted = name.trim().to_ascii_lowercase().replace(' ', "_");
        let near = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|t| t.name())
            .find(|n| {
                let n = n.to_ascii_lowercase();
                n == wanted || n.rsplit('/').next() == Some(wanted.as_str())
            })
            .or_else(|| crate::suggest::nearest(name.trim(), chrono_tz::TZ_VARIANTS.iter().map(|t| t.name())))
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_else(|| " (use an IANA name such as `Europe/Berlin`)".into());
        format!("unknown time zone `{name}`{near}")
    })
}

impl Schedule {
    pub fn parse(expr: &str, tz: Option<&str>, missed: Missed) -> Result<Schedule, String> {
        let tz = match tz {
            None => Tz::UTC,
            Some(name) => parse_tz(name)?,
        };
        let translated = to_crate_syntax(expr)?;
        let cron = cron::Schedule::from_str(&translated)
            .map_err(|e| format!("invalid cron expression `{expr}`: {e}"))?;
        if cron.upcoming(Utc).next().is_none() {
            return Err(format!("cron expression `{expr}` never fires"));
        }
        Ok(Schedule {
            expr: expr.to_string(),
            tz,
            missed,
            cron,
        })
    }

    /// The first firing strictly after `t`.
    pub fn next_after(&self, t: Ts) -> Option<Ts> {
        let at = self.tz.timestamp_millis_opt(t.0 as i64).single()?;
        let next = self.cron.after(&at).next()?;
        Some(Ts(next.timestamp_millis().max(0) as u64))
    }

    /// The latest firing in `(after, upto]`, and how many there were.
    pub fn latest_between(&self, after: Ts, upto: Ts) -> Option<(Ts, u64)> {
        let mut latest = None;
        let mut count = 0;
        let mut t = after;
        while let Some(next) = self.next_after(t) {
            if next > upto {
                break;
            }
            latest = Some(next);
            count += 1;
            t = next;
            if count > 100_000 {
                // A per-second schedule down for days: the count is only informative.
                latest = self.last_before_or_at(upto).or(latest);
                break;
            }
        }
        latest.map(|l| (l, count))
    }

    /// The firing before `at` (strictly), looking back up to a year.
    pub fn previous_before(&self, at: Ts) -> Option<Ts> {
        if at.0 == 0 {
            return None;
        }
        self.last_before_or_at(Ts(at.0 - 1))
    }

    fn last_before_or_at(&self, upto: Ts) -> Option<Ts> {
        // Walk back in growing windows to find the last firing at or before `upto`.
        let mut window = 60_000u64;
        loop {
            let from = Ts(upto.0.saturating_sub(window));
            let mut t = from;
            let mut last = None;
            while let Some(n) = self.next_after(t) {
                if n > upto {
                    break;
                }
                last = Some(n);
                t = n;
            }
            if last.is_some() || from.0 == 0 || window > 366 * 24 * 3600 * 1000 {
                return last;
            }
            window = window.saturating_mul(8);
        }
    }
}

/// Translates a crontab line (5 fields, or 6 with seconds first) to the `cron` crate's syntax.
pub fn to_crate_syntax(expr: &str) -> Result<String, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let mut fields: Vec<String> = match fields.len() {
        5 => std::iter::once("0").chain(fields).map(str::to_string).collect(),
        6 => fields.into_iter().map(str::to_string).collect(),
        n => {
            return Err(format!(
                "cron expression `{expr}` has {n} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
            ));
        }
    };
    fields[5] = weekdays(&fields[5]).map_err(|e| format!("cron expression `{expr}`: day-of-week: {e}"))?;
    Ok(fields.join(" "))
}

/// Maps crontab's day-of-week numbers (0 or 7 = Sunday) to the crate's (1 = Sunday).
fn weekdays(field: &str) -> Result<String, String> {
    let map = |s: &str| -> Result<Option<u32>, String> {
        if s.chars().all(|c| c.is_ascii_digit()) {
            let n: u32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
            if n > 7 {
                return Err(format!("`{n}` is out of range (0-7, 0 and 7 are Sunday)"));
            }
            Ok(Some(n % 7 + 1))
        } else {
            Ok(None) // `*`, `?`, or a name such as MON, which the crate reads as crontab does
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        let suffix = step.map(|s| format!("/{s}")).unwrap_or_default();
        match base.split_once('-') {
            None => match map(base)? {
                Some(n) => out.push(format!("{n}{suffix}")),
                None => out.push(item.to_string()),
            },
            Some((a, b)) => match (map(a)?, map(b)?) {
                (Some(x), Some(y)) if x <= y => out.push(format!("{x}-{y}{suffix}")),
                (Some(x), Some(y)) => {
                    // Wraps past Saturday (crontab `5-7` is Friday to Sunday).
                    if step.is_some() {
                        return Err(format!("`{item}`: a stepped range may not wrap past Sunday"));
                    }
                    out.push(format!("{x}-7"));
                    out.push(format!("1-{y}"));
                }
                (None, None) => out.push(item.to_string()),
                _ => return Err(format!("`{base}`: mix of a name and a number")),
            },
        }
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Weekday};

    fn ts(s: &str) -> Ts {
        Ts(chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis() as u64)
    }

    fn utc(t: Ts) -> chrono::DateTime<Utc> {
        Utc.timestamp_millis_opt(t.0 as i64).unwrap()
    }

    #[test]
    fn an_unknown_time_zone_suggests_the_iana_name() {
        let e = Schedule::parse("0 8 * * *", Some("berlin"), Missed::Skip).unwrap_err();
        assert!(e.contains("did you mean `Europe/Berlin`?"), "{e}");
        let e = Schedule::parse("0 8 * * *", Some("europe/berlin"), Missed::Skip).unwrap_err();
        assert!(e.contains("did you mean `Europe/Berlin`?"), "{e}");
        let e = Schedule::parse("0 8 * * *", Some("Mars/Olympus"), Missed::Skip).unwrap_err();
        assert!(e.contains("IANA name"), "{e}");
    }

    #[test]
    fn crontab_weekdays_mean_what_they_mean_in_crontab() {
        assert_eq!(to_crate_syntax("0 8 * * 1-5").unwrap(), "0 0 8 * * 2-6");
        assert_eq!(to_crate_syntax("0 8 * * 0").unwrap(), "0 0 8 * * 1");
        assert_eq!(to_crate_syntax("0 8 * * 7").unwrap(), "0 0 8 * * 1");
        assert_eq!(to_crate_syntax("0 8 * * 5-7").unwrap(), "0 0 8 * * 6-7,1-1");
        assert_eq!(
            to_crate_syntax("*/10 0 8 * * MON-FRI").unwrap(),
            "*/10 0 8 * * MON-FRI"
        );
        // Weekday mornings, starting on a Saturday: Monday to Friday, then Monday again.
        let s = Schedule::parse("0 8 * * 1-5", None, Missed::Skip).unwrap();
        let mut t = ts("2026-11-28T12:00:00Z"); // a Saturday
        let mut days = Vec::new();
        for _ in 0..6 {
            t = s.next_after(t).unwrap();
            let d = utc(t);
            assert_eq!((d.hour(), d.minute(), d.second()), (8, 0, 0));
            days.push(d.weekday());
        }
        use Weekday::*;
        assert_eq!(days, [Mon, Tue, Wed, Thu, Fri, Mon]);
        // Sunday as 0.
        let s = Schedule::parse("30 6 * * 0", None, Missed::Skip).unwrap();
        assert_eq!(utc(s.next_after(t).unwrap()).weekday(), Sun);
    }

    #[test]
    fn invalid_expressions_say_why() {
        let e = Schedule::parse("0 8 * *", None, Missed::Skip).unwrap_err();
        assert!(e.contains("has 4 fields"), "{e}");
        let e = Schedule::parse("0 8 * * 8", None, Missed::Skip).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = Schedule::parse("61 8 * * *", None, Missed::Skip).unwrap_err();
        assert!(e.contains("invalid cron expression"), "{e}");
        let e = Schedule::parse("0 8 * * *", Some("Mars/Olympus"), Missed::Skip).unwrap_err();
        assert!(e.contains("unknown time zone"), "{e}");
    }

    #[test]
    fn seconds_and_time_zones() {
        let s = Schedule::parse("*/2 * * * * *", None, Missed::Skip).unwrap();
        let t = ts("2026-11-28T12:00:01Z");
        assert_eq!(s.next_after(t), Some(ts("2026-11-28T12:00:02Z")));
        // 08:00 in Berlin is 07:00 UTC in winter.
        let s = Schedule::parse("0 8 * * *", Some("Europe/Berlin"), Missed::Skip).unwrap();
        assert_eq!(s.next_after(t), Some(ts("2026-11-29T07:00:00Z")));
    }

    #[test]
    fn daylight_saving_changes() {
        // Berlin springs forward on 2027-03-28 at 02:00 (to 03:00): 02:30 does not exist that
        // day and the firing is skipped; the day after it is back.
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin"), Missed::Skip).unwrap();
        let a = s.next_after(ts("2027-03-27T12:00:00Z")).unwrap();
        assert_eq!(a, ts("2027-03-29T00:30:00Z"));
        // Falls back on 2027-10-31 at 03:00 (to 02:00): 02:30 happens twice, and fires once.
        let first = s.next_after(ts("2027-10-30T12:00:00Z")).unwrap();
        let second = s.next_after(first).unwrap();
        assert_eq!(first, ts("2027-10-31T00:30:00Z"));
        assert_eq!(second, ts("2027-11-01T01:30:00Z"));
    }

    #[test]
    fn missed_firings_are_counted() {
        let s = Schedule::parse("0 * * * *", None, Missed::RunOnce).unwrap();
        let (latest, n) = s
            .latest_between(ts("2026-11-28T09:30:00Z"), ts("2026-11-28T12:10:00Z"))
            .unwrap();
        assert_eq!((latest, n), (ts("2026-11-28T12:00:00Z"), 3));
        assert!(
            s.latest_between(ts("2026-11-28T12:00:00Z"), ts("2026-11-28T12:10:00Z"))
                .is_none()
        );
    }
}
