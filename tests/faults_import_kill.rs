//! kill -9 during an import: the real `bakkal serve` binary takes a big ImportCustomers
//! stream (customers, then their orders) and is SIGKILLed mid-stream, once some order batches
//! are committed and while the client still sends. A new server on the same database finds
//! the committed batches there and whole (every customer complete, every order with its line
//! and total, each customer's totals those of its stored orders, the audit chain intact) and
//! nothing of the rest; re-running the same import then creates no duplicates (customers by
//! email, orders by order id). On SQLite, and on PostgreSQL when `BAKKAL_TEST_POSTGRES_URL` is
//! set.

mod common;

use std::time::Duration;

use bakkal::proto::audit_service_client::AuditServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::import_customers_request::Row;
use bakkal::proto::{self};
use common::process::BakkalProcess;
use common::{count, Backend, TestDb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// 18,000 orders: three whole batches and a last one of 3000 that is only stored when the
/// stream ends, so a server killed while the stream is open is killed mid-import.
const CUSTOMERS: usize = 6_000;
const ORDERS_EACH: usize = 3;
/// The server's rows per import transaction (`customer_service::IMPORT_BATCH`).
const BATCH: i64 = 5000;
/// 30 TRY (two lines of 15) in micro-units.
const ORDER_TOTAL: i64 = 30_000_000;

fn customer(i: usize) -> proto::ImportCustomersRequest {
    proto::ImportCustomersRequest {
        row: Some(Row::Customer(proto::Customer {
            display_name: format!("Kill Test {i}"),
            email: format!("kill{i}@example.com"),
            phone: format!("+90532{i:07}"),
            city: "İzmir".into(),
            tags: vec!["imported".into()],
            ..Default::default()
        })),
    }
}

fn order(i: usize, k: usize) -> proto::ImportCustomersRequest {
    proto::ImportCustomersRequest {
        row: Some(Row::Order(proto::ImportOrder {
            customer_email: format!("kill{i}@example.com"),
            order: Some(proto::Order {
                order_id: format!("kill-{i}-{k}"),
                currency: "TRY".into(),
                placed_time: Some(prost_types::Timestamp {
                    seconds: 1_767_225_600 + (k * CUSTOMERS + i) as i64,
                    nanos: 0,
                }),
                lines: vec![proto::OrderLine {
                    sku: "SIMIT".into(),
                    category: "bakery".into(),
                    quantity: 2,
                    unit_price: 15.0,
                }],
                ..Default::default()
            }),
        })),
    }
}

/// Every row of the import: the customers, then their orders, a round of one order each at a
/// time (so each order batch touches thousands of customers).
fn rows() -> impl Iterator<Item = proto::ImportCustomersRequest> {
    (0..CUSTOMERS)
        .map(customer)
        .chain((0..ORDERS_EACH).flat_map(|k| (0..CUSTOMERS).map(move |i| order(i, k))))
}

/// What a kill may leave and a finished import must: whole rows, totals that add up.
async fn assert_whole(url: &str) {
    let incomplete = count(
        url,
        "SELECT COUNT(*) FROM customers WHERE email IS NULL OR phone IS NULL \
         OR display_name = '' OR city = '' OR tags = ''",
    )
    .await;
    assert_eq!(incomplete, 0, "customers missing fields");
    let bad_orders = count(
        url,
        &format!(
            "SELECT COUNT(*) FROM orders WHERE total <> {ORDER_TOTAL} OR lines NOT LIKE '%SIMIT%' \
             OR customer_id NOT IN (SELECT id FROM customers)"
        ),
    )
    .await;
    assert_eq!(
        bad_orders, 0,
        "orders without their line, total or customer"
    );
    let wrong_totals = count(
        url,
        "SELECT COUNT(*) FROM customers c WHERE \
           c.order_count <> (SELECT COUNT(*) FROM orders o WHERE o.customer_id = c.id) \
           OR c.total_spent <> (SELECT COALESCE(SUM(o.total), 0) FROM orders o \
                                WHERE o.customer_id = c.id)",
    )
    .await;
    assert_eq!(
        wrong_totals, 0,
        "customers whose totals are not those of their orders"
    );
    let duplicate_emails = count(
        url,
        "SELECT COUNT(*) - COUNT(DISTINCT email) FROM customers",
    )
    .await;
    assert_eq!(duplicate_emails, 0);
    let duplicate_orders = count(
        url,
        "SELECT COUNT(*) - COUNT(DISTINCT order_id) FROM orders",
    )
    .await;
    assert_eq!(duplicate_orders, 0);
}

async fn assert_audit_chain_intact(server: &BakkalProcess) {
    let v = AuditServiceClient::new(server.channel.clone())
        .verify_audit_chain(proto::VerifyAuditChainRequest::default())
        .await
        .expect("verify audit chain")
        .into_inner();
    assert!(v.checked > 0);
    assert_eq!(v.first_broken_seq, 0, "{v:?}");
}

async fn killed_import_keeps_whole_batches(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        eprintln!("BAKKAL_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let first = BakkalProcess::start(&db.url, dir.path(), &[]).await;

    // the client streams every row and keeps the stream open: the import never ends by itself
    let (tx, rx) = mpsc::channel(256);
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let producer = tokio::spawn(async move {
        for r in rows() {
            if tx.send(r).await.is_err() {
                return;
            }
        }
        let _ = hold_rx.await;
        drop(tx);
    });
    let mut client = CustomerServiceClient::new(first.channel.clone());
    let import =
        tokio::spawn(async move { client.import_customers(ReceiverStream::new(rx)).await });

    // kill -9 once an order batch is committed, while the next ones are on their way
    let mut stored = 0;
    for _ in 0..3000 {
        stored = count(&db.url, "SELECT COUNT(*) FROM orders").await;
        if stored >= BATCH {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stored >= BATCH, "no order batch was committed in 30 s");
    first.kill9();
    let ended = tokio::time::timeout(Duration::from_secs(10), import)
        .await
        .expect("the client saw the server go")
        .expect("import task");
    assert!(ended.is_err(), "the import cannot have finished: {ended:?}");
    let _ = hold_tx.send(());
    let _ = producer.await;

    // a new server on the same database: whole batches, nothing of the rest
    let second = BakkalProcess::start(&db.url, dir.path(), &[]).await;
    let customers = count(&db.url, "SELECT COUNT(*) FROM customers").await;
    let orders = count(&db.url, "SELECT COUNT(*) FROM orders").await;
    let total_orders = (CUSTOMERS * ORDERS_EACH) as i64;
    assert_eq!(
        customers, CUSTOMERS as i64,
        "the customer batches were committed before any order batch"
    );
    assert!(
        orders >= BATCH && orders < total_orders,
        "killed mid-import: {orders} of {total_orders} orders stored"
    );
    assert_eq!(
        orders % BATCH,
        0,
        "orders are stored in whole batches of {BATCH}: {orders}"
    );
    assert_whole(&db.url).await;
    assert_audit_chain_intact(&second).await;
    // and through the API: a customer of the first order round has that order, whole
    let mut api = CustomerServiceClient::new(second.channel.clone());
    let listed = api
        .list_customers(proto::ListCustomersRequest {
            filter: "email = \"kill0@example.com\"".into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .customers;
    assert_eq!(listed.len(), 1);
    let first_orders = api
        .list_orders(proto::ListOrdersRequest {
            parent: listed[0].name.clone(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("list orders")
        .into_inner()
        .orders;
    assert!(first_orders.iter().any(|o| o.order_id == "kill-0-0"));
    assert!(first_orders
        .iter()
        .all(|o| o.lines.len() == 1 && (o.total - 30.0).abs() < 1e-9));

    // the same import again, to its end: nothing twice
    let again = api
        .import_customers(tokio_stream::iter(rows()))
        .await
        .expect("re-import")
        .into_inner();
    assert_eq!(again.rejected, 0, "{:?}", again.rejected_rows);
    assert_eq!(again.created, 0, "every customer was there by email");
    assert_eq!(again.updated, CUSTOMERS as i64);
    assert_eq!(again.orders_recorded, total_orders);
    assert_eq!(
        count(&db.url, "SELECT COUNT(*) FROM customers").await,
        CUSTOMERS as i64
    );
    assert_eq!(
        count(&db.url, "SELECT COUNT(*) FROM orders").await,
        total_orders
    );
    assert_eq!(
        count(
            &db.url,
            &format!("SELECT COUNT(*) FROM customers WHERE order_count <> {ORDERS_EACH}")
        )
        .await,
        0
    );
    assert_whole(&db.url).await;
    assert_audit_chain_intact(&second).await;
    drop(second);
}

for_each_backend!(killed_import_keeps_whole_batches);
