//! The network edge: HTTPS from the binary's own listener, timeouts that really fire against
//! slow clients, header and body limits, 429 caps, gzip and XML bodies.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Opts, TestApp, spawn_app, spawn_app_opts};
use hookflow::server::listen::{ListenOptions, tls_config};

fn flow(extra: &str) -> String {
    format!(
        "on:\n  webhook:\n{extra}vars:\n  email: $.order.customer.email\nactions:\n  - http: {{ url: \"http://127.0.0.1:1/x\" }}\n"
    )
}

/// The request line and headers of a POST to `flow`, with `content-length`.
fn head(app: &TestApp, flow: &str, len: usize) -> String {
    let path = app.hook_url(flow).splitn(4, '/').nth(3).unwrap().to_string();
    format!(
        "POST /{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

async fn connect(app: &TestApp) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes or answers; returns what arrived and when.
async fn read_answer(s: &mut tokio::net::TcpStream, within: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(within, s.read(&mut buf))
        .await
        .expect("the server kept the connection open")
        .unwrap_or(0);
    (String::from_utf8_lossy(&buf[..n]).into_owned(), start.elapsed())
}

#[tokio::test]
async fn https_end_to_end_with_a_certificate_made_for_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::email::certificates(dir.path());
    let opts = Opts {
        listen: ListenOptions {
            tls: Some(tls_config(&cert, &key).unwrap()),
            ..ListenOptions::default()
        },
        ..Opts::default()
    };
    let mut app = spawn_app_opts(&[("orders", flow(""))], &[], opts).await;
    assert!(app.base.starts_with("https://"));
    app.http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let id = app
        .accept("orders", json!({"order": {"customer": {"email": "a@b.c"}}}))
        .await;
    let run = app.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.vars["email"], "a@b.c");
    // Plain HTTP to the TLS port gets nowhere; an untrusting client refuses the certificate.
    let plain = reqwest::get(app.base.replace("https://", "http://") + "/healthz").await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    assert!(reqwest::get(format!("{}/healthz", app.base)).await.is_err());
    app.stop().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_the_header_and_body_timeouts() {
    let opts = Opts {
        body_timeout: Duration::from_millis(500),
        listen: ListenOptions {
            header_timeout: Duration::from_millis(500),
            ..ListenOptions::default()
        },
        ..Opts::default()
    };
    let app = spawn_app_opts(&[("orders", flow(""))], &[], opts).await;
    // Slowloris: headers a byte at a time, never finished.
    let mut s = connect(&app).await;
    let started = Instant::now();
    let h = head(&app, "orders", 2);
    let mut closed = false;
    for b in h.as_bytes().iter().take(40) {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed {
        let (_, _) = read_answer(&mut s, Duration::from_secs(3)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "slow headers held the connection for {:?}",
        started.elapsed()
    );

    // Headers in time, body never completed: 408.
    let mut s = connect(&app).await;
    s.write_all(head(&app, "orders", 100).as_bytes()).await.unwrap();
    s.write_all(b"{\"order\":").await.unwrap();
    let (answer, took) = read_answer(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(app.all_runs().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let app = spawn_app(&[("orders", flow(""))], &[]).await;
    let r = app
        .http
        .post(app.hook_url("orders"))
        .header("x-padding", "a".repeat(100 * 1024))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    app.stop().await;
}

#[tokio::test]
async fn caps_on_requests_in_flight_answer_429_with_retry_after() {
    let opts = Opts {
        max_in_flight: 2,
        ..Opts::default()
    };
    let app = spawn_app_opts(
        &[("one", flow("    max_in_flight: 1\n")), ("other", flow(""))],
        &[],
        opts,
    )
    .await;
    // A request holding its permit: headers sent, body not yet.
    let mut slow = connect(&app).await;
    slow.write_all(head(&app, "one", 2).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = app.post_json("one", json!({})).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    // Another flow still has room under the global cap of 2 …
    let mut slow2 = connect(&app).await;
    slow2.write_all(head(&app, "other", 2).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // … but now both global permits are taken.
    assert_eq!(app.post_json("other", json!({})).await.status(), 429);
    // Finishing the slow ones frees the permits.
    slow.write_all(b"{}").await.unwrap();
    slow2.write_all(b"{}").await.unwrap();
    let (a, _) = read_answer(&mut slow, Duration::from_secs(5)).await;
    assert!(a.starts_with("HTTP/1.1 202"), "{a}");
    let (a, _) = read_answer(&mut slow2, Duration::from_secs(5)).await;
    assert!(a.starts_with("HTTP/1.1 202"), "{a}");
    assert_eq!(app.post_json("one", json!({})).await.status(), 202);
    crate::helpers::flow_with_counter(&app.http, &app.base, "one", "rejected:too_busy", 1).await;
    app.stop().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_limited_after_decompression() {
    let app = spawn_app(&[("orders", flow(""))], &[]).await;
    let post = |body: Vec<u8>, enc: &str| {
        app.http
            .post(app.hook_url("orders"))
            .header("content-type", "application/json")
            .header("content-encoding", enc)
            .body(body)
            .send()
    };
    let body = json!({"order": {"customer": {"email": "gz@example.com"}}}).to_string();
    let r = post(gzip(body.as_bytes()), "gzip").await.unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = app.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.vars["email"], "gz@example.com");
    // 1 MiB of spaces inside valid JSON compresses to about 1 KiB: over the 64 KiB limit once inflated.
    let bomb = format!("{{\"a\": 1{}}}", " ".repeat(1024 * 1024));
    let small = gzip(bomb.as_bytes());
    assert!(small.len() < 8 * 1024);
    let r = post(small, "gzip").await.unwrap();
    assert_eq!(r.status(), 413);
    let r = post(body.clone().into_bytes(), "br").await.unwrap();
    assert_eq!(r.status(), 415);
    let r = post(b"not gzip".to_vec(), "gzip").await.unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn xml_bodies_are_addressable_with_jsonpath() {
    let f = "on:\n  webhook:\n    when:\n      - path: $.order['@status']\n        equals: paid\nvars:\n  email: $.order.customer.email\n  skus: $.order.item[*]['@sku']\nactions:\n  - http: { url: \"http://127.0.0.1:1/x\" }\n";
    let app = spawn_app(&[("xml", f.to_string())], &[]).await;
    let xml = r#"<?xml version="1.0"?><order status="paid"><customer><email>x@example.com</email></customer><item sku="A"/><item sku="B"/></order>"#;
    let r = app
        .http
        .post(app.hook_url("xml"))
        .header("content-type", "application/xml")
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = app.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.vars["email"], "x@example.com");
    assert_eq!(run.vars["skus"], json!(["A", "B"]));
    let r = app
        .http
        .post(app.hook_url("xml"))
        .header("content-type", "text/xml")
        .body("<order><unclosed></order>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}
