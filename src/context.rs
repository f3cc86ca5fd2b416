//! What templates and conditions see of an event: one JSON context built per render, and the
//! [`Facts`] that conditions read. Shared by the webhook edge (trigger conditions, `respond`,
//! ordering key) and the engine (action conditions and rendering).

use minijinja::value::Value as JValue;
use serde_json::{Map, Value, json};

use crate::matching::{Facts, Source};
use crate::request::Request;
use crate::template::{Templates, to_value};

/// Identity of the run a context is built for.
pub struct RunInfo<'a> {
    pub flow: &'a str,
    pub run_id: &'a str,
    /// 1-based attempt of the current action (0 outside actions).
    pub attempt: u32,
    pub idempotency_key: &'a str,
}

/// The template context: `flow`, `run_id`, `attempt`, `idempotency_key`, `vars`, `body`,
/// `headers` (lower-case names), `query` and `steps`.
pub fn template_context(
    info: &RunInfo<'_>,
    req: &Request,
    vars: &Map<String, Value>,
    steps: &Map<String, Value>,
) -> JValue {
    to_value(&context_json(info, req, vars, steps))
}

/// [`template_context`] for one item of a `for_each` action: also `item` and `item_index`.
pub fn item_context(
    info: &RunInfo<'_>,
    req: &Request,
    vars: &Map<String, Value>,
    steps: &Map<String, Value>,
    item: &Value,
    index: usize,
) -> JValue {
    let mut ctx = context_json(info, req, vars, steps);
    ctx["item"] = item.clone();
    ctx["item_index"] = json!(index);
    to_value(&ctx)
}

fn context_json(
    info: &RunInfo<'_>,
    req: &Request,
    vars: &Map<String, Value>,
    steps: &Map<String, Value>,
) -> Value {
    json!({
        "flow": info.flow,
        "run_id": info.run_id,
        "attempt": info.attempt,
        "idempotency_key": info.idempotency_key,
        "method": req.method,
        "vars": vars,
        "body": req.body,
        "headers": req.headers,
        "query": req.query,
        "steps": steps,
    })
}

/// Values for conditions, read from the request, the vars and (for `expr`) the context.
pub struct EventFacts<'a> {
    pub request: &'a Request,
    pub vars: &'a Map<String, Value>,
    pub templates: &'a Templates,
    pub ctx: &'a JValue,
}

impl Facts for EventFacts<'_> {
    fn values(&self, source: &Source) -> Result<Vec<Value>, String> {
        Ok(match source {
            Source::Body(p) => p.select(&self.request.body).into_iter().cloned().collect(),
            Source::Header(h) => self
                .request
                .header(h)
                .map(|v| Value::String(v.into()))
                .into_iter()
                .collect(),
            Source::Query(q) => self
                .request
                .query
                .get(q)
                .map(|v| Value::String(v.clone()))
                .into_iter()
                .collect(),
            Source::Var(name) => match self.vars.get(name) {
                Some(Value::Null) | None => Vec::new(),
                // A list var (multi-match path) offers each element, like the path would.
                Some(Value::Array(items)) => items.clone(),
                Some(v) => vec![v.clone()],
            },
            Source::Expr(t) => vec![
                self.templates
                    .render_json(t, self.ctx)
                    .map_err(|e| e.to_string())?,
            ],
        })
    }
}
