//! An HMAC row ([`super::presets`]) at work: a request checked as the row says its sender
//! signs, and a request signed that way (outgoing `sign:`, `hookflow send`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::presets::{Layout, Preset, Stamp};
use super::{
    Encoding, Headers, Target, Verified, VerifyError, any_secret, check_time, decode, header_of, mac,
};

/// Checks a request signed as `row` says, against every secret.
pub(super) fn check(
    row: &Preset<'_>,
    target: &Target<'_>,
    h: &dyn Headers,
    body: &[u8],
    now_secs: i64,
    tolerance: Duration,
    secrets: &[Vec<u8>],
) -> Result<Verified, VerifyError> {
    let (name, value) = match header_of(h, row.signature) {
        Ok(found) => found,
        Err(_) if row.ping.is_some_and(|is_ping| is_ping(body)) => return Ok(Verified::WooPing),
        Err(missing) => return Err(missing),
    };
    let (candidates, fields_ts) = signatures(row, name, value)?;
    let timestamp = match row.timestamp {
        Stamp::None => None,
        Stamp::Header(names) => Some(header_of(h, names)?),
        Stamp::InSignature => fields_ts.map(|t| (name, t)),
    };
    if let Some((ts_name, ts)) = timestamp {
        let per_second = if row.millis { 1000 } else { 1 };
        check_time(ts, ts_name, now_secs, tolerance, per_second)?;
    }
    let id = match row.id {
        Some(names) => Some(header_of(h, names)?.1),
        None => None,
    };
    let (before, after) = signed_around_body(row.signed, target, timestamp.map(|(_, t)| t), id);
    let expected = |key: &[u8]| match row.layout {
        Layout::Secret => key.to_vec(),
        _ => mac(row.algorithm, key, &[before.as_bytes(), body, after.as_bytes()]),
    };
    let Some(key) = secrets
        .iter()
        .find(|k| any_secret(std::slice::from_ref(k), &candidates, &expected))
    else {
        return Err(VerifyError::Mismatch);
    };
    match row.challenge.and_then(|answer| answer(body, key)) {
        Some(answer) => Ok(Verified::Challenge(answer)),
        None => Ok(Verified::Ok),
    }
}

/// The signatures a header value carries, decoded, and the timestamp among its fields.
fn signatures<'v>(
    row: &Preset<'_>,
    name: &str,
    value: &'v str,
) -> Result<(Vec<Vec<u8>>, Option<&'v str>), VerifyError> {
    let malformed = |why: String| VerifyError::Malformed(name.to_string(), why);
    match row.layout {
        Layout::Plain { prefix } => {
            let raw = value
                .strip_prefix(prefix)
                .ok_or_else(|| malformed(format!("expected {prefix}<{}>", encoding_name(row.encoding))))?;
            Ok((vec![decode(row.encoding, raw, name)?], None))
        }
        Layout::Fields {
            separator,
            timestamp,
            signature,
        } => {
            let mut ts = None;
            let mut sigs = Vec::new();
            for field in value.split(separator) {
                match field.trim().split_once('=') {
                    Some((k, v)) if k == timestamp => ts = Some(v),
                    Some((k, v)) if k == signature => sigs.push(decode(row.encoding, v, name)?),
                    _ => {}
                }
            }
            if ts.is_none() && row.timestamp == Stamp::InSignature {
                return Err(malformed(format!("no {timestamp}=")));
            }
            if sigs.is_empty() {
                return Err(malformed(format!("no {signature}= signature")));
            }
            Ok((sigs, ts))
        }
        Layout::Secret => Ok((vec![value.as_bytes().to_vec()], None)),
        Layout::Versioned { version } => {
            let sigs: Vec<Vec<u8>> = value
                .split_whitespace()
                .filter_map(|s| s.strip_prefix(version)?.strip_prefix(','))
                .filter_map(|s| decode(row.encoding, s, name).ok())
                .collect();
            if sigs.is_empty() {
                return Err(malformed(format!(
                    "no {version},<{}> signature",
                    encoding_name(row.encoding)
                )));
            }
            Ok((sigs, None))
        }
    }
}

/// Headers that sign `body` as `row`'s sender does: the legacy signature, the id, the
/// timestamp, then the signature.
pub(super) fn sign(
    row: &Preset<'_>,
    target: &Target<'_>,
    key: &[u8],
    id: &str,
    now_secs: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let ts = if row.millis { now_secs * 1000 } else { now_secs }.to_string();
    let timed = row.timestamp != Stamp::None;
    let (before, after) = signed_around_body(
        row.signed,
        target,
        timed.then_some(ts.as_str()),
        row.id.map(|_| id),
    );
    let encoded = encode(
        row.encoding,
        &mac(row.algorithm, key, &[before.as_bytes(), body, after.as_bytes()]),
    );
    let mut out = Vec::new();
    if let Some((header, algorithm, prefix)) = row.legacy {
        let legacy = encode(row.encoding, &mac(algorithm, key, &[body]));
        out.push((header.to_string(), format!("{prefix}{legacy}")));
    }
    if let Some(names) = row.id {
        out.push((names[0].to_string(), id.to_string()));
    }
    if let Stamp::Header(names) = row.timestamp {
        out.push((names[0].to_string(), ts.clone()));
    }
    let value = match row.layout {
        Layout::Plain { prefix } => format!("{prefix}{encoded}"),
        Layout::Fields {
            separator,
            timestamp,
            signature,
        } => format!("{timestamp}={ts}{separator}{signature}={encoded}"),
        Layout::Versioned { version } => format!("{version},{encoded}"),
        Layout::Secret => String::from_utf8_lossy(key).into_owned(),
    };
    out.push((row.signature[0].to_string(), value));
    out
}

/// The signed content before and after the body, with the timestamp, id, method and URL filled
/// in. A placeholder the row does not sign stays as written.
fn signed_around_body(
    template: &str,
    target: &Target<'_>,
    ts: Option<&str>,
    id: Option<&str>,
) -> (String, String) {
    let mut t = template
        .replace("{method}", target.method)
        .replace("{url}", target.url);
    if let Some(ts) = ts {
        t = t.replace("{timestamp}", ts);
    }
    if let Some(id) = id {
        t = t.replace("{id}", id);
    }
    match t.split_once("{body}") {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (t, String::new()),
    }
}

fn encode(encoding: Encoding, raw: &[u8]) -> String {
    match encoding {
        Encoding::Hex => hex::encode(raw),
        Encoding::Base64 => B64.encode(raw),
    }
}

fn encoding_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Hex => "hex",
        Encoding::Base64 => "base64",
    }
}
