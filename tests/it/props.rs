//! Property tests: what a hostile or merely unusual sender can put in a body, a header or a
//! flow file, generated instead of listed. Each property runs `PROPTEST_CASES` cases (64 by
//! default, a short run for CI; `PROPTEST_CASES=20000 cargo test --test it props` for a long
//! one). A failure proptest finds is written to `proptest-regressions/` and, committed, is
//! replayed first on every later run.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use hookflow::matching::loose_eq;
use hookflow::request::{BodyMode, parse_body};
use hookflow::template::{Templates, to_value};
use hookflow::verify::{self, Headers, Scheme, Target};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

/// Any JSON document: nested objects and arrays of strings (any Unicode), numbers (integers
/// and finite floats), booleans and nulls.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

struct H(BTreeMap<String, String>);
impl Headers for H {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

const PRESETS: [&str; 6] = [
    "github",
    "stripe",
    "shopify",
    "woocommerce",
    "slack",
    "standard-webhooks",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Every body decoder answers arbitrary bytes with a value or an error, never a panic;
    /// the text mode keeps valid UTF-8 exactly.
    #[test]
    fn body_decoders_take_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), ct in prop_oneof![
        Just(None), Just(Some("application/json")), Just(Some("application/x-www-form-urlencoded")),
        Just(Some("text/xml")), Just(Some("application/xml; charset=utf-8")), Just(Some("text/plain")),
        ".{0,30}".prop_map(|s| Some(Box::leak(s.into_boxed_str()) as &str)),
    ]) {
        for mode in [BodyMode::Auto, BodyMode::Json, BodyMode::Form, BodyMode::Xml, BodyMode::Text] {
            let _ = parse_body(mode, ct, &bytes);
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            prop_assert_eq!(parse_body(BodyMode::Text, ct, &bytes), Ok(Value::String(text.to_string())));
        }
        let _ = hookflow::xml::to_json(&bytes);
    }

    /// A form body decodes to the fields that were encoded, whatever their characters.
    #[test]
    fn form_bodies_decode_to_their_fields(fields in prop::collection::btree_map("[^\\[\\]]{1,10}", ".{0,20}", 1..6)) {
        let body = serde_urlencoded::to_string(&fields).unwrap();
        let got = parse_body(BodyMode::Form, Some("application/x-www-form-urlencoded"), body.as_bytes()).unwrap();
        let obj = got.as_object().expect("an object");
        for (k, v) in &fields {
            prop_assert_eq!(obj.get(k).and_then(Value::as_str), Some(v.as_str()), "field {:?} of {}", k, body);
        }
    }

    /// Any JSON body survives the JSON decoder unchanged.
    #[test]
    fn json_bodies_decode_to_themselves(doc in json_value()) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        prop_assert_eq!(parse_body(BodyMode::Json, Some("application/json"), &bytes).unwrap(), doc);
    }

    /// A signature made for a body verifies for that body and secret only: for every preset,
    /// any body, any secret; one changed byte, or another secret, is refused.
    #[test]
    fn signatures_verify_for_their_body_and_secret_only(
        body in prop::collection::vec(any::<u8>(), 0..300),
        secret in "[ -~]{8,40}",
        other in "[ -~]{8,40}",
        flip in any::<prop::sample::Index>(),
    ) {
        let now = 1_790_000_000;
        for name in PRESETS {
            let scheme = Scheme::preset(name).unwrap();
            let key = verify::key_bytes(&scheme, &secret);
            let headers = H(verify::sign(&scheme, &Target::default(), &key, "msg_1", now, &body)
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect());
            let tolerance = Duration::from_secs(300);
            prop_assert!(verify::verify(&scheme, &Target::default(), &headers, &body, now, tolerance, std::slice::from_ref(&key)).is_ok(), "{name}");
            if !body.is_empty() {
                let mut changed = body.clone();
                changed[flip.index(body.len())] ^= 0x01;
                prop_assert!(verify::verify(&scheme, &Target::default(), &headers, &changed, now, tolerance, std::slice::from_ref(&key)).is_err(), "{name}: changed body");
            }
            if other != secret {
                let wrong = verify::key_bytes(&scheme, &other);
                prop_assert!(verify::verify(&scheme, &Target::default(), &headers, &body, now, tolerance, &[wrong]).is_err(), "{name}: other secret");
            }
        }
    }

    /// Arbitrary signature headers — any names' values, repeated prefixes, odd encodings — are
    /// refused, never a panic, for every preset.
    #[test]
    fn arbitrary_signature_headers_are_refused(values in prop::collection::vec(".{0,120}", 6), body in prop::collection::vec(any::<u8>(), 0..100)) {
        for name in PRESETS {
            let scheme = Scheme::preset(name).unwrap();
            let mut names = scheme.signature_headers();
            names.extend(["x-slack-request-timestamp", "stripe-signature", "webhook-timestamp", "webhook-id", "svix-timestamp"].map(String::from));
            let headers = H(names.into_iter().zip(values.iter().cycle()).map(|(n, v)| (n, v.clone())).collect());
            let key = verify::key_bytes(&scheme, "a-secret-0123456789");
            prop_assert!(verify::verify(&scheme, &Target::default(), &headers, &body, 1_790_000_000, Duration::from_secs(300), &[key]).is_err(), "{name}");
        }
    }

    /// `loose_eq`, which conditions compare with, is symmetric and reflexive over any JSON.
    #[test]
    fn condition_equality_is_symmetric_and_reflexive(a in json_value(), b in json_value()) {
        prop_assert_eq!(loose_eq(&a, &b), loose_eq(&b, &a));
        prop_assert!(loose_eq(&a, &a));
    }

    /// A template renders any JSON it is given: `tojson` of a mapped value is that value.
    #[test]
    fn templates_render_any_json(doc in json_value()) {
        let mut t = Templates::new();
        t.add("p".into(), "{{ vars.doc | tojson }}".into()).unwrap();
        t.seal();
        let ctx = to_value(&json!({ "vars": { "doc": doc } }));
        let out = t.render("p", &ctx).unwrap();
        prop_assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), doc);
    }

    /// A flow file cut, spliced or salted anywhere loads or fails with errors that name the
    /// file — never a panic — and an error that names a line names one inside the file.
    #[test]
    fn damaged_flow_files_give_errors_not_panics(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        len in 0usize..40,
        insert in "[ -~\\n\\t:{}\\[\\]-]{0,20}",
    ) {
        let files = shipped_flows();
        let (name, source) = &files[which.index(files.len())];
        let cut = at.index(source.len().max(1)).min(source.len());
        let mut broken: String = source.chars().take(cut).collect();
        broken.push_str(&insert);
        broken.extend(source.chars().skip(cut + len));
        let lines = broken.lines().count().max(1) + 1;
        if let Err(errors) = hookflow::flow::load::load_source(name, &broken, std::path::Path::new("templates")) {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(e.line.is_none_or(|l| l >= 1 && l <= lines), "{e} (of {lines} lines)");
            }
        }
    }
}

fn shipped_flows() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/flows")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    out.sort();
    out
}

/// Found by `json_bodies_decode_to_themselves`: without serde_json's `float_roundtrip`, a
/// number such as this one was parsed one unit in the last place off, so a flow forwarded a
/// different number than it received.
#[test]
fn a_float_in_a_body_is_kept_to_the_last_digit() {
    for text in [
        "7.27164505832316e-271",
        "54.80",
        "0.1",
        "1.7976931348623157e308",
        "5e-324",
    ] {
        let got = parse_body(
            BodyMode::Json,
            Some("application/json"),
            format!("{{\"x\":{text}}}").as_bytes(),
        )
        .unwrap();
        let want: f64 = text.parse().unwrap();
        assert_eq!(got["x"].as_f64(), Some(want), "{text}");
    }
}
