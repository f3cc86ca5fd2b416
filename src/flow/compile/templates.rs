//! The static pass over every template a flow renders ([`crate::template::check`]), each with
//! the context it renders in: the trigger's (no action has run yet), an action's (the actions
//! before it; `item` in a per-item action), a contact exit's (`contact` only). Template files
//! an action names are checked with that action's context too, and what is wrong in them is
//! reported at the file's own line.

use std::collections::{BTreeMap, BTreeSet};

use super::{Compiler, Problem};
use crate::flow::spec::FlowSpec;
use crate::template::check::Scope;

/// What every run's context holds (see `crate::context`).
const RUN_NAMES: &[&str] = &[
    "flow",
    "run_id",
    "attempt",
    "idempotency_key",
    "method",
    "vars",
    "body",
    "headers",
    "query",
    "steps",
];

impl Compiler<'_> {
    pub(super) fn check_templates(&mut self, spec: &FlowSpec, var_names: &[String]) {
        let vars: BTreeSet<String> = var_names.iter().cloned().collect();
        // Earlier actions' names come from the spec, so that an action with problems of its
        // own (a missing template file) does not hide a later one's; unknown only where an
        // action's kind is not clear.
        let names: Option<Vec<String>> = spec
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| super::action::spec_name(i, a))
            .collect();
        let scope_for = |path: &str| -> Scope {
            if path.starts_with("exit[") && path.contains(".contact.when") {
                return Scope {
                    names: BTreeSet::from(["contact".to_string()]),
                    keys: BTreeMap::new(),
                };
            }
            let mut scope = Scope {
                names: RUN_NAMES.iter().map(|n| n.to_string()).collect(),
                keys: BTreeMap::from([("vars".to_string(), vars.clone())]),
            };
            if let Some(i) = action_index(path) {
                if spec.actions.get(i).is_some_and(|a| a.for_each.is_some()) {
                    scope.names.extend(["item".to_string(), "item_index".to_string()]);
                }
                // A list email's templates (not its recipients: the link is made for them).
                let recipient = [".email.to", ".email.cc", ".email.bcc"]
                    .iter()
                    .any(|k| path.contains(k));
                if !recipient
                    && spec
                        .actions
                        .get(i)
                        .and_then(|a| a.email.as_ref())
                        .is_some_and(|e| e.list.is_some())
                {
                    scope.names.insert("unsubscribe_url".to_string());
                }
                if let Some(names) = &names {
                    scope.keys.insert(
                        "steps".into(),
                        names[..i.min(names.len())].iter().cloned().collect(),
                    );
                }
            } else if !path.starts_with("exit[") {
                // Rendered as the event arrives: no action has run.
                scope.keys.insert("steps".into(), BTreeSet::new());
            }
            scope
        };
        for name in self.templates.inline_names(&self.flow) {
            let path = name.split_once('/').map_or(name.as_str(), |(_, p)| p);
            // Inline html is registered as `….html.html`, so that it escapes.
            let path = path
                .strip_suffix(".html")
                .filter(|p| p.ends_with(".html"))
                .unwrap_or(path)
                .to_string();
            let findings = self.templates.check(&name, &scope_for(&path));
            for f in findings {
                if f.template == name {
                    let at = if f.line > 1 {
                        format!(" (line {} of the template)", f.line)
                    } else {
                        String::new()
                    };
                    self.problem(&path, format!("{}{at}", f.message));
                } else {
                    self.problems.push(Problem {
                        path: path.clone(),
                        message: f.message,
                        template: Some((f.template, f.line)),
                    });
                }
            }
        }
        for (i, a) in spec.actions.iter().enumerate() {
            let files = [
                (
                    "http.body_template",
                    a.http.as_ref().and_then(|h| h.body_template.as_ref()),
                ),
                (
                    "email.text_template",
                    a.email.as_ref().and_then(|e| e.text_template.as_ref()),
                ),
                (
                    "email.html_template",
                    a.email.as_ref().and_then(|e| e.html_template.as_ref()),
                ),
            ];
            for (key, file) in files {
                let Some(file) = file.filter(|f| self.templates.is_file(f)) else {
                    continue;
                };
                let path = format!("actions[{i}].{key}");
                for f in self.templates.check(file, &scope_for(&path)) {
                    self.problems.push(Problem {
                        path: path.clone(),
                        message: f.message,
                        template: Some((f.template, f.line)),
                    });
                }
            }
        }
    }
}

/// `actions[3].http.url` → 3.
fn action_index(path: &str) -> Option<usize> {
    path.strip_prefix("actions[")?.split(']').next()?.parse().ok()
}
