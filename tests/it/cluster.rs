//! Several real `hookflow` binaries on one PostgreSQL (a schema of its own per test): load
//! spread over them, one killed with SIGKILL mid-run, copies of one delivery raced at two
//! instances, an ordering key over three instances, a per-second cron on three instances, and
//! the database cut off under load (through a TCP proxy the test controls) and back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Binary, Hit, Receiver, Reply};
use crate::pg::Schema;

/// A flow that posts each event's `n` to `dest`, optionally in lanes by `account`.
fn relay(dest: &str, extra: &str) -> String {
    format!(
        r#"
on: {{ webhook: {{}} }}
vars:
  n: {{ path: $.n, required: true }}
  account: {{ path: $.account }}
{extra}
actions:
  - name: deliver
    http:
      url: "{dest}/deliver"
      body: {{ n: "{{{{ vars.n }}}}" }}
    retry: {{ max_attempts: 20, initial_delay: 200ms, max_delay: 1s }}
"#
    )
}

/// `n` instances serving `flows` on the schema's database, started at the same moment (so
/// they race to apply the migrations to the empty schema).
async fn cluster(schema: &Schema, n: usize, flows: &[(&str, &str)], args: &[&str]) -> Vec<Binary> {
    let mut a = vec!["--store", schema.url.as_str()];
    a.extend_from_slice(args);
    futures::future::join_all((0..n).map(|_| Binary::start(flows, &a, &[]))).await
}

fn n_of(hit: &Hit) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&hit.body).unwrap();
    // A whole template renders to the value's own type: the number.
    v["n"].as_u64().unwrap_or_else(|| panic!("no n in {}", hit.body))
}

/// Waits until every `n` in `want` reached `dest`; returns the hits.
async fn wait_delivered(dest: &Receiver, want: &BTreeSet<u64>, within: Duration) -> Vec<Hit> {
    let deadline = Instant::now() + within;
    loop {
        let hits = dest.hits();
        let got: BTreeSet<u64> = hits.iter().map(n_of).collect();
        let missing: Vec<_> = want.difference(&got).collect();
        if missing.is_empty() {
            return hits;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted event(s) never delivered: {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each `n` sent more than once must carry one idempotency key in every copy; returns how many
/// were sent more than once.
fn duplicates_share_their_key(hits: &[Hit]) -> usize {
    let mut keys: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    for h in hits {
        keys.entry(n_of(h))
            .or_default()
            .insert(h.headers.get("idempotency-key").cloned().unwrap_or_default());
        *count.entry(n_of(h)).or_default() += 1;
    }
    for (n, k) in &keys {
        assert_eq!(k.len(), 1, "event {n} was delivered under different keys: {k:?}");
    }
    count.values().filter(|c| **c > 1).count()
}

async fn post(http: &reqwest::Client, url: &str, body: serde_json::Value) -> Option<reqwest::Response> {
    http.post(url)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_the_load_and_lose_nothing_when_one_is_killed_mid_run() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    // Slow answers: when the kill comes, the victim is in the middle of attempts.
    let dest = Receiver::start(Reply::status(200).delayed(Duration::from_millis(2000))).await;
    let flow = relay(&dest.url, "");
    let mut nodes = cluster(&schema, 3, &[("relay", &flow)], &["--lease", "3s"]).await;
    let http = reqwest::Client::new();
    let mut accepted = BTreeSet::new();
    let send = |n: u64, url: String| {
        let http = http.clone();
        async move {
            let r = post(&http, &url, serde_json::json!({ "n": n })).await;
            (n, r.map(|r| r.status().as_u16()))
        }
    };
    // 90 events spread over the three, 30 at a time.
    let urls: Vec<String> = nodes.iter().map(|b| b.hook_url("relay")).collect();
    for wave in 0..3u64 {
        let batch: Vec<_> = (0..30u64)
            .map(|i| {
                let n = wave * 30 + i;
                send(n, urls[(n % 3) as usize].clone())
            })
            .collect();
        for (n, status) in futures::future::join_all(batch).await {
            assert_eq!(status, Some(202), "event {n}");
            accepted.insert(n);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let in_flight_at_kill = dest.arrivals().len() - dest.hits().len();
    let victim = nodes.remove(0);
    let _dir = victim.kill9();
    // More load on the survivors while the victim's leases run out.
    let batch: Vec<_> = (90..150u64)
        .map(|n| send(n, urls[1 + (n % 2) as usize].clone()))
        .collect();
    for (n, status) in futures::future::join_all(batch).await {
        assert_eq!(status, Some(202), "event {n}");
        accepted.insert(n);
    }
    let hits = wait_delivered(&dest, &accepted, Duration::from_secs(90)).await;
    // Arrivals include the attempts cut off by the kill (never answered).
    let doubled = duplicates_share_their_key(&dest.arrivals());
    eprintln!(
        "{} events accepted, {in_flight_at_kill} attempts in flight at the kill, {} deliveries, \
         {doubled} delivered twice (same key)",
        accepted.len(),
        hits.len()
    );
    // The victim's unfinished attempts were taken over after their leases and sent again.
    assert!(
        doubled > 0,
        "the kill hit no attempt in flight: the drill proved nothing"
    );
    // Every instance took part in the work, each shows up in the list while it lives.
    let api: serde_json::Value = crate::helpers::get(&http, format!("{}/api/instances", nodes[0].base)).await;
    let live = api["instances"].as_array().unwrap();
    assert!((2..=3).contains(&live.len()), "instances: {api:#}");
    assert!(live.iter().all(|i| i["flows"]["relay"].is_string()), "{api:#}");
    assert_eq!(api["flows_with_mixed_versions"], serde_json::json!([]));
    // One run per event. Every event has reached the sink, but a run whose attempt arrived just
    // before the kill finishes only once another instance has taken it over (its lease ended)
    // and resent it: wait for those records, never past one per event.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let runs: serde_json::Value = crate::helpers::get(
            &http,
            format!("{}/api/runs?flow=relay&status=succeeded&limit=500", nodes[1].base),
        )
        .await;
        let succeeded = runs["runs"].as_array().unwrap().len();
        assert!(succeeded <= accepted.len(), "more runs than events: {succeeded}");
        if succeeded == accepted.len() || std::time::Instant::now() > deadline {
            assert_eq!(succeeded, accepted.len(), "one run per event");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_delivery_raced_at_two_instances_starts_one_run() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = relay(&dest.url, "").replace(
        "on: { webhook: {} }",
        "on: { webhook: { dedupe: { key: \"{{ body.delivery }}\" } } }",
    );
    let nodes = cluster(&schema, 2, &[("relay", &flow)], &[]).await;
    let http = reqwest::Client::new();
    for d in 0..20u64 {
        // Four copies of each delivery at the same moment, two at each instance.
        let copies: Vec<_> = (0..4)
            .map(|i| {
                let url = nodes[i % 2].hook_url("relay");
                let http = http.clone();
                async move {
                    let r = post(
                        &http,
                        &url,
                        serde_json::json!({ "n": d, "delivery": format!("d-{d}") }),
                    )
                    .await
                    .unwrap();
                    let status = r.status().as_u16();
                    let body: serde_json::Value = r.json().await.unwrap();
                    (status, body)
                }
            })
            .collect();
        let answers = futures::future::join_all(copies).await;
        let started: Vec<_> = answers
            .iter()
            .filter(|(_, b)| b["status"] == "accepted")
            .collect();
        assert_eq!(started.len(), 1, "delivery {d}: {answers:?}");
        let run_id = &started[0].1["run_id"];
        for (status, b) in &answers {
            assert!((200..300).contains(status), "{answers:?}");
            if b["status"] != "accepted" {
                assert_eq!(b["status"], "duplicate", "{answers:?}");
                assert_eq!(&b["run_id"], run_id, "a duplicate names the first run");
            }
        }
    }
    let want: BTreeSet<u64> = (0..20).collect();
    wait_delivered(&dest, &want, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dest.hits().len(), 20, "one delivery per run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ordering_key_runs_one_at_a_time_in_arrival_order_across_instances() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let dest = Receiver::start(Reply::status(200).delayed(Duration::from_millis(60))).await;
    let flow = relay(&dest.url, "concurrency: { key: \"{{ vars.account }}\" }");
    let nodes = cluster(&schema, 3, &[("relay", &flow)], &[]).await;
    let http = reqwest::Client::new();
    // One account's events, each accepted before the next is sent, at instance after instance.
    for n in 0..24u64 {
        let r = post(
            &http,
            &nodes[(n % 3) as usize].hook_url("relay"),
            serde_json::json!({ "n": n, "account": "acme" }),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 202);
    }
    let want: BTreeSet<u64> = (0..24).collect();
    let hits = wait_delivered(&dest, &want, Duration::from_secs(60)).await;
    let order: Vec<u64> = hits.iter().map(n_of).collect();
    assert_eq!(order, (0..24).collect::<Vec<_>>(), "arrival order, no repeats");
    assert_eq!(dest.max_in_flight(), 1, "two runs of one lane overlapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_second_schedule_fires_once_per_slot_across_three_instances() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = format!(
        r#"
on:
  schedule:
    cron: "* * * * * *"
actions:
  - http:
      url: "{}/tick"
      body: {{ at: "{{{{ body.scheduled_at }}}}" }}
"#,
        dest.url
    );
    let nodes = cluster(&schema, 3, &[("tick", &flow)], &[]).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    drop(nodes);
    let slots: Vec<String> = dest
        .hits()
        .iter()
        .map(|h| serde_json::from_str::<serde_json::Value>(&h.body).unwrap()["at"].to_string())
        .collect();
    let distinct: BTreeSet<&String> = slots.iter().collect();
    assert!(slots.len() >= 3, "the schedule hardly fired: {slots:?}");
    assert_eq!(distinct.len(), slots.len(), "a slot fired twice: {slots:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_holds_for_all_instances_together() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = relay(&dest.url, "").replace("    http:", "    rate_limit: 5/s\n    http:");
    let nodes = cluster(&schema, 3, &[("relay", &flow)], &[]).await;
    let http = reqwest::Client::new();
    let sends = (0..15u64).map(|n| {
        let (http, url) = (http.clone(), nodes[(n % 3) as usize].hook_url("relay"));
        async move {
            let r = post(&http, &url, serde_json::json!({ "n": n })).await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<serde_json::Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    });
    let ids = futures::future::join_all(sends).await;
    let want: BTreeSet<u64> = (0..15).collect();
    wait_delivered(&dest, &want, Duration::from_secs(30)).await;
    // When each attempt started, as the instance that made it recorded it (once it has: the
    // outcome is saved a moment after the partner answered).
    let mut starts = Vec::new();
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(10);
        let run = loop {
            let run: serde_json::Value =
                crate::helpers::get(&http, format!("{}/api/runs/{id}", nodes[0].base)).await;
            if run["status"] == "succeeded" {
                break run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} not saved as succeeded: {run:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let at: hookflow::run::Ts =
            serde_json::from_value(run["steps"][0]["attempts"][0]["started_at"].clone()).unwrap();
        starts.push(at.0);
    }
    starts.sort();
    // One slot per 200 ms for the three together: no attempt before its slot.
    for (i, t) in starts.iter().enumerate() {
        let after = t - starts[0];
        assert!(
            after + 100 >= i as u64 * 200,
            "attempt {i} started {after} ms after the first: {starts:?}"
        );
    }
}

/// A TCP proxy to the database that the test can cut (every connection dropped, new ones
/// closed at once, as a restarting server does) and restore.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    conns: std::sync::Mutex<CancellationToken>,
}

impl Proxy {
    async fn start(target: String) -> Arc<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Arc::new(Proxy {
            port: listener.local_addr().unwrap().port(),
            down: Arc::new(AtomicBool::new(false)),
            conns: std::sync::Mutex::new(CancellationToken::new()),
        });
        let p = Arc::clone(&proxy);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if p.down.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = p.conns.lock().unwrap().clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        proxy
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        let mut conns = self.conns.lock().unwrap();
        conns.cancel();
        *conns = CancellationToken::new();
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_the_database_is_gone_webhooks_get_503_and_nothing_accepted_is_lost() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let server = crate::pg::server_url();
    let hostport = server
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let proxy = Proxy::start(hostport.clone()).await;
    let via_proxy = schema
        .url
        .replace(&hostport, &format!("127.0.0.1:{}", proxy.port));
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = relay(&dest.url, "");
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(
            Binary::start(
                &[("relay", &flow)],
                &[
                    "--store",
                    &via_proxy,
                    "--pg-acquire-timeout",
                    "1s",
                    "--lease",
                    "3s",
                ],
                &[],
            )
            .await,
        );
    }
    let urls: Vec<String> = nodes.iter().map(|b| b.hook_url("relay")).collect();
    let http = reqwest::Client::new();
    let stop = CancellationToken::new();
    // Four senders, each numbering its events; (n, status, seconds taken, Retry-After).
    let mut senders = Vec::new();
    for s in 0..4u64 {
        let (http, urls, stop) = (http.clone(), urls.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = 0u64;
            while !stop.is_cancelled() {
                let n = s * 1_000_000 + i;
                i += 1;
                let t = Instant::now();
                let r = post(&http, &urls[(n % 2) as usize], serde_json::json!({ "n": n })).await;
                let status = r.as_ref().map(|r| r.status().as_u16());
                let retry_after = r
                    .as_ref()
                    .and_then(|r| r.headers().get("retry-after"))
                    .map(|v| v.to_str().unwrap().to_string());
                out.push((n, status, t.elapsed(), retry_after));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            out
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.cancel();
    let mut answers = Vec::new();
    for s in senders {
        answers.extend(s.await.unwrap());
    }
    let accepted: BTreeSet<u64> = answers.iter().filter(|a| a.1 == Some(202)).map(|a| a.0).collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.1 == Some(503)).collect();
    let other: Vec<_> = answers
        .iter()
        .filter(|a| !matches!(a.1, Some(202) | Some(503)))
        .collect();
    eprintln!(
        "{} accepted, {} answered 503 during the cut, {} otherwise",
        accepted.len(),
        refused.len(),
        other.len()
    );
    assert!(
        other.is_empty(),
        "only 202 or 503: {:?}",
        &other[..other.len().min(5)]
    );
    assert!(!refused.is_empty(), "the cut was not noticed");
    for (_, _, took, retry_after) in &refused {
        assert!(retry_after.is_some(), "a 503 without Retry-After");
        assert!(*took < Duration::from_secs(5), "a 503 took {took:?}");
    }
    // Recovery: the last answers of every sender are accepts again.
    let recovered = answers.iter().rev().take(20).filter(|a| a.1 == Some(202)).count();
    assert_eq!(
        recovered, 20,
        "the instances did not recover after the database came back"
    );
    wait_delivered(&dest, &accepted, Duration::from_secs(60)).await;
    duplicates_share_their_key(&dest.arrivals());
    drop(nodes.drain(..));
}

/// A run accepted by one instance is picked up by an idle other one at once: the accepting
/// instance has no workers, the other polls only every 30 s, so only the database's
/// notification (LISTEN/NOTIFY) can wake it within the seconds allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_instance_picks_up_a_run_another_accepted_without_waiting_for_its_poll() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let dest = Receiver::start(Reply::status(200)).await;
    let flow = relay(&dest.url, "");
    let flows = [("relay", flow.as_str())];
    let front = cluster(&schema, 1, &flows, &["--workers", "0", "--poll", "30s"]).await;
    let back = cluster(&schema, 1, &flows, &["--poll", "30s"]).await;
    // Both idle for a moment: the worker's first look at the empty queue is behind it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = reqwest::Client::new();
    let mut took = Vec::new();
    for n in 0..20u64 {
        let sent = Instant::now();
        let r = post(&http, &front[0].hook_url("relay"), serde_json::json!({ "n": n })).await;
        assert_eq!(r.map(|r| r.status().as_u16()), Some(202));
        while !dest.hits().iter().any(|h| n_of(h) == n) {
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "run {n} not picked up within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        took.push(sent.elapsed());
        // Idle again between runs, as the idle instance the issue names is.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    took.sort();
    eprintln!(
        "accepted on one instance to delivered by the other: median {:?}, slowest {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(dest.hits().len() >= 20);
    drop(back);
}
