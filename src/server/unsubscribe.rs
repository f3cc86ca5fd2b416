//! One-click unsubscribe (RFC 8058), served on the webhook listener at `/u/{token}`: the link
//! every list email carries in `List-Unsubscribe` and, as `{{ unsubscribe_url }}`, in its body.
//!
//! - `POST` with the body `List-Unsubscribe=One-Click` (what Gmail, Yahoo and Apple Mail send,
//!   and what the page's button sends) unsubscribes at once: the address is suppressed for the
//!   list and leaves the segment, in one durable write, before the 200. No login, no
//!   confirmation — RFC 8058 forbids both.
//! - `GET` shows a page with a button and changes nothing: mail security scanners fetch every
//!   URL in a message, and must not unsubscribe anyone.
//! - A token that does not open (altered, forged, of another server) gets the same bare 404 as
//!   any URL nothing is served at, so it tells an attacker nothing.

use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::event::Origin;
use crate::links::Link;
use crate::suppression::{Reason, Suppression};

/// Largest body read from a one-click POST (it is 26 bytes).
const MAX_BODY: usize = 1024;

/// The body RFC 8058 prescribes.
const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// `ada@example.com` → `a••@example.com`: enough for a person to recognise their address on a
/// page that anyone holding the link may see, not enough to harvest it.
pub fn masked(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}••@{domain}")
        }
        None => "••".into(),
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         button{{font:inherit;padding:.6rem 1.2rem;border-radius:.4rem;border:1px solid #444;background:#222;color:#fff;cursor:pointer}}</style>\
         </head><body><h1>{title}</h1>{body}</body></html>"
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
    );
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn open(st: &AppState, token: &str) -> Option<(String, String)> {
    match st.mail.keys.open(token)? {
        Link::Unsubscribe { list, email } => Some((list, email)),
        Link::Click { .. } => None,
    }
}

/// `GET /u/{token}`: a page with a button; changes nothing.
pub async fn show(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let Some((list, email)) = open(&st, &token) else {
        return not_found();
    };
    let (list_h, who) = (escape(&list), escape(&masked(&email)));
    match st
        .store()
        .suppressed(std::slice::from_ref(&email), Some(&list))
        .await
    {
        Ok(found) if !found.is_empty() => page(
            StatusCode::OK,
            "You are unsubscribed",
            &format!("<p>{who} gets no more email from the list <b>{list_h}</b>.</p>"),
        ),
        _ => page(
            StatusCode::OK,
            "Unsubscribe",
            &format!(
                "<p>Stop emails from the list <b>{list_h}</b> to {who}?</p>\
                 <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
                 <button type=\"submit\">Unsubscribe</button></form>"
            ),
        ),
    }
}

/// `POST /u/{token}`: unsubscribes, durably, before answering.
pub async fn one_click(State(st): State<AppState>, Path(token): Path<String>, body: Body) -> Response {
    let Some((list, email)) = open(&st, &token) else {
        tracing::info!("unsubscribe with a token that does not open: 404");
        return not_found();
    };
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body of a one-click unsubscribe is List-Unsubscribe=One-Click\n",
            )
                .into_response();
        }
    };
    let one_click = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).is_ok_and(|pairs| {
        pairs
            .iter()
            .any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click")
    });
    if !one_click {
        tracing::info!(%list, "unsubscribe POST without List-Unsubscribe=One-Click: 400");
        return (
            StatusCode::BAD_REQUEST,
            format!("expected the body {ONE_CLICK} (RFC 8058)\n"),
        )
            .into_response();
    }
    let entry = match Suppression::new(&email, Some(&list), Reason::Unsubscribed, "one-click unsubscribe") {
        Ok(e) => e,
        Err(_) => return not_found(),
    };
    match st.store().unsubscribe(entry, Origin::via("unsubscribe")).await {
        Ok(changes) => {
            st.events_wake.notify_one();
            let left = changes
                .iter()
                .any(|c| c.change == crate::segment::Change::Removed);
            tracing::info!(%list, contact = %masked(&email), left_segment = left, "unsubscribed (one-click)");
            page(
                StatusCode::OK,
                "You are unsubscribed",
                &format!(
                    "<p>{} gets no more email from the list <b>{}</b>.</p>",
                    escape(&masked(&email)),
                    escape(&list)
                ),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, %list, "an unsubscribe could not be recorded; answered 503 so the sender tries again");
            let mut resp = (
                StatusCode::SERVICE_UNAVAILABLE,
                "the unsubscribe could not be recorded; try again in a minute\n",
            )
                .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            resp
        }
    }
}
