//! Stage 3, authenticate: every header the flow trusts arrives once, then the signature holds
//! over the raw bytes (or, for a compressed body, over the bytes before compression). Nothing
//! is decoded, mapped or stored for a request that fails here.

use axum::http::HeaderMap;

use super::Refusal;
use super::read::ReadBody;
use crate::flow::{Verifier, Webhook};
use crate::verify::{Target, Verified, VerifyError, key_bytes, verify};

/// What authentication concluded for a request that may go on.
#[derive(Debug, PartialEq, Eq)]
pub enum Authenticated {
    /// Signed correctly, or the flow verifies nothing.
    Yes,
    /// WooCommerce's unsigned creation ping: answered, nothing started.
    WooPing,
    /// A signed challenge (Zoom's URL validation): answered with this, nothing started.
    Challenge(serde_json::Value),
}

pub fn authenticate(
    webhook: &Webhook,
    target: &Target<'_>,
    headers: &HeaderMap,
    body: &ReadBody,
    now_secs: i64,
) -> Result<Authenticated, Refusal> {
    single_values(&webhook.trusted_headers, headers)?;
    let Some(v) = &webhook.verify else {
        return Ok(Authenticated::Yes);
    };
    let outcome = match check(v, target, headers, &body.raw, now_secs) {
        Err(VerifyError::Mismatch) if body.decoded[..] != body.raw[..] => {
            check(v, target, headers, &body.decoded, now_secs)
        }
        other => other,
    };
    match outcome? {
        Verified::Ok => Ok(Authenticated::Yes),
        Verified::WooPing => Ok(Authenticated::WooPing),
        Verified::Challenge(answer) => Ok(Authenticated::Challenge(answer)),
    }
}

/// Refuses a request in which one of `groups` (a header under its alternative names) has more
/// than one value. The one exception: the same value once under each alternative name (a
/// sender that sends both `webhook-id` and `svix-id`).
pub fn single_values(groups: &[Vec<String>], headers: &HeaderMap) -> Result<(), Refusal> {
    for names in groups {
        let mut values = names.iter().flat_map(|n| headers.get_all(n.as_str()).iter());
        let Some(first) = values.next() else { continue };
        let each_once = names
            .iter()
            .all(|n| headers.get_all(n.as_str()).iter().count() <= 1);
        if !(each_once && values.all(|v| v == first)) {
            return Err(Refusal::RepeatedHeader(names[0].clone()));
        }
    }
    Ok(())
}

/// Checks the signature with the secrets as they are now: secret files and credentials are
/// read again when they change, so rotating one needs no restart (an environment variable
/// cannot change in a running process).
fn check(
    v: &Verifier,
    target: &Target<'_>,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<Verified, VerifyError> {
    let secrets: Vec<Vec<u8>> = v.secrets().iter().map(|s| key_bytes(&v.scheme, s)).collect();
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret(v.sources()));
    }
    verify(&v.scheme, target, headers, body, now_secs, v.tolerance, &secrets)
}

/// Headers as a run records them: a header sent under one of its alternative names is also
/// recorded under the others (`svix-id` as `webhook-id` too), so templates and dedupe keys
/// read it by either name.
pub fn add_aliases(webhook: &Webhook, recorded: &mut std::collections::BTreeMap<String, String>) {
    for names in webhook.trusted_headers.iter().filter(|g| g.len() > 1) {
        if let Some(value) = names.iter().find_map(|n| recorded.get(n).cloned()) {
            for n in names {
                recorded.entry(n.clone()).or_insert_with(|| value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn groups() -> Vec<Vec<String>> {
        vec![
            vec!["webhook-id".into(), "svix-id".into()],
            vec!["x-github-event".into()],
        ]
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_trusted_header_must_arrive_once() {
        let ok = |pairs| single_values(&groups(), &headers(pairs)).is_ok();
        assert!(ok(&[]));
        assert!(ok(&[
            ("webhook-id", "a"),
            ("x-github-event", "push"),
            ("other", "1"),
            ("other", "2")
        ]));
        assert!(!ok(&[("webhook-id", "a"), ("webhook-id", "x")]));
        assert!(!ok(&[("webhook-id", "a"), ("webhook-id", "a")]));
        assert!(!ok(&[("x-github-event", "push"), ("x-github-event", "ping")]));
        // Both names once with one value is one header; with two values it is not.
        assert!(ok(&[("webhook-id", "a"), ("svix-id", "a")]));
        assert!(!ok(&[("webhook-id", "a"), ("svix-id", "b")]));
        assert!(matches!(
            single_values(&groups(), &headers(&[("svix-id", "a"), ("svix-id", "b")])),
            Err(Refusal::RepeatedHeader(n)) if n == "webhook-id"
        ));
    }
}
