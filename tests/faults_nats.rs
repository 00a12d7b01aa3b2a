//! NATS JetStream durability (the local NATS server at 127.0.0.1:4222; skipped, saying so,
//! when it is not there).
//!
//! - A message the broker acknowledged is stored once, even when the dispatcher that
//!   published it dies before recording the ack: the real `bakkal serve` publishes a
//!   campaign's messages while recording their outcome is made to fail (a trigger refusing
//!   DELIVERED), so they stay SENDING under the dead server's lease, as a dispatcher
//!   SIGKILLed between the ack and its own write leaves them; it is then SIGKILLed. A new
//!   server claims them again once the lease has run out (moved back here rather than waited
//!   for) and publishes them again with the same `Nats-Msg-Id` (the idempotency key):
//!   JetStream drops the repeats, the stream holds each message once, and bakkal records
//!   them DELIVERED on their second attempt. On SQLite and PostgreSQL.
//! - The stream bakkal creates (`--nats-stream`) is durable: file storage and a duplicate
//!   window as long as bakkal may take to publish a message again; a stream that is not
//!   (memory storage, NATS's default two-minute window) is named in a warning at start.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use bakkal::proto::campaign_service_client::CampaignServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::script_service_client::ScriptServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, CampaignStrategy, MessageChannel};
use common::process::BakkalProcess;
use common::{count, wait_for, Backend, TestDb};
use futures::StreamExt as _;
use sqlx::Connection as _;
use tonic::transport::Channel;

const NATS_URL: &str = "nats://127.0.0.1:4222";
const CUSTOMERS: i64 = 6;

async fn nats() -> Option<jetstream::Context> {
    match tokio::time::timeout(Duration::from_secs(2), async_nats::connect(NATS_URL)).await {
        Ok(Ok(client)) => Some(jetstream::new(client)),
        _ => {
            eprintln!("NATS is not reachable at {NATS_URL}: NATS fault test skipped");
            None
        }
    }
}

/// Run `sql` (several statements) on the database at `url`.
async fn exec(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
    conn.close().await.expect("close");
}

/// Make recording a delivery fail, as if the dispatcher died between the ack and its write.
fn refuse_delivered(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "CREATE TRIGGER fault_refuse_delivered BEFORE UPDATE ON outbox_messages \
             WHEN NEW.status = 'DELIVERED' \
             BEGIN SELECT RAISE(ABORT, 'fault injected: the outcome cannot be recorded'); END;"
        }
        Backend::Postgres => {
            "CREATE FUNCTION fault_refuse_delivered() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'fault injected: the outcome cannot be recorded'; END $$; \
             CREATE TRIGGER fault_refuse_delivered BEFORE UPDATE ON outbox_messages \
             FOR EACH ROW WHEN (NEW.status = 'DELIVERED') \
             EXECUTE FUNCTION fault_refuse_delivered();"
        }
    }
}

fn allow_delivered(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "DROP TRIGGER fault_refuse_delivered;",
        Backend::Postgres => {
            "DROP TRIGGER fault_refuse_delivered ON outbox_messages; \
             DROP FUNCTION fault_refuse_delivered();"
        }
    }
}

async fn script(ch: &Channel, kind: proto::ScriptKind, source: &str) -> String {
    ScriptServiceClient::new(ch.clone())
        .create_script(proto::CreateScriptRequest {
            script: Some(proto::Script {
                display_name: "rule".into(),
                kind: kind as i32,
                source: source.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create script")
        .into_inner()
        .name
}

/// Consenting customers and a campaign over them all, launched; the campaign's id.
async fn launch_campaign(ch: &Channel) -> String {
    let mut customers = CustomerServiceClient::new(ch.clone());
    for i in 0..CUSTOMERS {
        customers
            .create_customer(proto::CreateCustomerRequest {
                customer: Some(proto::Customer {
                    display_name: format!("Nats {i}"),
                    email: format!("nats{i}@example.com"),
                    consent: Some(proto::ChannelConsents {
                        email: Some(proto::Consent {
                            granted: true,
                            update_time: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("customer");
    }
    let rule = script(ch, proto::ScriptKind::Segment, "fn matches(c) { true }").await;
    let mut seg = SegmentServiceClient::new(ch.clone());
    let s = seg
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
    seg.refresh_segment(proto::RefreshSegmentRequest {
        name: s.name.clone(),
        interpreter_only: false,
    })
    .await
    .expect("refresh");
    let message = script(
        ch,
        proto::ScriptKind::Message,
        "fn message(c, event) { message(\"email\", \"Hello\", \"Hi \" + c.display_name) }",
    )
    .await;
    let mut campaigns = CampaignServiceClient::new(ch.clone());
    let c = campaigns
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "Once".into(),
                strategy: CampaignStrategy::Loyalty as i32,
                audience: s.name,
                message_script: message,
                channel: MessageChannel::Email as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("campaign")
        .into_inner();
    campaigns
        .launch_campaign(proto::LaunchCampaignRequest {
            name: c.name.clone(),
        })
        .await
        .expect("launch");
    c.name.trim_start_matches("campaigns/").to_string()
}

async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// The `Nats-Msg-Id` of every message in the stream, sorted.
async fn stream_ids(js: &jetstream::Context, stream: &str) -> Vec<String> {
    let st = js.get_stream(stream).await.expect("stream");
    let consumer = st
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .expect("consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .expect("fetch");
    let mut ids = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.expect("message");
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .expect("Nats-Msg-Id");
        let body: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON");
        assert_eq!(body["idempotency_key"], id.as_str());
        ids.push(id);
    }
    ids.sort();
    ids
}

async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn acknowledged_message_is_stored_once(backend: Backend) {
    let Some(js) = nats().await else {
        return;
    };
    let Some(db) = TestDb::new(backend).await else {
        eprintln!("BAKKAL_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
        return;
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("bakkalfault.{tag}");
    let stream = format!("BAKKALFAULT_{tag}");
    let flags = [
        "--sink",
        "*=nats",
        "--nats-url",
        NATS_URL,
        "--nats-subject-prefix",
        &prefix,
        "--nats-stream",
        &stream,
    ];
    let dir = tempfile::tempdir().expect("dir");
    let first = BakkalProcess::start_logged(&db.url, dir.path(), &flags).await;
    exec(&db.url, refuse_delivered(backend)).await;
    let campaign = launch_campaign(&first.channel).await;

    // published and acknowledged by the broker, not recorded by bakkal
    let (js_ref, stream_ref, first_ref) = (&js, &stream, &first);
    wait_until("the broker to hold every message", move || async move {
        stream_messages(js_ref, stream_ref).await == CUSTOMERS as u64
    })
    .await;
    let sending = "SELECT COUNT(*) FROM outbox_messages WHERE status = 'SENDING'";
    wait_for(&db.url, sending, CUSTOMERS).await;
    wait_until("the failed record in the log", move || async move {
        first_ref.log().contains("outbox status update failed")
    })
    .await;
    let log = first.log();
    assert!(
        !log.contains("may lose or repeat messages"),
        "the stream bakkal made is durable: {log}"
    );
    first.kill9();

    // a new server once the dead one's lease ran out (60 s: moved back instead of waited)
    exec(&db.url, allow_delivered(backend)).await;
    exec(
        &db.url,
        "UPDATE outbox_messages SET lease_time = lease_time - 120000000 \
         WHERE status = 'SENDING'",
    )
    .await;
    let second = BakkalProcess::start_logged(&db.url, dir.path(), &flags).await;
    let delivered = format!(
        "SELECT COUNT(*) FROM outbox_messages WHERE campaign_id = {campaign} \
         AND status = 'DELIVERED' AND attempts = 2"
    );
    wait_for(&db.url, &delivered, CUSTOMERS).await;
    assert_eq!(
        count(&db.url, "SELECT COUNT(*) FROM outbox_messages").await,
        CUSTOMERS,
        "one outbox message each"
    );
    // published twice, stored once
    assert_eq!(stream_messages(&js, &stream).await, CUSTOMERS as u64);
    let ids = stream_ids(&js, &stream).await;
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids.len(), CUSTOMERS as usize);
    assert_eq!(unique, ids, "each message once in the stream");
    // the stream bakkal made: file storage, the window bakkal needs
    let info = js
        .get_stream(&stream)
        .await
        .expect("stream")
        .get_info()
        .await
        .expect("info");
    assert_eq!(info.config.storage, jetstream::stream::StorageType::File);
    // `dispatcher::redelivery_horizon` of the default flags: a 60 s lease, 8 attempts of 10 s
    // ack timeouts, backoffs of 1 + 2 + … + 64 s
    let horizon = Duration::from_secs(60 + 8 * 10 + 127);
    assert!(info.config.duplicate_window >= horizon, "{info:?}");
    drop(second);
    let _ = js.delete_stream(&stream).await;
}

for_each_backend!(acknowledged_message_is_stored_once);

/// A stream that may lose what it acknowledged, or store a retried message twice, is named
/// in a warning at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_stream_is_warned_about_at_start() {
    let Some(js) = nats().await else {
        return;
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("bakkalweak.{tag}");
    let stream = format!("BAKKALWEAK_{tag}");
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{prefix}.>")],
        storage: jetstream::stream::StorageType::Memory,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("create a weak stream");
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let dir = tempfile::tempdir().expect("dir");
    let server = BakkalProcess::start_logged(
        &db.url,
        dir.path(),
        &[
            "--sink",
            "email=nats",
            "--nats-url",
            NATS_URL,
            "--nats-subject-prefix",
            &prefix,
        ],
    )
    .await;
    let server_ref = &server;
    wait_until("the durability warnings", move || async move {
        let log = server_ref.log();
        log.contains("memory storage") && log.contains("duplicate window of 120 s")
    })
    .await;
    let log = server.log();
    assert!(log.contains(&stream), "{log}");
    drop(server);
    let _ = js.delete_stream(&stream).await;
}
