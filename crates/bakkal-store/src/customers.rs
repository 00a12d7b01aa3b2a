//! Customers: create with duplicate prevention, read through merges, filtered keyset listing,
//! masked updates with etags, erasure, duplicate search and merging.

use std::collections::BTreeMap;

use bakkal_domain::filter::{self, Clause, FieldKind, Op, OrderBy, Value};
use bakkal_domain::name::customer_name;
use bakkal_domain::time::{Micros, MICROS_PER_DAY};
use bakkal_domain::{
    apply_mask, normalise, Consent, Consents, Customer, CustomerFields, OrderTotals,
    ValidationError, DEFAULT_LAPSE_DAYS,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::args::{bind, bind_as, Arg, SqlBuilder};
use crate::lock::{lock_key, lock_row};
use crate::page::Cursor;
use crate::{Result, Store, StoreError};

/// The columns every customer read selects, in the order [`customer_from_row`] decodes.
pub(crate) const CUSTOMER_COLUMNS: &str = "id, display_name, email, phone, country_code, region, \
    city, birth_date, tags, attributes, consent_email, consent_email_time, consent_sms, \
    consent_sms_time, consent_push, consent_push_time, consent_phone, consent_phone_time, \
    referred_by, owner, create_time, update_time, converted_time, version, order_count, \
    total_spent, first_order_time, last_order_time, referral_count, merged_into, deleted_time";

/// The writable columns, in the order [`field_args`] binds them.
pub(crate) const FIELD_COLUMNS: &[&str] = &[
    "display_name",
    "name_key",
    "email",
    "email_key",
    "phone",
    "country_code",
    "region",
    "city",
    "birth_date",
    "tags",
    "attributes",
    "consent_email",
    "consent_email_time",
    "consent_sms",
    "consent_sms_time",
    "consent_push",
    "consent_push_time",
    "consent_phone",
    "consent_phone_time",
    "referred_by",
    "owner",
];

/// Fields `ListCustomers` and `ExportCustomers` filter on.
pub const CUSTOMER_FILTER_FIELDS: &[(&str, FieldKind)] = &[
    ("stage", FieldKind::Enum(&["PROSPECT", "ACTIVE", "LAPSED"])),
    ("email", FieldKind::Text),
    ("phone", FieldKind::Text),
    ("display_name", FieldKind::Text),
    ("country_code", FieldKind::Text),
    ("region", FieldKind::Text),
    ("city", FieldKind::Text),
    ("owner", FieldKind::Text),
    ("tags", FieldKind::Repeated),
    ("value.order_count", FieldKind::Number),
    ("value.total_spent", FieldKind::Number),
    ("value.days_since_last_order", FieldKind::Number),
    ("value.referral_count", FieldKind::Number),
];

/// Fields `ListCustomers` orders by.
pub const CUSTOMER_SORT_FIELDS: &[&str] = &[
    "create_time",
    "update_time",
    "display_name",
    "value.total_spent",
    "value.order_count",
    "value.last_order_time",
];

fn encode_tags(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(",{},", tags.join(","))
    }
}

fn decode_tags(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) fn field_args(f: &CustomerFields) -> Vec<Arg> {
    let consent = |c: Consent| [Arg::Int(c.granted as i64), Arg::OptInt(c.update_time)];
    let mut v = vec![
        Arg::Text(f.display_name.clone()),
        Arg::Text(f.name_key()),
        Arg::OptText(f.email.clone()),
        Arg::OptText(f.email_key()),
        Arg::OptText(f.phone.clone()),
        Arg::OptText(f.country_code.clone()),
        Arg::Text(f.region.clone()),
        Arg::Text(f.city.clone()),
        Arg::OptText(f.birth_date.clone()),
        Arg::Text(encode_tags(&f.tags)),
        Arg::Text(serde_json::to_string(&f.attributes).unwrap_or_else(|_| "{}".into())),
    ];
    v.extend(consent(f.consent.email));
    v.extend(consent(f.consent.sms));
    v.extend(consent(f.consent.push));
    v.extend(consent(f.consent.phone));
    v.push(Arg::OptInt(f.referred_by));
    v.push(Arg::Text(f.owner.clone()));
    v
}

/// A stored row: the customer, and where it went if it was merged or erased.
pub(crate) struct CustomerRow {
    pub customer: Customer,
    pub merged_into: Option<i64>,
    pub deleted_time: Option<Micros>,
}

pub(crate) fn customer_from_row(r: &AnyRow) -> std::result::Result<CustomerRow, sqlx::Error> {
    let consent = |i: usize| -> std::result::Result<Consent, sqlx::Error> {
        Ok(Consent {
            granted: r.try_get::<i64, _>(i)? != 0,
            update_time: r.try_get(i + 1)?,
        })
    };
    let attributes: String = r.try_get(9)?;
    let fields = CustomerFields {
        display_name: r.try_get(1)?,
        email: r.try_get(2)?,
        phone: r.try_get(3)?,
        country_code: r.try_get(4)?,
        region: r.try_get(5)?,
        city: r.try_get(6)?,
        birth_date: r.try_get(7)?,
        tags: decode_tags(&r.try_get::<String, _>(8)?),
        attributes: serde_json::from_str::<BTreeMap<String, String>>(&attributes)
            .unwrap_or_default(),
        consent: Consents {
            email: consent(10)?,
            sms: consent(12)?,
            push: consent(14)?,
            phone: consent(16)?,
        },
        referred_by: r.try_get(18)?,
        owner: r.try_get(19)?,
    };
    Ok(CustomerRow {
        customer: Customer {
            id: r.try_get(0)?,
            fields,
            create_time: r.try_get(20)?,
            update_time: r.try_get(21)?,
            converted_time: r.try_get(22)?,
            version: r.try_get(23)?,
            totals: OrderTotals {
                order_count: r.try_get(24)?,
                total_spent: r.try_get(25)?,
                first_order_time: r.try_get(26)?,
                last_order_time: r.try_get(27)?,
            },
            referral_count: r.try_get(28)?,
        },
        merged_into: r.try_get(29)?,
        deleted_time: r.try_get(30)?,
    })
}

async fn load_row(conn: &mut AnyConnection, id: i64) -> Result<Option<CustomerRow>> {
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| customer_from_row(&r)).transpose()?)
}

/// Follow merges from `id` to the live customer it now is. NOT_FOUND when there is none or it
/// was erased.
pub(crate) async fn load_live(conn: &mut AnyConnection, id: i64) -> Result<Customer> {
    let mut current = id;
    for _ in 0..32 {
        match load_row(conn, current).await? {
            Some(CustomerRow {
                merged_into: Some(next),
                ..
            }) => current = next,
            Some(CustomerRow {
                customer,
                deleted_time: None,
                ..
            }) => return Ok(customer),
            _ => break,
        }
    }
    Err(StoreError::NotFound(customer_name(id)))
}

/// [`load_live`] for a read-check-write: the rows of `id` and of the live customer it now is
/// are locked first (PostgreSQL; see `lock.rs`), so the check sees the latest commit.
pub(crate) async fn load_live_locked(conn: &mut AnyConnection, id: i64) -> Result<Customer> {
    lock_row(conn, "customers", id).await?;
    let c = load_live(conn, id).await?;
    if c.id == id {
        return Ok(c);
    }
    lock_row(conn, "customers", c.id).await?;
    load_live(conn, id).await
}

/// ALREADY_EXISTS when another live customer holds this email (by its key) or phone.
pub(crate) async fn check_unique(
    conn: &mut AnyConnection,
    f: &CustomerFields,
    except: Option<i64>,
) -> Result<()> {
    let email_key = f.email_key();
    for (field, column, value, key) in [
        ("email", "email_key", &f.email, &email_key),
        ("phone", "phone", &f.phone, &f.phone),
    ] {
        let (Some(value), Some(key)) = (value, key) else {
            continue;
        };
        // `column` is chosen here, never the caller's text
        let sql = format!("SELECT id FROM customers WHERE {column} = $1");
        let holder: Option<i64> = sqlx::query_scalar(&sql)
            .bind(key.clone())
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(holder) = holder.filter(|h| Some(*h) != except) {
            return Err(StoreError::AlreadyExists {
                existing: customer_name(holder),
                field: format!("customer.{field}"),
                message: format!(
                    "a customer with {field} {value} already exists: {}",
                    customer_name(holder)
                ),
            });
        }
    }
    Ok(())
}

/// INVALID_ARGUMENT unless `referred_by` names another live customer.
async fn check_referrer(
    conn: &mut AnyConnection,
    f: &CustomerFields,
    me: Option<i64>,
) -> Result<()> {
    let Some(r) = f.referred_by else {
        return Ok(());
    };
    let bad = |why: &str| {
        StoreError::Invalid(ValidationError::single(
            "customer.referred_by",
            format!("{} {why}", customer_name(r)),
        ))
    };
    if Some(r) == me {
        return Err(bad("is this customer: nobody refers themselves"));
    }
    let live: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM customers WHERE id = $1 AND merged_into IS NULL AND deleted_time IS NULL",
    )
    .bind(r)
    .fetch_optional(&mut *conn)
    .await?;
    if live.is_none() {
        return Err(bad("does not exist"));
    }
    Ok(())
}

pub(crate) async fn refresh_referral_count(conn: &mut AnyConnection, id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE customers SET referral_count = \
         (SELECT COUNT(*) FROM customers r WHERE r.referred_by = $1 AND r.merged_into IS NULL) \
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) fn insert_sql() -> String {
    let cols = FIELD_COLUMNS.join(", ");
    let n = FIELD_COLUMNS.len();
    let placeholders: Vec<String> = (1..=n + 2).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO customers ({cols}, create_time, update_time) VALUES ({}) RETURNING id",
        placeholders.join(", ")
    )
}

pub(crate) async fn insert_customer(
    conn: &mut AnyConnection,
    f: &CustomerFields,
    now: Micros,
) -> Result<i64> {
    let sql = insert_sql();
    let mut args = field_args(f);
    args.push(Arg::Int(now));
    args.push(Arg::Int(now));
    let id: i64 = bind_as(sqlx::query_as::<_, (i64,)>(&sql), &args)
        .fetch_one(&mut *conn)
        .await?
        .0;
    Ok(id)
}

pub(crate) fn update_sql() -> String {
    let sets: Vec<String> = FIELD_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    let n = FIELD_COLUMNS.len();
    format!(
        "UPDATE customers SET {}, update_time = ${}, version = version + 1 WHERE id = ${}",
        sets.join(", "),
        n + 1,
        n + 2
    )
}

pub(crate) async fn write_fields(
    conn: &mut AnyConnection,
    id: i64,
    f: &CustomerFields,
    now: Micros,
) -> Result<()> {
    let sql = update_sql();
    let mut args = field_args(f);
    args.push(Arg::Int(now));
    args.push(Arg::Int(id));
    bind(sqlx::query(&sql), &args).execute(&mut *conn).await?;
    Ok(())
}

/// Recompute a customer's order totals and conversion from their paid orders.
pub(crate) async fn refresh_totals(conn: &mut AnyConnection, id: i64, now: Micros) -> Result<()> {
    sqlx::query(
        "UPDATE customers SET \
           order_count = (SELECT COUNT(*) FROM orders WHERE customer_id = $1 AND status = 'PAID'), \
           total_spent = (SELECT CAST(COALESCE(SUM(total), 0) AS BIGINT) FROM orders \
                          WHERE customer_id = $1 AND status = 'PAID'), \
           first_order_time = (SELECT MIN(placed_time) FROM orders \
                               WHERE customer_id = $1 AND status = 'PAID'), \
           last_order_time = (SELECT MAX(placed_time) FROM orders \
                              WHERE customer_id = $1 AND status = 'PAID'), \
           converted_time = COALESCE(converted_time, (SELECT MIN(placed_time) FROM orders \
                              WHERE customer_id = $1 AND status = 'PAID')), \
           update_time = $2, version = version + 1 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A parsed `ListCustomers` request.
#[derive(Debug, Clone)]
pub struct CustomerQuery {
    pub clauses: Vec<Clause>,
    pub order_by: OrderBy,
    pub page_size: usize,
    pub after: Option<Cursor>,
    /// The clock stage and day filters are evaluated against.
    pub now: Micros,
}

impl CustomerQuery {
    /// Parse a filter and order_by; `Err` names the offending field of the request.
    pub fn parse(filter_text: &str, order_by: &str, now: Micros) -> Result<Self, ValidationError> {
        let clauses = filter::parse(filter_text, CUSTOMER_FILTER_FIELDS)
            .map_err(|e| ValidationError::single("filter", e))?;
        for c in &clauses {
            if matches!(
                c.field.as_str(),
                "value.order_count" | "value.referral_count" | "value.days_since_last_order"
            ) && matches!(c.value, Value::Number(n) if n.fract() != 0.0)
            {
                return Err(ValidationError::single(
                    "filter",
                    format!("{} compares with whole numbers", c.field),
                ));
            }
        }
        let order_by = filter::parse_order_by(order_by, CUSTOMER_SORT_FIELDS, "create_time")
            .map_err(|e| ValidationError::single("order_by", e))?;
        Ok(CustomerQuery {
            clauses,
            order_by,
            page_size: 50,
            after: None,
            now,
        })
    }
}

enum SortKind {
    Int,
    Text,
}

fn sort_expr(field: &str) -> (&'static str, SortKind) {
    match field {
        "update_time" => ("update_time", SortKind::Int),
        "display_name" => ("display_name", SortKind::Text),
        "value.total_spent" => ("total_spent", SortKind::Int),
        "value.order_count" => ("order_count", SortKind::Int),
        "value.last_order_time" => ("COALESCE(last_order_time, 0)", SortKind::Int),
        _ => ("create_time", SortKind::Int),
    }
}

fn sort_key(field: &str, c: &Customer) -> Cursor {
    match field {
        "update_time" => Cursor::Int(c.update_time, c.id),
        "display_name" => Cursor::Text(c.fields.display_name.clone(), c.id),
        "value.total_spent" => Cursor::Int(c.totals.total_spent, c.id),
        "value.order_count" => Cursor::Int(c.totals.order_count, c.id),
        "value.last_order_time" => Cursor::Int(c.totals.last_order_time.unwrap_or(0), c.id),
        _ => Cursor::Int(c.create_time, c.id),
    }
}

fn text_value(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        Value::Number(n) => n.to_string(),
    }
}

/// Append `AND …` for each clause.
pub(crate) fn push_clauses(b: &mut SqlBuilder, clauses: &[Clause], now: Micros) {
    for c in clauses {
        b.push(" AND ");
        let negate = c.op == Op::Ne;
        match c.field.as_str() {
            "stage" => {
                let cutoff = now - DEFAULT_LAPSE_DAYS * MICROS_PER_DAY;
                if negate {
                    b.push("NOT ");
                }
                match text_value(&c.value).as_str() {
                    "PROSPECT" => b.push("(converted_time IS NULL)"),
                    "ACTIVE" => b
                        .push("(converted_time IS NOT NULL AND last_order_time > ")
                        .arg(Arg::Int(cutoff))
                        .push(")"),
                    _ => b
                        .push("(converted_time IS NOT NULL AND (last_order_time IS NULL OR last_order_time <= ")
                        .arg(Arg::Int(cutoff))
                        .push("))"),
                };
            }
            "tags" => {
                let tag = like_escape(&text_value(&c.value).to_lowercase());
                b.push("tags LIKE ")
                    .arg(Arg::Text(format!("%,{tag},%")))
                    .push(" ESCAPE '\\'");
            }
            "value.order_count" | "value.referral_count" | "value.total_spent" => {
                let (col, scale) = match c.field.as_str() {
                    "value.order_count" => ("order_count", 1.0),
                    "value.referral_count" => ("referral_count", 1.0),
                    _ => ("total_spent", 1_000_000.0),
                };
                let n = match c.value {
                    Value::Number(n) => (n * scale).round() as i64,
                    Value::Text(_) => 0,
                };
                b.push(col)
                    .push(" ")
                    .push(c.op.sql())
                    .push(" ")
                    .arg(Arg::Int(n));
            }
            "value.days_since_last_order" => {
                let n = match c.value {
                    Value::Number(n) => n as i64,
                    Value::Text(_) => 0,
                };
                b.push("(last_order_time IS NOT NULL AND ((")
                    .arg(Arg::Int(now))
                    .push(" - last_order_time) / 86400000000) ")
                    .push(c.op.sql())
                    .push(" ")
                    .arg(Arg::Int(n))
                    .push(")");
            }
            field => {
                let raw = text_value(&c.value);
                let v = match field {
                    "email" => normalise::email(&raw).unwrap_or(raw.trim().to_lowercase()),
                    "phone" => normalise::phone(&raw, None).unwrap_or(raw),
                    "country_code" => raw.trim().to_ascii_uppercase(),
                    _ => raw,
                };
                // `field` comes from CUSTOMER_FILTER_FIELDS, never from the caller's text.
                b.push(field)
                    .push(" ")
                    .push(c.op.sql())
                    .push(" ")
                    .arg(Arg::Text(v));
            }
        }
    }
}

/// A possible duplicate and why it looks like one.
#[derive(Debug, Clone)]
pub struct DuplicateCandidate {
    pub customer: Customer,
    pub reasons: Vec<String>,
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn national_suffix(phone: &str) -> Option<&str> {
    (phone.len() > 9).then(|| &phone[phone.len() - 9..])
}

impl Store {
    /// Give every customer written before migration 0012 its email key, which only Rust can
    /// compute. Runs after migrating, in batches; cheap once done (it finds no row). A row
    /// whose key another customer already holds (the same mailbox spelled twice, which the
    /// old rule let in) keeps no key, is named in a warning and is left for a merge.
    pub(crate) async fn backfill_email_keys(&self) -> Result<()> {
        let mut after = 0i64;
        loop {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, email FROM customers \
                 WHERE email IS NOT NULL AND email_key IS NULL AND id > $1 ORDER BY id LIMIT 500",
            )
            .bind(after)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
            let Some(&(last, _)) = rows.last() else {
                return Ok(());
            };
            let mut tx = self.write_tx().await?;
            for (id, email) in rows {
                let key = normalise::email_key(&email).unwrap_or_else(|_| email.clone());
                let holder: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM customers WHERE email_key = $1")
                        .bind(key.clone())
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(holder) = holder {
                    tracing::warn!(
                        customer = %customer_name(id),
                        holder = %customer_name(holder),
                        email = %email,
                        "two customers hold one mailbox; this one keeps no email key until they are merged"
                    );
                    continue;
                }
                sqlx::query("UPDATE customers SET email_key = $1 WHERE id = $2")
                    .bind(key)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            after = last;
        }
    }

    /// Create a customer from normalised fields. With a `request_id` seen before, return the
    /// customer that first request created.
    pub async fn create_customer(
        &self,
        fields: CustomerFields,
        request_id: Option<&str>,
        now: Micros,
    ) -> Result<Customer> {
        let key = request_id.map(|r| format!("CreateCustomer/{r}"));
        let result = self.try_create_customer(&fields, key.as_deref(), now).await;
        match result {
            // Lost a race for a unique key: report who holds it, or the replayed result.
            Err(e) if e.is_unique_violation() => {
                let mut conn = self.acquire().await?;
                if let Some(id) = self.replayed(&mut conn, key.as_deref()).await? {
                    return load_live(&mut conn, id).await;
                }
                check_unique(&mut conn, &fields, None).await?;
                Err(e)
            }
            other => other,
        }
    }

    async fn replayed(&self, conn: &mut AnyConnection, key: Option<&str>) -> Result<Option<i64>> {
        let Some(key) = key else { return Ok(None) };
        let resource: Option<String> =
            sqlx::query_scalar("SELECT resource FROM idempotency_keys WHERE key = $1")
                .bind(key.to_string())
                .fetch_optional(&mut *conn)
                .await?;
        Ok(resource.and_then(|r| bakkal_domain::name::parse_customer(&r)))
    }

    async fn try_create_customer(
        &self,
        fields: &CustomerFields,
        key: Option<&str>,
        now: Micros,
    ) -> Result<Customer> {
        let mut tx = self.write_tx().await?;
        if let Some(key) = key {
            lock_key(&mut tx, key).await?;
        }
        if let Some(id) = self.replayed(&mut tx, key).await? {
            let c = load_live(&mut tx, id).await?;
            tx.commit().await?;
            return Ok(c);
        }
        check_unique(&mut tx, fields, None).await?;
        check_referrer(&mut tx, fields, None).await?;
        let mut fields = fields.clone();
        fields.consent.stamp_changes(None, now);
        let id = insert_customer(&mut tx, &fields, now).await?;
        if let Some(r) = fields.referred_by {
            refresh_referral_count(&mut tx, r).await?;
        }
        if let Some(key) = key {
            sqlx::query(
                "INSERT INTO idempotency_keys (key, resource, create_time) VALUES ($1, $2, $3)",
            )
            .bind(key.to_string())
            .bind(customer_name(id))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let c = load_live(&mut tx, id).await?;
        tx.commit().await?;
        Ok(c)
    }

    /// The live customer `id` is (following merges).
    pub async fn get_customer(&self, id: i64) -> Result<Customer> {
        self.cached_customer(id).await
    }

    /// One page of customers and the cursor of the next page, with the total matching count.
    pub async fn list_customers(
        &self,
        q: &CustomerQuery,
        with_total: bool,
    ) -> Result<(Vec<Customer>, Option<Cursor>, i64)> {
        let (expr, kind) = sort_expr(&q.order_by.field);
        let mut b = SqlBuilder::new(format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE merged_into IS NULL AND deleted_time IS NULL"
        ));
        push_clauses(&mut b, &q.clauses, q.now);
        let total_sql = b.sql.replacen(CUSTOMER_COLUMNS, "COUNT(*)", 1);
        let total_args = b.args.clone();
        let (cmp, dir) = if q.order_by.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some(after) = &q.after {
            let (key, id) = match (after, kind) {
                (Cursor::Int(k, id), SortKind::Int) => (Arg::Int(*k), *id),
                (Cursor::Text(k, id), SortKind::Text) => (Arg::Text(k.clone()), *id),
                _ => {
                    return Err(StoreError::Invalid(ValidationError::single(
                        "page_token",
                        "does not belong to this query",
                    )))
                }
            };
            b.push(" AND (")
                .push(expr)
                .push(&format!(" {cmp} "))
                .arg(key.clone())
                .push(" OR (")
                .push(expr)
                .push(" = ")
                .arg(key)
                .push(&format!(" AND id {cmp} "))
                .arg(Arg::Int(id))
                .push("))");
        }
        b.push(&format!(" ORDER BY {expr} {dir}, id {dir} LIMIT "))
            .arg(Arg::Int(q.page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let customers = rows
            .iter()
            .map(|r| customer_from_row(r).map(|c| c.customer))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (customers, next) =
            crate::page::split_page(customers, q.page_size, |c| sort_key(&q.order_by.field, c));
        let total = if with_total {
            bind_as(sqlx::query_as::<_, (i64,)>(&total_sql), &total_args)
                .fetch_one(&mut *self.acquire().await?)
                .await?
                .0
        } else {
            0
        };
        Ok((customers, next, total))
    }

    /// Apply the masked fields of `input` (raw, not yet normalised) to customer `id`.
    /// `paths` must come from [`bakkal_domain::UPDATABLE_PATHS`]; empty means all of them.
    pub async fn update_customer(
        &self,
        id: i64,
        input: &CustomerFields,
        paths: &[&str],
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Customer> {
        let mut tx = self.write_tx().await?;
        let current = load_live_locked(&mut tx, id).await?;
        if let Some(etag) = etag.filter(|e| !e.is_empty()) {
            if etag != current.etag() {
                return Err(StoreError::Aborted(format!(
                    "{} changed since etag {etag} (now {}); read it again and retry",
                    current.name(),
                    current.etag()
                )));
            }
        }
        let mut merged = current.fields.clone();
        let paths: Vec<&str> = if paths.is_empty() {
            bakkal_domain::UPDATABLE_PATHS.to_vec()
        } else {
            paths.to_vec()
        };
        apply_mask(&mut merged, input, &paths);
        let mut fields = merged
            .normalised()
            .map_err(|e| StoreError::Invalid(e.prefixed("customer")))?;
        fields
            .consent
            .stamp_changes(Some(&current.fields.consent), now);
        check_unique(&mut tx, &fields, Some(current.id)).await?;
        if fields.referred_by != current.fields.referred_by {
            check_referrer(&mut tx, &fields, Some(current.id)).await?;
        }
        write_fields(&mut tx, current.id, &fields, now).await?;
        if fields.referred_by != current.fields.referred_by {
            for r in [current.fields.referred_by, fields.referred_by]
                .into_iter()
                .flatten()
            {
                refresh_referral_count(&mut tx, r).await?;
            }
        }
        let c = load_live(&mut tx, current.id).await?;
        tx.commit().await?;
        Ok(c)
    }

    /// Erase a customer's personal data. Their orders stay, anonymised; their interactions go.
    pub async fn delete_customer(&self, id: i64, etag: Option<&str>, now: Micros) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let current = load_live_locked(&mut tx, id).await?;
        if current.id != id {
            // a merged name: erasing through it would erase the survivor by surprise
            return Err(StoreError::FailedPrecondition(format!(
                "{} was merged into {}; delete that customer instead",
                customer_name(id),
                current.name()
            )));
        }
        if let Some(etag) = etag.filter(|e| !e.is_empty()) {
            if etag != current.etag() {
                return Err(StoreError::Aborted(format!(
                    "{} changed since etag {etag}",
                    current.name()
                )));
            }
        }
        sqlx::query("DELETE FROM interactions WHERE customer_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let erased = CustomerFields {
            referred_by: current.fields.referred_by,
            ..Default::default()
        };
        write_fields(&mut tx, id, &erased, now).await?;
        sqlx::query("UPDATE customers SET deleted_time = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM outbox_messages WHERE customer_id = $1 AND status = 'QUEUED'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Live customers that look like the same person as `id`.
    pub async fn find_duplicates(&self, id: i64) -> Result<Vec<DuplicateCandidate>> {
        let mut conn = self.acquire().await?;
        let me = load_live(&mut conn, id).await?;
        let f = &me.fields;
        let name_key = f.name_key();
        let local = f
            .email
            .as_deref()
            .and_then(|e| e.split_once('@'))
            .map(|(l, _)| l.to_string());
        let suffix = f
            .phone
            .as_deref()
            .and_then(national_suffix)
            .map(str::to_string);
        let sql = format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers \
             WHERE id <> $1 AND merged_into IS NULL AND deleted_time IS NULL AND ( \
               (name_key <> '' AND name_key = $2) \
               OR (phone IS NOT NULL AND $3 <> '' AND substr(phone, length(phone) - 8) = $3) \
               OR (email IS NOT NULL AND $4 <> '' AND email LIKE $5 ESCAPE '\\')) \
             ORDER BY id LIMIT 200"
        );
        let rows = sqlx::query(&sql)
            .bind(me.id)
            .bind(name_key.clone())
            .bind(suffix.clone().unwrap_or_default())
            .bind(local.clone().unwrap_or_default())
            .bind(format!("{}@%", like_escape(local.as_deref().unwrap_or(""))))
            .fetch_all(&mut *conn)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let other = customer_from_row(&r)?.customer;
            let o = &other.fields;
            let same_name = !name_key.is_empty() && o.name_key() == name_key;
            let mut reasons = Vec::new();
            if same_name && f.birth_date.is_some() && o.birth_date == f.birth_date {
                reasons.push("same name and birth date".to_string());
            }
            if same_name && !f.city.is_empty() && o.city.eq_ignore_ascii_case(&f.city) {
                reasons.push("same name and city".to_string());
            }
            if suffix.is_some() && o.phone.as_deref().and_then(national_suffix) == suffix.as_deref()
            {
                reasons.push("same phone number without the country code".to_string());
            }
            let other_local = o
                .email
                .as_deref()
                .and_then(|e| e.split_once('@'))
                .map(|(l, _)| l);
            if local.as_deref().is_some_and(|l| l.len() >= 4) && other_local == local.as_deref() {
                reasons.push("same email address at another domain".to_string());
            }
            if same_name && reasons.is_empty() && f.birth_date.is_none() && f.city.is_empty() {
                reasons.push("same name".to_string());
            }
            if !reasons.is_empty() {
                out.push(DuplicateCandidate {
                    customer: other,
                    reasons,
                });
            }
        }
        Ok(out)
    }

    /// Merge `duplicate` into `primary` and return the primary. Merging again is a no-op.
    pub async fn merge_customers(
        &self,
        primary: i64,
        duplicate: i64,
        now: Micros,
    ) -> Result<Customer> {
        let mut tx = self.write_tx().await?;
        // both rows locked, in id order so that two opposite merges cannot deadlock
        for id in [primary.min(duplicate), primary.max(duplicate)] {
            lock_row(&mut tx, "customers", id).await?;
        }
        let p = load_live(&mut tx, primary).await?;
        if p.id != primary {
            return Err(StoreError::FailedPrecondition(format!(
                "{} was itself merged into {}; merge into that customer",
                customer_name(primary),
                p.name()
            )));
        }
        let d = load_live(&mut tx, duplicate).await?;
        if d.id == p.id {
            if duplicate == primary {
                return Err(StoreError::Invalid(ValidationError::single(
                    "duplicate",
                    "a customer cannot be merged into itself",
                )));
            }
            // already merged: the retried merge returns the same result
            tx.commit().await?;
            return Ok(p);
        }
        for sql in [
            "UPDATE orders SET customer_id = $1 WHERE customer_id = $2",
            "UPDATE interactions SET customer_id = $1 WHERE customer_id = $2",
            "UPDATE customers SET referred_by = $1 WHERE referred_by = $2 AND id <> $1",
            "UPDATE customers SET merged_into = $1 WHERE merged_into = $2",
        ] {
            sqlx::query(sql)
                .bind(p.id)
                .bind(d.id)
                .execute(&mut *tx)
                .await?;
        }
        // The survivor keeps its own data and gains what only the duplicate knew.
        let (pf, df) = (&p.fields, &d.fields);
        let mut f = pf.clone();
        let fill = |mine: &mut Option<String>, theirs: &Option<String>| {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        };
        fill(&mut f.email, &df.email);
        fill(&mut f.phone, &df.phone);
        fill(&mut f.country_code, &df.country_code);
        fill(&mut f.birth_date, &df.birth_date);
        for (mine, theirs) in [
            (&mut f.display_name, &df.display_name),
            (&mut f.region, &df.region),
            (&mut f.city, &df.city),
            (&mut f.owner, &df.owner),
        ] {
            if mine.is_empty() {
                mine.clone_from(theirs);
            }
        }
        if f.referred_by.is_none() && df.referred_by != Some(p.id) {
            f.referred_by = df.referred_by;
        }
        if f.referred_by == Some(d.id) {
            f.referred_by = None;
        }
        f.tags.extend(df.tags.iter().cloned());
        f.tags.sort();
        f.tags.dedup();
        for (k, v) in &df.attributes {
            f.attributes.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for ch in bakkal_domain::ConsentChannel::ALL {
            let (mine, theirs) = (pf.consent.get(ch), df.consent.get(ch));
            if theirs.update_time.unwrap_or(0) > mine.update_time.unwrap_or(0) {
                *f.consent.get_mut(ch) = theirs;
            }
        }
        // Free the duplicate's unique keys before the survivor takes them.
        let tombstone = CustomerFields::default();
        write_fields(&mut tx, d.id, &tombstone, now).await?;
        sqlx::query("UPDATE customers SET merged_into = $1, order_count = 0, total_spent = 0, \
                     first_order_time = NULL, last_order_time = NULL, referral_count = 0 WHERE id = $2")
            .bind(p.id)
            .bind(d.id)
            .execute(&mut *tx)
            .await?;
        write_fields(&mut tx, p.id, &f, now).await?;
        refresh_totals(&mut tx, p.id, now).await?;
        let mut referrers = vec![p.id];
        referrers.extend(pf.referred_by);
        referrers.extend(df.referred_by);
        referrers.extend(f.referred_by);
        referrers.sort();
        referrers.dedup();
        for r in referrers {
            refresh_referral_count(&mut tx, r).await?;
        }
        let merged = load_live(&mut tx, p.id).await?;
        tx.commit().await?;
        Ok(merged)
    }
}

pub(crate) fn bad_token() -> StoreError {
    StoreError::Invalid(ValidationError::single(
        "page_token",
        "does not belong to this list; start again without a page_token",
    ))
}
