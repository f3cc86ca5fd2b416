//! Spec → runtime: turns a deserialized [`FlowSpec`] into a [`Flow`], collecting every problem
//! as `(key path, message)` so the loader can attach lines and report them all in one pass.

use std::path::Path;

use super::spec::FlowSpec;
use super::{Concurrency, Flow, Trigger};
use crate::action::Action;
use crate::mapping::Var;
use crate::matching::Source;
use crate::retry::RetryPolicy;
use crate::template::Templates;

mod action;
mod conditions;
mod exits;
mod templates;
mod webhook;

pub use crate::compiler::Problem;
use crate::compiler::{Compiler, join};

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The methods a webhook may arrive with.
pub const WEBHOOK_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Flow names appear in URLs: letters, digits, `-` and `_`.
pub fn valid_flow_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Compiler<'_> {
    /// The flow's alert rules; silence and refusals only where webhooks arrive.
    fn alerts(&mut self, spec: &FlowSpec) -> crate::alert::Rules {
        let is_webhook = spec.on.webhook.is_some();
        match crate::alert::Rules::compile(spec.alerts.as_ref()) {
            Ok(mut rules) => {
                // Silence and refusals watch webhook requests; other flows have none.
                if !is_webhook {
                    let written = spec.alerts.as_ref();
                    for (key, set) in [
                        (
                            "silence",
                            written.is_some_and(|a| matches!(a.silence, Some(crate::alert::Toggle::On(_)))),
                        ),
                        (
                            "refusals",
                            written.is_some_and(|a| matches!(a.refusals, Some(crate::alert::Toggle::On(_)))),
                        ),
                    ] {
                        if set {
                            self.problem(
                                join("alerts", key),
                                format!(
                                    "`{key}` watches webhook requests, and this flow does not run on a webhook"
                                ),
                            );
                        }
                    }
                    rules.silence = None;
                    rules.refusals = None;
                }
                rules
            }
            Err((key, e)) => {
                self.problem(join("alerts", key), e);
                crate::alert::Rules::default()
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
    let mut c = Compiler::new(name.clone(), templates);
    if !valid_flow_name(&name) {
        c.problem(
            "name",
            format!("flow name `{name}` may only hold letters, digits, `-` and `_` (it is part of the URL)"),
        );
    }

    let flow_retry = match &spec.retry {
        Some(r) => RetryPolicy::overlay(&RetryPolicy::default(), r).unwrap_or_else(|(key, e)| {
            c.problem(join("retry", key), e);
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

    let exits = c.exits(&spec.exit, &var_names);
    if !exits.is_empty()
        && !actions
            .iter()
            .any(|a| matches!(a.kind, crate::action::ActionKind::Wait(_)))
    {
        c.problem(
            "exit",
            "exits end a run while it waits, and this flow has no `wait` step",
        );
    }

    let alerts = c.alerts(spec);

    c.check_templates(spec, &var_names);
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let Some(trigger) = trigger else {
        return Err(vec![Problem {
            path: "on".into(),
            message: "no trigger".into(),
            template: None,
        }]);
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
        || concurrency.key.is_some()
        || !exits.is_empty();
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
        exits,
        alerts,
    })
}

/// First 12 hex digits of the SHA-256 of the flow file.
pub fn version_of(source: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(source.as_bytes())[..6])
}
