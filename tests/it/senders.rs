//! The senders added as rows of the preset table (verify/presets.rs): each over real HTTP to
//! the real binary, signed as the sender's documentation says — computed here, apart from
//! hookflow's table — and refused with the right reason when a byte is changed, the key is
//! wrong, the timestamp is old or the signature is missing; a replay of a signed request is
//! answered as a duplicate of its first run. Paddle's own library (the
//! `paddle-python-sdk` Verifier) also checks what hookflow signs as Paddle; Discord's
//! interactions are signed with PyNaCl, and `hookflow send --signing-key` signs as Discord.

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

/// A flow verifying with `preset` and deduplicating on the body's `data.id` (the delivery's
/// id in the test's bodies), its secret in SENDER_SECRET.
fn deduped_flow(preset: &str) -> String {
    format!(
        "on:\n  webhook:\n    verify: {{ preset: {preset}, secret_env: SENDER_SECRET }}\n    dedupe: {{ key: \"{{{{ body.data.id }}}}\" }}\nactions:\n  - emit: {{ type: sender.seen }}\n"
    )
}

/// A flow verifying with `preset` and deduplicating on `key` (a template), its secret in
/// SENDER_SECRET.
fn flow_deduped_on(preset: &str, key: &str) -> String {
    format!(
        "on:\n  webhook:\n    verify: {{ preset: {preset}, secret_env: SENDER_SECRET }}\n    dedupe: {{ key: \"{key}\" }}\nactions:\n  - emit: {{ type: sender.seen }}\n"
    )
}

/// Posts `body` as `content_type` with `headers` (a signed request, as a sender sends it).
async fn send(url: &str, headers: &[(String, String)], body: &[u8], content_type: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

/// Posts the same signed request again: it must be answered as a duplicate of its first run.
async fn replayed(url: &str, headers: &[(String, String)], body: &[u8], content_type: &str) {
    let resp = send(url, headers, body, content_type).await;
    assert_eq!(resp.status(), 200, "{url}: a replay");
    assert_eq!(
        resp.json::<Value>().await.unwrap()["status"],
        "duplicate",
        "{url}: a replay"
    );
}

/// A flow verifying with `preset`, its secret in SENDER_SECRET.
fn flow(preset: &str) -> String {
    format!(
        "on:\n  webhook:\n    verify: {{ preset: {preset}, secret_env: SENDER_SECRET }}\nactions:\n  - emit: {{ type: sender.seen }}\n"
    )
}

/// A JSON request's status and the reason of a refusal.
async fn post(url: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Option<String>) {
    post_as(url, headers, body, "application/json").await
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
        .map(|(name, ..)| (name.to_string(), deduped_flow(name)))
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
        // The same signed request again (a replay, or the sender's retry): answered with the
        // first run, nothing new started.
        replayed(&url, &signed, BODY, "application/json").await;
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
    let headers = hookflow::verify::sign(
        &scheme,
        &hookflow::verify::Target::default(),
        KEY.as_bytes(),
        "unused",
        now(),
        BODY,
    );
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

/// Discord's interactions endpoint, signed by PyNaCl (the Ed25519 library Discord's own
/// examples use) with a key of the test's: a signed PING is answered `{"type": 1}` and starts
/// nothing; an interaction is accepted; a changed byte, another key, an hour-old timestamp and
/// no signature are refused with their reasons. Needs python3 with PyNaCl (the README's test
/// command installs it); without it the test says so and passes, unless
/// HOOKFLOW_VENDOR_TESTS=required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_interactions_signed_by_pynacl_are_verified_and_the_ping_answered() {
    let required = std::env::var("HOOKFLOW_VENDOR_TESTS").is_ok_and(|v| v == "required");
    let script = r#"
import sys
from nacl.signing import SigningKey
key = SigningKey(bytes.fromhex(sys.argv[1]))
signed = key.sign(sys.argv[2].encode() + sys.argv[3].encode())
print(key.verify_key.encode().hex())
print(signed.signature.hex())
"#;
    // (public key, signature) as PyNaCl makes them for `seed` over `ts` and `body`.
    let nacl = |seed: &str, ts: i64, body: &[u8]| {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                script,
                seed,
                &ts.to_string(),
                std::str::from_utf8(body).unwrap(),
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        Some((lines.next()?.to_string(), lines.next()?.to_string()))
    };
    let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    let ping = br#"{"type":1,"id":"1","application_id":"2","version":1}"#;
    let ts = now();
    let Some((public, ping_sig)) = nacl(seed, ts, ping) else {
        assert!(!required, "python3 with PyNaCl is required");
        eprintln!("SKIPPED: python3 with PyNaCl is not installed; the README's test command installs it");
        return;
    };
    // RFC 8032's first test key: PyNaCl derives its published public key.
    assert_eq!(
        public,
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    let app = Binary::start(
        &[("discord", &flow_deduped_on("discord", "{{ body.id }}"))],
        &[],
        &[("SENDER_SECRET", public.as_str())],
    )
    .await;
    let url = app.hook_url("discord");
    let signed = |ts: i64, sig: &str| {
        vec![
            ("X-Signature-Timestamp".to_string(), ts.to_string()),
            ("X-Signature-Ed25519".to_string(), sig.to_string()),
        ]
    };
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .headers(
            signed(ts, &ping_sig)
                .into_iter()
                .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                .collect(),
        )
        .body(ping.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        serde_json::json!({"type": 1})
    );

    let body = br#"{"type":2,"id":"3","data":{"name":"order","options":[{"name":"id","value":"o_1"}]}}"#;
    let (_, sig) = nacl(seed, ts, body).unwrap();
    assert_eq!(post(&url, &signed(ts, &sig), body).await, (202, None));
    replayed(&url, &signed(ts, &sig), body, "application/json").await;
    let mut tampered = body.to_vec();
    tampered[20] ^= 1;
    assert_eq!(
        post(&url, &signed(ts, &sig), &tampered).await,
        (401, Some("bad_signature".into()))
    );
    let (_, other) = nacl(&"42".repeat(32), ts, body).unwrap();
    assert_eq!(
        post(&url, &signed(ts, &other), body).await,
        (401, Some("bad_signature".into()))
    );
    let (_, old) = nacl(seed, ts - 3600, body).unwrap();
    assert_eq!(
        post(&url, &signed(ts - 3600, &old), body).await,
        (401, Some("stale_timestamp".into()))
    );
    assert_eq!(
        post(&url, &[], body).await,
        (401, Some("missing_signature".into()))
    );
    // Only the interaction started a run; the PING and the refusals did not.
    let runs = crate::helpers::get(
        &reqwest::Client::new(),
        format!("{}/api/runs?flow=discord", app.base),
    )
    .await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs:#}");

    // `hookflow send` signs a test interaction as Discord, with the private key given.
    let dir = tempfile::tempdir().unwrap();
    let (key, payload) = (
        dir.path().join("discord.key"),
        dir.path().join("interaction.json"),
    );
    std::fs::write(&key, seed).unwrap();
    std::fs::write(&payload, br#"{"type":2,"id":"4","data":{"name":"order"}}"#).unwrap();
    let send = |with_key: bool| {
        let key_args: Vec<&std::ffi::OsStr> = match with_key {
            true => vec!["--signing-key".as_ref(), key.as_os_str()],
            false => Vec::new(),
        };
        hookflow_send(&app, "discord", &payload, "application/json", &public, &key_args)
    };
    let sent = send(true);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let unsigned = send(false);
    assert!(!unsigned.status.success());
    assert!(
        String::from_utf8_lossy(&unsigned.stderr).contains("--signing-key"),
        "{}",
        String::from_utf8_lossy(&unsigned.stderr)
    );
    let runs = crate::helpers::get(
        &reqwest::Client::new(),
        format!("{}/api/runs?flow=discord", app.base),
    )
    .await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs:#}");
}

/// Mailchimp does not sign: the shipped `mailchimp-audience` flow answers Mailchimp's `GET`
/// check of the URL with 200 and starts nothing; its form-encoded unsubscribe (the shipped
/// sample) removes and suppresses the address; an event it does not expect is ignored; a
/// wrong token is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailchimps_unsigned_audience_webhook_is_handled_as_docs_say() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml = std::fs::read_to_string(root.join("flows/mailchimp-audience.yaml")).unwrap();
    let app = Binary::start(&[("mailchimp-audience", &yaml)], &[], &[]).await;
    let url = app.hook_url("mailchimp-audience");
    let http = reqwest::Client::new();
    let check = http.get(&url).send().await.unwrap();
    assert_eq!(check.status(), 200);
    let form = |body: Vec<u8>| {
        http.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let sample = std::fs::read(root.join("examples/payloads/mailchimp-unsubscribe.txt")).unwrap();
    let r = form(sample).await.unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = crate::helpers::wait_run(&http, &app.base, &id, |r| r["status"] == "succeeded").await;
    assert_eq!(run["vars"]["email"], "bea@example.com");
    let s = crate::unsubscribe::suppressions(&http, &app.base).await;
    assert_eq!(
        s,
        [(
            "bea@example.com".into(),
            "unsubscribed".into(),
            "newsletter".into()
        )]
    );
    let subscribe = form(b"type=subscribe&data%5Bemail%5D=cy%40example.com".to_vec())
        .await
        .unwrap();
    assert_eq!(subscribe.status(), 200);
    let wrong = http
        .get(url.replace(&app.tokens.token("mailchimp-audience"), &"0".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    let runs = crate::helpers::get(&http, format!("{}/api/runs?flow=mailchimp-audience", app.base)).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs:#}");
}

/// `hookflow send` of `payload` to `flow` on `app`, as a user runs it, the sender's secret (or
/// public key) in SENDER_SECRET as the flow reads it.
fn hookflow_send(
    app: &Binary,
    flow: &str,
    payload: &std::path::Path,
    content_type: &str,
    secret: &str,
    extra: &[&std::ffi::OsStr],
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["send", flow, "--content-type", content_type, "--payload"])
        .arg(payload)
        .args(["--listen", app.base.trim_start_matches("http://")])
        .args(["--flows", app.dir.path().join("flows").to_str().unwrap()])
        .args(extra)
        .env("HOOKFLOW_SECRET", crate::helpers::SECRET)
        .env("SENDER_SECRET", secret)
        .output()
        .unwrap()
}

/// What one vendor library makes of `args` (see the script): signature headers, or a verdict.
fn vendor(args: &Value) -> Option<Value> {
    use std::io::Write;
    let script = r#"
import sys, json
a = json.load(sys.stdin)
if a["vendor"] == "twilio":
    from twilio.request_validator import RequestValidator
    from urllib.parse import parse_qsl
    params = dict(parse_qsl(a["body"], keep_blank_values=True))
    print(json.dumps({"X-Twilio-Signature": RequestValidator(a["key"]).compute_signature(a["url"], params)}))
elif a["vendor"] == "hubspot":
    from hubspot.utils.signature import Signature
    sig = Signature.get_signature(a["key"], a["body"], "v3", a["url"], a["method"], str(a["ts"]))
    print(json.dumps({"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": str(a["ts"])}))
elif a["vendor"] == "square":
    from square.utils.webhooks_helper import verify_signature
    print(json.dumps({"ok": verify_signature(request_body=a["body"], signature_header=a["sig"], signature_key=a["key"], notification_url=a["url"])}))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(args.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

async fn post_as(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    content_type: &str,
) -> (u16, Option<String>) {
    let resp = send(url, headers, body, content_type).await;
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    (status, answer["error"].as_str().map(str::to_string))
}

/// The senders that sign the URL they were given — Twilio (URL and sorted form parameters),
/// HubSpot v3 (method, URL, body and a millisecond timestamp), Square (URL and body) — over
/// real HTTP, their requests signed by their own libraries (`twilio`'s RequestValidator,
/// `hubspot-api-client`'s Signature; Square's SDK only verifies, so its `verify_signature`
/// checks the test's signature and hookflow's alike); a changed byte, another key, another URL,
/// an old timestamp and no signature refused with their reasons, a replay answered as a
/// duplicate; and `hookflow send` signs as each. Needs python3 with `twilio`, `hubspot-api-client` and `squareup` (the README's test
/// command installs them); without them the test says so and passes, unless
/// HOOKFLOW_VENDOR_TESTS=required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_signing_senders_are_verified_as_their_own_libraries_sign() {
    let required = std::env::var("HOOKFLOW_VENDOR_TESTS").is_ok_and(|v| v == "required");
    let probe = vendor(
        &serde_json::json!({"vendor": "hubspot", "key": "k", "body": "", "url": "u", "method": "POST", "ts": 0}),
    );
    if probe.is_none() {
        assert!(
            !required,
            "python3 with twilio, hubspot-api-client and squareup is required"
        );
        eprintln!(
            "SKIPPED: python3 with twilio, hubspot-api-client and squareup is not installed; the README's test command installs them"
        );
        return;
    }
    let flows = [
        ("twilio", flow_deduped_on("twilio", "{{ body.MessageSid }}")),
        ("hubspot", flow_deduped_on("hubspot", "{{ body[0].eventId }}")),
        ("square", flow_deduped_on("square", "{{ body[0].eventId }}")),
    ];
    let named: Vec<(&str, &str)> = flows.iter().map(|(n, f)| (*n, f.as_str())).collect();
    let app = Binary::start(&named, &[], &[("SENDER_SECRET", KEY)]).await;
    const FORM: &str = "To=%2B15005550006&From=%2B14155551212&Body=Hello+%26+bye&MessageSid=SM1&NumMedia=0";
    const JSON: &str = r#"[{"eventId":1,"subscriptionType":"contact.creation","objectId":7}]"#;

    // Twilio: the library signs the URL (with its query) and the form.
    let url = format!("{}?source=sms", app.hook_url("twilio"));
    let sign = |key: &str, url: &str, body: &str| {
        pairs(
            &vendor(&serde_json::json!({"vendor": "twilio", "key": key, "url": url, "body": body})).unwrap(),
        )
    };
    let form = "application/x-www-form-urlencoded";
    assert_eq!(
        post_as(&url, &sign(KEY, &url, FORM), FORM.as_bytes(), form).await,
        (202, None)
    );
    replayed(&url, &sign(KEY, &url, FORM), FORM.as_bytes(), form).await;
    let changed = FORM.replace("Hello", "Hallo");
    let bad = Some("bad_signature".to_string());
    assert_eq!(
        post_as(&url, &sign(KEY, &url, FORM), changed.as_bytes(), form).await,
        (401, bad.clone())
    );
    assert_eq!(
        post_as(
            &url,
            &sign("another-key-0123456789", &url, FORM),
            FORM.as_bytes(),
            form
        )
        .await,
        (401, bad.clone())
    );
    let elsewhere = format!("{}?source=other", app.hook_url("twilio"));
    assert_eq!(
        post_as(&url, &sign(KEY, &elsewhere, FORM), FORM.as_bytes(), form).await,
        (401, bad.clone())
    );
    assert_eq!(
        post_as(&url, &[], FORM.as_bytes(), form).await,
        (401, Some("missing_signature".into()))
    );

    // HubSpot v3: the library signs method, URL, body and the timestamp in milliseconds.
    let url = app.hook_url("hubspot");
    let sign = |key: &str, ts: i64, body: &str| {
        pairs(&vendor(&serde_json::json!({"vendor": "hubspot", "key": key, "url": url, "body": body, "method": "POST", "ts": ts})).unwrap())
    };
    let ms = now() * 1000;
    let json = "application/json";
    assert_eq!(
        post_as(&url, &sign(KEY, ms, JSON), JSON.as_bytes(), json).await,
        (202, None)
    );
    replayed(&url, &sign(KEY, ms, JSON), JSON.as_bytes(), json).await;
    let changed = JSON.replace("7}", "8}");
    assert_eq!(
        post_as(&url, &sign(KEY, ms, JSON), changed.as_bytes(), json).await,
        (401, bad.clone())
    );
    assert_eq!(
        post_as(
            &url,
            &sign("another-key-0123456789", ms, JSON),
            JSON.as_bytes(),
            json
        )
        .await,
        (401, bad.clone())
    );
    assert_eq!(
        post_as(&url, &sign(KEY, ms - 3_600_000, JSON), JSON.as_bytes(), json).await,
        (401, Some("stale_timestamp".into()))
    );
    assert_eq!(
        post_as(&url, &[], JSON.as_bytes(), json).await,
        (401, Some("missing_signature".into()))
    );

    // Square: base64 HMAC-SHA256 of the notification URL and the body — Square's SDK accepts
    // the test's signature and hookflow's.
    let url = app.hook_url("square");
    let square = |key: &str, url: &str, body: &str| {
        base64::engine::general_purpose::STANDARD.encode(hmac256(key, &[url.as_bytes(), body.as_bytes()]))
    };
    let sig = square(KEY, &url, JSON);
    let ours = hookflow::verify::sign(
        &hookflow::verify::Scheme::preset("square").unwrap(),
        &hookflow::verify::Target {
            method: "POST",
            url: &url,
        },
        KEY.as_bytes(),
        "unused",
        now(),
        JSON.as_bytes(),
    );
    assert_eq!(ours, [("x-square-hmacsha256-signature".to_string(), sig.clone())]);
    let verdict =
        vendor(&serde_json::json!({"vendor": "square", "key": KEY, "url": url, "body": JSON, "sig": sig}))
            .unwrap();
    assert_eq!(verdict["ok"], true, "Square's SDK accepts the signature");
    let header = |s: String| vec![("x-square-hmacsha256-signature".to_string(), s)];
    assert_eq!(
        post_as(&url, &header(sig.clone()), JSON.as_bytes(), json).await,
        (202, None)
    );
    replayed(&url, &header(sig.clone()), JSON.as_bytes(), json).await;
    assert_eq!(
        post_as(&url, &header(sig.clone()), changed.as_bytes(), json).await,
        (401, bad.clone())
    );
    assert_eq!(
        post_as(
            &url,
            &header(square("another-key-0123456789", &url, JSON)),
            JSON.as_bytes(),
            json
        )
        .await,
        (401, bad.clone())
    );
    let other_url = url.replace("/hooks/", "/other/");
    assert_eq!(
        post_as(
            &url,
            &header(square(KEY, &other_url, JSON)),
            JSON.as_bytes(),
            json
        )
        .await,
        (401, bad)
    );

    // `hookflow send` signs as each of them.
    let dir = tempfile::tempdir().unwrap();
    for (name, body, content_type) in [
        ("twilio", FORM, form),
        ("hubspot", JSON, json),
        ("square", JSON, json),
    ] {
        let payload = dir.path().join(name);
        std::fs::write(&payload, body).unwrap();
        let out = hookflow_send(&app, name, &payload, content_type, KEY, &[]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `send` delivered the same events again: verified, and answered as duplicates.
    let runs = crate::helpers::get(
        &reqwest::Client::new(),
        format!("{}/api/runs?limit=100", app.base),
    )
    .await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 3, "one per delivery");
}

/// `hookflow send` looks like each sender to the flow: the sender's User-Agent and a fresh
/// delivery id arrive as headers (forwarded here by an HTTP action to a receiver the test
/// runs), each send its own id; for a sender that documents none (Paddle) nothing is invented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_sends_each_senders_user_agent_and_delivery_id() {
    use crate::helpers::{Receiver, Reply};
    let dest = Receiver::start(Reply::status(200)).await;
    let senders = [
        ("typeform", "Typeform Webhooks", ""),
        ("zoom", "Zoom Marketplace/1.0a", "x-zm-request-id"),
        ("linear", "Linear-Webhook", "linear-delivery"),
        ("gitlab", "GitLab/", "x-gitlab-event-uuid"),
        ("paddle", "", ""),
    ];
    let flows: Vec<(String, String)> = senders
        .iter()
        .map(|(preset, _, id)| {
            let id = if id.is_empty() { "none" } else { id };
            let flow = format!(
                "on:\n  webhook:\n    verify: {{ preset: {preset}, secret_env: SENDER_SECRET }}\nactions:\n  - name: forward\n    http:\n      url: \"{}/{preset}\"\n      body:\n        ua: \"{{{{ headers['user-agent'] | default('') }}}}\"\n        id: \"{{{{ headers['{id}'] | default('') }}}}\"\n",
                dest.url
            );
            (format!("send-{preset}"), flow)
        })
        .collect();
    let refs: Vec<(&str, &str)> = flows.iter().map(|(n, f)| (n.as_str(), f.as_str())).collect();
    let app = Binary::start(&refs, &[], &[("SENDER_SECRET", "send-secret")]).await;
    let payload = app.dir.path().join("payload.json");
    std::fs::write(&payload, BODY).unwrap();
    for (preset, ..) in &senders {
        for _ in 0..2 {
            let out = hookflow_send(
                &app,
                &format!("send-{preset}"),
                &payload,
                "application/json",
                "send-secret",
                &[],
            );
            assert!(
                String::from_utf8_lossy(&out.stdout).starts_with("202 "),
                "{preset}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let hits = dest.wait_hits(2 * senders.len()).await;
    for (preset, ua, id) in senders {
        let seen: Vec<Value> = hits
            .iter()
            .filter(|h| h.path == format!("/{preset}"))
            .map(|h| h.json())
            .collect();
        assert_eq!(seen.len(), 2, "{preset}");
        for b in &seen {
            let got = b["ua"].as_str().unwrap();
            if ua.is_empty() {
                // reqwest's default, not a vendor's made-up name.
                assert!(got.is_empty() || got.starts_with("hookflow"), "{preset}: {b}");
            } else {
                assert!(got.starts_with(ua), "{preset}: {b}");
            }
            assert_eq!(
                b["id"].as_str().unwrap().len(),
                if id.is_empty() { 0 } else { 36 },
                "{preset}: {b}"
            );
        }
        if !id.is_empty() {
            assert_ne!(
                seen[0]["id"], seen[1]["id"],
                "{preset}: each send is its own delivery"
            );
        }
    }
}
