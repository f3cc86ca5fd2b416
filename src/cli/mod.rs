//! The `hookflow` command line. Exit codes: 0 success, 1 failure (invalid flows, a command that
//! could not do its job), 2 usage errors (from clap).

use std::process::ExitCode;
use std::sync::Arc;

mod dryrun;
mod fixtures;
mod format;
mod runs;
mod segments;
mod send;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::action::Clients;
use crate::action::breaker::Guards;
use crate::action::email::Mailer;
use crate::engine::Engine;
use crate::flow::{LoadError, load_dir};
use crate::server::listen::{ListenOptions, serve_with};
use crate::server::{AppState, app};
use crate::settings::{ClientArgs, Paths, Secret, ServeArgs, UrlArgs};
use crate::store::{SledStore, Store};

use crate::token::UrlTokens;
pub use runs::RunsCommand;
use runs::{Source, capture_cmd, capture_requests_cmd, runs_cmd};

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
    /// Permission bits left out of everything hookflow creates (octal), added to the process
    /// umask: by default the data directory is 0700 and its files 0600. `027` lets the owner's
    /// group read (e.g. a backup group).
    #[arg(long, env = "HOOKFLOW_UMASK", default_value = "077", value_parser = parse_octal, global = true)]
    pub umask: u32,
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
    /// Send a test delivery to a flow's webhook on the running server, signed the way the
    /// flow's sender signs (secret from the variable its `verify` names). Exit 0 for a 2xx.
    Send(send::SendArgs),
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

fn parse_octal(s: &str) -> std::result::Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal permission mask such as 077"))
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
        Command::Send(args) => send::send_cmd(args).await,
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
    for warning in crate::private::exposure(&args.paths.data_dir) {
        tracing::warn!("{warning}");
    }
    let (set, errors) = load_dir(&args.paths.flows_dir, &args.paths.templates_dir);
    for e in &errors {
        tracing::error!(problem = %e, "flow not loaded");
    }
    let flows = crate::reload::Flows::new(set);
    let tokens = UrlTokens::load_or_create(
        &args.paths.data_dir,
        args.urls.secret.as_ref().map(Secret::expose),
    )?;
    check_exposure(&args)?;
    let store: Arc<dyn Store> = Arc::new(SledStore::open_with(
        &args.store_dir(),
        args.durability,
        args.store_cache.as_u64(),
    )?);
    let mailer = match args.smtp.config() {
        Some(cfg) => Some(Mailer::new(&cfg).map_err(|e| anyhow::anyhow!(e))?),
        None => None,
    };
    for f in flows.load().flows.values() {
        if let Some(v) = f.webhook().and_then(|w| w.verify.as_ref())
            && !v
                .secret_env
                .iter()
                .any(|n| std::env::var(n).is_ok_and(|s| !s.is_empty()))
        {
            tracing::warn!(flow = %f.name, secret_env = %v.secret_env.join(", "), "flow verifies signatures but its secret is not set in the environment: every request to it will be refused (401)");
        }
    }
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
        )?
        .with_limits(crate::action::ReadLimits {
            max_response: usize::try_from(args.max_response.as_u64()).unwrap_or(usize::MAX),
        }),
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
    let admin_listener = match args.admin_listen {
        None => None,
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--admin-listen)"))?,
        ),
    };
    // URL tokens are credentials: logs name the flows, `hookflow urls` prints the URLs.
    for name in flows.load().flows.keys() {
        tracing::info!(flow = %name, "flow loaded (see `hookflow urls` for its webhook URL)");
    }
    tracing::info!(listen = %args.urls.listen, admin = ?args.admin_listen, flows = flows.load().flows.len(), durability = ?args.durability, "hookflow serving");

    let intake = crate::intake::Intake {
        flows: Arc::clone(&flows),
        store: Arc::clone(&store),
        tokens,
        wake: engine.waker(),
        metrics: Arc::clone(&metrics),
        requests: Default::default(),
        limits: crate::intake::Limits {
            max_body: args.max_body,
            body_timeout: args.body_timeout,
        },
        in_flight: Arc::new(tokio::sync::Semaphore::new(args.max_in_flight.max(1))),
        trusted_proxies: args.trusted_proxies.clone(),
    };
    let state = AppState {
        intake: Arc::new(intake),
        events_wake: engine.events_waker(),
        guards,
        templates_dir: args.paths.templates_dir.clone(),
        max_header_bytes: args.max_header_bytes,
        access: Arc::new(access_rule(&args)),
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
    match admin_listener {
        None => serve_with(listener, app(state), shutdown.clone(), listen_opts).await?,
        Some(admin) => {
            let admin_opts = ListenOptions {
                tls: None,
                ..listen_opts.clone()
            };
            let (a, b) = tokio::join!(
                serve_with(
                    listener,
                    crate::server::hooks_app(state.clone()),
                    shutdown.clone(),
                    listen_opts
                ),
                serve_with(
                    admin,
                    crate::server::admin_app(state),
                    shutdown.clone(),
                    admin_opts
                ),
            );
            a?;
            b?;
        }
    }
    shutdown.cancel();
    engine_task.await?;
    drop(engine);
    store.sync().await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Refuses setups that would put the API on the network without a token, and warns about
/// setups where it could end up there (a reverse proxy on this host that forwards to the
/// webhook listener without saying whom for makes every internet client look local).
fn check_exposure(args: &ServeArgs) -> Result<()> {
    let tokenless = args.api_token.is_none();
    let api_addr = args.admin_listen.unwrap_or(args.urls.listen);
    if tokenless && !api_addr.ip().is_loopback() {
        bail!(
            "refusing to serve the API on {api_addr} without an API token: run history, replays and every segment's addresses would be reachable from the network. Set HOOKFLOW_API_TOKEN (or --api-token), or keep the API on a loopback address with --admin-listen 127.0.0.1:8081"
        );
    }
    let public_host = args
        .urls
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string));
    let public = public_host.as_deref().is_some_and(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h != "localhost" && !h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    if tokenless && args.admin_listen.is_none() && (public || !args.trusted_proxies.is_empty()) {
        tracing::warn!(
            "the API and dashboard share the webhook listener and have no token: behind a reverse proxy on this host that does not add X-Forwarded-For, every internet client looks local. Set HOOKFLOW_API_TOKEN, or serve them on --admin-listen 127.0.0.1:8081 and point the proxy at --listen only"
        );
    }
    Ok(())
}

/// The API's access rule for these settings: the token, the proxies, and the names this
/// server answers to (its listen addresses and public URL).
fn access_rule(args: &ServeArgs) -> crate::server::access::Access {
    let mut own_hosts: Vec<String> = [Some(args.urls.listen), args.admin_listen]
        .into_iter()
        .flatten()
        .filter(|a| !a.ip().is_unspecified())
        .map(|a| a.ip().to_string())
        .collect();
    if let Some(h) = args
        .urls
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| {
            u.host_str().map(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            })
        })
    {
        own_hosts.push(h);
    }
    crate::server::access::Access {
        token: args.api_token.clone(),
        trusted_proxies: args.trusted_proxies.clone(),
        own_hosts,
    }
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
