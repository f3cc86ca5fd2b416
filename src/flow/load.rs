//! Loading `flows/` and `templates/` into a [`FlowSet`]. Every problem in every file is
//! collected, each as `file:line: message`; flows without problems are kept so a server can
//! keep serving them while the broken ones are fixed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::BTreeMap;

use super::compile::{compile, version_of};
use super::locate::Lines;
use super::parse::parse;
use super::{Flow, FlowSet};
use crate::template::{TemplateFiles, Templates};

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
    let mut templates = Templates::new();
    let mut errors: Vec<LoadError> = templates
        .add_files(TemplateFiles::read(templates_dir))
        .into_iter()
        .map(|e| LoadError {
            file: templates_dir.join(&e.name),
            line: e.line,
            message: format!("template syntax error: {}", e.message),
        })
        .collect();
    let file = PathBuf::from(format!("{name}.yaml"));
    match compile_file(
        &file,
        &crate::template::strip_bom(source.to_string()),
        &mut templates,
        templates_dir,
    ) {
        Ok(flow) if flow.name == name && errors.is_empty() => {
            templates.seal();
            let mut set = FlowSet {
                templates,
                ..FlowSet::default()
            };
            set.flows.insert(flow.name.clone(), Arc::new(flow));
            Ok(set)
        }
        Ok(flow) => {
            if flow.name != name {
                errors.push(LoadError {
                    file,
                    line: None,
                    message: format!("this source names its flow `{}`, not `{name}`", flow.name),
                });
            }
            Err(errors)
        }
        Err(mut e) => {
            errors.append(&mut e);
            Err(errors)
        }
    }
}

/// Loads every flow file of `flows_dir` with the templates of `templates_dir`.
pub fn load_dir(flows_dir: &Path, templates_dir: &Path) -> (FlowSet, Vec<LoadError>) {
    load(flows_dir, templates_dir, None, &BTreeMap::new())
}

/// [`load_dir`] at a server's start: a file with problems is compiled from `last_good`
/// instead (by file: the text of its flow's last version that loaded cleanly), so the flow
/// keeps serving as it did before the restart, listed in [`FlowSet::stale`] with the file's
/// problems — exactly what a refused hot reload does. The problems are returned all the same.
pub fn load_dir_or_last_good(
    flows_dir: &Path,
    templates_dir: &Path,
    last_good: &BTreeMap<PathBuf, String>,
) -> (FlowSet, Vec<LoadError>) {
    load(flows_dir, templates_dir, None, last_good)
}

/// The name a flow file gives its flow (`name:`, else the file's stem), read as well as a
/// broken file allows: to find the flow's last good version when the file does not load.
pub fn flow_name(file: &Path, source: &str) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match serde_yaml::from_str::<serde_yaml::Value>(source) {
        Ok(serde_yaml::Value::Mapping(m)) => match m.get("name") {
            Some(serde_yaml::Value::String(n)) => n.clone(),
            _ => stem,
        },
        // Not YAML: a line `name: x` at the top level, if there is one.
        _ => source
            .lines()
            .find_map(|l| l.strip_prefix("name:"))
            .map(|n| n.trim().trim_matches(['"', '\'']).to_string())
            .filter(|n| !n.is_empty() && !n.contains(' '))
            .unwrap_or(stem),
    }
}

/// [`load_dir`], reusing from `current` every compiled flow whose file is unchanged, as long as
/// the template files are unchanged too: a one-file edit compiles one flow. The result is the
/// same as a full load.
pub fn reload_dir(current: &FlowSet, flows_dir: &Path, templates_dir: &Path) -> (FlowSet, Vec<LoadError>) {
    load(flows_dir, templates_dir, Some(current), &BTreeMap::new())
}

fn load(
    flows_dir: &Path,
    templates_dir: &Path,
    current: Option<&FlowSet>,
    last_good: &BTreeMap<PathBuf, String>,
) -> (FlowSet, Vec<LoadError>) {
    let mut errors = Vec::new();
    let files = TemplateFiles::read(templates_dir);
    let fingerprint = files.fingerprint();
    // Unchanged template files: start from the current templates and flows.
    let reuse = current.filter(|c| c.templates.files_fingerprint() == Some(fingerprint.as_str()));
    let mut templates = match reuse {
        Some(c) => c.templates.clone(),
        None => {
            let mut t = Templates::new();
            for e in t.add_files(files) {
                errors.push(LoadError {
                    file: templates_dir.join(&e.name),
                    line: e.line,
                    message: format!("template syntax error: {}", e.message),
                });
            }
            t
        }
    };
    let mut set = FlowSet::default();
    let mut files = Vec::new();
    if let Err(e) = flow_files(flows_dir, &mut files, &mut errors) {
        errors.push(LoadError {
            file: flows_dir.to_path_buf(),
            line: None,
            message: format!("cannot read the flows directory: {e}"),
        });
    }
    files.sort();
    // The current flows by file, for reuse; those left over at the end were removed.
    let mut previous: BTreeMap<PathBuf, Arc<Flow>> = reuse
        .map(|c| {
            c.flows
                .values()
                .map(|f| (f.file.clone(), Arc::clone(f)))
                .collect()
        })
        .unwrap_or_default();
    for file in files {
        let source = match std::fs::read_to_string(&file) {
            Ok(s) => crate::template::strip_bom(s),
            Err(e) => {
                errors.push(LoadError {
                    file,
                    line: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        let flow = match previous.remove(&file) {
            Some(old) if old.version == version_of(&source) => Ok(old),
            old => {
                if let Some(old) = old {
                    templates.remove_flow(&old.name);
                }
                set.compiled += 1;
                compile_file(&file, &source, &mut templates, templates_dir).map(Arc::new)
            }
        };
        // A broken file whose flow loaded cleanly before: that version, marked stale.
        let flow = match (flow, last_good.get(&file)) {
            (Err(problems), Some(good)) => match compile_file(&file, good, &mut templates, templates_dir) {
                Ok(flow) => {
                    set.stale.insert(
                        flow.name.clone(),
                        problems.iter().map(ToString::to_string).collect(),
                    );
                    errors.extend(problems);
                    Ok(Arc::new(flow))
                }
                Err(_) => Err(problems),
            },
            (flow, _) => flow,
        };
        match flow {
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
                    set.flows.insert(flow.name.clone(), flow);
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    refuse_cycles(&mut set, &mut templates, &mut errors);
    for gone in previous.values() {
        if !set.flows.contains_key(&gone.name) {
            templates.remove_flow(&gone.name);
        }
    }
    templates.seal();
    set.templates = templates;
    (set, errors)
}

/// Flows that trigger each other in a cycle are refused, each naming the whole cycle.
fn refuse_cycles(set: &mut FlowSet, templates: &mut Templates, errors: &mut Vec<LoadError>) {
    for cycle in super::graph::cycles(set.flows.values().map(|f| f.as_ref())) {
        let names: Vec<&str> = cycle.iter().map(|(n, _)| n.as_str()).collect();
        for (name, action) in &cycle {
            let Some(flow) = set.flows.remove(name) else {
                continue;
            };
            let line = std::fs::read_to_string(&flow.file).ok().and_then(|src| {
                Lines::of(crate::template::strip_bom(src).as_str())
                    .line(&format!("actions[{action}].emit.type"))
            });
            let described = if names.len() == 1 {
                format!("flow `{name}` is triggered by the event it emits: every event would start it again")
            } else {
                format!(
                    "flows {} trigger each other in a cycle (each emits an event another is triggered by)",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(" → ")
                )
            };
            errors.push(LoadError {
                file: flow.file.clone(),
                line,
                message: format!(
                    "actions[{action}].emit.type: {described}; change an event type or a trigger so the chain ends"
                ),
            });
            templates.remove_flow(name);
        }
    }
}

/// The flow files under `dir`, in subfolders too (a team may keep `flows/shop/order.yaml`),
/// but not in a flow's tests (`<flow>.tests/`) or hidden folders. A `.json` file where flows
/// live is reported rather than ignored: flow files are `.yaml` or `.yml`.
fn flow_files(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<LoadError>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if !name.ends_with(".tests") {
                flow_files(&path, files, errors)?;
            }
            continue;
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => files.push(path),
            Some("json") => errors.push(LoadError {
                file: path,
                line: None,
                message: "flow files are `.yaml` or `.yml` (YAML reads JSON too: rename it to load it); \
                          flow tests go in `<flow>.tests/`"
                    .into(),
            }),
            _ => {}
        }
    }
    Ok(())
}

/// One flow file: read (every key mistake collected), then compiled into `templates`; the
/// compiler's problems are added unless they only follow from a key that could not be read.
fn compile_file(
    file: &Path,
    source: &str,
    templates: &mut Templates,
    templates_dir: &Path,
) -> Result<Flow, Vec<LoadError>> {
    let parsed = parse(source);
    let error = |line: Option<usize>, message: String| LoadError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let mut errors: Vec<LoadError> = parsed
        .problems
        .iter()
        .map(|p| error(p.line, p.message.clone()))
        .collect();
    if let Some(spec) = &parsed.spec {
        match compile(spec, file, source, templates) {
            Ok(flow) if errors.is_empty() => return Ok(flow),
            // Compiled from what was readable, but the file has mistakes: not served.
            Ok(flow) => templates.remove_flow(&flow.name),
            Err(problems) => {
                let lines = Lines::of(source);
                for p in problems.into_iter().filter(|p| !parsed.is_consequence(&p.path)) {
                    errors.push(match p.template {
                        // Inside a template file: at its own line, naming the flow that uses it.
                        Some((name, line)) => LoadError {
                            file: templates_dir.join(&name),
                            line: Some(line),
                            message: format!("{} (used by {}, {})", p.message, file.display(), p.path),
                        },
                        None => error(lines.line(&p.path), format!("{}: {}", p.path, p.message)),
                    });
                }
            }
        }
    }
    // In the order of the file, as a compiler lists them; then those in template files.
    errors.sort_by_key(|e| (e.file != file, e.line.unwrap_or(0)));
    Err(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_error(source: &str) -> LoadError {
        match load_source("f", source, Path::new("/nonexistent-templates")) {
            Ok(_) => panic!("loaded: {source}"),
            Err(mut errors) => errors.remove(0),
        }
    }

    #[test]
    fn parser_jargon_comes_in_plain_words_at_the_line_of_the_mistake() {
        let tab = first_error("on: { webhook: {} }\nactions:\n\t- emit: { type: x }\n");
        assert_eq!(tab.line, Some(3));
        assert!(
            tab.message.starts_with("a tab in the indentation"),
            "{}",
            tab.message
        );
        let indent =
            first_error("on: { webhook: {} }\nactions:\n  - emit: { type: x }\n   - emit: { type: y }\n");
        assert_eq!(indent.line, Some(4));
        assert!(
            indent.message.starts_with("the indentation does not line up"),
            "{}",
            indent.message
        );
        assert!(!indent.message.contains("at line"), "{}", indent.message);
        let list = first_error("- on: { webhook: {} }\n  actions: []\n");
        assert!(list.message.contains("not a list"), "{}", list.message);
        let reserved = first_error("on: { webhook: {} }\nname: @home\nactions:\n  - emit: { type: x }\n");
        assert!(
            reserved.message.contains("put the value in quotes"),
            "{}",
            reserved.message
        );
    }
}
