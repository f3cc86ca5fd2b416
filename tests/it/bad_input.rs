//! Refused requests get the right status and a message, and leave nothing stored or run.

use serde_json::json;

use crate::helpers::{Receiver, Reply, fast_engine, spawn_app, spawn_app_with};

fn flow(dest: &str) -> String {
    format!("on: {{ webhook: {{}} }}\nactions:\n  - http: {{ url: \"{dest}/x\" }}\n")
}

#[tokio::test]
async fn refusals_have_the_right_status_and_store_nothing() {
    let dest = Receiver::start(Reply::status(200)).await;
    let text_flow = format!(
        "on: {{ webhook: {{ body: text }} }}\nactions:\n  - http: {{ url: \"{}/t\", body: \"{{{{ body }}}}\" }}\n",
        dest.url
    );
    let app = spawn_app(&[("f", flow(&dest.url)), ("raw", text_flow)], &[]).await;
    let url = app.hook_url("f");
    let post = |url: String, ct: &'static str, body: Vec<u8>| {
        let http = app.http.clone();
        async move {
            http.post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };

    let r = post(url.clone(), "application/json", b"{\"a\": ".to_vec()).await;
    assert_eq!(r.status(), 400);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"], "malformed_body");
    assert!(b["detail"].as_str().unwrap().contains("malformed JSON"), "{b}");

    let r = post(url.clone(), "application/json", vec![b' '; 64 * 1024 + 1]).await;
    assert_eq!(r.status(), 413);

    // Without a Content-Length (chunked), the limit applies while reading.
    let (status, _) = raw_chunked_post(&url, 64 * 1024 + 10).await;
    assert_eq!(status, 413);

    let r = post(url.clone(), "text/plain", b"hello".to_vec()).await;
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("text/plain"));

    let wrong_token = format!("{}/hooks/f/{}", app.base, "0".repeat(32));
    let r = post(wrong_token, "application/json", b"{}".to_vec()).await;
    assert_eq!(r.status(), 404);
    let wrong_body = r.text().await.unwrap();
    let unknown = format!("{}/hooks/nope/{}", app.base, app.tokens.token("nope"));
    let r = post(unknown, "application/json", b"{}".to_vec()).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().await.unwrap(),
        wrong_body,
        "unknown flow and wrong token look the same"
    );

    assert!(
        app.all_runs().await.is_empty(),
        "nothing is stored for a refused request"
    );

    // A flow that takes text accepts any content type.
    let r = post(app.hook_url("raw"), "text/csv", b"a,b\n1,2".to_vec()).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_status(&id, hookflow::run::RunStatus::Succeeded).await;
    assert_eq!(dest.hits()[0].body, "a,b\n1,2");
    app.stop().await;
}

#[tokio::test]
async fn the_runs_api_needs_the_token_when_one_is_set() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app_with(
        &[("f", flow(&dest.url))],
        &[],
        fast_engine(),
        Some("api-token-123"),
    )
    .await;
    let id = app.accept("f", json!({"x": 1})).await;
    let r = app
        .http
        .get(format!("{}/api/runs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(format!("{}/api/runs/{id}", app.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.wait_status(&id, hookflow::run::RunStatus::Succeeded).await;
    let r = app
        .http
        .get(format!("{}/api/runs?flow=f&status=succeeded", app.base))
        .bearer_auth("api-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["runs"][0]["id"], id.as_str());
    let r = app
        .http
        .get(format!("{}/api/runs/{id}", app.base))
        .bearer_auth("api-token-123")
        .send()
        .await
        .unwrap();
    let run: serde_json::Value = r.json().await.unwrap();
    assert_eq!(run["request"]["body"], json!({"x": 1}));
    let r = app
        .http
        .get(format!("{}/api/runs?status=bogus", app.base))
        .bearer_auth("api-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn many_concurrent_accepts_all_land() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app(&[("f", flow(&dest.url))], &[]).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let http = app.http.clone();
        let url = app.hook_url("f");
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(json!({"i": i}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            r.json::<serde_json::Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    for id in &ids {
        app.wait_status(id, hookflow::run::RunStatus::Succeeded).await;
    }
    assert_eq!(dest.hits().len(), 64);
    app.stop().await;
}

/// Sends a chunked JSON body of `size` bytes over a raw socket; returns the status and body.
async fn raw_chunked_post(url: &str, size: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut sock = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 4096];
    let mut sent = 0;
    while sent < size {
        let n = chunk.len().min(size - sent);
        let piece = format!("{n:x}\r\n");
        if sock.write_all(piece.as_bytes()).await.is_err()
            || sock.write_all(&chunk[..n]).await.is_err()
            || sock.write_all(b"\r\n").await.is_err()
        {
            break; // the server may stop reading once the limit is hit
        }
        sent += n;
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut resp = Vec::new();
    let _ = sock.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Every route of the API and `/metrics` passes the access rule before its handler runs (a
/// layer over the API's router, so a new route cannot forget it): without the token each
/// answers 401 and changes nothing; with it, none does. The dashboard's page and files hold
/// no data and stay public, and so do the health checks.
#[tokio::test]
async fn every_api_route_needs_the_token_and_a_refused_write_changes_nothing() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app_with(
        &[("f", flow(&dest.url))],
        &[],
        fast_engine(),
        Some("api-token-123"),
    )
    .await;
    let id = app.accept("f", json!({"x": 1})).await;
    let routes: Vec<(reqwest::Method, String)> = [
        ("GET", "/api/runs".to_string()),
        ("GET", format!("/api/runs/{id}")),
        ("POST", format!("/api/runs/{id}/replay")),
        ("POST", format!("/api/runs/{id}/exit")),
        ("POST", "/api/flows/f/exit".into()),
        ("POST", "/api/flows/f/replay-failed".into()),
        ("GET", "/api/flows/f/requests".into()),
        ("GET", "/api/flows".into()),
        ("GET", "/api/flows/f".into()),
        ("GET", "/api/stats".into()),
        ("GET", "/api/requests".into()),
        ("GET", "/api/segments".into()),
        ("GET", "/api/segments/vip/members".into()),
        ("POST", "/api/segments/vip/members".into()),
        ("DELETE", "/api/segments/vip/members/a@example.com".into()),
        ("GET", "/api/segments/vip/export".into()),
        ("GET", "/api/contacts/a@example.com".into()),
        ("GET", "/api/suppressions".into()),
        ("POST", "/api/suppressions".into()),
        ("POST", "/api/suppressions/import".into()),
        ("DELETE", "/api/suppressions/a@example.com".into()),
        ("GET", "/api/alerts".into()),
        ("GET", "/api/breakers".into()),
        ("GET", "/api/destinations".into()),
        ("GET", "/api/store".into()),
        ("GET", "/api/instances".into()),
        ("POST", "/api/backup".into()),
        ("GET", "/metrics".into()),
    ]
    .into_iter()
    .map(|(m, p)| (m.parse().unwrap(), p))
    .collect();
    let send = |m: &reqwest::Method, p: &str, token: Option<&str>| {
        let mut r = app
            .http
            .request(m.clone(), format!("{}{p}", app.base))
            .header("content-type", "application/json")
            .body(r#"{"email":"a@example.com","reason":"x"}"#);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    for (m, p) in &routes {
        for token in [None, Some("wrong")] {
            let r = send(m, p, token).await.unwrap();
            assert_eq!(r.status(), 401, "{m} {p} with {token:?}");
        }
    }
    // Nothing a refused write asked for happened.
    let list = send(&reqwest::Method::GET, "/api/suppressions", Some("api-token-123"))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(list["suppressions"].as_array().map(Vec::len), Some(0), "{list}");
    for (m, p) in &routes {
        let r = send(m, p, Some("api-token-123")).await.unwrap();
        assert_ne!(r.status(), 401, "{m} {p} refused the token");
        assert_ne!(r.status(), 403, "{m} {p} refused the token");
    }
    for p in ["/", "/favicon.svg", "/assets/dashboard.js", "/healthz", "/readyz"] {
        let r = send(&reqwest::Method::GET, p, None).await.unwrap();
        assert_eq!(r.status(), 200, "{p} is public");
    }
    app.stop().await;
}
