//! The real binary: `validate` names file, line and problem; `urls` is stable.

use std::path::Path;
use std::process::{Command, Output};

pub fn hookflow(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(args)
        .current_dir(cwd)
        .env("HOOKFLOW_LOG", "warn")
        // The tests' destinations are on loopback, as serve is started in them.
        .env("HOOKFLOW_EGRESS_ALLOW", "127.0.0.1")
        .output()
        .expect("run hookflow")
}

/// A temp dir whose `flows/` holds `files` (path under flows → text).
fn flows_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join("flows").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// `hookflow validate flows` in `dir`: its output, and all of it in words for messages.
fn validate(dir: &Path) -> (Output, String) {
    let args = ["validate", "flows"];
    let out = hookflow(&args, dir);
    let text = show(&args, &out);
    (out, text)
}

pub fn show(args: &[&str], out: &Output) -> String {
    format!(
        "hookflow {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_shipped_examples_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args = ["validate", "flows/"];
    let out = hookflow(&args, root);
    assert!(out.status.success(), "{}", show(&args, &out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("flow(s) OK"),
        "{}",
        show(&args, &out)
    );
}

#[test]
fn validate_reports_every_broken_file_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let files = [
        (
            "good.yaml",
            "on:\n  webhook: {}\nactions:\n  - http: { url: \"http://127.0.0.1:1/x\" }\n",
        ),
        (
            "syntax.yaml",
            "on:\n  webhook: {}\nactions:\n  - http: { url: \"http://x\"\n  - oops: [\n",
        ),
        (
            "unknown.yaml",
            "on:\n  webhook: {}\nactions:\n  - http:\n      url: http://x\n      bdy: \"{}\"\n",
        ),
        (
            "badpath.yaml",
            "on:\n  webhook: {}\nvars:\n  id: $.id\n  order_id: $.items[\nactions:\n  - http: { url: \"http://x\" }\n",
        ),
        (
            "badtemplate.yaml",
            "on:\n  webhook: {}\nactions:\n  - http:\n      method: POST\n      url: \"http://x/{{ vars.id \"\n",
        ),
        (
            "badcron.yaml",
            "on:\n  schedule:\n    cron: \"0 8 * * 9\"\nactions:\n  - http: { url: \"http://x\" }\n",
        ),
        (
            "badevent.yaml",
            "on:\n  event: segment.changed\nactions:\n  - emit: { type: run.custom }\n",
        ),
    ];
    for (name, src) in files {
        std::fs::write(flows.join(name), src).unwrap();
    }
    let args = ["validate", "flows"];
    let out = hookflow(&args, dir.path());
    let ctx = show(&args, &out);
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    let err = String::from_utf8_lossy(&out.stderr);
    let line_of = |file: &str| -> String {
        err.lines()
            .find(|l| l.starts_with(&format!("flows/{file}:")))
            .unwrap_or_else(|| panic!("no error for {file}\n{ctx}"))
            .to_string()
    };
    let syntax = line_of("syntax.yaml");
    assert!(syntax.starts_with("flows/syntax.yaml:5:"), "{syntax}");
    let unknown = line_of("unknown.yaml");
    assert!(
        unknown.starts_with("flows/unknown.yaml:6:") && unknown.contains("unknown field `bdy`"),
        "{unknown}"
    );
    let badpath = line_of("badpath.yaml");
    assert!(
        badpath.starts_with("flows/badpath.yaml:5:")
            && badpath.contains("vars.order_id")
            && badpath.contains("invalid JSONPath"),
        "{badpath}"
    );
    let badtemplate = line_of("badtemplate.yaml");
    assert!(
        badtemplate.starts_with("flows/badtemplate.yaml:6:") && badtemplate.contains("template syntax error"),
        "{badtemplate}"
    );
    let badcron = line_of("badcron.yaml");
    assert!(
        badcron.starts_with("flows/badcron.yaml:3:") && badcron.contains("`9` is out of range"),
        "{badcron}"
    );
    let badevent: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("flows/badevent.yaml:"))
        .collect();
    assert!(
        badevent
            .iter()
            .any(|l| l.starts_with("flows/badevent.yaml:2:")
                && l.contains("unknown event type `segment.changed`")),
        "{ctx}"
    );
    assert!(
        badevent
            .iter()
            .any(|l| l.starts_with("flows/badevent.yaml:4:") && l.contains("raised by hookflow itself")),
        "{ctx}"
    );
    assert!(!err.contains("flows/good.yaml"), "{ctx}");
    assert!(err.contains("7 problem(s); 1 flow(s) valid"), "{ctx}");
}

/// Mistakes in waits, exits and per-item actions, each named with its line.
#[test]
fn validate_names_sequence_and_per_item_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let src = "on:\n  webhook: {}\nactions:\n  - wait: { for: 3d, at: \"9 o'clock\" }\n  - wait: { for: 2d, timezone: Mars/Olympus }\n  - wait: 3d\n    retry: { max_attempts: 2 }\n  - for_each: $.items[*]\n    max_items: 5000\n    http: { url: \"http://127.0.0.1:1/x\" }\n  - item_concurrency: 2\n    http: { url: \"http://127.0.0.1:1/y\" }\n  - for_each: \"not a list\"\n    http: { url: \"http://127.0.0.1:1/z\" }\nexit:\n  - segment_left: { segment: newsletter }\n";
    std::fs::write(flows.join("seq.yaml"), src).unwrap();
    std::fs::write(
        flows.join("ok.yaml"),
        "on:\n  webhook: {}\nactions:\n  - wait: { for: 1d, at: \"09:00\", timezone: Europe/Berlin }\n  - http: { url: \"http://127.0.0.1:1/x\" }\n",
    )
    .unwrap();
    let args = ["validate", "flows"];
    let out = hookflow(&args, dir.path());
    let ctx = show(&args, &out);
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    let err = String::from_utf8_lossy(&out.stderr);
    let has = |line: u32, text: &str| {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("flows/seq.yaml:{line}:")) && l.contains(text)),
            "no `{text}` at line {line}\n{ctx}"
        )
    };
    // A missing field is a YAML shape error: reported alone, before anything is compiled.
    has(16, "missing field `email`");
    std::fs::write(
        flows.join("seq.yaml"),
        src.replace(
            "{ segment: newsletter }",
            "{ segment: newsletter, email: \"{{ vars.email }}\" }",
        ),
    )
    .unwrap();
    let out = hookflow(&args, dir.path());
    let ctx = show(&args, &out);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let has = |line: u32, text: &str| {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("flows/seq.yaml:{line}:")) && l.contains(text)),
            "no `{text}` at line {line}\n{ctx}"
        )
    };
    has(4, "is not a time of day like 09:00");
    has(5, "not an IANA time zone");
    has(7, "a wait makes no attempts, so it has no `retry`");
    has(9, "`max_items` must be from 1 to 1000");
    has(11, "`item_concurrency` goes with `for_each`");
    has(13, "give a JSONPath over the body");
    assert!(!err.contains("flows/ok.yaml"), "{ctx}");
}

#[test]
fn urls_are_stable_and_depend_on_the_secret() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap();
    // `urls` reads the secret the server wrote; it creates none (issue 27).
    let none = hookflow(&["urls", "--data", data_arg], root);
    assert_eq!(none.status.code(), Some(1), "{}", show(&["urls"], &none));
    assert!(String::from_utf8_lossy(&none.stderr).contains("`hookflow serve` writes it at its first start"));
    assert!(!data.path().join("secret").exists());
    std::fs::write(
        data.path().join("secret"),
        "a-secret-as-serve-writes-it-0123456789",
    )
    .unwrap();
    let a = hookflow(&["urls", "--data", data_arg], root);
    let b = hookflow(&["urls", "--data", data_arg], root);
    assert!(a.status.success(), "{}", show(&["urls"], &a));
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8_lossy(&a.stdout);
    assert!(
        text.contains("http://127.0.0.1:8080/hooks/woo-order-to-shipping/"),
        "{text}"
    );
    let c = hookflow(
        &[
            "urls",
            "--data",
            data_arg,
            "--secret",
            "another-secret-of-enough-length",
            "--public-url",
            "https://hooks.example.com/",
        ],
        root,
    );
    let other = String::from_utf8_lossy(&c.stdout);
    assert!(
        other.contains("https://hooks.example.com/hooks/woo-order-to-shipping/"),
        "{other}"
    );
    let token = |out: &str| {
        out.lines()
            .next()
            .and_then(|l| l.rsplit('/').next())
            .unwrap_or("")
            .to_string()
    };
    assert_ne!(token(&text), token(&other), "another secret gives other tokens");
}

#[test]
fn test_dry_runs_a_shipped_flow_without_side_effects() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("order.json");
    std::fs::write(
        &sample,
        r#"{"id": 4711, "status": "processing", "total": "49.90", "billing": {"email": "ada@example.com"},
            "shipping": {"first_name": "Ada", "last_name": "L", "address_1": "1 St", "city": "London", "postcode": "N1", "country": "GB"},
            "line_items": [{"sku": "BOOK-1"}]}"#,
    )
    .unwrap();
    let flows = root.join("flows");
    let templates = root.join("templates");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "test",
            "woo-order-to-shipping",
            "--payload",
            sample.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(
            [
                "--flows",
                flows.to_str().unwrap(),
                "--templates",
                templates.to_str().unwrap(),
            ]
            .map(String::from),
        );
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| {
        let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(&args)
            .current_dir(dir.path())
            .env("SHIPPING_API_TOKEN", "tok-dry-run-secret")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Matched: every var and the request as it would be sent, the secret masked.
    let (code, out, err) = run(base(&["-H", "X-WC-Webhook-Topic: order.created", "--json"]));
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["outcome"], "matched");
    assert_eq!(report["vars"]["order_id"], 4711);
    let sent = &report["actions"][0]["would_send"];
    assert_eq!(sent["method"], "POST");
    assert_eq!(sent["url"], "http://127.0.0.1:9000/shipments");
    assert_eq!(sent["body"]["reference"], "woo-4711");
    assert!(!out.contains("tok-dry-run-secret"), "{out}");
    assert!(out.contains("[redacted]"));
    // Not matched: which condition failed.
    let (code, out, _) = run(base(&[]));
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with("NOT MATCHED: condition not met: header X-WC-Webhook-Topic"),
        "{out}"
    );
    // A broken sample.
    std::fs::write(&sample, "{not json").unwrap();
    let (code, out, _) = run(base(&["-H", "Content-Type: application/json"]));
    assert_eq!(code, Some(2));
    assert!(out.starts_with("ERROR: malformed JSON body"), "{out}");
    // Nothing was stored.
    assert!(!dir.path().join("data").exists());
}

#[test]
fn validate_runs_flow_tests_and_reports_failures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = hookflow(&["validate", "--run-tests", "flows"], root);
    assert!(
        out.status.success(),
        "{}",
        show(&["validate", "--run-tests"], &out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 of 2 flow test(s) passed"));

    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(flows.join("f.tests")).unwrap();
    std::fs::write(
        flows.join("f.yaml"),
        "on:\n  webhook: {}\nvars:\n  id: $.id\nactions:\n  - name: send\n    http: { url: \"http://127.0.0.1:9/x/{{ vars.id }}\" }\n",
    )
    .unwrap();
    std::fs::write(
        flows.join("f.tests/good.json"),
        r#"{"request": {"body": {"id": 7}}, "expect": {"vars": {"id": 7}, "actions": {"send": {"url": "http://127.0.0.1:9/x/7"}}}}"#,
    )
    .unwrap();
    std::fs::write(
        flows.join("f.tests/wrong.json"),
        r#"{"request": {"body": {"id": 8}}, "expect": {"actions": {"send": {"url": "http://127.0.0.1:9/x/7"}}}}"#,
    )
    .unwrap();
    let out = hookflow(&["validate", "--run-tests", "flows"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("PASS flows/f.tests/good.json"), "{stdout}");
    assert!(
        stdout.contains(r#"FAIL flows/f.tests/wrong.json: $.actions.send.url: expected "http://127.0.0.1:9/x/7", got "http://127.0.0.1:9/x/8""#),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 2 flow test(s) passed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_bin_prints_what_it_receives_and_answers() {
    use std::io::Read;
    let port = crate::helpers::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["bin", "--listen", &format!("127.0.0.1:{port}"), "--status", "201"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/shipments?x=1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let resp = loop {
        match http
            .post(&url)
            .header("x-test", "yes")
            .json(&serde_json::json!({"order": {"id": 7}}))
            .send()
            .await
        {
            Ok(r) => break r,
            Err(_) => {
                assert!(std::time::Instant::now() < deadline, "the bin did not start");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(resp.status(), 201);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert!(answer["id"].as_str().is_some_and(|s| !s.is_empty()));
    child.kill().unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.wait().unwrap();
    assert!(out.contains("── POST /shipments?x=1"), "{out}");
    assert!(out.contains("x-test: yes"), "{out}");
    assert!(out.contains("{\n  \"order\": {\n    \"id\": 7\n  }\n}"), "{out}");
}

/// `--version` names the commit the binary was built from and the build date.
#[test]
fn version_names_the_commit_and_the_build_date() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = hookflow(&["--version"], here);
    assert!(out.status.success(), "{}", show(&["--version"], &out));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(here)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let want_commit = head.unwrap_or_else(|| "unknown commit".into());
    assert!(
        text.starts_with(&format!(
            "hookflow {} (commit {want_commit}",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let date = text.rsplit("built ").next().unwrap().trim_end_matches(')');
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3 && parts[0].len() == 4 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "not a date: {text}"
    );
}

/// Mistakes a run would only meet after a real event arrived: a method typo, a URL that can
/// never work, contradictory retry settings — each reported by validate at its own line.
#[test]
fn validate_catches_literal_values_no_attempt_could_use() {
    let dir = flows_dir(&[(
        "broken.yaml",
        "on:\n  webhook: {}\nactions:\n  - name: a\n    http:\n      method: PSOT\n      url: \"htp//example com\"\n  \
         - name: b\n    http: { url: \"https://api.example.com/x\" }\n    retry: { initial_delay: 10m, max_delay: 1s }\n",
    )]);
    let (out, text) = validate(dir.path());
    assert_eq!(out.status.code(), Some(1), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (line, says) in [
        ("broken.yaml:6:", "did you mean POST?"),
        ("broken.yaml:7:", "is not a URL"),
        (
            "broken.yaml:10:",
            "initial_delay (10m) is longer than max_delay (1s)",
        ),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(line) && l.contains(says)),
            "no `{line} … {says}`:\n{text}"
        );
    }
}

/// Flows that trigger each other in a cycle are refused, naming the whole cycle at each flow's
/// `emit`; a chain that ends is fine.
#[test]
fn validate_refuses_event_cycles_and_names_every_flow_in_them() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let on_event = |t: &str, emits: &str| {
        format!("on:\n  event: {{ type: {t} }}\nactions:\n  - name: pass\n    emit:\n      type: {emits}\n")
    };
    std::fs::write(flows.join("ping.yaml"), on_event("shop.ping", "shop.pong")).unwrap();
    std::fs::write(flows.join("pong.yaml"), on_event("shop.pong", "shop.ping")).unwrap();
    std::fs::write(flows.join("echo.yaml"), on_event("shop.echo", "shop.echo")).unwrap();
    std::fs::write(
        flows.join("start.yaml"),
        "on: { webhook: {} }\nactions:\n  - emit: { type: shop.started }\n",
    )
    .unwrap();
    std::fs::write(
        flows.join("end.yaml"),
        "on:\n  event: { type: shop.started }\nactions:\n  - http: { url: \"https://api.example.com/x\" }\n",
    )
    .unwrap();
    let args = ["validate", "flows"];
    let out = hookflow(&args, dir.path());
    let text = show(&args, &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for file in ["ping.yaml:6:", "pong.yaml:6:"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(file) && l.contains("`ping` → `pong`") && l.contains("cycle")),
            "{file}:\n{text}"
        );
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("echo.yaml:6:") && l.contains("triggered by the event it emits")),
        "{text}"
    );
    assert!(stderr.contains("3 problem(s); 2 flow(s) valid"), "{text}");
}

/// Flows kept in subfolders load; a `.json` file where flows live is named, not skipped; an
/// empty flows folder is not "OK".
#[test]
fn validate_loads_flows_in_subfolders_and_says_when_there_are_none() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(flows.join("shop/orders")).unwrap();
    std::fs::create_dir_all(flows.join("order.tests")).unwrap();
    let flow = "on: { webhook: {} }\nactions:\n  - emit: { type: shop.x }\n";
    std::fs::write(flows.join("shop/orders/order.yaml"), flow).unwrap();
    std::fs::write(flows.join("shop/refund.yml"), flow).unwrap();
    std::fs::write(flows.join("order.tests/sample.json"), "{}").unwrap();
    let args = ["validate", "flows"];
    let out = hookflow(&args, dir.path());
    let text = show(&args, &out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 flow(s) OK"),
        "{text}"
    );

    std::fs::write(
        flows.join("shop/stock.json"),
        "{\"on\": {\"webhook\": {}}, \"actions\": []}",
    )
    .unwrap();
    let out = hookflow(&args, dir.path());
    let text = show(&args, &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("stock.json") && text.contains("rename it"),
        "{text}"
    );

    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("flows")).unwrap();
    let out = hookflow(&args, empty.path());
    let text = show(&args, &out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no flow files"), "{text}");
}

/// An unknown `timezone:` is reported on its own line, with the IANA name meant.
#[test]
fn an_unknown_time_zone_is_reported_at_its_line() {
    let dir = flows_dir(&[(
        "daily.yaml",
        "on:\n  schedule:\n    cron: \"0 8 * * 1-5\"\n    timezone: Berlin\nactions:\n  - emit: { type: shop.daily }\n",
    )]);
    let (out, text) = validate(dir.path());
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .any(|l| l.contains("daily.yaml:4:")
                && l.contains("on.schedule.timezone")
                && l.contains("Europe/Berlin")),
        "{text}"
    );
}

/// A signature check whose secret is not set is a warning from validate (exit 0: CI rarely
/// holds production secrets), naming the variable.
#[test]
fn validate_warns_when_a_flows_signing_secret_is_not_set() {
    let dir = flows_dir(&[(
        "signed.yaml",
        "on:\n  webhook:\n    verify: { preset: github, secret_env: [HF_TEST_UNSET_SECRET_42] }\nactions:\n  - emit: { type: gh.push }\n",
    )]);
    let (out, text) = validate(dir.path());
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "signed.yaml:3: warning: on.webhook.verify.secret_env: HF_TEST_UNSET_SECRET_42 is not set"
        ) && text.contains("(401)"),
        "{text}"
    );
    assert!(text.contains("1 warning(s)"), "{text}");
    // CI that wants warnings to fail the build says so.
    let args = ["validate", "flows", "--deny-warnings"];
    let denied = hookflow(&args, dir.path());
    let text = show(&args, &denied);
    assert_eq!(denied.status.code(), Some(1), "{text}");
    assert!(
        text.contains("0 problem(s); 1 warning(s), denied by --deny-warnings"),
        "{text}"
    );
    let set = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["validate", "flows"])
        .current_dir(dir.path())
        .env("HF_TEST_UNSET_SECRET_42", "a-long-enough-secret")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&set.stderr).contains("warning"));
}

/// An http action whose literal URL the egress policy refuses (an internal address, or
/// `localhost`, not in `--egress-allow`) is a warning from validate, given the same flag as
/// serve, and from serve at start: every attempt of it would be refused. Templated URLs and
/// public names are not judged before they are known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_serve_warn_about_literal_urls_the_egress_policy_refuses() {
    let flow = "on: { webhook: {} }\nvars: { to: $.to }\nactions:\n  - name: inside\n    http: { url: \"http://10.1.2.3/orders\" }\n  - name: local\n    http: { url: \"http://localhost:9/x\" }\n  - name: templated\n    http: { url: \"{{ vars.to }}\" }\n  - name: public\n    http: { url: \"https://api.example.com/x\" }\n";
    let dir = flows_dir(&[("egress.yaml", flow)]);
    let run = |extra: &[&str]| {
        let mut args = vec!["validate", "flows"];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(&args)
            .current_dir(dir.path())
            .env_remove("HOOKFLOW_EGRESS_ALLOW")
            .output()
            .unwrap();
        let text = show(&args, &out);
        (out, text)
    };
    let (out, text) = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "egress.yaml:5: warning: actions[0].http.url: refused by the egress policy: 10.1.2.3 is"
        ),
        "{text}"
    );
    assert!(
        text.contains("egress.yaml:7: warning: actions[1].http.url:")
            && text.contains("every attempt of `local` is refused"),
        "{text}"
    );
    assert!(
        !text.contains("`templated`") && !text.contains("`public`"),
        "{text}"
    );
    let (out, text) = run(&["--egress-allow", "10.0.0.0/8,127.0.0.1"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("warning"), "{text}");
    // The same at serve start (the test server allows loopback only).
    let server = crate::helpers::Binary::start(&[("egress", flow)], &[], &[]).await;
    let log = server.log();
    assert!(
        log.contains("every attempt of `inside` is refused") && log.contains("10.1.2.3"),
        "{log}"
    );
}

/// A template file with a block never closed is reported at the tag that opens it, and the flow
/// that uses it says the template does not compile — not that there is no such template.
#[test]
fn a_broken_template_is_reported_at_its_opening_tag_and_not_as_missing() {
    let dir = flows_dir(&[(
        "t.yaml",
        "on: { webhook: {} }\nactions:\n  - http: { url: \"https://example.com/x\", body_template: helpdesk/ticket.json.j2 }\n",
    )]);
    let templates = dir.path().join("templates/helpdesk");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("ticket.json.j2"),
        "Hello\n{% if vars.vip %}\nVIP\n\nmore\ntext\nbye\n",
    )
    .unwrap();
    let (out, text) = validate(dir.path());
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("helpdesk/ticket.json.j2:2: template syntax error"),
        "{text}"
    );
    assert!(
        text.contains(
            "t.yaml:3: actions[0].http.body_template: template `helpdesk/ticket.json.j2` does not compile"
        ),
        "{text}"
    );
    assert!(!text.contains("no template"), "{text}");
}

/// Issue 17 item 5: a file with four mistakes (an unknown top key, an operator typo, `method:
/// PSOT`, `header:` for `headers:`) gets all four in one run of validate, each at its own line
/// with the fix, in the order of the file — and none of the mistakes it would only cause.
#[test]
fn validate_reports_every_mistake_in_a_file_at_once() {
    let dir = flows_dir(&[(
        "order.yaml",
        "on:\n  webhook:\n    when:\n      - path: $.status\n        eqals: paid\ndescripton: a typo at the top\nactions:\n  - name: call\n    http:\n      url: \"https://api.example.com/orders\"\n      method: PSOT\n      header: { X-A: b }\n",
    )]);
    let (out, ctx) = validate(dir.path());
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    let err = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("flows/order.yaml:"))
        .collect();
    let expected = [
        (
            "flows/order.yaml:5: on.webhook.when[0].eqals:",
            "did you mean `equals`?",
        ),
        ("flows/order.yaml:6: descripton:", "did you mean `description`?"),
        (
            "flows/order.yaml:11: actions[0].http.method:",
            "did you mean POST?",
        ),
        (
            "flows/order.yaml:12: actions[0].http.header:",
            "did you mean `headers`?",
        ),
    ];
    assert_eq!(problems.len(), expected.len(), "{ctx}");
    for (line, (at, fix)) in problems.iter().zip(expected) {
        assert!(
            line.starts_with(at) && line.contains(fix),
            "{line}\nwanted {at} … {fix}\n{ctx}"
        );
    }
    assert!(err.contains("4 problem(s)"), "{ctx}");
}

/// Issue 17 items 2 and 9: a flow file and a template file saved "UTF-8 with BOM" load and
/// render as without it; `hookflow test` masks a secret's value where it stands, and a
/// one-letter development value does not mask every such letter of the output.
#[test]
fn a_bom_is_accepted_and_short_secrets_mask_only_themselves() {
    let dir = flows_dir(&[(
        "bom.yaml",
        "\u{feff}on: { webhook: {} }\nvars: { name: $.name }\nactions:\n  - name: call\n    http:\n      url: \"http://127.0.0.1:9/x\"\n      headers: { X-Short: \"Bearer {{ secret('HF_SHORT') }}\", X-Long: \"{{ secret('HF_LONG') }}\" }\n      body_template: note.txt\n",
    )]);
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/note.txt"),
        "\u{feff}total ticket for {{ vars.name }}",
    )
    .unwrap();
    let (out, ctx) = validate(dir.path());
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    std::fs::write(dir.path().join("sample.json"), r#"{"name": "Tom Twist"}"#).unwrap();
    let args = ["test", "bom", "--payload", "sample.json", "--json"];
    let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(args)
        .current_dir(dir.path())
        .env("HF_SHORT", "t")
        .env("HF_LONG", "a-long-secret-value-42")
        .output()
        .unwrap();
    let ctx = show(&args, &out);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = &report["actions"][0]["would_send"];
    // No BOM inside the rendered template; the letters t of the text are left alone.
    assert_eq!(sent["body"], "total ticket for Tom Twist", "{ctx}");
    let header = |name: &str| {
        sent["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].clone())
            .unwrap_or_default()
    };
    assert_eq!(header("x-short"), "Bearer [redacted]", "{ctx}");
    assert_eq!(header("x-long"), "[redacted]", "{ctx}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("a-long-secret-value-42"),
        "{ctx}"
    );
}

/// Regressions (issue 27): a renamed copy whose `name:` differs from its file name was
/// accepted without a word; a missing `text_template` file in an email action hid a second
/// problem of the same file (a later step named in `subject`).
#[test]
fn validate_warns_of_a_name_unlike_its_file_and_reports_every_problem_of_an_action() {
    let dir = flows_dir(&[
        (
            "orders-copy.yaml",
            "name: orders\non: { webhook: {} }\nactions:\n  - emit: { type: a.b }\n",
        ),
        (
            "mail.yaml",
            "on: { webhook: {} }\nactions:\n  - name: first\n    email:\n      to: a@example.com\n      subject: \"Hi {{ steps.later.body }}\"\n      text_template: email/none.txt\n  - name: later\n    emit: { type: x.y }\n",
        ),
    ]);
    let (out, text) = validate(dir.path());
    assert_eq!(out.status.code(), Some(1), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "flows/orders-copy.yaml:1: warning: name: the flow is named `orders` but its file `orders-copy`"
        ),
        "{text}"
    );
    assert!(
        err.contains("flows/mail.yaml:6: actions[0].email.subject: `steps.later` is not an earlier action"),
        "{text}"
    );
    assert!(
        err.contains("flows/mail.yaml:7: actions[0].email.text_template: no template `email/none.txt`"),
        "{text}"
    );
}

/// `validate --format json` and `--format github` (issue 34): the same problems as the human
/// report, as one JSON document and as workflow commands a pull request shows at their lines.
#[test]
fn validate_reports_as_json_and_as_github_annotations() {
    let dir = flows_dir(&[
        (
            "ok.yaml",
            "on: { webhook: {} }\nactions:\n  - emit: { type: a.b }\n",
        ),
        (
            "bad.yaml",
            "on: { webhook: {} }\nactions:\n  - http: { url: \"http://x.example/\", methd: POST }\n",
        ),
        (
            "renamed.yaml",
            "name: other\non: { webhook: {} }\nactions:\n  - emit: { type: a.b }\n",
        ),
    ]);
    let args = ["validate", "flows", "--format", "json"];
    let out = hookflow(&args, dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let problems = doc["problems"].as_array().unwrap();
    let error = problems.iter().find(|p| p["severity"] == "error").unwrap();
    assert_eq!(error["file"], "flows/bad.yaml");
    assert_eq!(error["line"], 3);
    assert!(error["message"].as_str().unwrap().contains("methd"), "{error}");
    let warning = problems.iter().find(|p| p["severity"] == "warning").unwrap();
    assert_eq!(
        (warning["file"].as_str(), warning["key"].as_str()),
        (Some("flows/renamed.yaml"), Some("name"))
    );

    let args = ["validate", "flows", "--format", "github"];
    let out = hookflow(&args, dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", show(&args, &out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(
            |l| l.starts_with("::error file=flows/bad.yaml,line=3,title=hookflow validate::")
                && l.contains("methd")
        ),
        "{text}"
    );
    assert!(
        text.contains("::warning file=flows/renamed.yaml,line=1,"),
        "{text}"
    );
    let args = ["validate", "flows", "--format", "github", "--deny-warnings"];
    let text = String::from_utf8_lossy(&hookflow(&args, dir.path()).stdout).into_owned();
    assert!(
        text.contains("::error file=flows/renamed.yaml,line=1,"),
        "denied warnings are errors: {text}"
    );
}

/// Shell completions and the man page come from the same definitions as `--help`: the bash
/// script is valid bash (`bash -n`) and, loaded, completes `hookflow se` to the commands and a
/// flag of `serve`; zsh and fish scripts name the commands; the man page is roff that `man`
/// renders, listing every command. Cut off by `| head`, neither is an error.
#[test]
fn completions_and_the_man_page_are_generated_from_the_cli() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bash = hookflow(&["completions", "bash"], root);
    assert!(bash.status.success(), "{}", show(&["completions", "bash"], &bash));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hookflow.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // Ask the loaded completion what it offers, as bash does on <TAB>.
    let ask = |words: &str| {
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _hookflow hookflow \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let offered = ask("hookflow se");
    assert!(
        offered.lines().any(|l| l == "serve")
            && offered.lines().any(|l| l == "send")
            && offered.lines().any(|l| l == "segments"),
        "{offered}"
    );
    let flags = ask("hookflow serve --public");
    assert!(flags.lines().any(|l| l == "--public-url"), "{flags}");
    for shell in ["zsh", "fish"] {
        let out = hookflow(&["completions", shell], root);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("suppressions") && text.contains("link-retention"),
            "{shell}: {text}"
        );
    }
    let refused = hookflow(&["completions", "tcsh"], root);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "{}",
        show(&["completions", "tcsh"], &refused)
    );

    let man = hookflow(&["man"], root);
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH hookflow 1"),
        "{page}"
    );
    let file = dir.path().join("hookflow.1");
    std::fs::write(&file, &man.stdout).unwrap();
    let rendered = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(&file)
        .env("MANWIDTH", "100")
        .output();
    if let Some(out) = rendered.ok().filter(|o| o.status.success()) {
        let text = String::from_utf8_lossy(&out.stdout);
        for command in ["serve", "validate", "send", "suppressions", "completions", "man"] {
            assert!(text.contains(command), "{command} in {text}");
        }
    } else {
        for command in ["serve", "validate", "send", "suppressions", "completions"] {
            assert!(page.contains(command), "{command} in {page}");
        }
    }
    // Cut off early, as `| head` does: a clean exit.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert!(child.wait().unwrap().success());
}
