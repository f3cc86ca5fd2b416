//! The `http` action: a templated request sent with reqwest, its response classified by the
//! action's success statuses and retry policy, and offered to later steps as
//! `steps.<name>.status / .headers / .body`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};

use bytesize::ByteSize;
use minijinja::value::Value as JValue;

use super::read::Capped;
use super::{
    AttemptResult, Clients, ExecContext, Kind, RECORDED_BODY_LIMIT, ResultKind, Surroundings, redact,
    redact_headers, truncate_body,
};
use crate::compiler::Part;
use crate::retry::{RetryPolicy, StatusClass, StatusSet, StatusSpec, parse_retry_after};
use crate::run::{ReceivedResponse, SentRequest};
use crate::template::{JsonTemplate, Templates};
use crate::verify::{Verifier, VerifySpec};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::flow::schema::http_body)]
pub struct HttpSpec {
    /// The request's method, e.g. `PUT`; default `POST`.
    #[serde(default = "default_method")]
    #[schemars(transform = crate::flow::schema::http_method)]
    pub method: String,
    /// A template of the URL, e.g. `"https://crm.example.com/contacts/{{ vars.id }}"`.
    pub url: String,
    /// Header templates, e.g. `{ Authorization: "Bearer {{ secret('CRM_TOKEN') }}" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A template string (sent as is) or a YAML structure (sent as JSON, string leaves
    /// rendered), e.g. `{ email: "{{ vars.email }}" }`.
    pub body: Option<Value>,
    /// A template file under `templates/` rendered as the body, e.g. `crm-contact.json`.
    pub body_template: Option<String>,
    /// How long one attempt may take, e.g. `10s`; default 30s.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>", transform = crate::flow::schema::duration)]
    pub timeout: Option<Duration>,
    /// Statuses that count as success, e.g. `["2xx", 404]`; default `["2xx"]`.
    pub success: Option<Vec<StatusSpec>>,
    /// Follow redirects (3xx) instead of treating them as the answer, e.g. `true`.
    #[serde(default)]
    pub follow_redirects: bool,
    /// Sign the request: `{ preset: standard-webhooks, secret_env: NAME }` or the `hmac` preset.
    pub sign: Option<VerifySpec>,
    /// Largest response body read (e.g. `4MiB`); default the server's `--max-response` (1 MiB).
    /// A successful answer with a larger body fails the attempt.
    #[schemars(with = "Option<String>", transform = crate::flow::schema::size)]
    pub max_response: Option<bytesize::ByteSize>,
}

fn default_method() -> String {
    "POST".into()
}

/// Default time allowed for one request, connect to last body byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Header carrying the per-run-and-action idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

#[derive(Debug)]
pub enum Body {
    None,
    /// A text template (inline or a file under `templates/`), sent as rendered.
    Text(String),
    /// A YAML structure sent as JSON.
    Json(JsonTemplate),
}

/// A compiled `http` action.
#[derive(Debug)]
pub struct HttpAction {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Body,
    pub timeout: Duration,
    pub success: StatusSet,
    pub follow_redirects: bool,
    /// Signs each attempt (set by the flow compiler from `sign`).
    pub sign: Option<Verifier>,
    /// Overrides the server's [`ReadLimits::max_response`](super::ReadLimits).
    pub max_response: Option<usize>,
    /// The URL when it has no template in it: what validate and the start-up check hold against
    /// the egress policy.
    pub literal_url: Option<reqwest::Url>,
}

/// A request after rendering, before sending.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub method: Method,
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The methods an `http` action may use: HTTP's own (RFC 9110, PATCH) and WebDAV's. Anything
/// else is almost always a typo (`PSOT`) that every attempt would send.
pub const METHODS: &[&str] = &[
    "GET",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "HEAD",
    "OPTIONS",
    "TRACE",
    "QUERY",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
];

/// `method:` as written (any case) if it is a known method; else what it might have meant.
pub fn check_method(m: &str) -> Result<Method, String> {
    let upper = m.trim().to_ascii_uppercase();
    if METHODS.contains(&upper.as_str())
        && let Ok(method) = Method::from_bytes(upper.as_bytes())
    {
        return Ok(method);
    }
    let near = METHODS
        .iter()
        .filter(|k| same_letters(k, &upper))
        .map(|k| format!(" (did you mean {k}?)"))
        .next()
        .unwrap_or_default();
    Err(format!(
        "`{m}` is not an HTTP method{near}; use one of {}",
        METHODS.join(", ")
    ))
}

/// A transposition or one changed, missing or extra letter.
fn same_letters(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() == b.len() {
        let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        return diff.len() == 1
            || (diff.len() == 2
                && diff[1] == diff[0] + 1
                && a[diff[0]] == b[diff[1]]
                && a[diff[1]] == b[diff[0]]);
    }
    let (long, short) = if a.len() > b.len() { (&a, &b) } else { (&b, &a) };
    long.len() == short.len() + 1
        && (0..long.len()).any(|i| {
            let mut l = long.clone();
            l.remove(i);
            l == *short
        })
}

/// A URL with no template in it must be one every attempt can use: `http` or `https`, a host.
/// (A templated URL is checked when each attempt renders it.)
pub fn check_literal_url(url: &str) -> Result<(), String> {
    if url.contains("{{") || url.contains("{%") {
        return Ok(());
    }
    let parsed = url::Url::parse(url.trim()).map_err(|e| {
        format!("`{url}` is not a URL ({e}): write a whole one, such as `https://api.example.com/orders`")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "`{url}`: an http action's URL starts with http:// or https://"
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{url}` names no host"));
    }
    Ok(())
}

impl Kind for HttpAction {
    type Spec = HttpSpec;
    const OUTGOING: bool = true;

    fn compile(spec: &HttpSpec, part: &mut Part<'_, '_>) -> Option<HttpAction> {
        let mut action = HttpAction::build(spec, part);
        if let Some(sign) = &spec.sign {
            let path = part.path("sign");
            let signer = crate::verify::compile(part.compiler(), &path, sign);
            if let Some(s) = &signer
                && !matches!(s.scheme.name(), "standard-webhooks" | "hmac")
            {
                part.problem(
                    "sign",
                    "outgoing webhooks are signed with `standard-webhooks` or `hmac`",
                );
            }
            if let Some(a) = &mut action {
                a.sign = signer;
            }
        }
        action
    }

    fn attempt(
        &self,
        cx: &ExecContext<'_>,
        clients: &Clients,
        retry: &RetryPolicy,
    ) -> impl Future<Output = AttemptResult> + Send {
        self.send(cx, retry, clients)
    }

    fn preview(&self, cx: &ExecContext<'_>) -> Result<Value, String> {
        let r = self.render(cx)?;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let body = serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body));
        Ok(serde_json::json!({
            "method": r.method.as_str(),
            "url": redact(r.url.as_str(), &cx.secrets),
            "headers": redact_headers(&r.headers, &cx.secrets),
            "body": body,
        }))
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The destination's host and port; `None` when the URL is templated per run and does not
    /// render here.
    fn destination(&self, _: &Clients, templates: &Templates, ctx: &JValue) -> Option<String> {
        let url = templates.render(&self.url, ctx).ok()?;
        let url = reqwest::Url::parse(url.trim()).ok()?;
        url.host_str()
            .map(|h| format!("{h}:{}", url.port_or_known_default().unwrap_or(0)))
    }

    /// A literal URL the egress policy refuses: every attempt would be refused.
    fn warnings(&self, name: &str, around: &Surroundings) -> Vec<(String, String)> {
        self.literal_url
            .as_ref()
            .and_then(|u| crate::egress::refuses_literal(u, &around.egress))
            .map(|why| {
                vec![(
                    "url".to_string(),
                    format!("{why}; every attempt of `{name}` is refused"),
                )]
            })
            .unwrap_or_default()
    }
}

impl HttpAction {
    /// Builds the action from its spec, registering its templates under its key path.
    fn build(spec: &HttpSpec, part: &mut Part<'_, '_>) -> Option<HttpAction> {
        let before = part.problems();
        let method = match check_method(&spec.method) {
            Ok(m) => m,
            Err(e) => {
                part.problem("method", e);
                Method::POST
            }
        };
        if let Err(e) = check_literal_url(&spec.url) {
            part.problem("url", e);
        }
        let url = part.template("url", &spec.url);
        let mut headers = Vec::new();
        for (k, v) in &spec.headers {
            match HeaderName::from_bytes(k.as_bytes()) {
                Ok(h) => headers.push((h, part.template(&format!("headers.{k}"), v))),
                Err(_) => part.problem(
                    &format!("headers.{k}"),
                    format!("`{k}` is not a valid header name"),
                ),
            }
        }
        let body = match (&spec.body, &spec.body_template) {
            (Some(_), Some(_)) => {
                part.problem("body_template", "give either `body` or `body_template`, not both");
                Body::None
            }
            (Some(Value::String(s)), None) => Body::Text(part.template("body", s)),
            (Some(v), None) => match JsonTemplate::compile(v, &part.name("body"), part.templates()) {
                Ok(t) => Body::Json(t),
                Err(e) => {
                    // The key inside the body whose template does not parse.
                    let path = e
                        .name
                        .strip_prefix(&part.name(""))
                        .and_then(|p| p.strip_prefix('.'))
                        .unwrap_or("body")
                        .to_string();
                    part.problem(&path, format!("template syntax error: {}", e.message));
                    Body::None
                }
            },
            (None, Some(file)) => match part.templates().unusable(file) {
                None => Body::Text(file.clone()),
                Some(why) => {
                    part.problem("body_template", why);
                    Body::None
                }
            },
            (None, None) => Body::None,
        };
        let success = match &spec.success {
            Some(list) => StatusSet::parse(list).unwrap_or_else(|e| {
                part.problem("success", e);
                StatusSet::success_default()
            }),
            None => StatusSet::success_default(),
        };
        let timeout = spec.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            part.problem("timeout", "timeout must be greater than zero");
        }
        if spec.max_response.is_some_and(|b| b.as_u64() == 0) {
            part.problem("max_response", "max_response must be more than 0 bytes");
        }
        if part.problems() != before {
            return None;
        }
        Some(HttpAction {
            method,
            url,
            headers,
            body,
            timeout,
            success,
            follow_redirects: spec.follow_redirects,
            sign: None,
            max_response: spec
                .max_response
                .map(|b| usize::try_from(b.as_u64()).unwrap_or(usize::MAX)),
            literal_url: (!spec.url.contains("{{") && !spec.url.contains("{%"))
                .then(|| reqwest::Url::parse(spec.url.trim()).ok())
                .flatten(),
        })
    }

    /// Renders the request. Pure apart from reading environment variables via `env()`.
    pub fn render(&self, cx: &ExecContext<'_>) -> Result<Rendered, String> {
        let t = cx.templates;
        let url_text = t.render(&self.url, &cx.ctx).map_err(|e| e.to_string())?;
        let url = reqwest::Url::parse(url_text.trim()).map_err(|e| {
            format!(
                "rendered URL `{}` is invalid: {e}",
                redact(&url_text, &cx.secrets)
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("URL scheme `{}` is not http or https", url.scheme()));
        }
        let mut headers = Vec::new();
        for (name, tmpl) in &self.headers {
            headers.push((
                name.to_string(),
                t.render(tmpl, &cx.ctx).map_err(|e| e.to_string())?,
            ));
        }
        let has =
            |headers: &[(String, String)], n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        let body = match &self.body {
            Body::None => Vec::new(),
            Body::Text(name) => {
                if !has(&headers, "content-type") {
                    headers.push(("content-type".into(), content_type_for(name).into()));
                }
                t.render(name, &cx.ctx).map_err(|e| e.to_string())?.into_bytes()
            }
            Body::Json(jt) => {
                if !has(&headers, "content-type") {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                let v = jt.render(t, &cx.ctx).map_err(|e| e.to_string())?;
                serde_json::to_vec(&v).map_err(|e| e.to_string())?
            }
        };
        if !has(&headers, IDEMPOTENCY_HEADER) {
            headers.push((IDEMPOTENCY_HEADER.into(), cx.idempotency_key.clone()));
        }
        if let Some(signer) = &self.sign {
            let secret = signer
                .secrets()
                .into_iter()
                .next()
                .ok_or_else(|| format!("cannot sign: no secret in {}", signer.sources()))?;
            let key = crate::verify::key_bytes(&signer.scheme, &secret);
            let now = crate::time::unix_secs();
            // The message id is the idempotency key: the same on every retry.
            let id = format!("msg_{}", cx.idempotency_key);
            let method = self.method.to_string();
            let target = crate::verify::Target {
                method: &method,
                url: url.as_str(),
            };
            headers.extend(crate::verify::sign(
                &signer.scheme,
                &target,
                &key,
                &id,
                now,
                &body,
            ));
        }
        Ok(Rendered {
            method: self.method.clone(),
            url,
            headers,
            body,
        })
    }

    /// Renders, signs and sends the request; classifies the answer.
    async fn send(&self, cx: &ExecContext<'_>, policy: &RetryPolicy, clients: &Clients) -> AttemptResult {
        let (rendered, header_map, sent) = match self.prepare(cx, clients) {
            Ok(p) => p,
            Err(refused) => return *refused,
        };
        let client = if self.follow_redirects {
            &clients.follow
        } else {
            &clients.direct
        };
        let started = Instant::now();
        let result = client
            .request(rendered.method.clone(), rendered.url.clone())
            .headers(header_map)
            .timeout(self.timeout)
            .body(rendered.body)
            .send()
            .await;
        match result {
            Ok(response) => self.answer(response, started, sent, cx, policy, clients).await,
            Err(e) => AttemptResult::unanswered(Some(sent), self.send_error(&e, &cx.secrets)),
        }
    }

    /// The request rendered, as recorded (secrets masked) and as sent; refused here for good
    /// when it cannot be sent at all (a template, a header value, the egress policy).
    fn prepare(
        &self,
        cx: &ExecContext<'_>,
        clients: &Clients,
    ) -> Result<(Rendered, HeaderMap, SentRequest), Box<AttemptResult>> {
        let rendered = self
            .render(cx)
            .map_err(|e| Box::new(AttemptResult::permanent(redact(&e, &cx.secrets))))?;
        let sent = SentRequest {
            method: rendered.method.to_string(),
            url: redact(rendered.url.as_str(), &cx.secrets),
            headers: redact_headers(&rendered.headers, &cx.secrets),
            body: redact(
                &truncate_body(&String::from_utf8_lossy(&rendered.body), RECORDED_BODY_LIMIT),
                &cx.secrets,
            ),
        };
        let mut header_map = HeaderMap::new();
        for (k, v) in &rendered.headers {
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v))
            else {
                let why = format!("header `{k}` rendered to a value that is not allowed in HTTP");
                return Err(Box::new(AttemptResult::unanswered(
                    Some(sent),
                    ResultKind::Permanent(why),
                )));
            };
            header_map.append(name, value);
        }
        if let Err(d) = clients.egress.check_url(&rendered.url) {
            return Err(Box::new(AttemptResult::unanswered(
                Some(sent),
                ResultKind::Permanent(d.to_string()),
            )));
        }
        Ok((rendered, header_map, sent))
    }

    /// A request that got no answer: refused by the egress policy for good, else worth another
    /// try (a timeout, a refused connection).
    fn send_error(&self, e: &reqwest::Error, secrets: &[String]) -> ResultKind {
        if let Some(d) = crate::egress::find_denied(e) {
            return ResultKind::Permanent(d.to_string());
        }
        let error = if e.is_timeout() {
            format!("timed out after {}", humantime::format_duration(self.timeout))
        } else {
            format!("request failed: {}", error_chain(e))
        };
        ResultKind::Transient {
            error: redact(&error, secrets),
            retry_after: None,
        }
    }

    /// Reads the answer (bounded in size and by what is left of the timeout), records it and
    /// classifies it by the action's success statuses and retry policy.
    async fn answer(
        &self,
        mut response: reqwest::Response,
        started: Instant,
        sent: SentRequest,
        cx: &ExecContext<'_>,
        policy: &RetryPolicy,
        clients: &Clients,
    ) -> AttemptResult {
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let remaining = self
            .timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let declared = response.content_length();
        let cap = self.max_response.unwrap_or(clients.limits.max_response);
        let read = tokio::time::timeout(remaining, Capped::read(&mut response, cap)).await;
        let body = match read {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                let error = format!("reading the response failed: {}", error_chain(&e));
                return AttemptResult::unanswered(
                    Some(sent),
                    ResultKind::Transient {
                        error,
                        retry_after: None,
                    },
                );
            }
            Err(_) => {
                let timeout = humantime::format_duration(self.timeout);
                let error = format!("timed out after {timeout} reading the response");
                return AttemptResult::unanswered(
                    Some(sent),
                    ResultKind::Transient {
                        error,
                        retry_after: None,
                    },
                );
            }
        };
        // Not read further: hyper drops the connection rather than draining the rest.
        drop(response);
        let (kept, truncated) = body.recorded(RECORDED_BODY_LIMIT, declared);
        let recorded = ReceivedResponse {
            status,
            headers: redact_headers(&headers, &cx.secrets),
            body: redact(&kept, &cx.secrets),
            size: body.size(declared),
            truncated,
        };
        let kind = match policy.classify(status, &self.success) {
            StatusClass::Success if !body.complete => ResultKind::Permanent(format!(
                "the answer's body is larger than max_response ({}; {} arrived before reading stopped{}); the destination answered HTTP {status}, so the request may have taken effect. Raise the action's `max_response` if such answers are expected",
                ByteSize(cap as u64),
                ByteSize(body.received),
                declared
                    .map(|n| format!(", Content-Length {}", ByteSize(n)))
                    .unwrap_or_default(),
            )),
            StatusClass::Success => {
                ResultKind::Success(output(status, &headers, &String::from_utf8_lossy(&body.bytes)))
            }
            StatusClass::Retry => ResultKind::Transient {
                error: format!("HTTP {status}"),
                retry_after,
            },
            StatusClass::Fail => ResultKind::Permanent(format!(
                "HTTP {status} is not a success status for this action and is not retried"
            )),
        };
        AttemptResult {
            effects: Default::default(),
            request: Some(sent),
            response: Some(recorded),
            kind,
        }
    }
}

/// Default content type of a text body, from its template's file name (`ticket.json.j2` is
/// JSON); inline templates are plain text.
fn content_type_for(template: &str) -> &'static str {
    let file = template.rsplit('/').next().unwrap_or(template);
    if file.contains(".json") {
        "application/json"
    } else if file.contains(".html") || file.contains(".htm") {
        "text/html; charset=utf-8"
    } else if file.contains(".xml") {
        "application/xml"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// `steps.<name>`: status, headers (lowercase names) and the body, parsed when it is JSON.
fn output(status: u16, headers: &[(String, String)], text: &str) -> Value {
    let mut h = Map::new();
    for (k, v) in headers {
        h.entry(k.to_ascii_lowercase())
            .or_insert_with(|| Value::String(v.clone()));
    }
    let body = serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string()));
    serde_json::json!({ "status": status, "headers": h, "body": body })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod checks {
    use super::*;

    #[test]
    fn methods_are_real_ones_and_typos_get_a_suggestion() {
        assert_eq!(check_method("post").unwrap(), Method::POST);
        assert_eq!(check_method("PROPFIND").unwrap().as_str(), "PROPFIND");
        let e = check_method("PSOT").unwrap_err();
        assert!(e.contains("did you mean POST?"), "{e}");
        assert!(check_method("GETT").unwrap_err().contains("did you mean GET?"));
        assert!(!check_method("BREW").unwrap_err().contains("did you mean"));
    }

    #[test]
    fn literal_urls_must_work_templated_ones_wait_for_their_values() {
        assert!(check_literal_url("https://api.example.com/orders").is_ok());
        assert!(check_literal_url("{{ env('BASE') }}/orders").is_ok());
        for bad in [
            "htp//example com",
            "ftp://example.com/x",
            "https://",
            "5",
            "mailto:a@b.c",
        ] {
            assert!(check_literal_url(bad).is_err(), "{bad}");
        }
    }
}
