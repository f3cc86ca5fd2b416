//! Secrets from flags, the environment and files, typed so they cannot be printed by accident;
//! secret files (and systemd credentials) are read again when they change.

/// A secret from the command line or environment: usable as a string, never printed by
/// `Debug` (settings structs derive it).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// The most a secret file may hold: a signing secret is tens of bytes, a key a few KiB.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A named secret (`secret_env: NAME`, `secret('NAME')`): the environment variable NAME, else
/// the file NAME in systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=NAME:…`), which keeps
/// secrets out of the environment and is read again whenever it changes.
pub fn named(name: &str) -> Option<String> {
    if let Some(v) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(v);
    }
    // A credential name is a plain file name: never a path out of the directory.
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    file(&std::path::Path::new(&dir).join(name)).ok()
}

/// A secret file's content without the line break after it, read again only when the file
/// changes (its modification time, size or inode), so a rotation needs no restart: write the
/// new value (or both during the overlap, into two files) and the next request uses it.
/// The cache holds one entry per file a flow names: the set of flows bounds it.
pub fn file(path: &std::path::Path) -> Result<String, String> {
    use std::collections::HashMap;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    use std::sync::Mutex;
    type Stamp = (i64, i64, u64, u64);
    static CACHE: Mutex<Option<HashMap<std::path::PathBuf, (Stamp, String)>>> = Mutex::new(None);
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_SECRET_FILE {
        return Err(format!(
            "{}: {} bytes, more than a secret file may hold ({MAX_SECRET_FILE})",
            path.display(),
            meta.len()
        ));
    }
    let stamp = (meta.mtime(), meta.mtime_nsec(), meta.len(), meta.ino());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some((s, v)) = cache.get(path)
        && *s == stamp
    {
        return Ok(v.clone());
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE).read_to_string(&mut text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value).to_string();
    if value.is_empty() {
        return Err(format!("{}: empty", path.display()));
    }
    cache.insert(path.to_path_buf(), (stamp, value.clone()));
    Ok(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_secret_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "first-secret\n").unwrap();
        assert_eq!(super::file(&p).unwrap(), "first-secret");
        // Another size, so the change shows even within the file system's time granularity.
        std::fs::write(&p, "second-secret-value\n").unwrap();
        assert_eq!(super::file(&p).unwrap(), "second-secret-value");
        std::fs::write(&p, "").unwrap();
        assert!(super::file(&p).unwrap_err().contains("empty"));
        assert!(super::file(&dir.path().join("none")).is_err());
    }
}
