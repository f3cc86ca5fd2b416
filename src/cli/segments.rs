//! `hookflow segments list` and `hookflow segments show NAME`: through the running server's
//! API, or the store directly when no server runs.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::Source;
use crate::segment::{Member, SegmentInfo};
use crate::settings::ClientArgs;

#[derive(Debug, Subcommand)]
pub enum SegmentsCommand {
    /// List segments with their member counts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a segment's members by email.
    Show {
        /// The segment's name (as `segments list` prints it).
        name: String,
        /// At most this many members.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this email (the last one of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn segments_cmd(cmd: SegmentsCommand) -> Result<ExitCode> {
    match cmd {
        SegmentsCommand::List { json, client } => {
            let source = Source::connect(&client).await?;
            let segments: Vec<SegmentInfo> = match &source {
                Source::Api { .. } => {
                    serde_json::from_value(source.get("/api/segments").await?["segments"].clone())?
                }
                Source::Store(store) => store.segments().await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&segments)?);
            } else if segments.is_empty() {
                println!("no segments yet");
            } else {
                let width = segments.iter().map(|s| s.name.len()).max().unwrap_or(0).max(7);
                println!("{:width$}  MEMBERS", "SEGMENT");
                for s in &segments {
                    println!("{:width$}  {}", s.name, s.members);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SegmentsCommand::Show {
            name,
            limit,
            after,
            json,
            client,
        } => {
            let source = Source::connect(&client).await?;
            let members: Vec<Member> = match &source {
                Source::Api { .. } => {
                    let mut q = vec![("limit", limit.to_string())];
                    if let Some(a) = &after {
                        q.push(("after", a.clone()));
                    }
                    let qs = serde_urlencoded::to_string(&q)?;
                    let body = source.get(&format!("/api/segments/{name}/members?{qs}")).await?;
                    serde_json::from_value(body["members"].clone())?
                }
                Source::Store(store) => store.segment_members(&name, after.as_deref(), limit).await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&members)?);
            } else {
                let width = members
                    .iter()
                    .map(|m| m.contact.email.len())
                    .max()
                    .unwrap_or(0)
                    .max(5);
                println!("{:width$}  {:24}  ATTRIBUTES", "EMAIL", "ADDED");
                for m in &members {
                    let attrs = serde_json::Value::Object(m.contact.attributes.clone());
                    println!(
                        "{:width$}  {:24}  {attrs}",
                        m.contact.email,
                        m.added_at.to_string()
                    );
                }
                if members.len() == limit
                    && let Some(last) = members.last()
                {
                    println!("(more: --after {})", last.contact.email);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
