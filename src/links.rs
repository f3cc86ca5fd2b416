//! Links in emails that hookflow serves itself: `{public-url}/u/{token}` ("unsubscribe this
//! contact from this list") and `{public-url}/c/{token}` ("this link of this message", a
//! tracked link, see [`crate::clicks`]), where the token is the link's meaning sealed with a
//! key derived from the server secret.
//!
//! Why sealed, not looked up: a token must reveal neither the address nor anything
//! enumerable, survive restarts and work on every instance sharing the secret, without a
//! store write per email sent. AES-256-GCM under a key derived from the secret gives all of
//! it; the nonce is an HMAC of the content (the "synthetic IV" construction), so the link of
//! one contact and list is the same in every email — and a nonce repeats only for the same
//! content, where it gives the same token and nothing more. A token that was altered, forged
//! or sealed under another secret does not open: the caller answers it as any unknown URL.
//!
//! Rotating the server secret (`HOOKFLOW_SECRET`) changes every webhook URL. Links in emails
//! already sent keep working while the old secret is given as a previous one
//! (`HOOKFLOW_PREVIOUS_SECRETS`): tokens are sealed under the current secret and opened under
//! any of them; docs/operations.md says how.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Sha256;

/// The token layout's version, the first byte of every token.
const VERSION: u8 = 1;
/// Plaintexts are padded to a multiple of this, so a token's length says little about the
/// address in it.
const PAD_TO: usize = 32;
/// Longest token opened: anything longer is refused before any work (an address is at most
/// 254 characters, a list name 100).
pub const MAX_TOKEN_LEN: usize = 600;

/// What a link does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// One-click unsubscribe of `email` (normalised) from `list` (a segment name).
    Unsubscribe { list: String, email: String },
    /// A tracked link: the message (its idempotency key) and which of its links, by the
    /// link's id ([`crate::clicks::link_id`]). The target itself is not in the token: it is
    /// looked up in what the message was sent with, so a token can only ever lead to a link
    /// that was in that email.
    Click { message: String, link: [u8; 8] },
}

impl Link {
    fn encode(&self) -> Vec<u8> {
        match self {
            Link::Unsubscribe { list, email } => {
                let mut v = vec![b'u'];
                v.extend_from_slice(list.as_bytes());
                v.push(0);
                v.extend_from_slice(email.as_bytes());
                v
            }
            Link::Click { message, link } => {
                let mut v = vec![b'c'];
                v.extend_from_slice(link);
                v.extend_from_slice(message.as_bytes());
                v
            }
        }
    }

    fn decode(bytes: &[u8]) -> Option<Link> {
        let (&kind, rest) = bytes.split_first()?;
        if kind == b'c' {
            let link: [u8; 8] = rest.get(..8)?.try_into().ok()?;
            let message = std::str::from_utf8(&rest[8..]).ok()?;
            return Some(Link::Click {
                message: message.to_string(),
                link,
            });
        }
        let text = std::str::from_utf8(rest).ok()?;
        match kind {
            b'u' => {
                let (list, email) = text.split_once('\0')?;
                Some(Link::Unsubscribe {
                    list: list.to_string(),
                    email: email.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// Seals and opens link tokens: seals under the current secret, opens under it or any
/// previous one.
pub struct LinkKeys {
    current: KeyPair,
    previous: Vec<KeyPair>,
}

struct KeyPair {
    aead: LessSafeKey,
    nonce_key: [u8; 32],
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKeys([secret])")
    }
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

impl LinkKeys {
    /// Keys for links, derived from the server secret (the one webhook URLs come from), each
    /// under a label of its own so neither can stand in for the other.
    pub fn derive(server_secret: &[u8]) -> LinkKeys {
        LinkKeys {
            current: KeyPair::derive(server_secret),
            previous: Vec::new(),
        }
    }

    /// These keys, also opening tokens sealed under `previous` secrets (a rotation: links in
    /// emails sent before it keep working while the old secret is listed).
    pub fn with_previous<'a>(mut self, previous: impl IntoIterator<Item = &'a [u8]>) -> LinkKeys {
        self.previous.extend(previous.into_iter().map(KeyPair::derive));
        self
    }

    /// The token for `link`: URL-safe base64, the same for the same link.
    pub fn seal(&self, link: &Link) -> String {
        let mut plain = link.encode();
        // ISO/IEC 7816-4 padding: 0x80 then zeros.
        plain.push(0x80);
        while !plain.len().is_multiple_of(PAD_TO) {
            plain.push(0);
        }
        let tag = derive(&self.current.nonce_key, &plain);
        let nonce: [u8; NONCE_LEN] = tag[..NONCE_LEN].try_into().expect("12 bytes");
        let mut sealed = plain;
        self.current
            .aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([VERSION]),
                &mut sealed,
            )
            .expect("AES-GCM seals any length used here");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        B64URL.encode(out)
    }

    /// The link a token stands for; `None` for anything not sealed by these keys.
    pub fn open(&self, token: &str) -> Option<Link> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let raw = B64URL.decode(token).ok()?;
        let (&version, rest) = raw.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN + PAD_TO {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find_map(|keys| keys.open(nonce, sealed))
    }
}

impl KeyPair {
    fn derive(secret: &[u8]) -> KeyPair {
        let enc = derive(secret, b"hookflow-links-v1:aead");
        KeyPair {
            aead: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &enc).expect("a 32-byte AES-256 key")),
            nonce_key: derive(secret, b"hookflow-links-v1:nonce"),
        }
    }

    fn open(&self, nonce: [u8; NONCE_LEN], sealed: &[u8]) -> Option<Link> {
        let mut buf = sealed.to_vec();
        let plain = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([VERSION]),
                &mut buf,
            )
            .ok()?;
        let end = plain.iter().rposition(|&b| b != 0)?;
        if plain[end] != 0x80 {
            return None;
        }
        Link::decode(&plain[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsub(list: &str, email: &str) -> Link {
        Link::Unsubscribe {
            list: list.into(),
            email: email.into(),
        }
    }

    #[test]
    fn a_token_opens_to_its_link_and_is_stable() {
        let k = LinkKeys::derive(b"0123456789abcdef0123");
        let t = k.seal(&unsub("newsletter", "ada@example.com"));
        assert_eq!(t, k.seal(&unsub("newsletter", "ada@example.com")));
        assert_eq!(k.open(&t), Some(unsub("newsletter", "ada@example.com")));
        assert_ne!(t, k.seal(&unsub("newsletter", "bob@example.com")));
        assert_ne!(t, k.seal(&unsub("offers", "ada@example.com")));
        assert!(t.len() < 200, "{}", t.len());
    }

    #[test]
    fn the_token_reveals_neither_the_address_nor_the_list() {
        let k = LinkKeys::derive(b"0123456789abcdef0123");
        let t = k.seal(&unsub("newsletter", "ada@example.com"));
        let raw = B64URL.decode(&t).unwrap();
        let hay = String::from_utf8_lossy(&raw).to_lowercase();
        assert!(!hay.contains("ada") && !hay.contains("newsletter"));
        // Addresses of similar length give tokens of the same length.
        assert_eq!(t.len(), k.seal(&unsub("newsletter", "bo@example.com")).len());
    }

    #[test]
    fn altered_forged_and_foreign_tokens_do_not_open() {
        let k = LinkKeys::derive(b"0123456789abcdef0123");
        let other = LinkKeys::derive(b"another-secret-entirely");
        let t = k.seal(&unsub("newsletter", "ada@example.com"));
        assert_eq!(other.open(&t), None);
        let mut raw = B64URL.decode(&t).unwrap();
        for i in [0, 5, 20, raw.len() - 1] {
            raw[i] ^= 1;
            assert_eq!(k.open(&B64URL.encode(&raw)), None, "byte {i}");
            raw[i] ^= 1;
        }
        assert_eq!(k.open(&B64URL.encode(&raw[..raw.len() - 1])), None);
        for junk in [
            "",
            "x",
            "AAAA",
            "not base64 at all!",
            &"A".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(k.open(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_click_token_round_trips_and_previous_secrets_still_open() {
        let old = LinkKeys::derive(b"the-old-secret-0123456789");
        let click = Link::Click {
            message: "01JD5X0000000000000000000A.recovery".into(),
            link: *b"\x00\x01\x02\x03\x04\x05\x06\x07",
        };
        let t = old.seal(&click);
        assert_eq!(old.open(&t), Some(click.clone()));
        let new = LinkKeys::derive(b"the-new-secret-0123456789");
        assert_eq!(new.open(&t), None);
        let rotated = LinkKeys::derive(b"the-new-secret-0123456789")
            .with_previous([b"the-old-secret-0123456789".as_slice()]);
        assert_eq!(rotated.open(&t), Some(click.clone()));
        // New links are sealed under the current secret only.
        assert_eq!(old.open(&rotated.seal(&click)), None);
        assert!(t.len() < 140, "{}", t.len());
    }
}
