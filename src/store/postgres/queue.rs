//! Runs and their queue on PostgreSQL: inserting (behind an ordering lane), claiming with
//! leases, saving progress, exits, listing and pruning. Each function runs inside the caller's
//! transaction.
//!
//! Lock order, the same everywhere so two transactions never wait on each other in a circle:
//! a lane's advisory lock first, then run rows. Claims take rows only (`SKIP LOCKED`).

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use super::{input, ms, progress, read_run};
use crate::run::{Run, RunStatus};
use crate::store::{
    ClaimRequest, Claimed, ExitMatch, ExitedRun, Lease, Next, Result, RunFilter, StoreError, WaitOp,
};
use crate::time::Ts;

/// The lane of an ordering key: the flow and a hash of the key (keys may be long).
pub(super) fn lane_of(flow: &str, key: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(key.as_bytes());
    format!("{flow}:{}", hex::encode(&h[..12]))
}

/// Holds `name` (a lane, a capped flow, a contact) until the transaction ends.
pub(super) async fn lock(tx: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Stores a new run, due at once unless an earlier run of its lane is unfinished, and indexes
/// its exits.
pub(super) async fn insert_run(tx: &mut PgConnection, run: &Run) -> Result<()> {
    let lane = run.order_key.as_deref().map(|k| lane_of(&run.flow, k));
    let mut due = Some(ms(run.created_at));
    if let Some(lane) = &lane {
        lock(tx, lane).await?;
        let (busy,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM hookflow_runs WHERE lane = $1)")
            .bind(lane)
            .fetch_one(&mut *tx)
            .await?;
        if busy {
            due = None; // waits behind an earlier run of its lane
        }
    }
    let inserted = sqlx::query(
        "INSERT INTO hookflow_runs (id, flow, status, created_at, record, due, lane, lane_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $7::text IS NULL THEN NULL ELSE nextval('hookflow_lane_seq') END)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&run.id)
    .bind(&run.flow)
    .bind(run.status.as_str())
    .bind(ms(run.created_at))
    .bind(progress(run)?)
    .bind(due)
    .bind(&lane)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Duplicate(run.id.clone()));
    }
    sqlx::query("INSERT INTO hookflow_run_inputs (id, input) VALUES ($1, $2)")
        .bind(&run.id)
        .bind(input(run)?)
        .execute(&mut *tx)
        .await?;
    index_exits(tx, &run.flow, &run.id, &run.exit_keys).await
}

async fn index_exits(tx: &mut PgConnection, flow: &str, id: &str, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO hookflow_exit_index (flow, key, run_id) SELECT $1, k, $2 FROM unnest($3::text[]) AS k
         ON CONFLICT DO NOTHING",
    )
    .bind(flow)
    .bind(id)
    .bind(keys)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The database's clock, in ms since the Unix epoch: leases are written and compared with it,
/// so instances whose clocks disagree never take each other's runs (docs/operations.md,
/// "Time"). A run's `due` stays on the instances' clock (which follows the database's when
/// far off it): it orders the queue, and a leased run is due again only when its lease has
/// ended on the database's clock.
///
/// (A macro, so queries are `concat!`ed at compile time rather than formatted per call.)
macro_rules! db_now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}
pub(super) use db_now_ms;

/// Runs of flows whose cap is reached are left for later; a flow gets at most its fair share
/// of the batch while others have due runs (then the batch is filled with those passed over).
pub(super) async fn claim(tx: &mut PgConnection, req: &ClaimRequest) -> Result<Vec<Claimed>> {
    let now = ms(req.now);
    let look = i64::try_from(req.limit.saturating_mul(4)).unwrap_or(i64::MAX);
    let candidates: Vec<(String, String)> = sqlx::query_as(concat!(
        "SELECT id, flow FROM hookflow_runs WHERE due <= $1 AND (lease_until IS NULL OR lease_until <= ",
        db_now_ms!(),
        ")
         ORDER BY due LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(now)
    .bind(look)
    .fetch_all(&mut *tx)
    .await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // Caps hold across instances: claims of a capped flow take its lock, then count leases.
    let mut capped: Vec<&String> = candidates
        .iter()
        .map(|(_, f)| f)
        .filter(|f| req.caps.contains_key(*f))
        .collect();
    capped.sort();
    capped.dedup();
    let mut active = std::collections::BTreeMap::new();
    for flow in capped {
        lock(tx, &format!("cap:{flow}")).await?;
        let (n,): (i64,) = sqlx::query_as(concat!(
            "SELECT count(*) FROM hookflow_runs WHERE flow = $1 AND lease_until > ",
            db_now_ms!()
        ))
        .bind(flow)
        .fetch_one(&mut *tx)
        .await?;
        active.insert(flow.clone(), n as u32);
    }
    let mut picked = Vec::new();
    let mut passed_over = Vec::new();
    let mut in_batch = std::collections::BTreeMap::<&str, usize>::new();
    for (id, flow) in &candidates {
        if picked.len() >= req.limit {
            break;
        }
        if let Some(cap) = req.caps.get(flow) {
            let n = active.entry(flow.clone()).or_insert(0);
            if *n >= *cap {
                continue;
            }
            *n += 1;
        }
        let share = in_batch.entry(flow).or_insert(0);
        if req.fair_share > 0 && *share >= req.fair_share {
            passed_over.push(id.clone());
            continue;
        }
        *share += 1;
        picked.push(id.clone());
    }
    let room = req.limit.saturating_sub(picked.len());
    picked.extend(passed_over.into_iter().take(room));
    let due = ms(req.now.plus(req.lease_for));
    let lease_ms = req.lease_for.as_millis() as i64;
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT r.id, r.record, r.exit_req, i.input FROM hookflow_runs AS r
         LEFT JOIN hookflow_run_inputs AS i ON i.id = r.id WHERE r.id = ANY($1)",
    )
    .bind(&picked)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    let (mut ids, mut tokens, mut records) = (Vec::new(), Vec::new(), Vec::new());
    // Runs stored whole (before migration 0006, or by an instance of an earlier release):
    // their inputs are written apart now, as their progress is.
    let (mut whole_ids, mut whole_inputs) = (Vec::new(), Vec::new());
    for (id, record, exit_req, input_json) in rows {
        let mut run = read_run(&id, &record, input_json.as_deref())?;
        if input_json.is_none() {
            whole_ids.push(id.clone());
            whole_inputs.push(input(&run)?);
        }
        run.status = RunStatus::Running;
        run.next_attempt_at = None;
        run.updated_at = req.now;
        let token = rand::random::<i64>() & i64::MAX;
        ids.push(id.clone());
        tokens.push(token);
        records.push(progress(&run)?);
        out.push(Claimed {
            run,
            lease: Lease {
                run_id: id,
                token: token as u64,
            },
            exit_requested: exit_req,
            exit_requested_at: None,
        });
    }
    sqlx::query(concat!(
        "UPDATE hookflow_runs AS r SET status = 'running', record = c.record, lease_token = c.token,
                lease_until = ",
        db_now_ms!(),
        " + $5, due = $4
         FROM unnest($1::text[], $2::bigint[], $3::text[]) AS c(id, token, record) WHERE r.id = c.id"
    ))
    .bind(&ids)
    .bind(&tokens)
    .bind(&records)
    .bind(due)
    .bind(lease_ms)
    .execute(&mut *tx)
    .await?;
    if !whole_ids.is_empty() {
        sqlx::query(
            "INSERT INTO hookflow_run_inputs (id, input) SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&whole_ids)
        .bind(&whole_inputs)
        .execute(&mut *tx)
        .await?;
    }
    Ok(out)
}

pub(super) async fn extend_lease(pool: &PgPool, lease: &Lease, lease_for: Duration) -> Result<()> {
    let done = sqlx::query(concat!(
        "UPDATE hookflow_runs SET lease_until = ",
        db_now_ms!(),
        " + $3, due = $4 WHERE id = $1 AND lease_token = $2"
    ))
    .bind(&lease.run_id)
    .bind(lease.token as i64)
    .bind(lease_for.as_millis() as i64)
    .bind(ms(Ts::now().plus(lease_for)))
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::LeaseLost(lease.run_id.clone()));
    }
    Ok(())
}

/// The run's lane, read before its lock is taken (a lane never changes while a run is
/// unfinished, and a finished run has none).
async fn lane_of_run(tx: &mut PgConnection, id: &str) -> Result<Option<String>> {
    let row: Option<(Option<String>,)> = sqlx::query_as("SELECT lane FROM hookflow_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row.and_then(|r| r.0))
}

/// Records a held run's progress; returns the exit requested for it meanwhile, if any.
pub(super) async fn save(
    tx: &mut PgConnection,
    lease: &Lease,
    run: &Run,
    next: Next,
) -> Result<Option<String>> {
    let lane = match next {
        Next::Done => lane_of_run(tx, &run.id).await?,
        _ => None,
    };
    if let Some(l) = &lane {
        lock(tx, l).await?;
    }
    let row: Option<(Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT lease_token, exit_req FROM hookflow_runs WHERE id = $1 FOR UPDATE")
            .bind(&run.id)
            .fetch_optional(&mut *tx)
            .await?;
    let exit = match row {
        Some((Some(token), exit)) if token == lease.token as i64 => exit,
        _ => return Err(StoreError::LeaseLost(lease.run_id.clone())),
    };
    let record = progress(run)?;
    let status = run.status.as_str();
    match next {
        Next::Continue { lease_for } => {
            sqlx::query(concat!(
                "UPDATE hookflow_runs SET status = $2, record = $3, due = $4, lease_until = ",
                db_now_ms!(),
                " + $5
                 WHERE id = $1"
            ))
            .bind(&run.id)
            .bind(status)
            .bind(&record)
            .bind(ms(Ts::now().plus(lease_for)))
            .bind(lease_for.as_millis() as i64)
            .execute(&mut *tx)
            .await?;
            return Ok(exit);
        }
        Next::RetryAt(at) => {
            // A run asked to exit is due at once, so the exit is applied without waiting.
            let at = if exit.is_some() { Ts::now() } else { at };
            sqlx::query(
                "UPDATE hookflow_runs SET status = $2, record = $3, due = $4, lease_token = NULL,
                        lease_until = NULL WHERE id = $1",
            )
            .bind(&run.id)
            .bind(status)
            .bind(&record)
            .bind(ms(at))
            .execute(&mut *tx)
            .await?;
        }
        Next::Done => {
            finish(
                tx,
                &run.id,
                status,
                &record,
                run.finished_at.unwrap_or(run.updated_at),
            )
            .await?;
            if let Some(l) = &lane {
                release_lane(tx, l).await?;
            }
        }
    }
    Ok(None)
}

/// Takes a run out of the queue for good.
async fn finish(tx: &mut PgConnection, id: &str, status: &str, record: &str, at: Ts) -> Result<()> {
    sqlx::query(
        "UPDATE hookflow_runs SET status = $2, record = $3, finished_at = $4, due = NULL,
                lease_token = NULL, lease_until = NULL, lane = NULL, lane_seq = NULL, exit_req = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(record)
    .bind(ms(at))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Makes the oldest run left in `lane` due now (the caller holds the lane's lock).
async fn release_lane(tx: &mut PgConnection, lane: &str) -> Result<()> {
    sqlx::query(
        "UPDATE hookflow_runs SET due = $2 WHERE id = (
             SELECT id FROM hookflow_runs WHERE lane = $1 ORDER BY lane_seq LIMIT 1
         ) AND due IS NULL",
    )
    .bind(lane)
    .bind(ms(Ts::now()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Applies the wait-related effects of a save.
pub(super) async fn apply_waits(tx: &mut PgConnection, ops: &[WaitOp]) -> Result<()> {
    for op in ops {
        match op {
            WaitOp::IndexExit { flow, key, run_id } => {
                index_exits(tx, flow, run_id, std::slice::from_ref(key)).await?
            }
            WaitOp::UnindexExit { flow, key, run_id } => {
                sqlx::query("DELETE FROM hookflow_exit_index WHERE flow = $1 AND key = $2 AND run_id = $3")
                    .bind(flow)
                    .bind(key)
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await?;
            }
            WaitOp::Waiting { flow, by } => add_waiting(tx, flow, *by).await?,
        }
    }
    Ok(())
}

async fn add_waiting(tx: &mut PgConnection, flow: &str, by: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO hookflow_waiting (flow, n) VALUES ($1, GREATEST($2, 0))
         ON CONFLICT (flow) DO UPDATE SET n = GREATEST(hookflow_waiting.n + $2, 0)",
    )
    .bind(flow)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) use crate::store::Exited;

/// Ends one unfinished run as exited, or marks it when a worker holds it.
pub(super) async fn exit_one(tx: &mut PgConnection, id: &str, reason: &str) -> Result<Exited> {
    let lane = lane_of_run(tx, id).await?;
    if let Some(l) = &lane {
        lock(tx, l).await?;
    }
    let row: Option<(String, bool, Option<String>)> = sqlx::query_as(concat!(
        "SELECT r.record, coalesce(r.lease_until > ",
        db_now_ms!(),
        ", false), i.input FROM hookflow_runs AS r LEFT JOIN hookflow_run_inputs AS i ON i.id = r.id
         WHERE r.id = $1 AND r.finished_at IS NULL FOR UPDATE OF r"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((record, leased, input_json)) = row else {
        return Ok(Exited::No);
    };
    let now = Ts::now();
    if leased {
        sqlx::query("UPDATE hookflow_runs SET exit_req = $2 WHERE id = $1")
            .bind(id)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        return Ok(Exited::Marked);
    }
    let mut run = read_run(id, &record, input_json.as_deref())?;
    if input_json.is_none() {
        sqlx::query(
            "INSERT INTO hookflow_run_inputs (id, input) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(input(&run)?)
        .execute(&mut *tx)
        .await?;
    }
    let was_waiting = run.status == RunStatus::Waiting;
    run.end_exited(reason, now);
    let keys = std::mem::take(&mut run.exit_keys);
    sqlx::query("DELETE FROM hookflow_exit_index WHERE flow = $1 AND run_id = $2 AND key = ANY($3)")
        .bind(&run.flow)
        .bind(id)
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    if was_waiting {
        add_waiting(tx, &run.flow, -1).await?;
    }
    finish(tx, id, run.status.as_str(), &progress(&run)?, now).await?;
    if let Some(l) = &lane {
        release_lane(tx, l).await?;
    }
    Ok(Exited::Now)
}

/// Ends the runs indexed under each exit, or marks those a worker holds.
pub(super) async fn exit_runs(tx: &mut PgConnection, exits: &[ExitMatch]) -> Result<Vec<ExitedRun>> {
    let mut out = Vec::new();
    for e in exits {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT run_id FROM hookflow_exit_index WHERE flow = $1 AND key = $2 ORDER BY run_id",
        )
        .bind(&e.flow)
        .bind(&e.key)
        .fetch_all(&mut *tx)
        .await?;
        for (id,) in ids {
            let now = match exit_one(tx, &id, &e.reason).await? {
                Exited::No => {
                    sqlx::query(
                        "DELETE FROM hookflow_exit_index WHERE flow = $1 AND key = $2 AND run_id = $3",
                    )
                    .bind(&e.flow)
                    .bind(&e.key)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                    continue;
                }
                Exited::Now => true,
                Exited::Marked | Exited::Noted => false,
            };
            out.push(ExitedRun {
                flow: e.flow.clone(),
                run_id: id,
                now,
            });
        }
    }
    Ok(out)
}

/// Newest first. The text filter is narrowed in SQL and decided by [`RunFilter::matches`].
pub(super) async fn list_runs(pool: &PgPool, f: &RunFilter) -> Result<Vec<Run>> {
    let limit = f.limit.max(1);
    let pattern = f.text.as_ref().map(|t| {
        let escaped = t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        format!("%{escaped}%")
    });
    let mut before = f.before.clone();
    let mut out = Vec::new();
    loop {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT r.id, r.record, i.input FROM hookflow_runs AS r
             LEFT JOIN hookflow_run_inputs AS i ON i.id = r.id
             WHERE ($1::text IS NULL OR r.flow = $1) AND ($2::text IS NULL OR r.status = $2)
               AND ($3::text IS NULL OR r.id < $3) AND ($4::bigint IS NULL OR r.created_at >= $4)
               AND ($5::bigint IS NULL OR r.created_at <= $5)
               AND ($6::text IS NULL OR r.record ILIKE $6 OR i.input ILIKE $6)
             ORDER BY r.id DESC LIMIT $7",
        )
        .bind(&f.flow)
        .bind(f.status.map(RunStatus::as_str))
        .bind(&before)
        .bind(f.since.map(ms))
        .bind(f.until.map(ms))
        .bind(&pattern)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?;
        let fetched = rows.len();
        for (id, record, input) in rows {
            let run = read_run(&id, &record, input.as_deref())?;
            before = Some(id);
            if f.matches(&run) {
                out.push(run);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        if fetched < limit || pattern.is_none() {
            return Ok(out);
        }
    }
}

/// Deletes finished runs: those finished before `before`, then the oldest finished beyond
/// `keep` runs in all; at most `max`.
pub(super) async fn prune(pool: &PgPool, before: Ts, keep: usize, max: usize) -> Result<usize> {
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let (aged,): (i64,) = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM hookflow_runs WHERE id IN (
                 SELECT id FROM hookflow_runs WHERE finished_at < $1 ORDER BY id LIMIT $2)
             RETURNING id),
         inputs AS (DELETE FROM hookflow_run_inputs WHERE id IN (SELECT id FROM gone))
         SELECT count(*) FROM gone",
    )
    .bind(ms(before))
    .bind(max)
    .fetch_one(pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as("SELECT count(*) FROM hookflow_runs")
        .fetch_one(pool)
        .await?;
    let over = (total - i64::try_from(keep).unwrap_or(i64::MAX)).min(max - aged);
    let mut counted = 0;
    if over > 0 {
        (counted,) = sqlx::query_as(
            "WITH gone AS (
                 DELETE FROM hookflow_runs WHERE id IN (
                     SELECT id FROM hookflow_runs WHERE finished_at IS NOT NULL ORDER BY id LIMIT $1)
                 RETURNING id),
             inputs AS (DELETE FROM hookflow_run_inputs WHERE id IN (SELECT id FROM gone))
             SELECT count(*) FROM gone",
        )
        .bind(over)
        .fetch_one(pool)
        .await?;
    }
    Ok((aged + counted) as usize)
}
