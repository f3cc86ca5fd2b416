//! Segments and chained flows through real HTTP: a webhook adds a buyer to a segment, an
//! unsubscribe removes a contact and the `segment.removed` event drives a CRM flow whose call
//! the destination receives; the admin API pages, exports and changes segments; contacts
//! survive a restart; loops stop at the depth limit; failed runs raise `run.failed`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Receiver, Reply, TestApp, spawn_app};
use hookflow::run::{Run, RunStatus};
use hookflow::store::RunFilter;

/// Waits until `flow` has `n` runs, all finished, and returns them oldest first.
async fn wait_runs(app: &TestApp, flow: &str, n: usize) -> Vec<Run> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut runs = app
            .store
            .list_runs(&RunFilter {
                flow: Some(flow.into()),
                limit: 1000,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        if runs.len() >= n && runs.iter().all(|r| r.status.is_terminal()) {
            runs.reverse();
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{flow}: {} runs: {runs:#?}",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn buyers_flow() -> String {
    r#"
on:
  webhook: {}
vars:
  email: $.billing.email
  first_name: $.billing.first_name
  total: $.total
actions:
  - name: remember
    segment:
      email: "{{ vars.email }}"
      add: recent-buyers
      attributes:
        first_name: "{{ vars.first_name }}"
        total: "{{ vars.total }}"
"#
    .into()
}

fn welcome_flow(dest: &str) -> String {
    format!(
        r#"
on:
  event:
    type: segment.added
    when:
      - path: $.data.segment
        equals: recent-buyers
actions:
  - http:
      url: "{dest}/welcome"
      body: {{ email: "{{{{ body.data.contact.email }}}}", event: "{{{{ body.type }}}}", depth: "{{{{ body.depth }}}}" }}
"#
    )
}

fn unsubscribe_flow() -> String {
    r#"
on:
  webhook: {}
actions:
  - segment:
      email: "{{ body.email }}"
      remove: [newsletter]
"#
    .into()
}

fn crm_flow(dest: &str) -> String {
    format!(
        r#"
on:
  event:
    type: segment.removed
    when:
      - path: $.data.segment
        equals: newsletter
actions:
  - name: tell_crm
    http:
      url: "{dest}/crm/unsubscribed"
      body: "{{{{ body | json }}}}"
      headers: {{ Content-Type: application/json }}
"#
    )
}

#[tokio::test]
async fn adding_is_idempotent_merges_attributes_and_raises_one_event() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app(
        &[("buyers", buyers_flow()), ("welcome", welcome_flow(&dest.url))],
        &[],
    )
    .await;

    let order =
        |total: f64| json!({"total": total, "billing": {"email": "Ann@Example.com", "first_name": "Ann"}});
    let first = app.accept("buyers", order(10.0)).await;
    app.wait_status(&first, RunStatus::Succeeded).await;
    let second = app.accept("buyers", order(25.5)).await;
    let run = app.wait_status(&second, RunStatus::Succeeded).await;
    assert_eq!(run.steps[0].output.as_ref().unwrap()["email"], "ann@example.com");

    // One welcome (the second order only updated the member), with the event's envelope.
    let welcomes = wait_runs(&app, "welcome", 1).await;
    let hits = dest.wait_hits(1).await;
    assert_eq!(hits[0].path, "/welcome");
    assert_eq!(
        hits[0].json(),
        json!({"email": "ann@example.com", "event": "segment.added", "depth": 1})
    );
    assert_eq!(welcomes[0].depth, 1);
    assert_eq!(welcomes[0].trigger_event.as_deref(), Some("segment.added"));

    let contact = app.api("/api/contacts/ANN@example.com").await;
    assert_eq!(contact["email"], "ann@example.com");
    assert_eq!(contact["attributes"], json!({"first_name": "Ann", "total": 25.5}));
    assert_eq!(contact["segments"], json!(["recent-buyers"]));
    let segs = app.api("/api/segments").await;
    assert_eq!(segs["segments"], json!([{"name": "recent-buyers", "members": 1}]));
    // Nothing else arrives: still one welcome after the dispatcher had time to run again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dest.hits().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_unsubscribe_removes_the_contact_and_the_crm_hears_of_it() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app(
        &[("unsubscribe", unsubscribe_flow()), ("crm", crm_flow(&dest.url))],
        &[],
    )
    .await;
    let add = app
        .http
        .post(format!("{}/api/segments/newsletter/members", app.base))
        .json(&json!({"email": "bob@example.org", "attributes": {"source": "form"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), 200);
    assert_eq!(add.json::<Value>().await.unwrap()["change"], "added");

    let id = app
        .accept("unsubscribe", json!({"email": " BOB@example.org "}))
        .await;
    app.wait_status(&id, RunStatus::Succeeded).await;
    let hits = dest.wait_hits(1).await;
    assert_eq!(hits[0].path, "/crm/unsubscribed");
    let event = hits[0].json();
    assert_eq!(event["type"], "segment.removed");
    assert_eq!(event["version"], 1);
    assert_eq!(event["data"]["segment"], "newsletter");
    assert_eq!(event["data"]["contact"]["email"], "bob@example.org");
    assert_eq!(event["data"]["contact"]["attributes"]["source"], "form");
    assert_eq!(event["source"]["flow"], "unsubscribe");
    assert_eq!(event["source"]["run_id"], id.as_str());

    // Unsubscribing again changes nothing and tells the CRM nothing.
    let again = app
        .accept("unsubscribe", json!({"email": "bob@example.org"}))
        .await;
    app.wait_status(&again, RunStatus::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dest.hits().len(), 1);
    let contact = app.api("/api/contacts/bob@example.org").await;
    assert_eq!(contact["segments"], json!([]));

    // An API removal is an unsubscribe like any other.
    app.http
        .post(format!("{}/api/segments/newsletter/members", app.base))
        .json(&json!({"email": "cy@example.org"}))
        .send()
        .await
        .unwrap();
    let del = app
        .http
        .delete(format!(
            "{}/api/segments/newsletter/members/cy@example.org",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(del.json::<Value>().await.unwrap()["change"], "removed");
    let hits = dest.wait_hits(2).await;
    assert_eq!(hits[1].json()["source"]["via"], "api");
    app.stop().await;
}

#[tokio::test]
async fn segments_page_export_and_survive_a_restart() {
    let app = spawn_app(&[("buyers", buyers_flow())], &[]).await;
    for (i, name) in ["eve", "ann", "dan", "bob", "cy"].iter().enumerate() {
        let r = app
            .http
            .post(format!("{}/api/segments/vip/members", app.base))
            .json(&json!({"email": format!("{name}@example.com"), "attributes": {"n": i, "name": name}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Attributes merge on update.
    app.http
        .post(format!("{}/api/segments/vip/members", app.base))
        .json(&json!({"email": "ann@example.com", "attributes": {"city": "Oslo, NO"}}))
        .send()
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let q = if after.is_empty() {
            String::new()
        } else {
            format!("&after={after}")
        };
        let page = app.api(&format!("/api/segments/vip/members?limit=2{q}")).await;
        for m in page["members"].as_array().unwrap() {
            seen.push(m["email"].as_str().unwrap().to_string());
        }
        match page["next_after"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["ann", "bob", "cy", "dan", "eve"].map(|n| format!("{n}@example.com"))
    );

    let app = app.restart().await;
    assert_eq!(
        app.api("/api/segments").await["segments"],
        json!([{"name": "vip", "members": 5}])
    );
    let ann = app.api("/api/contacts/ann@example.com").await;
    assert_eq!(
        ann["attributes"],
        json!({"n": 1, "name": "ann", "city": "Oslo, NO"})
    );
    let csv = app
        .http
        .get(format!("{}/api/segments/vip/export", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0], "email,added_at,created_at,updated_at,city,n,name");
    assert!(
        lines[1].starts_with("ann@example.com,") && lines[1].ends_with(",\"Oslo, NO\",1,ann"),
        "{}",
        lines[1]
    );

    // Bad input to the API.
    let bad = app
        .http
        .post(format!("{}/api/segments/vip/members", app.base))
        .json(&json!({"email": "not an address"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = app
        .http
        .get(format!("{}/api/segments/no%20such/members", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn a_self_triggering_flow_stops_at_the_depth_limit() {
    // A loop `validate` cannot see (an `emit` cycle is a load error): each run adds a new
    // contact to the segment whose additions trigger it.
    let start = r#"
on:
  webhook: {}
actions:
  - segment: { email: "hop0@example.com", add: loop }
"#;
    let echo = r#"
on:
  event: segment.added
actions:
  - segment:
      email: "hop{{ body.depth }}@example.com"
      add: loop
"#;
    let app = spawn_app(&[("start", start.into()), ("echo", echo.into())], &[]).await;
    let id = app.accept("start", json!({})).await;
    app.wait_status(&id, RunStatus::Succeeded).await;
    let runs = wait_runs(&app, "echo", 8).await;
    assert_eq!(runs.len(), 8);
    assert_eq!(
        runs.iter().map(|r| r.depth).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<u32>>()
    );
    assert!(runs[..7].iter().all(|r| r.status == RunStatus::Succeeded));
    let last = &runs[7];
    assert_eq!(last.status, RunStatus::Failed);
    let err = last.error.as_deref().unwrap();
    assert!(
        err.contains("event chain too deep") && err.contains("limit is 8"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.all_runs().await.len(), 9, "nothing runs past the limit");
    app.stop().await;
}

#[tokio::test]
async fn failed_runs_raise_run_failed_but_a_failing_alert_does_not_alert_about_itself() {
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/reject", Reply::status(400));
    let orders = format!(
        r#"
on:
  webhook: {{}}
actions:
  - name: push
    http:
      url: "{}/reject"
"#,
        dest.url
    );
    let alert = |path: &str| {
        format!(
            r#"
on:
  event: run.failed
actions:
  - http:
      url: "{}{path}"
      body: {{ text: "{{{{ body.data.flow }}}} run {{{{ body.data.run_id }}}} failed at {{{{ body.data.action }}}}" }}
"#,
            dest.url
        )
    };
    let app = spawn_app(
        &[
            ("orders", orders),
            ("chat", alert("/chat")),
            ("pager", alert("/reject")),
        ],
        &[],
    )
    .await;
    let id = app.accept("orders", json!({})).await;
    app.wait_status(&id, RunStatus::Failed).await;
    let chat = wait_runs(&app, "chat", 1).await;
    assert_eq!(chat[0].status, RunStatus::Succeeded);
    let pager = wait_runs(&app, "pager", 1).await;
    assert_eq!(pager[0].status, RunStatus::Failed);
    let posted: Vec<Value> = dest
        .hits()
        .iter()
        .filter(|h| h.path == "/chat")
        .map(|h| h.json())
        .collect();
    assert_eq!(
        posted,
        [json!({"text": format!("orders run {id} failed at push")})]
    );
    // The pager's own failure raises nothing more.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.all_runs().await.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn the_cli_lists_segments_and_shows_members() {
    let app = spawn_app(&[("buyers", buyers_flow())], &[]).await;
    for email in ["b@example.com", "a@example.com", "c@example.com"] {
        app.http
            .post(format!("{}/api/segments/vip/members", app.base))
            .json(&json!({"email": email, "attributes": {"tier": "gold"}}))
            .send()
            .await
            .unwrap();
    }
    let base = app.base.clone();
    let cli = move |args: Vec<String>| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
            all.extend(["--server", base.as_str()]);
            let out = crate::cli::hookflow(&all, std::path::Path::new("."));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        })
    };
    let list = cli(vec!["segments".into(), "list".into()]).await.unwrap();
    assert_eq!(list, "SEGMENT  MEMBERS\nvip      3\n");
    let show = cli(["segments", "show", "vip", "--limit", "2"]
        .map(String::from)
        .to_vec())
    .await
    .unwrap();
    let lines: Vec<&str> = show.lines().collect();
    assert!(
        lines[1].starts_with("a@example.com") && lines[1].ends_with("{\"tier\":\"gold\"}"),
        "{show}"
    );
    assert!(lines[2].starts_with("b@example.com"), "{show}");
    assert_eq!(lines[3], "(more: --after b@example.com)");
    app.stop().await;
}
