//! Stores written by earlier releases: the layout-2 data directory in `tests/data/` (written by
//! 0.1.0) opens with its runs, segments and journal, and is marked layout 4 (runs' inputs apart
//! and compressed, issue 35) with its whole records read as they are; a layout-3 store's plain
//! inputs read as they are too; a store of a newer or an older layout is refused with what to
//! do, and left unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::{Binary, serve_command};

const SECRET: &str = "fixture-secret-0123456789";

/// A temp dir with `flows/orders.yaml` and `data/` unpacked from the fixture.
fn unpack() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(dir.path().join("flows")).unwrap();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    std::fs::copy(
        here.join("store-layout-2.flow.yaml"),
        dir.path().join("flows/orders.yaml"),
    )
    .unwrap();
    let ok = Command::new("tar")
        .arg("xzf")
        .arg(here.join("store-layout-2.tar.gz"))
        .arg("-C")
        .arg(&data)
        .status()
        .unwrap();
    assert!(ok.success());
    dir
}

#[tokio::test]
async fn a_store_written_by_release_0_1_0_opens_with_everything_in_it() {
    let dir = unpack();
    let app = Binary::start_in(dir, &["--workers", "0"], &[("HOOKFLOW_SECRET", SECRET)]).await;
    let http = reqwest::Client::new();
    let runs: serde_json::Value = crate::helpers::get(&http, format!("{}/api/runs", app.base)).await;
    let mut states: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    states.sort();
    assert_eq!(
        states,
        ["failed", "failed", "failed", "queued", "queued"],
        "{runs:#}"
    );
    let failed = &runs["runs"].as_array().unwrap()[4];
    assert_eq!(failed["flow"], "orders");
    let members: serde_json::Value =
        crate::helpers::get(&http, format!("{}/api/segments/buyers/members", app.base)).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 3, "{members:#}");
    // Its URLs are the ones it served.
    let r = http
        .post(format!(
            "{}/hooks/orders/6fe0f6dcfe229633f0c755b2c893713c",
            app.base
        ))
        .json(&serde_json::json!({"n": 6, "email": "buyer6@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let dir = app.kill9();
    assert_eq!(layout(&dir.path().join("data")), "4");
}

fn set_layout(data: &Path, layout: &str) {
    let db = hookflow::store::sled_config(&data.join("store"))
        .unwrap()
        .open()
        .unwrap();
    db.insert("meta:layout", layout).unwrap();
    db.flush().unwrap();
}

fn layout(data: &Path) -> String {
    let db = hookflow::store::sled_config(&data.join("store"))
        .unwrap()
        .open()
        .unwrap();
    String::from_utf8(db.get("meta:layout").unwrap().unwrap().to_vec()).unwrap()
}

#[test]
fn a_store_of_another_layout_is_refused_with_what_to_do_and_left_unchanged() {
    for (found, says) in [
        ("5", "newer hookflow (store layout 5"),
        ("1", "earlier hookflow release"),
    ] {
        let dir = unpack();
        let data = dir.path().join("data");
        set_layout(&data, found);
        let (mut cmd, _) = serve_command(&dir.path().join("flows"), &dir.path().join("templates"), &data);
        let mut child = cmd
            .stderr(std::process::Stdio::piped())
            .env("HOOKFLOW_SECRET", SECRET)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve started on layout {found}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(!status.success());
        assert!(
            err.contains(says) && err.contains("changed nothing"),
            "layout {found}: {err}"
        );
        assert_eq!(layout(&data), found, "the refused store was changed");
    }
}

fn check(data: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["store", "check", "--data", data.to_str().unwrap()])
        .env("HOOKFLOW_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// All bytes under `dir`, to prove a check changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walk(dir) {
        out.push((e.clone(), std::fs::read(&e).unwrap()));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn store_check_reports_intact_and_damaged_stores_and_changes_nothing() {
    let dir = unpack();
    let data = dir.path().join("data");
    let (code, text) = check(&data);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("3 runs (3 finished), 2 accepted runs still in the intake journal"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("intact"), "{text}");

    // One byte of the first journal record still pending is damaged.
    let segment = walk(&data.join("store/intake"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(b"buyer4@example.com".len())
        .position(|w| w == b"buyer4@example.com")
        .expect("the pending run is in the journal");
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let before = snapshot(&data);
    let (code, text) = check(&data);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&segment.display().to_string()),
        "names the file: {text}"
    );
    assert!(text.contains("1 readable record(s) after it are kept"), "{text}");
    assert!(text.contains("DAMAGED"), "{text}");
    assert_eq!(snapshot(&data), before, "store check changed the store");

    // What it said serve does, serve does: the other pending run is there.
    let app = Binary::start_in(dir, &["--workers", "0"], &[("HOOKFLOW_SECRET", SECRET)]).await;
    let runs: serde_json::Value = reqwest::get(format!("{}/api/runs", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 4, "{runs:#}");
    // A store a running server holds is not checked behind its back.
    let (code, text) = check(&app.dir.path().join("data"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("running hookflow"), "{text}");
}

/// sled itself on `dir`, once a dropped store's flusher thread has let go of the file lock.
async fn open_raw(dir: &Path) -> sled::Db {
    for _ in 0..50 {
        match hookflow::store::sled_config(dir).unwrap().open() {
            Ok(db) => return db,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    hookflow::store::sled_config(dir).unwrap().open().unwrap()
}

/// A claim of every due run, now.
fn claim_now() -> hookflow::store::ClaimRequest {
    hookflow::store::ClaimRequest {
        now: hookflow::run::Ts::now(),
        lease_for: Duration::from_secs(30),
        limit: 10,
        caps: Default::default(),
        fair_share: 0,
    }
}

/// `run`, stored by an older layout, is shown with its request and vars, claimed with its
/// request, and saved as succeeded by the store of this layout.
async fn shown_claimed_and_finished(
    store: &hookflow::store::SledStore,
    run: &hookflow::run::Run,
    layout: &str,
) {
    use hookflow::store::{Next, RunQueue};
    let shown = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!((&shown.request, &shown.vars), (&run.request, &run.vars));
    let claimed = store.claim(claim_now()).await.unwrap();
    assert_eq!(claimed.len(), 1, "the layout-{layout} run is claimed");
    assert_eq!(claimed[0].run.request, run.request);
    let mut done = claimed[0].run.clone();
    done.status = hookflow::run::RunStatus::Succeeded;
    done.finished_at = Some(hookflow::run::Ts::now());
    store.save(&claimed[0].lease, &done, Next::Done).await.unwrap();
}

/// A run that layout 2 stored whole — queued in sled, its request inside its record, no
/// `input:` key — opens in layout 4, is claimed and saved (its progress now apart, its input
/// written beside it the first time), and reads back with its request and vars unchanged.
#[tokio::test]
async fn a_run_stored_whole_by_layout_2_runs_and_keeps_its_request_in_layout_4() {
    use hookflow::run::{Run, Ts};
    use hookflow::store::{Next, RunQueue};
    let dir = tempfile::tempdir().unwrap();
    let mut vars = serde_json::Map::new();
    vars.insert("email".into(), serde_json::json!("ada@example.com"));
    let request = hookflow::request::Request {
        method: "POST".into(),
        body: serde_json::json!({"order": 1042, "lines": [{"sku": "A-1", "qty": 2}]}),
        ..Default::default()
    };
    let run = Run::new("orders", "v", request, vars, None, ["post".to_string()]);
    let id = run.id.clone();
    {
        // Admitted into sled and let go again, so its record sits in sled, queued.
        let store = crate::helpers::open_sled(dir.path()).await;
        store.insert_run(&run).await.unwrap();
        let claimed = store.claim(claim_now()).await.unwrap();
        assert_eq!(claimed.len(), 1);
        store
            .save(&claimed[0].lease, &claimed[0].run, Next::RetryAt(Ts::now()))
            .await
            .unwrap();
    }
    {
        // Rewritten as layout 2 kept it.
        let db = open_raw(dir.path()).await;
        let key = format!("run:{id}");
        let stored: serde_json::Value = serde_json::from_slice(&db.get(&key).unwrap().unwrap()).unwrap();
        let input = db
            .remove(format!("input:{id}"))
            .unwrap()
            .expect("layout 4 keeps the input apart");
        let progress = serde_json::to_vec(&stored["run"]).unwrap();
        assert!(
            !String::from_utf8_lossy(&progress).contains("A-1"),
            "the body is in the progress"
        );
        let whole: serde_json::Value =
            serde_json::from_slice(&hookflow::store::record::join(&input, &progress)).unwrap();
        db.insert(
            &key,
            serde_json::to_vec(&serde_json::json!({"q": stored["q"], "run": whole})).unwrap(),
        )
        .unwrap();
        db.insert("meta:layout", "2").unwrap();
        db.flush().unwrap();
    }
    let store = crate::helpers::open_sled(dir.path()).await;
    shown_claimed_and_finished(&store, &run, "2").await;
    let shown = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(shown.status, hookflow::run::RunStatus::Succeeded);
    assert_eq!((&shown.request, &shown.vars), (&run.request, &run.vars));
    drop(store);
    let db = open_raw(dir.path()).await;
    assert_eq!(db.get("meta:layout").unwrap().unwrap().as_ref(), b"4");
    assert!(
        db.get(format!("input:{id}")).unwrap().is_some(),
        "its input is kept apart now"
    );
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Layout 4 stores a run's input compressed (zstd) — for the benchmark's order, about half the
/// bytes — and reads the plain JSON inputs layout 3 wrote as they are: a layout-3 run opens,
/// shows and runs with its request unchanged, and nothing is rewritten to be read.
#[tokio::test]
async fn inputs_are_compressed_in_layout_4_and_layout_3_plain_inputs_still_read() {
    use hookflow::run::{Run, Ts};
    use hookflow::store::{Next, RunQueue};
    let dir = tempfile::tempdir().unwrap();
    let order: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/order.json")).unwrap(),
    )
    .unwrap();
    let request = hookflow::request::Request {
        method: "POST".into(),
        body: order,
        ..Default::default()
    };
    let mut vars = serde_json::Map::new();
    vars.insert("email".into(), serde_json::json!("ada@example.com"));
    let run = Run::new("orders", "v", request, vars, None, ["post".to_string()]);
    let id = run.id.clone();
    let plain = hookflow::store::record::input_json(&run).unwrap();
    {
        let store = crate::helpers::open_sled(dir.path()).await;
        store.insert_run(&run).await.unwrap();
        assert_eq!(store.get_run(&id).await.unwrap().unwrap().request, run.request);
        // Claimed and let go: now admitted, its input in sled.
        let claimed = store.claim(claim_now()).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].run.request, run.request);
        store
            .save(&claimed[0].lease, &claimed[0].run, Next::RetryAt(Ts::now()))
            .await
            .unwrap();
    }
    {
        let db = open_raw(dir.path()).await;
        let stored = db.get(format!("input:{id}")).unwrap().unwrap();
        assert!(stored.starts_with(&ZSTD_MAGIC), "the input is stored compressed");
        assert!(
            stored.len() * 10 < plain.len() * 6,
            "{} bytes stored for {} of JSON",
            stored.len(),
            plain.len()
        );
        assert_eq!(zstd::block::decompress(&stored, 1 << 20).unwrap(), plain);
        // As layout 3 kept it: plain JSON.
        db.insert(format!("input:{id}"), plain.clone()).unwrap();
        db.insert("meta:layout", "3").unwrap();
        db.flush().unwrap();
    }
    let store = crate::helpers::open_sled(dir.path()).await;
    shown_claimed_and_finished(&store, &run, "3").await;
    assert_eq!(store.get_run(&id).await.unwrap().unwrap().request, run.request);
    drop(store);
    let db = open_raw(dir.path()).await;
    assert_eq!(db.get("meta:layout").unwrap().unwrap().as_ref(), b"4");
    assert_eq!(
        db.get(format!("input:{id}")).unwrap().unwrap().as_ref(),
        &plain[..],
        "a plain input is read as it is, never rewritten"
    );
    // A finished run's record is compressed too (an unfinished one, rewritten at every claim
    // and save, is not), and it holds what the store showed.
    let record = db.get(format!("run:{id}")).unwrap().unwrap();
    assert!(
        record.starts_with(&ZSTD_MAGIC),
        "the finished record is compressed"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&zstd::block::decompress(&record, 1 << 20).unwrap()).unwrap();
    assert_eq!(record["q"], serde_json::Value::Null);
    assert_eq!(record["run"]["status"], "succeeded");
}

/// A PostgreSQL schema from before migration 0006 — one unfinished run queued with its whole
/// record, one finished — is migrated at connect: the unfinished run's input moves apart and it
/// is claimed, saved and read back with its request intact; the finished one reads as it was.
/// A whole row stored after the migration (an instance of the earlier release, during a rolling
/// upgrade) gets its input apart when it is claimed.
#[tokio::test]
async fn a_postgresql_schema_from_before_inputs_apart_is_migrated_and_loses_nothing() {
    use hookflow::run::{Run, RunStatus, Ts};
    use hookflow::store::{ClaimRequest, Next};
    use sqlx::ConnectOptions;
    let Some(schema) = crate::pg::Schema::create().await else {
        return;
    };
    // The migrations as they were before 0006, applied to the schema.
    let old = tempfile::tempdir().unwrap();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for entry in std::fs::read_dir(&here).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.as_str() < "0006" {
            std::fs::copy(&path, old.path().join(name)).unwrap();
        }
    }
    let mut conn = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&schema.url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let request = hookflow::request::Request {
        method: "POST".into(),
        body: serde_json::json!({"order": 1042, "lines": [{"sku": "A-1", "qty": 2}], "note": "b\u{e9}"}),
        ..Default::default()
    };
    let mut vars = serde_json::Map::new();
    vars.insert("email".into(), serde_json::json!("ada@example.com"));
    let new_run = || {
        Run::new(
            "orders",
            "v",
            request.clone(),
            vars.clone(),
            None,
            ["post".to_string()],
        )
    };
    let (queued, late, mut finished) = (new_run(), new_run(), new_run());
    finished.status = RunStatus::Succeeded;
    finished.finished_at = Some(Ts::now());
    // A run's row as releases before 0006 wrote it: the whole run in `record`.
    async fn insert_whole(conn: &mut sqlx::PgConnection, run: &Run) {
        sqlx::query(
            "INSERT INTO hookflow_runs (id, flow, status, created_at, record, due, finished_at)
             VALUES ($1, 'orders', $2, $3, $4, $5, $6)",
        )
        .bind(&run.id)
        .bind(run.status.as_str())
        .bind(run.created_at.0 as i64)
        .bind(serde_json::to_string(run).unwrap())
        .bind(run.finished_at.is_none().then_some(run.created_at.0 as i64))
        .bind(run.finished_at.map(|t| t.0 as i64))
        .execute(conn)
        .await
        .unwrap();
    }
    insert_whole(&mut conn, &queued).await;
    insert_whole(&mut conn, &finished).await;
    let store = schema.store().await;
    // An instance of the earlier release, still running during a rolling upgrade, stores one.
    insert_whole(&mut conn, &late).await;
    let (record, input): (String, String) = sqlx::query_as(
        "SELECT r.record, i.input FROM hookflow_runs r JOIN hookflow_run_inputs i USING (id) WHERE id = $1",
    )
    .bind(&queued.id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        !record.contains("A-1") && input.contains("A-1"),
        "{record} / {input}"
    );
    assert_eq!(store.get_run(&finished.id).await.unwrap().unwrap(), finished);
    assert_eq!(store.get_run(&queued.id).await.unwrap().unwrap(), queued);
    let claimed = store
        .claim(ClaimRequest {
            now: Ts::now(),
            lease_for: Duration::from_secs(30),
            limit: 10,
            caps: Default::default(),
            fair_share: 0,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    for c in &claimed {
        assert_eq!((&c.run.request, &c.run.vars), (&request, &vars));
        let mut done = c.run.clone();
        done.status = RunStatus::Succeeded;
        done.finished_at = Some(Ts::now());
        store.save(&c.lease, &done, Next::Done).await.unwrap();
        let shown = store.get_run(&c.run.id).await.unwrap().unwrap();
        assert_eq!(shown.status, RunStatus::Succeeded);
        assert_eq!((&shown.request, &shown.vars), (&request, &vars), "{}", c.run.id);
    }
    // Pruning takes a run's input with it.
    assert_eq!(store.prune(Ts(Ts::now().0 + 1), 0, 100).await.unwrap(), 3);
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM hookflow_run_inputs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}
