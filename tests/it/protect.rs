//! Protecting destinations, through real HTTP: a rate limit spaces attempts without failing
//! anything; a circuit breaker stops hammering a dead destination and lets everything through
//! once it recovers.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Receiver, Reply, spawn_app};
use hookflow::run::RunStatus;

#[tokio::test]
async fn twenty_events_to_a_five_per_second_action_take_about_four_seconds_and_none_fails() {
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = format!(
        r#"
on:
  webhook: {{}}
actions:
  - name: crm
    rate_limit: 5/s
    http:
      url: "{}/contacts"
"#,
        dest.url
    );
    let app = spawn_app(&[("paced", flow)], &[]).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(app.accept("paced", json!({"i": i})).await);
    }
    // The moments hookflow started each attempt (after the limiter let it through), as it
    // recorded them: what the limiter decides, unlike arrival times, which a busy machine
    // can bunch up in transit.
    let mut starts = Vec::new();
    for id in &ids {
        let run = app.wait_status(id, RunStatus::Succeeded).await;
        assert_eq!(run.steps[0].attempts.len(), 1, "pacing is not a failed attempt");
        starts.push(run.steps[0].attempts[0].started_at.0);
    }
    assert_eq!(dest.arrivals().len(), 20);
    starts.sort();
    let span = Duration::from_millis(starts[19] - starts[0]);
    // 19 gaps of 200 ms; a little early is impossible, a little late is the machine.
    assert!(
        span >= Duration::from_millis(3700),
        "20 attempts took only {span:?}"
    );
    assert!(span < Duration::from_secs(8), "20 attempts took {span:?}");
    // No attempt starts before its slot (the i-th 200 ms after the first; the first may itself
    // have started a little after its slot, hence the margin). A late attempt is not a fault.
    for (i, t) in starts.iter().enumerate() {
        let after = t - starts[0];
        assert!(
            after + 100 >= i as u64 * 200,
            "attempt {i} started {after} ms after the first: {starts:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_open_circuit_stops_the_hammering_and_everything_arrives_after_recovery() {
    let dest = Receiver::start(Reply::status(503)).await;
    let flow = format!(
        r#"
on:
  webhook: {{}}
retry:
  initial_delay: 50ms
  max_delay: 100ms
  max_attempts: 100
actions:
  - name: push
    circuit_breaker: {{ failures: 3, cooldown: 600ms }}
    http:
      url: "{}/push"
"#,
        dest.url
    );
    let app = spawn_app(&[("flaky", flow)], &[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.accept("flaky", json!({"i": i})).await);
    }
    // The circuit opens after three failures in a row.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let b = app.api("/api/breakers").await;
        if b["circuits"][0]["state"] == "open" {
            assert_eq!(
                b["circuits"][0]["destination"],
                dest.url.trim_start_matches("http://")
            );
            break;
        }
        assert!(Instant::now() < deadline, "circuit never opened: {b}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = dest.arrivals().len();
    tokio::time::sleep(Duration::from_millis(1900)).await;
    let during = dest.arrivals().len() - before;
    // About one probe per cool-down (3 in 1.9 s) instead of five runs retrying every 50-100 ms.
    assert!(during <= 5, "{during} attempts while the circuit was open");
    let run = app.store.get_run(&ids[0]).await.unwrap().unwrap();
    assert!(!run.status.is_terminal(), "nothing fails while paused: {run:#?}");

    dest.on_path("/push", Reply::status(200));
    for id in &ids {
        app.wait_status(id, RunStatus::Succeeded).await;
    }
    let b = app.api("/api/breakers").await;
    assert_eq!(b["circuits"][0]["state"], "closed", "{b}");
    // Attempts recorded are attempts made: postponements are not counted.
    let attempts: usize = {
        let mut n = 0;
        for id in &ids {
            n += app.store.get_run(id).await.unwrap().unwrap().steps[0]
                .attempts
                .len();
        }
        n
    };
    assert_eq!(attempts, dest.arrivals().len());
    app.stop().await;
}
