//! The `wait` kind: pause the run for a duration, until a moment, or to the next time of day
//! in a time zone. It makes no attempt: the engine saves the run with its wake time
//! ([`crate::engine`]'s sequence step), and a waiting run costs no memory and no worker.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AttemptResult, Clients, ExecContext, Kind};
use crate::compiler::Part;
use crate::retry::RetryPolicy;
use crate::sequence::{Wait, parse_at, parse_tz, wake_at};

/// `wait:` as written: a duration (`3d`), or a table.
#[derive(Debug)]
pub enum WaitSpec {
    /// `wait: 3d`
    For(String),
    Table(WaitTable),
}

// Not `#[serde(untagged)]`: see [`crate::yaml::string_or_table`].
impl<'de> Deserialize<'de> for WaitSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::yaml::string_or_table(
            d,
            "a duration such as 3d, or a table with `for`, `until`, `at` or `timezone`",
            WaitSpec::For,
            WaitSpec::Table,
        )
    }
}

impl schemars::JsonSchema for WaitSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WaitSpec".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        crate::flow::schema::string_or_table(
            <WaitTable as schemars::JsonSchema>::json_schema(g),
            crate::flow::schema::duration,
            "A duration (`3d`), or a table: `{ for: 7d, at: \"09:00\", timezone: Europe/Berlin }` or `{ until: \"{{ vars.date }}\" }`",
        )
    }
}

/// `wait: { for: 7d, at: "09:00", timezone: Europe/Berlin }` or `wait: { until: "{{ … }}" }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::flow::schema::wait_table)]
pub struct WaitTable {
    /// How long, e.g. `3d`, `12h`, `90m`.
    #[serde(rename = "for")]
    #[schemars(transform = crate::flow::schema::duration)]
    pub duration: Option<String>,
    /// A template giving a moment (RFC 3339, `2026-12-24T10:00:00Z`) or a day (`2026-12-24`).
    pub until: Option<String>,
    /// Then the next `HH:MM` local time (in `timezone`), e.g. `09:00`.
    #[schemars(transform = crate::flow::schema::time_of_day)]
    pub at: Option<String>,
    /// IANA time zone for `at` and for days; a template (default UTC).
    #[serde(default)]
    #[schemars(schema_with = "crate::flow::schema::timezone_or_template")]
    pub timezone: Option<String>,
}

impl Kind for Wait {
    type Spec = WaitSpec;
    const ATTEMPTED: bool = false;

    /// `wait:` — a duration, or `for`/`until` with `at` and `timezone`.
    fn compile(spec: &WaitSpec, part: &mut Part<'_, '_>) -> Option<Wait> {
        let duration = |part: &mut Part<'_, '_>, key: &str, text: &str| {
            humantime::parse_duration(text.trim())
                .map_err(|e| {
                    part.problem(
                        key,
                        format!("`{text}` is not a duration such as 3d, 12h or 90m: {e}"),
                    )
                })
                .ok()
        };
        let table = match spec {
            WaitSpec::For(text) => {
                return duration(part, "", text).map(|d| Wait {
                    duration: Some(d),
                    until: None,
                    at: None,
                    timezone: None,
                });
            }
            WaitSpec::Table(t) => t,
        };
        let d = table.duration.as_deref().and_then(|t| duration(part, "for", t));
        let until = table.until.as_deref().map(|u| part.template("until", u));
        if table.duration.is_some() && until.is_some() {
            part.problem("until", "give `for` or `until`, not both");
        }
        if table.duration.is_none() && until.is_none() && table.at.is_none() {
            part.problem("", "a wait needs `for`, `until` or `at`");
        }
        let time_of_day = table
            .at
            .as_deref()
            .and_then(|t| parse_at(t).map_err(|e| part.problem("at", e)).ok());
        let timezone = table.timezone.as_deref().map(|tz| {
            if !tz.contains("{{")
                && let Err(e) = parse_tz(tz)
            {
                part.problem("timezone", e);
            }
            part.template("timezone", tz)
        });
        Some(Wait {
            duration: d,
            until,
            at: time_of_day,
            timezone,
        })
    }

    async fn attempt(&self, _: &ExecContext<'_>, _: &Clients, _: &RetryPolicy) -> AttemptResult {
        AttemptResult::permanent("a wait is not attempted".into())
    }

    fn preview(&self, cx: &ExecContext<'_>) -> Result<Value, String> {
        let until = wake_at(crate::time::Ts::now(), &self.resolve(cx.templates, &cx.ctx)?)?;
        Ok(json!({"wait_until": until}))
    }
}
