//! The HMAC senders, as a table: one row says where a sender puts its signature, timestamp and
//! message id, what it signs, with which digest and how it encodes the result, which other
//! headers identify its deliveries, and what `hookflow send` sends to look like it. Checking
//! ([`super::verify()`]) and signing ([`super::sign()`]) read the row; nothing is written per
//! sender. A new HMAC-style sender is one row here and its test vectors (verify/tests.rs).
//!
//! Senders that do not fit an HMAC over headers and body — SendGrid's ECDSA, Mailgun's fields
//! in the body, Postmark's basic auth — are schemes of their own in [`super::Scheme`].

use super::{Algorithm, Encoding};

/// One header under its names: the first is the one signing writes, any is read.
pub type Names<'a> = &'a [&'a str];

/// How an HMAC sender signs. `'a` is `'static` for the table's rows; the `hmac` preset's
/// settings, written in a flow file, are viewed as a row too ([`super::Generic::with_row`]).
#[derive(Debug, Clone, Copy)]
pub struct Preset<'a> {
    /// The name a flow file gives (`preset: github`).
    pub name: &'a str,
    /// Other names it is known by (`svix`).
    pub aliases: Names<'a>,
    /// The header carrying the signature.
    pub signature: Names<'a>,
    /// How that header's value is laid out.
    pub layout: Layout<'a>,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Where the signed timestamp is, if one is signed (checked against the tolerance).
    pub timestamp: Stamp<'a>,
    /// The header carrying the message id that is signed (`{id}`), if one is.
    pub id: Option<Names<'a>>,
    /// The signed content: `{body}`, with `{timestamp}` and `{id}` where the sender puts them,
    /// and `{method}` and `{url}` (the request's method and its URL as the sender addressed
    /// it: the server's `--public-url` and the path and query, see [`super::Target`]).
    pub signed: &'a str,
    /// The timestamp counts milliseconds, not seconds (HubSpot's).
    pub millis: bool,
    /// The secret may be given as `whsec_<base64>` (its bytes are the key).
    pub whsec: bool,
    /// Other headers the sender identifies a delivery by (event type, delivery id): like the
    /// signature's, refused when a request repeats them, so the value checked is the one seen.
    pub delivery: Names<'a>,
    /// What `hookflow send` adds to look like the sender (`-H` replaces any), where the sender
    /// documents it:
    /// `{uuid}`, `{digits}`, `{hex7}` and `{now}` are a fresh delivery id as a UUID, a number,
    /// seven hex digits, and the time (RFC 3339).
    pub sends: &'a [(&'a str, &'a str)],
    /// A second signature the sender adds for older receivers (GitHub's SHA-1 header):
    /// header, digest and prefix. Written when signing; never required.
    pub legacy: Option<(&'a str, Algorithm, &'a str)>,
    /// An unsigned request the sender makes that is answered 200 and starts nothing
    /// (WooCommerce's ping when a webhook is created).
    pub ping: Option<fn(&[u8]) -> bool>,
    /// A signed request that asks the receiver to prove it holds the secret (Zoom's URL
    /// validation): given the body and the secret that verified it, the answer to send (200),
    /// or `None` for an ordinary delivery. Answered, nothing started.
    pub challenge: Option<Challenge>,
}

/// Given a verified body and the secret that verified it, the answer to a sender's challenge,
/// or `None` for an ordinary delivery.
pub type Challenge = fn(body: &[u8], key: &[u8]) -> Option<serde_json::Value>;

/// How a signature header's value is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout<'a> {
    /// One signature after a fixed prefix (`sha256=`, `v0=`, or none).
    Plain { prefix: &'a str },
    /// `key=value` fields (Stripe's `t=…,v1=…,v1=…`): the timestamp's key and the signatures'
    /// key; several signatures may be given (rotation), any one may match.
    Fields {
        separator: char,
        timestamp: &'a str,
        signature: &'a str,
    },
    /// Space-separated `version,signature` entries (Standard Webhooks' `v1,…`); entries of
    /// other versions are ignored.
    Versioned { version: &'a str },
    /// No signature: the header carries the secret itself (GitLab's token), compared in
    /// constant time. Proves the sender knows the secret, not that the body is unchanged —
    /// use it over TLS only.
    Secret,
}

/// Where a signed timestamp is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp<'a> {
    /// Nothing signed is timed.
    None,
    /// In a header of its own.
    Header(Names<'a>),
    /// In the signature header's fields ([`Layout::Fields`]).
    InSignature,
}

/// What a row leaves out: an HMAC-SHA256 of the body, hex, in a header of its own, untimed.
pub(super) const ROW: Preset<'static> = Preset {
    name: "",
    aliases: &[],
    signature: &[],
    layout: Layout::Plain { prefix: "" },
    algorithm: Algorithm::Sha256,
    encoding: Encoding::Hex,
    timestamp: Stamp::None,
    id: None,
    signed: "{body}",
    millis: false,
    whsec: false,
    delivery: &[],
    sends: &[],
    legacy: None,
    ping: None,
    challenge: None,
};

/// The table.
pub static HMAC_PRESETS: &[Preset<'static>] = &[
    Preset {
        name: "github",
        signature: &["X-Hub-Signature-256"],
        layout: Layout::Plain { prefix: "sha256=" },
        delivery: &["X-GitHub-Event", "X-GitHub-Delivery", "X-GitHub-Hook-ID"],
        sends: &[
            ("User-Agent", "GitHub-Hookshot/{hex7}"),
            ("X-GitHub-Delivery", "{uuid}"),
            ("X-GitHub-Hook-ID", "1"),
        ],
        legacy: Some(("X-Hub-Signature", Algorithm::Sha1, "sha1=")),
        ..ROW
    },
    Preset {
        name: "stripe",
        signature: &["Stripe-Signature"],
        layout: Layout::Fields {
            separator: ',',
            timestamp: "t",
            signature: "v1",
        },
        timestamp: Stamp::InSignature,
        signed: "{timestamp}.{body}",
        sends: &[("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")],
        ..ROW
    },
    Preset {
        name: "shopify",
        signature: &["X-Shopify-Hmac-Sha256"],
        encoding: Encoding::Base64,
        delivery: &[
            "X-Shopify-Topic",
            "X-Shopify-Webhook-Id",
            "X-Shopify-Event-Id",
            "X-Shopify-Shop-Domain",
            "X-Shopify-Triggered-At",
        ],
        sends: &[
            ("User-Agent", "Shopify-Captain-Hook"),
            ("X-Shopify-Webhook-Id", "{uuid}"),
            ("X-Shopify-Event-Id", "{uuid}"),
            ("X-Shopify-Triggered-At", "{now}"),
            ("X-Shopify-API-Version", "2025-07"),
        ],
        ..ROW
    },
    Preset {
        name: "woocommerce",
        signature: &["X-WC-Webhook-Signature"],
        encoding: Encoding::Base64,
        delivery: &[
            "X-WC-Webhook-Topic",
            "X-WC-Webhook-Delivery-ID",
            "X-WC-Webhook-ID",
            "X-WC-Webhook-Resource",
            "X-WC-Webhook-Event",
            "X-WC-Webhook-Source",
        ],
        sends: &[
            ("User-Agent", "WooCommerce/9.0.0 Hookshot (WordPress/6.6.0)"),
            ("X-WC-Webhook-Delivery-ID", "{digits}"),
            ("X-WC-Webhook-ID", "1"),
        ],
        ping: Some(is_woo_ping),
        ..ROW
    },
    Preset {
        name: "slack",
        signature: &["X-Slack-Signature"],
        layout: Layout::Plain { prefix: "v0=" },
        timestamp: Stamp::Header(&["X-Slack-Request-Timestamp"]),
        signed: "v0:{timestamp}:{body}",
        sends: &[("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")],
        ..ROW
    },
    Preset {
        name: "standard-webhooks",
        aliases: &["svix"],
        signature: &["webhook-signature", "svix-signature"],
        layout: Layout::Versioned { version: "v1" },
        encoding: Encoding::Base64,
        timestamp: Stamp::Header(&["webhook-timestamp", "svix-timestamp"]),
        id: Some(&["webhook-id", "svix-id"]),
        signed: "{id}.{timestamp}.{body}",
        whsec: true,
        sends: &[(
            "User-Agent",
            "Svix-Webhooks/1.0 (sender-unknown; +https://www.svix.com/http-sender/)",
        )],
        ..ROW
    },
    Preset {
        name: "gitlab",
        signature: &["X-Gitlab-Token"],
        layout: Layout::Secret,
        delivery: &["X-Gitlab-Event", "X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID"],
        sends: &[
            ("User-Agent", "GitLab/17.0.0"),
            ("X-Gitlab-Event-UUID", "{uuid}"),
            ("X-Gitlab-Webhook-UUID", "{uuid}"),
        ],
        ..ROW
    },
    Preset {
        name: "paddle",
        signature: &["Paddle-Signature"],
        layout: Layout::Fields {
            separator: ';',
            timestamp: "ts",
            signature: "h1",
        },
        timestamp: Stamp::InSignature,
        signed: "{timestamp}:{body}",
        ..ROW
    },
    Preset {
        name: "calendly",
        signature: &["Calendly-Webhook-Signature"],
        layout: Layout::Fields {
            separator: ',',
            timestamp: "t",
            signature: "v1",
        },
        timestamp: Stamp::InSignature,
        signed: "{timestamp}.{body}",
        ..ROW
    },
    Preset {
        name: "typeform",
        signature: &["Typeform-Signature"],
        layout: Layout::Plain { prefix: "sha256=" },
        encoding: Encoding::Base64,
        sends: &[("User-Agent", "Typeform Webhooks")],
        ..ROW
    },
    Preset {
        name: "intercom",
        signature: &["X-Hub-Signature"],
        layout: Layout::Plain { prefix: "sha1=" },
        algorithm: Algorithm::Sha1,
        ..ROW
    },
    Preset {
        name: "zoom",
        signature: &["x-zm-signature"],
        layout: Layout::Plain { prefix: "v0=" },
        timestamp: Stamp::Header(&["x-zm-request-timestamp"]),
        signed: "v0:{timestamp}:{body}",
        challenge: Some(zoom_url_validation),
        delivery: &["x-zm-request-id", "x-zm-trackingid"],
        sends: &[
            ("User-Agent", "Zoom Marketplace/1.0a"),
            ("x-zm-request-id", "{uuid}"),
        ],
        ..ROW
    },
    Preset {
        name: "square",
        signature: &["x-square-hmacsha256-signature"],
        encoding: Encoding::Base64,
        signed: "{url}{body}",
        delivery: &["square-version", "square-environment"],
        sends: &[
            ("User-Agent", "Square Connect v2"),
            ("square-environment", "Sandbox"),
        ],
        ..ROW
    },
    Preset {
        name: "hubspot",
        signature: &["X-HubSpot-Signature-v3"],
        encoding: Encoding::Base64,
        timestamp: Stamp::Header(&["X-HubSpot-Request-Timestamp"]),
        millis: true,
        signed: "{method}{url}{body}{timestamp}",
        sends: &[("User-Agent", "HubSpot Connect 2.0 (http://dev.hubspot.com/)")],
        ..ROW
    },
    Preset {
        name: "linear",
        signature: &["Linear-Signature"],
        delivery: &["Linear-Delivery", "Linear-Event"],
        sends: &[("User-Agent", "Linear-Webhook"), ("Linear-Delivery", "{uuid}")],
        ..ROW
    },
];

/// The row of a preset name or alias.
pub fn row(name: &str) -> Option<&'static Preset<'static>> {
    HMAC_PRESETS
        .iter()
        .find(|p| p.name == name || p.aliases.contains(&name))
}

/// Zoom's `endpoint.url_validation`: `{"plainToken", "encryptedToken"}`, the token's
/// HMAC-SHA256 under the secret in hex — Zoom enables the endpoint only once this comes back.
fn zoom_url_validation(body: &[u8], key: &[u8]) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("event")?.as_str()? != "endpoint.url_validation" {
        return None;
    }
    let plain = v.get("payload")?.get("plainToken")?.as_str()?;
    let encrypted = hex::encode(super::mac(Algorithm::Sha256, key, &[plain.as_bytes()]));
    Some(serde_json::json!({"plainToken": plain, "encryptedToken": encrypted}))
}

/// WooCommerce's creation ping: an unsigned form body `webhook_id=<n>` and nothing else.
fn is_woo_ping(body: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(body) else {
        return false;
    };
    s.strip_prefix("webhook_id=")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

impl Preset<'_> {
    /// Every header the row reads or its sender identifies a delivery by, each under its
    /// names, lower-case: the signature's (and the legacy one), the timestamp's, the id's, then
    /// the delivery headers.
    pub fn trusted_headers(&self) -> Vec<Vec<String>> {
        let names = |n: Names<'_>| n.iter().map(|h| h.to_ascii_lowercase()).collect::<Vec<_>>();
        let mut out = vec![names(self.signature)];
        out.extend(self.legacy.map(|(h, ..)| vec![h.to_ascii_lowercase()]));
        if let Stamp::Header(t) = self.timestamp {
            out.push(names(t));
        }
        out.extend(self.id.map(names));
        out.extend(self.delivery.iter().map(|h| vec![h.to_ascii_lowercase()]));
        out
    }

    /// The headers carrying a signature, lower-case: never recorded in run history.
    pub fn signature_headers(&self) -> Vec<String> {
        self.signature
            .iter()
            .chain(self.legacy.iter().map(|(h, ..)| h))
            .map(|h| h.to_ascii_lowercase())
            .collect()
    }
}
