//! Segments: named sets of contacts that hookflow keeps itself (newsletter, recent buyers…).
//!
//! A contact is keyed by its normalised email address and carries attributes (a JSON object
//! merged on every update) and timestamps. Membership changes raise `segment.added` and
//! `segment.removed` events; updating an existing member raises nothing. The rules here are
//! pure so every store applies them the same way.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::time::Ts;

/// A contact as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Contact {
    pub email: String,
    pub attributes: Map<String, Value>,
    pub created_at: Ts,
    pub updated_at: Ts,
}

/// A segment member: the contact and when it joined this segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Member {
    #[serde(flatten)]
    pub contact: Contact,
    pub added_at: Ts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SegmentInfo {
    pub name: String,
    pub members: u64,
}

/// A contact with the segments it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ContactView {
    #[serde(flatten)]
    pub contact: Contact,
    pub segments: Vec<String>,
}

/// One requested change. Attributes are merged into the contact either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentOp {
    pub segment: String,
    pub email: String,
    pub add: bool,
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// What an op did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    /// Already a member: attributes updated, no event.
    Updated,
    Removed,
    /// Not a member: nothing to remove, no event.
    NotMember,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SegmentChange {
    pub segment: String,
    pub email: String,
    pub change: Change,
    pub contact: Contact,
}

impl SegmentChange {
    /// The event this change raises, if any: its type and `data`.
    pub fn event(&self) -> Option<(&'static str, Value)> {
        let kind = match self.change {
            Change::Added => crate::event::SEGMENT_ADDED,
            Change::Removed => crate::event::SEGMENT_REMOVED,
            Change::Updated | Change::NotMember => return None,
        };
        Some((kind, json!({"segment": self.segment, "contact": self.contact})))
    }
}

/// Normalises an address for keying: trimmed and lower-cased, after checking it is a valid
/// address (RFC 5321 as lettre parses it).
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let e = raw.trim().to_lowercase();
    if e.is_empty() {
        return Err("the email address is empty".into());
    }
    lettre::Address::from_str(&e)
        .map_err(|err| format!("`{}` is not a valid email address: {err}", raw.trim()))?;
    Ok(e)
}

/// Segment names: letters, digits, `-`, `_` and `.`, up to 100 characters.
pub fn valid_segment_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Applies `op` to a contact and its membership: the merged contact, the new membership and
/// the change. `existing` is the stored contact, `member` whether it is in the segment.
pub fn apply(existing: Option<Contact>, member: bool, op: &SegmentOp, now: Ts) -> (Contact, bool, Change) {
    let mut contact = existing.unwrap_or_else(|| Contact {
        email: op.email.clone(),
        attributes: Map::new(),
        created_at: now,
        updated_at: now,
    });
    if !op.attributes.is_empty() {
        for (k, v) in &op.attributes {
            contact.attributes.insert(k.clone(), v.clone());
        }
        contact.updated_at = now;
    }
    let change = match (op.add, member) {
        (true, false) => Change::Added,
        (true, true) => Change::Updated,
        (false, true) => Change::Removed,
        (false, false) => Change::NotMember,
    };
    if matches!(change, Change::Added | Change::Removed) {
        contact.updated_at = now;
    }
    (contact, op.add, change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(add: bool, attrs: Value) -> SegmentOp {
        SegmentOp {
            segment: "newsletter".into(),
            email: "ann@example.com".into(),
            add,
            attributes: attrs.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn emails_are_validated_and_normalised() {
        assert_eq!(normalize_email("  Ann@Example.COM ").unwrap(), "ann@example.com");
        assert!(normalize_email("not an address").is_err());
        assert!(normalize_email("").is_err());
        assert!(normalize_email("a@b@c").is_err());
    }

    #[test]
    fn segment_names() {
        assert!(valid_segment_name("recent-buyers"));
        assert!(valid_segment_name("news_letter.v2"));
        assert!(!valid_segment_name("with space"));
        assert!(!valid_segment_name(""));
        assert!(!valid_segment_name("a:b"));
    }

    #[test]
    fn add_then_again_updates_and_merges_attributes() {
        let (c, member, change) = apply(None, false, &op(true, json!({"first": "Ann", "n": 1})), Ts(10));
        assert!(member);
        assert_eq!(change, Change::Added);
        assert_eq!(c.created_at, Ts(10));
        let (c2, _, change) = apply(Some(c), true, &op(true, json!({"n": 2, "city": "Oslo"})), Ts(20));
        assert_eq!(change, Change::Updated);
        assert_eq!(
            c2.attributes,
            json!({"first": "Ann", "n": 2, "city": "Oslo"})
                .as_object()
                .cloned()
                .unwrap()
        );
        assert_eq!((c2.created_at, c2.updated_at), (Ts(10), Ts(20)));
    }

    #[test]
    fn removal_and_events() {
        let (c, _, _) = apply(None, false, &op(true, json!({})), Ts(1));
        let (c, member, change) = apply(Some(c), true, &op(false, json!({})), Ts(2));
        assert!(!member);
        assert_eq!(change, Change::Removed);
        let sc = SegmentChange {
            segment: "newsletter".into(),
            email: c.email.clone(),
            change,
            contact: c.clone(),
        };
        let (kind, data) = sc.event().unwrap();
        assert_eq!(kind, "segment.removed");
        assert_eq!(data["segment"], "newsletter");
        assert_eq!(data["contact"]["email"], "ann@example.com");
        let (_, _, change) = apply(Some(c.clone()), false, &op(false, json!({})), Ts(3));
        assert_eq!(change, Change::NotMember);
        let none = SegmentChange { change, ..sc };
        assert!(none.event().is_none());
    }
}
