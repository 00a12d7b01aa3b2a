//! Bulk import in batches: one transaction per batch, multi-row inserts, one look-up per batch
//! for existing customers. A row that breaks a rule is rejected with its row number; if a batch
//! fails in the database for any other reason it is replayed row by row, each row in its own
//! transaction, so one bad row never takes the others with it. A batch that fails because the
//! database is down or its disk is full (`StoreError::is_outage`) is not replayed: the import
//! stops there, its earlier batches committed, and says so.

use std::collections::{HashMap, HashSet};

use bakkal_domain::audit::AuditAction;
use bakkal_domain::name::customer_name;
use bakkal_domain::personal_data::ConsentSource;
use bakkal_domain::time::Micros;
use bakkal_domain::{normalise, ConsentChannel, CustomerFields, Order};
use sqlx::AnyConnection;

use crate::args::{positional, push_value_rows, Arg};
use crate::customers::{
    check_unique, field_args, insert_customer, load_live, refresh_referral_count, write_fields,
    FIELD_COLUMNS,
};
use crate::orders::{insert_orders, record_in};
use crate::personal_data::consent as consent_events;
use crate::{Backend, Result, Store, StoreError};

/// Rows per multi-row INSERT: 22 parameters a row stays under every backend's limit (32766
/// for SQLite, 65535 for PostgreSQL).
const INSERT_ROWS: usize = 1000;

/// A validated, normalised customer row of an import.
#[derive(Debug, Clone)]
pub struct ImportCustomerRow {
    /// 1-based position in the import stream.
    pub row: i64,
    pub fields: CustomerFields,
}

/// A validated order row of an import, naming its customer by normalised email.
#[derive(Debug, Clone)]
pub struct ImportOrderRow {
    pub row: i64,
    pub email: String,
    /// `customer_id` is filled in by the import.
    pub order: Order,
}

/// A row the import refused, and why. The reason is bounded to [`Rejection::MAX_REASON`]
/// bytes, whatever the row held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub row: i64,
    pub reason: String,
}

impl Rejection {
    pub const MAX_REASON: usize = 512;

    pub fn new(row: i64, reason: impl Into<String>) -> Self {
        Rejection {
            row,
            reason: bakkal_domain::error::bounded(reason, Self::MAX_REASON),
        }
    }
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub created: i64,
    pub updated: i64,
    pub orders_recorded: i64,
    pub rejected: Vec<Rejection>,
}

impl ImportOutcome {
    pub fn absorb(&mut self, other: ImportOutcome) {
        self.created += other.created;
        self.updated += other.updated;
        self.orders_recorded += other.orders_recorded;
        self.rejected.extend(other.rejected);
    }

    fn reject(&mut self, row: i64, reason: impl Into<String>) {
        self.rejected.push(Rejection::new(row, reason));
    }
}

/// The import's update of an existing customer: the row's non-empty fields win, tags and
/// attributes are merged, consent is taken from the row where the row decides it.
fn merge_for_import(existing: &CustomerFields, row: &CustomerFields) -> CustomerFields {
    let mut f = existing.clone();
    let take = |mine: &mut String, theirs: &String| {
        if !theirs.is_empty() {
            mine.clone_from(theirs);
        }
    };
    take(&mut f.display_name, &row.display_name);
    take(&mut f.region, &row.region);
    take(&mut f.city, &row.city);
    take(&mut f.owner, &row.owner);
    for (mine, theirs) in [
        (&mut f.email, &row.email),
        (&mut f.phone, &row.phone),
        (&mut f.country_code, &row.country_code),
        (&mut f.birth_date, &row.birth_date),
    ] {
        if theirs.is_some() {
            mine.clone_from(theirs);
        }
    }
    if row.referred_by.is_some() {
        f.referred_by = row.referred_by;
    }
    f.tags.extend(row.tags.iter().cloned());
    f.tags.sort();
    f.tags.dedup();
    for (k, v) in &row.attributes {
        f.attributes.insert(k.clone(), v.clone());
    }
    for ch in ConsentChannel::ALL {
        let c = row.consent.get(ch);
        if c.granted || c.update_time.is_some() {
            *f.consent.get_mut(ch) = c;
        }
    }
    f
}

async fn ids_by(
    backend: Backend,
    conn: &mut AnyConnection,
    column: &str,
    values: &[String],
) -> Result<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for chunk in values.chunks(INSERT_ROWS) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| positional(backend, i)).collect();
        // `column` is "email_key" or "phone", chosen by this module
        let sql = format!(
            "SELECT {column}, id FROM customers WHERE {column} IN ({})",
            placeholders.join(", ")
        );
        let args: Vec<Arg> = chunk.iter().cloned().map(Arg::Text).collect();
        let q = sqlx::query_as::<_, (String, i64)>(&sql);
        let q = args.iter().fold(q, |q, a| match a {
            Arg::Text(t) => q.bind(t.clone()),
            _ => q,
        });
        for (k, id) in q.fetch_all(&mut *conn).await? {
            out.insert(k, id);
        }
    }
    Ok(out)
}

/// One multi-row `INSERT … ON CONFLICT DO NOTHING` for `rows`, optionally returning the
/// (email, phone) of the rows it inserted.
fn insert_statement(
    backend: Backend,
    rows: &[CustomerFields],
    now: Micros,
    returning: bool,
) -> (String, Vec<Arg>) {
    let cols = FIELD_COLUMNS.len() + 2;
    let mut sql = format!(
        "INSERT INTO customers ({}, create_time, update_time) VALUES ",
        FIELD_COLUMNS.join(", ")
    );
    push_value_rows(&mut sql, backend, rows.len(), cols, "");
    let mut args = Vec::with_capacity(rows.len() * cols);
    for f in rows {
        args.extend(field_args(f));
        args.push(Arg::Int(now));
        args.push(Arg::Int(now));
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    if returning {
        sql.push_str(" RETURNING email, phone");
    }
    (sql, args)
}

fn bound<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    args.into_iter().fold(q, |q, a| match a {
        Arg::Int(v) => q.bind(v),
        Arg::OptInt(v) => q.bind(v),
        Arg::Text(v) => q.bind(v),
        Arg::OptText(v) => q.bind(v),
    })
}

/// Insert `rows`, skipping those whose email or phone is taken; returns the (email, phone) of
/// the rows inserted. Each chunk is first inserted plainly (the common case: every row is
/// new); only when some row was skipped is the chunk rolled back to its savepoint and redone
/// with `RETURNING`, to learn which. The next chunk's statement is built while the database
/// runs the current one.
async fn insert_many(
    backend: Backend,
    conn: &mut AnyConnection,
    rows: &[CustomerFields],
    now: Micros,
) -> Result<HashSet<(Option<String>, Option<String>)>> {
    let mut inserted = HashSet::with_capacity(rows.len());
    let mut chunks = rows.chunks(INSERT_ROWS);
    let mut current = chunks.next();
    let mut statement = current.map(|c| insert_statement(backend, c, now, false));
    while let (Some(chunk), Some((sql, args))) = (current, statement.take()) {
        sqlx::query("SAVEPOINT import_chunk")
            .execute(&mut *conn)
            .await?;
        let q = args.into_iter().fold(sqlx::query(&sql), |q, a| match a {
            Arg::Int(v) => q.bind(v),
            Arg::OptInt(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
        });
        let following = chunks.next();
        let (done, next_statement) = futures::join!(q.execute(&mut *conn), async {
            following.map(|c| insert_statement(backend, c, now, false))
        });
        if done?.rows_affected() == chunk.len() as u64 {
            inserted.extend(chunk.iter().map(|f| (f.email.clone(), f.phone.clone())));
        } else {
            sqlx::query("ROLLBACK TO SAVEPOINT import_chunk")
                .execute(&mut *conn)
                .await?;
            let (sql, args) = insert_statement(backend, chunk, now, true);
            let q = bound(
                sqlx::query_as::<_, (Option<String>, Option<String>)>(&sql),
                args,
            );
            inserted.extend(q.fetch_all(&mut *conn).await?);
        }
        sqlx::query("RELEASE SAVEPOINT import_chunk")
            .execute(&mut *conn)
            .await?;
        current = following;
        statement = next_statement;
    }
    Ok(inserted)
}

impl Store {
    /// Import one batch of customers: new emails and phones are created, known ones updated.
    pub async fn import_customers(
        &self,
        rows: Vec<ImportCustomerRow>,
        now: Micros,
    ) -> Result<ImportOutcome> {
        match self.import_customers_tx(&rows, now).await {
            Ok(out) => Ok(out),
            // the database down or its disk full: no row is at fault, and the import stops
            Err(e) if e.is_outage() => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, rows = rows.len(), "import batch failed; replaying it row by row");
                let mut out = ImportOutcome::default();
                for r in rows {
                    let row = r.row;
                    match self
                        .import_customers_tx(std::slice::from_ref(&r), now)
                        .await
                    {
                        Ok(o) => out.absorb(o),
                        Err(e) if e.is_outage() => return Err(e),
                        Err(e) => out.reject(row, import_reason(&e)),
                    }
                }
                Ok(out)
            }
        }
    }

    async fn import_customers_tx(
        &self,
        rows: &[ImportCustomerRow],
        now: Micros,
    ) -> Result<ImportOutcome> {
        let mut out = ImportOutcome::default();
        let mut tx = self.write_tx().await?;
        // Split where a key repeats inside the batch, so each part sees its predecessors.
        let mut start = 0;
        while start < rows.len() {
            let mut seen = HashSet::new();
            let mut end = start;
            while end < rows.len() {
                let f = &rows[end].fields;
                let keys: Vec<String> = f.email_key().into_iter().chain(f.phone.clone()).collect();
                if keys.iter().any(|k| seen.contains(k)) {
                    break;
                }
                seen.extend(keys);
                end += 1;
            }
            let part = self.import_part(&mut tx, &rows[start..end], now).await?;
            out.absorb(part);
            start = end;
        }
        tx.audit("customers", AuditAction::Import, batch_changes(&out));
        tx.commit().await?;
        Ok(out)
    }

    async fn import_part(
        &self,
        conn: &mut AnyConnection,
        rows: &[ImportCustomerRow],
        now: Micros,
    ) -> Result<ImportOutcome> {
        let mut out = ImportOutcome::default();
        let mut referrers = HashSet::new();
        let mut valid = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(referrer) = r.fields.referred_by {
                let live: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM customers WHERE id = $1 AND merged_into IS NULL AND deleted_time IS NULL",
                )
                .bind(referrer)
                .fetch_optional(&mut *conn)
                .await?;
                if live.is_none() {
                    out.reject(
                        r.row,
                        format!("referred_by: {} does not exist", customer_name(referrer)),
                    );
                    continue;
                }
                referrers.insert(referrer);
            }
            valid.push(r);
        }
        // Optimistically insert every row; the ones whose email or phone is taken come back
        // as not inserted and take the update path below.
        let fresh: Vec<CustomerFields> = valid
            .iter()
            .map(|r| {
                let mut f = r.fields.clone();
                f.consent.stamp_changes(None, now);
                f
            })
            .collect();
        // A new customer with consent and no unique key cannot be found again after a
        // multi-row insert: it is inserted on its own, with its consent events.
        let (alone, fresh): (Vec<CustomerFields>, Vec<CustomerFields>) =
            fresh.into_iter().partition(|f| {
                f.email.is_none()
                    && f.phone.is_none()
                    && !consent_events::initial_events(&f.consent, ConsentSource::Import).is_empty()
            });
        let mut events = Vec::new();
        for f in &alone {
            let id = insert_customer(conn, f, now).await?;
            for e in consent_events::initial_events(&f.consent, ConsentSource::Import) {
                events.push((id, e));
            }
        }
        out.created += alone.len() as i64;
        let inserted = insert_many(self.backend, conn, &fresh, now).await?;
        out.created += inserted.len() as i64;
        // the consent of the customers just created, as IMPORT events
        let decided: Vec<&CustomerFields> = fresh
            .iter()
            .filter(|f| {
                (f.email.is_some() || f.phone.is_some())
                    && inserted.contains(&(f.email.clone(), f.phone.clone()))
                    && !consent_events::initial_events(&f.consent, ConsentSource::Import).is_empty()
            })
            .collect();
        if !decided.is_empty() {
            let emails: Vec<String> = decided.iter().filter_map(|f| f.email_key()).collect();
            let phones: Vec<String> = decided
                .iter()
                .filter(|f| f.email.is_none())
                .filter_map(|f| f.phone.clone())
                .collect();
            let by_email = ids_by(self.backend, conn, "email_key", &emails).await?;
            let by_phone = ids_by(self.backend, conn, "phone", &phones).await?;
            for f in decided {
                let id = match f.email_key() {
                    Some(k) => by_email.get(&k).copied(),
                    None => f.phone.as_ref().and_then(|p| by_phone.get(p).copied()),
                };
                if let Some(id) = id {
                    for e in consent_events::initial_events(&f.consent, ConsentSource::Import) {
                        events.push((id, e));
                    }
                }
            }
        }
        consent_events::append_many(self.backend, conn, &events, now).await?;
        let rest: Vec<&ImportCustomerRow> = valid
            .into_iter()
            .filter(|r| {
                // a row without email and phone has no unique key: it was inserted
                let key = (r.fields.email.clone(), r.fields.phone.clone());
                key != (None, None) && !inserted.contains(&key)
            })
            .collect();
        let emails: Vec<String> = rest.iter().filter_map(|r| r.fields.email_key()).collect();
        let phones: Vec<String> = rest.iter().filter_map(|r| r.fields.phone.clone()).collect();
        let by_email = ids_by(self.backend, conn, "email_key", &emails).await?;
        let by_phone = ids_by(self.backend, conn, "phone", &phones).await?;
        for r in rest {
            let f = &r.fields;
            let e = f.email_key().and_then(|k| by_email.get(&k).copied());
            let p = f.phone.as_ref().and_then(|p| by_phone.get(p)).copied();
            match (e, p) {
                (None, None) => {
                    // not inserted, yet no holder: a row that is no longer there (raced)
                    out.reject(r.row, "conflicted with a concurrent write; import it again");
                }
                (Some(a), Some(b)) if a != b => out.reject(
                    r.row,
                    format!(
                        "email belongs to {} but phone belongs to {}",
                        customer_name(a),
                        customer_name(b)
                    ),
                ),
                (Some(id), _) | (None, Some(id)) => {
                    let existing = load_live(conn, id).await?;
                    if let (None, Some(_), Some(_)) = (e, &f.email, &existing.fields.email) {
                        // matched by phone only, but the row names another email: two
                        // identities, not an update (the holder's address is not repeated:
                        // it is personal data)
                        out.reject(
                            r.row,
                            format!(
                                "phone belongs to {} whose email is another",
                                customer_name(id)
                            ),
                        );
                        continue;
                    }
                    let mut merged = merge_for_import(&existing.fields, f);
                    merged
                        .consent
                        .stamp_changes(Some(&existing.fields.consent), now);
                    if let Err(e) = check_unique(conn, &merged, Some(id)).await {
                        out.reject(r.row, import_reason(&e));
                        continue;
                    }
                    if let Some(old) = existing
                        .fields
                        .referred_by
                        .filter(|o| Some(*o) != merged.referred_by)
                    {
                        referrers.insert(old);
                    }
                    write_fields(conn, id, &merged, now).await?;
                    consent_events::record_changes(
                        conn,
                        id,
                        Some(&existing.fields.consent),
                        &merged.consent,
                        ConsentSource::Import,
                        now,
                    )
                    .await?;
                    out.updated += 1;
                }
            }
        }
        for r in referrers {
            refresh_referral_count(conn, r).await?;
        }
        Ok(out)
    }

    /// Import one batch of orders, each naming its customer by email.
    pub async fn import_orders(
        &self,
        rows: Vec<ImportOrderRow>,
        now: Micros,
    ) -> Result<ImportOutcome> {
        match self.import_orders_tx(&rows, now).await {
            Ok(out) => Ok(out),
            Err(e) if e.is_outage() => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, rows = rows.len(), "order batch failed; replaying it row by row");
                let mut out = ImportOutcome::default();
                for r in rows {
                    let row = r.row;
                    match self.import_orders_tx(std::slice::from_ref(&r), now).await {
                        Ok(o) => out.absorb(o),
                        Err(e) if e.is_outage() => return Err(e),
                        Err(e) => out.reject(row, import_reason(&e)),
                    }
                }
                Ok(out)
            }
        }
    }

    async fn import_orders_tx(
        &self,
        rows: &[ImportOrderRow],
        now: Micros,
    ) -> Result<ImportOutcome> {
        let mut out = ImportOutcome::default();
        let mut tx = self.write_tx().await?;
        let key = |e: &String| normalise::email_key(e).unwrap_or_else(|_| e.clone());
        let emails: Vec<String> = rows.iter().map(|r| key(&r.email)).collect();
        let by_email = ids_by(self.backend, &mut tx, "email_key", &emails).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.order.order_id.clone()).collect();
        let mut known = HashSet::new();
        for chunk in ids.chunks(INSERT_ROWS) {
            let placeholders: Vec<String> = (1..=chunk.len())
                .map(|i| positional(self.backend, i))
                .collect();
            let sql = format!(
                "SELECT order_id FROM orders WHERE order_id IN ({})",
                placeholders.join(", ")
            );
            let args: Vec<Arg> = chunk.iter().cloned().map(Arg::Text).collect();
            let q = sqlx::query_scalar::<_, String>(&sql);
            let q = args.iter().fold(q, |q, a| match a {
                Arg::Text(t) => q.bind(t.clone()),
                _ => q,
            });
            known.extend(q.fetch_all(&mut *tx).await?);
        }
        // New orders are inserted together (multi-row INSERTs) and their customers' totals
        // refreshed together; a repeated order id flushes what is pending first, so the
        // idempotent path sees it stored.
        let mut touched = HashSet::new();
        let mut pending: Vec<Order> = Vec::new();
        let mut pending_ids = HashSet::new();
        for r in rows {
            let Some(&customer_id) = by_email.get(&key(&r.email)) else {
                out.reject(
                    r.row,
                    format!(
                        "no customer with email {}",
                        bakkal_domain::error::quote(&r.email)
                    ),
                );
                continue;
            };
            let order = Order {
                customer_id,
                ..r.order.clone()
            };
            if known.contains(&order.order_id) {
                if pending_ids.contains(&order.order_id) {
                    insert_orders(self.backend, &mut tx, &pending).await?;
                    pending.clear();
                    pending_ids.clear();
                }
                // seen before (stored, or earlier in this batch): the idempotent path
                match record_in(&mut tx, order, now).await {
                    Ok(_) => out.orders_recorded += 1,
                    Err(e @ StoreError::AlreadyExists { .. }) => {
                        out.reject(r.row, import_reason(&e))
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            known.insert(order.order_id.clone());
            pending_ids.insert(order.order_id.clone());
            touched.insert(customer_id);
            pending.push(order);
            out.orders_recorded += 1;
        }
        insert_orders(self.backend, &mut tx, &pending).await?;
        let mut touched: Vec<i64> = touched.into_iter().collect();
        touched.sort_unstable();
        crate::customers::refresh_totals_many(self.backend, &mut tx, &touched, now).await?;
        tx.audit("orders", AuditAction::Import, batch_changes(&out));
        tx.commit().await?;
        Ok(out)
    }
}

fn import_reason(e: &StoreError) -> String {
    match e {
        StoreError::Database(e) => format!("database refused the row: {e}"),
        other => other.to_string(),
    }
}

/// What an import batch's audit event records: how many rows it created, updated, recorded.
fn batch_changes(out: &ImportOutcome) -> Vec<bakkal_domain::audit::FieldChange> {
    [
        ("created", out.created),
        ("updated", out.updated),
        ("orders_recorded", out.orders_recorded),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(f, n)| bakkal_domain::audit::FieldChange {
        field: f.into(),
        before: None,
        after: Some(n.to_string()),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_updates_keep_what_the_row_lacks() {
        let existing = CustomerFields {
            display_name: "Ayşe".into(),
            city: "İzmir".into(),
            tags: vec!["a".into()],
            ..Default::default()
        };
        let row = CustomerFields {
            region: "Ege".into(),
            tags: vec!["b".into()],
            consent: bakkal_domain::Consents {
                email: bakkal_domain::Consent {
                    granted: true,
                    update_time: None,
                },
                ..Default::default()
            },
            ..Default::default()
        };
        let m = merge_for_import(&existing, &row);
        assert_eq!(m.display_name, "Ayşe");
        assert_eq!(m.city, "İzmir");
        assert_eq!(m.region, "Ege");
        assert_eq!(m.tags, vec!["a", "b"]);
        assert!(m.consent.email.granted);
    }
}
