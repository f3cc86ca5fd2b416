//! The webhook intake: everything between a request arriving at `/hooks/{flow}/{token}` and
//! its answer, as stages in a fixed order. The order is a security property — nothing of the
//! body is read before the caller is admitted, nothing is parsed before it is authenticated,
//! nothing is stored before the flow has looked at it — and it is written down once, in
//! [`Intake::handle`]:
//!
//! 1. [`admit`] — the flow and its URL token, the method, the client address, the in-flight caps;
//! 2. [`read`] — the body within the size and time limits, decompressed within the size limit;
//! 3. [`authenticate`] — one value per trusted header, then the signature;
//! 4. [`decode`] — the body as JSON, form, XML or text;
//! 5. [`evaluate`] — conditions, vars, ordering key and the answer;
//! 6. [`persist`] — redaction, deduplication and the durable write; then the answer is sent.
//!
//! Each stage fails with a [`Refusal`], which maps to exactly one HTTP answer. Logging, metrics,
//! the per-flow counters and the [request log](log) are kept in one place, [`Intake::receive`].

pub mod admit;
pub mod authenticate;
mod counters;
pub mod decode;
pub mod evaluate;
pub mod log;
pub mod persist;
pub mod read;
mod refusal;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

pub use read::Limits;
pub use refusal::Refusal;

use crate::flow::{FlowSet, Webhook};
use crate::metrics::Metrics;
use crate::reload::Flows;
use crate::request::{Request, parse_query};
use crate::store::Store;
use crate::time::Ts;
use crate::token::UrlTokens;
use authenticate::Authenticated;
use evaluate::Evaluated;
use log::{Entry, RequestLog};
use persist::Persisted;

/// What the intake needs; one per server, shared by every request.
pub struct Intake {
    pub flows: Arc<Flows>,
    pub store: Arc<dyn Store>,
    pub tokens: UrlTokens,
    /// Wakes the engine when a run is stored.
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub requests: Arc<RequestLog>,
    pub limits: Limits,
    /// Webhook requests handled at once over all flows; beyond, 429.
    pub in_flight: Arc<Semaphore>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The flows' counters, written once a second.
    pub counters: Arc<counters::Counters>,
    /// The base URL senders reach this server at (`--public-url`, no trailing slash): with a
    /// request's path and query, the URL senders that sign it (Square, HubSpot, Twilio) signed.
    pub public_url: String,
}

/// How a request that was not refused ended.
enum Outcome {
    Accepted {
        run_id: String,
        answer: Response,
    },
    Duplicate(String),
    Ignored(String),
    WooPing,
    /// A sender's challenge answered (Zoom's URL validation).
    Challenge(serde_json::Value),
}

/// One request as it arrived.
pub struct Arrival {
    pub peer: SocketAddr,
    pub flow: String,
    pub token: String,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Body,
}

impl Intake {
    /// Handles one webhook request and keeps the books on it: metrics, the flow's counters,
    /// its request log and one log line for a refusal.
    pub async fn receive(&self, arrival: Arrival) -> Response {
        // One set for the whole request: a flow and its templates belong together. The token is
        // checked whether or not the flow exists, so both refusals cost the same.
        let set = self.flows.load();
        let token_ok = self.tokens.verify(&arrival.flow, &arrival.token);
        let known = token_ok && set.get(&arrival.flow).is_some();
        let label = if known {
            arrival.flow.clone()
        } else {
            log::UNKNOWN.into()
        };
        // The name asked for, for the log of requests to no known flow (bounded: a sender
        // chooses it).
        let asked: String = arrival.flow.chars().take(100).collect();
        self.metrics.request(&label);
        let client = crate::net::client_ip::client_ip(arrival.peer, &arrival.headers, &self.trusted_proxies);
        let mut entry = Entry {
            at: Ts::now(),
            client: client.to_string(),
            method: arrival.method.to_string(),
            ..Entry::default()
        };
        let peer = arrival.peer;
        let explain = set
            .get(&arrival.flow)
            .and_then(|f| f.webhook())
            .is_some_and(|w| w.respond.explain);
        let resp = match self.handle(&set, token_ok, client, arrival, &mut entry).await {
            Ok(outcome) => self.answer(&label, peer, outcome, explain, &mut entry),
            Err(refusal) => self.refuse(&label, peer, refusal, explain, &mut entry),
        };
        self.metrics.stats.count(&label, &entry.outcome);
        if entry.outcome == "refused" {
            let reason = entry.reason.as_deref().unwrap_or("refused");
            self.metrics.stats.refused_by(&label, &entry.client, reason);
        }
        entry.status = resp.status().as_u16();
        if !known {
            // Which name was asked for, without the token.
            let detail = entry.detail.take().unwrap_or_default();
            entry.detail = Some(format!("/hooks/{asked}/…: {detail}"));
        }
        self.requests.push(&label, entry);
        resp
    }

    /// The stages, in their order.
    async fn handle(
        &self,
        set: &FlowSet,
        token_ok: bool,
        client: IpAddr,
        arrival: Arrival,
        entry: &mut Entry,
    ) -> Result<Outcome, Refusal> {
        let Arrival {
            flow: flow_name,
            method,
            uri,
            headers,
            body,
            ..
        } = arrival;
        let admitted = admit::admit(set, &flow_name, token_ok, &method, client, &self.in_flight)?;
        let flow = &admitted.flow;
        let webhook = flow.webhook().expect("admitted flows have a webhook");
        entry.headers = recorded_headers(&headers, webhook);

        let body = read::read(body, &headers, self.limits).await?;
        // Built only for the senders that sign it: nothing added to other requests' path.
        let signs_url = webhook.verify.as_ref().is_some_and(|v| v.scheme.signs_url());
        let url = match signs_url {
            true => format!(
                "{}{}",
                self.public_url,
                uri.path_and_query().map_or(uri.path(), |p| p.as_str())
            ),
            false => String::new(),
        };
        let target = crate::verify::Target {
            method: method.as_str(),
            url: &url,
        };
        match authenticate::authenticate(webhook, &target, &headers, &body, crate::time::unix_secs())? {
            Authenticated::WooPing => return Ok(Outcome::WooPing),
            Authenticated::Challenge(answer) => return Ok(Outcome::Challenge(answer)),
            Authenticated::Yes => {}
        }
        // Authenticated (or nothing to check): the body may be kept in the request log.
        entry.keep_body(&body.decoded);
        let value = decode::decode(webhook, &headers, &body.decoded)?;
        let request = Request {
            method: method.to_string(),
            headers: entry.headers.clone(),
            query: parse_query(uri.query()),
            body: value,
        };
        let (mut run, ctx, answer) = match evaluate::evaluate(flow, webhook, &set.templates, request)? {
            Evaluated::Run(run, ctx, answer) => (run, ctx, answer),
            Evaluated::Ignored(why) => return Ok(Outcome::Ignored(why)),
        };
        match persist::persist(self.store.as_ref(), webhook, &set.templates, &ctx, &mut run).await? {
            Persisted::Stored => {
                self.wake.notify_one();
                Ok(Outcome::Accepted {
                    run_id: run.id.clone(),
                    answer,
                })
            }
            Persisted::Duplicate(original) => Ok(Outcome::Duplicate(original)),
        }
    }

    fn answer(
        &self,
        flow: &str,
        peer: SocketAddr,
        outcome: Outcome,
        explain: bool,
        entry: &mut Entry,
    ) -> Response {
        match outcome {
            Outcome::Accepted { run_id, answer } => {
                tracing::info!(flow, %run_id, %peer, "run accepted");
                self.count(flow, "accepted");
                entry.outcome = "accepted".into();
                entry.run_id = Some(run_id);
                answer
            }
            Outcome::Duplicate(run_id) => {
                tracing::info!(flow, %peer, %run_id, "duplicate delivery answered with its first run");
                self.count(flow, "duplicates");
                entry.outcome = "duplicate".into();
                entry.run_id = Some(run_id.clone());
                (
                    StatusCode::OK,
                    axum::Json(json!({"status": "duplicate", "run_id": run_id})),
                )
                    .into_response()
            }
            Outcome::Ignored(why) => {
                tracing::info!(flow, %peer, condition = %why, "event ignored: trigger condition not met");
                self.count(flow, "ignored");
                entry.outcome = "ignored".into();
                let body = if explain {
                    json!({"status": "ignored", "reason": why})
                } else {
                    json!({"status": "ignored"})
                };
                entry.reason = Some(why);
                (StatusCode::OK, axum::Json(body)).into_response()
            }
            Outcome::WooPing => {
                tracing::info!(flow, %peer, "WooCommerce webhook ping answered");
                entry.outcome = "ping".into();
                (StatusCode::OK, axum::Json(json!({"status": "ping"}))).into_response()
            }
            Outcome::Challenge(answer) => {
                tracing::info!(flow, %peer, "the sender's validation challenge answered");
                entry.outcome = "challenge".into();
                (StatusCode::OK, axum::Json(answer)).into_response()
            }
        }
    }

    fn refuse(
        &self,
        flow: &str,
        peer: SocketAddr,
        refusal: Refusal,
        explain: bool,
        entry: &mut Entry,
    ) -> Response {
        let (status, code) = refusal.status();
        if refusal.is_operator_problem() {
            tracing::error!(flow, %peer, status = status.as_u16(), reason = code, detail = %refusal, "webhook refused");
        } else {
            tracing::warn!(flow, %peer, status = status.as_u16(), reason = code, detail = %refusal, "webhook refused");
        }
        self.metrics.refused(flow, code);
        if let Some(counter) = refusal.counter() {
            self.count(flow, &counter);
        }
        entry.outcome = "refused".into();
        entry.reason = Some(code.to_string());
        entry.detail = Some(refusal.to_string());
        let mut resp = (
            status,
            axum::Json(json!({"error": code, "detail": refusal.public_detail(explain)})),
        )
            .into_response();
        let headers = resp.headers_mut();
        if let Some(secs) = refusal.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Refusal::MethodNotAllowed(allow) = &refusal
            && let Ok(v) = HeaderValue::from_str(allow)
        {
            headers.insert(header::ALLOW, v);
        }
        resp
    }

    /// Adds to one of the flow's counters (`GET /api/flows`), off the request path.
    fn count(&self, flow: &str, what: &str) {
        self.counters.add(&self.store, flow, what);
    }
}

/// Headers as a run records them: names lower-case, repeated headers joined with `, `,
/// credentials and signatures replaced by `[redacted]`, alternative names filled in.
fn recorded_headers(map: &HeaderMap, webhook: &Webhook) -> BTreeMap<String, String> {
    let signature = webhook
        .verify
        .as_ref()
        .map(|v| v.scheme.signature_headers())
        .unwrap_or_default();
    let mut out = BTreeMap::<String, String>::new();
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
    authenticate::add_aliases(webhook, &mut out);
    out
}

/// Flows compiled from YAML text, for the stages' unit tests.
#[cfg(test)]
pub(crate) fn test_flows(flows: &[(&str, &str)]) -> FlowSet {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, yaml) in flows {
        std::fs::write(dir.path().join(format!("{name}.yaml")), yaml).expect("write flow");
    }
    let (set, errors) = crate::flow::load_dir(dir.path(), &dir.path().join("no-templates"));
    assert!(errors.is_empty(), "{errors:#?}");
    set
}
