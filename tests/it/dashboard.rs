//! The dashboard in a real browser (headless Chromium through chromedriver): sign in with the
//! API token, see a run the test created, replay it, see the new run.
//!
//! Needs `chromium` and `chromedriver` (the README's test command installs them). Without
//! them the test says so and passes, unless HOOKFLOW_BROWSER_TESTS=required (set by that
//! command), when it fails. Chromium gets a dead proxy for everything but loopback, so it
//! cannot reach any other address.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{Receiver, Reply, fast_engine, free_port, spawn_app_with};
use hookflow::run::RunStatus;

fn find(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

struct Driver(Child);
impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_see_a_run_and_replay_it() {
    let required = std::env::var("HOOKFLOW_BROWSER_TESTS").is_ok_and(|v| v == "required");
    let (Some(driver), Some(browser)) = (
        find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]),
        find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]),
    ) else {
        assert!(
            !required,
            "chromium and chromedriver are required (HOOKFLOW_BROWSER_TESTS=required)"
        );
        eprintln!("SKIPPED: no chromium/chromedriver; the README's test command installs them");
        return;
    };
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/b", Reply::status(400));
    let flow = format!(
        "description: dashboard test\non:\n  webhook: {{}}\nactions:\n  - name: a\n    http: {{ url: \"{0}/a\" }}\n  - name: b\n    http: {{ url: \"{0}/b\" }}\n",
        dest.url
    );
    // A flow whose signing secret is not set: every request to it would be refused.
    let unset = "on:\n  webhook:\n    verify: { preset: github, secret_env: [HF_DASH_UNSET_SECRET] }\nactions:\n  - emit: { type: gh.push }\n";
    let app = spawn_app_with(
        &[("orders", flow), ("signed", unset.to_string())],
        &[],
        fast_engine(),
        Some("dash-token"),
    )
    .await;
    let resp = app
        .http
        .post(app.hook_url("orders"))
        .header("content-type", "application/json")
        .body(r#"{"order": 7}"#)
        .send()
        .await
        .unwrap();
    let id = resp.json::<serde_json::Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_status(&id, RunStatus::Failed).await;

    // fantoccini's rustls client takes the process-wide provider; two are compiled in.
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let port = free_port();
    let _driver = Driver(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let caps = json!({"goog:chromeOptions": {"binary": browser, "args": [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-default-apps", "--no-pings", "--dns-prefetch-disable",
        "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost",
    ]}});
    let deadline = Instant::now() + Duration::from_secs(20);
    let c = loop {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "chromedriver: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let wait = |c: &fantoccini::Client, css: String| {
        let c = c.clone();
        async move {
            c.wait()
                .at_most(Duration::from_secs(15))
                .for_element(Locator::Css(&css))
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"))
        }
    };
    c.goto(&format!("{}/", app.base)).await.unwrap();
    // A wrong token is refused; the right one signs in.
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("wrong")
        .await
        .unwrap();
    c.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
    let err = wait(&c, "#login-error".into()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(err.text().await.unwrap().contains("Not signed in"));
    let token = c.find(Locator::Id("token")).await.unwrap();
    token.clear().await.unwrap();
    token.send_keys("dash-token").await.unwrap();
    c.find(Locator::Id("login")).await.unwrap().click().await.unwrap();

    // The flow that cannot work as set up says so, with the key and the variable.
    let warning = wait(&c, ".warning".into()).await.text().await.unwrap();
    assert!(
        warning.contains("on.webhook.verify.secret_env") && warning.contains("HF_DASH_UNSET_SECRET"),
        "{warning}"
    );
    // The run is listed; its detail shows the failed action.
    wait(&c, format!("tr.run[data-id='{id}']"))
        .await
        .click()
        .await
        .unwrap();
    let status = wait(&c, "#detail-status".into()).await;
    assert_eq!(status.text().await.unwrap(), "failed");
    // Fix the destination, retry from the failed action, and see the new run.
    dest.on_path("/b", Reply::status(200));
    c.find(Locator::Id("retry")).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let new_id = loop {
        // The page re-renders the detail as it refreshes: an element found just before can be
        // replaced before its text is read; look again.
        if let Ok(shown) = wait(&c, "#detail-id".into()).await.text().await
            && shown != id
        {
            break shown;
        }
        assert!(Instant::now() < deadline, "the page never showed the new run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let new = app.wait_status(&new_id, RunStatus::Succeeded).await;
    assert_eq!(new.replay_of.as_deref(), Some(id.as_str()));
    wait(&c, format!("tr.run[data-id='{new_id}']")).await;
    let page = c.source().await.unwrap();
    assert!(page.contains(&format!("replay of <code>{id}</code>")), "{page}");
    c.close().await.unwrap();
    app.stop().await;
}
