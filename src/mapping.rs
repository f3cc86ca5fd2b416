//! Mapping: JSONPath (RFC 9535, `jsonpath-rust`) compiled once at load, and the flow's `vars`
//! evaluated against an incoming request.
//!
//! A var's path decides its shape: a *singular* path (only names and indexes, e.g.
//! `$.billing.email`) yields one value or nothing; any other path (wildcards, slices, filters,
//! descendants, unions) yields a list, possibly empty. That way a template never has to guess
//! whether `vars.items` is a list.

use std::fmt;

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use serde_json::{Map, Value};

use crate::request::Request;

/// A parsed JSONPath query.
#[derive(Clone)]
pub struct JsonPath {
    text: String,
    query: JpQuery,
    singular: bool,
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonPath({})", self.text)
    }
}

/// The JSONPath parser's report (a multi-line picture naming grammar rules such as
/// `jp_query`) as one line a person can act on: where in the path, and what was expected.
fn path_error(text: &str, raw: &str) -> String {
    let t = text.trim();
    if !t.starts_with('$') {
        let fixed = if t.starts_with('[') || t.starts_with('.') {
            format!("${t}")
        } else {
            format!("$.{t}")
        };
        return format!("a JSONPath starts with `$`, the root of the body: write `{fixed}`");
    }
    let column = raw
        .split(" --> ")
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.split(':').nth(1))
        .and_then(|c| c.parse::<usize>().ok());
    let expected = raw.lines().find_map(|l| l.trim().strip_prefix("= ")).map(|e| {
        e.replace("jp_query", "`$`")
            .replace(
                "selector",
                "a selector (a 'name', `*`, an index, a slice or a `?` filter)",
            )
            .replace('_', " ")
    });
    match (column, expected) {
        (Some(c), Some(e)) => format!("at character {c}: {e}"),
        (None, Some(e)) => e,
        _ => raw.lines().next().unwrap_or(raw).to_string(),
    }
}

impl JsonPath {
    /// Parses `text`; the error says in words what is wrong and where, meant to be shown with
    /// file and line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let query =
            jsonpath_rust::parser::parse_json_path(text).map_err(|e| path_error(text, &e.to_string()))?;
        let singular = query.segments.iter().all(|s| {
            matches!(
                s,
                Segment::Selector(Selector::Name(_)) | Segment::Selector(Selector::Index(_))
            )
        });
        Ok(JsonPath {
            text: text.to_string(),
            query,
            singular,
        })
    }

    /// The source text, for messages.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the path can select at most one value.
    pub fn is_singular(&self) -> bool {
        self.singular
    }

    /// Every value the path selects in `doc`, in document order.
    pub fn select<'a>(&self, doc: &'a Value) -> Vec<&'a Value> {
        match jsonpath_rust::query::js_path_process(&self.query, doc) {
            Ok(found) => found.into_iter().map(|r| r.val).collect(),
            // Evaluation errors only arise from malformed queries, which `parse` rejects; treat
            // anything else as "nothing selected" rather than failing the request.
            Err(_) => Vec::new(),
        }
    }
}

impl JsonPath {
    /// Replaces every value the path selects in `doc` with `[redacted]`; returns how many.
    pub fn redact(&self, doc: &mut Value) -> usize {
        use jsonpath_rust::query::queryable::Queryable;
        let paths: Vec<String> = match jsonpath_rust::query::js_path_process(&self.query, &*doc) {
            Ok(found) => found.into_iter().map(|r| r.path).collect(),
            Err(_) => return 0,
        };
        let mut n = 0;
        for p in paths {
            if let Some(v) = doc.reference_mut(p.as_str()) {
                *v = Value::String("[redacted]".into());
                n += 1;
            }
        }
        n
    }
}

/// Where a var takes its value from.
#[derive(Debug, Clone)]
pub enum VarSource {
    Body(JsonPath),
    Header(String),
    Query(String),
}

/// A compiled entry of the flow's `vars`.
#[derive(Debug, Clone)]
pub struct Var {
    pub name: String,
    pub source: VarSource,
    pub required: bool,
    pub default: Option<Value>,
}

/// Why mapping refused an event; answered with 422.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MappingError {
    #[error("required var `{name}` is missing: {source_desc} selected nothing")]
    MissingRequired { name: String, source_desc: String },
}

impl Var {
    fn describe(&self) -> String {
        match &self.source {
            VarSource::Body(p) => format!("path `{}`", p.as_str()),
            VarSource::Header(h) => format!("header `{h}`"),
            VarSource::Query(q) => format!("query parameter `{q}`"),
        }
    }

    /// The var's value for `req`: `None` when absent with no default and not required.
    pub fn evaluate(&self, req: &Request) -> Result<Option<Value>, MappingError> {
        let found: Option<Value> = match &self.source {
            VarSource::Body(path) => {
                let hits = path.select(&req.body);
                if path.is_singular() {
                    hits.first().map(|v| (*v).clone())
                } else if hits.is_empty() {
                    None
                } else {
                    Some(Value::Array(hits.into_iter().cloned().collect()))
                }
            }
            VarSource::Header(h) => req.header(h).map(|v| Value::String(v.to_string())),
            VarSource::Query(q) => req.query.get(q).map(|v| Value::String(v.clone())),
        };
        match found {
            Some(v) => Ok(Some(v)),
            None if self.default.is_some() => Ok(self.default.clone()),
            None if self.required => Err(MappingError::MissingRequired {
                name: self.name.clone(),
                source_desc: self.describe(),
            }),
            // A multi-match path that found nothing is an empty list, not an absence.
            None => Ok(match &self.source {
                VarSource::Body(p) if !p.is_singular() => Some(Value::Array(Vec::new())),
                _ => Some(Value::Null),
            }),
        }
    }
}

/// Evaluates every var. Returns what could be mapped and, separately, the first missing
/// required var: the trigger's conditions are checked first (an event that does not match is
/// ignored, not refused), and only a matching event is refused for a missing var.
pub fn map_vars(vars: &[Var], req: &Request) -> (Map<String, Value>, Option<MappingError>) {
    let mut out = Map::new();
    let mut first_error = None;
    for var in vars {
        match var.evaluate(req) {
            Ok(Some(v)) => {
                out.insert(var.name.clone(), v);
            }
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    (out, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_by_path() {
        let mut doc = serde_json::json!({"card": {"number": "4111", "exp": "12/30"}, "items": [{"pin": 1}, {"pin": 2}]});
        assert_eq!(JsonPath::parse("$.card.number").unwrap().redact(&mut doc), 1);
        assert_eq!(JsonPath::parse("$.items[*].pin").unwrap().redact(&mut doc), 2);
        assert_eq!(JsonPath::parse("$.absent").unwrap().redact(&mut doc), 0);
        assert_eq!(
            doc,
            serde_json::json!({"card": {"number": "[redacted]", "exp": "12/30"}, "items": [{"pin": "[redacted]"}, {"pin": "[redacted]"}]})
        );
    }
    use serde_json::json;

    fn req(body: Value) -> Request {
        Request {
            body,
            ..Request::default()
        }
    }

    fn var(name: &str, path: &str) -> Var {
        Var {
            name: name.into(),
            source: VarSource::Body(JsonPath::parse(path).unwrap()),
            required: false,
            default: None,
        }
    }

    #[test]
    fn singular_paths_yield_one_value_and_others_a_list() {
        let r = req(json!({"id": 7, "items": [{"sku": "a"}, {"sku": "b"}]}));
        assert_eq!(var("id", "$.id").evaluate(&r).unwrap(), Some(json!(7)));
        assert_eq!(
            var("skus", "$.items[*].sku").evaluate(&r).unwrap(),
            Some(json!(["a", "b"]))
        );
        assert_eq!(
            var("first", "$.items[0].sku").evaluate(&r).unwrap(),
            Some(json!("a"))
        );
        assert_eq!(
            var("cheap", "$.items[?@.sku == 'b'].sku").evaluate(&r).unwrap(),
            Some(json!(["b"]))
        );
        assert_eq!(var("none", "$.nothing[*]").evaluate(&r).unwrap(), Some(json!([])));
        assert_eq!(var("gone", "$.gone").evaluate(&r).unwrap(), Some(Value::Null));
    }

    #[test]
    fn required_and_default() {
        let r = req(json!({"a": 1}));
        let mut v = var("email", "$.billing.email");
        v.required = true;
        let err = v.evaluate(&r).unwrap_err();
        assert!(err.to_string().contains("`email`"), "{err}");
        assert!(err.to_string().contains("$.billing.email"), "{err}");
        v.default = Some(json!("nobody@example.com"));
        assert_eq!(v.evaluate(&r).unwrap(), Some(json!("nobody@example.com")));
    }

    #[test]
    fn headers_and_query_are_sources() {
        let mut r = req(json!({}));
        r.headers
            .insert("x-wc-webhook-topic".into(), "order.created".into());
        r.query.insert("mode".into(), "test".into());
        let h = Var {
            name: "topic".into(),
            source: VarSource::Header("X-WC-Webhook-Topic".into()),
            required: true,
            default: None,
        };
        assert_eq!(h.evaluate(&r).unwrap(), Some(json!("order.created")));
        let q = Var {
            name: "mode".into(),
            source: VarSource::Query("mode".into()),
            required: true,
            default: None,
        };
        assert_eq!(q.evaluate(&r).unwrap(), Some(json!("test")));
    }

    #[test]
    fn invalid_paths_are_refused_at_parse() {
        assert!(JsonPath::parse("$.items[").is_err());
        assert!(JsonPath::parse("items").is_err());
        assert!(JsonPath::parse("$.a.b").unwrap().is_singular());
        assert!(!JsonPath::parse("$..b").unwrap().is_singular());
    }

    #[test]
    fn path_errors_are_one_line_in_words() {
        let no_root = JsonPath::parse("email.address").unwrap_err();
        assert_eq!(
            no_root,
            "a JSONPath starts with `$`, the root of the body: write `$.email.address`"
        );
        assert!(JsonPath::parse("[0].id").unwrap_err().contains("write `$[0].id`"));
        let open = JsonPath::parse("$.items[").unwrap_err();
        assert!(
            open.starts_with("at character 9: expected a selector") && !open.contains('\n'),
            "{open}"
        );
        assert!(!open.contains("jp_query"), "{open}");
    }

    #[test]
    fn singular_paths_are_told_apart() {
        assert!(JsonPath::parse("$.a.b").unwrap().is_singular());
        assert!(!JsonPath::parse("$..b").unwrap().is_singular());
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Random JSONPath texts parse or are refused; what parses evaluates on any document.
    #[test]
    fn random_paths_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let pieces = [
            "$", ".", "..", "a", "[", "]", "*", "0", "-1", ":", "?", "@", "==", "'b'", ",", "(", ")",
            "length", "&&", " ",
        ];
        let doc = serde_json::json!({"a": [{"b": 1}, {"b": "x"}, null], "b": {"a": true}});
        for _ in 0..5000 {
            let text: String = (0..rng.random_range(1..10))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            if let Ok(p) = JsonPath::parse(&text) {
                let _ = p.select(&doc);
            }
        }
    }
}
