//! Tracked links (`Clicks`): a message keeps the links of every attempt; a click is pending
//! until settled, then judged — a person's first click on a link raises one `email.clicked`
//! in the same write that counts it, a burst over several links or a HEAD is a scanner's and
//! raises nothing; pruning a message forgets its clicks but keeps the counts.

use super::*;
use hookflow::clicks::{Click, Judged, Message, SentLink};

suite!(clicks_are_judged_once_counted_and_raise_one_event_each);

fn message(run: &str, links: &[(&str, Option<&str>)]) -> Message {
    Message {
        key: format!("{run}.recovery"),
        flow: "cart".into(),
        run_id: run.into(),
        action: "recovery".into(),
        contact: "ada@example.com".into(),
        sent_at: Ts(1_000),
        depth: 2,
        links: links
            .iter()
            .map(|(u, n)| SentLink {
                url: u.to_string(),
                name: n.map(str::to_string),
            })
            .collect(),
    }
}

fn click(m: &Message, link: usize, at: u64, method: &str) -> Click {
    let mut c = Click::new(m, &m.links[link], method, Some("Mozilla/5.0"));
    c.at = Ts(at);
    c
}

async fn clicked_events(store: &dyn Store) -> Vec<Event> {
    store
        .pending_events(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "email.clicked")
        .collect()
}

async fn clicks_are_judged_once_counted_and_raise_one_event_each(store: Arc<dyn Store>, _pg: bool) {
    let run = "01JCLICKS00000000000000000";
    let first = message(run, &[("https://shop.example/cart", Some("cart"))]);
    store.remember_message(first.clone()).await.unwrap();
    // A retry renders another link too: both attempts' links stay.
    let retry = message(
        run,
        &[
            ("https://shop.example/", None),
            ("https://shop.example/cart", Some("cart")),
        ],
    );
    store.remember_message(retry).await.unwrap();
    let m = store.message(&first.key).await.unwrap().unwrap();
    assert_eq!(m.links.len(), 2);
    assert_eq!(m.links[0].name.as_deref(), Some("cart"));
    assert!(store.message("01JNOPE.recovery").await.unwrap().is_none());

    // A person clicks the cart link, then again a minute later; a scanner opens both links in
    // one second; a link checker sends HEAD.
    let person = click(&m, 0, 100_000, "GET");
    let again = click(&m, 0, 160_000, "GET");
    let scan_a = click(&m, 0, 200_000, "GET");
    let scan_b = click(&m, 1, 200_300, "GET");
    let head = click(&m, 1, 300_000, "HEAD");
    for c in [&person, &again, &scan_a, &scan_b, &head] {
        assert!(store.record_click(c.clone()).await.unwrap());
    }
    // Nothing is judged before its time.
    assert!(store.settle_clicks(Ts(100_000), 10).await.unwrap().is_empty());
    let listed = store.clicks_of_run(run).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|c| c.judged == Judged::Pending));
    assert!(clicked_events(&*store).await.is_empty());

    // Settled a few at a time, oldest first.
    let mut settled = store.settle_clicks(Ts(400_000), 2).await.unwrap();
    assert_eq!(settled.len(), 2);
    settled.extend(store.settle_clicks(Ts(400_000), 10).await.unwrap());
    assert!(
        store.settle_clicks(Ts(400_000), 10).await.unwrap().is_empty(),
        "judged once"
    );
    let by_id = |c: &Click| settled.iter().find(|s| s.id == c.id).unwrap().judged.clone();
    assert_eq!(by_id(&person), Judged::Person { first: true });
    assert_eq!(by_id(&again), Judged::Person { first: false });
    for c in [&scan_a, &scan_b, &head] {
        assert!(matches!(by_id(c), Judged::Scanner { .. }), "{c:?}");
    }

    // One event per person's click, from the run, one hop deeper.
    let events = clicked_events(&*store).await;
    assert_eq!(events.len(), 2);
    let firsts: Vec<bool> = events
        .iter()
        .map(|e| e.data["first"].as_bool().unwrap())
        .collect();
    assert_eq!(firsts.iter().filter(|f| **f).count(), 1);
    assert!(events.iter().all(|e| e.depth == 2
        && e.data["link"] == "cart"
        && e.data["url"] == "https://shop.example/cart"
        && e.data["contact"]["email"] == "ada@example.com"
        && e.source.run_id.as_deref() == Some(run)));

    // Counts per link: people's clicks and first clicks, scanners apart.
    let mut counts = store.link_counts("cart").await.unwrap();
    counts.sort_by(|a, b| a.link.cmp(&b.link));
    let rows: Vec<(String, u64, u64, u64)> = counts
        .into_iter()
        .map(|c| (c.link, c.clicks, c.first_clicks, c.scanner_clicks))
        .collect();
    assert_eq!(
        rows,
        [
            ("cart".to_string(), 2, 1, 1),
            ("https://shop.example/".to_string(), 0, 0, 2),
        ]
    );
    let listed = store.clicks_of_run(run).await.unwrap();
    assert!(listed.iter().all(|c| c.judged != Judged::Pending));
    assert!(
        store
            .clicks_of_run("01JOTHER0000000000000000000")
            .await
            .unwrap()
            .is_empty()
    );

    // A message keeps at most MAX_CLICKS_PER_MESSAGE clicks: the rest are not recorded.
    let busy = message("01JBUSY0000000000000000000", &[("https://shop.example/", None)]);
    store.remember_message(busy.clone()).await.unwrap();
    for i in 0..hookflow::clicks::MAX_CLICKS_PER_MESSAGE as u64 {
        assert!(
            store
                .record_click(click(&busy, 0, 10_000 + i, "GET"))
                .await
                .unwrap()
        );
    }
    assert!(!store.record_click(click(&busy, 0, 900_000, "GET")).await.unwrap());
    assert_eq!(
        store
            .clicks_of_run("01JBUSY0000000000000000000")
            .await
            .unwrap()
            .len(),
        hookflow::clicks::MAX_CLICKS_PER_MESSAGE
    );

    // Pruning forgets the message and its clicks; the counts stay.
    assert_eq!(store.prune_messages(Ts(500), 10).await.unwrap(), 0);
    assert_eq!(store.prune_messages(Ts(2_000), 10).await.unwrap(), 2);
    assert!(store.message(&first.key).await.unwrap().is_none());
    assert!(store.clicks_of_run(run).await.unwrap().is_empty());
    assert_eq!(store.link_counts("cart").await.unwrap().len(), 2);
}
