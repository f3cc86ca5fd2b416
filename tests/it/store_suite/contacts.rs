//! Contacts (`Contacts`): segment changes, the events they raise and their dispatch into runs.

use super::*;

suite!(segment_changes_raise_events_that_become_runs_once,);

async fn segment_changes_raise_events_that_become_runs_once(store: Arc<dyn Store>, _pg: bool) {
    let op = |segment: &str, email: &str, add: bool| SegmentOp {
        segment: segment.into(),
        email: email.into(),
        add,
        attributes: Map::from_iter([("name".to_string(), json!("Ada"))]),
    };
    let changes = store
        .change_segments(
            vec![
                op("buyers", "ada@example.com", true),
                op("buyers", "bob@example.com", true),
                op("vip", "ada@example.com", true),
            ],
            Origin::api(),
        )
        .await
        .unwrap();
    assert_eq!(changes.len(), 3);
    // Adding again changes nothing and raises nothing.
    store
        .change_segments(vec![op("buyers", "ada@example.com", true)], Origin::api())
        .await
        .unwrap();
    let segs = store.segments().await.unwrap();
    let counts: Vec<(String, u64)> = segs.iter().map(|s| (s.name.clone(), s.members)).collect();
    assert_eq!(counts, [("buyers".to_string(), 2), ("vip".to_string(), 1)]);
    let members = store.segment_members("buyers", None, 1).await.unwrap();
    assert_eq!(members[0].contact.email, "ada@example.com");
    let rest = store
        .segment_members("buyers", Some("ada@example.com"), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].contact.email, "bob@example.com");
    assert_eq!(
        store
            .segment_added_since("buyers", Ts::now().plus(Duration::from_secs(60)))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.segment_added_since("buyers", Ts(0)).await.unwrap(), 2);
    let ada = store.contact("ada@example.com").await.unwrap().unwrap();
    assert_eq!(ada.segments.len(), 2);

    store
        .change_segments(vec![op("vip", "ada@example.com", false)], Origin::api())
        .await
        .unwrap();
    let events = store.pending_events(100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "segment.added",
            "segment.added",
            "segment.added",
            "segment.removed"
        ],
        "one event per change, in order"
    );
    // Dispatching an event queues its runs and removes it; a second dispatch of the same
    // event (another instance that read it too) queues nothing.
    let e = &events[0];
    store
        .dispatch_event(&e.id, vec![new_run("on-added", None)], Vec::new())
        .await
        .unwrap();
    let again = store
        .dispatch_event(&e.id, vec![new_run("on-added", None)], Vec::new())
        .await;
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(runs_cover_everything(Arc::clone(&store)).await.len(), 1);
    assert_eq!(store.pending_events(100).await.unwrap().len(), 3);

    // A run's save raises its events with its state, atomically.
    let run = new_run("f", None);
    store.insert_run(&run).await.unwrap();
    let held = store.claim(claim(10, Duration::from_secs(30))).await.unwrap();
    let held = held.iter().find(|c| c.run.id == run.id).unwrap();
    let mut done = held.run.clone();
    done.status = RunStatus::Succeeded;
    let effects = Effects {
        events: vec![Event::new(
            "order.flagged",
            Origin::run("f", &run.id, Some("first")),
            1,
            json!({}),
        )],
        segment_ops: vec![op("buyers", "cy@example.com", true)],
        origin: Some((Origin::run("f", &run.id, Some("first")), 1)),
        waits: Vec::new(),
        suppress: Vec::new(),
    };
    let saved = store
        .save_with(&held.lease, &done, Next::Done, effects)
        .await
        .unwrap();
    assert_eq!(saved.changes.len(), 1);
    assert_eq!(store.pending_events(100).await.unwrap().len(), 5);
}
