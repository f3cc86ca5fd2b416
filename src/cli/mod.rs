//! The `hookflow` command line. Exit codes: 0 success, 1 failure (invalid flows, a command that
//! could not do its job), 2 usage errors (from clap).

use std::process::ExitCode;
use std::sync::Arc;

mod dryrun;
mod fixtures;
mod format;
mod segments;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::action::Clients;
use crate::action::breaker::Guards;
use crate::action::email::Mailer;
use crate::engine::Engine;
use crate::flow::{LoadError, load_dir};
use crate::run::Run;
use crate::server::api::RunSummary;
use crate::server::listen::{ListenOptions, serve_with};
use crate::server::{AppState, app};
use crate::settings::{ClientArgs, Paths, Secret, ServeArgs, UrlArgs};
use crate::store::{SledStore, Store};
use crate::token::UrlTokens;

#[derive(Debug, Parser)]
#[command(
    name = "hookflow",
    version,
    about = "Webhook workflows from YAML files: receive, verify, map, act — durably."
)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "HOOKFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the flows' webhooks and run their actions.
    Serve(Box<ServeArgs>),
    /// Check flow files and templates; prints `file:line: problem` for each and exits 1 if any.
    Validate {
        /// Flows directory (default: --flows / HOOKFLOW_FLOWS).
        dir: Option<std::path::PathBuf>,
        /// Also run the flow tests in `<flow>.tests/*.json` beside the flows.
        #[arg(long)]
        run_tests: bool,
        #[command(flatten)]
        paths: Paths,
    },
    /// Dry-run a flow against a sample request: conditions, vars and every action as it would
    /// be sent, with no side effects. Exit 0 matched, 1 not matched, 2 error.
    Test(dryrun::TestArgs),
    /// Print the JSON Schema of the flow file format (for editors: see README).
    Schema,
    /// Print a stored run as a flow test (`hookflow capture ID > flows/<flow>.tests/x.json`),
    /// or with `--requests FLOW --out DIR` write the flow's recent requests (from the server's
    /// request log, matched or not) as flow tests.
    Capture {
        /// A run id.
        id: Option<String>,
        /// Capture this flow's recent requests instead.
        #[arg(long, conflicts_with = "id", requires = "out")]
        requests: Option<String>,
        /// Where to write the captured requests (e.g. flows/orders.tests).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// How many recent requests.
        #[arg(long, default_value_t = 10)]
        last: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print each flow's webhook URL.
    Urls {
        #[command(flatten)]
        paths: Paths,
        #[command(flatten)]
        urls: UrlArgs,
    },
    /// Inspect runs (through the running server's API, or the store when no server runs).
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Inspect segments (the contact lists hookflow keeps).
    Segments {
        #[command(subcommand)]
        command: segments::SegmentsCommand,
    },
    /// A local request bin: prints every request it receives and answers it, so an action can
    /// be pointed at it while developing a flow.
    Bin {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
        /// Status to answer with.
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        #[arg(long)]
        flow: Option<String>,
        /// queued, running, retrying, succeeded or failed (the dead letters).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only runs created this long ago or later, e.g. `2h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Only runs whose request or vars contain this text (case-insensitive).
        #[arg(long)]
        search: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replay a finished run (through the running server) as a new run under the current flow.
    Replay {
        id: String,
        /// `start`, or `failed` to keep the actions that succeeded and start at the failed one.
        #[arg(long, value_enum, default_value_t = crate::replay::From::Start)]
        from: crate::replay::From,
        /// `current` flow, or the `original` version the run was accepted under.
        #[arg(long = "flow-version", value_enum, default_value_t = crate::replay::Version::Current)]
        version: crate::replay::Version,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replay every failed run of a flow created in a time range (see `--dry-run` first).
    ReplayFailed {
        #[arg(long)]
        flow: String,
        /// Only runs created this long ago or later, e.g. `2h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        #[arg(long, value_enum, default_value_t = crate::replay::From::Failed)]
        from: crate::replay::From,
        /// Count what would be replayed; replay nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one run with every attempt.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOKFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve_cmd(*args).await,
        Command::Validate {
            dir,
            run_tests,
            paths,
        } => Ok(validate_cmd(
            dir.as_deref().unwrap_or(&paths.flows_dir),
            &paths,
            run_tests,
        )),
        Command::Capture {
            id,
            requests,
            out,
            last,
            client,
        } => match (id, requests, out) {
            (Some(id), None, _) => capture_cmd(&id, &client).await,
            (None, Some(flow), Some(out)) => capture_requests_cmd(&flow, &out, last, &client).await,
            _ => bail!("give a run id, or --requests FLOW --out DIR"),
        },
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&crate::flow::schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Urls { paths, urls } => urls_cmd(&paths, &urls),
        Command::Test(args) => dryrun::test_cmd(args),
        Command::Runs { command } => runs_cmd(command).await,
        Command::Segments { command } => segments::segments_cmd(command).await,
        Command::Bin { listen, status } => crate::requestbin::run(listen, status)
            .await
            .map(|_| ExitCode::SUCCESS),
    }
}

fn print_errors(errors: &[LoadError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

fn validate_cmd(dir: &std::path::Path, paths: &Paths, run_tests: bool) -> ExitCode {
    let (set, errors) = load_dir(dir, &paths.templates_dir);
    if errors.is_empty() {
        println!("{} flow(s) OK in {}", set.flows.len(), dir.display());
        if run_tests && fixtures::run_all(&set, dir) > 0 {
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    } else {
        print_errors(&errors);
        eprintln!("{} problem(s); {} flow(s) valid", errors.len(), set.flows.len());
        ExitCode::FAILURE
    }
}

fn urls_cmd(paths: &Paths, urls: &UrlArgs) -> Result<ExitCode> {
    let (set, errors) = load_dir(&paths.flows_dir, &paths.templates_dir);
    print_errors(&errors);
    let tokens = UrlTokens::load_or_create(&paths.data_dir, urls.secret.as_ref().map(Secret::expose))?;
    let base = urls.base_url();
    let width = set.flows.keys().map(String::len).max().unwrap_or(0);
    for name in set.flows.keys() {
        println!("{name:width$}  {base}/hooks/{name}/{}", tokens.token(name));
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn serve_cmd(args: ServeArgs) -> Result<ExitCode> {
    let (set, errors) = load_dir(&args.paths.flows_dir, &args.paths.templates_dir);
    for e in &errors {
        tracing::error!(problem = %e, "flow not loaded");
    }
    let flows = crate::reload::Flows::new(set);
    let tokens = UrlTokens::load_or_create(
        &args.paths.data_dir,
        args.urls.secret.as_ref().map(Secret::expose),
    )?;
    if !args.urls.listen.ip().is_loopback() && args.api_token.is_none() {
        bail!(
            "refusing to listen on {} without an API token: the runs and segments API would be reachable from the network. Set HOOKFLOW_API_TOKEN (or --api-token), or listen on 127.0.0.1 behind a proxy",
            args.urls.listen
        );
    }
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&args.store_dir(), args.durability)?);
    let mailer = match args.smtp.config() {
        Some(cfg) => Some(Mailer::new(&cfg).map_err(|e| anyhow::anyhow!(e))?),
        None => None,
    };
    if mailer.is_none() {
        for f in flows.load().flows.values() {
            if f.actions
                .iter()
                .any(|a| matches!(a.kind, crate::action::ActionKind::Email(_)))
            {
                tracing::warn!(flow = %f.name, "flow sends email but no SMTP server is configured (--smtp-host); its email actions will fail");
            }
        }
    }
    let guards = Arc::new(Guards::default());
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let engine = Arc::new(Engine::new(
        Arc::clone(&store),
        Arc::clone(&flows),
        args.engine_config(),
        Clients::new(
            mailer,
            crate::egress::Policy {
                allow: args.egress_allow.clone(),
            },
        )?,
        Arc::clone(&guards),
        Arc::clone(&metrics),
    ));
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            Some(crate::server::listen::tls_config(c, k).map_err(|e| anyhow::anyhow!("TLS: {e}"))?)
        }
        _ => None,
    };
    let listen_opts = ListenOptions {
        header_timeout: args.header_timeout,
        max_header_bytes: args.max_header_bytes,
        tls,
    };
    let listener = tokio::net::TcpListener::bind(args.urls.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.urls.listen))?;
    // URL tokens are credentials: logs name the flows, `hookflow urls` prints the URLs.
    for name in flows.load().flows.keys() {
        tracing::info!(flow = %name, "flow loaded (see `hookflow urls` for its webhook URL)");
    }
    tracing::info!(listen = %args.urls.listen, flows = flows.load().flows.len(), durability = ?args.durability, "hookflow serving");

    let state = AppState {
        flows: Arc::clone(&flows),
        store: Arc::clone(&store),
        tokens,
        wake: engine.waker(),
        events_wake: engine.events_waker(),
        guards,
        metrics: Arc::clone(&metrics),
        requests: Default::default(),
        templates_dir: args.paths.templates_dir.clone(),
        max_body: args.max_body,
        trusted_proxies: args.trusted_proxies.clone(),
        body_timeout: args.body_timeout,
        max_header_bytes: args.max_header_bytes,
        in_flight: Arc::new(tokio::sync::Semaphore::new(args.max_in_flight.max(1))),
        api_token: args.api_token.clone(),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    flows.persist_sources(store.as_ref()).await;
    let reloader = Arc::new(crate::reload::Reloader {
        flows: Arc::clone(&flows),
        store: Arc::clone(&store),
        flows_dir: args.paths.flows_dir.clone(),
        templates_dir: args.paths.templates_dir.clone(),
        metrics: Arc::clone(&metrics),
    });
    tokio::spawn(Arc::clone(&reloader).watch(shutdown.clone()));
    let engine_task = if args.workers == 0 {
        tracing::warn!("accept-only: --workers 0 stores runs without executing them");
        tokio::spawn(async {})
    } else {
        tokio::spawn(Arc::clone(&engine).run(shutdown.clone()))
    };
    serve_with(listener, app(state), shutdown.clone(), listen_opts).await?;
    shutdown.cancel();
    engine_task.await?;
    drop(engine);
    store.sync().await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn watch_signals(shutdown: tokio_util::sync::CancellationToken) {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down: no new requests, finishing in-flight attempts");
    shutdown.cancel();
}

/// Reads runs from the server's API, or from the store directly when nothing listens.
pub(crate) enum Source {
    Api {
        client: reqwest::Client,
        base: String,
        token: Option<String>,
    },
    Store(SledStore),
}

impl Source {
    pub(crate) async fn connect(args: &ClientArgs) -> Result<Source> {
        let client = reqwest::Client::new();
        let base = args.base_url();
        match client.get(format!("{base}/healthz")).send().await {
            Ok(_) => Ok(Source::Api {
                client,
                base,
                token: args.api_token.as_ref().map(|t| t.expose().to_string()),
            }),
            Err(e) if e.is_connect() => {
                let dir = args.data_dir.join("store");
                if !dir.exists() {
                    bail!(
                        "no server answers at {base} and there is no store at {}",
                        dir.display()
                    );
                }
                let store = SledStore::open(&dir, Default::default()).with_context(|| {
                    format!("no server answers at {base}, and the store could not be opened")
                })?;
                Ok(Source::Store(store))
            }
            Err(e) => Err(e).with_context(|| format!("cannot reach {base}")),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Result<serde_json::Value> {
        let Source::Api { client, base, token } = self else {
            unreachable!("only called for the API")
        };
        let mut req = client.get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).context("the server's answer is not JSON")?;
        if !status.is_success() {
            bail!(
                "{}: {}",
                status,
                body.get("detail").and_then(|d| d.as_str()).unwrap_or("error")
            );
        }
        Ok(body)
    }
}

async fn capture_requests_cmd(
    flow: &str,
    out: &std::path::Path,
    last: usize,
    client: &ClientArgs,
) -> Result<ExitCode> {
    let source = Source::connect(client).await?;
    if matches!(source, Source::Store(_)) {
        bail!("the request log lives in the running server; none answers");
    }
    let log = source
        .get(&format!("/api/flows/{flow}/requests?limit={last}"))
        .await?;
    std::fs::create_dir_all(out)?;
    let mut written = 0;
    for entry in log["requests"].as_array().into_iter().flatten() {
        let Some(fx) = fixtures::from_logged(entry) else {
            continue;
        };
        let stamp = entry["at"].as_str().unwrap_or("request").replace([':', '.'], "-");
        let path = out.join(format!("{stamp}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&fx)?)?;
        println!("{}", path.display());
        written += 1;
    }
    eprintln!(
        "{written} request(s) of {flow} written (refused ones and ones without a kept body are skipped)"
    );
    Ok(ExitCode::SUCCESS)
}

async fn capture_cmd(id: &str, client: &ClientArgs) -> Result<ExitCode> {
    let source = Source::connect(client).await?;
    let run: Run = match &source {
        Source::Api { .. } => serde_json::from_value(source.get(&format!("/api/runs/{id}")).await?)?,
        Source::Store(store) => store.get_run(id).await?.with_context(|| format!("no run {id}"))?,
    };
    println!("{}", serde_json::to_string_pretty(&fixtures::from_run(&run))?);
    eprintln!("(save it as flows/{}.tests/<name>.json)", run.flow);
    Ok(ExitCode::SUCCESS)
}

/// POSTs to the running server's API (replays need the server: it knows the loaded flows).
async fn post_api(args: &ClientArgs, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
    let base = args.base_url();
    let mut req = reqwest::Client::new().post(format!("{base}{path}")).json(body);
    if let Some(t) = &args.api_token {
        req = req.bearer_auth(t.expose());
    }
    let resp = req.send().await.with_context(|| {
        format!("no hookflow server answers at {base}; replays go through a running server")
    })?;
    let status = resp.status();
    let answer: serde_json::Value = resp.json().await.context("the server's answer is not JSON")?;
    if !status.is_success() {
        bail!("{status}: {}", answer["detail"].as_str().unwrap_or("error"));
    }
    Ok(answer)
}

async fn runs_cmd(cmd: RunsCommand) -> Result<ExitCode> {
    match cmd {
        RunsCommand::List {
            flow,
            status,
            limit,
            since,
            search,
            json,
            client,
        } => {
            let since_ts =
                since.map(|d| crate::run::Ts(crate::run::Ts::now().0.saturating_sub(d.as_millis() as u64)));
            let source = Source::connect(&client).await?;
            let runs: Vec<RunSummary> = match &source {
                Source::Api { .. } => {
                    let mut q = vec![("limit", limit.to_string())];
                    if let Some(f) = &flow {
                        q.push(("flow", f.clone()));
                    }
                    if let Some(s) = &status {
                        q.push(("status", s.clone()));
                    }
                    if let Some(t) = since_ts {
                        q.push(("since", t.to_string()));
                    }
                    if let Some(t) = &search {
                        q.push(("q", t.clone()));
                    }
                    let qs = serde_urlencoded::to_string(&q)?;
                    let body = source.get(&format!("/api/runs?{qs}")).await?;
                    serde_json::from_value(body["runs"].clone())?
                }
                Source::Store(store) => {
                    let status = match &status {
                        Some(s) => Some(
                            crate::run::RunStatus::parse(s)
                                .with_context(|| format!("unknown status `{s}`"))?,
                        ),
                        None => None,
                    };
                    let filter = crate::store::RunFilter {
                        flow,
                        status,
                        before: None,
                        limit,
                        since: since_ts,
                        until: None,
                        text: search.clone(),
                    };
                    store
                        .list_runs(&filter)
                        .await?
                        .iter()
                        .map(RunSummary::from)
                        .collect()
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                print!("{}", format::runs_table(&runs));
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Replay {
            id,
            from,
            version,
            client,
        } => {
            let body = serde_json::json!({ "from": from, "version": version });
            let answer = post_api(&client, &format!("/api/runs/{id}/replay"), &body).await?;
            println!("replayed {id} as {}", answer["run_id"].as_str().unwrap_or("?"));
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::ReplayFailed {
            flow,
            since,
            from,
            dry_run,
            client,
        } => {
            let since = since.map(|d| crate::run::Ts::now().0.saturating_sub(d.as_millis() as u64));
            let body = serde_json::json!({
                "from": from,
                "dry_run": dry_run,
                "since": since.map(crate::run::Ts),
            });
            let answer = post_api(&client, &format!("/api/flows/{flow}/replay-failed"), &body).await?;
            let matched = answer["matched"].as_u64().unwrap_or(0);
            if dry_run {
                println!("{matched} failed run(s) of {flow} would be replayed");
            } else {
                for r in answer["replayed"].as_array().into_iter().flatten() {
                    println!(
                        "{} → {}",
                        r["replay_of"].as_str().unwrap_or("?"),
                        r["run_id"].as_str().unwrap_or("?")
                    );
                }
                for e in answer["errors"].as_array().into_iter().flatten() {
                    eprintln!(
                        "{}: {}",
                        e["run_id"].as_str().unwrap_or("?"),
                        e["error"].as_str().unwrap_or("?")
                    );
                }
                let n = answer["replayed"].as_array().map_or(0, Vec::len);
                println!("replayed {n} of {matched} failed run(s) of {flow}");
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { id, json, client } => {
            let source = Source::connect(&client).await?;
            let run: Run = match &source {
                Source::Api { .. } => serde_json::from_value(source.get(&format!("/api/runs/{id}")).await?)?,
                Source::Store(store) => store
                    .get_run(&id)
                    .await?
                    .with_context(|| format!("no run {id}"))?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                print!("{}", format::run_detail(&run));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
