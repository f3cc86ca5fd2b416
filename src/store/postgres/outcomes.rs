//! Runs' outcomes and lease renewals from every worker of this instance, committed together
//! (issue 35): one task takes every save and renewal waiting, writes them with one `UPDATE …
//! FROM unnest(…)` in one transaction, and answers each. Each used to be a transaction of its
//! own — four or five round trips and a WAL flush per executed action.
//!
//! Only what that one statement can do is grouped: a save without side effects (no segment
//! change, event, wait index or suppression: those keep their own transaction, [`groupable`]),
//! of a run that holds no ordering lane when it ends (a lane's successor is released under the
//! lane's lock, first in the lock order). A member the statement did not write — its lease was
//! lost, or it ends a lane — is saved on its own afterwards, which answers `LeaseLost` as
//! before. If the group's transaction fails, each member is tried on its own, so one bad member
//! costs the others only a retry.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::queue::{self, db_now_ms};
use super::{Pool, in_tx, ms, next_group, progress, within};
use crate::run::Run;
use crate::store::{Effects, Lease, Next, Result, StoreError};
use crate::time::Ts;

/// Most members in one transaction.
const MAX_GROUP: usize = 256;
/// Saves waiting for the task, at most (workers wait beyond it).
const QUEUE: usize = 4096;

/// What a member writes.
#[derive(Debug)]
pub(super) enum Write {
    /// A save: the run's new state and what happens to its queue entry.
    Save { run: Box<Run>, next: Next },
    /// A lease renewal.
    Extend { lease_for: Duration },
}

pub(super) struct Member {
    lease: Lease,
    write: Write,
    reply: oneshot::Sender<Result<Option<String>>>,
}

/// Whether a save with these effects can be grouped (see the module docs).
pub(super) fn groupable(effects: &Effects) -> bool {
    effects.segment_ops.is_empty()
        && effects.events.is_empty()
        && effects.waits.is_empty()
        && effects.suppress.is_empty()
}

pub(super) fn start(pool: PgPool, deadline: Duration) -> mpsc::Sender<Member> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(group_loop(pool, rx, deadline));
    tx
}

/// Writes `write` with the next group; answers the exit requested meanwhile (a save that
/// continues) or `None`.
pub(super) async fn submit(to: &mpsc::Sender<Member>, lease: &Lease, write: Write) -> Result<Option<String>> {
    let (reply, rx) = oneshot::channel();
    to.send(Member {
        lease: lease.clone(),
        write,
        reply,
    })
    .await
    .map_err(|_| StoreError::Closed)?;
    rx.await.map_err(|_| StoreError::Closed)?
}

async fn group_loop(pool: PgPool, mut rx: mpsc::Receiver<Member>, deadline: Duration) {
    let store = Pool { pool };
    while let Some(group) = next_group(&mut rx, MAX_GROUP).await {
        let rows = match rows(&group) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                for m in group {
                    let _ = m.reply.send(Err(StoreError::Corrupt(msg.clone())));
                }
                continue;
            }
        };
        let written = within(deadline, async {
            in_tx!(store, |tx| write_group(&mut tx, &rows))
        })
        .await;
        match written {
            Ok(done) => {
                for m in group {
                    match done.get(&m.lease.run_id) {
                        Some(exit) => {
                            let _ = m.reply.send(Ok(exit.clone()));
                        }
                        None => alone(&store, m).await,
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, members = group.len(), "a group of saves failed; saving each on its own");
                for m in group {
                    alone(&store, m).await;
                }
            }
        }
    }
}

/// A member saved in a transaction of its own, as saves were before grouping.
async fn alone(store: &Pool, m: Member) {
    let answer = match &m.write {
        Write::Save { run, next } => in_tx!(store, |tx| queue::save(&mut tx, &m.lease, run, *next)),
        Write::Extend { lease_for } => queue::extend_lease(&store.pool, &m.lease, *lease_for)
            .await
            .map(|()| None),
    };
    let _ = m.reply.send(answer);
}

/// The group as the statement's columns.
struct Rows {
    ids: Vec<String>,
    tokens: Vec<i64>,
    /// 0 continue, 1 retry, 2 done, 3 extend the lease.
    kinds: Vec<i32>,
    statuses: Vec<Option<String>>,
    records: Vec<Option<String>>,
    dues: Vec<Option<i64>>,
    lease_ms: Vec<i64>,
    finished: Vec<Option<i64>>,
}

fn rows(group: &[Member]) -> Result<Rows> {
    let n = group.len();
    let mut r = Rows {
        ids: Vec::with_capacity(n),
        tokens: Vec::with_capacity(n),
        kinds: Vec::with_capacity(n),
        statuses: Vec::with_capacity(n),
        records: Vec::with_capacity(n),
        dues: Vec::with_capacity(n),
        lease_ms: Vec::with_capacity(n),
        finished: Vec::with_capacity(n),
    };
    let now = Ts::now();
    for m in group {
        r.ids.push(m.lease.run_id.clone());
        r.tokens.push(m.lease.token as i64);
        let (kind, status, record, due, lease_for, finished) = match &m.write {
            Write::Save { run, next } => {
                let (status, record) = (Some(run.status.as_str().to_string()), Some(progress(run)?));
                match next {
                    Next::Continue { lease_for } => (
                        0,
                        status,
                        record,
                        Some(ms(now.plus(*lease_for))),
                        *lease_for,
                        None,
                    ),
                    Next::RetryAt(at) => (1, status, record, Some(ms(*at)), Duration::ZERO, None),
                    Next::Done => (
                        2,
                        status,
                        record,
                        None,
                        Duration::ZERO,
                        Some(ms(run.finished_at.unwrap_or(run.updated_at))),
                    ),
                }
            }
            Write::Extend { lease_for } => (3, None, None, Some(ms(now.plus(*lease_for))), *lease_for, None),
        };
        r.kinds.push(kind);
        r.statuses.push(status);
        r.records.push(record);
        r.dues.push(due);
        r.lease_ms.push(lease_for.as_millis() as i64);
        r.finished.push(finished);
    }
    Ok(r)
}

/// Writes every member whose lease holds (and, for an end, that holds no lane); returns them
/// with the exit requested meanwhile for those that continue.
async fn write_group(
    tx: &mut PgConnection,
    r: &Rows,
) -> Result<std::collections::HashMap<String, Option<String>>> {
    // A run asked to exit and saved to retry is due at once (as `queue::save` does).
    let now = ms(Ts::now());
    let written: Vec<(String, i32, Option<String>)> = sqlx::query_as(concat!(
        "UPDATE hookflow_runs AS r SET
             status = COALESCE(s.status, r.status),
             record = COALESCE(s.record, r.record),
             due = CASE s.kind WHEN 1 THEN (CASE WHEN r.exit_req IS NULL THEN s.due ELSE $9 END)
                               ELSE s.due END,
             lease_token = CASE WHEN s.kind IN (0, 3) THEN r.lease_token END,
             lease_until = CASE WHEN s.kind IN (0, 3) THEN ",
        db_now_ms!(),
        " + s.lease_ms END,
             finished_at = CASE WHEN s.kind = 2 THEN s.finished ELSE r.finished_at END,
             exit_req = CASE WHEN s.kind = 2 THEN NULL ELSE r.exit_req END
         FROM unnest($1::text[], $2::bigint[], $3::int[], $4::text[], $5::text[], $6::bigint[],
                     $7::bigint[], $8::bigint[])
              AS s(id, token, kind, status, record, due, lease_ms, finished)
         WHERE r.id = s.id AND r.lease_token = s.token AND (s.kind <> 2 OR r.lane IS NULL)
         RETURNING r.id, s.kind, r.exit_req"
    ))
    .bind(&r.ids)
    .bind(&r.tokens)
    .bind(&r.kinds)
    .bind(&r.statuses)
    .bind(&r.records)
    .bind(&r.dues)
    .bind(&r.lease_ms)
    .bind(&r.finished)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    Ok(written
        .into_iter()
        .map(|(id, kind, exit)| (id, if kind == 0 { exit } else { None }))
        .collect())
}
