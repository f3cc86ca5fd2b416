//! The API's OpenAPI description: current in docs/openapi.json, served at
//! `/api/openapi.json` without a token, every route it lists served — and schemathesis (the
//! OpenAPI fuzzer, from PyPI) run against the release binary with runs in its store: no 5xx,
//! every answer matching the description, a token required where it says so.
//!
//! scripts/test.sh installs schemathesis in tests/tools/schemathesis/.venv and builds the
//! release binary (HOOKFLOW_RELEASE_BIN); without them the fuzzing part says so and passes,
//! unless HOOKFLOW_VENDOR_TESTS=required.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{Binary, SECRET, serve_command_of, wait_ready};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const TOKEN: &str = "openapi-test-token-0123456789";

#[test]
fn the_binary_prints_the_committed_description_and_it_is_current() {
    let out = crate::cli::hookflow(&["openapi"], root());
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docs/openapi.json")).unwrap()).unwrap();
    assert_eq!(printed, committed);
    assert!(
        printed == hookflow::server::openapi::document(),
        "docs/openapi.json is not what the code describes: HOOKFLOW_WRITE_OPENAPI=1 cargo test --lib openapi"
    );
}

/// Served without a token (it holds no data), the same as printed; each route it lists is one
/// the server has: asked without a token it refuses with the API's 401 (a route it lacked
/// would be the plain 404 of an unknown path), and a failure is the API's JSON error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_description_is_served_and_lists_only_routes_the_server_has() {
    let app = Binary::start(&[], &["--api-token", TOKEN], &[]).await;
    let http = reqwest::Client::new();
    let served = crate::helpers::get(&http, format!("{}/api/openapi.json", app.base)).await;
    assert_eq!(
        served,
        hookflow::server::openapi::document(),
        "what is served is what the code describes"
    );
    for r in hookflow::server::openapi::ROUTES {
        let url = format!(
            "{}{}",
            app.base,
            r.path
                .replace("{id}", "01nope")
                .replace("{flow}", "nope")
                .replace("{name}", "nope")
                .replace("{email}", "ada@example.com")
        );
        let method = reqwest::Method::from_bytes(r.method.to_ascii_uppercase().as_bytes()).unwrap();
        let resp = http.request(method.clone(), &url).send().await.unwrap();
        let public = served["paths"][r.path][r.method].get("security").is_none();
        if public {
            assert_eq!(resp.status(), 200, "{method} {}", r.path);
        } else {
            assert_eq!(resp.status(), 401, "{method} {}", r.path);
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized", "{method} {}", r.path);
        }
    }
    // An extractor's refusal is JSON too, with its reason.
    let resp = http
        .get(format!("{}/api/runs?limit=many", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    assert!(body["detail"].as_str().unwrap().contains("limit"), "{body}");
    let resp = http
        .post(format!("{}/api/flows/nope/exit", app.base))
        .bearer_auth(TOKEN)
        .json(&json!([null, null]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422, "an array is not the body's object");
}

/// schemathesis, if installed.
fn schemathesis() -> Option<PathBuf> {
    let p = root().join("tests/tools/schemathesis/.venv/bin/schemathesis");
    if p.exists() {
        return Some(p);
    }
    let required = std::env::var("HOOKFLOW_VENDOR_TESTS").is_ok_and(|v| v == "required");
    assert!(
        !required,
        "schemathesis is required (HOOKFLOW_VENDOR_TESTS=required): scripts/test.sh installs it"
    );
    eprintln!("skipped: schemathesis is not installed (scripts/test.sh installs it)");
    None
}

const FLOW: &str = r#"on:
  webhook: {}
vars:
  email: $.email
actions:
  - name: note
    emit: { type: test.seen, data: { email: "{{ vars.email }}" } }
  - name: pause
    wait: 1d
"#;

const FAILING: &str = r#"on:
  webhook: {}
actions:
  - name: nowhere
    http: { url: "http://127.0.0.1:9/down", timeout: 1s }
    retry: { max_attempts: 1 }
"#;

/// The fuzzer against what users run: every route with generated valid and invalid input,
/// and the links from the runs list to the runs it names (runs that wait, runs that failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_release_binary() {
    let Some(st) = schemathesis() else { return };
    let bin = std::env::var_os("HOOKFLOW_RELEASE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hookflow")));
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(flows.join("signup.yaml"), FLOW).unwrap();
    std::fs::write(flows.join("failing.yaml"), FAILING).unwrap();
    let (mut cmd, base) = serve_command_of(
        &bin,
        &flows,
        &dir.path().join("templates"),
        &dir.path().join("data"),
    );
    let mut child = cmd.args(["--api-token", TOKEN]).spawn().unwrap();
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let tokens = hookflow::token::UrlTokens::from_secret(SECRET.as_bytes()).unwrap();
    for i in 0..5 {
        for flow in ["signup", "failing"] {
            let r = http
                .post(format!("{base}/hooks/{flow}/{}", tokens.token(flow)))
                .json(&json!({"email": format!("ada{i}@example.com")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
    }
    // In a directory of its own: schemathesis keeps a cache of what it found where it runs,
    // which would make the next run replay it (and land in the repository).
    let cwd = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(cwd)
            .args(["run", &format!("{base}/api/openapi.json")])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args([
                "--checks",
                "all",
                "--max-examples",
                "25",
                "--seed",
                "20261207",
                "--no-color",
            ])
            .args(["--request-timeout", "10"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
