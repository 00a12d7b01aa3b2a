//! Segments and the customer pyramid: the value model, customer scores and tiers, segments and
//! their materialised members, and the event outbox (`tier_changed`, `segment_entered`,
//! `segment_exited`) written in the same transaction as each change. What a score or a segment
//! means is decided by `bakkal-engine`; the store keeps and streams the data.

use std::collections::HashMap;

use bakkal_domain::filter::{self, Clause, FieldKind, Op, Value};
use bakkal_domain::time::Micros;
use bakkal_domain::{
    Consent, Consents, Customer, CustomerFields, Order, OrderLine, OrderStatus, OrderTotals,
};
use sqlx::Row;

use crate::args::{bind, bind_as, Arg, SqlBuilder};
use crate::customers::{load_live, push_clauses, CUSTOMER_COLUMNS};
use crate::page::Cursor;
use crate::{RecordScope, Result, Store, StoreError};

/// Fields a segment's base filter may use.
pub const SEGMENT_FILTER_FIELDS: &[(&str, FieldKind)] = &[
    ("stage", FieldKind::Enum(&["PROSPECT", "ACTIVE", "LAPSED"])),
    ("region", FieldKind::Text),
    ("tier", FieldKind::Text),
];

/// Parse a segment's base filter; `Err` is the message for the filter field.
pub fn parse_segment_filter(text: &str) -> std::result::Result<Vec<Clause>, String> {
    filter::parse(text, SEGMENT_FILTER_FIELDS)
}

/// A column a pure-predicate rule compares, as the script sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredicateColumn {
    /// `c.total_spent` / `c.ltv`: a float in currency units.
    TotalSpent,
    OrderCount,
    ReferralCount,
    /// `-1` for a customer who never bought.
    DaysSinceLastOrder,
    /// `0` for a prospect.
    TenureDays,
    Region,
    City,
    Owner,
    DisplayName,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PredicateValue {
    Float(f64),
    Int(i64),
    Text(String),
}

/// One `column op value` of a rule translated from a SEGMENT script.
#[derive(Debug, Clone, PartialEq)]
pub struct PredicateClause {
    pub column: PredicateColumn,
    pub op: Op,
    pub value: PredicateValue,
}

/// `segments/{id}`.
pub fn segment_name(id: i64) -> String {
    format!("segments/{id}")
}

/// The value model as stored: JSON texts the engine reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValueModel {
    pub weights_json: String,
    pub tiers_json: String,
    pub update_time: Micros,
}

/// What scoring needs of one customer: numbers only, plus the tier it had.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreInput {
    pub id: i64,
    pub total_spent: i64,
    pub order_count: i64,
    pub first_order_time: Option<Micros>,
    pub last_order_time: Option<Micros>,
    pub referral_count: i64,
    /// The attributes JSON, read only when asked for.
    pub attributes: Option<String>,
    pub old_tier: Option<String>,
}

/// One customer's computed score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRow {
    pub customer_id: i64,
    pub score: f64,
    pub tier: String,
    pub rfm: [i64; 3],
}

/// A stored score.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerScore {
    pub customer_id: i64,
    pub score: f64,
    pub tier: String,
    pub rfm: [i64; 3],
    pub compute_time: Micros,
}

/// An event for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: &'static str,
    pub customer_id: i64,
    pub payload: String,
}

/// A customer of an evaluation batch: the record, its tier (if scored) and, when asked for,
/// its orders.
#[derive(Debug, Clone)]
pub struct BatchCustomer {
    pub customer: Customer,
    pub tier: Option<String>,
    pub orders: Vec<Order>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub id: i64,
    pub display_name: String,
    pub script: String,
    pub filter: String,
    pub member_count: i64,
    pub refresh_time: Option<Micros>,
    pub refresh_duration: Option<i64>,
    pub create_time: Micros,
}

impl Segment {
    pub fn name(&self) -> String {
        segment_name(self.id)
    }
}

#[derive(Debug, Clone)]
pub struct NewSegment {
    pub display_name: String,
    pub script: String,
    pub filter: String,
}

/// The second dimension of the pyramid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breakdown {
    None,
    Region,
    Stage,
    /// A custom attribute; the key is checked by the caller (letters, digits, `_`, `-`).
    Attribute(String),
}

/// One cell of the pyramid: a tier and a breakdown value.
#[derive(Debug, Clone, PartialEq)]
pub struct PyramidCell {
    pub tier: String,
    pub value: String,
    pub customer_count: i64,
    pub revenue: i64,
    pub min_score: f64,
    pub max_score: f64,
}

const SEGMENT_COLUMNS: &str = "id, display_name, script, filter, member_count, refresh_time, \
    refresh_duration, create_time";

fn segment_from_row(r: &sqlx::any::AnyRow) -> std::result::Result<Segment, sqlx::Error> {
    Ok(Segment {
        id: r.try_get(0)?,
        display_name: r.try_get(1)?,
        script: r.try_get(2)?,
        filter: r.try_get(3)?,
        member_count: r.try_get(4)?,
        refresh_time: r.try_get(5)?,
        refresh_duration: r.try_get(6)?,
        create_time: r.try_get(7)?,
    })
}

/// Rows per JSON parameter of a bulk write.
const JSON_CHUNK: usize = 10_000;
/// Member ids read per query.
const ID_CHUNK: i64 = 200_000;

/// Append the base filter's clauses (stage and region as `ListCustomers` does; tier on the
/// joined scores `s`).
fn push_segment_clauses(b: &mut SqlBuilder, clauses: &[Clause], now: Micros) {
    let (tier, rest): (Vec<Clause>, Vec<Clause>) =
        clauses.iter().cloned().partition(|c| c.field == "tier");
    push_clauses(b, &rest, now);
    for c in tier {
        let v = match &c.value {
            Value::Text(t) => t.clone(),
            Value::Number(n) => n.to_string(),
        };
        if c.op == Op::Ne {
            b.push(" AND (s.tier IS NULL OR s.tier <> ")
                .arg(Arg::Text(v))
                .push(")");
        } else {
            b.push(" AND s.tier = ").arg(Arg::Text(v));
        }
    }
}

async fn insert_events(
    conn: &mut sqlx::AnyConnection,
    backend: crate::Backend,
    events: &[NewEvent],
    now: Micros,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO events (kind, customer_id, payload, create_time) SELECT {}, {}, {}, $2 \
         FROM {}",
        json_field(backend, 0, "TEXT"),
        json_field(backend, 1, "BIGINT"),
        json_field(backend, 2, "TEXT"),
        json_rows(backend, 1),
    );
    for chunk in events.chunks(JSON_CHUNK) {
        let json: Vec<serde_json::Value> = chunk
            .iter()
            .map(|e| serde_json::json!([e.kind, e.customer_id, e.payload]))
            .collect();
        sqlx::query(&sql)
            .bind(serde_json::Value::Array(json).to_string())
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The first 16 customer columns, then the other 15 and the tier, as two JSON arrays (serde
/// deserialises tuples of up to 16).
const GROUP_A: &str = "id, display_name, email, phone, country_code, region, city, birth_date, \
    tags, attributes, consent_email, consent_email_time, consent_sms, consent_sms_time, \
    consent_push, consent_push_time";
const GROUP_B: &str = "consent_phone, consent_phone_time, referred_by, owner, create_time, \
    update_time, converted_time, version, order_count, total_spent, first_order_time, \
    last_order_time, referral_count, merged_into, deleted_time, tier";

type RowA = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
);
type RowB = (
    i64,
    Option<i64>,
    Option<i64>,
    String,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);
type OrderJson = (String, i64, String, i64, String, i64, String, i64);

fn decode_error(e: serde_json::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(Box::new(e)))
}

fn json_array(backend: crate::Backend) -> &'static str {
    match backend {
        crate::Backend::Sqlite => "json_array",
        crate::Backend::Postgres => "json_build_array",
    }
}

/// An aggregate of `expr` over the rows as one JSON array text (`[]` for none).
fn json_agg(backend: crate::Backend, expr: &str, order: &str) -> String {
    match backend {
        crate::Backend::Sqlite => format!("json_group_array({expr})"),
        crate::Backend::Postgres => {
            format!("CAST(COALESCE(json_agg({expr} ORDER BY {order}), '[]') AS TEXT)")
        }
    }
}

/// `SELECT value FROM …` over the elements of the JSON array parameter `$n` (numbers or
/// strings), cast to `ty` on PostgreSQL: a whole id or key list as one bound parameter.
pub(crate) fn json_list(backend: crate::Backend, n: usize, ty: &str) -> String {
    match backend {
        crate::Backend::Sqlite => format!("SELECT value FROM json_each(${n})"),
        crate::Backend::Postgres => {
            format!("SELECT CAST(value AS {ty}) FROM json_array_elements_text(CAST(${n} AS json))")
        }
    }
}

/// Rows of a JSON array parameter `$n` (each element `value` on SQLite, `e` on PostgreSQL):
/// the FROM clause and an accessor for element `i` cast to `ty`.
fn json_rows(backend: crate::Backend, n: usize) -> String {
    match backend {
        crate::Backend::Sqlite => format!("json_each(${n})"),
        crate::Backend::Postgres => format!("json_array_elements(CAST(${n} AS json)) AS e"),
    }
}

fn json_field(backend: crate::Backend, i: usize, ty: &str) -> String {
    match backend {
        crate::Backend::Sqlite => format!("json_extract(value, '$[{i}]')"),
        crate::Backend::Postgres => format!("CAST(e->>{i} AS {ty})"),
    }
}

/// The live customers matching the base filter and the predicate, as `FROM … WHERE …`.
fn predicate_from(
    clauses: &[Clause],
    predicate: &[PredicateClause],
    now: Micros,
    scope: &RecordScope,
) -> SqlBuilder {
    let mut b = SqlBuilder::new(
        " FROM customers LEFT JOIN customer_scores s ON s.customer_id = id \
         WHERE merged_into IS NULL AND deleted_time IS NULL",
    );
    push_segment_clauses(&mut b, clauses, now);
    scope.push_customers(&mut b, "");
    let day = bakkal_domain::time::MICROS_PER_DAY;
    for p in predicate {
        let expr = match p.column {
            PredicateColumn::TotalSpent => {
                "(CAST(total_spent AS DOUBLE PRECISION) / 1000000.0)".to_string()
            }
            PredicateColumn::OrderCount => "order_count".into(),
            PredicateColumn::ReferralCount => "referral_count".into(),
            PredicateColumn::DaysSinceLastOrder => format!(
                "(CASE WHEN last_order_time IS NULL THEN -1 WHEN last_order_time >= {now} \
                 THEN 0 ELSE ({now} - last_order_time) / {day} END)"
            ),
            PredicateColumn::TenureDays => format!(
                "(CASE WHEN first_order_time IS NULL OR first_order_time >= {now} THEN 0 \
                 ELSE ({now} - first_order_time) / {day} END)"
            ),
            PredicateColumn::Region => "region".into(),
            PredicateColumn::City => "city".into(),
            PredicateColumn::Owner => "owner".into(),
            PredicateColumn::DisplayName => "display_name".into(),
        };
        b.push(" AND ")
            .push(&expr)
            .push(" ")
            .push(p.op.sql())
            .push(" ");
        match &p.value {
            // Numbers from a parsed literal: finite, formatted by Rust, never caller text.
            PredicateValue::Float(f) => b.push(&format!("{f:?}")),
            PredicateValue::Int(i) => b.push(&i.to_string()),
            PredicateValue::Text(t) => b.arg(Arg::Text(t.clone())),
        };
    }
    b
}

fn decode_tags(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn customer_from_json(a: RowA, b: RowB) -> BatchCustomer {
    let consent = |granted: i64, update_time: Option<i64>| Consent {
        granted: granted != 0,
        update_time,
    };
    let fields = CustomerFields {
        display_name: a.1,
        email: a.2,
        phone: a.3,
        country_code: a.4,
        region: a.5,
        city: a.6,
        birth_date: a.7,
        tags: decode_tags(&a.8),
        attributes: if a.9 == "{}" {
            Default::default()
        } else {
            serde_json::from_str(&a.9).unwrap_or_default()
        },
        consent: Consents {
            email: consent(a.10, a.11),
            sms: consent(a.12, a.13),
            push: consent(a.14, a.15),
            phone: consent(b.0, b.1),
        },
        referred_by: b.2,
        owner: b.3,
        organization_id: None,
    };
    BatchCustomer {
        customer: Customer {
            id: a.0,
            fields,
            create_time: b.4,
            update_time: b.5,
            converted_time: b.6,
            version: b.7,
            totals: OrderTotals {
                order_count: b.8,
                total_spent: b.9,
                first_order_time: b.10,
                last_order_time: b.11,
            },
            referral_count: b.12,
        },
        tier: b.15,
        orders: Vec::new(),
    }
}

impl Store {
    // ---- value model and scores ------------------------------------------------------------

    pub async fn get_value_model(&self) -> Result<Option<StoredValueModel>> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT weights, tiers, update_time FROM value_models WHERE id = 1")
                .fetch_optional(&mut *self.acquire().await?)
                .await?;
        Ok(row.map(|(w, t, u)| StoredValueModel {
            weights_json: w,
            tiers_json: t,
            update_time: u,
        }))
    }

    pub async fn set_value_model(
        &self,
        weights_json: &str,
        tiers_json: &str,
        now: Micros,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO value_models (id, weights, tiers, update_time) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET weights = excluded.weights, tiers = excluded.tiers, \
             update_time = excluded.update_time",
        )
        .bind(weights_json.to_string())
        .bind(tiers_json.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Live customers with id > `after`, in id order, at most `limit`: the numbers scoring
    /// needs and the tier each had.
    pub async fn score_inputs(
        &self,
        after: i64,
        limit: usize,
        with_attributes: bool,
    ) -> Result<Vec<ScoreInput>> {
        let attrs = if with_attributes {
            "c.attributes"
        } else {
            "''"
        };
        let inner = format!(
            "SELECT c.id AS id, c.total_spent AS total_spent, c.order_count AS order_count, \
             c.first_order_time AS first_order_time, c.last_order_time AS last_order_time, \
             c.referral_count AS referral_count, {attrs} AS attributes, s.tier AS tier \
             FROM customers c LEFT JOIN customer_scores s ON s.customer_id = c.id \
             WHERE c.id > $1 AND c.merged_into IS NULL AND c.deleted_time IS NULL \
             ORDER BY c.id LIMIT $2"
        );
        let sql = format!(
            "SELECT {} FROM ({inner}) t",
            json_agg(
                self.backend,
                &format!(
                    "{}(id, total_spent, order_count, first_order_time, last_order_time, \
                     referral_count, attributes, tier)",
                    json_array(self.backend)
                ),
                "id"
            )
        );
        let text: String = sqlx::query(&sql)
            .bind(after)
            .bind(limit as i64)
            .fetch_one(&mut *self.acquire().await?)
            .await?
            .try_get(0)?;
        type In = (
            i64,
            i64,
            i64,
            Option<i64>,
            Option<i64>,
            i64,
            String,
            Option<String>,
        );
        let rows: Vec<In> = serde_json::from_str(&text).map_err(decode_error)?;
        let mut out: Vec<ScoreInput> = rows
            .into_iter()
            .map(|r| ScoreInput {
                id: r.0,
                total_spent: r.1,
                order_count: r.2,
                first_order_time: r.3,
                last_order_time: r.4,
                referral_count: r.5,
                attributes: with_attributes.then_some(r.6),
                old_tier: r.7,
            })
            .collect();
        out.sort_unstable_by_key(|r| r.id);
        Ok(out)
    }

    /// Write a batch of scores and its `tier_changed` events in one transaction.
    pub async fn write_scores(
        &self,
        rows: &[ScoreRow],
        events: &[NewEvent],
        now: Micros,
    ) -> Result<()> {
        let be = self.backend;
        let sql = format!(
            "INSERT INTO customer_scores (customer_id, score, tier, rfm_r, rfm_f, rfm_m, \
             compute_time) SELECT {}, {}, {}, {}, {}, {}, $2 FROM {} WHERE 1 = 1 \
             ON CONFLICT (customer_id) DO UPDATE SET score = excluded.score, \
             tier = excluded.tier, rfm_r = excluded.rfm_r, rfm_f = excluded.rfm_f, \
             rfm_m = excluded.rfm_m, compute_time = excluded.compute_time",
            json_field(be, 0, "BIGINT"),
            json_field(be, 1, "DOUBLE PRECISION"),
            json_field(be, 2, "TEXT"),
            json_field(be, 3, "BIGINT"),
            json_field(be, 4, "BIGINT"),
            json_field(be, 5, "BIGINT"),
            json_rows(be, 1),
        );
        let mut tx = self.write_tx().await?;
        for chunk in rows.chunks(JSON_CHUNK) {
            let json: Vec<serde_json::Value> = chunk
                .iter()
                .map(|r| {
                    serde_json::json!([
                        r.customer_id,
                        r.score,
                        r.tier,
                        r.rfm[0],
                        r.rfm[1],
                        r.rfm[2]
                    ])
                })
                .collect();
            sqlx::query(&sql)
                .bind(serde_json::Value::Array(json).to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        insert_events(&mut tx, be, events, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A customer's score (merges followed). NOT_FOUND for no such customer; `None` when it
    /// has not been scored yet.
    pub async fn customer_score(
        &self,
        id: i64,
        scope: &RecordScope,
    ) -> Result<(Customer, Option<CustomerScore>)> {
        let c = self.get_customer(id, scope).await?;
        let row: Option<(f64, String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT score, tier, rfm_r, rfm_f, rfm_m, compute_time FROM customer_scores \
             WHERE customer_id = $1",
        )
        .bind(c.id)
        .fetch_optional(&mut *self.acquire().await?)
        .await?;
        let score = row.map(|(score, tier, r, f, m, t)| CustomerScore {
            customer_id: c.id,
            score,
            tier,
            rfm: [r, f, m],
            compute_time: t,
        });
        Ok((c, score))
    }

    /// Per tier (and breakdown value): counts, revenue and score range, over scored live
    /// customers, restricted to a segment's members when `segment` is given.
    pub async fn pyramid(
        &self,
        segment: Option<i64>,
        breakdown: &Breakdown,
        now: Micros,
    ) -> Result<Vec<PyramidCell>> {
        let mut b = SqlBuilder::default();
        let value_expr = match breakdown {
            Breakdown::None => "''".to_string(),
            Breakdown::Region => "c.region".to_string(),
            Breakdown::Stage => {
                let cutoff =
                    now - bakkal_domain::DEFAULT_LAPSE_DAYS * bakkal_domain::time::MICROS_PER_DAY;
                format!(
                    "CASE WHEN c.converted_time IS NULL THEN 'PROSPECT' \
                     WHEN COALESCE(c.last_order_time, c.converted_time) > {cutoff} \
                     THEN 'ACTIVE' ELSE 'LAPSED' END"
                )
            }
            // The key is checked by the caller: letters, digits, `_` and `-` only.
            Breakdown::Attribute(key) => match self.backend {
                crate::Backend::Sqlite => {
                    format!("COALESCE(json_extract(c.attributes, '$.\"{key}\"'), '')")
                }
                crate::Backend::Postgres => {
                    format!("COALESCE(CAST(c.attributes AS jsonb) ->> '{key}', '')")
                }
            },
        };
        b.push(&format!(
            "SELECT s.tier, {value_expr} AS v, COUNT(*), \
             CAST(COALESCE(SUM(c.total_spent), 0) AS BIGINT), MIN(s.score), MAX(s.score) \
             FROM customer_scores s JOIN customers c ON c.id = s.customer_id "
        ));
        if let Some(seg) = segment {
            b.push("JOIN segment_members m ON m.customer_id = s.customer_id AND m.segment_id = ")
                .arg(Arg::Int(seg));
        }
        b.push(" WHERE c.merged_into IS NULL AND c.deleted_time IS NULL GROUP BY s.tier, v");
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PyramidCell {
                    tier: r.try_get(0)?,
                    value: r.try_get(1)?,
                    customer_count: r.try_get(2)?,
                    revenue: r.try_get(3)?,
                    min_score: r.try_get(4)?,
                    max_score: r.try_get(5)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    // ---- evaluation batches ----------------------------------------------------------------

    /// The live (not erased, not merged) customers among `ids`, in id order, with one query
    /// (one row: the customers as a JSON array).
    pub(crate) async fn live_customers_by_id(
        &self,
        ids: &[i64],
    ) -> Result<Vec<bakkal_domain::Customer>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM (SELECT {CUSTOMER_COLUMNS}, CAST(NULL AS TEXT) AS tier FROM customers \
             WHERE merged_into IS NULL AND deleted_time IS NULL AND id IN ({})) t",
            json_agg(
                self.backend,
                &format!(
                    "{f}({f}({GROUP_A}), {f}({GROUP_B}))",
                    f = json_array(self.backend)
                ),
                "id"
            ),
            json_list(self.backend, 1, "BIGINT")
        );
        let list = serde_json::to_string(ids).map_err(decode_error)?;
        let text: String = sqlx::query(&sql)
            .bind(list)
            .fetch_one(&mut *self.acquire().await?)
            .await?
            .try_get(0)?;
        let rows: Vec<(RowA, RowB)> = serde_json::from_str(&text).map_err(decode_error)?;
        let mut out: Vec<bakkal_domain::Customer> = rows
            .into_iter()
            .map(|(a, b)| customer_from_json(a, b).customer)
            .collect();
        out.sort_unstable_by_key(|c| c.id);
        Ok(out)
    }

    /// The orders of customers `first..=last` (any status), as one JSON row: a driver row per
    /// order costs more than the query. In no promised order.
    pub(crate) async fn orders_of_customers(&self, first: i64, last: i64) -> Result<Vec<Order>> {
        let sql = format!(
            "SELECT {} FROM orders WHERE customer_id >= $1 AND customer_id <= $2",
            json_agg(
                self.backend,
                &format!(
                    "{}(order_id, customer_id, currency, placed_time, status, total, lines, \
                     create_time)",
                    json_array(self.backend)
                ),
                "customer_id"
            )
        );
        let text: String = sqlx::query(&sql)
            .bind(first)
            .bind(last)
            .fetch_one(&mut *self.acquire().await?)
            .await?
            .try_get(0)?;
        let rows: Vec<OrderJson> = serde_json::from_str(&text).map_err(decode_error)?;
        rows.into_iter()
            .map(
                |(
                    order_id,
                    customer_id,
                    currency,
                    placed_time,
                    status,
                    _total,
                    lines,
                    create_time,
                )| {
                    Ok(Order {
                        order_id,
                        customer_id,
                        currency,
                        placed_time,
                        status: OrderStatus::parse(&status).unwrap_or(OrderStatus::Paid),
                        lines: serde_json::from_str::<Vec<OrderLine>>(&lines)
                            .map_err(decode_error)?,
                        create_time,
                    })
                },
            )
            .collect()
    }

    /// Live customers with id > `after` matching the base filter, in id order, at most
    /// `limit`, each with its tier and (when `with_orders`) its orders, read with one more
    /// query for the whole batch.
    pub async fn customer_batch(
        &self,
        after: i64,
        limit: usize,
        clauses: &[Clause],
        with_orders: bool,
        now: Micros,
        scope: &RecordScope,
    ) -> Result<Vec<BatchCustomer>> {
        // One row per batch: the customers as a JSON array of arrays, which costs far less
        // than a driver row per customer.
        let mut b = SqlBuilder::new(format!(
            "SELECT {CUSTOMER_COLUMNS}, s.tier AS tier FROM customers \
             LEFT JOIN customer_scores s ON s.customer_id = id \
             WHERE merged_into IS NULL AND deleted_time IS NULL AND id > "
        ));
        b.arg(Arg::Int(after));
        push_segment_clauses(&mut b, clauses, now);
        scope.push_customers(&mut b, "");
        b.push(" ORDER BY id LIMIT ").arg(Arg::Int(limit as i64));
        let sql = format!(
            "SELECT {} FROM ({}) t",
            json_agg(
                self.backend,
                &format!(
                    "{f}({f}({GROUP_A}), {f}({GROUP_B}))",
                    f = json_array(self.backend)
                ),
                "id"
            ),
            b.sql
        );
        let text: String = bind(sqlx::query(&sql), &b.args)
            .fetch_one(&mut *self.acquire().await?)
            .await?
            .try_get(0)?;
        let rows: Vec<(RowA, RowB)> = serde_json::from_str(&text).map_err(decode_error)?;
        drop(text);
        let mut out: Vec<BatchCustomer> = rows
            .into_iter()
            .map(|(a, b)| customer_from_json(a, b))
            .collect();
        out.sort_unstable_by_key(|c| c.customer.id);
        if with_orders && !out.is_empty() {
            let first = out[0].customer.id;
            let last = out[out.len() - 1].customer.id;
            let index: HashMap<i64, usize> = out
                .iter()
                .enumerate()
                .map(|(i, c)| (c.customer.id, i))
                .collect();
            for o in self.orders_of_customers(first, last).await? {
                if let Some(&i) = index.get(&o.customer_id) {
                    out[i].orders.push(o);
                }
            }
        }
        Ok(out)
    }

    // ---- pure predicates, in the database ------------------------------------------------

    /// For a preview of a rule run as SQL: customers passing the base filter, members per
    /// tier, and the first `sample` members by id.
    pub async fn predicate_preview(
        &self,
        clauses: &[Clause],
        predicate: &[PredicateClause],
        sample: usize,
        now: Micros,
        scope: &RecordScope,
    ) -> Result<(i64, Vec<(Option<String>, i64)>, Vec<i64>)> {
        let base = predicate_from(clauses, &[], now, scope);
        let evaluated: i64 = bind(
            sqlx::query(&format!("SELECT COUNT(*){}", base.sql)),
            &base.args,
        )
        .fetch_one(&mut *self.acquire().await?)
        .await?
        .try_get(0)?;
        let b = predicate_from(clauses, predicate, now, scope);
        let rows = bind(
            sqlx::query(&format!("SELECT s.tier, COUNT(*){} GROUP BY s.tier", b.sql)),
            &b.args,
        )
        .fetch_all(&mut *self.acquire().await?)
        .await?;
        let tiers = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        let mut b = b;
        b.push(" ORDER BY id LIMIT ").arg(Arg::Int(sample as i64));
        let rows = bind(sqlx::query(&format!("SELECT id{}", b.sql)), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let ids = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<Vec<i64>, sqlx::Error>>()?;
        Ok((evaluated, tiers, ids))
    }

    /// Customers passing the base filter, and the ids (ascending) of those matching the
    /// predicate too.
    pub async fn predicate_members(
        &self,
        clauses: &[Clause],
        predicate: &[PredicateClause],
        now: Micros,
        scope: &RecordScope,
    ) -> Result<(i64, Vec<i64>)> {
        let base = predicate_from(clauses, &[], now, scope);
        let evaluated: i64 = bind(
            sqlx::query(&format!("SELECT COUNT(*){}", base.sql)),
            &base.args,
        )
        .fetch_one(&mut *self.acquire().await?)
        .await?
        .try_get(0)?;
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let mut b = predicate_from(clauses, predicate, now, scope);
            b.push(" AND id > ").arg(Arg::Int(after));
            b.push(" ORDER BY id LIMIT ").arg(Arg::Int(ID_CHUNK));
            let sql = format!(
                "SELECT {} FROM (SELECT id{}) t",
                json_agg(self.backend, "id", "id"),
                b.sql
            );
            let text: String = bind(sqlx::query(&sql), &b.args)
                .fetch_one(&mut *self.acquire().await?)
                .await?
                .try_get(0)?;
            let mut ids: Vec<i64> = serde_json::from_str(&text).map_err(decode_error)?;
            ids.sort_unstable();
            let done = (ids.len() as i64) < ID_CHUNK;
            if let Some(&last) = ids.last() {
                after = last;
            }
            out.extend(ids);
            if done {
                return Ok((evaluated, out));
            }
        }
    }

    // ---- segments --------------------------------------------------------------------------

    pub async fn create_segment(&self, s: &NewSegment, now: Micros) -> Result<Segment> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "INSERT INTO segments (display_name, script, filter, create_time) \
             VALUES ($1, $2, $3, $4) RETURNING {SEGMENT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(s.display_name.clone())
            .bind(s.script.clone())
            .bind(s.filter.clone())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let seg = segment_from_row(&row)?;
        tx.audit_call(seg.name());
        tx.commit().await?;
        Ok(seg)
    }

    pub async fn get_segment(&self, id: i64) -> Result<Segment> {
        let sql = format!("SELECT {SEGMENT_COLUMNS} FROM segments WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *self.acquire().await?)
            .await?;
        match row {
            Some(r) => Ok(segment_from_row(&r)?),
            None => Err(StoreError::NotFound(segment_name(id))),
        }
    }

    /// Segments in creation order.
    pub async fn list_segments(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Segment>, Option<Cursor>)> {
        crate::page::page_by_id(
            &mut *self.acquire().await?,
            "segments",
            SEGMENT_COLUMNS,
            page_size,
            after,
            segment_from_row,
            |s| s.id,
        )
        .await
    }

    /// The current members of a segment, sorted by customer id.
    pub async fn segment_member_ids(&self, segment_id: i64) -> Result<Vec<i64>> {
        let sql = format!(
            "SELECT {} FROM (SELECT customer_id FROM segment_members WHERE segment_id = $1 \
             AND customer_id > $2 ORDER BY customer_id LIMIT $3) t",
            json_agg(self.backend, "customer_id", "customer_id")
        );
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let text: String = sqlx::query(&sql)
                .bind(segment_id)
                .bind(after)
                .bind(ID_CHUNK)
                .fetch_one(&mut *self.acquire().await?)
                .await?
                .try_get(0)?;
            let mut ids: Vec<i64> = serde_json::from_str(&text).map_err(decode_error)?;
            ids.sort_unstable();
            let done = (ids.len() as i64) < ID_CHUNK;
            if let Some(&last) = ids.last() {
                after = last;
            }
            out.extend(ids);
            if done {
                return Ok(out);
            }
        }
    }

    /// Apply a refresh in one transaction: remove `exited`, add `entered`, write one
    /// `segment_exited` / `segment_entered` event each, and record the count and timing.
    ///
    /// `new` is the whole membership, sorted; it is compared with the members as they are
    /// inside the transaction, under the segment's row lock, so two refreshes of one segment
    /// (two servers) never write the same entry or exit twice. Returns the segment and how
    /// many entered and exited.
    pub async fn apply_segment_refresh(
        &self,
        segment_id: i64,
        new: &[i64],
        duration_micros: i64,
        now: Micros,
    ) -> Result<(Segment, i64, i64)> {
        let mut tx = self.write_tx().await?;
        crate::lock::lock_row(&mut tx, "segments", segment_id).await?;
        let old: Vec<i64> = sqlx::query_scalar(
            "SELECT customer_id FROM segment_members WHERE segment_id = $1 ORDER BY customer_id",
        )
        .bind(segment_id)
        .fetch_all(&mut *tx)
        .await?;
        let (entered, exited) = diff(&old, new);
        drop(old);
        let (entered, exited) = (&entered[..], &exited[..]);
        let member_count = new.len() as i64;
        let payload = serde_json::json!({ "segment": segment_name(segment_id) }).to_string();
        let be = self.backend;
        let ids_of = |n: usize| match be {
            crate::Backend::Sqlite => format!("SELECT value AS id FROM json_each(${n})"),
            crate::Backend::Postgres => format!(
                "SELECT CAST(x AS BIGINT) AS id \
                 FROM json_array_elements_text(CAST(${n} AS json)) AS x"
            ),
        };
        let delete = format!(
            "DELETE FROM segment_members WHERE segment_id = $1 AND customer_id IN ({})",
            ids_of(2)
        );
        for chunk in exited.chunks(JSON_CHUNK) {
            sqlx::query(&delete)
                .bind(segment_id)
                .bind(serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into()))
                .execute(&mut *tx)
                .await?;
        }
        let insert = format!(
            "INSERT INTO segment_members (segment_id, customer_id) SELECT $1, ids.id FROM ({}) \
             AS ids WHERE 1 = 1 ON CONFLICT DO NOTHING",
            ids_of(2)
        );
        for chunk in entered.chunks(JSON_CHUNK) {
            sqlx::query(&insert)
                .bind(segment_id)
                .bind(serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into()))
                .execute(&mut *tx)
                .await?;
        }
        let events: Vec<NewEvent> = exited
            .iter()
            .map(|&id| ("segment_exited", id))
            .chain(entered.iter().map(|&id| ("segment_entered", id)))
            .map(|(kind, customer_id)| NewEvent {
                kind,
                customer_id,
                payload: payload.clone(),
            })
            .collect();
        insert_events(&mut tx, be, &events, now).await?;
        let sql = format!(
            "UPDATE segments SET member_count = $1, refresh_time = $2, refresh_duration = $3 \
             WHERE id = $4 RETURNING {SEGMENT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(member_count)
            .bind(now)
            .bind(duration_micros)
            .bind(segment_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(segment_name(segment_id)));
        };
        let seg = segment_from_row(&row)?;
        tx.audit_call(seg.name());
        tx.commit().await?;
        Ok((seg, entered.len() as i64, exited.len() as i64))
    }

    /// A page of a segment's members (customer ids, ascending) that `scope` admits.
    pub async fn list_segment_members(
        &self,
        segment_id: i64,
        page_size: usize,
        after: Option<&Cursor>,
        scope: &RecordScope,
    ) -> Result<(Vec<i64>, Option<Cursor>)> {
        let after = match after {
            None => 0,
            Some(Cursor::Int(id, _)) => *id,
            Some(_) => return Err(crate::customers::bad_token()),
        };
        self.get_segment(segment_id).await?;
        let mut b = SqlBuilder::new(
            "SELECT m.customer_id FROM segment_members m JOIN customers c ON c.id = m.customer_id \
             WHERE m.segment_id = ",
        );
        b.arg(Arg::Int(segment_id))
            .push(" AND m.customer_id > ")
            .arg(Arg::Int(after));
        scope.push_customers(&mut b, "c.");
        b.push(" ORDER BY m.customer_id LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let ids: Vec<(i64,)> = bind_as(sqlx::query_as(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let ids: Vec<i64> = ids.into_iter().map(|(id,)| id).collect();
        let (ids, next) = crate::page::split_page(ids, page_size, |&id| Cursor::Int(id, id));
        Ok((ids, next))
    }

    /// Resolve a customer name for the API (merges followed).
    pub async fn live_customer_id(&self, id: i64) -> Result<i64> {
        let mut conn = self.acquire().await?;
        Ok(load_live(&mut conn, id).await?.id)
    }
}

/// Sorted `new` against sorted `old`: (entered, exited).
fn diff(old: &[i64], new: &[i64]) -> (Vec<i64>, Vec<i64>) {
    let (mut entered, mut exited) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                exited.push(*a);
                i += 1;
            }
            (Some(_), Some(b)) => {
                entered.push(*b);
                j += 1;
            }
            (Some(a), None) => {
                exited.push(*a);
                i += 1;
            }
            (None, Some(b)) => {
                entered.push(*b);
                j += 1;
            }
            (None, None) => break,
        }
    }
    (entered, exited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs() {
        assert_eq!(diff(&[1, 2, 4], &[2, 3, 4, 5]), (vec![3, 5], vec![1]));
        assert_eq!(diff(&[], &[1]), (vec![1], vec![]));
    }
}
