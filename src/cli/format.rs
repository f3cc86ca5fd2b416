//! Plain-text rendering of runs for the terminal.

use std::fmt::Write;

use crate::run::Run;
use crate::server::api::RunSummary;

pub fn runs_table(runs: &[RunSummary]) -> String {
    if runs.is_empty() {
        return "no runs\n".into();
    }
    let flow_w = runs.iter().map(|r| r.flow.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<26}  {:<flow_w$}  {:<9}  {:<24}  {:>8}  ERROR\n",
        "ID", "FLOW", "STATUS", "CREATED", "ATTEMPTS"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<26}  {:<flow_w$}  {:<9}  {:<24}  {:>8}  {}",
            r.id,
            r.flow,
            r.status.as_str(),
            r.created_at.to_string(),
            r.attempts,
            r.error.as_deref().unwrap_or("")
        );
    }
    out
}

pub fn run_detail(run: &Run) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "run      {}", run.id);
    let _ = writeln!(o, "flow     {} (version {})", run.flow, run.flow_version);
    let _ = writeln!(o, "status   {}", run.status.as_str());
    let _ = writeln!(o, "created  {}", run.created_at);
    if let Some(t) = run.next_attempt_at {
        let what = if run.status == crate::run::RunStatus::Waiting {
            "wakes"
        } else {
            "next"
        };
        let _ = writeln!(o, "{what:<8} {t}");
    }
    if !run.status.is_terminal() {
        let left: Vec<&str> = run
            .steps
            .iter()
            .skip(run.next_step)
            .map(|s| s.name.as_str())
            .collect();
        if !left.is_empty() {
            let _ = writeln!(o, "to do    {}", left.join(" → "));
        }
    }
    if let Some(r) = &run.exit_reason {
        let _ = writeln!(o, "exited   {r}");
    }
    if let Some(t) = run.finished_at {
        let _ = writeln!(o, "finished {t}");
    }
    if let Some(e) = &run.error {
        let _ = writeln!(o, "error    {e}");
    }
    if let Some(k) = &run.order_key {
        let _ = writeln!(o, "order    {k}");
    }
    let _ = writeln!(
        o,
        "vars     {}",
        serde_json::to_string(&run.vars).unwrap_or_default()
    );
    for (i, step) in run.steps.iter().enumerate() {
        let _ = writeln!(o, "\n[{}] {} — {:?}", i + 1, step.name, step.status);
        attempt_lines(&mut o, &step.attempts, "  ");
        for (k, item) in step.items.iter().enumerate() {
            let _ = write!(o, "  item {k} — {:?}", item.status);
            if let Some(t) = item.retry_at {
                let _ = write!(o, " (next try {t})");
            }
            o.push('\n');
            attempt_lines(&mut o, &item.attempts, "    ");
        }
    }
    o
}

/// Each attempt: a line (when, how long, outcome, what was sent, what came back), then the
/// request and the response as they were recorded — headers and bodies, the same as `--json`
/// holds (secrets are already masked in the record) — and its error, if any.
fn attempt_lines(o: &mut String, attempts: &[crate::run::Attempt], indent: &str) {
    for a in attempts {
        let _ = write!(
            o,
            "{indent}attempt {} at {} ({} ms): {:?}",
            a.number, a.started_at, a.duration_ms, a.outcome
        );
        if let Some(req) = &a.request {
            let _ = write!(o, " — {} {}", req.method, req.url);
        }
        if let Some(resp) = &a.response {
            let _ = write!(o, " → {}", resp.status);
        }
        o.push('\n');
        let inner = format!("{indent}    ");
        if let Some(req) = &a.request {
            let _ = writeln!(o, "{indent}  request:");
            headers_and_body(o, &req.headers, &req.body, &inner);
        }
        if let Some(resp) = &a.response {
            let size = match (resp.truncated, resp.size) {
                (true, Some(n)) => format!(" (first bytes of {n})"),
                (true, None) => " (first bytes)".to_string(),
                _ => String::new(),
            };
            let _ = writeln!(o, "{indent}  response {}{size}:", resp.status);
            headers_and_body(o, &resp.headers, &resp.body, &inner);
        }
        if let Some(e) = &a.error {
            let _ = writeln!(o, "{indent}  error: {e}");
        }
    }
}

fn headers_and_body(o: &mut String, headers: &[(String, String)], body: &str, indent: &str) {
    for (k, v) in headers {
        let _ = writeln!(o, "{indent}{k}: {v}");
    }
    if !body.is_empty() {
        if !headers.is_empty() {
            let _ = writeln!(o, "{indent}");
        }
        for line in body.lines() {
            let _ = writeln!(o, "{indent}{line}");
        }
    }
}
