//! The editor schema of a flow file (`hookflow schema`, docs/flow.schema.json).
//!
//! schemars generates it from the types the loader reads (their doc comments are the
//! descriptions), and the types carry over what the loader checks beyond a value's type — the
//! patterns below for durations, sizes, rates, statuses and names, the known methods and time
//! zones, "exactly one of" groups — so an editor running yaml-language-server flags a mistake
//! as it is typed, at its line, instead of at the next `hookflow validate`. Each pattern is
//! tested against the loader's own parser (tests below), so the two cannot drift apart
//! unnoticed.
//!
//! Patterns are written in the common subset of ECMAScript's regular expressions (what
//! editors run) and Rust's `regex` (what the tests run): no look-around, no inline flags.

use schemars::Schema;
use serde_json::{Value, json};

/// humantime's durations: `30s`, `10m`, `2h 30m`, `7d`, `1.5h`.
pub const DURATION: &str = r"^\s*(\d+(\.\d+)?\s*(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)\s*)+$";
/// bytesize's sizes: `512KiB`, `4 MB`, `1048576`.
pub const SIZE: &str = r"^\s*\d+(\.\d+)?\s*([KkMmGgTtPpEe][Ii]?[Bb]?|[Bb])?\s*$";
/// A rate limit: a count per second, minute or hour (`10/s`, `100/min`).
pub const RATE: &str = r"^\s*[1-9]\d*\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$";
/// A status written as text: a code, a class (`4xx`) or a range (`200-299`), within 100–599.
pub const STATUS_TEXT: &str = r"^\s*([1-5]\d\d|[1-5][xX][xX]|[1-5]\d\d\s*-\s*[1-5]\d\d)\s*$";
/// A time of day, `HH:MM` or `HH:MM:SS`, 24 h.
pub const TIME_OF_DAY: &str = r"^\s*([01]?\d|2[0-3]):[0-5]\d(:([0-5]\d|60))?\s*$";
/// A crontab line: 5 fields, or 6 with seconds first.
pub const CRON: &str = r"^\s*\S+(\s+\S+){4,5}\s*$";
/// A fraction strictly between 0 and 1, as a percentage (`20%`) or a number (`0.2`).
pub const PERCENT: &str = r"^\s*(0*[1-9]\d?(\.\d+)?\s*%|0*\.\d*[1-9]\d*\s*%|0?\.\d*[1-9]\d*)\s*$";
/// Flow names appear in URLs.
pub const FLOW_NAME: &str = r"^[A-Za-z0-9_-]{1,100}$";
/// Segment (list) names.
pub const SEGMENT_NAME: &str = r"^[A-Za-z0-9._-]{1,100}$";
/// Event types: dot-separated lower-case words.
pub const EVENT_TYPE: &str = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$";
/// What `on: event:` takes: an event type, or a family of them (`alert.*`).
pub const EVENT_PATTERN: &str = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*(\.\*)?$";
/// The event families hookflow raises itself, refused in `emit`.
pub const RESERVED_EVENT: &str = r"^(segment|run|alert|email)\.";
/// What `emit` takes: [`EVENT_TYPE`] but not [`RESERVED_EVENT`] (a look-ahead, which editors
/// and the schema tests' validator run; the unit tests check its two halves).
pub const CUSTOM_EVENT_TYPE: &str = r"^(?!(segment|run|alert|email)\.)[a-z0-9_-]+(\.[a-z0-9_-]+)*$";
/// An RFC 9535 JSONPath query starts at the root.
pub const JSONPATH: &str = r"^\s*\$";
/// A template, where one is allowed in place of a literal.
pub const TEMPLATE: &str = r"\{\{|\{%";
/// An IPv4 or IPv6 address, with or without a `/prefix`.
pub const NET: &str = r"^\s*(((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(/(3[0-2]|[12]?\d))?|[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}(/(12[0-8]|1[01]\d|[1-9]?\d))?)\s*$";

/// The JSON Schema of a flow file.
pub fn schema() -> Value {
    let mut s = schemars::schema_for!(super::spec::FlowSpec).to_value();
    drop_null(&mut s);
    // `webhook:` with nothing after it is a webhook with every default.
    if let Some(w) = s.pointer_mut("/$defs/TriggerSpec/properties/webhook") {
        *w = json!({"anyOf": [w.clone(), {"type": "null"}], "description": w["description"].clone()});
    }
    if let Some(defs) = s.get_mut("$defs").and_then(Value::as_object_mut) {
        defs.insert(
            "TimeZone".into(),
            json!({
                "type": "string",
                "enum": tz_names(),
                "description": "An IANA time zone name, e.g. `Europe/Berlin`.",
                "errorMessage": "an IANA time zone such as Europe/Berlin or America/New_York"
            }),
        );
    }
    if let Some(o) = s.as_object_mut() {
        o.insert("title".into(), "hookflow flow".into());
        o.insert(
            "description".into(),
            "A hookflow flow file (flows/*.yaml). See docs/flows.md.".into(),
        );
    }
    s
}

/// schemars lets every `Option` be `null`; the loader reads a key left empty (`timeout:`) as
/// unset, but in a flow file it is nearly always an unfinished line, so the editor flags it.
fn drop_null(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(types)) = o.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    o.insert("type".into(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(alts)) = o.get_mut(key) {
                    alts.retain(|a| *a != json!({"type": "null"}));
                    if alts.len() == 1 && key == "anyOf" {
                        let only = alts.remove(0);
                        o.remove(key);
                        if let Value::Object(inner) = only {
                            for (k, v) in inner {
                                o.entry(k).or_insert(v);
                            }
                        }
                    }
                }
            }
            o.values_mut().for_each(drop_null);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// Adds `pattern` to a string schema, with the message an editor shows when it fails.
fn with_pattern(s: &mut Schema, pattern: &str, message: &str, examples: &[&str]) {
    s.insert("pattern".into(), pattern.into());
    s.insert("patternErrorMessage".into(), message.into());
    if !examples.is_empty() && s.get("examples").is_none() {
        s.insert("examples".into(), json!(examples));
    }
}

/// A value written as a string or as a table (`wait: 3d` or `wait: { for: 3d, at: "09:00" }`):
/// one schema of both types rather than `anyOf` the two, so an editor reports a mistake inside
/// the table (an unknown key) rather than "expected a string". `string` adds the string's rules
/// (a pattern), which apply to strings only, as the table's apply to tables only.
pub fn string_or_table(mut table: Schema, string: fn(&mut Schema), description: &str) -> Schema {
    table.insert("type".into(), json!(["string", "object"]));
    string(&mut table);
    table.insert("description".into(), description.into());
    table
}

/// A status: a code (`404`), or as text a code, a class (`"4xx"`) or a range (`"200-299"`).
pub fn status(s: &mut Schema) {
    *s = object(json!({
        "description": "A status code (`404`), a class (`\"4xx\"`) or a range (`\"200-299\"`), within 100-599.",
        "type": ["integer", "string"],
        "minimum": 100,
        "maximum": 599,
    }));
    status_text(s);
}

/// A string schema: `pattern`, else a template.
fn literal_or_template(pattern: &str, message: &str, examples: &[&str]) -> Value {
    json!({"anyOf": [
        {"type": "string", "pattern": pattern, "patternErrorMessage": message, "examples": examples},
        {"type": "string", "pattern": TEMPLATE}
    ]})
}

// Transforms for `#[schemars(transform = …)]`, one per kind of value.

pub fn duration(s: &mut Schema) {
    with_pattern(
        s,
        DURATION,
        "a duration such as 30s, 10m, 2h or 7d",
        &["30s", "10m", "2h", "7d"],
    );
}

pub fn size(s: &mut Schema) {
    with_pattern(s, SIZE, "a size such as 512KiB or 4MiB", &["512KiB", "4MiB"]);
}

pub fn rate(s: &mut Schema) {
    with_pattern(
        s,
        RATE,
        "a count per unit such as 10/s, 100/m or 1000/h",
        &["10/s", "100/m", "1000/h"],
    );
}

pub fn status_text(s: &mut Schema) {
    with_pattern(
        s,
        STATUS_TEXT,
        "a status (404), a class (\"4xx\") or a range (\"200-299\") within 100-599",
        &["4xx", "200-299"],
    );
}

pub fn time_of_day(s: &mut Schema) {
    with_pattern(s, TIME_OF_DAY, "a time of day such as 09:00", &["09:00", "17:30"]);
}

pub fn cron(s: &mut Schema) {
    with_pattern(
        s,
        CRON,
        "a crontab line: 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first",
        &["0 9 * * 1-5", "*/15 * * * *"],
    );
}

pub fn percent(s: &mut Schema) {
    with_pattern(
        s,
        PERCENT,
        "a percentage between 0% and 100%, such as 20%",
        &["20%", "50%"],
    );
}

pub fn flow_name(s: &mut Schema) {
    with_pattern(
        s,
        FLOW_NAME,
        "letters, digits, - and _ (it is part of the webhook's URL)",
        &["woo-order"],
    );
}

pub fn segment_name(s: &mut Schema) {
    with_pattern(
        s,
        SEGMENT_NAME,
        "a segment name: letters, digits, -, _ and .",
        &["customers"],
    );
}

pub fn jsonpath(s: &mut Schema) {
    with_pattern(
        s,
        JSONPATH,
        "a JSONPath starting at the root, such as $.order.id",
        &["$.order.id"],
    );
}

/// A list of JSONPaths.
pub fn jsonpaths(s: &mut Schema) {
    s.insert(
        "items".into(),
        json!({"type": "string", "pattern": JSONPATH, "patternErrorMessage": "a JSONPath starting at the root, such as $.card.number"}),
    );
}

/// An event type a flow raises: not one of hookflow's own families.
pub fn custom_event_type(s: &mut Schema) {
    with_pattern(
        s,
        CUSTOM_EVENT_TYPE,
        "dot-separated lower-case words such as order.flagged; segment.*, run.*, alert.* and email.* are raised by hookflow itself",
        &["order.flagged"],
    );
}

/// An event type a flow is started by (hookflow's own or a custom one), or a family.
pub fn event_type(s: &mut Schema) {
    with_pattern(
        s,
        EVENT_PATTERN,
        "dot-separated lower-case words, such as order.flagged or segment.added, or a family such as alert.*",
        &["segment.added", "email.clicked", "alert.*"],
    );
}

/// `for_each`: a JSONPath or a template giving a list.
pub fn jsonpath_or_template(_: &mut schemars::SchemaGenerator) -> Schema {
    object(literal_or_template(
        JSONPATH,
        "a JSONPath such as $.line_items[*], or a template",
        &["$.line_items[*]"],
    ))
}

/// One or more segment names.
pub fn segment_names(_: &mut schemars::SchemaGenerator) -> Schema {
    let one = json!({"type": "string", "pattern": SEGMENT_NAME, "patternErrorMessage": "a segment name: letters, digits, -, _ and ."});
    object(json!({
        "description": "A segment name or a list of them, e.g. `customers` or `[customers, vip]`.",
        "anyOf": [one, {"type": "array", "items": one}]
    }))
}

/// The addresses a webhook may be called from.
pub fn nets(_: &mut schemars::SchemaGenerator) -> Schema {
    object(json!({
        "description": "Only these client addresses (CIDR, IPv4 or IPv6) may call this webhook, e.g. `[192.0.2.0/24, 2001:db8::/32]`.",
        "type": "array",
        "items": {"type": "string", "pattern": NET, "patternErrorMessage": "an IPv4 or IPv6 address, or a network such as 192.0.2.0/24"}
    }))
}

/// `suppress:` — the reasons the loader knows, in any case.
pub fn suppress_reason(s: &mut Schema) {
    let words = crate::suppression::REASON_WORDS;
    s.insert("pattern".into(), any_case(words).into());
    s.insert(
        "patternErrorMessage".into(),
        "bounced, complained, unsubscribed or manual".into(),
    );
    s.insert(
        "examples".into(),
        json!(["bounced", "complained", "unsubscribed", "manual"]),
    );
}

/// `verify:` — `secret:` is refused: secrets never live in flow files.
pub fn verify_table(s: &mut Schema) {
    not_both(
        s,
        "secret",
        "secret",
        "secrets never live in flow files: use secret_env (an environment variable's name) or secret_file",
    );
}

// The loader's "exactly one of", "at least one of" and "not both" rules, written so that
// yaml-language-server gives the loader's own message at the key concerned (it ignores a
// message on a missing `required` key): "if none of the keys is there, then the table must be
// something it cannot be (null)", and `dependencies` whose schema forbids the other key (draft
// 7, which editors read) mirrored as `dependentSchemas` (2020-12).

/// At least one of `keys`.
fn at_least_one(s: &mut Schema, keys: &[&str], message: &str) {
    let none: serde_json::Map<String, Value> = keys.iter().map(|k| (k.to_string(), false.into())).collect();
    let rule = json!({
        "if": {"type": "object", "properties": none},
        "then": {"type": "null", "errorMessage": message}
    });
    let all = s.ensure_object().entry("allOf").or_insert_with(|| json!([]));
    if let Some(all) = all.as_array_mut() {
        all.push(rule);
    }
}

/// Where `key` is, `other` may not be (`key == other`: `key` may not be at all).
fn not_both(s: &mut Schema, key: &str, other: &str, message: &str) {
    for keyword in ["dependencies", "dependentSchemas"] {
        let dep = &mut s.ensure_object().entry(keyword).or_insert_with(|| json!({}))[key];
        dep["errorMessage"] = message.into();
        dep["properties"][other] = false.into();
    }
}

/// Exactly one of `keys`.
fn exactly_one(s: &mut Schema, keys: &[&str], message: &str) {
    at_least_one(s, keys, message);
    for k in keys {
        for other in keys.iter().filter(|o| *o != k) {
            not_both(s, k, other, message);
        }
    }
}

pub fn one_trigger(s: &mut Schema) {
    exactly_one(
        s,
        &["webhook", "event", "schedule"],
        "a flow has one trigger: webhook, event or schedule",
    );
}

pub fn action_kind(s: &mut Schema) {
    let message = format!("an action has one kind: {}", crate::action::KINDS.join(", "));
    exactly_one(s, crate::action::KINDS, &message);
}

pub fn var_source(s: &mut Schema) {
    exactly_one(
        s,
        &["path", "header", "query"],
        "a var takes exactly one of path, header or query",
    );
}

pub fn exit_kind(s: &mut Schema) {
    exactly_one(
        s,
        &["segment_left", "event", "contact"],
        "an exit is one of segment_left, event or contact",
    );
}

pub fn condition(s: &mut Schema) {
    exactly_one(
        s,
        &["path", "header", "query", "var", "expr"],
        "a condition reads exactly one of path, header, query, var or expr",
    );
    at_least_one(
        s,
        &[
            "expr",
            "equals",
            "not_equals",
            "one_of",
            "exists",
            "matches",
            "gt",
            "gte",
            "lt",
            "lte",
        ],
        "a condition needs an operator: equals, not_equals, one_of, exists, matches, gt, gte, lt or lte",
    );
}

pub fn http_body(s: &mut Schema) {
    not_both(
        s,
        "body_template",
        "body",
        "give either body or body_template, not both",
    );
}

pub fn email_body(s: &mut Schema) {
    not_both(s, "text_template", "text", "give text or text_template, not both");
    not_both(s, "html_template", "html", "give html or html_template, not both");
    at_least_one(
        s,
        &["text", "text_template", "html", "html_template"],
        "an email needs a body: text, html or both (or their _template files)",
    );
}

pub fn segment_change(s: &mut Schema) {
    at_least_one(
        s,
        &["add", "remove", "suppress"],
        "a segment action needs add, remove or suppress",
    );
}

pub fn wait_table(s: &mut Schema) {
    not_both(s, "until", "for", "give for or until, not both");
    at_least_one(s, &["for", "until", "at"], "a wait needs for, until or at");
}

/// An IANA time zone name (one list in `$defs`, however many keys take one).
pub fn timezone(s: &mut Schema) {
    s.remove("type");
    s.insert("$ref".into(), TIME_ZONE_REF.into());
}

const TIME_ZONE_REF: &str = "#/$defs/TimeZone";

/// An IANA time zone name, or a template.
pub fn timezone_or_template(_: &mut schemars::SchemaGenerator) -> Schema {
    object(json!({
        "description": "IANA time zone, e.g. `Europe/Berlin`, or a template such as `{{ vars.tz }}`; default UTC.",
        "anyOf": [{"$ref": TIME_ZONE_REF}, {"type": "string", "pattern": TEMPLATE}]
    }))
}

fn object(v: Value) -> Schema {
    Schema::try_from(v).expect("a schema written here is an object")
}

fn tz_names() -> Value {
    chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect()
}

/// A pattern matching each of `words` in any case (`[Gg][Ee][Tt]`): the loader accepts
/// methods in any case, and JSON Schema's `enum` compares exactly.
fn any_case(words: &[&str]) -> String {
    let alt: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .map(|c| match (c.to_ascii_uppercase(), c.to_ascii_lowercase()) {
                    (u, l) if u != l => format!("[{u}{l}]"),
                    _ => regex_escape(c),
                })
                .collect()
        })
        .collect();
    format!(r"^\s*({})\s*$", alt.join("|"))
}

fn regex_escape(c: char) -> String {
    if "\\.+*?()|[]{}^$-".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// `method:` of an HTTP action: the methods the loader knows.
pub fn http_method(s: &mut Schema) {
    let known = crate::action::http::METHODS;
    s.insert("pattern".into(), any_case(known).into());
    s.insert(
        "patternErrorMessage".into(),
        format!("an HTTP method: {}", known.join(", ")).into(),
    );
    s.insert(
        "examples".into(),
        json!(["POST", "PUT", "PATCH", "GET", "DELETE"]),
    );
}

/// `methods:` of a webhook: the methods webhooks arrive with.
pub fn webhook_methods(s: &mut Schema) {
    let known = super::compile::WEBHOOK_METHODS;
    s.insert(
        "items".into(),
        json!({
            "type": "string",
            "pattern": any_case(known),
            "patternErrorMessage": format!("one of {}", known.join(", ")),
            "examples": known
        }),
    );
}

#[cfg(test)]
mod tests;
