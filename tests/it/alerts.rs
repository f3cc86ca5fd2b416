//! Being told (issue 30), on the real binary with windows of seconds: a sender gone silent
//! raises one `alert.raised` and a request resolves it with one `alert.resolved`, each
//! delivered by a flow on `alert.*` to an HTTP receiver the test starts — across a `kill -9`
//! between the raise and its delivery; forged signatures raise the refusals alert at its
//! count and not before; a receiver failing half the runs raises the failure-rate alert.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Binary, Receiver, Reply, get};

/// Delivers every alert to `{dest}/alert`, retrying quickly.
fn out(dest: &str) -> String {
    format!(
        r#"on: {{ event: alert.* }}
vars: {{ state: $.data.state, alert: $.data.alert, flow: $.data.flow }}
retry: {{ initial_delay: 200ms, max_delay: 200ms }}
actions:
  - http:
      url: "{dest}/alert"
      body: {{ state: "{{{{ vars.state }}}}", alert: "{{{{ vars.alert }}}}", flow: "{{{{ vars.flow }}}}", message: "{{{{ body.data.message }}}}", figures: "{{{{ body.data.figures | tojson }}}}" }}
"#
    )
}

/// The alert deliveries the receiver answered, as (state, alert, flow).
fn delivered(dest: &Receiver) -> Vec<(String, String, String)> {
    dest.hits()
        .iter()
        .filter(|h| h.path == "/alert")
        .map(|h| {
            let v = h.json();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("state"), s("alert"), s("flow"))
        })
        .collect()
}

/// The runs of the flow `out`, as (state, run status).
async fn out_runs(http: &reqwest::Client, base: &str) -> Vec<(String, String)> {
    let v = get(http, format!("{base}/api/runs?flow=out&limit=100")).await;
    let mut out = Vec::new();
    for r in v["runs"].as_array().unwrap() {
        let run = get(http, format!("{base}/api/runs/{}", r["id"].as_str().unwrap())).await;
        out.push((
            run["vars"]["state"].as_str().unwrap_or_default().to_string(),
            run["status"].as_str().unwrap_or_default().to_string(),
        ));
    }
    out
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut ok: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn t(s: &str, a: &str, f: &str) -> (String, String, String) {
    (s.into(), a.into(), f.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sender_raises_once_and_a_request_resolves_once_across_kill_9() {
    let dest = Receiver::start(Reply::status(200)).await;
    // The first deliveries fail: the raise is stored and its delivery retrying when killed.
    dest.on_path("/alert", Reply::status(503));
    let orders = format!(
        "on: {{ webhook: {{}} }}\nalerts:\n  silence: {{ after: 3s }}\n  failure_rate: off\n  dead_letters: off\nactions:\n  - http: {{ url: \"{}/order\" }}\n",
        dest.url
    );
    let out = out(&dest.url);
    let args = ["--alert-every", "200ms"];
    let flows = [("orders", orders.as_str()), ("out", out.as_str())];
    let app = Binary::start(&flows, &args, &[]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(app.hook_url("orders"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Quiet for 3 s: raised, and its delivery attempted (and refused).
    until("the raise was attempted", || async {
        !delivered(&dest).is_empty()
    })
    .await;
    let dir = app.kill9();
    dest.on_path("/alert", Reply::status(200));
    let app = Binary::start_in(dir, &args, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while out_runs(&http, &app.base).await != [("raised".to_string(), "succeeded".to_string())] {
        assert!(
            Instant::now() < deadline,
            "the raise was not delivered after the restart: {:?}\n{}",
            out_runs(&http, &app.base).await,
            app.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still silent after the restart: stored as raised, not raised again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(out_runs(&http, &app.base).await.len(), 1, "{}", app.log());
    let alerts = get(&http, format!("{}/api/alerts", app.base)).await;
    assert_eq!(alerts["active"][0]["key"], "orders/silence", "{alerts:#}");
    assert!(
        alerts["active"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no accepted request for"),
        "{alerts:#}"
    );

    // `hookflow alerts`, as a health check: exit 1 while raised, with the alert in words.
    let listen = app.base.trim_start_matches("http://").to_string();
    let cli = |json: bool| {
        let mut args = vec!["alerts", "--listen", listen.as_str()];
        if json {
            args.push("--json");
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(&args)
            .env_remove("HOOKFLOW_DATA")
            .output()
            .unwrap()
    };
    let out = cli(false);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("RAISED") && text.contains("orders/silence") && text.contains("no accepted request"),
        "{text}"
    );

    // A request: resolved, once.
    let r = http
        .post(app.hook_url("orders"))
        .json(&json!({"n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    until("the resolve was delivered", || async {
        out_runs(&http, &app.base)
            .await
            .contains(&("resolved".to_string(), "succeeded".to_string()))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut runs = out_runs(&http, &app.base).await;
    runs.sort();
    assert_eq!(
        runs,
        [
            ("raised".to_string(), "succeeded".to_string()),
            ("resolved".to_string(), "succeeded".to_string())
        ],
        "{}",
        app.log()
    );
    let ok: Vec<_> = delivered(&dest)
        .into_iter()
        .filter(|d| d.0 == "resolved")
        .collect();
    assert_eq!(ok, [t("resolved", "silence", "orders")]);
    let alerts = get(&http, format!("{}/api/alerts", app.base)).await;
    assert_eq!(alerts["active"], json!([]), "{alerts:#}");
    let out = cli(true);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["recent"][0]["key"], "orders/silence", "{v:#}");
    assert_eq!(v["recent"][0]["active"], false);
    assert_eq!(alerts["recent"][0]["key"], "orders/silence");
    let metrics = crate::helpers::metrics(&http, &app.base).await;
    assert!(
        metrics.contains("hookflow_alert_active{flow=\"orders\",alert=\"silence\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signatures_and_failing_runs_raise_their_alerts_at_their_thresholds() {
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/bad", Reply::status(500));
    // `signed` says nothing of alerts: the server's defaults file decides.
    let signed = "on:\n  webhook:\n    verify: { preset: github, secret_env: ALERT_TEST_SECRET }\nactions:\n  - emit: { type: t.done }\n";
    let defaults_dir = tempfile::tempdir().unwrap();
    let defaults = defaults_dir.path().join("alerts.yaml");
    std::fs::write(
        &defaults,
        "silence: off\nrefusals: { at_least: 50, window: 60s }\n",
    )
    .unwrap();
    // A defaults file with a mistake stops serve, naming the file, the line and the key.
    let bad = defaults_dir.path().join("bad.yaml");
    std::fs::write(&bad, "silence: off\nrefusals: { at_least: 50, windw: 60s }\n").unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--alert-defaults",
            bad.to_str().unwrap(),
        ])
        .current_dir(defaults_dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.yaml:2: refusals") && err.contains("unknown field `windw`"),
        "{err}"
    );
    let half = format!(
        "on: {{ webhook: {{}} }}\nretry: {{ max_attempts: 1 }}\nalerts:\n  silence: off\n  dead_letters: off\n  failure_rate: {{ above: 30%, window: 60s, min_runs: 10 }}\nactions:\n  - http: {{ url: \"{}/{{{{ body.to }}}}\" }}\n",
        dest.url
    );
    let out = out(&dest.url);
    let app = Binary::start(
        &[("signed", signed), ("half", &half), ("out", &out)],
        &[
            "--alert-every",
            "200ms",
            "--alert-defaults",
            defaults.to_str().unwrap(),
        ],
        &[("ALERT_TEST_SECRET", "a-long-enough-secret")],
    )
    .await;
    let http = reqwest::Client::new();
    let forge = |n: usize| {
        let (http, url) = (http.clone(), app.hook_url("signed"));
        async move {
            for i in 0..n {
                let r = http
                    .post(&url)
                    .header("x-hub-signature-256", format!("sha256={:064x}", i))
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 401);
            }
        }
    };
    forge(49).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        delivered(&dest).is_empty(),
        "49 of 50 raised it: {:?}",
        delivered(&dest)
    );
    forge(1).await;
    until("the refusals alert", || async {
        delivered(&dest).contains(&t("raised", "refusals", "signed"))
    })
    .await;
    let hit = dest
        .hits()
        .into_iter()
        .find(|h| h.path == "/alert")
        .unwrap()
        .json();
    let figures: Value = serde_json::from_str(hit["figures"].as_str().unwrap()).unwrap();
    assert_eq!(figures["count"], 50, "{hit:#}");
    assert!(
        hit["message"].as_str().unwrap().contains("50 requests refused"),
        "{hit:#}"
    );
    // Where they came from: the client and the reason of the last 32, in the alert and on
    // the flow.
    assert_eq!(figures["clients_of_the_last"], 32, "{hit:#}");
    assert_eq!(
        figures["clients"],
        json!([{"client": "127.0.0.1", "reason": "bad_signature", "count": 32}]),
        "{hit:#}"
    );
    assert!(
        hit["message"]
            .as_str()
            .unwrap()
            .contains("most from 127.0.0.1 (bad_signature)"),
        "{hit:#}"
    );
    let flow = get(&http, format!("{}/api/flows/signed", app.base)).await;
    let last = flow["recent_refusals"].as_array().unwrap();
    assert_eq!(last.len(), 32, "the last 32 are kept");
    assert!(
        last.iter()
            .all(|r| r["client"] == "127.0.0.1" && r["reason"] == "bad_signature"),
        "{flow:#}"
    );

    // Half of ten runs fail: above 30 %.
    for i in 0..10 {
        let to = if i % 2 == 0 { "ok" } else { "bad" };
        let r = http
            .post(app.hook_url("half"))
            .json(&json!({"to": to}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    until("the failure-rate alert", || async {
        delivered(&dest).contains(&t("raised", "failure_rate", "half"))
    })
    .await;
    let alerts = get(&http, format!("{}/api/alerts", app.base)).await;
    let rate = alerts["active"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "half/failure_rate")
        .unwrap_or_else(|| panic!("{alerts:#}"))
        .clone();
    assert_eq!(rate["figures"]["failed"], 5, "{rate:#}");
    assert_eq!(rate["figures"]["ended"], 10, "{rate:#}");
    // Each raised once.
    let raised: Vec<_> = delivered(&dest).into_iter().filter(|d| d.0 == "raised").collect();
    assert_eq!(raised.len(), 2, "{raised:?}");
}

/// Two instances on one PostgreSQL both judge the silence (each confirms it against the
/// shared store): it is raised once and, after a request to the other instance, resolved once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgresql_raise_and_resolve_once() {
    let Some(schema) = crate::pg::Schema::create().await else {
        return;
    };
    let dest = Receiver::start(Reply::status(200)).await;
    let orders = format!(
        "on: {{ webhook: {{}} }}\nalerts:\n  silence: {{ after: 3s }}\nactions:\n  - http: {{ url: \"{}/order\" }}\n",
        dest.url
    );
    let out = out(&dest.url);
    let args = ["--alert-every", "200ms", "--store", schema.url.as_str()];
    let flows = [("orders", orders.as_str()), ("out", out.as_str())];
    let a = Binary::start(&flows, &args, &[]).await;
    let b = Binary::start(&flows, &args, &[]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(a.hook_url("orders"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    until("the raise", || async {
        delivered(&dest).contains(&t("raised", "silence", "orders"))
    })
    .await;
    // Both keep judging; neither raises it again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(delivered(&dest), [t("raised", "silence", "orders")]);
    let r = http
        .post(b.hook_url("orders"))
        .json(&json!({"n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    until("the resolve", || async {
        delivered(&dest).contains(&t("resolved", "silence", "orders"))
    })
    .await;
    // (Well before the silence could hold again, 3 s after the second request.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        delivered(&dest),
        [
            t("raised", "silence", "orders"),
            t("resolved", "silence", "orders")
        ],
        "A:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
}

/// The shipped `flows/alerts-to-email.yaml`, unchanged, emails a raised alert to
/// `ALERT_EMAIL_TO` over real SMTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_alert_flow_emails_the_alert() {
    let (port, mail) = crate::email::start_smtp(0);
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/flows/alerts-to-email.yaml")).unwrap();
    let orders =
        "on: { webhook: {} }\nalerts:\n  silence: { after: 1s }\nactions:\n  - emit: { type: order.seen }\n";
    let port = port.to_string();
    let args = [
        "--alert-every",
        "200ms",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &port,
        "--smtp-tls",
        "none",
        "--smtp-from",
        "hookflow@example.com",
    ];
    let app = Binary::start(
        &[("orders", orders), ("alerts-to-email", &shipped)],
        &args,
        &[("ALERT_EMAIL_TO", "oncall@example.com")],
    )
    .await;
    let http = reqwest::Client::new();
    let r = http
        .post(app.hook_url("orders"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    until("an email, or an error in the log", || async {
        mail.count() > 0 || app.log().contains("ERROR")
    })
    .await;
    assert!(mail.count() > 0, "{}", app.log());
    let mails = crate::email::wait_mails(&mail, 1).await;
    assert_eq!(mails[0].to, ["oncall@example.com"]);
    let data = &crate::unsubscribe::text_of(&mails[0]);
    assert!(
        data.contains("Subject: [hookflow] raised: silence of orders"),
        "{data}"
    );
    assert!(
        data.contains("no accepted request for") && data.contains("orders/silence"),
        "{data}"
    );
}

/// The server's own alert for a destination given up on (its circuit open longer than
/// `--alert-circuit-open`) and the dead-letters alert for runs failed for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_open_too_long_and_dead_letters_raise_their_alerts() {
    let dest = Receiver::start(Reply::status(500)).await;
    let down = format!(
        "on: {{ webhook: {{}} }}\nretry: {{ max_attempts: 1 }}\nalerts:\n  silence: off\n  failure_rate: off\n  dead_letters: {{ at_least: 2, window: 60s }}\nactions:\n  - name: partner\n    circuit_breaker: {{ failures: 2, cooldown: 60s }}\n    http: {{ url: \"{}/down\" }}\n",
        dest.url
    );
    let app = Binary::start(
        &[("down", &down)],
        &["--alert-every", "200ms", "--alert-circuit-open", "1s"],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let active = |base: String| {
        let http = http.clone();
        async move {
            let v = get(&http, format!("{base}/api/alerts")).await;
            v["active"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["key"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let r = http
        .post(app.hook_url("down"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // One run failed for good is below the rule's two, and the circuit is not open yet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(active(app.base.clone()).await, Vec::<String>::new());
    let r = http
        .post(app.hook_url("down"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let host = dest.url.trim_start_matches("http://").to_string();
    let circuit = format!("*/circuit_open/{host}");
    until("the circuit and dead-letter alerts", || async {
        let a = active(app.base.clone()).await;
        a.contains(&circuit) && a.contains(&"down/dead_letters".to_string())
    })
    .await;
    let v = get(&http, format!("{}/api/alerts", app.base)).await;
    let open = v["active"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == circuit.as_str())
        .unwrap()
        .clone();
    assert_eq!(open["subject"], host.as_str());
    assert_eq!(open["figures"]["consecutive_failures"], 2, "{open:#}");
    assert!(
        open["message"].as_str().unwrap().contains("has been open for"),
        "{open:#}"
    );
}

/// The backlog alert: runs due faster than one worker takes them (0.7 s each) leave the oldest
/// due run waiting past `--alert-backlog`; raised once, then resolved once as the queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_raises_and_resolves_as_the_queue_drains() {
    let dest = Receiver::start(Reply::status(200).delayed(Duration::from_millis(700))).await;
    let slow = format!(
        "on: {{ webhook: {{}} }}\nalerts: {{ silence: off }}\nactions:\n  - http: {{ url: \"{}/slow\" }}\n",
        dest.url
    );
    let app = Binary::start(
        &[("slow", &slow)],
        &[
            "--workers",
            "1",
            "--alert-every",
            "200ms",
            "--alert-backlog",
            "1500ms",
        ],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    for _ in 0..6 {
        let r = http
            .post(app.hook_url("slow"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let recent = |base: String| {
        let http = http.clone();
        async move { get(&http, format!("{base}/api/alerts")).await }
    };
    until("the backlog raised and resolved", || async {
        let v = recent(app.base.clone()).await;
        v["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "*/backlog")
    })
    .await;
    // Resolved once no due run has waited that long (the last ones are then being taken),
    // and all six delivered.
    dest.wait_hits(6).await;
    let v = recent(app.base.clone()).await;
    let b = v["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "*/backlog")
        .unwrap()
        .clone();
    assert!(b["message"].as_str().unwrap().contains("has waited"), "{b:#}");
    assert!(b["figures"]["due"].as_u64().unwrap() >= 1, "{b:#}");
    assert_eq!(b["changes"], 2, "raised once, resolved once: {b:#}");
}
