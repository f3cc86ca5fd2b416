//! The suppression list API, with the runs API's access rule: page and search it, export it as
//! CSV, add an address, lift an entry (with a reason, kept as history) and import another
//! tool's opt-outs from CSV. The dashboard and `hookflow suppressions` use it.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::api::{MAX_PAGE, internal};
use super::{ApiError, AppState};
use crate::store::Store;
use crate::store::suppress::{SuppressionQuery, import as import_csv, page_key};
use crate::suppression::{self, Reason, Suppression};

/// Largest CSV an import reads: about 200,000 addresses.
pub const MAX_IMPORT: usize = 10 * 1024 * 1024;
/// Rejected rows an import's answer lists (all are counted in `rejected_count`).
const MAX_REJECTED_SHOWN: usize = 100;

fn bad(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, detail)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListQuery {
    /// Text to find in the addresses.
    pub search: Option<String>,
    /// The page after this entry (the previous page's `next`).
    pub after: Option<String>,
    /// Entries per page, default 100: any number is taken, as 1 to 500.
    #[schemars(range(max = usize::MAX))]
    pub limit: Option<usize>,
    /// Include lifted entries.
    #[serde(default)]
    pub lifted: bool,
    /// `csv`: every matching entry as a CSV file; `json` (the default): a page.
    #[serde(default)]
    pub format: Format,
}

/// How the list is answered.
#[derive(Debug, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// `GET /api/suppressions`: a page of entries in address order.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct SuppressionPage {
    pub suppressions: Vec<Suppression>,
    /// The `after` of the next page; null on the last.
    pub next: Option<String>,
}

/// `POST /api/suppressions`: whether the entry is new (201) or was there already (200).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Added {
    pub added: bool,
    pub suppression: Suppression,
}

/// `DELETE /api/suppressions/{email}`: the entry is lifted.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct LiftedAnswer {
    pub lifted: bool,
}

/// `GET /api/suppressions`: a page (`next` is the `after` of the next one), or all as CSV.
pub async fn list(State(st): State<AppState>, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let mut query = SuppressionQuery {
        after: q.after.clone(),
        search: q.search.clone().filter(|s| !s.trim().is_empty()),
        include_lifted: q.lifted,
        limit: q.limit.unwrap_or(100).clamp(1, MAX_PAGE),
    };
    if q.format == Format::Csv {
        query.limit = MAX_PAGE;
        return csv_export(st.store().clone(), query).await;
    }
    let page = st.store().suppression_list(&query).await.map_err(internal)?;
    let next = (page.len() == query.limit)
        .then(|| page.last().map(page_key))
        .flatten();
    Ok(Json(SuppressionPage {
        suppressions: page,
        next,
    })
    .into_response())
}

/// Every matching entry as CSV, streamed a page at a time: an export of a list of any length
/// holds one page in memory. A store error on the first page is a 500; on a later one the
/// download is cut short (the client sees an incomplete body, never a silently short file
/// that ends cleanly).
async fn csv_export(store: Arc<dyn Store>, query: SuppressionQuery) -> Result<Response, ApiError> {
    /// Where the export is: a page to write (and the store to read the next from), a store
    /// error to end the body with, or the end.
    enum Export {
        Page(Arc<dyn Store>, SuppressionQuery, Vec<Suppression>, bool),
        Failed(String),
        Done,
    }
    let first = store.suppression_list(&query).await.map_err(internal)?;
    let pages = futures::stream::unfold(Export::Page(store, query, first, true), |state| async move {
        match state {
            Export::Done => None,
            Export::Failed(e) => Some((Err(std::io::Error::other(e)), Export::Done)),
            Export::Page(store, mut query, page, header) => {
                let chunk = Bytes::from(suppression::to_csv(&page, header));
                let next = if page.len() < query.limit {
                    Export::Done
                } else {
                    query.after = page.last().map(page_key);
                    match store.suppression_list(&query).await {
                        Ok(next) => Export::Page(store, query, next, false),
                        Err(e) => {
                            tracing::error!(error = %e, "the suppression list export was cut short: the store failed");
                            Export::Failed(e.to_string())
                        }
                    }
                };
                Some((Ok::<_, std::io::Error>(chunk), next))
            }
        }
    });
    let mut resp = Body::from_stream(pages).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"suppressions.csv\""),
    );
    Ok(resp)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "if" = {"properties": {"reason": {"const": "unsubscribed"}}, "required": ["reason"]},
    "then" = {"required": ["list"], "properties": {"list": {"type": "string", "pattern": crate::flow::schema::SEGMENT_NAME}}}
))]
pub struct AddBody {
    /// The address, e.g. `ada@example.com`.
    #[schemars(regex(pattern = crate::server::openapi::EMAIL))]
    pub email: String,
    /// The list it applies to (a segment name); absent: every email.
    #[schemars(regex(pattern = crate::server::openapi::LIST_OR_EVERY))]
    pub list: Option<String>,
    /// Default `manual`.
    pub reason: Option<Reason>,
    pub note: Option<String>,
}

/// `POST /api/suppressions`: suppresses an address.
pub async fn add(
    State(st): State<AppState>,
    super::body::JsonObject(b): super::body::JsonObject<AddBody>,
) -> Result<Response, ApiError> {
    let mut entry = Suppression::new(
        &b.email,
        b.list.as_deref(),
        b.reason.unwrap_or(Reason::Manual),
        "api",
    )
    .map_err(|e| bad("bad_suppression", e))?;
    entry.note = b.note.filter(|n| !n.trim().is_empty());
    let added = st.store().suppress(vec![entry.clone()]).await.map_err(internal)? > 0;
    tracing::info!(email = %entry.email, list = %entry.scope(), reason = entry.reason.as_str(), added, "address suppressed through the API");
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Added {
            added,
            suppression: entry,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LiftQuery {
    /// The list of the entry; absent: the every-email entry.
    #[schemars(regex(pattern = crate::server::openapi::LIST_OR_EVERY))]
    pub list: Option<String>,
    /// Why it is lifted (kept with the entry); required.
    #[schemars(required, regex(pattern = r"\S"))]
    pub reason: Option<String>,
}

/// `DELETE /api/suppressions/{email}?list=…&reason=…`: lifts an entry, keeping it as history.
pub async fn lift(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    Query(q): Query<LiftQuery>,
) -> Result<Json<LiftedAnswer>, ApiError> {
    let email = crate::segment::normalize_email(&raw).map_err(|e| bad("bad_email", e))?;
    let reason = q
        .reason
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| bad("reason_required", "say why the suppression is lifted: ?reason=…"))?;
    let list = q.list.filter(|l| !l.is_empty() && l != suppression::EVERY_LIST);
    if st
        .store()
        .lift(&email, list.as_deref(), &reason)
        .await
        .map_err(internal)?
    {
        tracing::info!(%email, list = list.as_deref().unwrap_or("*"), %reason, "suppression lifted through the API");
        Ok(Json(LiftedAnswer { lifted: true }))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "{email} is not suppressed for {}",
                list.map_or("every email".to_string(), |l| format!("list {l}"))
            ),
        ))
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ImportQuery {
    #[schemars(regex(pattern = crate::server::openapi::LIST_OR_EVERY))]
    /// The list for rows that name none; absent: such rows apply to every email.
    pub list: Option<String>,
}

/// `POST /api/suppressions/import`: a CSV of opt-outs (see [`suppression::from_csv`]).
pub async fn import(
    State(st): State<AppState>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Json<crate::store::suppress::ImportReport>, ApiError> {
    let bytes = to_bytes(body, MAX_IMPORT).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("an import is at most {MAX_IMPORT} bytes; split the file"),
        )
    })?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| bad("not_utf8", "the CSV is not UTF-8"))?;
    if let Some(l) = q
        .list
        .as_deref()
        .filter(|l| !l.is_empty() && *l != suppression::EVERY_LIST)
        && !crate::segment::valid_segment_name(l)
    {
        return Err(bad("bad_list", format!("`{l}` is not a list (segment) name")));
    }
    let read = suppression::from_csv(&text, q.list.as_deref(), "import").map_err(|e| bad("bad_csv", e))?;
    let report = import_csv(st.store().as_ref(), read, MAX_REJECTED_SHOWN)
        .await
        .map_err(internal)?;
    tracing::info!(
        rows = report.rows,
        added = report.added,
        rejected = report.rejected_count,
        "suppressions imported"
    );
    Ok(Json(report))
}
