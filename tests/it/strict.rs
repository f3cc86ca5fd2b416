//! Strict rendering over real HTTP and SMTP: a template that reads a name the event does not
//! hold fails its run — naming the expression and where it is — and sends nothing, in every
//! place a template renders. Regression for "an undefined var in a JSON body leaf is sent as
//! `null` and the run succeeds". (A var the flow does not declare at all is refused at load by
//! the static pass; what only the event can tell — a field missing inside a declared var —
//! is what these runs meet.)

use serde_json::json;

use crate::email::{smtp, start_smtp};
use crate::helpers::{Opts, Receiver, Reply, spawn_app_opts};
use hookflow::run::RunStatus;

const VARS: &str = "vars:\n  email: $.email\n  order_id: $.id\n  tags: $.tags\n  customer: $.customer\n";

/// One flow per place that renders: (flow name, action YAML, where the error must point).
fn cases(dest: &str) -> Vec<(&'static str, String, &'static str)> {
    let http = |extra: &str| format!("  - name: call\n    http:\n      url: \"{dest}/in\"\n{extra}");
    vec![
        (
            "body-map-leaf",
            http("      body: { email: \"{{ vars.customer.emial }}\", id: \"{{ vars.order_id }}\" }\n"),
            "in actions[0].http.body.email",
        ),
        (
            "body-list-leaf",
            http("      body: { tags: [\"{{ vars.email }}\", \"{{ vars.customer.emial }}\"] }\n"),
            "in actions[0].http.body.tags[1]",
        ),
        (
            "body-text-leaf",
            http("      body: { label: \"order for {{ vars.customer.emial }}\" }\n"),
            "in actions[0].http.body.label",
        ),
        (
            "body-nested-expr",
            http("      body: { all: \"{{ {'to': vars.customer.emial} }}\" }\n"),
            "in actions[0].http.body.all",
        ),
        (
            "body-text",
            http("      body: \"email={{ vars.customer.emial | urlencode }}\"\n"),
            "in actions[0].http.body",
        ),
        (
            "url",
            format!("  - http:\n      url: \"{dest}/orders/{{{{ vars.customer.ordr_id }}}}\"\n"),
            "in actions[0].http.url",
        ),
        (
            "header",
            http("      headers: { X-Order: \"{{ vars.customer.ordr_id | tojson }}\" }\n"),
            "in actions[0].http.headers.X-Order",
        ),
        (
            "body-template-file",
            http("      body_template: order.json.j2\n"),
            "in templates/order.json.j2:3",
        ),
        (
            "included-file",
            http("      body_template: outer.json.j2\n"),
            "in templates/inner.j2:2",
        ),
        (
            "email-subject",
            "  - email: { to: \"{{ vars.email }}\", subject: \"Order {{ vars.customer.ordr_id }}\", text: hi }\n".into(),
            "in actions[0].email.subject",
        ),
        (
            "email-to",
            "  - email: { to: \"{{ vars.customer.emial }}\", subject: hi, text: hi }\n".into(),
            "in actions[0].email.to",
        ),
        (
            "email-text-file",
            "  - email: { to: \"{{ vars.email }}\", subject: hi, text_template: mail.txt }\n".into(),
            "in templates/mail.txt:2",
        ),
        (
            "segment-email",
            "  - segment: { email: \"{{ vars.customer.emial }}\", add: buyers }\n".into(),
            "in actions[0].segment.email",
        ),
        (
            "segment-attribute",
            "  - segment: { email: \"{{ vars.email }}\", add: buyers, attributes: { id: \"{{ vars.customer.ordr_id }}\" } }\n"
                .into(),
            "in actions[0].segment.attributes.id",
        ),
        (
            "emit-data",
            "  - emit: { type: shop.thing, data: { email: \"{{ vars.customer.emial }}\" } }\n".into(),
            "in actions[0].emit.data.email",
        ),
    ]
}

#[tokio::test]
async fn an_undefined_name_fails_the_run_naming_it_wherever_it_renders() {
    let dest = Receiver::start(Reply::status(200)).await;
    let (smtp_port, mails) = start_smtp(0);
    let cases = cases(&dest.url);
    let flows: Vec<(&str, String)> = cases
        .iter()
        .map(|(name, actions, _)| {
            (
                *name,
                format!("on: {{ webhook: {{}} }}\n{VARS}actions:\n{actions}"),
            )
        })
        .collect();
    let templates = [
        (
            "order.json.j2",
            "{\n  \"id\": {{ vars.order_id }},\n  \"email\": {{ vars.customer.emial | tojson }}\n}\n",
        ),
        ("outer.json.j2", "{\"x\": {% include 'inner.j2' %}}"),
        ("inner.j2", "\n{{ vars.customer.ordr_id | tojson }}"),
        ("mail.txt", "Hello,\n{{ vars.customer.emial }}\n"),
    ];
    let app = spawn_app_opts(&flows, &templates, smtp(smtp_port)).await;
    let order = json!({"id": 42, "email": "ada@example.com", "tags": ["a"], "customer": {"name": "Ada"}});
    let mut ids = Vec::new();
    for (name, _, _) in &cases {
        ids.push(app.accept(name, order.clone()).await);
    }
    for ((name, _, place), id) in cases.iter().zip(&ids) {
        let run = app.wait_status(id, RunStatus::Failed).await;
        let err = run.error.clone().unwrap_or_default();
        let undefined = [
            "`vars.customer.emial` is undefined",
            "`vars.customer.ordr_id` is undefined",
        ];
        assert!(undefined.iter().any(|u| err.contains(u)), "{name}: {err}");
        assert!(err.contains(place), "{name}: expected `{place}` in: {err}");
        let attempts = &run.steps[0].attempts;
        assert_eq!(
            attempts.len(),
            1,
            "{name}: a render error is not retried: {run:#?}"
        );
        let recorded = attempts[0].error.clone().unwrap_or_default();
        assert!(
            err.ends_with(&recorded),
            "{name}: the attempt records it: {recorded}"
        );
    }
    assert!(dest.hits().is_empty(), "nothing was sent: {:#?}", dest.hits());
    assert!(mails.mails().is_empty(), "no mail was sent");
    let members = app.api("/api/segments").await;
    assert_eq!(
        members["segments"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{members}"
    );
    app.stop().await;
}

#[tokio::test]
async fn defaults_and_defined_checks_keep_optional_values_working() {
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = format!(
        r#"on: {{ webhook: {{}} }}
{VARS}actions:
  - http:
      url: "{}/in"
      body:
        email: "{{{{ vars.email }}}}"
        phone: "{{{{ body.phone | default(none) }}}}"
        note: "{{{{ body.note | default('none given') }}}}"
        vip: "{{{{ body.vip is defined }}}}"
        missing_path: "{{{{ vars.tags }}}}"
"#,
        dest.url
    );
    let app = spawn_app_opts(&[("ok", flow)], &[], Opts::default()).await;
    let id = app.accept("ok", json!({"email": "ada@example.com"})).await;
    app.wait_status(&id, RunStatus::Succeeded).await;
    assert_eq!(
        dest.hits()[0].json(),
        json!({"email": "ada@example.com", "phone": null, "note": "none given", "vip": false, "missing_path": null})
    );
    app.stop().await;
}

#[tokio::test]
async fn an_undefined_name_in_the_ordering_key_refuses_the_event_with_a_clear_answer() {
    let flow = "on: { webhook: {} }\nvars: { id: $.id, customer: $.customer }\nconcurrency: { key: \"order-{{ vars.customer.idd }}\" }\nactions:\n  - emit: { type: x.y }\n";
    let app = spawn_app_opts(&[("keyed", flow.to_string())], &[], Opts::default()).await;
    let resp = app.post_json("keyed", json!({"id": 1, "customer": {}})).await;
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "ordering_key_error", "{body}");
    let log = app.api("/api/flows/keyed/requests").await;
    let detail = log["requests"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(detail.contains("`vars.customer.idd` is undefined"), "{log}");
    assert!(detail.contains("in concurrency.key"), "{log}");
    assert!(app.all_runs().await.is_empty());
    app.stop().await;
}

/// Regression (issue 27): one flow serving GitHub's `issues` and `pull_request` events failed
/// the `issues` run at `{{ body.pull_request.merged | default(none) }}` — `default` and `is
/// defined` guarded only the last step of a nested lookup. Over the real binary: guarded
/// lookups are undefined all the way through, an unguarded one still fails, naming the missing
/// part and saying how to guard it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_nested_lookup_serves_every_event_shape_and_an_unguarded_one_still_fails() {
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = format!(
        r#"on: {{ webhook: {{}} }}
actions:
  - name: notify
    http:
      url: "{}/in"
      body:
        kind: "{{{{ 'pull request' if body.pull_request.number is defined else 'issue' }}}}"
        merged: "{{{{ body.pull_request.merged | default(none) }}}}"
        has_pr: "{{{{ body.pull_request.merged is defined }}}}"
        label: "{{{{ body['label']['name'] | default('none') }}}}"
        title: "{{% if body.pull_request.title %}}{{{{ body.pull_request.title }}}}{{% else %}}{{{{ body.issue.title }}}}{{% endif %}}"
"#,
        dest.url
    );
    let strict = format!(
        "on: {{ webhook: {{}} }}\nactions:\n  - name: notify\n    http:\n      url: \"{}/strict\"\n      body:\n        merged: \"{{{{ body.pull_request.merged }}}}\"\n",
        dest.url
    );
    let app = crate::helpers::Binary::start(&[("github", &flow), ("strict", &strict)], &[], &[]).await;
    let http = reqwest::Client::new();
    let issue = json!({"action": "opened", "issue": {"number": 7, "title": "Crash on start"}});
    let pr = json!({"action": "closed", "pull_request": {"number": 8, "merged": true, "title": "Fix crash"},
                    "label": {"name": "bug"}});
    for body in [&issue, &pr] {
        let r = http.post(app.hook_url("github")).json(body).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    let hits = dest.wait_hits(2).await;
    let mut got: Vec<serde_json::Value> = hits.iter().map(|h| h.json()).collect();
    got.sort_by_key(|v| v["kind"].as_str().unwrap_or("").to_string());
    assert_eq!(
        got,
        [
            json!({"kind": "issue", "merged": null, "has_pr": false, "label": "none", "title": "Crash on start"}),
            json!({"kind": "pull request", "merged": true, "has_pr": true, "label": "bug", "title": "Fix crash"}),
        ]
    );

    let r = http
        .post(app.hook_url("strict"))
        .json(&issue)
        .send()
        .await
        .unwrap();
    let id = r.json::<serde_json::Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = crate::helpers::wait_run(&http, &app.base, &id, |r| r["status"] == "failed").await;
    let err = run["error"].as_str().unwrap();
    assert!(err.contains("`body.pull_request` is undefined"), "{err}");
    assert!(err.contains("guard it: `… | default(…)`"), "{err}");
    assert!(dest.hits().iter().all(|h| h.path != "/strict"));
}
