//! Cron-triggered flows on a per-second schedule: firings at the right times, no firing twice
//! across a restart, and the missed-firing policies.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Receiver, Reply, TestApp, spawn_app};
use hookflow::run::{Run, RunStatus, Ts};

fn ticker(dest: &str, missed: &str) -> String {
    format!(
        r#"
on:
  schedule:
    cron: "* * * * * *"
    missed: {missed}
actions:
  - http:
      url: "{dest}/tick"
      body: {{ at: "{{{{ body.scheduled_at }}}}", missed: "{{{{ body.missed }}}}" }}
"#
    )
}

fn parse_ts(v: &Value) -> Ts {
    serde_json::from_value(v.clone()).unwrap()
}

/// Finished runs of the flow, oldest first.
async fn runs(app: &TestApp) -> Vec<Run> {
    let mut all: Vec<Run> = app.all_runs().await;
    all.retain(|r| r.status == RunStatus::Succeeded);
    all.reverse();
    all
}

#[tokio::test]
async fn a_per_second_schedule_fires_on_time_and_never_twice_across_a_restart() {
    let dest = Receiver::start(Reply::status(200)).await;
    let app = spawn_app(&[("tick", ticker(&dest.url, "skip"))], &[]).await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let first = runs(&app).await;
    assert!((2..=4).contains(&first.len()), "{} firings in 3.3 s", first.len());
    for r in &first {
        let at = parse_ts(&r.request.body["scheduled_at"]);
        let fired = parse_ts(&r.request.body["fired_at"]);
        assert_eq!(at.0 % 1000, 0, "fires on the second: {at}");
        assert!(
            fired >= at && fired.since(at) < Duration::from_millis(1500),
            "{at} fired at {fired}"
        );
        assert_eq!(r.request.method, "SCHEDULE");
    }
    let app = app.restart().await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let all = runs(&app).await;
    assert!(all.len() > first.len());
    let mut times: Vec<u64> = all
        .iter()
        .map(|r| parse_ts(&r.request.body["scheduled_at"]).0)
        .collect();
    let n = times.len();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), n, "a second fired twice: {times:?}");
    // Consecutive whole seconds, no gap across the restart (it was immediate).
    assert!(times.windows(2).all(|w| w[1] - w[0] <= 2000), "{times:?}");
    app.stop().await;
}

#[tokio::test]
async fn missed_firings_are_skipped_by_default_or_run_once() {
    for (policy, expect_catch_up) in [("skip", false), ("run_once", true)] {
        let dest = Receiver::start(Reply::status(200)).await;
        let app = spawn_app(&[("tick", ticker(&dest.url, policy))], &[]).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = runs(&app).await.len();
        assert!(before >= 1, "{policy}: no firing before the pause");
        let app = app.restart_after(Duration::from_millis(3200)).await;
        // At least one firing after the restart, and time for its run to finish.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let all = runs(&app).await;
        let catch_up: Vec<&Run> = all
            .iter()
            .filter(|r| r.request.body["missed"].as_u64().unwrap_or(0) > 0)
            .collect();
        if expect_catch_up {
            assert_eq!(catch_up.len(), 1, "{policy}: {all:#?}");
            assert!(catch_up[0].request.body["missed"].as_u64().unwrap() >= 2);
        } else {
            assert!(catch_up.is_empty(), "{policy}: {catch_up:#?}");
            let times: Vec<u64> = all
                .iter()
                .map(|r| parse_ts(&r.request.body["scheduled_at"]).0)
                .collect();
            assert!(
                times.windows(2).any(|w| w[1] - w[0] >= 3000),
                "{policy}: no gap in {times:?}"
            );
        }
        app.stop().await;
    }
}

/// What makes a restart (or a second instance) safe: the store refuses a firing at or before
/// the recorded one, atomically with queueing its run.
#[tokio::test]
async fn the_store_records_each_firing_once() {
    use hookflow::request::Request;
    use hookflow::store::{Coordination, Durability, RunQueue, SledStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), Durability::Flush).unwrap();
    let run = |id: &str| {
        let mut r = Run::new(
            "tick",
            "v1",
            Request::default(),
            Default::default(),
            None,
            ["a".to_string()],
        );
        r.id = id.to_string();
        r
    };
    assert_eq!(store.last_firing("tick").await.unwrap(), None);
    // A webhook run waiting in the intake journal, older than the firing's run in sled.
    store.insert_run(&run("019")).await.unwrap();
    assert!(
        store
            .record_firing("tick", Ts(5000), Some(run("01a")))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_firing("tick", Ts(5000), Some(run("01b")))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_firing("tick", Ts(4000), Some(run("01c")))
            .await
            .unwrap()
    );
    assert!(store.record_firing("tick", Ts(6000), None).await.unwrap());
    assert_eq!(store.last_firing("tick").await.unwrap(), Some(Ts(6000)));
    assert!(store.get_run("01a").await.unwrap().is_some());
    assert!(store.get_run("01b").await.unwrap().is_none());
    assert!(store.get_run("01c").await.unwrap().is_none());
    // Listings merge both by id, newest first, and page through them.
    use hookflow::store::RunFilter;
    let page = |before: Option<&str>| {
        let f = RunFilter {
            before: before.map(str::to_string),
            limit: 1,
            ..RunFilter::default()
        };
        let store = &store;
        async move {
            store
                .list_runs(&f)
                .await
                .unwrap()
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None).await, ["01a"]);
    assert_eq!(page(Some("01a")).await, ["019"]);
    assert!(page(Some("019")).await.is_empty());
}
