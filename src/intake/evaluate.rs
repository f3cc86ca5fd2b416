//! Stage 5, evaluate: the flow's trigger conditions, its vars and ordering key (shared with
//! events and schedules in [`crate::trigger`]), and the answer the sender will get — rendered
//! before anything is stored, so a broken `respond` block stores nothing.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::value::Value as JValue;
use serde_json::json;

use super::Refusal;
use crate::flow::{Flow, Respond, Webhook};
use crate::request::Request;
use crate::run::Run;
use crate::template::Templates;
use crate::trigger::{Cause, Prepared, prepare};

pub enum Evaluated {
    /// A run to store, the template context it was built with, and the answer once stored.
    Run(Box<Run>, JValue, Response),
    /// The trigger's conditions do not hold: which one.
    Ignored(String),
}

pub fn evaluate(
    flow: &Flow,
    webhook: &Webhook,
    templates: &Templates,
    request: Request,
) -> Result<Evaluated, Refusal> {
    let (run, ctx) = match prepare(flow, &webhook.when, templates, request, Cause::default())? {
        Prepared::Run(run, ctx) => (run, ctx),
        Prepared::Ignored(why) => return Ok(Evaluated::Ignored(format!("condition not met: {why}"))),
    };
    let answer = respond(templates, &webhook.respond, &ctx, &run.id).map_err(Refusal::Respond)?;
    Ok(Evaluated::Run(run, ctx, answer))
}

/// The answer to an accepted event: the flow's `respond` block, or `202 {"status":"accepted"}`.
fn respond(templates: &Templates, spec: &Respond, ctx: &JValue, run_id: &str) -> Result<Response, String> {
    let status = StatusCode::from_u16(spec.status).map_err(|e| e.to_string())?;
    let mut resp = match &spec.body {
        None => (
            status,
            axum::Json(json!({"status": "accepted", "run_id": run_id})),
        )
            .into_response(),
        Some(t) => {
            let text = templates.render(t, ctx).map_err(|e| format!("body: {e}"))?;
            let ct = if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            let mut r = (status, text).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            r
        }
    };
    for (k, t) in &spec.headers {
        let v = templates
            .render(t, ctx)
            .map_err(|e| format!("headers.{k}: {e}"))?;
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("headers.{k}: {e}"))?;
        let value = HeaderValue::from_str(&v).map_err(|e| format!("headers.{k}: {e}"))?;
        resp.headers_mut().insert(name, value);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::test_flows;

    fn request(body: serde_json::Value) -> Request {
        Request {
            method: "POST".into(),
            body,
            ..Request::default()
        }
    }

    #[test]
    fn conditions_vars_and_the_answer() {
        let set = test_flows(&[(
            "f",
            r#"on:
  webhook:
    when: [{ path: $.status, equals: paid }]
    respond: { status: 200, body: "got {{ vars.id }}", headers: { X-Run: "{{ run_id }}" } }
vars: { id: { path: $.id, required: true } }
actions: [{ emit: { type: t.x } }]
"#,
        )]);
        let flow = set.get("f").unwrap();
        let wh = flow.webhook().unwrap();
        let eval = |body| evaluate(flow, wh, &set.templates, request(body));
        assert!(
            matches!(eval(json!({"status": "open"})), Ok(Evaluated::Ignored(why)) if why.contains("$.status"))
        );
        assert!(matches!(
            eval(json!({"status": "paid"})),
            Err(Refusal::Trigger(crate::trigger::TriggerError::MissingVar(_)))
        ));
        let Ok(Evaluated::Run(run, _, answer)) = eval(json!({"status": "paid", "id": 7})) else {
            panic!("a run")
        };
        assert_eq!(run.vars["id"], json!(7));
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()["x-run"], run.id.as_str());
    }
}
