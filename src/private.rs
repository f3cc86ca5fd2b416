//! Keeping what hookflow writes to itself. The data directory holds run payloads — emails,
//! addresses, orders — so it is created `0700` and everything in it `0600` (hookflow ORs its
//! `--umask`, default `077`, into the process umask at start), and an existing directory that
//! other users can read is reported at start.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Adds `mask` to the process umask, so files and directories created from here on (by sled
/// and the journal too) leave out those permission bits. Returns the umask now in force.
pub fn restrict_umask(mask: u32) -> u32 {
    let mask = rustix::fs::Mode::from_bits_truncate(mask);
    let old = rustix::process::umask(mask);
    let combined = old | mask;
    rustix::process::umask(combined);
    combined.bits()
}

/// Creates `dir` (and missing parents) as `0700`; an existing directory is left as it is.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates (or truncates) a file only its owner may read (`0600`).
pub fn create_file(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Writes `bytes` to a new or truncated `0600` file.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = create_file(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Warnings about `dir` and its entries (one level down) that users other than the owner can
/// read, write or enter.
pub fn exposure(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut check = |p: &Path| {
        if let Ok(meta) = std::fs::metadata(p) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                found.push(format!(
                    "{} is open to other users (mode {mode:04o}): run payloads live here; chmod go-rwx it (chmod -R go-rwx {})",
                    p.display(),
                    dir.display()
                ));
            }
        }
    };
    check(dir);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            check(&e.path());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_names_what_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        create_dir(&data).unwrap();
        assert_eq!(
            std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(exposure(&data).is_empty());
        let file = data.join("store");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let found = exposure(&data);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("mode 0644"), "{found:?}");
    }
}
