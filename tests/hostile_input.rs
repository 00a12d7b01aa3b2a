//! Hostile input through the public gRPC API, on SQLite and PostgreSQL: huge values, database
//! limits, control bytes, absurd dates, undecodable messages and oversized request ids each get
//! a small, meaningful status, never INTERNAL and never an echo of the input.

mod common;

use bakkal::proto::{self, import_customers_request::Row};
use common::TestServer;
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt;

/// What a default client accepts as metadata is 8 KiB; a status must stay well under it.
const STATUS_BUDGET: usize = 4096;

fn assert_small_invalid(status: &tonic::Status, what: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    let size = status.message().len() + status.details().len();
    assert!(
        size <= STATUS_BUDGET,
        "{what}: message and details are {size} bytes"
    );
}

async fn huge_values_are_quoted_not_echoed(server: &TestServer) {
    let huge = "x".repeat(1024 * 1024);
    let filter = format!("region = \"a\" AND {huge} = 1");
    let status = server
        .customers()
        .list_customers(proto::ListCustomersRequest {
            filter,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_small_invalid(&status, "a 1 MiB filter");

    // Many bad fields at once: every one is reported short, the list is bounded.
    let status = server
        .customers()
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: "Many Tags".into(),
                email: format!("{huge}@"),
                tags: (0..200).map(|i| format!("bad tag {i}")).collect(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_small_invalid(&status, "200 bad tags and a 1 MiB email");
    assert!(status.get_details_bad_request().is_some());

    // An import of rows with a 1 MiB bad email each: the report is small and readable.
    let rows: Vec<proto::ImportCustomersRequest> = (0..20)
        .map(|i| proto::ImportCustomersRequest {
            row: Some(Row::Customer(proto::Customer {
                display_name: format!("Row {i}"),
                email: format!("{huge}{i}"),
                ..Default::default()
            })),
        })
        .collect();
    let out = server
        .customers()
        .import_customers(tokio_stream::iter(rows))
        .await
        .expect("the report fits a default client")
        .into_inner();
    assert_eq!(out.rejected, 20);
    assert_eq!(out.rejected_rows.len(), 20);
    assert!(out.encoded_len() < 64 * 1024, "{} bytes", out.encoded_len());
    assert!(out.rejected_rows.iter().all(|r| r.reason.contains("email")));
}

on_both_backends!(huge_values_are_quoted_not_echoed);
