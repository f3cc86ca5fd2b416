//! Webhook URL tokens. Each flow is reached at `/hooks/{flow}/{token}` where the token is an
//! HMAC of the flow name under a server secret: unguessable, stable across restarts, the same
//! on every machine that shares the secret, and never written into a flow file.
//!
//! The secret comes from `HOOKFLOW_SECRET` if set, else from `{data_dir}/secret`, created with
//! 32 random bytes (mode 0600) on first use. Rotating it changes every URL.

use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Hex digits of the HMAC kept in the URL: 128 bits.
const TOKEN_HEX_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read or create the server secret at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the server secret must be at least 16 characters")]
    TooShort,
}

/// Derives and checks URL tokens.
#[derive(Clone)]
pub struct UrlTokens {
    secret: Vec<u8>,
}

impl std::fmt::Debug for UrlTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlTokens([secret])")
    }
}

impl UrlTokens {
    pub fn from_secret(secret: &[u8]) -> Result<UrlTokens, TokenError> {
        if secret.len() < 16 {
            return Err(TokenError::TooShort);
        }
        Ok(UrlTokens {
            secret: secret.to_vec(),
        })
    }

    /// Uses `explicit` when given, else reads or creates `{data_dir}/secret`.
    pub fn load_or_create(data_dir: &Path, explicit: Option<&str>) -> Result<UrlTokens, TokenError> {
        if let Some(s) = explicit {
            return Self::from_secret(s.as_bytes());
        }
        let path = data_dir.join("secret");
        let io = |source| TokenError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => Self::from_secret(s.trim().as_bytes()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::private::create_dir(data_dir).map_err(io)?;
                let text = Self::new_secret();
                write_private(&path, &text).map_err(io)?;
                Self::from_secret(text.as_bytes())
            }
            Err(e) => Err(io(e)),
        }
    }

    /// `{data_dir}/secret` if it exists; `None` if not. Client commands use this: a secret
    /// they created would derive URLs no running server knows.
    pub fn load(data_dir: &Path) -> Result<Option<UrlTokens>, TokenError> {
        let path = data_dir.join("secret");
        match std::fs::read_to_string(&path) {
            Ok(s) => Self::from_secret(s.trim().as_bytes()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TokenError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// A fresh secret: 32 random bytes, hex.
    pub fn new_secret() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    /// The token in `flow`'s URL.
    pub fn token(&self, flow: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(b"hookflow-url-v1:");
        mac.update(flow.as_bytes());
        let mut t = hex::encode(mac.finalize().into_bytes());
        t.truncate(TOKEN_HEX_LEN);
        t
    }

    /// The keys that seal the links emails carry ([`crate::links`]), from the same secret.
    pub fn link_keys(&self) -> crate::links::LinkKeys {
        crate::links::LinkKeys::derive(&self.secret)
    }

    /// Constant-time check of a presented token.
    pub fn verify(&self, flow: &str, presented: &str) -> bool {
        let expected = self.token(flow);
        expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_distinct_and_checked() {
        let a = UrlTokens::from_secret(b"0123456789abcdef0123").unwrap();
        let b = UrlTokens::from_secret(b"0123456789abcdef0123").unwrap();
        let c = UrlTokens::from_secret(b"another-secret-entirely").unwrap();
        assert_eq!(a.token("orders"), b.token("orders"));
        assert_ne!(a.token("orders"), a.token("forms"));
        assert_ne!(a.token("orders"), c.token("orders"));
        assert_eq!(a.token("orders").len(), 32);
        assert!(a.verify("orders", &a.token("orders")));
        assert!(!a.verify("forms", &a.token("orders")));
        assert!(!a.verify("orders", "short"));
        assert!(UrlTokens::from_secret(b"short").is_err());
    }

    #[test]
    fn secret_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = UrlTokens::load_or_create(dir.path(), None).unwrap();
        let b = UrlTokens::load_or_create(dir.path(), None).unwrap();
        assert_eq!(a.token("x"), b.token("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
