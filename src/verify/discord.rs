//! Discord's interactions endpoint, and any sender that signs the same way: an Ed25519
//! signature (hex, `X-Signature-Ed25519`) over the timestamp (`X-Signature-Timestamp`) and the
//! body, checked against the application's **public** key (hex, as the developer portal shows
//! it) — so the "secret" configured is not secret, and nothing hookflow holds can sign.
//!
//! Discord checks an endpoint before saving it: a signed `PING` (`{"type": 1}`), which must be
//! answered `{"type": 1}`, and requests with a bad signature, which must be refused. The PING
//! is answered and starts nothing; Discord's own refusal checks get 401 like any bad signature.

use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};

use super::{Encoding, Headers, Verified, VerifyError, check_time, decode, header};

pub const SIGNATURE: &str = "X-Signature-Ed25519";
pub const TIMESTAMP: &str = "X-Signature-Timestamp";

/// Checks a request against every configured public key.
pub(super) fn check(
    h: &dyn Headers,
    body: &[u8],
    now_secs: i64,
    tolerance: std::time::Duration,
    keys: &[Vec<u8>],
) -> Result<Verified, VerifyError> {
    let sig = header(h, SIGNATURE)?;
    let ts = header(h, TIMESTAMP)?;
    let sig = decode(Encoding::Hex, sig, SIGNATURE)?;
    check_time(ts, TIMESTAMP, now_secs, tolerance, 1)?;
    if !verifies(keys, &[ts.as_bytes(), body].concat(), &sig) {
        return Err(VerifyError::Mismatch);
    }
    Ok(match is_ping(body) {
        true => Verified::Challenge(serde_json::json!({"type": 1})),
        false => Verified::Ok,
    })
}

/// Whether any of the public keys verifies `sig` over `signed`.
fn verifies(keys: &[Vec<u8>], signed: &[u8], sig: &[u8]) -> bool {
    keys.iter()
        .filter(|k| k.len() == 32)
        .any(|k| UnparsedPublicKey::new(&ED25519, k).verify(signed, sig).is_ok())
}

/// Discord's `PING` interaction: a JSON object whose `type` is 1.
fn is_ping(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v.get("type").and_then(|t| t.as_u64()) == Some(1))
}

/// The 32-byte public key of a hex string (the developer portal's "Public Key"); empty (which
/// verifies nothing) for anything else.
pub fn public_key(text: &str) -> Vec<u8> {
    hex::decode(text.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .unwrap_or_default()
}

/// Headers signing `body` as Discord does, with an Ed25519 private key given as a 32-byte
/// seed in hex or as PKCS#8 (PEM or base64 DER, what `openssl genpkey -algorithm ed25519`
/// writes): for `hookflow send --signing-key`.
pub fn sign(private_key: &str, now_secs: i64, body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let pair = match hex::decode(private_key.trim()) {
        Ok(seed) if seed.len() == 32 => Ed25519KeyPair::from_seed_unchecked(&seed).ok(),
        _ => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(super::pem_body(private_key))
                .ok()
                .and_then(|der| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).ok())
        }
    }
    .ok_or("not an Ed25519 private key (a 32-byte seed in hex, or PKCS#8 PEM)")?;
    let ts = now_secs.to_string();
    let sig = pair.sign(&[ts.as_bytes(), body].concat());
    Ok(vec![
        (TIMESTAMP.to_string(), ts),
        (SIGNATURE.to_string(), hex::encode(sig.as_ref())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    // RFC 8032, section 7.1, TEST 2: the one-byte message 0x72.
    const SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const SIGNATURE_OF_72: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    fn headers(pairs: &[(String, String)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::try_from(k.as_str()).unwrap(),
                    HeaderValue::try_from(v.as_str()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn rfc_8032s_vector_verifies_and_signing_gives_it() {
        let keys = [public_key(PUBLIC)];
        let sig = hex::decode(SIGNATURE_OF_72).unwrap();
        assert!(verifies(&keys, &[0x72], &sig));
        assert!(!verifies(&keys, &[0x73], &sig));
        let pair = Ed25519KeyPair::from_seed_unchecked(&hex::decode(SEED).unwrap()).unwrap();
        assert_eq!(hex::encode(pair.sign(&[0x72]).as_ref()), SIGNATURE_OF_72);
        assert_eq!(
            hex::encode(ring::signature::KeyPair::public_key(&pair).as_ref()),
            PUBLIC
        );
    }

    #[test]
    fn a_signed_ping_is_answered_and_faults_are_refused() {
        let now = 1_700_000_000;
        let tol = std::time::Duration::from_secs(300);
        let keys = [public_key(PUBLIC)];
        let ping = br#"{"type":1}"#;
        let h = headers(&sign(SEED, now, ping).unwrap());
        assert_eq!(
            check(&h, ping, now, tol, &keys).unwrap(),
            Verified::Challenge(serde_json::json!({"type": 1}))
        );
        let body = br#"{"type":2,"data":{"name":"ping"}}"#;
        let h = headers(&sign(SEED, now, body).unwrap());
        assert_eq!(check(&h, body, now, tol, &keys).unwrap(), Verified::Ok);
        assert!(matches!(
            check(&h, body, now + 3600, tol, &keys),
            Err(VerifyError::Stale(..))
        ));
        let other = [public_key(&"11".repeat(32))];
        assert_eq!(check(&h, body, now, tol, &other), Err(VerifyError::Mismatch));
        assert_eq!(
            check(&h, body, now, tol, &[public_key("not hex")]),
            Err(VerifyError::Mismatch)
        );
        assert!(matches!(
            check(&headers(&[]), body, now, tol, &keys),
            Err(VerifyError::MissingHeader(_))
        ));
        assert!(sign("nope", now, body).is_err());
    }
}
