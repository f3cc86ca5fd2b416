//! Test harness: a real destination server that records what it receives and answers from a
//! script, and `spawn_app` — hookflow's router, engine and a sled store on a temp dir, all on
//! loopback. Tests wait for runs by polling the store (a drain), never by fixed sleeps.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use hookflow::action::Clients;
use hookflow::action::email::{Mailer, SmtpConfig};
use hookflow::app::App;
use hookflow::engine::EngineConfig;
use hookflow::flow::load_dir;
use hookflow::run::{Run, RunStatus};
use hookflow::server::app;
use hookflow::store::{Durability, RunFilter, SledStore, Store};
use hookflow::token::UrlTokens;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret-0123456789abcdef";

/// One request the destination received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub started: Instant,
    pub ended: Instant,
}

impl Hit {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// How the destination answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: "{}".into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            body: body.to_string(),
            ..Reply::status(status)
        }
    }
    pub fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

#[derive(Default)]
struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    arrivals: Mutex<Vec<Hit>>,
    script: Mutex<VecDeque<Reply>>,
    by_path: Mutex<BTreeMap<String, VecDeque<Reply>>>,
    default: Mutex<Option<Reply>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A destination server on loopback.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start(default: Reply) -> Receiver {
        let state = Arc::new(ReceiverState::default());
        *state.default.lock().unwrap() = Some(default);
        let st = Arc::clone(&state);
        let router =
            Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let st = Arc::clone(&st);
                async move {
                    let started = Instant::now();
                    let arrival = Hit {
                        method: method.to_string(),
                        path: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                        started,
                        ended: started,
                    };
                    st.arrivals.lock().unwrap().push(arrival.clone());
                    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
                    let reply = {
                        let scripted = st.script.lock().unwrap().pop_front();
                        let by_path = st.by_path.lock().unwrap().get_mut(uri.path()).and_then(|q| {
                            if q.len() > 1 {
                                q.pop_front()
                            } else {
                                q.front().cloned()
                            }
                        });
                        scripted
                            .or(by_path)
                            .or_else(|| st.default.lock().unwrap().clone())
                            .unwrap()
                    };
                    if !reply.delay.is_zero() {
                        tokio::time::sleep(reply.delay).await;
                    }
                    st.in_flight.fetch_sub(1, Ordering::SeqCst);
                    st.hits.lock().unwrap().push(Hit {
                        ended: Instant::now(),
                        ..arrival
                    });
                    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
                    resp.headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    for (k, v) in reply.headers {
                        resp.headers_mut().insert(
                            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                            v.parse().unwrap(),
                        );
                    }
                    resp
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Receiver {
            url: format!("http://{addr}"),
            state,
        }
    }

    /// Replies used in order before falling back to per-path or default replies.
    pub fn script(&self, replies: Vec<Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn on_path(&self, path: &str, reply: Reply) {
        self.on_path_seq(path, vec![reply]);
    }

    /// Replies for `path` in order; the last one repeats.
    pub fn on_path_seq(&self, path: &str, replies: Vec<Reply>) {
        self.state
            .by_path
            .lock()
            .unwrap()
            .insert(path.to_string(), replies.into());
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Every request as it arrived, including those whose sender hung up before the answer.
    pub fn arrivals(&self) -> Vec<Hit> {
        self.state.arrivals.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have been answered.
    pub async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "destination got {} requests, expected {n}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// hookflow running in-process on loopback.
pub struct TestApp {
    pub base: String,
    pub store: Arc<dyn Store>,
    pub tokens: UrlTokens,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
    /// Kept so the store's directory outlives the app.
    dir: tempfile::TempDir,
    engine_task: Option<tokio::task::JoinHandle<()>>,
    serve_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Holds a handle on the store too: awaited before a restart reopens it.
    reload_task: Option<tokio::task::JoinHandle<()>>,
    opts: Opts,
    /// With `HOOKFLOW_TEST_STORE=postgres`: the schema the app's store lives in.
    pg: Option<Arc<crate::pg::Schema>>,
}

/// How a test app is started.
#[derive(Clone)]
pub struct Opts {
    pub config: EngineConfig,
    pub api_token: Option<String>,
    pub smtp: Option<SmtpConfig>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `--egress-allow`; loopback by default, where the tests' receivers listen.
    pub egress_allow: Vec<ipnet::IpNet>,
    pub body_timeout: Duration,
    pub max_in_flight: usize,
    pub listen: hookflow::server::listen::ListenOptions,
    /// `--unsubscribe-mailto`.
    pub unsubscribe_mailto: Option<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            config: fast_engine(),
            api_token: None,
            smtp: None,
            trusted_proxies: Vec::new(),
            egress_allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            body_timeout: Duration::from_secs(30),
            max_in_flight: 1024,
            listen: Default::default(),
            unsubscribe_mailto: None,
        }
    }
}

pub fn fast_engine() -> EngineConfig {
    EngineConfig {
        workers: 8,
        lease: Duration::from_secs(10),
        poll_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(2),
        max_chain_depth: 8,
        retention: Duration::from_secs(3600),
        max_runs: 1_000_000,
        link_retention: hookflow::engine::DEFAULT_LINK_RETENTION,
        templates_dir: None,
        destination_concurrency: 0,
        alerts: Default::default(),
    }
}

/// Writes `flows` (name → YAML) and `templates` into a temp dir and serves them.
pub async fn spawn_app(flows: &[(&str, String)], templates: &[(&str, &str)]) -> TestApp {
    spawn_app_with(flows, templates, fast_engine(), None).await
}

pub async fn spawn_app_with(
    flows: &[(&str, String)],
    templates: &[(&str, &str)],
    config: EngineConfig,
    api_token: Option<&str>,
) -> TestApp {
    let opts = Opts {
        config,
        api_token: api_token.map(str::to_string),
        ..Opts::default()
    };
    spawn_app_opts(flows, templates, opts).await
}

pub async fn spawn_app_opts(flows: &[(&str, String)], templates: &[(&str, &str)], opts: Opts) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let flows_dir = dir.path().join("flows");
    let templates_dir = dir.path().join("templates");
    std::fs::create_dir_all(&flows_dir).unwrap();
    std::fs::create_dir_all(&templates_dir).unwrap();
    for (name, yaml) in flows {
        std::fs::write(flows_dir.join(format!("{name}.yaml")), yaml).unwrap();
    }
    for (name, src) in templates {
        let p = templates_dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, src).unwrap();
    }
    start_in(dir, opts, None).await
}

/// Starts hookflow on the flows, templates and store already in `dir`, wired by the same
/// [`App`] as `hookflow serve`.
///
/// `HOOKFLOW_TEST_STORE=postgres` runs the app on PostgreSQL instead of sled (a schema of its
/// own, kept across restarts): `scripts/test.sh` runs the in-process tests both ways.
async fn start_in(dir: tempfile::TempDir, opts: Opts, pg: Option<Arc<crate::pg::Schema>>) -> TestApp {
    let (set, errors) = load_dir(&dir.path().join("flows"), &dir.path().join("templates"));
    assert!(errors.is_empty(), "test flows do not load: {errors:#?}");
    let pg = match pg {
        Some(s) => Some(s),
        None if std::env::var("HOOKFLOW_TEST_STORE").is_ok_and(|v| v == "postgres") => Some(Arc::new(
            crate::pg::Schema::create()
                .await
                .expect("HOOKFLOW_TEST_STORE=postgres needs PostgreSQL"),
        )),
        None => None,
    };
    let store: Arc<dyn Store> = match &pg {
        Some(schema) => schema.store().await,
        None => Arc::new(SledStore::open(&dir.path().join("store"), Durability::Flush).unwrap()),
    };
    let tokens = UrlTokens::from_secret(SECRET.as_bytes()).unwrap();
    let mailer = opts.smtp.as_ref().map(|c| Mailer::new(c).unwrap());
    let clients = Clients::new(
        mailer,
        hookflow::egress::Policy {
            allow: opts.egress_allow.clone(),
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let config = hookflow::app::Config {
        flows_dir: dir.path().join("flows"),
        templates_dir: dir.path().join("templates"),
        engine: opts.config.clone(),
        limits: hookflow::intake::Limits {
            max_body: 64 * 1024,
            body_timeout: opts.body_timeout,
        },
        max_in_flight: opts.max_in_flight,
        trusted_proxies: opts.trusted_proxies.clone(),
        access: hookflow::server::access::Access {
            token: opts.api_token.as_deref().map(Into::into),
            trusted_proxies: opts.trusted_proxies.clone(),
            own_hosts: Vec::new(),
        },
        max_header_bytes: opts.listen.max_header_bytes,
        listen: "test".into(),
        public_url: format!(
            "{}://{addr}",
            if opts.listen.tls.is_some() {
                "https"
            } else {
                "http"
            }
        ),
        unsubscribe_mailto: opts.unsubscribe_mailto.clone(),
        previous_secrets: Vec::new(),
    };
    let parts = App::new(config, set, Arc::clone(&store), tokens.clone(), clients);
    let shutdown = CancellationToken::new();
    let running = parts.start(&shutdown, true).await;
    let serve_task = tokio::spawn(hookflow::server::listen::serve_with(
        listener,
        app(parts.state.clone()),
        shutdown.clone(),
        opts.listen.clone(),
    ));
    TestApp {
        base: format!(
            "{}://{addr}",
            if opts.listen.tls.is_some() {
                "https"
            } else {
                "http"
            }
        ),
        store,
        tokens,
        shutdown,
        http: reqwest::Client::new(),
        dir,
        engine_task: Some(running.engine),
        serve_task: Some(serve_task),
        reload_task: Some(running.reload),
        opts,
        pg,
    }
}

impl TestApp {
    pub fn hook_url(&self, flow: &str) -> String {
        format!("{}/hooks/{flow}/{}", self.base, self.tokens.token(flow))
    }

    pub async fn post_json(&self, flow: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.hook_url(flow))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Posts and returns the run id from the default 202 answer.
    pub async fn accept(&self, flow: &str, body: serde_json::Value) -> String {
        let resp = self.post_json(flow, body).await;
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
        let v: serde_json::Value = resp.json().await.unwrap();
        v["run_id"].as_str().unwrap().to_string()
    }

    pub async fn all_runs(&self) -> Vec<Run> {
        self.store
            .list_runs(&RunFilter {
                limit: 10_000,
                ..RunFilter::default()
            })
            .await
            .unwrap()
    }

    /// Waits until the run reaches a final state.
    pub async fn finished(&self, id: &str) -> Run {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let run = self.store.get_run(id).await.unwrap().expect("run exists");
            if run.status.is_terminal() {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} still {:?}: {run:#?}",
                run.status
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_status(&self, id: &str, status: RunStatus) -> Run {
        let run = self.finished(id).await;
        assert_eq!(run.status, status, "{run:#?}");
        run
    }

    pub async fn stop(mut self) {
        self.halt().await;
    }

    async fn halt(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.engine_task.take() {
            t.await.unwrap();
        }
        if let Some(t) = self.serve_task.take() {
            t.await.unwrap().unwrap();
        }
        if let Some(t) = self.reload_task.take() {
            t.await.unwrap();
        }
    }

    /// Stops gracefully and starts again on the same flows and store (a restart).
    /// The directory holding `flows/`, `templates/` and the store.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub async fn restart(self) -> TestApp {
        self.restart_after(Duration::ZERO).await
    }

    /// Stops, stays down for `pause`, and starts again.
    pub async fn restart_after(mut self, pause: Duration) -> TestApp {
        self.halt().await;
        tokio::time::sleep(pause).await;
        let TestApp {
            store, dir, opts, pg, ..
        } = self;
        // The store's lock on its directory goes with its last handle.
        drop(store);
        start_in(dir, opts, pg).await
    }

    /// `GET` on the app's API, as JSON.
    pub async fn api(&self, path: &str) -> serde_json::Value {
        get(&self.http, format!("{}{path}", self.base)).await
    }
}

/// The real binary, ready to `serve` the flows and templates in these directories with its
/// store in `data` on a free loopback port: the test secret, loopback egress allowed, output
/// discarded. Callers add their own arguments and environment, then spawn. Also returns the
/// server's base URL.
pub fn serve_command(
    flows: &std::path::Path,
    templates: &std::path::Path,
    data: &std::path::Path,
) -> (std::process::Command, String) {
    serve_command_of(env!("CARGO_BIN_EXE_hookflow").as_ref(), flows, templates, data)
}

/// [`serve_command`] with another build of the binary (the release build's smoke tests).
pub fn serve_command_of(
    bin: &std::path::Path,
    flows: &std::path::Path,
    templates: &std::path::Path,
    data: &std::path::Path,
) -> (std::process::Command, String) {
    let port = free_port();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--flows", flows.to_str().unwrap()])
        .args(["--templates", templates.to_str().unwrap()])
        .args(["--data", data.to_str().unwrap()])
        .env("HOOKFLOW_SECRET", SECRET)
        .env("HOOKFLOW_EGRESS_ALLOW", "127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    (cmd, format!("http://127.0.0.1:{port}"))
}

/// A port that was free a moment ago, for starting the real binary on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until a started binary answers `/healthz`.
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "hookflow did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn get(http: &reqwest::Client, url: String) -> serde_json::Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The real binary serving `flows` (name → YAML) from a temp dir, with extra arguments and
/// environment; killed when dropped. Its stderr (the log) is kept in `log_path()`.
pub struct Binary {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub tokens: UrlTokens,
    child: std::process::Child,
}

impl Binary {
    pub async fn start(flows: &[(&str, &str)], args: &[&str], env: &[(&str, &str)]) -> Binary {
        let dir = tempfile::tempdir().unwrap();
        let flows_dir = dir.path().join("flows");
        std::fs::create_dir_all(&flows_dir).unwrap();
        for (name, yaml) in flows {
            std::fs::write(flows_dir.join(format!("{name}.yaml")), yaml).unwrap();
        }
        Binary::start_in(dir, args, env).await
    }

    /// Starts on the flows and data already in `dir`. Ready means *this* process logged that it
    /// serves: a port from [`free_port`] can be taken by another test's server between the
    /// probe and the bind (the store opens first), and that server would answer `/healthz` in
    /// its place. A start that lost its port is started again on another.
    pub async fn start_in(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Binary {
        let mut dir = dir;
        for _ in 0..3 {
            let serving = |dir: &tempfile::TempDir| {
                std::fs::read_to_string(dir.path().join("log"))
                    .unwrap_or_default()
                    .matches("hookflow serving")
                    .count()
            };
            let before = serving(&dir);
            let (mut cmd, base) = serve_command(
                &dir.path().join("flows"),
                &dir.path().join("templates"),
                &dir.path().join("data"),
            );
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.path().join("log"))
                .unwrap();
            cmd.args(args).stderr(log);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().unwrap();
            let mut b = Binary {
                base,
                dir,
                tokens: UrlTokens::from_secret(SECRET.as_bytes()).unwrap(),
                child,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while serving(&b.dir) == before && b.child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "hookflow did not start: {}", b.log());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if serving(&b.dir) > before {
                wait_ready(&reqwest::Client::new(), &b.base).await;
                return b;
            }
            // It exited before serving: the port was taken, or it cannot start at all.
            let log = b.log();
            assert!(log.contains("cannot listen on"), "hookflow exited: {log}");
            dir = b.kill9();
        }
        panic!("hookflow found no free port in three tries");
    }

    /// `kill -9`, keeping the directory for [`Binary::start_in`].
    pub fn kill9(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn hook_url(&self, flow: &str) -> String {
        format!("{}/hooks/{flow}/{}", self.base, self.tokens.token(flow))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the server process so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> u64 {
        self.proc_status("VmHWM:")
    }

    /// Resident memory of the server process now, in bytes.
    pub fn rss(&self) -> u64 {
        self.proc_status("VmRSS:")
    }

    fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    /// Bytes under the data directory.
    pub fn data_bytes(&self) -> u64 {
        fn walk(p: &std::path::Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| match e.metadata() {
                            Ok(m) if m.is_dir() => walk(&e.path()),
                            Ok(m) => std::os::unix::fs::MetadataExt::blocks(&m) * 512,
                            Err(_) => 0,
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.dir.path().join("data"))
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary's clock, moved by writing an offset into a file it follows.
pub struct TestClock {
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    offset: u64,
}

impl TestClock {
    pub fn new() -> TestClock {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("offset");
        std::fs::write(&file, "0").unwrap();
        TestClock {
            file,
            _dir: dir,
            offset: 0,
        }
    }
    pub fn env(&self) -> (&'static str, String) {
        ("HOOKFLOW_TEST_CLOCK_OFFSET_FILE", self.file.display().to_string())
    }
    pub fn advance(&mut self, ms: u64) {
        self.offset += ms;
        std::fs::write(&self.file, self.offset.to_string()).unwrap();
    }
}

/// `GET /api/flows/{flow}` once its counter `key` reads `want`: counters are written once a
/// second (see `intake::counters`), so a test waits for them as for any background write.
pub async fn flow_with_counter(
    http: &reqwest::Client,
    base: &str,
    flow: &str,
    key: &str,
    want: u64,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = get(http, format!("{base}/api/flows/{flow}")).await;
        if f["counters"][key] == want {
            return f;
        }
        assert!(
            Instant::now() < deadline,
            "counter {key} of {flow} never read {want}: {f}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of `GET {base}/metrics`.
pub async fn metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `GET {base}/api/runs/{id}` once `what` holds of it (up to 30 s): for tests against the real
/// binary, where the engine's queue cannot be drained from the test.
pub async fn wait_run(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    what: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = get(http, format!("{base}/api/runs/{id}")).await;
        if what(&run) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {id}: {run:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens the store in `dir`, waiting out the file lock a dropped store's flusher thread lets
/// go of a moment later.
pub async fn open_sled(dir: &std::path::Path) -> hookflow::store::SledStore {
    for _ in 0..50 {
        match hookflow::store::SledStore::open(dir, hookflow::store::Durability::Flush) {
            Err(e) if e.to_string().contains("another process holds it") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => return other.unwrap(),
        }
    }
    panic!("the store stayed locked");
}
