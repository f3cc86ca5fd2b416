//! Retries: transient failures back off and try again, permanent ones fail at once, and a run
//! that never gets through ends in the dead-letter state with its error.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Receiver, Reply, spawn_app};
use hookflow::run::{AttemptOutcome, RunStatus, StepStatus};
use hookflow::store::RunFilter;

fn flow(dest: &str, extra: &str) -> String {
    format!(
        r#"
on: {{ webhook: {{}} }}
retry:
  max_attempts: 4
  initial_delay: 150ms
  multiplier: 2
actions:
  - name: first
    http: {{ url: "{dest}/first" }}
  - name: deliver
    {extra}
    http: {{ url: "{dest}/deliver", body: {{ n: "{{{{ attempt }}}}" }} }}
"#
    )
}

#[tokio::test]
async fn five_hundreds_are_retried_with_growing_gaps_and_done_actions_are_not_repeated() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app(&[("r", flow(&dest.url, ""))], &[]).await;
    dest.script(vec![
        Reply::status(200),
        Reply::status(500),
        Reply::status(500),
        Reply::status(200),
    ]);
    let id = app.accept("r", json!({})).await;
    let run = app.wait_status(&id, RunStatus::Succeeded).await;

    let hits = dest.hits();
    let paths: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/first", "/deliver", "/deliver", "/deliver"],
        "the succeeded first action is not repeated"
    );
    let keys: Vec<&str> = hits[1..]
        .iter()
        .map(|h| h.headers["idempotency-key"].as_str())
        .collect();
    assert!(keys.iter().all(|k| *k == format!("{id}.deliver")), "{keys:?}");
    let attempts: Vec<i64> = hits[1..]
        .iter()
        .map(|h| h.json()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);

    let gap1 = hits[2].started - hits[1].ended;
    let gap2 = hits[3].started - hits[2].ended;
    assert!(
        gap1 >= Duration::from_millis(115),
        "first backoff {gap1:?} should be about 150 ms"
    );
    assert!(
        gap2 >= Duration::from_millis(230),
        "second backoff {gap2:?} should be about 300 ms"
    );
    assert!(gap2 > gap1, "gaps must grow: {gap1:?} then {gap2:?}");

    let step = &run.steps[1];
    let outcomes: Vec<_> = step.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AttemptOutcome::Retry,
            AttemptOutcome::Retry,
            AttemptOutcome::Succeeded
        ]
    );
    assert_eq!(step.attempts[0].response.as_ref().unwrap().status, 500);
    assert_eq!(step.attempts[0].error.as_deref(), Some("HTTP 500"));
    app.stop().await;
}

#[tokio::test]
async fn a_400_fails_at_once_unless_the_action_retries_it() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app(
        &[
            ("plain", flow(&dest.url, "")),
            ("lenient", flow(&dest.url, "retry: { retry_on: [400] }")),
        ],
        &[],
    )
    .await;
    dest.on_path("/deliver", Reply::json(400, json!({"error": "bad"})));
    let id = app.accept("plain", json!({})).await;
    let run = app.wait_status(&id, RunStatus::Failed).await;
    assert_eq!(run.steps[1].attempts.len(), 1);
    assert_eq!(run.steps[1].status, StepStatus::Failed);
    assert!(
        run.error.as_deref().unwrap().contains("HTTP 400"),
        "{:?}",
        run.error
    );
    assert_eq!(
        run.steps[1].attempts[0].response.as_ref().unwrap().body,
        r#"{"error":"bad"}"#
    );

    let id = app.accept("lenient", json!({})).await;
    let run = app.wait_status(&id, RunStatus::Failed).await;
    assert_eq!(
        run.steps[1].attempts.len(),
        4,
        "retry_on makes 400 retried up to max_attempts"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_destination_that_never_recovers_leaves_a_failed_run_with_the_error() {
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/deliver", Reply::status(503));
    let app = spawn_app(&[("r", flow(&dest.url, ""))], &[]).await;
    let id = app.accept("r", json!({})).await;
    let run = app.wait_status(&id, RunStatus::Failed).await;
    assert_eq!(run.steps[1].attempts.len(), 4);
    let err = run.error.clone().unwrap();
    assert!(
        err.contains("HTTP 503") && err.contains("gave up after 4 attempts"),
        "{err}"
    );
    assert!(run.finished_at.is_some());
    let failed = app
        .store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Failed),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        failed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_network_errors_are_retried() {
    let dest = Receiver::start(Reply::status(200)).await;
    let mut slow_down = Reply::status(429);
    slow_down.headers.push(("retry-after".into(), "1".into()));
    dest.script(vec![Reply::status(200), slow_down]);
    let app = spawn_app(&[("r", flow(&dest.url, ""))], &[]).await;
    let id = app.accept("r", json!({})).await;
    app.wait_status(&id, RunStatus::Succeeded).await;
    let hits = dest.hits();
    let gap = hits[2].started - hits[1].ended;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 should delay about 1 s, was {gap:?}"
    );

    // Nothing listens on this port: connection refused is transient.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app2 = spawn_app(&[("down", flow(&format!("http://{closed}"), ""))], &[]).await;
    let id = app2.accept("down", json!({})).await;
    let run = app2.wait_status(&id, RunStatus::Failed).await;
    assert_eq!(run.steps[0].attempts.len(), 4);
    assert!(
        run.steps[0].attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("request failed"),
        "{run:#?}"
    );
    app.stop().await;
    app2.stop().await;
}

#[tokio::test]
async fn template_errors_fail_the_run_without_retry() {
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = format!(
        r#"
on: {{ webhook: {{}} }}
actions:
  - http: {{ url: "{}/x", body: "{{{{ body.nope }}}}" }}
"#,
        dest.url
    );
    let app = spawn_app(&[("t", flow)], &[]).await;
    let id = app.accept("t", json!({})).await;
    let run = app.wait_status(&id, RunStatus::Failed).await;
    let err = run.error.unwrap();
    assert!(err.contains("undefined"), "{err}");
    assert_eq!(run.steps[0].attempts.len(), 1);
    assert!(dest.hits().is_empty());
    app.stop().await;
}
