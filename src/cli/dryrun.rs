//! `hookflow test FLOW --payload FILE`: what a flow would do with a sample request — trigger
//! conditions, vars, and every action rendered as it would be sent — with no side effect
//! (nothing stored, nothing sent). Exit 0: matched; 1: not matched; 2: error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::action::ExecContext;
use crate::context::{EventFacts, RunInfo, item_context, template_context};
use crate::engine::idempotency_key;
use crate::event::Origin;
use crate::flow::{Flow, load_dir};
use crate::matching::{Verdict, check_all};
use crate::request::{Request, parse_body};
use crate::settings::Paths;
use crate::trigger::{Cause, Prepared, prepare};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The flow's name.
    pub flow: String,
    /// The sample body (a file; `-` for standard input).
    #[arg(long)]
    pub payload: PathBuf,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// A query parameter, `name=value` (repeatable).
    #[arg(long = "query", short = 'q')]
    pub query: Vec<String>,
    /// Request method; default POST.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: Paths,
}

/// Exit 0 matched, 1 not matched, 2 anything else (an unknown flow, an unreadable payload, a
/// body that does not parse, an action that would fail) — as `--help` says.
pub fn test_cmd(args: TestArgs) -> ExitCode {
    match test(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn test(args: TestArgs) -> Result<ExitCode> {
    let (set, errors) = load_dir(&args.paths.flows_dir, &args.paths.templates_dir);
    let flow = match set.get(&args.flow) {
        Some(f) => f.clone(),
        None => {
            for e in &errors {
                eprintln!("{e}");
            }
            bail!(
                "no valid flow named `{}` in {}",
                args.flow,
                args.paths.flows_dir.display()
            );
        }
    };
    let bytes = if args.payload.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
        b
    } else {
        std::fs::read(&args.payload).with_context(|| format!("reading {}", args.payload.display()))?
    };
    let mut headers = std::collections::BTreeMap::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("header `{h}` is not `Name: value`"))?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let query = args
        .query
        .iter()
        .map(|q| {
            q.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("query `{q}` is not `name=value`"))
        })
        .collect::<Result<_>>()?;
    let report = dry_run(&flow, &set.templates, &args.method, headers, query, &bytes);
    let code = match report["outcome"].as_str() {
        Some("matched") => 0,
        Some("not_matched") => 1,
        _ => 2,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(ExitCode::from(code))
}

/// The report: `outcome` (`matched`, `not_matched`, `error`), `reason`, `vars`, `actions`.
pub fn dry_run(
    flow: &Flow,
    templates: &crate::template::Templates,
    method: &str,
    headers: std::collections::BTreeMap<String, String>,
    query: std::collections::BTreeMap<String, String>,
    bytes: &[u8],
) -> Value {
    let content_type = headers.get("content-type").cloned().or_else(|| {
        // A sample file without a declared type: JSON if it looks like JSON — so a broken
        // sample is reported with the JSON parser's own words, not as a missing type.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        matches!(first, Some(b'{') | Some(b'['))
            .then(|| "application/json".to_string())
            .or_else(|| {
                serde_json::from_slice::<Value>(bytes)
                    .ok()
                    .map(|_| "application/json".to_string())
            })
    });
    let mode = flow.webhook().map(|w| w.body).unwrap_or_default();
    let body = match parse_body(mode, content_type.as_deref(), bytes) {
        Ok(b) => b,
        Err(e) => return json!({"outcome": "error", "reason": e.to_string()}),
    };
    let request = Request {
        method: method.to_ascii_uppercase(),
        headers,
        query,
        body,
    };
    let run = match prepare(flow, flow.when(), templates, request, Cause::default()) {
        Ok(Prepared::Run(run, _)) => run,
        Ok(Prepared::Ignored(why)) => {
            return json!({"outcome": "not_matched", "reason": format!("condition not met: {why}")});
        }
        Err(e) => return json!({"outcome": "error", "reason": e.to_string()}),
    };
    let secrets = templates.secret_values();
    let mut actions = Vec::new();
    let mut failed = None;
    for action in &flow.actions {
        let key = idempotency_key(&run.id, &action.name);
        let ctx = template_context(
            &RunInfo {
                flow: &flow.name,
                run_id: &run.id,
                attempt: 1,
                idempotency_key: &key,
            },
            &run.request,
            &run.vars,
            &run.step_outputs(),
        );
        let facts = EventFacts {
            request: &run.request,
            vars: &run.vars,
            templates,
            ctx: &ctx,
        };
        let entry = match check_all(&action.when, &facts) {
            Ok(Verdict::NoMatch(why)) => {
                json!({"name": action.name, "kind": action.kind.kind_name(), "skipped": why.to_string()})
            }
            Err(e) => json!({"name": action.name, "kind": action.kind.kind_name(), "error": e}),
            Ok(Verdict::Match) => {
                let info = RunInfo {
                    flow: &flow.name,
                    run_id: &run.id,
                    attempt: 1,
                    idempotency_key: &key,
                };
                // A per-item action is rendered once per item, with `item` and `item_index`,
                // as the engine attempts it.
                let rendered = match &action.for_each {
                    None => preview(action, templates, ctx, &key, &secrets, flow, &run.id),
                    Some(each) => match crate::engine::items_of(templates, flow, &run, each) {
                        Err(e) => Err(format!("for_each: {e}")),
                        Ok(items) => items
                            .iter()
                            .enumerate()
                            .map(|(i, item)| {
                                let ctx = item_context(
                                    &info,
                                    &run.request,
                                    &run.vars,
                                    &run.step_outputs(),
                                    item,
                                    i,
                                );
                                let key = format!("{key}.{i}");
                                preview(action, templates, ctx, &key, &secrets, flow, &run.id)
                                    .map_err(|e| format!("item {i}: {e}"))
                            })
                            .collect::<Result<Vec<_>, _>>()
                            .map(|each| json!({ "items": each })),
                    },
                };
                match rendered {
                    Ok(p) => json!({"name": action.name, "kind": action.kind.kind_name(), "would_send": p}),
                    // The outputs of earlier actions are unknown in a dry run: not an error.
                    Err(e) if e.contains("`steps.") => json!({
                        "name": action.name,
                        "kind": action.kind.kind_name(),
                        "unknown": format!("uses the output of an earlier action, which a dry run does not have ({e})"),
                    }),
                    Err(e) => {
                        failed.get_or_insert_with(|| format!("action `{}`: {e}", action.name));
                        json!({"name": action.name, "kind": action.kind.kind_name(), "error": e})
                    }
                }
            }
        };
        actions.push(entry);
    }
    let mut vars = run.vars.clone();
    for v in vars.values_mut() {
        if let Value::String(s) = v {
            *s = crate::action::redact(s, &secrets);
        }
    }
    json!({
        "outcome": if failed.is_some() { "error" } else { "matched" },
        "reason": failed,
        "order_key": run.order_key,
        "vars": vars,
        "actions": actions,
    })
}

/// One rendering of `action` as it would be sent.
fn preview(
    action: &crate::action::Action,
    templates: &crate::template::Templates,
    ctx: minijinja::Value,
    key: &str,
    secrets: &[String],
    flow: &Flow,
    run_id: &str,
) -> Result<Value, String> {
    let cx = ExecContext {
        templates,
        ctx,
        idempotency_key: key.to_string(),
        secrets: secrets.to_vec(),
        origin: Origin::run(&flow.name, run_id, Some(&action.name)),
        event_depth: 1,
    };
    action.preview(&cx)
}

fn human(r: &Value) -> String {
    let mut out = String::new();
    let outcome = r["outcome"].as_str().unwrap_or("error");
    let line = match outcome {
        "matched" => "MATCHED: the flow would run".to_string(),
        "not_matched" => format!("NOT MATCHED: {}", r["reason"].as_str().unwrap_or("")),
        _ => format!("ERROR: {}", r["reason"].as_str().unwrap_or("")),
    };
    out.push_str(&line);
    out.push('\n');
    if let Some(vars) = r["vars"].as_object() {
        out.push_str("\nvars:\n");
        for (k, v) in vars {
            out.push_str(&format!("  {k} = {v}\n"));
        }
    }
    if let Some(k) = r["order_key"].as_str() {
        out.push_str(&format!("ordering key: {k}\n"));
    }
    for a in r["actions"].as_array().into_iter().flatten() {
        let name = a["name"].as_str().unwrap_or("");
        let kind = a["kind"].as_str().unwrap_or("");
        out.push_str(&format!("\naction {name} ({kind}):\n"));
        if let Some(s) = a["skipped"].as_str() {
            out.push_str(&format!("  skipped: {s}\n"));
        } else if let Some(u) = a["unknown"].as_str() {
            out.push_str(&format!("  not rendered: {u}\n"));
        } else if let Some(e) = a["error"].as_str() {
            out.push_str(&format!("  error: {e}\n"));
        } else {
            let w = &a["would_send"];
            match w["items"].as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        out.push_str(&format!("  item {i}:\n"));
                        would_send(&mut out, kind, item, "    ");
                    }
                }
                None => would_send(&mut out, kind, w, "  "),
            }
        }
    }
    out
}

/// One rendered request or message, indented.
fn would_send(out: &mut String, kind: &str, w: &Value, indent: &str) {
    if kind == "http" {
        out.push_str(&format!(
            "{indent}{} {}\n",
            w["method"].as_str().unwrap_or(""),
            w["url"].as_str().unwrap_or("")
        ));
        for h in w["headers"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "{indent}{}: {}\n",
                h[0].as_str().unwrap_or(""),
                h[1].as_str().unwrap_or("")
            ));
        }
        let body = match &w["body"] {
            Value::String(s) => s.clone(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        };
        if !body.is_empty() {
            out.push('\n');
            for l in body.lines() {
                out.push_str(&format!("{indent}{l}\n"));
            }
        }
    } else {
        for l in serde_json::to_string_pretty(w).unwrap_or_default().lines() {
            out.push_str(&format!("{indent}{l}\n"));
        }
    }
}
