//! `hookflow suppressions …`: the suppression list from the command line — list and search
//! it, add an address, lift an entry with a reason, import another tool's CSV of opt-outs and
//! export the list. Through the running server's API, or the store directly when no server
//! runs (as `runs` and `segments` do).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::Source;
use crate::settings::ClientArgs;
use crate::store::suppress::{self, SuppressionQuery, page_key};
use crate::suppression::{self, Reason, Suppression};

/// Entries read per page when exporting.
const EXPORT_PAGE: usize = 500;

#[derive(Debug, Subcommand)]
pub enum SuppressionsCommand {
    /// List suppressed addresses, in address order.
    List {
        /// Only addresses containing this text.
        #[arg(long)]
        search: Option<String>,
        /// Include lifted entries (history).
        #[arg(long)]
        lifted: bool,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this entry (the `--after` the previous page printed).
        #[arg(long)]
        after: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Suppress an address: for one list (`--list`), or for every email.
    Add {
        /// The address.
        email: String,
        /// The list it applies to; without it, every email to the address is suppressed.
        #[arg(long)]
        list: Option<String>,
        /// Why it is suppressed.
        #[arg(long, value_enum, default_value_t = Reason::Manual)]
        reason: Reason,
        /// A note kept with the entry (a ticket, who asked).
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lift an entry so the address gets email again; the entry stays as history with the
    /// reason given.
    Lift {
        /// The address.
        email: String,
        /// The list of the entry; without it, the every-email entry.
        #[arg(long)]
        list: Option<String>,
        /// Why (required): kept with the entry.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Import a CSV of opt-outs (another tool's export works: a header row with an `email`
    /// or `Email Address` column, optionally `list`, `reason`, `note`). Exit 1 if any row was
    /// rejected (the others are imported).
    Import {
        /// The CSV file, or `-` for standard input.
        file: PathBuf,
        /// The list for rows that name none; without it, such rows apply to every email.
        #[arg(long)]
        list: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Export the list as CSV (the columns an import reads back).
    Export {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Include lifted entries (history).
        #[arg(long)]
        lifted: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn suppressions_cmd(cmd: SuppressionsCommand) -> Result<ExitCode> {
    match cmd {
        SuppressionsCommand::List {
            search,
            lifted,
            limit,
            after,
            json,
            client,
        } => {
            let query = SuppressionQuery {
                after,
                search,
                include_lifted: lifted,
                limit: limit.max(1),
            };
            let page = list(&Source::connect(&client).await?, &query).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print_table(&page, query.limit);
            }
            Ok(ExitCode::SUCCESS)
        }
        SuppressionsCommand::Add {
            email,
            list,
            reason,
            note,
            client,
        } => {
            // Checked here too, so a bad address is refused the same way with or without a server.
            let mut entry =
                Suppression::new(&email, list.as_deref(), reason, "cli").map_err(anyhow::Error::msg)?;
            entry.note = note.filter(|n| !n.trim().is_empty());
            let source = Source::connect(&client).await?;
            let added = match &source {
                Source::Api { .. } => {
                    let body = json!({"email": entry.email, "list": entry.list, "reason": entry.reason, "note": entry.note});
                    let resp = source
                        .request(reqwest::Method::POST, "/api/suppressions")
                        .json(&body)
                        .send()
                        .await?;
                    Source::answer(resp).await?["added"].as_bool() == Some(true)
                }
                Source::Store(store) => store.suppress(vec![entry.clone()]).await? > 0,
            };
            if added {
                println!("{} suppressed: {}", entry.email, entry.describe());
            } else {
                println!(
                    "{} was already suppressed for {}",
                    entry.email,
                    scope_words(&entry)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SuppressionsCommand::Lift {
            email,
            list,
            reason,
            client,
        } => {
            if reason.trim().is_empty() {
                bail!("say why the suppression is lifted: --reason \"…\"");
            }
            let email = crate::segment::normalize_email(&email).map_err(anyhow::Error::msg)?;
            let list = list.filter(|l| !l.is_empty() && l != suppression::EVERY_LIST);
            let source = Source::connect(&client).await?;
            let lifted = match &source {
                Source::Api { .. } => {
                    let mut q = vec![("reason", reason.clone())];
                    if let Some(l) = &list {
                        q.push(("list", l.clone()));
                    }
                    let path = format!(
                        "/api/suppressions/{}?{}",
                        urlencoding(&email),
                        serde_urlencoded::to_string(&q)?
                    );
                    let resp = source.request(reqwest::Method::DELETE, &path).send().await?;
                    if resp.status() == reqwest::StatusCode::NOT_FOUND {
                        false
                    } else {
                        Source::answer(resp).await?;
                        true
                    }
                }
                Source::Store(store) => store.lift(&email, list.as_deref(), &reason).await?,
            };
            let scope = list.map_or("every email".to_string(), |l| format!("list {l}"));
            if !lifted {
                bail!("{email} is not suppressed for {scope}");
            }
            println!("lifted: {email} gets {scope} again ({reason})");
            Ok(ExitCode::SUCCESS)
        }
        SuppressionsCommand::Import { file, list, client } => {
            let text = read_input(&file)?;
            import(&Source::connect(&client).await?, &text, list.as_deref()).await
        }
        SuppressionsCommand::Export { out, lifted, client } => {
            let source = Source::connect(&client).await?;
            let mut sink: Box<dyn Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            export(&source, lifted, &mut sink).await?;
            sink.flush()?;
            if let Some(path) = out {
                eprintln!("the suppression list is written to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list(source: &Source, query: &SuppressionQuery) -> Result<Vec<Suppression>> {
    Ok(match source {
        Source::Api { .. } => {
            let mut q = vec![("limit", query.limit.to_string())];
            if let Some(a) = &query.after {
                q.push(("after", a.clone()));
            }
            if let Some(s) = &query.search {
                q.push(("search", s.clone()));
            }
            if query.include_lifted {
                q.push(("lifted", "true".into()));
            }
            let body = source
                .get(&format!("/api/suppressions?{}", serde_urlencoded::to_string(&q)?))
                .await?;
            serde_json::from_value(body["suppressions"].clone())?
        }
        Source::Store(store) => store.suppression_list(query).await?,
    })
}

fn scope_words(s: &Suppression) -> String {
    s.list
        .as_ref()
        .map_or("every email".to_string(), |l| format!("list {l}"))
}

fn print_table(page: &[Suppression], limit: usize) {
    if page.is_empty() {
        println!("no suppressed addresses");
        return;
    }
    let width = page.iter().map(|s| s.email.len()).max().unwrap_or(0).max(5);
    let lists = page.iter().map(|s| s.scope().len()).max().unwrap_or(0).max(4);
    println!(
        "{:width$}  {:lists$}  {:12}  {:24}  SOURCE",
        "EMAIL", "LIST", "REASON", "SINCE"
    );
    for s in page {
        let mut line = format!(
            "{:width$}  {:lists$}  {:12}  {:24}  {}",
            s.email,
            s.scope(),
            s.reason.as_str(),
            s.at.to_string(),
            s.source
        );
        if let Some(note) = &s.note {
            line.push_str(&format!("  ({note})"));
        }
        if let Some(l) = &s.lifted {
            line.push_str(&format!("  lifted {} ({})", l.at, l.reason));
        }
        println!("{line}");
    }
    if page.len() == limit
        && let Some(last) = page.last()
    {
        println!("(more: --after '{}')", page_key(last));
    }
}

fn read_input(file: &std::path::Path) -> Result<String> {
    let mut bytes = Vec::new();
    if file.as_os_str() == "-" {
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    if bytes.len() > crate::server::suppressions::MAX_IMPORT {
        bail!(
            "{} is {} bytes; an import is at most {} — split the file",
            file.display(),
            bytes.len(),
            crate::server::suppressions::MAX_IMPORT
        );
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", file.display()))
}

/// Imports through the API or into the store; prints what happened and each rejected row.
async fn import(source: &Source, text: &str, list: Option<&str>) -> Result<ExitCode> {
    let answer: Value = match source {
        Source::Api { .. } => {
            let path = match list {
                Some(l) => format!(
                    "/api/suppressions/import?{}",
                    serde_urlencoded::to_string([("list", l)])?
                ),
                None => "/api/suppressions/import".to_string(),
            };
            let resp = source
                .request(reqwest::Method::POST, &path)
                .header(reqwest::header::CONTENT_TYPE, "text/csv")
                .body(text.to_string())
                .send()
                .await?;
            Source::answer(resp).await?
        }
        Source::Store(store) => {
            let read = suppression::from_csv(text, list, "import").map_err(anyhow::Error::msg)?;
            json!(suppress::import(store.as_ref(), read, usize::MAX).await?)
        }
    };
    let rejected = answer["rejected_count"].as_u64().unwrap_or(0);
    println!(
        "{} row(s) read: {} added, {} already suppressed, {rejected} rejected",
        answer["rows"], answer["added"], answer["already_suppressed"]
    );
    let shown = answer["rejected"].as_array().cloned().unwrap_or_default();
    for r in &shown {
        eprintln!("line {}: {}", r["line"], r["error"].as_str().unwrap_or("?"));
    }
    if rejected > shown.len() as u64 {
        eprintln!("… and {} more rejected rows", rejected - shown.len() as u64);
    }
    Ok(if rejected > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes the list as CSV, a page at a time.
async fn export(source: &Source, lifted: bool, out: &mut dyn Write) -> Result<()> {
    match source {
        Source::Api { .. } => {
            let path = format!(
                "/api/suppressions?format=csv{}",
                if lifted { "&lifted=true" } else { "" }
            );
            let mut resp = source.request(reqwest::Method::GET, &path).send().await?;
            if !resp.status().is_success() {
                Source::answer(resp).await?;
                bail!("the server refused the export");
            }
            while let Some(chunk) = resp.chunk().await.context("the export was cut short")? {
                out.write_all(&chunk)?;
            }
            Ok(())
        }
        Source::Store(store) => {
            let mut query = SuppressionQuery {
                include_lifted: lifted,
                limit: EXPORT_PAGE,
                ..Default::default()
            };
            loop {
                let page = store.suppression_list(&query).await?;
                out.write_all(suppression::to_csv(&page, query.after.is_none()).as_bytes())?;
                if page.len() < EXPORT_PAGE {
                    return Ok(());
                }
                query.after = page.last().map(page_key);
            }
        }
    }
}

/// An address as one URL path segment.
fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
