//! Request limits through the public API, on SQLite and PostgreSQL: a principal over its
//! role's rate is RESOURCE_EXHAUSTED with a RetryInfo while another is served; streams held
//! open fill the in-flight limit, so the next call is UNAVAILABLE with a RetryInfo while health
//! answers SERVING, and calls succeed again once the streams end.

mod common;

use bakkal::limits::{LimitsConfig, Rate};
use bakkal::proto;
use bakkal::proto::access_service_client::AccessServiceClient;
use bakkal::proto::import_customers_request::Row;
use common::{Backend, TestDb, TestServer};
use tonic::metadata::MetadataValue;
use tonic::Code;
use tonic_types::StatusExt as _;

fn with_key<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {key}")).unwrap(),
    );
    r
}

async fn whoami(server: &TestServer, key: &str) -> Result<String, tonic::Status> {
    AccessServiceClient::new(server.channel.clone())
        .get_caller_identity(with_key(key, proto::GetCallerIdentityRequest {}))
        .await
        .map(|r| r.into_inner().principal)
}

async fn health(server: &TestServer) -> i32 {
    tonic_health::pb::health_client::HealthClient::new(server.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

/// An analyst service account and its key, made with the admin key.
async fn analyst_key(server: &TestServer, admin: &str, name: &str) -> String {
    let mut a = AccessServiceClient::new(server.channel.clone());
    let sa = a
        .create_service_account(with_key(
            admin,
            proto::CreateServiceAccountRequest {
                service_account: Some(proto::ServiceAccount {
                    display_name: name.into(),
                    roles: vec!["analyst".into()],
                    ..Default::default()
                }),
                inactive: false,
            },
        ))
        .await
        .expect("service account")
        .into_inner();
    a.create_api_key(with_key(
        admin,
        proto::CreateApiKeyRequest {
            parent: sa.name,
            api_key: Some(proto::ApiKey {
                display_name: "key".into(),
                ..Default::default()
            }),
        },
    ))
    .await
    .expect("key")
    .into_inner()
    .secret
}

async fn a_principal_over_its_rate_is_told_when_to_retry(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let config = bakkal::config::Config::new("127.0.0.1:0".parse().unwrap(), db.url.clone());
    let store = bakkal::server::open_store(&config).await.expect("store");
    let (_, admin) = bakkal::auth::keys::bootstrap(&store, "ops", "admin", 1)
        .await
        .unwrap();
    store.close().await;
    // analysts: 3 calls, then one per 1000 s (no refill within the test); admin unlimited
    let server = TestServer::start_on_with(db, |c| {
        c.auth.require = true;
        c.limits = LimitsConfig {
            rates: vec![(
                "analyst".into(),
                Rate {
                    per_second: 0.001,
                    burst: 3,
                },
            )],
            max_in_flight: None,
        };
    })
    .await;
    let first = analyst_key(&server, &admin, "first").await;
    let second = analyst_key(&server, &admin, "second").await;
    for _ in 0..3 {
        whoami(&server, &first).await.expect("within the burst");
    }
    let over = whoami(&server, &first).await.unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
    let retry = over
        .get_details_retry_info()
        .expect("a RetryInfo detail")
        .retry_delay
        .expect("a delay");
    assert!(retry.as_secs() > 0, "{retry:?}");
    let quota = over.get_details_quota_failure().expect("a QuotaFailure");
    assert!(quota.violations[0].subject.starts_with("serviceAccounts/"));
    // another principal of the same role has a bucket of its own
    for _ in 0..3 {
        whoami(&server, &second)
            .await
            .expect("the second analyst is served");
    }
    // and a role without a rate is not limited
    for _ in 0..10 {
        whoami(&server, &admin).await.expect("admin is not limited");
    }
    assert_eq!(
        whoami(&server, &first).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    assert_eq!(health(&server).await, 1, "SERVING");
    server.stop().await;
}

async fn list(server: &TestServer) -> Result<(), tonic::Status> {
    server
        .customers()
        .list_customers(proto::ListCustomersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .map(|_| ())
}

async fn held_streams_fill_the_in_flight_limit_until_they_end(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| {
        c.limits = LimitsConfig {
            rates: Vec::new(),
            max_in_flight: Some(2),
        };
    })
    .await
    else {
        return;
    };
    // customers enough that an export cannot be buffered whole while its client reads nothing
    let rows: Vec<proto::ImportCustomersRequest> = (0..8000)
        .map(|i| proto::ImportCustomersRequest {
            row: Some(Row::Customer(proto::Customer {
                display_name: format!("Customer number {i} with a longer name to fill the window"),
                email: format!("customer-{i}@example.com"),
                ..Default::default()
            })),
        })
        .collect();
    let imported = server
        .customers()
        .import_customers(tokio_stream::iter(rows))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(imported.created, 8000);

    // a client stream that sends nothing yet: counted while the handler reads it
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::ImportCustomersRequest>(1);
    let mut importer = server.customers();
    let import = tokio::spawn(async move {
        importer
            .import_customers(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // a server stream read once and then left: counted while its body is unsent
    let mut export = server
        .customers()
        .export_customers(proto::ExportCustomersRequest::default())
        .await
        .expect("export")
        .into_inner();
    export.message().await.expect("first").expect("a customer");

    // both held: the next call is refused (once the import's call has reached the server)
    let mut refused = None;
    for _ in 0..400 {
        match list(&server).await {
            Ok(()) => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
            Err(s) => {
                refused = Some(s);
                break;
            }
        }
    }
    let refused = refused.expect("the in-flight limit refuses a third call");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let retry = refused
        .get_details_retry_info()
        .expect("a RetryInfo detail")
        .retry_delay
        .expect("a delay");
    assert!(retry.as_millis() > 0);
    assert_eq!(health(&server).await, 1, "health stays SERVING");

    // the server stream ends (the client drops it): one slot is free again
    drop(export);
    let mut served = false;
    for _ in 0..400 {
        if list(&server).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(served, "a call is served once the export has gone");

    // the client stream ends: its call answers, and calls are served again
    tx.send(proto::ImportCustomersRequest {
        row: Some(Row::Customer(proto::Customer {
            display_name: "Last".into(),
            email: "last@example.com".into(),
            ..Default::default()
        })),
    })
    .await
    .expect("send");
    drop(tx);
    let report = import
        .await
        .expect("task")
        .expect("import answers")
        .into_inner();
    assert_eq!(report.created, 1);
    list(&server).await.expect("served after the streams ended");
    list(&server).await.expect("and again");
    server.stop().await;
}

for_each_backend!(
    a_principal_over_its_rate_is_told_when_to_retry,
    held_streams_fill_the_in_flight_limit_until_they_end,
);
