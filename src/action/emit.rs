//! The `emit` action: raise a custom event with a templated payload. Flows with
//! `on: event: <type>` pick it up; the event is written with the step's record, atomically.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AttemptResult, ExecContext, ResultKind};
use crate::event::{Event, check_custom_type};
use crate::store::Effects;
use crate::template::{JsonTemplate, Templates};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmitSpec {
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's `data`; string leaves are templates.
    pub data: Option<Value>,
}

#[derive(Debug)]
pub struct EmitAction {
    pub kind: String,
    pub data: Option<JsonTemplate>,
}

impl EmitAction {
    pub fn compile(
        spec: &EmitSpec,
        prefix: &str,
        templates: &mut Templates,
    ) -> Result<EmitAction, Vec<(String, String)>> {
        let mut errors = Vec::new();
        if let Err(e) = check_custom_type(&spec.kind) {
            errors.push(("type".to_string(), e));
        }
        let data = match &spec.data {
            None => None,
            Some(v) => match JsonTemplate::compile(v, &format!("{prefix}.data"), templates) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push(("data".into(), format!("template syntax error: {}", e.message)));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(EmitAction {
            kind: spec.kind.clone(),
            data,
        })
    }

    pub fn attempt(&self, cx: &ExecContext<'_>) -> AttemptResult {
        let data = match &self.data {
            None => Value::Object(Default::default()),
            Some(t) => match t.render(cx.templates, &cx.ctx) {
                Ok(v) => v,
                Err(e) => return AttemptResult::permanent(format!("data: {e}")),
            },
        };
        let event = Event::new(&self.kind, cx.origin.clone(), cx.event_depth, data);
        AttemptResult {
            request: None,
            response: None,
            kind: ResultKind::Success(json!({"event_id": event.id, "type": event.kind})),
            effects: Effects {
                events: vec![event],
                ..Effects::default()
            },
        }
    }
}
