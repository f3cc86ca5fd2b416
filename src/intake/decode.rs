//! Stage 4, decode: the authenticated bytes as the value conditions, vars and templates read —
//! JSON, a form, XML or text, by the flow's `body` mode and the request's content type.
//!
//! GitHub can deliver as `application/x-www-form-urlencoded`, the JSON then being the
//! `payload` field; with the `github` preset that JSON is the body, so one flow serves both
//! content types (the signature was checked over the raw form bytes before).

use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::Refusal;
use crate::flow::Webhook;
use crate::request::{BodyError, parse_body};

pub fn decode(webhook: &Webhook, headers: &HeaderMap, bytes: &[u8]) -> Result<Value, Refusal> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = parse_body(webhook.body, content_type, bytes)?;
    let github = webhook
        .verify
        .as_ref()
        .is_some_and(|v| v.scheme.name() == "github");
    match body {
        Value::Object(form) if github && is_form(content_type) => {
            let payload = form.get("payload").and_then(Value::as_str).ok_or_else(|| {
                BodyError::MalformedForm("a GitHub form delivery has no `payload` field".into())
            })?;
            serde_json::from_str(payload)
                .map_err(|e| Refusal::Body(BodyError::MalformedJson(format!("in the `payload` field: {e}"))))
        }
        other => Ok(other),
    }
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::test_flows;

    fn webhook(yaml: &str) -> std::sync::Arc<crate::flow::Flow> {
        let set = test_flows(&[("f", yaml)]);
        std::sync::Arc::clone(set.get("f").unwrap())
    }

    fn form() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        h
    }

    #[test]
    fn github_form_deliveries_decode_to_their_payload() {
        let gh = webhook(
            "on: { webhook: { verify: { preset: github, secret_env: GH_SECRET } } }\nactions: [{ emit: { type: t.x } }]\n",
        );
        let wh = gh.webhook().unwrap();
        let body = b"payload=%7B%22repository%22%3A%7B%22full_name%22%3A%22o%2Fr%22%7D%7D";
        assert_eq!(
            decode(wh, &form(), body).ok().unwrap(),
            serde_json::json!({"repository": {"full_name": "o/r"}})
        );
        assert!(matches!(
            decode(wh, &form(), b"other=1"),
            Err(Refusal::Body(BodyError::MalformedForm(_)))
        ));
        assert!(matches!(
            decode(wh, &form(), b"payload=%7Bnope"),
            Err(Refusal::Body(BodyError::MalformedJson(_)))
        ));
        // Other flows keep the form as it is.
        let plain = webhook("on: { webhook: {} }\nactions: [{ emit: { type: t.x } }]\n");
        assert_eq!(
            decode(plain.webhook().unwrap(), &form(), b"payload=x")
                .ok()
                .unwrap(),
            serde_json::json!({"payload": "x"})
        );
    }
}
