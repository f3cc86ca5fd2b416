//! Actions: what a flow does with an event. Each kind is one module of its own, registered in
//! [`kinds`] with one line; this module holds what they share — the compiled [`Action`], the
//! outcome of one attempt, the clients attempts go through and redaction of what gets recorded.

pub mod breaker;
pub mod bulkhead;
pub mod email;
pub mod emit;
pub mod http;
pub mod kinds;
pub mod read;
pub mod segment;
pub mod wait;

pub use kinds::{ActionKind, ActionSpec, KINDS, Kind, Surroundings, traits_of};

use std::time::Duration;

use minijinja::value::Value as JValue;
use serde_json::Value;

use crate::event::Origin;
use crate::matching::Condition;
use crate::retry::RetryPolicy;
use crate::run::{ReceivedResponse, SentRequest};
use crate::store::Effects;
use crate::template::Templates;

use self::breaker::{BreakerConfig, RateLimit};

/// One compiled entry of a flow's `actions`.
#[derive(Debug)]
pub struct Action {
    pub name: String,
    pub when: Vec<Condition>,
    pub retry: RetryPolicy,
    pub kind: ActionKind,
    /// Most attempts per interval against this action's destination.
    pub rate_limit: Option<RateLimit>,
    /// `None`: never paused. Only actions that leave hookflow (http, email) have one.
    pub breaker: Option<BreakerConfig>,
    /// Attempts in flight to the destination at once; `None`: the engine's default.
    pub destination_concurrency: Option<usize>,
    /// Once per item of a list (`for_each`).
    pub for_each: Option<ForEach>,
}

/// A `for_each`: where the items come from and the bounds on them.
#[derive(Debug)]
pub struct ForEach {
    pub items: ItemSource,
    pub max_items: usize,
    pub concurrency: usize,
}

#[derive(Debug)]
pub enum ItemSource {
    /// Each value the path selects in the body.
    Path(crate::mapping::JsonPath),
    /// A template expression giving a list (a native template's name).
    Expr(String),
}

/// Defaults of `max_items` and `item_concurrency`.
pub const DEFAULT_MAX_ITEMS: usize = 100;
pub const DEFAULT_ITEM_CONCURRENCY: usize = 4;
/// The most `max_items` may be: every item's attempts live in the run's record, which is read
/// and written whole, so a run's size must stay bounded.
pub const MAX_ITEMS_LIMIT: usize = 1000;
/// The most `item_concurrency` may be (a destination's own limit applies as well).
pub const MAX_ITEM_CONCURRENCY: usize = 64;

/// What one attempt produced, before the engine applies the retry policy's limits.
#[derive(Debug)]
pub struct AttemptResult {
    pub request: Option<SentRequest>,
    pub response: Option<ReceivedResponse>,
    pub kind: ResultKind,
    /// Changes inside hookflow, recorded with the step (segment ops, raised events).
    pub effects: Effects,
}

impl AttemptResult {
    /// A failure found before anything was sent (a template or address problem).
    pub fn permanent(error: String) -> AttemptResult {
        AttemptResult::unanswered(None, ResultKind::Permanent(error))
    }

    /// An attempt that ended without an answer to record: refused before sending, or sent
    /// (`request`) and never answered.
    pub fn unanswered(request: Option<SentRequest>, kind: ResultKind) -> AttemptResult {
        AttemptResult {
            request,
            response: None,
            kind,
            effects: Effects::default(),
        }
    }
}

#[derive(Debug)]
pub enum ResultKind {
    /// Done; the value becomes `steps.<name>`.
    Success(Value),
    /// Worth trying again (network error, timeout, 5xx, 408, 429, `retry_on`).
    Transient {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Trying again cannot help (a 4xx, a template error, a bad URL).
    Permanent(String),
    /// Not done, on purpose, and the run goes on: an email whose recipients are all
    /// suppressed. `output` becomes `steps.<name>`.
    Skipped { reason: String, output: Value },
}

impl ResultKind {
    /// The attempt's outcome as the `hookflow_attempts_total` metric labels it.
    pub fn outcome_name(&self) -> &'static str {
        match self {
            ResultKind::Success(_) => "succeeded",
            ResultKind::Transient { .. } => "transient_failure",
            ResultKind::Permanent(_) => "permanent_failure",
            ResultKind::Skipped { .. } => "skipped",
        }
    }
}

/// Everything an attempt may read.
pub struct ExecContext<'a> {
    pub templates: &'a Templates,
    /// The template context: vars, body, headers, query, flow, run_id, attempt, steps.
    pub ctx: JValue,
    /// Stable per run and action: the same on every retry and after a crash.
    pub idempotency_key: String,
    /// Secret values to blank out of anything recorded.
    pub secrets: Vec<String>,
    /// Source of the events this attempt raises.
    pub origin: Origin,
    /// Depth of the events this attempt raises (the run's depth + 1).
    pub event_depth: u32,
}

/// Outgoing clients, built once: HTTP that never follows redirects and one that does, and
/// the SMTP transport if one is configured.
#[derive(Clone)]
pub struct Clients {
    pub direct: reqwest::Client,
    pub follow: reqwest::Client,
    pub mailer: Option<std::sync::Arc<email::Mailer>>,
    /// Where `http` actions may connect; also applied inside both clients.
    pub egress: std::sync::Arc<crate::egress::Policy>,
    /// How much of a destination's answer is read and kept.
    pub limits: ReadLimits,
    /// Unsubscribe links and the suppression list, for emails (set by [`crate::app::App`]).
    pub mail: Option<std::sync::Arc<email::MailContext>>,
}

/// Bounds on what is read from a destination, so one huge answer cannot take the memory or
/// the disk: a response is read as a stream and never beyond `max_response` bytes, and run
/// history keeps at most [`RECORDED_BODY_LIMIT`] of it.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Largest response body read (and parsed into `steps.<name>.body`); an action's
    /// `max_response` overrides it. A successful answer beyond it fails the attempt.
    pub max_response: usize,
}

/// Default of [`ReadLimits::max_response`].
pub const DEFAULT_MAX_RESPONSE: usize = 1024 * 1024;

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_response: DEFAULT_MAX_RESPONSE,
        }
    }
}

impl Clients {
    pub fn new(
        mailer: Option<email::Mailer>,
        egress: crate::egress::Policy,
    ) -> Result<Clients, reqwest::Error> {
        let egress = std::sync::Arc::new(egress);
        // reqwest is built without a provider of its own: it takes the process default.
        let _ = crate::net::tls_provider();
        let build = |policy| {
            reqwest::Client::builder()
                .redirect(policy)
                .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")))
                // Every DNS answer goes through the egress policy; no proxy from the
                // environment, which would hide the real destination from it.
                .dns_resolver(std::sync::Arc::new(crate::egress::PolicyResolver {
                    policy: std::sync::Arc::clone(&egress),
                }))
                .no_proxy()
                .build()
        };
        let hops = std::sync::Arc::clone(&egress);
        let follow = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("more than 10 redirects")
            } else if let Err(d) = hops.check_url(attempt.url()) {
                attempt.error(d)
            } else {
                attempt.follow()
            }
        });
        Ok(Clients {
            direct: build(reqwest::redirect::Policy::none())?,
            follow: build(follow)?,
            mailer: mailer.map(std::sync::Arc::new),
            egress,
            limits: ReadLimits::default(),
            mail: None,
        })
    }
}

impl Clients {
    pub fn with_limits(mut self, limits: ReadLimits) -> Clients {
        self.limits = limits;
        self
    }
}

impl Action {
    pub async fn attempt(&self, cx: &ExecContext<'_>, clients: &Clients) -> AttemptResult {
        self.kind.attempt(cx, clients, &self.retry).await
    }

    /// What an attempt would do, rendered but not done (for `hookflow test`).
    pub fn preview(&self, cx: &ExecContext<'_>) -> Result<Value, String> {
        self.kind.preview(cx)
    }

    /// What the circuit breaker and rate limit count against (see [`Kind::destination`]).
    pub fn destination(&self, clients: &Clients, templates: &Templates, ctx: &JValue) -> Option<String> {
        self.kind.destination(clients, templates, ctx)
    }
}

/// Longest body kept in run history (requests and responses); the rest is cut, marked.
pub const RECORDED_BODY_LIMIT: usize = 64 * 1024;

const REDACTED: &str = "[redacted]";

/// Headers whose values are never recorded.
pub const SENSITIVE_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// Secrets shorter than this are masked only where they stand alone (not inside a word):
/// a one-letter development value would otherwise turn every `t` of the output into
/// `[redacted]`. Longer ones are masked wherever they appear.
pub const SHORT_SECRET: usize = 8;

/// Replaces every secret value in `text` (longest first, so one secret inside another does
/// not leave a piece of it showing).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in sorted {
        if !out.contains(s.as_str()) {
            continue;
        }
        out = if s.chars().count() >= SHORT_SECRET {
            out.replace(s.as_str(), REDACTED)
        } else {
            replace_standalone(&out, s)
        };
    }
    out
}

/// Replaces the occurrences of `needle` not flanked by a letter or digit.
fn replace_standalone(text: &str, needle: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut prev: Option<char> = None;
    while let Some(i) = rest.find(needle) {
        let before = rest[..i].chars().next_back().or(if i == 0 { prev } else { None });
        let after = rest[i + needle.len()..].chars().next();
        out.push_str(&rest[..i]);
        if word(before) || word(after) {
            out.push_str(needle);
        } else {
            out.push_str(REDACTED);
        }
        prev = needle.chars().next_back();
        rest = &rest[i + needle.len()..];
    }
    out.push_str(rest);
    out
}

/// Redacts a header list: sensitive names wholesale, secrets anywhere.
pub fn redact_headers(headers: &[(String, String)], secrets: &[String]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let v = if SENSITIVE_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                REDACTED.to_string()
            } else {
                redact(v, secrets)
            };
            (k.clone(), v)
        })
        .collect()
}

/// Cuts a body for the record, on a character boundary.
pub fn truncate_body(body: &str, limit: usize) -> String {
    if body.len() <= limit {
        return body.to_string();
    }
    let mut cut = limit;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [{} bytes cut]", &body[..cut], body.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        let secrets = vec!["s3cr3t".to_string()];
        assert_eq!(redact("token=s3cr3t&x=1", &secrets), "token=[redacted]&x=1");
        // A short secret is masked where it stands alone, not inside every word.
        let short = vec!["t".to_string()];
        assert_eq!(redact("test: t", &short), "test: [redacted]");
        assert_eq!(redact("Bearer t", &short), "Bearer [redacted]");
        // Longer secrets go first: nothing of one shows around a shorter one inside it.
        let nested = vec!["abc".to_string(), "xxabcxx-long-secret".to_string()];
        assert_eq!(redact("k=xxabcxx-long-secret", &nested), "k=[redacted]");
        let h = redact_headers(
            &[
                ("Authorization".into(), "Bearer abc".into()),
                ("X-Key".into(), "key-s3cr3t".into()),
                ("X-Plain".into(), "ok".into()),
            ],
            &secrets,
        );
        assert_eq!(h[0].1, "[redacted]");
        assert_eq!(h[1].1, "key-[redacted]");
        assert_eq!(h[2].1, "ok");
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let long = "é".repeat(RECORDED_BODY_LIMIT);
        let t = truncate_body(&long, RECORDED_BODY_LIMIT);
        assert!(t.len() < long.len());
        assert!(t.contains("bytes cut"));
        assert_eq!(truncate_body("short", 10), "short");
    }
}
