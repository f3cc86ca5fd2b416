//! The build itself: what `build.rs` tells cargo to watch.

use std::path::{Path, PathBuf};

/// The output of this build's run of `build.rs` (the newest `hookflow-*/output` under the
/// target directory's `build/`).
fn build_script_output() -> String {
    // tests/it is built to target/<profile>/deps/it-…; the build scripts ran under target/<profile>/build.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let newest: Option<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(profile_dir.join("build"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("hookflow-"))
        .map(|e| e.path().join("output"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max();
    let (_, path) = newest.expect("a build script output under target/*/build/hookflow-*");
    std::fs::read_to_string(path).unwrap()
}

/// Regression: `build.rs` declared `.git/packed-refs`, which a checkout without packed refs
/// does not have; cargo takes a missing watched path as changed, so every `cargo build`
/// rebuilt the crate (and with fat LTO, the whole release binary: 8-10 minutes).
#[test]
fn every_path_the_build_script_watches_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = build_script_output();
    let watched: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("cargo:rerun-if-changed="))
        .collect();
    assert!(
        watched.iter().any(|p| p.ends_with("dashboard.js")),
        "the build script's output should list the dashboard's files:\n{output}"
    );
    let missing: Vec<&&str> = watched.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "build.rs watches paths that do not exist (cargo rebuilds every time): {missing:?}"
    );
}
