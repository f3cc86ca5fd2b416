//! Ordering keys and concurrency caps are queue semantics: runs sharing a key execute one at a
//! time in arrival order (even while one is waiting to retry), other keys run in parallel, and
//! a flow's cap bounds its runs in flight.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Receiver, Reply, fast_engine, spawn_app_with};
use hookflow::run::RunStatus;

fn keyed_flow(dest: &str) -> String {
    format!(
        r#"
on: {{ webhook: {{}} }}
concurrency:
  key: "{{{{ body.order }}}}"
retry: {{ initial_delay: 200ms }}
actions:
  - http: {{ url: "{dest}/o/{{{{ body.order }}}}/{{{{ body.seq }}}}" }}
"#
    )
}

#[tokio::test]
async fn same_key_runs_one_at_a_time_in_arrival_order_other_keys_in_parallel() {
    let dest = Receiver::start(Reply::status(200).delayed(Duration::from_millis(120))).await;
    // The first event of order A fails once: order A's later events must wait for its retry.
    dest.on_path_seq(
        "/o/A/1",
        vec![
            Reply::status(500),
            Reply::status(200).delayed(Duration::from_millis(120)),
        ],
    );
    let mut config = fast_engine();
    config.workers = 8;
    let app = spawn_app_with(&[("k", keyed_flow(&dest.url))], &[], config, None).await;

    let mut ids = Vec::new();
    for seq in 1..=4 {
        for order in ["A", "B"] {
            ids.push(app.accept("k", json!({"order": order, "seq": seq})).await);
        }
    }
    for id in &ids {
        app.wait_status(id, RunStatus::Succeeded).await;
    }
    let hits = dest.hits();
    for order in ["A", "B"] {
        let mut mine: Vec<_> = hits
            .iter()
            .filter(|h| h.path.starts_with(&format!("/o/{order}/")))
            .collect();
        mine.sort_by_key(|h| h.started);
        let seqs: Vec<&str> = mine.iter().map(|h| h.path.rsplit('/').next().unwrap()).collect();
        let expected: &[&str] = if order == "A" {
            &["1", "1", "2", "3", "4"]
        } else {
            &["1", "2", "3", "4"]
        };
        assert_eq!(seqs, expected, "order {order} ran out of order");
        for pair in mine.windows(2) {
            assert!(
                pair[1].started >= pair[0].ended,
                "order {order}: two runs overlapped"
            );
        }
    }
    let overlap = hits.iter().any(|a| {
        a.path.starts_with("/o/A/")
            && hits
                .iter()
                .any(|b| b.path.starts_with("/o/B/") && b.started < a.ended && a.started < b.ended)
    });
    assert!(overlap, "different keys should run in parallel");
    app.stop().await;
}

#[tokio::test]
async fn max_in_flight_caps_a_flows_concurrent_runs() {
    let dest = Receiver::start(Reply::status(200).delayed(Duration::from_millis(100))).await;
    let flow = format!(
        r#"
on: {{ webhook: {{}} }}
concurrency: {{ max_in_flight: 2 }}
actions:
  - http: {{ url: "{}/capped" }}
"#,
        dest.url
    );
    let app = spawn_app_with(&[("capped", flow)], &[], fast_engine(), None).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(app.accept("capped", json!({"i": i})).await);
    }
    for id in &ids {
        app.wait_status(id, RunStatus::Succeeded).await;
    }
    assert_eq!(dest.hits().len(), 8);
    assert_eq!(
        dest.max_in_flight(),
        2,
        "the cap is 2 and 8 workers are free, so exactly 2 ran at once"
    );
    app.stop().await;
}
