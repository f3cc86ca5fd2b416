//! `hookflow backup` while the real binary serves under load, `hookflow restore` into a fresh
//! directory, and a server started on it: every run acknowledged before the backup began is
//! there with its state, and so are the segments. A damaged or cut-short backup is refused and
//! leaves nothing behind.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::helpers::{Binary, Receiver, Reply};

fn hookflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(args)
        .env("HOOKFLOW_LOG", "warn")
        .output()
        .unwrap()
}

fn flow(dest: &str) -> String {
    format!(
        r#"
on: {{ webhook: {{}} }}
vars:
  n: {{ path: $.n, required: true }}
  email: {{ path: $.email, required: true }}
actions:
  - name: remember
    segment: {{ email: "{{{{ vars.email }}}}", add: buyers }}
  - name: deliver
    http: {{ url: "{dest}/d" }}
    retry: {{ max_attempts: 50, initial_delay: 1s, max_delay: 2s }}
"#
    )
}

async fn runs_by_id(http: &reqwest::Client, base: &str) -> BTreeMap<String, String> {
    let v: serde_json::Value = crate::helpers::get(http, format!("{base}/api/runs?limit=1000")).await;
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// When the `tick` schedule last fired, as the API shows it.
async fn last_fired(http: &reqwest::Client, base: &str) -> Option<u64> {
    let v: serde_json::Value = crate::helpers::get(http, format!("{base}/api/flows")).await;
    let tick = v["flows"].as_array()?.iter().find(|f| f["name"] == "tick")?;
    let t: Option<hookflow::run::Ts> =
        serde_json::from_value(tick["trigger"]["schedule"]["last_fired"].clone()).ok()?;
    t.map(|t| t.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_every_acknowledged_run_with_its_state() {
    // Every third delivery fails for a while: the store holds succeeded, retrying and queued
    // runs when the backup is taken.
    let dest = Receiver::start(Reply::status(200)).await;
    dest.script(
        (0..60)
            .map(|i| Reply::status(if i % 3 == 0 { 503 } else { 200 }))
            .collect(),
    );
    let tick =
        |cron: &str| format!("on:\n  schedule:\n    cron: \"{cron}\"\nactions:\n  - emit: {{ type: t.k }}\n");
    let app = Binary::start(
        &[("orders", &flow(&dest.url)), ("tick", &tick("* * * * * *"))],
        &["--workers", "4"],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let url = app.hook_url("orders");
    let load = {
        let (http, stop, url) = (http.clone(), Arc::clone(&stop), url.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let r = http
                    .post(&url)
                    .json(&serde_json::json!({"n": n, "email": format!("b{}@example.com", n % 40)}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                let v: serde_json::Value = r.json().await.unwrap();
                acked.push((
                    std::time::Instant::now(),
                    v["run_id"].as_str().unwrap().to_string(),
                ));
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // What the server shows just before the backup begins.
    let before = runs_by_id(&http, &app.base).await;
    let fired_before = last_fired(&http, &app.base).await.expect("the schedule fired");
    let began = std::time::Instant::now();
    let file = app.dir.path().join("backup.gz");
    let out = hookflow(&["backup", "--to", file.to_str().unwrap(), "--server", &app.base]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("backup written"), "{said}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = load.await.unwrap();
    let acked_before: Vec<&String> = acked
        .iter()
        .filter(|(t, _)| *t < began)
        .map(|(_, id)| id)
        .collect();
    assert!(acked_before.len() > 50, "too little load: {}", acked_before.len());
    assert!(
        acked.len() > acked_before.len(),
        "the load did not go on during the backup"
    );

    // Restore into a fresh directory and look with an accept-only server (nothing changes).
    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    let out = hookflow(&[
        "restore",
        file.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A second restore into the same place is refused.
    let again = hookflow(&[
        "restore",
        file.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a store"));

    std::fs::create_dir_all(fresh.path().join("flows")).unwrap();
    std::fs::write(fresh.path().join("flows/orders.yaml"), flow(&dest.url)).unwrap();
    // The same schedule, now yearly: it cannot fire during the test, so its last firing can
    // only come from the backup.
    std::fs::write(fresh.path().join("flows/tick.yaml"), tick("0 0 1 1 *")).unwrap();
    let restored = Binary::start_in(fresh, &["--workers", "0"], &[]).await;
    let after = runs_by_id(&http, &restored.base).await;
    for id in &acked_before {
        let status = after
            .get(*id)
            .unwrap_or_else(|| panic!("run {id}, acknowledged before the backup, is missing"));
        if before.get(*id).map(String::as_str) == Some("succeeded") {
            assert_eq!(status, "succeeded", "run {id} lost its state");
        }
    }
    let states: std::collections::BTreeSet<&String> = after.values().collect();
    eprintln!(
        "restored {} runs ({} acknowledged before), states {states:?}",
        after.len(),
        acked_before.len()
    );
    assert!(states.len() >= 2, "expected runs in several states: {states:?}");
    let fired_after = last_fired(&http, &restored.base)
        .await
        .expect("the cron state was restored");
    assert!(fired_after >= fired_before, "{fired_after} < {fired_before}");
    let segs: serde_json::Value = crate::helpers::get(&http, format!("{}/api/segments", restored.base)).await;
    assert!(segs.to_string().contains("buyers"), "{segs}");
}

#[tokio::test]
async fn a_damaged_or_cut_short_backup_is_refused_and_leaves_nothing() {
    let app = Binary::start(
        &[("orders", &flow("http://127.0.0.1:9"))],
        &["--workers", "0"],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    for n in 0..20 {
        let r = http
            .post(app.hook_url("orders"))
            .json(&serde_json::json!({"n": n, "email": "a@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let file = app.dir.path().join("backup.gz");
    let out = hookflow(&["backup", "--to", file.to_str().unwrap(), "--server", &app.base]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let good = std::fs::read(&file).unwrap();
    let cut = app.dir.path().join("cut.gz");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let not_gzip = app.dir.path().join("junk.gz");
    std::fs::write(&not_gzip, b"hello").unwrap();
    for bad in [&cut, &not_gzip] {
        let dest = tempfile::tempdir().unwrap();
        let data = dest.path().join("data");
        let out = hookflow(&["restore", bad.to_str().unwrap(), "--data", data.to_str().unwrap()]);
        assert!(!out.status.success(), "{} was restored", bad.display());
        assert!(
            !data.join("store").exists(),
            "a half-restored store was left behind"
        );
    }
    // The good one restores all 20 (none had started: accept-only).
    let dest = tempfile::tempdir().unwrap();
    let data = dest.path().join("data");
    let out = hookflow(&[
        "restore",
        file.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("20 runs not yet started"));
}
