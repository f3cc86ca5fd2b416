//! `/hooks/{flow}/{token}`: verify the URL, decode the body, check the trigger, map the vars,
//! store the run durably, then answer. Every refusal is logged with its reason and nothing is
//! stored for it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::client_ip::client_ip;
use super::requestlog::Entry;
use super::{ApiError, AppState};
use crate::flow::{Verifier, Webhook};
use crate::request::{BodyError, Request, decode_encoding, parse_body, parse_query};
use crate::run::Ts;
use crate::trigger::{Cause, Prepared, TriggerError, prepare};
use crate::verify::{Verified, VerifyError, key_bytes, verify};

/// 429 with `Retry-After`, counted and logged.
fn too_busy(st: &AppState, flow: &str, peer: SocketAddr, what: &str) -> Response {
    count(st, flow, "rejected:too_busy");
    let mut resp = refuse(
        flow,
        peer,
        StatusCode::TOO_MANY_REQUESTS,
        "too_busy",
        format!("{what} is handling as many requests as it may; retry shortly"),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Counts a refusal per flow and reason (`GET /api/flows` shows the counters).
fn count(st: &AppState, flow: &str, what: &str) {
    let (store, flow, what) = (st.store.clone(), flow.to_string(), what.to_string());
    tokio::spawn(async move {
        if let Err(e) = store.add_counter(&flow, &what, 1).await {
            tracing::warn!(error = %e, "could not count a refused request");
        }
    });
}

/// Checks the signature with the secrets currently in the environment.
fn check_signature(v: &Verifier, headers: &HeaderMap, body: &[u8]) -> Result<Verified, VerifyError> {
    let secrets: Vec<Vec<u8>> = v
        .secret_env
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .filter(|s| !s.is_empty())
        .map(|s| key_bytes(&v.scheme, &s))
        .collect();
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret(v.secret_env.join(", ")));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    verify(&v.scheme, headers, body, now, v.tolerance, &secrets)
}

/// Refuses a request: logs why and builds the answer.
fn refuse(flow: &str, peer: SocketAddr, status: StatusCode, code: &'static str, detail: String) -> ApiError {
    tracing::warn!(flow, %peer, status = status.as_u16(), reason = code, %detail, "webhook refused");
    ApiError::new(status, code, detail)
}

/// Headers as recorded on the run: credentials and signatures replaced by `[redacted]`.
fn headers_of(map: &HeaderMap, webhook: &Webhook) -> std::collections::BTreeMap<String, String> {
    let signature = webhook
        .verify
        .as_ref()
        .map(|v| v.scheme.signature_headers())
        .unwrap_or_default();
    let mut out = std::collections::BTreeMap::<String, String>::new();
    for (k, v) in map {
        let secret = crate::action::SENSITIVE_HEADERS.contains(&k.as_str())
            || signature.iter().any(|s| s == k.as_str());
        let v = if secret {
            "[redacted]".to_string()
        } else {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        };
        out.entry(k.as_str().to_string())
            .and_modify(|prev| {
                prev.push_str(", ");
                prev.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

/// The webhook endpoint: [`handle`], with every request and refusal counted in the metrics.
pub async fn receive(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((flow_name, token)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // One set for the whole request: the flow and its templates belong together. The token is
    // checked whether or not the flow exists, so both refusals cost the same.
    let set = st.flows.load();
    let token_ok = st.tokens.verify(&flow_name, &token);
    let known = set.get(&flow_name).is_some() && token_ok;
    let client = client_ip(peer, &headers, &st.trusted_proxies);
    let label = if known { flow_name.as_str() } else { "(unknown)" };
    st.metrics.request(label);
    let metrics = Arc::clone(&st.metrics);
    let log = Arc::clone(&st.requests);
    let label = label.to_string();
    let mut rec = Entry {
        at: Ts::now(),
        client: client.to_string(),
        method: method.to_string(),
        ..Entry::default()
    };
    let who = Caller {
        peer,
        client,
        token_ok,
    };
    let resp = match handle(st, set, who, flow_name, method, uri, headers, body, &mut rec).await {
        Ok(resp) => {
            let reason = match resp.status() {
                StatusCode::TOO_MANY_REQUESTS => Some("too_busy"),
                StatusCode::METHOD_NOT_ALLOWED => Some("method_not_allowed"),
                _ => None,
            };
            if let Some(r) = reason {
                metrics.refused(&label, r);
                rec.outcome = "refused".into();
                rec.reason = Some(r.into());
            }
            resp
        }
        Err(e) => {
            metrics.refused(&label, e.code);
            rec.outcome = "refused".into();
            rec.reason = Some(e.code.into());
            e.into_response()
        }
    };
    if known {
        rec.status = resp.status().as_u16();
        log.push(&label, rec);
    }
    resp
}

/// Who called: the TCP peer, the client address behind trusted proxies, and whether the URL
/// token was right.
struct Caller {
    peer: SocketAddr,
    client: std::net::IpAddr,
    token_ok: bool,
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    st: AppState,
    set: Arc<crate::flow::FlowSet>,
    who: Caller,
    flow_name: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    rec: &mut Entry,
) -> Result<Response, ApiError> {
    let Caller {
        peer,
        client,
        token_ok,
    } = who;
    // Unknown flow and wrong token get the same answer.
    let known = set.get(&flow_name).cloned();
    let flow = match (known, token_ok) {
        (Some(f), true) if f.webhook().is_some() => f,
        _ => {
            return Err(refuse(
                &flow_name,
                peer,
                StatusCode::NOT_FOUND,
                "not_found",
                "no webhook at this URL".into(),
            ));
        }
    };
    let name = flow.name.as_str();
    let webhook = flow.webhook().expect("checked above");
    let recorded_headers = headers_of(&headers, webhook);
    rec.headers = recorded_headers.clone();

    if !webhook.methods.iter().any(|m| m == method.as_str()) {
        let allow = webhook.methods.join(", ");
        let mut resp = refuse(
            name,
            peer,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this webhook accepts {allow}"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&allow) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        return Ok(resp);
    }

    if !webhook.allow_ips.is_empty() && !webhook.allow_ips.iter().any(|n| n.contains(&client)) {
        count(&st, name, "rejected:ip_not_allowed");
        return Err(refuse(
            name,
            peer,
            StatusCode::FORBIDDEN,
            "ip_not_allowed",
            format!("{client} may not call this webhook"),
        ));
    }

    // Caps on requests in flight, so overload answers 429 instead of queueing without bound.
    let _global = match Arc::clone(&st.in_flight).try_acquire_owned() {
        Ok(p) => p,
        Err(_) => return Ok(too_busy(&st, name, peer, "the server")),
    };
    let _per_flow = match &webhook.in_flight {
        None => None,
        Some(s) => match Arc::clone(s).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => return Ok(too_busy(&st, name, peer, "this webhook")),
        },
    };

    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || format!("body exceeds the limit of {} bytes", st.max_body);
    if declared_len.is_some_and(|n| n > st.max_body) {
        return Err(refuse(
            name,
            peer,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            too_large(),
        ));
    }
    let read = tokio::time::timeout(st.body_timeout, axum::body::to_bytes(body, st.max_body)).await;
    let Ok(read) = read else {
        return Err(refuse(
            name,
            peer,
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {}",
                humantime::format_duration(st.body_timeout)
            ),
        ));
    };
    let raw = match read {
        Ok(b) => b,
        Err(e) => {
            let is_limit =
                std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return Err(if is_limit {
                refuse(
                    name,
                    peer,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    too_large(),
                )
            } else {
                refuse(
                    name,
                    peer,
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    format!("could not read the body: {e}"),
                )
            });
        }
    };

    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let bytes = decode_encoding(encoding, &raw, st.max_body).map_err(|e| {
        let (status, code) = match e {
            BodyError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            BodyError::UnsupportedEncoding(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding"),
            _ => (StatusCode::BAD_REQUEST, "malformed_body"),
        };
        refuse(name, peer, status, code, e.to_string())
    })?;

    if let Some(v) = &webhook.verify {
        // Signed as sent; a compressed body may also have been signed before compression.
        let outcome = match check_signature(v, &headers, &raw) {
            Err(VerifyError::Mismatch) if bytes.len() != raw.len() || bytes[..] != raw[..] => {
                check_signature(v, &headers, &bytes)
            }
            other => other,
        };
        match outcome {
            Ok(Verified::Ok) => {}
            Ok(Verified::WooPing) => {
                rec.outcome = "ping".into();
                tracing::info!(flow = name, %peer, "WooCommerce webhook ping answered");
                return Ok((StatusCode::OK, axum::Json(json!({"status": "ping"}))).into_response());
            }
            Err(e) => {
                count(&st, name, &format!("rejected:{}", e.reason()));
                if matches!(e, VerifyError::NoSecret(_)) {
                    tracing::error!(flow = name, error = %e, "cannot verify webhooks: secret missing");
                }
                return Err(refuse(
                    name,
                    peer,
                    StatusCode::UNAUTHORIZED,
                    e.reason(),
                    e.to_string(),
                ));
            }
        }
    }

    // Verified (or nothing to verify): the body may be kept in the request log.
    rec.keep_body(&bytes);
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = parse_body(webhook.body, content_type, &bytes).map_err(|e| {
        let (status, code) = match e {
            BodyError::UnsupportedType(..) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            _ => (StatusCode::BAD_REQUEST, "malformed_body"),
        };
        refuse(name, peer, status, code, e.to_string())
    })?;

    let request = Request {
        method: method.to_string(),
        headers: recorded_headers,
        query: parse_query(uri.query()),
        body,
    };
    let templates = &set.templates;
    let prepared = prepare(&flow, &webhook.when, templates, request, Cause::default());
    let (mut run, ctx) = match prepared {
        Ok(Prepared::Run(run, ctx)) => (run, ctx),
        Ok(Prepared::Ignored(why)) => {
            rec.outcome = "ignored".into();
            rec.reason = Some(format!("condition not met: {why}"));
            tracing::info!(flow = name, %peer, condition = %why, "event ignored: trigger condition not met");
            let store = st.store.clone();
            let flow_name = name.to_string();
            tokio::spawn(async move {
                if let Err(e) = store.add_counter(&flow_name, "ignored", 1).await {
                    tracing::warn!(error = %e, "could not count an ignored event");
                }
            });
            return Ok((
                StatusCode::OK,
                axum::Json(json!({"status": "ignored", "reason": format!("condition not met: {why}")})),
            )
                .into_response());
        }
        Err(e) => {
            let code = match e {
                TriggerError::Condition(_) => "condition_error",
                TriggerError::MissingVar(_) => "missing_var",
                TriggerError::OrderingKey(_) => "ordering_key_error",
            };
            return Err(refuse(
                name,
                peer,
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                e.to_string(),
            ));
        }
    };

    // Render the answer before storing, so a broken `respond` block stores nothing.
    let response = respond(templates, &webhook.respond, &ctx, &run.id).map_err(|e| {
        tracing::error!(flow = name, error = %e, "respond block failed to render; event refused");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "respond_error", e)
    })?;

    for p in &webhook.redact {
        p.redact(&mut run.request.body);
    }
    let dedupe_key = match &webhook.dedupe {
        None => None,
        Some(d) => match templates.render(&d.key, &ctx) {
            Ok(k) if !k.trim().is_empty() => Some((k.trim().to_string(), d.window)),
            Ok(_) => {
                tracing::warn!(
                    flow = name,
                    "dedupe key rendered empty; accepting without deduplication"
                );
                None
            }
            Err(e) => {
                tracing::warn!(flow = name, error = %e, "dedupe key failed to render; accepting without deduplication");
                None
            }
        },
    };
    let stored = match &dedupe_key {
        None => st.store.insert_run(&run).await.map(|()| None),
        Some((key, window)) => st.store.insert_run_once(&run, key, Ts::now().plus(*window)).await,
    };
    if let Ok(Some(original)) = &stored {
        rec.outcome = "duplicate".into();
        rec.run_id = Some(original.clone());
        count(&st, name, "duplicates");
        tracing::info!(flow = name, %peer, run_id = %original, "duplicate delivery answered with its first run");
        return Ok((
            StatusCode::OK,
            axum::Json(json!({"status": "duplicate", "run_id": original})),
        )
            .into_response());
    }
    if let Err(e) = stored {
        tracing::error!(flow = name, error = %e, "could not store the event");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the event could not be stored; try again",
        ));
    }
    st.wake.notify_one();
    rec.outcome = "accepted".into();
    rec.run_id = Some(run.id.clone());
    tracing::info!(flow = name, run_id = %run.id, %peer, "run accepted");
    Ok(response)
}

fn respond(
    templates: &crate::template::Templates,
    spec: &crate::flow::Respond,
    ctx: &minijinja::Value,
    run_id: &str,
) -> Result<Response, String> {
    let status = StatusCode::from_u16(spec.status).map_err(|e| e.to_string())?;
    let mut resp = match &spec.body {
        None => (
            status,
            axum::Json(json!({"status": "accepted", "run_id": run_id})),
        )
            .into_response(),
        Some(t) => {
            let text = templates
                .render(t, ctx)
                .map_err(|e| format!("respond.body: {e}"))?;
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
            .map_err(|e| format!("respond.headers.{k}: {e}"))?;
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("respond.headers.{k}: {e}"))?;
        let value = HeaderValue::from_str(&v).map_err(|e| format!("respond.headers.{k}: {e}"))?;
        resp.headers_mut().insert(name, value);
    }
    Ok(resp)
}
