//! Tracked messages and their clicks on PostgreSQL (`migrations/postgres/0005_clicks.sql`).
//! Pending clicks are taken with `FOR UPDATE SKIP LOCKED`, so instances settle different
//! ones, and each click's message row is locked while it is judged, so clicks of one message
//! are judged one after the other and exactly one of them is a link's first.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::{PgStore, in_tx, json, ms, parse, state};
use crate::clicks::{BURST, Click, Judged, LinkCount, MAX_CLICKS_PER_MESSAGE, Message};
use crate::store::clicks::{Clicks, MAX_LISTED, settle};
use crate::store::{Result, StoreError};
use crate::time::Ts;

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Judges one pending click, in the caller's transaction.
async fn settle_one(tx: &mut PgConnection, mut click: Click) -> Result<Click> {
    let message: Option<(String,)> =
        sqlx::query_as("SELECT record FROM hookflow_messages WHERE key = $1 FOR UPDATE")
            .bind(&click.message)
            .fetch_optional(&mut *tx)
            .await?;
    let depth = match message {
        Some((r,)) => parse::<Message>(&click.message, &r).map_or(1, |m| m.depth),
        None => 1,
    };
    let window = i64::try_from(BURST.as_millis()).unwrap_or(1000);
    let around: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, record FROM hookflow_clicks WHERE message = $1 AND at > $2 - $3 AND at < $2 + $3",
    )
    .bind(&click.message)
    .bind(ms(click.at))
    .bind(window)
    .fetch_all(&mut *tx)
    .await?;
    let around: Vec<Click> = around.iter().filter_map(|(id, r)| parse(id, r).ok()).collect();
    let (clicked_before,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM hookflow_first_clicks WHERE message = $1 AND link = $2)",
    )
    .bind(&click.message)
    .bind(&click.link)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(e) = settle(&mut click, &around, clicked_before, depth) {
        state::put_event(tx, &e).await?;
        sqlx::query(
            "INSERT INTO hookflow_first_clicks (message, link) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&click.message)
        .bind(&click.link)
        .execute(&mut *tx)
        .await?;
    }
    let mut n = LinkCount::default();
    n.add(&click.judged);
    sqlx::query(
        "INSERT INTO hookflow_link_counts (flow, link, clicks, first_clicks, scanner_clicks) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (flow, link) DO UPDATE SET clicks = hookflow_link_counts.clicks + $3,
           first_clicks = hookflow_link_counts.first_clicks + $4, scanner_clicks = hookflow_link_counts.scanner_clicks + $5",
    )
    .bind(&click.flow)
    .bind(click.label())
    .bind(n.clicks as i64)
    .bind(n.first_clicks as i64)
    .bind(n.scanner_clicks as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE hookflow_clicks SET pending = FALSE, record = $2 WHERE id = $1")
        .bind(&click.id)
        .bind(json(&click)?)
        .execute(&mut *tx)
        .await?;
    Ok(click)
}

#[async_trait]
impl Clicks for PgStore {
    async fn remember_message(&self, message: Message) -> Result<()> {
        in_tx!(self, |tx| async {
            let stored: Option<(String,)> =
                sqlx::query_as("SELECT record FROM hookflow_messages WHERE key = $1 FOR UPDATE")
                    .bind(&message.key)
                    .fetch_optional(&mut *tx)
                    .await?;
            let mut merged = message.clone();
            if let Some((r,)) = stored {
                merged = parse(&message.key, &r)?;
                merged.merge(message.clone());
            }
            sqlx::query(
                "INSERT INTO hookflow_messages (key, sent_at, record) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET sent_at = $2, record = $3",
            )
            .bind(&merged.key)
            .bind(ms(merged.sent_at))
            .bind(json(&merged)?)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

    async fn message(&self, key: &str) -> Result<Option<Message>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT record FROM hookflow_messages WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(r,)| parse(key, &r)).transpose()
    }

    async fn record_click(&self, click: Click) -> Result<bool> {
        // One statement: the count and the insert see the same snapshot, so two instances
        // may each add one past the cap at the same moment, no more.
        let done = sqlx::query(
            "INSERT INTO hookflow_clicks (id, message, run_id, at, pending, record)
             SELECT $1, $2, $3, $4, TRUE, $5
             WHERE (SELECT count(*) FROM (SELECT 1 FROM hookflow_clicks WHERE message = $2 LIMIT $6) seen) < $6",
        )
        .bind(&click.id)
        .bind(&click.message)
        .bind(&click.run_id)
        .bind(ms(click.at))
        .bind(json(&click)?)
        .bind(limit(MAX_CLICKS_PER_MESSAGE))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn settle_clicks(&self, before: Ts, max: usize) -> Result<Vec<Click>> {
        in_tx!(self, |tx| async {
            let due: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, record FROM hookflow_clicks WHERE pending AND at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED",
            )
            .bind(ms(before))
            .bind(limit(max))
            .fetch_all(&mut *tx)
            .await?;
            let mut out = Vec::new();
            for (id, record) in due {
                match parse::<Click>(&id, &record) {
                    Ok(c) if c.judged == Judged::Pending => out.push(settle_one(&mut tx, c).await?),
                    Ok(_) => {}
                    Err(e) => {
                        // A damaged click harms only itself: it is no longer pending, said so.
                        tracing::warn!(error = %e, click = %id, "a click could not be read; it is not judged");
                        sqlx::query("UPDATE hookflow_clicks SET pending = FALSE WHERE id = $1")
                            .bind(&id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            Ok::<_, StoreError>(out)
        })
    }

    async fn clicks_of_run(&self, run_id: &str) -> Result<Vec<Click>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, record FROM hookflow_clicks WHERE run_id = $1 ORDER BY id LIMIT $2")
                .bind(run_id)
                .bind(limit(MAX_LISTED))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|(id, r)| parse(id, r)).collect()
    }

    async fn link_counts(&self, flow: &str) -> Result<Vec<LinkCount>> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT link, clicks, first_clicks, scanner_clicks FROM hookflow_link_counts WHERE flow = $1 ORDER BY link",
        )
        .bind(flow)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(link, c, f, s)| LinkCount {
                link,
                clicks: c as u64,
                first_clicks: f as u64,
                scanner_clicks: s as u64,
            })
            .collect())
    }

    async fn prune_messages(&self, before: Ts, max: usize) -> Result<usize> {
        in_tx!(self, |tx| async {
            let gone: Vec<(String,)> = sqlx::query_as(
                "DELETE FROM hookflow_messages WHERE key IN
                   (SELECT key FROM hookflow_messages WHERE sent_at < $1 ORDER BY sent_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING key",
            )
            .bind(ms(before))
            .bind(limit(max))
            .fetch_all(&mut *tx)
            .await?;
            let keys: Vec<String> = gone.into_iter().map(|(k,)| k).collect();
            sqlx::query("DELETE FROM hookflow_clicks WHERE message = ANY($1)")
                .bind(&keys)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM hookflow_first_clicks WHERE message = ANY($1)")
                .bind(&keys)
                .execute(&mut *tx)
                .await?;
            Ok::<_, StoreError>(keys.len())
        })
    }
}
