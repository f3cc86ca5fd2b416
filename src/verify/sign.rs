//! Signing as the senders do: for outgoing webhooks (`sign:`) and for `hookflow send`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Algorithm, Scheme, Target, mac};

/// Headers that sign a request with `scheme` exactly as its sender does: what [`verify`](super::verify()) — or
/// the scheme's official libraries — accepts. Outgoing `sign:` uses Standard Webhooks or the
/// generic scheme; `hookflow send` signs test deliveries with any preset. `id` (Standard
/// Webhooks) must stay the same across retries of one message; `target` is the request as
/// sent (its method and URL), which some senders sign.
pub fn sign(
    scheme: &Scheme,
    target: &Target<'_>,
    key: &[u8],
    id: &str,
    now_secs: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    if let Some(headers) = scheme.with_row(|row| super::signed::sign(row, target, key, id, now_secs, body)) {
        return headers;
    }
    match scheme {
        Scheme::Postmark => vec![("Authorization".to_string(), format!("Basic {}", B64.encode(key)))],
        Scheme::Twilio => super::twilio::sign(target, key, body),
        // SendGrid and Discord sign with private keys, which no one else has (`hookflow send`
        // takes one with --signing-key); Mailgun's signature is in the body (see `sign_body`).
        _ => Vec::new(),
    }
}

/// What a preset's sender sends besides its signature, for `hookflow send`: a delivery id
/// (what the docs suggest deduplicating on, fresh per send, as each real delivery has its
/// own) and the sender's User-Agent, so a flow tried with `send` sees what it will see from
/// the sender. Headers given with `-H` replace these. `id` is a fresh random identifier.
pub fn sender_headers(scheme: &Scheme, id: &str, now_secs: i64) -> Vec<(String, String)> {
    let fill = |v: &str| {
        v.replace("{uuid}", &uuid_of(id))
            .replace("{digits}", &id_digits(id))
            .replace("{hex7}", &id_hex(id)[..7])
            .replace("{now}", &rfc3339(now_secs))
    };
    let sends = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), fill(v)))
            .collect::<Vec<_>>()
    };
    if let Some(headers) = scheme.with_row(|row| sends(row.sends)) {
        return headers;
    }
    match scheme {
        Scheme::SendGrid => sends(&[("User-Agent", "SendGrid Event API")]),
        Scheme::Discord => sends(&[("User-Agent", "Discord-Interactions/1.0 (+https://discord.com)")]),
        Scheme::Twilio => sends(&[
            ("User-Agent", "TwilioProxy/1.1"),
            ("I-Twilio-Idempotency-Token", "{uuid}"),
        ]),
        Scheme::Mailgun => sends(&[("User-Agent", "mailgun/treq-16.12.0")]),
        _ => sends(&[("User-Agent", "Postmark")]),
    }
}

/// The body as a sender whose signature travels in the body sends it: for Mailgun, the JSON
/// body's `signature` object filled with a fresh timestamp, token (`id`) and signature.
/// `None` where the scheme signs in headers (or the body is not a JSON object).
pub fn sign_body(scheme: &Scheme, key: &[u8], id: &str, now_secs: i64, body: &[u8]) -> Option<Vec<u8>> {
    if *scheme != Scheme::Mailgun {
        return None;
    }
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let ts = now_secs.to_string();
    let token = hex::encode(mac(Algorithm::Sha256, id.as_bytes(), &[b"token"]))[..50].to_string();
    let sig = hex::encode(mac(Algorithm::Sha256, key, &[ts.as_bytes(), token.as_bytes()]));
    v.as_object_mut()?.insert(
        "signature".into(),
        serde_json::json!({"timestamp": ts, "token": token, "signature": sig}),
    );
    serde_json::to_vec(&v).ok()
}

/// 32 hex digits from `id`'s bytes (a SHA-256 of it: any id gives a well-formed value).
fn id_hex(id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(id.as_bytes()))[..32].to_string()
}

/// `id` shaped as a version-4 UUID, as GitHub's and Shopify's delivery ids are.
fn uuid_of(id: &str) -> String {
    let x = id_hex(id);
    format!(
        "{}-{}-4{}-a{}-{}",
        &x[..8],
        &x[8..12],
        &x[13..16],
        &x[17..20],
        &x[20..32]
    )
}

/// `id` as a decimal number, as WooCommerce's delivery ids are.
fn id_digits(id: &str) -> String {
    (u64::from_str_radix(&id_hex(id)[..12], 16).unwrap_or(0) % 1_000_000_000).to_string()
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// SendGrid's headers for `body`, signed with a P-256 private key (PKCS#8, PEM or base64 DER)
/// as SendGrid signs: ECDSA-SHA256 over `{timestamp}{body}`, DER, base64.
pub fn sign_ecdsa(private_key: &str, now_secs: i64, body: &[u8]) -> Result<Vec<(String, String)>, String> {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    let der = B64
        .decode(super::pem_body(private_key))
        .map_err(|_| "not a PEM or base64 private key".to_string())?;
    let rng = ring::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng)
        .map_err(|_| "not a P-256 private key in PKCS#8 form".to_string())?;
    let ts = now_secs.to_string();
    let sig = pair
        .sign(&rng, &[ts.as_bytes(), body].concat())
        .map_err(|_| "signing failed".to_string())?;
    Ok(vec![
        (super::SENDGRID_TIMESTAMP.to_string(), ts),
        (super::SENDGRID_SIGNATURE.to_string(), B64.encode(sig.as_ref())),
    ])
}
