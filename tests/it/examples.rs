//! The shipped examples in `flows/` and `templates/`, served by the real binary with their
//! destinations pointed at a local receiver through the environment variables they read.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Receiver, Reply, SECRET, get, serve_command, wait_ready};

const WOO_SECRET: &str = "woo-example-secret";
const SLACK_SECRET: &str = "slack-example-secret";
const DAY_MS: u64 = 24 * 3600 * 1000;

/// A JSON delivery signed the way `preset`'s sender signs it (the test's own HMAC code).
async fn signed(
    http: &reqwest::Client,
    url: String,
    preset: &str,
    secret: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let bytes = body.to_string().into_bytes();
    let mut req = http.post(url).header("content-type", "application/json");
    for (k, v) in crate::security::sign(preset, secret, &bytes, crate::security::now())
        .into_iter()
        .chain(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    {
        req = req.header(k, v);
    }
    req.body(bytes).send().await.unwrap()
}

/// The mail tool's unsubscribe webhook for `email`, accepted.
async fn unsubscribe(http: &reqwest::Client, url: String, email: &str) {
    let r = http
        .post(url)
        .json(&json!({"type": "unsubscribe", "data": {"email": email}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// A WooCommerce delivery of `topic`, signed with the examples' secret; the run id of the 202.
async fn woo(http: &reqwest::Client, url: String, topic: &str, body: &Value) -> String {
    let r = signed(
        http,
        url,
        "woocommerce",
        WOO_SECRET,
        &[("x-wc-webhook-topic", topic)],
        body,
    )
    .await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_flows_do_what_they_say() {
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/api/tickets", Reply::json(201, json!({"id": "T-9"})));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = tempfile::tempdir().unwrap();
    let (mut cmd, base) = serve_command(&root.join("flows"), &root.join("templates"), data.path());
    let mut child = cmd
        .env("SHIPPING_API_URL", &dest.url)
        .env("SHIPPING_API_TOKEN", "tok-shipping-123")
        .env("HELPDESK_API_URL", &dest.url)
        .env("SUPPORT_API_URL", &dest.url)
        .env("WOO_WEBHOOK_SECRET", WOO_SECRET)
        .env("SLACK_SIGNING_SECRET", SLACK_SECRET)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let tokens = hookflow::token::UrlTokens::from_secret(SECRET.as_bytes()).unwrap();
    let url = |flow: &str| format!("{base}/hooks/{flow}/{}", tokens.token(flow));

    // WooCommerce order → shipping API.
    let order = json!({"id": 4711, "status": "processing", "total": "49.90", "billing": {"email": "ada@example.com"},
        "shipping": {"first_name": "Ada", "last_name": "Lovelace", "address_1": "1 Analytical St", "city": "London", "postcode": "N1", "country": "GB"},
        "line_items": [{"sku": "BOOK-1"}, {"sku": "PEN-2"}]});
    let topic = [("x-wc-webhook-topic", "order.created")];
    // Unsigned, as anyone who learned the URL could send it: refused.
    let r = http
        .post(url("woo-order-to-shipping"))
        .header("x-wc-webhook-topic", "order.created")
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = signed(
        &http,
        url("woo-order-to-shipping"),
        "woocommerce",
        WOO_SECRET,
        &topic,
        &order,
    )
    .await;
    assert_eq!(r.status(), 202);
    let order_run = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let hits = dest.wait_hits(1).await;
    assert_eq!(hits[0].path, "/shipments");
    assert_eq!(hits[0].headers["authorization"], "Bearer tok-shipping-123");
    assert_eq!(
        hits[0].json(),
        json!({"reference": "woo-4711", "order_id": 4711,
               "recipient": {"name": "Ada Lovelace", "email": "ada@example.com", "street": "1 Analytical St", "city": "London", "postcode": "N1", "country": "GB"},
               "value": {"amount": 49.9, "currency": "EUR"}, "skus": ["BOOK-1", "PEN-2"]})
    );
    // A pending order is ignored.
    let mut pending = order.clone();
    pending["status"] = json!("pending");
    pending["id"] = json!(4712);
    let r = signed(
        &http,
        url("woo-order-to-shipping"),
        "woocommerce",
        WOO_SECRET,
        &topic,
        &pending,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ignored");
    // The same order delivered again (WooCommerce retries, or a replay): not shipped twice.
    let r = signed(
        &http,
        url("woo-order-to-shipping"),
        "woocommerce",
        WOO_SECRET,
        &topic,
        &order,
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "duplicate");

    // Contact form → helpdesk ticket, then the ticket id in a second call.
    let r = http
        .post(url("form-to-helpdesk"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=bob%40example.com&message=Where+is+my+order%3F&name=Bob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["ok"], true);
    let form_run = answer["reference"].as_str().unwrap().to_string();
    // The honeypot: a bot fills it and is ignored; a person's form sends it empty and is not.
    let bot = http
        .post(url("form-to-helpdesk"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=bot%40example.com&message=Buy+now&website=http%3A%2F%2Fspam.example")
        .send()
        .await
        .unwrap();
    assert_eq!(bot.json::<Value>().await.unwrap()["status"], "ignored");
    let hits = dest.wait_hits(3).await;
    assert_eq!(
        (hits[1].method.as_str(), hits[1].path.as_str()),
        ("POST", "/api/tickets")
    );
    assert_eq!(hits[1].headers["content-type"], "application/json");
    assert_eq!(
        hits[1].json(),
        json!({"subject": "Contact form", "requester": {"name": "Bob", "email": "bob@example.com"},
               "comment": {"body": "Where is my order?"}, "tags": ["website"], "external_id": form_run})
    );
    assert_eq!(
        (hits[2].method.as_str(), hits[2].path.as_str()),
        ("PUT", "/api/tickets/T-9/tags")
    );
    assert_eq!(hits[2].json()["tags"], json!(["website", "contact-form"]));

    // Slack: the verification challenge is echoed; a message about a refund is forwarded.
    let challenge = json!({"type": "url_verification", "challenge": "c-123"});
    let r = signed(&http, url("slack-events"), "slack", SLACK_SECRET, &[], &challenge).await;
    assert_eq!(r.text().await.unwrap(), "c-123");
    let r = http
        .post(url("slack-events"))
        .json(&challenge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "unsigned: refused");
    let event = json!({"type": "event_callback", "event": {"type": "message", "user": "U1", "text": "I want a Refund please"}});
    let r = signed(&http, url("slack-events"), "slack", SLACK_SECRET, &[], &event).await;
    assert_eq!(r.text().await.unwrap(), "ok");
    let hits = dest.wait_hits(4).await;
    assert_eq!(hits[3].path, "/refund-requests");
    assert_eq!(
        hits[3].json(),
        json!({"user": "U1", "text": "I want a Refund please"})
    );

    // History shows what was sent, without the secret.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let run = loop {
        let run = get(&http, format!("{base}/api/runs/{order_run}")).await;
        if run["status"] == "succeeded" {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "{run:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!run.to_string().contains("tok-shipping-123"), "{run:#}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The segment, email and event examples, served by the real binary with SMTP pointed at a
/// real SMTP server the test starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_segment_and_email_flows_do_what_they_say() {
    let dest = Receiver::start(Reply::status(200)).await;
    let (smtp_port, mail) = crate::email::start_smtp(0);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = tempfile::tempdir().unwrap();
    let (mut cmd, base) = serve_command(&root.join("flows"), &root.join("templates"), data.path());
    let mut child = cmd
        .args([
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &smtp_port.to_string(),
            "--smtp-tls",
            "none",
        ])
        .args(["--smtp-from", "Shop <shop@example.com>"])
        .env("CRM_WEBHOOK_URL", &dest.url)
        .env("CRM_TOKEN", "crm-token-789")
        .env("WOO_WEBHOOK_SECRET", WOO_SECRET)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let tokens = hookflow::token::UrlTokens::from_secret(SECRET.as_bytes()).unwrap();
    let url = |flow: &str| format!("{base}/hooks/{flow}/{}", tokens.token(flow));

    // A paid order: the buyer joins recent-buyers and gets a thank-you in two parts.
    let order = json!({"id": 99, "status": "processing", "total": "30.00", "currency": "EUR",
        "billing": {"email": "Ada@Example.com", "first_name": "Ada"},
        "line_items": [{"name": "Book <1st ed.>"}, {"name": "Pen"}]});
    let topic = [("x-wc-webhook-topic", "order.created")];
    let r = signed(
        &http,
        url("woo-order-nurture"),
        "woocommerce",
        WOO_SECRET,
        &topic,
        &order,
    )
    .await;
    assert_eq!(r.status(), 202);
    let mails = crate::email::wait_mails(&mail, 1).await;
    assert_eq!(mails[0].to, ["Ada@Example.com"]);
    let d = mails[0].data.replace("\r\n", "\n");
    assert!(d.contains("Subject: Thank you for your order #99"), "{d}");
    assert!(d.contains("- Book <1st ed.>"), "text part unescaped: {d}");
    assert!(
        d.contains("<li>Book &lt;1st ed.&gt;</li>"),
        "html part escaped: {d}"
    );
    let contact = get(&http, format!("{base}/api/contacts/ada@example.com")).await;
    assert_eq!(contact["segments"], json!(["recent-buyers"]));
    assert_eq!(contact["attributes"]["first_name"], "Ada");
    assert_eq!(contact["attributes"]["last_order_total"], 30.0);

    // A sign-up joins the newsletter and gets a welcome.
    let r = http
        .post(url("form-to-newsletter"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=bea%40example.com&name=Bea")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mails = crate::email::wait_mails(&mail, 2).await;
    assert_eq!(mails[1].to, ["bea@example.com"]);
    assert!(mails[1].data.contains("Hi Bea,"));

    // The mail tool unsubscribes her: the CRM is told.
    unsubscribe(&http, url("newsletter-unsubscribe"), "bea@example.com").await;
    let hits = dest.wait_hits(1).await;
    assert_eq!(hits[0].path, "/hooks/unsubscribed");
    assert_eq!(hits[0].headers["authorization"], "Bearer crm-token-789");
    let body = hits[0].json();
    assert_eq!(body["email"], "bea@example.com");
    assert!(body["event_id"].as_str().unwrap().starts_with("evt_"));
    let contact = get(&http, format!("{base}/api/contacts/bea@example.com")).await;
    assert_eq!(contact["segments"], json!([]));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The weekday report, with its schedule sped up to every second.
#[tokio::test]
async fn the_shipped_report_flow_posts_the_new_buyer_count() {
    let dest = Receiver::start(Reply::status(200)).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(root.join("flows/buyers-daily-report.yaml")).unwrap();
    assert!(yaml.contains(r#"cron: "0 8 * * 1-5""#));
    let yaml = yaml
        .replace(r#"cron: "0 8 * * 1-5""#, r#"cron: "* * * * * *""#)
        .replace("'http://127.0.0.1:9000'", &format!("'{}'", dest.url));
    let app = crate::helpers::spawn_app(&[("report", yaml)], &[]).await;
    for email in ["a@example.com", "b@example.com"] {
        app.http
            .post(format!("{}/api/segments/recent-buyers/members", app.base))
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap();
    }
    // Reports until one after both joined: the new counts add up to 2, the total reads 2.
    let re = regex::Regex::new(r"^(\d+) new buyers since the last report \((\d+) recent buyers in all\)\.$")
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reports: Vec<(u64, u64)> = dest
            .hits()
            .iter()
            .map(|h| {
                let text = h.json()["text"].as_str().unwrap().to_string();
                let c = re
                    .captures(&text)
                    .unwrap_or_else(|| panic!("unexpected report: {text}"));
                (c[1].parse().unwrap(), c[2].parse().unwrap())
            })
            .collect();
        if let Some(i) = reports.iter().position(|r| r.1 == 2)
            && reports.len() > i + 1
        {
            assert_eq!(reports[..=i].iter().map(|r| r.0).sum::<u64>(), 2, "{reports:?}");
            assert_eq!(reports[i + 1], (0, 2), "{reports:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{reports:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// The shipped sequences and the per-item flow, with the server's clock moved by days: the
/// post-purchase series (thanks, review after 3 days, cross-sell a week later at 09:00 in the
/// buyer's time zone) ends for a refunded order; the welcome series ends for an unsubscriber;
/// an order's line items each move the warehouse stock once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_sequences_and_per_item_flow_do_what_they_say() {
    let dest = Receiver::start(Reply::status(200)).await;
    let (smtp_port, mail) = crate::email::start_smtp(0);
    let mut clock = crate::helpers::TestClock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = tempfile::tempdir().unwrap();
    let (mut cmd, base) = serve_command(&root.join("flows"), &root.join("templates"), data.path());
    let (k, v) = clock.env();
    let mut child = cmd
        .args([
            "--poll",
            "100ms",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-tls",
            "none",
        ])
        .args(["--smtp-port", &smtp_port.to_string()])
        .args(["--smtp-from", "Shop <shop@example.com>"])
        .env(k, v)
        .env("WOO_WEBHOOK_SECRET", WOO_SECRET)
        .env("WAREHOUSE_API_URL", &dest.url)
        .env("WAREHOUSE_API_TOKEN", "wh-token-1")
        .env("CRM_WEBHOOK_URL", &dest.url)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let tokens = hookflow::token::UrlTokens::from_secret(SECRET.as_bytes()).unwrap();
    let url = |flow: &str| format!("{base}/hooks/{flow}/{}", tokens.token(flow));
    let run_of = |id: String| {
        let http = http.clone();
        let base = base.clone();
        async move { get(&http, format!("{base}/api/runs/{id}")).await }
    };
    let wait_status = |id: String, status: &'static str| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let run = run_of(id.clone()).await;
            if run["status"] == status {
                return run;
            }
            assert!(std::time::Instant::now() < deadline, "want {status}: {run:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let order = |id: u32, email: &str, tz: &str| {
        json!({"id": id, "status": "processing", "total": "30.00",
            "billing": {"email": email, "first_name": "Ada"}, "meta": {"timezone": tz},
            "line_items": [{"name": "Book", "sku": "BOOK 1", "quantity": 2}, {"name": "Pen", "sku": "PEN-2", "quantity": 1}]})
    };
    let mut nurture = Vec::new();
    for (id, email, tz) in [
        (1, "ada@example.com", "America/New_York"),
        (2, "cy@example.com", "Europe/Berlin"),
    ] {
        nurture.push(
            woo(
                &http,
                url("woo-order-nurture"),
                "order.created",
                &order(id, email, tz),
            )
            .await,
        );
    }
    // The line items of order 1: one stock movement each, then the summary.
    let stock_run = woo(
        &http,
        url("woo-order-stock"),
        "order.created",
        &order(1, "ada@example.com", "UTC"),
    )
    .await;
    wait_status(stock_run.clone(), "succeeded").await;
    let mut moves: Vec<(String, Value)> = dest
        .hits()
        .into_iter()
        .filter(|h| h.path.starts_with("/stock/"))
        .map(|h| {
            assert_eq!(h.headers["authorization"], "Bearer wh-token-1");
            assert_eq!(
                h.headers["idempotency-key"].split('.').next(),
                Some(stock_run.as_str())
            );
            (h.path.clone(), h.json())
        })
        .collect();
    moves.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        moves,
        vec![
            (
                "/stock/BOOK%201/movements".to_string(),
                json!({"delta": -2, "reference": "woo-1-0"})
            ),
            (
                "/stock/PEN-2/movements".to_string(),
                json!({"delta": -1, "reference": "woo-1-1"})
            ),
        ]
    );
    let summary = dest
        .hits()
        .into_iter()
        .find(|h| h.path == "/orders/woo-1/stock-done")
        .unwrap();
    assert_eq!(summary.json(), json!({"lines": 2}));

    // Two sign-ups: each joins the newsletter, gets the welcome, and starts the welcome series.
    for who in ["bea", "dan"] {
        let r = http
            .post(url("form-to-newsletter"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("email={who}%40example.com&name={who}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let subjects = |mails: &[crate::email::Mail]| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = mails
            .iter()
            .map(|m| {
                let d = m.data.replace("\r\n", "\n");
                let subject = d
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .unwrap()
                    .to_string();
                (m.to[0].clone(), subject)
            })
            .collect();
        out.sort();
        out
    };
    let mails = crate::email::wait_mails(&mail, 4).await;
    assert_eq!(
        subjects(&mails),
        [
            ("ada@example.com", "Thank you for your order #1"),
            ("bea@example.com", "Welcome to our newsletter"),
            ("cy@example.com", "Thank you for your order #2"),
            ("dan@example.com", "Welcome to our newsletter"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    for id in &nurture {
        wait_status(id.clone(), "waiting").await;
    }
    // Order 2 is refunded: its sequence ends, exited (not failed).
    let refund = json!({"id": 2, "status": "refunded"});
    woo(&http, url("woo-order-refunded"), "order.updated", &refund).await;
    let exited = wait_status(nurture[1].clone(), "exited").await;
    assert!(
        exited["exit_reason"]
            .as_str()
            .unwrap()
            .contains("shop.order_refunded"),
        "{exited}"
    );

    // Two days on: the tips. Then Bea unsubscribes, which ends her series.
    clock.advance(2 * DAY_MS + 3_600_000);
    let mails = crate::email::wait_mails(&mail, 6).await;
    let tips: Vec<_> = subjects(&mails[4..]);
    assert_eq!(
        tips.iter()
            .filter(|(_, s)| s == "Three things to try this week")
            .count(),
        2
    );
    unsubscribe(&http, url("newsletter-unsubscribe"), "bea@example.com").await;
    let series = get(
        &http,
        format!("{base}/api/runs?flow=form-welcome-series&q=bea%40example.com"),
    )
    .await;
    let bea_run = series["runs"][0]["id"].as_str().unwrap().to_string();
    wait_status(bea_run, "exited").await;

    // Day 3: Ada's review request; then a week later her cross-sell, at 09:00 New York time.
    clock.advance(DAY_MS);
    let mails = crate::email::wait_mails(&mail, 7).await;
    assert_eq!(
        subjects(&mails[6..]),
        [("ada@example.com".to_string(), "How is your order #1?".to_string())]
    );
    let ada = wait_status(nurture[0].clone(), "waiting").await;
    let wake: chrono::DateTime<chrono::Utc> = ada["next_attempt_at"].as_str().unwrap().parse().unwrap();
    let local = wake.with_timezone(&chrono_tz::America::New_York);
    assert_eq!(local.format("%H:%M").to_string(), "09:00", "{wake}");
    clock.advance(9 * DAY_MS);
    let mails = crate::email::wait_mails(&mail, 9).await;
    let rest = subjects(&mails[7..]);
    assert_eq!(
        rest,
        [
            ("ada@example.com", "Picked for you, Ada"),
            ("dan@example.com", "A welcome offer for you"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    wait_status(nurture[0].clone(), "succeeded").await;
    // Nothing more: no mail to the refunded buyer or the unsubscriber.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mail.mails().len(), 9);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Each webhook flow in `flows/` with the sample in `examples/payloads/` it is tried with:
/// (flow, payload file, extra headers, content type).
const SAMPLES: &[(&str, &str, &[&str], &str)] = &[
    (
        "woo-order-to-shipping",
        "woo-order.json",
        &["X-WC-Webhook-Topic: order.created"],
        "application/json",
    ),
    (
        "woo-order-stock",
        "woo-order.json",
        &["X-WC-Webhook-Topic: order.created"],
        "application/json",
    ),
    (
        "woo-order-nurture",
        "woo-order.json",
        &["X-WC-Webhook-Topic: order.created"],
        "application/json",
    ),
    (
        "form-to-helpdesk",
        "contact-form.txt",
        &[],
        "application/x-www-form-urlencoded",
    ),
    (
        "form-to-newsletter",
        "newsletter-signup.txt",
        &[],
        "application/x-www-form-urlencoded",
    ),
    ("slack-events", "slack-message.json", &[], "application/json"),
    (
        "newsletter-unsubscribe",
        "mail-unsubscribe.json",
        &[],
        "application/json",
    ),
    (
        "woo-order-refunded",
        "woo-order-refunded.json",
        &["X-WC-Webhook-Topic: order.updated"],
        "application/json",
    ),
    ("sendgrid-events", "sendgrid-events.json", &[], "application/json"),
    ("mailgun-events", "mailgun-failed.json", &[], "application/json"),
    ("postmark-events", "postmark-bounce.json", &[], "application/json"),
    ("woo-abandoned-cart", "woo-cart.json", &[], "application/json"),
    (
        "mailchimp-audience",
        "mailchimp-unsubscribe.txt",
        &[],
        "application/x-www-form-urlencoded",
    ),
];

const MAILGUN_KEY: &str = "mailgun-example-signing-key";
const POSTMARK_CREDENTIALS: &str = "postmark:example-password";

/// The run `id` once it has stopped moving: finished, or waiting for a later step.
async fn settled(http: &reqwest::Client, base: &str, id: &str) -> Value {
    crate::helpers::wait_run(http, base, id, |run| {
        let status = run["status"].as_str().unwrap_or("");
        ["succeeded", "failed", "exited", "waiting"].contains(&status)
    })
    .await
}

/// Regression (issue 27): the shipped `woo-order-stock` failed on the shipped order sample,
/// whose line items had no quantity. Every shipped webhook flow is now sent its shipped
/// sample with `hookflow send`, as README's quick start does, and every run — and every run
/// the events it raises start — ends green; the thank-you lists items without blank lines
/// between them and every email carries a Message-ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_webhook_flow_runs_green_on_its_shipped_sample() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Every webhook flow has a sample (`urls` lists exactly the webhook flows).
    let urls = crate::cli::hookflow(&["urls", "--secret", SECRET], root);
    let listed: Vec<String> = String::from_utf8_lossy(&urls.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let mut sampled: Vec<String> = SAMPLES.iter().map(|s| s.0.to_string()).collect();
    sampled.sort();
    let mut hooks = listed.clone();
    hooks.sort();
    assert_eq!(
        hooks, sampled,
        "every shipped webhook flow needs a sample in SAMPLES"
    );

    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/api/tickets", Reply::json(201, json!({"id": "T-9"})));
    let (smtp_port, mail) = crate::email::start_smtp(0);
    let data = tempfile::tempdir().unwrap();
    // SendGrid signs with a private key: a key pair of the test's, the public half configured.
    let (private_pem, public_b64) = crate::email::p256_key_pair();
    let key_file = data.path().join("sendgrid-test-key.pem");
    std::fs::write(&key_file, &private_pem).unwrap();
    let (mut cmd, base) = serve_command(&root.join("flows"), &root.join("templates"), data.path());
    let mut child = cmd
        .env("SENDGRID_VERIFICATION_KEY", &public_b64)
        .env("MAILGUN_WEBHOOK_SIGNING_KEY", MAILGUN_KEY)
        .env("POSTMARK_WEBHOOK_CREDENTIALS", POSTMARK_CREDENTIALS)
        .args(["--smtp-host", "127.0.0.1", "--smtp-port", &smtp_port.to_string()])
        .args(["--smtp-tls", "none", "--smtp-from", "Shop <shop@example.com>"])
        .env("SHIPPING_API_URL", &dest.url)
        .env("HELPDESK_API_URL", &dest.url)
        .env("SUPPORT_API_URL", &dest.url)
        .env("WAREHOUSE_API_URL", &dest.url)
        .env("CRM_WEBHOOK_URL", &dest.url)
        .env("WOO_WEBHOOK_SECRET", WOO_SECRET)
        .env("SLACK_SIGNING_SECRET", SLACK_SECRET)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let mut runs = Vec::new();
    for (flow, payload, headers, content_type) in SAMPLES {
        let mut send = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"));
        send.args(["send", flow, "--content-type", content_type])
            .arg("--payload")
            .arg(root.join("examples/payloads").join(payload))
            .args(["--listen", base.trim_start_matches("http://")])
            .env("WOO_WEBHOOK_SECRET", WOO_SECRET)
            .env("SLACK_SIGNING_SECRET", SLACK_SECRET)
            .env("SENDGRID_VERIFICATION_KEY", &public_b64)
            .env("MAILGUN_WEBHOOK_SIGNING_KEY", MAILGUN_KEY)
            .env("POSTMARK_WEBHOOK_CREDENTIALS", POSTMARK_CREDENTIALS)
            .current_dir(root);
        if *flow == "sendgrid-events" {
            send.arg("--signing-key").arg(&key_file);
        }
        for h in *headers {
            send.args(["-H", h]);
        }
        let out = send.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "send {flow}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Value = serde_json::from_str(stdout.split_once(' ').unwrap().1).unwrap_or(json!({}));
        if let Some(id) = answer["run_id"].as_str() {
            runs.push((flow.to_string(), settled(&http, &base, id).await));
        } else {
            // form-to-helpdesk answers with its own body: find its run.
            let list = get(&http, format!("{base}/api/runs?flow={flow}")).await;
            let id = list["runs"][0]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{flow}: {stdout}"));
            runs.push((flow.to_string(), settled(&http, &base, id).await));
        }
    }
    // The runs the events started: the welcome series (exited by the unsubscribe) and the CRM call.
    for flow in ["form-welcome-series", "crm-unsubscribed"] {
        let list = get(&http, format!("{base}/api/runs?flow={flow}")).await;
        let id = list["runs"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no run of {flow}"));
        runs.push((flow.to_string(), settled(&http, &base, id).await));
    }
    for (flow, run) in &runs {
        let status = run["status"].as_str().unwrap();
        assert!(
            ["succeeded", "waiting", "exited"].contains(&status),
            "{flow} did not run green: {run:#}"
        );
        for step in run["steps"].as_array().into_iter().flatten() {
            assert_ne!(step["status"], "failed", "{flow}: {run:#}");
        }
    }
    let stock: Vec<Value> = dest
        .hits()
        .iter()
        .filter(|h| h.path.starts_with("/stock/"))
        .map(|h| h.json())
        .collect();
    let mut deltas: Vec<i64> = stock.iter().map(|b| b["delta"].as_i64().unwrap()).collect();
    deltas.sort();
    assert_eq!(
        deltas,
        [-2, -1],
        "each line item's quantity off the stock: {stock:?}"
    );

    let mails = crate::email::wait_mails(&mail, 2).await;
    for m in &mails {
        let d = m.data.replace("\r\n", "\n");
        assert!(d.contains("\nMessage-ID: <"), "every email has a Message-ID: {d}");
        assert!(d.contains("\nDate: "), "every email has a Date: {d}");
    }
    let thanks = mails
        .iter()
        .map(|m| m.data.replace("\r\n", "\n"))
        .find(|d| d.contains("Thank you for your order"))
        .expect("the thank-you email");
    assert!(
        thanks.contains("(49.90 EUR):\n- Book\n- Pen\n\nWe will let you know"),
        "items one per line, no blank line between: {thanks}"
    );
    // The email providers' samples reached the suppression list: hard bounces and complaints
    // for every email, the unsubscribes (SendGrid's, Mailchimp's) for `newsletter`; a `blocked`
    // bounce and a delivery suppress nothing.
    let mut got = crate::unsubscribe::suppressions(&http, &base).await;
    got.sort();
    let want = [
        ("annoyed@example.com", "complained", "*"),
        ("bea@example.com", "unsubscribed", "newsletter"),
        ("bounced@example.com", "bounced", "*"),
        ("gone@example.com", "bounced", "*"),
        ("leaving@example.com", "unsubscribed", "newsletter"),
        ("nobody@example.com", "bounced", "*"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(got, want);
    child.kill().unwrap();
    child.wait().unwrap();
}
