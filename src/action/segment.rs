//! The `segment` action: add a contact to segments, or remove it, merging attributes, and
//! suppress the address (`suppress: bounced`, or `unsubscribed` from the lists it is removed
//! from). The change itself is made by the store in the same atomic write that records the
//! step (see [`crate::store::Effects`]), so a retry after a crash neither loses nor repeats its
//! events.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AttemptResult, Clients, ExecContext, Kind, ResultKind};
use crate::compiler::Part;
use crate::retry::RetryPolicy;
use crate::segment::{SegmentOp, normalize_email, valid_segment_name};
use crate::store::Effects;
use crate::suppression::{Reason, Suppression};
use crate::template::{JsonTemplate, Templates};
use crate::yaml::OneOrMany;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::flow::schema::segment_change)]
pub struct SegmentSpec {
    /// Template of the contact's email address, e.g. `"{{ vars.email }}"`.
    pub email: String,
    /// Segments the contact joins, e.g. `customers` or `[customers, vip]`.
    #[serde(default)]
    #[schemars(schema_with = "crate::flow::schema::segment_names")]
    pub add: Option<OneOrMany>,
    /// Segments the contact leaves, e.g. `trial`.
    #[serde(default)]
    #[schemars(schema_with = "crate::flow::schema::segment_names")]
    pub remove: Option<OneOrMany>,
    /// Merged into the contact; string leaves are templates, e.g. `{ plan: "{{ vars.plan }}" }`.
    pub attributes: Option<Value>,
    /// Also put the address on the suppression list: `bounced` or `complained` (no email goes
    /// to it any more), `unsubscribed` (from each list in `remove`), or `manual`.
    #[schemars(transform = crate::flow::schema::suppress_reason)]
    pub suppress: Option<String>,
}

#[derive(Debug)]
pub struct SegmentAction {
    /// Template name of the email.
    pub email: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub attributes: Option<JsonTemplate>,
    pub suppress: Option<Reason>,
}

impl Kind for SegmentAction {
    type Spec = SegmentSpec;
    const RAISES_EVENTS: bool = true;

    fn compile(spec: &SegmentSpec, part: &mut Part<'_, '_>) -> Option<SegmentAction> {
        let before = part.problems();
        let email = part.template("email", &spec.email);
        let add = spec.add.as_ref().map(|a| a.to_vec()).unwrap_or_default();
        let remove = spec.remove.as_ref().map(|a| a.to_vec()).unwrap_or_default();
        let suppress =
            match spec.suppress.as_deref().map(|r| (r, Reason::parse(r))) {
                None => None,
                Some((_, Some(Reason::Imported))) | Some((_, None)) => {
                    part.problem("suppress", format!(
                        "`{}` is not a reason to suppress: give bounced, complained, unsubscribed or manual",
                        spec.suppress.as_deref().unwrap_or_default()
                    ));
                    None
                }
                Some((_, Some(r))) => Some(r),
            };
        if suppress == Some(Reason::Unsubscribed) && remove.is_empty() {
            part.problem("suppress", "`suppress: unsubscribed` goes with `remove:`, naming the lists the contact unsubscribed from");
        }
        if add.is_empty() && remove.is_empty() && spec.suppress.is_none() {
            part.problem("", "a segment action needs `add`, `remove` or `suppress`");
        }
        for (key, names) in [("add", &add), ("remove", &remove)] {
            for n in names {
                if !valid_segment_name(n) {
                    part.problem(
                        key,
                        format!("segment name `{n}` may only hold letters, digits, `-`, `_` and `.`"),
                    );
                }
                if key == "remove" && add.contains(n) {
                    part.problem(key, format!("segment `{n}` is both added to and removed from"));
                }
            }
        }
        let attributes = match &spec.attributes {
            None => None,
            Some(v @ Value::Object(_)) => {
                let name = part.name("attributes");
                match JsonTemplate::compile(v, &name, part.templates()) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        part.problem("attributes", format!("template syntax error: {}", e.message));
                        None
                    }
                }
            }
            Some(_) => {
                part.problem("attributes", "attributes must be a table of names and values");
                None
            }
        };
        (part.problems() == before).then_some(SegmentAction {
            email,
            add,
            remove,
            attributes,
            suppress,
        })
    }

    /// Renders the ops; the store applies them when the step is recorded.
    async fn attempt(&self, cx: &ExecContext<'_>, _: &Clients, _: &RetryPolicy) -> AttemptResult {
        match self.ops(cx.templates, cx) {
            Ok(ops) => {
                let suppress = match self.suppressions(cx) {
                    Ok(s) => s,
                    Err(e) => return AttemptResult::permanent(e),
                };
                let mut output = json!({
                    "email": ops.first().map(|o| o.email.clone()),
                    "added_to": self.add,
                    "removed_from": self.remove,
                });
                if let Some(r) = self.suppress {
                    output["suppressed"] = json!(r.as_str());
                }
                AttemptResult {
                    request: None,
                    response: None,
                    kind: ResultKind::Success(output),
                    effects: Effects {
                        segment_ops: ops,
                        suppress,
                        ..Effects::default()
                    },
                }
            }
            Err(e) => AttemptResult::permanent(e),
        }
    }

    fn preview(&self, cx: &ExecContext<'_>) -> Result<Value, String> {
        Ok(serde_json::to_value(self.ops(cx.templates, cx)?).unwrap_or(Value::Null))
    }
}

impl SegmentAction {
    /// The suppression entries `suppress` asks for: one per removed list for an unsubscribe,
    /// else one for every email.
    fn suppressions(&self, cx: &ExecContext<'_>) -> Result<Vec<Suppression>, String> {
        let Some(reason) = self.suppress else {
            return Ok(Vec::new());
        };
        let raw = cx
            .templates
            .render(&self.email, &cx.ctx)
            .map_err(|e| format!("email: {e}"))?;
        let source = match (&cx.origin.flow, &cx.origin.action) {
            (Some(f), Some(a)) => format!("flow {f}, action {a}"),
            (Some(f), None) => format!("flow {f}"),
            _ => cx.origin.via.clone(),
        };
        let lists: Vec<Option<&str>> = if reason == Reason::Unsubscribed {
            self.remove.iter().map(|l| Some(l.as_str())).collect()
        } else {
            vec![None]
        };
        lists
            .into_iter()
            .map(|l| Suppression::new(&raw, l, reason, source.clone()))
            .collect()
    }

    pub fn ops(&self, templates: &Templates, cx: &ExecContext<'_>) -> Result<Vec<SegmentOp>, String> {
        let raw = templates
            .render(&self.email, &cx.ctx)
            .map_err(|e| format!("email: {e}"))?;
        let email = normalize_email(&raw)?;
        let attributes = match &self.attributes {
            None => Default::default(),
            Some(t) => match t
                .render(templates, &cx.ctx)
                .map_err(|e| format!("attributes: {e}"))?
            {
                Value::Object(m) => m,
                _ => Default::default(),
            },
        };
        let op = |segment: &String, add: bool| SegmentOp {
            segment: segment.clone(),
            email: email.clone(),
            add,
            attributes: attributes.clone(),
        };
        Ok(self
            .add
            .iter()
            .map(|s| op(s, true))
            .chain(self.remove.iter().map(|s| op(s, false)))
            .collect())
    }
}
