//! When the wall clock jumps (issue 28): the real binary under libfaketime, its wall clock
//! stepped by rewriting one file while its monotonic clock runs on — as NTP does after a
//! suspend, a VM migration or a bad RTC. Nothing is sent twice, nothing is lost, nothing waits
//! an hour for nothing; and on PostgreSQL an instance whose clock is two minutes ahead neither
//! takes a run in flight nor stays quiet about its clock.
//!
//! Needs Debian's `libfaketime` (scripts/test.sh installs it): skipped without it, unless
//! `HOOKFLOW_VENDOR_TESTS=required`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Binary, Receiver, Reply, get, wait_run};
use crate::pg::Schema;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A process's wall clock, held `offset` seconds from the system's by libfaketime.
struct FakeClock {
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeClock {
    /// `None` (the test is skipped) without libfaketime, unless vendor tests are required.
    fn new(offset_s: i64) -> Option<FakeClock> {
        if !std::path::Path::new(LIBFAKETIME).exists() {
            assert_ne!(
                std::env::var("HOOKFLOW_VENDOR_TESTS").as_deref(),
                Ok("required"),
                "libfaketime is missing: apt-get install faketime"
            );
            eprintln!("skipped: no {LIBFAKETIME}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let clock = FakeClock {
            file: dir.path().join("faketime"),
            _dir: dir,
        };
        clock.set(offset_s);
        Some(clock)
    }

    /// Steps the wall clock to `offset_s` seconds from the system's (read at every call).
    fn set(&self, offset_s: i64) {
        std::fs::write(&self.file, format!("{offset_s:+}\n")).unwrap();
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", LIBFAKETIME.to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
    }
}

/// Posts `body` to `url`, which must accept it; the run's id.
async fn accepted(http: &reqwest::Client, url: String, body: Value) -> String {
    let r = http.post(url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until a request has arrived at `dest` (answered or not).
async fn arrived(dest: &Receiver) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dest.arrivals().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no request arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn env_of<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn slow_forward(dest: &str, timeout: &str) -> String {
    format!(
        r#"on: {{ webhook: {{}} }}
actions:
  - name: deliver
    http:
      url: "{dest}/deliver"
      body: {{ n: "{{{{ body.n }}}}" }}
      timeout: {timeout}
"#
    )
}

/// Regression: an http attempt in flight when the wall clock was stepped +1 h lost its lease;
/// the engine sent the same request again while the first was still in flight, and recorded
/// the first attempt as 3,625,006 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_in_flight_through_a_step_is_sent_once_and_timed_on_the_monotonic_clock() {
    let Some(clock) = FakeClock::new(0) else { return };
    let dest = Receiver::start(Reply::status(200).delayed(Duration::from_secs(6))).await;
    let flow = slow_forward(&dest.url, "30s");
    let env = clock.env();
    let app = Binary::start(&[("slow", &flow)], &["--lease", "5s"], &env_of(&env)).await;
    let http = reqwest::Client::new();
    let id = accepted(&http, app.hook_url("slow"), json!({"n": 1})).await;
    arrived(&dest).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    clock.set(3600);
    let run = wait_run(&http, &app.base, &id, |r| r["status"] == "succeeded").await;
    // Long enough for a second claim to have happened (poll 1 s, lease 5 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        dest.arrivals().len(),
        1,
        "the request went out twice:\n{}",
        app.log()
    );
    let attempts = run["steps"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{run:#}");
    let ms = attempts[0]["duration_ms"].as_u64().unwrap();
    assert!(
        (5_000..20_000).contains(&ms),
        "the attempt took {ms} ms by the record"
    );
    assert!(app.log().contains("the wall clock was stepped"), "{}", app.log());
    let metrics = crate::helpers::metrics(&http, &app.base).await;
    assert!(metrics.contains("hookflow_clock_steps_total 1"), "{metrics}");
}

fn ticker(dest: &str) -> String {
    format!(
        r#"on:
  schedule:
    cron: "* * * * * *"
    missed: run_once
actions:
  - http:
      url: "{dest}/tick"
      body: {{ at: "{{{{ body.scheduled_at }}}}", missed: "{{{{ body.missed }}}}" }}
"#
    )
}

/// A per-second schedule through +1 h and back: the hour passed over is one run carrying the
/// count (the flow's `missed: run_once`), not 3,600 runs at once; after the step back no slot
/// fires a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_follows_its_missed_rule_over_a_step_and_never_fires_a_slot_twice() {
    let Some(clock) = FakeClock::new(0) else { return };
    let dest = Receiver::start(Reply::status(200)).await;
    let env = clock.env();
    let app = Binary::start(&[("tick", &ticker(&dest.url))], &[], &env_of(&env)).await;
    dest.wait_hits(2).await;
    // Slot times are the binary's wall clock: the system's until the step, then an hour on.
    let stepped = std::time::SystemTime::now();
    clock.set(3600);
    tokio::time::sleep(Duration::from_secs(4)).await;
    clock.set(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hits = dest.hits();
    let bodies: Vec<Value> = hits.iter().map(|h| h.json()).collect();
    let slots: BTreeSet<String> = bodies
        .iter()
        .map(|b| b["at"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(slots.len(), hits.len(), "a slot fired twice: {bodies:#?}");
    // Seconds from the step to each slot: those fired before it are at most a second or so
    // after it, those of the hour ahead are 3,600 s on, and a slot of the hour stepped back
    // over (its wall clock ran 4 s past the step) would lie between the two.
    let offsets: Vec<f64> = slots
        .iter()
        .map(|at| {
            let t = humantime::parse_rfc3339(at).unwrap();
            match t.duration_since(stepped) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            }
        })
        .collect();
    let between: Vec<&f64> = offsets.iter().filter(|o| **o > 2.5 && **o < 3000.0).collect();
    assert!(
        between.is_empty(),
        "slots of the hour stepped back over fired again, {between:?} s after the step:\n{}",
        app.log()
    );
    let ahead = offsets.iter().filter(|o| **o >= 3000.0).count();
    assert!(
        (1..15).contains(&ahead),
        "{ahead} firings within 4 s of the step:\n{}",
        app.log()
    );
    let caught_up: Vec<u64> = bodies
        .iter()
        .filter_map(|b| b["missed"].as_u64())
        .filter(|m| *m > 0)
        .collect();
    assert!(
        caught_up.len() == 1 && caught_up[0] > 3000,
        "one run for the hour passed over: {caught_up:?}"
    );
}

/// A wait for a wall-clock hour through steps of the clock: a step past the hour wakes it at
/// once, once; a step back after that sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_an_hour_wakes_once_when_the_clock_steps_past_it() {
    let Some(clock) = FakeClock::new(0) else { return };
    let dest = Receiver::start(Reply::status(200)).await;
    // An hour and five minutes from now (UTC), as the flow writes it.
    let at = std::time::SystemTime::now() + Duration::from_secs(65 * 60);
    let at = humantime::format_rfc3339(at).to_string();
    let hhmm = &at[11..16];
    let flow = format!(
        r#"on: {{ webhook: {{}} }}
actions:
  - wait: {{ at: "{hhmm}" }}
  - name: deliver
    http: {{ url: "{}/woke" }}
"#,
        dest.url
    );
    let env = clock.env();
    let app = Binary::start(&[("w", &flow)], &[], &env_of(&env)).await;
    let http = reqwest::Client::new();
    let id = accepted(&http, app.hook_url("w"), json!({})).await;
    wait_run(&http, &app.base, &id, |r| r["status"] == "waiting").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(dest.arrivals().is_empty(), "woke before its hour");
    clock.set(2 * 3600);
    wait_run(&http, &app.base, &id, |r| r["status"] == "succeeded").await;
    clock.set(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(dest.arrivals().len(), 1, "{}", app.log());
}

/// A dedupe window counts time that passed, not a step: a sender's retry a few seconds after
/// a step of +1 day is still the same delivery, and a new delivery is still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_forward_neither_reopens_a_dedupe_window_nor_refuses_new_deliveries() {
    let Some(clock) = FakeClock::new(0) else { return };
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = format!(
        r#"on:
  webhook:
    dedupe: {{ key: "{{{{ headers['x-delivery'] }}}}", window: 1h }}
actions:
  - http: {{ url: "{}/d" }}
"#,
        dest.url
    );
    let env = clock.env();
    let app = Binary::start(&[("d", &flow)], &[], &env_of(&env)).await;
    let http = reqwest::Client::new();
    let send = |key: &'static str| {
        http.post(app.hook_url("d"))
            .header("x-delivery", key)
            .json(&json!({}))
            .send()
    };
    assert_eq!(send("a").await.unwrap().status(), 202);
    clock.set(86_400);
    // The step is seen within a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = send("a").await.unwrap();
    assert_eq!(again.status(), 200, "the window reopened:\n{}", app.log());
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(send("b").await.unwrap().status(), 202);
}

/// Regression: a second instance whose clock was 120 s ahead took over, at once, a run whose
/// attempt the first instance had in flight, and sent it again. Leases are on the database's
/// clock; the instance that is off says so (a WARN and `hookflow_clock_offset_seconds`) and
/// follows the database's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_two_minutes_ahead_takes_no_run_in_flight_and_says_its_clock_is_off() {
    two_instances_whose_clocks_disagree(120).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_thirty_seconds_behind_takes_no_run_in_flight() {
    two_instances_whose_clocks_disagree(-30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_five_minutes_ahead_takes_no_run_in_flight() {
    two_instances_whose_clocks_disagree(300).await;
}

/// The second instance's clock is `offset_s` off the first's (and the database's). Both serve
/// a slow webhook flow and a per-second schedule.
async fn two_instances_whose_clocks_disagree(offset_s: i64) {
    let Some(ahead) = FakeClock::new(offset_s) else {
        return;
    };
    let Some(schema) = Schema::create().await else {
        return;
    };
    let dest = Receiver::start(Reply::status(200)).await;
    dest.on_path("/deliver", Reply::status(200).delayed(Duration::from_secs(8)));
    let flow = slow_forward(&dest.url, "30s");
    let tick = ticker(&dest.url);
    let flows = [("slow", flow.as_str()), ("tick", tick.as_str())];
    let args = ["--store", schema.url.as_str(), "--lease", "5s"];
    let first = Binary::start(&flows, &args, &[]).await;
    let http = reqwest::Client::new();
    let id = accepted(&http, first.hook_url("slow"), json!({"n": 1})).await;
    arrived(&dest).await;
    let env = ahead.env();
    let second = Binary::start(&flows, &args, &env_of(&env)).await;
    wait_run(&http, &first.base, &id, |r| r["status"] == "succeeded").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered = |dest: &Receiver| dest.arrivals().iter().filter(|h| h.path == "/deliver").count();
    assert_eq!(
        delivered(&dest),
        1,
        "sent twice; first:\n{}\nsecond:\n{}",
        first.log(),
        second.log()
    );
    // Both instances work on: each new event once.
    let mut last_id = String::new();
    let mut sent_at = hookflow::run::Ts::now();
    for n in 2..12 {
        sent_at = hookflow::run::Ts::now();
        last_id = accepted(&http, second.hook_url("slow"), json!({"n": n})).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dest.hits().iter().filter(|h| h.path == "/deliver").count() < 11 {
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered: {:?}",
            delivered(&dest)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(delivered(&dest), 11, "an event was sent twice");
    // One firing per slot, and the schedule kept firing (no slot held back by a clock ahead).
    let ticks: Vec<String> = dest
        .hits()
        .iter()
        .filter(|h| h.path == "/tick")
        .map(|h| h.json()["at"].as_str().unwrap().to_string())
        .collect();
    let slots: BTreeSet<&String> = ticks.iter().collect();
    assert_eq!(slots.len(), ticks.len(), "a slot fired twice: {ticks:?}");
    let last: hookflow::run::Ts = serde_json::from_value(json!(slots.last().unwrap())).unwrap();
    let now = hookflow::run::Ts::now();
    assert!(
        now.0.abs_diff(last.0) < 5_000,
        "the schedule stopped: last slot {last}, now {now}"
    );
    let log = second.log();
    assert!(log.contains("far off the database's"), "{log}");
    let metrics = crate::helpers::metrics(&http, &second.base).await;
    let offset: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookflow_clock_offset_seconds "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    let want = -(offset_s as f64);
    assert!((offset - want).abs() < 5.0, "offset {offset}, want {want}");
    // It follows the database's clock: what it records is not minutes off, and its run ids
    // (which sort by time) sort after the first instance's earlier run.
    let run = get(&http, format!("{}/api/runs/{last_id}", second.base)).await;
    let created: hookflow::run::Ts = serde_json::from_value(run["created_at"].clone()).unwrap();
    assert!(
        last_id > id,
        "its run {last_id} sorts before the earlier run {id}"
    );
    assert!(
        created.0.abs_diff(sent_at.0) < 5_000,
        "recorded at {created}, sent at {sent_at}"
    );
}
