//! One entry of `actions`: what every action has — its name, conditions, retry policy, rate
//! limit, circuit breaker, bulkhead and `for_each` — with its kind compiled by the kind's own
//! module ([`crate::action::Kind`]).

use super::{Compiler, is_identifier};
use crate::action::breaker::{BreakerConfig, RateLimit};
use crate::action::{
    Action, ActionSpec, DEFAULT_ITEM_CONCURRENCY, DEFAULT_MAX_ITEMS, ForEach, ItemSource, KINDS,
    MAX_ITEM_CONCURRENCY, MAX_ITEMS_LIMIT, traits_of,
};
use crate::retry::RetryPolicy;

impl Compiler<'_> {
    /// `for_each` with its bounds.
    fn for_each(&mut self, at: &str, spec: &ActionSpec, attempted: bool) -> Option<ForEach> {
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
        if !attempted {
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

    pub(super) fn action(
        &mut self,
        i: usize,
        spec: &ActionSpec,
        flow_retry: &RetryPolicy,
        var_names: &[String],
    ) -> Option<Action> {
        let at = format!("actions[{i}]");
        let given = spec.kinds();
        let kind_name = match given.as_slice() {
            [one] => *one,
            [] => {
                let (last, rest) = KINDS.split_last().expect("kinds are registered");
                self.problem(
                    &at,
                    format!("an action needs a kind: `{}` or `{last}`", rest.join("`, `")),
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
        let (outgoing, attempted) = traits_of(kind_name);
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
        if !attempted {
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
        let kind = spec.compile_kind(self, &at)?;
        let for_each = self.for_each(&at, spec, attempted);
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

/// The name an action spec's action has (`steps.<name>`): its `name`, or `<kind>_<n>`; `None`
/// when its kind is not clear. Known from the spec alone, so that a later action's templates
/// are checked even when an earlier action has problems of its own.
pub(super) fn spec_name(i: usize, spec: &ActionSpec) -> Option<String> {
    if let Some(n) = &spec.name {
        return Some(n.clone());
    }
    match spec.kinds().as_slice() {
        [one] => Some(format!("{one}_{}", i + 1)),
        _ => None,
    }
}
