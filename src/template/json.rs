//! JSON body templates: a YAML structure from a flow file whose string leaves are templates,
//! rendered into a JSON value. A leaf that is exactly one `{{ expression }}` keeps the
//! expression's type (`42`, not `"42"`; a list stays a list).

use minijinja::value::Value as JValue;
use serde_json::Value;

use super::{RenderError, TemplateError, Templates};

/// If `s` is exactly one `{{ expression }}`, the expression.
pub fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    let inner = inner.trim_start_matches('-').trim_end_matches('-').trim();
    (!inner.is_empty()).then_some(inner)
}

/// A JSON body template: a YAML structure whose string leaves are templates.
#[derive(Debug, Clone)]
pub enum JsonTemplate {
    Literal(Value),
    Text(String),
    Native(String),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Registers every string leaf of `v` under names derived from `prefix`.
    pub fn compile(
        v: &Value,
        prefix: &str,
        templates: &mut Templates,
    ) -> Result<JsonTemplate, TemplateError> {
        Ok(match v {
            Value::String(s) if !s.contains("{{") && !s.contains("{%") => JsonTemplate::Literal(v.clone()),
            Value::String(s) => {
                if let Some(expr) = single_expression(s) {
                    templates.add_native(prefix.to_string(), expr)?;
                    JsonTemplate::Native(prefix.to_string())
                } else {
                    templates.add(prefix.to_string(), s.clone())?;
                    JsonTemplate::Text(prefix.to_string())
                }
            }
            Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| JsonTemplate::compile(item, &format!("{prefix}[{i}]"), templates))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => JsonTemplate::Object(
                map.iter()
                    .map(|(k, item)| {
                        JsonTemplate::compile(item, &format!("{prefix}.{k}"), templates)
                            .map(|t| (k.clone(), t))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => JsonTemplate::Literal(other.clone()),
        })
    }

    pub fn render(&self, templates: &Templates, ctx: &JValue) -> Result<Value, RenderError> {
        Ok(match self {
            JsonTemplate::Literal(v) => v.clone(),
            JsonTemplate::Text(name) => Value::String(templates.render(name, ctx)?),
            JsonTemplate::Native(name) => templates.render_json(name, ctx)?,
            JsonTemplate::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.render(templates, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(fields) => {
                let mut map = serde_json::Map::new();
                for (k, t) in fields {
                    map.insert(k.clone(), t.render(templates, ctx)?);
                }
                Value::Object(map)
            }
        })
    }
}
