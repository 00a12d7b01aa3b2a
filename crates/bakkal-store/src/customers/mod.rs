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
use crate::{RecordScope, Result, Store, StoreError};
mod merge;
mod query;
mod write;

pub use merge::DuplicateCandidate;
pub(crate) use query::push_clauses;
pub use query::CustomerQuery;

/// The columns every customer read selects, in the order [`customer_from_row`] decodes.
pub(crate) const CUSTOMER_COLUMNS: &str = "id, display_name, email, phone, country_code, region, \
    city, birth_date, tags, attributes, consent_email, consent_email_time, consent_sms, \
    consent_sms_time, consent_push, consent_push_time, consent_phone, consent_phone_time, \
    referred_by, owner, create_time, update_time, converted_time, version, order_count, \
    total_spent, first_order_time, last_order_time, referral_count, merged_into, deleted_time, \
    organization_id";

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
    "organization_id",
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
    ("organization", FieldKind::Text),
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

pub(crate) fn encode_tags(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(",{},", tags.join(","))
    }
}

pub(crate) fn decode_tags(s: &str) -> Vec<String> {
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
    v.push(Arg::OptInt(f.organization_id));
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
        organization_id: r.try_get(31)?,
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
        let (Some(_), Some(key)) = (value, key) else {
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
                // the value is not repeated: it is the holder's personal data, which a caller
                // without the right to read it must not learn in an error
                message: format!(
                    "a customer with this {field} already exists: {}",
                    customer_name(holder)
                ),
            });
        }
    }
    Ok(())
}

/// INVALID_ARGUMENT unless the organisation the customer belongs to is a live one.
pub(crate) async fn check_organization(conn: &mut AnyConnection, f: &CustomerFields) -> Result<()> {
    let Some(o) = f.organization_id else {
        return Ok(());
    };
    let live: Option<i64> =
        sqlx::query_scalar("SELECT id FROM organizations WHERE id = $1 AND merged_into IS NULL")
            .bind(o)
            .fetch_optional(&mut *conn)
            .await?;
    if live.is_none() {
        return Err(StoreError::Invalid(ValidationError::single(
            "customer.organization",
            format!(
                "{} does not exist",
                bakkal_domain::sales::organization_name(o)
            ),
        )));
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
/// `UPDATE customers SET <value keys from paid orders>, update_time = <now> WHERE id …`, up to
/// the `WHERE`: what `refresh_totals` and `refresh_totals_many` both run.
fn totals_update(now: &str) -> String {
    const PAID: &str = "FROM orders o WHERE o.customer_id = customers.id AND o.status = 'PAID'";
    format!(
        "UPDATE customers SET \
           order_count = (SELECT COUNT(*) {PAID}), \
           total_spent = (SELECT CAST(COALESCE(SUM(o.total), 0) AS BIGINT) {PAID}), \
           first_order_time = (SELECT MIN(o.placed_time) {PAID}), \
           last_order_time = (SELECT MAX(o.placed_time) {PAID}), \
           converted_time = COALESCE(converted_time, (SELECT MIN(o.placed_time) {PAID})), \
           update_time = {now}, version = version + 1 \
         WHERE id"
    )
}

pub(crate) async fn refresh_totals(conn: &mut AnyConnection, id: i64, now: Micros) -> Result<()> {
    sqlx::query(&format!("{} = $2", totals_update("$1")))
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `refresh_totals` for many customers: one UPDATE per thousand (an import's batch).
pub(crate) async fn refresh_totals_many(
    backend: crate::Backend,
    conn: &mut AnyConnection,
    ids: &[i64],
    now: Micros,
) -> Result<()> {
    for chunk in ids.chunks(1000) {
        let mut sql = totals_update(&crate::args::positional(backend, 1));
        sql.push_str(" IN (");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&crate::args::positional(backend, i + 2));
        }
        sql.push(')');
        let q = chunk
            .iter()
            .fold(sqlx::query(&sql).bind(now), |q, id| q.bind(*id));
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

pub(crate) fn bad_token() -> StoreError {
    StoreError::Invalid(ValidationError::single(
        "page_token",
        "does not belong to this list; start again without a page_token",
    ))
}
