//! Loading `flows/` and `templates/` into a [`FlowSet`]. Every problem in every file is
//! collected, each as `file:line: message`; flows without problems are kept so a server can
//! keep serving them while the broken ones are fixed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::FlowSet;
use super::compile::compile;
use super::locate::Lines;
use super::spec::FlowSpec;
use crate::template::Templates;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Loads every `*.yaml`/`*.yml` directly under `flows_dir`, with the templates of
/// `templates_dir` (which may be absent).
/// One flow from its source text (e.g. an earlier version kept in the store), with the
/// templates directory as it is now: a set holding just that flow.
pub fn load_source(name: &str, source: &str, templates_dir: &Path) -> Result<FlowSet, Vec<LoadError>> {
    let dir = std::env::temp_dir().join(format!("hookflow-flow-{}", crate::run::new_run_id()));
    let write =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(format!("{name}.yaml")), source));
    if let Err(e) = write {
        return Err(vec![LoadError {
            file: dir,
            line: None,
            message: format!("cannot stage the flow: {e}"),
        }]);
    }
    let (set, errors) = load_dir(&dir, templates_dir);
    let _ = std::fs::remove_dir_all(&dir);
    if errors.is_empty() && set.get(name).is_some() {
        Ok(set)
    } else {
        Err(errors)
    }
}

pub fn load_dir(flows_dir: &Path, templates_dir: &Path) -> (FlowSet, Vec<LoadError>) {
    let mut errors = Vec::new();
    let mut templates = Templates::new();
    if templates_dir.is_dir() {
        for e in templates.load_dir(templates_dir) {
            errors.push(LoadError {
                file: templates_dir.join(&e.name),
                line: e.line,
                message: format!("template syntax error: {}", e.message),
            });
        }
    }
    let mut set = FlowSet::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(flows_dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect(),
        Err(e) => {
            errors.push(LoadError {
                file: flows_dir.to_path_buf(),
                line: None,
                message: format!("cannot read the flows directory: {e}"),
            });
            Vec::new()
        }
    };
    files.sort();
    for file in files {
        let source = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) => {
                errors.push(LoadError {
                    file,
                    line: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        let spec: FlowSpec = match serde_yaml::from_str(&source) {
            Ok(s) => s,
            Err(e) => {
                errors.push(LoadError {
                    line: e.location().map(|l| l.line()),
                    message: yaml_message(&e),
                    file,
                });
                continue;
            }
        };
        match compile(&spec, &file, &source, &mut templates) {
            Ok(flow) => {
                if let Some(other) = set.flows.get(&flow.name) {
                    let lines = Lines::of(&source);
                    errors.push(LoadError {
                        line: lines.line("name"),
                        message: format!(
                            "flow name `{}` is already used by {}",
                            flow.name,
                            other.file.display()
                        ),
                        file,
                    });
                } else {
                    set.flows.insert(flow.name.clone(), Arc::new(flow));
                }
            }
            Err(problems) => {
                let lines = Lines::of(&source);
                for (path, message) in problems {
                    errors.push(LoadError {
                        file: file.clone(),
                        line: lines.line(&path),
                        message: format!("{path}: {message}"),
                    });
                }
            }
        }
    }
    set.templates = templates;
    (set, errors)
}

/// serde_yaml's message without the trailing "at line X column Y" (the line is shown first).
fn yaml_message(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}
