//! Replay through the API: from the failed action (what succeeded is not sent again) or from
//! the start, and bulk replay of a flow's failed runs with a dry-run count first.

use serde_json::{Value, json};

use crate::helpers::{Receiver, Reply, TestApp, spawn_app};
use hookflow::run::{RunStatus, StepStatus, Ts};

fn flow(dest: &str) -> String {
    format!(
        r#"
on:
  webhook: {{}}
actions:
  - name: create
    http: {{ url: "{dest}/a" }}
  - name: notify
    http: {{ url: "{dest}/b", body: {{ created: "{{{{ steps.create.status }}}}" }} }}
"#
    )
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}{path}", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn hits(dest: &Receiver, path: &str) -> usize {
    dest.arrivals().iter().filter(|h| h.path == path).count()
}

#[tokio::test]
async fn replay_from_the_failed_action_or_from_the_start() {
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/b", Reply::status(400));
    let app = spawn_app(&[("two", flow(&dest.url))], &[]).await;
    let id = app.accept("two", json!({"n": 1})).await;
    let failed = app.wait_status(&id, RunStatus::Failed).await;
    assert_eq!(failed.steps[0].status, StepStatus::Succeeded);

    // The destination is fixed; replay from the failed action.
    dest.on_path("/b", Reply::status(200));
    let (status, answer) = post(&app, &format!("/api/runs/{id}/replay"), json!({"from": "failed"})).await;
    assert_eq!(status, 202, "{answer}");
    let new_id = answer["run_id"].as_str().unwrap().to_string();
    let new = app.wait_status(&new_id, RunStatus::Succeeded).await;
    assert_eq!(new.replay_of.as_deref(), Some(id.as_str()));
    assert_eq!(
        (hits(&dest, "/a"), hits(&dest, "/b")),
        (1, 2),
        "the succeeded action was not repeated"
    );
    assert_eq!(new.request, failed.request);
    assert_eq!(
        new.steps[0].attempts.len(),
        1,
        "its outcome is kept from the old run"
    );
    let b = dest.arrivals().into_iter().rfind(|h| h.path == "/b").unwrap();
    assert_eq!(b.json(), json!({"created": 200}));

    // From the start: everything again.
    let (status, answer) = post(&app, &format!("/api/runs/{id}/replay"), json!({"from": "start"})).await;
    assert_eq!(status, 202);
    app.wait_status(answer["run_id"].as_str().unwrap(), RunStatus::Succeeded)
        .await;
    assert_eq!((hits(&dest, "/a"), hits(&dest, "/b")), (2, 3));

    // Unknown run, unfinished run.
    let (status, _) = post(&app, "/api/runs/nope/replay", json!({})).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn bulk_replay_of_failed_runs_counts_first() {
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/b", Reply::status(400));
    let app = spawn_app(&[("two", flow(&dest.url))], &[]).await;
    let first = app.accept("two", json!({"n": 0})).await;
    app.wait_status(&first, RunStatus::Failed).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let since = Ts::now();
    let mut ids = Vec::new();
    for n in 1..=3 {
        let id = app.accept("two", json!({"n": n})).await;
        app.wait_status(&id, RunStatus::Failed).await;
        ids.push(id);
    }
    let (status, dry) = post(
        &app,
        "/api/flows/two/replay-failed",
        json!({"dry_run": true, "since": since}),
    )
    .await;
    assert_eq!((status, dry["matched"].as_u64()), (200, Some(3)), "{dry}");
    assert_eq!(app.all_runs().await.len(), 4, "a dry run replays nothing");

    dest.on_path("/b", Reply::status(200));
    let (_, done) = post(
        &app,
        "/api/flows/two/replay-failed",
        json!({"since": since, "from": "failed"}),
    )
    .await;
    let replayed = done["replayed"].as_array().unwrap();
    assert_eq!(replayed.len(), 3, "{done}");
    let olds: Vec<&str> = replayed
        .iter()
        .map(|r| r["replay_of"].as_str().unwrap())
        .collect();
    assert_eq!(
        olds,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "oldest first"
    );
    for r in replayed {
        app.wait_status(r["run_id"].as_str().unwrap(), RunStatus::Succeeded)
            .await;
    }
    // The CLI, through the server: a dry run over all time, then one replay.
    let base = app.base.clone();
    let cli = move |args: Vec<&'static str>| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let mut all = args.clone();
            all.extend(["--server", base.as_str()]);
            let out = crate::cli::hookflow(&all, std::path::Path::new("."));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        })
    };
    let out = cli(vec!["runs", "replay-failed", "--flow", "two", "--dry-run"])
        .await
        .unwrap();
    assert_eq!(out, "4 failed run(s) of two would be replayed\n");
    let first_static: &'static str = Box::leak(first.clone().into_boxed_str());
    let out = cli(vec!["runs", "replay", first_static, "--from", "failed"])
        .await
        .unwrap();
    assert!(out.starts_with(&format!("replayed {first} as ")), "{out}");
    app.stop().await;
}

/// Real traffic becomes a flow test: capture a run, then `validate --run-tests` passes on it.
#[tokio::test]
async fn a_captured_run_is_a_passing_flow_test() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app(&[("two", flow(&dest.url))], &[]).await;
    let id = app.accept("two", json!({"n": 42, "name": "cap"})).await;
    app.wait_status(&id, RunStatus::Succeeded).await;
    let (base, dir) = (app.base.clone(), app.dir().to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        let out = crate::cli::hookflow(&["capture", &id, "--server", &base], std::path::Path::new("."));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::create_dir_all(dir.join("flows/two.tests")).unwrap();
        std::fs::write(dir.join("flows/two.tests/captured.json"), &out.stdout).unwrap();
        // And the flow's recent requests from the request log.
        let out = crate::cli::hookflow(
            &[
                "capture",
                "--requests",
                "two",
                "--out",
                "flows/two.tests",
                "--last",
                "5",
                "--server",
                &base,
            ],
            &dir,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
        crate::cli::hookflow(
            &["validate", "--run-tests", "flows", "--templates", "templates"],
            &dir,
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASS flows/two.tests/captured.json"),
        "{stdout}"
    );
    assert!(stdout.contains("2 of 2 flow test(s) passed"), "{stdout}");
    app.stop().await;
}

/// After a flow is changed, a run can be replayed under the version it was accepted under —
/// also after a restart, from the source the store keeps — or under the current one.
#[tokio::test]
async fn replay_under_the_original_or_the_current_flow_version() {
    let dest = Receiver::start(Reply::status(200)).await;
    let f = |path: &str| {
        format!(
            "on:\n  webhook: {{}}\nactions:\n  - name: send\n    http: {{ url: \"{}{path}\" }}\n",
            dest.url
        )
    };
    let app = spawn_app(&[("v", f("/v1"))], &[]).await;
    let id = app.accept("v", json!({})).await;
    let old = app.wait_status(&id, RunStatus::Succeeded).await;
    std::fs::write(app.dir().join("flows/v.yaml"), f("/v2")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.api("/api/flows").await["reload"]["generation"] != 1 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let replay = |app: &TestApp, version: &'static str| {
        let url = format!("{}/api/runs/{id}/replay", app.base);
        let http = app.http.clone();
        async move {
            let r = http
                .post(url)
                .json(&json!({"version": version}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let url_of = |run: &hookflow::run::Run| run.steps[0].attempts[0].request.as_ref().unwrap().url.clone();
    let original = app
        .wait_status(&replay(&app, "original").await, RunStatus::Succeeded)
        .await;
    assert!(url_of(&original).ends_with("/v1"));
    assert_eq!(original.flow_version, old.flow_version);
    let current = app
        .wait_status(&replay(&app, "current").await, RunStatus::Succeeded)
        .await;
    assert!(url_of(&current).ends_with("/v2"));
    // After a restart the original version comes from the store.
    let app = app.restart().await;
    let again = app
        .wait_status(&replay(&app, "original").await, RunStatus::Succeeded)
        .await;
    assert!(url_of(&again).ends_with("/v1"), "{}", url_of(&again));
    app.stop().await;
}
