//! The senders added as rows of the preset table (verify/presets.rs): each over real HTTP to
//! the real binary, signed as the sender's documentation says — computed here, apart from
//! hookflow's table — and refused with the right reason when a byte is changed, the key is
//! wrong, the timestamp is old or the signature is missing. Paddle's own library (the
//! `paddle-python-sdk` Verifier) also checks what hookflow signs as Paddle.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::Mac;
use serde_json::Value;

use crate::helpers::Binary;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn hmac256(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac1(key: &str, body: &[u8]) -> Vec<u8> {
    let mut m = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

const KEY: &str = "sender-secret-0123456789";
const BODY: &[u8] = br#"{"event":"order.paid","data":{"id":"o_1"}}"#;

/// A flow verifying with `preset`, its secret in SENDER_SECRET.
fn flow(preset: &str) -> String {
    format!(
        "on:\n  webhook:\n    verify: {{ preset: {preset}, secret_env: SENDER_SECRET }}\nactions:\n  - emit: {{ type: sender.seen }}\n"
    )
}

async fn post(url: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    (status, answer["error"].as_str().map(str::to_string))
}

/// How one sender signs `body` with `key` at `ts`, written from its documentation.
type Signer = fn(key: &str, ts: i64, body: &[u8]) -> Vec<(String, String)>;

fn header(name: &str, value: String) -> Vec<(String, String)> {
    vec![(name.to_string(), value)]
}

/// Each sender: its preset, how it signs, whether it signs a timestamp, whether the signature
/// covers the body.
const SENDERS: &[(&str, Signer, bool, bool)] = &[
    // GitLab: the secret token itself, in X-Gitlab-Token — who sent, not what (use TLS).
    (
        "gitlab",
        |key, _, _| header("X-Gitlab-Token", key.to_string()),
        false,
        false,
    ),
    // Paddle Billing: Paddle-Signature: ts=…;h1=hex(HMAC-SHA256(key, "{ts}:{body}")).
    (
        "paddle",
        |key, ts, body| {
            let sig = hex::encode(hmac256(key, &[format!("{ts}:").as_bytes(), body]));
            header("Paddle-Signature", format!("ts={ts};h1={sig}"))
        },
        true,
        true,
    ),
    // Calendly: Calendly-Webhook-Signature: t=…,v1=hex(HMAC-SHA256(key, "{t}.{body}")).
    (
        "calendly",
        |key, ts, body| {
            let sig = hex::encode(hmac256(key, &[format!("{ts}.").as_bytes(), body]));
            header("Calendly-Webhook-Signature", format!("t={ts},v1={sig}"))
        },
        true,
        true,
    ),
    // Typeform: Typeform-Signature: sha256=base64(HMAC-SHA256(key, body)).
    (
        "typeform",
        |key, _, body| {
            let sig = base64::engine::general_purpose::STANDARD.encode(hmac256(key, &[body]));
            header("Typeform-Signature", format!("sha256={sig}"))
        },
        false,
        true,
    ),
    // Intercom: X-Hub-Signature: sha1=hex(HMAC-SHA1(client secret, body)).
    (
        "intercom",
        |key, _, body| {
            header(
                "X-Hub-Signature",
                format!("sha1={}", hex::encode(hmac1(key, body))),
            )
        },
        false,
        true,
    ),
    // Zoom: x-zm-signature: v0=hex(HMAC-SHA256(key, "v0:{ts}:{body}")), x-zm-request-timestamp.
    (
        "zoom",
        |key, ts, body| {
            let sig = hex::encode(hmac256(key, &[format!("v0:{ts}:").as_bytes(), body]));
            vec![
                ("x-zm-request-timestamp".to_string(), ts.to_string()),
                ("x-zm-signature".to_string(), format!("v0={sig}")),
            ]
        },
        true,
        true,
    ),
    // Linear: Linear-Signature: hex(HMAC-SHA256(key, body)).
    (
        "linear",
        |key, _, body| header("Linear-Signature", hex::encode(hmac256(key, &[body]))),
        false,
        true,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_sender_is_accepted_as_it_signs_and_refused_for_each_fault() {
    let flows: Vec<(String, String)> = SENDERS
        .iter()
        .map(|(name, ..)| (name.to_string(), flow(name)))
        .collect();
    let named: Vec<(&str, &str)> = flows.iter().map(|(n, f)| (n.as_str(), f.as_str())).collect();
    let app = Binary::start(&named, &[], &[("SENDER_SECRET", KEY)]).await;
    for (name, signer, timed, covers_body) in SENDERS {
        let url = app.hook_url(name);
        let ts = now();
        let signed = signer(KEY, ts, BODY);
        assert_eq!(
            post(&url, &signed, BODY).await,
            (202, None),
            "{name}: as the sender signs"
        );
        let tampered = br#"{"event":"order.paid","data":{"id":"o_2"}}"#;
        let expected = if *covers_body {
            (401, Some("bad_signature".to_string()))
        } else {
            (202, None)
        };
        assert_eq!(
            post(&url, &signed, tampered).await,
            expected,
            "{name}: a changed byte"
        );
        assert_eq!(
            post(&url, &signer("another-key-0123456789", ts, BODY), BODY).await,
            (401, Some("bad_signature".into())),
            "{name}: the wrong key"
        );
        assert_eq!(
            post(&url, &[], BODY).await,
            (401, Some("missing_signature".into())),
            "{name}: no signature"
        );
        if *timed {
            assert_eq!(
                post(&url, &signer(KEY, ts - 3600, BODY), BODY).await,
                (401, Some("stale_timestamp".into())),
                "{name}: an hour old"
            );
        }
    }
}

/// What hookflow signs as Paddle (outgoing `sign:` and `hookflow send --preset paddle` use the
/// same row) is what Paddle's own library accepts; a changed byte it refuses. Needs python3
/// with `paddle-python-sdk` (the README's test command installs it); without it the test says
/// so and passes, unless HOOKFLOW_VENDOR_TESTS=required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paddles_own_verifier_accepts_what_hookflow_signs_as_paddle() {
    let required = std::env::var("HOOKFLOW_VENDOR_TESTS").is_ok_and(|v| v == "required");
    let script = r#"
import sys
from paddle_billing.Notifications import Secret, Verifier
class Request:
    def __init__(self, headers, body):
        self.headers = headers
        self.body = body
secret, header, body = sys.argv[1], sys.argv[2], sys.argv[3].encode()
print(Verifier().verify(Request({"Paddle-Signature": header}, body), Secret(secret)))
"#;
    let scheme = hookflow::verify::Scheme::preset("paddle").unwrap();
    let headers = hookflow::verify::sign(&scheme, KEY.as_bytes(), "unused", now(), BODY);
    let signature = headers
        .iter()
        .find(|(k, _)| k == "Paddle-Signature")
        .map(|(_, v)| v.clone())
        .expect("hookflow signs as Paddle in Paddle-Signature");
    let verdict = |body: &[u8]| {
        std::process::Command::new("python3")
            .args(["-c", script, KEY, &signature, std::str::from_utf8(body).unwrap()])
            .output()
    };
    match verdict(BODY) {
        Ok(o) if o.status.success() => {
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "True", "{signature}");
        }
        other => {
            assert!(!required, "python3 with paddle-python-sdk is required: {other:?}");
            eprintln!(
                "SKIPPED: python3 with `paddle-python-sdk` is not installed; the README's test command installs it"
            );
            return;
        }
    }
    let tampered = verdict(br#"{"event":"order.paid","data":{"id":"o_2"}}"#).unwrap();
    assert_eq!(String::from_utf8_lossy(&tampered.stdout).trim(), "False");
}

/// Zoom enables an endpoint only once it answers the signed `endpoint.url_validation` request
/// with the plain token and its HMAC under the secret: answered 200 with both, no run started;
/// the same request unsigned or signed with another key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zooms_url_validation_is_answered_with_the_token_hmac_and_starts_nothing() {
    let app = Binary::start(&[("zoom", &flow("zoom"))], &[], &[("SENDER_SECRET", KEY)]).await;
    let url = app.hook_url("zoom");
    let plain = "qgg8vlvZRS6UYooatFL8Aw";
    let body = format!(
        r#"{{"payload":{{"plainToken":"{plain}"}},"event_ts":1654503849680,"event":"endpoint.url_validation"}}"#
    );
    let sign = |key: &str| {
        let ts = now();
        let sig = hex::encode(hmac256(key, &[format!("v0:{ts}:").as_bytes(), body.as_bytes()]));
        vec![
            ("x-zm-request-timestamp".to_string(), ts.to_string()),
            ("x-zm-signature".to_string(), format!("v0={sig}")),
        ]
    };
    let mut req = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone());
    for (k, v) in sign(KEY) {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        answer,
        serde_json::json!({
            "plainToken": plain,
            "encryptedToken": hex::encode(hmac256(KEY, &[plain.as_bytes()])),
        })
    );
    assert_eq!(
        post(&url, &sign("another-key-0123456789"), body.as_bytes()).await,
        (401, Some("bad_signature".into()))
    );
    assert_eq!(
        post(&url, &[], body.as_bytes()).await,
        (401, Some("missing_signature".into()))
    );
    let runs: Value = reqwest::get(format!("{}/api/runs", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "{runs}");
}
