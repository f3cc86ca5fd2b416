//! Signing as the senders do: for outgoing webhooks (`sign:`) and for `hookflow send`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Algorithm, Encoding, Scheme, mac, split_signed};

/// Headers that sign a request with `scheme` exactly as its sender does: what [`verify`] — or
/// the scheme's official libraries — accepts. Outgoing `sign:` uses Standard Webhooks or the
/// generic scheme; `hookflow send` signs test deliveries with any preset. `id` (Standard
/// Webhooks) must stay the same across retries of one message.
pub fn sign(scheme: &Scheme, key: &[u8], id: &str, now_secs: i64, body: &[u8]) -> Vec<(String, String)> {
    let ts = now_secs.to_string();
    let sha256 = |parts: &[&[u8]]| mac(Algorithm::Sha256, key, parts);
    let h = |k: &str, v: String| (k.to_string(), v);
    match scheme {
        Scheme::Github => vec![h(
            "X-Hub-Signature-256",
            format!("sha256={}", hex::encode(sha256(&[body]))),
        )],
        Scheme::Stripe => {
            let sig = hex::encode(sha256(&[ts.as_bytes(), b".", body]));
            vec![h("Stripe-Signature", format!("t={ts},v1={sig}"))]
        }
        Scheme::Shopify => vec![h("X-Shopify-Hmac-Sha256", B64.encode(sha256(&[body])))],
        Scheme::WooCommerce => vec![h("X-WC-Webhook-Signature", B64.encode(sha256(&[body])))],
        Scheme::Slack => {
            let sig = hex::encode(sha256(&[b"v0:", ts.as_bytes(), b":", body]));
            vec![
                h("X-Slack-Request-Timestamp", ts),
                h("X-Slack-Signature", format!("v0={sig}")),
            ]
        }
        Scheme::StandardWebhooks => {
            let sig = B64.encode(sha256(&[id.as_bytes(), b".", ts.as_bytes(), b".", body]));
            vec![
                h("webhook-id", id.to_string()),
                h("webhook-timestamp", ts),
                h("webhook-signature", format!("v1,{sig}")),
            ]
        }
        Scheme::Hmac(g) => {
            let stamp = if g.timestamp_header.is_some() {
                ts.as_str()
            } else {
                ""
            };
            let (before, after) = split_signed(&g.signed, stamp);
            let raw = mac(g.algorithm, key, &[before.as_bytes(), body, after.as_bytes()]);
            let enc = match g.encoding {
                Encoding::Hex => hex::encode(raw),
                Encoding::Base64 => B64.encode(raw),
            };
            let mut out = vec![(g.header.clone(), format!("{}{enc}", g.prefix))];
            if let Some(th) = &g.timestamp_header {
                out.push((th.clone(), ts));
            }
            out
        }
    }
}
