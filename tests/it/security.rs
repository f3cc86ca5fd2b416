//! Safe on the internet: every signature preset against the real binary (secrets only in its
//! environment, signatures computed here with the hmac crate, not with hookflow's code),
//! deduplication, IP allowlists behind and without a trusted proxy, and no secret in logs or
//! run history.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Opts, Receiver, Reply, SECRET, serve_command, spawn_app, spawn_app_opts, wait_ready};
use hookflow::run::RunStatus;

pub fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

const SECRETS: [(&str, &str); 8] = [
    // Every flow lists this one first: rotation is tested by signing with either.
    ("OLD_SECRET", "whsec_b2xkLXJvdGF0ZWQtc2VjcmV0"),
    ("GH_SECRET", "gh-secret-4f1c"),
    ("STRIPE_SECRET", "whsec_stripe_9d2e"),
    ("SHOPIFY_SECRET", "shpss_5b7f"),
    ("WOO_SECRET", "woo-secret-a1b2"),
    ("SLACK_SECRET", "slack-signing-3c4d"),
    // Standard Webhooks: whsec_ + base64 of the key bytes.
    ("SW_SECRET", "whsec_c3RhbmRhcmQtd2ViaG9va3Mta2V5LTEyMzQ="),
    ("GENERIC_SECRET", "generic-secret-5e6f"),
];

fn secret(name: &str) -> &'static str {
    SECRETS.iter().find(|(n, _)| *n == name).unwrap().1
}

fn flow(verify: &str) -> String {
    format!(
        "on:\n  webhook:\n    verify: {verify}\nactions:\n  - http: {{ url: \"http://127.0.0.1:1/x\" }}\n"
    )
}

/// One signed request: extra headers and the body.
struct Req {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

pub fn sign(preset: &str, key: &str, body: &[u8], ts: i64) -> Vec<(String, String)> {
    let h = |k: &str, v: String| (k.to_string(), v);
    match preset {
        "github" => vec![h(
            "X-Hub-Signature-256",
            format!("sha256={}", hex::encode(hmac256(key.as_bytes(), &[body]))),
        )],
        "stripe" => {
            let t = ts.to_string();
            let sig = hex::encode(hmac256(key.as_bytes(), &[t.as_bytes(), b".", body]));
            vec![h("Stripe-Signature", format!("t={t},v1={sig}"))]
        }
        "shopify" => vec![h(
            "X-Shopify-Hmac-Sha256",
            B64.encode(hmac256(key.as_bytes(), &[body])),
        )],
        "woocommerce" => vec![h(
            "X-WC-Webhook-Signature",
            B64.encode(hmac256(key.as_bytes(), &[body])),
        )],
        "slack" => {
            let t = ts.to_string();
            let sig = hex::encode(hmac256(key.as_bytes(), &[b"v0:", t.as_bytes(), b":", body]));
            vec![
                h("X-Slack-Request-Timestamp", t),
                h("X-Slack-Signature", format!("v0={sig}")),
            ]
        }
        "standard-webhooks" => {
            let k = B64.decode(key.strip_prefix("whsec_").unwrap()).unwrap();
            let (id, t) = ("msg_2Lz9", ts.to_string());
            let sig = B64.encode(hmac256(&k, &[id.as_bytes(), b".", t.as_bytes(), b".", body]));
            vec![
                h("webhook-id", id.into()),
                h("webhook-timestamp", t),
                h("webhook-signature", format!("v1,{sig}")),
            ]
        }
        "hmac" => {
            let t = ts.to_string();
            let sig = hex::encode(hmac256(key.as_bytes(), &[t.as_bytes(), b":", body]));
            vec![h("X-Ts", t), h("X-Sig", format!("sha256={sig}"))]
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_preset_accepts_good_signatures_and_refuses_bad_ones() {
    let presets = [
        (
            "github",
            "{ preset: github, secret_env: [OLD_SECRET, GH_SECRET] }",
            "GH_SECRET",
            false,
        ),
        (
            "stripe",
            "{ preset: stripe, secret_env: [OLD_SECRET, STRIPE_SECRET] }",
            "STRIPE_SECRET",
            true,
        ),
        (
            "shopify",
            "{ preset: shopify, secret_env: [OLD_SECRET, SHOPIFY_SECRET] }",
            "SHOPIFY_SECRET",
            false,
        ),
        (
            "woocommerce",
            "{ preset: woocommerce, secret_env: [OLD_SECRET, WOO_SECRET] }",
            "WOO_SECRET",
            false,
        ),
        (
            "slack",
            "{ preset: slack, secret_env: [OLD_SECRET, SLACK_SECRET] }",
            "SLACK_SECRET",
            true,
        ),
        (
            "standard-webhooks",
            "{ preset: standard-webhooks, secret_env: [OLD_SECRET, SW_SECRET] }",
            "SW_SECRET",
            true,
        ),
        (
            "hmac",
            r#"{ preset: hmac, secret_env: [OLD_SECRET, GENERIC_SECRET], header: X-Sig, prefix: "sha256=", timestamp_header: X-Ts, signed: "{timestamp}:{body}", tolerance: 2m }"#,
            "GENERIC_SECRET",
            true,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    for (name, verify, ..) in &presets {
        std::fs::write(flows.join(format!("{name}.yaml")), flow(verify)).unwrap();
    }
    let log = dir.path().join("log.txt");
    let (mut cmd, base) = serve_command(&flows, &dir.path().join("t"), &dir.path().join("data"));
    cmd.args(["--workers", "0"])
        .env("HOOKFLOW_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in SECRETS {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let tokens = hookflow::token::UrlTokens::from_secret(SECRET.as_bytes()).unwrap();
    let body = br#"{"id":"evt_42","amount":1200}"#.to_vec();

    let send = |flow: &str, req: Req| {
        let mut r = http
            .post(format!("{base}/hooks/{flow}/{}", tokens.token(flow)))
            .header("content-type", "application/json")
            .body(req.body);
        for (k, v) in req.headers {
            r = r.header(k, v);
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for (name, _, env, timestamped) in presets {
        let key = secret(env);
        let ok = Req {
            headers: sign(name, key, &body, now()),
            body: body.clone(),
        };
        let (status, answer) = send(name, ok).await;
        assert_eq!(status, 202, "{name}: {answer}");

        // Rotation: the first listed (previous) secret still verifies.
        let previous = Req {
            headers: sign(name, secret("OLD_SECRET"), &body, now()),
            body: body.clone(),
        };
        let (status, answer) = send(name, previous).await;
        assert_eq!(status, 202, "{name}: previous secret during rotation: {answer}");

        let wrong = Req {
            headers: sign(
                name,
                if name == "standard-webhooks" {
                    "whsec_d3Jvbmc="
                } else {
                    "wrong"
                },
                &body,
                now(),
            ),
            body: body.clone(),
        };
        let (status, answer) = send(name, wrong).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("bad_signature")),
            "{name}: wrong secret"
        );

        let tampered = Req {
            headers: sign(name, key, &body, now()),
            body: br#"{"id":"evt_42","amount":9900}"#.to_vec(),
        };
        let (status, _) = send(name, tampered).await;
        assert_eq!(status, 401, "{name}: tampered body");

        let (status, answer) = send(
            name,
            Req {
                headers: vec![],
                body: body.clone(),
            },
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("missing_signature")),
            "{name}: no header"
        );

        if timestamped {
            let stale = Req {
                headers: sign(name, key, &body, now() - 3600),
                body: body.clone(),
            };
            let (status, answer) = send(name, stale).await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (401, Some("stale_timestamp")),
                "{name}: stale"
            );
            let future = Req {
                headers: sign(name, key, &body, now() + 3600),
                body: body.clone(),
            };
            assert_eq!(send(name, future).await.0, 401, "{name}: future timestamp");
        }
    }
    // WooCommerce's creation ping: unsigned, form-encoded, answered 200, no run.
    let ping = http
        .post(format!(
            "{base}/hooks/woocommerce/{}",
            tokens.token("woocommerce")
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("webhook_id=12")
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    let runs = crate::helpers::get(&http, format!("{base}/api/runs?flow=woocommerce")).await;
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        2,
        "the ping started no run"
    );
    // Refusals are counted per flow and reason. Counters are written once a second, so the
    // two reasons can land in different writes: each is waited for (a loaded run once read
    // bad_signature 2 while missing_signature was still unwritten), then both read exactly.
    crate::helpers::flow_with_counter(&http, &base, "github", "rejected:missing_signature", 1).await;
    let gh = crate::helpers::flow_with_counter(&http, &base, "github", "rejected:bad_signature", 2).await;
    assert_eq!(gh["counters"]["rejected:missing_signature"], 1, "{gh}");
    // Run history keeps the request but not its signature.
    let run = &runs["runs"][0];
    let full = crate::helpers::get(&http, format!("{base}/api/runs/{}", run["id"].as_str().unwrap())).await;
    assert_eq!(full["request"]["headers"]["x-wc-webhook-signature"], "[redacted]");

    // The request log shows refusals with their reason, and bodies only of verified requests.
    let recent = crate::helpers::get(&http, format!("{base}/api/flows/github/requests")).await;
    let entries = recent["requests"].as_array().unwrap();
    assert!(entries.len() >= 5, "{recent}");
    for e in entries {
        match e["outcome"].as_str().unwrap() {
            "accepted" => {
                assert_eq!(e["status"], 202);
                assert!(e["body"].as_str().unwrap().contains("evt_42"));
                assert!(e["run_id"].is_string());
            }
            "refused" => {
                assert_eq!(e["status"], 401, "{e}");
                assert!(e["reason"].as_str().unwrap().ends_with("signature"), "{e}");
                assert!(e.get("body").is_none(), "an unverified body was kept: {e}");
            }
            other => panic!("unexpected outcome {other}: {e}"),
        }
        if let Some(sig) = e["headers"].get("x-hub-signature-256") {
            assert_eq!(sig, "[redacted]", "{e}");
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("bad_signature"), "refusals are logged");
    for (_, value) in SECRETS {
        assert!(!logs.contains(value), "a secret is in the logs");
        let history = full.to_string();
        assert!(!history.contains(value), "a secret is in run history");
    }
}

#[test]
fn validate_refuses_literal_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("leaky.yaml"),
        "on:\n  webhook:\n    verify:\n      preset: github\n      secret: hunter2\nactions:\n  - http: { url: \"http://x\" }\n",
    )
    .unwrap();
    let out = crate::cli::hookflow(&["validate", "flows"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flows/leaky.yaml:5:") && err.contains("secrets never go in flow files"),
        "{err}"
    );
    assert!(!Path::new(&dir.path().join("data")).exists());
}

fn dedupe_flow(dest: &str) -> String {
    format!(
        r#"
on:
  webhook:
    dedupe:
      key: "{{{{ headers['x-github-delivery'] }}}}"
      window: 1h
actions:
  - http: {{ url: "{dest}/x" }}
"#
    )
}

#[tokio::test]
async fn duplicates_get_the_first_run_sequential_and_concurrent() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app(&[("gh", dedupe_flow(&dest.url))], &[]).await;
    let post = |delivery: &str| {
        app.http
            .post(app.hook_url("gh"))
            .header("content-type", "application/json")
            .header("x-github-delivery", delivery)
            .body("{}")
            .send()
    };
    let first = post("d-1").await.unwrap();
    assert_eq!(first.status(), 202);
    let id = first.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let again = post("d-1").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        json!({"status": "duplicate", "run_id": id})
    );
    app.wait_status(&id, RunStatus::Succeeded).await;

    // Ten copies at the same moment: one run.
    let copies = futures::future::join_all((0..10).map(|_| post("d-2"))).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut accepted = 0;
    for c in copies {
        let c = c.unwrap();
        if c.status() == 202 {
            accepted += 1;
        }
        ids.insert(
            c.json::<Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!((accepted, ids.len()), (1, 1), "{ids:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.all_runs().await.len(), 2);
    assert_eq!(dest.wait_hits(2).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn expired_dedupe_keys_are_forgotten() {
    use hookflow::request::Request;
    use hookflow::run::{Run, Ts};
    use hookflow::store::{Durability, RunQueue, SledStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), Durability::Flush).unwrap();
    let run = |id: &str| {
        let mut r = Run::new(
            "f",
            "v",
            Request::default(),
            Default::default(),
            None,
            ["a".to_string()],
        );
        r.id = id.into();
        r
    };
    let soon = Ts::now().plus(Duration::from_millis(200));
    assert_eq!(store.insert_run_once(&run("r1"), "k", soon).await.unwrap(), None);
    assert_eq!(
        store.insert_run_once(&run("r2"), "k", soon).await.unwrap(),
        Some("r1".into())
    );
    assert_eq!(store.expire_dedupe(Ts::now()).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(store.expire_dedupe(Ts::now()).await.unwrap(), 1);
    // The window is over: the same key starts a run again.
    assert_eq!(
        store
            .insert_run_once(&run("r3"), "k", Ts::now().plus(Duration::from_secs(60)))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn ip_allowlists_with_and_without_a_trusted_proxy() {
    let flows = [
        ("local", "on:\n  webhook:\n    allow_ips: [127.0.0.1, \"::1\"]\nactions:\n  - http: { url: \"http://127.0.0.1:1/x\" }\n".to_string()),
        ("office", "on:\n  webhook:\n    allow_ips: [203.0.113.0/24, \"2001:db8::/32\"]\nactions:\n  - http: { url: \"http://127.0.0.1:1/x\" }\n".to_string()),
    ];
    let post = |app: &crate::helpers::TestApp, flow: &str, xff: Option<&str>| {
        let mut r = app
            .http
            .post(app.hook_url(flow))
            .header("content-type", "application/json")
            .body("{}");
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        r.send()
    };
    // No trusted proxy: the peer (127.0.0.1) is the client, whatever the headers say.
    let app = spawn_app(&flows, &[]).await;
    assert_eq!(post(&app, "local", None).await.unwrap().status(), 202);
    let r = post(&app, "office", Some("203.0.113.9")).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "ip_not_allowed");
    app.stop().await;

    // Behind a trusted proxy on loopback: the forwarded client counts.
    let opts = Opts {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..Opts::default()
    };
    let app = spawn_app_opts(&flows, &[], opts).await;
    assert_eq!(
        post(&app, "office", Some("198.51.100.1, 203.0.113.9"))
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        post(&app, "office", Some("2001:db8::42")).await.unwrap().status(),
        202
    );
    assert_eq!(
        post(&app, "office", Some("203.0.113.9, 198.51.100.1"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(&app, "local", Some("203.0.113.9")).await.unwrap().status(),
        403
    );
    app.stop().await;
}

#[test]
fn serving_beyond_loopback_needs_an_api_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["serve", "--listen", "0.0.0.0:0", "--flows", "none"])
        .current_dir(dir.path())
        .env_remove("HOOKFLOW_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve the API on 0.0.0.0:0 without an API token"),
        "{err}"
    );
}

#[tokio::test]
async fn the_egress_policy_keeps_actions_off_internal_addresses() {
    let dest = Receiver::start(Reply::status(200)).await;
    let port = dest.url.rsplit(':').next().unwrap().to_string();
    let flows = [
        (
            "literal",
            format!("on:\n  webhook: {{}}\nactions:\n  - http: {{ url: \"http://127.0.0.1:{port}/x\" }}\n"),
        ),
        (
            "named",
            format!("on:\n  webhook: {{}}\nactions:\n  - http: {{ url: \"http://localhost:{port}/x\" }}\n"),
        ),
        (
            "odd",
            format!("on:\n  webhook: {{}}\nactions:\n  - http: {{ url: \"http://2130706433:{port}/x\" }}\n"),
        ),
    ];
    let opts = Opts {
        egress_allow: vec![],
        ..Opts::default()
    };
    let app = spawn_app_opts(&flows, &[], opts).await;
    for (flow, _) in &flows {
        let id = app.accept(flow, json!({})).await;
        let run = app.wait_status(&id, RunStatus::Failed).await;
        assert_eq!(run.steps[0].attempts.len(), 1, "{flow}: not retried");
        let err = run.error.unwrap();
        assert!(
            err.contains("refused by the egress policy") && err.contains("loopback"),
            "{flow}: {err}"
        );
    }
    assert_eq!(
        dest.arrivals().len(),
        0,
        "the loopback receiver must see no request"
    );
    app.stop().await;

    // Allowed first hop, refused redirect target.
    dest.on_path(
        "/hop",
        Reply {
            headers: vec![("location".into(), format!("http://127.0.0.2:{port}/inside"))],
            ..Reply::status(302)
        },
    );
    let flow = format!(
        "on:\n  webhook: {{}}\nactions:\n  - http: {{ url: \"http://127.0.0.1:{port}/hop\", follow_redirects: true }}\n"
    );
    let opts = Opts {
        egress_allow: vec!["127.0.0.1/32".parse().unwrap()],
        ..Opts::default()
    };
    let app = spawn_app_opts(&[("redirect", flow)], &[], opts).await;
    let id = app.accept("redirect", json!({})).await;
    let run = app.wait_status(&id, RunStatus::Failed).await;
    let err = run.error.unwrap();
    assert!(err.contains("refused by the egress policy: 127.0.0.2"), "{err}");
    assert_eq!(dest.arrivals().len(), 1, "only the allowed first hop");
    app.stop().await;
}

/// Outgoing signed webhooks, checked by the official Standard Webhooks library: the same
/// `webhook-id` on a retry, a fresh timestamp and a valid signature on every attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_outgoing_webhooks_verify_with_the_official_library() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path_seq("/in", vec![Reply::status(500), Reply::status(200)]);
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("out.yaml"),
        format!(
            r#"
on:
  webhook: {{}}
retry: {{ initial_delay: 100ms }}
actions:
  - name: notify
    http:
      url: "{}/in"
      body: {{ order: "{{{{ body.id }}}}" }}
      sign: {{ preset: standard-webhooks, secret_env: OUT_SECRET }}
"#,
            dest.url
        ),
    )
    .unwrap();
    let (mut cmd, base) = serve_command(&flows, &dir.path().join("t"), &dir.path().join("data"));
    let mut child = cmd.env("OUT_SECRET", secret).spawn().unwrap();
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let tokens = hookflow::token::UrlTokens::from_secret(SECRET.as_bytes()).unwrap();
    let r = http
        .post(format!("{base}/hooks/out/{}", tokens.token("out")))
        .json(&json!({"id": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let hits = dest.wait_hits(2).await;
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    for hit in &hits {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &hit.headers {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        wh.verify(hit.body.as_bytes(), &headers)
            .expect("the official library accepts it");
        assert_eq!(hit.json(), json!({"order": 7}));
    }
    assert_eq!(
        hits[0].headers["webhook-id"], hits[1].headers["webhook-id"],
        "stable across retries"
    );
    // A tampered body is refused by the same library, so the check above can fail.
    let mut headers = http::HeaderMap::new();
    for (k, v) in &hits[0].headers {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    assert!(wh.verify(br#"{"order":8}"#, &headers).is_err());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn configured_body_fields_never_reach_run_history() {
    let f = "on:\n  webhook:\n    redact: [$.card.number, \"$.users[*].password\"]\nvars:\n  last4: $.card.last4\nactions:\n  - http: { url: \"http://127.0.0.1:1/x\" }\n";
    let app = spawn_app(&[("pay", f.to_string())], &[]).await;
    let id = app
        .accept(
            "pay",
            json!({"card": {"number": "4111111111111111", "last4": "1111"}, "users": [{"name": "a", "password": "pw-secret-1"}]}),
        )
        .await;
    let run = app.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.request.body["card"]["number"], "[redacted]");
    assert_eq!(run.request.body["users"][0]["password"], "[redacted]");
    assert_eq!(run.request.body["users"][0]["name"], "a");
    assert_eq!(run.vars["last4"], "1111");
    let shown = app.api(&format!("/api/runs/{id}")).await.to_string();
    assert!(
        !shown.contains("4111111111111111") && !shown.contains("pw-secret-1"),
        "{shown}"
    );
    app.stop().await;
}
