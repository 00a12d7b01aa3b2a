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

async fn create(server: &TestServer, c: proto::Customer) -> Result<proto::Customer, tonic::Status> {
    server
        .customers()
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(c),
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

fn named(name: &str) -> proto::Customer {
    proto::Customer {
        display_name: name.into(),
        ..Default::default()
    }
}

async fn filters_past_the_clause_cap_and_nul_bytes_are_invalid(server: &TestServer) {
    let list = |filter: String| {
        let mut c = server.customers();
        async move {
            c.list_customers(proto::ListCustomersRequest {
                filter,
                ..Default::default()
            })
            .await
        }
    };
    let clauses = |n: usize| vec!["region = \"Ege\""; n].join(" AND ");
    // the documented cap (README, "Limits on input")
    list(clauses(32)).await.expect("a filter at the cap runs");
    let status = list(clauses(1000)).await.unwrap_err();
    assert_small_invalid(&status, "1000 AND clauses");
    let status = list(clauses(200)).await.unwrap_err();
    assert_small_invalid(&status, "200 AND clauses");
    assert!(status.message().contains("clauses"), "{status:?}");
    let status = list("region = \"E\0ge\"".into()).await.unwrap_err();
    assert_small_invalid(&status, "a NUL in a filter value");

    for c in [
        named("Ay\0şe"),
        proto::Customer {
            city: "İz\0mir".into(),
            ..named("Ayşe")
        },
    ] {
        let status = create(server, c).await.unwrap_err();
        assert_small_invalid(&status, "a NUL in a customer");
    }

    let ayse = create(server, named("Ayşe")).await.expect("create");
    let status = server
        .customers()
        .record_interaction(proto::RecordInteractionRequest {
            parent: ayse.name.clone(),
            interaction: Some(proto::Interaction {
                channel: proto::InteractionChannel::Email as i32,
                direction: proto::Direction::Inbound as i32,
                kind: "enquiry".into(),
                subject: "Hello".into(),
                body: "two\nlines, then a \0".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_small_invalid(&status, "a NUL in an interaction body");

    let status = server
        .desk()
        .create_ticket(proto::CreateTicketRequest {
            ticket: Some(proto::Ticket {
                contact_email: "ayse@example.com".into(),
                kind: proto::TicketKind::Complaint as i32,
                channel: proto::InteractionChannel::Email as i32,
                subject: "Broken\0vase".into(),
                description: "In pieces.".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_small_invalid(&status, "a NUL in a ticket subject");
}

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn business_times_far_future_or_before_1970_are_invalid(server: &TestServer) {
    let ayse = create(server, named("Ayşe")).await.expect("create");
    let order = |id: &str, placed: i64| proto::RecordOrderRequest {
        parent: ayse.name.clone(),
        order: Some(proto::Order {
            order_id: id.into(),
            currency: "TRY".into(),
            placed_time: at(placed),
            lines: vec![proto::OrderLine {
                sku: "SIMIT".into(),
                category: "bakery".into(),
                quantity: 1,
                unit_price: 15.0,
            }],
            ..Default::default()
        }),
    };
    // 9999-12-31, 0001-01-01, a day ahead, a second before the floor
    for (id, placed) in [
        ("far-future", 253_402_214_400),
        ("year-one", -62_135_596_800),
        ("tomorrow", now_seconds() + 86_400),
        ("pre-1970", -1),
    ] {
        let status = server
            .customers()
            .record_order(order(id, placed))
            .await
            .unwrap_err();
        assert_small_invalid(&status, id);
        assert!(status.message().contains("placed_time"), "{status:?}");
    }
    // A clock a minute ahead is tolerated; the customer is still an ordinary one.
    server
        .customers()
        .record_order(order("a-minute-ahead", now_seconds() + 60))
        .await
        .expect("within the tolerance");

    let status = server
        .customers()
        .record_interaction(proto::RecordInteractionRequest {
            parent: ayse.name.clone(),
            interaction: Some(proto::Interaction {
                channel: proto::InteractionChannel::Phone as i32,
                direction: proto::Direction::Inbound as i32,
                kind: "enquiry".into(),
                occurred_time: at(253_402_214_400),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_small_invalid(&status, "an interaction in 9999");
    assert!(status.message().contains("occurred_time"), "{status:?}");
}

/// A message sent as is, whatever the method expects.
async fn raw_call<M>(server: &TestServer, path: &'static str, m: M) -> tonic::Status
where
    M: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(server.channel.clone());
    grpc.ready().await.expect("channel ready");
    let codec = tonic_prost::ProstCodec::<M, proto::ListCustomersResponse>::default();
    grpc.unary(
        tonic::Request::new(m),
        http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .expect_err("an unusable message is refused")
}

/// `ListCustomersRequest` with the filter (field 3) as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawFilter {
    #[prost(bytes = "vec", tag = "3")]
    filter: Vec<u8>,
}

/// `ListCustomersRequest` with page_size (an int32, field 1) sent as a string.
#[derive(Clone, PartialEq, prost::Message)]
struct WrongWireType {
    #[prost(string, tag = "1")]
    page_size: String,
}

/// `CreateCustomerRequest` whose customer (field 1) is cut short.
#[derive(Clone, PartialEq, prost::Message)]
struct Truncated {
    #[prost(bytes = "vec", tag = "1")]
    customer: Vec<u8>,
}

const LIST: &str = "/bakkal.v1.CustomerService/ListCustomers";

async fn undecodable_messages_nan_and_long_request_ids_are_refused(server: &TestServer) {
    for (what, status) in [
        (
            "invalid UTF-8",
            raw_call(
                server,
                LIST,
                RawFilter {
                    filter: vec![b'a', 0xff, 0xfe],
                },
            )
            .await,
        ),
        (
            "a wrong wire type",
            raw_call(
                server,
                LIST,
                WrongWireType {
                    page_size: "ten".into(),
                },
            )
            .await,
        ),
        (
            "a truncated message",
            raw_call(
                server,
                "/bakkal.v1.CustomerService/CreateCustomer",
                // display_name (field 2) says 16 bytes, none follow
                Truncated {
                    customer: vec![0x12, 0x10],
                },
            )
            .await,
        ),
    ] {
        assert_small_invalid(&status, what);
    }
    let status = raw_call(
        server,
        LIST,
        RawFilter {
            filter: vec![b'x'; 17 * 1024 * 1024],
        },
    )
    .await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    for n in ["NaN", "inf", "-inf", "1e999"] {
        let status = server
            .customers()
            .list_customers(proto::ListCustomersRequest {
                filter: format!("value.order_count > {n}"),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_small_invalid(&status, n);
    }

    let call = |id: String| {
        let mut c = server.customers();
        async move {
            let mut req = tonic::Request::new(proto::ListCustomersRequest::default());
            req.metadata_mut()
                .insert("x-request-id", id.parse().expect("ascii"));
            let res = c.list_customers(req).await.expect("list");
            res.metadata()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .unwrap_or_default()
        }
    };
    assert_eq!(
        call("order-7f3a:retry.2".into()).await,
        "order-7f3a:retry.2"
    );
    let echoed = call("r".repeat(15_000)).await;
    assert!(
        !echoed.is_empty() && echoed.len() <= 128,
        "{} bytes",
        echoed.len()
    );
}

on_both_backends!(
    huge_values_are_quoted_not_echoed,
    filters_past_the_clause_cap_and_nul_bytes_are_invalid,
    business_times_far_future_or_before_1970_are_invalid,
    undecodable_messages_nan_and_long_request_ids_are_refused,
);
