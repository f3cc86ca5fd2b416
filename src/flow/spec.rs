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
    /// The flow's name, part of its webhook URL: letters, digits, `-` and `_`, e.g.
    /// `woo-order`. Defaults to the file stem.
    #[schemars(transform = crate::flow::schema::flow_name)]
    pub name: Option<String>,
    /// What the flow is for, shown in the dashboard, e.g. `Thank a customer for an order`.
    #[serde(default)]
    pub description: String,
    /// What starts a run: `webhook`, `event` or `schedule`, e.g. `on: { webhook: {} }`.
    pub on: TriggerSpec,
    /// Named values taken from the request: a JSONPath (`email: $.billing.email`) or a table
    /// (`{ header: X-Shop, required: true }`). Templates see them as `vars.<name>`.
    #[serde(default)]
    pub vars: BTreeMap<String, VarSpec>,
    /// Limits on this flow's runs executing at once, e.g. `{ max_in_flight: 2 }`.
    #[serde(default)]
    pub concurrency: Option<ConcurrencySpec>,
    /// Default retry policy for every action of this flow, e.g. `{ max_attempts: 5 }`.
    #[serde(default)]
    pub retry: Option<RetrySpec>,
    /// What a run does, in order: each entry one of `http`, `email`, `segment`, `emit` or
    /// `wait`, e.g. `- http: { url: "https://example.com/orders" }`.
    #[serde(default)]
    #[schemars(length(min = 1))]
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
#[schemars(transform = crate::flow::schema::one_trigger)]
pub struct TriggerSpec {
    /// A request to the flow's webhook URL, e.g. `webhook: { verify: { preset: github,
    /// secret_env: GH_SECRET } }`. `webhook:` with nothing after it is a webhook with every
    /// default.
    #[serde(default, deserialize_with = "present_or_null")]
    pub webhook: Option<WebhookSpec>,
    /// An internal event, e.g. `event: segment.added` or `{ type: order.flagged, when: […] }`.
    pub event: Option<EventTriggerSpec>,
    /// A cron schedule, e.g. `schedule: { cron: "0 9 * * 1-5", timezone: Europe/Berlin }`.
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
    /// The event type, e.g. `segment.added` or `order.flagged`.
    #[serde(rename = "type")]
    #[schemars(transform = crate::flow::schema::event_type)]
    kind: String,
    /// Conditions over the event's envelope, e.g. `- { path: $.data.segment, equals: vip }`.
    #[serde(default)]
    when: Vec<ConditionSpec>,
}

impl schemars::JsonSchema for EventTriggerSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventTrigger".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        crate::flow::schema::string_or_table(
            EventTriggerTable::json_schema(g),
            crate::flow::schema::event_type,
            "An event type (`segment.added`), a family (`alert.*`), or a table with `type` and `when`",
        )
    }
}

impl<'de> Deserialize<'de> for EventTriggerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::yaml::string_or_table(
            d,
            "an event type or a table with `type` and `when`",
            |kind| EventTriggerSpec {
                kind,
                when: Vec::new(),
            },
            |t: EventTriggerTable| EventTriggerSpec {
                kind: t.kind,
                when: t.when,
            },
        )
    }
}

/// `on: schedule:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Crontab syntax: 5 fields, or 6 with seconds first, e.g. `0 9 * * 1-5` (09:00 on
    /// weekdays).
    #[schemars(transform = crate::flow::schema::cron)]
    pub cron: String,
    /// IANA time zone name, e.g. `Europe/Berlin`; default UTC.
    #[schemars(transform = crate::flow::schema::timezone)]
    pub timezone: Option<String>,
    /// Firings missed while hookflow was down: `skip` (default) or `run_once`.
    #[serde(default)]
    pub missed: crate::schedule::Missed,
}

#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Accepted HTTP methods, e.g. `[POST, PUT]`; default `[POST]`.
    #[serde(default)]
    #[schemars(transform = crate::flow::schema::webhook_methods)]
    pub methods: Option<Vec<String>>,
    /// How the body is read: `auto` (JSON or form, by content type), `json`, `form` or `text`.
    #[serde(default)]
    pub body: BodyMode,
    /// Conditions a request must meet to start a run (others are answered `ignored`), e.g.
    /// `- { header: X-GitHub-Event, equals: push }`.
    #[serde(default)]
    pub when: Vec<ConditionSpec>,
    /// The answer the sender gets, e.g. `{ status: 200, body: "ok" }`.
    #[serde(default)]
    pub respond: Option<RespondSpec>,
    /// Check the sender's signature before anything else, e.g. `{ preset: stripe,
    /// secret_env: STRIPE_SECRET }`.
    pub verify: Option<VerifySpec>,
    /// Answer repeats of one delivery with the first run instead of starting another, e.g.
    /// `{ key: "{{ headers['x-github-delivery'] }}" }`.
    pub dedupe: Option<DedupeSpec>,
    /// Only these client addresses (CIDR, IPv4 or IPv6) may call this webhook, e.g.
    /// `[192.0.2.0/24, "2001:db8::/32"]`.
    #[serde(default)]
    #[schemars(schema_with = "crate::flow::schema::nets")]
    pub allow_ips: Option<Vec<String>>,
    /// Most requests to this webhook being handled at once, e.g. `20`; beyond, 429 with
    /// Retry-After.
    #[schemars(range(min = 1))]
    pub max_in_flight: Option<u32>,
    /// JSONPaths of body fields replaced by `[redacted]` before the run is stored, e.g.
    /// `[$.card.number]`.
    #[serde(default)]
    #[schemars(transform = crate::flow::schema::jsonpaths)]
    pub redact: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupeSpec {
    /// Template of the delivery's identity, e.g. `{{ headers['x-github-delivery'] }}`.
    pub key: String,
    /// How long a key is remembered, e.g. `7d`; default 24h.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>", transform = crate::flow::schema::duration)]
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
        crate::flow::schema::string_or_table(
            VarTable::json_schema(g),
            crate::flow::schema::jsonpath,
            "A JSONPath string (`$.billing.email`), or a table with `path`, `header` or `query`",
        )
    }
}

// Not `#[serde(untagged)]`: see [`crate::yaml::string_or_table`].
impl<'de> Deserialize<'de> for VarSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::yaml::string_or_table(
            d,
            "a JSONPath string or a table with `path`, `header` or `query`",
            VarSpec::Path,
            VarSpec::Full,
        )
    }
}

/// A var from exactly one of the body (`path`), a header or the query string.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::flow::schema::var_source)]
pub struct VarTable {
    /// A JSONPath into the body, e.g. `$.billing.email`.
    #[schemars(transform = crate::flow::schema::jsonpath)]
    pub path: Option<String>,
    /// A request header's name, e.g. `X-Shop-Domain`.
    pub header: Option<String>,
    /// A query parameter's name, e.g. `ref`.
    pub query: Option<String>,
    /// Refuse the request (422) when the value is missing, e.g. `true`.
    #[serde(default)]
    pub required: bool,
    /// The value when it is missing, e.g. `guest`.
    pub default: Option<Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RespondSpec {
    /// The status of the answer to an accepted event (2xx), e.g. `200`; default 202.
    #[schemars(range(min = 200, max = 299))]
    pub status: Option<u16>,
    /// Headers of the answer, e.g. `{ Content-Type: text/plain }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A template of the answer's body, e.g. `"{{ run_id }}"`.
    pub body: Option<String>,
    /// Tell the sender why an event was ignored or refused by the flow's conditions, vars or
    /// templates (off: the answer says only `ignored`; the request log always has the reason).
    #[serde(default)]
    pub explain: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencySpec {
    /// At most this many runs of the flow execute at once, e.g. `2`.
    #[schemars(range(min = 1))]
    pub max_in_flight: Option<u32>,
    /// Runs whose key renders to the same string execute one at a time, in arrival order,
    /// e.g. `"{{ vars.customer_id }}"`.
    pub key: Option<String>,
}

/// One entry of a flow's `exit:` list: one of `segment_left`, `event` or `contact`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::flow::schema::exit_kind)]
pub struct ExitSpec {
    /// The contact left this segment, e.g. `{ segment: newsletter, email: "{{ vars.email }}" }`.
    pub segment_left: Option<SegmentLeftSpec>,
    /// An internal event of this type whose `data` has these field values.
    pub event: Option<ExitEventSpec>,
    /// Checked at each wake-up against the contact as it is then, e.g. `{ email: "{{
    /// vars.email }}", when: [{ path: $.attributes.plan, equals: paid }] }`.
    pub contact: Option<ContactExitSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentLeftSpec {
    /// The segment, e.g. `newsletter`.
    #[schemars(transform = crate::flow::schema::segment_name)]
    pub segment: String,
    /// A template of the contact's email address, e.g. `"{{ vars.email }}"`.
    pub email: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExitEventSpec {
    /// The event type, e.g. `shop.order_placed`.
    #[serde(rename = "type")]
    #[schemars(transform = crate::flow::schema::event_type)]
    pub kind: String,
    /// Field of the event's `data` → template of the value it must have for this run, e.g.
    /// `{ email: "{{ vars.email }}" }`.
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactExitSpec {
    /// A template of the contact's email address, e.g. `"{{ vars.email }}"`.
    pub email: String,
    /// Conditions over `contact.email`, `contact.attributes`, `contact.segments`; all must
    /// hold, e.g. `- { path: $.attributes.plan, equals: paid }`.
    #[schemars(length(min = 1))]
    pub when: Vec<ConditionSpec>,
}
