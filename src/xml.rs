//! XML bodies as a JSON-like value that JSONPath can address. The mapping (documented in
//! docs/flows.md):
//! - the document is an object with the root element's name as its only key;
//! - an element with neither attributes nor child elements is its text (a string, `""` if
//!   empty);
//! - otherwise an object: attributes as `@name`, child elements by name, and any text as
//!   `#text`;
//! - a child element name that repeats becomes a list, in document order.
//!
//! Values stay strings (`<total>49.90</total>` → `"49.90"`); conditions compare them as numbers
//! where an operator needs one. Namespace prefixes are kept in names (`ns:item`). DTDs are not
//! processed, so entity expansion attacks have nothing to expand.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

struct Node {
    name: String,
    attrs: Map<String, Value>,
    children: Vec<(String, Value)>,
    text: String,
}

impl Node {
    fn new(e: &BytesStart<'_>) -> Result<Node, String> {
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        let mut attrs = Map::new();
        for a in e.attributes() {
            let a = a.map_err(|err| err.to_string())?;
            let key = format!("@{}", String::from_utf8_lossy(a.key.as_ref()));
            let value = a.unescape_value().map_err(|err| err.to_string())?.into_owned();
            attrs.insert(key, Value::String(value));
        }
        Ok(Node {
            name,
            attrs,
            children: Vec::new(),
            text: String::new(),
        })
    }

    fn into_value(self) -> Value {
        let text = self.text.trim().to_string();
        if self.attrs.is_empty() && self.children.is_empty() {
            return Value::String(text);
        }
        let mut obj = self.attrs;
        for (name, v) in self.children {
            match obj.get_mut(&name) {
                None => {
                    obj.insert(name, v);
                }
                // Children are never arrays themselves: an array here came from repetition.
                Some(Value::Array(list)) => list.push(v),
                Some(prev) => {
                    let first = prev.take();
                    *prev = Value::Array(vec![first, v]);
                }
            }
        }
        if !text.is_empty() {
            obj.insert("#text".into(), Value::String(text));
        }
        Value::Object(obj)
    }
}

/// Parses an XML document.
pub fn to_json(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match ev {
            Event::Start(e) => stack.push(Node::new(&e)?),
            Event::Empty(e) => {
                let node = Node::new(&e)?;
                let name = node.name.clone();
                let v = node.into_value();
                match stack.last_mut() {
                    Some(parent) => parent.children.push((name, v)),
                    None => root = Some((name, v)),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                let name = node.name.clone();
                let v = node.into_value();
                match stack.last_mut() {
                    Some(parent) => parent.children.push((name, v)),
                    None => root = Some((name, v)),
                }
            }
            Event::Text(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t.decode().map_err(|e| e.to_string())?);
                }
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| e.to_string())?;
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?
                        .to_string(),
                };
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&resolved);
                }
            }
            Event::CData(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::DocType(_) => return Err("DOCTYPE declarations are not accepted".into()),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    let (name, v) = root.ok_or("no root element")?;
    let mut doc = Map::new();
    doc.insert(name, v);
    Ok(Value::Object(doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn elements_attributes_repeats_and_text() {
        let xml = br#"<?xml version="1.0"?>
<order id="4711" currency="EUR">
  <customer><email>ada@example.com</email><name>Ada &amp; Co</name></customer>
  <item sku="BOOK-1">Book</item>
  <item sku="PEN-2">Pen</item>
  <note><![CDATA[<fragile>]]></note>
  <gift/>
</order>"#;
        assert_eq!(
            to_json(xml).unwrap(),
            json!({"order": {
                "@id": "4711", "@currency": "EUR",
                "customer": {"email": "ada@example.com", "name": "Ada & Co"},
                "item": [{"@sku": "BOOK-1", "#text": "Book"}, {"@sku": "PEN-2", "#text": "Pen"}],
                "note": "<fragile>",
                "gift": ""
            }})
        );
    }

    #[test]
    fn malformed_documents_and_doctypes_are_refused() {
        assert!(to_json(b"<a><b></a>").is_err());
        assert!(to_json(b"<a>").is_err());
        assert!(to_json(b"").is_err());
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><lolz>&lol;</lolz>"#;
        assert!(to_json(bomb).unwrap_err().contains("DOCTYPE"));
    }
}
