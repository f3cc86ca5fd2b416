//! Verifying who sent a webhook: HMAC signature schemes of the common senders, checked on the
//! raw body bytes with constant-time comparison, with timestamp tolerance where the scheme
//! signs a timestamp. Pure: headers, body, the clock and the secrets come in as arguments.
//!
//! Each preset follows its sender's published scheme exactly. The HMAC senders are rows of one
//! table ([`presets`]), checked and signed by one piece of code (`signed.rs`); a new HMAC-style
//! sender is a row and its test vectors. SendGrid (ECDSA), Discord (Ed25519, `discord.rs`),
//! Mailgun (fields in the body) and Postmark (basic auth) are schemes of their own here.
//!
//! The table's rows say what each HMAC sender sends (and docs/flows.md lists them for users);
//! the schemes here:
//!
//! | preset | header(s) | signed content | encoding |
//! |---|---|---|---|
//! | `sendgrid` | `X-Twilio-Email-Event-Webhook-Signature`, `…-Timestamp` | `{ts}{body}`, ECDSA P-256 / SHA-256 | base64 DER; the key is SendGrid's public key, 300 s |
//! | `discord` | `X-Signature-Ed25519`, `X-Signature-Timestamp` | `{ts}{body}`, Ed25519 | hex; the key is the application's public key, 300 s; its PING is answered |
//! | `twilio` | `X-Twilio-Signature` | the URL, then the form's parameters sorted (`{name}{value}`…), HMAC-SHA1; a JSON body by `bodySHA256` in the URL | base64 |
//! | `mailgun` | none: `signature.{timestamp,token,signature}` in the body (JSON or form) | `{timestamp}{token}` | hex, 300 s |
//! | `postmark` | `Authorization: Basic …` | the credentials set on the webhook's URL | `user:password` |
//! | `hmac` | configurable | `{body}` or a template with `{timestamp}` | hex or base64 |

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;

use crate::yaml::OneOrMany;

mod sign;
#[cfg(test)]
mod tests;

mod compile;
pub mod discord;
pub mod presets;
mod signed;
pub mod twilio;
pub use compile::compile;
pub use presets::{HMAC_PRESETS, Layout, Names, Preset, Stamp};
pub use sign::{sender_headers, sign, sign_body, sign_ecdsa};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::flow::schema::verify_table)]
pub struct VerifySpec {
    /// The sender's scheme: a preset's name (or alias), or `hmac` with its settings below.
    #[schemars(schema_with = "preset_schema")]
    pub preset: String,
    /// Environment variable(s) holding the secret; several while rotating. A name not set in
    /// the environment is read from systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`).
    pub secret_env: Option<OneOrMany>,
    /// Absolute path(s) of files holding the secret, read again whenever they change (a
    /// rotation needs no restart); several while rotating. E.g. `/run/secrets/shop_hook`.
    pub secret_file: Option<OneOrMany>,
    /// Not allowed: secrets never live in flow files (use `secret_env`, e.g.
    /// `secret_env: SHOP_SECRET`). Only here to be refused with a clear message.
    pub secret: Option<Value>,
    /// How far a signed timestamp may be from now, e.g. `10m`; default 5m.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>", transform = crate::flow::schema::duration)]
    pub tolerance: Option<Duration>,
    // The `hmac` preset's settings.
    /// `hmac` preset: the header carrying the signature, e.g. `X-Signature`.
    pub header: Option<String>,
    /// `hmac` preset: the digest, e.g. `sha256` (the default).
    pub algorithm: Option<crate::verify::Algorithm>,
    /// `hmac` preset: how the signature is written, e.g. `hex` (the default) or `base64`.
    pub encoding: Option<crate::verify::Encoding>,
    /// `hmac` preset: text before the signature in its header, e.g. `sha256=`.
    pub prefix: Option<String>,
    /// `hmac` preset: the header carrying a signed timestamp, e.g. `X-Timestamp`.
    pub timestamp_header: Option<String>,
    /// `hmac` preset: what is signed, e.g. `"{timestamp}.{body}"`; default `{body}`.
    pub signed: Option<String>,
}

/// `preset:` in the editor schema: the names hookflow knows, so an editor completes them and
/// flags a typo while it is typed.
fn preset_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = preset_names()
        .into_iter()
        .chain(HMAC_PRESETS.iter().flat_map(|p| p.aliases.iter().copied()))
        .collect();
    schemars::json_schema!({
        "type": "string",
        "enum": names,
        "description": "The sender's scheme: a preset's name (or alias), or `hmac` with its settings below."
    })
}

/// Digest of the generic scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Hex,
    Base64,
}

/// The generic scheme's settings (`preset: hmac`).
#[derive(Debug, Clone, PartialEq)]
pub struct Generic {
    pub header: String,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Stripped from the header value before decoding (`sha256=`).
    pub prefix: String,
    pub timestamp_header: Option<String>,
    /// What is signed: `{body}` by default; `{timestamp}` is the timestamp header's value.
    pub signed: String,
}

impl Generic {
    /// These settings viewed as a row of the HMAC table, for `f`.
    pub fn with_row<R>(&self, f: impl FnOnce(&Preset<'_>) -> R) -> R {
        let signature = [self.header.as_str()];
        let timestamp = self.timestamp_header.as_deref().map(|t| [t]);
        f(&Preset {
            name: "hmac",
            signature: &signature,
            layout: Layout::Plain { prefix: &self.prefix },
            algorithm: self.algorithm,
            encoding: self.encoding,
            timestamp: match &timestamp {
                Some(t) => Stamp::Header(t),
                None => Stamp::None,
            },
            signed: &self.signed,
            sends: &[("User-Agent", "hookflow-send")],
            ..presets::ROW
        })
    }
}

#[derive(Debug, Clone)]
pub enum Scheme {
    /// An HMAC sender of the table ([`presets`]).
    Preset(&'static Preset<'static>),
    /// SendGrid's signed Event Webhook: ECDSA over the timestamp and body; the configured
    /// "secret" is SendGrid's verification key (public, base64 DER or PEM).
    SendGrid,
    /// Discord's interactions: Ed25519 over the timestamp and body; the configured "secret" is
    /// the application's public key (hex). Its PING is answered.
    Discord,
    /// Twilio: HMAC-SHA1 over the URL and the sorted form parameters (a JSON body by its hash
    /// in the URL); the secret is the account's auth token.
    Twilio,
    /// Mailgun: HMAC-SHA256 of `timestamp + token`, both in the body beside the signature.
    Mailgun,
    /// Postmark: HTTP basic auth on the webhook URL; the secret is `user:password`.
    Postmark,
    Hmac(Generic),
}

/// The schemes that are not rows of the HMAC table, by name.
const OTHER_SCHEMES: [&str; 6] = ["sendgrid", "discord", "twilio", "mailgun", "postmark", "hmac"];

/// Every preset's name, for messages and suggestions: the table's, then the others.
pub fn preset_names() -> Vec<&'static str> {
    HMAC_PRESETS.iter().map(|p| p.name).chain(OTHER_SCHEMES).collect()
}

impl PartialEq for Scheme {
    fn eq(&self, other: &Scheme) -> bool {
        match (self, other) {
            (Scheme::Hmac(a), Scheme::Hmac(b)) => a == b,
            _ => self.name() == other.name(),
        }
    }
}

impl Scheme {
    /// The preset named (or aliased) `name`; not `hmac`, whose settings come from the flow file.
    pub fn preset(name: &str) -> Option<Scheme> {
        if let Some(row) = presets::row(name) {
            return Some(Scheme::Preset(row));
        }
        Some(match name {
            "sendgrid" => Scheme::SendGrid,
            "discord" => Scheme::Discord,
            "twilio" => Scheme::Twilio,
            "mailgun" => Scheme::Mailgun,
            "postmark" => Scheme::Postmark,
            _ => return None,
        })
    }

    /// The preset's name (`hmac` for the generic scheme).
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Preset(p) => p.name,
            Scheme::SendGrid => "sendgrid",
            Scheme::Discord => "discord",
            Scheme::Twilio => "twilio",
            Scheme::Mailgun => "mailgun",
            Scheme::Postmark => "postmark",
            Scheme::Hmac(_) => "hmac",
        }
    }

    /// The HMAC row the scheme signs by (the table's, or the `hmac` preset's settings viewed
    /// as one); `None` for the schemes of their own.
    pub fn with_row<R>(&self, f: impl FnOnce(&Preset<'_>) -> R) -> Option<R> {
        match self {
            Scheme::Preset(p) => Some(f(p)),
            Scheme::Hmac(g) => Some(g.with_row(f)),
            Scheme::SendGrid | Scheme::Discord | Scheme::Twilio | Scheme::Mailgun | Scheme::Postmark => None,
        }
    }

    /// Headers whose values are credentials-like: never recorded in run history.
    pub fn signature_headers(&self) -> Vec<String> {
        match self {
            Scheme::Preset(p) => p.signature_headers(),
            Scheme::SendGrid => vec![SENDGRID_SIGNATURE.to_ascii_lowercase()],
            Scheme::Discord => vec![discord::SIGNATURE.to_ascii_lowercase()],
            Scheme::Twilio => vec![twilio::SIGNATURE.to_ascii_lowercase()],
            Scheme::Mailgun => Vec::new(),
            Scheme::Postmark => vec!["authorization".into()],
            Scheme::Hmac(g) => vec![g.header.to_ascii_lowercase()],
        }
    }

    /// Every header the scheme reads or its sender uses to identify a delivery (signature,
    /// timestamp, delivery id, event type), lower-case. Each inner list is one header under
    /// its alternative names (Standard Webhooks' `webhook-*` and Svix's `svix-*`). The intake
    /// refuses a request that carries one of these more than once, so the value verified is
    /// the value templates and dedupe keys see.
    pub fn trusted_headers(&self) -> Vec<Vec<String>> {
        let one = |names: &[&str]| names.iter().map(|n| vec![n.to_string()]).collect::<Vec<_>>();
        match self {
            Scheme::Preset(p) => p.trusted_headers(),
            Scheme::SendGrid => one(&[
                &SENDGRID_SIGNATURE.to_ascii_lowercase(),
                &SENDGRID_TIMESTAMP.to_ascii_lowercase(),
            ]),
            Scheme::Discord => one(&[
                &discord::SIGNATURE.to_ascii_lowercase(),
                &discord::TIMESTAMP.to_ascii_lowercase(),
            ]),
            Scheme::Twilio => one(&[
                &twilio::SIGNATURE.to_ascii_lowercase(),
                "i-twilio-idempotency-token",
            ]),
            Scheme::Mailgun => Vec::new(),
            Scheme::Postmark => one(&["authorization"]),
            Scheme::Hmac(g) => std::iter::once(&g.header)
                .chain(&g.timestamp_header)
                .map(|h| vec![h.to_ascii_lowercase()])
                .collect(),
        }
    }

    /// Whether the sender signs the URL it was given ([`Target`]), which the receiver must
    /// then rebuild for each request.
    pub fn signs_url(&self) -> bool {
        *self == Scheme::Twilio || self.with_row(|r| r.signed.contains("{url}")) == Some(true)
    }

    fn timestamped(&self) -> bool {
        match self {
            Scheme::Preset(p) => p.timestamp != Stamp::None,
            Scheme::SendGrid | Scheme::Discord | Scheme::Mailgun => true,
            Scheme::Postmark | Scheme::Twilio => false,
            Scheme::Hmac(g) => g.timestamp_header.is_some(),
        }
    }
}

/// A webhook's signature check: the scheme and where its secrets come from.
#[derive(Debug)]
pub struct Verifier {
    pub scheme: Scheme,
    /// Named secrets: environment variables (fixed for the process's life: a rotation there
    /// takes a restart), else systemd credentials of that name.
    pub secret_env: Vec<String>,
    /// Secret files, read again when they change (a rotation needs no restart).
    pub secret_file: Vec<std::path::PathBuf>,
    pub tolerance: std::time::Duration,
}

impl Verifier {
    /// Every secret as it is now (any one of them may sign: several while rotating).
    pub fn secrets(&self) -> Vec<String> {
        self.secret_env
            .iter()
            .filter_map(|n| crate::secret::named(n))
            .chain(
                self.secret_file
                    .iter()
                    .filter_map(|p| crate::secret::file(p).ok()),
            )
            .collect()
    }

    /// Where the secrets are read from, for messages: `WOO_SECRET or /run/secrets/woo`.
    pub fn sources(&self) -> String {
        self.secret_env
            .iter()
            .cloned()
            .chain(self.secret_file.iter().map(|p| p.display().to_string()))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// Why a request was refused; `reason()` names it for logs and counters. Never carries a
/// secret or an expected signature.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(String),
    #[error("malformed signature header {0}: {1}")]
    Malformed(String, String),
    #[error("timestamp {0} is outside the tolerance of {1:?}")]
    Stale(i64, Duration),
    #[error("signature does not match")]
    Mismatch,
    #[error("no secret is configured: environment variable {0} is not set")]
    NoSecret(String),
}

impl VerifyError {
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::Malformed(..) => "malformed_signature",
            VerifyError::Stale(..) => "stale_timestamp",
            VerifyError::Mismatch => "bad_signature",
            VerifyError::NoSecret(_) => "no_secret",
        }
    }
}

/// What verification concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    Ok,
    /// WooCommerce's unsigned creation ping (`webhook_id=N`): answer 200, start nothing.
    WooPing,
    /// A signed challenge (Zoom's URL validation): answer 200 with this, start nothing.
    Challenge(Value),
}

/// Header lookup, case-insensitive.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for axum::http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        axum::http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

/// The first of a header's alternative names that is present.
fn header_of<'h, 'n>(h: &'h dyn Headers, names: &[&'n str]) -> Result<(&'n str, &'h str), VerifyError> {
    names
        .iter()
        .find_map(|n| h.get(n).map(|v| (*n, v)))
        .ok_or_else(|| VerifyError::MissingHeader(names.join(" or ")))
}

/// SendGrid's headers.
pub const SENDGRID_SIGNATURE: &str = "X-Twilio-Email-Event-Webhook-Signature";
pub const SENDGRID_TIMESTAMP: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// The DER header of a P-256 public key (SubjectPublicKeyInfo) before its 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The base64 of a PEM block (or of bare base64), without its armour lines and whitespace.
pub(crate) fn pem_body(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(str::split_whitespace)
        .collect()
}

/// The uncompressed point of a P-256 public key given as base64 DER or PEM (as SendGrid's
/// settings page shows it).
pub fn p256_point(key: &str) -> Option<Vec<u8>> {
    let der = B64.decode(pem_body(key)).ok()?;
    let point = der.strip_prefix(&P256_SPKI_PREFIX[..])?;
    (point.len() == 65 && point[0] == 4).then(|| point.to_vec())
}

/// Mailgun's signature fields, from a JSON body (`signature: {…}`) or a form body (legacy
/// webhooks): timestamp, token, signature.
fn mailgun_fields(body: &[u8]) -> Option<(String, String, String)> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let s = v.get("signature")?;
        let f = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
        return Some((f("timestamp")?, f("token")?, f("signature")?));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    let f = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Some((f("timestamp")?, f("token")?, f("signature")?))
}

/// Default tolerance of timestamped schemes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

fn header<'a>(h: &'a dyn Headers, name: &str) -> Result<&'a str, VerifyError> {
    h.get(name)
        .ok_or_else(|| VerifyError::MissingHeader(name.to_string()))
}

/// HMAC of the concatenated `parts`.
pub fn mac(algo: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match algo {
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
    }
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn decode(enc: Encoding, s: &str, header: &str) -> Result<Vec<u8>, VerifyError> {
    match enc {
        Encoding::Hex => hex::decode(s.trim()),
        Encoding::Base64 => B64
            .decode(s.trim())
            .map_err(|_| hex::FromHexError::InvalidStringLength),
    }
    .map_err(|_| VerifyError::Malformed(header.to_string(), format!("not {enc:?}").to_lowercase()))
}

/// Checks a timestamp counting `per_second` units a second (1, or 1000 for milliseconds)
/// against the tolerance.
fn check_time(
    ts: &str,
    header: &str,
    now_secs: i64,
    tolerance: Duration,
    per_second: i64,
) -> Result<(), VerifyError> {
    let t: i64 = ts
        .trim()
        .parse::<i64>()
        .map_err(|_| VerifyError::Malformed(header.to_string(), "timestamp is not a number".into()))?
        / per_second;
    if (now_secs - t).unsigned_abs() > tolerance.as_secs() {
        return Err(VerifyError::Stale(t, tolerance));
    }
    Ok(())
}

/// Checks a request against every secret (rotation: any one matching is enough).
/// The request as its sender addressed it, for the senders that sign it (Square and HubSpot
/// the URL, HubSpot the method, Twilio the URL and form): the method, and the URL — the
/// server's `--public-url` followed by the path and query as received, which is what the
/// sender was given (behind a proxy, the proxy must pass the path unchanged).
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub method: &'a str,
    pub url: &'a str,
}

pub fn verify(
    scheme: &Scheme,
    target: &Target<'_>,
    h: &dyn Headers,
    body: &[u8],
    now_secs: i64,
    tolerance: Duration,
    secrets: &[Vec<u8>],
) -> Result<Verified, VerifyError> {
    let any = |candidates: &[Vec<u8>], expected: &dyn Fn(&[u8]) -> Vec<u8>| {
        any_secret(secrets, candidates, expected)
    };
    let ok = match scheme {
        Scheme::Preset(row) => return signed::check(row, target, h, body, now_secs, tolerance, secrets),
        Scheme::Hmac(g) => {
            return g.with_row(|row| signed::check(row, target, h, body, now_secs, tolerance, secrets));
        }
        Scheme::Discord => return discord::check(h, body, now_secs, tolerance, secrets),
        Scheme::Twilio => return twilio::check(target, h, body, secrets),
        Scheme::SendGrid => {
            let ts = header(h, SENDGRID_TIMESTAMP)?;
            let v = header(h, SENDGRID_SIGNATURE)?;
            let sig = decode(Encoding::Base64, v, SENDGRID_SIGNATURE)?;
            check_time(ts, SENDGRID_TIMESTAMP, now_secs, tolerance, 1)?;
            let signed = [ts.as_bytes(), body].concat();
            // The keys are public points (see `key_bytes`); any one may have signed.
            secrets.iter().any(|point| {
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
                    .verify(&signed, &sig)
                    .is_ok()
            })
        }
        Scheme::Mailgun => {
            let name = "signature (in the body)";
            let (ts, token, hexsig) =
                mailgun_fields(body).ok_or_else(|| VerifyError::MissingHeader(name.into()))?;
            let sig = decode(Encoding::Hex, &hexsig, name)?;
            check_time(&ts, "signature.timestamp", now_secs, tolerance, 1)?;
            any(&[sig], &|k| {
                mac(Algorithm::Sha256, k, &[ts.as_bytes(), token.as_bytes()])
            })
        }
        Scheme::Postmark => {
            let name = "Authorization";
            let v = header(h, name)?;
            let b64 = v
                .strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
                .ok_or_else(|| VerifyError::Malformed(name.into(), "expected Basic credentials".into()))?;
            let given = decode(Encoding::Base64, b64, name)?;
            any(&[given], &|k| k.to_vec())
        }
    };
    if ok {
        Ok(Verified::Ok)
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Whether any candidate signature is what any secret gives (rotation: any one is enough).
fn any_secret(secrets: &[Vec<u8>], candidates: &[Vec<u8>], expected: &dyn Fn(&[u8]) -> Vec<u8>) -> bool {
    secrets
        .iter()
        .any(|s| candidates.iter().any(|c| equal(c, &expected(s))))
}

/// Turns configured secret strings into HMAC keys: `whsec_<base64>` secrets of the Standard
/// Webhooks scheme are base64 after the prefix; others are used as UTF-8 bytes.
pub fn key_bytes(scheme: &Scheme, secret: &str) -> Vec<u8> {
    if *scheme == Scheme::SendGrid {
        // A key that is not a P-256 public key verifies nothing (empty is no point).
        return p256_point(secret).unwrap_or_default();
    }
    if *scheme == Scheme::Discord {
        return discord::public_key(secret);
    }
    if scheme.with_row(|r| r.whsec) == Some(true) {
        let b = secret.strip_prefix("whsec_").unwrap_or(secret);
        if let Ok(k) = B64.decode(b) {
            return k;
        }
    }
    secret.as_bytes().to_vec()
}

/// Whether a timestamped scheme applies the tolerance (for docs and validation).
pub fn uses_timestamp(scheme: &Scheme) -> bool {
    scheme.timestamped()
}
