//! The suppression list (`Suppressions`): scopes, paging, lifting and one-click unsubscribes.

use super::*;

suite!(suppressions_apply_by_scope_page_lift_and_unsubscribe_atomically,);

async fn suppressions_apply_by_scope_page_lift_and_unsubscribe_atomically(store: Arc<dyn Store>, _pg: bool) {
    use hookflow::store::suppress::SuppressionQuery;
    use hookflow::suppression::{Reason, Suppression};
    let s = |email: &str, list: Option<&str>, r: Reason| Suppression::new(email, list, r, "suite").unwrap();
    let emails = |v: &[Suppression]| v.iter().map(|s| s.email.clone()).collect::<Vec<_>>();
    let n = store
        .suppress(vec![
            s("ada@example.com", Some("newsletter"), Reason::Unsubscribed),
            s("bob@example.com", None, Reason::Bounced),
            s("cy@example.com", Some("offers"), Reason::Manual),
        ])
        .await
        .unwrap();
    assert_eq!(n, 3);
    // Suppressing again changes nothing: the first entry stays.
    assert_eq!(
        store
            .suppress(vec![s("bob@example.com", None, Reason::Complained)])
            .await
            .unwrap(),
        0
    );
    let all = [
        "ada@example.com",
        "bob@example.com",
        "cy@example.com",
        "dee@example.com",
    ]
    .map(String::from);
    assert_eq!(
        emails(&store.suppressed(&all, Some("newsletter")).await.unwrap()),
        ["ada@example.com", "bob@example.com"],
        "a list email: the list's unsubscribes and the bounces"
    );
    let transactional = store.suppressed(&all, None).await.unwrap();
    assert_eq!(emails(&transactional), ["bob@example.com"]);
    assert_eq!(transactional[0].reason, Reason::Bounced);

    // Paging in address order, and a search.
    let page = |after: Option<String>, search: Option<&str>| SuppressionQuery {
        after,
        search: search.map(String::from),
        include_lifted: false,
        limit: 2,
    };
    let first = store.suppression_list(&page(None, None)).await.unwrap();
    assert_eq!(emails(&first), ["ada@example.com", "bob@example.com"]);
    let after = hookflow::store::suppress::page_key(&first[1]);
    let second = store.suppression_list(&page(Some(after), None)).await.unwrap();
    assert_eq!(emails(&second), ["cy@example.com"]);
    assert_eq!(
        emails(&store.suppression_list(&page(None, Some("BOB"))).await.unwrap()),
        ["bob@example.com"]
    );

    // Lifting keeps the entry as history; it no longer applies.
    assert!(
        store
            .lift("bob@example.com", None, "the address works again")
            .await
            .unwrap()
    );
    assert!(!store.lift("bob@example.com", None, "again").await.unwrap());
    assert!(store.suppressed(&all, None).await.unwrap().is_empty());
    let history = store
        .suppression_list(&SuppressionQuery {
            search: Some("bob".into()),
            include_lifted: true,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        history[0].lifted.as_ref().unwrap().reason,
        "the address works again"
    );
    // A lifted address can be suppressed again.
    assert_eq!(
        store
            .suppress(vec![s("bob@example.com", None, Reason::Complained)])
            .await
            .unwrap(),
        1
    );

    // An unsubscribe suppresses and removes from the segment in one write, raising
    // segment.removed; a second one changes nothing and raises nothing.
    store
        .change_segments(
            vec![SegmentOp {
                segment: "newsletter".into(),
                email: "dee@example.com".into(),
                add: true,
                attributes: Map::new(),
            }],
            Origin::api(),
        )
        .await
        .unwrap();
    for e in store.pending_events(100).await.unwrap() {
        store.dispatch_event(&e.id, Vec::new(), Vec::new()).await.unwrap();
    }
    let changes = store
        .unsubscribe(
            s("dee@example.com", Some("newsletter"), Reason::Unsubscribed),
            Origin::via("unsubscribe"),
        )
        .await
        .unwrap();
    assert_eq!(changes[0].change, hookflow::segment::Change::Removed);
    let events = store.pending_events(100).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "segment.removed");
    assert_eq!(events[0].source.via, "unsubscribe");
    assert_eq!(
        emails(&store.suppressed(&all[3..], Some("newsletter")).await.unwrap()),
        ["dee@example.com"]
    );
    assert!(
        store
            .contact("dee@example.com")
            .await
            .unwrap()
            .unwrap()
            .segments
            .is_empty()
    );
    store
        .dispatch_event(&events[0].id, Vec::new(), Vec::new())
        .await
        .unwrap();
    let again = store
        .unsubscribe(
            s("dee@example.com", Some("newsletter"), Reason::Unsubscribed),
            Origin::via("unsubscribe"),
        )
        .await
        .unwrap();
    assert_eq!(again[0].change, hookflow::segment::Change::NotMember);
    assert!(store.pending_events(100).await.unwrap().is_empty());

    // Suppressions recorded with a run's save come with it.
    let run = new_run("f", None);
    store.insert_run(&run).await.unwrap();
    let held = store.claim(claim(10, Duration::from_secs(30))).await.unwrap();
    let held = held.iter().find(|c| c.run.id == run.id).unwrap();
    let mut done = held.run.clone();
    done.status = RunStatus::Failed;
    let effects = Effects {
        suppress: vec![s("eve@example.com", None, Reason::Bounced)],
        ..Effects::default()
    };
    store
        .save_with(&held.lease, &done, Next::Done, effects)
        .await
        .unwrap();
    assert_eq!(
        emails(
            &store
                .suppressed(&["eve@example.com".to_string()], Some("x"))
                .await
                .unwrap()
        ),
        ["eve@example.com"]
    );
}
