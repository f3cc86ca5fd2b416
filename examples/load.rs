//! Sends exactly N webhook requests, C at a time, and prints the rate — for the benchmarks that
//! need a known number of runs (`bench/waits.sh`).
//!
//! `cargo run --release --example load -- URL N C [BODY_FILE]`
//!
//! With `BODY_FILE`, each request sends that file with every `{i}` replaced by the request's
//! number (so each body differs); without it, a small JSON object.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("URL").clone();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let c: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let template: Option<Arc<str>> = args
        .get(4)
        .map(|p| std::fs::read_to_string(p).expect("BODY_FILE").into());
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..c)
        .map(|_| {
            let (http, url, next, failed, template) = (
                http.clone(),
                url.clone(),
                Arc::clone(&next),
                Arc::clone(&failed),
                template.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let body = match &template {
                        Some(t) => t.replace("{i}", &i.to_string()),
                        None => format!(r#"{{"id": {i}, "email": "buyer{i}@example.com"}}"#),
                    };
                    let ok = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("a sender panicked");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {n} in {secs:.1} s ({:.0}/s), {} failed",
        n as f64 / secs,
        failed.load(Ordering::Relaxed)
    );
}
