//! Coordination (`Coordination`): cron firings once, shared settings, instances and pacing.

use super::*;

suite!(a_cron_slot_is_recorded_once, settings_instances_and_pacing,);

async fn a_cron_slot_is_recorded_once(store: Arc<dyn Store>, _pg: bool) {
    assert!(store.last_firing("daily").await.unwrap().is_none());
    let slot = Ts(1_780_000_000_000);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .record_firing("daily", slot, Some(new_run("daily", None)))
                .await
                .unwrap()
        }));
    }
    let mut fired = 0;
    for t in tasks {
        fired += t.await.unwrap() as usize;
    }
    assert_eq!(fired, 1);
    assert_eq!(runs_cover_everything(Arc::clone(&store)).await.len(), 1);
    assert_eq!(store.last_firing("daily").await.unwrap(), Some(slot));
    // An earlier slot is not fired after a later one; the next one is.
    assert!(!store.record_firing("daily", Ts(slot.0 - 1), None).await.unwrap());
    assert!(
        store
            .record_firing("daily", Ts(slot.0 + 60_000), None)
            .await
            .unwrap()
    );
}

async fn settings_instances_and_pacing(store: Arc<dyn Store>, pg: bool) {
    let first = store.shared_setting("url_secret", "aaa".into()).await.unwrap();
    let second = store.shared_setting("url_secret", "bbb".into()).await.unwrap();
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("aaa", "aaa"),
        "the first one decides"
    );

    let me = Instance {
        id: "i1".into(),
        host: "h".into(),
        pid: 7,
        version: "0.1.0".into(),
        listen: "http://127.0.0.1:1".into(),
        started_at: Ts::now(),
        seen_at: Ts::now(),
        flows: BTreeMap::from([("f".to_string(), "v1".to_string())]),
    };
    store.heartbeat(&me).await.unwrap();
    let mut later = me.clone();
    later.seen_at = me.seen_at.plus(Duration::from_secs(5));
    store.heartbeat(&later).await.unwrap();
    assert_eq!(store.instances().await.unwrap(), [later]);

    // Rate-limit slots: shared in the database, kept in memory by the engine otherwise.
    let now = Ts::now();
    let pace = store.pace("f/first", Duration::from_secs(10), now).await.unwrap();
    if pg {
        assert_eq!(pace, Pace::Go);
        assert_eq!(
            store.pace("f/first", Duration::from_secs(10), now).await.unwrap(),
            Pace::Until(now.plus(Duration::from_secs(10)))
        );
        assert_eq!(
            store
                .pace(
                    "f/first",
                    Duration::from_secs(10),
                    now.plus(Duration::from_secs(10))
                )
                .await
                .unwrap(),
            Pace::Go
        );
    } else {
        assert_eq!(pace, Pace::Local);
    }
}
