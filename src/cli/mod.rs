//! The `hookflow` command line. Exit codes: 0 success, 1 failure (invalid flows, a command that
//! could not do its job), 2 usage errors (from clap).

use std::process::ExitCode;

mod alerts;
mod backup;
mod dryrun;
mod fixtures;
mod format;
mod report;
mod runs;
mod segments;
mod send;
mod serve;
mod suppressions;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use crate::flow::{LoadError, load_dir};
use crate::settings::{ClientArgs, Paths, ServeArgs, StoreArgs, UrlArgs};
pub use crate::settings::{LogFormat, ProcessArgs};
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
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The process settings of the command given, or the defaults for commands without them.
    pub fn process(&self) -> ProcessArgs {
        match &self.command {
            Command::Serve(args) => args.process,
            Command::Restore { process, .. }
            | Command::Backup { process, .. }
            | Command::Capture { process, .. } => *process,
            _ => ProcessArgs::default(),
        }
    }
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
        /// `human` (`file:line: problem`), `json` (one document on standard output), or
        /// `github` (workflow commands: each problem shown at its line in a pull request).
        #[arg(long, value_enum, default_value_t = ReportFormat::Human)]
        format: ReportFormat,
        #[command(flatten)]
        paths: Paths,
    },
    /// Dry-run a flow against a sample request: conditions, vars and every action as it would
    /// be sent, with no side effects. Exit 0 matched, 1 not matched, 2 error.
    Test(dryrun::TestArgs),
    /// Print the JSON Schema of the flow file format (for editors: see README).
    Schema,
    /// Print the API's OpenAPI 3.1 description (what `GET /api/openapi.json` serves).
    Openapi,
    /// Print a shell completion script: `hookflow completions bash >
    /// /etc/bash_completion.d/hookflow` (zsh: into a directory on `$fpath` as `_hookflow`;
    /// fish: `~/.config/fish/completions/hookflow.fish`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `hookflow man > /usr/local/share/man/man1/hookflow.1`.
    Man,
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
        #[command(flatten)]
        process: ProcessArgs,
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
        #[command(flatten)]
        process: ProcessArgs,
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
        #[command(flatten)]
        process: ProcessArgs,
    },
    /// Print each webhook flow's URL (from the server's secret: run it where the server runs,
    /// or give its --data or --secret).
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
    /// The suppression list: addresses that get no email of a list, or none at all (list,
    /// add, lift, import, export).
    Suppressions {
        #[command(subcommand)]
        command: suppressions::SuppressionsCommand,
    },
    /// The alerts raised now and those resolved lately (exit 1 while one is raised).
    Alerts {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
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

/// Writes generated text to standard output; a reader that stops early (`| head`) is not an
/// error.
fn print_all(bytes: &[u8]) -> Result<ExitCode> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
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
            format,
            paths,
        } => Ok(validate_cmd(
            dir.as_deref().unwrap_or(&paths.flows_dir),
            &paths,
            Validate {
                run_tests,
                deny_warnings,
                format,
            },
            &crate::egress::Policy { allow: egress_allow },
        )),
        Command::Capture {
            id,
            requests,
            out,
            last,
            client,
            ..
        } => match (id, requests, out) {
            (Some(id), None, _) => capture_cmd(&id, &client).await,
            (None, Some(flow), Some(out)) => capture_requests_cmd(&flow, &out, last, &client).await,
            _ => bail!("give a run id, or --requests FLOW --out DIR"),
        },
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&crate::flow::schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            print!("{}", crate::server::openapi::DOCUMENT);
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "hookflow", &mut script);
            print_all(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut page)?;
            print_all(&page)
        }
        Command::Store {
            command: StoreCommand::Check { data_dir, json },
        } => Ok(backup::check_cmd(&data_dir, json)),
        Command::Backup { to, client, .. } => backup::backup_cmd(&to, &client).await,
        Command::Restore { file, data_dir, .. } => backup::restore_cmd(&file, &data_dir).await,
        Command::Urls { paths, urls, store } => urls_cmd(&paths, &urls, &store).await,
        Command::Send(args) => send::send_cmd(args).await,
        Command::Test(args) => Ok(dryrun::test_cmd(args)),
        Command::Runs { command } => runs_cmd(command).await,
        Command::Segments { command } => segments::segments_cmd(command).await,
        Command::Alerts { json, client } => alerts::alerts_cmd(json, &client).await,
        Command::Suppressions { command } => suppressions::suppressions_cmd(command).await,
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

/// How `validate` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Human,
    Json,
    Github,
}

/// `validate`'s choices.
struct Validate {
    run_tests: bool,
    deny_warnings: bool,
    format: ReportFormat,
}

fn validate_cmd(
    dir: &std::path::Path,
    paths: &Paths,
    opts: Validate,
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
        public_url: None,
    };
    let warnings = crate::flow::warnings::warnings(&set, &around);
    let denied = if opts.deny_warnings { warnings.len() } else { 0 };
    let ok = errors.is_empty() && denied == 0;
    match opts.format {
        ReportFormat::Human => report::human(dir, &set, &errors, &warnings, opts.deny_warnings),
        ReportFormat::Json => report::json(&set, &errors, &warnings, ok),
        ReportFormat::Github => report::github(&errors, &warnings, opts.deny_warnings),
    }
    if !ok {
        return ExitCode::FAILURE;
    }
    if opts.run_tests && fixtures::run_all(&set, dir) > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Whether a command may create the URL secret: only `serve` does. A client command that
/// created one (in a data directory the server does not use) would print or call URLs that
/// no running server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretFile {
    Create,
    ReadOnly,
}

/// The URL tokens every command derives webhook URLs from, and where the secret came from
/// (for messages): `--secret`; else, with a shared database, the secret the first instance
/// kept in it (so every instance serves the same URLs); else `{data}/secret`, created on
/// first use by `serve` only. `store` is the open store, when there is one.
pub(crate) async fn url_tokens(
    paths: &Paths,
    urls: &UrlArgs,
    store_args: &StoreArgs,
    store: Option<&dyn crate::store::Store>,
    file: SecretFile,
) -> Result<(UrlTokens, String)> {
    if let Some(s) = &urls.secret {
        return Ok((
            UrlTokens::from_secret(s.expose().as_bytes())?,
            "the secret given with --secret / HOOKFLOW_SECRET".into(),
        ));
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
        return Ok((
            UrlTokens::from_secret(secret.as_bytes())?,
            "the secret kept in the shared database".into(),
        ));
    }
    let path = paths.data_dir.join("secret");
    let from = format!("the secret in {}", path.display());
    if file == SecretFile::Create {
        return Ok((UrlTokens::load_or_create(&paths.data_dir, None)?, from));
    }
    match UrlTokens::load(&paths.data_dir)? {
        Some(t) => Ok((t, from)),
        None => bail!(
            "no URL secret at {}: `hookflow serve` writes it at its first start. Run this in the \
             directory the server runs in, or give the server's --data DIR (or its --secret)",
            path.display()
        ),
    }
}

async fn urls_cmd(paths: &Paths, urls: &UrlArgs, store: &StoreArgs) -> Result<ExitCode> {
    let (set, errors) = load_dir(&paths.flows_dir, &paths.templates_dir);
    print_errors(&errors);
    let (tokens, _) = url_tokens(paths, urls, store, None, SecretFile::ReadOnly).await?;
    let base = urls.base_url();
    // Only webhook flows have a URL: schedules and internal events are not reached over HTTP.
    let hooks: Vec<&String> = set
        .flows
        .iter()
        .filter(|(_, f)| f.webhook().is_some())
        .map(|(name, _)| name)
        .collect();
    let width = hooks.iter().map(|n| n.len()).max().unwrap_or(0);
    for name in hooks {
        println!("{name:width$}  {base}/hooks/{name}/{}", tokens.token(name));
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
