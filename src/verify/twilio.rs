//! Twilio's request signature (`X-Twilio-Signature`): base64 HMAC-SHA1, under the account's
//! auth token, of the URL Twilio requested followed by the form's parameters, sorted by name,
//! each name then its value (a repeated name: each value, sorted). A JSON body is not in the
//! signed text: the URL carries `bodySHA256=<hex>` of it, which must match.
//!
//! The URL is the one Twilio was given, which hookflow rebuilds from `--public-url` and the
//! path and query it received ([`super::Target`]). Twilio's own validator accepts the URL with
//! or without the scheme's default port, and so does this.

use sha2::{Digest, Sha256};

use super::{Algorithm, Headers, Target, Verified, VerifyError, any_secret, decode, header, mac};

pub const SIGNATURE: &str = "X-Twilio-Signature";

/// Checks a request against every auth token.
pub(super) fn check(
    target: &Target<'_>,
    h: &dyn Headers,
    body: &[u8],
    secrets: &[Vec<u8>],
) -> Result<Verified, VerifyError> {
    let sig = decode(super::Encoding::Base64, header(h, SIGNATURE)?, SIGNATURE)?;
    let url = url::Url::parse(target.url).map_err(|_| VerifyError::Mismatch)?;
    let body_hash = url
        .query_pairs()
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned());
    let params = match &body_hash {
        // A JSON (or any non-form) body: its hash is in the URL, the URL alone is signed.
        Some(expected) => {
            if !hex::encode(Sha256::digest(body)).eq_ignore_ascii_case(expected.trim()) {
                return Err(VerifyError::Mismatch);
            }
            String::new()
        }
        None => sorted_params(body),
    };
    let candidates = [sig];
    let signed_as = |u: &str| {
        any_secret(secrets, &candidates, &|key: &[u8]| {
            mac(Algorithm::Sha1, key, &[u.as_bytes(), params.as_bytes()])
        })
    };
    if url_forms(&url).iter().any(|u| signed_as(u)) {
        Ok(Verified::Ok)
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The form's parameters as Twilio signs them: names sorted, each followed by its value,
/// a name's several values each in sorted order. Not a form: nothing.
fn sorted_params(body: &[u8]) -> String {
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    pairs.sort();
    pairs.dedup();
    pairs.into_iter().map(|(k, v)| k + &v).collect()
}

/// The URL as given, and with the scheme's default port added or removed.
fn url_forms(url: &url::Url) -> Vec<String> {
    let mut out = vec![url.as_str().to_string()];
    let mut other = url.clone();
    let host = url.host_str().unwrap_or_default();
    let as_given = url.as_str();
    let authority_port = url.port();
    if authority_port.is_none() {
        if let Some(default) = url.port_or_known_default() {
            // `Url` drops a default port when set; write it into the text instead.
            let with_port = as_given.replacen(host, &format!("{host}:{default}"), 1);
            out.push(with_port);
        }
    } else if other.set_port(None).is_ok() {
        out.push(other.as_str().to_string());
    }
    out
}

/// `X-Twilio-Signature` for a form body sent to `target`, as Twilio signs: for
/// `hookflow send`.
pub fn sign(target: &Target<'_>, key: &[u8], body: &[u8]) -> Vec<(String, String)> {
    use base64::Engine;
    let sig = mac(
        Algorithm::Sha1,
        key,
        &[target.url.as_bytes(), sorted_params(body).as_bytes()],
    );
    vec![(
        SIGNATURE.to_string(),
        base64::engine::general_purpose::STANDARD.encode(sig),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    // Twilio's documented example ("Validating Signatures from Twilio"): auth token
    // 12345, this URL and these parameters give 0/KCTR6DLpKmkAf8muzZqo1nDgQ=.
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const FORM: &[u8] =
        b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
    const SIGNATURE_OF_EXAMPLE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    fn with_sig(sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-twilio-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    fn post(url: &str) -> Target<'_> {
        Target { method: "POST", url }
    }

    #[test]
    fn twilios_published_example_verifies_and_signs_alike() {
        let key = [b"12345".to_vec()];
        let h = with_sig(SIGNATURE_OF_EXAMPLE);
        assert_eq!(check(&post(URL), &h, FORM, &key), Ok(Verified::Ok));
        assert_eq!(sign(&post(URL), b"12345", FORM)[0].1, SIGNATURE_OF_EXAMPLE);
        // The port Twilio's validator also tries.
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(check(&post(with_port), &h, FORM, &key), Ok(Verified::Ok));
        // A changed parameter, another URL, another token.
        let changed = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1235&From=%2B12349013030&To=%2B18005551212";
        assert_eq!(check(&post(URL), &h, changed, &key), Err(VerifyError::Mismatch));
        assert_eq!(
            check(
                &post("https://mycompany.com/other.php?foo=1&bar=2"),
                &h,
                FORM,
                &key
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(&post(URL), &h, FORM, &[b"54321".to_vec()]),
            Err(VerifyError::Mismatch)
        );
        assert!(matches!(
            check(&post(URL), &HeaderMap::new(), FORM, &key),
            Err(VerifyError::MissingHeader(_))
        ));
    }

    #[test]
    fn a_json_body_is_checked_by_the_hash_in_the_url() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = hex::encode(Sha256::digest(body));
        let url = format!("https://example.com/hooks/t?bodySHA256={hash}");
        let key = [b"token".to_vec()];
        let sig = sign(&post(&url), b"token", b"");
        let h = with_sig(&sig[0].1);
        assert_eq!(check(&post(&url), &h, body, &key), Ok(Verified::Ok));
        assert_eq!(
            check(
                &post(&url),
                &h,
                br#"{"property": "value", "boolean": false}"#,
                &key
            ),
            Err(VerifyError::Mismatch)
        );
    }
}
