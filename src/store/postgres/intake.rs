//! Accepted runs, written with group commit: one task takes every run waiting to be stored,
//! writes them in one transaction and answers each sender once it has committed — so under
//! load many webhooks share one commit (one WAL flush), as the embedded store's journal does.
//!
//! Runs with an ordering key, and deliveries checked for duplicates, take their row locks in
//! the same transaction; a delivery seen within its window is answered with the first run's id.

use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::{Pool, in_tx, input, ms, next_group, progress, queue, within};
use crate::run::Run;
use crate::store::{Result, StoreError};
use crate::time::Ts;

/// Most runs in one transaction.
const MAX_GROUP: usize = 512;
/// Runs waiting to be written before senders are made to wait for room (back-pressure).
const QUEUE: usize = 4096;

/// One run to store, with its dedupe key and window when the flow deduplicates.
pub(super) struct Append {
    run: Run,
    once: Option<(String, Ts)>,
    reply: oneshot::Sender<Result<Option<String>>>,
}

/// Starts the group-commit task. A group not committed within `deadline` is given up (its
/// transaction is rolled back when the connection is next heard, unless its `COMMIT` was
/// already on the wire) and its senders answered `503`:
/// on a network that black-holes packets without a reset, a query waits for TCP's retries —
/// minutes — and `statement_timeout` is never heard by the server.
pub(super) fn start(pool: PgPool, deadline: std::time::Duration) -> mpsc::Sender<Append> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(intake_loop(pool, rx, deadline));
    tx
}

/// Stores `run` (unless its dedupe key was seen: then the first run's id), durable on return.
pub(super) async fn submit(
    intake: &mpsc::Sender<Append>,
    run: &Run,
    once: Option<(String, Ts)>,
) -> Result<Option<String>> {
    let (reply, rx) = oneshot::channel();
    intake
        .send(Append {
            run: run.clone(),
            once,
            reply,
        })
        .await
        .map_err(|_| StoreError::Closed)?;
    rx.await.map_err(|_| StoreError::Closed)?
}

async fn intake_loop(pool: PgPool, mut rx: mpsc::Receiver<Append>, deadline: std::time::Duration) {
    let store = Pool { pool };
    while let Some(group) = next_group(&mut rx, MAX_GROUP).await {
        let result = within(deadline, async {
            in_tx!(store, |tx| write_group(&mut tx, &group))
        })
        .await;
        match result {
            Ok(answers) => {
                for (a, answer) in group.into_iter().zip(answers) {
                    let _ = a.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, runs = group.len(), "storing accepted runs failed");
                let msg = e.to_string();
                for a in group {
                    let _ = a.reply.send(Err(StoreError::Backend(msg.clone())));
                }
            }
        }
    }
}

/// Plain runs in one multi-row insert; the others one by one.
async fn write_group(tx: &mut PgConnection, group: &[Append]) -> Result<Vec<Option<String>>> {
    let mut answers = vec![None; group.len()];
    let plain: Vec<&Run> = group
        .iter()
        .filter(|a| a.once.is_none() && a.run.order_key.is_none() && a.run.exit_keys.is_empty())
        .map(|a| &a.run)
        .collect();
    if !plain.is_empty() {
        let ids: Vec<&str> = plain.iter().map(|r| r.id.as_str()).collect();
        let flows: Vec<&str> = plain.iter().map(|r| r.flow.as_str()).collect();
        let statuses: Vec<&str> = plain.iter().map(|r| r.status.as_str()).collect();
        let created: Vec<i64> = plain.iter().map(|r| ms(r.created_at)).collect();
        let records = plain
            .iter()
            .map(|r| progress(r))
            .collect::<Result<Vec<String>>>()?;
        let inputs = plain.iter().map(|r| input(r)).collect::<Result<Vec<String>>>()?;
        sqlx::query(
            "WITH runs AS (
                 INSERT INTO hookflow_runs (id, flow, status, created_at, record, due)
                 SELECT id, flow, status, created, record, created
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[])
                      AS r(id, flow, status, created, record))
             , inputs AS (
                 INSERT INTO hookflow_run_inputs (id, input) SELECT * FROM unnest($1::text[], $6::text[]))
             SELECT pg_notify('hookflow_runs', '')",
        )
        .bind(&ids)
        .bind(&flows)
        .bind(&statuses)
        .bind(&created)
        .bind(&records)
        .bind(&inputs)
        .execute(&mut *tx)
        .await?;
    }
    for (i, a) in group.iter().enumerate() {
        if a.once.is_none() && a.run.order_key.is_none() && a.run.exit_keys.is_empty() {
            continue;
        }
        answers[i] = match &a.once {
            None => {
                queue::insert_run(tx, &a.run).await?;
                None
            }
            Some((key, expires)) => insert_once(tx, &a.run, key, *expires).await?,
        };
    }
    if plain.is_empty() {
        super::announce::announce(tx).await?; // (the bulk insert above announces its group)
    }
    Ok(answers)
}

/// Claims the dedupe key (new, or its window over) and stores the run; or names the first run.
async fn insert_once(tx: &mut PgConnection, run: &Run, key: &str, expires: Ts) -> Result<Option<String>> {
    let now = ms(Ts::aged_now());
    let ours: Option<(String,)> = sqlx::query_as(
        "INSERT INTO hookflow_dedupe (flow, key, run_id, expires) VALUES ($1, $2, $3, $4)
         ON CONFLICT (flow, key) DO UPDATE SET run_id = EXCLUDED.run_id, expires = EXCLUDED.expires
             WHERE hookflow_dedupe.expires <= $5
         RETURNING run_id",
    )
    .bind(&run.flow)
    .bind(key)
    .bind(&run.id)
    .bind(ms(expires))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if ours.is_some() {
        queue::insert_run(tx, run).await?;
        return Ok(None);
    }
    let (first,): (String,) =
        sqlx::query_as("SELECT run_id FROM hookflow_dedupe WHERE flow = $1 AND key = $2")
            .bind(&run.flow)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
    Ok(Some(first))
}
