//! The release build, which users run, says what the tests check of the debug build.
//!
//! A difference between the two once hid here: minijinja records where an undefined value
//! came from only in debug mode, which it turns on by itself only in debug builds, so the
//! release binary said "undefined value" where the tests saw "`vars.customer.emial` is
//! undefined". `scripts/test.sh` builds the release binary and names it in
//! HOOKFLOW_RELEASE_BIN (with HOOKFLOW_RELEASE_TESTS=required); `cargo test` alone skips
//! these tests and says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::helpers::{Receiver, Reply, SECRET, serve_command_of, wait_ready, wait_run};

fn release_binary() -> Option<PathBuf> {
    match std::env::var_os("HOOKFLOW_RELEASE_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "HOOKFLOW_RELEASE_BIN={} is not a file", p.display());
            Some(p)
        }
        None => {
            let required = std::env::var("HOOKFLOW_RELEASE_TESTS").is_ok_and(|v| v == "required");
            assert!(
                !required,
                "HOOKFLOW_RELEASE_TESTS=required, but HOOKFLOW_RELEASE_BIN is not set"
            );
            eprintln!("skipped: HOOKFLOW_RELEASE_BIN is not set (scripts/test.sh builds and sets it)");
            None
        }
    }
}

fn output(bin: &Path, args: &[&str], cwd: &Path) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env("HOOKFLOW_LOG", "warn")
        .output()
        .unwrap()
}

const STRICT: &str = r#"on: { webhook: {} }
vars:
  customer: $.customer
actions:
  - name: forward
    http:
      url: "DEST/orders"
      body:
        email: "{{ vars.customer.emial }}"
"#;

/// The run's error, the dry run's report and validate's messages are the same words from the
/// release binary as from the debug one, and name the undefined expression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_binary_names_what_is_undefined_and_says_what_the_debug_one_says() {
    let Some(release) = release_binary() else { return };
    let debug = PathBuf::from(env!("CARGO_BIN_EXE_hookflow"));
    let dest = Receiver::start(Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("flows")).unwrap();
    std::fs::write(
        dir.path().join("flows/strict.yaml"),
        STRICT.replace("DEST", &dest.url),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("order.json"),
        r#"{"customer": {"email": "ada@example.com"}}"#,
    )
    .unwrap();

    // A real run on the release binary fails naming the expression and where it renders.
    let (mut cmd, base) = serve_command_of(
        &release,
        &dir.path().join("flows"),
        &dir.path().join("templates"),
        &dir.path().join("data"),
    );
    let mut child = cmd.spawn().unwrap();
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let token = hookflow::token::UrlTokens::from_secret(SECRET.as_bytes())
        .unwrap()
        .token("strict");
    let r = http
        .post(format!("{base}/hooks/strict/{token}"))
        .json(&json!({"customer": {"email": "ada@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = wait_run(&http, &base, &id, |r| r["status"] == "failed").await;
    child.kill().unwrap();
    child.wait().unwrap();
    let err = run["error"].as_str().unwrap_or("");
    assert!(
        err.contains("`vars.customer.emial` is undefined in actions[0].http.body.email"),
        "the release binary's run error: {err}"
    );

    // The same words from both builds: the dry run, and validate over the corpus of broken flows.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("tests/corpus");
    let validate = [
        "validate",
        corpus.join("flows").to_str().unwrap(),
        "--templates",
        corpus.join("templates").to_str().unwrap(),
    ]
    .map(String::from);
    let validate: Vec<&str> = validate.iter().map(String::as_str).collect();
    // The shipped per-item flow on its shipped sample: its summary, which reads the earlier
    // action's output, is "not rendered" in both builds (the release one called it an error).
    let (flows, templates, sample) = (
        root.join("flows"),
        root.join("templates"),
        root.join("examples/payloads/woo-order.json"),
    );
    let stock = [
        "test",
        "woo-order-stock",
        "--payload",
        sample.to_str().unwrap(),
        "-H",
        "X-WC-Webhook-Topic: order.created",
        "--flows",
        flows.to_str().unwrap(),
        "--templates",
        templates.to_str().unwrap(),
    ];
    let shipped = output(&release, &stock, dir.path());
    let text = String::from_utf8_lossy(&shipped.stdout);
    assert_eq!(shipped.status.code(), Some(0), "{text}");
    assert!(text.contains("action summary (http):\n  not rendered:"), "{text}");
    for args in [
        vec!["test", "strict", "--payload", "order.json", "--json"],
        stock.to_vec(),
        validate,
    ] {
        let (d, r) = (
            output(&debug, &args, dir.path()),
            output(&release, &args, dir.path()),
        );
        // Run ids and idempotency keys are new each time.
        let stable = |o: &Output| {
            let text = format!(
                "{:?}\n{}\n{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            regex_lite(&text)
        };
        assert_eq!(
            stable(&d),
            stable(&r),
            "hookflow {}: the builds disagree",
            args.join(" ")
        );
        if args[1] == "strict" {
            assert!(
                stable(&r).contains("`vars.customer.emial` is undefined"),
                "{}",
                stable(&r)
            );
        }
    }
}

/// `text` with ULIDs (26 characters of Crockford base32) replaced by `<id>`.
fn regex_lite(text: &str) -> String {
    let re = regex::Regex::new(r"\b[0-9a-hjkmnp-tv-z]{26}\b").unwrap();
    re.replace_all(text, "<id>").into_owned()
}
