//! Build facts for `hookflow --version`: the git commit (with `-dirty` when tracked files
//! differ from it) and the build date (UTC; `SOURCE_DATE_EPOCH` for reproducible builds); and
//! the dashboard's files gzipped for embedding. Without git (a source tarball, a vendored
//! copy) the commit reads "unknown commit" and nothing of git is watched.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `YYYY-MM-DD` of a Unix time (days to civil date, after Howard Hinnant's algorithm).
fn date(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Whether this crate is the top of a git work tree: a copy unpacked inside some other
/// repository must not report that repository's commit, nor watch its files.
fn own_repository() -> bool {
    let top = git(&["rev-parse", "--show-toplevel"]).map(std::path::PathBuf::from);
    let here = std::env::var("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from);
    match (top, here) {
        (Some(top), Ok(here)) => top.canonicalize().ok() == here.canonicalize().ok(),
        _ => false,
    }
}

fn main() {
    let own = own_repository();
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]).filter(|_| own) {
        Some(c) => {
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-dirty") } else { c }
        }
        None => "unknown commit".into(),
    };
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=HOOKFLOW_COMMIT={commit}");
    println!("cargo:rustc-env=HOOKFLOW_BUILD_DATE={}", date(secs));
    // Watch only what exists: cargo takes a declared path that is missing as changed, so a
    // checkout without packed refs (or a tarball without .git) rebuilt everything every time.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]).filter(|_| own) {
        let dir = std::path::PathBuf::from(dir);
        for name in ["HEAD", "refs/heads", "packed-refs"] {
            let path = dir.join(name);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    gzip_assets();
}

/// The dashboard's files, gzipped into OUT_DIR: the binary embeds them compressed (a third of
/// their size) and serves them as they are to browsers, which all accept gzip.
fn gzip_assets() {
    use std::io::Write;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for (src, name) in [
        ("assets/dashboard.js", "dashboard.js.gz"),
        ("assets/dashboard.css", "dashboard.css.gz"),
        ("assets/vendor/uplot/uPlot.iife.min.js", "uplot.min.js.gz"),
        ("assets/vendor/uplot/uPlot.min.css", "uplot.min.css.gz"),
    ] {
        println!("cargo:rerun-if-changed={src}");
        let bytes = std::fs::read(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        // No name or time in the header: the same input gives the same bytes.
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes).expect("gzip");
        std::fs::write(out.join(name), gz.finish().expect("gzip")).expect("write OUT_DIR");
    }
}
