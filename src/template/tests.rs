//! Rendering rules, filters, escaping, JSON bodies, secrets, and mangled input.

mod unit {
    use super::super::*;
    use serde_json::json;

    fn ctx() -> JValue {
        to_value(&json!({"vars": {"name": "Ada & co", "total": 49.9, "tags": ["a", "b"], "nothing": null}}))
    }

    #[test]
    fn undefined_names_are_errors() {
        let mut t = Templates::new();
        t.add("t".into(), "Hi {{ vars.nmae }}".into()).unwrap();
        let err = t.render("t", &ctx()).unwrap_err();
        assert!(err.to_string().contains("undefined"), "{err}");
        t.add(
            "d".into(),
            "{{ vars.nmae | default('x') }}|{{ vars.nmae is defined }}".into(),
        )
        .unwrap();
        assert_eq!(t.render("d", &ctx()).unwrap(), "x|false");
    }

    #[test]
    fn filters_and_none() {
        let mut t = Templates::new();
        t.add(
            "t".into(),
            "{{ vars.name | urlencode }}|{{ vars.tags | tojson }}|{{ vars.name | json }}|[{{ vars.nothing }}]|{{ 'u:p' | b64encode }}"
                .into(),
        )
        .unwrap();
        assert_eq!(
            t.render("t", &ctx()).unwrap(),
            r#"Ada%20%26%20co|["a", "b"]|"Ada & co"|[]|dTpw"#
        );
    }

    #[test]
    fn html_files_escape_others_do_not() {
        let mut t = Templates::new();
        t.add("a.html".into(), "{{ vars.name }}".into()).unwrap();
        t.add("a.txt".into(), "{{ vars.name }}".into()).unwrap();
        assert_eq!(t.render("a.html", &ctx()).unwrap(), "Ada &amp; co");
        assert_eq!(t.render("a.txt", &ctx()).unwrap(), "Ada & co");
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let mut t = Templates::new();
        let e = t.add("x".into(), "line1\n{{ oops(".into()).unwrap_err();
        assert_eq!(e.line, Some(2), "{e:?}");
    }

    #[test]
    fn json_bodies_keep_types_of_single_expressions() {
        let mut t = Templates::new();
        let spec = json!({"total": "{{ vars.total }}", "label": "order {{ vars.total }}", "tags": "{{ vars.tags }}", "n": 3});
        let jt = JsonTemplate::compile(&spec, "body", &mut t).unwrap();
        assert_eq!(
            jt.render(&t, &ctx()).unwrap(),
            json!({"total": 49.9, "label": "order 49.9", "tags": ["a", "b"], "n": 3})
        );
    }

    #[test]
    fn secrets_are_collected_for_redaction() {
        let mut t = Templates::new();
        t.add(
            "s".into(),
            "{{ secret('SURELY_UNSET_SECRET_9', 'dev-pass') }}".into(),
        )
        .unwrap();
        assert_eq!(t.render("s", &ctx()).unwrap(), "dev-pass");
        assert_eq!(t.secret_values(), vec!["dev-pass".to_string()]);
    }

    #[test]
    fn env_refuses_reserved_names() {
        let mut t = Templates::new();
        t.add("t".into(), "{{ env('HOOKFLOW_SECRET') }}".into()).unwrap();
        assert!(t.render("t", &ctx()).is_err());
        t.add(
            "u".into(),
            "{{ env('HOOKFLOW_TEST_SURELY_UNSET_X', 'dflt') }}".into(),
        )
        .unwrap();
        assert!(t.render("u", &ctx()).is_err());
        t.add("v".into(), "{{ env('SURELY_UNSET_VAR_123', 'dflt') }}".into())
            .unwrap();
        assert_eq!(t.render("v", &ctx()).unwrap(), "dflt");
    }
}

mod robustness {
    use super::super::*;
    use rand::{Rng, SeedableRng};

    /// Mangled template sources either compile or report an error; rendering what compiles
    /// either succeeds or reports an error. Never a panic.
    #[test]
    fn mangled_templates_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let pieces = [
            "{{",
            "}}",
            "{%",
            "%}",
            " if ",
            " for x in ",
            " endfor ",
            "vars.",
            "name",
            "|",
            "json",
            "(",
            ")",
            "'",
            "\"",
            " ~ ",
            "1",
            "[0]",
            " is defined",
            "{#",
            "#}",
        ];
        let ctx = to_value(&serde_json::json!({"vars": {"name": "x", "list": [1, 2]}}));
        let mut t = Templates::new();
        for i in 0..3000 {
            let src: String = (0..rng.random_range(1..12))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            let name = format!("t{i}");
            if t.add(name.clone(), src).is_ok() {
                let _ = t.render(&name, &ctx);
            }
        }
    }
}
