//! Settings, each a command-line flag with a `HOOKFLOW_*` environment variable and a documented
//! default. This is the one place that reads hookflow's own environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::engine::EngineConfig;

use crate::action::email::{SmtpConfig, SmtpTls};
pub use crate::secret::Secret;
use crate::store::Durability;

/// Where flows, templates and data live.
#[derive(Debug, Clone, Args)]
pub struct Paths {
    /// Directory of flow files (`*.yaml`).
    #[arg(long = "flows", env = "HOOKFLOW_FLOWS", default_value = "flows")]
    pub flows_dir: PathBuf,
    /// Directory of template files.
    #[arg(long = "templates", env = "HOOKFLOW_TEMPLATES", default_value = "templates")]
    pub templates_dir: PathBuf,
    /// Data directory: the store (`store/`) and the URL secret (`secret`).
    #[arg(long = "data", env = "HOOKFLOW_DATA", default_value = "data")]
    pub data_dir: PathBuf,
}

/// Which store: the embedded one in the data directory, or a PostgreSQL database that several
/// instances share.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=require]`: keep everything in
    /// this PostgreSQL, shared with every instance given the same URL (see README, "Running
    /// several instances"). Default: the embedded store in `{data}/store`.
    #[arg(long = "store", env = "HOOKFLOW_STORE", hide_env_values = true)]
    pub store: Option<Secret>,
    /// PostgreSQL: connections this instance opens at most.
    #[arg(long, env = "HOOKFLOW_PG_MAX_CONNECTIONS", default_value_t = 16)]
    pub pg_max_connections: u32,
    /// PostgreSQL: how long an operation waits for a connection before it fails (a webhook is
    /// then answered 503 with Retry-After, and nothing is lost).
    #[arg(long, env = "HOOKFLOW_PG_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub pg_acquire_timeout: Duration,
    /// PostgreSQL: the server-side limit on one statement.
    #[arg(long, env = "HOOKFLOW_PG_STATEMENT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub pg_statement_timeout: Duration,
}

impl StoreArgs {
    /// The PostgreSQL URL, if one is given; an error for anything else in `--store`.
    pub fn postgres_url(&self) -> Result<Option<&str>, String> {
        match self.store.as_ref().map(Secret::expose) {
            None | Some("") => Ok(None),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Ok(Some(u)),
            Some(_) => Err(
                "--store takes a postgres:// URL; the embedded store lives in the data directory (--data)"
                    .into(),
            ),
        }
    }

    pub fn pg_settings(&self) -> crate::store::PgSettings {
        crate::store::PgSettings {
            max_connections: self.pg_max_connections.max(1),
            acquire_timeout: self.pg_acquire_timeout,
            statement_timeout: self.pg_statement_timeout,
        }
    }
}

/// What is needed to compute webhook URLs.
#[derive(Debug, Clone, Args)]
pub struct UrlArgs {
    /// Secret from which URL tokens are derived; default: `{data}/secret`, created on first use.
    /// Give the same value to every machine that must serve the same URLs.
    #[arg(long = "secret", env = "HOOKFLOW_SECRET", hide_env_values = true)]
    pub secret: Option<Secret>,
    /// Base URL senders use to reach this server (e.g. behind a proxy); default: from --listen.
    #[arg(long = "public-url", env = "HOOKFLOW_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// Address to listen on.
    #[arg(long = "listen", env = "HOOKFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

impl UrlArgs {
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// How the process logs and which permissions what it creates gets: only on the commands that
/// log or create files (`serve`, `restore`, `backup`, `capture`), so the others' help lists
/// only what they use.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ProcessArgs {
    /// Log format: `human`, or `json` for log collectors (`HOOKFLOW_LOG` sets the level).
    #[arg(long, env = "HOOKFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Permission bits left out of everything hookflow creates (octal), added to the process
    /// umask: by default the data directory is 0700 and its files 0600. `027` lets the owner's
    /// group read (e.g. a backup group).
    #[arg(long, env = "HOOKFLOW_UMASK", default_value = "077", value_parser = parse_octal)]
    pub umask: u32,
}

impl Default for ProcessArgs {
    fn default() -> Self {
        ProcessArgs {
            log_format: LogFormat::Human,
            umask: 0o077,
        }
    }
}

/// A base URL webhook and unsubscribe URLs are built on: http(s), a host, no query or fragment.
fn parse_public_url(s: &str) -> std::result::Result<String, String> {
    let url = url::Url::parse(s)
        .map_err(|e| format!("`{s}` is not a URL ({e}); e.g. https://hooks.example.com"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "`{s}` is not an http(s) URL with a host; e.g. https://hooks.example.com"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{s}` has a query or a fragment; give the base URL only (a path prefix is fine)"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// An address for `mailto:` unsubscribe requests (a leading `mailto:` is dropped).
fn parse_mailto(s: &str) -> std::result::Result<String, String> {
    let addr = s.trim().trim_start_matches("mailto:");
    addr.parse::<lettre::Address>()
        .map(|_| addr.to_string())
        .map_err(|e| format!("`{s}` is not an email address ({e}); e.g. unsubscribe@example.com"))
}

fn parse_octal(s: &str) -> std::result::Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal permission mask such as 077"))
}

/// Settings of `hookflow serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub process: ProcessArgs,
    #[command(flatten)]
    pub paths: Paths,
    #[command(flatten)]
    pub urls: UrlArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Bearer token for the runs API. Without one the API answers only clients on this
    /// machine that did not come through a proxy.
    #[arg(long = "api-token", env = "HOOKFLOW_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,
    /// Serve the API, the metrics and the dashboard on this address of their own; the main
    /// listener then serves only webhooks and health checks (the usual setup behind a
    /// reverse proxy: the proxy forwards to --listen, the admin address stays private).
    #[arg(long = "admin-listen", env = "HOOKFLOW_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Memory sled may use to cache the store's pages (e.g. `16MiB`); more makes reading run
    /// history faster, it does not change what is stored.
    #[arg(long, env = "HOOKFLOW_STORE_CACHE", default_value = "16MiB")]
    pub store_cache: bytesize::ByteSize,
    /// Waits at least this long are parked on disk (`store/parked/`) until shortly before
    /// they end, costing no memory however many runs wait; shorter ones wait in the queue.
    /// Embedded store only.
    #[arg(long, env = "HOOKFLOW_PARK_AFTER", default_value = "10m", value_parser = humantime::parse_duration)]
    pub park_after: std::time::Duration,
    /// Create the embedded store with its pages compressed (zstd): under half the disk (1.1 KB
    /// per finished run against 2.5 KB; inputs and finished runs are compressed either way)
    /// for under half the delivery rate (BENCHMARKS.md). Decided when the store is created; an
    /// existing store keeps what it was made with.
    #[arg(long, env = "HOOKFLOW_STORE_COMPRESSION")]
    pub store_compression: bool,
    /// What a 2xx to a sender guarantees: `flush` (survives the process being killed) or
    /// `fsync` (also survives power loss; slower).
    #[arg(long, env = "HOOKFLOW_DURABILITY", value_enum, default_value_t = Durability::Flush)]
    pub durability: Durability,
    /// Largest accepted webhook body, in bytes.
    #[arg(long, env = "HOOKFLOW_MAX_BODY", default_value_t = 1024 * 1024)]
    pub max_body: usize,
    /// Runs executing at once. 0 makes an accept-only server: runs are stored, not executed
    /// (they run once a server with workers uses the same store).
    #[arg(long, env = "HOOKFLOW_WORKERS", default_value_t = 32)]
    pub workers: usize,
    /// How long a worker's claim on a run lasts before another may take it over.
    #[arg(long, env = "HOOKFLOW_LEASE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// Longest the engine sleeps between looks at the queue when idle.
    #[arg(long, env = "HOOKFLOW_POLL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// On SIGTERM, how long in-flight attempts may take to finish.
    #[arg(long, env = "HOOKFLOW_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// How long finished runs are kept (history and replay), e.g. `30d`.
    #[arg(long, env = "HOOKFLOW_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// Most runs kept; beyond, the oldest finished runs are pruned.
    #[arg(long, env = "HOOKFLOW_MAX_RUNS", default_value_t = 1_000_000)]
    pub max_runs: usize,
    /// How long the links of tracked emails keep working after sending, e.g. `400d`; then the
    /// message and its clicks are forgotten and its links answer 404 (counts are kept).
    #[arg(long, env = "HOOKFLOW_LINK_RETENTION", default_value = "400d", value_parser = humantime::parse_duration)]
    pub link_retention: Duration,
    /// Earlier server secrets (comma-separated) whose email links — unsubscribe and tracked
    /// links — still open after a rotation of `--secret`. New links use the current secret.
    #[arg(
        long = "previous-secret",
        env = "HOOKFLOW_PREVIOUS_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub previous_secrets: Vec<Secret>,
    /// Longest chain of event-triggered runs (a flow triggered by an event that another
    /// flow's run raised, and so on); a run that would go deeper fails. Catches loops.
    #[arg(long, env = "HOOKFLOW_MAX_CHAIN_DEPTH", default_value_t = crate::event::DEFAULT_MAX_CHAIN_DEPTH)]
    pub max_chain_depth: u32,
    /// Proxies (address or CIDR, repeatable or comma-separated) whose `X-Forwarded-For` /
    /// `Forwarded` headers name the real client, for `allow_ips`.
    #[arg(long = "trusted-proxy", env = "HOOKFLOW_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long = "tls-cert", env = "HOOKFLOW_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long = "tls-key", env = "HOOKFLOW_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Time a client has to send a request's headers (and finish a TLS handshake).
    #[arg(long, env = "HOOKFLOW_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Time a client has to send a request's body.
    #[arg(long, env = "HOOKFLOW_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; 431 beyond.
    #[arg(long, env = "HOOKFLOW_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Open connections per listener. Beyond, a new connection is answered `503` with
    /// `Retry-After: 1` and closed; idle keep-alive connections close after
    /// `--header-timeout`. Each open connection holds its read and write buffers.
    #[arg(long, env = "HOOKFLOW_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Webhook requests handled at once over all flows; 429 with Retry-After beyond.
    #[arg(long, env = "HOOKFLOW_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Internal addresses `http` actions may reach anyway (address or CIDR, repeatable or
    /// comma-separated). By default loopback, private, link-local and other internal ranges
    /// are refused.
    #[arg(long = "egress-allow", env = "HOOKFLOW_EGRESS_ALLOW", value_delimiter = ',', value_parser = parse_net)]
    pub egress_allow: Vec<ipnet::IpNet>,
    /// Attempts in flight at once to one destination (host and port, or the SMTP server),
    /// unless an action sets `destination_concurrency`; `0`: half the workers (at
    /// least 2). A destination that is full sends its runs back to the queue, so one partner
    /// that hangs holds only these workers.
    #[arg(long, env = "HOOKFLOW_DESTINATION_CONCURRENCY", default_value_t = 0)]
    pub destination_concurrency: usize,
    /// A YAML file of alert rules (the shape of a flow's `alerts:`) for every flow where its
    /// file does not say; without it, the built-in defaults.
    #[arg(long, env = "HOOKFLOW_ALERT_DEFAULTS")]
    pub alert_defaults: Option<PathBuf>,
    /// How often alert rules are judged (`0s`: no alerts).
    #[arg(long, env = "HOOKFLOW_ALERT_EVERY", default_value = "15s", value_parser = humantime::parse_duration)]
    pub alert_every: Duration,
    /// Raise the `backlog` alert when the oldest due run has waited longer than this (`0s`: off).
    #[arg(long, env = "HOOKFLOW_ALERT_BACKLOG", default_value = "15m", value_parser = humantime::parse_duration)]
    pub alert_backlog: Duration,
    /// Raise the `circuit_open` alert when a destination's circuit stays open longer than this
    /// (`0s`: off).
    #[arg(long, env = "HOOKFLOW_ALERT_CIRCUIT_OPEN", default_value = "30m", value_parser = humantime::parse_duration)]
    pub alert_circuit_open: Duration,
    /// Largest response body an `http` action reads from a destination (e.g. `1MiB`); a
    /// successful answer beyond it fails the attempt. An action's `max_response` overrides it.
    #[arg(long, env = "HOOKFLOW_MAX_RESPONSE", default_value = "1MiB")]
    pub max_response: bytesize::ByteSize,
    #[command(flatten)]
    pub smtp: SmtpArgs,
    /// For drills: a file holding milliseconds to add to the clock (waits pass without waiting).
    #[arg(long, env = "HOOKFLOW_TEST_CLOCK_OFFSET_FILE", hide = true)]
    pub test_clock_offset_file: Option<PathBuf>,
}

pub(crate) fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    crate::net::parse_net(s).ok_or_else(|| format!("`{s}` is not an IP address or CIDR range"))
}

/// The SMTP server `email` actions send through. The login comes from the environment only
/// (`HOOKFLOW_SMTP_USER`, `HOOKFLOW_SMTP_PASSWORD`), so it never shows in a process list.
#[derive(Debug, Clone, Args)]
pub struct SmtpArgs {
    /// SMTP server host; without one, `email` actions fail with a clear error.
    #[arg(long = "smtp-host", env = "HOOKFLOW_SMTP_HOST")]
    pub host: Option<String>,
    /// Port; default 25, 587 or 465 by --smtp-tls.
    #[arg(long = "smtp-port", env = "HOOKFLOW_SMTP_PORT")]
    pub port: Option<u16>,
    /// `none` (a relay on this host), `starttls` or `tls` (implicit).
    #[arg(long = "smtp-tls", env = "HOOKFLOW_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub tls: SmtpTls,
    /// Default sender, e.g. `Shop <shop@example.com>`.
    #[arg(long = "smtp-from", env = "HOOKFLOW_SMTP_FROM")]
    pub from: Option<String>,
    /// PEM certificate of a private CA to trust for the SMTP server (besides the public roots).
    #[arg(long = "smtp-ca-file", env = "HOOKFLOW_SMTP_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// An address that also takes unsubscribe requests, offered beside the one-click link in
    /// list emails (`List-Unsubscribe: <https://…>, <mailto:…>`); your mail tool handles them.
    #[arg(long = "unsubscribe-mailto", env = "HOOKFLOW_UNSUBSCRIBE_MAILTO", value_parser = parse_mailto)]
    pub unsubscribe_mailto: Option<String>,
}

impl SmtpArgs {
    pub fn config(&self) -> Option<SmtpConfig> {
        let host = self.host.clone()?;
        Some(SmtpConfig {
            host,
            port: self.port,
            tls: self.tls,
            credentials: std::env::var("HOOKFLOW_SMTP_USER")
                .ok()
                .zip(std::env::var("HOOKFLOW_SMTP_PASSWORD").ok().map(Secret::from)),
            from: self.from.clone(),
            ca_file: self.ca_file.clone(),
        })
    }
}

impl ServeArgs {
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            workers: self.workers,
            lease: self.lease,
            poll_interval: self.poll,
            shutdown_grace: self.shutdown_grace,
            max_chain_depth: self.max_chain_depth,
            retention: self.retention,
            max_runs: self.max_runs,
            link_retention: self.link_retention,
            templates_dir: Some(self.paths.templates_dir.clone()),
            destination_concurrency: self.destination_concurrency,
            alerts: crate::engine::alerts::AlertConfig {
                every: self.alert_every,
                backlog: Some(self.alert_backlog).filter(|d| !d.is_zero()),
                circuit_open: Some(self.alert_circuit_open).filter(|d| !d.is_zero()),
                defaults: crate::alert::Rules::default(),
            },
        }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.paths.data_dir.join("store")
    }
}

/// How to reach a running server's API (for `hookflow runs`).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the running server; default: http://{HOOKFLOW_LISTEN}.
    #[arg(long = "server", env = "HOOKFLOW_SERVER")]
    pub server: Option<String>,
    #[arg(
        long = "listen",
        env = "HOOKFLOW_LISTEN",
        default_value = "127.0.0.1:8080",
        hide = true
    )]
    pub listen: SocketAddr,
    /// The server's admin address, when it has one: the API is there.
    #[arg(long = "admin-listen", env = "HOOKFLOW_ADMIN_LISTEN", hide = true)]
    pub admin_listen: Option<SocketAddr>,
    /// The API's bearer token, when the server has one (`serve --api-token`).
    #[arg(long = "api-token", env = "HOOKFLOW_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,
    /// Data directory whose store to read directly, not through a server (while a server
    /// has it open, through that server, saying so). Without it: the running server's API,
    /// or `./data` when no server answers.
    #[arg(long = "data", env = "HOOKFLOW_DATA")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl ClientArgs {
    /// The data directory read when no server answers.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from("data"))
    }

    pub fn base_url(&self) -> String {
        match &self.server {
            Some(s) => s.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.admin_listen.unwrap_or(self.listen)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let p = Probe::parse_from([
            "hookflow",
            "--secret",
            "url-secret-value-123",
            "--api-token",
            "api-token-value-456",
        ]);
        let shown = format!("{p:?}");
        assert!(
            !shown.contains("url-secret-value-123") && !shown.contains("api-token-value-456"),
            "{shown}"
        );
        assert_eq!(p.serve.api_token.unwrap().expose(), "api-token-value-456");
    }
}
