//! A runaway SEGMENT rule has an overall bound, on SQLite and PostgreSQL: a rule that keeps
//! hitting the script's limits (an endless loop) stops early with the count and examples,
//! instead of grinding through every customer, and the refresh slot is free again at once.

mod common;

use std::time::{Duration, Instant};

use bakkal::proto::{self, import_customers_request::Row};
use common::{create_segment, refresh_segment, TestServer};
use tonic::Code;

async fn customers(server: &TestServer, n: usize) {
    let rows: Vec<_> = (0..n)
        .map(|i| proto::ImportCustomersRequest {
            row: Some(Row::Customer(proto::Customer {
                display_name: format!("Customer {i}"),
                email: format!("c{i}@example.com"),
                ..Default::default()
            })),
        })
        .collect();
    server
        .customers()
        .import_customers(tokio_stream::iter(rows))
        .await
        .expect("import");
}

async fn an_endless_rule_gives_up_early_with_examples(server: &TestServer) {
    customers(server, 3000).await;
    let endless = create_segment(server, "fn matches(c) { let n = 0; loop { n += 1; } }").await;
    let started = Instant::now();
    let err = refresh_segment(server, &endless)
        .await
        .expect_err("gives up");
    let took = started.elapsed();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("in a row"), "{}", err.message());
    assert!(
        err.message().contains("customers/"),
        "an example: {}",
        err.message()
    );
    assert!(
        took < Duration::from_secs(20),
        "took {took:?}: it ground through every customer"
    );
    // the one-at-a-time refresh slot is free again
    let good = create_segment(
        server,
        "fn matches(c) { c.email.ends_with(\"@example.com\") }",
    )
    .await;
    let done = refresh_segment(server, &good)
        .await
        .expect("a good rule refreshes");
    assert_eq!(done.member_count, 3000);
}

on_both_backends!(an_endless_rule_gives_up_early_with_examples);
