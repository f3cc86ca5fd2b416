//! An incoming webhook as hookflow sees it: method, headers, query and a body turned into a JSON
//! value. Body decoding is pure so it can be unit-tested without a server.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The request a run was started from, as stored on the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Request {
    pub method: String,
    /// Header names lowercased; repeated headers joined with `, ` (RFC 9110 §5.3).
    pub headers: BTreeMap<String, String>,
    /// Query parameters; for a repeated name the first value wins.
    pub query: BTreeMap<String, String>,
    pub body: Value,
}

impl Request {
    /// Case-insensitive header lookup.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// How a flow reads its webhook bodies (`body:` in the flow file): `auto` (by content type),
/// `json`, `form`, `xml` or `text`.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyMode {
    #[default]
    Auto,
    Json,
    Form,
    Xml,
    Text,
}

/// Why a body was refused; each maps to one HTTP status at the edge.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BodyError {
    #[error("unsupported content type `{0}`: this flow accepts {1}")]
    UnsupportedType(String, &'static str),
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    #[error("malformed form body: {0}")]
    MalformedForm(String),
    #[error("malformed gzip body: {0}")]
    MalformedGzip(String),
    #[error("malformed XML body: {0}")]
    MalformedXml(String),
    #[error("unsupported content encoding `{0}`: gzip or identity")]
    UnsupportedEncoding(String),
    #[error("body exceeds the limit of {0} bytes once decompressed")]
    TooLarge(usize),
    #[error("body is not valid UTF-8")]
    NotUtf8,
}

#[derive(PartialEq)]
enum Kind {
    Json,
    Form,
    Xml,
}

fn kind_of(content_type: &str) -> Option<Kind> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Some(Kind::Json)
    } else if essence == "application/x-www-form-urlencoded" {
        Some(Kind::Form)
    } else if essence == "application/xml" || essence == "text/xml" || essence.ends_with("+xml") {
        Some(Kind::Xml)
    } else {
        None
    }
}

/// Decodes a body according to the flow's [`BodyMode`] and the request's content type.
///
/// An empty body without a content type is `null` (a `GET` handshake or a bodiless ping has
/// none). An empty body that claims a type is decoded like any other: empty JSON or XML is
/// malformed (`400`, as any other unparsable body), an empty form is `{}`.
pub fn parse_body(mode: BodyMode, content_type: Option<&str>, bytes: &[u8]) -> Result<Value, BodyError> {
    if mode == BodyMode::Text {
        return String::from_utf8(bytes.to_vec())
            .map(Value::String)
            .map_err(|_| BodyError::NotUtf8);
    }
    if bytes.is_empty() && content_type.is_none_or(|ct| ct.trim().is_empty()) {
        return Ok(Value::Null);
    }
    let accepts = match mode {
        BodyMode::Json => "application/json",
        BodyMode::Form => "application/x-www-form-urlencoded",
        BodyMode::Xml => "application/xml or text/xml",
        _ => "application/json, application/x-www-form-urlencoded or XML",
    };
    let ct = content_type.unwrap_or("");
    let kind = match (kind_of(ct), mode) {
        (Some(Kind::Json), BodyMode::Json | BodyMode::Auto) => Kind::Json,
        (Some(Kind::Form), BodyMode::Form | BodyMode::Auto) => Kind::Form,
        (Some(Kind::Xml), BodyMode::Xml | BodyMode::Auto) => Kind::Xml,
        _ => {
            let shown = if ct.is_empty() { "(none)" } else { ct };
            return Err(BodyError::UnsupportedType(shown.to_string(), accepts));
        }
    };
    match kind {
        Kind::Json if bytes.is_empty() => Err(BodyError::MalformedJson("the body is empty".into())),
        Kind::Json => serde_json::from_slice(bytes).map_err(|e| BodyError::MalformedJson(e.to_string())),
        Kind::Form => parse_form(bytes),
        Kind::Xml => crate::xml::to_json(bytes).map_err(BodyError::MalformedXml),
    }
}

/// Undoes `Content-Encoding: gzip` (or `x-gzip`), refusing output over `limit` bytes, so a
/// small compressed body cannot expand without bound. `identity` or none: unchanged.
pub fn decode_encoding(encoding: Option<&str>, bytes: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    use std::io::Read;
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(bytes.to_vec()),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            let mut d = flate2::read::GzDecoder::new(bytes).take(limit as u64 + 1);
            d.read_to_end(&mut out)
                .map_err(|e| BodyError::MalformedGzip(e.to_string()))?;
            if out.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            Ok(out)
        }
        Some(other) => Err(BodyError::UnsupportedEncoding(other.to_string())),
    }
}

/// A form becomes an object; a repeated field becomes a list of its values.
fn parse_form(bytes: &[u8]) -> Result<Value, BodyError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(bytes).map_err(|e| BodyError::MalformedForm(e.to_string()))?;
    let mut obj = Map::new();
    for (k, v) in pairs {
        match obj.get_mut(&k) {
            None => {
                obj.insert(k, Value::String(v));
            }
            Some(Value::Array(list)) => list.push(Value::String(v)),
            Some(first) => {
                let prev = first.take();
                *first = Value::Array(vec![prev, Value::String(v)]);
            }
        }
    }
    Ok(Value::Object(obj))
}

/// Parses a query string into the first value per name.
pub fn parse_query(raw: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(raw) = raw {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).unwrap_or_default();
        for (k, v) in pairs {
            out.entry(k).or_insert(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_form_bodies() {
        let v = parse_body(
            BodyMode::Auto,
            Some("application/json; charset=utf-8"),
            b"{\"a\":1}",
        );
        assert_eq!(v.unwrap(), json!({"a": 1}));
        let v = parse_body(
            BodyMode::Auto,
            Some("application/x-www-form-urlencoded"),
            b"name=Ada+L&tag=a&tag=b&email=ada%40example.com",
        );
        assert_eq!(
            v.unwrap(),
            json!({"name": "Ada L", "tag": ["a", "b"], "email": "ada@example.com"})
        );
        assert_eq!(
            parse_body(BodyMode::Auto, Some("application/cloudevents+json"), b"[1]").unwrap(),
            json!([1])
        );
    }

    #[test]
    fn refusals() {
        let e = parse_body(BodyMode::Auto, Some("application/json"), b"{nope").unwrap_err();
        assert!(matches!(e, BodyError::MalformedJson(_)));
        let e = parse_body(BodyMode::Auto, Some("text/plain"), b"hi").unwrap_err();
        assert!(matches!(e, BodyError::UnsupportedType(..)));
        let e = parse_body(BodyMode::Json, Some("application/x-www-form-urlencoded"), b"a=1");
        assert!(matches!(e.unwrap_err(), BodyError::UnsupportedType(..)));
        assert!(parse_body(BodyMode::Auto, None, b"x").is_err());
    }

    #[test]
    fn text_mode_and_empty_bodies() {
        assert_eq!(
            parse_body(BodyMode::Text, Some("text/csv"), b"a,b").unwrap(),
            json!("a,b")
        );
        assert_eq!(parse_body(BodyMode::Auto, None, b"").unwrap(), Value::Null);
        assert_eq!(parse_body(BodyMode::Json, None, b"").unwrap(), Value::Null);
        assert_eq!(
            parse_body(BodyMode::Json, Some("application/json"), b""),
            Err(BodyError::MalformedJson("the body is empty".into()))
        );
        assert_eq!(
            parse_body(BodyMode::Auto, Some("application/x-www-form-urlencoded"), b"").unwrap(),
            serde_json::json!({})
        );
        assert!(parse_body(BodyMode::Auto, Some("application/xml"), b"").is_err());
        assert_eq!(
            parse_body(BodyMode::Text, None, &[0xff]).unwrap_err(),
            BodyError::NotUtf8
        );
    }

    #[test]
    fn query_first_value_wins() {
        let q = parse_query(Some("hub.challenge=abc&x=1&x=2"));
        assert_eq!(q["hub.challenge"], "abc");
        assert_eq!(q["x"], "1");
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Arbitrary bytes under every content type and mode: an answer or a clear error, never a
    /// panic.
    #[test]
    fn random_bodies_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let seeds: [&[u8]; 4] = [
            b"{\"a\": [1, 2, {\"b\": null}]}",
            b"a=1&b=%zz&c",
            b"\xff\xfe",
            b"[[[[[",
        ];
        for i in 0..3000 {
            let mut body = seeds[i % seeds.len()].to_vec();
            for _ in 0..rng.random_range(0..8) {
                let at = rng.random_range(0..=body.len());
                body.insert(at, rng.random());
            }
            for mode in [BodyMode::Auto, BodyMode::Json, BodyMode::Form, BodyMode::Text] {
                for ct in [
                    Some("application/json"),
                    Some("application/x-www-form-urlencoded"),
                    Some("text/plain"),
                    None,
                ] {
                    if let Err(e) = parse_body(mode, ct, &body) {
                        assert!(!e.to_string().is_empty());
                    }
                }
            }
        }
    }
}
