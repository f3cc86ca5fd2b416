//! The `emit` action: raise a custom event with a templated payload. Flows with
//! `on: event: <type>` pick it up; the event is written with the step's record, atomically.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AttemptResult, Clients, ExecContext, Kind, ResultKind};
use crate::compiler::Part;
use crate::event::{Event, check_custom_type};
use crate::retry::RetryPolicy;
use crate::store::Effects;
use crate::template::JsonTemplate;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmitSpec {
    /// The event's type: dot-separated lower-case words, e.g. `order.flagged`.
    #[serde(rename = "type")]
    #[schemars(transform = crate::flow::schema::custom_event_type)]
    pub kind: String,
    /// The event's `data`; string leaves are templates, e.g. `{ email: "{{ vars.email }}" }`.
    pub data: Option<Value>,
}

#[derive(Debug)]
pub struct EmitAction {
    pub kind: String,
    pub data: Option<JsonTemplate>,
}

impl Kind for EmitAction {
    type Spec = EmitSpec;
    const RAISES_EVENTS: bool = true;

    fn compile(spec: &EmitSpec, part: &mut Part<'_, '_>) -> Option<EmitAction> {
        let before = part.problems();
        if let Err(e) = check_custom_type(&spec.kind) {
            part.problem("type", e);
        }
        let data = spec.data.as_ref().and_then(|v| {
            let name = part.name("data");
            JsonTemplate::compile(v, &name, part.templates())
                .map_err(|e| part.problem("data", format!("template syntax error: {}", e.message)))
                .ok()
        });
        (part.problems() == before).then(|| EmitAction {
            kind: spec.kind.clone(),
            data,
        })
    }

    async fn attempt(&self, cx: &ExecContext<'_>, _: &Clients, _: &RetryPolicy) -> AttemptResult {
        match self.event(cx) {
            Ok(event) => AttemptResult {
                request: None,
                response: None,
                kind: ResultKind::Success(json!({"event_id": event.id, "type": event.kind})),
                effects: Effects {
                    events: vec![event],
                    ..Effects::default()
                },
            },
            Err(e) => AttemptResult::permanent(e),
        }
    }

    fn preview(&self, cx: &ExecContext<'_>) -> Result<Value, String> {
        let event = self.event(cx)?;
        Ok(json!({"type": event.kind, "data": event.data}))
    }

    fn emits(&self) -> Option<&str> {
        Some(&self.kind)
    }
}

impl EmitAction {
    /// The event this attempt raises.
    fn event(&self, cx: &ExecContext<'_>) -> Result<Event, String> {
        let data = match &self.data {
            None => Value::Object(Default::default()),
            Some(t) => t
                .render(cx.templates, &cx.ctx)
                .map_err(|e| format!("data: {e}"))?,
        };
        Ok(Event::new(&self.kind, cx.origin.clone(), cx.event_depth, data))
    }
}
