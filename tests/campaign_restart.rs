//! A campaign run survives its server being killed: the real `bakkal` binary is started on a
//! database, a run over a few thousand customers is launched, the process is SIGKILLed once
//! some but not all messages are queued, and a new process on the same database resumes the
//! run at start. Every targeted, consenting customer ends with exactly one message and the
//! holdout with none. On SQLite, and on PostgreSQL when `BAKKAL_TEST_POSTGRES_URL` is set.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bakkal::proto::campaign_service_client::CampaignServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::import_customers_request::Row;
use bakkal::proto::script_service_client::ScriptServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, CampaignStrategy, MessageChannel};
use common::{Backend, TestDb};
use tonic::transport::Channel;

const CUSTOMERS: usize = 3000;
const HOLDOUT: i32 = 10;

struct Process {
    child: Child,
    channel: Channel,
}

impl Drop for Process {
    /// SIGKILL (a no-op when it already exited): a failed test leaves no server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Start `bakkal serve` on `url` and wait until it answers.
async fn start(url: &str, dir: &std::path::Path) -> Process {
    let addr = free_addr();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bakkal"))
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--database-url",
            url,
            "--scheduler-tick-ms",
            "100",
            "--outbox-file",
        ])
        .arg(dir.join("outbox.jsonl"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start bakkal");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri");
    for _ in 0..400 {
        if let Ok(ch) = endpoint.connect().await {
            let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
            if health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok()
            {
                return Process { child, channel: ch };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("bakkal at {addr} did not come up");
}

async fn create_script(ch: &Channel, kind: proto::ScriptKind, source: &str) -> String {
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

/// Import the customers (every other one consents to email); a segment of them all; a
/// campaign with a MESSAGE script slow enough to be caught mid-run.
async fn seed(ch: &Channel) -> String {
    let rows: Vec<proto::ImportCustomersRequest> = (0..CUSTOMERS)
        .map(|i| proto::ImportCustomersRequest {
            row: Some(Row::Customer(proto::Customer {
                display_name: format!("Customer {i}"),
                email: format!("c{i}@example.com"),
                consent: Some(proto::ChannelConsents {
                    email: Some(proto::Consent {
                        granted: i % 2 == 0,
                        update_time: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        })
        .collect();
    let imported = CustomerServiceClient::new(ch.clone())
        .import_customers(tokio_stream::iter(rows))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(imported.created, CUSTOMERS as i64);
    let rule = create_script(ch, proto::ScriptKind::Segment, "fn matches(c) { true }").await;
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
    let script = create_script(
        ch,
        proto::ScriptKind::Message,
        "fn message(c, event) { let x = 0; for i in 0..300 { x += i % 7; } \
         message(\"email\", \"Hello\", `${c.first_name} ${x}`) }",
    )
    .await;
    CampaignServiceClient::new(ch.clone())
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "Big".into(),
                strategy: CampaignStrategy::Loyalty as i32,
                audience: s.name,
                message_script: script,
                channel: MessageChannel::Email as i32,
                holdout_percent: HOLDOUT,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("campaign")
        .into_inner()
        .name
}

async fn get_run(ch: &Channel, name: &str) -> proto::CampaignRun {
    CampaignServiceClient::new(ch.clone())
        .get_campaign_run(proto::GetCampaignRunRequest { name: name.into() })
        .await
        .expect("get run")
        .into_inner()
}

async fn all_messages(ch: &Channel, parent: &str) -> Vec<proto::Message> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = CampaignServiceClient::new(ch.clone())
            .list_messages(proto::ListMessagesRequest {
                parent: parent.into(),
                page_size: 1000,
                page_token: token,
            })
            .await
            .expect("list")
            .into_inner();
        out.extend(page.messages);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn killed_run_resumes_at_start(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        eprintln!("BAKKAL_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let mut first = start(&db.url, dir.path()).await;
    let campaign = seed(&first.channel).await;
    let cid: i64 = campaign.trim_start_matches("campaigns/").parse().unwrap();
    // who consents, from the server
    let mut people: Vec<(i64, bool)> = Vec::new();
    let mut stream = CustomerServiceClient::new(first.channel.clone())
        .export_customers(proto::ExportCustomersRequest::default())
        .await
        .expect("export")
        .into_inner();
    while let Some(c) = stream.message().await.expect("export stream") {
        let id: i64 = c.name.trim_start_matches("customers/").parse().unwrap();
        let consent = c.consent.and_then(|k| k.email).is_some_and(|e| e.granted);
        people.push((id, consent));
    }
    assert_eq!(people.len(), CUSTOMERS);
    people.sort_unstable();
    let in_holdout = |id: i64| bakkal_engine::campaign::in_holdout(cid, id, HOLDOUT as i64);
    let expected: Vec<i64> = people
        .iter()
        .filter(|(id, consent)| *consent && !in_holdout(*id))
        .map(|p| p.0)
        .collect();
    let held: Vec<i64> = people
        .iter()
        .map(|p| p.0)
        .filter(|&id| in_holdout(id))
        .collect();

    let run = CampaignServiceClient::new(first.channel.clone())
        .launch_campaign(proto::LaunchCampaignRequest {
            name: campaign.clone(),
        })
        .await
        .expect("launch")
        .into_inner();
    let mut queued_at_kill = 0;
    for _ in 0..3000 {
        let r = get_run(&first.channel, &run.name).await;
        let queued = r.counters.map_or(0, |c| c.queued);
        if queued > 0 {
            queued_at_kill = queued;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reap");
    drop(first);
    assert!(
        queued_at_kill > 0 && (queued_at_kill as usize) < expected.len(),
        "killed after {queued_at_kill} of {} messages: not mid-run",
        expected.len()
    );

    // a new server on the same database resumes the run (once the dead one's lease ran out)
    let second = start(&db.url, dir.path()).await;
    let mut done = None;
    for _ in 0..1200 {
        let r = get_run(&second.channel, &run.name).await;
        if r.state != "RUNNING" {
            done = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = done.expect("the run was resumed and ended");
    assert_eq!(done.state, "COMPLETED");
    let counters = done.counters.expect("counters");
    assert_eq!(counters.script_errors, 0);
    assert_eq!(counters.evaluated, CUSTOMERS as i64);
    assert_eq!(counters.held_out, held.len() as i64);
    assert_eq!(counters.queued, expected.len() as i64);

    let messages = all_messages(&second.channel, &campaign).await;
    let mut per: HashMap<i64, usize> = HashMap::new();
    for m in &messages {
        let id: i64 = m.customer.trim_start_matches("customers/").parse().unwrap();
        *per.entry(id).or_default() += 1;
    }
    let mut got: Vec<i64> = per.keys().copied().collect();
    got.sort_unstable();
    assert_eq!(
        got, expected,
        "every targeted, consenting customer, nobody else"
    );
    assert!(per.values().all(|&n| n == 1), "exactly one message each");
    assert!(held.iter().all(|h| !per.contains_key(h)));

    // relaunching the finished campaign queues nothing
    let again = CampaignServiceClient::new(second.channel.clone())
        .launch_campaign(proto::LaunchCampaignRequest {
            name: campaign.clone(),
        })
        .await
        .expect("relaunch")
        .into_inner();
    let mut r = get_run(&second.channel, &again.name).await;
    for _ in 0..1200 {
        if r.state != "RUNNING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = get_run(&second.channel, &again.name).await;
    }
    let c = r.counters.expect("counters");
    assert_eq!(r.state, "COMPLETED");
    assert_eq!(c.queued, 0);
    assert_eq!(c.suppressed_already_sent, expected.len() as i64);
    assert_eq!(
        all_messages(&second.channel, &campaign).await.len(),
        expected.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_run_resumes_at_start() {
    killed_run_resumes_at_start(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_run_resumes_at_start() {
    killed_run_resumes_at_start(Backend::Postgres).await;
}
