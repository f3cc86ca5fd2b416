//! Segments and contacts, the event outbox and the instances table on PostgreSQL. Segment
//! changes run in the caller's transaction (with the run whose action made them) and take the
//! contact's advisory lock, so two instances changing one contact apply one after the other.

use sqlx::{PgConnection, PgPool};

use super::queue::lock;
use super::{json, ms, parse, ts};
use crate::event::{Event, Origin};
use crate::segment::{self, Change, Contact, ContactView, Member, SegmentChange, SegmentInfo, SegmentOp};
use std::time::Duration;

use crate::store::{Instance, Pace, Result, StoreError};
use crate::time::Ts;

pub(super) async fn put_event(tx: &mut PgConnection, event: &Event) -> Result<()> {
    sqlx::query("INSERT INTO hookflow_events (id, body) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(&event.id)
        .bind(json(event)?)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub(super) async fn pending_events(pool: &PgPool, limit: usize) -> Result<Vec<Event>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, body FROM hookflow_events ORDER BY seq LIMIT $1")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?;
    rows.iter().map(|(id, body)| parse(id, body)).collect()
}

/// Applies `ops` in order; raises `segment.added`/`segment.removed` into the outbox from
/// `origin` when given.
pub(super) async fn change_segments(
    tx: &mut PgConnection,
    ops: &[SegmentOp],
    origin: Option<&(Origin, u32)>,
) -> Result<Vec<SegmentChange>> {
    let now = Ts::now();
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        lock(tx, &format!("contact:{}", op.email)).await?;
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT record FROM hookflow_contacts WHERE email = $1")
                .bind(&op.email)
                .fetch_optional(&mut *tx)
                .await?;
        let existing: Option<Contact> = existing.map(|r| parse(&op.email, &r.0)).transpose()?;
        let known = existing.is_some();
        let (was_member,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM hookflow_members WHERE segment = $1 AND email = $2)",
        )
        .bind(&op.segment)
        .bind(&op.email)
        .fetch_one(&mut *tx)
        .await?;
        let (contact, _, change) = segment::apply(existing, was_member, op, now);
        // Removing someone unknown does not create a contact.
        if known || change != Change::NotMember {
            sqlx::query(
                "INSERT INTO hookflow_contacts (email, record) VALUES ($1, $2)
                 ON CONFLICT (email) DO UPDATE SET record = EXCLUDED.record",
            )
            .bind(&op.email)
            .bind(json(&contact)?)
            .execute(&mut *tx)
            .await?;
        }
        match change {
            Change::Added => {
                sqlx::query("INSERT INTO hookflow_members (segment, email, joined_at) VALUES ($1, $2, $3)")
                    .bind(&op.segment)
                    .bind(&op.email)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
            }
            Change::Removed => {
                sqlx::query("DELETE FROM hookflow_members WHERE segment = $1 AND email = $2")
                    .bind(&op.segment)
                    .bind(&op.email)
                    .execute(&mut *tx)
                    .await?;
            }
            Change::Updated | Change::NotMember => {}
        }
        let sc = SegmentChange {
            segment: op.segment.clone(),
            email: op.email.clone(),
            change,
            contact,
        };
        if let (Some((kind, data)), Some((origin, depth))) = (sc.event(), origin) {
            put_event(tx, &Event::new(kind, origin.clone(), *depth, data)).await?;
        }
        out.push(sc);
    }
    Ok(out)
}

pub(super) async fn segments(pool: &PgPool) -> Result<Vec<SegmentInfo>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT segment, count(*) FROM hookflow_members GROUP BY segment ORDER BY segment")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(name, n)| SegmentInfo {
            name,
            members: n as u64,
        })
        .collect())
}

pub(super) async fn segment_members(
    pool: &PgPool,
    segment: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Member>> {
    let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT m.email, m.joined_at, c.record FROM hookflow_members m
         LEFT JOIN hookflow_contacts c ON c.email = m.email
         WHERE m.segment = $1 AND ($2::text IS NULL OR m.email > $2)
         ORDER BY m.email LIMIT $3",
    )
    .bind(segment)
    .bind(after)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(email, joined, record)| {
            let record = record
                .ok_or_else(|| StoreError::Corrupt(format!("member {email} of {segment} has no contact")))?;
            Ok(Member {
                contact: parse(&email, &record)?,
                added_at: ts(joined),
            })
        })
        .collect()
}

pub(super) async fn contact(pool: &PgPool, email: &str) -> Result<Option<ContactView>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT record FROM hookflow_contacts WHERE email = $1")
        .bind(email)
        .fetch_optional(pool)
        .await?;
    let Some((record,)) = row else {
        return Ok(None);
    };
    let segments: Vec<(String,)> =
        sqlx::query_as("SELECT segment FROM hookflow_members WHERE email = $1 ORDER BY segment")
            .bind(email)
            .fetch_all(pool)
            .await?;
    Ok(Some(ContactView {
        contact: parse(email, &record)?,
        segments: segments.into_iter().map(|s| s.0).collect(),
    }))
}

pub(super) async fn heartbeat(pool: &PgPool, me: &Instance) -> Result<()> {
    sqlx::query(
        "INSERT INTO hookflow_instances (id, info, started_at, seen_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET info = EXCLUDED.info, seen_at = EXCLUDED.seen_at",
    )
    .bind(&me.id)
    .bind(json(me)?)
    .bind(ms(me.started_at))
    .bind(ms(me.seen_at))
    .execute(pool)
    .await?;
    // Instances silent for a day are forgotten.
    sqlx::query("DELETE FROM hookflow_instances WHERE seen_at < $1")
        .bind(ms(me.seen_at) - 24 * 3600 * 1000)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn instances(pool: &PgPool) -> Result<Vec<Instance>> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT id, info, seen_at FROM hookflow_instances ORDER BY started_at")
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|(id, info, seen)| {
            let mut i: Instance = parse(&id, &info)?;
            i.seen_at = ts(seen);
            Ok(i)
        })
        .collect()
}

/// A rate limit's next slot, one row per action: taken by moving it on when it has started,
/// in one statement (the row lock orders instances racing for the same slot).
pub(super) async fn pace(pool: &PgPool, key: &str, interval: Duration, now: Ts) -> Result<Pace> {
    let next = ms(now.plus(interval));
    let taken: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO hookflow_rate_slots (key, next_at) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET next_at = EXCLUDED.next_at
         WHERE hookflow_rate_slots.next_at <= $3
         RETURNING next_at",
    )
    .bind(key)
    .bind(next)
    .bind(ms(now))
    .fetch_optional(pool)
    .await?;
    if taken.is_some() {
        return Ok(Pace::Go);
    }
    let (at,): (i64,) = sqlx::query_as("SELECT next_at FROM hookflow_rate_slots WHERE key = $1")
        .bind(key)
        .fetch_one(pool)
        .await?;
    Ok(Pace::Until(ts(at)))
}
