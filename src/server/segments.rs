//! The segments API, with the runs API's access rule: list segments, page through members,
//! export them as CSV, look up a contact, and add or remove a member (so other tools — a mail
//! tool's unsubscribe page, a CRM — can change segments; the change raises the same events as a
//! `segment` action).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::api::{MAX_PAGE, internal};
use super::{ApiError, AppState};
use crate::event::Origin;
use crate::segment::{Member, SegmentChange, SegmentInfo, SegmentOp, normalize_email, valid_segment_name};

fn segment_name(name: &str) -> Result<(), ApiError> {
    if valid_segment_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_segment",
            format!("`{name}` is not a segment name (letters, digits, `-`, `_`, `.`)"),
        ))
    }
}

fn email(raw: &str) -> Result<String, ApiError> {
    normalize_email(raw).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_email", e))
}

/// `GET /api/segments`: every segment with its member count.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct SegmentList {
    pub segments: Vec<SegmentInfo>,
}

/// `GET /api/segments/{name}/members`: a page of members in address order.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct MemberPage {
    pub segment: String,
    pub members: Vec<Member>,
    /// The `after` of the next page; null on the last.
    pub next_after: Option<String>,
}

pub async fn list_segments(State(st): State<AppState>) -> Result<Json<SegmentList>, ApiError> {
    let segments = st.store().segments().await.map_err(internal)?;
    Ok(Json(SegmentList { segments }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PageQuery {
    /// The page after this address (the previous page's `next_after`).
    pub after: Option<String>,
    /// Members per page, default 100: any number is taken, as 1 to 500.
    #[schemars(range(max = usize::MAX))]
    pub limit: Option<usize>,
    /// Text to find in members' addresses (case-insensitive).
    pub q: Option<String>,
}

/// Members a search reads through per request, at most; `next_after` continues from there.
const SEARCH_SCAN: usize = 10_000;

pub async fn list_members(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    segment_name(&name)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let needle = q.q.as_deref().map(str::to_lowercase).filter(|n| !n.is_empty());
    let Some(needle) = needle else {
        let members = st
            .store()
            .segment_members(&name, q.after.as_deref(), limit)
            .await
            .map_err(internal)?;
        let next = (members.len() == limit)
            .then(|| members.last().map(|m| m.contact.email.clone()))
            .flatten();
        return Ok(Json(MemberPage {
            segment: name,
            members,
            next_after: next,
        }));
    };
    // A search reads pages in address order and keeps the matches: bounded per request, and
    // `next_after` says where the next request goes on (whether or not this one found any).
    let (mut members, mut after, mut scanned) = (Vec::new(), q.after.clone(), 0);
    let next = loop {
        let page = st
            .store()
            .segment_members(&name, after.as_deref(), MAX_PAGE)
            .await
            .map_err(internal)?;
        let full = page.len() == MAX_PAGE;
        for m in page {
            scanned += 1;
            after = Some(m.contact.email.clone());
            if m.contact.email.to_lowercase().contains(&needle) {
                members.push(m);
                if members.len() == limit {
                    break;
                }
            }
        }
        if members.len() == limit || scanned >= SEARCH_SCAN {
            break after;
        }
        if !full {
            break None;
        }
    };
    Ok(Json(MemberPage {
        segment: name,
        members,
        next_after: next,
    }))
}

/// The whole segment as CSV: `email,added_at,created_at,updated_at` and one column per
/// attribute name found on any member (sorted).
pub async fn export_members(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    segment_name(&name)?;
    let mut all: Vec<Member> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = st
            .store()
            .segment_members(&name, after.as_deref(), MAX_PAGE)
            .await
            .map_err(internal)?;
        let done = page.len() < MAX_PAGE;
        after = page.last().map(|m| m.contact.email.clone());
        all.extend(page);
        if done {
            break;
        }
    }
    let csv = to_csv(&all).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "csv_error", e))?;
    let mut resp = (StatusCode::OK, csv).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Members as CSV; attribute values that are not strings are written as JSON.
pub fn to_csv(members: &[Member]) -> Result<String, String> {
    let attrs: BTreeSet<&String> = members.iter().flat_map(|m| m.contact.attributes.keys()).collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec!["email", "added_at", "created_at", "updated_at"];
    head.extend(attrs.iter().map(|a| a.as_str()));
    w.write_record(&head).map_err(|e| e.to_string())?;
    for m in members {
        let c = &m.contact;
        let mut row = vec![
            c.email.clone(),
            m.added_at.to_string(),
            c.created_at.to_string(),
            c.updated_at.to_string(),
        ];
        for a in &attrs {
            row.push(match c.attributes.get(*a) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            });
        }
        w.write_record(&row).map_err(|e| e.to_string())?;
    }
    String::from_utf8(w.into_inner().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The contact's address, e.g. `ada@example.com`.
    #[schemars(regex(pattern = crate::server::openapi::EMAIL))]
    pub email: String,
    /// Merged into the contact, e.g. `{"plan": "pro"}`.
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

pub async fn add_member(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Result<super::body::JsonObject<AddMember>, ApiError>,
) -> Result<Json<SegmentChange>, ApiError> {
    segment_name(&name)?;
    let super::body::JsonObject(body) = body?;
    let op = SegmentOp {
        segment: name,
        email: email(&body.email)?,
        add: true,
        attributes: body.attributes,
    };
    change(&st, op).await
}

pub async fn remove_member(
    State(st): State<AppState>,
    Path((name, raw)): Path<(String, String)>,
) -> Result<Json<SegmentChange>, ApiError> {
    segment_name(&name)?;
    let op = SegmentOp {
        segment: name,
        email: email(&raw)?,
        add: false,
        attributes: Map::new(),
    };
    change(&st, op).await
}

async fn change(st: &AppState, op: SegmentOp) -> Result<Json<SegmentChange>, ApiError> {
    let mut changes = st
        .store()
        .change_segments(vec![op], Origin::api())
        .await
        .map_err(internal)?;
    st.events_wake.notify_one();
    let c = changes
        .pop()
        .ok_or_else(|| internal(crate::store::StoreError::Backend("no change reported".into())))?;
    tracing::info!(segment = %c.segment, email = %c.email, change = ?c.change, "segment changed through the API");
    Ok(Json(c))
}

pub async fn show_contact(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let e = email(&raw)?;
    match st.store().contact(&e).await.map_err(internal)? {
        Some(c) => Ok(Json(c).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no contact {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::Contact;
    use crate::time::Ts;
    use serde_json::json;

    #[test]
    fn csv_has_one_column_per_attribute_and_quotes_what_needs_it() {
        let member = |email: &str, attrs: Value| Member {
            contact: Contact {
                email: email.into(),
                attributes: attrs.as_object().cloned().unwrap(),
                created_at: Ts(0),
                updated_at: Ts(0),
            },
            added_at: Ts(1000),
        };
        let csv = to_csv(&[
            member("a@x.org", json!({"name": "Ann, Jr.", "total": 12.5})),
            member("b@x.org", json!({"city": "Oslo"})),
        ])
        .unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "email,added_at,created_at,updated_at,city,name,total");
        assert_eq!(
            lines[1],
            "a@x.org,1970-01-01T00:00:01.000Z,1970-01-01T00:00:00.000Z,1970-01-01T00:00:00.000Z,,\"Ann, Jr.\",12.5"
        );
        assert!(lines[2].starts_with("b@x.org,") && lines[2].ends_with(",Oslo,,"));
    }
}
