//! Spec → runtime: turns a deserialized [`FlowSpec`] into a [`Flow`], collecting every problem
//! as `(key path, message)` so the loader can attach lines and report them all in one pass.

use std::path::Path;

use super::spec::{ActionSpec, ConditionSpec, FlowSpec, VarSpec, VerifySpec, WebhookSpec};
use super::{Concurrency, Dedupe, Flow, Respond, Trigger, Verifier, Webhook};
use crate::action::breaker::{BreakerConfig, RateLimit};
use crate::action::email::EmailAction;
use crate::action::emit::EmitAction;
use crate::action::http::HttpAction;
use crate::action::segment::SegmentAction;
use crate::action::{Action, ActionKind};
use crate::mapping::{JsonPath, Var, VarSource};
use crate::matching::{Condition, Op, Source};
use crate::net::parse_net;
use crate::retry::RetryPolicy;
use crate::template::Templates;
use crate::verify::{Algorithm, Encoding, Generic, Scheme};

/// A problem at a key path of the flow file.
pub type Problem = (String, String);

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Header names a template reads as `headers['name']`, `headers["name"]` or `headers.name`,
/// lower-case.
fn headers_read_by(template: &str) -> Vec<String> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r#"headers\s*(?:\[\s*['"]([^'"]+)['"]\s*\]|\.get\(\s*['"]([^'"]+)['"]|\.([A-Za-z0-9_]+))"#,
        )
        .expect("valid regex")
    });
    re.captures_iter(template)
        .filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)))
        .map(|m| m.as_str().to_ascii_lowercase())
        .collect()
}

/// Flow names appear in URLs: letters, digits, `-` and `_`.
pub fn valid_flow_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

struct Compiler<'a> {
    flow: String,
    templates: &'a mut Templates,
    problems: Vec<Problem>,
}

impl Compiler<'_> {
    fn problem(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.problems.push((path.into(), msg.into()));
    }

    /// Registers an inline template named after the flow and key path.
    fn template(&mut self, path: &str, src: &str) -> String {
        let name = format!("{}/{path}", self.flow);
        if let Err(e) = self.templates.add(name.clone(), src.to_string()) {
            self.problem(path, format!("template syntax error: {}", e.message));
        }
        name
    }

    fn path(&mut self, at: &str, text: &str) -> Option<JsonPath> {
        match JsonPath::parse(text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.problem(at, format!("invalid JSONPath `{text}`: {e}"));
                None
            }
        }
    }

    fn condition(&mut self, at: &str, spec: &ConditionSpec, var_names: &[String]) -> Option<Condition> {
        let sources = [
            spec.path.as_ref().map(|p| ("path", p)),
            spec.header.as_ref().map(|h| ("header", h)),
            spec.query.as_ref().map(|q| ("query", q)),
            spec.var.as_ref().map(|v| ("var", v)),
            spec.expr.as_ref().map(|e| ("expr", e)),
        ];
        let given: Vec<_> = sources.iter().flatten().collect();
        let &(kind, text) = match given.as_slice() {
            [one] => *one,
            [] => {
                self.problem(
                    at,
                    "a condition needs one of `path`, `header`, `query`, `var` or `expr`",
                );
                return None;
            }
            _ => {
                self.problem(
                    at,
                    "a condition takes exactly one of `path`, `header`, `query`, `var` or `expr`",
                );
                return None;
            }
        };
        let source = match kind {
            "path" => Source::Body(self.path(&format!("{at}.path"), text)?),
            "header" => Source::Header(text.to_ascii_lowercase()),
            "query" => Source::Query(text.clone()),
            "var" => {
                if !var_names.contains(text) {
                    self.problem(format!("{at}.var"), format!("no var named `{text}` in `vars`"));
                    return None;
                }
                Source::Var(text.clone())
            }
            _ => {
                let name = format!("{}/{at}.expr", self.flow);
                if let Err(e) = self.templates.add_native(name.clone(), text) {
                    self.problem(
                        format!("{at}.expr"),
                        format!("expression syntax error: {}", e.message),
                    );
                    return None;
                }
                Source::Expr(name)
            }
        };
        let mut ops = Vec::new();
        let mut label = format!("{kind} {text}");
        let mut push = |op: Op, desc: String| {
            label.push_str(&format!(" {desc}"));
            ops.push(op);
        };
        if let Some(v) = &spec.equals {
            push(Op::Equals(v.clone()), format!("equals {v}"));
        }
        if let Some(v) = &spec.not_equals {
            push(Op::NotEquals(v.clone()), format!("not_equals {v}"));
        }
        if let Some(v) = &spec.one_of {
            push(
                Op::OneOf(v.clone()),
                format!("one_of {}", serde_json::Value::from(v.clone())),
            );
        }
        if let Some(b) = spec.exists {
            push(Op::Exists(b), format!("exists {b}"));
        }
        type Make = fn(f64) -> Op;
        let comparisons: [(Option<f64>, &str, Make); 4] = [
            (spec.gt, "gt", Op::Gt),
            (spec.gte, "gte", Op::Gte),
            (spec.lt, "lt", Op::Lt),
            (spec.lte, "lte", Op::Lte),
        ];
        for (n, word, make) in comparisons {
            if let Some(n) = n {
                push(make(n), format!("{word} {n}"));
            }
        }
        let mut bad_regex = None;
        if let Some(re) = &spec.matches {
            match regex::Regex::new(re) {
                Ok(r) => push(Op::Matches(r), format!("matches {re:?}")),
                Err(e) => bad_regex = Some(e.to_string()),
            }
        }
        if let Some(e) = bad_regex {
            self.problem(format!("{at}.matches"), format!("invalid regex: {e}"));
            return None;
        }
        if ops.is_empty() {
            if kind == "expr" {
                ops.push(Op::Truthy);
            } else {
                self.problem(at, "a condition needs an operator: equals, not_equals, one_of, exists, matches, gt, gte, lt or lte");
                return None;
            }
        }
        Some(Condition { source, ops, label })
    }

    fn conditions(&mut self, at: &str, specs: &[ConditionSpec], var_names: &[String]) -> Vec<Condition> {
        specs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| self.condition(&format!("{at}[{i}]"), c, var_names))
            .collect()
    }

    fn var(&mut self, name: &str, spec: &VarSpec) -> Option<Var> {
        let at = format!("vars.{name}");
        if !is_identifier(name) {
            self.problem(
                &at,
                format!("var name `{name}` must be letters, digits and `_`, not starting with a digit"),
            );
            return None;
        }
        let (source, required, default) = match spec {
            VarSpec::Path(p) => (VarSource::Body(self.path(&at, p)?), false, None),
            VarSpec::Full(t) => {
                let source = match (&t.path, &t.header, &t.query) {
                    (Some(p), None, None) => VarSource::Body(self.path(&format!("{at}.path"), p)?),
                    (None, Some(h), None) => VarSource::Header(h.clone()),
                    (None, None, Some(q)) => VarSource::Query(q.clone()),
                    _ => {
                        self.problem(&at, "a var takes exactly one of `path`, `header` or `query`");
                        return None;
                    }
                };
                if t.required && t.default.is_some() {
                    self.problem(&at, "a var with a `default` cannot also be `required`");
                }
                (source, t.required, t.default.clone())
            }
        };
        Some(Var {
            name: name.to_string(),
            source,
            required,
            default,
        })
    }

    fn action(
        &mut self,
        i: usize,
        spec: &ActionSpec,
        flow_retry: &RetryPolicy,
        var_names: &[String],
    ) -> Option<Action> {
        let at = format!("actions[{i}]");
        let kinds = [
            spec.http.as_ref().map(|_| "http"),
            spec.email.as_ref().map(|_| "email"),
            spec.segment.as_ref().map(|_| "segment"),
            spec.emit.as_ref().map(|_| "emit"),
        ];
        let given: Vec<&str> = kinds.into_iter().flatten().collect();
        let kind_name = match given.as_slice() {
            [one] => *one,
            [] => {
                self.problem(
                    &at,
                    "an action needs a kind: `http`, `email`, `segment` or `emit`",
                );
                return None;
            }
            many => {
                self.problem(
                    &at,
                    format!("an action has one kind, this one has {}", many.join(" and ")),
                );
                return None;
            }
        };
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| format!("{kind_name}_{}", i + 1));
        if !is_identifier(&name) {
            self.problem(
                format!("{at}.name"),
                format!(
                    "action name `{name}` must be letters, digits and `_` (it is used as `steps.{name}`)"
                ),
            );
        }
        let when = self.conditions(&format!("{at}.when"), &spec.when, var_names);
        let retry = match &spec.retry {
            Some(r) => RetryPolicy::overlay(flow_retry, r).unwrap_or_else(|e| {
                self.problem(format!("{at}.retry"), e);
                flow_retry.clone()
            }),
            None => flow_retry.clone(),
        };
        let rate_limit = spec.rate_limit.as_ref().and_then(|r| {
            RateLimit::parse(r)
                .map_err(|e| self.problem(format!("{at}.rate_limit"), e))
                .ok()
        });
        let outgoing = matches!(kind_name, "http" | "email");
        if spec.circuit_breaker.is_some() && !outgoing {
            self.problem(
                format!("{at}.circuit_breaker"),
                "only actions that leave hookflow (http, email) have a circuit breaker",
            );
        }
        if spec.destination_concurrency.is_some() && !outgoing {
            self.problem(
                format!("{at}.destination_concurrency"),
                "only actions that leave hookflow (http, email) have a destination",
            );
        }
        if spec.destination_concurrency == Some(0) {
            self.problem(
                format!("{at}.destination_concurrency"),
                "destination_concurrency must be at least 1",
            );
        }
        let breaker = outgoing.then(|| match &spec.circuit_breaker {
            Some(b) => BreakerConfig {
                failures: b.failures,
                cooldown: b.cooldown,
            },
            None => BreakerConfig::default(),
        });
        let prefix = format!("{}/{at}.{kind_name}", self.flow);
        let compiled = match (&spec.http, &spec.email, &spec.segment, &spec.emit) {
            (Some(h), ..) => HttpAction::compile(h, &prefix, self.templates).map(ActionKind::Http),
            (_, Some(e), ..) => EmailAction::compile(e, &prefix, self.templates).map(ActionKind::Email),
            (_, _, Some(s), _) => SegmentAction::compile(s, &prefix, self.templates).map(ActionKind::Segment),
            (.., Some(e)) => EmitAction::compile(e, &prefix, self.templates).map(ActionKind::Emit),
            _ => unreachable!("one kind was found above"),
        };
        let compiled = match (compiled, spec.http.as_ref().and_then(|h| h.sign.as_ref())) {
            (Ok(ActionKind::Http(mut h)), Some(sign)) => {
                let path = format!("{at}.http.sign");
                let signer = self.verifier(&path, sign);
                if let Some(s) = &signer
                    && !matches!(s.scheme, Scheme::StandardWebhooks | Scheme::Hmac(_))
                {
                    self.problem(
                        &path,
                        "outgoing webhooks are signed with `standard-webhooks` or `hmac`",
                    );
                }
                h.sign = signer;
                Ok(ActionKind::Http(h))
            }
            (other, _) => other,
        };
        let kind = match compiled {
            Ok(k) => k,
            Err(errs) => {
                for (p, m) in errs {
                    let path = if p.is_empty() {
                        format!("{at}.{kind_name}")
                    } else {
                        format!("{at}.{kind_name}.{p}")
                    };
                    self.problem(path, m);
                }
                return None;
            }
        };
        Some(Action {
            name,
            when,
            retry,
            kind,
            rate_limit,
            breaker,
            destination_concurrency: spec.destination_concurrency,
        })
    }

    fn webhook(&mut self, wh: &WebhookSpec, var_names: &[String]) -> Webhook {
        let mut methods = Vec::new();
        for (i, m) in wh
            .methods
            .clone()
            .unwrap_or_else(|| vec!["POST".into()])
            .iter()
            .enumerate()
        {
            let up = m.to_ascii_uppercase();
            if ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].contains(&up.as_str()) {
                methods.push(up);
            } else {
                self.problem(
                    format!("on.webhook.methods[{i}]"),
                    format!("`{m}` is not an HTTP method"),
                );
            }
        }
        let when = self.conditions("on.webhook.when", &wh.when, var_names);
        let respond = match &wh.respond {
            None => Respond {
                status: 202,
                headers: Vec::new(),
                body: None,
                explain: false,
            },
            Some(r) => {
                let status = r.status.unwrap_or(202);
                if !(200..=299).contains(&status) {
                    self.problem(
                        "on.webhook.respond.status",
                        format!("{status}: the answer to an accepted event must be a 2xx status"),
                    );
                }
                let headers = r
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            self.template(&format!("on.webhook.respond.headers.{k}"), v),
                        )
                    })
                    .collect();
                let body = r
                    .body
                    .as_ref()
                    .map(|b| self.template("on.webhook.respond.body", b));
                Respond {
                    status,
                    headers,
                    body,
                    explain: r.explain,
                }
            }
        };
        let verify = wh
            .verify
            .as_ref()
            .and_then(|v| self.verifier("on.webhook.verify", v));
        let dedupe = wh.dedupe.as_ref().map(|d| Dedupe {
            key: self.template("on.webhook.dedupe.key", &d.key),
            window: d.window.unwrap_or(std::time::Duration::from_secs(24 * 3600)),
        });
        if let (Some(d), Some(v)) = (&dedupe, &verify)
            && crate::verify::uses_timestamp(&v.scheme)
            && d.window < v.tolerance
        {
            let fmt = |t| humantime::format_duration(t).to_string();
            self.problem(
                "on.webhook.dedupe.window",
                format!(
                    "the dedupe window ({}) is shorter than the signature tolerance ({}): a signed delivery replayed after {} would still verify and start a second run; make the window at least {}",
                    fmt(d.window),
                    fmt(v.tolerance),
                    fmt(d.window),
                    fmt(v.tolerance)
                ),
            );
        }
        // Headers that must arrive once: what the sender signs or identifies deliveries by,
        // and what the dedupe key reads.
        let mut trusted_headers = verify
            .as_ref()
            .map(|v| v.scheme.trusted_headers())
            .unwrap_or_default();
        if let Some(d) = &wh.dedupe {
            for name in headers_read_by(&d.key) {
                if !trusted_headers.iter().flatten().any(|h| *h == name) {
                    trusted_headers.push(vec![name]);
                }
            }
        }
        let mut allow_ips = Vec::new();
        for (i, a) in wh.allow_ips.iter().flatten().enumerate() {
            match parse_net(a) {
                Some(n) => allow_ips.push(n),
                None => self.problem(
                    format!("on.webhook.allow_ips[{i}]"),
                    format!("`{a}` is not an IP address or CIDR range (e.g. 203.0.113.0/24, 2001:db8::/32)"),
                ),
            }
        }
        if wh.max_in_flight == Some(0) {
            self.problem("on.webhook.max_in_flight", "max_in_flight must be at least 1");
        }
        let redact = wh
            .redact
            .iter()
            .enumerate()
            .filter_map(|(i, p)| self.path(&format!("on.webhook.redact[{i}]"), p))
            .collect();
        Webhook {
            methods,
            body: wh.body,
            when,
            respond,
            verify,
            dedupe,
            trusted_headers,
            allow_ips,
            redact,
            in_flight: wh
                .max_in_flight
                .map(|n| std::sync::Arc::new(tokio::sync::Semaphore::new(n.max(1) as usize))),
        }
    }

    /// A signature scheme with its secrets (incoming `verify`, outgoing `sign`).
    fn verifier(&mut self, at: &str, v: &VerifySpec) -> Option<Verifier> {
        if v.secret.is_some() {
            self.problem(
                format!("{at}.secret"),
                "secrets never go in flow files: put the secret in an environment variable and name it with `secret_env`",
            );
        }
        let secret_env = v.secret_env.as_ref().map(|s| s.to_vec()).unwrap_or_default();
        if secret_env.is_empty() {
            self.problem(
                at,
                "`secret_env` names the environment variable(s) holding the secret",
            );
        }
        for name in &secret_env {
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.problem(
                    format!("{at}.secret_env"),
                    format!(
                        "`{name}` is not an environment variable name (the secret itself never goes here)"
                    ),
                );
            }
        }
        let generic_keys = [
            v.header.is_some(),
            v.algorithm.is_some(),
            v.encoding.is_some(),
            v.prefix.is_some(),
            v.timestamp_header.is_some(),
            v.signed.is_some(),
        ];
        let scheme = if v.preset == "hmac" {
            let Some(header) = v.header.clone() else {
                self.problem(format!("{at}.header"), "the hmac preset needs `header`");
                return None;
            };
            let signed = v.signed.clone().unwrap_or_else(|| "{body}".into());
            if !signed.contains("{body}") {
                self.problem(format!("{at}.signed"), "the signed content must include `{body}`");
            }
            if signed.contains("{timestamp}") && v.timestamp_header.is_none() {
                self.problem(format!("{at}.signed"), "`{timestamp}` needs `timestamp_header`");
            }
            Scheme::Hmac(Generic {
                header,
                algorithm: v.algorithm.unwrap_or(Algorithm::Sha256),
                encoding: v.encoding.unwrap_or(Encoding::Hex),
                prefix: v.prefix.clone().unwrap_or_default(),
                timestamp_header: v.timestamp_header.clone(),
                signed,
            })
        } else {
            match Scheme::preset(&v.preset) {
                Some(s) => {
                    if generic_keys.iter().any(|k| *k) {
                        self.problem(
                            at,
                            format!("`{}` fixes its header and encoding; header/algorithm/encoding/prefix/timestamp_header/signed are for `preset: hmac`", v.preset),
                        );
                    }
                    s
                }
                None => {
                    self.problem(
                        format!("{at}.preset"),
                        format!("unknown preset `{}`: github, stripe, shopify, woocommerce, slack, standard-webhooks or hmac", v.preset),
                    );
                    return None;
                }
            }
        };
        Some(Verifier {
            scheme,
            secret_env,
            tolerance: v.tolerance.unwrap_or(crate::verify::DEFAULT_TOLERANCE),
        })
    }

    fn trigger(&mut self, spec: &FlowSpec, var_names: &[String]) -> Option<Trigger> {
        let on = &spec.on;
        match (&on.webhook, &on.event, &on.schedule) {
            (Some(wh), None, None) => Some(Trigger::Webhook(self.webhook(wh, var_names))),
            (None, Some(ev), None) => {
                if let Err(e) = crate::event::check_trigger_type(&ev.kind) {
                    self.problem("on.event", e);
                }
                let when = self.conditions("on.event.when", &ev.when, var_names);
                Some(Trigger::Event {
                    event_type: ev.kind.clone(),
                    when,
                })
            }
            (None, None, Some(sc)) => {
                match crate::schedule::Schedule::parse(&sc.cron, sc.timezone.as_deref(), sc.missed) {
                    Ok(s) => Some(Trigger::Schedule(s)),
                    Err(e) => {
                        self.problem("on.schedule.cron", e);
                        None
                    }
                }
            }
            (None, None, None) => {
                self.problem("on", "a flow needs a trigger: `webhook`, `event` or `schedule`");
                None
            }
            _ => {
                self.problem("on", "a flow has one trigger: `webhook`, `event` or `schedule`");
                None
            }
        }
    }
}

/// Compiles one flow. `stem` names the flow when the file does not.
pub fn compile(
    spec: &FlowSpec,
    file: &Path,
    source: &str,
    templates: &mut Templates,
) -> Result<Flow, Vec<Problem>> {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = spec.name.clone().unwrap_or(stem);
    let mut c = Compiler {
        flow: name.clone(),
        templates,
        problems: Vec::new(),
    };
    if !valid_flow_name(&name) {
        c.problem(
            "name",
            format!("flow name `{name}` may only hold letters, digits, `-` and `_` (it is part of the URL)"),
        );
    }

    let flow_retry = match &spec.retry {
        Some(r) => RetryPolicy::overlay(&RetryPolicy::default(), r).unwrap_or_else(|e| {
            c.problem("retry", e);
            RetryPolicy::default()
        }),
        None => RetryPolicy::default(),
    };

    let vars: Vec<Var> = spec.vars.iter().filter_map(|(n, v)| c.var(n, v)).collect();
    let var_names: Vec<String> = spec.vars.keys().cloned().collect();

    let trigger = c.trigger(spec, &var_names);

    let concurrency = match &spec.concurrency {
        None => Concurrency::default(),
        Some(cs) => {
            if cs.max_in_flight == Some(0) {
                c.problem("concurrency.max_in_flight", "max_in_flight must be at least 1");
            }
            Concurrency {
                max_in_flight: cs.max_in_flight,
                key: cs.key.as_ref().map(|k| c.template("concurrency.key", k)),
            }
        }
    };

    if spec.actions.is_empty() {
        c.problem("actions", "a flow needs at least one action");
    }
    let mut actions: Vec<Action> = Vec::new();
    for (i, a) in spec.actions.iter().enumerate() {
        if let Some(action) = c.action(i, a, &flow_retry, &var_names) {
            if actions.iter().any(|b| b.name == action.name) {
                c.problem(
                    format!("actions[{i}].name"),
                    format!("two actions are named `{}`", action.name),
                );
            }
            actions.push(action);
        }
    }

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let Some(trigger) = trigger else {
        return Err(vec![("on".into(), "no trigger".into())]);
    };
    let (when, respond_templates) = match &trigger {
        Trigger::Webhook(w) => (
            &w.when[..],
            w.respond.body.is_some() || !w.respond.headers.is_empty() || w.dedupe.is_some(),
        ),
        Trigger::Event { when, .. } => (&when[..], false),
        Trigger::Schedule(_) => (&[][..], false),
    };
    let ingress_templates = when.iter().any(|c| matches!(c.source, Source::Expr(_)))
        || respond_templates
        || concurrency.key.is_some();
    Ok(Flow {
        ingress_templates,
        name,
        description: spec.description.clone(),
        file: file.to_path_buf(),
        version: version_of(source),
        source: source.to_string(),
        trigger,
        vars,
        concurrency,
        actions,
    })
}

/// First 12 hex digits of the SHA-256 of the flow file.
pub fn version_of(source: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(source.as_bytes())[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_a_dedupe_key_reads() {
        assert_eq!(
            headers_read_by(
                "{{ headers['X-GitHub-Delivery'] }}-{{ headers.webhook_id }}-{{ headers.get(\"Idem\") }}-{{ body.id }}"
            ),
            vec!["x-github-delivery", "webhook_id", "idem"]
        );
    }
}
