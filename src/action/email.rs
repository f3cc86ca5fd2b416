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
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::value::Value as JValue;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AttemptResult, Clients, ExecContext, Kind, ResultKind, Surroundings, redact, truncate_body};
use crate::compiler::Part;
use crate::retry::RetryPolicy;
use crate::run::{ReceivedResponse, SentRequest};
use crate::template::{JsonTemplate, Templates};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::flow::schema::email_body)]
pub struct EmailSpec {
    /// The recipients, e.g. `"{{ vars.email }}"`: each a template, or a list of them; one
    /// rendering to a list or to comma-separated addresses gives several recipients.
    pub to: Value,
    /// Copies, like `to`, e.g. `orders@example.com`.
    pub cc: Option<Value>,
    /// Blind copies, like `to`, e.g. `archive@example.com`.
    pub bcc: Option<Value>,
    /// A template of the reply address, e.g. `support@example.com`.
    pub reply_to: Option<String>,
    /// The sender, e.g. `Shop <shop@example.com>`; overrides the server's default sender.
    pub from: Option<String>,
    /// A template of the subject, e.g. `"Thanks for order {{ vars.order_id }}"`.
    pub subject: String,
    /// A template of the plain-text body, e.g. `"Hi {{ vars.name }}, …"`.
    pub text: Option<String>,
    /// A template file under `templates/` of the plain-text body, e.g. `welcome.txt`.
    pub text_template: Option<String>,
    /// A template of the HTML body, e.g. `"<p>Hi {{ vars.name }}</p>"`.
    pub html: Option<String>,
    /// A template file under `templates/` of the HTML body, e.g. `welcome.html`.
    pub html_template: Option<String>,
    /// Extra header templates, e.g. `{ X-Campaign: spring }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long one attempt may take, e.g. `20s`; default 30s.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>", transform = crate::flow::schema::duration)]
    pub timeout: Option<Duration>,
    /// The list (a segment name) this email belongs to, e.g. `newsletter`: it then goes to one
    /// contact, carries one-click unsubscribe headers, and is not sent to addresses
    /// unsubscribed from the list. Leave it out for transactional email (receipts, password
    /// resets).
    #[schemars(transform = crate::flow::schema::segment_name)]
    pub list: Option<String>,
    /// Track clicks on the email's links: `all` of them, or only the `marked` ones (`<a
    /// data-track="name">`). Tracked links point at this server, which redirects to the
    /// original address and raises `email.clicked`. A tracked email goes to one contact.
    pub track_links: Option<crate::clicks::TrackLinks>,
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

impl Kind for EmailAction {
    type Spec = EmailSpec;
    const OUTGOING: bool = true;

    fn compile(spec: &EmailSpec, part: &mut Part<'_, '_>) -> Option<EmailAction> {
        EmailAction::from_spec(spec, part)
    }

    fn attempt(
        &self,
        cx: &ExecContext<'_>,
        clients: &Clients,
        _: &RetryPolicy,
    ) -> impl Future<Output = AttemptResult> + Send {
        self.send(cx, clients.mailer.as_deref(), clients.mail.as_deref())
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The SMTP server.
    fn destination(&self, clients: &Clients, _: &Templates, _: &JValue) -> Option<String> {
        clients.mailer.as_ref().map(|m| m.endpoint.clone())
    }

    /// No SMTP server; a list email whose unsubscribe links recipients cannot use.
    fn warnings(&self, name: &str, around: &Surroundings) -> Vec<(String, String)> {
        let mut found = Vec::new();
        if around.has_mailer == Some(false) {
            found.push((
                String::new(),
                format!("no SMTP server is configured (--smtp-host): every attempt of `{name}` fails"),
            ));
        }
        let link = around.public_url.as_deref().and_then(unsubscribe_link_problem);
        if let (Some(_), Some(why)) = (&self.list, link) {
            found.push((
                "list".to_string(),
                format!(
                    "`{name}` is a list email and {why}: set --public-url (HOOKFLOW_PUBLIC_URL) to the https address this server is reached at"
                ),
            ));
        }
        found
    }

    /// The message as it would be sent (headers and text body, secrets masked), without
    /// sending it; the server's default sender shows as `(--smtp-from)`.
    fn preview(&self, cx: &ExecContext<'_>) -> Result<serde_json::Value, String> {
        let placeholder = Mailbox::from_str("\"(--smtp-from)\" <default-sender@smtp-from.invalid>").ok();
        let envelope = self.envelope(cx)?;
        let unsubscribe = self.list.as_ref().map(|_| Unsubscribe {
            url: "(--public-url)/u/(a token for this contact and list)".into(),
            mailto: None,
        });
        let placeholder_url =
            |_: &crate::clicks::SentLink| "(--public-url)/c/(a token for this link)".to_string();
        let tracking = self.track_links.map(|mode| Tracking {
            mode,
            own: "",
            url: &placeholder_url,
        });
        let (_, sent, links) = self.build(
            cx,
            placeholder.as_ref(),
            &envelope,
            unsubscribe.as_ref(),
            tracking.as_ref(),
        )?;
        let mut preview = json!({"headers": sent.headers, "body": sent.body});
        if self.track_links.is_some() {
            preview["tracked_links"] = json!(links);
        }
        Ok(preview)
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
    /// Which links are tracked, if any.
    pub track_links: Option<crate::clicks::TrackLinks>,
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
    /// Where tracked messages' links are kept.
    pub clicks: std::sync::Arc<dyn crate::store::clicks::Clicks>,
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

    /// The tracked address of `link` in `message`.
    pub fn click_url(&self, message: &str, link: &crate::clicks::SentLink) -> String {
        let token = self.keys.seal(&crate::links::Link::Click {
            message: message.to_string(),
            link: link.id(),
        });
        format!("{}/c/{token}", self.base_url)
    }
}

/// How a tracked email's links are rewritten: which, and to what.
struct Tracking<'a> {
    mode: crate::clicks::TrackLinks,
    /// This server's public URL: links under it (unsubscribe) are not tracked.
    own: &'a str,
    url: &'a (dyn Fn(&crate::clicks::SentLink) -> String + Sync),
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
    /// Builds the action from its spec, registering its templates under its key path.
    fn from_spec(spec: &EmailSpec, part: &mut Part<'_, '_>) -> Option<EmailAction> {
        let before = part.problems();
        let subject = part.template("subject", &spec.subject);
        let reply_to = spec.reply_to.as_ref().map(|r| part.template("reply_to", r));
        let from = spec.from.as_ref().map(|f| part.template("from", f));
        // Inline HTML is registered under an `.html` name so it auto-escapes.
        let text = match (&spec.text, &spec.text_template) {
            (Some(t), None) => Some(part.template("text", t)),
            (None, Some(file)) => Some(file.clone()),
            (None, None) => None,
            (Some(_), Some(_)) => {
                part.problem("text", "give `text` or `text_template`, not both");
                None
            }
        };
        let html = match (&spec.html, &spec.html_template) {
            (Some(h), None) => Some(part.template_as("html", "html.html", h)),
            (None, Some(file)) => {
                if !(file.ends_with(".html") || file.ends_with(".htm")) {
                    part.problem(
                        "html_template",
                        format!("`{file}` must be an .html file, so that what it interpolates is escaped"),
                    );
                }
                Some(file.clone())
            }
            (None, None) => None,
            (Some(_), Some(_)) => {
                part.problem("html", "give `html` or `html_template`, not both");
                None
            }
        };
        for (key, file) in [
            ("text_template", &spec.text_template),
            ("html_template", &spec.html_template),
        ] {
            if let Some(why) = file.as_ref().and_then(|f| part.templates().unusable(f)) {
                part.problem(key, why);
            }
        }
        let conflicting = (spec.text.is_some() && spec.text_template.is_some())
            || (spec.html.is_some() && spec.html_template.is_some());
        if text.is_none() && html.is_none() && !conflicting {
            part.problem("", "an email needs a body: `text`, `html` or both");
        }
        let recipients = |part: &mut Part<'_, '_>, key: &str, v: &Value| {
            let name = part.name(key);
            JsonTemplate::compile(v, &name, part.templates())
                .map_err(|e| part.problem(key, format!("template syntax error: {}", e.message)))
                .ok()
        };
        check_literal_addresses(spec, part);
        let to = recipients(part, "to", &spec.to);
        let cc = spec.cc.as_ref().and_then(|v| recipients(part, "cc", v));
        let bcc = spec.bcc.as_ref().and_then(|v| recipients(part, "bcc", v));
        let mut headers = Vec::new();
        for (k, v) in &spec.headers {
            match HeaderName::new_from_ascii(k.clone()) {
                Ok(name) => {
                    headers.push((name, part.template(&format!("headers.{k}"), v)));
                }
                Err(_) => part.problem(
                    &format!("headers.{k}"),
                    format!("`{k}` is not a valid header name"),
                ),
            }
        }
        if let Some(list) = &spec.list {
            if !crate::segment::valid_segment_name(list) {
                part.problem(
                    "list",
                    format!("`{list}` is not a segment name (letters, digits, `-`, `_` and `.`)"),
                );
            }
            if spec.cc.is_some() || spec.bcc.is_some() {
                part.problem("list", "an email of a list goes to one contact (its unsubscribe link is theirs): leave out `cc` and `bcc`");
            }
        }
        if spec.track_links.is_some() && (spec.cc.is_some() || spec.bcc.is_some()) {
            part.problem(
                "track_links",
                "a tracked email goes to one contact (its clicks are theirs): leave out `cc` and `bcc`",
            );
        }
        match (part.problems() == before, to) {
            (true, Some(to)) => Some(EmailAction {
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
                track_links: spec.track_links,
            }),
            _ => None,
        }
    }

    /// Renders, checks against the suppression list and sends the message.
    async fn send(
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
        let suppressed = match self.leave_out_suppressed(&mut envelope, mail).await {
            Ok(left_out) => left_out,
            Err(not_sent) => return *not_sent,
        };
        let unsubscribe = match (&self.list, mail) {
            (Some(list), Some(mail)) => Some(Unsubscribe {
                url: mail.unsubscribe_url(list, &envelope.to[0].email.to_string().to_lowercase()),
                mailto: mail.unsubscribe_mailto.clone(),
            }),
            _ => None,
        };
        let key = cx.idempotency_key.clone();
        let click_url = |l: &crate::clicks::SentLink| mail.map(|m| m.click_url(&key, l)).unwrap_or_default();
        let tracking = match (self.track_links, mail) {
            (Some(mode), Some(m)) => Some(Tracking {
                mode,
                own: &m.base_url,
                url: &click_url,
            }),
            _ => None,
        };
        let (message, sent, links) = match self.build(
            cx,
            mailer.from.as_ref(),
            &envelope,
            unsubscribe.as_ref(),
            tracking.as_ref(),
        ) {
            Ok(m) => m,
            Err(e) => return AttemptResult::permanent(e),
        };
        if let Err(not_sent) = remember_links(cx, mail, &envelope, links.clone()).await {
            return *not_sent;
        }
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
                if self.track_links.is_some() {
                    output["tracked_links"] = json!(links);
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
                AttemptResult {
                    request: sent,
                    response: code.and_then(|c| reply(c, e.to_string())),
                    ..self.refused(&e, code, &envelope, cx)
                }
            }
        }
    }

    /// Leaves the suppressed recipients out (their addresses are the answer); with no `to`
    /// left, the step is skipped, saying why. A suppression list that cannot be read is worth
    /// another try: nothing is sent to an address that may be on it.
    async fn leave_out_suppressed(
        &self,
        envelope: &mut Envelope,
        mail: Option<&MailContext>,
    ) -> Result<Vec<String>, Box<AttemptResult>> {
        let Some(mail) = mail else {
            return Ok(Vec::new());
        };
        let left_out = mail
            .suppressions
            .suppressed(&envelope.addresses(), self.list.as_deref())
            .await
            .map_err(|e| {
                let error = format!("the suppression list could not be read: {e}");
                Box::new(AttemptResult::unanswered(
                    None,
                    ResultKind::Transient {
                        error,
                        retry_after: None,
                    },
                ))
            })?;
        let suppressed: Vec<String> = left_out.iter().map(|s| s.email.clone()).collect();
        envelope.without(&suppressed);
        if envelope.to.is_empty() {
            let why: Vec<String> = left_out
                .iter()
                .map(|s| format!("{} is suppressed: {}", s.email, s.describe()))
                .collect();
            let reason = format!("not sent: {}", why.join("; "));
            return Err(Box::new(AttemptResult {
                request: None,
                response: None,
                kind: ResultKind::Skipped {
                    output: json!({"skipped": reason, "suppressed": left_out}),
                    reason,
                },
                effects: Default::default(),
            }));
        }
        Ok(suppressed)
    }

    /// A refusal by the SMTP server: 5xx is permanent, and a hard bounce suppresses the
    /// recipients it names for every email, in the write that records the step; 4xx replies,
    /// refused connections, timeouts, TLS and I/O trouble are worth another try.
    fn refused(
        &self,
        e: &lettre::transport::smtp::Error,
        code: Option<u16>,
        envelope: &Envelope,
        cx: &ExecContext<'_>,
    ) -> AttemptResult {
        let mut error = redact(&format!("SMTP: {e}"), &cx.secrets);
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
            ResultKind::Transient {
                error,
                retry_after: None,
            }
        };
        AttemptResult {
            request: None,
            response: None,
            kind,
            effects,
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
        if self.track_links.is_some() && to.len() != 1 {
            return Err(format!(
                "to: a tracked email goes to one contact (its clicks are theirs); `to` gave {}",
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
        tracking: Option<&Tracking<'_>>,
    ) -> Result<(Message, SentRequest, Vec<crate::clicks::SentLink>), String> {
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
        let mut text = self.text.as_ref().map(|n| render(n, "text")).transpose()?;
        let mut html = self.html.as_ref().map(|n| render(n, "html")).transpose()?;
        let mut links = Vec::new();
        if let Some(t) = tracking {
            let r = crate::clicks::rewrite(html.as_deref(), text.as_deref(), t.mode, t.own, t.url);
            (html, text, links) = (r.html, r.text, r.links);
        }
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
        Ok((message, sent, links))
    }
}

/// Keeps what a tracked message is sent with, before it is sent, so that every click on it
/// finds its target. A store that cannot take it is worth another try: an email whose links
/// would lead nowhere is not sent.
async fn remember_links(
    cx: &ExecContext<'_>,
    mail: Option<&MailContext>,
    envelope: &Envelope,
    links: Vec<crate::clicks::SentLink>,
) -> Result<(), Box<AttemptResult>> {
    let (Some(mail), false) = (mail, links.is_empty()) else {
        return Ok(());
    };
    let message = crate::clicks::Message {
        key: cx.idempotency_key.clone(),
        flow: cx.origin.flow.clone().unwrap_or_default(),
        run_id: cx.origin.run_id.clone().unwrap_or_default(),
        action: cx.origin.action.clone().unwrap_or_default(),
        contact: envelope.to[0].email.to_string().to_lowercase(),
        sent_at: crate::time::Ts::now(),
        depth: cx.event_depth,
        links,
    };
    mail.clicks.remember_message(message).await.map_err(|e| {
        Box::new(AttemptResult::unanswered(
            None,
            ResultKind::Transient {
                error: format!("the tracked links could not be stored: {e}"),
                retry_after: None,
            },
        ))
    })
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
fn check_literal_addresses(spec: &EmailSpec, part: &mut Part<'_, '_>) {
    fn check(part: &mut Part<'_, '_>, key: &str, s: &str) {
        // A template is checked when it renders: its text may hold commas that separate
        // no addresses (`{{ env('TO', 'ops@example.com') }}`).
        if s.contains("{{") || s.contains("{%") {
            return;
        }
        for address in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Err(e) = Mailbox::from_str(address) {
                part.problem(key, format!("`{address}` is not an email address ({e}): write `ada@example.com` or `Ada <ada@example.com>`"));
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
            Some(Value::String(s)) => check(part, key, s),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => check(part, &format!("{key}[{i}]"), s),
                        _ => part.problem(&format!("{key}[{i}]"), "an address is text"),
                    }
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => part.problem(
                key,
                "give an address, a comma-separated list of them, a list, or a template",
            ),
        }
    }
    for (key, v) in [("reply_to", &spec.reply_to), ("from", &spec.from)] {
        if let Some(s) = v {
            check(part, key, s);
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

/// Why recipients cannot use one-click unsubscribe links built on `base`, if they cannot: an
/// address only this machine reaches, or plain http (Gmail's and Yahoo's sender rules ask for
/// an https one-click link).
pub fn unsubscribe_link_problem(base: &str) -> Option<String> {
    let url = url::Url::parse(base).ok()?;
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']');
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if local {
        Some(format!(
            "its unsubscribe link points at {base}, which recipients cannot reach"
        ))
    } else if url.scheme() != "https" {
        Some(format!(
            "its unsubscribe link is plain http ({base}); mailbox providers ask for https"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<(String, String)> {
        let spec: EmailSpec = serde_yaml::from_str(yaml).unwrap();
        let mut templates = Templates::default();
        let mut cx = crate::compiler::Compiler::new("f".into(), &mut templates);
        check_literal_addresses(&spec, &mut cx.part(""));
        cx.problems.into_iter().map(|p| (p.path, p.message)).collect()
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
