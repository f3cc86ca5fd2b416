//! `hookflow serve`: settings turned into each part's config, the [app](crate::app) wired and
//! started, the listeners bound, and a clean stop on SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::action::email::Mailer;
use crate::action::{Clients, ReadLimits};
use crate::app::{App, Config};
use crate::flow::{FlowSet, load_dir, load_dir_or_last_good};
use crate::server::listen::{ListenOptions, serve_with};
use crate::server::{admin_app, app, hooks_app};
use crate::settings::ServeArgs;
use crate::store::{Backend, Store};

pub(super) async fn serve_cmd(args: ServeArgs) -> Result<ExitCode> {
    if let Some(file) = &args.test_clock_offset_file {
        tracing::warn!(file = %file.display(), "the clock follows a test offset file: for drills only");
        crate::time::follow_offset_file(file.clone());
    }
    crate::time::watch_steps();
    for warning in crate::private::exposure(&args.paths.data_dir) {
        tracing::warn!("{warning}");
    }
    check_exposure(&args)?;
    // Settings files are read before anything is opened or bound: a mistake stops here.
    let alert_defaults = match &args.alert_defaults {
        Some(path) => alert_defaults(path)?,
        None => crate::alert::Rules::default(),
    };
    let store = match open_store(&args).await {
        Ok(s) => s,
        Err(e) if matches!(e.downcast_ref(), Some(crate::store::StoreError::Full(_))) => {
            // A temporary failure (EX_TEMPFAIL): a supervisor starts it again until there is room.
            eprintln!("error: {e}");
            return Ok(ExitCode::from(crate::store::EXIT_STORE_FAILED as u8));
        }
        Err(e) => return Err(e),
    };
    let (set, errors) = load_flows(&args, store.as_ref()).await;
    for e in &errors {
        tracing::error!(problem = %e, "problem in a flow file");
    }
    let (tokens, _) = super::url_tokens(
        &args.paths,
        &args.urls,
        &args.store,
        Some(store.as_ref()),
        super::SecretFile::Create,
    )
    .await?;
    let clients = clients(&args)?;
    let listen_opts = listen_options(&args)?;
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
    for name in set.flows.keys() {
        tracing::info!(flow = %name, "flow loaded (see `hookflow urls` for its webhook URL)");
    }
    tracing::info!(listen = %args.urls.listen, admin = args.admin_listen.as_ref().map(tracing::field::display), flows = set.flows.len(), store = %store.describe(), "hookflow serving");

    let app_parts = App::new(
        app_config(&args, alert_defaults),
        set,
        Arc::clone(&store),
        tokens,
        clients,
    );
    app_parts
        .flows
        .note_start_problems(errors.iter().map(ToString::to_string).collect());
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    if args.workers == 0 {
        tracing::warn!("accept-only: --workers 0 stores runs without executing them");
    }
    let running = app_parts.start(&shutdown, args.workers > 0).await;
    let state = app_parts.state.clone();
    match admin_listener {
        None => serve_with(listener, app(state), shutdown.clone(), listen_opts).await?,
        Some(admin) => {
            let admin_opts = ListenOptions {
                tls: None,
                ..listen_opts.clone()
            };
            let (a, b) = tokio::join!(
                serve_with(listener, hooks_app(state.clone()), shutdown.clone(), listen_opts),
                serve_with(admin, admin_app(state), shutdown.clone(), admin_opts),
            );
            a?;
            b?;
        }
    }
    shutdown.cancel();
    running.engine.await?;
    drop(app_parts);
    store.sync().await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The outgoing clients: SMTP (when configured) and HTTP, with the egress policy and the
/// limit on what is read from a partner.
fn clients(args: &ServeArgs) -> Result<Clients> {
    let mailer = match args.smtp.config() {
        Some(cfg) => Some(Mailer::new(&cfg).map_err(|e| anyhow::anyhow!(e))?),
        None => None,
    };
    let policy = crate::egress::Policy {
        allow: args.egress_allow.clone(),
    };
    Ok(Clients::new(mailer, policy)?.with_limits(ReadLimits {
        max_response: usize::try_from(args.max_response.as_u64()).unwrap_or(usize::MAX),
    }))
}

/// How the listeners read requests, with TLS when a certificate and key are given.
fn listen_options(args: &ServeArgs) -> Result<ListenOptions> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            Some(crate::server::listen::tls_config(c, k).map_err(|e| anyhow::anyhow!("TLS: {e}"))?)
        }
        _ => None,
    };
    Ok(ListenOptions {
        header_timeout: args.header_timeout,
        max_header_bytes: args.max_header_bytes,
        max_connections: args.max_connections,
        tls,
    })
}

/// The application's settings, each part's own (see `app.rs`).
fn app_config(args: &ServeArgs, alert_defaults: crate::alert::Rules) -> Config {
    let mut engine = args.engine_config();
    engine.alerts.defaults = alert_defaults;
    Config {
        flows_dir: args.paths.flows_dir.clone(),
        templates_dir: args.paths.templates_dir.clone(),
        engine,
        limits: crate::intake::Limits {
            max_body: args.max_body,
            body_timeout: args.body_timeout,
        },
        max_in_flight: args.max_in_flight,
        trusted_proxies: args.trusted_proxies.clone(),
        access: access_rule(args),
        max_header_bytes: args.max_header_bytes,
        listen: args.urls.base_url(),
        public_url: args.urls.base_url(),
        unsubscribe_mailto: args.smtp.unsubscribe_mailto.clone(),
        previous_secrets: args.previous_secrets.clone(),
    }
}

/// The store the settings name: PostgreSQL for `--store postgres://…`, else the embedded one.
pub(crate) async fn open_store(args: &ServeArgs) -> Result<Arc<dyn Store>> {
    let backend = match args.store.postgres_url().map_err(|e| anyhow::anyhow!(e))? {
        Some(url) => Backend::Postgres {
            url,
            settings: &args.store.pg_settings(),
        },
        None => Backend::Sled {
            dir: &args.store_dir(),
            durability: args.durability,
            cache_bytes: args.store_cache.as_u64(),
            compress_new: args.store_compression,
            park_after: args.park_after,
        },
    };
    Ok(crate::store::open(backend).await?)
}

/// The flows at start. A file with problems whose flow loaded cleanly before (its last good
/// version is in the store) is served from that version, marked stale, exactly as a refused
/// hot reload keeps the previous flows serving: a restart must not drop a flow, and 404 its
/// URL, over an edit that a reload would have refused. A flow never seen good is not served.
async fn load_flows(args: &ServeArgs, store: &dyn Store) -> (FlowSet, Vec<crate::flow::LoadError>) {
    let (flows_dir, templates_dir) = (&args.paths.flows_dir, &args.paths.templates_dir);
    let (set, errors) = load_dir(flows_dir, templates_dir);
    let mut last_good = std::collections::BTreeMap::new();
    let broken: std::collections::BTreeSet<&std::path::Path> =
        errors.iter().map(|e| e.file.as_path()).collect();
    for file in broken {
        let Ok(source) = std::fs::read_to_string(file) else {
            continue;
        };
        let name = crate::flow::flow_name(file, &crate::template::strip_bom(source));
        if set.flows.contains_key(&name) {
            continue;
        }
        let good = match store.last_good(&name).await {
            Ok(Some(version)) => store.flow_source(&name, &version).await,
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match good {
            Ok(Some(source)) => {
                last_good.insert(file.to_path_buf(), source);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(flow = %name, error = %e, "cannot read the flow's last good version"),
        }
    }
    if last_good.is_empty() {
        return (set, errors);
    }
    load_dir_or_last_good(flows_dir, templates_dir, &last_good)
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

/// `--alert-defaults FILE`: an `alerts:` table on its own; a mistake is named with the file,
/// the line and the key, as in a flow file.
fn alert_defaults(path: &std::path::Path) -> Result<crate::alert::Rules> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--alert-defaults: cannot read {}", path.display()))?;
    let at = |key: &str| {
        let line = crate::flow::locate::Lines::of(&text).line(key);
        format!(
            "{}{}",
            path.display(),
            line.map(|l| format!(":{l}")).unwrap_or_default()
        )
    };
    let de = serde_yaml::Deserializer::from_str(&text);
    let spec: crate::alert::AlertsSpec = serde_path_to_error::deserialize(de).map_err(|e| {
        anyhow::anyhow!(
            "--alert-defaults: {}: {}: {}",
            at(&e.path().to_string()),
            e.path(),
            e.inner()
        )
    })?;
    let rules = crate::alert::Rules::compile(Some(&spec))
        .map_err(|(key, e)| anyhow::anyhow!("--alert-defaults: {}: {key}: {e}", at(key)))?;
    Ok(rules.as_defaults())
}
