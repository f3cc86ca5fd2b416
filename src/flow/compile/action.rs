//! One entry of `actions`: its kind compiled by the kind's own module, with its conditions,
//! retry policy, rate limit, circuit breaker and bulkhead.

use super::{Compiler, is_identifier};
use crate::action::breaker::{BreakerConfig, RateLimit};
use crate::action::email::EmailAction;
use crate::action::emit::EmitAction;
use crate::action::http::HttpAction;
use crate::action::segment::SegmentAction;
use crate::action::{
    Action, ActionKind, DEFAULT_ITEM_CONCURRENCY, DEFAULT_MAX_ITEMS, ForEach, ItemSource,
    MAX_ITEM_CONCURRENCY, MAX_ITEMS_LIMIT,
};
use crate::flow::spec::ActionSpec;
use crate::flow::spec::WaitSpec;
use crate::retry::RetryPolicy;
use crate::sequence::{Wait, parse_at, parse_tz};
use crate::verify::Scheme;

impl Compiler<'_> {
    /// `for_each` with its bounds.
    fn for_each(&mut self, at: &str, spec: &ActionSpec, kind_name: &str) -> Option<ForEach> {
        let Some(source) = &spec.for_each else {
            for (key, given) in [
                ("max_items", spec.max_items.is_some()),
                ("item_concurrency", spec.item_concurrency.is_some()),
            ] {
                if given {
                    self.problem(format!("{at}.{key}"), format!("`{key}` goes with `for_each`"));
                }
            }
            return None;
        };
        if kind_name == "wait" {
            self.problem(format!("{at}.for_each"), "a wait cannot be done per item");
            return None;
        }
        let path = format!("{at}.for_each");
        let items = if source.trim_start().starts_with('$') {
            ItemSource::Path(self.path(&path, source.trim())?)
        } else if let Some(expr) = crate::template::single_expression(source) {
            let name = format!("{}/{path}", self.flow);
            if let Err(e) = self.templates.add_native(name.clone(), expr) {
                self.problem(&path, format!("template syntax error: {}", e.message));
            }
            ItemSource::Expr(name)
        } else {
            self.problem(
                &path,
                format!("`{source}`: give a JSONPath over the body ($.line_items[*]) or one expression (\"{{{{ vars.items }}}}\")"),
            );
            return None;
        };
        let max_items = spec.max_items.unwrap_or(DEFAULT_MAX_ITEMS);
        let concurrency = spec.item_concurrency.unwrap_or(DEFAULT_ITEM_CONCURRENCY);
        for (key, n, most) in [
            ("max_items", max_items, MAX_ITEMS_LIMIT),
            ("item_concurrency", concurrency, MAX_ITEM_CONCURRENCY),
        ] {
            if n == 0 || n > most {
                self.problem(format!("{at}.{key}"), format!("`{key}` must be from 1 to {most}"));
            }
        }
        Some(ForEach {
            items,
            max_items,
            concurrency,
        })
    }

    /// `wait:` — a duration, or `for`/`until` with `at` and `timezone`.
    fn wait(&mut self, at: &str, spec: &WaitSpec) -> Option<Wait> {
        let duration = |c: &mut Self, path: &str, text: &str| {
            humantime::parse_duration(text.trim())
                .map_err(|e| {
                    c.problem(
                        path,
                        format!("`{text}` is not a duration such as 3d, 12h or 90m: {e}"),
                    )
                })
                .ok()
        };
        let table = match spec {
            WaitSpec::For(text) => {
                return duration(self, at, text).map(|d| Wait {
                    duration: Some(d),
                    until: None,
                    at: None,
                    timezone: None,
                });
            }
            WaitSpec::Table(t) => t,
        };
        let d = table
            .duration
            .as_deref()
            .and_then(|t| duration(self, &format!("{at}.for"), t));
        let until = table
            .until
            .as_deref()
            .map(|u| self.template(&format!("{at}.until"), u));
        if table.duration.is_some() && until.is_some() {
            self.problem(format!("{at}.until"), "give `for` or `until`, not both");
        }
        if table.duration.is_none() && until.is_none() && table.at.is_none() {
            self.problem(at, "a wait needs `for`, `until` or `at`");
        }
        let time_of_day = table
            .at
            .as_deref()
            .and_then(|t| parse_at(t).map_err(|e| self.problem(format!("{at}.at"), e)).ok());
        let timezone = table.timezone.as_deref().map(|tz| {
            if !tz.contains("{{")
                && let Err(e) = parse_tz(tz)
            {
                self.problem(format!("{at}.timezone"), e);
            }
            self.template(&format!("{at}.timezone"), tz)
        });
        Some(Wait {
            duration: d,
            until,
            at: time_of_day,
            timezone,
        })
    }

    pub(super) fn action(
        &mut self,
        i: usize,
        spec: &ActionSpec,
        flow_retry: &RetryPolicy,
        var_names: &[String],
    ) -> Option<Action> {
        let at = format!("actions[{i}]");
        let given = kinds_of(spec);
        let kind_name = match given.as_slice() {
            [one] => *one,
            [] => {
                self.problem(
                    &at,
                    "an action needs a kind: `http`, `email`, `segment`, `emit` or `wait`",
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
            Some(r) => RetryPolicy::overlay(flow_retry, r).unwrap_or_else(|(key, e)| {
                self.problem(super::join(&format!("{at}.retry"), key), e);
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
        if kind_name == "wait" {
            for (key, given) in [
                ("retry", spec.retry.is_some()),
                ("rate_limit", spec.rate_limit.is_some()),
            ] {
                if given {
                    self.problem(
                        format!("{at}.{key}"),
                        format!("a wait makes no attempts, so it has no `{key}`"),
                    );
                }
            }
        }
        let prefix = format!("{}/{at}.{kind_name}", self.flow);
        let compiled = match (&spec.http, &spec.email, &spec.segment, &spec.emit, &spec.wait) {
            (Some(h), ..) => HttpAction::compile(h, &prefix, self.templates).map(ActionKind::Http),
            (_, Some(e), ..) => EmailAction::compile(e, &prefix, self.templates).map(ActionKind::Email),
            (_, _, Some(s), ..) => {
                SegmentAction::compile(s, &prefix, self.templates).map(ActionKind::Segment)
            }
            (_, _, _, Some(e), _) => EmitAction::compile(e, &prefix, self.templates).map(ActionKind::Emit),
            (.., Some(w)) => self
                .wait(&format!("{at}.wait"), w)
                .map(ActionKind::Wait)
                .ok_or_else(Vec::new),
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
        let for_each = self.for_each(&at, spec, kind_name);
        Some(Action {
            name,
            when,
            retry,
            kind,
            rate_limit,
            breaker,
            destination_concurrency: spec.destination_concurrency,
            for_each,
        })
    }
}

/// The kinds an action spec names (one, for a valid action).
fn kinds_of(spec: &ActionSpec) -> Vec<&'static str> {
    [
        spec.http.as_ref().map(|_| "http"),
        spec.email.as_ref().map(|_| "email"),
        spec.segment.as_ref().map(|_| "segment"),
        spec.emit.as_ref().map(|_| "emit"),
        spec.wait.as_ref().map(|_| "wait"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The name an action spec's action has (`steps.<name>`): its `name`, or `<kind>_<n>`; `None`
/// when its kind is not clear. Known from the spec alone, so that a later action's templates
/// are checked even when an earlier action has problems of its own.
pub(super) fn spec_name(i: usize, spec: &ActionSpec) -> Option<String> {
    if let Some(n) = &spec.name {
        return Some(n.clone());
    }
    match kinds_of(spec).as_slice() {
        [one] => Some(format!("{one}_{}", i + 1)),
        _ => None,
    }
}
