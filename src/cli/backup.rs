//! `hookflow backup` and `hookflow restore`: a consistent copy of the embedded store taken
//! while a server serves from it (through the server's API; directly when no server runs),
//! and that copy brought back into an empty data directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;

use crate::settings::ClientArgs;
use crate::store::{BackupInfo, RunQueue, SledStore};

pub(super) async fn backup_cmd(to: &Path, client: &ClientArgs) -> Result<ExitCode> {
    if client
        .store
        .postgres_url()
        .map_err(|e| anyhow::anyhow!(e))?
        .is_some()
    {
        bail!("a PostgreSQL store is backed up with the database's tools (pg_dump, base backups)");
    }
    let partial = partial_path(to);
    let base = client.base_url();
    let http = reqwest::Client::new();
    let info = match http.get(format!("{base}/healthz")).send().await {
        Ok(_) => {
            let mut req = http.post(format!("{base}/api/backup"));
            if let Some(t) = &client.api_token {
                req = req.bearer_auth(t.expose());
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("asking {base} for a backup"))?;
            if !resp.status().is_success() {
                let status = resp.status();
                bail!(
                    "the server refused the backup ({status}): {}",
                    resp.text().await.unwrap_or_default()
                );
            }
            let info: Option<BackupInfo> = resp
                .headers()
                .get("x-hookflow-backup")
                .and_then(|v| serde_json::from_slice(v.as_bytes()).ok());
            let mut file = tokio::fs::File::create(&partial)
                .await
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let mut resp = resp;
            while let Some(chunk) = resp.chunk().await.context("the download broke off")? {
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            info.context("the server did not say what the backup holds")?
        }
        Err(e) if e.is_connect() => {
            let dir = client.data_dir().join("store");
            if !dir.join("db").exists() {
                bail!(
                    "no server answers at {base} and there is no store at {}",
                    dir.display()
                );
            }
            let store = SledStore::open(&dir, Default::default())
                .with_context(|| format!("no server answers at {base}, and the store could not be opened"))?;
            let info = store.backup(&partial).await?;
            store.sync().await?;
            info
        }
        Err(e) => return Err(e).with_context(|| format!("cannot reach {base}")),
    };
    std::fs::rename(&partial, to).with_context(|| format!("cannot write {}", to.display()))?;
    let size = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup written to {}: {} entries, {} runs not yet started, URL secret {}, {} bytes",
        to.display(),
        info.entries,
        info.pending_runs,
        if info.url_secret {
            "included"
        } else {
            "not included"
        },
        size
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn restore_cmd(from: &Path, data: &Path) -> Result<ExitCode> {
    let info = SledStore::restore(from, data)
        .await
        .with_context(|| format!("restoring {} into {}", from.display(), data.display()))?;
    println!(
        "restored into {}: {} entries, {} runs not yet started, taken {} by {}",
        data.display(),
        info.entries,
        info.pending_runs,
        info.created_at,
        info.hookflow
    );
    Ok(ExitCode::SUCCESS)
}

/// `hookflow store check`.
pub(super) fn check_cmd(data: &Path, json: bool) -> ExitCode {
    let report = match crate::store::sled::check::check(&data.join("store")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        println!(
            "store {}: layout {}, {} runs ({} finished), {} accepted runs still in the intake journal ({} segment file(s)), {} waiting runs parked",
            report.store.display(),
            report.layout.as_deref().unwrap_or("none"),
            report.runs,
            report.finished,
            report.pending,
            report.journal.len(),
            report.parked
        );
        for n in &report.notes {
            println!("note: {n}");
        }
        for p in &report.problems {
            println!("damaged: {p}");
        }
        println!("{}", if report.damaged() { "DAMAGED" } else { "intact" });
    }
    if report.damaged() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn partial_path(to: &Path) -> PathBuf {
    let mut name = to.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    to.with_file_name(name)
}
