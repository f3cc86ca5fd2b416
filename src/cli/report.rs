//! `validate`'s report, in three forms: for a person (`file:line: problem`), as one JSON
//! document (for tools), and as GitHub Actions workflow commands (`::error file=…,line=…::`),
//! which a pull request shows at the line of each problem.

use std::path::Path;

use serde_json::json;

use crate::flow::{FlowSet, LoadError, warnings::Warning};

pub(super) fn human(dir: &Path, set: &FlowSet, errors: &[LoadError], warnings: &[Warning], deny: bool) {
    for w in warnings {
        eprintln!("{w}");
    }
    let denied = if deny { warnings.len() } else { 0 };
    if errors.is_empty() && denied == 0 {
        let noted = match warnings.len() {
            0 => String::new(),
            n => format!(", {n} warning(s)"),
        };
        println!("{} flow(s) OK in {}{noted}", set.flows.len(), dir.display());
        return;
    }
    super::print_errors(errors);
    let warned = match (warnings.len(), deny) {
        (0, _) => String::new(),
        (n, true) => format!("; {n} warning(s), denied by --deny-warnings"),
        (n, false) => format!("; {n} warning(s)"),
    };
    eprintln!(
        "{} problem(s){warned}; {} flow(s) valid",
        errors.len(),
        set.flows.len()
    );
}

/// `{"ok", "flows", "problems": [{"severity", "file", "line", "key", "message"}]}`.
pub(super) fn json(set: &FlowSet, errors: &[LoadError], warnings: &[Warning], ok: bool) {
    let mut problems: Vec<serde_json::Value> = errors
        .iter()
        .map(|e| {
            json!({
                "severity": "error",
                "file": e.file.display().to_string(),
                "line": e.line,
                "message": e.message,
            })
        })
        .collect();
    problems.extend(warnings.iter().map(|w| {
        json!({
            "severity": "warning",
            "file": w.file.display().to_string(),
            "line": w.line,
            "key": w.path,
            "message": w.message,
            "flow": w.flow,
        })
    }));
    let doc = json!({
        "ok": ok,
        "flows": set.flows.keys().collect::<Vec<_>>(),
        "problems": problems,
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}

/// One workflow command per problem (`--deny-warnings` makes warnings errors too).
pub(super) fn github(errors: &[LoadError], warnings: &[Warning], deny: bool) {
    for e in errors {
        println!("{}", command("error", &e.file, e.line, &e.message));
    }
    let level = if deny { "error" } else { "warning" };
    for w in warnings {
        println!(
            "{}",
            command(level, &w.file, w.line, &format!("{}: {}", w.path, w.message))
        );
    }
}

/// `::error file=F,line=L::message`, escaped as GitHub's toolkit escapes: `%`, CR and LF in
/// the message, and `,` and `:` too in properties.
fn command(level: &str, file: &Path, line: Option<usize>, message: &str) -> String {
    let data = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    let line = line.map(|l| format!(",line={l}")).unwrap_or_default();
    format!(
        "::{level} file={}{line},title=hookflow validate::{}",
        prop(&file.display().to_string()),
        data(message)
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn workflow_commands_are_escaped_as_githubs_toolkit_does() {
        let c = super::command("error", Path::new("flows/a,b:c.yaml"), Some(3), "50% off\nnext");
        assert_eq!(
            c,
            "::error file=flows/a%2Cb%3Ac.yaml,line=3,title=hookflow validate::50%25 off%0Anext"
        );
        let c = super::command("warning", Path::new("f.yaml"), None, "x");
        assert_eq!(c, "::warning file=f.yaml,title=hookflow validate::x");
    }
}
