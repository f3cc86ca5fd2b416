//! The `hookflow` command line. Exit codes: 0 success, 1 failure (invalid flows, a command that
//! could not do its job), 2 usage errors (from clap).

use std::process::ExitCode;

mod backup;
mod dryrun;
mod fixtures;
mod format;
mod runs;
mod segments;
mod send;
mod serve;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::flow::{LoadError, load_dir};
use crate::settings::{ClientArgs, Paths, ServeArgs, StoreArgs, UrlArgs};
use crate::token::UrlTokens;
pub use runs::RunsCommand;
use runs::{Source, capture_cmd, capture_requests_cmd, runs_cmd};

#[derive(Debug, Parser)]
#[command(
    name = "hookflow",
    version = crate::BUILD_VERSION,
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
pub enum StoreCommand {
    /// Read the intake journal and every stored run of a store no server has open, changing
    /// nothing; report what is intact, what is damaged and what `serve` will do about it.
    /// Exit 0 intact, 1 damaged, 2 could not check.
    Check {
        #[arg(long = "data", env = "HOOKFLOW_DATA", default_value = "data")]
        data_dir: std::path::PathBuf,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
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
        /// As `serve --egress-allow`: literal action URLs outside it are warned about.
        #[arg(long = "egress-allow", env = "HOOKFLOW_EGRESS_ALLOW", value_delimiter = ',', value_parser = crate::settings::parse_net)]
        egress_allow: Vec<ipnet::IpNet>,
        /// Exit 1 on warnings too (for CI): a secret not set, a host the egress policy refuses.
        #[arg(long)]
        deny_warnings: bool,
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
    /// Write a consistent backup of the embedded store to FILE while the server keeps serving
    /// (through its API; directly from `--data` when no server runs).
    Backup {
        /// Where to write it (gzip).
        #[arg(long)]
        to: std::path::PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Look after the store's files.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Restore a backup into an empty data directory (`--data`), then start `serve` on it.
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
        /// Data directory to restore into (must hold no store).
        #[arg(long = "data", env = "HOOKFLOW_DATA", default_value = "data")]
        data_dir: std::path::PathBuf,
    },
    /// Print each flow's webhook URL.
    Urls {
        #[command(flatten)]
        paths: Paths,
        #[command(flatten)]
        urls: UrlArgs,
        #[command(flatten)]
        store: StoreArgs,
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
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
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
        Command::Serve(args) => serve::serve_cmd(*args).await,
        Command::Validate {
            dir,
            run_tests,
            egress_allow,
            deny_warnings,
            paths,
        } => Ok(validate_cmd(
            dir.as_deref().unwrap_or(&paths.flows_dir),
            &paths,
            run_tests,
            deny_warnings,
            &crate::egress::Policy { allow: egress_allow },
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
        Command::Store {
            command: StoreCommand::Check { data_dir, json },
        } => Ok(backup::check_cmd(&data_dir, json)),
        Command::Backup { to, client } => backup::backup_cmd(&to, &client).await,
        Command::Restore { file, data_dir } => backup::restore_cmd(&file, &data_dir).await,
        Command::Urls { paths, urls, store } => urls_cmd(&paths, &urls, &store).await,
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

fn validate_cmd(
    dir: &std::path::Path,
    paths: &Paths,
    run_tests: bool,
    deny_warnings: bool,
    egress: &crate::egress::Policy,
) -> ExitCode {
    let (set, errors) = load_dir(dir, &paths.templates_dir);
    if errors.is_empty() && set.flows.is_empty() {
        eprintln!(
            "{}: no flow files (looked for *.yaml and *.yml, in subfolders too)",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    // Warnings: what would not work where validate runs, without failing it unless asked (CI
    // rarely holds production secrets).
    let around = crate::flow::warnings::Surroundings {
        egress: egress.clone(),
        has_mailer: None,
    };
    let warnings = crate::flow::warnings::warnings(&set, &around);
    for w in &warnings {
        eprintln!("{w}");
    }
    let denied = if deny_warnings { warnings.len() } else { 0 };
    if errors.is_empty() && denied == 0 {
        let noted = match warnings.len() {
            0 => String::new(),
            n => format!(", {n} warning(s)"),
        };
        println!("{} flow(s) OK in {}{noted}", set.flows.len(), dir.display());
        if run_tests && fixtures::run_all(&set, dir) > 0 {
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    } else {
        print_errors(&errors);
        let warned = match (warnings.len(), deny_warnings) {
            (0, _) => String::new(),
            (n, true) => format!("; {n} warning(s), denied by --deny-warnings"),
            (n, false) => format!("; {n} warning(s)"),
        };
        eprintln!(
            "{} problem(s){warned}; {} flow(s) valid",
            errors.len(),
            set.flows.len()
        );
        ExitCode::FAILURE
    }
}

/// The URL tokens every command derives webhook URLs from: `--secret`; else, with a shared
/// database, the secret the first instance kept in it (so every instance serves the same URLs);
/// else `{data}/secret`, created on first use. `store` is the open store, when there is one.
pub(crate) async fn url_tokens(
    paths: &Paths,
    urls: &UrlArgs,
    store_args: &StoreArgs,
    store: Option<&dyn crate::store::Store>,
) -> Result<UrlTokens> {
    if let Some(s) = &urls.secret {
        return Ok(UrlTokens::from_secret(s.expose().as_bytes())?);
    }
    if let Some(url) = store_args.postgres_url().map_err(|e| anyhow::anyhow!(e))? {
        let opened;
        let store = match store {
            Some(s) => s,
            None => {
                let settings = store_args.pg_settings();
                opened = crate::store::open(crate::store::Backend::Postgres {
                    url,
                    settings: &settings,
                })
                .await?;
                opened.as_ref()
            }
        };
        let secret = store
            .shared_setting("url_secret", UrlTokens::new_secret())
            .await?;
        return Ok(UrlTokens::from_secret(secret.as_bytes())?);
    }
    Ok(UrlTokens::load_or_create(&paths.data_dir, None)?)
}

async fn urls_cmd(paths: &Paths, urls: &UrlArgs, store: &StoreArgs) -> Result<ExitCode> {
    let (set, errors) = load_dir(&paths.flows_dir, &paths.templates_dir);
    print_errors(&errors);
    let tokens = url_tokens(paths, urls, store, None).await?;
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
