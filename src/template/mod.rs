//! Templating with minijinja: one environment per loaded flow set holding the files of
//! `templates/` and every inline template of every flow, each parsed once at load.
//!
//! Rules users rely on (documented in docs/flows.md):
//! - undefined names are errors wherever they are used (see [`strict`]), so a typo fails the
//!   run, naming the expression, instead of sending `""` or `null`;
//! - `none`/`null` prints as an empty string;
//! - only `.html`/`.htm` templates auto-escape;
//! - a JSON body leaf that is exactly one `{{ expression }}` keeps the expression's type.

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::value::Value as JValue;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde_json::Value;

pub mod check;
mod guard;
mod inline;
mod json;
pub mod strict;

pub use json::{JsonTemplate, single_expression};

use inline::Merged;

/// A template problem found at load: which template, the line within it, and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub name: String,
    pub line: Option<usize>,
    pub message: String,
}

impl TemplateError {
    fn from_mj(name: &str, e: &Error) -> Self {
        TemplateError {
            name: name.to_string(),
            line: e.line(),
            message: describe(e),
        }
    }
}

/// A render failure on a run: what went wrong and where, without minijinja's debug dump.
#[derive(Debug, Clone, thiserror::Error)]
#[error("template error: {0}")]
pub struct RenderError(pub String);

/// What went wrong, in words: minijinja's detail (which names an undefined expression) or its
/// error kind, and the causes. Where it happened is added by [`Templates::locate`].
fn describe(e: &Error) -> String {
    let mut msg = match (e.kind(), e.detail()) {
        (ErrorKind::UndefinedError, Some(d)) => d.to_string(),
        (kind, Some(d)) => format!("{kind}: {d}"),
        (kind, None) => kind.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

/// Environment variable names hookflow keeps for itself; templates may not read them.
const RESERVED_PREFIX: &str = "HOOKFLOW_";

fn read_env(name: &str) -> Result<Option<String>, Error> {
    if name.starts_with(RESERVED_PREFIX) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "{name}: HOOKFLOW_* variables are hookflow's own settings and cannot be read from templates"
            ),
        ));
    }
    Ok(std::env::var(name).ok())
}

/// `env(name, default)` / `secret(name, default)`: the variable, else the default (which must
/// itself be defined), else an error saying which variable is missing.
/// Where `env()` and `secret()` read: `secret()` also reads systemd's credential NAME
/// (`$CREDENTIALS_DIRECTORY`) when the environment does not hold it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Env,
    Secret,
}

fn lookup(
    state: &State,
    name: &str,
    default: Option<JValue>,
    source: Source,
    missing: &str,
) -> Result<String, Error> {
    if let Some(v) = read_env(name)? {
        return Ok(v);
    }
    if source == Source::Secret
        && let Some(v) = crate::secret::named(name)
    {
        return Ok(v);
    }
    match default {
        Some(d) => {
            strict::defined(state, &d)?;
            Ok(d.to_string())
        }
        None => Err(Error::new(
            ErrorKind::InvalidOperation,
            missing.replace("{name}", name),
        )),
    }
}

/// All templates of one loaded flow set.
///
/// Template files and inline `.html` templates are compiled one by one. The other inline
/// templates of a flow (named `{flow}/{key path}`) are compiled together, as one template per
/// flow, by [`Templates::seal`] — see [`inline`] for why; until then each renders alone.
///
/// Cloning is cheap (compiled templates are shared), so a reload can start from the current
/// templates and change only the flows that changed ([`Templates::remove_flow`]).
#[derive(Clone)]
pub struct Templates {
    env: Environment<'static>,
    /// Names of the templates read from files of `templates/` (the rest are inline).
    files: BTreeSet<String>,
    /// Inline template name → its flow's group and its branch there.
    inline: std::collections::HashMap<String, (String, usize)>,
    /// Per flow: sources not compiled together yet, or where each branch is.
    groups: std::collections::HashMap<String, Group>,
    secret_names: BTreeSet<String>,
    secret_defaults: BTreeSet<String>,
    /// What the template files were when added (see [`TemplateFiles::fingerprint`]).
    files_fingerprint: Option<String>,
}

#[derive(Default, Clone)]
struct Group {
    /// The flow's inline sources (kept after [`Templates::seal`] for a later re-seal).
    pending: Vec<(String, String)>,
    /// Set once compiled together.
    merged: Option<std::sync::Arc<Merged>>,
    /// The flow's inline templates compiled on their own (`.html` ones).
    alone: Vec<String>,
}

/// The files of a templates directory, read: name (relative path with `/`) and source, or the
/// error reading it.
pub struct TemplateFiles {
    pub files: Vec<(String, std::path::PathBuf, std::io::Result<String>)>,
}

impl TemplateFiles {
    /// Reads every file under `dir` (recursively); a missing directory has none.
    pub fn read(dir: &Path) -> TemplateFiles {
        let mut found = Vec::new();
        if dir.is_dir() {
            collect_files(dir, dir, &mut found);
        }
        found.sort();
        TemplateFiles {
            files: found
                .into_iter()
                .map(|(name, path)| {
                    let src = std::fs::read_to_string(&path).map(strip_bom);
                    (name, path, src)
                })
                .collect(),
        }
    }

    /// A digest of every name and content: equal fingerprints, equal templates.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for (name, _, src) in &self.files {
            h.update(name.as_bytes());
            h.update([0]);
            match src {
                Ok(s) => h.update(s.as_bytes()),
                Err(e) => h.update(e.to_string().as_bytes()),
            }
            h.update([0xff]);
        }
        hex::encode(h.finalize())
    }
}

/// A UTF-8 byte order mark at the start of a file is not part of its text.
pub fn strip_bom(s: String) -> String {
    match s.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => s,
    }
}

/// The name of a flow's merged inline templates.
fn group_template(flow: &str) -> String {
    format!("{flow}/(inline templates)")
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // minijinja records where an undefined value came from (`vars.customer.emial`) only
        // in debug mode, which defaults to on in debug builds alone: the release binary said
        // just "undefined value". Users run release builds, so it is set here for both.
        env.set_debug(true);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") || name.ends_with(".htm") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| {
            strict::defined(state, value)?;
            if value.is_none() {
                Ok(())
            } else if value.kind() == minijinja::value::ValueKind::Bool {
                // Payloads want JSON's spelling, not Python's `True`.
                out.write_str(if value.is_true() { "true" } else { "false" })
                    .map_err(Error::from)
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        env.add_function("env", |state: &State, name: String, default: Option<JValue>| {
            lookup(
                state,
                &name,
                default,
                Source::Env,
                "environment variable {name} is not set",
            )
        });
        env.add_function(
            "secret",
            |state: &State, name: String, default: Option<JValue>| {
                lookup(
                    state,
                    &name,
                    default,
                    Source::Secret,
                    "secret {name} is not set in the environment",
                )
            },
        );
        env.add_filter("b64encode", |v: String| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
        });
        strict::install(&mut env);
        guard::install(&mut env);
        env.add_filter("json", |state: &State, v: JValue| -> Result<String, Error> {
            strict::defined(state, &v)?;
            serde_json::to_string(&v).map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))
        });
        Templates {
            env,
            files: BTreeSet::new(),
            inline: Default::default(),
            groups: Default::default(),
            files_fingerprint: None,
            secret_names: BTreeSet::new(),
            secret_defaults: BTreeSet::new(),
        }
    }

    /// Adds every file under `dir` (recursively), named by its path relative to `dir` with `/`
    /// separators. Returns one error per broken file; the good ones are kept.
    pub fn load_dir(&mut self, dir: &Path) -> Vec<TemplateError> {
        self.add_files(TemplateFiles::read(dir))
    }

    /// Adds files read by [`TemplateFiles::read`]; one error per broken file.
    pub fn add_files(&mut self, files: TemplateFiles) -> Vec<TemplateError> {
        self.files_fingerprint = Some(files.fingerprint());
        let mut errors = Vec::new();
        for (name, path, src) in files.files {
            match src {
                Ok(src) => {
                    self.files.insert(name.clone());
                    if let Err(e) = self.add(name.clone(), src) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(TemplateError {
                    name,
                    line: None,
                    message: format!("cannot read {}: {e}", path.display()),
                }),
            }
        }
        errors
    }

    /// The fingerprint of the template files these templates were built from.
    pub fn files_fingerprint(&self) -> Option<&str> {
        self.files_fingerprint.as_deref()
    }

    /// Forgets every inline template of `flow` (before it is compiled again, or removed).
    pub fn remove_flow(&mut self, flow: &str) {
        let Some(group) = self.groups.remove(flow) else {
            return;
        };
        if group.merged.is_some() {
            self.env.remove_template(&group_template(flow));
        }
        for name in &group.alone {
            self.env.remove_template(name);
        }
        self.inline.retain(|_, (f, _)| f != flow);
    }

    /// Parses and stores one template: a file of `templates/` (see [`Templates::load_dir`]),
    /// or an inline one named `{flow}/{key path}`.
    pub fn add(&mut self, name: String, source: String) -> Result<(), TemplateError> {
        for cap in secret_regex().captures_iter(&source) {
            self.secret_names.insert(cap[1].to_string());
            if let Some(d) = cap.get(2) {
                self.secret_defaults.insert(d.as_str().to_string());
            }
        }
        // Guarded lookups chain (`a.b.c | default(x)`): see the module.
        let source = guard::rewrite(&self.env, &name, &source);
        let html = name.ends_with(".html") || name.ends_with(".htm");
        let flow = name.split_once('/').map(|(flow, _)| flow.to_string());
        match flow {
            Some(flow) if !self.files.contains(&name) && !html => {
                // Checked alone now; compiled with the flow's others by `seal`.
                self.env
                    .template_from_str(&source)
                    .map_err(|e| TemplateError::from_mj(&name, &e))?;
                let group = self.groups.entry(flow.clone()).or_default();
                if group.merged.take().is_some() {
                    self.env.remove_template(&group_template(&flow));
                }
                self.inline.insert(name.clone(), (flow, group.pending.len()));
                group.pending.push((name, source));
                Ok(())
            }
            _ => {
                self.env
                    .add_template_owned(name.clone(), source)
                    .map_err(|e| TemplateError::from_mj(&name, &e))?;
                if let Some(flow) = flow.filter(|_| !self.files.contains(&name)) {
                    self.groups.entry(flow).or_default().alone.push(name);
                }
                Ok(())
            }
        }
    }

    /// Compiles each flow's inline templates together (once every template is added).
    pub fn seal(&mut self) {
        for (flow, group) in self
            .groups
            .iter_mut()
            .filter(|(_, g)| g.merged.is_none() && !g.pending.is_empty())
        {
            let (source, merged) = Merged::build(&group.pending);
            match self.env.add_template_owned(group_template(flow), source) {
                Ok(()) => group.merged = Some(std::sync::Arc::new(merged)),
                // Cannot happen for pieces that compiled alone; they keep rendering alone.
                Err(e) => {
                    tracing::warn!(%flow, error = %e, "inline templates could not be compiled together")
                }
            }
        }
    }

    /// What rendering the template `name` in `scope` would fail on, found without rendering
    /// it (see [`check`]); nothing for a template that is not there.
    pub fn check(&self, name: &str, scope: &check::Scope) -> Vec<check::Finding> {
        let source = match self.inline.get(name) {
            Some((flow, i)) => self.groups[flow].pending.get(*i).map(|(_, s)| s.clone()),
            None => self.env.get_template(name).ok().map(|t| t.source().to_string()),
        };
        match source {
            Some(s) => check::check(&self.env, name, &s, scope),
            None => Vec::new(),
        }
    }

    /// The names of `flow`'s inline templates (`{flow}/{key path}`).
    pub fn inline_names(&self, flow: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .inline
            .iter()
            .filter(|(_, (f, _))| f == flow)
            .map(|(n, _)| n.clone())
            .collect();
        if let Some(g) = self.groups.get(flow) {
            names.extend(g.alone.iter().cloned());
        }
        names.sort();
        names
    }

    /// Whether `name` is a file of `templates/` (not an inline template).
    pub fn is_file(&self, name: &str) -> bool {
        self.files.contains(name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.inline.contains_key(name) || self.env.get_template(name).is_ok()
    }

    /// Why a flow cannot use the template file `name`, if it cannot: there is no such file, or
    /// the file is there but did not compile — its own error, at its own line, says why, so the
    /// flow's message must not claim the file is missing.
    pub fn unusable(&self, name: &str) -> Option<String> {
        if self.has(name) {
            None
        } else if self.files.contains(name) {
            Some(format!(
                "template `{name}` does not compile (its error is reported at the template file)"
            ))
        } else {
            Some(format!("no template `{name}` in the templates directory"))
        }
    }

    /// Renders a stored template to text.
    pub fn render(&self, name: &str, ctx: &JValue) -> Result<String, RenderError> {
        let fail = |e: Error| {
            // An error inside an `{% include %}` arrives wrapped by the including template's.
            let mut chain = vec![&e];
            while let Some(inner) =
                std::error::Error::source(chain[chain.len() - 1]).and_then(|s| s.downcast_ref::<Error>())
            {
                chain.push(inner);
            }
            let (innermost, outer) = chain.split_last().expect("one error at least");
            let mut msg = format!("{} {}", describe(innermost), self.locate(innermost, name));
            for e in outer.iter().rev() {
                msg.push_str(&format!(", included {}", self.locate(e, name)));
            }
            // A field missing from this event (`body.pull_request`): say how to make it optional.
            let detail = innermost.detail().unwrap_or("");
            if innermost.kind() == ErrorKind::UndefinedError
                && detail.starts_with('`')
                && detail.split('`').nth(1).is_some_and(|n| {
                    // What the event carries (not `steps.…`: an earlier action's output).
                    let root = n.split(['.', '[']).next().unwrap_or("");
                    (n.contains('.') || n.contains('['))
                        && matches!(root, "body" | "headers" | "query" | "vars" | "item")
                })
            {
                msg.push_str(
                    " (if the event may lack it, guard it: `… | default(…)`, `… is defined` or `{% if … %}`)",
                );
            }
            RenderError(msg)
        };
        let Some((flow, branch)) = self.inline.get(name) else {
            return self
                .env
                .get_template(name)
                .map_err(fail)?
                .render(ctx)
                .map_err(fail);
        };
        let group = &self.groups[flow];
        if group.merged.is_some() {
            let selected =
                minijinja::value::merge_maps([minijinja::context! { __hookflow_t => *branch }, ctx.clone()]);
            self.env
                .get_template(&group_template(flow))
                .map_err(fail)?
                .render(selected)
                .map_err(fail)
        } else {
            self.env
                .template_from_named_str(name, &group.pending[*branch].1)
                .map_err(fail)?
                .render(ctx)
                .map_err(fail)
        }
    }

    /// Where a render error happened, for a person: the template file and line
    /// (`in templates/ticket.json.j2:3`), or the key of the flow file whose inline template
    /// it is (`in actions[0].http.body.email`, with the line inside it when it has several).
    fn locate(&self, e: &Error, rendering: &str) -> String {
        let name = e.name().unwrap_or(rendering);
        if self.files.contains(name) {
            return match e.line() {
                Some(line) => format!("in templates/{name}:{line}"),
                None => format!("in templates/{name}"),
            };
        }
        // Inline templates are named `{flow}/{key path}`; flow names hold no `/`.
        let (flow, _) = name.split_once('/').unwrap_or(("", name));
        let in_group = self
            .groups
            .get(flow)
            .and_then(|g| g.merged.as_ref())
            .filter(|_| name == group_template(flow));
        let (inline_name, line, multiline) = match (in_group, e.line()) {
            (Some(merged), Some(line)) => match merged.locate(line) {
                Some(found) => found,
                None => (rendering, line, false),
            },
            (_, line) => {
                let multiline = match self.inline.get(name) {
                    Some((flow, i)) => self.groups[flow]
                        .pending
                        .get(*i)
                        .is_some_and(|(_, src)| src.trim_end().contains('\n')),
                    None => self
                        .env
                        .get_template(name)
                        .is_ok_and(|t| t.source().contains('\n')),
                };
                (name, line.unwrap_or(1), multiline)
            }
        };
        let key = inline_name.split_once('/').map_or(inline_name, |(_, key)| key);
        if multiline {
            format!("in {key}, line {line}")
        } else {
            format!("in {key}")
        }
    }

    /// Renders a template stored by [`Templates::add_native`] back into a typed JSON value.
    pub fn render_json(&self, name: &str, ctx: &JValue) -> Result<Value, RenderError> {
        let text = self.render(name, ctx)?;
        serde_json::from_str(&text).map_err(|e| RenderError(format!("{name}: {e}")))
    }

    /// Stores `{{ expr }}` so that [`Templates::render_json`] yields the expression's value.
    pub fn add_native(&mut self, name: String, expr: &str) -> Result<(), TemplateError> {
        self.add(name, format!("{{{{ ({expr}) | tojson }}}}"))
    }

    /// Current values of every environment variable read through `secret(..)` by any template
    /// (and the defaults given to it): these are replaced by `[redacted]` wherever an attempt
    /// is recorded.
    pub fn secret_values(&self) -> Vec<String> {
        self.secret_names
            .iter()
            .filter_map(|n| crate::secret::named(n))
            .chain(self.secret_defaults.iter().cloned())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

fn secret_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r#"secret\(\s*["']([A-Za-z0-9_]+)["'](?:\s*,\s*["']([^"']*)["'])?"#).unwrap()
    })
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((name, path));
        }
    }
}

/// Converts a JSON value into a template context value.
pub fn to_value(v: &impl serde::Serialize) -> JValue {
    JValue::from(minijinja::value::Serde(v))
}

#[cfg(test)]
mod tests;
