//! What serde reads from a flow file. Nothing here is used at run time: `compile` turns these
//! types into [`super::Flow`], checking and pre-compiling everything once at load.
//!
//! Every struct denies unknown keys so a typo (`bdy:`) is a load error with a line number rather
//! than a silently ignored setting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

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
pub struct VerifySpec {
    /// `github`, `stripe`, `shopify`, `woocommerce`, `slack`, `standard-webhooks` or `hmac`.
    pub preset: String,
    /// Environment variable(s) holding the secret; several while rotating.
    pub secret_env: Option<OneOrMany>,
    /// Only here to be refused with a clear message: secrets never live in flow files.
    pub secret: Option<Value>,
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub tolerance: Option<Duration>,
    // The `hmac` preset's settings.
    pub header: Option<String>,
    pub algorithm: Option<crate::verify::Algorithm>,
    pub encoding: Option<crate::verify::Encoding>,
    pub prefix: Option<String>,
    pub timestamp_header: Option<String>,
    pub signed: Option<String>,
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

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyMode {
    #[default]
    Auto,
    Json,
    Form,
    Xml,
    Text,
}

/// One condition: a source (exactly one of `path`, `header`, `query`, `var`, `expr`) and one or
/// more operators, all of which must hold.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    pub path: Option<String>,
    pub header: Option<String>,
    pub query: Option<String>,
    pub var: Option<String>,
    pub expr: Option<String>,
    pub equals: Option<Value>,
    pub not_equals: Option<Value>,
    pub one_of: Option<Vec<Value>>,
    pub exists: Option<bool>,
    pub matches: Option<String>,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
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

#[derive(Debug, Deserialize, Default, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    pub max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub initial_delay: Option<Duration>,
    pub multiplier: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub max_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Duration>,
    /// Extra statuses to retry besides 5xx, 408 and 429.
    #[serde(default)]
    pub retry_on: Vec<StatusSpec>,
}

/// A status code (`404`), a class (`"4xx"`) or a range (`"200-299"`).
#[derive(Debug, Deserialize, Clone, schemars::JsonSchema)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(u16),
    Text(String),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Unique within the flow; defaults to `<kind>_<index>`. Later templates see its output as
    /// `steps.<name>`.
    pub name: Option<String>,
    #[serde(default)]
    pub when: Vec<ConditionSpec>,
    pub retry: Option<RetrySpec>,
    /// Most attempts per second/minute/hour against this action's destination, e.g. `10/s`.
    /// Runs over the limit wait in the queue; nothing fails for it.
    pub rate_limit: Option<String>,
    /// Pause a destination after a run of consecutive failures (`failures: 0` disables).
    pub circuit_breaker: Option<BreakerSpec>,
    /// Most attempts in flight at once to this action's destination (host and port, or the SMTP
    /// server); default the server's `--destination-concurrency`.
    pub destination_concurrency: Option<usize>,
    pub http: Option<HttpSpec>,
    pub email: Option<EmailSpec>,
    pub segment: Option<SegmentSpec>,
    pub emit: Option<EmitSpec>,
}

#[derive(Debug, Deserialize, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    #[serde(default = "default_breaker_failures")]
    pub failures: u32,
    #[serde(default = "default_breaker_cooldown", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub cooldown: Duration,
}

fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Duration {
    Duration::from_secs(30)
}

/// One name or a list of them.
#[derive(Debug, Deserialize, Clone, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    /// Template of the contact's email address.
    pub email: String,
    pub add: Option<OneOrMany>,
    pub remove: Option<OneOrMany>,
    /// Merged into the contact; string leaves are templates.
    pub attributes: Option<Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmitSpec {
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's `data`; string leaves are templates.
    pub data: Option<Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// Each a template, or a list of them; one rendering to a list or to comma-separated
    /// addresses gives several recipients.
    pub to: Value,
    pub cc: Option<Value>,
    pub bcc: Option<Value>,
    pub reply_to: Option<String>,
    /// Overrides the server's default sender.
    pub from: Option<String>,
    pub subject: String,
    pub text: Option<String>,
    pub text_template: Option<String>,
    pub html: Option<String>,
    pub html_template: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A template string (sent as is) or a YAML structure (sent as JSON, string leaves rendered).
    pub body: Option<Value>,
    /// A template file under `templates/` rendered as the body.
    pub body_template: Option<String>,
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// Statuses that count as success; default `["2xx"]`.
    pub success: Option<Vec<StatusSpec>>,
    #[serde(default)]
    pub follow_redirects: bool,
    /// Sign the request: `{ preset: standard-webhooks, secret_env: NAME }` or the `hmac` preset.
    pub sign: Option<VerifySpec>,
    /// Largest response body read (e.g. `4MiB`); default the server's `--max-response` (1 MiB).
    /// A successful answer with a larger body fails the attempt.
    #[schemars(with = "Option<String>")]
    pub max_response: Option<bytesize::ByteSize>,
}

fn default_method() -> String {
    "POST".into()
}
