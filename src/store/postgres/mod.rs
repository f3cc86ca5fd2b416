//! The store on PostgreSQL, for several hookflow instances sharing one database.
//!
//! The same semantics as the embedded store (see [`crate::store`]), made to hold across
//! processes by the database: every operation is one transaction; claims take due rows with
//! `FOR UPDATE SKIP LOCKED`, so instances never claim the same run; a lease is a token in the
//! row, so a stale worker's write matches no row and fails with
//! [`StoreError::LeaseLost`]; ordering lanes, a capped flow's claims and a contact's segment
//! changes are serialised by transaction-scoped advisory locks; dedupe keys and cron firings are
//! rows with a primary key, so a second instance's copy conflicts instead of running twice.
//! Accepted runs are written by a group-commit task (many webhooks per transaction, see
//! [`intake`]).
//!
//! The schema is in `migrations/postgres/`, embedded in the binary and applied at start under
//! sqlx's advisory lock, so instances starting together migrate once.

mod alerts;
mod announce;
mod clicks;
mod intake;
mod outcomes;
mod queue;
mod state;
mod suppress;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::mpsc;

use super::PgSettings;
use super::{
    Backup, BackupInfo, ClaimRequest, Claimed, Contacts, Coordination, Effects, ExitMatch, ExitedRun,
    FlowSources, Instance, Lease, Next, Result, RunFilter, RunQueue, Saved, Store, StoreError,
};
use crate::event::{Event, Origin};
use crate::run::Run;
use crate::segment::{ContactView, Member, SegmentChange, SegmentInfo, SegmentOp};
use crate::time::Ts;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

pub struct PgStore {
    pool: PgPool,
    intake: mpsc::Sender<intake::Append>,
    /// Saves and lease renewals, committed in groups ([`outcomes`]).
    outcomes: mpsc::Sender<outcomes::Member>,
    /// Where the URL says to connect, without its password, for messages.
    pub(crate) target: String,
}

/// A database error as the store reports it: conflicts between transactions (a deadlock, a
/// serialisation failure, a unique key taken at the same moment) are worth running again.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e
            && matches!(d.code().as_deref(), Some("40001" | "40P01" | "23505"))
        {
            return StoreError::Conflict(d.message().to_string());
        }
        StoreError::Backend(format!("PostgreSQL: {e}"))
    }
}

/// Runs `$body` (an expression using `$tx`, a transaction) and commits it, again up to three
/// times when it conflicts with another transaction.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut tries = 0;
        loop {
            let mut $tx = match $store.pool.begin().await {
                Ok(t) => t,
                Err(e) => break Err(StoreError::from(e)),
            };
            match $body.await {
                Ok(v) => match $tx.commit().await {
                    Ok(()) => break Ok(v),
                    Err(e) => break Err(StoreError::from(e)),
                },
                Err(StoreError::Conflict(why)) if tries < 3 => {
                    tries += 1;
                    tracing::debug!(%why, tries, "transaction conflicted; running it again");
                    drop($tx);
                }
                Err(e) => break Err(e),
            }
        }
    }};
}
pub(crate) use in_tx;

impl PgStore {
    /// Connects, applies the embedded migrations (once, however many instances start at the
    /// same moment) and starts the intake.
    pub async fn connect(url: &str, settings: &PgSettings) -> Result<PgStore> {
        let target = redacted(url);
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("--store {target}: {e}")))?
            .application_name("hookflow")
            .options([(
                "statement_timeout",
                format!("{}ms", settings.statement_timeout.as_millis()),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to {target}: {e}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating {target}: {e}")))?;
        let deadline = settings.statement_timeout + Duration::from_secs(2);
        let intake = intake::start(pool.clone(), deadline);
        let outcomes = outcomes::start(pool.clone(), deadline);
        Ok(PgStore {
            pool,
            intake,
            outcomes,
            target,
        })
    }

    async fn shared_value(&self, key: &str, value: String) -> Result<String> {
        let stored: (String,) = sqlx::query_as(
            "INSERT INTO hookflow_meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key RETURNING value",
        )
        .bind(key)
        .bind(&value)
        .fetch_one(&self.pool)
        .await?;
        Ok(stored.0)
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "the PostgreSQL URL".into(),
    }
}

/// What [`in_tx`] needs: a pool (for the group-commit tasks, which hold no `PgStore`).
pub(super) struct Pool {
    pub(super) pool: PgPool,
}

/// A group-commit task's next group: the first item to arrive and every one waiting behind it,
/// up to `max`; `None` once every sender is gone.
pub(super) async fn next_group<T>(rx: &mut mpsc::Receiver<T>, max: usize) -> Option<Vec<T>> {
    let mut group = vec![rx.recv().await?];
    while group.len() < max {
        match rx.try_recv() {
            Ok(item) => group.push(item),
            Err(_) => break,
        }
    }
    Some(group)
}

/// `write`, given up after `deadline`, so a group's waiters get an answer from a database that
/// stopped answering.
pub(super) async fn within<T>(
    deadline: Duration,
    write: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(deadline, write).await.unwrap_or_else(|_| {
        Err(StoreError::Backend(format!(
            "the database did not answer within {deadline:?}"
        )))
    })
}

/// Milliseconds as PostgreSQL stores them.
pub(crate) fn ms(t: Ts) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}
pub(crate) fn ts(ms: i64) -> Ts {
    Ts(u64::try_from(ms).unwrap_or(0))
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}
pub(crate) fn parse<T: for<'de> serde::Deserialize<'de>>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A run's progress, as `hookflow_runs.record` holds it (see [`crate::store::record`]).
pub(crate) fn progress(run: &Run) -> Result<String> {
    let bytes = crate::store::record::progress_json(run).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A run's input, as `hookflow_run_inputs.input` holds it.
pub(crate) fn input(run: &Run) -> Result<String> {
    let bytes = crate::store::record::input_json(run).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The run from its row: the progress joined to its input, or a whole record from before
/// migration 0006 (no input row).
pub(crate) fn read_run(id: &str, record: &str, input: Option<&str>) -> Result<Run> {
    crate::store::record::parse(input.map(str::as_bytes), record.as_bytes())
        .map_err(|e| StoreError::Corrupt(format!("run {id}: {e}")))
}

#[async_trait]
impl RunQueue for PgStore {
    async fn exit_runs(&self, exits: Vec<ExitMatch>) -> Result<Vec<ExitedRun>> {
        in_tx!(self, |tx| queue::exit_runs(&mut tx, &exits))
    }

    async fn exit_run(&self, run_id: &str, reason: &str) -> Result<crate::store::Exited> {
        in_tx!(self, |tx| queue::exit_one(&mut tx, run_id, reason))
    }

    async fn waiting_counts(&self) -> Result<BTreeMap<String, u64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT flow, n FROM hookflow_waiting")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(f, n)| (f, n.max(0) as u64)).collect())
    }

    async fn insert_run(&self, run: &Run) -> Result<()> {
        intake::submit(&self.intake, run, None).await.map(|_| ())
    }

    async fn insert_run_once(&self, run: &Run, key: &str, expires: Ts) -> Result<Option<String>> {
        intake::submit(&self.intake, run, Some((key.to_string(), expires))).await
    }

    async fn expire_dedupe(&self, now: Ts) -> Result<usize> {
        let done = sqlx::query("DELETE FROM hookflow_dedupe WHERE expires <= $1")
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() as usize)
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>> {
        in_tx!(self, |tx| queue::claim(&mut tx, &req))
    }

    async fn extend_lease(&self, lease: &Lease, lease_for: std::time::Duration) -> Result<()> {
        outcomes::submit(&self.outcomes, lease, outcomes::Write::Extend { lease_for })
            .await
            .map(|_| ())
    }

    async fn save_with(&self, lease: &Lease, run: &Run, next: Next, effects: Effects) -> Result<Saved> {
        if outcomes::groupable(&effects) {
            let write = outcomes::Write::Save {
                run: Box::new(run.clone()),
                next,
            };
            let exit_requested = outcomes::submit(&self.outcomes, lease, write).await?;
            return Ok(Saved {
                changes: Vec::new(),
                exit_requested,
            });
        }
        in_tx!(self, |tx| async {
            let exit_requested = queue::save(&mut tx, lease, run, next).await?;
            queue::apply_waits(&mut tx, &effects.waits).await?;
            let changes =
                state::change_segments(&mut tx, &effects.segment_ops, effects.origin.as_ref()).await?;
            suppress::suppress(&mut tx, &effects.suppress).await?;
            for e in &effects.events {
                state::put_event(&mut tx, e).await?;
            }
            Ok(Saved {
                changes,
                exit_requested,
            })
        })
    }

    async fn get_run(&self, id: &str) -> Result<Option<Run>> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT r.record, i.input FROM hookflow_runs AS r
             LEFT JOIN hookflow_run_inputs AS i ON i.id = r.id WHERE r.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(record, input)| read_run(id, &record, input.as_deref()))
            .transpose()
    }

    async fn prune(&self, before: Ts, keep: usize, max: usize) -> Result<usize> {
        queue::prune(&self.pool, before, keep, max).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        queue::list_runs(&self.pool, filter).await
    }

    async fn queue_stats(&self, now: Ts) -> Result<(u64, Option<Ts>)> {
        let (n, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT count(*), min(due) FROM hookflow_runs WHERE due <= $1")
                .bind(ms(now))
                .fetch_one(&self.pool)
                .await?;
        Ok((n as u64, oldest.map(ts)))
    }

    async fn next_due(&self) -> Result<Option<Ts>> {
        let (t,): (Option<i64>,) = sqlx::query_as("SELECT min(due) FROM hookflow_runs WHERE due IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(t.map(ts))
    }

    async fn add_counter(&self, flow: &str, name: &str, by: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO hookflow_counters (flow, name, n) VALUES ($1, $2, $3)
             ON CONFLICT (flow, name) DO UPDATE SET n = hookflow_counters.n + EXCLUDED.n",
        )
        .bind(flow)
        .bind(name)
        .bind(i64::try_from(by).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn counters(&self, flow: &str) -> Result<BTreeMap<String, u64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, n FROM hookflow_counters WHERE flow = $1")
                .bind(flow)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(k, n)| (k, n.max(0) as u64)).collect())
    }

    async fn sync(&self) -> Result<()> {
        // Every transaction is durable when it commits.
        Ok(())
    }
}

#[async_trait]
impl Contacts for PgStore {
    async fn change_segments(&self, ops: Vec<SegmentOp>, origin: Origin) -> Result<Vec<SegmentChange>> {
        let origin = (origin, 1);
        in_tx!(self, |tx| state::change_segments(&mut tx, &ops, Some(&origin)))
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<Event>> {
        state::pending_events(&self.pool, limit).await
    }

    async fn dispatch_event(
        &self,
        event_id: &str,
        runs: Vec<Run>,
        exits: Vec<ExitMatch>,
    ) -> Result<Vec<ExitedRun>> {
        in_tx!(self, |tx| async {
            // Whoever deletes the event dispatches it; another instance's copy finds nothing.
            let gone = sqlx::query("DELETE FROM hookflow_events WHERE id = $1")
                .bind(event_id)
                .execute(&mut *tx)
                .await?;
            if gone.rows_affected() == 0 {
                return Ok(Vec::new());
            }
            for run in &runs {
                queue::insert_run(&mut tx, run).await?;
            }
            if !runs.is_empty() {
                announce::announce(&mut tx).await?;
            }
            queue::exit_runs(&mut tx, &exits).await
        })
    }

    async fn segments(&self) -> Result<Vec<SegmentInfo>> {
        state::segments(&self.pool).await
    }

    async fn segment_members(&self, segment: &str, after: Option<&str>, limit: usize) -> Result<Vec<Member>> {
        state::segment_members(&self.pool, segment, after, limit).await
    }

    async fn segment_added_since(&self, segment: &str, since: Ts) -> Result<u64> {
        let n: (i64,) =
            sqlx::query_as("SELECT count(*) FROM hookflow_members WHERE segment = $1 AND joined_at >= $2")
                .bind(segment)
                .bind(ms(since))
                .fetch_one(&self.pool)
                .await?;
        Ok(n.0 as u64)
    }

    async fn contact(&self, email: &str) -> Result<Option<ContactView>> {
        state::contact(&self.pool, email).await
    }
}

#[async_trait]
impl Coordination for PgStore {
    async fn watch_new_runs(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        announce::watch(self.pool.clone(), wake, stop).await
    }

    async fn last_firing(&self, flow: &str) -> Result<Option<Ts>> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT at FROM hookflow_firings WHERE flow = $1")
            .bind(flow)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| ts(r.0)))
    }

    async fn record_firing(&self, flow: &str, at: Ts, run: Option<Run>) -> Result<bool> {
        in_tx!(self, |tx| async {
            // One row per flow: only a later firing moves it, so each slot fires once across
            // every instance.
            let moved = sqlx::query(
                "INSERT INTO hookflow_firings (flow, at) VALUES ($1, $2)
                 ON CONFLICT (flow) DO UPDATE SET at = EXCLUDED.at WHERE hookflow_firings.at < EXCLUDED.at",
            )
            .bind(flow)
            .bind(ms(at))
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                return Ok(false);
            }
            if let Some(run) = &run {
                queue::insert_run(&mut tx, run).await?;
                announce::announce(&mut tx).await?;
            }
            Ok(true)
        })
    }

    async fn heartbeat(&self, me: &Instance) -> Result<()> {
        state::heartbeat(&self.pool, me).await
    }

    async fn shared_clock(&self) -> Result<Option<u64>> {
        let (ms,): (i64,) = sqlx::query_as(concat!("SELECT ", queue::db_now_ms!()))
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(ms).ok())
    }

    async fn instances(&self) -> Result<Vec<Instance>> {
        state::instances(&self.pool).await
    }

    async fn shared_setting(&self, key: &str, value: String) -> Result<String> {
        self.shared_value(key, value).await
    }

    async fn pace(&self, key: &str, interval: Duration, now: Ts) -> Result<super::Pace> {
        state::pace(&self.pool, key, interval, now).await
    }
}

#[async_trait]
impl FlowSources for PgStore {
    async fn put_flow_source(&self, flow: &str, version: &str, source: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO hookflow_flow_sources (flow, version, source) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(flow)
        .bind(version)
        .bind(source)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn flow_source(&self, flow: &str, version: &str) -> Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT source FROM hookflow_flow_sources WHERE flow = $1 AND version = $2")
                .bind(flow)
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }

    async fn put_last_good(&self, flow: &str, version: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO hookflow_flow_last_good (flow, version) VALUES ($1, $2)
             ON CONFLICT (flow) DO UPDATE SET version = EXCLUDED.version, at = now()",
        )
        .bind(flow)
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn last_good(&self, flow: &str) -> Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT version FROM hookflow_flow_last_good WHERE flow = $1")
                .bind(flow)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(v,)| v))
    }
}

#[async_trait]
impl Backup for PgStore {
    async fn backup_file(&self) -> Result<(std::path::PathBuf, BackupInfo)> {
        Err(StoreError::Backend(
            "a PostgreSQL store is backed up with the database's own tools (pg_dump, or its \
             replicas and base backups): hookflow's tables are hookflow_*"
                .into(),
        ))
    }
}

impl Store for PgStore {
    fn describe(&self) -> String {
        format!("PostgreSQL at {}", self.target)
    }
}
