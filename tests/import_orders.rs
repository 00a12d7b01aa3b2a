//! Orders in an import stream are written in batches (multi-row INSERTs, one totals refresh per
//! batch), and still behave row by row: an order id repeated in the stream is the idempotent
//! path, the same id for another customer is rejected, and every customer's value keys count
//! exactly their paid orders — across the thousand-row chunks of a batch. Both databases.

mod common;

use bakkal::proto;
use bakkal::proto::import_customers_request::Row;
use common::TestServer;
use prost_types::Timestamp;

/// Placed `minutes` after a fixed instant in 2023.
fn order(id: &str, minutes: i64, price: f64) -> proto::Order {
    proto::Order {
        order_id: id.into(),
        currency: "TRY".into(),
        placed_time: Some(Timestamp {
            seconds: 1_700_000_000 + minutes * 60,
            nanos: 0,
        }),
        lines: vec![proto::OrderLine {
            sku: "TEA".into(),
            category: "tea".into(),
            quantity: 1,
            unit_price: price,
        }],
        ..Default::default()
    }
}

fn of(email: &str, o: proto::Order) -> Row {
    Row::Order(proto::ImportOrder {
        order: Some(o),
        customer_email: email.into(),
    })
}

async fn batched_orders_keep_row_by_row_meaning(server: &TestServer) {
    let customer = |email: &str| {
        Row::Customer(proto::Customer {
            display_name: email.into(),
            email: email.into(),
            ..Default::default()
        })
    };
    let mut rows = vec![
        customer("a@x.example"),
        customer("b@x.example"),
        of("a@x.example", order("A-1", 1, 10.0)),
        of("a@x.example", order("A-2", 2, 20.0)),
        // the same order again, in the same batch: recorded once
        of("a@x.example", order("A-1", 1, 10.0)),
        of("b@x.example", order("B-1", 3, 5.0)),
        // an order id another customer holds: rejected, row 7
        of("b@x.example", order("A-2", 2, 20.0)),
    ];
    // more than a thousand orders for one customer and one each for many others: several
    // INSERT chunks and totals-refresh chunks in one batch
    for i in 0..1_500 {
        rows.push(of(
            "a@x.example",
            order(&format!("A-bulk-{i}"), 10 + i, 1.0),
        ));
    }
    for i in 0..1_200 {
        let email = format!("c{i}@x.example");
        rows.push(customer(&email));
        rows.push(of(&email, order(&format!("C-{i}"), 5, 2.5)));
    }
    let stream = tokio_stream::iter(
        rows.into_iter()
            .map(|r| proto::ImportCustomersRequest { row: Some(r) }),
    );
    let out = server
        .customers()
        .import_customers(stream)
        .await
        .expect("import")
        .into_inner();
    assert_eq!(out.created, 2 + 1_200);
    assert_eq!(out.rejected, 1, "{:?}", out.rejected_rows);
    assert_eq!(out.rejected_rows[0].row, 7);
    assert_eq!(out.orders_recorded, 4 + 1_500 + 1_200);

    let find = |email: &str| {
        let mut c = server.customers();
        let filter = format!("email = \"{email}\"");
        async move {
            c.list_customers(proto::ListCustomersRequest {
                filter,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .customers
            .into_iter()
            .next()
            .expect("customer")
        }
    };
    let a = find("a@x.example").await.value.expect("value");
    assert_eq!(a.order_count, 2 + 1_500);
    assert!((a.total_spent - (30.0 + 1_500.0)).abs() < 1e-6, "{a:?}");
    assert_eq!(
        a.first_order_time.map(|t| t.seconds),
        Some(1_700_000_000 + 60)
    );
    assert_eq!(
        a.last_order_time.map(|t| t.seconds),
        Some(1_700_000_000 + (10 + 1_499) * 60)
    );
    let b = find("b@x.example").await.value.expect("value");
    assert_eq!((b.order_count, b.total_spent), (1, 5.0));
    let v = find("c1199@x.example").await.value.expect("value");
    assert_eq!((v.order_count, v.total_spent), (1, 2.5));
}

on_both_backends!(batched_orders_keep_row_by_row_meaning);
