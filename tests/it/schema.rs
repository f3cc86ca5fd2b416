//! The JSON Schema of the flow format: current in docs/flow.schema.json, valid for every shipped
//! flow, and strict where the loader is (unknown keys, a missing trigger).

use std::path::Path;

fn schema() -> jsonschema::Validator {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("docs/flow.schema.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&value).expect("a valid JSON Schema")
}

fn yaml(src: &str) -> serde_json::Value {
    serde_yaml::from_str(src).unwrap()
}

#[test]
fn the_committed_schema_is_what_the_binary_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = crate::cli::hookflow(&["schema"], root);
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/flow.schema.json")).unwrap()).unwrap();
    assert_eq!(
        printed, committed,
        "run `hookflow schema > docs/flow.schema.json`"
    );
}

#[test]
fn shipped_flows_validate_and_broken_ones_do_not() {
    let v = schema();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for e in std::fs::read_dir(root.join("flows")).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let doc = yaml(&std::fs::read_to_string(&p).unwrap());
            let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", p.display());
            n += 1;
        }
    }
    assert!(n >= 8);
    for broken in [
        "on:\n  webhook: {}\nactions:\n  - http:\n      url: http://x\n      bdy: '{}'\n",
        "actions:\n  - http: { url: http://x }\n",
        "on:\n  webhook: {}\nactions:\n  - http: { url: http://x }\n    retry: { max_attempts: many }\n",
        "on:\n  schedule: { cron: '0 8 * * *', missed: sometimes }\nactions: []\n",
    ] {
        assert!(!v.is_valid(&yaml(broken)), "accepted: {broken}");
    }
    // The short forms the loader accepts are accepted too.
    for ok in [
        "on:\n  webhook:\nactions:\n  - http: { url: http://x }\n",
        "on:\n  event: segment.removed\nvars:\n  email: $.data.contact.email\nactions:\n  - emit: { type: a.b }\n",
    ] {
        let errors: Vec<String> = v.iter_errors(&yaml(ok)).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{ok}: {errors:?}");
    }
}
