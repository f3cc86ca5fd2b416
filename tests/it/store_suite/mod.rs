//! One behaviour suite per role of the store (`hookflow::store`), each run against both
//! backends: every case runs once on sled (a temp dir) and once on PostgreSQL (a schema of its
//! own, see `pg.rs`). What the engine relies on — queueing, leases, lanes, caps, dedupe,
//! firings, segments and their events, exits, retention, paging, suppressions, alert states —
//! must mean the same on both. Cases that only the embedded store has (its journal, parking,
//! compression, backups) are named `sled_…`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, json};

use hookflow::event::{Event, Origin};
use hookflow::request::Request;
use hookflow::run::{Run, RunStatus, Ts};
use hookflow::segment::SegmentOp;
use hookflow::store::{
    ClaimRequest, Effects, ExitMatch, Instance, Next, Pace, RunFilter, RunQueue, Store, StoreError, WaitOp,
};

/// Generates `sled::<case>` and `postgres::<case>` for each case.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store: std::sync::Arc<dyn hookflow::store::Store> =
                        std::sync::Arc::new(hookflow::store::SledStore::temporary().unwrap());
                    super::$case(store, false).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(schema) = crate::pg::Schema::create().await else { return };
                    super::$case(schema.store().await, true).await;
                }
            )*
        }
    };
}

mod alerts;
mod backup;
mod clicks;
mod contacts;
mod coordination;
mod queue;
mod sources;
mod suppressions;

fn new_run(flow: &str, key: Option<&str>) -> Run {
    let req = Request {
        method: "POST".into(),
        body: json!({"hello": "world"}),
        ..Request::default()
    };
    Run::new(
        flow,
        "v1",
        req,
        Map::new(),
        key.map(str::to_string),
        ["first".to_string(), "second".to_string()],
    )
}

fn claim(limit: usize, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        now: Ts::now(),
        lease_for: lease,
        limit,
        caps: Default::default(),
        fair_share: 0,
    }
}

async fn claim_ids(store: &dyn Store, req: ClaimRequest) -> Vec<String> {
    let mut ids: Vec<String> = store
        .claim(req)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.run.id)
        .collect();
    ids.sort();
    ids
}

async fn runs_cover_everything(store: Arc<dyn Store>) -> Vec<Run> {
    store
        .list_runs(&RunFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Claims and finishes runs until `upto` are claimed or none is left.
async fn drain(store: &dyn Store, upto: usize, claimed: &mut Vec<String>) {
    while claimed.len() < upto {
        let got = store.claim(claim(50, Duration::from_secs(30))).await.unwrap();
        if got.is_empty() {
            break;
        }
        for c in got {
            store.save(&c.lease, &c.run, Next::Done).await.unwrap();
            claimed.push(c.run.id);
        }
    }
}

/// Claims the queued runs, each exit key given to the next run, and saves them all waiting at
/// a `wait` step until `until`, as the engine does.
async fn park_waiting(store: &dyn Store, flow: &str, n: usize, keys: &[&str], until: Ts) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut r = new_run(flow, None);
        if let Some(k) = keys.get(i) {
            r.exit_keys = vec![k.to_string()];
        }
        store.insert_run(&r).await.unwrap();
        ids.push(r.id);
    }
    let claimed = store.claim(claim(n, Duration::from_secs(30))).await.unwrap();
    assert_eq!(claimed.len(), n);
    for c in claimed {
        let mut run = c.run;
        run.status = RunStatus::Waiting;
        run.next_attempt_at = Some(until);
        let mut waits = vec![WaitOp::Waiting {
            flow: flow.into(),
            by: 1,
        }];
        waits.extend(run.exit_keys.iter().map(|k| WaitOp::IndexExit {
            flow: flow.into(),
            key: k.clone(),
            run_id: run.id.clone(),
        }));
        let effects = Effects {
            waits,
            ..Effects::default()
        };
        store
            .save_with(&c.lease, &run, Next::RetryAt(until), effects)
            .await
            .unwrap();
    }
    ids
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}
