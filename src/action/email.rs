//! The `email` action: a templated message sent over SMTP with lettre (async, tokio, rustls).
//!
//! Recipients are rendered, then validated: an invalid address fails the attempt for good.
//! SMTP's own classes decide retries — connection failures, timeouts and 4xx replies are
//! transient; 5xx replies are permanent. The server's reply is kept on the attempt.
//! HTML parts auto-escape what they interpolate (their templates are registered as `.html`);
//! text parts do not.
//!
//! Every message carries `Message-ID` and `Date`. An email of a **list** (`list: newsletter`,
//! a segment) goes to one contact and carries `List-Id`, `List-Unsubscribe` (a one-click URL
//! hookflow serves, sealed for that contact and list, see [`crate::links`]) and
//! `List-Unsubscribe-Post` (RFC 2369, RFC 8058); its templates see `unsubscribe_url`. Before
//! sending, every recipient is checked against the suppression list ([`crate::suppression`]):
//! suppressed ones are left out, and with no `to` left the step is skipped, saying why. A
//! permanent refusal of a recipient (a hard bounce) suppresses that address for every email,
//! in the same write that records the failed step.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AttemptResult, ExecContext, ResultKind, redact, truncate_body};
use crate::run::{ReceivedResponse, SentRequest};
use crate::template::{JsonTemplate, Templates};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// Each a template, or a list of them; one rendering to a list or to comma-separated
    /// addresses gives several recipients.
    pub to: Value,
    pub cc: Option<Value>,
    pub bcc: Option<Value>,
    pub reply_to: Option<String>,
    /// Overrides the server's default sender.
    pub from: Option<String>,
    pub subject: String,
    pub text: Option<String>,
    pub text_template: Option<String>,
    pub html: Option<String>,
    pub html_template: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// The list (a segment name) this email belongs to: it then goes to one contact, carries
    /// one-click unsubscribe headers, and is not sent to addresses unsubscribed from the list.
    /// Leave it out for transactional email (receipts, password resets).
    pub list: Option<String>,
}

/// Default time allowed for one delivery to the SMTP server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host.
    None,
    /// Upgrade with STARTTLS, which the server must offer (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Server-level SMTP settings.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: Option<u16>,
    pub tls: SmtpTls,
    /// From the environment (`HOOKFLOW_SMTP_USER`, `HOOKFLOW_SMTP_PASSWORD`), never flags.
    pub credentials: Option<(String, crate::secret::Secret)>,
    pub from: Option<String>,
    /// A PEM certificate to trust besides the public roots (a relay with a private CA).
    pub ca_file: Option<std::path::PathBuf>,
}

/// The SMTP transport and defaults, built once at start.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Option<Mailbox>,
    /// `smtp://host:port`, for the run record.
    pub endpoint: String,
    pub host: String,
}

impl Mailer {
    pub fn new(cfg: &SmtpConfig) -> Result<Mailer, String> {
        let tls = match cfg.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters(cfg)?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters(cfg)?),
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str()).tls(tls);
        let port = cfg.port.unwrap_or(match cfg.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        });
        let mut builder = builder.port(port).timeout(Some(DEFAULT_TIMEOUT));
        if let Some((user, password)) = &cfg.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_string()));
        }
        let from = match &cfg.from {
            None => None,
            Some(f) => Some(Mailbox::from_str(f).map_err(|e| format!("--smtp-from `{f}`: {e}"))?),
        };
        Ok(Mailer {
            transport: builder.build(),
            from,
            endpoint: format!("smtp://{}:{port}", cfg.host),
            host: cfg.host.clone(),
        })
    }
}

impl EmailAction {
    /// The message as it would be sent (headers and text body, secrets masked), without
    /// sending it; the server's default sender shows as `(--smtp-from)`.
    pub fn preview(&self, cx: &ExecContext<'_>) -> Result<serde_json::Value, String> {
        let placeholder = Mailbox::from_str("(--smtp-from) <default-sender@smtp-from.invalid>").ok();
        let envelope = self.envelope(cx)?;
        let unsubscribe = self.list.as_ref().map(|_| Unsubscribe {
            url: "(--public-url)/u/(a token for this contact and list)".into(),
            mailto: None,
        });
        let (_, sent) = self.build(cx, placeholder.as_ref(), &envelope, unsubscribe.as_ref())?;
        Ok(json!({"headers": sent.headers, "body": sent.body}))
    }
}

/// Certificate checks for the SMTP server's name, against the public roots and the configured
/// CA file, if any.
fn tls_parameters(cfg: &SmtpConfig) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(cfg.host.clone());
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("--smtp-ca-file {}: {e}", path.display()))?;
        let cert =
            Certificate::from_pem(&pem).map_err(|e| format!("--smtp-ca-file {}: {e}", path.display()))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| format!("SMTP TLS settings: {e}"))
}

/// A compiled `email` action; every field is a template name.
#[derive(Debug)]
pub struct EmailAction {
    pub to: JsonTemplate,
    pub cc: Option<JsonTemplate>,
    pub bcc: Option<JsonTemplate>,
    pub reply_to: Option<String>,
    pub from: Option<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
    pub timeout: Duration,
    /// The list (segment) the email belongs to.
    pub list: Option<String>,
}

/// What emails need from the server besides SMTP: where their links point, the keys that seal
/// them, and the suppression list to check.
pub struct MailContext {
    pub keys: crate::links::LinkKeys,
    /// The public base URL (`--public-url`), without a trailing slash.
    pub base_url: String,
    /// An address that also takes unsubscribes (`mailto:` in `List-Unsubscribe`).
    pub unsubscribe_mailto: Option<String>,
    pub suppressions: std::sync::Arc<dyn crate::store::suppress::Suppressions>,
}

impl MailContext {
    /// The one-click unsubscribe URL of `email` (normalised) for `list`.
    pub fn unsubscribe_url(&self, list: &str, email: &str) -> String {
        let token = self.keys.seal(&crate::links::Link::Unsubscribe {
            list: list.to_string(),
            email: email.to_string(),
        });
        format!("{}/u/{token}", self.base_url)
    }
}

/// Who a message goes to, rendered and parsed.
struct Envelope {
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
}

impl Envelope {
    fn addresses(&self) -> Vec<String> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|m| m.email.to_string().to_lowercase())
            .collect()
    }

    /// Leaves out the suppressed addresses.
    fn without(&mut self, suppressed: &[String]) {
        for list in [&mut self.to, &mut self.cc, &mut self.bcc] {
            list.retain(|m| !suppressed.contains(&m.email.to_string().to_lowercase()));
        }
    }
}

impl EmailAction {
    pub fn compile(
        spec: &EmailSpec,
        prefix: &str,
        templates: &mut Templates,
    ) -> Result<EmailAction, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut add = |path: &str, name: String, src: &str, errors: &mut Vec<(String, String)>| {
            if let Err(e) = templates.add(name.clone(), src.to_string()) {
                errors.push((path.to_string(), format!("template syntax error: {}", e.message)));
            }
            name
        };
        let subject = add("subject", format!("{prefix}.subject"), &spec.subject, &mut errors);
        let reply_to = spec
            .reply_to
            .as_ref()
            .map(|r| add("reply_to", format!("{prefix}.reply_to"), r, &mut errors));
        let from = spec
            .from
            .as_ref()
            .map(|f| add("from", format!("{prefix}.from"), f, &mut errors));
        // Inline HTML is registered under an `.html` name so it auto-escapes.
        let text = match (&spec.text, &spec.text_template) {
            (Some(t), None) => Some(add("text", format!("{prefix}.text"), t, &mut errors)),
            (None, Some(file)) => Some(file.clone()),
            (None, None) => None,
            (Some(_), Some(_)) => {
                errors.push(("text".into(), "give `text` or `text_template`, not both".into()));
                None
            }
        };
        let html = match (&spec.html, &spec.html_template) {
            (Some(h), None) => Some(add("html", format!("{prefix}.html.html"), h, &mut errors)),
            (None, Some(file)) => {
                if !(file.ends_with(".html") || file.ends_with(".htm")) {
                    errors.push((
                        "html_template".into(),
                        format!("`{file}` must be an .html file, so that what it interpolates is escaped"),
                    ));
                }
                Some(file.clone())
            }
            (None, None) => None,
            (Some(_), Some(_)) => {
                errors.push(("html".into(), "give `html` or `html_template`, not both".into()));
                None
            }
        };
        for (key, file) in [
            ("text_template", &spec.text_template),
            ("html_template", &spec.html_template),
        ] {
            if let Some(why) = file.as_ref().and_then(|f| templates.unusable(f)) {
                errors.push((key.into(), why));
            }
        }
        let conflicting = (spec.text.is_some() && spec.text_template.is_some())
            || (spec.html.is_some() && spec.html_template.is_some());
        if text.is_none() && html.is_none() && !conflicting {
            errors.push((
                String::new(),
                "an email needs a body: `text`, `html` or both".into(),
            ));
        }
        let mut recipients = |key: &str, v: &Value, errors: &mut Vec<(String, String)>| {
            JsonTemplate::compile(v, &format!("{prefix}.{key}"), templates)
                .map_err(|e| errors.push((key.into(), format!("template syntax error: {}", e.message))))
                .ok()
        };
        check_literal_addresses(spec, &mut errors);
        let to = recipients("to", &spec.to, &mut errors);
        let cc = spec.cc.as_ref().and_then(|v| recipients("cc", v, &mut errors));
        let bcc = spec.bcc.as_ref().and_then(|v| recipients("bcc", v, &mut errors));
        let mut headers = Vec::new();
        for (k, v) in &spec.headers {
            match HeaderName::new_from_ascii(k.clone()) {
                Ok(name) => {
                    let t = format!("{prefix}.headers.{k}");
                    if let Err(e) = templates.add(t.clone(), v.clone()) {
                        errors.push((
                            format!("headers.{k}"),
                            format!("template syntax error: {}", e.message),
                        ));
                    }
                    headers.push((name, t));
                }
                Err(_) => errors.push((
                    format!("headers.{k}"),
                    format!("`{k}` is not a valid header name"),
                )),
            }
        }
        if let Some(list) = &spec.list {
            if !crate::segment::valid_segment_name(list) {
                errors.push((
                    "list".into(),
                    format!("`{list}` is not a segment name (letters, digits, `-`, `_` and `.`)"),
                ));
            }
            if spec.cc.is_some() || spec.bcc.is_some() {
                errors.push((
                    "list".into(),
                    "an email of a list goes to one contact (its unsubscribe link is theirs): leave out `cc` and `bcc`".into(),
                ));
            }
        }
        match (errors.is_empty(), to) {
            (true, Some(to)) => Ok(EmailAction {
                to,
                cc,
                bcc,
                reply_to,
                from,
                subject,
                text,
                html,
                headers,
                timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
                list: spec.list.clone(),
            }),
            _ => Err(errors),
        }
    }

    pub async fn attempt(
        &self,
        cx: &ExecContext<'_>,
        mailer: Option<&Mailer>,
        mail: Option<&MailContext>,
    ) -> AttemptResult {
        let Some(mailer) = mailer else {
            return AttemptResult::permanent(
                "no SMTP server is configured (set --smtp-host / HOOKFLOW_SMTP_HOST)".into(),
            );
        };
        let mut envelope = match self.envelope(cx) {
            Ok(e) => e,
            Err(e) => return AttemptResult::permanent(e),
        };
        // Suppressed recipients are left out; with no `to` left, nothing is sent.
        let mut left_out: Vec<crate::suppression::Suppression> = Vec::new();
        if let Some(mail) = mail {
            match mail
                .suppressions
                .suppressed(&envelope.addresses(), self.list.as_deref())
                .await
            {
                Ok(found) => left_out = found,
                Err(e) => {
                    return AttemptResult {
                        request: None,
                        response: None,
                        kind: ResultKind::Transient {
                            error: format!("the suppression list could not be read: {e}"),
                            retry_after: None,
                        },
                        effects: Default::default(),
                    };
                }
            }
        }
        let suppressed: Vec<String> = left_out.iter().map(|s| s.email.clone()).collect();
        envelope.without(&suppressed);
        if envelope.to.is_empty() {
            let why: Vec<String> = left_out
                .iter()
                .map(|s| format!("{} is suppressed: {}", s.email, s.describe()))
                .collect();
            let reason = format!("not sent: {}", why.join("; "));
            return AttemptResult {
                request: None,
                response: None,
                kind: ResultKind::Skipped {
                    output: json!({"skipped": reason, "suppressed": left_out}),
                    reason,
                },
                effects: Default::default(),
            };
        }
        let unsubscribe = match (&self.list, mail) {
            (Some(list), Some(mail)) => Some(Unsubscribe {
                url: mail.unsubscribe_url(list, &envelope.to[0].email.to_string().to_lowercase()),
                mailto: mail.unsubscribe_mailto.clone(),
            }),
            _ => None,
        };
        let (message, sent) = match self.build(cx, mailer.from.as_ref(), &envelope, unsubscribe.as_ref()) {
            Ok(m) => m,
            Err(e) => return AttemptResult::permanent(e),
        };
        let sent = Some(SentRequest {
            method: "SMTP".into(),
            url: mailer.endpoint.clone(),
            ..sent
        });
        let outcome = tokio::time::timeout(self.timeout, mailer.transport.send(message)).await;
        let reply = |code: u16, text: String| {
            Some(ReceivedResponse {
                status: code,
                headers: Vec::new(),
                body: redact(&text, &cx.secrets),
                size: None,
                truncated: false,
            })
        };
        match outcome {
            Err(_) => AttemptResult {
                request: sent,
                response: None,
                kind: ResultKind::Transient {
                    error: format!("SMTP delivery timed out after {:?}", self.timeout),
                    retry_after: None,
                },
                effects: Default::default(),
            },
            Ok(Ok(resp)) => {
                let code: u16 = resp.code().to_string().parse().unwrap_or(250);
                let text = resp.message().collect::<Vec<_>>().join("\n");
                let mut output = json!({"status": code, "reply": text});
                if !suppressed.is_empty() {
                    output["suppressed"] = json!(suppressed);
                }
                AttemptResult {
                    request: sent,
                    response: reply(code, text.clone()),
                    kind: ResultKind::Success(output),
                    effects: Default::default(),
                }
            }
            Ok(Err(e)) => {
                let code = e.status().and_then(|c| c.to_string().parse::<u16>().ok());
                let mut error = redact(&format!("SMTP: {e}"), &cx.secrets);
                let response = code.and_then(|c| reply(c, e.to_string()));
                let mut effects = crate::store::Effects::default();
                let kind = if e.is_permanent() {
                    let text = e.to_string();
                    if let Some(code) = code.filter(|c| crate::suppression::is_hard_bounce(*c, &text)) {
                        let bounced = crate::suppression::bounced_recipients(&envelope.addresses(), &text);
                        let source = format!("smtp {}", truncate_body(&text, 200));
                        effects.suppress = bounced
                            .iter()
                            .filter_map(|a| {
                                crate::suppression::Suppression::new(
                                    a,
                                    None,
                                    crate::suppression::Reason::Bounced,
                                    source.clone(),
                                )
                                .ok()
                            })
                            .collect();
                        if !bounced.is_empty() {
                            error = format!(
                                "{error} — a hard bounce ({code}): {} suppressed for every email",
                                bounced.join(", ")
                            );
                        }
                    }
                    ResultKind::Permanent(error)
                } else {
                    // 4xx replies, refused connections, timeouts, TLS and I/O trouble.
                    ResultKind::Transient {
                        error,
                        retry_after: None,
                    }
                };
                AttemptResult {
                    request: sent,
                    response,
                    kind,
                    effects,
                }
            }
        }
    }

    /// The recipients, rendered and parsed; a list email has exactly one `to`.
    fn envelope(&self, cx: &ExecContext<'_>) -> Result<Envelope, String> {
        let to = recipients(&self.to, cx, "to")?;
        if to.is_empty() {
            return Err("to: no recipients after rendering".into());
        }
        if let Some(list) = &self.list
            && to.len() != 1
        {
            return Err(format!(
                "to: an email of list `{list}` goes to one contact (its unsubscribe link is theirs); `to` gave {}",
                to.len()
            ));
        }
        let cc = match &self.cc {
            Some(cc) => recipients(cc, cx, "cc")?,
            None => Vec::new(),
        };
        let bcc = match &self.bcc {
            Some(bcc) => recipients(bcc, cx, "bcc")?,
            None => Vec::new(),
        };
        Ok(Envelope { to, cc, bcc })
    }

    /// Renders and validates the message; errors are permanent (a template or address problem).
    fn build(
        &self,
        cx: &ExecContext<'_>,
        default_from: Option<&Mailbox>,
        envelope: &Envelope,
        unsubscribe: Option<&Unsubscribe>,
    ) -> Result<(Message, SentRequest), String> {
        let t = cx.templates;
        // A list email's templates also see `unsubscribe_url`.
        let ctx = match unsubscribe {
            Some(u) => minijinja::value::merge_maps([
                minijinja::context! { unsubscribe_url => u.url.clone() },
                cx.ctx.clone(),
            ]),
            None => cx.ctx.clone(),
        };
        let render = |name: &str, what: &str| t.render(name, &ctx).map_err(|e| format!("{what}: {e}"));
        let from = match &self.from {
            Some(f) => parse_mailbox(render(f, "from")?.trim(), "from")?,
            None => default_from
                .cloned()
                .ok_or("no sender: set `from` on the action or --smtp-from on the server")?,
        };
        let subject = render(&self.subject, "subject")?;
        let message_id = message_id(&cx.idempotency_key, from.email.domain());
        let mut b = Message::builder()
            .from(from.clone())
            .subject(subject.clone())
            .message_id(Some(message_id.clone()));
        let mut record = vec![
            ("From".to_string(), from.to_string()),
            ("Subject".into(), subject),
            ("Message-ID".into(), message_id),
        ];
        record.push(("To".into(), join(&envelope.to)));
        for m in &envelope.to {
            b = b.to(m.clone());
        }
        if !envelope.cc.is_empty() {
            record.push(("Cc".into(), join(&envelope.cc)));
        }
        for m in &envelope.cc {
            b = b.cc(m.clone());
        }
        for m in &envelope.bcc {
            b = b.bcc(m.clone());
        }
        if let Some(r) = &self.reply_to {
            let m = parse_mailbox(render(r, "reply_to")?.trim(), "reply_to")?;
            record.push(("Reply-To".into(), m.to_string()));
            b = b.reply_to(m);
        }
        let mut raw: Vec<(HeaderName, String)> = Vec::new();
        if let (Some(list), Some(u)) = (&self.list, unsubscribe) {
            raw.extend(list_headers(list, from.email.domain(), u));
        }
        for (name, tpl) in &self.headers {
            raw.push((name.clone(), render(tpl, &format!("headers.{name}"))?));
        }
        for (name, v) in raw {
            record.push((name.to_string(), v.clone()));
            b = b.raw_header(HeaderValue::new(name, v));
        }
        let text = self.text.as_ref().map(|n| render(n, "text")).transpose()?;
        let html = self.html.as_ref().map(|n| render(n, "html")).transpose()?;
        let recorded_body = text.clone().or_else(|| html.clone()).unwrap_or_default();
        let message = match (text, html) {
            (Some(text), Some(html)) => b.multipart(MultiPart::alternative_plain_html(text, html)),
            (Some(text), None) => {
                b.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text))
            }
            (None, Some(html)) => {
                b.singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html))
            }
            (None, None) => return Err("no body".into()),
        }
        .map_err(|e| format!("building the message: {e}"))?;
        let sent = SentRequest {
            method: String::new(),
            url: String::new(),
            headers: record
                .into_iter()
                .map(|(k, v)| (k, redact(&v, &cx.secrets)))
                .collect(),
            body: truncate_body(&redact(&recorded_body, &cx.secrets), super::RECORDED_BODY_LIMIT),
        };
        Ok((message, sent))
    }
}

/// Where a list email's recipient unsubscribes.
struct Unsubscribe {
    url: String,
    mailto: Option<String>,
}

/// `List-Id` (RFC 2919), `List-Unsubscribe` (RFC 2369) and `List-Unsubscribe-Post` (RFC 8058):
/// what Gmail and Yahoo require of bulk mail since 2024, and what shows the "Unsubscribe"
/// button next to the sender.
fn list_headers(list: &str, domain: &str, u: &Unsubscribe) -> Vec<(HeaderName, String)> {
    let name = |n: &'static str| HeaderName::new_from_ascii_str(n);
    let mut targets = vec![format!("<{}>", u.url)];
    if let Some(m) = &u.mailto {
        targets.push(format!("<mailto:{m}?subject=unsubscribe>"));
    }
    vec![
        (name("List-Id"), format!("{list} <{list}.{domain}>")),
        (name("List-Unsubscribe"), targets.join(", ")),
        (name("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click".into()),
    ]
}

/// The message's `Message-ID` (RFC 5322 3.6.4; spam filters score its absence): made from the
/// idempotency key, so every attempt at one email carries the same id and a receiver that
/// got it twice can tell, at the sender's domain.
fn message_id(idempotency_key: &str, domain: &str) -> String {
    let left: String = idempotency_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '.'
            }
        })
        .collect();
    let parts: Vec<&str> = left.split('.').filter(|p| !p.is_empty()).collect();
    format!("<{}.hookflow@{domain}>", parts.join("."))
}

/// Addresses written out in the flow (no template in them) are checked at load, as each
/// attempt would parse them: one that cannot be an address would fail every attempt.
fn check_literal_addresses(spec: &EmailSpec, errors: &mut Vec<(String, String)>) {
    fn check(errors: &mut Vec<(String, String)>, key: &str, s: &str) {
        // A template is checked when it renders: its text may hold commas that separate
        // no addresses (`{{ env('TO', 'ops@example.com') }}`).
        if s.contains("{{") || s.contains("{%") {
            return;
        }
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Err(e) = Mailbox::from_str(part) {
                errors.push((
                    key.to_string(),
                    format!("`{part}` is not an email address ({e}): write `ada@example.com` or `Ada <ada@example.com>`"),
                ));
                return;
            }
        }
    }
    for (key, v) in [
        ("to", Some(&spec.to)),
        ("cc", spec.cc.as_ref()),
        ("bcc", spec.bcc.as_ref()),
    ] {
        match v {
            Some(Value::String(s)) => check(errors, key, s),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => check(errors, &format!("{key}[{i}]"), s),
                        _ => errors.push((format!("{key}[{i}]"), "an address is text".into())),
                    }
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => errors.push((
                key.to_string(),
                "give an address, a comma-separated list of them, a list, or a template".into(),
            )),
        }
    }
    for (key, v) in [("reply_to", &spec.reply_to), ("from", &spec.from)] {
        if let Some(s) = v {
            check(errors, key, s);
        }
    }
}

fn join(list: &[Mailbox]) -> String {
    list.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
}

fn parse_mailbox(s: &str, what: &str) -> Result<Mailbox, String> {
    Mailbox::from_str(s).map_err(|e| format!("{what}: `{s}` is not a valid address: {e}"))
}

/// Renders a recipient field: a string (comma-separated allowed) or a list, each entry an
/// address or `Name <address>`. Empty entries are dropped.
fn recipients(t: &JsonTemplate, cx: &ExecContext<'_>, what: &str) -> Result<Vec<Mailbox>, String> {
    let v = t
        .render(cx.templates, &cx.ctx)
        .map_err(|e| format!("{what}: {e}"))?;
    let mut raw = Vec::new();
    collect(&v, &mut raw);
    raw.iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_mailbox(s, what))
        .collect()
}

fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Value::Null => {}
        other => out.push(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<(String, String)> {
        let spec: EmailSpec = serde_yaml::from_str(yaml).unwrap();
        let mut errors = Vec::new();
        check_literal_addresses(&spec, &mut errors);
        errors
    }

    #[test]
    fn literal_addresses_are_checked_and_templates_left_to_their_rendering() {
        assert!(problems("to: \"ada@example.com, Bob <bob@example.com>\"\nsubject: s\ntext: t\n").is_empty());
        let bad = problems("to: \"ada@example.com, not-an-address\"\nsubject: s\ntext: t\n");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].1.contains("`not-an-address`"), "{bad:?}");
        // A comma inside a template's expression separates no addresses.
        assert!(
            problems("to: \"{{ env('ALERT_EMAIL_TO', 'ops@example.com') }}\"\nsubject: s\ntext: t\n")
                .is_empty()
        );
        assert_eq!(
            problems("to: [ada@example.com, nope]\nsubject: s\ntext: t\n")[0].0,
            "to[1]"
        );
    }
}
