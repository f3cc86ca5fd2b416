//! The benchmarks' reference point and sink: an axum server that reads each request body and
//! answers 202 at once. `GET /count` returns how many requests it has answered.
//!
//! `cargo run --release --example noop_server -- 127.0.0.1:9100`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9100".into());
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    let app = Router::new()
        .route(
            "/count",
            get(move || async move { c.load(Ordering::Relaxed).to_string() }),
        )
        .fallback(move |_body: Bytes| {
            let count = Arc::clone(&count);
            async move {
                count.fetch_add(1, Ordering::Relaxed);
                (StatusCode::ACCEPTED, "{\"ok\":true}")
            }
        });
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
