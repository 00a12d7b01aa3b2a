//! Consent events: appending a decision, the customer's consent columns rewritten as the
//! projection of their events (per channel the latest by event time, then id), the events a
//! customer write or an import records, and listing a customer's history.

use bakkal_domain::audit::{self, AuditAction};
use bakkal_domain::name::customer_name;
use bakkal_domain::personal_data::consent::{self, consent_event_name};
use bakkal_domain::personal_data::{ConsentEvent, ConsentSource, NewConsentEvent};
use bakkal_domain::time::Micros;
use bakkal_domain::{Consent, ConsentChannel, Consents};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::args::{bind, push_value_rows, Arg};
use crate::customers::{load_live, load_live_locked};
use crate::lock::lock_key;
use crate::page::{after_id, split_page, Cursor};
use crate::{Backend, RecordScope, Result, Store, StoreError};

const COLUMNS: &str = "id, customer_id, channel, granted, event_time, source, terms, actor, \
    ip_address, user_agent, create_time";

/// The columns an append writes, in the order [`event_args`] binds them.
const INSERT_COLUMNS: &str = "customer_id, channel, granted, event_time, source, terms, actor, \
    ip_address, user_agent, create_time";
const INSERT_ARITY: usize = 10;

fn from_row(r: &AnyRow) -> std::result::Result<ConsentEvent, sqlx::Error> {
    let channel: String = r.try_get(2)?;
    let source: String = r.try_get(5)?;
    Ok(ConsentEvent {
        id: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        channel: ConsentChannel::parse(&channel).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown consent channel '{channel}'").into())
        })?,
        granted: r.try_get::<i64, _>(3)? != 0,
        event_time: r.try_get(4)?,
        source: ConsentSource::parse(&source).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown consent source '{source}'").into())
        })?,
        terms: r.try_get(6)?,
        actor: r.try_get(7)?,
        ip_address: r.try_get(8)?,
        user_agent: r.try_get(9)?,
        create_time: r.try_get(10)?,
    })
}

/// The principal of the current call (`system:…` for background work).
fn actor() -> String {
    crate::audit::current()
        .map(|c| c.actor().principal)
        .unwrap_or_else(|| "system:unattributed".into())
}

fn event_args(customer: i64, e: &NewConsentEvent, actor: &str, now: Micros) -> [Arg; INSERT_ARITY] {
    [
        Arg::Int(customer),
        Arg::Text(e.channel.as_str().into()),
        Arg::Int(e.granted as i64),
        Arg::Int(e.event_time.unwrap_or(now)),
        Arg::Text(e.source.as_str().into()),
        Arg::Text(e.terms.clone()),
        Arg::Text(actor.into()),
        Arg::Text(e.ip_address.clone()),
        Arg::Text(e.user_agent.clone()),
        Arg::Int(now),
    ]
}

async fn append(
    conn: &mut AnyConnection,
    customer: i64,
    e: &NewConsentEvent,
    now: Micros,
) -> Result<i64> {
    let sql = format!(
        "INSERT INTO consent_events ({INSERT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id"
    );
    let args = event_args(customer, e, &actor(), now);
    let row = bind(sqlx::query(&sql), &args).fetch_one(&mut *conn).await?;
    Ok(row.try_get(0)?)
}

/// Append many events in multi-row statements (an import's new customers).
pub(crate) async fn append_many(
    backend: Backend,
    conn: &mut AnyConnection,
    events: &[(i64, NewConsentEvent)],
    now: Micros,
) -> Result<()> {
    let actor = actor();
    for chunk in events.chunks(500) {
        let mut sql = format!("INSERT INTO consent_events ({INSERT_COLUMNS}) VALUES ");
        push_value_rows(&mut sql, backend, chunk.len(), INSERT_ARITY, "");
        let args: Vec<Arg> = chunk
            .iter()
            .flat_map(|(c, e)| event_args(*c, e, &actor, now))
            .collect();
        bind(sqlx::query(&sql), &args).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rewrite customer `id`'s consent columns from their events: per channel the latest
/// decision; a channel without events is not granted.
pub(crate) async fn refresh_projection(conn: &mut AnyConnection, id: i64) -> Result<Consents> {
    let mut current = Consents::default();
    for ch in ConsentChannel::ALL {
        let latest: Option<(i64, i64)> = sqlx::query_as(
            "SELECT granted, event_time FROM consent_events WHERE customer_id = $1 \
             AND channel = $2 ORDER BY event_time DESC, id DESC LIMIT 1",
        )
        .bind(id)
        .bind(ch.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((granted, time)) = latest {
            *current.get_mut(ch) = Consent {
                granted: granted != 0,
                update_time: Some(time),
            };
        }
    }
    let c = |ch: ConsentChannel| current.get(ch);
    sqlx::query(
        "UPDATE customers SET consent_email = $1, consent_email_time = $2, consent_sms = $3, \
         consent_sms_time = $4, consent_push = $5, consent_push_time = $6, \
         consent_phone = $7, consent_phone_time = $8 WHERE id = $9",
    )
    .bind(c(ConsentChannel::Email).granted as i64)
    .bind(c(ConsentChannel::Email).update_time)
    .bind(c(ConsentChannel::Sms).granted as i64)
    .bind(c(ConsentChannel::Sms).update_time)
    .bind(c(ConsentChannel::Push).granted as i64)
    .bind(c(ConsentChannel::Push).update_time)
    .bind(c(ConsentChannel::Phone).granted as i64)
    .bind(c(ConsentChannel::Phone).update_time)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(current)
}

/// Record the decisions a customer write made (`before`: `None` for a new customer) as
/// events from `source`, then rewrite the projection. Nothing when consent did not change.
pub(crate) async fn record_changes(
    conn: &mut AnyConnection,
    id: i64,
    before: Option<&Consents>,
    after: &Consents,
    source: ConsentSource,
    now: Micros,
) -> Result<()> {
    let changed = consent::changed(before, after);
    if changed.is_empty() {
        return Ok(());
    }
    for (ch, c) in changed {
        append(conn, id, &NewConsentEvent::from_write(ch, c, source), now).await?;
    }
    refresh_projection(conn, id).await?;
    Ok(())
}

/// The source of a customer write's decisions: AGENT when a staff user made it, API else.
pub(crate) fn write_source() -> ConsentSource {
    if actor().starts_with("users/") {
        ConsentSource::Agent
    } else {
        ConsentSource::Api
    }
}

/// The decisions of a new customer's fields, as events to append.
pub(crate) fn initial_events(consents: &Consents, source: ConsentSource) -> Vec<NewConsentEvent> {
    consent::changed(None, consents)
        .into_iter()
        .map(|(ch, c)| NewConsentEvent::from_write(ch, c, source))
        .collect()
}

/// Clear the free text (agreed text, IP address, user agent) of customer `id`'s events and
/// of those merged into it: an erasure. The decisions themselves stay, as proof.
pub(crate) async fn scrub(conn: &mut AnyConnection, id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE consent_events SET terms = '', ip_address = '', user_agent = '' \
         WHERE (customer_id = $1 OR customer_id IN \
                (SELECT id FROM customers WHERE merged_into = $1)) \
           AND (terms <> '' OR ip_address <> '' OR user_agent <> '')",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn parse_event_name(name: &str) -> Option<(i64, i64)> {
    let rest = name.strip_prefix("customers/")?;
    let (c, e) = rest.split_once("/consentEvents/")?;
    Some((c.parse().ok()?, e.parse().ok()?))
}

async fn load_event(conn: &mut AnyConnection, id: i64) -> Result<ConsentEvent> {
    let sql = format!("SELECT {COLUMNS} FROM consent_events WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("consentEvents/{id}")))?;
    Ok(from_row(&row)?)
}

impl Store {
    /// Record a decision of customer `customer` (merges followed) and rewrite their current
    /// consent from their events. With a `request_id` seen before, the event that request
    /// recorded.
    pub async fn create_consent_event(
        &self,
        customer: i64,
        scope: &RecordScope,
        event: &NewConsentEvent,
        request_id: Option<&str>,
        now: Micros,
    ) -> Result<ConsentEvent> {
        let key = request_id.map(|r| format!("CreateConsentEvent/{r}"));
        let mut tx = self.write_tx().await?;
        if let Some(key) = &key {
            lock_key(&mut tx, key).await?;
            let resource: Option<String> =
                sqlx::query_scalar("SELECT resource FROM idempotency_keys WHERE key = $1")
                    .bind(key.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((_, id)) = resource.as_deref().and_then(parse_event_name) {
                let e = load_event(&mut tx, id).await?;
                tx.commit().await?;
                return Ok(e);
            }
        }
        let c = load_live_locked(&mut tx, customer).await?;
        if !scope.admits_owner(&c.fields.owner) {
            return Err(StoreError::NotFound(customer_name(customer)));
        }
        let id = append(&mut tx, c.id, event, now).await?;
        refresh_projection(&mut tx, c.id).await?;
        sqlx::query("UPDATE customers SET update_time = $1, version = version + 1 WHERE id = $2")
            .bind(now)
            .bind(c.id)
            .execute(&mut *tx)
            .await?;
        let name = consent_event_name(c.id, id);
        if let Some(key) = &key {
            sqlx::query(
                "INSERT INTO idempotency_keys (key, resource, create_time) VALUES ($1, $2, $3)",
            )
            .bind(key.clone())
            .bind(name.clone())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let after = load_live(&mut tx, c.id).await?;
        tx.audit(
            name,
            AuditAction::Create,
            audit::customer_changes(Some(&c.fields), &after.fields),
        );
        let e = load_event(&mut tx, id).await?;
        tx.commit().await?;
        Ok(e)
    }

    /// Customer `customer`'s consent events (and those of customers merged into them), in the
    /// order they were recorded.
    pub async fn list_consent_events(
        &self,
        customer: i64,
        scope: &RecordScope,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<ConsentEvent>, Option<Cursor>)> {
        let mut conn = self.acquire().await?;
        let c = load_live(&mut conn, customer).await?;
        if !scope.admits_owner(&c.fields.owner) {
            return Err(StoreError::NotFound(customer_name(customer)));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM consent_events \
             WHERE (customer_id = $1 OR customer_id IN \
                    (SELECT id FROM customers WHERE merged_into = $1)) \
               AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(c.id)
            .bind(after_id(after)?)
            .bind(page_size as i64 + 1)
            .fetch_all(&mut *conn)
            .await?;
        let events = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(split_page(events, page_size, |e| Cursor::Int(e.id, e.id)))
    }
}
