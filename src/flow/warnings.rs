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
