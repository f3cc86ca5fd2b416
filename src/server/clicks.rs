//! Tracked links, served on the webhook listener at `/c/{token}`: the addresses a tracked
//! email's links were rewritten to (see [`crate::clicks`]).
//!
//! A `GET` (or `HEAD`) answers `302` to the link's original address at once, after recording
//! the click, pending; the engine judges it a moment later and raises `email.clicked` for a
//! person's. The address comes from what the message was sent with, never from the token: a
//! token leads only to a link that was in its email. A token that does not open, or names a
//! message or link the store does not have (forged, altered, of another server, or pruned
//! with its message), gets the same bare 404 as any URL nothing is served at — never a
//! redirect.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::clicks::Click;
use crate::links::Link;

fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// `GET /c/{token}` (and `HEAD`): records the click and redirects.
pub async fn follow(
    State(st): State<AppState>,
    method: Method,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(Link::Click { message, link }) = st.mail.keys.open(&token) else {
        tracing::info!("a tracked link with a token that does not open: 404");
        return not_found();
    };
    let sent = match st.store().message(&message).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            tracing::info!(%message, "a tracked link of a message the store does not have (pruned?): 404");
            return not_found();
        }
        Err(e) => {
            tracing::error!(error = %e, "a tracked link could not be looked up; answered 503");
            let mut resp = (StatusCode::SERVICE_UNAVAILABLE, "try again in a minute\n").into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return resp;
        }
    };
    let Some(target) = sent.link(link) else {
        tracing::info!(%message, "a tracked link its message does not have: 404");
        return not_found();
    };
    let Some(location) = url::Url::parse(&target.url)
        .ok()
        .and_then(|u| HeaderValue::from_str(u.as_str()).ok())
    else {
        return not_found();
    };
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let click = Click::new(&sent, target, method.as_str(), user_agent);
    let (flow, run_id, label) = (
        click.flow.clone(),
        click.run_id.clone(),
        click.label().to_string(),
    );
    match st.store().record_click(click).await {
        Ok(true) => tracing::info!(%flow, %run_id, link = %label, %method, "click recorded"),
        Ok(false) => {
            tracing::info!(%flow, %run_id, link = %label, "click not recorded: its message has the most clicks kept (200); redirected")
        }
        // The reader still gets where they were going; the click is lost, and said so.
        Err(e) => {
            tracing::error!(error = %e, %flow, %run_id, link = %label, "a click could not be recorded; redirected all the same")
        }
    }
    let mut resp = StatusCode::FOUND.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The token stays here: the destination sees no referrer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    resp
}
