//! Secrets that change under a running server: secret files and systemd credentials are read
//! again when they change, so a rotation needs no restart (issue 27: the docs promised that
//! of environment variables, which a running process cannot see change).

use crate::helpers::{Binary, Receiver, Reply};
use crate::security::{now, sign};

async fn post_signed(http: &reqwest::Client, url: &str, preset: &str, secret: &str) -> u16 {
    let body = br#"{"ref": "refs/heads/main"}"#.to_vec();
    let mut req = http.post(url).header("content-type", "application/json");
    for (k, v) in sign(preset, secret, &body, now()) {
        req = req.header(k, v);
    }
    req.body(body).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_file_or_credential_takes_effect_without_a_restart() {
    let dest = Receiver::start(Reply::status(200)).await;
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("github.secret");
    std::fs::write(&file, "first-secret-0123456789\n").unwrap();
    let creds = secrets.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("WOO_CRED"), "woo-credential-0123456789").unwrap();
    std::fs::write(creds.join("API_TOKEN"), "api-token-from-credential").unwrap();
    let by_file = format!(
        "on:\n  webhook:\n    verify: {{ preset: github, secret_file: {} }}\nactions:\n  - emit: {{ type: gh.push }}\n",
        file.display()
    );
    let by_credential = format!(
        r#"on:
  webhook:
    verify: {{ preset: woocommerce, secret_env: WOO_CRED }}
actions:
  - name: call
    http:
      url: "{}/api"
      headers:
        Authorization: "Bearer {{{{ secret('API_TOKEN') }}}}"
"#,
        dest.url
    );
    let app = Binary::start(
        &[("by-file", &by_file), ("by-credential", &by_credential)],
        &[],
        &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())],
    )
    .await;
    assert!(
        !app.log().contains("refused (401) until"),
        "both flows have their secrets: {}",
        app.log()
    );
    let http = reqwest::Client::new();
    let url = app.hook_url("by-file");
    assert_eq!(
        post_signed(&http, &url, "github", "first-secret-0123456789").await,
        202
    );
    // Rotate: the file now holds the new secret. No restart, no reload.
    std::fs::write(&file, "second-secret-abcdefghijkl\n").unwrap();
    assert_eq!(
        post_signed(&http, &url, "github", "first-secret-0123456789").await,
        401
    );
    assert_eq!(
        post_signed(&http, &url, "github", "second-secret-abcdefghijkl").await,
        202
    );

    // A systemd credential stands in for an unset variable, for verify and secret() alike,
    // and is masked in the run's record.
    let url = app.hook_url("by-credential");
    assert_eq!(
        post_signed(&http, &url, "woocommerce", "woo-credential-0123456789").await,
        202
    );
    let hits = dest.wait_hits(1).await;
    assert_eq!(
        hits[0].headers["authorization"],
        "Bearer api-token-from-credential"
    );
    let runs = crate::helpers::get(&http, format!("{}/api/runs?flow=by-credential", app.base)).await;
    let id = runs["runs"][0]["id"].as_str().unwrap();
    let run = http
        .get(format!("{}/api/runs/{id}", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!run.contains("api-token-from-credential"), "{run}");
    assert!(run.contains("[redacted]"), "{run}");
    std::fs::write(creds.join("WOO_CRED"), "woo-credential-rotated-xyz").unwrap();
    assert_eq!(
        post_signed(&http, &url, "woocommerce", "woo-credential-0123456789").await,
        401
    );
    assert_eq!(
        post_signed(&http, &url, "woocommerce", "woo-credential-rotated-xyz").await,
        202
    );
}

#[test]
fn a_relative_secret_file_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    std::fs::write(
        dir.path().join("flows/f.yaml"),
        "on:\n  webhook:\n    verify: { preset: github, secret_file: secrets/gh }\nactions:\n  - emit: { type: t.x }\n",
    )
    .unwrap();
    let out = crate::cli::hookflow(&["validate", "flows"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("f.yaml:3:") && err.contains("is not an absolute path"),
        "{err}"
    );
}
