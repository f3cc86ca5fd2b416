//! Backups (`Backup`): sled backs itself up while it serves; PostgreSQL says to use its tools.

use super::*;

suite!(a_backup_is_a_file_or_the_database_tools_are_named);

async fn a_backup_is_a_file_or_the_database_tools_are_named(store: Arc<dyn Store>, pg: bool) {
    store.insert_run(&new_run("f", None)).await.unwrap();
    match store.backup_file().await {
        Ok((path, info)) => {
            assert!(!pg, "PostgreSQL does not back itself up");
            let len = std::fs::metadata(&path).unwrap().len();
            std::fs::remove_file(&path).unwrap();
            assert!(len > 0 && info.entries + info.pending_runs >= 1, "{info:?}");
        }
        Err(e) => {
            assert!(pg, "sled backs itself up: {e}");
            assert!(e.to_string().contains("pg_dump"), "{e}");
        }
    }
}

/// Parked runs are in a backup (as the waiting runs they are, an exit that reached one
/// included) and `store check` counts them: a restored store wakes every one on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_parked_runs_are_backed_up_restored_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = hookflow::store::SledStore::open(&dir.path().join("store"), Default::default()).unwrap();
    let wake = Ts::now().plus(Duration::from_secs(2 * 86_400));
    let ids = park_waiting(&store, "seq", 5, &["k"], wake).await;
    assert_eq!(store.parked(), 5);
    store
        .exit_runs(vec![ExitMatch {
            flow: "seq".into(),
            key: "k".into(),
            reason: "refunded".into(),
        }])
        .await
        .unwrap();
    let file = dir.path().join("backup.gz");
    store.backup(&file).await.unwrap();
    drop(store);
    let report = hookflow::store::sled::check::check(&dir.path().join("store")).unwrap();
    assert_eq!((report.parked, report.problems.len()), (5, 0), "{report:?}");

    let restored = tempfile::tempdir().unwrap();
    hookflow::store::SledStore::restore(&file, restored.path())
        .await
        .unwrap();
    let store = hookflow::store::SledStore::open(&restored.path().join("store"), Default::default()).unwrap();
    assert_eq!(
        store.get_run(&ids[0]).await.unwrap().unwrap().status,
        RunStatus::Waiting
    );
    let claimed = store
        .claim(ClaimRequest {
            now: Ts(wake.0 + 1),
            ..claim(10, Duration::from_secs(30))
        })
        .await
        .unwrap();
    let mut got: Vec<(String, Option<String>)> = claimed
        .into_iter()
        .map(|c| (c.run.id, c.exit_requested))
        .collect();
    got.sort();
    let mut want: Vec<(String, Option<String>)> = ids.iter().map(|id| (id.clone(), None)).collect();
    want[0].1 = Some("refunded".into());
    want.sort();
    assert_eq!(got, want);
}
