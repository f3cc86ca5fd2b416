//! What compiling one part of a flow file needs, whoever owns the part: the flow's templates
//! to register into, and the problems found, each at the key path of the file where a person
//! has to fix it. The flow compiler ([`crate::flow`]) drives it; each action kind
//! ([`crate::action`]) and the signature schemes ([`crate::verify`]) compile their own part of
//! the file through it, so one flow's mistakes are all reported in one pass, at their lines.

use crate::mapping::JsonPath;
use crate::template::Templates;

/// A problem found while compiling a flow: at a key path of its file, or inside a template
/// file it uses (`template`: the file's name and line), where a person has to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub template: Option<(String, usize)>,
}

/// One flow's compilation in progress.
pub struct Compiler<'a> {
    /// The flow's name: inline templates are registered as `{flow}/{key path}`.
    pub flow: String,
    pub templates: &'a mut Templates,
    pub problems: Vec<Problem>,
}

impl<'a> Compiler<'a> {
    pub fn new(flow: String, templates: &'a mut Templates) -> Self {
        Compiler {
            flow,
            templates,
            problems: Vec::new(),
        }
    }

    /// Reports a problem at a key path (`actions[0].http.url`).
    pub fn problem(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: msg.into(),
            template: None,
        });
    }

    /// Registers an inline template named after the flow and key path, reporting a syntax
    /// error at that path; returns the template's name.
    pub fn template(&mut self, path: &str, src: &str) -> String {
        let name = self.name(path);
        if let Err(e) = self.templates.add(name.clone(), src.to_string()) {
            self.problem(path, format!("template syntax error: {}", e.message));
        }
        name
    }

    /// The name a template at this key path is registered under.
    pub fn name(&self, path: &str) -> String {
        format!("{}/{path}", self.flow)
    }

    /// A JSONPath, or a problem at `at`.
    pub fn path(&mut self, at: &str, text: &str) -> Option<JsonPath> {
        match JsonPath::parse(text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.problem(at, format!("invalid JSONPath `{text}`: {e}"));
                None
            }
        }
    }

    /// The part of the file at key path `at` (`actions[0].http`).
    pub fn part(&mut self, at: impl Into<String>) -> Part<'_, 'a> {
        Part {
            at: at.into(),
            cx: self,
        }
    }
}

/// The part of a flow file at one key path (`actions[0].http`), as the code that owns it sees
/// it: what it reports and registers is placed under that path, so that code speaks of its own
/// keys alone (`url`, `headers.X-Key`; `""` for the part as a whole).
pub struct Part<'c, 'a> {
    cx: &'c mut Compiler<'a>,
    at: String,
}

impl<'a> Part<'_, 'a> {
    /// The whole key path of one of the part's keys.
    pub fn path(&self, key: &str) -> String {
        join(&self.at, key)
    }

    pub fn problem(&mut self, key: &str, msg: impl Into<String>) {
        let path = self.path(key);
        self.cx.problem(path, msg);
    }

    /// Registers an inline template at `key` (see [`Compiler::template`]).
    pub fn template(&mut self, key: &str, src: &str) -> String {
        let path = self.path(key);
        self.cx.template(&path, src)
    }

    /// Registers an inline template under the name of another key (`html.html`, so that an
    /// email's inline HTML auto-escapes), reporting a syntax error at `key`.
    pub fn template_as(&mut self, key: &str, name_key: &str, src: &str) -> String {
        let name = self.name(name_key);
        if let Err(e) = self.cx.templates.add(name.clone(), src.to_string()) {
            self.problem(key, format!("template syntax error: {}", e.message));
        }
        name
    }

    /// The name a template at `key` is registered under.
    pub fn name(&self, key: &str) -> String {
        self.cx.name(&self.path(key))
    }

    pub fn templates(&mut self) -> &mut crate::template::Templates {
        self.cx.templates
    }

    /// The whole compilation, for a part nested in this one (an http action's `sign`).
    pub fn compiler(&mut self) -> &mut Compiler<'a> {
        self.cx
    }

    /// How many problems the flow has so far: a part compares before and after to know whether
    /// it found any.
    pub fn problems(&self) -> usize {
        self.cx.problems.len()
    }
}

/// `parent.key`, or `parent` when `key` is empty (`key` when `parent` is).
pub fn join(parent: &str, key: &str) -> String {
    if key.is_empty() {
        parent.to_string()
    } else if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}
