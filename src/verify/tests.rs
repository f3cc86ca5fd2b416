//! Every scheme against published and independently computed signatures.

use super::*;
use std::collections::BTreeMap;

struct H(BTreeMap<String, String>);
impl Headers for H {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}
fn h(pairs: &[(&str, &str)]) -> H {
    H(pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect())
}
const T: Duration = DEFAULT_TOLERANCE;
const BODY: &[u8] = br#"{"id":"evt_1","type":"charge.succeeded"}"#;

fn check(
    scheme: &Scheme,
    hs: &[(&str, &str)],
    body: &[u8],
    now: i64,
    secrets: &[&str],
) -> Result<Verified, VerifyError> {
    let keys: Vec<Vec<u8>> = secrets.iter().map(|s| key_bytes(scheme, s)).collect();
    verify(scheme, &Target::default(), &h(hs), body, now, T, &keys)
}

// Expected signatures below were computed with Python's hmac module, not this code; the
// GitHub and Standard Webhooks ones are the senders' own published examples.

#[test]
fn github_published_example() {
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let s = Scheme::preset("github").unwrap();
    let secret = "It's a Secret to Everybody";
    assert_eq!(
        check(
            &s,
            &[("X-Hub-Signature-256", sig)],
            b"Hello, World!",
            0,
            &[secret]
        ),
        Ok(Verified::Ok)
    );
    assert_eq!(
        check(
            &s,
            &[("X-Hub-Signature-256", sig)],
            b"Hello, World?",
            0,
            &[secret]
        ),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        check(
            &s,
            &[("X-Hub-Signature-256", sig)],
            b"Hello, World!",
            0,
            &["wrong"]
        ),
        Err(VerifyError::Mismatch)
    );
    // Rotation: the old secret first, the right one second.
    assert_eq!(
        check(
            &s,
            &[("X-Hub-Signature-256", sig)],
            b"Hello, World!",
            0,
            &["old", secret]
        ),
        Ok(Verified::Ok)
    );
    assert_eq!(
        check(&s, &[], b"Hello, World!", 0, &[secret])
            .unwrap_err()
            .reason(),
        "missing_signature"
    );
    assert_eq!(
        check(&s, &[("X-Hub-Signature-256", "sha1=abc")], b"x", 0, &[secret])
            .unwrap_err()
            .reason(),
        "malformed_signature"
    );
}

#[test]
fn stripe() {
    let s = Scheme::preset("stripe").unwrap();
    let sig = "e5ae2d1aaf7191f9c3a98656906ac6e86a39addf55af2c579dc86f4fed2e2ea7";
    let header = format!("t=1700000000,v1=00ff,v1={sig}");
    let hs = [("Stripe-Signature", header.as_str())];
    assert_eq!(
        check(&s, &hs, BODY, 1_700_000_100, &["whsec_test_stripe"]),
        Ok(Verified::Ok)
    );
    assert_eq!(
        check(&s, &hs, BODY, 1_700_000_301, &["whsec_test_stripe"])
            .unwrap_err()
            .reason(),
        "stale_timestamp"
    );
    assert_eq!(
        check(&s, &hs, BODY, 1_699_999_600, &["whsec_test_stripe"])
            .unwrap_err()
            .reason(),
        "stale_timestamp"
    );
    assert_eq!(
        check(&s, &hs, b"{}", 1_700_000_000, &["whsec_test_stripe"]),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        check(&s, &hs, BODY, 1_700_000_000, &["nope", "whsec_test_stripe"]),
        Ok(Verified::Ok)
    );
}

#[test]
fn shopify_and_woocommerce() {
    let hs = [(
        "X-Shopify-Hmac-Sha256",
        "Nqr6rlmu7OXwDkMkpGde0gRB8KeTuZVeVJxx+jBlBiY=",
    )];
    assert_eq!(
        check(
            &Scheme::preset("shopify").unwrap(),
            &hs,
            BODY,
            0,
            &["shpss_secret"]
        ),
        Ok(Verified::Ok)
    );
    assert_eq!(
        check(&Scheme::preset("shopify").unwrap(), &hs, BODY, 0, &["other"]),
        Err(VerifyError::Mismatch)
    );
    let hs = [(
        "X-WC-Webhook-Signature",
        "Za2o+r0e8uSyaU93HUgoUj17JbuDUyTlyQIPHbNxvlI=",
    )];
    assert_eq!(
        check(
            &Scheme::preset("woocommerce").unwrap(),
            &hs,
            BODY,
            0,
            &["woo-secret"]
        ),
        Ok(Verified::Ok)
    );
    // The creation ping is unsigned; anything else unsigned is refused.
    assert_eq!(
        check(
            &Scheme::preset("woocommerce").unwrap(),
            &[],
            b"webhook_id=17",
            0,
            &["woo-secret"]
        ),
        Ok(Verified::WooPing)
    );
    assert_eq!(
        check(
            &Scheme::preset("woocommerce").unwrap(),
            &[],
            b"webhook_id=17&x=1",
            0,
            &["woo-secret"]
        )
        .unwrap_err()
        .reason(),
        "missing_signature"
    );
    assert_eq!(
        check(
            &Scheme::preset("woocommerce").unwrap(),
            &[],
            BODY,
            0,
            &["woo-secret"]
        )
        .unwrap_err()
        .reason(),
        "missing_signature"
    );
}

#[test]
fn slack() {
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J";
    let hs = [
        ("X-Slack-Request-Timestamp", "1531420618"),
        (
            "X-Slack-Signature",
            "v0=bca5eef5dd737ed259b428b18cd24f679baa18c3fc5f1cb2a6ac9f03e717969a",
        ),
    ];
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    assert_eq!(
        check(
            &Scheme::preset("slack").unwrap(),
            &hs,
            body,
            1_531_420_700,
            &[secret]
        ),
        Ok(Verified::Ok)
    );
    assert_eq!(
        check(
            &Scheme::preset("slack").unwrap(),
            &hs,
            body,
            1_531_421_000,
            &[secret]
        )
        .unwrap_err()
        .reason(),
        "stale_timestamp"
    );
    assert_eq!(
        check(
            &Scheme::preset("slack").unwrap(),
            &hs[1..],
            body,
            1_531_420_700,
            &[secret]
        )
        .unwrap_err()
        .reason(),
        "missing_signature"
    );
}

#[test]
fn standard_webhooks_published_example() {
    let hs = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        (
            "webhook-signature",
            "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    let body = br#"{"test": 2432232314}"#;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let s = Scheme::preset("standard-webhooks").unwrap();
    assert_eq!(check(&s, &hs, body, 1_614_265_330, &[secret]), Ok(Verified::Ok));
    assert_eq!(
        check(&s, &hs, body, 1_614_265_330 + 301, &[secret])
            .unwrap_err()
            .reason(),
        "stale_timestamp"
    );
    assert_eq!(
        check(&s, &hs, b"{\"test\": 1}", 1_614_265_330, &[secret]),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn svix_branded_headers_are_the_same_scheme() {
    let hs = [
        ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("svix-timestamp", "1614265330"),
        (
            "svix-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    let body = br#"{"test": 2432232314}"#;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let s = Scheme::preset("standard-webhooks").unwrap();
    assert_eq!(check(&s, &hs, body, 1_614_265_330, &[secret]), Ok(Verified::Ok));
    assert_eq!(
        check(&s, &hs[1..], body, 1_614_265_330, &[secret]),
        Err(VerifyError::MissingHeader("webhook-id or svix-id".into()))
    );
    assert_eq!(
        check(&s, &hs, body, 1_614_265_330 + 301, &[secret])
            .unwrap_err()
            .to_string(),
        "timestamp 1614265330 is outside the tolerance of 300s"
    );
    assert!(
        s.trusted_headers()
            .contains(&vec!["webhook-id".to_string(), "svix-id".to_string()])
    );
}

#[test]
fn what_we_sign_we_verify() {
    let key = key_bytes(
        &Scheme::preset("standard-webhooks").unwrap(),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    let body = br#"{"test": 2432232314}"#;
    let hs = sign(
        &Scheme::preset("standard-webhooks").unwrap(),
        &Target::default(),
        &key,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        body,
    );
    // The published example's signature, produced by our signer.
    assert_eq!(hs[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    let pairs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        verify(
            &Scheme::preset("standard-webhooks").unwrap(),
            &Target::default(),
            &h(&pairs),
            body,
            1_614_265_330,
            T,
            &[key]
        ),
        Ok(Verified::Ok)
    );
}

#[test]
fn every_preset_verifies_what_it_signs() {
    for row in HMAC_PRESETS {
        let name = row.name;
        let scheme = Scheme::preset(name).unwrap();
        let key = key_bytes(&scheme, "whsec_c2lnbmVkLWJ5LXVz");
        let hs = sign(&scheme, &Target::default(), &key, "msg_1", 1_700_000_000, BODY);
        let pairs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let check = |body: &[u8], key: &[u8]| {
            verify(
                &scheme,
                &Target::default(),
                &h(&pairs),
                body,
                1_700_000_005,
                T,
                &[key.to_vec()],
            )
        };
        assert_eq!(check(BODY, &key), Ok(Verified::Ok), "{name}");
        // A token (GitLab's) proves who sent, not what: it does not cover the body.
        if row.layout != Layout::Secret {
            assert_eq!(check(b"{}", &key), Err(VerifyError::Mismatch), "{name}");
        }
        assert_eq!(check(BODY, b"other"), Err(VerifyError::Mismatch), "{name}");
    }
}

#[test]
fn generic_signing_round_trips() {
    let g = Scheme::Hmac(Generic {
        header: "X-Sig".into(),
        algorithm: Algorithm::Sha512,
        encoding: Encoding::Base64,
        prefix: "v1=".into(),
        timestamp_header: Some("X-Ts".into()),
        signed: "{timestamp}.{body}".into(),
    });
    let hs = sign(&g, &Target::default(), b"k", "unused", 1_700_000_000, BODY);
    let value = |name: &str| hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(value("X-Ts"), Some("1700000000"));
    assert!(value("X-Sig").is_some_and(|v| v.starts_with("v1=")), "{hs:?}");
    let pairs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        verify(
            &g,
            &Target::default(),
            &h(&pairs),
            BODY,
            1_700_000_010,
            T,
            &[b"k".to_vec()]
        ),
        Ok(Verified::Ok)
    );
    assert_eq!(
        verify(
            &g,
            &Target::default(),
            &h(&pairs),
            b"other",
            1_700_000_010,
            T,
            &[b"k".to_vec()]
        ),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn generic_hmac() {
    let g = |algo, enc, prefix: &str, ts: Option<&str>, signed: &str| {
        Scheme::Hmac(Generic {
            header: "X-Signature".into(),
            algorithm: algo,
            encoding: enc,
            prefix: prefix.into(),
            timestamp_header: ts.map(str::to_string),
            signed: signed.into(),
        })
    };
    let sha1 = g(Algorithm::Sha1, Encoding::Hex, "sha1=", None, "{body}");
    let hs = [("X-Signature", "sha1=53adebc432df2d4ae1f21aba94bb83e2c14b82ec")];
    assert_eq!(check(&sha1, &hs, BODY, 0, &["k"]), Ok(Verified::Ok));
    let sha512 = g(Algorithm::Sha512, Encoding::Base64, "", None, "{body}");
    let hs = [(
        "X-Signature",
        "njyBBGj+y/xVdhFpHgM39XTMsJJlLyOO0qKbUuzVZGzEJ6B06q3YYtl3Wkq3J8pW0jmBs4lp2NDxGiBo1GXhJA==",
    )];
    assert_eq!(check(&sha512, &hs, BODY, 0, &["k"]), Ok(Verified::Ok));
    // A timestamped variant shaped like Stripe's signed content.
    let ts = g(
        Algorithm::Sha256,
        Encoding::Hex,
        "",
        Some("X-Timestamp"),
        "{timestamp}.{body}",
    );
    let hs = [
        ("X-Timestamp", "1700000000"),
        (
            "X-Signature",
            "e5ae2d1aaf7191f9c3a98656906ac6e86a39addf55af2c579dc86f4fed2e2ea7",
        ),
    ];
    assert_eq!(
        check(&ts, &hs, BODY, 1_700_000_000, &["whsec_test_stripe"]),
        Ok(Verified::Ok)
    );
    assert_eq!(
        check(&ts, &hs, BODY, 1_800_000_000, &["whsec_test_stripe"])
            .unwrap_err()
            .reason(),
        "stale_timestamp"
    );
}

// Mailgun's and Postmark's expected values were computed with Python (hmac, base64).

#[test]
fn mailgun_signs_timestamp_and_token_in_the_body() {
    let s = Scheme::Mailgun;
    let key = "mg-signing-key-0123";
    let sig = "85dcc0c16b958b4280c6757d83358dfbee5a3fa35e9b2d8719d70aa0e323131b";
    let json = format!(
        r#"{{"signature":{{"timestamp":"1700000000","token":"5f3c9a7e2b1d4c6a8e0f","signature":"{sig}"}},"event-data":{{"event":"failed","severity":"permanent","recipient":"bob@example.com"}}}}"#
    );
    assert_eq!(
        check(&s, &[], json.as_bytes(), 1_700_000_010, &[key]),
        Ok(Verified::Ok)
    );
    // The legacy form body carries the same fields.
    let form = format!("timestamp=1700000000&token=5f3c9a7e2b1d4c6a8e0f&signature={sig}&event=bounced");
    assert_eq!(
        check(&s, &[], form.as_bytes(), 1_700_000_010, &[key]),
        Ok(Verified::Ok)
    );
    assert_eq!(
        check(&s, &[], json.as_bytes(), 1_700_000_010, &["other-key"]),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        check(&s, &[], json.as_bytes(), 1_700_009_999, &[key]),
        Err(VerifyError::Stale(..))
    ));
    assert!(matches!(
        check(&s, &[], b"{\"event-data\":{}}", 1_700_000_010, &[key]),
        Err(VerifyError::MissingHeader(_))
    ));
    // What `hookflow send` makes verifies.
    let signed = sign_body(
        &s,
        key.as_bytes(),
        "msg_1",
        1_700_000_000,
        br#"{"event-data":{"event":"failed"}}"#,
    )
    .unwrap();
    assert_eq!(check(&s, &[], &signed, 1_700_000_001, &[key]), Ok(Verified::Ok));
}

#[test]
fn postmark_checks_basic_credentials() {
    let s = Scheme::Postmark;
    let good = [("Authorization", "Basic cG9zdG1hcms6aG9vay1wYXNzLTEyMw==")];
    assert_eq!(
        check(&s, &good, BODY, 0, &["postmark:hook-pass-123"]),
        Ok(Verified::Ok)
    );
    assert_eq!(
        check(&s, &good, BODY, 0, &["postmark:other"]),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        check(&s, &[], BODY, 0, &["postmark:hook-pass-123"]),
        Err(VerifyError::MissingHeader(_))
    ));
    assert!(matches!(
        check(
            &s,
            &[("Authorization", "Bearer x")],
            BODY,
            0,
            &["postmark:hook-pass-123"]
        ),
        Err(VerifyError::Malformed(..))
    ));
    let signed = sign(&s, &Target::default(), b"postmark:hook-pass-123", "m", 0, BODY);
    assert_eq!(signed[0].1, good[0].1);
}

#[test]
fn sendgrid_verifies_ecdsa_over_timestamp_and_body_with_the_public_key() {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let spki = [&P256_SPKI_PREFIX[..], pair.public_key().as_ref()].concat();
    let public = B64.encode(&spki);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
        &public[..64],
        &public[64..]
    );
    let ts = "1700000000";
    let body = br#"[{"email":"bob@example.com","event":"bounce","type":"bounce"}]"#;
    let sig = B64.encode(pair.sign(&rng, &[ts.as_bytes(), body].concat()).unwrap().as_ref());
    let hs = [(SENDGRID_SIGNATURE, sig.as_str()), (SENDGRID_TIMESTAMP, ts)];
    let s = Scheme::SendGrid;
    assert_eq!(check(&s, &hs, body, 1_700_000_030, &[&public]), Ok(Verified::Ok));
    assert_eq!(
        check(&s, &hs, body, 1_700_000_030, &[&pem]),
        Ok(Verified::Ok),
        "PEM too"
    );
    assert_eq!(
        check(&s, &hs, b"[]", 1_700_000_030, &[&public]),
        Err(VerifyError::Mismatch)
    );
    let moved = [
        (SENDGRID_SIGNATURE, sig.as_str()),
        (SENDGRID_TIMESTAMP, "1700000001"),
    ];
    assert_eq!(
        check(&s, &moved, body, 1_700_000_030, &[&public]),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        check(&s, &hs, body, 1_700_000_030, &["not a key"]),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        check(&s, &hs, body, 1_700_009_000, &[&public]),
        Err(VerifyError::Stale(..))
    ));
}

#[test]
fn the_table_writes_each_senders_headers_as_the_sender_documents_them() {
    let key = b"k";
    let signed = |name: &str| {
        sign(
            &Scheme::preset(name).unwrap(),
            &Target::default(),
            key,
            "msg_1",
            1_700_000_000,
            BODY,
        )
    };
    let pairs = |list: &[(&str, String)]| {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<Vec<_>>()
    };
    let hex256 = |parts: &[&[u8]]| hex::encode(mac(Algorithm::Sha256, key, parts));
    let b64256 = |parts: &[&[u8]]| B64.encode(mac(Algorithm::Sha256, key, parts));
    assert_eq!(
        signed("github"),
        pairs(&[
            (
                "X-Hub-Signature",
                format!("sha1={}", hex::encode(mac(Algorithm::Sha1, key, &[BODY])))
            ),
            ("X-Hub-Signature-256", format!("sha256={}", hex256(&[BODY]))),
        ])
    );
    assert_eq!(
        signed("stripe"),
        pairs(&[(
            "Stripe-Signature",
            format!("t=1700000000,v1={}", hex256(&[b"1700000000.", BODY]))
        )])
    );
    assert_eq!(
        signed("shopify"),
        pairs(&[("X-Shopify-Hmac-Sha256", b64256(&[BODY]))])
    );
    assert_eq!(
        signed("woocommerce"),
        pairs(&[("X-WC-Webhook-Signature", b64256(&[BODY]))])
    );
    assert_eq!(
        signed("slack"),
        pairs(&[
            ("X-Slack-Request-Timestamp", "1700000000".into()),
            (
                "X-Slack-Signature",
                format!("v0={}", hex256(&[b"v0:1700000000:", BODY]))
            ),
        ])
    );
    assert_eq!(
        signed("standard-webhooks"),
        pairs(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", "1700000000".into()),
            (
                "webhook-signature",
                format!("v1,{}", b64256(&[b"msg_1.1700000000.", BODY]))
            ),
        ])
    );
    assert_eq!(signed("gitlab"), pairs(&[("X-Gitlab-Token", "k".into())]));
    assert_eq!(
        signed("paddle"),
        pairs(&[(
            "Paddle-Signature",
            format!("ts=1700000000;h1={}", hex256(&[b"1700000000:", BODY]))
        )])
    );
    assert_eq!(
        signed("calendly"),
        pairs(&[(
            "Calendly-Webhook-Signature",
            format!("t=1700000000,v1={}", hex256(&[b"1700000000.", BODY]))
        )])
    );
    assert_eq!(
        signed("typeform"),
        pairs(&[("Typeform-Signature", format!("sha256={}", b64256(&[BODY])))])
    );
    assert_eq!(
        signed("intercom"),
        pairs(&[(
            "X-Hub-Signature",
            format!("sha1={}", hex::encode(mac(Algorithm::Sha1, key, &[BODY])))
        )])
    );
    assert_eq!(signed("linear"), pairs(&[("Linear-Signature", hex256(&[BODY]))]));
    assert_eq!(
        signed("zoom"),
        pairs(&[
            ("x-zm-request-timestamp", "1700000000".into()),
            (
                "x-zm-signature",
                format!("v0={}", hex256(&[b"v0:1700000000:", BODY]))
            ),
        ])
    );
    // Every row is reachable by its name, and every name is listed for messages.
    for row in HMAC_PRESETS {
        assert_eq!(Scheme::preset(row.name).map(|s| s.name()), Some(row.name));
        assert!(preset_names().contains(&row.name));
    }
}

/// Square's own example (developer.squareup.com, "Validate notifications", and the test of
/// its SDKs' webhooks helper): key `asdf1234`, notification URL `https://example.com/webhook`,
/// body `{"hello":"world"}`.
#[test]
fn square_published_example() {
    let square = Scheme::preset("square").unwrap();
    let body = br#"{"hello":"world"}"#;
    let hs = [(
        "x-square-hmacsha256-signature",
        "2kRE5qRU2tR+tBGlDwMEw2avJ7QM4ikPYD/PJ3bd9Og=",
    )];
    let at = |url: &str, body: &[u8], secret: &str| {
        let target = Target { method: "POST", url };
        verify(
            &square,
            &target,
            &h(&hs),
            body,
            0,
            T,
            &[key_bytes(&square, secret)],
        )
    };
    assert_eq!(
        at("https://example.com/webhook", body, "asdf1234"),
        Ok(Verified::Ok)
    );
    for (url, body, secret) in [
        ("https://example.com/webhook/", &body[..], "asdf1234"),
        (
            "https://example.com/webhook",
            br#"{"hello":"world"} "#,
            "asdf1234",
        ),
        ("https://example.com/webhook", &body[..], "asdf1235"),
    ] {
        assert_eq!(at(url, body, secret).unwrap_err().reason(), "bad_signature");
    }
    // And what we sign for that URL is Square's signature.
    let target = Target {
        method: "POST",
        url: "https://example.com/webhook",
    };
    assert_eq!(
        sign(&square, &target, b"asdf1234", "id", 0, body),
        vec![(hs[0].0.to_string(), hs[0].1.to_string())]
    );
}

/// `hookflow send` looks like the sender: the User-Agent each sender's documentation or
/// published request samples show, and its delivery id. Paddle, Calendly and Intercom publish
/// neither — their delivery id is in the body (`notification_id`, the payload's `uri`, `id`)
/// — so `send` adds nothing for them rather than invent a value.
#[test]
fn send_adds_each_senders_user_agent_and_delivery_id() {
    let sent = |name: &str| -> BTreeMap<String, String> {
        sender_headers(&Scheme::preset(name).unwrap(), "delivery-1", 1_700_000_000)
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    };
    let undocumented = ["paddle", "calendly", "intercom"];
    for row in HMAC_PRESETS {
        let ua = sent(row.name).get("user-agent").cloned();
        assert_eq!(
            ua.is_none(),
            undocumented.contains(&row.name),
            "{}: {ua:?}",
            row.name
        );
    }
    for (name, ua) in [
        ("typeform", "Typeform Webhooks"),
        ("zoom", "Zoom Marketplace/1.0a"),
        ("linear", "Linear-Webhook"),
        ("github", "GitHub-Hookshot/"),
    ] {
        assert!(sent(name)["user-agent"].starts_with(ua), "{name}");
    }
    // Delivery ids are fresh per send and shaped as the sender's.
    let uuid = |s: &str| s.len() == 36 && s.matches('-').count() == 4;
    assert!(uuid(&sent("zoom")["x-zm-request-id"]));
    assert!(uuid(&sent("linear")["linear-delivery"]));
    assert!(uuid(&sent("github")["x-github-delivery"]));
    let other = sender_headers(&Scheme::preset("zoom").unwrap(), "delivery-2", 1_700_000_000);
    assert!(
        !other
            .iter()
            .any(|(k, v)| k == "x-zm-request-id" && *v == sent("zoom")["x-zm-request-id"])
    );
}
