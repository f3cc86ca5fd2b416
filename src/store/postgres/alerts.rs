//! Alert states on PostgreSQL: `hookflow_alerts`, one row per alert, changed by
//! compare-and-set on `changes` in the transaction that puts the event in the outbox — so of
//! several instances judging the same alert, one raises it.

use async_trait::async_trait;

use super::{PgStore, in_tx, json, parse, state};
use crate::event::Event;
use crate::store::alerts::{AlertState, Alerts};
use crate::store::{Result, StoreError};

#[async_trait]
impl Alerts for PgStore {
    async fn alert_states(&self) -> Result<Vec<AlertState>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, record FROM hookflow_alerts ORDER BY key")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .filter_map(|(k, r)| match parse(k, r) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "an alert's state could not be read; it is judged afresh");
                    None
                }
            })
            .collect())
    }

    async fn change_alert(&self, next: AlertState, event: Option<Event>) -> Result<bool> {
        let record = json(&next)?;
        in_tx!(self, |tx| async {
            let changes = i64::try_from(next.changes).unwrap_or(i64::MAX);
            let done = if next.changes == 1 {
                sqlx::query(
                    "INSERT INTO hookflow_alerts (key, changes, record) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                )
                .bind(&next.key)
                .bind(changes)
                .bind(&record)
                .execute(&mut *tx)
                .await?
            } else {
                sqlx::query("UPDATE hookflow_alerts SET changes = $2, record = $3 WHERE key = $1 AND changes = $2 - 1")
                    .bind(&next.key)
                    .bind(changes)
                    .bind(&record)
                    .execute(&mut *tx)
                    .await?
            };
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            if let Some(e) = &event {
                state::put_event(&mut tx, e).await?;
            }
            Ok(true)
        })
    }
}
