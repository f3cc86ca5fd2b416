//! Flow tests users keep in their own repositories: `flows/<flow>.tests/*.json`, each a sample
//! request and what should come of it, checked by `hookflow validate --run-tests` with the
//! same dry run as `hookflow test`. `hookflow capture RUN_ID` turns a stored run into one.
//!
//! ```json
//! {
//!   "request": {"method": "POST", "headers": {"x-topic": "order.created"}, "query": {}, "body": {…}},
//!   "expect": {
//!     "outcome": "matched",                       // or "not_matched", "error"
//!     "vars": {"order_id": 4711},                 // these vars, with these values
//!     "actions": {"create_ticket": {"url": "…", "body": {…}}}   // fields of what would be sent
//!   }
//! }
//! ```
//! Expectations are partial: only the keys given are compared (recursively for objects).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::dryrun::dry_run;
use crate::flow::FlowSet;
use crate::run::Run;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub request: SampleRequest,
    #[serde(default)]
    pub expect: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRequest {
    #[serde(default = "post")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Value,
}

fn post() -> String {
    "POST".into()
}

/// `expected` found in `actual`: equal scalars and arrays, and every key of an expected object
/// present with a matching value. The first difference, as a path.
pub fn mismatch(expected: &Value, actual: &Value, at: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().find_map(|(k, ev)| match a.get(k) {
            Some(av) => mismatch(ev, av, &format!("{at}.{k}")),
            None => Some(format!("{at}.{k}: expected {ev}, missing")),
        }),
        (e, a) if e == a => None,
        // A number written as a string in the fixture matches the number (and vice versa).
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s))
            if s == &n.to_string() =>
        {
            None
        }
        (e, a) => Some(format!("{at}: expected {e}, got {a}")),
    }
}

/// Checks one fixture against `flow`; `Err` describes the failure.
pub fn check(set: &FlowSet, flow: &str, fx: &Fixture) -> Result<(), String> {
    let f = set.get(flow).ok_or_else(|| format!("no flow `{flow}`"))?;
    let mut headers: BTreeMap<String, String> = fx
        .request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let bytes = match &fx.request.body {
        Value::String(s) => s.clone().into_bytes(),
        Value::Null => Vec::new(),
        other => {
            headers
                .entry("content-type".into())
                .or_insert_with(|| "application/json".into());
            serde_json::to_vec(other).map_err(|e| e.to_string())?
        }
    };
    let report = dry_run(
        f,
        &set.templates,
        &fx.request.method,
        headers,
        fx.request.query.clone(),
        &bytes,
    );
    let mut actual = report.clone();
    // Actions by name, with what they would send, for partial comparison.
    let mut by_name = serde_json::Map::new();
    for a in report["actions"].as_array().into_iter().flatten() {
        let v = if a.get("would_send").is_some() {
            a["would_send"].clone()
        } else {
            a.clone()
        };
        by_name.insert(a["name"].as_str().unwrap_or("").to_string(), v);
    }
    actual["actions"] = Value::Object(by_name);
    let expect = if fx.expect.is_null() {
        json!({"outcome": "matched"})
    } else {
        fx.expect.clone()
    };
    match mismatch(&expect, &actual, "$") {
        None => Ok(()),
        Some(m) => Err(match report["reason"].as_str() {
            Some(r) => format!("{m} ({r})"),
            None => m,
        }),
    }
}

/// Runs every fixture under `flows_dir/<flow>.tests/`; prints one line each; returns failures.
pub fn run_all(set: &FlowSet, flows_dir: &Path) -> usize {
    let mut failures = 0;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(flows_dir) else {
        return 0;
    };
    let mut dirs: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let Some(flow) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".tests"))
        else {
            continue;
        };
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for file in files {
            total += 1;
            let shown = file.display();
            let result = std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<Fixture>(&b).map_err(|e| format!("not a fixture: {e}"))
                })
                .and_then(|fx| check(set, flow, &fx));
            match result {
                Ok(()) => println!("PASS {shown}"),
                Err(e) => {
                    failures += 1;
                    println!("FAIL {shown}: {e}");
                }
            }
        }
    }
    println!("{} of {total} flow test(s) passed", total - failures);
    failures
}

/// A fixture from a request-log entry (one whose body was kept), expecting what happened:
/// `matched` for accepted or duplicate requests, `not_matched` for ignored ones.
pub fn from_logged(entry: &Value) -> Option<Fixture> {
    let outcome = match entry["outcome"].as_str()? {
        "accepted" | "duplicate" => "matched",
        "ignored" => "not_matched",
        _ => return None,
    };
    let body = entry["body"].as_str()?;
    let body = serde_json::from_str::<Value>(body).unwrap_or_else(|_| Value::String(body.to_string()));
    let headers = entry["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter(|(_, v)| v.as_str() != Some("[redacted]"))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    Some(Fixture {
        request: SampleRequest {
            method: entry["method"].as_str().unwrap_or("POST").to_string(),
            headers,
            query: BTreeMap::new(),
            body,
        },
        expect: json!({"outcome": outcome}),
    })
}

/// A fixture from a stored run: its request, and the outcome and vars it had.
pub fn from_run(run: &Run) -> Fixture {
    Fixture {
        request: SampleRequest {
            method: run.request.method.clone(),
            headers: run.request.headers.clone(),
            query: run.request.query.clone(),
            body: run.request.body.clone(),
        },
        expect: json!({"outcome": "matched", "vars": run.vars}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_comparison() {
        let actual = json!({"outcome": "matched", "vars": {"a": 1, "b": "x"}, "actions": {"t": {"url": "u", "body": {"k": [1, 2]}}}});
        assert_eq!(mismatch(&json!({"vars": {"a": 1}}), &actual, "$"), None);
        assert_eq!(mismatch(&json!({"vars": {"a": "1"}}), &actual, "$"), None);
        assert_eq!(
            mismatch(&json!({"actions": {"t": {"body": {"k": [1, 2]}}}}), &actual, "$"),
            None
        );
        assert_eq!(
            mismatch(&json!({"vars": {"b": "y"}}), &actual, "$").unwrap(),
            r#"$.vars.b: expected "y", got "x""#
        );
        assert!(
            mismatch(&json!({"actions": {"missing": {}}}), &actual, "$")
                .unwrap()
                .contains("missing")
        );
        assert!(mismatch(&json!({"actions": {"t": {"body": {"k": [1]}}}}), &actual, "$").is_some());
    }
}
