//! Orders: recorded idempotently by the source system's id; every change recomputes the
//! customer's value keys in the same transaction.

use bakkal_domain::audit::AuditAction;
use bakkal_domain::name::order_name;
use bakkal_domain::time::Micros;
use bakkal_domain::{Order, OrderLine, OrderStatus};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::customers::{load_live, load_live_locked, refresh_totals};
use crate::lock::lock_key;
use crate::page::Cursor;
use crate::{Result, Store, StoreError};

const ORDER_COLUMNS: &str =
    "order_id, customer_id, currency, placed_time, status, total, lines, create_time";

pub(crate) fn order_from_row(r: &AnyRow) -> std::result::Result<Order, sqlx::Error> {
    let lines: String = r.try_get(6)?;
    let status: String = r.try_get(4)?;
    Ok(Order {
        order_id: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        currency: r.try_get(2)?,
        placed_time: r.try_get(3)?,
        status: OrderStatus::parse(&status).unwrap_or(OrderStatus::Paid),
        lines: serde_json::from_str::<Vec<OrderLine>>(&lines)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        create_time: r.try_get(7)?,
    })
}

pub(crate) async fn insert_order(conn: &mut AnyConnection, o: &Order) -> Result<()> {
    sqlx::query(
        "INSERT INTO orders (order_id, customer_id, currency, placed_time, status, total, lines, \
         create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(o.order_id.clone())
    .bind(o.customer_id)
    .bind(o.currency.clone())
    .bind(o.placed_time)
    .bind(o.status.as_str())
    .bind(o.total())
    .bind(serde_json::to_string(&o.lines).unwrap_or_else(|_| "[]".into()))
    .bind(o.create_time)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows per multi-row order INSERT (8 parameters a row).
const ORDER_INSERT_ROWS: usize = 1000;

/// Insert `orders`, all new, with multi-row INSERTs (an import's batch).
pub(crate) async fn insert_orders(
    backend: crate::Backend,
    conn: &mut AnyConnection,
    orders: &[Order],
) -> Result<()> {
    for chunk in orders.chunks(ORDER_INSERT_ROWS) {
        let mut sql = String::from(
            "INSERT INTO orders (order_id, customer_id, currency, placed_time, status, total, \
             lines, create_time) VALUES ",
        );
        crate::args::push_value_rows(&mut sql, backend, chunk.len(), 8, "");
        let mut q = sqlx::query(&sql);
        for o in chunk {
            q = q
                .bind(o.order_id.clone())
                .bind(o.customer_id)
                .bind(o.currency.clone())
                .bind(o.placed_time)
                .bind(o.status.as_str())
                .bind(o.total())
                .bind(serde_json::to_string(&o.lines).unwrap_or_else(|_| "[]".into()))
                .bind(o.create_time);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn load_order(conn: &mut AnyConnection, order_id: &str) -> Result<Option<Order>> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1");
    let row = sqlx::query(&sql)
        .bind(order_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| order_from_row(&r)).transpose()?)
}

/// Record `order` for its customer inside an open transaction; returns the stored order and
/// whether anything changed.
pub(crate) async fn record_in(
    conn: &mut AnyConnection,
    order: Order,
    now: Micros,
) -> Result<(Order, bool)> {
    if let Some(existing) = load_order(conn, &order.order_id).await? {
        if existing.customer_id != order.customer_id {
            return Err(StoreError::AlreadyExists {
                existing: order_name(existing.customer_id, &existing.order_id),
                field: "order.order_id".into(),
                message: format!(
                    "order {} is recorded for another customer: customers/{}",
                    existing.order_id, existing.customer_id
                ),
            });
        }
        if existing.status == order.status {
            return Ok((existing, false));
        }
        sqlx::query("UPDATE orders SET status = $1 WHERE order_id = $2")
            .bind(order.status.as_str())
            .bind(order.order_id.clone())
            .execute(&mut *conn)
            .await?;
        refresh_totals(conn, order.customer_id, now).await?;
        return Ok((
            Order {
                status: order.status,
                ..existing
            },
            true,
        ));
    }
    insert_order(conn, &order).await?;
    refresh_totals(conn, order.customer_id, now).await?;
    Ok((order, true))
}

impl Store {
    /// Record an order for `customer_id` (merges followed). Recording the same `order_id` again
    /// returns the stored order; a changed status (a refund) is applied.
    pub async fn record_order(
        &self,
        customer_id: i64,
        mut order: Order,
        now: Micros,
    ) -> Result<Order> {
        let mut tx = self.write_tx().await?;
        // the order id first (it may be claimed for another customer), then the customer
        lock_key(&mut tx, &format!("order:{}", order.order_id)).await?;
        let c = load_live_locked(&mut tx, customer_id).await?;
        order.customer_id = c.id;
        let (stored, changed) = record_in(&mut tx, order, now).await?;
        crate::triggers::order_placed_event(&mut tx, &stored, changed, now).await?;
        crate::loyalty::order_recorded(&mut tx, &stored, changed, now).await?;
        // a replayed order (nothing changed) is still the caller's call, without changes
        tx.audit(
            order_name(stored.customer_id, &stored.order_id),
            AuditAction::Record,
            if changed {
                order_changes(&stored)
            } else {
                Vec::new()
            },
        );
        tx.commit().await?;
        Ok(stored)
    }

    /// A customer's orders, newest first.
    pub async fn list_orders(
        &self,
        customer_id: i64,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Order>, Option<Cursor>)> {
        let mut conn = self.acquire().await?;
        let c = load_live(&mut conn, customer_id).await?;
        let (t, oid) = match after {
            Some(Cursor::Pair(t, oid)) => (*t, oid.clone()),
            Some(_) => return Err(crate::customers::bad_token()),
            None => (i64::MAX, String::new()),
        };
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE customer_id = $1 \
             AND (placed_time < $2 OR (placed_time = $2 AND ($3 = '' OR order_id < $3))) \
             ORDER BY placed_time DESC, order_id DESC LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(c.id)
            .bind(t)
            .bind(oid)
            .bind(page_size as i64 + 1)
            .fetch_all(&mut *conn)
            .await?;
        let orders = rows
            .iter()
            .map(order_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (orders, next) = crate::page::split_page(orders, page_size, |o| {
            Cursor::Pair(o.placed_time, o.order_id.clone())
        });
        Ok((orders, next))
    }

    /// Every order of a customer, newest first (for scripts and offers).
    pub async fn all_orders(&self, customer_id: i64) -> Result<Vec<Order>> {
        let mut orders = self.orders_of_customers(customer_id, customer_id).await?;
        orders.sort_by(|a, b| (b.placed_time, &b.order_id).cmp(&(a.placed_time, &a.order_id)));
        Ok(orders)
    }
}

/// What an order's audit event records: its status and total (no personal data).
fn order_changes(o: &Order) -> Vec<bakkal_domain::audit::FieldChange> {
    let change = |field: &str, after: String| bakkal_domain::audit::FieldChange {
        field: field.into(),
        before: None,
        after: Some(after),
    };
    vec![
        change("status", o.status.as_str().to_string()),
        change("total", format!("{} {}", o.total(), o.currency)),
    ]
}
