//! Warnings: flows that load but cannot work as set up *where they run* — a signature check
//! whose secret is not in the environment (every request refused), an `http` action whose
//! literal host the egress policy refuses (every attempt refused), email without an SMTP
//! server. They depend on the machine, not the file, so they are warnings rather than load
//! errors: `validate` prints them (and fails on them with `--deny-warnings`), `serve` logs them
//! at start and after each reload, and `GET /api/flows` lists them per flow.

use std::fmt;
use std::path::PathBuf;

use super::locate::Lines;
use super::{Flow, FlowSet};
pub use crate::action::Surroundings;
pub use crate::action::email::unsubscribe_link_problem;

/// One warning about one flow, at the line of the key it is about when that is known.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Warning {
    pub flow: String,
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Key path in the flow file (`actions[1].http.url`).
    pub path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(
                f,
                "{}:{l}: warning: {}: {}",
                self.file.display(),
                self.path,
                self.message
            ),
            None => write!(
                f,
                "{}: warning: {}: {}",
                self.file.display(),
                self.path,
                self.message
            ),
        }
    }
}

/// Keys written with nothing after them (`timezone:`), which YAML reads as null and the loader
/// as left out: nearly always an unfinished line, and the editor schema flags them too. Not
/// `on.webhook` (an empty `webhook:` is a webhook with every default) and not the keys whose
/// value may be anything, null included (`equals:`, `default:`, a body or data).
fn empty_keys(source: &str) -> Vec<String> {
    const ANY_VALUE: [&str; 6] = ["equals", "not_equals", "default", "body", "data", "attributes"];
    fn walk(v: &serde_yaml::Value, path: &str, out: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m {
                    let Some(k) = k.as_str() else { continue };
                    let here = if path.is_empty() {
                        k.to_string()
                    } else {
                        format!("{path}.{k}")
                    };
                    if v.is_null() {
                        if here != "on.webhook" && !ANY_VALUE.contains(&k) {
                            out.push(here);
                        }
                    } else if !ANY_VALUE.contains(&k) {
                        walk(v, &here, out);
                    }
                }
            }
            serde_yaml::Value::Sequence(s) => {
                for (i, v) in s.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(source) {
        walk(&doc, "", &mut out);
    }
    out
}

/// Every warning about the flows of `set`, in flow order.
pub fn warnings(set: &FlowSet, around: &Surroundings) -> Vec<Warning> {
    set.flows
        .values()
        .flat_map(|f| flow_warnings(f, around))
        .collect()
}

/// The warnings about one flow (they depend on the flow's version and the surroundings only,
/// so a reload can keep those of the flows it did not change).
pub fn flow_warnings(f: &Flow, around: &Surroundings) -> Vec<Warning> {
    let mut found: Vec<(String, String)> = Vec::new();
    // A renamed copy keeps its original's `name:`: its URL is not the one its file name
    // suggests, and the original and the copy collide.
    let stem = f.file.file_stem().map(|s| s.to_string_lossy().into_owned());
    if let Some(stem) = stem.filter(|s| *s != f.name) {
        found.push((
            "name".into(),
            format!(
                "the flow is named `{}` but its file `{stem}`: its URL is /hooks/{}/…, not /hooks/{stem}/…, and a copy of the file would collide with it. Name the file `{}.yaml`, or leave `name:` out to name the flow after its file",
                f.name, f.name, f.name
            ),
        ));
    }
    if let Some(sources) = f.unset_secret() {
        let by_file = f
            .webhook()
            .and_then(|w| w.verify.as_ref())
            .is_some_and(|v| v.secret_env.is_empty());
        let (key, what) = if by_file {
            ("secret_file", format!("{sources} cannot be read"))
        } else {
            ("secret_env", format!("{sources} is not set in the environment"))
        };
        found.push((
            format!("on.webhook.verify.{key}"),
            format!(
                "{what}: every request to `{}` is refused (401) until it is",
                f.name
            ),
        ));
    }
    for (i, a) in f.actions.iter().enumerate() {
        found.extend(a.kind.warnings(&format!("actions[{i}]"), &a.name, around));
    }
    found.extend(empty_keys(&f.source).into_iter().map(|path| {
        let key = path.rsplit('.').next().unwrap_or(&path).to_string();
        (
            path,
            format!("`{key}:` has no value, so it is read as left out; give it a value or remove the line"),
        )
    }));
    if found.is_empty() {
        return Vec::new();
    }
    let lines = Lines::of(&f.source);
    found
        .into_iter()
        .map(|(path, message)| Warning {
            flow: f.name.clone(),
            file: f.file.clone(),
            line: lines.line(&path),
            path,
            message,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_left_empty_are_found_but_not_an_empty_webhook_or_a_null_value() {
        let src = "on:\n  webhook:\nvars:\n  tz:\n    header: X-Tz\n    default:\nactions:\n  - http:\n      url: http://x\n      timeout:\n    when:\n      - path: $.a\n        equals:\n  - wait:\n      for: 1d\n      at:\n";
        assert_eq!(
            super::empty_keys(src),
            ["actions[0].http.timeout", "actions[1].wait.at"]
        );
    }
}
