//! PostgreSQL restarted under traffic: a cluster of the test's own (`common::pg_cluster`) is
//! stopped (`pg_ctl stop -m fast`, as an operator restarting it does) while writers create
//! customers in a loop, then started again. While it is down every call fails UNAVAILABLE
//! within the pool's wait (not INTERNAL, not a hang); once it is back calls succeed without
//! restarting bakkal, every acknowledged write is there, and the background work resumes by
//! itself: the scheduler starts a campaign whose time came during the outage, the dispatcher
//! delivers its messages, the SLA watcher records a breach. Skipped, saying why, when this
//! machine has no PostgreSQL server binaries.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bakkal::config::{Clock, DeskConfig};
use bakkal::proto::campaign_service_client::CampaignServiceClient;
use bakkal::proto::campaign_trigger::{AtTime, Kind};
use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, CampaignStrategy, InteractionChannel, MessageChannel, TicketKind};
use bakkal_domain::time::now_micros;
use common::pg_cluster::PgCluster;
use common::{count, create_script, wait_for, TestServer};
use sqlx::{Connection, PgConnection};
use tonic::Code;

/// The longest a call may take to fail while the database is down: the pool's 10 s wait for a
/// connection, and some slack.
const FAIL_WITHIN: Duration = Duration::from_secs(15);

fn consenting(email: &str) -> proto::Customer {
    proto::Customer {
        display_name: "Restart Test".into(),
        email: email.into(),
        consent: Some(proto::ChannelConsents {
            email: Some(proto::Consent {
                granted: true,
                update_time: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A campaign over everyone, started by the scheduler at `start_secs`; its name.
async fn scheduled_campaign(server: &TestServer, start_secs: i64) -> String {
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
        .expect("segment")
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
        "fn message(c, event) { message(\"email\", \"Hello\", \"Hi\") }",
    )
    .await;
    let mut campaigns = CampaignServiceClient::new(server.channel.clone());
    let c = campaigns
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "During the outage".into(),
                strategy: CampaignStrategy::Loyalty as i32,
                audience: s.name,
                message_script: script,
                channel: MessageChannel::Email as i32,
                trigger: Some(proto::CampaignTrigger {
                    kind: Some(Kind::AtTime(AtTime {
                        start_time: Some(prost_types::Timestamp {
                            seconds: start_secs,
                            nanos: 0,
                        }),
                    })),
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("campaign")
        .into_inner();
    campaigns
        .schedule_campaign(proto::ScheduleCampaignRequest {
            name: c.name.clone(),
        })
        .await
        .expect("schedule");
    c.name
}

#[derive(Default)]
struct Traffic {
    /// Emails of the customers whose creation was acknowledged.
    acked: Mutex<Vec<String>>,
    /// The calls that failed: code, message, how long they took.
    failed: Mutex<Vec<(Code, String, Duration)>>,
    stop: AtomicBool,
}

/// Create customers in a loop until told to stop.
async fn writer(server_channel: tonic::transport::Channel, w: usize, traffic: Arc<Traffic>) {
    let mut client = CustomerServiceClient::new(server_channel);
    let mut n = 0;
    while !traffic.stop.load(Ordering::SeqCst) {
        n += 1;
        let email = format!("writer{w}-{n}@example.com");
        let started = Instant::now();
        let call = client.create_customer(proto::CreateCustomerRequest {
            customer: Some(consenting(&email)),
            ..Default::default()
        });
        match tokio::time::timeout(Duration::from_secs(30), call).await {
            Ok(Ok(_)) => traffic.acked.lock().unwrap().push(email),
            Ok(Err(s)) => {
                traffic.failed.lock().unwrap().push((
                    s.code(),
                    s.message().to_string(),
                    started.elapsed(),
                ));
            }
            Err(_) => traffic.failed.lock().unwrap().push((
                Code::DeadlineExceeded,
                "no answer in 30 s".into(),
                started.elapsed(),
            )),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_traffic() {
    let cluster = match PgCluster::start() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("PostgreSQL restart test skipped: {why}");
            return;
        }
    };
    let url = cluster.url();
    let clock = Clock::manual(now_micros());
    let desk_clock = clock.clone();
    let server = TestServer::start_at(&url, move |c| {
        c.desk = DeskConfig {
            clock: desk_clock,
            sla_watch_interval: Duration::from_millis(50),
            message_script: None,
        };
        c.delivery.poll_interval = Duration::from_millis(20);
    })
    .await;

    // before: customers to send to, a campaign due in a moment (while the database is down),
    // a complaint whose first-response clock runs
    let mut customers = CustomerServiceClient::new(server.channel.clone());
    let mut seeded = Vec::new();
    for i in 0..5 {
        let c = customers
            .create_customer(proto::CreateCustomerRequest {
                customer: Some(consenting(&format!("seed{i}@example.com"))),
                ..Default::default()
            })
            .await
            .expect("seed customer")
            .into_inner();
        seeded.push(c.name);
    }
    let mut desk = server.desk();
    desk.create_sla_policy(proto::CreateSlaPolicyRequest {
        sla_policy: Some(proto::SlaPolicy {
            display_name: "complaints".into(),
            kinds: vec![TicketKind::Complaint as i32],
            first_response_within: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            resolve_within: Some(prost_types::Duration {
                seconds: 8 * 3600,
                nanos: 0,
            }),
            at_risk_fraction: 0.5,
            ..Default::default()
        }),
    })
    .await
    .expect("policy");
    let ticket = desk
        .create_ticket(proto::CreateTicketRequest {
            ticket: Some(proto::Ticket {
                contact_email: "angry@example.com".into(),
                kind: TicketKind::Complaint as i32,
                channel: InteractionChannel::Email as i32,
                subject: "My parcel arrived broken".into(),
                description: "The vase was in pieces.".into(),
                topic: "delivery".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("ticket")
        .into_inner();
    let ticket_id = ticket.name.trim_start_matches("tickets/").to_string();
    let start_secs = now_micros() / 1_000_000 + 3;
    let campaign = scheduled_campaign(&server, start_secs).await;

    // writers in a loop
    let traffic = Arc::new(Traffic::default());
    let writers: Vec<_> = (0..2)
        .map(|w| tokio::spawn(writer(server.channel.clone(), w, traffic.clone())))
        .collect();
    wait_until("writes before the stop", Duration::from_secs(20), || {
        traffic.acked.lock().unwrap().len() >= 20
    })
    .await;

    // down: a read and the writes fail UNAVAILABLE, within the pool's wait
    cluster.stop();
    let stopped = Instant::now();
    let started = Instant::now();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        customers.get_customer(proto::GetCustomerRequest {
            name: seeded[0].clone(),
        }),
    )
    .await
    .expect("the read answers while the database is down");
    let err = read.expect_err("the database is down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(started.elapsed() < FAIL_WITHIN, "{:?}", started.elapsed());
    wait_until("failed writes", Duration::from_secs(30), || {
        traffic.failed.lock().unwrap().len() >= 2
    })
    .await;
    // the campaign's start time passes while the database is down
    while now_micros() / 1_000_000 <= start_secs {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped.elapsed() > Duration::from_secs(1));

    // up again: writes succeed without restarting bakkal
    cluster.start_again();
    let acked_at_restart = traffic.acked.lock().unwrap().len();
    wait_until("writes after the restart", Duration::from_secs(30), || {
        traffic.acked.lock().unwrap().len() >= acked_at_restart + 20
    })
    .await;
    traffic.stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }

    let failed = traffic.failed.lock().unwrap().clone();
    assert!(!failed.is_empty());
    for (code, message, took) in &failed {
        assert_eq!(
            *code,
            Code::Unavailable,
            "a call failed otherwise: {message}\n{}",
            cluster.log()
        );
        assert!(*took < FAIL_WITHIN, "a call took {took:?} to fail");
    }

    // no acknowledged write lost
    let acked = traffic.acked.lock().unwrap().clone();
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let stored: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT email FROM customers WHERE email IS NOT NULL")
            .fetch_all(&mut conn)
            .await
            .expect("emails")
            .into_iter()
            .collect();
    let lost: Vec<&String> = acked.iter().filter(|e| !stored.contains(*e)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    conn.close().await.expect("close");

    // the scheduler started the campaign due during the outage, the dispatcher delivers it
    let delivered = format!(
        "SELECT COUNT(*) FROM outbox_messages WHERE campaign_id = {} AND status = 'DELIVERED'",
        campaign.trim_start_matches("campaigns/")
    );
    wait_for(&url, &delivered, seeded.len() as i64).await;
    // the SLA watcher: past the first-response target, the breach is recorded once
    clock.advance(Duration::from_secs(70 * 60));
    let breached = format!(
        "SELECT COUNT(*) FROM events WHERE kind = 'sla_breached' AND customer_id = \
         (SELECT customer_id FROM tickets WHERE id = {ticket_id})"
    );
    wait_for(&url, &breached, 1).await;
    assert_eq!(count(&url, &breached).await, 1);
    server.stop().await;
}
