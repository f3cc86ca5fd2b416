//! Triggers: a webhook (methods, body, conditions, answer, signature check, dedupe, allowlist),
//! an internal event, or a schedule.

use super::Compiler;
use crate::flow::spec::{FlowSpec, WebhookSpec};
use crate::flow::{Dedupe, Respond, Trigger, Webhook};
use crate::net::parse_net;

impl Compiler<'_> {
    pub(super) fn webhook(&mut self, wh: &WebhookSpec, var_names: &[String]) -> Webhook {
        let methods = self.methods(wh);
        let when = self.conditions("on.webhook.when", &wh.when, var_names);
        let respond = self.respond(wh);
        let verify = wh
            .verify
            .as_ref()
            .and_then(|v| crate::verify::compile(self, "on.webhook.verify", v));
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

    /// The methods a webhook may arrive with (`POST` unless listed), upper-cased.
    fn methods(&mut self, wh: &WebhookSpec) -> Vec<String> {
        let mut methods = Vec::new();
        for (i, m) in wh
            .methods
            .clone()
            .unwrap_or_else(|| vec!["POST".into()])
            .iter()
            .enumerate()
        {
            let up = m.to_ascii_uppercase();
            if super::WEBHOOK_METHODS.contains(&up.as_str()) {
                methods.push(up);
            } else {
                let near = crate::suggest::nearest(&up, super::WEBHOOK_METHODS.iter().copied())
                    .map(|n| format!(" (did you mean {n}?)"))
                    .unwrap_or_default();
                self.problem(
                    format!("on.webhook.methods[{i}]"),
                    format!(
                        "`{m}` is not a method webhooks arrive with{near}; use one of {}",
                        super::WEBHOOK_METHODS.join(", ")
                    ),
                );
            }
        }
        methods
    }

    /// The answer to an accepted event: `202` and no body unless `respond:` says otherwise.
    fn respond(&mut self, wh: &WebhookSpec) -> Respond {
        match &wh.respond {
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
        }
    }

    pub(super) fn trigger(&mut self, spec: &FlowSpec, var_names: &[String]) -> Option<Trigger> {
        let on = &spec.on;
        match (&on.webhook, &on.event, &on.schedule) {
            (Some(wh), None, None) => Some(Trigger::Webhook(self.webhook(wh, var_names))),
            (None, Some(ev), None) => {
                if let Err(e) = crate::event::check_trigger_pattern(&ev.kind) {
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
                        // Said at the key that is wrong.
                        let key = if e.starts_with("unknown time zone") {
                            "on.schedule.timezone"
                        } else {
                            "on.schedule.cron"
                        };
                        self.problem(key, e);
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
