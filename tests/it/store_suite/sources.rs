//! Flow sources (`FlowSources`): every version kept, and the last one that loaded cleanly.

use super::*;

suite!(every_version_is_kept_and_the_last_good_one_is_the_newest,);

async fn every_version_is_kept_and_the_last_good_one_is_the_newest(store: Arc<dyn Store>, _pg: bool) {
    store.put_flow_source("f", "v1", "on: {}\n").await.unwrap();
    store.put_flow_source("f", "v1", "on: {}\n").await.unwrap();
    assert_eq!(
        store.flow_source("f", "v1").await.unwrap().as_deref(),
        Some("on: {}\n")
    );
    assert!(store.flow_source("f", "v2").await.unwrap().is_none());
    // The last version that loaded cleanly: the newest recorded, per flow.
    assert!(store.last_good("f").await.unwrap().is_none());
    store.put_last_good("f", "v1").await.unwrap();
    store.put_last_good("f", "v2").await.unwrap();
    store.put_last_good("g", "v9").await.unwrap();
    assert_eq!(store.last_good("f").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(store.last_good("g").await.unwrap().as_deref(), Some("v9"));
}
