//! Leases: a claim whose worker died is taken over once it expires, a stale lease cannot write,
//! and a restarted store resumes what the previous process held.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, json};

use crate::helpers::{Receiver, Reply, fast_engine};
use hookflow::engine::Engine;
use hookflow::flow::load_dir;
use hookflow::request::Request;
use hookflow::run::{Run, RunStatus, Ts};
use hookflow::store::{ClaimRequest, Durability, Next, RunQueue, SledStore, Store, StoreError};

fn new_run(flow: &str, key: Option<&str>) -> Run {
    let req = Request {
        method: "POST".into(),
        body: json!({}),
        ..Request::default()
    };
    Run::new(
        flow,
        "v",
        req,
        Map::new(),
        key.map(str::to_string),
        ["http_1".to_string()],
    )
}

fn claim_req(lease: Duration) -> ClaimRequest {
    ClaimRequest {
        now: Ts::now(),
        lease_for: lease,
        limit: 10,
        caps: Default::default(),
        fair_share: 0,
    }
}

/// One flow's backlog does not fill every claim: with a fair share of 2, a claim of 8 takes
/// the other flow's due runs although they are younger, and fills up with the backlog.
#[tokio::test]
async fn a_backlog_of_one_flow_leaves_room_for_the_others_in_each_claim() {
    let store = SledStore::temporary().unwrap();
    for _ in 0..20 {
        store.insert_run(&new_run("busy", None)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    for _ in 0..2 {
        store.insert_run(&new_run("quiet", None)).await.unwrap();
    }
    let claimed = store
        .claim(ClaimRequest {
            limit: 8,
            fair_share: 2,
            ..claim_req(Duration::from_secs(30))
        })
        .await
        .unwrap();
    let flows: Vec<&str> = claimed.iter().map(|c| c.run.flow.as_str()).collect();
    assert_eq!(flows.len(), 8, "{flows:?}");
    assert_eq!(flows.iter().filter(|f| **f == "quiet").count(), 2, "{flows:?}");
    // Without a fair share: oldest first, the quiet flow waits.
    let store2 = SledStore::temporary().unwrap();
    for _ in 0..20 {
        store2.insert_run(&new_run("busy", None)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    store2.insert_run(&new_run("quiet", None)).await.unwrap();
    let claimed = store2
        .claim(ClaimRequest {
            limit: 8,
            ..claim_req(Duration::from_secs(30))
        })
        .await
        .unwrap();
    assert!(claimed.iter().all(|c| c.run.flow == "busy"));
}

#[tokio::test]
async fn a_run_orphaned_by_a_dead_worker_completes_after_its_lease_expires() {
    let dest = Receiver::start(Reply::status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("flows")).unwrap();
    std::fs::write(
        dir.path().join("flows/orphan.yaml"),
        format!(
            "on: {{ webhook: {{}} }}\nactions:\n  - http: {{ url: \"{}/x\" }}\n",
            dest.url
        ),
    )
    .unwrap();
    let (flows, errors) = load_dir(&dir.path().join("flows"), &dir.path().join("templates"));
    assert!(errors.is_empty(), "{errors:?}");
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&dir.path().join("store"), Durability::Flush).unwrap());

    let run = new_run("orphan", None);
    store.insert_run(&run).await.unwrap();
    // A worker claims the run and dies without a word.
    let claimed_at = Instant::now();
    let dead = store.claim(claim_req(Duration::from_millis(600))).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        store.get_run(&run.id).await.unwrap().unwrap().status,
        RunStatus::Running
    );

    let engine = Arc::new(Engine::new(
        Arc::clone(&store),
        hookflow::reload::Flows::new(flows),
        fast_engine(),
        hookflow::action::Clients::new(
            None,
            hookflow::egress::Policy {
                allow: vec!["127.0.0.0/8".parse().unwrap()],
            },
        )
        .unwrap(),
        Default::default(),
        Default::default(),
    ));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&engine).run(shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = store.get_run(&run.id).await.unwrap().unwrap();
        if r.status == RunStatus::Succeeded {
            break;
        }
        assert!(Instant::now() < deadline, "orphaned run never completed: {r:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        claimed_at.elapsed() >= Duration::from_millis(550),
        "taken over before the lease expired"
    );
    assert_eq!(dest.hits().len(), 1);

    // The dead worker's lease is worthless now.
    let err = store
        .save(&dead[0].lease, &dead[0].run, Next::Done)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    shutdown.cancel();
    task.await.unwrap();
}

async fn nothing_claimable(store: &SledStore) -> bool {
    store
        .claim(claim_req(Duration::from_secs(30)))
        .await
        .unwrap()
        .is_empty()
}

#[tokio::test]
async fn lanes_caps_and_due_times_in_the_store() {
    let store = SledStore::temporary().unwrap();
    let a1 = new_run("f", Some("A"));
    let a2 = new_run("f", Some("A"));
    let b1 = new_run("f", Some("B"));
    for r in [&a1, &a2, &b1] {
        store.insert_run(r).await.unwrap();
    }
    let first = store.claim(claim_req(Duration::from_secs(30))).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|c| c.run.id.as_str()).collect();
    assert_eq!(ids, [a1.id.as_str(), b1.id.as_str()], "a2 waits behind a1");
    assert!(nothing_claimable(&store).await);

    // a1 goes to retry: its lane stays blocked.
    let later = Ts::now().plus(Duration::from_secs(3600));
    store
        .save(&first[0].lease, &first[0].run, Next::RetryAt(later))
        .await
        .unwrap();
    assert!(nothing_claimable(&store).await);
    // The earliest due entry is b1's lease expiry, in the future.
    assert!(store.next_due().await.unwrap().unwrap() > Ts::now());

    // b1 finishes; a1 is due only in an hour, so nothing is claimable.
    store
        .save(&first[1].lease, &first[1].run, Next::Done)
        .await
        .unwrap();
    assert!(nothing_claimable(&store).await);
    let mut future = claim_req(Duration::from_secs(30));
    future.now = later;
    let retried = store.claim(future).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].run.id, a1.id);
    store
        .save(&retried[0].lease, &retried[0].run, Next::Done)
        .await
        .unwrap();
    let next = store.claim(claim_req(Duration::from_secs(30))).await.unwrap();
    assert_eq!(
        next.iter().map(|c| c.run.id.as_str()).collect::<Vec<_>>(),
        [a2.id.as_str()]
    );

    // Caps count unexpired leases of the flow.
    for _ in 0..3 {
        store.insert_run(&new_run("capped", None)).await.unwrap();
    }
    let mut capped = claim_req(Duration::from_secs(30));
    capped.caps.insert("capped".into(), 2);
    assert_eq!(store.claim(capped.clone()).await.unwrap().len(), 2);
    assert_eq!(store.claim(capped).await.unwrap().len(), 0);
}

#[tokio::test]
async fn reopening_the_store_resumes_runs_held_by_the_previous_process() {
    let dir = tempfile::tempdir().unwrap();
    let run = new_run("f", None);
    {
        let store = SledStore::open(dir.path(), Durability::Fsync).unwrap();
        store.insert_run(&run).await.unwrap();
        let c = store.claim(claim_req(Duration::from_secs(3600))).await.unwrap();
        assert_eq!(c.len(), 1);
        store.sync().await.unwrap();
    }
    let store = SledStore::open(dir.path(), Durability::Flush).unwrap();
    let c = store.claim(claim_req(Duration::from_secs(30))).await.unwrap();
    assert_eq!(
        c.len(),
        1,
        "the hour-long lease of the dead process was released at open"
    );
    assert_eq!(c[0].run.id, run.id);
}

/// A claim admits from the journal what it looks through, not the whole backlog: admitted
/// ahead, every run is written to sled twice (admitted, then claimed in a later group) and the
/// backlog sits in sled's memory before the first run is executed.
#[tokio::test]
async fn claims_admit_from_the_journal_only_what_they_look_through() {
    let store = SledStore::temporary().unwrap();
    let runs: Vec<Run> = (0..1000).map(|_| new_run("f", None)).collect();
    for r in &runs {
        store.insert_run(r).await.unwrap();
    }
    let mut req = claim_req(Duration::from_secs(30));
    req.limit = 4;
    let mut claimed = Vec::new();
    for _ in 0..3 {
        claimed.extend(store.claim(req.clone()).await.unwrap());
        let admitted = 1000 - store.journal_pending();
        // 4 claimed per claim, and sled topped up to 64 due (4 × 16 looked through).
        assert!(
            admitted <= claimed.len() + 64,
            "{admitted} admitted for {} claimed",
            claimed.len()
        );
    }
    let ids: Vec<&str> = claimed.iter().map(|c| c.run.id.as_str()).collect();
    let oldest: Vec<&str> = runs[..12].iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, oldest, "still oldest first");
    // Without a cap, a claim with more room takes more.
    req.limit = 500;
    assert_eq!(store.claim(req).await.unwrap().len(), 500);
}

#[tokio::test]
async fn a_capped_flows_backlog_does_not_starve_other_flows() {
    let store = SledStore::temporary().unwrap();
    for _ in 0..200 {
        store.insert_run(&new_run("busy", None)).await.unwrap();
    }
    let other = new_run("other", None);
    store.insert_run(&other).await.unwrap();
    let mut req = claim_req(Duration::from_secs(30));
    req.caps.insert("busy".into(), 1);
    let got = store.claim(req.clone()).await.unwrap();
    let flows: Vec<&str> = got.iter().map(|c| c.run.flow.as_str()).collect();
    assert_eq!(
        flows,
        ["busy", "other"],
        "one busy run (its cap) and the other flow's run behind the backlog"
    );
    assert!(store.claim(req).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path(), Durability::Flush).unwrap());
    let before = store.intake_write_count();
    // The first write's leader stops after it while the other inserts queue up.
    let hold = store.hold_intake();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.insert_run(&new_run("f", None)).await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(hold);
    for t in tasks {
        t.await.unwrap();
    }
    let writes = store.intake_write_count() - before;
    assert!(writes >= 1);
    assert!(
        writes < 20,
        "200 concurrent durable inserts took {writes} journal writes: no group commit"
    );
}

/// The caller that leads a journal write can go away (a client that disconnects drops its
/// request) without stranding the group it was writing or the runs queued behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_whose_callers_go_away_still_leave_the_journal_working() {
    for durability in [Durability::Flush, Durability::Fsync] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path(), durability).unwrap());
        let runs: Vec<Run> = (0..300).map(|_| new_run("f", None)).collect();
        let tasks: Vec<_> = runs
            .iter()
            .map(|run| {
                let (store, run) = (Arc::clone(&store), run.clone());
                tokio::spawn(async move { store.insert_run(&run).await })
            })
            .collect();
        // Every other caller gives up at once, leaders among them.
        let mut kept = Vec::new();
        for (i, (t, run)) in tasks.into_iter().zip(&runs).enumerate() {
            if i % 2 == 0 {
                t.abort();
            } else {
                kept.push((t, run.id.clone()));
            }
        }
        for (t, id) in kept {
            let answered = tokio::time::timeout(Duration::from_secs(10), t).await;
            assert!(
                matches!(answered, Ok(Ok(Ok(())))),
                "{durability:?}: insert of {id} not answered: {answered:?}"
            );
            assert!(
                store.get_run(&id).await.unwrap().is_some(),
                "{durability:?}: {id} lost"
            );
        }
        let after = new_run("f", None);
        tokio::time::timeout(Duration::from_secs(10), store.insert_run(&after))
            .await
            .expect("the journal still takes runs")
            .unwrap();
        store.close();
        assert!(
            matches!(
                store.insert_run(&new_run("f", None)).await,
                Err(StoreError::Closed)
            ),
            "a closed store refuses runs instead of leaving them unanswered"
        );
    }
}
