//! `--default-currency`: an order that names no currency takes the business's, on SQLite and
//! PostgreSQL; without the setting such an order is refused, naming the field.

mod common;

use bakkal::proto;
use common::TestServer;
use tonic::Code;

async fn record_without_currency(server: &TestServer) -> Result<proto::Order, tonic::Status> {
    let c = server
        .customers()
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: "Can".into(),
                email: "can@example.com".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create")
        .into_inner();
    server
        .customers()
        .record_order(proto::RecordOrderRequest {
            parent: c.name,
            order: Some(proto::Order {
                order_id: "no-currency".into(),
                lines: vec![proto::OrderLine {
                    sku: "tea".into(),
                    category: "drinks".into(),
                    quantity: 1,
                    unit_price: 10.0,
                }],
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner())
}

async fn an_order_without_currency_takes_the_default(server: &TestServer) {
    let o = record_without_currency(server).await.expect("recorded");
    assert_eq!(o.currency, "TRY");
}

async fn without_a_default_the_currency_is_required(server: &TestServer) {
    let err = record_without_currency(server).await.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("currency"), "{}", err.message());
}

on_both_backends!(without_a_default_the_currency_is_required);
on_both_backends_with!(
    with_default,
    |c: &mut bakkal::config::Config| c.default_currency = Some("TRY".into()),
    an_order_without_currency_takes_the_default,
);
