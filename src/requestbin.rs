//! `hookflow bin`: a local request bin that prints every request it receives and answers with
//! a fixed status and a small JSON body carrying a fresh `id` — enough to stand in for a
//! shipping or helpdesk API while developing a flow (and in the quick start).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::json;

pub async fn run(listen: SocketAddr, status: u16) -> anyhow::Result<()> {
    let status = StatusCode::from_u16(status)?;
    let app = Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            print_request(&method, &uri, &headers, &body);
            let id = crate::run::new_run_id();
            (status, axum::Json(json!({"id": id, "received": true}))).into_response()
        },
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("request bin listening on http://{listen}, answering {status}");
    axum::serve(listener, app).await?;
    Ok(())
}

fn print_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) {
    let mut out = format!("── {method} {uri}\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    out.push('\n');
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => out.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default()),
        Err(_) => out.push_str(&String::from_utf8_lossy(body)),
    }
    println!("{out}\n");
}
