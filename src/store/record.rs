//! How a run is stored, in both stores: its **input** — the request and the vars mapped from
//! it, fixed once the run is accepted — written once, and its **progress** — status, steps,
//! attempts, everything else — written at every claim and save.
//!
//! A run's record used to be one JSON value, body and all, rewritten at admission, at claim and
//! at completion (issue 35: 2.4 KB three times per run, most of it the body). Split, a claim or
//! a save rewrites only the progress. Both parts are JSON objects whose members together are
//! the run's usual JSON ([`join`] is a splice, not a parse), so a run read back is the same
//! [`Run`] an older store's whole record gives; and a store keeps reading those whole records
//! ([`parse`] with no input) — runs stored before the split are never rewritten to be read.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::request::Request;
use crate::run::{Run, RunStatus, Step, Ts};

/// The input's JSON: `{"request":…,"vars":…}`.
pub fn input_json(run: &Run) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Input {
        request: &run.request,
        vars: &run.vars,
    })
}

/// The progress's JSON: every member of the run's JSON but `request` and `vars`.
pub fn progress_json(run: &Run) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Progress::of(run))
}

/// A whole run's JSON (as the intake journal holds it) cut into its input and progress without
/// building the run: the two members are found as raw slices and spliced out.
pub fn split(whole: &[u8]) -> serde_json::Result<(Vec<u8>, Vec<u8>)> {
    #[derive(serde::Deserialize)]
    struct Spans<'a> {
        #[serde(borrow)]
        request: &'a RawValue,
        #[serde(borrow)]
        vars: &'a RawValue,
    }
    let spans: Spans<'_> = serde_json::from_slice(whole)?;
    let members = [("request", spans.request.get()), ("vars", spans.vars.get())];
    let mut input = Vec::with_capacity(members.iter().map(|(_, v)| v.len() + 12).sum::<usize>() + 2);
    input.push(b'{');
    let mut cut = Vec::new();
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            input.push(b',');
        }
        input.extend_from_slice(format!("\"{name}\":").as_bytes());
        input.extend_from_slice(value.as_bytes());
        match member_span(whole, name, value) {
            Some(span) => cut.push(span),
            None => return split_by_parsing(whole),
        }
    }
    input.push(b'}');
    cut.sort();
    let mut progress = Vec::with_capacity(whole.len().saturating_sub(input.len()));
    let mut at = 0;
    for (from, to) in cut {
        progress.extend_from_slice(&whole[at..from]);
        at = to;
    }
    progress.extend_from_slice(&whole[at..]);
    Ok((input, progress))
}

/// The byte range to remove for member `name` whose value is `value` (a slice of `whole`):
/// the key, the value and one comma beside them. `None` when the bytes around are not the
/// compact form serde_json writes (then the caller parses instead).
fn member_span(whole: &[u8], name: &str, value: &str) -> Option<(usize, usize)> {
    let start = (value.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start + value.len();
    let key = format!("\"{name}\":");
    let key_start = start.checked_sub(key.len())?;
    if &whole[key_start..start] != key.as_bytes() || key_start == 0 {
        return None;
    }
    match (whole[key_start - 1], whole.get(end)) {
        (b',', _) => Some((key_start - 1, end)),
        (b'{', Some(b',')) => Some((key_start, end + 1)),
        _ => None,
    }
}

fn split_by_parsing(whole: &[u8]) -> serde_json::Result<(Vec<u8>, Vec<u8>)> {
    let run: Run = serde_json::from_slice(whole)?;
    Ok((input_json(&run)?, progress_json(&run)?))
}

/// The run's whole JSON from its two parts.
pub fn join(input: &[u8], progress: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + progress.len());
    out.extend_from_slice(input.strip_suffix(b"}").unwrap_or(input));
    match progress.strip_prefix(b"{") {
        Some(rest) if rest.first() != Some(&b'}') => {
            out.push(b',');
            out.extend_from_slice(rest);
        }
        _ => out.push(b'}'),
    }
    out
}

/// The run from its stored record: its progress joined to its input, or — `input` `None` — a
/// whole record as stores kept it before the split.
pub fn parse(input: Option<&[u8]>, record: &[u8]) -> serde_json::Result<Run> {
    match input {
        Some(input) => serde_json::from_slice(&join(input, record)),
        None => serde_json::from_slice(record),
    }
}

/// What pruning and listing need of a run, read from its progress alone (no input).
#[derive(Debug, serde::Deserialize)]
pub struct Summary {
    pub status: RunStatus,
    pub created_at: Ts,
    pub updated_at: Ts,
    #[serde(default)]
    pub finished_at: Option<Ts>,
}

#[derive(Serialize)]
struct Input<'a> {
    request: &'a Request,
    vars: &'a Map<String, Value>,
}

/// [`Run`]'s members but its input, with the same names and the same omissions, so the two
/// parts joined deserialise as a run (`tests::the_parts_join_into_the_run` holds them to it).
#[derive(Serialize)]
struct Progress<'a> {
    id: &'a str,
    flow: &'a str,
    flow_version: &'a str,
    status: RunStatus,
    created_at: Ts,
    updated_at: Ts,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<Ts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<Ts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_key: &'a Option<String>,
    next_step: usize,
    steps: &'a [Step],
    #[serde(skip_serializing_if = "Option::is_none")]
    error: &'a Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    depth: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger_event: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_of: &'a Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    exit_keys: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_reason: &'a Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl<'a> Progress<'a> {
    fn of(run: &'a Run) -> Progress<'a> {
        // Every field named, so a field added to `Run` fails to compile here until it is placed.
        let Run {
            id,
            flow,
            flow_version,
            status,
            created_at,
            updated_at,
            next_attempt_at,
            finished_at,
            request: _,
            vars: _,
            order_key,
            next_step,
            steps,
            error,
            depth,
            trigger_event,
            replay_of,
            exit_keys,
            exit_reason,
        } = run;
        Progress {
            id,
            flow,
            flow_version,
            status: *status,
            created_at: *created_at,
            updated_at: *updated_at,
            next_attempt_at: *next_attempt_at,
            finished_at: *finished_at,
            order_key,
            next_step: *next_step,
            steps,
            error,
            depth: *depth,
            trigger_event,
            replay_of,
            exit_keys,
            exit_reason,
        }
    }
}

#[cfg(test)]
mod tests;
