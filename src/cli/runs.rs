//! `hookflow runs …` and `hookflow capture`: run history, replays and flow tests from real
//! traffic, through the running server's API (or the store directly when none runs, for
//! reading).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::{fixtures, format};
use crate::run::Run;
use crate::server::api::RunSummary;
use crate::settings::ClientArgs;
use std::sync::Arc;

use crate::store::{Backend, SledStore, Store};

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only this flow's runs.
        #[arg(long)]
        flow: Option<String>,
        /// Only runs in this state (`failed` are the dead letters).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::run::RunStatus::ALL.map(crate::run::RunStatus::as_str)))]
        status: Option<String>,
        /// At most this many runs (read page by page from a server); the output says when
        /// more exist.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only runs created this long ago or later, e.g. `2h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Only runs whose request or vars contain this text (case-insensitive).
        #[arg(long)]
        search: Option<String>,
        /// Print JSON: `{"runs": […], "more": true|false}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replay a finished run (through the running server) as a new run under the current flow.
    Replay {
        /// The finished run's id.
        id: String,
        /// `start`; `failed` to keep the actions that succeeded and start at the failed one; or
        /// an action's name to start there (e.g. a sequence's second email).
        #[arg(long, default_value = "start")]
        from: crate::replay::From,
        /// `current` flow, or the `original` version the run was accepted under.
        #[arg(long = "flow-version", value_enum, default_value_t = crate::replay::Version::Current)]
        version: crate::replay::Version,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replay every failed run of a flow created in a time range (see `--dry-run` first).
    ReplayFailed {
        /// The flow whose failed runs to replay.
        #[arg(long)]
        flow: String,
        /// Only runs created this long ago or later, e.g. `2h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// `failed` to keep what succeeded and start at the failed action; `start`; or an
        /// action's name.
        #[arg(long, default_value = "failed")]
        from: crate::replay::From,
        /// Count what would be replayed; replay nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End runs as exited: one by id, or every waiting run of a flow (see `--dry-run` first) —
    /// e.g. before moving a sequence to a new version of its flow (then replay them with
    /// `--from <action>`).
    Exit {
        /// A run id; or give --flow.
        #[arg(required_unless_present = "flow", conflicts_with = "flow")]
        id: Option<String>,
        /// Every waiting run of this flow.
        #[arg(long)]
        flow: Option<String>,
        /// With --flow: only runs whose request or vars contain this text.
        #[arg(long, requires = "flow")]
        search: Option<String>,
        /// Recorded as the exit reason.
        #[arg(long)]
        reason: Option<String>,
        /// Count what would be exited; exit nothing.
        #[arg(long, requires = "flow")]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one run with every attempt, its request and its response.
    Show {
        /// The run's id (as `runs list` prints it).
        id: String,
        /// Print the stored run as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Reads runs from the server's API, or from the store directly when nothing listens.
pub(crate) enum Source {
    Api {
        client: reqwest::Client,
        base: String,
        token: Option<String>,
    },
    Store(Arc<dyn Store>),
}

impl Source {
    /// `--data DIR` reads DIR's store itself (through the server that holds it open, saying
    /// so); otherwise the server that answers at the base URL; otherwise `./data`'s store.
    pub(crate) async fn connect(args: &ClientArgs) -> Result<Source> {
        let client = reqwest::Client::new();
        let base = args.base_url();
        let api = || Source::Api {
            client: client.clone(),
            base: base.clone(),
            token: args.api_token.as_ref().map(|t| t.expose().to_string()),
        };
        if let (Some(dir), None) = (&args.data_dir, &args.server) {
            let store = dir.join("store");
            if !store.exists() {
                bail!("there is no store at {}", store.display());
            }
            return match SledStore::open(&store, Default::default()) {
                Ok(s) => Ok(Source::Store(Arc::new(s))),
                Err(e) if client.get(format!("{base}/healthz")).send().await.is_ok() => {
                    eprintln!(
                        "note: the store in {} is open in a running server ({e}); reading the server at {base} instead",
                        dir.display()
                    );
                    Ok(api())
                }
                Err(e) => Err(e).with_context(|| format!("cannot open the store at {}", store.display())),
            };
        }
        match client.get(format!("{base}/healthz")).send().await {
            Ok(_) => Ok(api()),
            Err(e) if e.is_connect() => {
                if let Some(url) = args.store.postgres_url().map_err(|e| anyhow::anyhow!(e))? {
                    let settings = args.store.pg_settings();
                    let store = crate::store::open(Backend::Postgres {
                        url,
                        settings: &settings,
                    })
                    .await
                    .with_context(|| {
                        format!("no server answers at {base}, and the database could not be opened")
                    })?;
                    return Ok(Source::Store(store));
                }
                let dir = args.data_dir().join("store");
                if !dir.exists() {
                    bail!(
                        "no server answers at {base} and there is no store at {}",
                        dir.display()
                    );
                }
                let store = SledStore::open(&dir, Default::default()).with_context(|| {
                    format!("no server answers at {base}, and the store could not be opened")
                })?;
                Ok(Source::Store(Arc::new(store)))
            }
            Err(e) => Err(e).with_context(|| format!("cannot reach {base}")),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Result<serde_json::Value> {
        Source::answer(self.request(reqwest::Method::GET, path).send().await?).await
    }

    /// A request to the server's API, with its token. Only for [`Source::Api`].
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let Source::Api { client, base, token } = self else {
            unreachable!("only called for the API")
        };
        let mut req = client.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    }

    /// The JSON of an API answer, or its `detail` as the error.
    pub(crate) async fn answer(resp: reqwest::Response) -> Result<serde_json::Value> {
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

pub(super) async fn capture_requests_cmd(
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

pub(super) async fn capture_cmd(id: &str, client: &ClientArgs) -> Result<ExitCode> {
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

pub(super) async fn runs_cmd(cmd: RunsCommand) -> Result<ExitCode> {
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
            let since =
                since.map(|d| crate::time::Ts(crate::time::Ts::now().0.saturating_sub(d.as_millis() as u64)));
            let filter = crate::store::RunFilter {
                flow,
                status: None,
                before: None,
                limit,
                since,
                until: None,
                text: search,
            };
            list(filter, status, json, &client).await
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
        } => replay_failed(&flow, since, from, dry_run, &client).await,
        RunsCommand::Exit {
            id,
            flow,
            search,
            reason,
            dry_run,
            client,
        } => {
            if let Some(id) = id {
                post_api(
                    &client,
                    &format!("/api/runs/{id}/exit"),
                    &serde_json::json!({ "reason": reason }),
                )
                .await?;
                println!("run {id} exited");
                return Ok(ExitCode::SUCCESS);
            }
            let flow = flow.expect("clap requires --flow without an id");
            let body = serde_json::json!({ "reason": reason, "q": search, "dry_run": dry_run });
            let answer = post_api(&client, &format!("/api/flows/{flow}/exit"), &body).await?;
            let matched = answer["matched"].as_u64().unwrap_or(0);
            if dry_run {
                println!("{matched} waiting run(s) of {flow} would exit");
            } else {
                println!(
                    "{} of {matched} waiting run(s) of {flow} exited",
                    answer["exited"].as_u64().unwrap_or(0)
                );
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

/// `hookflow runs list`: the newest runs that pass `filter` (`status` as written), from the
/// server's API (page by page) or a stopped server's store.
async fn list(
    filter: crate::store::RunFilter,
    status: Option<String>,
    json: bool,
    client: &ClientArgs,
) -> Result<ExitCode> {
    let source = Source::connect(client).await?;
    let limit = filter.limit;
    // One more than asked for tells whether more exist.
    let want = limit.saturating_add(1);
    let mut runs: Vec<RunSummary> = match &source {
        Source::Api { .. } => {
            let mut q = vec![];
            if let Some(f) = &filter.flow {
                q.push(("flow", f.clone()));
            }
            if let Some(s) = &status {
                q.push(("status", s.clone()));
            }
            if let Some(t) = filter.since {
                q.push(("since", t.to_string()));
            }
            if let Some(t) = &filter.text {
                q.push(("q", t.clone()));
            }
            // The API answers at most MAX_PAGE runs a page: follow `next_before`.
            let mut runs: Vec<RunSummary> = Vec::new();
            let mut before: Option<String> = None;
            while runs.len() < want {
                let mut page_q = q.clone();
                let page = (want - runs.len()).min(crate::server::api::MAX_PAGE);
                page_q.push(("limit", page.to_string()));
                if let Some(b) = &before {
                    page_q.push(("before", b.clone()));
                }
                let qs = serde_urlencoded::to_string(&page_q)?;
                let body = source.get(&format!("/api/runs?{qs}")).await?;
                let got: Vec<RunSummary> = serde_json::from_value(body["runs"].clone())?;
                runs.extend(got);
                match body["next_before"].as_str() {
                    Some(next) => before = Some(next.to_string()),
                    None => break,
                }
            }
            runs
        }
        Source::Store(store) => {
            let filter = crate::store::RunFilter {
                status: status.as_deref().and_then(crate::run::RunStatus::parse),
                limit: want,
                ..filter
            };
            store
                .list_runs(&filter)
                .await?
                .iter()
                .map(RunSummary::from)
                .collect()
        }
    };
    let more = runs.len() > limit;
    runs.truncate(limit);
    if json {
        let out = serde_json::json!({ "runs": runs, "more": more });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", format::runs_table(&runs));
        if more {
            eprintln!(
                "(more runs exist: raise --limit, or narrow with --flow, --status, --since or --search)"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `hookflow runs replay-failed`: the server replays `flow`'s failed runs (since a time ago),
/// or says how many it would.
async fn replay_failed(
    flow: &str,
    since: Option<std::time::Duration>,
    from: crate::replay::From,
    dry_run: bool,
    client: &ClientArgs,
) -> Result<ExitCode> {
    let since = since.map(|d| crate::time::Ts::now().0.saturating_sub(d.as_millis() as u64));
    let body = serde_json::json!({
        "from": from,
        "dry_run": dry_run,
        "since": since.map(crate::time::Ts),
    });
    let answer = post_api(client, &format!("/api/flows/{flow}/replay-failed"), &body).await?;
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
