//! The dashboard in a real browser (headless Chromium through chromedriver), on real data made
//! by real webhooks: sign in with the API token; each view (overview, requests, flows, runs,
//! segments) at desktop and phone widths, light and dark; a refused request's reason; a failed
//! run retried from the page.
//!
//! Needs `chromium` and `chromedriver` (the README's test command installs them). Without
//! them the tests say so and pass, unless HOOKFLOW_BROWSER_TESTS=required (set by that
//! command), when they fail. Chromium gets a dead proxy for everything but loopback, so it
//! cannot reach any other address. `HOOKFLOW_SCREENSHOTS=DIR` saves a picture of each view
//! there (how docs/screenshots/ was made).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{Binary, Receiver, Reply, fast_engine, free_port, spawn_app_with};
use hookflow::run::RunStatus;

fn find(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

/// How long a wait for the page gives it. A page here renders in well under a second, but on
/// CI's two loaded cores Chromium shares them with the rest of the suite: 15 s once ran out.
const PATIENCE: Duration = Duration::from_secs(40);

/// chromedriver and a browser session; both end when this is dropped.
struct Browser {
    c: Client,
    _driver: Driver,
}

struct Driver(Child);
impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    /// `None` (the test then passes, saying it skipped) when Chromium is missing and not required.
    async fn start() -> Option<Browser> {
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
            return None;
        };
        // fantoccini's rustls client takes the process-wide provider; two are compiled in.
        let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
        let port = free_port();
        let driver = Driver(
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
            "--window-size=1280,900", "--hide-scrollbars",
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
        Some(Browser { c, _driver: driver })
    }

    /// The first element `css` matches, waiting up to [`PATIENCE`] for it.
    async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        self.c
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    /// Waits until the text of the first element `css` matches satisfies `ok` (the page
    /// re-renders as it refreshes, so an element can be replaced between finding and reading).
    async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(e) = self.c.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css}: never as expected; last text: {last:?}");
    }

    async fn count(&self, css: &str) -> usize {
        self.c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
    }

    async fn sign_in(&self, base: &str, token: &str) {
        self.c.goto(&format!("{base}/")).await.unwrap();
        let field = self.wait("#token").await;
        field.clear().await.unwrap();
        field.send_keys(token).await.unwrap();
        self.c
            .find(Locator::Id("login"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn js(&self, script: &str) -> serde_json::Value {
        self.c.execute(script, vec![]).await.unwrap()
    }

    async fn go(&self, base: &str, hash: &str) {
        self.c.goto(&format!("{base}/#/{hash}")).await.unwrap();
    }

    /// Saves a screenshot as `DIR/name.png` when HOOKFLOW_SCREENSHOTS=DIR is set.
    async fn shot(&self, name: &str) {
        if let Ok(dir) = std::env::var("HOOKFLOW_SCREENSHOTS") {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let png = self.c.screenshot().await.unwrap();
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_see_a_run_and_replay_it() {
    let Some(b) = Browser::start().await else {
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

    // A wrong token is refused; the right one signs in.
    b.sign_in(&app.base, "wrong").await;
    b.wait_text("#login-error", |t| t.contains("Not signed in")).await;
    b.sign_in(&app.base, "dash-token").await;

    // The flow that cannot work as set up says so on the overview, with the key and the variable.
    let warning = b.wait(".warning").await.text().await.unwrap();
    assert!(
        warning.contains("on.webhook.verify.secret_env") && warning.contains("HF_DASH_UNSET_SECRET"),
        "{warning}"
    );
    // The run is listed; its detail shows the failed action, the answer it got, and only the
    // buttons that fit a failed run.
    b.go(&app.base, "runs?status=failed").await;
    b.wait(&format!("tr.run[data-id='{id}']"))
        .await
        .click()
        .await
        .unwrap();
    b.wait_text("#detail-status", |t| t == "failed").await;
    b.wait_text("li.step:nth-of-type(2) .attempt details summary", |t| {
        t.contains("/b") && t.contains("400")
    })
    .await;
    assert_eq!(b.count("#retry").await + b.count("#replay").await, 2);
    assert_eq!(b.count("#exit").await, 0);
    // Fix the destination, retry from the failed action, and see the new run.
    dest.on_path("/b", Reply::status(200));
    b.c.find(Locator::Id("retry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let new_id = b.wait_text("#detail-id", |t| t != id).await;
    let new = app.wait_status(&new_id, RunStatus::Succeeded).await;
    assert_eq!(new.replay_of.as_deref(), Some(id.as_str()));
    // The page updates itself as the run ends: no reload.
    b.wait_text("#detail-status", |t| t == "succeeded").await;
    let page = b.c.source().await.unwrap();
    assert!(page.contains(&format!("replay of <code>{id}</code>")), "{page}");
    // A succeeded run offers a replay from the start, not a retry.
    assert_eq!(b.count("#retry").await, 0);
    assert_eq!(b.count("#replay").await, 1);
    b.c.clone().close().await.unwrap();
    app.stop().await;
}

/// Every view on real data: signed and badly signed webhooks, an ignored one, a flow whose
/// destination fails, a schedule, a segment. Checked at desktop and phone widths (nothing
/// wider than the screen), in light and dark, and by keyboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_shows_real_data_on_a_laptop_and_a_phone() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/fail", Reply::status(500));
    let orders = format!(
        r#"description: Paid orders go to shipping and the buyers list
on:
  webhook:
    verify: {{ preset: github, secret_env: DASH_GH_SECRET }}
    when:
      - path: $.status
        equals: paid
vars:
  email: {{ path: $.email, required: true }}
  order_id: $.id
actions:
  - name: ship
    http: {{ url: "{0}/ship", body: {{ order: "{{{{ vars.order_id }}}}" }} }}
  - name: remember
    segment: {{ email: "{{{{ vars.email }}}}", add: buyers }}
"#,
        dest.url
    );
    let flaky = format!(
        "description: A partner that is down\non:\n  webhook: {{}}\nretry: {{ max_attempts: 2, initial_delay: 100ms }}\nactions:\n  - name: notify\n    http: {{ url: \"{}/fail\" }}\n",
        dest.url
    );
    let nightly = "description: Nightly report\non:\n  schedule: { cron: \"0 9 * * *\", timezone: Europe/Berlin }\nactions:\n  - emit: { type: report.due }\n";
    let secret = "dash-gh-secret";
    let server = Binary::start(
        &[("orders", &orders), ("flaky", &flaky), ("nightly", nightly)],
        &["--api-token", "dash-token"],
        &[("DASH_GH_SECRET", secret)],
    )
    .await;
    let http = reqwest::Client::new();
    let send = |body: String, sig: Option<String>| {
        let (http, url) = (http.clone(), server.hook_url("orders"));
        async move {
            let sig = sig.unwrap_or_else(|| {
                format!(
                    "sha256={}",
                    hex::encode(crate::security::hmac256(secret.as_bytes(), &[body.as_bytes()]))
                )
            });
            http.post(url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sig)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for (i, who) in ["ada", "grace", "linus"].iter().enumerate() {
        let body =
            json!({"id": 100 + i, "status": "paid", "email": format!("{who}@example.com")}).to_string();
        assert_eq!(send(body, None).await, 202);
    }
    let unpaid = json!({"id": 200, "status": "pending", "email": "x@example.com"}).to_string();
    assert_eq!(send(unpaid, None).await, 200);
    let forged = json!({"id": 300, "status": "paid", "email": "mallory@example.com"}).to_string();
    assert_eq!(
        send(forged, Some(format!("sha256={}", "0".repeat(64)))).await,
        401
    );
    let r = http
        .post(server.hook_url("flaky"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let auth = |rb: reqwest::RequestBuilder| rb.bearer_auth("dash-token");
    // Wait for the runs to end: 3 succeeded, 1 failed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs: serde_json::Value = auth(http.get(format!("{}/api/runs?limit=50", server.base)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ended = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "succeeded" || r["status"] == "failed")
            .count();
        if ended == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "runs did not end: {runs:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    b.sign_in(&server.base, "dash-token").await;
    b.wait("#tiles .tile").await;
    assert_eq!(
        b.js("return getComputedStyle(document.getElementById('login-box')).display")
            .await,
        "none",
        "the sign-in form goes away once signed in"
    );
    for (width, height, suffix) in [(1280u32, 900u32, "desktop"), (390, 844, "phone")] {
        b.c.set_window_size(width, height).await.unwrap();
        // Overview: the counts of the last hour and day, the chart, per flow.
        b.go(&server.base, "overview").await;
        b.wait_text("#tile-accepted-hour b", |t| t == "4").await;
        b.wait_text("#tile-refused-hour b", |t| t == "1").await;
        b.wait_text("#tile-failed-hour b", |t| t == "1").await;
        b.wait("#chart canvas").await;
        b.wait_text("tr.flow-row[data-name='orders'] td[data-kind='accepted']", |t| {
            t == "3"
        })
        .await;
        b.wait_text("tr.flow-row[data-name='orders'] td[data-kind='ignored']", |t| {
            t == "1"
        })
        .await;
        b.wait_text("tr.flow-row[data-name='orders'] td[data-kind='succeeded']", |t| {
            t == "3"
        })
        .await;
        b.wait_text("tr.flow-row[data-name='flaky'] td[data-kind='failed']", |t| {
            t == "1"
        })
        .await;
        fits(&b, "overview", width).await;
        b.shot(&format!("overview-{suffix}")).await;

        // Requests: why the forged call started no run.
        b.go(&server.base, "requests?outcome=refused").await;
        let reason = b.wait_text("tr.refused-row .reason", |t| !t.is_empty()).await;
        assert!(reason.contains("bad_signature"), "{reason}");
        assert_eq!(b.count("tr.request").await, 1, "only the refused one");
        b.go(&server.base, "requests?flow=orders").await;
        b.wait("tr.ignored-row").await;
        assert_eq!(b.count("tr.request").await, 5);
        fits(&b, "requests", width).await;
        b.shot(&format!("requests-{suffix}")).await;

        // Flows: the picture, the URL to copy, the source; a schedule's next firings.
        b.go(&server.base, "flows/orders").await;
        let url = b.wait_text("#flow-url", |t| !t.is_empty()).await;
        assert_eq!(url, server.hook_url("orders"));
        assert!(b.count("button.copy").await == 1);
        let source = b.wait_text("#flow-source", |t| !t.is_empty()).await;
        assert!(
            source.contains("preset: github, secret_env: DASH_GH_SECRET"),
            "{source}"
        );
        assert_eq!(b.count(".picture .box.action").await, 2);
        let picture = b.wait_text(".picture", |t| t.contains("buyers")).await;
        assert!(
            picture.contains("github") && picture.contains("$.status"),
            "{picture}"
        );
        fits(&b, "flow", width).await;
        b.shot(&format!("flow-{suffix}")).await;
        b.go(&server.base, "flows/nightly").await;
        b.wait(".next-firings li").await;
        assert_eq!(b.count(".next-firings li").await, 5);

        // Runs: search finds one order's run; its timeline shows the request sent and the answer.
        b.go(&server.base, "runs?q=grace%40example.com").await;
        b.wait_text("#runs", |t| t.contains("orders")).await;
        assert_eq!(b.count("tr.run").await, 1);
        fits(&b, "runs", width).await;
        b.shot(&format!("runs-{suffix}")).await;
        b.c.find(Locator::Css("tr.run"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        b.wait_text("#detail-status", |t| t == "succeeded").await;
        let first = b.wait_text(".attempt details summary", |t| !t.is_empty()).await;
        assert!(first.contains("/ship") && first.contains("200"), "{first}");
        fits(&b, "run", width).await;
        b.shot(&format!("run-{suffix}")).await;

        // Segments: search, one member.
        b.go(&server.base, "segments").await;
        b.wait_text("tr.segment[data-name='buyers']", |t| t.contains('3'))
            .await;
        b.go(&server.base, "segments/buyers?q=GRACE").await;
        b.wait_text("tr.member", |t| t.contains("grace@example.com"))
            .await;
        assert_eq!(b.count("tr.member").await, 1);
        assert_eq!(b.count("#export").await, 1);
        fits(&b, "segment", width).await;
        b.shot(&format!("segments-{suffix}")).await;
    }

    // Keyboard: letters switch views, `/` finds the search box; Enter opens a row.
    b.c.set_window_size(1280, 900).await.unwrap();
    b.go(&server.base, "overview").await;
    b.wait("#chart canvas").await;
    let body = b.c.find(Locator::Css("body")).await.unwrap();
    body.send_keys("u").await.unwrap();
    b.wait("#run-q").await;
    assert_eq!(b.js("return location.hash").await, "#/runs");
    body.send_keys("/").await.unwrap();
    assert_eq!(b.js("return document.activeElement.id").await, "run-q");
    b.js("document.querySelector('tr.run').focus()").await;
    b.c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap(); // Enter
    b.wait("#detail-status").await;
    // Dark and light.
    let before = b.js("return document.documentElement.dataset.theme").await;
    b.c.find(Locator::Id("theme"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let after = b.js("return document.documentElement.dataset.theme").await;
    assert_ne!(before, after);
    let bg = b
        .js("return getComputedStyle(document.body).backgroundColor")
        .await;
    let dark = after == "dark";
    assert_eq!(bg == "rgb(15, 17, 21)", dark, "{bg} in {after}");
    b.go(&server.base, "overview").await;
    b.wait("#chart canvas").await;
    b.shot(&format!("overview-{}", if dark { "dark" } else { "light" }))
        .await;
    b.c.clone().close().await.unwrap();
}

/// Nothing on the page is wider than the window (a phone scrolls tables inside their cards,
/// never the whole page sideways).
async fn fits(b: &Browser, view: &str, width: u32) {
    let wide = b.js("return document.documentElement.scrollWidth").await;
    assert!(
        wide.as_u64().unwrap() <= u64::from(width),
        "{view} is {wide} px wide in a {width} px window"
    );
}

/// Regressions (issue 27): the flow picture broke var names mid-word ("orde r_id"); "Counters
/// (all time)" said "none yet" after accepted runs and left out `missing_var` and
/// `malformed_body` refusals; exits were raw JSON; the per-flow table had no "exited" column;
/// the runs view had no bulk replay or bulk exit; `/favicon.ico` was a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_view_counts_every_outcome_and_the_runs_view_acts_in_bulk() {
    let dest = Receiver::start(Reply::status(400)).await;
    let orders = format!(
        "on: {{ webhook: {{}} }}\nvars:\n  order_id: {{ path: $.id, required: true }}\n  customer_email_address: $.email\nretry: {{ max_attempts: 1 }}\nactions:\n  - name: ship\n    http: {{ url: \"{}/ship\" }}\n",
        dest.url
    );
    let nurture = "on: { webhook: {} }\nvars:\n  email: $.email\nactions:\n  - wait: 3d\n  - emit: { type: nurture.done }\nexit:\n  - segment_left: { segment: newsletter, email: \"{{ vars.email }}\" }\n  - event: { type: shop.order_refunded, match: { email: \"{{ vars.email }}\" } }\n";
    let server = Binary::start(
        &[("orders", &orders), ("nurture", nurture)],
        &["--api-token", "dash-token"],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    let icon = http
        .get(format!("{}/favicon.ico", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    let post = |flow: &str, body: &'static str| {
        let req = http
            .post(server.hook_url(flow))
            .header("content-type", "application/json")
            .body(body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post("orders", r#"{"id": 1}"#).await, 202);
    assert_eq!(post("orders", r#"{"id": 2}"#).await, 202);
    assert_eq!(post("orders", r#"{"email": "no-id@example.com"}"#).await, 422);
    assert_eq!(post("orders", r#"{"id": "#).await, 400);
    assert_eq!(post("nurture", r#"{"email": "a@example.com"}"#).await, 202);
    assert_eq!(post("nurture", r#"{"email": "b@example.com"}"#).await, 202);
    let Some(b) = Browser::start().await else {
        return;
    };
    b.sign_in(&server.base, "dash-token").await;
    b.wait("#tiles .tile").await;

    for width in [1280u32, 390] {
        b.c.set_window_size(width, 900).await.unwrap();
        b.go(&server.base, "flows/orders").await;
        b.wait_text("tr[data-counter='accepted'] td.n", |t| t == "2")
            .await;
        b.wait_text("tr[data-counter='rejected:missing_var']", |t| {
            t.contains("missing var") && t.ends_with('1')
        })
        .await;
        b.wait_text("tr[data-counter='rejected:malformed_body'] td.n", |t| t == "1")
            .await;
        // Every var name on one line: an inline element that wraps has more than one box.
        let names = b
            .js("return [...document.querySelectorAll('.picture .vars td:first-child code')].map(e => [e.textContent, e.getClientRects().length])")
            .await;
        let names = names.as_array().unwrap();
        assert_eq!(names.len(), 2, "{names:?}");
        for n in names {
            assert_eq!(n[1], 1, "{} broken across lines at {width} px", n[0]);
        }
        fits(&b, "flow", width).await;
    }
    b.c.set_window_size(1280, 900).await.unwrap();
    b.go(&server.base, "flows/nurture").await;
    let exits = b.wait_text("ul.exits", |t| !t.is_empty()).await;
    assert!(
        exits.contains("leaves the segment newsletter")
            && exits.contains("an event shop.order_refunded arrives"),
        "{exits}"
    );
    assert!(
        !exits.contains("segment_left") && !exits.contains("\""),
        "no raw JSON: {exits}"
    );

    // Bulk: every failed run of orders replayed (they fail again), every waiting run of nurture exited.
    b.go(&server.base, "runs?flow=orders&status=failed").await;
    b.wait_text("#runs", |t| t.matches("orders").count() == 2).await;
    b.wait("#bulk-action").await.click().await.unwrap();
    let confirm = b.wait_text("#bulk-confirm", |t| !t.is_empty()).await;
    assert!(confirm.contains("these 2"), "{confirm}");
    b.wait("#bulk-confirm").await.click().await.unwrap();
    b.wait_text("#bulk-done", |t| t.contains("2 of 2 run(s) replayed"))
        .await;
    b.go(&server.base, "runs?flow=nurture&status=waiting").await;
    b.wait_text("#runs", |t| t.matches("nurture").count() == 2).await;
    b.wait("#bulk-action").await.click().await.unwrap();
    b.wait("#bulk-confirm").await.click().await.unwrap();
    b.wait_text("#bulk-done", |t| t.contains("2 of 2 run(s) exited"))
        .await;
    b.go(&server.base, "overview").await;
    b.wait_text("tr.flow-row[data-name='nurture'] td[data-kind='exited']", |t| {
        t == "2"
    })
    .await;
    b.c.clone().close().await.unwrap();
}

/// The suppression list's view (issue 29) on a phone and a laptop: find an address, suppress
/// one with the form, lift an entry with a reason that stays as history, and export the list
/// as the CSV the API gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suppression_list_is_searched_added_to_lifted_with_a_reason_and_exported() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let plain = "on: { webhook: {} }\nactions:\n  - emit: { type: t.done }\n".to_string();
    let app = spawn_app_with(&[("plain", plain)], &[], fast_engine(), Some("dash-token")).await;
    let http = reqwest::Client::new();
    for (email, list) in [("ada@example.com", Some("newsletter")), ("bob@example.com", None)] {
        let r = http
            .post(format!("{}/api/suppressions", app.base))
            .bearer_auth("dash-token")
            .json(&json!({"email": email, "list": list}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let listed = |lifted: bool| {
        let (http, base) = (http.clone(), app.base.clone());
        async move {
            let v: serde_json::Value = http
                .get(format!("{base}/api/suppressions?lifted={lifted}"))
                .bearer_auth("dash-token")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["suppressions"].as_array().unwrap().clone()
        }
    };
    b.sign_in(&app.base, "dash-token").await;
    b.wait("#chart canvas").await;
    for (width, suffix) in [(390, "phone"), (1280, "desktop")] {
        b.c.set_window_size(width, 900).await.unwrap();
        b.go(&app.base, "suppressions").await;
        b.wait_text("tr.suppression[data-email='ada@example.com']", |t| {
            t.contains("newsletter")
        })
        .await;
        b.wait_text("tr.suppression[data-email='bob@example.com']", |t| {
            t.contains("every email")
        })
        .await;
        b.go(&app.base, "suppressions?q=BOB").await;
        b.wait("#supp-q").await;
        let deadline = Instant::now() + PATIENCE;
        while b.count("tr.suppression").await != 1
            || b.count("tr.suppression[data-email='bob@example.com']").await != 1
        {
            assert!(
                Instant::now() < deadline,
                "the search still shows other addresses"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        fits(&b, "suppressions", width).await;
        b.shot(&format!("suppressions-{suffix}")).await;
    }

    // Suppress an address with the form.
    b.go(&app.base, "suppressions").await;
    b.wait("tr.suppression").await;
    b.wait("#add-email")
        .await
        .send_keys("Carol@Example.com")
        .await
        .unwrap();
    b.wait("#add-reason")
        .await
        .select_by_value("bounced")
        .await
        .unwrap();
    b.wait("#add-note").await.send_keys("ticket 7").await.unwrap();
    b.wait("#supp-add button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    b.wait_text("#supp-said", |t| t.contains("Suppressed: carol@example.com"))
        .await;
    b.wait("tr.suppression[data-email='carol@example.com']").await;
    let carol = listed(false).await;
    let carol = carol.iter().find(|s| s["email"] == "carol@example.com").unwrap();
    assert_eq!(
        (
            carol["reason"].as_str(),
            carol["list"].as_str(),
            carol["note"].as_str()
        ),
        (Some("bounced"), None, Some("ticket 7"))
    );

    // Lift ada's entry: a reason is asked for and kept.
    b.wait("tr.suppression[data-email='ada@example.com'] button.lift")
        .await
        .click()
        .await
        .unwrap();
    b.wait_text("#lift-what", |t| t.contains("ada@example.com from newsletter"))
        .await;
    b.wait("#lift-reason")
        .await
        .send_keys("asked to rejoin")
        .await
        .unwrap();
    b.wait("#lift-go").await.click().await.unwrap();
    b.wait_text("#supp-said", |t| t.contains("Lifted: ada@example.com"))
        .await;
    let active: Vec<serde_json::Value> = listed(false).await;
    assert!(
        active.iter().all(|s| s["email"] != "ada@example.com"),
        "{active:?}"
    );
    let history = listed(true).await;
    let ada = history.iter().find(|s| s["email"] == "ada@example.com").unwrap();
    assert_eq!(ada["lifted"]["reason"], "asked to rejoin");
    b.go(&app.base, "suppressions?lifted=1").await;
    b.wait_text("tr.suppression.lifted[data-email='ada@example.com']", |t| {
        t.contains("asked to rejoin")
    })
    .await;

    // Export: the file the page saves is the API's CSV.
    b.js("window.__saved = []; const make = URL.createObjectURL; URL.createObjectURL = (blob) => { window.__saved.push(blob); return make(blob); };").await;
    b.wait("#supp-export").await.click().await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while b.js("return window.__saved.length").await != 1 {
        assert!(Instant::now() < deadline, "nothing was exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let saved =
        b.c.execute_async(
            "const done = arguments[arguments.length - 1]; window.__saved[0].text().then(done);",
            vec![],
        )
        .await
        .unwrap();
    let want = http
        .get(format!("{}/api/suppressions?format=csv&lifted=true", app.base))
        .bearer_auth("dash-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(saved.as_str(), Some(want.as_str()));
    assert_eq!(want.lines().count(), 4, "{want}");
    b.c.clone().close().await.unwrap();
    app.stop().await;
}

/// An alert raised now (issue 30) is the first thing under "Needs attention", with its words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_alert_is_the_first_thing_that_needs_attention() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let orders =
        "on: { webhook: {} }\nalerts:\n  silence: { after: 1s }\nactions:\n  - emit: { type: order.seen }\n";
    let app = Binary::start(
        &[("orders", orders)],
        &["--alert-every", "200ms", "--api-token", "dash-token"],
        &[],
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
    b.sign_in(&app.base, "dash-token").await;
    let text = b
        .wait_text(".alert[data-key='orders/silence']", |t| {
            t.contains("no accepted request for")
        })
        .await;
    assert!(text.starts_with("orders: silence since"), "{text}");
    let first = b
        .js("return document.querySelector('#problems section div').className")
        .await;
    assert_eq!(first, "bad alert");
    b.c.clone().close().await.unwrap();
}

/// A run's clicks on its tracked links show under the email step on the run's timeline — a
/// person's first click and a scanner's burst told apart — and the flow's page counts them per
/// link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_clicks_show_on_its_timeline_and_the_flow_counts_them_per_link() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (smtp_port, mail) = crate::email::start_smtp(0);
    let opts = crate::helpers::Opts {
        api_token: Some("dash-token".into()),
        ..crate::email::smtp(smtp_port)
    };
    let flow = r#"
on: { webhook: {} }
actions:
  - name: promo
    email:
      to: "{{ body.email }}"
      subject: Plans
      html: '<a href="https://shop.example/pricing" data-track="pricing">Plans</a> <a href="https://shop.example/blog">Blog</a>'
      track_links: all
"#;
    let app = crate::helpers::spawn_app_opts(&[("promo", flow.to_string())], &[], opts).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut runs = Vec::new();
    for who in ["ada", "bob"] {
        let r = app
            .http
            .post(app.hook_url("promo"))
            .json(&json!({"email": format!("{who}@example.com")}))
            .send()
            .await
            .unwrap();
        let id = r.json::<serde_json::Value>().await.unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string();
        app.wait_status(&id, RunStatus::Succeeded).await;
        runs.push(id);
    }
    let mails = crate::email::wait_mails(&mail, 2).await;
    let links = |m: &crate::email::Mail| -> Vec<String> {
        let text = crate::unsubscribe::text_of(m);
        let re = regex::Regex::new(&format!("{}/c/[A-Za-z0-9_-]+", regex::escape(&app.base))).unwrap();
        re.find_iter(&text).map(|f| f.as_str().to_string()).collect()
    };
    let find = |who: &str| mails.iter().find(|m| m.to[0].starts_with(who)).unwrap();
    // Ada clicks "pricing"; a scanner opens both of Bob's links at once.
    let ada = links(find("ada"));
    assert_eq!(http.get(&ada[0]).send().await.unwrap().status(), 302);
    for l in links(find("bob")) {
        assert_eq!(http.get(&l).send().await.unwrap().status(), 302);
    }
    b.sign_in(&app.base, "dash-token").await;
    b.go(&app.base, &format!("runs/{}", runs[0])).await;
    b.wait_text("li.step .clicks", |t| {
        t.contains("pricing") && t.contains("person, first click")
    })
    .await;
    b.go(&app.base, &format!("runs/{}", runs[1])).await;
    let bob = b
        .wait_text("li.step .clicks", |t| t.matches("mail scanner").count() >= 2)
        .await;
    assert!(bob.contains("within a second"), "{bob}");
    b.go(&app.base, "flows/promo").await;
    let counts = b.wait_text("table.link-clicks", |t| t.contains("pricing")).await;
    assert!(counts.contains("https://shop.example/blog"), "{counts}");
    b.c.clone().close().await.unwrap();
    app.stop().await;
}
