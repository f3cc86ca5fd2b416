//! The CLI's client commands (`send`, `runs`, `urls`, `test`) as a new user meets them: the
//! real binary against a real server, from another directory, past one page of runs.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::cli::show;
use crate::helpers::{Binary, Receiver, Reply};

fn run(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookflow"));
    cmd.args(args)
        .current_dir(cwd)
        .env("HOOKFLOW_LOG", "warn")
        .env_remove("HOOKFLOW_SECRET")
        .env_remove("HOOKFLOW_DATA");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hookflow")
}

const PLAIN: &str = "on: { webhook: {} }\nactions:\n  - name: a\n    emit: { type: t.done }\n";

/// Regressions: `runs list --limit 5000` stopped silently at the API's page of 500 runs; and
/// `runs list --data DIR` read the running server's runs instead of DIR's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_follows_pages_says_when_more_exist_and_reads_the_data_dir_it_is_given() {
    // A stopped server's store, with one run of its own flow.
    let other = Binary::start(&[("other", PLAIN)], &["--workers", "0"], &[]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(other.hook_url("other"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let other_dir = other.kill9();
    let other_data = other_dir.path().join("data");

    let app = Binary::start(&[("busy", PLAIN)], &["--workers", "0"], &[]).await;
    let total = 510;
    for chunk in 0..total / 30 {
        let sends = (0..30).map(|i| {
            http.post(app.hook_url("busy"))
                .json(&json!({ "n": chunk * 30 + i }))
                .send()
        });
        for r in futures::future::join_all(sends).await {
            assert_eq!(r.unwrap().status(), 202);
        }
    }
    let listen = app.base.trim_start_matches("http://").to_string();
    let cwd = tempfile::tempdir().unwrap();
    let list = |extra: &[&str]| {
        let mut args = vec!["runs", "list", "--listen", &listen];
        args.extend_from_slice(extra);
        let out = run(&args, cwd.path(), &[]);
        assert!(out.status.success(), "{}", show(&args, &out));
        out
    };
    let json_of = |out: &Output| -> Value { serde_json::from_slice(&out.stdout).unwrap() };

    let out = list(&["--limit", "505", "--json"]);
    let v = json_of(&out);
    assert_eq!(
        v["runs"].as_array().unwrap().len(),
        505,
        "past the API's page of 500"
    );
    assert_eq!(v["more"], true);
    let out = list(&["--limit", "5000", "--json"]);
    let v = json_of(&out);
    assert_eq!(v["runs"].as_array().unwrap().len(), total);
    assert_eq!(v["more"], false);
    let ids: std::collections::HashSet<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), total, "no run listed twice across pages");
    let out = list(&["--limit", "10"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("more runs exist"),
        "{}",
        show(&["runs", "list", "--limit", "10"], &out)
    );

    // --data DIR reads DIR's store, not the server that answers.
    let data_arg = other_data.to_str().unwrap();
    let out = list(&["--data", data_arg, "--json"]);
    let v = json_of(&out);
    let flows: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["flow"].as_str().unwrap())
        .collect();
    assert_eq!(
        flows,
        ["other"],
        "{}",
        show(&["runs", "list", "--data", data_arg], &out)
    );
    // The server's own directory is open in it: read through it, and say so.
    let own = app.dir.path().join("data");
    let out = list(&["--data", own.to_str().unwrap(), "--limit", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is open in a running server"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("busy"));
}

/// Regressions: `send` without `--data` created a new URL secret in `./data` and posted to a
/// URL the server did not know (404); the `github` preset sent no delivery id and no
/// User-Agent, so the suggested dedupe key was empty and a second send was a "duplicate".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_asks_the_server_for_the_url_and_sends_what_the_sender_sends() {
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = format!(
        r#"on:
  webhook:
    verify: {{ preset: github, secret_env: GH_SECRET }}
    dedupe: {{ key: "{{{{ headers['x-github-delivery'] }}}}", window: 1d }}
actions:
  - name: forward
    http:
      url: "{}/seen"
      body:
        ua: "{{{{ headers['user-agent'] }}}}"
        delivery: "{{{{ headers['x-github-delivery'] }}}}"
        event: "{{{{ headers['x-github-event'] }}}}"
"#,
        dest.url
    );
    let app = Binary::start(&[("gh", &flow)], &[], &[("GH_SECRET", "gh-secret")]).await;
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("push.json"), r#"{"ref": "refs/heads/main"}"#).unwrap();
    let flows = app.dir.path().join("flows");
    let listen = app.base.trim_start_matches("http://");
    let args = [
        "send",
        "gh",
        "--payload",
        "push.json",
        "-H",
        "X-GitHub-Event: push",
        "--flows",
        flows.to_str().unwrap(),
        "--listen",
        listen,
    ];
    for _ in 0..2 {
        let out = run(&args, cwd.path(), &[("GH_SECRET", "gh-secret")]);
        assert!(out.status.success(), "{}", show(&args, &out));
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("202 "),
            "{}",
            show(&args, &out)
        );
    }
    assert!(
        !cwd.path().join("data").exists(),
        "a client command must not create a URL secret"
    );
    let hits = dest.wait_hits(2).await;
    let bodies: Vec<Value> = hits.iter().map(|h| h.json()).collect();
    for b in &bodies {
        assert!(b["ua"].as_str().unwrap().starts_with("GitHub-Hookshot/"), "{b}");
        assert_eq!(b["event"], "push", "-H adds to what the preset sends");
        assert_eq!(b["delivery"].as_str().unwrap().len(), 36, "a GUID: {b}");
    }
    assert_ne!(
        bodies[0]["delivery"], bodies[1]["delivery"],
        "each send is its own delivery"
    );

    // With no server to ask and no secret where it looks: a clear error, and still nothing created.
    let dead = crate::helpers::free_port().to_string();
    let listen_dead = format!("127.0.0.1:{dead}");
    let args = [
        "send",
        "gh",
        "--payload",
        "push.json",
        "--flows",
        flows.to_str().unwrap(),
        "--listen",
        &listen_dead,
    ];
    let out = run(&args, cwd.path(), &[("GH_SECRET", "gh-secret")]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no URL secret at data/secret"), "{err}");
    assert!(!cwd.path().join("data").exists());
}

/// Regressions: `urls` listed schedule and event flows, whose URLs answer 404; `test` exited
/// 1 ("not matched") for an unknown flow and a missing payload, called malformed JSON on
/// standard input an unsupported content type, and rendered a per-item action without its
/// item; `--status bogus` was refused by the server instead of the argument parser.
#[test]
fn urls_test_and_arguments_say_what_they_mean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args = ["urls", "--secret", crate::helpers::SECRET];
    let out = run(&args, root, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&args, &out));
    assert!(text.contains("woo-order-to-shipping"), "{text}");
    for no_url in ["buyers-daily-report", "crm-unsubscribed", "form-welcome-series"] {
        assert!(!text.contains(no_url), "{no_url} has no webhook URL: {text}");
    }

    let woo = [("WOO_WEBHOOK_SECRET", "x")];
    let payload = root.join("examples/payloads/woo-order.json");
    let payload = payload.to_str().unwrap();
    for args in [
        vec!["test", "no-such-flow", "--payload", payload],
        vec!["test", "woo-order-stock", "--payload", "/no/such/file.json"],
    ] {
        let out = run(&args, root, &woo);
        assert_eq!(
            out.status.code(),
            Some(2),
            "an error, not 'not matched': {}",
            show(&args, &out)
        );
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args([
            "test",
            "woo-order-stock",
            "--payload",
            "-",
            "-H",
            "X-WC-Webhook-Topic: order.created",
        ])
        .current_dir(root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"{\"id\": 1,").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2));
    assert!(text.contains("malformed JSON body"), "{text}");

    let args = [
        "test",
        "woo-order-stock",
        "--payload",
        payload,
        "-H",
        "X-WC-Webhook-Topic: order.created",
    ];
    let out = run(&args, root, &woo);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", show(&args, &out));
    assert!(
        text.contains("/stock/BOOK-1/movements") && text.contains("/stock/PEN-2/movements"),
        "{text}"
    );
    assert!(text.contains("\"delta\": -2"), "{text}");
    assert!(text.contains("action summary (http):\n  not rendered:"), "{text}");

    let args = ["runs", "list", "--status", "bogus"];
    let out = run(&args, root, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&args, &out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("succeeded") && err.contains("waiting"),
        "lists the values: {err}"
    );
}

/// Regression: help had blank descriptions, and listed `--umask`/`--log-format` on commands
/// that create and log nothing.
#[test]
fn help_describes_every_argument_and_only_what_the_command_uses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let help = |args: &[&str]| {
        let mut a = args.to_vec();
        a.push("--help");
        let out = run(&a, root, &[]);
        assert!(out.status.success(), "{}", show(&a, &out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for cmd in [
        vec!["runs", "show"],
        vec!["runs", "list"],
        vec!["runs", "replay"],
        vec!["runs", "exit"],
        vec!["runs", "replay-failed"],
        vec!["segments", "show"],
        vec!["serve"],
        vec!["send"],
        vec!["test"],
        vec!["urls"],
        vec!["validate"],
        vec!["schema"],
        vec!["bin"],
        vec!["capture"],
        vec!["backup"],
        vec!["restore"],
        vec!["segments", "list"],
        vec!["store", "check"],
        vec!["suppressions", "list"],
        vec!["suppressions", "add"],
        vec!["suppressions", "lift"],
        vec!["suppressions", "import"],
        vec!["suppressions", "export"],
        vec!["alerts"],
    ] {
        let text = help(&cmd);
        // An argument without a description: nothing after it on its line (clap's compact
        // layout) and no deeper-indented line under it (its long layout).
        let lines: Vec<&str> = text.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        let blank: Vec<&str> = (0..lines.len())
            .filter(|&i| {
                let l = lines[i];
                let t = l.trim();
                let is_arg = (1..=6).contains(&indent(l))
                    && (t.starts_with('-') || t.starts_with('<') || t.starts_with('['));
                let same_line = t.contains("  ");
                let below = lines.get(i + 1).is_some_and(|n| {
                    !n.trim().is_empty() && !n.trim().starts_with('[') && indent(n) > indent(l)
                });
                is_arg && !same_line && !below
            })
            .map(|i| lines[i])
            .collect();
        assert!(
            blank.is_empty(),
            "hookflow {} --help: no description for {blank:?}\n{text}",
            cmd.join(" ")
        );
        if ["schema", "bin", "urls", "test", "validate", "send"].contains(&cmd[0]) || cmd[0] == "runs" {
            assert!(
                !text.contains("--umask") && !text.contains("--log-format"),
                "{}: {text}",
                cmd.join(" ")
            );
        }
    }
    assert!(help(&["serve"]).contains("--log-format"));
    assert!(help(&["serve"]).contains("--umask"));
}

/// Regression: log lines carried Rust's debug form of optional values (`line=Some(8)`, and
/// `"line":"Some(23)"` as a string in JSON, `admin=None`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_hold_plain_values_not_rust_debug_forms() {
    let flow = "on:\n  webhook:\n    verify: { preset: github, secret_env: UNSET_SECRET_FOR_LOG_TEST }\nactions:\n  - emit: { type: t.x }\n";
    for format in ["json", "human"] {
        let app = Binary::start(&[("f", flow)], &["--log-format", format], &[]).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let log = loop {
            let log = app.log();
            if log.contains("UNSET_SECRET_FOR_LOG_TEST") {
                break log;
            }
            assert!(std::time::Instant::now() < deadline, "no warning logged: {log}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert!(!log.contains("Some(") && !log.contains("None"), "{format}: {log}");
        let line = log
            .lines()
            .find(|l| l.contains("UNSET_SECRET_FOR_LOG_TEST"))
            .unwrap();
        if format == "json" {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["fields"]["line"], json!(3), "{line}");
        } else {
            assert!(line.contains("line=3"), "{line}");
        }
    }
}

/// Regression: the human `runs show` printed one line per attempt, without the request and
/// response README promises (`--json` had them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_prints_each_attempts_request_and_response() {
    let dest = Receiver::start(Reply::json(201, json!({"ticket": "T-77"}))).await;
    let flow = format!(
        "on: {{ webhook: {{}} }}\nactions:\n  - name: ticket\n    http:\n      url: \"{}/tickets\"\n      body: {{ subject: \"{{{{ body.subject }}}}\" }}\n",
        dest.url
    );
    let app = Binary::start(&[("t", &flow)], &[], &[]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(app.hook_url("t"))
        .json(&json!({"subject": "Broken pen"}))
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    dest.wait_hits(1).await;
    let listen = app.base.trim_start_matches("http://").to_string();
    let args = ["runs", "show", id.as_str(), "--listen", listen.as_str()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let out = run(&args, app.dir.path(), &[]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("succeeded") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "{}", show(&args, &out));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(text.contains("  request:\n"), "{text}");
    assert!(text.contains("content-type: application/json"), "{text}");
    assert!(
        text.contains(r#""subject":"Broken pen""#) || text.contains(r#""subject": "Broken pen""#),
        "{text}"
    );
    assert!(text.contains("  response 201:\n"), "{text}");
    assert!(text.contains("T-77"), "the response body: {text}");
}
