//! One mailbox, one phone, one customer, however the address or number is spelled in Unicode:
//! through the public gRPC API, on SQLite and PostgreSQL.

mod common;

use bakkal::proto::{self, import_customers_request::Row};
use common::TestServer;
use tonic::Code;
use tonic_types::StatusExt;

fn customer(name: &str, email: &str, phone: &str) -> proto::Customer {
    proto::Customer {
        display_name: name.into(),
        email: email.into(),
        phone: phone.into(),
        ..Default::default()
    }
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

async fn get(server: &TestServer, name: &str) -> proto::Customer {
    server
        .customers()
        .get_customer(proto::GetCustomerRequest { name: name.into() })
        .await
        .expect("get customer")
        .into_inner()
}

/// Create `first`, then `second` (the same mailbox or number spelled otherwise): the second
/// is ALREADY_EXISTS naming the first, and the first reads back as `shown`.
async fn second_spelling_is_refused(
    server: &TestServer,
    first: proto::Customer,
    second: proto::Customer,
    shown: (&str, &str),
) {
    let what = format!(
        "{:?} then {:?}",
        (&first.email, &first.phone),
        (&second.email, &second.phone)
    );
    let made = create(server, first).await.expect("first create");
    let err = create(server, second).await.expect_err(&what);
    assert_eq!(err.code(), Code::AlreadyExists, "{what}: {err:?}");
    let info = err
        .get_details_resource_info()
        .expect("ResourceInfo detail");
    assert_eq!(info.resource_name, made.name, "{what}");
    let got = get(server, &made.name).await;
    assert_eq!((got.email.as_str(), got.phone.as_str()), shown, "{what}");
}

async fn equivalent_unicode_spellings_are_one_customer_shown_as_written(server: &TestServer) {
    // precomposed ş, then s + combining cedilla
    second_spelling_is_refused(
        server,
        customer("Ayşe", "ay\u{15f}e@example.com", ""),
        customer("Ayşe Again", "ays\u{327}e@example.com", ""),
        ("ay\u{15f}e@example.com", ""),
    )
    .await;
    // Turkish capital dotted İ is a plain i, not i + U+0307
    second_spelling_is_refused(
        server,
        customer("İlker", "İLKER@example.com", ""),
        customer("Ilker", "ilker@example.com", ""),
        ("ilker@example.com", ""),
    )
    .await;
    // a Unicode domain and its punycode
    second_spelling_is_refused(
        server,
        customer("Ali", "ali@exämple.com", ""),
        customer("Ali Puny", "ALI@xn--exmple-cua.com", ""),
        ("ali@exämple.com", ""),
    )
    .await;
    // full-width letters
    second_spelling_is_refused(
        server,
        customer("Veli", "veli@example.com", ""),
        customer("Veli Wide", "ＶＥＬＩ@example.com", ""),
        ("veli@example.com", ""),
    )
    .await;
    // full case folding: ß and ss
    second_spelling_is_refused(
        server,
        customer("Jörg", "straße@example.de", ""),
        customer("Joerg", "STRASSE@example.de", ""),
        ("straße@example.de", ""),
    )
    .await;
    // full-width phone digits are read as digits
    second_spelling_is_refused(
        server,
        customer("Deniz", "", "＋９０ ５３２ ０００ ００ ０１"),
        customer("Deniz Again", "", "+90 532 000 00 01"),
        ("", "+905320000001"),
    )
    .await;
    let list = server
        .customers()
        .list_customers(proto::ListCustomersRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.total_size, 6, "one customer per person");
}

async fn import_matches_customers_by_the_email_key(server: &TestServer) {
    let ali = create(server, customer("Ali", "ali@exämple.com", ""))
        .await
        .expect("create");
    let rows = vec![
        Row::Customer(proto::Customer {
            region: "Ege".into(),
            ..customer("", "ALI@xn--exmple-cua.com", "")
        }),
        Row::Order(proto::ImportOrder {
            order: Some(proto::Order {
                order_id: "uni-1".into(),
                currency: "TRY".into(),
                lines: vec![proto::OrderLine {
                    sku: "X".into(),
                    category: "y".into(),
                    quantity: 1,
                    unit_price: 10.0,
                }],
                ..Default::default()
            }),
            customer_email: "ａｌｉ@EXÄMPLE.com".into(),
        }),
    ];
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
    assert_eq!(
        (out.created, out.updated, out.orders_recorded, out.rejected),
        (0, 1, 1, 0),
        "{:?}",
        out.rejected_rows
    );
    let got = get(server, &ali.name).await;
    assert_eq!(got.region, "Ege");
    // an import row's fields win, its spelling of the address included
    assert_eq!(got.email, "ali@xn--exmple-cua.com");
}

on_both_backends!(
    equivalent_unicode_spellings_are_one_customer_shown_as_written,
    import_matches_customers_by_the_email_key,
);

/// A customer written before migration 0012 has no email key; the server that starts on the
/// database gives it one, so the other spelling is refused.
async fn rows_without_an_email_key_get_one_when_the_server_starts(backend: common::Backend) {
    let Some(db) = common::TestDb::new(backend).await else {
        return;
    };
    let server = TestServer::start_at(&db.url, |_| {}).await;
    let old = create(&server, customer("Ali", "ali@exämple.com", ""))
        .await
        .expect("create");
    server.stop().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("connect");
    sqlx::query("UPDATE customers SET email_key = NULL")
        .execute(&pool)
        .await
        .expect("forget the key");
    pool.close().await;
    let server = TestServer::start_at(&db.url, |_| {}).await;
    let err = create(&server, customer("Ali Puny", "ali@xn--exmple-cua.com", ""))
        .await
        .expect_err("the backfilled key refuses the other spelling");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let info = err
        .get_details_resource_info()
        .expect("ResourceInfo detail");
    assert_eq!(info.resource_name, old.name);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows_without_an_email_key_get_one_when_the_server_starts() {
    rows_without_an_email_key_get_one_when_the_server_starts(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_without_an_email_key_get_one_when_the_server_starts() {
    rows_without_an_email_key_get_one_when_the_server_starts(common::Backend::Postgres).await;
}
