//! End to end through real HTTP: conditions, vars, two chained actions checked exactly by the
//! destination, skipped actions, ignored events, custom answers to the sender.

use serde_json::json;

use crate::helpers::{Receiver, Reply, spawn_app};
use hookflow::run::{RunStatus, StepStatus};

fn orders_flow(dest: &str) -> String {
    format!(
        r#"
description: e2e
on:
  webhook:
    when:
      - header: X-Topic
        equals: order.created
      - path: $.total
        gte: 10
vars:
  id: {{ path: $.id, required: true }}
  email: $.customer.email
  skus: $.items[*].sku
actions:
  - name: create_ticket
    http:
      method: POST
      url: "{dest}/tickets?order={{{{ vars.id }}}}"
      headers:
        X-Api-Key: "{{{{ secret('E2E_API_KEY', 'k-123') }}}}"
        X-Order: "{{{{ vars.id }}}}"
      body:
        order: "{{{{ vars.id }}}}"
        email: "{{{{ vars.email }}}}"
        skus: "{{{{ vars.skus }}}}"
        attempt: "{{{{ attempt }}}}"
      success: [201]
  - name: never
    when:
      - var: email
        equals: nobody@example.com
    http:
      url: "{dest}/never"
  - name: notify
    http:
      method: PUT
      url: "{dest}/tickets/{{{{ steps.create_ticket.body.id }}}}/notes"
      body: "Ticket {{{{ steps.create_ticket.body.id }}}} for {{{{ vars.email | urlencode }}}} (status {{{{ steps.create_ticket.status }}}})"
"#
    )
}

#[tokio::test]
async fn two_chained_actions_send_exactly_what_the_flow_says() {
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/tickets", Reply::json(201, json!({"id": "T-77"})));
    let app = spawn_app(&[("orders", orders_flow(&dest.url))], &[]).await;

    let resp = app
        .http
        .post(app.hook_url("orders"))
        .header("content-type", "application/json")
        .header("x-topic", "order.created")
        .body(json!({"id": 42, "total": "19.90", "customer": {"email": "ada@example.com"}, "items": [{"sku": "A"}, {"sku": "B"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    let id = body["run_id"].as_str().unwrap().to_string();

    let run = app.wait_status(&id, RunStatus::Succeeded).await;
    let hits = dest.hits();
    assert_eq!(hits.len(), 2, "{hits:#?}");

    let first = &hits[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/tickets?order=42");
    assert_eq!(first.headers["x-api-key"], "k-123");
    assert_eq!(first.headers["x-order"], "42");
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(first.headers["idempotency-key"], format!("{id}.create_ticket"));
    assert_eq!(
        first.json(),
        json!({"order": 42, "email": "ada@example.com", "skus": ["A", "B"], "attempt": 1})
    );

    let second = &hits[1];
    assert_eq!(second.method, "PUT");
    assert_eq!(second.path, "/tickets/T-77/notes");
    assert_eq!(second.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(second.headers["idempotency-key"], format!("{id}.notify"));
    assert_eq!(second.body, "Ticket T-77 for ada%40example.com (status 201)");

    assert_eq!(
        run.steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        [StepStatus::Succeeded, StepStatus::Skipped, StepStatus::Succeeded]
    );
    assert_eq!(run.steps[0].output.as_ref().unwrap()["body"]["id"], "T-77");
    assert_eq!(run.vars["skus"], json!(["A", "B"]));
    // The secret is sent but never recorded.
    let recorded = run.steps[0].attempts[0].request.as_ref().unwrap();
    let key = recorded.headers.iter().find(|(k, _)| k == "x-api-key").unwrap();
    assert_eq!(key.1, "[redacted]");
    assert!(!serde_json::to_string(&run).unwrap().contains("k-123"));
    app.stop().await;
}

#[tokio::test]
async fn events_that_do_not_match_are_ignored_and_counted_not_run() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app(&[("orders", orders_flow(&dest.url))], &[]).await;
    for (topic, total) in [("order.updated", "50"), ("order.created", "5")] {
        let resp = app
            .http
            .post(app.hook_url("orders"))
            .header("content-type", "application/json")
            .header("x-topic", topic)
            .body(json!({"id": 1, "total": total}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "ignored", "{body}");
        // The answer does not tell any caller what the flow's conditions are.
        assert!(body.get("reason").is_none(), "{body}");
    }
    // A matching event with a missing required var is refused, not ignored.
    let resp = app
        .http
        .post(app.hook_url("orders"))
        .header("content-type", "application/json")
        .header("x-topic", "order.created")
        .body(json!({"total": 50}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "missing_var", "{body}");
    assert!(!body["detail"].as_str().unwrap().contains("`id`"), "{body}");
    // The request log has the whole story: why each was ignored, what was missing.
    let log = app.api("/api/flows/orders/requests").await;
    let entries = log["requests"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{log}");
    assert!(entries[0]["detail"].as_str().unwrap().contains("`id`"), "{log}");
    for e in &entries[1..] {
        assert_eq!(e["outcome"], "ignored");
        assert!(e["reason"].as_str().unwrap().contains("condition not met"), "{e}");
    }

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let c = app.store.counters("orders").await.unwrap();
        if c.get("ignored") == Some(&2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ignored counter is {c:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(app.all_runs().await.is_empty());
    assert!(dest.hits().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn respond_block_answers_handshakes() {
    let dest = Receiver::start(Reply::status(200)).await;
    let slack = format!(
        r#"
on:
  webhook:
    respond:
      status: 200
      headers: {{ X-Run: "{{{{ run_id }}}}" }}
      body: "{{{{ body.challenge | default('ok') }}}}"
vars:
  kind: {{ path: $.type, required: true }}
actions:
  - when: [{{ var: kind, equals: event_callback }}]
    http: {{ url: "{}/slack" }}
"#,
        dest.url
    );
    let hub = format!(
        r#"
on:
  webhook:
    methods: [GET, POST]
    respond:
      status: 200
      body: "{{{{ query['hub.challenge'] | default('') }}}}"
actions:
  - when: [{{ expr: "method == 'POST'" }}]
    http: {{ url: "{}/hub" }}
"#,
        dest.url
    );
    let app = spawn_app(&[("slack", slack), ("hub", hub)], &[]).await;

    let resp = app.post_json("slack", json!({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})).await;
    assert_eq!(resp.status(), 200);
    let run_id = resp.headers()["x-run"].to_str().unwrap().to_string();
    assert_eq!(
        resp.text().await.unwrap(),
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let run = app.wait_status(&run_id, RunStatus::Succeeded).await;
    assert_eq!(run.steps[0].status, StepStatus::Skipped);

    let resp = app
        .http
        .get(format!(
            "{}?hub.mode=subscribe&hub.challenge=1158201444",
            app.hook_url("hub")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "1158201444");

    let resp = app.http.delete(app.hook_url("hub")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST");
    assert!(dest.hits().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn form_bodies_become_objects_and_file_templates_render() {
    let dest = Receiver::start(Reply::json(201, json!({"id": 9}))).await;
    let flow = format!(
        r#"
vars:
  email: {{ path: $.email, required: true }}
  tags: $.tag[*]
on: {{ webhook: {{}} }}
actions:
  - name: ticket
    http:
      url: "{}/t"
      body_template: helpdesk/ticket.json.j2
"#,
        dest.url
    );
    let app = spawn_app(
        &[("form", flow)],
        &[(
            "helpdesk/ticket.json.j2",
            "{\"email\": {{ vars.email | json }}, \"tags\": {{ vars.tags | json }}}",
        )],
    )
    .await;
    let resp = app
        .http
        .post(app.hook_url("form"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=ada%40example.com&tag=a&tag=b")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let id = resp.json::<serde_json::Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_status(&id, RunStatus::Succeeded).await;
    let hit = &dest.hits()[0];
    assert_eq!(hit.headers["content-type"], "application/json");
    assert_eq!(
        hit.json(),
        json!({"email": "ada@example.com", "tags": ["a", "b"]})
    );
    app.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed_unless_the_action_says_so() {
    let dest = Receiver::start(Reply::status(200)).await;
    let mut moved = Reply::status(302);
    moved
        .headers
        .push(("location".into(), format!("{}/new", dest.url)));
    dest.on_path("/old", moved);
    let flow = |follow: bool| {
        format!(
            "on: {{ webhook: {{}} }}\nretry: {{ max_attempts: 1 }}\nactions:\n  - http: {{ url: \"{}/old\", follow_redirects: {follow} }}\n",
            dest.url
        )
    };
    let app = spawn_app(&[("stay", flow(false)), ("follow", flow(true))], &[]).await;

    let id = app.accept("stay", json!({})).await;
    let run = app.wait_status(&id, RunStatus::Failed).await;
    assert_eq!(run.steps[0].attempts[0].response.as_ref().unwrap().status, 302);
    assert!(run.error.unwrap().contains("HTTP 302"));
    assert_eq!(
        dest.hits().iter().map(|h| h.path.as_str()).collect::<Vec<_>>(),
        ["/old"]
    );

    let id = app.accept("follow", json!({})).await;
    app.wait_status(&id, RunStatus::Succeeded).await;
    assert_eq!(
        dest.hits().iter().map(|h| h.path.as_str()).collect::<Vec<_>>(),
        ["/old", "/old", "/new"]
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_follow_known_traffic() {
    use crate::helpers::spawn_app;
    let dest = Receiver::start(Reply::status(200)).await;
    let f = format!(
        "on:\n  webhook: {{}}\nactions:\n  - http: {{ url: \"{}/m\" }}\n",
        dest.url
    );
    let app = spawn_app(&[("m", f)], &[]).await;
    for _ in 0..2 {
        let id = app.accept("m", json!({})).await;
        app.wait_status(&id, RunStatus::Succeeded).await;
    }
    let bad = app
        .http
        .post(app.hook_url("m"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let wrong = app
        .http
        .post(format!("{}/hooks/m/wrong-token", app.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    let text = crate::helpers::metrics(&app.http, &app.base).await;
    for line in [
        r#"hookflow_webhook_requests_total{flow="m"} 3"#,
        r#"hookflow_webhook_requests_total{flow="(unknown)"} 1"#,
        r#"hookflow_webhook_refused_total{flow="m",reason="malformed_body"} 1"#,
        r#"hookflow_webhook_refused_total{flow="(unknown)",reason="not_found"} 1"#,
        r#"hookflow_runs_finished_total{flow="m",status="succeeded"} 2"#,
        r#"hookflow_action_attempts_total{kind="http",outcome="succeeded"} 2"#,
        r#"hookflow_action_attempt_duration_seconds_count{kind="http"} 2"#,
        "hookflow_queue_depth 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    let ready = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn history_filters_and_retention_pruning() {
    use crate::helpers::spawn_app;
    use std::time::Duration;
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/slow", Reply::status(200).delayed(Duration::from_secs(20)));
    let f = format!(
        "on:\n  webhook: {{}}\nactions:\n  - http: {{ url: \"{}/{{{{ body.path }}}}\" }}\n",
        dest.url
    );
    let app = spawn_app(&[("h", f)], &[]).await;
    let mut done = Vec::new();
    for i in 0..5 {
        let id = app
            .accept("h", json!({"path": "ok", "customer": format!("Customer-{i}")}))
            .await;
        app.wait_status(&id, RunStatus::Succeeded).await;
        done.push(id);
    }
    let running = app.accept("h", json!({"path": "slow"})).await;
    dest.wait_hits(5).await;

    // Text search and time range.
    let found = app.api("/api/runs?q=customer-3").await;
    let ids: Vec<&str> = found["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [done[3].as_str()]);
    let first = app.store.get_run(&done[0]).await.unwrap().unwrap();
    let since = hookflow::run::Ts(first.created_at.0 + 1);
    let later = app
        .api(&format!("/api/runs?status=succeeded&since={since}"))
        .await;
    assert_eq!(later["runs"].as_array().unwrap().len(), 4);

    // Retention: beyond 3 runs the oldest finished go; then everything finished before now.
    let pruned = app.store.prune(hookflow::run::Ts(0), 3, 100).await.unwrap();
    assert_eq!(pruned, 3);
    assert!(app.store.get_run(&done[0]).await.unwrap().is_none());
    assert!(app.store.get_run(&done[3]).await.unwrap().is_some());
    let pruned = app
        .store
        .prune(hookflow::run::Ts::now(), 1000, 100)
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    let left = app.all_runs().await;
    assert_eq!(left.len(), 1, "the unfinished run is never pruned");
    assert_eq!(left[0].id, running);
    app.stop().await;
}
