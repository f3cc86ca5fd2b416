//! Engagement becomes events (issue 32), end to end on the real binary with a real SMTP
//! server, on the shipped flows `woo-abandoned-cart`, `woo-order-nurture` and `email-hot-lead`
//! and their templates: a tracked email's links arrive rewritten; a click redirects to exactly
//! the original address and — once judged a person's — raises one `email.clicked`, which tags
//! the contact and posts a CRM task; the click shows on the run's timeline and in the counts;
//! tampered tokens and tokens for links the email never had get a bare 404; a scanner's burst
//! and a HEAD are marked and raise nothing; the cart reminder ends on the order and is sent
//! otherwise — across `kill -9` (one right after a click, before it was judged), and on
//! PostgreSQL with the click served by a second instance.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::email::{Mail, Shared, start_smtp, wait_mails};
use crate::helpers::{Binary, Receiver, Reply, SECRET, TestClock, get, wait_run};
use crate::unsubscribe::{smtp_args, text_of};

const WOO_SECRET: &str = "woo-example-secret";
const HOUR_MS: u64 = 3600 * 1000;

/// A webhook flow sending one tracked email with three links, two of them marked.
const PROMO: &str = r#"
on: { webhook: {} }
actions:
  - name: promo
    email:
      to: "{{ body.email }}"
      subject: Our plans
      html: '<p><a href="https://shop.example/pricing?plan=pro&amp;ref=mail" data-track="pricing">Plans</a> <a href="https://shop.example/demo" data-track="book-a-demo">Demo</a> <a href="https://shop.example/blog">Blog</a> <a href="mailto:help@shop.example">Help</a></p>'
      text: "Plans: https://shop.example/pricing?plan=pro&ref=mail\nDemo: https://shop.example/demo\nBlog: https://shop.example/blog."
      track_links: all
"#;

/// A data dir with the shipped flows this test is about, their templates, and `promo`.
fn shipped() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(flows.join("../templates/email")).unwrap();
    for f in ["woo-abandoned-cart", "woo-order-nurture", "email-hot-lead"] {
        std::fs::copy(
            root.join(format!("flows/{f}.yaml")),
            flows.join(format!("{f}.yaml")),
        )
        .unwrap();
    }
    std::fs::write(flows.join("promo.yaml"), PROMO).unwrap();
    for entry in std::fs::read_dir(root.join("templates/email")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(
            &p,
            dir.path().join("templates/email").join(p.file_name().unwrap()),
        )
        .unwrap();
    }
    dir
}

/// The tracked links in a message (text and HTML parts), in order, each once.
fn tracked_links(m: &Mail, base: &str) -> Vec<String> {
    let text = text_of(m);
    let re = regex::Regex::new(&format!("{}/c/[A-Za-z0-9_-]+", regex::escape(base))).unwrap();
    let mut out: Vec<String> = Vec::new();
    for found in re.find_iter(&text) {
        if !out.iter().any(|x| x == found.as_str()) {
            out.push(found.as_str().to_string());
        }
    }
    out
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Follows `link` once (served by `base`); the status and `Location`.
async fn click(http: &reqwest::Client, link: &str, base: &str) -> (u16, Option<String>) {
    let path = &link[link.find("/c/").unwrap()..];
    let r = http.get(format!("{base}{path}")).send().await.unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), location)
}

async fn woo(http: &reqwest::Client, url: String, topic: &str, body: &Value) -> String {
    let bytes = body.to_string().into_bytes();
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-wc-webhook-topic", topic);
    for (k, v) in crate::security::sign("woocommerce", WOO_SECRET, &bytes, crate::security::now()) {
        req = req.header(k, v);
    }
    let r = req.body(bytes).send().await.unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn settled(http: &reqwest::Client, base: &str, id: &str, status: &str) -> Value {
    wait_run(http, base, id, |r| r["status"] == status).await
}

/// The clicks of a run once none is pending.
async fn judged_clicks(http: &reqwest::Client, base: &str, run: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let c = get(http, format!("{base}/api/runs/{run}/clicks")).await;
        let clicks = c["clicks"].as_array().cloned().unwrap_or_default();
        if clicks.len() == n && clicks.iter().all(|k| k["judged"]["kind"] != "pending") {
            return clicks;
        }
        assert!(std::time::Instant::now() < deadline, "clicks of {run}: {c:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cart(id: &str, email: &str) -> Value {
    json!({
        "cart_id": id, "email": email, "first_name": "Bea", "currency": "EUR", "total": "19.95",
        "items": [{"name": "Book", "quantity": 1}],
        "checkout_url": format!("https://shop.example/checkout/?cart={id}&step=2"),
    })
}

async fn scenario(store_args: &[String], two_instances: bool) {
    let (smtp_port, mail): (u16, std::sync::Arc<Shared>) = start_smtp(0);
    let crm = Receiver::start(Reply::json(201, json!({"id": "task-1"}))).await;
    let mut clock = TestClock::new();
    let (ck, cv) = clock.env();
    let mut args: Vec<String> = smtp_args(smtp_port);
    args.extend(store_args.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [
        (ck, cv.as_str()),
        ("WOO_WEBHOOK_SECRET", WOO_SECRET),
        ("CRM_API_URL", crm.url.as_str()),
        ("CRM_TOKEN", "crm-token-1"),
    ];
    let a = Binary::start_in(shipped(), &args, &env).await;
    let http = no_redirects();

    // Two carts left behind; Ada then orders, which ends her reminder at once.
    let ada_cart = woo(
        &http,
        a.hook_url("woo-abandoned-cart"),
        "cart.updated",
        &cart("c-1", "Ada@Example.com"),
    )
    .await;
    let bea_cart = woo(
        &http,
        a.hook_url("woo-abandoned-cart"),
        "cart.updated",
        &cart("c-2", "bea@example.com"),
    )
    .await;
    settled(&http, &a.base, &ada_cart, "waiting").await;
    settled(&http, &a.base, &bea_cart, "waiting").await;
    let order = json!({"id": 7, "status": "processing", "total": "19.95", "currency": "EUR",
        "billing": {"email": "ada@example.com", "first_name": "Ada"}, "line_items": [{"name": "Book"}]});
    let nurture = woo(&http, a.hook_url("woo-order-nurture"), "order.created", &order).await;
    let exited = settled(&http, &a.base, &ada_cart, "exited").await;
    assert!(
        exited["exit_reason"]
            .as_str()
            .unwrap()
            .contains("shop.order_placed"),
        "{exited:#}"
    );
    // (Its thank-you recorded as sent before the crash below: a crash mid-send sends again.)
    settled(&http, &a.base, &nurture, "waiting").await;
    let thanks = wait_mails(&mail, 1).await;
    assert!(text_of(&thanks[0]).contains("Subject: Thank you for your order #7"));

    // A crash while Bea's reminder waits loses nothing: an hour on, it is sent, its cart link
    // tracked, and nothing goes to Ada.
    let dir = a.kill9();
    let a = Binary::start_in(dir, &args, &env).await;
    clock.advance(HOUR_MS + 60_000);
    settled(&http, &a.base, &bea_cart, "succeeded").await;
    let mails = wait_mails(&mail, 2).await;
    let reminder = &mails[1];
    assert_eq!(reminder.to, ["bea@example.com"]);
    let text = text_of(reminder);
    assert!(text.contains("Subject: Bea, your cart is waiting"), "{text}");
    assert!(
        !text.contains("https://shop.example/checkout"),
        "every copy of the cart link is tracked: {text}"
    );
    let cart_links = tracked_links(reminder, &a.base);
    assert_eq!(cart_links.len(), 1, "{text}");
    assert_eq!(
        click(&http, &cart_links[0], &a.base).await,
        (
            302,
            Some("https://shop.example/checkout/?cart=c-2&step=2".to_string())
        )
    );

    // A tracked email with three links: each arrives rewritten, in both parts; mailto stays.
    let promo = http
        .post(a.hook_url("promo"))
        .json(&json!({"email": "carl@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(promo.status(), 202);
    let promo_run = promo.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    settled(&http, &a.base, &promo_run, "succeeded").await;
    let mails = wait_mails(&mail, 3).await;
    let text = text_of(&mails[2]);
    let links = tracked_links(&mails[2], &a.base);
    assert_eq!(links.len(), 3, "{text}");
    for original in [
        "https://shop.example/pricing",
        "https://shop.example/demo",
        "https://shop.example/blog",
    ] {
        assert!(!text.contains(original), "{original} left untracked: {text}");
    }
    assert!(text.contains("mailto:help@shop.example"));
    assert!(!text.contains("data-track"));
    let pricing = &links[0];

    // The reader clicks "pricing": redirected at once to exactly the address in the template;
    // killed right after, before the click was judged, it is judged after the restart.
    let served_by = |a: &Binary, b: &Option<Binary>| b.as_ref().map_or(a.base.clone(), |b| b.base.clone());
    let b = if two_instances {
        Some(Binary::start_in(shipped(), &args, &env).await)
    } else {
        None
    };
    assert_eq!(
        click(&http, pricing, &served_by(&a, &b)).await,
        (
            302,
            Some("https://shop.example/pricing?plan=pro&ref=mail".to_string())
        )
    );
    let b_dir = b.map(Binary::kill9);
    let dir = a.kill9();
    let a = Binary::start_in(dir, &args, &env).await;

    // One email.clicked: the hot-lead flow tags Carl and posts one task.
    let tasks = crm.wait_hits(1).await;
    assert_eq!(tasks[0].path, "/api/tasks");
    assert_eq!(tasks[0].headers["authorization"], "Bearer crm-token-1");
    let task = tasks[0].json();
    assert_eq!(task["contact"], "carl@example.com");
    assert_eq!(task["subject"], "Follow up: carl@example.com clicked pricing");
    let contact = get(
        &reqwest::Client::new(),
        format!("{}/api/contacts/carl@example.com", a.base),
    )
    .await;
    assert_eq!(contact["segments"], json!(["hot-leads"]));
    assert_eq!(contact["attributes"]["interested_in"], "pricing");
    // On the run's timeline: a person's first click.
    let clicks = judged_clicks(&http, &a.base, &promo_run, 1).await;
    assert_eq!(clicks[0]["judged"], json!({"kind": "person", "first": true}));
    assert_eq!(clicks[0]["name"], "pricing");
    assert_eq!(clicks[0]["action"], "promo");

    // Clicked again: a person's, not a first — no second task.
    assert_eq!(click(&http, pricing, &a.base).await.0, 302);
    let clicks = judged_clicks(&http, &a.base, &promo_run, 2).await;
    assert_eq!(clicks[1]["judged"], json!({"kind": "person", "first": false}));

    // Tampered tokens, a sealed token for an address the email never had, one for a message
    // that was never sent, and an unsubscribe token on /c/: all a bare 404, never a redirect.
    let keys = hookflow::token::UrlTokens::from_secret(SECRET.as_bytes())
        .unwrap()
        .link_keys();
    let message = format!("{promo_run}.promo");
    let forged = [
        hookflow::links::Link::Click {
            message: message.clone(),
            link: hookflow::clicks::link_id("https://evil.example/", None),
        },
        hookflow::links::Link::Click {
            message: "01JNEVERSENT0000000000000A.promo".into(),
            link: hookflow::clicks::link_id("https://shop.example/demo", Some("book-a-demo")),
        },
        hookflow::links::Link::Unsubscribe {
            list: "newsletter".into(),
            email: "carl@example.com".into(),
        },
    ];
    let token = &pricing[pricing.find("/c/").unwrap() + 3..];
    let mut bad: Vec<String> = forged
        .iter()
        .map(|l| format!("{}/c/{}", a.base, keys.seal(l)))
        .collect();
    for i in [0, token.len() / 2, token.len() - 1] {
        let mut t = token.as_bytes().to_vec();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        bad.push(format!("{}/c/{}", a.base, String::from_utf8(t).unwrap()));
    }
    bad.push(format!("{}/c/{}", a.base, "A".repeat(700)));
    for link in &bad {
        assert_eq!(click(&http, link, &a.base).await, (404, None), "{link}");
    }

    // A mail scanner opens every link of another copy at once, and a link checker sends HEAD:
    // marked, left out of the first clicks, and no event (still one task).
    let promo2 = http
        .post(a.hook_url("promo"))
        .json(&json!({"email": "dora@example.com"}))
        .send()
        .await
        .unwrap();
    let promo2_run = promo2.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    settled(&http, &a.base, &promo2_run, "succeeded").await;
    let mails = wait_mails(&mail, 4).await;
    let links2 = tracked_links(&mails[3], &a.base);
    assert_eq!(links2.len(), 3);
    let burst = links2.iter().map(|l| click(&http, l, &a.base));
    for (status, _) in futures::future::join_all(burst).await {
        assert_eq!(status, 302);
    }
    let path = &links2[1][links2[1].find("/c/").unwrap()..];
    let head = http.head(format!("{}{path}", a.base)).send().await.unwrap();
    assert_eq!(head.status(), 302);
    let clicks = judged_clicks(&http, &a.base, &promo2_run, 4).await;
    for k in &clicks {
        assert_eq!(k["judged"]["kind"], "scanner", "{k:#}");
    }
    assert!(
        clicks
            .iter()
            .any(|k| k["judged"]["why"].as_str().unwrap().contains("HEAD"))
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(crm.hits().len(), 1, "a scanner's clicks raise no event");
    let hot = get(
        &reqwest::Client::new(),
        format!("{}/api/runs?flow=email-hot-lead", a.base),
    )
    .await;
    assert_eq!(hot["runs"].as_array().unwrap().len(), 1);

    // Counted per flow and link: people apart from scanners.
    let flow = get(&reqwest::Client::new(), format!("{}/api/flows/promo", a.base)).await;
    let row = |name: &str| {
        flow["link_clicks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["link"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {flow:#}"))
    };
    assert_eq!(
        row("pricing"),
        json!({"link": "pricing", "clicks": 2, "first_clicks": 1, "scanner_clicks": 1})
    );
    assert_eq!(row("book-a-demo")["scanner_clicks"], 2);
    assert_eq!(row("https://shop.example/blog")["clicks"], 0);
    let cart_flow = get(
        &reqwest::Client::new(),
        format!("{}/api/flows/woo-abandoned-cart", a.base),
    )
    .await;
    assert_eq!(cart_flow["link_clicks"][0]["link"], "cart");
    assert_eq!(cart_flow["link_clicks"][0]["first_clicks"], 1);
    let log = a.log();
    assert!(log.contains("click judged a mail scanner's"), "{log}");
    drop(a);
    drop(b_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_links_clicks_and_the_abandoned_cart_on_the_embedded_store() {
    scenario(&[], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_links_clicks_and_the_abandoned_cart_on_postgres_with_two_instances() {
    let Some(schema) = crate::pg::Schema::create().await else {
        return;
    };
    scenario(&["--store".to_string(), schema.url.clone()], true).await;
}

/// Links sealed before a rotation of the server secret keep working while the old secret is
/// given with `--previous-secret`; without it they are a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_survive_a_secret_rotation_while_the_old_secret_is_listed() {
    let (smtp_port, mail) = start_smtp(0);
    let smtp = smtp_args(smtp_port);
    let smtp: Vec<&str> = smtp.iter().map(String::as_str).collect();
    let a = Binary::start(&[("promo", PROMO)], &smtp, &[]).await;
    let http = no_redirects();
    let r = http
        .post(a.hook_url("promo"))
        .json(&json!({"email": "carl@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let links = tracked_links(&wait_mails(&mail, 1).await[0], &a.base);
    assert_eq!(links.len(), 3);
    let dir = a.kill9();
    let rotated = "a-brand-new-server-secret-0123456789";
    let a = Binary::start_in(dir, &smtp, &[("HOOKFLOW_SECRET", rotated)]).await;
    assert_eq!(click(&http, &links[2], &a.base).await.0, 404);
    let dir = a.kill9();
    let a = Binary::start_in(
        dir,
        &smtp,
        &[
            ("HOOKFLOW_SECRET", rotated),
            ("HOOKFLOW_PREVIOUS_SECRETS", SECRET),
        ],
    )
    .await;
    assert_eq!(
        click(&http, &links[2], &a.base).await,
        (302, Some("https://shop.example/blog".to_string()))
    );
}

/// The shipped `email-hot-lead` on its shipped sample event: `hookflow test` (the dry run)
/// matches it and shows the tag and the CRM task it would make.
#[test]
fn the_hot_lead_flow_matches_its_sample_click() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args([
            "test",
            "email-hot-lead",
            "--payload",
            "examples/payloads/email-clicked.json",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("MATCHED"), "{text}");
    assert!(text.contains("\"segment\": \"hot-leads\""), "{text}");
    assert!(
        text.contains("Follow up: ada@example.com clicked pricing"),
        "{text}"
    );
}
