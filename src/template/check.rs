//! A static pass over a template: what a render would fail on, found at load instead of when a
//! real order arrives. It walks minijinja's syntax tree (the `unstable_machinery` API, pinned
//! with the crate's version) knowing what the context holds where the template renders
//! ([`Scope`]), and reports:
//!
//! - a name the context does not hold (`{{ order.id }}`), a `vars.<name>` the flow does not
//!   declare, a `steps.<name>` that is not an earlier action — with the nearest known name;
//! - a filter, test or function that does not exist (`| shout`), and `env()`/`secret()`
//!   without a variable name or with too many arguments; a filter given arguments it does not
//!   take.
//!
//! It never guesses about what is only known at run time: `body`, `headers` and `query` are
//! not looked into, and a name is not reported where the template guards it (`x | default(…)`,
//! `x is defined`, inside `{% if x is defined %}`), where the template itself assigns it (`set`,
//! loops, macros, imports), or in a template an `{% include %}` reaches with names of its own.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use minijinja::Environment;
use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};

/// What a template's context holds where it renders.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Top-level names (`vars`, `body`, `steps`, `item`, …).
    pub names: BTreeSet<String>,
    /// Names whose keys are all known: `vars` → the declared vars, `steps` → the earlier
    /// actions. Names not listed here (`body`, `headers`) are not looked into.
    pub keys: BTreeMap<String, BTreeSet<String>>,
}

/// One thing a render would fail on: in which template, at which line of it, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub template: String,
    pub line: usize,
    pub message: String,
}

/// Filters, tests and functions a person might have meant: minijinja's builtins and
/// hookflow's own. Only those the environment has are suggested.
const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "lines",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "zip",
    "json",
    "b64encode",
];
const TESTS: &[&str] = &[
    "defined",
    "undefined",
    "none",
    "safe",
    "escaped",
    "odd",
    "even",
    "divisibleby",
    "number",
    "integer",
    "float",
    "string",
    "sequence",
    "iterable",
    "mapping",
    "startingwith",
    "endingwith",
    "lower",
    "upper",
    "sameas",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "in",
    "true",
    "false",
    "boolean",
    "filter",
    "test",
];

/// Names a template may use inside the constructs that define them.
const LOOP_NAMES: &[&str] = &["loop"];
const MACRO_NAMES: &[&str] = &["caller", "varargs", "kwargs"];

/// Checks `source` (the template `name`) against `scope`; templates it includes are read
/// through `env` and checked with the same scope.
pub fn check(env: &Environment<'_>, name: &str, source: &str, scope: &Scope) -> Vec<Finding> {
    let mut c = Checker {
        env,
        scope,
        template: name.to_string(),
        frames: vec![HashSet::from(["self".to_string()])],
        guarded: Vec::new(),
        findings: Vec::new(),
        probed: HashMap::new(),
        visited: HashSet::from([name.to_string()]),
        source: source.to_string(),
    };
    c.template(source);
    c.findings
}

struct Checker<'e, 's> {
    env: &'e Environment<'e>,
    scope: &'s Scope,
    template: String,
    /// Names the template assigns, innermost construct last.
    frames: Vec<HashSet<String>>,
    /// Dotted names guarded by an enclosing `{% if x is defined %}`.
    guarded: Vec<HashSet<String>>,
    findings: Vec<Finding>,
    probed: HashMap<(char, String), bool>,
    /// Templates already checked through includes (each once, and no include loop).
    visited: HashSet<String>,
    /// The source of the template being walked (for the text of a call's arguments).
    source: String,
}

impl Checker<'_, '_> {
    fn template(&mut self, source: &str) {
        let syntax = self.env.syntax().clone();
        let name = self.template.clone();
        // A syntax error is reported where the template is added; nothing to check here.
        let Ok(tree) = minijinja::machinery::parse(source, &name, syntax) else {
            return;
        };
        self.stmt(&tree);
    }

    fn report(&mut self, line: u16, message: String) {
        let f = Finding {
            template: self.template.clone(),
            line: usize::from(line.max(1)),
            message,
        };
        if !self.findings.contains(&f) {
            self.findings.push(f);
        }
    }

    fn is_local(&self, name: &str) -> bool {
        self.frames.iter().any(|f| f.contains(name))
    }

    fn is_guarded(&self, dotted: &str) -> bool {
        self.guarded.iter().any(|g| {
            g.iter().any(|x| {
                x == dotted || (dotted.starts_with(x.as_str()) && dotted[x.len()..].starts_with('.'))
            })
        })
    }

    fn assign(&mut self, target: &Expr<'_>) {
        match target {
            Expr::Var(v) => {
                if let Some(f) = self.frames.last_mut() {
                    f.insert(v.id.to_string());
                }
            }
            Expr::List(l) => l.items.iter().for_each(|e| self.assign(e)),
            Expr::Tuple(t) => t.items.iter().for_each(|e| self.assign(e)),
            _ => {}
        }
    }

    fn with_frame(&mut self, names: &[&str], f: impl FnOnce(&mut Self)) {
        self.frames.push(names.iter().map(|n| n.to_string()).collect());
        f(self);
        self.frames.pop();
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
                self.with_frame(LOOP_NAMES, |c| {
                    c.assign(&l.target);
                    if let Some(f) = &l.filter_expr {
                        c.expr(f);
                    }
                    c.body(&l.body);
                });
                self.with_frame(&[], |c| c.body(&l.else_body));
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr);
                let guards = defined_tests(&i.expr);
                self.guarded.push(guards);
                self.with_frame(&[], |c| c.body(&i.true_body));
                self.with_frame(&[], |c| c.body(&i.false_body));
                self.guarded.pop();
            }
            Stmt::WithBlock(w) => self.with_frame(&[], |c| {
                for (target, value) in &w.assignments {
                    c.expr(value);
                    c.assign(target);
                }
                c.body(&w.body);
            }),
            Stmt::Set(set) => {
                self.expr(&set.expr);
                self.assign(&set.target);
            }
            Stmt::SetBlock(set) => {
                if let Some(f) = &set.filter {
                    self.expr(f);
                }
                self.body(&set.body);
                self.assign(&set.target);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.body(&a.body);
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.body(&f.body);
            }
            Stmt::Block(b) => self.body(&b.body),
            Stmt::Import(i) => {
                self.expr(&i.expr);
                self.assign(&i.name);
            }
            Stmt::FromImport(i) => {
                self.expr(&i.expr);
                for (name, alias) in &i.names {
                    self.assign(alias.as_ref().unwrap_or(name));
                }
            }
            Stmt::Extends(e) => self.expr(&e.name),
            Stmt::Include(i) => self.include(&i.name, i.span().start_line),
            Stmt::Macro(m) => {
                if let Some(f) = self.frames.last_mut() {
                    f.insert(m.name.to_string());
                }
                self.macro_body(m);
            }
            Stmt::CallBlock(cb) => {
                self.call(&cb.call, cb.call.span().start_line);
                self.macro_body(&cb.macro_decl);
            }
            Stmt::Do(d) => self.call(&d.call, d.call.span().start_line),
        }
    }

    fn macro_body(&mut self, m: &ast::Macro<'_>) {
        m.defaults.iter().for_each(|d| self.expr(d));
        self.with_frame(MACRO_NAMES, |c| {
            m.args.iter().for_each(|a| c.assign(a));
            c.body(&m.body);
        });
    }

    /// An included template renders with this context, and with what this one assigned so
    /// far: checked with the same scope, those names counted as known.
    fn include(&mut self, name: &Expr<'_>, line: u16) {
        let names: Vec<String> = match name {
            Expr::Const(c) => match c.value.as_str() {
                Some(s) => vec![s.to_string()],
                None => c
                    .value
                    .try_iter()
                    .map(|it| it.filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
            },
            other => {
                self.expr(other);
                return;
            }
        };
        for included in names {
            if !self.visited.insert(included.clone()) {
                continue;
            }
            let Ok(t) = self.env.get_template(&included) else {
                // A missing file fails every render: the same as a flow naming it.
                self.report(line, format!("no template `{included}` to include"));
                continue;
            };
            let source = t.source().to_string();
            let outer = std::mem::replace(&mut self.template, included.clone());
            let outer_source = std::mem::replace(&mut self.source, source.clone());
            let known: HashSet<String> = self.frames.iter().flatten().cloned().collect();
            let frames = std::mem::replace(&mut self.frames, vec![known]);
            self.template(&source);
            self.frames = frames;
            self.source = outer_source;
            self.template = outer;
        }
    }

    fn expr(&mut self, e: &Expr<'_>) {
        self.expr_guarded(e, false);
    }

    /// `guarded`: the value may be undefined here (the input of `default`, of `is defined`).
    fn expr_guarded(&mut self, e: &Expr<'_>, guarded: bool) {
        match e {
            Expr::Var(v) => {
                if !guarded {
                    self.name(v.id, v.span().start_line);
                }
            }
            Expr::Const(_) => {}
            Expr::GetAttr(_) | Expr::GetItem(_) => {
                if let Some((root, key, line)) = chain_root(e) {
                    if !guarded {
                        self.key(root, key.as_deref(), line);
                    }
                    // The subscripts of `x[y]` are expressions of their own.
                    visit_subscripts(e, &mut |s| self.expr(s));
                } else {
                    match e {
                        Expr::GetAttr(a) => self.expr(&a.expr),
                        Expr::GetItem(i) => {
                            self.expr(&i.expr);
                            self.expr(&i.subscript_expr);
                        }
                        _ => {}
                    }
                }
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
                c.ops.iter().for_each(|op| self.expr(&op.expr));
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.guarded.push(defined_tests(&i.test_expr));
                self.expr(&i.true_expr);
                if let Some(f) = &i.false_expr {
                    self.expr(f);
                }
                self.guarded.pop();
            }
            Expr::Filter(f) => {
                let line = f.span().start_line;
                if let Some(input) = &f.expr {
                    self.expr_guarded(input, matches!(f.name, "default" | "d"));
                }
                self.args(&f.args);
                self.filter(f.name, &f.args, line);
            }
            Expr::Test(t) => {
                self.expr_guarded(&t.expr, matches!(t.name, "defined" | "undefined"));
                self.args(&t.args);
                if !self.exists('t', t.name) {
                    let near = nearest_known(self, 't', t.name, TESTS);
                    self.report(t.span().start_line, format!("unknown test `{}`{near}", t.name));
                }
            }
            Expr::Call(c) => self.call(c, c.span().start_line),
            Expr::List(l) => l.items.iter().for_each(|i| self.expr(i)),
            Expr::Tuple(t) => t.items.iter().for_each(|i| self.expr(i)),
            Expr::Map(m) => {
                m.keys.iter().for_each(|k| self.expr(k));
                m.values.iter().for_each(|v| self.expr(v));
            }
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

    /// A bare name: a local, a top-level name of the context, a function, or a mistake.
    fn name(&mut self, id: &str, line: u16) {
        if self.is_local(id) || self.is_guarded(id) || self.scope.names.contains(id) || self.is_global(id) {
            return;
        }
        let near = match id {
            "item" | "item_index" => " (it is defined in an action with `for_each`)".to_string(),
            "event" => " (an event-triggered run's event is its `body`)".to_string(),
            "contact" => " (it is defined in the conditions of a `contact` exit)".to_string(),
            "unsubscribe_url" => " (it is defined in an email with `list`)".to_string(),
            _ => crate::suggest::nearest(id, self.scope.names.iter().map(String::as_str))
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default(),
        };
        let known = self
            .scope
            .names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        self.report(
            line,
            format!("`{id}` is not defined here{near}; a template sees {known}"),
        );
    }

    /// `root.key…`: the root must be defined; where the keys of the root are known (`vars`,
    /// `steps`), `key` must be one of them.
    fn key(&mut self, root: &str, key: Option<&str>, line: u16) {
        if self.is_local(root) || self.is_guarded(root) {
            return;
        }
        if !self.scope.names.contains(root) {
            self.name(root, line);
            return;
        }
        let (Some(key), Some(known)) = (key, self.scope.keys.get(root)) else {
            return;
        };
        if known.contains(key) || self.is_guarded(&format!("{root}.{key}")) {
            return;
        }
        let near = crate::suggest::nearest(key, known.iter().map(String::as_str))
            .map(|n| format!(" (did you mean `{root}.{n}`?)"))
            .unwrap_or_default();
        let listed = if known.is_empty() {
            "none".to_string()
        } else {
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let what = match root {
            "vars" => format!("`vars.{key}` is not a var of this flow{near}; its vars: {listed}"),
            "steps" => format!(
                "`steps.{key}` is not an earlier action of this flow{near}; actions before this one: {listed}"
            ),
            _ => format!("`{root}.{key}` is not defined{near}; `{root}` holds {listed}"),
        };
        self.report(line, what);
    }

    fn is_global(&self, id: &str) -> bool {
        self.env.globals().any(|(n, _)| n == id)
    }

    /// Whether the environment has a filter (`kind` 'f') or a test ('t') of that name.
    fn exists(&mut self, kind: char, name: &str) -> bool {
        let env = self.env;
        *self.probed.entry((kind, name.to_string())).or_insert_with(|| {
            let state = env.empty_state();
            match kind {
                'f' => minijinja::tests::is_filter(&state, name),
                _ => minijinja::tests::is_test(&state, name),
            }
        })
    }

    fn filter(&mut self, name: &str, args: &[CallArg<'_>], line: u16) {
        if !self.exists('f', name) {
            let near = nearest_known(self, 'f', name, FILTERS);
            self.report(line, format!("unknown filter `{name}`{near}"));
            return;
        }
        if let Some(why) = self.arity(name, args) {
            self.report(line, format!("filter `{name}`: {why}"));
        }
    }

    /// Whether `| name(args)` fails on its arguments alone, tried on a few kinds of input:
    /// only when every argument is a constant, and only when no input is accepted.
    fn arity(&self, name: &str, args: &[CallArg<'_>]) -> Option<String> {
        let mut written = Vec::new();
        for a in args {
            match a {
                CallArg::Pos(Expr::Const(c)) => written.push(self.text_of(c.span())?),
                CallArg::Kwarg(k, Expr::Const(c)) => written.push(format!("{k}={}", self.text_of(c.span())?)),
                _ => return None,
            }
        }
        let call = if args.is_empty() {
            String::new()
        } else {
            format!("({})", written.join(", "))
        };
        let mut why = None;
        for input in ["'x'", "1", "[1]", "{'a': 1}", "none"] {
            match self
                .env
                .render_str(&format!("{{{{ {input} | {name}{call} }}}}"), ())
            {
                Err(e)
                    if matches!(
                        e.kind(),
                        minijinja::ErrorKind::MissingArgument | minijinja::ErrorKind::TooManyArguments
                    ) =>
                {
                    why = Some(
                        e.detail()
                            .map(str::to_string)
                            .unwrap_or_else(|| e.kind().to_string()),
                    );
                }
                _ => return None,
            }
        }
        why
    }

    fn text_of(&self, span: minijinja::machinery::Span) -> Option<String> {
        self.source
            .get(span.start_offset as usize..span.end_offset as usize)
            .map(str::to_string)
    }

    fn call(&mut self, c: &ast::Call<'_>, line: u16) {
        self.args(&c.args);
        let Expr::Var(f) = &c.expr else {
            // A method (`x.items()`) or a call of a value: the receiver is an expression.
            self.expr(&c.expr);
            return;
        };
        if self.is_local(f.id) {
            return;
        }
        if !self.is_global(f.id) {
            let functions: Vec<String> = self
                .env
                .globals()
                .map(|(n, _)| n.to_string())
                .filter(|n| !n.starts_with("__"))
                .collect();
            let near = crate::suggest::nearest(f.id, functions.iter().map(String::as_str))
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            self.report(line, format!("unknown function `{}`{near}", f.id));
            return;
        }
        if matches!(f.id, "env" | "secret") {
            let positional = c.args.iter().filter(|a| matches!(a, CallArg::Pos(_))).count();
            let other = c.args.len() - positional;
            if positional == 0 || positional > 2 || other > 0 {
                self.report(
                    line,
                    format!(
                        "`{0}()` takes the variable's name and an optional default: `{0}('NAME')` or `{0}('NAME', 'default')`",
                        f.id
                    ),
                );
            }
        }
    }
}

fn nearest_known(c: &mut Checker<'_, '_>, kind: char, name: &str, candidates: &[&'static str]) -> String {
    let known: Vec<&str> = candidates.iter().copied().filter(|n| c.exists(kind, n)).collect();
    crate::suggest::nearest(name, known)
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default()
}

/// `root.key…` or `root['key']…`: the root name, its first key when that is a constant, and
/// the line; `None` when the chain does not start at a name.
fn chain_root<'a>(e: &'a Expr<'a>) -> Option<(&'a str, Option<String>, u16)> {
    let mut keys: Vec<Option<String>> = Vec::new();
    let mut node = e;
    loop {
        match node {
            Expr::GetAttr(a) => {
                keys.push(Some(a.name.to_string()));
                node = &a.expr;
            }
            Expr::GetItem(i) => {
                keys.push(match &i.subscript_expr {
                    Expr::Const(c) => c.value.as_str().map(str::to_string),
                    _ => None,
                });
                node = &i.expr;
            }
            Expr::Var(v) => return Some((v.id, keys.pop().flatten(), v.span().start_line)),
            _ => return None,
        }
    }
}

/// Calls `f` on every non-constant subscript along a `GetAttr`/`GetItem` chain.
fn visit_subscripts<'a>(e: &'a Expr<'a>, f: &mut dyn FnMut(&'a Expr<'a>)) {
    match e {
        Expr::GetAttr(a) => visit_subscripts(&a.expr, f),
        Expr::GetItem(i) => {
            if !matches!(i.subscript_expr, Expr::Const(_)) {
                f(&i.subscript_expr);
            }
            visit_subscripts(&i.expr, f);
        }
        _ => {}
    }
}

/// Dotted names tested with `is defined` / `is undefined` anywhere in `e`.
fn defined_tests(e: &Expr<'_>) -> HashSet<String> {
    let mut out = HashSet::new();
    collect_defined(e, &mut out);
    out
}

fn collect_defined(e: &Expr<'_>, out: &mut HashSet<String>) {
    match e {
        Expr::Test(t) if matches!(t.name, "defined" | "undefined") => {
            if let Some(d) = dotted(&t.expr) {
                out.insert(d);
            }
        }
        Expr::UnaryOp(u) => collect_defined(&u.expr, out),
        Expr::BinOp(b) => {
            collect_defined(&b.left, out);
            collect_defined(&b.right, out);
        }
        _ => {}
    }
}

/// `vars.a.b` as text, for a chain of names.
fn dotted(e: &Expr<'_>) -> Option<String> {
    match e {
        Expr::Var(v) => Some(v.id.to_string()),
        Expr::GetAttr(a) => Some(format!("{}.{}", dotted(&a.expr)?, a.name)),
        Expr::GetItem(i) => match &i.subscript_expr {
            Expr::Const(c) => Some(format!("{}.{}", dotted(&i.expr)?, c.value.as_str()?)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Templates;

    fn scope(vars: &[&str], steps: &[&str]) -> Scope {
        let names = [
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
        Scope {
            names: names.iter().map(|n| n.to_string()).collect(),
            keys: BTreeMap::from([
                ("vars".into(), vars.iter().map(|n| n.to_string()).collect()),
                ("steps".into(), steps.iter().map(|n| n.to_string()).collect()),
            ]),
        }
    }

    fn findings(src: &str) -> Vec<String> {
        let t = Templates::new();
        check(
            &t.env,
            "t",
            src,
            &scope(&["email", "order_id", "items"], &["create"]),
        )
        .into_iter()
        .map(|f| format!("{}: {}", f.line, f.message))
        .collect()
    }

    fn clean(src: &str) {
        let f = findings(src);
        assert!(f.is_empty(), "{src}: {f:?}");
    }

    #[test]
    fn undeclared_vars_and_later_steps_are_found_with_the_nearest_name() {
        let f = findings("https://api.example.com/{{ vars.ordr_id }}");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("1: `vars.ordr_id` is not a var of this flow (did you mean `vars.order_id`?)"),
            "{f:?}"
        );
        let f = findings("a\n{{ steps.ship.body.id }}");
        assert!(
            f[0].starts_with("2: `steps.ship` is not an earlier action"),
            "{f:?}"
        );
        let f = findings("{{ vars['emial'] }}");
        assert!(f[0].contains("did you mean `vars.email`?"), "{f:?}");
        let f = findings("{{ order.id }}");
        assert!(f[0].starts_with("1: `order` is not defined here"), "{f:?}");
        let f = findings("{{ item.sku }}");
        assert!(f[0].contains("`item` is not defined here"), "{f:?}");
    }

    #[test]
    fn unknown_filters_tests_and_functions_and_wrong_arguments() {
        let f = findings("{{ vars.email | shout }}");
        assert_eq!(f, vec!["1: unknown filter `shout`"]);
        let f = findings("{{ vars.email | uper }}");
        assert!(
            f[0].contains("unknown filter `uper` (did you mean `upper`?)"),
            "{f:?}"
        );
        let f = findings("{% if vars.items is emty %}x{% endif %}");
        assert!(f[0].contains("unknown test `emty`"), "{f:?}");
        let f = findings("{{ sekret('TOKEN') }}");
        assert!(
            f[0].contains("unknown function `sekret` (did you mean `secret`?)"),
            "{f:?}"
        );
        for call in ["secret()", "env()", "secret('A', 'b', 'c')"] {
            let f = findings(&format!("{{{{ {call} }}}}"));
            assert!(
                f.len() == 1 && f[0].contains("takes the variable's name"),
                "{call}: {f:?}"
            );
        }
        let f = findings("{{ vars.email | replace('a') }}");
        assert!(f[0].starts_with("1: filter `replace`:"), "{f:?}");
    }

    #[test]
    fn no_false_alarms_where_the_template_guards_or_defines_a_name() {
        clean("{{ vars.coupon | default('') }}");
        clean("{{ vars.coupon | d('none') }}");
        clean("{% if vars.coupon is defined %}{{ vars.coupon }}{% endif %}");
        clean("{{ vars.coupon if vars.coupon is defined else 'x' }}");
        clean("{% for i in vars.items %}{{ i.sku }}{{ loop.index }}{% endfor %}");
        clean("{% set total = 3 %}{{ total }}");
        clean("{% macro row(x) %}{{ x }}{{ caller() }}{% endmacro %}{% call row(1) %}y{% endcall %}");
        clean("{% with a = vars.email %}{{ a }}{% endwith %}");
        clean("{{ body.anything.at.all }}{{ headers['x-y'] }}{{ query.q }}");
        clean("{{ steps.create.body.id }}{{ secret('TOKEN') }}{{ env('URL', 'x') }}");
        clean("{{ vars.email | replace('a', 'b') | upper | tojson }}{{ vars.items | join(', ') }}");
        clean("{{ vars.items | map(attribute='sku') | list }}{{ range(3) | list }}");
        clean("{{ {'a': vars.email} | json | b64encode }}");
    }
}
