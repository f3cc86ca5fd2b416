//! Strict rendering: an undefined name fails the render wherever it is used.
//!
//! minijinja's strict mode already refuses to print, iterate, compare or test the truth of an
//! undefined value. A few builtin filters, though, take any value and quietly turn undefined
//! into `null` or `""`: `tojson` (behind every lone `{{ expression }}` of a JSON body, so a
//! typo would ship `"email": null`), `urlencode`, `escape`, `indent`, `pprint`, `chain` and
//! `zip`; and a list or map literal can carry an undefined element into output. This module
//! replaces those filters with versions that first check their input (nested values too), and
//! gives the formatter the same check.
//!
//! The check raises minijinja's own undefined error through [`StringInput::new`], so the
//! engine attaches the expression that produced the value (``"`vars.emial` is undefined"``)
//! and its span, exactly as for a printed undefined name.

use minijinja::value::{Rest, StringInput, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, filters};

/// Fails with minijinja's undefined error if `v` is undefined or holds an undefined value in
/// a list or map (at any depth).
pub fn defined(state: &State, v: &Value) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined => {
            // Raises the undefined error (with the value's origin) in strict mode.
            StringInput::new(state, v)?;
            Err(Error::new(ErrorKind::UndefinedError, "undefined value"))
        }
        ValueKind::Seq => {
            for item in v.try_iter()? {
                defined(state, &item)?;
            }
            Ok(())
        }
        ValueKind::Map => {
            for key in v.try_iter()? {
                defined(state, &v.get_item(&key)?)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Replaces the builtin filters that would let an undefined value through by the same
/// filter behind a check of every argument.
pub fn install(env: &mut Environment<'static>) {
    let builtins = [
        ("tojson", Value::from_function(filters::tojson)),
        ("urlencode", Value::from_function(filters::urlencode)),
        ("pprint", Value::from_function(filters::pprint)),
        ("escape", Value::from_function(filters::escape)),
        ("e", Value::from_function(filters::escape)),
        ("indent", Value::from_function(filters::indent)),
        ("chain", Value::from_function(filters::chain)),
        ("zip", Value::from_function(filters::zip)),
        // These refuse undefined already, but without naming it.
        ("abs", Value::from_function(filters::abs)),
        ("dictsort", Value::from_function(filters::dictsort)),
        ("format", Value::from_function(filters::format)),
        ("lines", Value::from_function(filters::lines)),
        ("list", Value::from_function(filters::list)),
        ("max", Value::from_function(filters::max)),
        ("min", Value::from_function(filters::min)),
        ("round", Value::from_function(filters::round)),
        ("sort", Value::from_function(filters::sort)),
        ("split", Value::from_function(filters::split)),
    ];
    for (name, builtin) in builtins {
        env.add_filter(name, move |state: &mut State, v: Value, rest: Rest<Value>| {
            let args: Vec<Value> = std::iter::once(v).chain(rest.0).collect();
            args.iter().try_for_each(|a| defined(state, a))?;
            builtin.call(state, &args)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Templates, to_value};
    use serde_json::json;

    fn render(src: &str) -> Result<String, String> {
        let mut t = Templates::new();
        t.add("t".into(), src.into()).map_err(|e| e.message)?;
        let ctx = to_value(&json!({"vars": {"email": "a@b", "list": [1], "none": null}}));
        t.render("t", &ctx).map_err(|e| e.to_string())
    }

    /// Every builtin filter and ours, given an undefined name, fails naming it; only the
    /// filters whose purpose is to replace undefined (`default`, `d`) do not.
    #[test]
    fn no_filter_lets_an_undefined_name_through() {
        let all = "abs attr batch bool capitalize chain count dictsort e escape first float format \
                   groupby indent int items join json last length lines list lower map max min \
                   pprint reject rejectattr replace reverse round safe select selectattr slice \
                   sort split string sum title tojson trim unique upper urlencode zip b64encode";
        let args = |f: &str| match f {
            "attr" | "groupby" | "rejectattr" | "selectattr" => "('x')",
            "batch" | "slice" => "(2)",
            "join" => "(',')",
            "map" => "('upper')",
            "replace" => "('a', 'b')",
            _ => "",
        };
        let unnamed: Vec<String> = all
            .split_whitespace()
            .filter_map(
                |f| match render(&format!("{{{{ vars.emial | {f}{} }}}}", args(f))) {
                    Err(e) if e.contains("`vars.emial` is undefined") => None,
                    other => Some(format!("{f}: {other:?}")),
                },
            )
            .collect();
        assert!(unnamed.is_empty(), "{unnamed:#?}");
        assert_eq!(render("{{ vars.emial | default('x') }}").unwrap(), "x");
        assert_eq!(render("{{ vars.emial | d('y') }}").unwrap(), "y");
    }

    #[test]
    fn undefined_inside_lists_and_maps_is_refused() {
        for src in [
            "{{ [vars.emial] | tojson }}",
            "{{ {'a': [1, vars.emial]} | tojson }}",
            "{{ {'a': vars.emial} }}",
            "{{ [vars.emial] }}",
            "{% set x = vars.emial %}{{ x | tojson }}",
            "{{ vars.list | chain(vars.emial) | list }}",
        ] {
            let err = render(src).expect_err(src);
            assert!(err.contains("vars.emial"), "{src}: {err}");
        }
    }

    #[test]
    fn defined_values_still_render() {
        assert_eq!(render("{{ vars.none | tojson }}").unwrap(), "null");
        assert_eq!(
            render("{{ [vars.email, vars.none] | tojson }}").unwrap(),
            r#"["a@b", null]"#
        );
        assert_eq!(render("{{ vars.email | urlencode }}").unwrap(), "a%40b");
        assert_eq!(
            render("{{ vars.list | zip([2]) | list | tojson }}").unwrap(),
            "[[1, 2]]"
        );
        assert_eq!(render("{{ 'x\ny' | indent(2) }}").unwrap(), "x\n  y");
        assert_eq!(render("{{ vars.emial is defined }}").unwrap(), "false");
    }
}
