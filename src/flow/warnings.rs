//! Warnings: flows that load but cannot work as set up *where they run* — a signature check
//! whose secret is not in the environment (every request refused), an `http` action whose
//! literal host the egress policy refuses (every attempt refused), email without an SMTP
//! server. They depend on the machine, not the file, so they are warnings rather than load
//! errors: `validate` prints them (and fails on them with `--deny-warnings`), `serve` logs them
//! at start and after each reload, and `GET /api/flows` lists them per flow.

use std::fmt;
use std::path::PathBuf;

use super::FlowSet;
use super::locate::Lines;

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

/// What the flows will run against.
#[derive(Debug, Clone, Default)]
pub struct Surroundings {
    pub egress: crate::egress::Policy,
    /// Whether an SMTP server is configured; `None` where that is not known (validate).
    pub has_mailer: Option<bool>,
}

/// Every warning about the flows of `set`, in flow order.
pub fn warnings(set: &FlowSet, around: &Surroundings) -> Vec<Warning> {
    let mut out = Vec::new();
    for f in set.flows.values() {
        let lines = Lines::of(&f.source);
        let mut warn = |path: String, message: String| {
            out.push(Warning {
                flow: f.name.clone(),
                file: f.file.clone(),
                line: lines.line(&path),
                path,
                message,
            })
        };
        if let Some(vars) = f.unset_secret_env() {
            warn(
                "on.webhook.verify.secret_env".into(),
                format!(
                    "{} is not set in the environment: every request to `{}` is refused (401) until it is",
                    vars.join(", "),
                    f.name
                ),
            );
        }
        for (i, a) in f.actions.iter().enumerate() {
            if around.has_mailer == Some(false) && matches!(a.kind, crate::action::ActionKind::Email(_)) {
                warn(
                    format!("actions[{i}].email"),
                    format!(
                        "no SMTP server is configured (--smtp-host): every attempt of `{}` fails",
                        a.name
                    ),
                );
            }
        }
    }
    for (flow, action, why) in crate::egress::refused_literals(set, &around.egress) {
        let Some(f) = set.flows.get(&flow) else { continue };
        let index = f.actions.iter().position(|a| a.name == action).unwrap_or(0);
        let path = format!("actions[{index}].http.url");
        out.push(Warning {
            line: Lines::of(&f.source).line(&path),
            flow,
            file: f.file.clone(),
            path,
            message: format!("{why}; every attempt of `{action}` is refused"),
        });
    }
    out
}
