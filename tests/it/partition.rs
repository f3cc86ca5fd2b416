//! A network that fails silently (issue 28, item 3): two instances share a PostgreSQL of the
//! test's own, started in a network namespace the test makes, each reaching it over its own veth
//! pair. One pair is black-holed — every packet dropped, no reset, as a silent partition does —
//! for ten seconds under load, then healed. Every event answered `202` is delivered (a resend
//! carries the same `Idempotency-Key`), webhooks at the cut-off instance are answered `503`
//! with `Retry-After` (not left hanging, never a `2xx` that is lost), and it takes webhooks
//! again by itself after the heal.
//!
//! Root only (namespaces, veth, tc), skipped otherwise unless HOOKFLOW_ROOT_TESTS=required.
//! This machine's kernel has no `netem`: the black hole is a token bucket that passes nothing
//! (`tc … tbf rate 8bit burst 1`), and delayed and lost packets are shaped by a TCP proxy the
//! test runs ([`SlowLink`]: delays, and the retransmission stalls that loss causes).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Binary, Hit, Receiver, Reply};

fn sh(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL in its own network namespace, reached over one veth pair per instance.
struct PgBehindVeth {
    ns: String,
    /// (this side, the namespace's side) of each pair.
    links: Vec<(String, String)>,
    pg: Child,
    _dir: tempfile::TempDir,
}

impl PgBehindVeth {
    fn start(pairs: usize) -> Option<PgBehindVeth> {
        let required = std::env::var("HOOKFLOW_ROOT_TESTS").is_ok_and(|v| v == "required");
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .find(|p| p.join("postgres").exists())
        });
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
        let ok = root && bin.is_some() && sh("ip", &["-V"]) && sh("tc", &["-V"]);
        if !ok {
            assert!(
                !required,
                "the partition drill needs root, ip, tc and PostgreSQL's binaries"
            );
            eprintln!("SKIPPED: needs root, ip, tc and PostgreSQL's server binaries");
            return None;
        }
        let bin = bin.unwrap();
        let tag = std::process::id() % 100_000;
        let ns = format!("hfpart{tag}");
        must("ip", &["netns", "add", &ns]);
        let mut links = Vec::new();
        for i in 0..pairs {
            let (a, b) = (format!("hf{tag}a{i}"), format!("hf{tag}b{i}"));
            must("ip", &["link", "add", &a, "type", "veth", "peer", "name", &b]);
            must("ip", &["link", "set", &b, "netns", &ns]);
            must("ip", &["addr", "add", &format!("10.213.{i}.1/30"), "dev", &a]);
            must("ip", &["link", "set", &a, "up"]);
            must(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    "ip",
                    "addr",
                    "add",
                    &format!("10.213.{i}.2/30"),
                    "dev",
                    &b,
                ],
            );
            must("ip", &["netns", "exec", &ns, "ip", "link", "set", &b, "up"]);
            links.push((a, b));
        }
        must("ip", &["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        let dir = tempfile::tempdir().unwrap();
        must("chown", &["postgres", dir.path().to_str().unwrap()]);
        let data = dir.path().join("db");
        must(
            "runuser",
            &[
                "-u",
                "postgres",
                "--",
                bin.join("initdb").to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        let hba = data.join("pg_hba.conf");
        let mut text = std::fs::read_to_string(&hba).unwrap();
        text.push_str("host all all 10.213.0.0/16 trust\n");
        std::fs::write(&hba, text).unwrap();
        let listen: Vec<String> = (0..pairs).map(|i| format!("10.213.{i}.2")).collect();
        let pg = Command::new("ip")
            .args(["netns", "exec", &ns, "runuser", "-u", "postgres", "--"])
            .arg(bin.join("postgres"))
            .args(["-D", data.to_str().unwrap(), "-k", dir.path().to_str().unwrap()])
            .args(["-c", &format!("listen_addresses={}", listen.join(","))])
            .args(["-p", "5432", "-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let net = PgBehindVeth {
            ns,
            links,
            pg,
            _dir: dir,
        };
        let addr: SocketAddr = "10.213.0.2:5432".parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start in the namespace"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        Some(net)
    }

    fn url(&self, pair: usize) -> String {
        format!("postgres://postgres@10.213.{pair}.2:5432/postgres")
    }

    /// Drops every packet on the pair, both ways, silently.
    fn black_hole(&self, pair: usize) {
        let rule = ["root", "tbf", "rate", "8bit", "burst", "1", "latency", "1ms"];
        let (link, peer) = &self.links[pair];
        let mut args = vec!["qdisc", "add", "dev", link];
        args.extend(rule);
        must("tc", &args);
        let mut args = vec!["netns", "exec", &self.ns, "tc", "qdisc", "add", "dev", peer];
        args.extend(rule);
        must("ip", &args);
    }

    fn heal(&self, pair: usize) {
        let (link, peer) = &self.links[pair];
        must("tc", &["qdisc", "del", "dev", link, "root"]);
        must(
            "ip",
            &[
                "netns", "exec", &self.ns, "tc", "qdisc", "del", "dev", peer, "root",
            ],
        );
    }
}

impl Drop for PgBehindVeth {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = sh("kill", &["-9", pid]);
            }
        }
        let _ = self.pg.kill();
        let _ = self.pg.wait();
        let _ = sh("ip", &["netns", "del", &self.ns]);
        for (link, _) in &self.links {
            let _ = sh("ip", &["link", "del", link]);
        }
    }
}

fn flow(dest: &str) -> String {
    format!(
        r#"on: {{ webhook: {{}} }}
vars:
  n: {{ path: $.n, required: true }}
actions:
  - name: deliver
    http:
      url: "{dest}/deliver"
      body: {{ n: "{{{{ vars.n }}}}" }}
    retry: {{ max_attempts: 30, initial_delay: 200ms, max_delay: 1s }}
"#
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Accepted,
    Refused,
    None,
}

fn n_of(hit: &Hit) -> u64 {
    hit.json()["n"].as_u64().unwrap()
}

/// Posts event `n` to `url` and says how it was answered: `202`, `503` (with Retry-After), or
/// not at all within `within`; any other answer fails the test.
async fn send(http: reqwest::Client, url: String, n: u64, within: Duration) -> Answer {
    match http
        .post(url)
        .json(&json!({ "n": n }))
        .timeout(within)
        .send()
        .await
    {
        Ok(r) if r.status() == 202 => Answer::Accepted,
        Ok(r) if r.status() == 503 => {
            assert!(r.headers().contains_key("retry-after"), "503 without Retry-After");
            Answer::Refused
        }
        Ok(r) => panic!("event {n} answered {}", r.status()),
        Err(_) => Answer::None,
    }
}

/// Waits (up to 90 s) until every event in `accepted` has reached `dest`.
async fn wait_delivered(dest: &Receiver, accepted: &BTreeSet<u64>, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got: BTreeSet<u64> = dest.hits().iter().map(n_of).collect();
        let missing: Vec<&u64> = accepted.difference(&got).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted event(s) never delivered: {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(20)],
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_partition_from_the_database_loses_no_accepted_event_and_heals_by_itself() {
    let Some(net) = PgBehindVeth::start(2) else { return };
    let dest = Receiver::start(Reply::status(200).delayed(Duration::from_millis(200))).await;
    let yaml = flow(&dest.url);
    let (url_a, url_b) = (net.url(0), net.url(1));
    let args = |url: &str| {
        vec![
            "--store".to_string(),
            url.to_string(),
            "--lease".into(),
            "5s".into(),
        ]
    };
    let a_args = args(&url_a);
    let b_args = args(&url_b);
    let a_ref: Vec<&str> = a_args.iter().map(String::as_str).collect();
    let b_ref: Vec<&str> = b_args.iter().map(String::as_str).collect();
    let a = Binary::start(&[("f", &yaml)], &a_ref, &[]).await;
    let b = Binary::start(&[("f", &yaml)], &b_ref, &[]).await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    // Ten seconds cut off in CI; drills/run.sh runs a minute (HOOKFLOW_DRILL_PARTITION_S).
    let cut_for: u64 = std::env::var("HOOKFLOW_DRILL_PARTITION_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let cut = Duration::from_secs(3);
    let healed = cut + Duration::from_secs(cut_for);
    let end = healed + Duration::from_secs(5);
    let mut sends = Vec::new();
    let mut n = 0u64;
    let mut partitioned = false;
    let mut heal_done = false;
    while started.elapsed() < end {
        if !partitioned && started.elapsed() >= cut {
            net.black_hole(0);
            partitioned = true;
        }
        if !heal_done && started.elapsed() >= healed {
            net.heal(0);
            heal_done = true;
        }
        let to_a = n.is_multiple_of(2);
        let url = if to_a { a.hook_url("f") } else { b.hook_url("f") };
        let http = http.clone();
        let at = started.elapsed();
        sends.push(tokio::spawn(async move {
            (n, to_a, at, send(http, url, n, Duration::from_secs(20)).await)
        }));
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answers = Vec::new();
    for s in sends {
        answers.push(s.await.unwrap());
    }
    let accepted: BTreeSet<u64> = answers
        .iter()
        .filter(|(_, _, _, a)| *a == Answer::Accepted)
        .map(|(n, ..)| *n)
        .collect();
    let during = |(_, to_a, at, _): &&(u64, bool, Duration, Answer)| {
        *to_a && *at > cut + Duration::from_secs(1) && *at < healed
    };
    let cut_off: Vec<Answer> = answers.iter().filter(during).map(|(.., a)| *a).collect();
    let count = |what: Answer| answers.iter().filter(|(.., a)| *a == what).count();
    eprintln!(
        "{} sent: {} accepted, {} refused, {} unanswered; at the cut-off instance while cut off: {:?}",
        answers.len(),
        count(Answer::Accepted),
        count(Answer::Refused),
        count(Answer::None),
        cut_off.iter().fold(BTreeMap::<String, usize>::new(), |mut m, a| {
            *m.entry(format!("{a:?}")).or_default() += 1;
            m
        })
    );
    assert!(
        cut_off.iter().all(|a| *a != Answer::None),
        "a webhook at the cut-off instance was left without an answer:\n{}",
        a.log()
    );
    assert!(
        cut_off.contains(&Answer::Refused),
        "the cut-off instance refused nothing"
    );
    // It takes webhooks again by itself.
    let after: Vec<Answer> = answers
        .iter()
        .filter(|(_, to_a, at, _)| *to_a && *at > healed + Duration::from_secs(3))
        .map(|(.., a)| *a)
        .collect();
    assert!(
        after.contains(&Answer::Accepted),
        "not taking webhooks after the heal: {after:?}\n{}",
        a.log()
    );
    // Every event answered 202 is delivered; a resend carries the same key.
    wait_delivered(&dest, &accepted, || a.log()).await;
    let mut keys: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for h in dest.arrivals() {
        keys.entry(n_of(&h))
            .or_default()
            .insert(h.headers.get("idempotency-key").cloned().unwrap_or_default());
    }
    for (n, k) in &keys {
        assert_eq!(k.len(), 1, "event {n} was delivered under different keys: {k:?}");
    }
    let twice = keys
        .keys()
        .filter(|n| dest.arrivals().iter().filter(|h| n_of(h) == **n).count() > 1)
        .count();
    eprintln!(
        "{} delivered, {twice} of them more than once (same key)",
        keys.len()
    );
}

/// A TCP proxy that shapes what passes as a bad network does: every chunk held back by a
/// delay, and — as packet loss looks to TCP — some chunks held back further by a retransmission
/// timeout (200 ms to 1 s). Order is kept. Needs no privileges, so it runs wherever the
/// PostgreSQL tests do (the kernel's `netem` is not on every machine).
struct SlowLink {
    port: u16,
    delay_ms: Arc<AtomicU64>,
    /// Chunks in a thousand held back by a retransmission timeout.
    loss_per_mille: Arc<AtomicU64>,
}

impl SlowLink {
    async fn start(target: String) -> SlowLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = SlowLink {
            port: listener.local_addr().unwrap().port(),
            delay_ms: Arc::default(),
            loss_per_mille: Arc::default(),
        };
        let (delay, loss) = (link.delay_ms.clone(), link.loss_per_mille.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(shape(ri, wo, delay.clone(), loss.clone()));
                tokio::spawn(shape(ro, wi, delay.clone(), loss.clone()));
            }
        });
        link
    }

    fn set(&self, delay_ms: u64, loss_per_mille: u64) {
        self.delay_ms.store(delay_ms, AtomicOrdering::SeqCst);
        self.loss_per_mille.store(loss_per_mille, AtomicOrdering::SeqCst);
    }
}

/// Copies `from` to `to`, each chunk written when its delay is over, in order.
async fn shape(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
    loss_per_mille: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut last = tokio::time::Instant::now();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut delay = Duration::from_millis(delay_ms.load(AtomicOrdering::SeqCst));
        if rand::random_range(0..1000) < loss_per_mille.load(AtomicOrdering::SeqCst) {
            delay += Duration::from_millis(rand::random_range(200..1000));
        }
        let due = (tokio::time::Instant::now() + delay).max(last);
        last = due;
        if tx.send((due, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// One of two instances reaches PostgreSQL over a bad link, and both reach the destination over
/// one: 8 s with every packet 2 s late each way, then 8 s with 30 % of them held back by a
/// retransmission timeout, then healed — under an event every 50 ms to each instance. Every event answered `202` is delivered (a resend
/// carries the same key), every webhook is answered (`202`, or `503` with `Retry-After`), and
/// the slow instance starts no attempt after its lease has ended on the database's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_and_lossy_link_to_the_database_loses_nothing_and_doubles_nothing() {
    let Some(schema) = crate::pg::Schema::create().await else {
        return;
    };
    let hostport = crate::pg::server_url()
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let link = SlowLink::start(hostport.clone()).await;
    let slow_url = schema.url.replace(&hostport, &format!("127.0.0.1:{}", link.port));
    let dest = Receiver::start(Reply::status(200).delayed(Duration::from_millis(200))).await;
    // The destination is behind a bad link too, for both instances.
    let dest_link = SlowLink::start(dest.url.trim_start_matches("http://").to_string()).await;
    let yaml = flow(&format!("http://127.0.0.1:{}", dest_link.port));
    let a = Binary::start(&[("f", &yaml)], &["--store", &slow_url, "--lease", "5s"], &[]).await;
    let b = Binary::start(&[("f", &yaml)], &["--store", &schema.url, "--lease", "5s"], &[]).await;
    let phases = [
        (Duration::from_secs(3), 0, 0),
        (Duration::from_secs(8), 2000, 0),
        (Duration::from_secs(8), 0, 300),
        (Duration::from_secs(5), 0, 0),
    ];
    let http = reqwest::Client::new();
    let mut sends = Vec::new();
    let mut n = 0u64;
    for (length, delay, loss) in phases {
        link.set(delay, loss);
        dest_link.set(delay, loss);
        let until = Instant::now() + length;
        while Instant::now() < until {
            let to_a = n.is_multiple_of(2);
            let url = if to_a { a.hook_url("f") } else { b.hook_url("f") };
            let http = http.clone();
            sends.push(tokio::spawn(async move {
                (n, send(http, url, n, Duration::from_secs(40)).await)
            }));
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut accepted = BTreeSet::new();
    let mut counts = BTreeMap::<String, usize>::new();
    for s in sends {
        let (n, answer) = s.await.unwrap();
        *counts.entry(format!("{answer:?}")).or_default() += 1;
        assert_ne!(answer, Answer::None, "event {n} got no answer:\n{}", a.log());
        if answer == Answer::Accepted {
            accepted.insert(n);
        }
    }
    wait_delivered(&dest, &accepted, || a.log()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut per_event: BTreeMap<u64, (usize, BTreeSet<String>)> = BTreeMap::new();
    for h in dest.arrivals() {
        let e = per_event.entry(n_of(&h)).or_default();
        e.0 += 1;
        e.1.insert(h.headers.get("idempotency-key").cloned().unwrap_or_default());
    }
    for (n, (_, keys)) in &per_event {
        assert_eq!(
            keys.len(),
            1,
            "event {n} was delivered under different keys: {keys:?}"
        );
    }
    let twice = per_event.values().filter(|(c, _)| *c > 1).count();
    eprintln!(
        "answers {counts:?}; {} delivered, {twice} more than once (same key)",
        per_event.len()
    );
    // Never in flight at two instances at once: a resend starts after the first attempt ended
    // (the slow instance starts no attempt once its lease has ended on the database's clock).
    let hits = dest.hits();
    for (i, h) in hits.iter().enumerate() {
        for o in &hits[i + 1..] {
            if n_of(h) == n_of(o) {
                assert!(
                    h.ended <= o.started || o.ended <= h.started,
                    "event {} was in flight twice at once:\n{}",
                    n_of(h),
                    a.log()
                );
            }
        }
    }
}
