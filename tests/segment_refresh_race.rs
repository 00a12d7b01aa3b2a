//! Two servers on one database refreshing one segment at once, on SQLite and PostgreSQL: each
//! member enters once (one `segment_entered` event each), however the refreshes interleave.

mod common;

use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, import_customers_request::Row};
use common::{count, create_script, Backend, TestDb, TestServer};

async fn refreshes_on_two_servers_write_each_entry_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let a = TestServer::start_at(&db.url, |_| {}).await;
    let b = TestServer::start_at(&db.url, |_| {}).await;
    let rows: Vec<_> = (0..300)
        .map(|i| proto::ImportCustomersRequest {
            row: Some(Row::Customer(proto::Customer {
                display_name: format!("Customer {i}"),
                email: format!("r{i}@example.com"),
                ..Default::default()
            })),
        })
        .collect();
    a.customers()
        .import_customers(tokio_stream::iter(rows))
        .await
        .expect("import");
    let rule = create_script(&a, proto::ScriptKind::Segment, "fn matches(c) { true }").await;
    let seg = SegmentServiceClient::new(a.channel.clone())
        .create_segment(proto::CreateSegmentRequest {
            segment: Some(proto::Segment {
                display_name: "everyone".into(),
                script: rule,
                ..Default::default()
            }),
        })
        .await
        .expect("segment")
        .into_inner();
    let mut calls = Vec::new();
    for server in [&a, &b] {
        for _ in 0..3 {
            let mut c = SegmentServiceClient::new(server.channel.clone());
            let name = seg.name.clone();
            calls.push(tokio::spawn(async move {
                c.refresh_segment(proto::RefreshSegmentRequest {
                    name,
                    interpreter_only: true,
                })
                .await
                .map(|r| r.into_inner().entered_count)
            }));
        }
    }
    let mut entered = 0;
    for c in calls {
        match c.await.expect("task") {
            Ok(n) => entered += n,
            // a refresh already running on that server answers so; that is fine here
            Err(s) => assert_eq!(s.code(), tonic::Code::Aborted, "{s:?}"),
        }
    }
    assert_eq!(
        entered, 300,
        "the refreshes together report each entry once"
    );
    let events = count(
        &db.url,
        "SELECT COUNT(*) FROM events WHERE kind = 'segment_entered'",
    )
    .await;
    assert_eq!(events, 300, "one segment_entered event per member");
    a.stop().await;
    b.stop().await;
}

for_each_backend!(refreshes_on_two_servers_write_each_entry_once);
