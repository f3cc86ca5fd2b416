//! The API behind the dashboard's views, over real HTTP: the per-flow time series
//! (`/api/stats`), every flow's request log (`/api/requests`, with wrong URLs under
//! `(unknown)`), one flow in full (`/api/flows/{flow}`), member search, and the dashboard's
//! own files with their content security policy.

use std::collections::BTreeSet;

use serde_json::json;

use crate::helpers::{Receiver, Reply, spawn_app};
use hookflow::run::RunStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_requests_and_flow_detail_answer_from_real_traffic() {
    let dest = Receiver::start(Reply::status(200)).await;
    let shop = format!(
        "description: shop\non:\n  webhook:\n    when:\n      - path: $.status\n        equals: paid\nvars:\n  email: $.email\nactions:\n  - name: ship\n    http: {{ url: \"{}/ship\" }}\n  - name: keep\n    segment: {{ email: \"{{{{ vars.email }}}}\", add: buyers }}\n",
        dest.url
    );
    let nightly = "on:\n  schedule: { cron: \"30 9 * * *\", timezone: Europe/Berlin }\nactions:\n  - emit: { type: report.due }\n";
    let app = spawn_app(&[("shop", shop.clone()), ("nightly", nightly.to_string())], &[]).await;
    let mut ids = Vec::new();
    for who in ["ada", "grace"] {
        let r = app
            .post_json(
                "shop",
                json!({"status": "paid", "email": format!("{who}@example.com")}),
            )
            .await;
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<serde_json::Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        app.post_json("shop", json!({"status": "open"})).await.status(),
        200
    );
    let bad = app
        .http
        .post(app.hook_url("shop"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let token = app.tokens.token("shop");
    let wrong = app
        .http
        .post(format!("{}/hooks/nosuch/{token}", app.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    for id in &ids {
        app.wait_status(id, RunStatus::Succeeded).await;
    }

    // The time series: this minute and this hour hold what happened.
    // A run is counted as it ends, just after its end is stored: wait for the count.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stats = loop {
        let stats = app.api("/api/stats").await;
        let done = stats["flows"].as_array().unwrap().iter().any(|f| {
            f["flow"] == "shop"
                && f["hour"]["totals"]["succeeded"] == 2
                && f["day"]["totals"]["succeeded"] == 2
        });
        if done || std::time::Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let of = |name: &str| {
        stats["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["flow"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no series for {name}: {stats:#}"))
    };
    let shop_stats = of("shop");
    for window in ["hour", "day"] {
        let t = &shop_stats[window]["totals"];
        assert_eq!(
            (
                t["accepted"].as_u64(),
                t["ignored"].as_u64(),
                t["refused"].as_u64(),
                t["succeeded"].as_u64()
            ),
            (Some(2), Some(1), Some(1), Some(2)),
            "{window}: {shop_stats:#}"
        );
        assert_eq!(t["attempts"], 4, "two actions of two runs");
        assert!(shop_stats[window]["p50_ms"].as_u64().is_some());
    }
    assert_eq!(
        shop_stats["hour"]["counts"]["accepted"].as_array().unwrap().len(),
        60
    );
    assert_eq!(shop_stats["hour"]["step_seconds"], 60);
    assert_eq!(
        shop_stats["day"]["counts"]["accepted"].as_array().unwrap().len(),
        24
    );
    assert_eq!(shop_stats["day"]["step_seconds"], 3600);
    // The last bucket is now's (a minute turning over between the posts and here moves them
    // to the one before: look at both).
    let recent: u64 = shop_stats["hour"]["counts"]["accepted"].as_array().unwrap()[58..]
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(recent, 2);
    assert_eq!(of("(unknown)")["hour"]["totals"]["refused"], 1);
    assert_eq!(stats["queue"]["depth"], 0);
    assert!(stats["open_circuits"].as_array().unwrap().is_empty());

    // The request log of every flow: the refusals with their reasons, a wrong URL by the name
    // asked for and never its token.
    let refused = app.api("/api/requests?outcome=refused").await;
    let refused = refused["requests"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    let unknown = refused.iter().find(|r| r["flow"] == "(unknown)").unwrap();
    assert_eq!(unknown["status"], 404);
    let detail = unknown["detail"].as_str().unwrap();
    assert!(detail.starts_with("/hooks/nosuch/…"), "{detail}");
    assert!(!unknown.to_string().contains(&token), "{unknown}");
    let malformed = refused.iter().find(|r| r["flow"] == "shop").unwrap();
    assert_eq!(malformed["status"], 400);
    let shop_log = app.api("/api/requests?flow=shop").await;
    let outcomes: Vec<&str> = shop_log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["refused", "ignored", "accepted", "accepted"],
        "newest first"
    );
    assert_eq!(
        app.api("/api/requests?limit=1").await["requests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // One flow in full: its file, the same as JSON, its URL; a schedule's next firings.
    let f = app.api("/api/flows/shop").await;
    assert_eq!(f["source"], shop);
    assert_eq!(f["spec"]["on"]["webhook"]["when"][0]["equals"], "paid");
    assert_eq!(f["spec"]["actions"][1]["segment"]["add"], "buyers");
    assert_eq!(f["path"], format!("/hooks/shop/{token}"));
    crate::helpers::flow_with_counter(&app.http, &app.base, "shop", "ignored", 1).await;
    let n = app.api("/api/flows/nightly").await;
    let next: Vec<&str> = n["schedule"]["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(next.len(), 5);
    assert!(next.windows(2).all(|w| w[0] < w[1]), "{next:?}");
    assert_eq!(n["schedule"]["timezone"], "Europe/Berlin");
    let missing = app
        .http
        .get(format!("{}/api/flows/nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_found_by_part_of_their_address_page_by_page() {
    let app = spawn_app(&[], &[]).await;
    for i in 0..30 {
        let r = app
            .http
            .post(format!("{}/api/segments/list/members", app.base))
            .json(&json!({"email": format!("User-{i}@Example.com")}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let mut found = BTreeSet::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("{}/api/segments/list/members?q=USER-2&limit=5", app.base);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page = crate::helpers::get(&app.http, url).await;
        pages += 1;
        for m in page["members"].as_array().unwrap() {
            assert!(
                found.insert(m["email"].as_str().unwrap().to_string()),
                "{m} twice"
            );
        }
        match page["next_after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
        assert!(pages < 10);
    }
    let want: BTreeSet<String> = std::iter::once(2)
        .chain(20..30)
        .map(|i| format!("user-{i}@example.com"))
        .collect();
    assert_eq!(found, want);
    assert!(pages >= 3, "11 matches at 5 a page: {pages} pages");
    let none = app.api("/api/segments/list/members?q=nobody").await;
    assert!(none["members"].as_array().unwrap().is_empty());
    assert!(none["next_after"].is_null());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_files_are_served_with_a_strict_policy() {
    let app = spawn_app(&[], &[]).await;
    let page = app.http.get(format!("{}/", app.base)).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script>"),
        "no inline script: the policy would block it"
    );
    for (file, ty, min) in [
        ("dashboard.js", "text/javascript", 5_000),
        ("dashboard.css", "text/css", 1_000),
        ("uplot.min.js", "text/javascript", 40_000),
        ("uplot.min.css", "text/css", 1_000),
    ] {
        assert!(html.contains(&format!("/assets/{file}")), "{file} is linked");
        let r = app
            .http
            .get(format!("{}/assets/{file}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{file}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(ty));
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(r.bytes().await.unwrap().len() > min, "{file}");
    }
    // Browsers get the embedded gzip as it is; it unpacks to what a client without gzip gets.
    let plain = app
        .http
        .get(format!("{}/assets/uplot.min.js", app.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let gz = app
        .http
        .get(format!("{}/assets/uplot.min.js", app.base))
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let gz = gz.bytes().await.unwrap();
    assert!(gz.len() * 2 < plain.len(), "{} of {}", gz.len(), plain.len());
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unpacked).unwrap();
    assert_eq!(unpacked, plain);
    for path in [
        "/assets/nope.js",
        "/assets/..%2FCargo.toml",
        "/assets/%2e%2e%2fCargo.toml",
    ] {
        let r = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    app.stop().await;
}
