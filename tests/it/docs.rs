//! The docs hold together: every relative link in README.md and docs/ names a file that
//! exists and, with `#anchor`, a heading of it (GitHub's anchors). Regression for
//! `docs/operations.md#what-costs-memory` (the heading was "9. What costs memory").

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings (outside code blocks), duplicates numbered.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        // Inline code and links keep their text.
        let plain = heading.replace('`', "");
        let base = slug(&plain);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// `(line, target)` of every markdown link `[text](target)` outside code blocks and spans.
fn links(text: &str) -> Vec<(usize, String)> {
    let re = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut out = Vec::new();
    let mut in_code = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop inline code spans.
        let mut plain = String::new();
        for (k, part) in line.split('`').enumerate() {
            if k % 2 == 0 {
                plain.push_str(part);
            }
        }
        for cap in re.captures_iter(&plain) {
            out.push((i + 1, cap[1].to_string()));
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["README.md", "RELIABILITY.md", "BENCHMARKS.md"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    for dir in ["docs", "tests/corpus", "tests/data"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "md") {
                files.push(e.path());
            }
        }
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let shown = format!("{}:{line}: {target}", file.strip_prefix(root).unwrap().display());
            if !dest.exists() {
                broken.push(format!("{shown} (no such file)"));
                continue;
            }
            if !anchor.is_empty() && dest.extension().is_some_and(|x| x == "md") {
                let heads = anchors(&std::fs::read_to_string(&dest).unwrap());
                if !heads.contains(anchor) {
                    broken.push(format!("{shown} (no heading with that anchor)"));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} links found: is the parser right?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_anchor_rule_matches_githubs() {
    assert_eq!(slug(" 9. What costs memory"), "9-what-costs-memory");
    assert_eq!(slug(" Actions: http"), "actions-http");
    assert_eq!(slug(" What validate checks"), "what-validate-checks");
    assert_eq!(slug(" Sequences: waits and exits"), "sequences-waits-and-exits");
}

/// Regression: the unit said to install an `env.example` the repository did not have. Every
/// `deploy/…` file the docs and the deploy files name exists.
#[test]
fn every_deploy_file_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let re = regex::Regex::new(r"deploy/[A-Za-z0-9_.-]+[A-Za-z0-9_]").unwrap();
    let mut texts = vec![root.join("README.md")];
    for dir in ["docs", "deploy"] {
        texts.extend(
            std::fs::read_dir(root.join(dir))
                .unwrap()
                .flatten()
                .map(|e| e.path()),
        );
    }
    let mut missing = Vec::new();
    for file in texts.iter().filter(|p| p.is_file()) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for m in re.find_iter(&text) {
            if !root.join(m.as_str()).exists() {
                missing.push(format!("{}: {}", file.display(), m.as_str()));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

/// Regression: README's Development tree named files that had moved (`compile.rs`,
/// `template.rs`) and left out others. Every entry directly under `src/` is in the tree, and
/// every `src/` entry the tree names exists.
#[test]
fn readmes_tree_of_src_matches_the_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme.find("```text\nsrc/\n").expect("README's Development tree");
    let tree = &readme[start..start + readme[start..].find("\n```\n").unwrap()];
    // Names at the tree's first level under src/ (two spaces in), split at commas.
    let mut named = HashSet::new();
    for line in tree
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
    {
        let first = line.trim().split("  ").next().unwrap();
        for n in first.split(',') {
            named.insert(n.trim().trim_end_matches('/').to_string());
        }
    }
    let mut missing = Vec::new();
    for e in std::fs::read_dir(root.join("src")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !named.contains(name.trim_end_matches('/')) {
            missing.push(name);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "src/ entries README's tree leaves out: {missing:?}"
    );
    let stale: Vec<&String> = named
        .iter()
        .filter(|n| !root.join("src").join(n).exists())
        .collect();
    assert!(
        stale.is_empty(),
        "README's tree names what src/ does not have: {stale:?}"
    );
}
