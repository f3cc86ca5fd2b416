//! Conditions (`when`) and vars: their sources, operators and JSONPaths.

use super::{Compiler, is_identifier};
use crate::flow::spec::{ConditionSpec, VarSpec};
use crate::mapping::{Var, VarSource};
use crate::matching::{Condition, Op, Source};

impl Compiler<'_> {
    pub(super) fn condition(
        &mut self,
        at: &str,
        spec: &ConditionSpec,
        var_names: &[String],
    ) -> Option<Condition> {
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
            // regex's report is a picture over several lines; its last line says what is wrong.
            let why = e.to_string();
            let why = why.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(&why);
            let why = why.trim().trim_start_matches("error: ");
            let re = spec.matches.as_deref().unwrap_or_default();
            self.problem(format!("{at}.matches"), format!("invalid regex `{re}`: {why}"));
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

    pub(super) fn conditions(
        &mut self,
        at: &str,
        specs: &[ConditionSpec],
        var_names: &[String],
    ) -> Vec<Condition> {
        specs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| self.condition(&format!("{at}[{i}]"), c, var_names))
            .collect()
    }

    pub(super) fn var(&mut self, name: &str, spec: &VarSpec) -> Option<Var> {
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
}
