//! Alert states (`Alerts`): a state changes only over the one it was judged against, and the
//! event that announces the change is written with it or not at all — so two instances judging
//! the same alert raise it once.

use super::*;
use hookflow::alert::Kind;
use hookflow::store::alerts::AlertState;

suite!(an_alert_changes_only_over_the_state_it_was_judged_against);

fn state(changes: u64, active: bool) -> AlertState {
    AlertState {
        key: "f/silence".into(),
        flow: Some("f".into()),
        kind: Kind::Silence,
        subject: None,
        active,
        raised_at: Ts(1_000),
        resolved_at: (!active).then_some(Ts(2_000)),
        changes,
        figures: json!({"quiet_for_secs": 600}),
        message: "no webhook for 10 minutes".into(),
        raised_by: "w1".into(),
        confirmed_at: Ts(1_000),
    }
}

async fn an_alert_changes_only_over_the_state_it_was_judged_against(store: Arc<dyn Store>, _pg: bool) {
    assert!(store.alert_states().await.unwrap().is_empty());
    let raised = Event::new("alert.raised", Origin::api(), 1, json!({"key": "f/silence"}));
    // Two judges saw nothing stored (0 changes): the first raise lands, with its event...
    assert!(
        store
            .change_alert(state(1, true), Some(raised.clone()))
            .await
            .unwrap()
    );
    let second = Event::new("alert.raised", Origin::api(), 1, json!({"key": "f/silence"}));
    // ...the second, judged against the same nothing, writes neither state nor event.
    assert!(
        !store
            .change_alert(state(1, true), Some(second.clone()))
            .await
            .unwrap()
    );
    let events = store.pending_events(10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [raised.id.as_str()],
        "one event for one change"
    );
    assert_eq!(store.alert_states().await.unwrap(), [state(1, true)]);
    // A confirmation (no event) over the current state; a stale resolve is refused.
    let mut confirmed = state(2, true);
    confirmed.confirmed_at = Ts(1_500);
    assert!(store.change_alert(confirmed.clone(), None).await.unwrap());
    assert!(!store.change_alert(state(2, false), None).await.unwrap());
    let resolved = Event::new("alert.resolved", Origin::api(), 1, json!({"key": "f/silence"}));
    assert!(
        store
            .change_alert(state(3, false), Some(resolved.clone()))
            .await
            .unwrap()
    );
    assert_eq!(store.alert_states().await.unwrap(), [state(3, false)]);
    assert_eq!(store.pending_events(10).await.unwrap().len(), 2);
    // A change that skips one (judged against a state never stored) is refused too.
    assert!(!store.change_alert(state(5, true), None).await.unwrap());
}
