//! The `segment` action: add a contact to segments, or remove it, merging attributes. The
//! change itself is made by the store in the same atomic write that records the step (see
//! [`crate::store::Effects`]), so a retry after a crash neither loses nor repeats its events.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AttemptResult, ExecContext, ResultKind};
use crate::segment::{SegmentOp, normalize_email, valid_segment_name};
use crate::store::Effects;
use crate::template::{JsonTemplate, Templates};
use crate::yaml::OneOrMany;

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

#[derive(Debug)]
pub struct SegmentAction {
    /// Template name of the email.
    pub email: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub attributes: Option<JsonTemplate>,
}

impl SegmentAction {
    pub fn compile(
        spec: &SegmentSpec,
        prefix: &str,
        templates: &mut Templates,
    ) -> Result<SegmentAction, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let email = format!("{prefix}.email");
        if let Err(e) = templates.add(email.clone(), spec.email.clone()) {
            errors.push(("email".into(), format!("template syntax error: {}", e.message)));
        }
        let add = spec.add.as_ref().map(|a| a.to_vec()).unwrap_or_default();
        let remove = spec.remove.as_ref().map(|a| a.to_vec()).unwrap_or_default();
        if add.is_empty() && remove.is_empty() {
            errors.push((String::new(), "a segment action needs `add` or `remove`".into()));
        }
        for (key, names) in [("add", &add), ("remove", &remove)] {
            for n in names {
                if !valid_segment_name(n) {
                    errors.push((
                        key.into(),
                        format!("segment name `{n}` may only hold letters, digits, `-`, `_` and `.`"),
                    ));
                }
                if key == "remove" && add.contains(n) {
                    errors.push((
                        key.into(),
                        format!("segment `{n}` is both added to and removed from"),
                    ));
                }
            }
        }
        let attributes = match &spec.attributes {
            None => None,
            Some(v @ Value::Object(_)) => {
                match JsonTemplate::compile(v, &format!("{prefix}.attributes"), templates) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        errors.push((
                            "attributes".into(),
                            format!("template syntax error: {}", e.message),
                        ));
                        None
                    }
                }
            }
            Some(_) => {
                errors.push((
                    "attributes".into(),
                    "attributes must be a table of names and values".into(),
                ));
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SegmentAction {
            email,
            add,
            remove,
            attributes,
        })
    }

    /// Renders the ops; the store applies them when the step is recorded.
    pub fn attempt(&self, cx: &ExecContext<'_>) -> AttemptResult {
        match self.ops(cx.templates, cx) {
            Ok(ops) => {
                let output = json!({
                    "email": ops.first().map(|o| o.email.clone()),
                    "added_to": self.add,
                    "removed_from": self.remove,
                });
                AttemptResult {
                    request: None,
                    response: None,
                    kind: ResultKind::Success(output),
                    effects: Effects {
                        segment_ops: ops,
                        ..Effects::default()
                    },
                }
            }
            Err(e) => AttemptResult::permanent(e),
        }
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
