//! Concurrent writes through the public API, on SQLite and PostgreSQL: an etag serialises
//! writers (exactly one of N writes carrying the same etag succeeds, the others are ABORTED),
//! and idempotent writes racing each other (the same `order_id`, the same `request_id`) all get
//! the idempotent answer, never INTERNAL. Enough calls run at once (≥ 50) to fail on
//! PostgreSQL's READ COMMITTED, where a read-check-write without a row lock loses updates.

mod common;

use std::future::Future;

use bakkal::proto::loyalty_service_client::LoyaltyServiceClient;
use bakkal::proto::script_service_client::ScriptServiceClient;
use bakkal::proto::{self, InteractionChannel, TicketKind};
use common::{campaigns, create_script, TestServer};
use prost_types::{FieldMask, Timestamp};
use tonic::Code;

const N: usize = 50;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// Run `n` calls at once (each on a task of its own) and collect their outcomes.
async fn race<T, F, Fut>(n: usize, call: F) -> Vec<Result<T, tonic::Status>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(call(i))).collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

/// Exactly one success; every other outcome is one of `others`.
fn exactly_one_wins<T>(what: &str, outcomes: &[Result<T, tonic::Status>], others: &[Code]) {
    let ok = outcomes.iter().filter(|r| r.is_ok()).count();
    let bad: Vec<String> = outcomes
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|s| !others.contains(&s.code()))
        .map(|s| format!("{:?}: {}", s.code(), s.message()))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: unexpected answers {bad:?} (expected {others:?})"
    );
    assert_eq!(
        ok,
        1,
        "{what}: {ok} of {} writes with one etag succeeded",
        outcomes.len()
    );
}

async fn new_customer(server: &TestServer, email: &str) -> proto::Customer {
    server
        .customers()
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: "Ayşe".into(),
                email: email.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create customer")
        .into_inner()
}

async fn updates_with_one_etag_let_exactly_one_through(server: &TestServer) {
    let c = new_customer(server, "race@example.com").await;
    let outcomes = race(N, |i| {
        let mut client = server.customers();
        let (name, etag) = (c.name.clone(), c.etag.clone());
        async move {
            client
                .update_customer(proto::UpdateCustomerRequest {
                    customer: Some(proto::Customer {
                        name,
                        etag,
                        city: format!("City {i}"),
                        ..Default::default()
                    }),
                    update_mask: mask(&["city"]),
                })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    exactly_one_wins("UpdateCustomer", &outcomes, &[Code::Aborted]);
    let winner = outcomes.iter().find_map(|r| r.as_ref().ok()).unwrap();
    let stored = server
        .customers()
        .get_customer(proto::GetCustomerRequest {
            name: c.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored.city, winner.city,
        "the one that succeeded is what is stored"
    );

    // deletes: one erases, the others find it changed (or gone)
    let c = new_customer(server, "erase@example.com").await;
    let outcomes = race(N, |_| {
        let mut client = server.customers();
        let (name, etag) = (c.name.clone(), c.etag.clone());
        async move {
            client
                .delete_customer(proto::DeleteCustomerRequest { name, etag })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    exactly_one_wins(
        "DeleteCustomer",
        &outcomes,
        &[Code::Aborted, Code::NotFound],
    );
}

async fn the_same_order_recorded_at_once_is_recorded_once(server: &TestServer) {
    let c = new_customer(server, "orders@example.com").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let outcomes = race(2 * N, |_| {
        let mut client = server.customers();
        let parent = c.name.clone();
        async move {
            client
                .record_order(proto::RecordOrderRequest {
                    parent,
                    order: Some(proto::Order {
                        order_id: "ord-1".into(),
                        currency: "TRY".into(),
                        placed_time: Some(Timestamp {
                            seconds: now - 86_400,
                            nanos: 0,
                        }),
                        lines: vec![proto::OrderLine {
                            sku: "tea".into(),
                            category: "drinks".into(),
                            quantity: 2,
                            unit_price: 10.0,
                        }],
                        ..Default::default()
                    }),
                })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|s| format!("{:?}: {}", s.code(), s.message()))
        .collect();
    assert!(failed.is_empty(), "RecordOrder of one order_id: {failed:?}");
    let stored = server
        .customers()
        .get_customer(proto::GetCustomerRequest {
            name: c.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let value = stored.value.unwrap_or_default();
    assert_eq!(value.order_count, 1, "one order, counted once");
}

async fn creates_with_one_request_id_all_answer_the_first_result(server: &TestServer) {
    let outcomes = race(N, |i| {
        let mut client = server.customers();
        async move {
            client
                .create_customer(proto::CreateCustomerRequest {
                    customer: Some(proto::Customer {
                        display_name: format!("Retry {i}"),
                        email: format!("retry{i}@example.com"),
                        ..Default::default()
                    }),
                    request_id: "one-request".into(),
                })
                .await
                .map(|r| r.into_inner().name)
        }
    })
    .await;
    let names: std::collections::HashSet<String> = outcomes
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|s| panic!("CreateCustomer retry: {:?} {}", s.code(), s.message()))
        })
        .collect();
    assert_eq!(names.len(), 1, "one request id, one customer: {names:?}");
}

async fn script_updates_with_one_etag_let_exactly_one_through(server: &TestServer) {
    let name = create_script(server, proto::ScriptKind::Segment, "fn matches(c) { true }").await;
    let mut scripts = ScriptServiceClient::new(server.channel.clone());
    let s = scripts
        .get_script(proto::GetScriptRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    let outcomes = race(N, |i| {
        let mut client = ScriptServiceClient::new(server.channel.clone());
        let (name, etag) = (s.name.clone(), s.etag.clone());
        async move {
            client
                .update_script(proto::UpdateScriptRequest {
                    script: Some(proto::Script {
                        name,
                        etag,
                        source: format!("fn matches(c) {{ c.order_count > {i} }}"),
                        ..Default::default()
                    }),
                    update_mask: mask(&["source"]),
                })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    exactly_one_wins("UpdateScript", &outcomes, &[Code::Aborted]);
}

async fn desk_and_campaign_updates_with_one_etag_let_exactly_one_through(server: &TestServer) {
    // a ticket
    let mut desk = server.desk();
    let t = desk
        .create_ticket(proto::CreateTicketRequest {
            ticket: Some(proto::Ticket {
                contact_email: "desk@example.com".into(),
                kind: TicketKind::Complaint as i32,
                channel: InteractionChannel::Email as i32,
                subject: "Broken".into(),
                description: "It broke.".into(),
                topic: "delivery".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create ticket")
        .into_inner();
    let outcomes = race(N, |i| {
        let mut client = server.desk();
        let (name, etag) = (t.name.clone(), t.etag.clone());
        async move {
            client
                .update_ticket(proto::UpdateTicketRequest {
                    ticket: Some(proto::Ticket {
                        name,
                        etag,
                        subject: format!("Broken {i}"),
                        ..Default::default()
                    }),
                    update_mask: mask(&["subject"]),
                })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    exactly_one_wins("UpdateTicket", &outcomes, &[Code::Aborted]);

    // a team
    let team = desk
        .create_team(proto::CreateTeamRequest {
            team: Some(proto::Team {
                display_name: "Care".into(),
                email: "care@desk.example.com".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create team")
        .into_inner();
    let outcomes = race(N, |i| {
        let mut client = server.desk();
        let (name, etag) = (team.name.clone(), team.etag.clone());
        async move {
            client
                .update_team(proto::UpdateTeamRequest {
                    team: Some(proto::Team {
                        name,
                        etag,
                        display_name: format!("Care {i}"),
                        ..Default::default()
                    }),
                    update_mask: mask(&["display_name"]),
                })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    exactly_one_wins("UpdateTeam", &outcomes, &[Code::Aborted]);

    // a campaign
    let rule = create_script(server, proto::ScriptKind::Segment, "fn matches(c) { true }").await;
    let message = create_script(
        server,
        proto::ScriptKind::Message,
        r#"fn message(c, event) { message("email", "Hi", "Hello") }"#,
    )
    .await;
    let seg =
        bakkal::proto::segment_service_client::SegmentServiceClient::new(server.channel.clone())
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
    let camp = campaigns(server)
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "Spring".into(),
                strategy: proto::CampaignStrategy::Loyalty as i32,
                audience: seg.name.clone(),
                message_script: message,
                channel: proto::MessageChannel::Email as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create campaign")
        .into_inner();
    let outcomes = race(N, |i| {
        let mut client = campaigns(server);
        let (name, etag) = (camp.name.clone(), camp.etag.clone());
        async move {
            client
                .update_campaign(proto::UpdateCampaignRequest {
                    campaign: Some(proto::Campaign {
                        name,
                        etag,
                        display_name: format!("Spring {i}"),
                        ..Default::default()
                    }),
                    update_mask: mask(&["display_name"]),
                })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    exactly_one_wins("UpdateCampaign", &outcomes, &[Code::Aborted]);
}

async fn loyalty_writes_race_safely(server: &TestServer) {
    let mut loyalty = LoyaltyServiceClient::new(server.channel.clone());
    let p = loyalty
        .get_loyalty_program(proto::GetLoyaltyProgramRequest {
            name: "loyaltyProgram".into(),
        })
        .await
        .expect("program")
        .into_inner();
    let outcomes = race(N, |i| {
        let mut client = LoyaltyServiceClient::new(server.channel.clone());
        let etag = p.etag.clone();
        async move {
            client
                .update_loyalty_program(proto::UpdateLoyaltyProgramRequest {
                    program: Some(proto::LoyaltyProgram {
                        expiry_days: 100 + i as i32,
                        etag,
                        ..Default::default()
                    }),
                    update_mask: mask(&["expiry_days"]),
                })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    exactly_one_wins("UpdateLoyaltyProgram", &outcomes, &[Code::Aborted]);

    // points adjusted with one request id: one transaction, every caller gets it
    let c = new_customer(server, "points@example.com").await;
    let account = format!("{}/loyaltyAccount", c.name);
    let outcomes = race(N, |_| {
        let mut client = LoyaltyServiceClient::new(server.channel.clone());
        let account = account.clone();
        async move {
            client
                .adjust_points(proto::AdjustPointsRequest {
                    account,
                    points: 10,
                    reason: "goodwill".into(),
                    request_id: "adjust-1".into(),
                })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|s| format!("{:?}: {}", s.code(), s.message()))
        .collect();
    assert!(
        failed.is_empty(),
        "AdjustPoints with one request id: {failed:?}"
    );
    let acc = loyalty
        .get_loyalty_account(proto::GetLoyaltyAccountRequest { name: account })
        .await
        .expect("account")
        .into_inner();
    assert_eq!(acc.balance, 10, "one adjustment, applied once");
}

on_both_backends!(
    updates_with_one_etag_let_exactly_one_through,
    the_same_order_recorded_at_once_is_recorded_once,
    creates_with_one_request_id_all_answer_the_first_result,
    script_updates_with_one_etag_let_exactly_one_through,
    desk_and_campaign_updates_with_one_etag_let_exactly_one_through,
    loyalty_writes_race_safely,
);
