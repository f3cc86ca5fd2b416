//! `hookflow send FLOW --payload FILE`: a test delivery to a flow's webhook on the running
//! server, signed the way the flow's sender signs (with the secret from the environment
//! variable the flow's `verify` names), so a flow that verifies can be tried without the real
//! sender, with the headers that sender adds (a delivery id, its User-Agent). The flow's URL
//! comes from the running server's API, else from the server's secret (`--secret`, the
//! shared database, or `{data}/secret` — never created here). Prints the server's answer;
//! exit 0 for a 2xx, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::flow::load_dir;
use crate::settings::{Paths, StoreArgs, UrlArgs};
use crate::verify::{key_bytes, sender_headers, sign};

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
    /// For a flow that checks a public-key signature — SendGrid's (a P-256 key, PKCS#8 PEM) or
    /// Discord's (an Ed25519 key: a 32-byte seed in hex, or PKCS#8 PEM) — the private key of a
    /// key pair whose public key the server has; `send` signs with it as the sender signs with
    /// its own.
    #[arg(long = "signing-key")]
    pub signing_key: Option<PathBuf>,
    /// The API's bearer token, when the server has one: the flow's URL is asked of the server.
    #[arg(long = "api-token", env = "HOOKFLOW_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<crate::secret::Secret>,
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
    let (url, from) = webhook_url(&args).await?;
    let mut headers = reqwest::header::HeaderMap::new();
    let mut set = |k: &str, v: &str| -> Result<()> {
        let name = reqwest::header::HeaderName::from_bytes(k.trim().as_bytes())
            .with_context(|| format!("`{k}` is not a header name"))?;
        let value = reqwest::header::HeaderValue::from_str(v.trim())
            .with_context(|| format!("`{v}` is not a header value"))?;
        headers.insert(name, value);
        Ok(())
    };
    set("content-type", &args.content_type)?;
    let mut body = body;
    if let Some(v) = &webhook.verify {
        let public_key = match v.scheme {
            crate::verify::Scheme::SendGrid => Some((
                "SendGrid",
                "a P-256 key (PKCS#8 PEM)",
                "or use the \"Test your integration\" button in SendGrid's Event Webhook settings",
            )),
            crate::verify::Scheme::Discord => Some((
                "Discord",
                "an Ed25519 key (a 32-byte seed in hex, or PKCS#8 PEM)",
                "or let Discord send its PING by saving the Interactions Endpoint URL",
            )),
            _ => None,
        };
        if let Some((sender, kind, otherwise)) = public_key {
            let Some(path) = &args.signing_key else {
                bail!(
                    "flow `{}` checks {sender}'s signature, which needs a private key: give --signing-key with {kind} whose public key the server has in {}, {otherwise}",
                    args.flow,
                    v.sources()
                );
            };
            let pem =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let now = crate::time::unix_secs();
            for (k, val) in sender_headers(&v.scheme, "public-key", now) {
                set(&k, &val)?;
            }
            let signed = match v.scheme {
                crate::verify::Scheme::Discord => crate::verify::discord::sign(&pem, now, &body),
                _ => crate::verify::sign_ecdsa(&pem, now, &body),
            };
            for (k, val) in signed.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))? {
                set(&k, &val)?;
            }
        } else {
            let secret = v.secrets().into_iter().next().with_context(|| {
                format!(
                    "flow `{}` verifies signatures: set {} to the secret the server has",
                    args.flow,
                    v.sources()
                )
            })?;
            let now = crate::time::unix_secs();
            let id = format!("msg_{}", crate::run::new_run_id());
            for (k, v) in sender_headers(&v.scheme, &id, now) {
                set(&k, &v)?;
            }
            let key = key_bytes(&v.scheme, &secret);
            if let Some(signed) = crate::verify::sign_body(&v.scheme, &key, &id, now, &body) {
                body = signed;
            }
            let target = crate::verify::Target {
                method: "POST",
                url: &url,
            };
            for (k, v) in sign(&v.scheme, &target, &key, &id, now, &body) {
                set(&k, &v)?;
            }
        }
    }
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("`{h}`: a header is `Name: value`"))?;
        set(k, v)?;
    }
    let req = reqwest::Client::new().post(&url).headers(headers);
    let resp = req
        .body(body)
        .send()
        .await
        .with_context(|| format!("no hookflow server answers at {}", args.urls.base_url()))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    println!("{} {text}", status.as_u16());
    if status == reqwest::StatusCode::NOT_FOUND {
        eprintln!(
            "note: the URL came from {from}; a 404 means the server at {} derives its URLs from \
             another secret (run this where the server runs, or give its --data or --secret)",
            args.urls.base_url()
        );
    }
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The flow's webhook URL, and where it came from: asked of the running server (it knows its
/// own secret), else derived from the secret the server uses.
async fn webhook_url(args: &SendArgs) -> Result<(String, String)> {
    let base = args.urls.base_url();
    let api = format!("http://{}/api/flows/{}", args.urls.listen, args.flow);
    let mut req = reqwest::Client::new().get(&api);
    if let Some(t) = &args.api_token {
        req = req.bearer_auth(t.expose());
    }
    if let Ok(resp) = req.send().await
        && resp.status().is_success()
        && let Ok(v) = resp.json::<serde_json::Value>().await
        && let Some(path) = v["path"].as_str()
    {
        return Ok((format!("{base}{path}"), format!("the running server ({api})")));
    }
    let (tokens, from) = super::url_tokens(
        &args.paths,
        &args.urls,
        &args.store,
        None,
        super::SecretFile::ReadOnly,
    )
    .await?;
    Ok((
        format!("{base}/hooks/{}/{}", args.flow, tokens.token(&args.flow)),
        from,
    ))
}
