//! The corpus of broken flows (`tests/corpus/`, see its README): every file is reported by the
//! real `hookflow validate` with exactly the problems it expects — file, line, key path and the
//! fix — in one run over the whole folder.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

#[test]
fn every_broken_flow_is_reported_at_its_line_with_its_fix_and_nothing_else() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let (flows, templates) = (root.join("flows"), root.join("templates"));
    let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .arg("validate")
        .arg(&flows)
        .arg("--templates")
        .arg(&templates)
        .env("HOOKFLOW_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Problems by the file they are reported in.
    let mut reported: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for line in stderr.lines() {
        if let Some((file, _)) = line.split_once(':') {
            reported.entry(file.to_string()).or_default().push(line);
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(&flows)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 100, "the corpus has {} files", files.len());
    let mut wrong = Vec::new();
    for file in &files {
        let shown = file.display().to_string();
        let source = std::fs::read_to_string(file).unwrap();
        let expected: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(!expected.is_empty(), "{shown} expects nothing");
        let here = reported.get(&shown).cloned().unwrap_or_default();
        let mut in_file = 0;
        for e in &expected {
            let (at, fix) = e.split_once(" | ").unwrap_or((e, ""));
            let found = if let Some(t) = at.strip_prefix("templates/") {
                // In a template file: at its line, naming this flow file.
                let prefix = format!("{}:", templates.join(t).display());
                stderr
                    .lines()
                    .any(|l| l.starts_with(&prefix) && l.contains(fix) && l.contains(&shown))
            } else {
                in_file += 1;
                let (line, path) = at.split_once(' ').unwrap_or((at, "-"));
                let prefix = match path {
                    "-" => format!("{shown}:{line}: "),
                    path => format!("{shown}:{line}: {path}: "),
                };
                here.iter().any(|l| l.starts_with(&prefix) && l.contains(fix))
            };
            if !found {
                wrong.push(format!("{shown}: no `{e}` in:\n    {}", here.join("\n    ")));
            }
        }
        if here.len() != in_file {
            wrong.push(format!(
                "{shown}: {} problem(s) reported, {in_file} expected:\n    {}",
                here.len(),
                here.join("\n    ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n\n{} of {} files wrong",
        wrong.join("\n"),
        wrong.len(),
        files.len()
    );
    assert!(stderr.contains("; 0 flow(s) valid"), "{stderr}");
}
