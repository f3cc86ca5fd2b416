//! `hookflow send FLOW --payload FILE`: a test delivery to a flow's webhook on the running
//! server, signed the way the flow's sender signs (with the secret from the environment
//! variable the flow's `verify` names), so a flow that verifies can be tried without the real
//! sender. Prints the server's answer; exit 0 for a 2xx, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::flow::load_dir;
use crate::settings::{Paths, StoreArgs, UrlArgs};
use crate::verify::{key_bytes, sign};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The flow whose webhook receives the delivery.
    pub flow: String,
    /// The body to send: a file, or `-` for standard input.
    #[arg(long)]
    pub payload: PathBuf,
    /// An extra header, `Name: value` (repeatable), e.g. `-H 'X-WC-Webhook-Topic: order.created'`.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The body's content type.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    #[command(flatten)]
    pub paths: Paths,
    #[command(flatten)]
    pub urls: UrlArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn send_cmd(args: SendArgs) -> Result<ExitCode> {
    let (set, errors) = load_dir(&args.paths.flows_dir, &args.paths.templates_dir);
    let Some(flow) = set.get(&args.flow) else {
        super::print_errors(&errors);
        bail!("no flow `{}` in {}", args.flow, args.paths.flows_dir.display());
    };
    let Some(webhook) = flow.webhook() else {
        bail!("flow `{}` has no webhook trigger", args.flow);
    };
    let body = if args.payload.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
        b
    } else {
        std::fs::read(&args.payload).with_context(|| format!("cannot read {}", args.payload.display()))?
    };
    let tokens = super::url_tokens(&args.paths, &args.urls, &args.store, None).await?;
    let url = format!(
        "{}/hooks/{}/{}",
        args.urls.base_url(),
        args.flow,
        tokens.token(&args.flow)
    );
    let mut req = reqwest::Client::new()
        .post(&url)
        .header("content-type", &args.content_type);
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("`{h}`: a header is `Name: value`"))?;
        req = req.header(k.trim(), v.trim());
    }
    if let Some(v) = &webhook.verify {
        let secret = v
            .secret_env
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|s| !s.is_empty()))
            .with_context(|| {
                format!(
                    "flow `{}` verifies signatures: set {} to the secret the server has",
                    args.flow,
                    v.secret_env.join(" or ")
                )
            })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id = format!("msg_{}", crate::run::new_run_id());
        for (k, v) in sign(&v.scheme, &key_bytes(&v.scheme, &secret), &id, now, &body) {
            req = req.header(k, v);
        }
    }
    let resp = req
        .body(body)
        .send()
        .await
        .with_context(|| format!("no hookflow server answers at {}", args.urls.base_url()))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    println!("{} {text}", status.as_u16());
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
