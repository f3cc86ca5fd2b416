use serde_json::json;

use super::*;
use crate::run::{Attempt, AttemptOutcome, Item, StepStatus};

fn request() -> Request {
    Request {
        method: "POST".into(),
        headers: [("content-type".to_string(), "application/json".to_string())].into(),
        query: [("src".to_string(), "shop".to_string())].into(),
        // Keys out of alphabetical order: the stored body keeps the order it arrived in.
        body: json!({"zeta": 1, "alpha": {"x": [1, 2.5, "three"]}, "id": 1042, "note": "\"quoted\" \u{e9}"}),
    }
}

/// A run with every optional member set, so each one's place in the parts is checked.
fn full_run() -> Run {
    let mut vars = Map::new();
    vars.insert("email".into(), json!("ada@example.com"));
    vars.insert("total".into(), json!(12.5));
    let mut run = Run::new(
        "orders",
        "v1",
        request(),
        vars,
        Some("ada".into()),
        ["post".to_string()],
    );
    run.status = RunStatus::Retrying;
    run.next_attempt_at = Some(Ts(1_700_000_000_000));
    run.finished_at = Some(Ts(1_700_000_000_500));
    run.next_step = 1;
    run.steps[0].status = StepStatus::Failed;
    run.steps[0].output = Some(json!({"b": 1, "a": 2}));
    run.steps[0].attempts.push(Attempt {
        number: 1,
        started_at: Ts(1_700_000_000_100),
        duration_ms: 12,
        outcome: AttemptOutcome::Retry,
        request: None,
        response: None,
        error: Some("connection refused".into()),
    });
    run.steps[0].items.push(Item::default());
    run.error = Some("boom".into());
    run.depth = 2;
    run.trigger_event = Some("order.paid".into());
    run.replay_of = Some("01h000".into());
    run.exit_keys = vec!["ada@example.com".into()];
    run.exit_reason = Some("unsubscribed".into());
    run
}

fn minimal_run() -> Run {
    Run::new("orders", "v1", request(), Map::new(), None, Vec::<String>::new())
}

#[test]
fn the_parts_join_into_the_run() {
    for run in [full_run(), minimal_run()] {
        let (input, progress) = (input_json(&run).unwrap(), progress_json(&run).unwrap());
        assert_eq!(parse(Some(&input), &progress).unwrap(), run);
        // The same bytes as the run's own JSON, member for member: a joined record and a whole
        // one are indistinguishable to readers.
        let joined: Value = serde_json::from_slice(&join(&input, &progress)).unwrap();
        assert_eq!(joined, serde_json::to_value(&run).unwrap());
    }
}

#[test]
fn the_progress_holds_nothing_of_the_request() {
    let run = full_run();
    let progress = String::from_utf8(progress_json(&run).unwrap()).unwrap();
    for needle in [
        "zeta",
        "content-type",
        "ada@example.com\",\"total",
        "\"request\"",
        "\"vars\"",
    ] {
        assert!(!progress.contains(needle), "{needle} in {progress}");
    }
    let input = String::from_utf8(input_json(&run).unwrap()).unwrap();
    assert!(input.contains("zeta") && input.contains("12.5"), "{input}");
    assert!(progress.len() + input.len() < serde_json::to_vec(&run).unwrap().len() + 8);
}

#[test]
fn a_whole_record_splits_into_the_same_parts_without_parsing_the_run() {
    for run in [full_run(), minimal_run()] {
        let whole = serde_json::to_vec(&run).unwrap();
        let (input, progress) = split(&whole).unwrap();
        assert_eq!(input, input_json(&run).unwrap());
        assert_eq!(progress, progress_json(&run).unwrap());
    }
}

#[test]
fn a_record_in_another_form_still_splits_by_parsing() {
    // Pretty-printed (spaces around the members): the splice's checks fail and the run is
    // parsed instead; the parts are the same.
    let run = full_run();
    let pretty = serde_json::to_vec_pretty(&run).unwrap();
    let (input, progress) = split(&pretty).unwrap();
    assert_eq!(parse(Some(&input), &progress).unwrap(), run);
    assert!(
        split(b"{\"id\":1}").is_err(),
        "a record without its input is refused"
    );
}

#[test]
fn a_whole_record_from_before_the_split_is_read_as_it_is() {
    let run = full_run();
    assert_eq!(parse(None, &serde_json::to_vec(&run).unwrap()).unwrap(), run);
}

#[test]
fn the_summary_reads_from_the_progress_alone() {
    let run = full_run();
    let s: Summary = serde_json::from_slice(&progress_json(&run).unwrap()).unwrap();
    assert_eq!(
        (s.status, s.created_at, s.finished_at),
        (RunStatus::Retrying, run.created_at, run.finished_at)
    );
}
