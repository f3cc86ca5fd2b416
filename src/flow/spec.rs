//! What serde reads from a flow file. Nothing here is used at run time: `compile` turns these
//! types into [`super::Flow`], checking and pre-compiling everything once at load.
//!
//! Every struct denies unknown keys so a typo (`bdy:`) is a load error with a line number rather
//! than a silently ignored setting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

// The specs of the parts that compile themselves live with them; the flow file is made of them.
pub use crate::action::ActionSpec;
pub use crate::action::breaker::BreakerSpec;
pub use crate::action::email::EmailSpec;
pub use crate::action::emit::EmitSpec;
pub use crate::action::http::HttpSpec;
pub use crate::action::segment::SegmentSpec;
pub use crate::action::wait::WaitSpec;
pub use crate::matching::ConditionSpec;
pub use crate::request::BodyMode;
pub use crate::retry::{RetrySpec, StatusSpec};
pub use crate::verify::VerifySpec;
pub use crate::yaml::OneOrMany;

/// A whole flow file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Defaults to the file stem.
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    pub on: TriggerSpec,
    #[serde(default)]
    pub vars: BTreeMap<String, VarSpec>,
    #[serde(default)]
    pub concurrency: Option<ConcurrencySpec>,
    /// Default retry policy for every action of this flow.
    #[serde(default)]
    pub retry: Option<RetrySpec>,
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    /// What ends a waiting run early (`exited`, not failed): leaving a segment, an event about
    /// this run, or a condition over the contact checked at each wake-up.
    #[serde(default)]
    pub exit: Vec<ExitSpec>,
    /// Alerts about this flow: silence, failure rate, refusals, dead letters (each a table or
    /// `off`; left out, the defaults).
    #[serde(default)]
    pub alerts: Option<crate::alert::AlertsSpec>,
}

/// `on:` — what starts a run: exactly one of `webhook`, `event` or `schedule`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// `webhook:` with nothing after it is a webhook with every default.
    #[serde(default, deserialize_with = "present_or_null")]
    pub webhook: Option<WebhookSpec>,
    pub event: Option<EventTriggerSpec>,
    pub schedule: Option<ScheduleSpec>,
}

/// A key that is present makes `Some`, even with an empty (null) value.
fn present_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// `on: event:` — a type (`event: segment.removed`) or a table with conditions.
#[derive(Debug, Default)]
pub struct EventTriggerSpec {
    pub kind: String,
    pub when: Vec<ConditionSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct EventTriggerTable {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    when: Vec<ConditionSpec>,
}

impl schemars::JsonSchema for EventTriggerSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventTrigger".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An event type, or a table with `type` and `when`",
            "anyOf": [{"type": "string"}, g.subschema_for::<EventTriggerTable>()]
        })
    }
}

impl<'de> Deserialize<'de> for EventTriggerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EventTriggerSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event type or a table with `type` and `when`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EventTriggerSpec, E> {
                Ok(EventTriggerSpec {
                    kind: v.to_string(),
                    when: Vec::new(),
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<EventTriggerSpec, A::Error> {
                let t = EventTriggerTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(EventTriggerSpec {
                    kind: t.kind,
                    when: t.when,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `on: schedule:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Crontab syntax: 5 fields, or 6 with seconds first.
    pub cron: String,
    /// IANA time zone name; default UTC.
    pub timezone: Option<String>,
    /// Firings missed while hookflow was down: `skip` (default) or `run_once`.
    #[serde(default)]
    pub missed: crate::schedule::Missed,
}

#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Accepted HTTP methods; default `[POST]`.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// How the body is read: `auto` (JSON or form, by content type), `json`, `form` or `text`.
    #[serde(default)]
    pub body: BodyMode,
    #[serde(default)]
    pub when: Vec<ConditionSpec>,
    #[serde(default)]
    pub respond: Option<RespondSpec>,
    /// Check the sender's signature before anything else.
    pub verify: Option<VerifySpec>,
    /// Answer repeats of one delivery with the first run instead of starting another.
    pub dedupe: Option<DedupeSpec>,
    /// Only these client addresses (CIDR, IPv4 or IPv6) may call this webhook.
    pub allow_ips: Option<Vec<String>>,
    /// Most requests to this webhook being handled at once; beyond, 429 with Retry-After.
    pub max_in_flight: Option<u32>,
    /// JSONPaths of body fields replaced by `[redacted]` before the run is stored.
    #[serde(default)]
    pub redact: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupeSpec {
    /// Template of the delivery's identity, e.g. `{{ headers['x-github-delivery'] }}`.
    pub key: String,
    /// How long a key is remembered; default 24h.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub window: Option<Duration>,
}

/// A var is either a bare JSONPath string or a table with options.
#[derive(Debug)]
pub enum VarSpec {
    Path(String),
    Full(VarTable),
}

impl schemars::JsonSchema for VarSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Var".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A JSONPath string, or a table with `path`, `header` or `query`",
            "anyOf": [{"type": "string"}, g.subschema_for::<VarTable>()]
        })
    }
}

// Hand-written rather than `#[serde(untagged)]` so a typo inside the table still reports the
// unknown key and its line instead of "did not match any variant".
impl<'de> Deserialize<'de> for VarSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = VarSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSONPath string or a table with `path`, `header` or `query`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VarSpec, E> {
                Ok(VarSpec::Path(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<VarSpec, A::Error> {
                VarTable::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(VarSpec::Full)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VarTable {
    pub path: Option<String>,
    pub header: Option<String>,
    pub query: Option<String>,
    #[serde(default)]
    pub required: bool,
    pub default: Option<Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RespondSpec {
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// Tell the sender why an event was ignored or refused by the flow's conditions, vars or
    /// templates (off: the answer says only `ignored`; the request log always has the reason).
    #[serde(default)]
    pub explain: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencySpec {
    /// At most this many runs of the flow execute at once.
    pub max_in_flight: Option<u32>,
    /// Runs whose key renders to the same string execute one at a time, in arrival order.
    pub key: Option<String>,
}

/// One entry of a flow's `exit:` list.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExitSpec {
    /// The contact left this segment.
    pub segment_left: Option<SegmentLeftSpec>,
    /// An internal event of this type whose `data` has these field values.
    pub event: Option<ExitEventSpec>,
    /// Checked at each wake-up against the contact as it is then.
    pub contact: Option<ContactExitSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentLeftSpec {
    pub segment: String,
    /// A template of the contact's email address.
    pub email: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExitEventSpec {
    #[serde(rename = "type")]
    pub kind: String,
    /// Field of the event's `data` → template of the value it must have for this run.
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactExitSpec {
    /// A template of the contact's email address.
    pub email: String,
    /// Conditions over `contact.email`, `contact.attributes`, `contact.segments`; all must hold.
    pub when: Vec<ConditionSpec>,
}
