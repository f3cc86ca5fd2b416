//! Conditions (`when:`) for triggers and actions: a source of values and operators that must
//! all hold. Evaluation is pure; the values come through [`Facts`].
//!
//! Semantics (documented in docs/flows.md): a source may select several values (a multi-match
//! JSONPath); `equals`, `one_of`, `matches` and the comparisons hold if *any* selected value
//! satisfies them, `not_equals` holds if *none* equals, `exists` asks whether anything was
//! selected. Comparisons read numeric strings as numbers, since many senders (WooCommerce)
//! send amounts as strings.

use serde_json::Value;

use crate::mapping::JsonPath;

/// One condition: a source (exactly one of `path`, `header`, `query`, `var`, `expr`) and one or
/// more operators, all of which must hold.
#[derive(Debug, serde::Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::flow::schema::condition)]
pub struct ConditionSpec {
    /// A JSONPath into the body, e.g. `$.order.status`.
    #[schemars(transform = crate::flow::schema::jsonpath)]
    pub path: Option<String>,
    /// A request header's name, e.g. `X-GitHub-Event`.
    pub header: Option<String>,
    /// A query parameter's name, e.g. `source`.
    pub query: Option<String>,
    /// A var of the flow's `vars`, e.g. `total`.
    pub var: Option<String>,
    /// A template expression, true or compared, e.g. `vars.total > 100 and vars.country == "DE"`.
    pub expr: Option<String>,
    /// The value must be this, e.g. `completed`.
    pub equals: Option<Value>,
    /// The value must not be this, e.g. `test`.
    pub not_equals: Option<Value>,
    /// The value must be one of these, e.g. `[completed, processing]`.
    pub one_of: Option<Vec<Value>>,
    /// The value must be present (`true`) or absent (`false`).
    pub exists: Option<bool>,
    /// A regular expression the value must match, e.g. `"@example\\.com$"`.
    pub matches: Option<String>,
    /// The value must be a number greater than this, e.g. `100`.
    pub gt: Option<f64>,
    /// The value must be a number at least this, e.g. `100`.
    pub gte: Option<f64>,
    /// The value must be a number less than this, e.g. `10`.
    pub lt: Option<f64>,
    /// The value must be a number at most this, e.g. `10`.
    pub lte: Option<f64>,
}

/// Where a condition takes its values from.
#[derive(Debug, Clone)]
pub enum Source {
    Body(JsonPath),
    Header(String),
    Query(String),
    Var(String),
    /// A stored template rendering `(expr) | tojson`.
    Expr(String),
}

#[derive(Debug, Clone)]
pub enum Op {
    Equals(Value),
    NotEquals(Value),
    OneOf(Vec<Value>),
    Exists(bool),
    Matches(regex::Regex),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    /// No operator given (only for `expr`): the value must be truthy.
    Truthy,
}

/// A compiled condition with a human label used when reporting why an event did not match.
#[derive(Debug, Clone)]
pub struct Condition {
    pub source: Source,
    pub ops: Vec<Op>,
    pub label: String,
}

/// What a condition can ask of the event it is checked against.
pub trait Facts {
    fn values(&self, source: &Source) -> Result<Vec<Value>, String>;
}

/// The result of checking a list of conditions.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Match,
    /// The label of the first condition that did not hold.
    NoMatch(String),
}

/// Checks every condition in order; the first that fails decides.
pub fn check_all(conds: &[Condition], facts: &dyn Facts) -> Result<Verdict, String> {
    for c in conds {
        if !c.holds(facts)? {
            return Ok(Verdict::NoMatch(c.label.clone()));
        }
    }
    Ok(Verdict::Match)
}

impl Condition {
    pub fn holds(&self, facts: &dyn Facts) -> Result<bool, String> {
        let values = facts
            .values(&self.source)
            .map_err(|e| format!("condition `{}`: {e}", self.label))?;
        Ok(self.ops.iter().all(|op| op_holds(op, &values)))
    }
}

fn op_holds(op: &Op, values: &[Value]) -> bool {
    match op {
        Op::Equals(want) => values.iter().any(|v| loose_eq(v, want)),
        Op::NotEquals(want) => !values.iter().any(|v| loose_eq(v, want)),
        Op::OneOf(wants) => values.iter().any(|v| wants.iter().any(|w| loose_eq(v, w))),
        Op::Exists(want) => values.is_empty() != *want,
        Op::Matches(re) => values
            .iter()
            .any(|v| scalar_text(v).is_some_and(|s| re.is_match(&s))),
        Op::Gt(n) => any_number(values, |x| x > *n),
        Op::Gte(n) => any_number(values, |x| x >= *n),
        Op::Lt(n) => any_number(values, |x| x < *n),
        Op::Lte(n) => any_number(values, |x| x <= *n),
        Op::Truthy => values.first().is_some_and(truthy),
    }
}

fn any_number(values: &[Value], f: impl Fn(f64) -> bool) -> bool {
    values.iter().filter_map(as_number).any(f)
}

/// A number, or a string holding one.
pub fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// JSON equality, except that a string equals a number or boolean with the same text
/// (`"49.90"` equals `49.9`, header `"true"` equals `true`).
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.trim().parse::<f64>().ok() == n.as_f64()
        }
        (Value::String(s), Value::Bool(x)) | (Value::Bool(x), Value::String(s)) => s.trim() == x.to_string(),
        _ => false,
    }
}

/// Jinja-like truthiness for JSON values.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Doc(Value);
    impl Facts for Doc {
        fn values(&self, source: &Source) -> Result<Vec<Value>, String> {
            match source {
                Source::Body(p) => Ok(p.select(&self.0).into_iter().cloned().collect()),
                Source::Header(h) if h == "x-topic" => Ok(vec![json!("order.created")]),
                Source::Header(_) | Source::Query(_) => Ok(vec![]),
                _ => Err("unsupported".into()),
            }
        }
    }

    fn cond(path: &str, ops: Vec<Op>) -> Condition {
        Condition {
            source: Source::Body(JsonPath::parse(path).unwrap()),
            ops,
            label: path.into(),
        }
    }

    fn doc() -> Doc {
        Doc(
            json!({"status": "processing", "total": "49.90", "qty": 3, "items": [{"sku": "A-1"}, {"sku": "B-2"}], "coupon": null}),
        )
    }

    #[test]
    fn each_operator() {
        let d = doc();
        let yes = |c: Condition| assert!(c.holds(&d).unwrap(), "{:?}", c.ops);
        let no = |c: Condition| assert!(!c.holds(&d).unwrap(), "{:?}", c.ops);
        yes(cond("$.status", vec![Op::Equals(json!("processing"))]));
        no(cond("$.status", vec![Op::Equals(json!("completed"))]));
        yes(cond("$.status", vec![Op::NotEquals(json!("completed"))]));
        yes(cond("$.missing", vec![Op::NotEquals(json!("x"))]));
        yes(cond(
            "$.status",
            vec![Op::OneOf(vec![json!("completed"), json!("processing")])],
        ));
        no(cond("$.status", vec![Op::OneOf(vec![json!("refunded")])]));
        yes(cond("$.coupon", vec![Op::Exists(true)]));
        yes(cond("$.missing", vec![Op::Exists(false)]));
        no(cond("$.missing", vec![Op::Exists(true)]));
        yes(cond(
            "$.items[*].sku",
            vec![Op::Matches(regex::Regex::new("^B-").unwrap())],
        ));
        no(cond(
            "$.items[*].sku",
            vec![Op::Matches(regex::Regex::new("^C-").unwrap())],
        ));
        yes(cond("$.total", vec![Op::Gt(40.0), Op::Lte(49.9)]));
        no(cond("$.total", vec![Op::Gt(49.9)]));
        yes(cond("$.qty", vec![Op::Gte(3.0), Op::Lt(4.0)]));
        no(cond("$.status", vec![Op::Gt(0.0)]));
        yes(cond("$.total", vec![Op::Equals(json!(49.9))]));
    }

    #[test]
    fn first_failing_condition_is_reported() {
        let d = doc();
        let conds = vec![
            cond("$.status", vec![Op::Equals(json!("processing"))]),
            cond("$.qty", vec![Op::Gt(10.0)]),
        ];
        assert_eq!(check_all(&conds, &d).unwrap(), Verdict::NoMatch("$.qty".into()));
        assert_eq!(check_all(&conds[..1], &d).unwrap(), Verdict::Match);
        let h = Condition {
            source: Source::Header("x-topic".into()),
            ops: vec![Op::Equals(json!("order.created"))],
            label: "h".into(),
        };
        assert!(h.holds(&d).unwrap());
    }

    #[test]
    fn loose_equality() {
        assert!(loose_eq(&json!("10"), &json!(10)));
        assert!(loose_eq(&json!(10), &json!(10.0)));
        assert!(loose_eq(&json!("true"), &json!(true)));
        assert!(!loose_eq(&json!("10"), &json!(11)));
        assert!(!loose_eq(&json!(null), &json!("")));
    }
}
