//! Hot reload while events flow: a good change is applied without a failed request, a bad one
//! is refused as a whole (the previous flows keep serving, the refusal is visible), and a run
//! keeps the flow version it was accepted under.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Receiver, Reply, TestApp, spawn_app};
use hookflow::run::RunStatus;

fn flow(dest: &str, path: &str) -> String {
    format!(
        "on:\n  webhook: {{}}\nretry: {{ initial_delay: 400ms }}\nactions:\n  - http: {{ url: \"{dest}{path}\" }}\n"
    )
}

async fn wait_reload(app: &TestApp, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let flows = app.api("/api/flows").await;
        if pred(&flows["reload"]) {
            return flows;
        }
        assert!(Instant::now() < deadline, "no reload: {flows}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_changes_apply_bad_ones_are_refused_and_no_request_fails() {
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path_seq("/v1", vec![Reply::status(500), Reply::status(200)]);
    let app = Arc::new(spawn_app(&[("orders", flow(&dest.url, "/v1"))], &[]).await);
    let file = app.dir().join("flows/orders.yaml");

    // A run accepted under v1 whose first attempt fails: its retry comes after the reload.
    let kept = app.accept("orders", json!({"n": "kept"})).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.store.get_run(&kept).await.unwrap().unwrap().status != RunStatus::Retrying {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Requests keep arriving during every reload.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                statuses.push(app.post_json("orders", json!({"n": 1})).await.status().as_u16());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(&file, flow(&dest.url, "/v2")).unwrap();
    wait_reload(&app, |r| r["generation"] == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A broken change: refused whole, v2 keeps serving, the refusal is visible.
    std::fs::write(
        &file,
        "on:\n  webhook: {}\nactions:\n  - http: { url: \"http://x\"\n",
    )
    .unwrap();
    let flows = wait_reload(&app, |r| r["errors"].as_array().is_some_and(|e| !e.is_empty())).await;
    let err = flows["reload"]["errors"][0].as_str().unwrap().to_string();
    assert!(err.contains("orders.yaml:"), "{err}");
    assert_eq!(flows["reload"]["generation"], 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let statuses = sender.await.unwrap();
    assert!(statuses.len() > 10);
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");

    // New runs use v2; the run accepted under v1 finished under v1.
    let id = app.accept("orders", json!({"n": "after"})).await;
    app.wait_status(&id, RunStatus::Succeeded).await;
    let kept_run = app.wait_status(&kept, RunStatus::Succeeded).await;
    assert_eq!(kept_run.steps[0].attempts.len(), 2);
    let retry_url = &kept_run.steps[0].attempts[1].request.as_ref().unwrap().url;
    assert!(
        retry_url.ends_with("/v1"),
        "the kept run retried under v1: {retry_url}"
    );
    let after = app.store.get_run(&id).await.unwrap().unwrap();
    assert!(
        after.steps[0].attempts[0]
            .request
            .as_ref()
            .unwrap()
            .url
            .ends_with("/v2")
    );
    assert_ne!(after.flow_version, kept_run.flow_version);
    assert!(dest.arrivals().iter().any(|h| h.path == "/v2"));
    let metrics = crate::helpers::metrics(&app.http, &app.base).await;
    assert!(
        metrics.contains(r#"hookflow_flow_reloads_total{result="applied"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hookflow_flow_reloads_total{result="refused"}"#),
        "{metrics}"
    );
    Arc::try_unwrap(app).ok().unwrap().stop().await;
}

/// Across a restart, a waiting retry still runs under the version its run was accepted under:
/// the engine compiles it from the source the store keeps.
#[tokio::test]
async fn a_retry_after_a_restart_keeps_its_flow_version() {
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path_seq("/v1", vec![Reply::status(500), Reply::status(200)]);
    let app = spawn_app(&[("orders", flow(&dest.url, "/v1"))], &[]).await;
    let id = app.accept("orders", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.store.get_run(&id).await.unwrap().unwrap().status != RunStatus::Retrying {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::write(app.dir().join("flows/orders.yaml"), flow(&dest.url, "/v2")).unwrap();
    let app = app.restart().await;
    let run = app.wait_status(&id, RunStatus::Succeeded).await;
    let url = &run.steps[0].attempts[1].request.as_ref().unwrap().url;
    assert!(url.ends_with("/v1"), "{url}");
    // New runs use the flow as it is now.
    let new = app.accept("orders", json!({})).await;
    let new = app.wait_status(&new, RunStatus::Succeeded).await;
    assert!(
        new.steps[0].attempts[0]
            .request
            .as_ref()
            .unwrap()
            .url
            .ends_with("/v2")
    );
    app.stop().await;
}

/// Issue 17 item 8: a restart with a broken flow file serves the flow's last good version,
/// loudly (log, `/api/flows`, metric), as a refused hot reload does — its URL does not go 404
/// and its webhooks are not lost. A flow never seen good is not served. Fixing the file applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_broken_file_serves_the_flows_last_good_version() {
    use crate::helpers::{Binary, get};
    let dest = Receiver::start(Reply::status(200)).await;
    let http = reqwest::Client::new();
    let server = Binary::start(&[("orders", &flow(&dest.url, "/v1"))], &[], &[]).await;
    let url = server.hook_url("orders");
    let accepted: serde_json::Value = http
        .post(&url)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Recorded as delivered before the kill, so the restart does not deliver it again.
    let run = format!(
        "{}/api/runs/{}",
        server.base,
        accepted["run_id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&http, run.clone()).await["status"] != "succeeded" {
        assert!(Instant::now() < deadline, "the first run did not succeed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = server.kill9();

    // Edited while it was down: two mistakes, and a new flow that never loaded.
    std::fs::write(
        dir.path().join("flows/orders.yaml"),
        format!(
            "on:\n  webhook: {{}}\nactions:\n  - http:\n      url: \"{}/v2\"\n      method: PSOT\n      bdy: x\n",
            dest.url
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("flows/fresh.yaml"),
        "on: { webhook: {} }\nactions:\n  - emit: { typ: x }\n",
    )
    .unwrap();
    let server = Binary::start_in(dir, &[], &[]).await;
    let flows = get(&http, format!("{}/api/flows", server.base)).await;
    let orders = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "orders")
        .unwrap_or_else(|| panic!("orders is not served: {flows}"));
    let problems = orders["stale"]["problems"].to_string();
    assert!(
        problems.contains("orders.yaml:6: actions[0].http.method")
            && problems.contains("orders.yaml:7: actions[0].http.bdy"),
        "{flows}"
    );
    assert!(
        flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["name"] != "fresh"),
        "{flows}"
    );
    let reload = flows["reload"]["errors"].to_string();
    assert!(reload.contains("fresh.yaml:3"), "{flows}");
    let metrics = crate::helpers::metrics(&http, &server.base).await;
    assert!(metrics.contains("hookflow_flows_stale 1"), "{metrics}");
    assert!(
        server
            .log()
            .contains("its last good version serves until the file is fixed"),
        "{}",
        server.log()
    );
    // Its webhook still starts runs, under the version that loaded cleanly.
    let url = server.hook_url("orders");
    assert_eq!(
        http.post(&url).json(&json!({})).send().await.unwrap().status(),
        202
    );
    let hits = dest.wait_hits(2).await;
    assert_eq!(hits[1].path, "/v1");
    assert_eq!(
        http.post(server.hook_url("fresh"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Fixed (and the new flow too): the reload applies, nothing is stale any more.
    std::fs::write(
        server.dir.path().join("flows/orders.yaml"),
        flow(&dest.url, "/v2"),
    )
    .unwrap();
    std::fs::remove_file(server.dir.path().join("flows/fresh.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let flows = get(&http, format!("{}/api/flows", server.base)).await;
        if flows["reload"]["generation"] == 1 {
            assert!(flows["flows"][0].get("stale").is_none(), "{flows}");
            break;
        }
        assert!(Instant::now() < deadline, "no reload: {flows}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        http.post(&url).json(&json!({})).send().await.unwrap().status(),
        202
    );
    let hits = dest.wait_hits(3).await;
    assert_eq!(hits[2].path, "/v2");
}

/// The static checks run on hot reload too: an edit that reads a var the flow does not declare
/// is refused as a whole, naming it, and the previous version keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_reads_an_undeclared_var_is_refused() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app(&[("orders", flow(&dest.url, "/v1"))], &[]).await;
    std::fs::write(
        app.dir().join("flows/orders.yaml"),
        format!(
            "on: {{ webhook: {{}} }}\nvars: {{ order_id: $.id }}\nactions:\n  - http: {{ url: \"{}/v2/{{{{ vars.ordr_id }}}}\" }}\n",
            dest.url
        ),
    )
    .unwrap();
    let flows = wait_reload(&app, |r| r["errors"].as_array().is_some_and(|e| !e.is_empty())).await;
    let err = flows["reload"]["errors"][0].as_str().unwrap();
    assert!(
        err.contains("orders.yaml:4: actions[0].http.url: `vars.ordr_id` is not a var of this flow (did you mean `vars.order_id`?)"),
        "{err}"
    );
    let id = app.accept("orders", json!({"id": 7})).await;
    app.wait_status(&id, RunStatus::Succeeded).await;
    assert_eq!(dest.hits()[0].path, "/v1");
    app.stop().await;
}
