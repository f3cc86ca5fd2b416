//! Guarded lookups chain: a lookup that the template guards — `x.a.b | default(…)`,
//! `x.a.b is defined` / `is undefined`, `{% if x.a.b %}`, `… if x.a.b else …` — is undefined
//! all the way through when any step of it is missing (or null), instead of failing at the
//! first missing step.
//!
//! One flow often serves several event shapes (GitHub's `issues` and `pull_request`, Stripe's
//! and WooCommerce's topics), and each reads fields only some of them carry. minijinja's
//! strict mode, which keeps every unguarded undefined value an error, refuses an attribute
//! of an undefined value even under `default`: `body.pull_request.merged | default(none)`
//! failed for an `issues` event. minijinja offers chaining only for the whole environment
//! (which would also let unguarded typos print as empty text), so the guarded lookups are
//! rewritten when a template is added: each becomes a call of [`CHAIN`] (or [`CHAIN_IF`] as a
//! condition) with the same base and keys, spliced into the source at the lookup's own span.
//! Nothing else changes; an unguarded lookup keeps failing with the name of what is missing.

use minijinja::machinery::ast::{BinOpKind, CallArg, Expr, Stmt, UnaryOpKind};
use minijinja::value::{Rest, Value};
use minijinja::{Environment, Error};

/// The function a guarded lookup becomes: the value, or undefined where a step is missing.
pub const CHAIN: &str = "__hookflow_chain";
/// The same as a condition: none (false) where a step is missing, so strict mode's check of
/// an undefined condition does not fire for a guarded one.
pub const CHAIN_IF: &str = "__hookflow_chain_if";

/// Registers [`CHAIN`] and [`CHAIN_IF`].
pub fn install(env: &mut Environment<'static>) {
    env.add_function(CHAIN, |base: Value, keys: Rest<Value>| -> Result<Value, Error> {
        chain(base, &keys)
    });
    env.add_function(
        CHAIN_IF,
        |base: Value, keys: Rest<Value>| -> Result<Value, Error> {
            let v = chain(base, &keys)?;
            Ok(if v.is_undefined() { Value::from(()) } else { v })
        },
    );
}

fn chain(mut v: Value, keys: &[Value]) -> Result<Value, Error> {
    for key in keys {
        if v.is_undefined() || v.is_none() {
            return Ok(Value::UNDEFINED);
        }
        v = v.get_item(key).unwrap_or(Value::UNDEFINED);
    }
    Ok(v)
}

/// `source` with every guarded lookup rewritten (unchanged if it does not parse: the error is
/// reported where the template is added, at the original text).
pub fn rewrite(env: &Environment<'_>, name: &str, source: &str) -> String {
    let Ok(tree) = minijinja::machinery::parse(source, name, env.syntax().clone()) else {
        return source.to_string();
    };
    let mut w = Walker {
        source,
        edits: Vec::new(),
    };
    w.stmt(&tree);
    if w.edits.is_empty() {
        return source.to_string();
    }
    w.edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(source.len() + w.edits.len() * 24);
    let mut at = 0;
    for (start, end, text) in w.edits {
        if start < at {
            continue; // inside an edit already made (a guard within a guarded lookup's key)
        }
        out.push_str(&source[at..start]);
        out.push_str(&text);
        at = end;
    }
    out.push_str(&source[at..]);
    out
}

struct Walker<'s> {
    source: &'s str,
    /// (start, end, replacement) in bytes of the source.
    edits: Vec<(usize, usize, String)>,
}

impl Walker<'_> {
    fn text(&self, span: minijinja::machinery::Span) -> Option<&str> {
        self.source
            .get(span.start_offset as usize..span.end_offset as usize)
    }

    fn body(&mut self, stmts: &[Stmt<'_>]) {
        stmts.iter().for_each(|s| self.stmt(s));
    }

    fn stmt(&mut self, s: &Stmt<'_>) {
        match s {
            Stmt::Template(t) => self.body(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) => {}
            Stmt::ForLoop(l) => {
                self.expr(&l.iter);
                if let Some(f) = &l.filter_expr {
                    self.condition(f);
                }
                self.body(&l.body);
                self.body(&l.else_body);
            }
            Stmt::IfCond(i) => {
                self.condition(&i.expr);
                self.body(&i.true_body);
                self.body(&i.false_body);
            }
            Stmt::WithBlock(w) => {
                w.assignments.iter().for_each(|(_, v)| self.expr(v));
                self.body(&w.body);
            }
            Stmt::Set(set) => self.expr(&set.expr),
            Stmt::SetBlock(set) => {
                if let Some(f) = &set.filter {
                    self.expr(f);
                }
                self.body(&set.body);
            }
            Stmt::AutoEscape(a) => self.body(&a.body),
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.body(&f.body);
            }
            Stmt::Block(b) => self.body(&b.body),
            Stmt::Import(_) | Stmt::FromImport(_) | Stmt::Extends(_) | Stmt::Include(_) => {}
            Stmt::Macro(m) => self.body(&m.body),
            Stmt::CallBlock(cb) => {
                self.args(&cb.call.args);
                self.body(&cb.macro_decl.body);
            }
            Stmt::Do(d) => self.args(&d.call.args),
        }
    }

    fn args(&mut self, args: &[CallArg<'_>]) {
        for a in args {
            match a {
                CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => {
                    self.expr(e)
                }
            }
        }
    }

    /// A condition: its lookups, and those joined by `and`, `or`, `not`, are guarded.
    fn condition(&mut self, e: &Expr<'_>) {
        match e {
            Expr::GetAttr(_) | Expr::GetItem(_) => self.guard(e, CHAIN_IF),
            Expr::UnaryOp(u) if matches!(u.op, UnaryOpKind::Not) => self.condition(&u.expr),
            Expr::BinOp(b) if matches!(b.op, BinOpKind::ScAnd | BinOpKind::ScOr) => {
                self.condition(&b.left);
                self.condition(&b.right);
            }
            other => self.expr(other),
        }
    }

    fn expr(&mut self, e: &Expr<'_>) {
        match e {
            Expr::Var(_) | Expr::Const(_) => {}
            Expr::GetAttr(a) => self.expr(&a.expr),
            Expr::GetItem(i) => {
                self.expr(&i.expr);
                self.expr(&i.subscript_expr);
            }
            Expr::Slice(s) => {
                self.expr(&s.expr);
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(part);
                }
            }
            Expr::UnaryOp(u) => self.expr(&u.expr),
            Expr::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.expr(&c.expr);
                c.ops.iter().for_each(|o| self.expr(&o.expr));
            }
            Expr::IfExpr(i) => {
                self.condition(&i.test_expr);
                self.expr(&i.true_expr);
                if let Some(f) = &i.false_expr {
                    self.expr(f);
                }
            }
            Expr::Filter(f) => {
                if let Some(inner) = &f.expr {
                    if matches!(f.name, "default" | "d") {
                        self.guard(inner, CHAIN);
                    } else {
                        self.expr(inner);
                    }
                }
                self.args(&f.args);
            }
            Expr::Test(t) => {
                if matches!(t.name, "defined" | "undefined") {
                    self.guard(&t.expr, CHAIN);
                } else {
                    self.expr(&t.expr);
                }
                self.args(&t.args);
            }
            Expr::Call(c) => {
                self.expr(&c.expr);
                self.args(&c.args);
            }
            Expr::List(l) => l.items.iter().for_each(|i| self.expr(i)),
            Expr::Tuple(t) => t.items.iter().for_each(|i| self.expr(i)),
            Expr::Map(m) => {
                m.keys.iter().for_each(|k| self.expr(k));
                m.values.iter().for_each(|v| self.expr(v));
            }
        }
    }

    /// Rewrites a lookup chain `base.k1[k2]…` as `function(base, "k1", k2, …)`.
    fn guard(&mut self, e: &Expr<'_>, function: &str) {
        if !matches!(e, Expr::GetAttr(_) | Expr::GetItem(_)) {
            return self.expr(e);
        }
        // minijinja's spans of lookups do not all start at the base: the chain's text runs
        // from the base's first byte to the furthest end of any of its parts.
        let mut keys: Vec<String> = Vec::new();
        let mut written: Vec<String> = Vec::new();
        let mut end = 0u32;
        let mut at = e;
        let (base, start) = loop {
            match at {
                Expr::GetAttr(a) => {
                    end = end.max(a.span().end_offset);
                    keys.push(format!("{:?}", a.name));
                    written.push(format!(".{}", a.name));
                    at = &a.expr;
                }
                Expr::GetItem(i) => {
                    end = end.max(i.span().end_offset);
                    let key = match &i.subscript_expr {
                        Expr::Const(c) => self.text(c.span()),
                        Expr::Var(v) => self.text(v.span()),
                        // A computed key: leave the lookup as it is.
                        _ => None,
                    };
                    let Some(key) = key else { return self.expr(e) };
                    keys.push(key.to_string());
                    written.push(format!("[{key}]"));
                    at = &i.expr;
                }
                Expr::Var(v) => match self.text(v.span()) {
                    Some(t) => break (t.to_string(), v.span().start_offset),
                    None => return,
                },
                // Only chains over a plain name: anything else is left as written.
                _ => return self.expr(e),
            }
        };
        let Some(whole) = self.source.get(start as usize..end as usize) else {
            return;
        };
        keys.reverse();
        written.reverse();
        // The text must be exactly that lookup (spaces aside), or it is left alone.
        let expected = format!("{base}{}", written.concat());
        let squeezed: String = whole.chars().filter(|c| !c.is_whitespace()).collect();
        if squeezed != expected.replace(' ', "") {
            return;
        }
        let text = format!("{function}({base}, {})", keys.join(", "));
        self.edits.push((start as usize, end as usize, text));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Templates, to_value};
    use serde_json::json;

    fn render(src: &str, ctx: serde_json::Value) -> Result<String, String> {
        let mut t = Templates::new();
        t.add("t".into(), src.into()).map_err(|e| e.message)?;
        t.render("t", &to_value(&ctx)).map_err(|e| e.to_string())
    }

    fn issues() -> serde_json::Value {
        json!({"body": {"action": "opened", "issue": {"number": 7}, "pull_request": null}, "vars": {"n": 1}})
    }

    #[test]
    fn a_guarded_lookup_is_undefined_all_the_way_through() {
        let cases = [
            ("{{ body.pull_request.merged | default(none) }}", ""),
            ("{{ body.review.state.name | default('none') }}", "none"),
            ("{{ body.review.state | d('x') }}", "x"),
            ("{{ body['review']['state'] | default('y') }}", "y"),
            ("{{ body.review.state is defined }}", "false"),
            ("{{ body.review.state is undefined }}", "true"),
            ("{{ body.issue.number is defined }}", "true"),
            ("{% if body.review.state %}yes{% else %}no{% endif %}", "no"),
            ("{% if not body.review.state %}no review{% endif %}", "no review"),
            (
                "{% if body.review.state is defined and body.review.state.x %}a{% else %}b{% endif %}",
                "b",
            ),
            ("{{ 'pr' if body.pull_request.merged else 'issue' }}", "issue"),
            (
                "{% if body.issue.number %}#{{ body.issue.number }}{% endif %}",
                "#7",
            ),
            (
                "{% for l in body.labels | default([]) %}{{ l }}{% endfor %}.",
                ".",
            ),
            ("{{ body.issue.number | default(0) }}", "7"),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, issues()).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn an_unguarded_lookup_still_fails_naming_what_is_missing() {
        for (src, named) in [
            ("{{ body.review.state }}", "`body.review` is undefined"),
            ("{{ body.review.state | upper }}", "`body.review` is undefined"),
            (
                "{% for x in body.review.comments %}{% endfor %}",
                "`body.review` is undefined",
            ),
            ("{{ vars.nn }}", "`vars.nn` is undefined"),
        ] {
            let err = render(src, issues()).unwrap_err();
            assert!(err.contains(named), "{src}: {err}");
        }
    }

    #[test]
    fn the_rewrite_touches_only_guarded_lookups() {
        let env = minijinja::Environment::new();
        let src =
            "{{ a.b }} {{ a.b.c | default(1) }} {% if x.y %}{{ x.y }}{% endif %} {{ a[k].c is defined }}";
        assert_eq!(
            super::rewrite(&env, "t", src),
            "{{ a.b }} {{ __hookflow_chain(a, \"b\", \"c\") | default(1) }} \
             {% if __hookflow_chain_if(x, \"y\") %}{{ x.y }}{% endif %} \
             {{ __hookflow_chain(a, k, \"c\") is defined }}"
        );
    }
}
