//! `bakkal.v1.ServiceDeskService` through real servers and clients, on SQLite and (when
//! `BAKKAL_TEST_POSTGRES_URL` is set) PostgreSQL: business-hours SLA clocks under a manual
//! clock, first responses, the SLA watcher's events exactly once with two servers on one
//! database, prospects from unknown contacts, default routing, and bad input.

mod common;

use std::time::Duration;

use bakkal::config::{Clock, DeskConfig};
use bakkal::proto::campaign_service_client::CampaignServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::script_service_client::ScriptServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::service_desk_service_client::ServiceDeskServiceClient;
use bakkal::proto::{self, InteractionChannel, SlaStatus, TicketKind, TicketPriority, TicketState};
use bakkal_domain::time::{days_from_civil, Micros, MICROS_PER_SECOND};
use common::{count, wait_for, Backend, TestDb, TestServer};
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

const HOUR: Micros = 3600 * MICROS_PER_SECOND;
const MINUTE: Micros = 60 * MICROS_PER_SECOND;

/// UTC microseconds of a civil date and time.
fn utc(y: i32, m: u32, d: u32, h: i64, min: i64) -> Micros {
    days_from_civil(y, m, d) * 24 * HOUR + h * HOUR + min * MINUTE
}

fn micros(t: &Option<prost_types::Timestamp>) -> Option<Micros> {
    t.as_ref()
        .map(|t| t.seconds * MICROS_PER_SECOND + (t.nanos / 1000) as i64)
}

/// A server on a database the test owns, with a manual clock and a fast SLA watcher.
struct Desk;

impl Desk {
    async fn start(url: &str, clock: &Clock) -> TestServer {
        Self::start_with(url, clock, None).await
    }

    async fn start_with(url: &str, clock: &Clock, message_script: Option<&str>) -> TestServer {
        TestServer::start_at(url, |c| {
            c.desk = DeskConfig {
                clock: clock.clone(),
                sla_watch_interval: Duration::from_millis(50),
                message_script: message_script.map(str::to_string),
            }
        })
        .await
    }
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

async fn team(c: &mut ServiceDeskServiceClient<Channel>, name: &str) -> String {
    c.create_team(proto::CreateTeamRequest {
        team: Some(proto::Team {
            display_name: name.into(),
            email: format!("{}@desk.example.com", name.to_lowercase()),
            ..Default::default()
        }),
    })
    .await
    .expect("create team")
    .into_inner()
    .name
}

async fn agent(c: &mut ServiceDeskServiceClient<Channel>, email: &str, teams: &[&str]) -> String {
    c.create_agent(proto::CreateAgentRequest {
        agent: Some(proto::Agent {
            display_name: email.split('@').next().unwrap_or("").into(),
            email: email.into(),
            teams: teams.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }),
    })
    .await
    .expect("create agent")
    .into_inner()
    .name
}

fn dur(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

async fn policy(
    c: &mut ServiceDeskServiceClient<Channel>,
    first_response: i64,
    resolve: i64,
    hours: Option<proto::BusinessHours>,
    at_risk: f64,
) -> String {
    c.create_sla_policy(proto::CreateSlaPolicyRequest {
        sla_policy: Some(proto::SlaPolicy {
            display_name: "complaints".into(),
            kinds: vec![TicketKind::Complaint as i32],
            first_response_within: dur(first_response),
            resolve_within: dur(resolve),
            business_hours: hours,
            at_risk_fraction: at_risk,
            ..Default::default()
        }),
    })
    .await
    .expect("create policy")
    .into_inner()
    .name
}

fn istanbul_office() -> Option<proto::BusinessHours> {
    Some(proto::BusinessHours {
        time_zone: "Europe/Istanbul".into(),
        week_days: vec![1, 2, 3, 4, 5],
        open: "09:00".into(),
        close: "18:00".into(),
        holidays: vec![],
    })
}

fn complaint(email: &str) -> proto::CreateTicketRequest {
    proto::CreateTicketRequest {
        ticket: Some(proto::Ticket {
            contact_email: email.into(),
            kind: TicketKind::Complaint as i32,
            channel: InteractionChannel::Email as i32,
            subject: "My parcel arrived broken".into(),
            description: "The vase was in pieces.".into(),
            topic: "delivery".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn set_state(
    c: &mut ServiceDeskServiceClient<Channel>,
    name: &str,
    state: TicketState,
) -> Result<proto::Ticket, tonic::Status> {
    c.update_ticket(proto::UpdateTicketRequest {
        ticket: Some(proto::Ticket {
            name: name.into(),
            state: state as i32,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["state".into()],
        }),
    })
    .await
    .map(|r| r.into_inner())
}

// ---- tests ---------------------------------------------------------------------------------

/// Opened Friday 17:00 in Istanbul with four business hours to answer: due Monday 12:00. Time
/// spent waiting on the customer does not count.
async fn business_hours_clocks(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // Friday 2026-11-27 17:00 +03 = 14:00 UTC
    let clock = Clock::manual(utc(2026, 11, 27, 14, 0));
    let server = Desk::start(&db.url, &clock).await;
    let mut c = server.desk();
    let _p = policy(&mut c, 4 * 3600, 16 * 3600, istanbul_office(), 0.75).await;
    let t = c
        .create_ticket(complaint("ayse@example.com"))
        .await
        .expect("create ticket")
        .into_inner();
    // 1 h on Friday, 3 h on Monday: Monday 2026-11-30 12:00 +03 = 09:00 UTC
    assert_eq!(
        micros(&t.first_response_due_time),
        Some(utc(2026, 11, 30, 9, 0))
    );
    // 1 h Friday + 15 h: Monday 9 h, Tuesday 6 h → Tuesday 15:00 +03 = 12:00 UTC
    assert_eq!(
        micros(&t.resolution_due_time),
        Some(utc(2026, 12, 1, 12, 0))
    );
    assert_eq!(t.sla_status, SlaStatus::OnTrack as i32);
    assert!(!t.sla_policy.is_empty());

    // Monday 10:00 +03: the agent asks the customer something (2 h used)
    clock.set(utc(2026, 11, 30, 7, 0));
    set_state(&mut c, &t.name, TicketState::Open).await.unwrap();
    let waiting = set_state(&mut c, &t.name, TicketState::WaitingOnCustomer)
        .await
        .expect("wait on customer");
    assert_eq!(
        waiting.first_response_due_time, None,
        "paused clock has no due time"
    );
    // the customer answers on Tuesday 10:00 +03; 2 h are left: due Tuesday 12:00 +03
    clock.set(utc(2026, 12, 1, 7, 0));
    let resumed = set_state(&mut c, &t.name, TicketState::Open).await.unwrap();
    assert_eq!(
        micros(&resumed.first_response_due_time),
        Some(utc(2026, 12, 1, 9, 0))
    );
    // 14 business hours of resolution left from Tuesday 10:00: Tuesday 8 h, Wednesday 6 h
    assert_eq!(
        micros(&resumed.resolution_due_time),
        Some(utc(2026, 12, 2, 12, 0))
    );
    // answered at Tuesday 11:00 +03: 3 business hours taken
    clock.set(utc(2026, 12, 1, 8, 0));
    let a = agent(&mut c, "mehmet@desk.example.com", &[]).await;
    c.add_ticket_comment(proto::AddTicketCommentRequest {
        parent: t.name.clone(),
        comment: Some(proto::TicketComment {
            author: a,
            body: "We are sending a new vase.".into(),
            public: true,
            ..Default::default()
        }),
    })
    .await
    .expect("comment");
    let id = t.name.trim_start_matches("tickets/");
    assert_eq!(
        count(
            &db.url,
            &format!("SELECT first_response_business_micros FROM tickets WHERE id = {id}")
        )
        .await,
        3 * HOUR
    );
    server.stop().await;
}

/// The first public comment by an agent stops the first-response clock; a private note and
/// the customer's own comment do not.
async fn first_public_comment_is_the_first_response(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = Clock::manual(utc(2026, 11, 24, 8, 0));
    let server = Desk::start(&db.url, &clock).await;
    let mut c = server.desk();
    policy(&mut c, 3600, 8 * 3600, None, 0.5).await;
    let a = agent(&mut c, "zeynep@desk.example.com", &[]).await;
    let t = c
        .create_ticket(complaint("can@example.com"))
        .await
        .unwrap()
        .into_inner();
    let comment = |author: &str, public: bool| proto::AddTicketCommentRequest {
        parent: t.name.clone(),
        comment: Some(proto::TicketComment {
            author: author.into(),
            body: "…".into(),
            public,
            ..Default::default()
        }),
    };
    clock.advance(Duration::from_secs(600));
    c.add_ticket_comment(comment(&a, false)).await.unwrap();
    c.add_ticket_comment(comment("", true)).await.unwrap();
    let after_note = c
        .get_ticket(proto::GetTicketRequest {
            name: t.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after_note.first_response_time, None);
    assert_eq!(after_note.state, TicketState::New as i32);

    clock.advance(Duration::from_secs(600));
    c.add_ticket_comment(comment(&a, true)).await.unwrap();
    let answered = c
        .get_ticket(proto::GetTicketRequest {
            name: t.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        micros(&answered.first_response_time),
        Some(utc(2026, 11, 24, 8, 20))
    );
    assert_eq!(answered.state, TicketState::Open as i32);
    // a later public comment does not move it
    clock.advance(Duration::from_secs(600));
    c.add_ticket_comment(comment(&a, true)).await.unwrap();
    let later = c
        .get_ticket(proto::GetTicketRequest {
            name: t.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(later.first_response_time, answered.first_response_time);
    let comments = c
        .list_ticket_comments(proto::ListTicketCommentsRequest {
            parent: t.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .comments;
    assert_eq!(comments.len(), 4);
    assert!(!comments[0].public);
    // comments are on the customer's timeline
    let interactions = CustomerServiceClient::new(server.channel.clone())
        .list_interactions(proto::ListInteractionsRequest {
            parent: t.customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .interactions;
    assert_eq!(interactions.len(), 5, "the ticket and its four comments");
    server.stop().await;
}

/// At risk, then breached: each event and each reminder (to the assignee and the team) is
/// queued exactly once, with two servers' watchers on one database; the ticket heads the
/// overdue list until it is answered.
async fn sla_events_queued_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = Clock::manual(utc(2026, 11, 24, 8, 0));
    let one = Desk::start(&db.url, &clock).await;
    let two = Desk::start(&db.url, &clock).await;
    let mut c = one.desk();
    policy(&mut c, 3600, 8 * 3600, None, 0.5).await;
    let support = team(&mut c, "Support").await;
    let a = agent(&mut c, "ali@desk.example.com", &[&support]).await;
    let t = c
        .create_ticket(complaint("angry@example.com"))
        .await
        .unwrap()
        .into_inner();
    let calm = c
        .create_ticket(proto::CreateTicketRequest {
            ticket: Some(proto::Ticket {
                priority: TicketPriority::Low as i32,
                ..complaint("calm@example.com").ticket.unwrap()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.team, support);
    assert_eq!(t.assignee, a);
    let id = t.name.trim_start_matches("tickets/").to_string();
    let events = |kind: &str| {
        format!(
            "SELECT COUNT(*) FROM events WHERE kind = '{kind}' AND customer_id = \
             (SELECT customer_id FROM tickets WHERE id = {id})"
        )
    };
    let reminders = |kind: &str| {
        format!(
            "SELECT COUNT(*) FROM outbox_messages WHERE ticket_id = {id} \
             AND idempotency_key LIKE 'tickets/{id}:{kind}:%'"
        )
    };

    // 40 minutes: past half of the hour
    clock.advance(Duration::from_secs(40 * 60));
    wait_for(&db.url, &events("sla_at_risk"), 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&db.url, &events("sla_at_risk")).await, 1);
    assert_eq!(count(&db.url, &reminders("sla_at_risk")).await, 2);
    let overdue = c
        .list_overdue_tickets(proto::ListOverdueTicketsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(overdue.len(), 2);
    assert_eq!(
        overdue[0].name, t.name,
        "same due time: the older ticket first"
    );
    assert_eq!(overdue[0].sla_status, SlaStatus::AtRisk as i32);

    // 70 minutes: breached
    clock.advance(Duration::from_secs(30 * 60));
    wait_for(&db.url, &events("sla_breached"), 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&db.url, &events("sla_breached")).await, 1);
    assert_eq!(count(&db.url, &events("sla_at_risk")).await, 1);
    assert_eq!(count(&db.url, &reminders("sla_breached")).await, 2);
    let keys = count(
        &db.url,
        &format!(
            "SELECT COUNT(*) FROM outbox_messages WHERE idempotency_key = \
             'tickets/{id}:sla_breached:first_response:{a}'"
        ),
    )
    .await;
    assert_eq!(keys, 1);
    let overdue = two
        .desk()
        .list_overdue_tickets(proto::ListOverdueTicketsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(
        overdue[0].name, t.name,
        "the breached complaint comes first"
    );
    assert_eq!(overdue[0].sla_status, SlaStatus::Breached as i32);
    assert!(overdue.iter().any(|o| o.name == calm.name));

    // resolving does not take an unanswered complaint off the list
    c.resolve_ticket(proto::ResolveTicketRequest {
        name: t.name.clone(),
        resolution: "Refunded.".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let overdue = c
        .list_overdue_tickets(proto::ListOverdueTicketsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert!(overdue.iter().any(|o| o.name == t.name));
    // an answered and resolved one leaves it
    c.add_ticket_comment(proto::AddTicketCommentRequest {
        parent: calm.name.clone(),
        comment: Some(proto::TicketComment {
            author: a.clone(),
            body: "Sorry for the wait.".into(),
            public: true,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    c.resolve_ticket(proto::ResolveTicketRequest {
        name: calm.name.clone(),
        resolution: "Answered by phone.".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let overdue = c
        .list_overdue_tickets(proto::ListOverdueTicketsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert!(!overdue.iter().any(|o| o.name == calm.name));
    one.stop().await;
    two.stop().await;
}

/// A complaint from an address nobody has: a PROSPECT customer is created, linked, the
/// complaint is on their timeline and acknowledged with its number and promised time.
async fn unknown_contact_becomes_a_prospect(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = Clock::manual(utc(2026, 11, 24, 8, 0));
    let server = Desk::start(&db.url, &clock).await;
    let mut c = server.desk();
    policy(&mut c, 4 * 3600, 24 * 3600, None, 0.0).await;
    let mut req = complaint("  New.Person@Example.COM ");
    req.request_id = "mail-4711".into();
    let t = c.create_ticket(req.clone()).await.unwrap().into_inner();
    assert!(t.customer.starts_with("customers/"));
    assert_eq!(t.contact_email, "new.person@example.com");
    assert_eq!(t.state, TicketState::New as i32);
    // a retry returns the same ticket
    let again = c.create_ticket(req).await.unwrap().into_inner();
    assert_eq!(again.name, t.name);

    let mut customers = CustomerServiceClient::new(server.channel.clone());
    let customer = customers
        .get_customer(proto::GetCustomerRequest {
            name: t.customer.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(customer.email, "new.person@example.com");
    assert_eq!(customer.stage, proto::Stage::Prospect as i32);
    let timeline = customers
        .list_interactions(proto::ListInteractionsRequest {
            parent: t.customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .interactions;
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0].kind, "ticket_complaint");
    assert!(timeline[0].subject.contains(&t.name));

    // a second ticket from the same address links to the same customer
    let second = c
        .create_ticket(complaint("new.person@example.com"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.customer, t.customer);

    let messages = CampaignServiceClient::new(server.channel.clone())
        .list_messages(proto::ListMessagesRequest {
            parent: t.customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(messages.len(), 2, "one acknowledgement per ticket");
    let number = t.name.trim_start_matches("tickets/");
    assert!(
        messages[0].subject.contains(number),
        "{}",
        messages[0].subject
    );
    assert!(
        messages[0].body.contains("within 4 hours"),
        "{}",
        messages[0].body
    );
    assert_eq!(
        messages[0].idempotency_key,
        format!("{}:ticket_created", t.name)
    );
    assert_eq!(
        count(
            &db.url,
            "SELECT COUNT(*) FROM events WHERE kind = 'ticket_created'"
        )
        .await,
        2
    );
    server.stop().await;
}

/// Without a ROUTING script, tickets go to the first team and to its active agent with the
/// fewest open tickets.
async fn default_routing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = Clock::manual(utc(2026, 11, 24, 8, 0));
    let server = Desk::start(&db.url, &clock).await;
    let mut c = server.desk();
    let first = team(&mut c, "Front").await;
    let second = team(&mut c, "Back").await;
    let a = agent(&mut c, "a@desk.example.com", &[&first]).await;
    let b = agent(&mut c, "b@desk.example.com", &[&first, &second]).await;
    let idle = agent(&mut c, "c@desk.example.com", &[&first]).await;
    c.update_agent(proto::UpdateAgentRequest {
        agent: Some(proto::Agent {
            name: idle.clone(),
            active: false,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["active".into()],
        }),
    })
    .await
    .unwrap();
    let mut assignees = Vec::new();
    for i in 0..3 {
        let t = c
            .create_ticket(complaint(&format!("p{i}@example.com")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(t.team, first);
        assignees.push(t.assignee);
    }
    assert_eq!(assignees, vec![a.clone(), b.clone(), a.clone()]);
    let listed = c
        .list_tickets(proto::ListTicketsRequest {
            filter: format!("assignee = \"{a}\" AND state = NEW"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(listed.len(), 2);
    server.stop().await;
}

/// With a ROUTING script, `route(ticket, customer)` picks the team and priority (and the
/// topic it fills in); the least busy active agent of that team gets the ticket; the newest
/// ROUTING script is the one that runs; what the script leaves open routes by default.
async fn routing_script(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = Clock::manual(utc(2026, 11, 24, 8, 0));
    let server = Desk::start(&db.url, &clock).await;
    let mut c = server.desk();
    let front = team(&mut c, "Front").await;
    let billing = team(&mut c, "Billing").await;
    let _f = agent(&mut c, "f@desk.example.com", &[&front]).await;
    let b1 = agent(&mut c, "b1@desk.example.com", &[&billing]).await;
    let b2 = agent(&mut c, "b2@desk.example.com", &[&billing]).await;
    let mut scripts = ScriptServiceClient::new(server.channel.clone());
    let script = |source: String| proto::CreateScriptRequest {
        script: Some(proto::Script {
            display_name: "routing".into(),
            kind: proto::ScriptKind::Routing as i32,
            source,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    // an older rule that would send everything to Front at LOW: the newest one wins
    scripts
        .create_script(script(format!(
            "fn route(ticket, customer) {{ #{{ team: \"{front}\", priority: \"LOW\" }} }}"
        )))
        .await
        .expect("create script");
    scripts
        .create_script(script(format!(
            "fn route(ticket, customer) {{\n\
             if ticket.mentions(\"invoice\") {{\n\
             return #{{ team: \"{billing}\", priority: \"HIGH\", topic: \"billing\" }};\n\
             }}\n\
             ()\n}}"
        )))
        .await
        .expect("create script");
    let billing_ticket = |i: usize| proto::CreateTicketRequest {
        ticket: Some(proto::Ticket {
            subject: format!("Wrong invoice #{i}"),
            topic: String::new(),
            ..complaint(&format!("r{i}@example.com")).ticket.unwrap()
        }),
        request_id: String::new(),
    };
    let t1 = c
        .create_ticket(billing_ticket(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t1.team, billing);
    assert_eq!(t1.priority, TicketPriority::High as i32);
    assert_eq!(t1.topic, "billing");
    assert_eq!(t1.assignee, b1);
    let t2 = c
        .create_ticket(billing_ticket(2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t2.assignee, b2, "the least busy agent of the team");
    // what the caller sets wins over the script
    let mut explicit = billing_ticket(3);
    explicit.ticket.as_mut().unwrap().priority = TicketPriority::Low as i32;
    let t3 = c.create_ticket(explicit).await.unwrap().into_inner();
    assert_eq!(t3.priority, TicketPriority::Low as i32);
    assert_eq!(t3.team, billing);
    // the script returns () for other tickets: the default team
    let other = c
        .create_ticket(complaint("s@example.com"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.team, front);
    assert_eq!(other.priority, TicketPriority::Normal as i32);
    server.stop().await;
}

/// The example `scripts/route_vip_complaints.rhai` sends a complaint from the top tier of the
/// pyramid to the senior team (`teams/2`) at HIGH: the ticket carries the customer's tier rank
/// (1 at the top) once scores are computed. Every customer here spent under the script's
/// fallback threshold, so only the rank can route them.
async fn routing_by_pyramid_tier(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = Clock::manual(utc(2026, 11, 24, 8, 0));
    let server = Desk::start(&db.url, &clock).await;
    let mut c = server.desk();
    let front = team(&mut c, "Front").await;
    let senior = team(&mut c, "Senior").await;
    assert_eq!(senior, "teams/2", "the example script names teams/2");
    agent(&mut c, "f@desk.example.com", &[&front]).await;
    agent(&mut c, "s@desk.example.com", &[&senior]).await;
    let mut customers = CustomerServiceClient::new(server.channel.clone());
    for i in 1..=20 {
        let created = customers
            .create_customer(proto::CreateCustomerRequest {
                customer: Some(proto::Customer {
                    display_name: format!("Customer {i}"),
                    email: format!("c{i}@example.com"),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create customer")
            .into_inner();
        customers
            .record_order(proto::RecordOrderRequest {
                parent: created.name,
                order: Some(proto::Order {
                    order_id: format!("O-{i}"),
                    currency: "TRY".into(),
                    lines: vec![proto::OrderLine {
                        sku: "SKU-1".into(),
                        category: "tea".into(),
                        quantity: 1,
                        unit_price: 100.0 * i as f64,
                    }],
                    ..Default::default()
                }),
            })
            .await
            .expect("record order");
    }
    // a pyramid of two tiers: the top 10 % (two of the twenty) and the rest
    let mut segments = SegmentServiceClient::new(server.channel.clone());
    segments
        .set_value_model(proto::SetValueModelRequest {
            value_model: Some(proto::ValueModel {
                weights: [("monetary".to_string(), 1.0)].into(),
                tiers: vec![
                    proto::ValueTier {
                        display_name: "Top".into(),
                        percent: 10.0,
                    },
                    proto::ValueTier {
                        display_name: "Rest".into(),
                        percent: 90.0,
                    },
                ],
                ..Default::default()
            }),
        })
        .await
        .expect("set value model");
    segments
        .compute_scores(proto::ComputeScoresRequest {})
        .await
        .expect("compute scores");
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/route_vip_complaints.rhai"
    ))
    .expect("example script");
    ScriptServiceClient::new(server.channel.clone())
        .create_script(proto::CreateScriptRequest {
            script: Some(proto::Script {
                display_name: "VIP complaints".into(),
                kind: proto::ScriptKind::Routing as i32,
                source,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create script");
    // c20 spent most: the top tier
    let top = c
        .create_ticket(complaint("c20@example.com"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top.team, senior);
    assert_eq!(top.priority, TicketPriority::High as i32);
    let low = c
        .create_ticket(complaint("c1@example.com"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(low.team, front);
    assert_eq!(low.priority, TicketPriority::Normal as i32);
    server.stop().await;
}

/// A configured MESSAGE script writes the desk's messages: it sees the customer and the
/// ticket in the event; `()` sends nothing.
async fn message_script_writes_the_acknowledgement(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = Clock::manual(utc(2026, 11, 24, 8, 0));
    let server = Desk::start_with(&db.url, &clock, Some("scripts/1")).await;
    let mut c = server.desk();
    let source = "fn message(c, event) {\n\
        if event.kind != \"ticket_created\" { return (); }\n\
        message(\"email\", `Ticket ${event.field(\"number\")}: ${event.field(\"subject\")}`,\n\
        `Dear ${c.email}, we answer ${event.field(\"promise\")}.`)\n}";
    let script = ScriptServiceClient::new(server.channel.clone())
        .create_script(proto::CreateScriptRequest {
            script: Some(proto::Script {
                display_name: "desk messages".into(),
                kind: proto::ScriptKind::Message as i32,
                source: source.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create script")
        .into_inner();
    assert_eq!(script.name, "scripts/1");
    policy(&mut c, 4 * 3600, 24 * 3600, None, 0.0).await;
    let t = c
        .create_ticket(complaint("deniz@example.com"))
        .await
        .unwrap()
        .into_inner();
    c.resolve_ticket(proto::ResolveTicketRequest {
        name: t.name.clone(),
        resolution: "Sent a new one.".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let messages = CampaignServiceClient::new(server.channel.clone())
        .list_messages(proto::ListMessagesRequest {
            parent: t.customer.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(messages.len(), 1, "the script sends nothing on resolution");
    let number = t.name.trim_start_matches("tickets/");
    assert_eq!(
        messages[0].subject,
        format!("Ticket {number}: My parcel arrived broken")
    );
    assert!(
        messages[0]
            .body
            .starts_with("Dear deniz@example.com, we answer within 4 hours"),
        "{}",
        messages[0].body
    );
    server.stop().await;
}

/// Bad input is refused precisely and leaves nothing behind.
async fn bad_input(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = Clock::manual(utc(2026, 11, 24, 8, 0));
    let server = Desk::start(&db.url, &clock).await;
    let mut c = server.desk();

    // unknown customer, team and agent: NOT_FOUND naming them, and no ticket, customer or
    // message written
    let mut req = complaint("x@example.com");
    req.ticket.as_mut().unwrap().team = "teams/99".into();
    let e = c.create_ticket(req).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("teams/99"));
    let mut req = complaint("");
    req.ticket.as_mut().unwrap().customer = "customers/42".into();
    let e = c.create_ticket(req).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("customers/42"));
    assert_eq!(count(&db.url, "SELECT COUNT(*) FROM tickets").await, 0);
    assert_eq!(count(&db.url, "SELECT COUNT(*) FROM customers").await, 0);
    assert_eq!(
        count(&db.url, "SELECT COUNT(*) FROM outbox_messages").await,
        0
    );

    // malformed fields, all reported
    let e = c
        .create_ticket(proto::CreateTicketRequest {
            ticket: Some(proto::Ticket {
                contact_email: "not-an-email".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let v = violations(&e);
    for f in [
        "ticket.kind",
        "ticket.channel",
        "ticket.subject",
        "ticket.contact_email",
    ] {
        assert!(v.contains(&f.to_string()), "{f} in {v:?}");
    }

    // durations and business hours
    let e = c
        .create_sla_policy(proto::CreateSlaPolicyRequest {
            sla_policy: Some(proto::SlaPolicy {
                display_name: "bad".into(),
                first_response_within: dur(-5),
                resolve_within: None,
                business_hours: Some(proto::BusinessHours {
                    time_zone: "Mars/Olympus".into(),
                    week_days: vec![0, 3],
                    open: "9am".into(),
                    close: "18:00".into(),
                    holidays: vec!["2026-02-30".into()],
                }),
                at_risk_fraction: 1.5,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let v = violations(&e);
    for f in [
        "sla_policy.first_response_within",
        "sla_policy.resolve_within",
        "sla_policy.business_hours.time_zone",
        "sla_policy.business_hours.week_days[0]",
        "sla_policy.business_hours.open",
        "sla_policy.at_risk_fraction",
    ] {
        assert!(v.contains(&f.to_string()), "{f} in {v:?}");
    }
    assert!(
        v.iter()
            .any(|f| f.starts_with("sla_policy.business_hours.holidays")),
        "{v:?}"
    );

    // scores and states
    let t = c
        .create_ticket(complaint("y@example.com"))
        .await
        .unwrap()
        .into_inner();
    let rate = |score: i32| proto::RateTicketRequest {
        name: t.name.clone(),
        score,
        comment: String::new(),
    };
    let e = c.rate_ticket(rate(6)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violations(&e), vec!["score".to_string()]);
    let e = c.rate_ticket(rate(4)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("NEW"), "{}", e.message());
    let e = c
        .resolve_ticket(proto::ResolveTicketRequest {
            name: t.name.clone(),
            resolution: "done".into(),
            article: "articles/77".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let still = c
        .get_ticket(proto::GetTicketRequest {
            name: t.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.state, TicketState::New as i32, "nothing half-written");
    set_state(&mut c, &t.name, TicketState::Closed)
        .await
        .unwrap();
    let e = set_state(&mut c, &t.name, TicketState::Open)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("CLOSED"), "{}", e.message());
    c.rate_ticket(rate(5)).await.expect("rate once closed");
    let e = c.rate_ticket(rate(3)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = c
        .reopen_ticket(proto::ReopenTicketRequest {
            name: t.name.clone(),
            reason: "again".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    server.stop().await;
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if std::env::var("BAKKAL_TEST_POSTGRES_URL").is_err() {
                        eprintln!("BAKKAL_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
                        return;
                    }
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

both!(
    business_hours_clocks,
    first_public_comment_is_the_first_response,
    sla_events_queued_once,
    unknown_contact_becomes_a_prospect,
    default_routing,
    routing_script,
    routing_by_pyramid_tier,
    message_script_writes_the_acknowledgement,
    bad_input,
);
