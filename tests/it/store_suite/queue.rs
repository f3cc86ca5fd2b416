//! The run queue (`RunQueue`): storing and listing runs, leases, lanes, caps, delivery keys,
//! exits, retention, retries, waits and counters — and, on sled, the intake journal and parking.

use super::*;

suite!(
    runs_are_stored_listed_newest_first_and_paged,
    a_text_search_finds_runs_by_request_and_vars,
    a_lease_expires_and_a_stale_worker_cannot_write,
    a_lease_holds_through_a_step_of_the_wall_clock,
    lanes_hold_runs_of_one_key_back_until_the_earlier_one_ends,
    caps_and_fair_share_shape_a_claim,
    a_delivery_key_starts_one_run_even_when_copies_race,
    exits_end_queued_runs_and_mark_held_ones,
    retention_prunes_finished_runs_only,
    retries_and_due_times_are_kept,
    runs_waiting_days_are_found_listed_exited_and_wake_on_time,
    counters_add_up_per_flow,
    saves_made_at_once_each_get_their_own_answer,
);

async fn runs_are_stored_listed_newest_first_and_paged(store: Arc<dyn Store>, _pg: bool) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let run = new_run(if i % 2 == 0 { "even" } else { "odd" }, None);
        store.insert_run(&run).await.unwrap();
        ids.push(run.id);
    }
    let got = store.get_run(&ids[3]).await.unwrap().unwrap();
    assert_eq!(got.flow, "odd");
    assert_eq!(got.status, RunStatus::Queued);
    assert_eq!(got.request.body, json!({"hello": "world"}));
    assert!(store.get_run("01nosuchrun").await.unwrap().is_none());

    let all = runs_cover_everything(Arc::clone(&store)).await;
    let listed: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    let mut newest_first: Vec<&str> = ids.iter().map(String::as_str).collect();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    // Paging by `before`, per flow, per status.
    let page = |before: Option<String>| RunFilter {
        flow: Some("even".into()),
        status: Some(RunStatus::Queued),
        before,
        limit: 2,
        ..Default::default()
    };
    let p1 = store.list_runs(&page(None)).await.unwrap();
    let p2 = store
        .list_runs(&page(Some(p1.last().unwrap().id.clone())))
        .await
        .unwrap();
    let seen: Vec<&str> = p1.iter().chain(&p2).map(|r| r.id.as_str()).collect();
    assert_eq!(seen, [&ids[6], &ids[4], &ids[2], &ids[0]]);
    let none = store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Failed),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let (queued, oldest) = store.queue_stats(Ts::now()).await.unwrap();
    assert_eq!(queued, 7);
    assert!(oldest.is_some());
}

async fn a_text_search_finds_runs_by_request_and_vars(store: Arc<dyn Store>, _pg: bool) {
    let mut a = new_run("f", None);
    a.vars.insert("email".into(), json!("Ada_Lovelace@example.com"));
    let mut b = new_run("f", None);
    b.request.body = json!({"note": "100% cotton"});
    let c = new_run("f", None);
    for r in [&a, &b, &c] {
        store.insert_run(r).await.unwrap();
    }
    let find = |t: &str| RunFilter {
        text: Some(t.into()),
        limit: 10,
        ..Default::default()
    };
    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_runs(&find("ada_love")).await.unwrap()),
        [a.id.clone()]
    );
    // `%` and `_` are text, not patterns.
    assert_eq!(ids(store.list_runs(&find("100%")).await.unwrap()), [b.id.clone()]);
    assert!(store.list_runs(&find("a_a")).await.unwrap().is_empty());
    assert_eq!(store.list_runs(&find("HELLO")).await.unwrap().len(), 2);
}

async fn a_lease_expires_and_a_stale_worker_cannot_write(store: Arc<dyn Store>, _pg: bool) {
    let run = new_run("f", None);
    store.insert_run(&run).await.unwrap();
    let dead = store.claim(claim(10, Duration::from_millis(300))).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        store.get_run(&run.id).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    // Held: nobody else gets it.
    assert!(
        claim_ids(store.as_ref(), claim(10, Duration::from_secs(30)))
            .await
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = store.claim(claim(10, Duration::from_secs(30))).await.unwrap();
    assert_eq!(taken.len(), 1, "the expired lease is taken over");
    assert_ne!(taken[0].lease, dead[0].lease);

    let err = store
        .save(&dead[0].lease, &dead[0].run, Next::Done)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    let err = store
        .extend_lease(&dead[0].lease, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");

    // The live lease works: progress, then done.
    let mut r = taken[0].run.clone();
    r.next_step = 1;
    store
        .save(
            &taken[0].lease,
            &r,
            Next::Continue {
                lease_for: Duration::from_secs(30),
            },
        )
        .await
        .unwrap();
    r.status = RunStatus::Succeeded;
    r.finished_at = Some(Ts::now());
    store.save(&taken[0].lease, &r, Next::Done).await.unwrap();
    let done = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.next_step), (RunStatus::Succeeded, 1));
    assert!(store.next_due().await.unwrap().is_none());
    // A finished run's lease is spent.
    assert!(store.save(&taken[0].lease, &r, Next::Done).await.is_err());
}

/// Regression: an attempt in flight when the wall clock was stepped +1 h lost its lease to the
/// next claim, and the request went out twice. A lease is counted on the clock that decides
/// (monotonic in one process, the database's between instances), whatever `now` a claim
/// brings; on the embedded store a lease whose holder is gone ends on time however far back
/// the wall clock went.
async fn a_lease_holds_through_a_step_of_the_wall_clock(store: Arc<dyn Store>, pg: bool) {
    let run = new_run("f", None);
    store.insert_run(&run).await.unwrap();
    let held = store.claim(claim(10, Duration::from_secs(30))).await.unwrap();
    assert_eq!(held.len(), 1);
    let stepped = |by: i64, lease: Duration| ClaimRequest {
        now: Ts((Ts::now().0 as i64 + by) as u64),
        ..claim(10, lease)
    };
    for by in [3_600_000, 86_400_000] {
        assert!(
            claim_ids(store.as_ref(), stepped(by, Duration::from_secs(30)))
                .await
                .is_empty(),
            "a claim {by} ms ahead took a held run"
        );
    }
    // Extended and saved under the step: still ours, still held.
    store
        .extend_lease(&held[0].lease, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        claim_ids(store.as_ref(), stepped(3_600_000, Duration::from_secs(30)))
            .await
            .is_empty()
    );
    let mut r = held[0].run.clone();
    r.status = RunStatus::Succeeded;
    r.finished_at = Some(Ts::now());
    store.save(&held[0].lease, &r, Next::Done).await.unwrap();

    if pg {
        return; // (an instance whose clock went back follows the database's: `cluster`)
    }
    // A short lease whose holder is gone, and the wall clock an hour back: taken on time.
    let run = new_run("f", None);
    store.insert_run(&run).await.unwrap();
    let dead = store.claim(claim(10, Duration::from_millis(300))).await.unwrap();
    assert_eq!(dead.len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let back = stepped(-3_600_000, Duration::from_secs(30));
    assert_eq!(claim_ids(store.as_ref(), back).await, [run.id]);
}

async fn lanes_hold_runs_of_one_key_back_until_the_earlier_one_ends(store: Arc<dyn Store>, _pg: bool) {
    let a1 = new_run("f", Some("A"));
    let a2 = new_run("f", Some("A"));
    let b1 = new_run("f", Some("B"));
    let other_flow = new_run("g", Some("A"));
    for r in [&a1, &a2, &b1, &other_flow] {
        store.insert_run(r).await.unwrap();
    }
    let first = store.claim(claim(10, Duration::from_secs(30))).await.unwrap();
    let mut ids: Vec<&str> = first.iter().map(|c| c.run.id.as_str()).collect();
    ids.sort();
    let mut want = [a1.id.as_str(), b1.id.as_str(), other_flow.id.as_str()];
    want.sort();
    assert_eq!(ids, want, "a2 waits behind a1; a lane is per flow");

    let held = |id: &str| first.iter().find(|c| c.run.id == id).unwrap();
    for id in [&b1.id, &other_flow.id] {
        let mut r = held(id).run.clone();
        r.status = RunStatus::Succeeded;
        store.save(&held(id).lease, &r, Next::Done).await.unwrap();
    }
    // a1 retries later: its lane stays closed.
    let later = Ts::now().plus(Duration::from_secs(3600));
    store
        .save(&held(&a1.id).lease, &held(&a1.id).run, Next::RetryAt(later))
        .await
        .unwrap();
    assert!(
        claim_ids(store.as_ref(), claim(10, Duration::from_secs(30)))
            .await
            .is_empty()
    );
    let mut at_retry = claim(10, Duration::from_secs(30));
    at_retry.now = later;
    let retried = store.claim(at_retry).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].run.id, a1.id);
    let mut done = retried[0].run.clone();
    done.status = RunStatus::Failed;
    store.save(&retried[0].lease, &done, Next::Done).await.unwrap();
    let next = claim_ids(store.as_ref(), claim(10, Duration::from_secs(30))).await;
    assert_eq!(
        next,
        std::slice::from_ref(&a2.id),
        "a2 goes once a1 has ended, failed or not"
    );
}

async fn caps_and_fair_share_shape_a_claim(store: Arc<dyn Store>, _pg: bool) {
    for _ in 0..20 {
        store.insert_run(&new_run("busy", None)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    for _ in 0..2 {
        store.insert_run(&new_run("quiet", None)).await.unwrap();
    }
    let got = store
        .claim(ClaimRequest {
            fair_share: 2,
            ..claim(8, Duration::from_secs(30))
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 8);
    assert_eq!(got.iter().filter(|c| c.run.flow == "quiet").count(), 2);
    // A cap counts what is held already: 6 busy runs are leased, the cap is 7.
    let caps = BTreeMap::from([("busy".to_string(), 7u32)]);
    let more = store
        .claim(ClaimRequest {
            caps: caps.clone(),
            ..claim(10, Duration::from_secs(30))
        })
        .await
        .unwrap();
    assert_eq!(more.len(), 1, "{more:?}");
    assert!(
        store
            .claim(ClaimRequest {
                caps,
                ..claim(10, Duration::from_secs(30))
            })
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_delivery_key_starts_one_run_even_when_copies_race(store: Arc<dyn Store>, _pg: bool) {
    let expires = Ts::now().plus(Duration::from_secs(3600));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let run = new_run("f", None);
            let first = store.insert_run_once(&run, "order-42", expires).await.unwrap();
            (run.id, first)
        }));
    }
    let mut started = Vec::new();
    let mut pointed_at = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (id, None) => started.push(id),
            (_, Some(first)) => pointed_at.push(first),
        }
    }
    assert_eq!(started.len(), 1, "one copy starts a run");
    assert!(pointed_at.iter().all(|id| *id == started[0]), "{pointed_at:?}");
    assert_eq!(runs_cover_everything(Arc::clone(&store)).await.len(), 1);
    // Another flow has keys of its own.
    assert!(
        store
            .insert_run_once(&new_run("g", None), "order-42", expires)
            .await
            .unwrap()
            .is_none()
    );
    // Once the window is over the key is forgotten.
    assert_eq!(
        store
            .expire_dedupe(expires.plus(Duration::from_secs(1)))
            .await
            .unwrap(),
        2
    );
    assert!(
        store
            .insert_run_once(
                &new_run("f", None),
                "order-42",
                expires.plus(Duration::from_secs(60))
            )
            .await
            .unwrap()
            .is_none()
    );
}

async fn exits_end_queued_runs_and_mark_held_ones(store: Arc<dyn Store>, _pg: bool) {
    let mut queued = new_run("seq", None);
    queued.exit_keys = vec!["email:ada@example.com".into()];
    let mut held = new_run("seq", None);
    held.exit_keys = vec!["email:ada@example.com".into()];
    let mut other = new_run("seq", None);
    other.exit_keys = vec!["email:bob@example.com".into()];
    store.insert_run(&held).await.unwrap();
    let claimed = store.claim(claim(1, Duration::from_secs(30))).await.unwrap();
    assert_eq!(claimed[0].run.id, held.id);
    store.insert_run(&queued).await.unwrap();
    store.insert_run(&other).await.unwrap();

    let exited = store
        .exit_runs(vec![ExitMatch {
            flow: "seq".into(),
            key: "email:ada@example.com".into(),
            reason: "unsubscribed".into(),
        }])
        .await
        .unwrap();
    let mut got: Vec<(String, bool)> = exited.into_iter().map(|e| (e.run_id, e.now)).collect();
    got.sort();
    let mut want = vec![(queued.id.clone(), true), (held.id.clone(), false)];
    want.sort();
    assert_eq!(got, want);
    let q = store.get_run(&queued.id).await.unwrap().unwrap();
    assert_eq!(q.status, RunStatus::Exited);
    assert_eq!(q.exit_reason.as_deref(), Some("unsubscribed"));
    assert_eq!(
        store.get_run(&other.id).await.unwrap().unwrap().status,
        RunStatus::Queued
    );
    // The worker holding the run learns of the exit when it saves its progress.
    let saved = store
        .save_with(
            &claimed[0].lease,
            &claimed[0].run,
            Next::Continue {
                lease_for: Duration::from_secs(30),
            },
            Effects::default(),
        )
        .await
        .unwrap();
    assert_eq!(saved.exit_requested.as_deref(), Some("unsubscribed"));
    // The API's exit: one run by id; an ended run is not exited twice.
    use hookflow::store::Exited;
    assert_eq!(
        store.exit_run(&other.id, "by the operator").await.unwrap(),
        Exited::Now
    );
    assert_eq!(store.exit_run(&other.id, "again").await.unwrap(), Exited::No);
    assert_eq!(store.exit_run("01nosuchrun", "x").await.unwrap(), Exited::No);
    assert!(store.waiting_counts().await.unwrap().values().all(|n| *n == 0));
}

async fn retention_prunes_finished_runs_only(store: Arc<dyn Store>, _pg: bool) {
    for _ in 0..5 {
        store.insert_run(&new_run("f", None)).await.unwrap();
    }
    let claimed = store.claim(claim(3, Duration::from_secs(30))).await.unwrap();
    for c in &claimed {
        let mut r = c.run.clone();
        r.status = RunStatus::Succeeded;
        r.finished_at = Some(Ts::now());
        store.save(&c.lease, &r, Next::Done).await.unwrap();
    }
    // Keep 3 runs in all: the two oldest finished go, the unfinished stay.
    let gone = store.prune(Ts(0), 3, 100).await.unwrap();
    assert_eq!(gone, 2);
    let left = runs_cover_everything(Arc::clone(&store)).await;
    assert_eq!(left.len(), 3);
    assert_eq!(left.iter().filter(|r| r.finished_at.is_some()).count(), 1);
    // The store's count of runs followed the prune: 3 kept, nothing over.
    assert_eq!(store.prune(Ts(0), 3, 100).await.unwrap(), 0);
    // By age: everything finished before a time in the future.
    let gone = store
        .prune(Ts::now().plus(Duration::from_secs(60)), usize::MAX, 100)
        .await
        .unwrap();
    assert_eq!(gone, 1);
    assert!(
        runs_cover_everything(Arc::clone(&store))
            .await
            .iter()
            .all(|r| r.status == RunStatus::Queued)
    );
}

async fn retries_and_due_times_are_kept(store: Arc<dyn Store>, _pg: bool) {
    let run = new_run("f", None);
    store.insert_run(&run).await.unwrap();
    let c = store.claim(claim(1, Duration::from_secs(30))).await.unwrap();
    let at = Ts::now().plus(Duration::from_secs(120));
    let mut r = c[0].run.clone();
    r.status = RunStatus::Retrying;
    r.next_attempt_at = Some(at);
    store.save(&c[0].lease, &r, Next::RetryAt(at)).await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(at));
    let (n, oldest) = store.queue_stats(Ts::now()).await.unwrap();
    assert_eq!((n, oldest), (0, None), "nothing due yet");
    let got = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.next_attempt_at), (RunStatus::Retrying, Some(at)));
}

/// Runs waiting for days behave as any waiting run, whether the store keeps them in memory or
/// parks them on disk: found, listed (and paged), exited by key or by id, due at their time.
async fn runs_waiting_days_are_found_listed_exited_and_wake_on_time(store: Arc<dyn Store>, _pg: bool) {
    let wake = Ts::now().plus(Duration::from_secs(3 * 86_400));
    let ids = park_waiting(store.as_ref(), "seq", 4, &["k1", "k2"], wake).await;
    for id in &ids {
        let run = store.get_run(id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Waiting, "{id}");
        assert_eq!(run.next_attempt_at, Some(wake));
    }
    let waiting = |before: Option<String>, limit| RunFilter {
        status: Some(RunStatus::Waiting),
        flow: Some("seq".into()),
        before,
        limit,
        ..RunFilter::default()
    };
    let page = store.list_runs(&waiting(None, 3)).await.unwrap();
    let listed: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(listed, [&ids[3], &ids[2], &ids[1]].map(String::as_str));
    let rest = store.list_runs(&waiting(Some(ids[1].clone()), 3)).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [ids[0].as_str()]
    );
    assert_eq!(store.waiting_counts().await.unwrap()["seq"], 4);
    assert_eq!(store.next_due().await.unwrap().map(|t| t <= wake), Some(true));

    // An exit by key, and one by id: shown exited at once; an exited run does not exit again.
    store
        .exit_runs(vec![ExitMatch {
            flow: "seq".into(),
            key: "k1".into(),
            reason: "left the list".into(),
        }])
        .await
        .unwrap();
    let run = store.get_run(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.exit_reason.as_deref()),
        (RunStatus::Exited, Some("left the list"))
    );
    // Parked on the embedded store (noted), ended at once on PostgreSQL.
    let first = store.exit_run(&ids[2], "by the operator").await.unwrap();
    assert!(
        matches!(
            first,
            hookflow::store::Exited::Noted | hookflow::store::Exited::Now
        ),
        "{first:?}"
    );
    assert_eq!(
        store.exit_run(&ids[2], "again").await.unwrap(),
        hookflow::store::Exited::No
    );
    assert_eq!(
        store.get_run(&ids[2]).await.unwrap().unwrap().status,
        RunStatus::Exited
    );
    assert_eq!(
        store.get_run(&ids[1]).await.unwrap().unwrap().status,
        RunStatus::Waiting
    );

    // Nothing is due before its time; at its time the others are. Those an exit reached are
    // ended by the store at once, or (parked on disk) handed to a worker with the exit
    // requested, to be ended as any run asked to exit — never run on.
    let early = ClaimRequest {
        now: Ts(wake.0 - 3_600_000),
        ..claim(10, Duration::from_secs(30))
    };
    let mut claimed = store.claim(early).await.unwrap();
    let on_time = ClaimRequest {
        now: Ts(wake.0 + 1),
        ..claim(10, Duration::from_secs(30))
    };
    claimed.extend(store.claim(on_time).await.unwrap());
    let mut ran: Vec<&str> = Vec::new();
    for c in &claimed {
        match c.exit_requested.as_deref() {
            None => ran.push(&c.run.id),
            Some(reason) => assert!(
                (c.run.id == ids[0] && reason == "left the list")
                    || (c.run.id == ids[2] && reason == "by the operator"),
                "{c:?}"
            ),
        }
    }
    ran.sort();
    assert_eq!(ran, [ids[1].as_str(), ids[3].as_str()]);
}

/// sled only: an exit that reaches a run deep in the intake journal (beyond what one write
/// admits) notes it, and the run ends as exited when it is admitted, never running an action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_an_exit_reaches_a_run_still_deep_in_the_intake_journal() {
    let store: Arc<dyn Store> = Arc::new(hookflow::store::SledStore::temporary().unwrap());
    let mut tasks = Vec::new();
    for _ in 0..2500 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.insert_run(&new_run("bulk", None)).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut last = new_run("seq", None);
    last.exit_keys = vec!["k".into()];
    store.insert_run(&last).await.unwrap();
    let exited = store
        .exit_runs(vec![ExitMatch {
            flow: "seq".into(),
            key: "k".into(),
            reason: "refunded".into(),
        }])
        .await
        .unwrap();
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0].run_id, last.id);
    // Drain the queue: the noted run is never handed out, and ends exited.
    loop {
        let got = store.claim(claim(500, Duration::from_secs(30))).await.unwrap();
        assert!(
            got.iter().all(|c| c.run.id != last.id),
            "an exited run was claimed"
        );
        if got.is_empty() {
            break;
        }
        for c in got {
            store.save(&c.lease, &c.run, Next::Done).await.unwrap();
        }
    }
    let r = store.get_run(&last.id).await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Exited);
    assert_eq!(r.exit_reason.as_deref(), Some("refunded"));
}

/// sled only: a backlog far beyond what memory holds of the intake journal (a window of 64
/// runs, 1,000 queued): every run is found by id, listed and paged through, reached by an
/// exit, and admitted exactly once — across a reopen half-way through the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_a_backlog_beyond_memory_is_found_listed_exited_and_admitted_once() {
    let dir = tempfile::tempdir().unwrap();
    let open = || -> Arc<dyn Store> {
        Arc::new(hookflow::store::SledStore::open_with_window(dir.path(), 64).unwrap())
    };
    let store = open();
    let mut ids = Vec::new();
    for i in 0..1000 {
        let mut r = new_run(if i == 500 { "seq" } else { "bulk" }, None);
        if i == 500 {
            r.exit_keys = vec!["k".into()];
        }
        store.insert_run(&r).await.unwrap();
        ids.push(r.id);
    }
    let seq = ids[500].clone();
    // Found by id deep in the journal; listed by flow.
    let got = store
        .get_run(&ids[300])
        .await
        .unwrap()
        .expect("a run beyond the window");
    assert_eq!(
        (got.id.as_str(), got.status),
        (ids[300].as_str(), RunStatus::Queued)
    );
    let listed = store
        .list_runs(&RunFilter {
            flow: Some("seq".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [seq.as_str()]
    );
    // Paging through every queued run, newest first, 100 at a time: each exactly once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_runs(&RunFilter {
                before: before.clone(),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        seen.extend(page.into_iter().map(|r| r.id));
    }
    let mut newest_first = ids.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, newest_first);
    assert_eq!(store.queue_stats(Ts::now()).await.unwrap().0, 1000);
    // An exit reaches the run beyond the window: it is marked, and ends as it is admitted.
    store
        .exit_runs(vec![ExitMatch {
            flow: "seq".into(),
            key: "k".into(),
            reason: "refunded".into(),
        }])
        .await
        .unwrap();
    let mut claimed = Vec::new();
    drain(&*store, 400, &mut claimed).await;
    drop(store);
    let store = open();
    let ended = store.get_run(&seq).await.unwrap().unwrap().status == RunStatus::Exited;
    assert_eq!(
        store.queue_stats(Ts::now()).await.unwrap().0 as usize,
        1000 - claimed.len() - usize::from(ended)
    );
    drain(&*store, usize::MAX, &mut claimed).await;
    assert!(!claimed.contains(&seq), "the exited run was handed out");
    let mut want: Vec<String> = ids.iter().filter(|id| **id != seq).cloned().collect();
    let mut got = claimed.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "every run admitted and claimed exactly once");
    let r = store.get_run(&seq).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.exit_reason.as_deref()),
        (RunStatus::Exited, Some("refunded"))
    );
}

/// sled only: a new store made with compression (`--store-compression`) compresses its pages,
/// and stays readable when sled's settings file (which records that) is lost — the store's own
/// mark says so; reopened without the setting, it stays compressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_a_new_store_is_compressed_and_survives_losing_sleds_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = new_run("f", None);
    {
        let store = hookflow::store::SledStore::open_with(
            dir.path(),
            hookflow::store::Durability::Flush,
            1 << 24,
            true,
        )
        .unwrap();
        store.insert_run(&run).await.unwrap();
        let c = store.claim(claim(1, Duration::from_secs(30))).await.unwrap();
        store.save(&c[0].lease, &c[0].run, Next::Done).await.unwrap();
    }
    let conf = String::from_utf8_lossy(&std::fs::read(dir.path().join("conf")).unwrap()).into_owned();
    assert!(conf.contains("use_compression: true"), "{conf}");
    std::fs::remove_file(dir.path().join("conf")).unwrap();
    let store = crate::helpers::open_sled(dir.path()).await;
    assert_eq!(store.get_run(&run.id).await.unwrap().unwrap().id, run.id);
}

/// The embedded store keeps runs waiting beyond a few minutes on disk, not in sled: the count
/// of parked runs, the files, a restart that reads none of them, and the bucket read back and
/// its files removed when its hour comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_waiting_runs_are_parked_on_disk_and_read_back_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let open = || -> Arc<dyn Store> {
        Arc::new(hookflow::store::SledStore::open(dir.path(), Default::default()).unwrap())
    };
    let store = open();
    let wake = Ts::now().plus(Duration::from_secs(86_400));
    let soon = Ts::now().plus(Duration::from_secs(60));
    let ids = park_waiting(store.as_ref(), "seq", 50, &[], wake).await;
    // A wait of a minute stays in sled.
    let short = park_waiting(store.as_ref(), "quick", 1, &[], soon).await;
    assert_eq!(store.parked(), 50);
    let files: Vec<_> = walk(&dir.path().join("parked"));
    assert_eq!(files.len(), 1, "{files:?}");
    drop(store);
    let store = open();
    assert_eq!(store.parked(), 50, "known again without reading them");
    assert_eq!(
        store.get_run(&ids[17]).await.unwrap().unwrap().status,
        RunStatus::Waiting
    );
    assert_eq!(
        store.get_run(&short[0]).await.unwrap().unwrap().status,
        RunStatus::Waiting
    );
    let at = ClaimRequest {
        now: Ts(wake.0 + 1),
        ..claim(100, Duration::from_secs(30))
    };
    let claimed = store.claim(at).await.unwrap();
    assert_eq!(claimed.len(), 51);
    assert_eq!(store.parked(), 0);
    assert!(
        walk(&dir.path().join("parked")).is_empty(),
        "the bucket's files are gone"
    );
    // Read back once: a restart does not bring them again.
    drop(store);
    let store = open();
    assert_eq!(store.parked(), 0);
    assert_eq!(
        store.get_run(&ids[0]).await.unwrap().unwrap().status,
        RunStatus::Running
    );
}

async fn counters_add_up_per_flow(store: Arc<dyn Store>, _pg: bool) {
    store.add_counter("f", "ignored", 2).await.unwrap();
    store.add_counter("f", "ignored", 3).await.unwrap();
    store.add_counter("g", "ignored", 1).await.unwrap();
    store.sync().await.unwrap();
    assert_eq!(store.counters("f").await.unwrap().get("ignored"), Some(&5));
}

/// Saves and renewals made at the same moment by many workers (which PostgreSQL commits as one
/// group): each gets its own answer — done, retrying, continuing with the exit asked for it,
/// renewed, or refused for a lost lease — and a run that ends its lane lets the next one go.
async fn saves_made_at_once_each_get_their_own_answer(store: Arc<dyn Store>, _pg: bool) {
    let lease = Duration::from_secs(30);
    let mut laned = Vec::new();
    for _ in 0..2 {
        let run = new_run("lanes", Some("account-1"));
        store.insert_run(&run).await.unwrap();
        laned.push(run.id);
    }
    for _ in 0..24 {
        store.insert_run(&new_run("plain", None)).await.unwrap();
    }
    let mut claimed = store.claim(claim(100, lease)).await.unwrap();
    assert_eq!(claimed.len(), 25, "all but the second run of the lane");
    claimed.sort_by(|a, b| a.run.id.cmp(&b.run.id));
    let exit_of = claimed[3].run.id.clone();
    assert_eq!(
        store.exit_run(&exit_of, "unsubscribed").await.unwrap(),
        hookflow::store::Exited::Marked
    );
    let later = Ts(Ts::now().0 + 3_600_000);
    let jobs = claimed.iter().enumerate().map(|(i, c)| {
        let store = Arc::clone(&store);
        let (mut run, mut lease_of) = (c.run.clone(), c.lease.clone());
        let ends_lane = run.id == laned[0];
        async move {
            let outcome = match i % 5 {
                _ if ends_lane || i % 5 == 0 => {
                    run.status = RunStatus::Succeeded;
                    run.finished_at = Some(Ts::now());
                    store.save(&lease_of, &run, Next::Done).await.map(|_| None)
                }
                1 => {
                    run.status = RunStatus::Retrying;
                    store
                        .save(&lease_of, &run, Next::RetryAt(later))
                        .await
                        .map(|_| None)
                }
                2 => store.extend_lease(&lease_of, lease).await.map(|_| None),
                3 => {
                    run.next_step = 1;
                    store
                        .save_with(
                            &lease_of,
                            &run,
                            Next::Continue { lease_for: lease },
                            Effects::default(),
                        )
                        .await
                        .map(|s| s.exit_requested)
                }
                _ => {
                    lease_of.token += 1; // a stale worker
                    store.save(&lease_of, &run, Next::Done).await.map(|_| None)
                }
            };
            (i, run.id, outcome)
        }
    });
    for (i, id, outcome) in futures::future::join_all(jobs).await {
        let stored = store.get_run(&id).await.unwrap().unwrap();
        match i % 5 {
            _ if id == laned[0] || i % 5 == 0 => {
                assert!(outcome.unwrap().is_none());
                assert_eq!(stored.status, RunStatus::Succeeded, "{id}");
            }
            1 => assert_eq!(stored.status, RunStatus::Retrying),
            2 => assert!(outcome.is_ok(), "{outcome:?}"),
            3 => {
                assert_eq!(stored.next_step, 1);
                let exit = outcome.unwrap();
                assert_eq!(exit.as_deref(), (id == exit_of).then_some("unsubscribed"), "{id}");
            }
            _ => assert!(matches!(outcome, Err(StoreError::LeaseLost(_))), "{outcome:?}"),
        }
    }
    // The lane's second run is due now; the retrying and renewed ones are not.
    let next: Vec<String> = store
        .claim(claim(100, lease))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.run.id)
        .collect();
    assert_eq!(next, [laned[1].clone()]);
}
