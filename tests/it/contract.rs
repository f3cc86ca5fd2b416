//! Interfaces in the forms their tools read (issue 34): `/metrics` in OpenMetrics or in
//! Prometheus's classic text format by `Accept`, with the build and the process's figures,
//! checked by Prometheus's own `promtool` (Debian's `prometheus` package; the README's test
//! command installs it; without it the promtool part is skipped unless
//! HOOKFLOW_VENDOR_TESTS=required).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::helpers::Binary;

/// `promtool check metrics` over `text`: its exit code and what it said; `None` without promtool.
fn promtool(text: &str) -> Option<(i32, String)> {
    let required = std::env::var("HOOKFLOW_VENDOR_TESTS").is_ok_and(|v| v == "required");
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(!required, "promtool is required (HOOKFLOW_VENDOR_TESTS=required)");
        eprintln!("SKIPPED: no promtool (Debian's prometheus package)");
        return None;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// Regression: `/metrics` answered OpenMetrics only, even to `Accept: text/plain;
/// version=0.0.4`, and had no build or process figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_in_the_format_asked_for_with_the_build_and_the_process() {
    let app = Binary::start(
        &[("f", "on: { webhook: {} }\nactions:\n  - emit: { type: t.x }\n")],
        &[],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.post(app.hook_url("f"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let scrape = |accept: Option<&'static str>| {
        let mut req = http.get(format!("{}/metrics", app.base));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        async move {
            let r = req.send().await.unwrap();
            let ty = r.headers()["content-type"].to_str().unwrap().to_string();
            (ty, r.text().await.unwrap())
        }
    };
    // What Prometheus itself sends prefers OpenMetrics.
    let (ty, om) = scrape(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ))
    .await;
    assert!(ty.starts_with("application/openmetrics-text"), "{ty}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE hookflow_webhook_requests counter\n"), "{om}");
    let (ty, classic) = scrape(Some("text/plain; version=0.0.4")).await;
    assert_eq!(ty, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!classic.contains("# EOF"), "{classic}");
    assert!(
        classic.contains("# TYPE hookflow_webhook_requests_total counter\n"),
        "{classic}"
    );
    assert_eq!(
        scrape(None).await.0,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    for text in [&om, &classic] {
        assert!(
            text.contains(&format!(
                "hookflow_build_info{{version=\"{}\",commit=\"",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no RSS in {text}"));
        assert!(rss > 1_000_000, "{rss}");
        assert!(text.contains("\nprocess_open_fds "), "{text}");
        assert!(text.contains("\nprocess_start_time_seconds "), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
    }
    if let Some((code, said)) = promtool(&classic) {
        assert_eq!(code, 0, "promtool check metrics on the classic format: {said}");
        // The check can fail: the OpenMetrics text is not the classic format.
        let (code, said) = promtool(&om).unwrap();
        assert_ne!(code, 0, "{said}");
    }
}
