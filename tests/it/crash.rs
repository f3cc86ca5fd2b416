//! Crash safety with the real binary: accept events while the destination is slow, SIGKILL the
//! process, start it again, and check that every accepted run completes, that no action whose
//! success was recorded is sent again, and that resends carry the same idempotency key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::hookflow;
use crate::helpers::{Receiver, Reply, SECRET, free_port, get, wait_ready};

fn start(dir: &Path, port: u16, log: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .env("HOOKFLOW_EGRESS_ALLOW", "127.0.0.1")
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "4",
        ])
        .current_dir(dir)
        .env("HOOKFLOW_SECRET", SECRET)
        .env("HOOKFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap()
}

/// A temp dir holding one flow, a free port, and the flow's URL on that port.
struct Setup {
    dir: tempfile::TempDir,
    port: u16,
    base: String,
    url: String,
}

fn setup(flow: &str, yaml: String) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("flows")).unwrap();
    std::fs::write(dir.path().join(format!("flows/{flow}.yaml")), yaml).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let token = hookflow::token::UrlTokens::from_secret(SECRET.as_bytes())
        .unwrap()
        .token(flow);
    let url = format!("{base}/hooks/{flow}/{token}");
    Setup { dir, port, base, url }
}

/// Sends SIGTERM, as a service manager would.
fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// (run id, action) pairs whose success is recorded.
async fn recorded_successes(http: &reqwest::Client, base: &str, ids: &[String]) -> BTreeSet<String> {
    let mut done = BTreeSet::new();
    for id in ids {
        let run = get(http, format!("{base}/api/runs/{id}")).await;
        for step in run["steps"].as_array().unwrap() {
            if step["status"] == "succeeded" {
                done.insert(format!("{id}.{}", step["name"].as_str().unwrap()));
            }
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_accepted_run_and_repeats_no_recorded_success() {
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/slow", Reply::status(200).delayed(Duration::from_millis(250)));
    let Setup { dir, port, base, url } = setup(
        "crash",
        format!(
            "on: {{ webhook: {{}} }}\nactions:\n  - name: fast\n    http: {{ url: \"{0}/fast\", body: {{ n: \"{{{{ body.n }}}}\" }} }}\n  - name: slow\n    http: {{ url: \"{0}/slow\", body: {{ n: \"{{{{ body.n }}}}\" }} }}\n",
            dest.url
        ),
    );
    let http = reqwest::Client::new();

    let mut child = start(dir.path(), port, "first.log");
    wait_ready(&http, &base).await;
    const N: usize = 24;
    let mut ids = Vec::new();
    for n in 0..N {
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(json!({"n": n}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Let some slow deliveries finish, then kill mid-flight.
    dest.wait_hits(N + 4).await;
    let before = recorded_successes(&http, &base, &ids).await;
    child.kill().unwrap(); // SIGKILL
    let killed_at = Instant::now();
    child.wait().unwrap();
    let slow_done_before = before.iter().filter(|k| k.ends_with(".slow")).count();
    assert!(
        slow_done_before < N,
        "the kill must come while runs are unfinished"
    );

    let mut child = start(dir.path(), port, "second.log");
    wait_ready(&http, &base).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = get(&http, format!("{base}/api/runs?status=succeeded&limit=500")).await;
        if list["runs"].as_array().unwrap().len() == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every accepted run completed after restart: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let hits = dest.arrivals();
    let mut sends: BTreeMap<String, usize> = BTreeMap::new();
    for h in &hits {
        let key = h.headers["idempotency-key"].clone();
        let action = h.path.trim_start_matches('/');
        let n = h.json()["n"].as_u64().unwrap() as usize;
        assert_eq!(
            key,
            format!("{}.{action}", ids[n]),
            "a resend must carry the run's key for that action"
        );
        if h.started > killed_at {
            assert!(
                !before.contains(&key),
                "{key} was recorded as succeeded before the kill but was sent again"
            );
        }
        *sends.entry(key).or_default() += 1;
    }
    for id in &ids {
        for action in ["fast", "slow"] {
            assert!(
                sends.contains_key(&format!("{id}.{action}")),
                "{id}.{action} was never delivered"
            );
        }
    }

    let resent = sends.values().filter(|n| **n > 1).count();
    eprintln!(
        "crash drill: {N} runs, {} successes recorded before SIGKILL, {resent} action(s) resent after restart with their original key",
        before.len()
    );

    // The CLI reads the same history through the API…
    let port_arg = format!("127.0.0.1:{port}");
    let out = hookflow(
        &[
            "runs",
            "list",
            "--status",
            "succeeded",
            "--json",
            "--server",
            &base,
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["runs"].as_array().unwrap().len(), N);
    assert_eq!(listed["more"], false);

    // …and from the store once the server has stopped gracefully.
    sigterm(&child);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown should exit 0, got {exit:?}");
    let out = hookflow(&["runs", "show", &ids[0], "--listen", &port_arg], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("succeeded") && text.contains("[2] slow"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_attempts_finish_or_leaves_them_to_resume() {
    let dest = Receiver::start(Reply::status(200).delayed(Duration::from_millis(1500))).await;
    let Setup { dir, port, base, url } = setup(
        "slow",
        format!(
            "on: {{ webhook: {{}} }}\nactions:\n  - name: deliver\n    http: {{ url: \"{}/slow\" }}\n",
            dest.url
        ),
    );
    let http = reqwest::Client::new();
    let accept = |http: reqwest::Client, url: String| async move {
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json::<Value>().await.unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let show = |id: &str| {
        let out = hookflow(
            &[
                "runs",
                "show",
                id,
                "--json",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };

    // Within the grace period (default 10 s) the in-flight attempt finishes and is recorded.
    let mut child = start(dir.path(), port, "graceful.log");
    wait_ready(&http, &base).await;
    let id = accept(http.clone(), url.clone()).await;
    while dest.arrivals().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    let run = show(&id);
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(dest.arrivals().len(), 1);

    // With a grace shorter than the attempt, the process exits and the next start resumes it
    // with the same idempotency key.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .env("HOOKFLOW_EGRESS_ALLOW", "127.0.0.1")
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--shutdown-grace",
            "200ms",
        ])
        .current_dir(dir.path())
        .env("HOOKFLOW_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(&http, &base).await;
    let id = accept(http.clone(), url.clone()).await;
    while dest.arrivals().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = Instant::now();
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    assert!(
        stopping.elapsed() < Duration::from_millis(1400),
        "the grace period bounds the shutdown"
    );
    assert_ne!(show(&id)["status"], "succeeded");

    let mut child = start(dir.path(), port, "resumed.log");
    wait_ready(&http, &base).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = get(&http, format!("{base}/api/runs/{id}")).await;
        if run["status"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the interrupted run was not resumed: {run:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let keys: Vec<String> = dest.arrivals()[1..]
        .iter()
        .map(|h| h.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(keys, [format!("{id}.deliver"), format!("{id}.deliver")]);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// SIGKILL while segment changes raise events that other runs turn into calls: after a
/// restart every contact's event has become exactly one run, and each call arrived (a resend
/// only with the same idempotency key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_event_chains_loses_and_doubles_nothing() {
    let dest = Receiver::start(Reply::status(200).delayed(Duration::from_millis(150))).await;
    let s = setup(
        "signup",
        "on:\n  webhook: {}\nactions:\n  - segment:\n      email: \"{{ body.email }}\"\n      add: newsletter\n".into(),
    );
    std::fs::write(
        s.dir.path().join("flows/crm.yaml"),
        format!(
            "on:\n  event:\n    type: segment.added\n    when:\n      - path: $.data.segment\n        equals: newsletter\nactions:\n  - name: tell\n    http: {{ url: \"{}/crm\", body: {{ email: \"{{{{ body.data.contact.email }}}}\" }} }}\n",
            dest.url
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let mut child = start(s.dir.path(), s.port, "first.log");
    wait_ready(&http, &s.base).await;
    const N: usize = 30;
    for i in 0..N {
        let r = http
            .post(&s.url)
            .json(&json!({"email": format!("p{i}@example.com")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // Some calls made, most still to come: kill.
    let deadline = Instant::now() + Duration::from_secs(10);
    while dest.arrivals().len() < 3 {
        assert!(Instant::now() < deadline, "no event reached the CRM flow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let mut child = start(s.dir.path(), s.port, "second.log");
    wait_ready(&http, &s.base).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut by_email: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    loop {
        by_email.clear();
        for h in dest.hits() {
            by_email
                .entry(h.json()["email"].as_str().unwrap().to_string())
                .or_default()
                .insert(h.headers["idempotency-key"].clone());
        }
        if by_email.len() == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {N} contacts reached the CRM",
            by_email.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (email, keys) in &by_email {
        assert_eq!(keys.len(), 1, "{email} was sent by two different runs: {keys:?}");
    }
    let crm = get(&http, format!("{}/api/runs?flow=crm&limit=500", s.base)).await;
    assert_eq!(
        crm["runs"].as_array().unwrap().len(),
        N,
        "one run per event, none doubled"
    );
    let members = get(&http, format!("{}/api/segments", s.base)).await;
    assert_eq!(members["segments"][0]["members"], N);
    sigterm(&child);
    child.wait().unwrap();
}
