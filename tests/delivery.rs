//! Outbox delivery through a real server and client, on every configured backend: the webhook
//! sink against an HTTP server inside the test (retries with backoff, dead letters), the NATS
//! JetStream sink against the local NATS server (each message in the stream exactly once),
//! WatchCampaignRun, and ListMessages following customer merges.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bakkal::config::{Config, SinkKind};
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, CampaignStrategy, MessageChannel, MessageStatus};
use common::{campaigns, create_script, Backend, TestServer};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tonic::Code;

// ---- a tiny HTTP/1.1 webhook receiver ---------------------------------------------------------

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    idempotency_key: String,
    body: serde_json::Value,
    /// The body as sent, byte for byte.
    raw: Vec<u8>,
    /// Every header, names lowercased.
    headers: Vec<(String, String)>,
    status: u16,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers request `n` (0-based, over all connections) with `plan(n)`; keeps connections
/// alive; records every request.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(plan: fn(usize) -> u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, plan, log).await;
                });
            }
        });
        Receiver { url, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    socket: tokio::net::TcpStream,
    plan: fn(usize) -> u16,
    log: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        assert!(line.starts_with("POST /hook "), "request line {line:?}");
        let (mut length, mut key) = (0usize, String::new());
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            read.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "idempotency-key" => key = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).await?;
        let status = {
            let mut log = log.lock().unwrap();
            let status = plan(log.len());
            log.push(Seen {
                idempotency_key: key,
                body: serde_json::from_slice(&body).expect("JSON body"),
                raw: body,
                headers,
                status,
            });
            status
        };
        let text = format!("status {status}");
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        write.write_all(response.as_bytes()).await?;
    }
}

// ---- campaign set-up ----------------------------------------------------------------------------

/// `n` customers who consent to email; their names.
async fn customers(server: &TestServer, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let c = server
            .customers()
            .create_customer(proto::CreateCustomerRequest {
                customer: Some(proto::Customer {
                    display_name: format!("Customer {i}"),
                    email: format!("d{i}@example.com"),
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
            .expect("create customer")
            .into_inner();
        out.push(c.name);
    }
    out
}

/// A campaign over everyone (refreshed now) on email; its name.
async fn email_campaign(server: &TestServer) -> String {
    let rule = create_script(server, proto::ScriptKind::Segment, "fn matches(c) { true }").await;
    let mut seg = SegmentServiceClient::new(server.channel.clone());
    let s = seg
        .create_segment(proto::CreateSegmentRequest {
            segment: Some(proto::Segment {
                display_name: "everyone".into(),
                script: rule,
                ..Default::default()
            }),
        })
        .await
        .expect("create segment")
        .into_inner();
    seg.refresh_segment(proto::RefreshSegmentRequest {
        name: s.name.clone(),
        interpreter_only: false,
    })
    .await
    .expect("refresh");
    let script = create_script(
        server,
        proto::ScriptKind::Message,
        "fn message(c, event) { message(\"email\", \"Hello\", \"Hi \" + c.display_name) }",
    )
    .await;
    campaigns(server)
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "Delivery".into(),
                strategy: CampaignStrategy::Loyalty as i32,
                audience: s.name,
                message_script: script,
                channel: MessageChannel::Email as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create campaign")
        .into_inner()
        .name
}

async fn launch(server: &TestServer, campaign: &str) -> String {
    campaigns(server)
        .launch_campaign(proto::LaunchCampaignRequest {
            name: campaign.into(),
        })
        .await
        .expect("launch")
        .into_inner()
        .name
}

async fn list(server: &TestServer, parent: &str) -> Vec<proto::Message> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = campaigns(server)
            .list_messages(proto::ListMessagesRequest {
                parent: parent.into(),
                page_size: 3,
                page_token: token,
            })
            .await
            .expect("list messages")
            .into_inner();
        out.extend(page.messages);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Wait (bounded) until the campaign has `n` messages, none of them QUEUED, SENDING or FAILED.
async fn settled(server: &TestServer, campaign: &str, n: usize) -> Vec<proto::Message> {
    let open = [
        MessageStatus::Queued as i32,
        MessageStatus::Sending as i32,
        MessageStatus::Failed as i32,
    ];
    for _ in 0..600 {
        let all = list(server, campaign).await;
        if all.len() == n && all.iter().all(|m| !open.contains(&m.status)) {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "messages of {campaign} did not settle: {:?}",
        list(server, campaign).await
    );
}

/// Run `body` on SQLite and, when configured, PostgreSQL, with `tweak` on the configuration.
async fn on_both<F, Fut>(tweak: impl Fn(&mut Config), body: F)
where
    F: Fn(TestServer) -> Fut,
    Fut: std::future::Future<Output = TestServer>,
{
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(server) = TestServer::start_with(backend, &tweak).await else {
            eprintln!("BAKKAL_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
            continue;
        };
        body(server).await.stop().await;
    }
}

fn webhook(url: &str, max_attempts: u32, backoff_ms: u64) -> impl Fn(&mut Config) + '_ {
    move |c: &mut Config| {
        c.delivery.sinks = vec![("email".into(), SinkKind::Webhook(url.to_string()))];
        c.delivery.max_attempts = max_attempts;
        c.delivery.backoff_base = Duration::from_millis(backoff_ms);
        c.delivery.backoff_max = Duration::from_millis(backoff_ms * 4);
        c.delivery.poll_interval = Duration::from_millis(20);
    }
}

// ---- webhook ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_until_delivered_once() {
    let rx = Receiver::start(|n| if n < 2 { 503 } else { 200 }).await;
    let rx = &rx;
    on_both(webhook(&rx.url, 5, 30), |server| async move {
        rx.seen.lock().unwrap().clear();
        customers(&server, 1).await;
        let campaign = email_campaign(&server).await;
        launch(&server, &campaign).await;
        let done = settled(&server, &campaign, 1).await;
        let m = &done[0];
        assert_eq!(m.status, MessageStatus::Delivered as i32, "{m:?}");
        assert_eq!(m.attempts, 3);
        assert!(m.deliver_time.is_some());
        assert!(m.last_error.is_empty(), "{m:?}");
        assert!(m.next_attempt_time.is_none());
        let seen = rx.seen();
        assert_eq!(
            seen.iter().map(|s| s.status).collect::<Vec<_>>(),
            [503, 503, 200]
        );
        for s in &seen {
            assert_eq!(s.idempotency_key, m.idempotency_key);
            assert_eq!(s.body["name"], m.name.as_str());
            assert_eq!(s.body["body"], "Hi Customer 0");
        }
        assert!(
            !server.outbox_file.exists(),
            "email went to the webhook, not the file"
        );
        server
    })
    .await;
}

// ---- Standard Webhooks signatures, checked by a receiver of our own ---------------------------

/// HMAC-SHA256 (RFC 2104) written out over SHA-256, independent of the server's `hmac` crate.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// A receiver's check: does one of the `v1,` signatures in `header` sign `id.timestamp.body`
/// with the key of `secret` (`whsec_<base64>`)?
fn verifies(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let want = b64.encode(hmac_sha256(&key, &signed));
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == want)
}

fn random_secret() -> String {
    use base64::Engine as _;
    let mut key = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut key[..]);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

#[test]
fn the_receivers_check_accepts_the_standard_webhooks_example() {
    // the specification's own example, so the check below is known to be right
    assert!(verifies(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232314}"#,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_are_signed_with_each_secret() {
    let rx = Receiver::start(|n| if n < 1 { 503 } else { 200 }).await;
    let rx = &rx;
    // a rotation: the old and the new secret both sign email; sms has its own, unused here
    let (old, new, other) = (random_secret(), random_secret(), random_secret());
    let (old, new, other) = (&old, &new, &other);
    let secrets = [
        format!("email={old}"),
        format!("email={new}"),
        format!("*={other}"),
    ];
    let tweak = |c: &mut Config| {
        webhook(&rx.url, 5, 30)(c);
        c.delivery.webhook_secrets = secrets
            .iter()
            .map(|s| bakkal::config::parse_webhook_secret_flag(s).unwrap())
            .collect();
    };
    on_both(tweak, |server| async move {
        rx.seen.lock().unwrap().clear();
        customers(&server, 1).await;
        let campaign = email_campaign(&server).await;
        launch(&server, &campaign).await;
        let done = settled(&server, &campaign, 1).await;
        let m = &done[0];
        assert_eq!(m.status, MessageStatus::Delivered as i32, "{m:?}");
        let seen = rx.seen();
        assert_eq!(seen.len(), 2, "a retry, then delivered: {seen:?}");
        for s in &seen {
            let id = s.header("webhook-id").expect("webhook-id");
            assert_eq!(id, m.idempotency_key, "webhook-id is the idempotency key");
            let timestamp = s.header("webhook-timestamp").expect("webhook-timestamp");
            let at: i64 = timestamp.parse().expect("Unix seconds");
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            assert!(
                (now - at).abs() < 3600,
                "timestamp {at} is not about now {now}"
            );
            let signature = s.header("webhook-signature").expect("webhook-signature");
            assert_eq!(signature.split(' ').count(), 2, "{signature}");
            assert!(
                signature.split(' ').all(|p| p.starts_with("v1,")),
                "{signature}"
            );
            // each secret of the rotation verifies the delivery on its own
            assert!(
                verifies(old, id, timestamp, &s.raw, signature),
                "old secret"
            );
            assert!(
                verifies(new, id, timestamp, &s.raw, signature),
                "new secret"
            );
            assert!(
                !verifies(other, id, timestamp, &s.raw, signature),
                "* is not email's"
            );
            // one byte changed anywhere in the body: no longer verifies
            for i in [0, s.raw.len() / 2, s.raw.len() - 1] {
                let mut changed = s.raw.clone();
                changed[i] ^= 0x01;
                assert!(
                    !verifies(new, id, timestamp, &changed, signature),
                    "byte {i}"
                );
            }
            // nor with another id or timestamp
            assert!(!verifies(new, "other", timestamp, &s.raw, signature));
            assert!(!verifies(new, id, &(at + 1).to_string(), &s.raw, signature));
        }
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_webhook_sends_no_signature_headers() {
    let rx = Receiver::start(|_| 200).await;
    let rx = &rx;
    on_both(webhook(&rx.url, 5, 30), |server| async move {
        rx.seen.lock().unwrap().clear();
        customers(&server, 1).await;
        let campaign = email_campaign(&server).await;
        launch(&server, &campaign).await;
        settled(&server, &campaign, 1).await;
        let seen = rx.seen();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].header("webhook-signature").is_none(), "{seen:?}");
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_that_keeps_failing_is_dead_lettered_after_max_attempts() {
    let rx = Receiver::start(|_| 500).await;
    let rx = &rx;
    on_both(webhook(&rx.url, 3, 300), |server| async move {
        rx.seen.lock().unwrap().clear();
        customers(&server, 1).await;
        let campaign = email_campaign(&server).await;
        launch(&server, &campaign).await;
        // between attempts it is FAILED, with the error and the time of the next attempt
        let mut saw_failed = false;
        for _ in 0..400 {
            let all = list(&server, &campaign).await;
            if let Some(m) = all.first() {
                if m.status == MessageStatus::Failed as i32 {
                    assert!(m.last_error.contains("500"), "{m:?}");
                    assert!(m.next_attempt_time.is_some(), "{m:?}");
                    saw_failed = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(saw_failed, "never saw the message FAILED between attempts");
        let done = settled(&server, &campaign, 1).await;
        let m = &done[0];
        assert_eq!(m.status, MessageStatus::Dead as i32, "{m:?}");
        assert_eq!(m.attempts, 3);
        assert!(m.last_error.contains("HTTP 500"), "{m:?}");
        assert!(m.last_error.contains("after 3 attempts"), "{m:?}");
        assert!(m.deliver_time.is_none());
        assert_eq!(rx.seen().len(), 3);
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_refusal_is_dead_at_once() {
    let rx = Receiver::start(|_| 400).await;
    let rx = &rx;
    on_both(webhook(&rx.url, 5, 30), |server| async move {
        rx.seen.lock().unwrap().clear();
        customers(&server, 2).await;
        let campaign = email_campaign(&server).await;
        launch(&server, &campaign).await;
        let done = settled(&server, &campaign, 2).await;
        for m in &done {
            assert_eq!(m.status, MessageStatus::Dead as i32, "{m:?}");
            assert_eq!(m.attempts, 1);
            assert!(m.last_error.contains("HTTP 400"), "{m:?}");
            // GetMessage tells the same
            let got = campaigns(&server)
                .get_message(proto::GetMessageRequest {
                    name: m.name.clone(),
                })
                .await
                .expect("get message")
                .into_inner();
            assert_eq!(got.status, MessageStatus::Dead as i32);
            assert_eq!(got.last_error, m.last_error);
        }
        // no retry comes later
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rx.seen().len(), 2);
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_webhook_is_retried_then_dead() {
    // a port nobody listens on: connection refused is a passing fault
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    on_both(webhook(&url, 2, 20), |server| async move {
        customers(&server, 1).await;
        let campaign = email_campaign(&server).await;
        launch(&server, &campaign).await;
        let m = settled(&server, &campaign, 1).await.remove(0);
        assert_eq!(m.status, MessageStatus::Dead as i32, "{m:?}");
        assert_eq!(m.attempts, 2);
        assert!(m.last_error.contains("after 2 attempts"), "{m:?}");
        server
    })
    .await;
}

// ---- NATS JetStream -------------------------------------------------------------------------------

const NATS_URL: &str = "nats://127.0.0.1:4222";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stream_holds_each_message_exactly_once() {
    use futures::StreamExt as _;
    let Ok(client) = tokio::time::timeout(Duration::from_secs(2), async_nats::connect(NATS_URL))
        .await
        .map_err(|_| ())
        .and_then(|r| r.map_err(|_| ()))
    else {
        eprintln!("NATS is not reachable at {NATS_URL}: NATS delivery test skipped");
        return;
    };
    let js = async_nats::jetstream::new(client);
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("bakkaltest.{tag}");
        let stream = format!("BAKKALTEST_{tag}");
        let (p, s) = (prefix.clone(), stream.clone());
        let Some(server) = TestServer::start_with(backend, move |c| {
            c.delivery.sinks = vec![("*".into(), SinkKind::Nats)];
            c.delivery.nats_url = NATS_URL.into();
            c.delivery.nats_subject_prefix = p;
            c.delivery.nats_stream = Some(s);
            c.delivery.poll_interval = Duration::from_millis(20);
        })
        .await
        else {
            eprintln!("BAKKAL_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
            continue;
        };
        customers(&server, 7).await;
        let campaign = email_campaign(&server).await;
        launch(&server, &campaign).await;
        let done = settled(&server, &campaign, 7).await;
        assert!(done
            .iter()
            .all(|m| m.status == MessageStatus::Delivered as i32 && m.attempts == 1));

        // publish one again by hand with the same message id: JetStream drops it
        let again = async_nats::jetstream::message::PublishMessage::build()
            .payload("duplicate".into())
            .message_id(&done[0].idempotency_key);
        let ack = js
            .send_publish(format!("{prefix}.email"), again)
            .await
            .expect("publish")
            .await
            .expect("ack");
        assert!(ack.duplicate);

        let mut st = js.get_stream(&stream).await.expect("stream was created");
        assert_eq!(st.info().await.expect("info").state.messages, 7);
        let consumer = st
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut batch = consumer
            .fetch()
            .max_messages(100)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("fetch");
        let mut keys = Vec::new();
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            assert_eq!(m.subject.as_str(), format!("{prefix}.email"));
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string())
                .expect("Nats-Msg-Id");
            let body: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON");
            assert_eq!(body["idempotency_key"], id.as_str());
            keys.push(id);
        }
        keys.sort();
        let mut want: Vec<String> = done.iter().map(|m| m.idempotency_key.clone()).collect();
        want.sort();
        assert_eq!(keys, want, "each message exactly once");
        let _ = js.delete_stream(&stream).await;
        server.stop().await;
    }
}

// ---- WatchCampaignRun -------------------------------------------------------------------------------

async fn watch_streams_the_run_until_it_ends(server: &TestServer) {
    customers(server, 12).await;
    let campaign = email_campaign(server).await;
    let run = launch(server, &campaign).await;
    let mut stream = campaigns(server)
        .watch_campaign_run(proto::WatchCampaignRunRequest { name: run.clone() })
        .await
        .expect("watch")
        .into_inner();
    let mut seen = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(r) = stream.message().await.expect("stream item") {
            seen.push(r);
        }
    })
    .await;
    assert!(end.is_ok(), "the stream did not end: {seen:?}");
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| r.name == run));
    let last = seen.last().unwrap();
    assert_eq!(last.state, "COMPLETED");
    assert_eq!(last.counters.as_ref().unwrap().queued, 12);
    // each item differs from the one before, counters only grow
    for w in seen.windows(2) {
        assert_ne!(w[0], w[1]);
        let (a, b) = (
            w[0].counters.as_ref().unwrap(),
            w[1].counters.as_ref().unwrap(),
        );
        assert!(b.evaluated >= a.evaluated && b.queued >= a.queued);
    }
    // an ended run: one item, then the end
    let mut again = campaigns(server)
        .watch_campaign_run(proto::WatchCampaignRunRequest { name: run.clone() })
        .await
        .expect("watch")
        .into_inner();
    let first = again.message().await.expect("first item").expect("an item");
    assert_eq!(&first, last);
    assert!(again.message().await.expect("end").is_none());

    let missing = campaigns(server)
        .watch_campaign_run(proto::WatchCampaignRunRequest {
            name: format!("{campaign}/runs/999"),
        })
        .await
        .expect_err("no such run");
    assert_eq!(missing.code(), Code::NotFound);
    let bad = campaigns(server)
        .watch_campaign_run(proto::WatchCampaignRunRequest {
            name: "runs/1".into(),
        })
        .await
        .expect_err("bad name");
    assert_eq!(bad.code(), Code::InvalidArgument);
}

// ---- ListMessages follows merges ---------------------------------------------------------------------

async fn customer_messages_follow_merges(server: &TestServer) {
    let people = customers(server, 3).await;
    let campaign = email_campaign(server).await;
    launch(server, &campaign).await;
    settled(server, &campaign, 3).await;
    let (a, b, c) = (&people[0], &people[1], &people[2]);
    assert_eq!(list(server, a).await.len(), 1);

    // b into a, then a into c: c now has all three, and a's and b's names list c's
    for (primary, duplicate) in [(a, b), (c, a)] {
        server
            .customers()
            .merge_customers(proto::MergeCustomersRequest {
                primary: primary.clone(),
                duplicate: duplicate.clone(),
            })
            .await
            .expect("merge");
    }
    let of_c = list(server, c).await;
    let mut owners: Vec<&str> = of_c.iter().map(|m| m.customer.as_str()).collect();
    owners.sort();
    let mut want = vec![a.as_str(), b.as_str(), c.as_str()];
    want.sort();
    assert_eq!(owners, want);
    // oldest first, across the merged customers
    let id =
        |m: &proto::Message| -> i64 { m.name.trim_start_matches("messages/").parse().unwrap() };
    assert!(of_c.windows(2).all(|w| id(&w[0]) < id(&w[1])));
    for merged in [a, b] {
        let names: Vec<String> = list(server, merged)
            .await
            .into_iter()
            .map(|m| m.name)
            .collect();
        let want: Vec<String> = of_c.iter().map(|m| m.name.clone()).collect();
        assert_eq!(names, want, "{merged} lists its primary's messages");
    }
    let missing = campaigns(server)
        .list_messages(proto::ListMessagesRequest {
            parent: "customers/99999".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such customer");
    assert_eq!(missing.code(), Code::NotFound);
}

on_both_backends!(
    watch_streams_the_run_until_it_ends,
    customer_messages_follow_merges
);
