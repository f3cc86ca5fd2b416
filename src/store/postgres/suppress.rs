//! The suppression list on PostgreSQL: `hookflow_suppressions`, keyed by address and scope,
//! shared by every instance. Writes that come with a run or an unsubscribe run in the same
//! transaction as the rest of it.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::{PgStore, in_tx, json, parse, state};
use crate::event::Origin;
use crate::segment::{SegmentChange, SegmentOp};
use crate::store::suppress::{SuppressionQuery, Suppressions};
use crate::store::{Result, StoreError};
use crate::suppression::{EVERY_LIST, Lifted, Suppression};
use crate::time::Ts;

/// Writes `entries` in the caller's transaction; how many took effect.
pub(super) async fn suppress(tx: &mut PgConnection, entries: &[Suppression]) -> Result<usize> {
    let mut n = 0;
    for e in entries {
        let done = sqlx::query(
            "INSERT INTO hookflow_suppressions (email, scope, active, record) VALUES ($1, $2, true, $3)
             ON CONFLICT (email, scope) DO UPDATE SET active = true, record = EXCLUDED.record
             WHERE NOT hookflow_suppressions.active",
        )
        .bind(&e.email)
        .bind(e.scope())
        .bind(json(e)?)
        .execute(&mut *tx)
        .await?;
        n += done.rows_affected() as usize;
    }
    Ok(n)
}

#[async_trait]
impl Suppressions for PgStore {
    async fn suppressed(&self, emails: &[String], list: Option<&str>) -> Result<Vec<Suppression>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT email, record FROM hookflow_suppressions
             WHERE email = ANY($1) AND active AND (scope = '*' OR scope = $2)",
        )
        .bind(emails)
        .bind(list.unwrap_or(EVERY_LIST))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|(email, r)| parse(email, r)).collect()
    }

    async fn suppress(&self, entries: Vec<Suppression>) -> Result<usize> {
        in_tx!(self, |tx| suppress(&mut tx, &entries))
    }

    async fn lift(&self, email: &str, list: Option<&str>, reason: &str) -> Result<bool> {
        let scope = list.unwrap_or(EVERY_LIST);
        in_tx!(self, |tx| async {
            let row: Option<(String,)> = sqlx::query_as(
                "SELECT record FROM hookflow_suppressions WHERE email = $1 AND scope = $2 AND active FOR UPDATE",
            )
            .bind(email)
            .bind(scope)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((record,)) = row else {
                return Ok(false);
            };
            let mut s: Suppression = parse(email, &record)?;
            s.lifted = Some(Lifted {
                at: Ts::now(),
                reason: reason.to_string(),
            });
            sqlx::query("UPDATE hookflow_suppressions SET active = false, record = $3 WHERE email = $1 AND scope = $2")
                .bind(email)
                .bind(scope)
                .bind(json(&s)?)
                .execute(&mut *tx)
                .await?;
            Ok(true)
        })
    }

    async fn suppression_list(&self, query: &SuppressionQuery) -> Result<Vec<Suppression>> {
        let (email, scope) = match &query.after {
            Some(a) => a.split_once(' ').map_or((a.as_str(), ""), |(e, s)| (e, s)),
            None => ("", ""),
        };
        let search = query.search.as_ref().map(|s| s.trim().to_lowercase());
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT email, record FROM hookflow_suppressions
             WHERE (email, scope) > ($1, $2) AND ($3 OR active)
               AND ($4::text IS NULL OR strpos(email, $4) > 0)
             ORDER BY email, scope LIMIT $5",
        )
        .bind(email)
        .bind(scope)
        .bind(query.include_lifted)
        .bind(search)
        .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|(email, r)| {
                parse::<Suppression>(email, r)
                    .map_err(|e| tracing::warn!(error = %e, "a suppression entry could not be read; left out of the list"))
                    .ok()
            })
            .collect())
    }

    async fn unsubscribe(&self, entry: Suppression, origin: Origin) -> Result<Vec<SegmentChange>> {
        let origin = (origin, 1);
        in_tx!(self, |tx| async {
            suppress(&mut tx, std::slice::from_ref(&entry)).await?;
            let op = SegmentOp {
                segment: entry.list.clone().unwrap_or_default(),
                email: entry.email.clone(),
                add: false,
                attributes: Default::default(),
            };
            state::change_segments(&mut tx, &[op], Some(&origin)).await
        })
    }
}
