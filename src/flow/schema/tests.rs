//! Each pattern of the editor schema against the loader's own parser: a sample matches the
//! pattern exactly when the loader accepts it.

use super::*;
use std::str::FromStr;

fn agrees(pattern: &str, samples: &[&str], loader: impl Fn(&str) -> bool) {
    let re = regex::Regex::new(pattern).unwrap();
    for s in samples {
        assert_eq!(
            re.is_match(s),
            loader(s),
            "`{s}`: pattern {} it, the loader {} it",
            if re.is_match(s) { "accepts" } else { "refuses" },
            if loader(s) { "accepts" } else { "refuses" },
        );
    }
}

#[test]
fn durations() {
    agrees(
        DURATION,
        &[
            "30s",
            "10m",
            "2h 30m",
            "7d",
            "1.5h",
            "3 days",
            "1week",
            "15min",
            "2hrs",
            "500ms",
            " 5s ",
            "",
            "5",
            "soon",
            "5 secondz",
            "-5s",
            "5s!",
            "h",
            "1y 2M",
        ],
        |s| humantime::parse_duration(s.trim()).is_ok(),
    );
}

#[test]
fn sizes() {
    agrees(
        SIZE,
        &[
            "512KiB", "4MiB", "4 MB", "1048576", "1.5 GiB", "10k", "2mb", "", "MB", "four MiB", "5 XB",
            "-1 KiB",
        ],
        |s| bytesize::ByteSize::from_str(s).is_ok(),
    );
}

#[test]
fn rates() {
    agrees(
        RATE,
        &[
            "10/s", "100/m", "1000/h", "5 / min", "1/second", "0/s", "10/d", "10", "/s", "ten/s", "10/S",
        ],
        |s| crate::action::breaker::RateLimit::parse(s).is_ok(),
    );
}

#[test]
fn statuses() {
    use crate::retry::{StatusSet, StatusSpec};
    agrees(
        STATUS_TEXT,
        &[
            "404",
            "4xx",
            "5XX",
            "200-299",
            "200 - 299",
            "600",
            "6xx",
            "99",
            "2xxx",
            "abc",
            "100-599",
            "0xx",
        ],
        |s| StatusSet::parse(&[StatusSpec::Text(s.to_string())]).is_ok(),
    );
}

#[test]
fn times_of_day() {
    agrees(
        TIME_OF_DAY,
        &[
            "09:00", "9:00", "23:59", "17:30:15", "24:00", "12:60", "noon", "0900", "09:00:60",
        ],
        |s| crate::sequence::parse_at(s).is_ok(),
    );
}

#[test]
fn cron_lines_have_five_or_six_fields() {
    agrees(
        CRON,
        &[
            "0 9 * * 1-5",
            "*/15 * * * *",
            "0 0 9 * * MON",
            "* * *",
            "0 0 0 1 1 * 2030",
            "@daily",
        ],
        |s| crate::schedule::to_crate_syntax(s).is_ok(),
    );
}

#[test]
fn percentages() {
    agrees(
        PERCENT,
        &[
            "20%", "50 %", "0.2", ".5", "99.5%", "0%", "100%", "150%", "1", "0", "half", "1.5",
        ],
        |s| crate::alert::parse_percent(s).is_ok(),
    );
}

#[test]
fn names() {
    agrees(
        FLOW_NAME,
        &["woo-order", "a_b", "A1", "", "with space", "dots.no", "ü"],
        super::super::compile::valid_flow_name,
    );
    agrees(
        SEGMENT_NAME,
        &["customers", "vip.2026", "a-b_c", "", "VIP customers", "a/b"],
        crate::segment::valid_segment_name,
    );
}

#[test]
fn networks() {
    agrees(
        NET,
        &[
            "192.0.2.0/24",
            "10.0.0.1",
            "2001:db8::/32",
            "::1",
            "fe80::1/64",
            "10.0.0.300/8",
            "10.0.0.0/33",
            "example.com",
            "1.2.3",
            "",
        ],
        |s| crate::net::parse_net(s).is_some(),
    );
}

#[test]
fn methods_in_any_case() {
    let http = any_case(crate::action::http::METHODS);
    agrees(
        &http,
        &["POST", "post", "Patch", "PSOT", "GETT", "", "PROPFIND"],
        |s| crate::action::http::check_method(s).is_ok(),
    );
}

#[test]
fn no_property_may_be_null_except_an_empty_webhook() {
    /// The properties whose schema lets `null` through, by path.
    fn nullable(v: &Value, path: &str, out: &mut Vec<String>) {
        let allows_null = |p: &Value| {
            p.get("type")
                .is_some_and(|t| t == "null" || t.as_array().is_some_and(|a| a.contains(&json!("null"))))
                || p.get("anyOf")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.contains(&json!({"type": "null"})))
        };
        match v {
            Value::Object(o) => {
                if let Some(Value::Object(props)) = o.get("properties") {
                    for (k, p) in props {
                        if allows_null(p) {
                            out.push(format!("{path}.{k}"));
                        }
                    }
                }
                for (k, child) in o {
                    nullable(child, &format!("{path}/{k}"), out);
                }
            }
            Value::Array(a) => a.iter().for_each(|c| nullable(c, path, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    nullable(&schema(), "", &mut found);
    assert_eq!(found, ["/$defs/TriggerSpec.webhook"]);
}

#[test]
fn suppress_reasons_in_any_case() {
    use crate::suppression::Reason;
    agrees(
        &any_case(crate::suppression::REASON_WORDS),
        &[
            "bounced",
            "Bounce",
            "SPAM",
            "unsubscribed",
            "manual",
            "imported",
            "",
            "bouncd",
            "hard_bounce",
        ],
        |s| matches!(Reason::parse(s), Some(r) if r != Reason::Imported),
    );
}

#[test]
fn trigger_event_types_and_families() {
    // Looser than the loader for hookflow's own families only (`segment.nope` is refused at
    // load, as an unknown type of hookflow's).
    agrees(
        EVENT_PATTERN,
        &[
            "order.flagged",
            "alert.*",
            "segment.added",
            "shop.*",
            "a.b.*",
            "Order",
            "order placed",
            "*",
            "a.*.b",
            "order.",
            ".*",
        ],
        |s| crate::event::check_trigger_pattern(s).is_ok(),
    );
}

#[test]
fn emit_event_types_are_custom_ones() {
    // The look-ahead pattern is the two halves tested here, joined.
    assert_eq!(
        CUSTOM_EVENT_TYPE,
        format!("^(?!{}){}", &RESERVED_EVENT[1..], &EVENT_TYPE[1..])
    );
    let re = regex::Regex::new(EVENT_TYPE).unwrap();
    let reserved = regex::Regex::new(RESERVED_EVENT).unwrap();
    for s in [
        "order.flagged",
        "a",
        "shop.order_placed",
        "Order.Flagged",
        "order placed",
        "order..x",
        "email.sent",
        "segment.added",
        "run.failed",
        "alert.raised",
        "emails.x",
    ] {
        let editor = re.is_match(s) && !reserved.is_match(s);
        assert_eq!(editor, crate::event::check_custom_type(s).is_ok(), "{s}");
    }
}
