//! hookflow assembled: the flows, the store, the engine, the intake, the reloader and the HTTP
//! routers wired together in one place — by `hookflow serve` from its settings and by the tests
//! from theirs, so both run the same wiring. Each part gets its own small config; nothing here
//! reads the environment or the command line.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::action::Clients;
use crate::action::breaker::Guards;
use crate::cluster::Membership;
use crate::engine::{Engine, EngineConfig};
use crate::flow::FlowSet;
use crate::intake::{Intake, Limits};
use crate::metrics::Metrics;
use crate::reload::{Flows, Reloader};
use crate::server::AppState;
use crate::server::access::Access;
use crate::store::Store;
use crate::token::UrlTokens;

/// What varies between a server and a test.
pub struct Config {
    pub flows_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub engine: EngineConfig,
    pub limits: Limits,
    /// Webhook requests handled at once over all flows.
    pub max_in_flight: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub access: Access,
    pub max_header_bytes: usize,
    /// Where webhooks are accepted, as other instances are told (see [`crate::cluster`]).
    pub listen: String,
    /// The base URL the internet reaches this server at (`--public-url`): links in emails
    /// (one-click unsubscribe) point there.
    pub public_url: String,
    /// An address that also takes unsubscribes, offered as `mailto:` in list emails.
    pub unsubscribe_mailto: Option<String>,
    /// Earlier server secrets whose email links still open (a rotation).
    pub previous_secrets: Vec<crate::secret::Secret>,
}

/// The parts, wired, not yet running.
pub struct App {
    pub flows: Arc<Flows>,
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub state: AppState,
    pub reloader: Arc<Reloader>,
}

/// The background tasks of a started [`App`].
pub struct Running {
    pub engine: JoinHandle<()>,
    pub reload: JoinHandle<()>,
    pub heartbeat: JoinHandle<()>,
}

impl App {
    pub fn new(
        config: Config,
        set: FlowSet,
        store: Arc<dyn Store>,
        tokens: UrlTokens,
        mut clients: Clients,
    ) -> App {
        let mail = Arc::new(crate::action::email::MailContext {
            keys: tokens
                .link_keys()
                .with_previous(config.previous_secrets.iter().map(|s| s.expose().as_bytes())),
            base_url: config.public_url.trim_end_matches('/').to_string(),
            unsubscribe_mailto: config.unsubscribe_mailto.clone(),
            suppressions: Arc::clone(&store) as Arc<dyn crate::store::suppress::Suppressions>,
            clicks: Arc::clone(&store) as Arc<dyn crate::store::clicks::Clicks>,
        });
        clients.mail = Some(Arc::clone(&mail));
        let flows = Flows::new(set);
        let guards = Arc::new(Guards::default());
        let metrics = Arc::new(Metrics::new());
        let surroundings = crate::flow::warnings::Surroundings {
            egress: (*clients.egress).clone(),
            has_mailer: Some(clients.mailer.is_some()),
            public_url: Some(config.public_url.clone()),
        };
        let mut engine_config = config.engine;
        engine_config.templates_dir = Some(config.templates_dir.clone());
        let engine = Arc::new(Engine::new(
            Arc::clone(&store),
            Arc::clone(&flows),
            engine_config,
            clients,
            Arc::clone(&guards),
            Arc::clone(&metrics),
        ));
        let intake = Intake {
            flows: Arc::clone(&flows),
            store: Arc::clone(&store),
            tokens,
            wake: engine.waker(),
            metrics: Arc::clone(&metrics),
            requests: Default::default(),
            limits: config.limits,
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1))),
            trusted_proxies: config.trusted_proxies,
            counters: Default::default(),
            public_url: config.public_url.trim_end_matches('/').to_string(),
        };
        let membership = Arc::new(Membership::new(
            Arc::clone(&store),
            Arc::clone(&flows),
            config.listen,
        ));
        let state = AppState {
            membership,
            intake: Arc::new(intake),
            events_wake: engine.events_waker(),
            guards,
            templates_dir: config.templates_dir.clone(),
            max_header_bytes: config.max_header_bytes,
            access: Arc::new(config.access),
            mail,
        };
        let reloader = Arc::new(Reloader {
            flows: Arc::clone(&flows),
            store: Arc::clone(&store),
            flows_dir: config.flows_dir,
            templates_dir: config.templates_dir,
            metrics,
            surroundings,
            checked: Default::default(),
        });
        App {
            flows,
            store,
            engine,
            state,
            reloader,
        }
    }

    /// Logs the flows' warnings, keeps their sources in the store, reports this instance (and
    /// keeps reporting it),
    /// then starts the reload watcher and — unless
    /// `execute` is false (an accept-only server) — the engine, until `shutdown`.
    pub async fn start(&self, shutdown: &CancellationToken, execute: bool) -> Running {
        self.reloader.check();
        self.flows.persist_sources(self.store.as_ref()).await;
        self.state.membership.beat().await;
        let heartbeat = tokio::spawn(Arc::clone(&self.state.membership).run(shutdown.clone()));
        let reload = tokio::spawn(Arc::clone(&self.reloader).watch(shutdown.clone()));
        let engine = if execute {
            tokio::spawn(Arc::clone(&self.engine).run(shutdown.clone()))
        } else {
            tokio::spawn(async {})
        };
        Running {
            engine,
            reload,
            heartbeat,
        }
    }
}
