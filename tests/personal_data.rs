//! A person's own data through the public API, on SQLite and PostgreSQL: consent history after
//! grant, withdrawal and re-grant (and the events customer writes and imports record); an
//! export that holds every kind of record the person has; erasure across every table, after
//! which the export says only that the record was erased and when; the erased email gone from
//! the SQLite file; the export's permission and its audit event.

mod common;

use bakkal::proto;
use bakkal::proto::audit_service_client::AuditServiceClient;
use bakkal::proto::loyalty_service_client::LoyaltyServiceClient;
use bakkal::proto::personal_data_service_client::PersonalDataServiceClient;
use bakkal::proto::sales_service_client::SalesServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{ConsentSource, MessageChannel};
use common::{count, keyed, secured, service_key, wait_for, Backend, TestDb, TestServer};
use prost_types::{FieldMask, Timestamp};
use serde_json::Value;
use tonic::transport::Channel;
use tonic::Code;

fn pd(server: &TestServer) -> PersonalDataServiceClient<Channel> {
    PersonalDataServiceClient::new(server.channel.clone())
}

fn id_of(name: &str) -> i64 {
    name.trim_start_matches("customers/")
        .parse()
        .expect("customer id")
}

async fn create(server: &TestServer, c: proto::Customer) -> proto::Customer {
    server
        .customers()
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(c),
            request_id: String::new(),
        })
        .await
        .expect("create customer")
        .into_inner()
}

fn granted() -> Option<proto::Consent> {
    Some(proto::Consent {
        granted: true,
        update_time: None,
    })
}

fn decision(channel: MessageChannel, granted: bool, source: ConsentSource) -> proto::ConsentEvent {
    proto::ConsentEvent {
        channel: channel as i32,
        granted,
        source: source as i32,
        ..Default::default()
    }
}

async fn record(
    server: &TestServer,
    parent: &str,
    e: proto::ConsentEvent,
    request_id: &str,
) -> Result<proto::ConsentEvent, tonic::Status> {
    pd(server)
        .create_consent_event(proto::CreateConsentEventRequest {
            parent: parent.into(),
            consent_event: Some(e),
            request_id: request_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Every consent event of `parent`, through pages of `page_size`.
async fn history(server: &TestServer, parent: &str, page_size: i32) -> Vec<proto::ConsentEvent> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = pd(server)
            .list_consent_events(proto::ListConsentEventsRequest {
                parent: parent.into(),
                page_size,
                page_token: token,
            })
            .await
            .expect("list consent events")
            .into_inner();
        assert!(page.consent_events.len() <= page_size as usize);
        out.extend(page.consent_events);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn email_consent(server: &TestServer, name: &str) -> bool {
    server
        .customers()
        .get_customer(proto::GetCustomerRequest { name: name.into() })
        .await
        .expect("get customer")
        .into_inner()
        .consent
        .and_then(|c| c.email)
        .is_some_and(|c| c.granted)
}

/// The export of `name`: every chunk's text, concatenated and parsed, and how many chunks.
async fn export(
    client: &mut PersonalDataServiceClient<Channel>,
    req: tonic::Request<proto::ExportCustomerDataRequest>,
) -> Result<(Value, usize), tonic::Status> {
    let mut stream = client.export_customer_data(req).await?.into_inner();
    let mut text = String::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.message().await? {
        text.push_str(&chunk.json);
        chunks += 1;
    }
    let doc = serde_json::from_str(&text).expect("the chunks make one JSON document");
    Ok((doc, chunks))
}

async fn export_of(server: &TestServer, name: &str) -> (Value, usize) {
    export(
        &mut pd(server),
        tonic::Request::new(proto::ExportCustomerDataRequest { name: name.into() }),
    )
    .await
    .expect("export customer data")
}

fn len(doc: &Value, key: &str) -> usize {
    doc[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is a list"))
        .len()
}

// ---- tests ---------------------------------------------------------------------------------

/// Grant on create, withdrawal, re-grant, a back-dated withdrawal that changes nothing: the
/// history has them all, in order, with their provenance, and the current consent is the
/// latest decision.
async fn consent_history_after_grant_withdrawal_and_regrant(server: &TestServer) {
    let c = create(
        server,
        proto::Customer {
            display_name: "Ayşe Kaya".into(),
            email: "ayse.consent@example.com".into(),
            consent: Some(proto::ChannelConsents {
                email: granted(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(email_consent(server, &c.name).await);

    let withdrawn = record(
        server,
        &c.name,
        proto::ConsentEvent {
            terms: "newsletter-terms-v2".into(),
            ip_address: "203.0.113.7".into(),
            user_agent: "Mozilla/5.0 (preference centre)".into(),
            ..decision(MessageChannel::Email, false, ConsentSource::WebForm)
        },
        "withdraw-1",
    )
    .await
    .expect("withdraw");
    assert!(withdrawn
        .name
        .starts_with(&format!("{}/consentEvents/", c.name)));
    assert!(!withdrawn.actor.is_empty(), "the recording principal");
    assert!(!email_consent(server, &c.name).await, "withdrawn");

    // a retry returns the first event and records nothing more
    let again = record(
        server,
        &c.name,
        decision(MessageChannel::Email, false, ConsentSource::WebForm),
        "withdraw-1",
    )
    .await
    .expect("retry");
    assert_eq!(again.name, withdrawn.name);

    let regranted = record(
        server,
        &c.name,
        proto::ConsentEvent {
            terms: "newsletter-terms-v3".into(),
            ..decision(MessageChannel::Email, true, ConsentSource::EmailLink)
        },
        "",
    )
    .await
    .expect("re-grant");
    assert!(email_consent(server, &c.name).await, "granted again");

    // decided before the re-grant, recorded after it: history, not the current decision
    let old = regranted.event_time.expect("event time");
    let back_dated = record(
        server,
        &c.name,
        proto::ConsentEvent {
            event_time: Some(Timestamp {
                seconds: old.seconds - 3600,
                nanos: 0,
            }),
            ..decision(MessageChannel::Email, false, ConsentSource::InStore)
        },
        "",
    )
    .await
    .expect("back-dated");
    assert!(
        email_consent(server, &c.name).await,
        "the latest decision wins"
    );

    // a customer write that changes consent records its own event
    server
        .customers()
        .update_customer(proto::UpdateCustomerRequest {
            customer: Some(proto::Customer {
                name: c.name.clone(),
                consent: Some(proto::ChannelConsents {
                    sms: granted(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["consent.sms".into()],
            }),
        })
        .await
        .expect("update consent");

    let events = history(server, &c.name, 2).await;
    let seen: Vec<(i32, bool, i32)> = events
        .iter()
        .map(|e| (e.channel, e.granted, e.source))
        .collect();
    let email = MessageChannel::Email as i32;
    assert_eq!(
        seen,
        vec![
            (email, true, ConsentSource::Api as i32),
            (email, false, ConsentSource::WebForm as i32),
            (email, true, ConsentSource::EmailLink as i32),
            (email, false, ConsentSource::InStore as i32),
            (MessageChannel::Sms as i32, true, ConsentSource::Api as i32),
        ]
    );
    assert_eq!(events[1].name, withdrawn.name);
    assert_eq!(events[1].terms, "newsletter-terms-v2");
    assert_eq!(events[1].ip_address, "203.0.113.7");
    assert_eq!(events[1].user_agent, "Mozilla/5.0 (preference centre)");
    assert_eq!(events[2].terms, "newsletter-terms-v3");
    assert_eq!(events[3].name, back_dated.name);
    assert!(events.iter().all(|e| !e.actor.is_empty()));

    // checked at the edge
    for (bad, field) in [
        (
            decision(MessageChannel::Unspecified, true, ConsentSource::Api),
            "consent_event.channel",
        ),
        (
            decision(MessageChannel::Email, true, ConsentSource::Merge),
            "consent_event.source",
        ),
        (
            proto::ConsentEvent {
                ip_address: "somewhere".into(),
                ..decision(MessageChannel::Email, true, ConsentSource::Api)
            },
            "consent_event.ip_address",
        ),
        (
            proto::ConsentEvent {
                event_time: Some(Timestamp {
                    seconds: old.seconds + 86_400 * 365,
                    nanos: 0,
                }),
                ..decision(MessageChannel::Email, true, ConsentSource::Api)
            },
            "consent_event.event_time",
        ),
    ] {
        let err = record(server, &c.name, bad, "").await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let err = record(
        server,
        "customers/999999",
        decision(MessageChannel::Email, true, ConsentSource::Api),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(history(server, &c.name, 50).await.len(), 5, "nothing more");
}

/// An import's new customers and its updates record their decisions as IMPORT events.
async fn imports_record_consent_events(server: &TestServer) {
    // `withdraw_at`: the time of a withdrawal the source system recorded
    let rows = |withdraw_at: Option<i64>| {
        let withdraw = withdraw_at.is_some();
        let mut rows = vec![proto::ImportCustomersRequest {
            row: Some(proto::import_customers_request::Row::Customer(
                proto::Customer {
                    display_name: "Can".into(),
                    email: "can.import@example.com".into(),
                    consent: Some(proto::ChannelConsents {
                        sms: Some(proto::Consent {
                            granted: !withdraw,
                            update_time: withdraw_at.map(|seconds| Timestamp { seconds, nanos: 0 }),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )),
        }];
        if !withdraw {
            rows.push(proto::ImportCustomersRequest {
                row: Some(proto::import_customers_request::Row::Customer(
                    proto::Customer {
                        display_name: "No consent".into(),
                        email: "none.import@example.com".into(),
                        ..Default::default()
                    },
                )),
            });
        }
        rows
    };
    let first = server
        .customers()
        .import_customers(tokio_stream::iter(rows(None)))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(first.created, 2);
    let found = server
        .customers()
        .list_customers(proto::ListCustomersRequest {
            filter: "email = \"can.import@example.com\"".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .customers;
    let can = &found[0].name;
    let events = history(server, can, 50).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].source, ConsentSource::Import as i32);
    assert_eq!(events[0].channel, MessageChannel::Sms as i32);
    assert!(events[0].granted);

    // a second later than the grant, so it is the current decision
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let just_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let second = server
        .customers()
        .import_customers(tokio_stream::iter(rows(Some(just_now))))
        .await
        .expect("import again")
        .into_inner();
    assert_eq!(second.updated, 1);
    let events = history(server, can, 50).await;
    assert_eq!(events.len(), 2);
    assert!(!events[1].granted);
    assert_eq!(events[1].source, ConsentSource::Import as i32);
    assert_eq!(events[1].event_time.map(|t| t.seconds), Some(just_now));
    let now_sms = server
        .customers()
        .get_customer(proto::GetCustomerRequest { name: can.clone() })
        .await
        .expect("get")
        .into_inner()
        .consent
        .and_then(|c| c.sms)
        .expect("sms consent");
    assert!(!now_sms.granted, "the import's withdrawal is current");
    assert_eq!(
        count(
            &server.db_url,
            "SELECT COUNT(*) FROM consent_events e JOIN customers c ON c.id = e.customer_id \
             WHERE c.email = 'none.import@example.com'"
        )
        .await,
        0,
        "no decision, no event"
    );
}

/// A customer with one of everything: orders, an interaction, a ticket with a comment and its
/// acknowledgement message, loyalty points, a score and tier, a segment membership and
/// consent events. Returns the customer's name.
async fn everything(server: &TestServer, email: &str, phone: &str) -> String {
    let c = create(
        server,
        proto::Customer {
            display_name: "Elif Demir".into(),
            email: email.into(),
            phone: phone.into(),
            city: "İzmir".into(),
            tags: vec!["vip".into()],
            consent: Some(proto::ChannelConsents {
                email: granted(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    LoyaltyServiceClient::new(server.channel.clone())
        .update_loyalty_program(proto::UpdateLoyaltyProgramRequest {
            program: Some(proto::LoyaltyProgram {
                points_per_unit: 1.0,
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .expect("loyalty program");
    for (i, price) in [120.0, 80.0].into_iter().enumerate() {
        server
            .customers()
            .record_order(proto::RecordOrderRequest {
                parent: c.name.clone(),
                order: Some(proto::Order {
                    order_id: format!("order-{}-{i}", phone.trim_start_matches('+')),
                    currency: "TRY".into(),
                    lines: vec![proto::OrderLine {
                        sku: "vase-1".into(),
                        category: "home".into(),
                        quantity: 1,
                        unit_price: price,
                    }],
                    ..Default::default()
                }),
            })
            .await
            .expect("record order");
    }
    server
        .customers()
        .record_interaction(proto::RecordInteractionRequest {
            parent: c.name.clone(),
            interaction: Some(proto::Interaction {
                channel: proto::InteractionChannel::Phone as i32,
                direction: proto::Direction::Inbound as i32,
                kind: "enquiry".into(),
                subject: "Opening hours".into(),
                body: format!("Called from the number on file; write back to {email}"),
                ..Default::default()
            }),
        })
        .await
        .expect("record interaction");
    let ticket = server
        .desk()
        .create_ticket(proto::CreateTicketRequest {
            ticket: Some(proto::Ticket {
                contact_email: email.into(),
                kind: proto::TicketKind::Complaint as i32,
                channel: proto::InteractionChannel::Email as i32,
                subject: "My parcel arrived broken".into(),
                description: format!("The vase was in pieces. Reply to {email}"),
                topic: "delivery".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create ticket")
        .into_inner();
    server
        .desk()
        .add_ticket_comment(proto::AddTicketCommentRequest {
            parent: ticket.name.clone(),
            comment: Some(proto::TicketComment {
                body: "It was a gift, please hurry".into(),
                public: true,
                ..Default::default()
            }),
        })
        .await
        .expect("comment");
    let mut segments = SegmentServiceClient::new(server.channel.clone());
    segments
        .compute_scores(proto::ComputeScoresRequest {})
        .await
        .expect("compute scores");
    let everyone = common::create_segment(server, "fn matches(c) { true }").await;
    common::refresh_segment(server, &everyone)
        .await
        .expect("refresh segment");
    record(
        server,
        &c.name,
        proto::ConsentEvent {
            terms: "sms-terms-v1".into(),
            ip_address: "198.51.100.23".into(),
            user_agent: "BakkalApp/2.1".into(),
            ..decision(MessageChannel::Sms, true, ConsentSource::WebForm)
        },
        "",
    )
    .await
    .expect("sms consent");
    // a deal with the person, with what the rep noted about them
    let mut sales = SalesServiceClient::new(server.channel.clone());
    let pipeline = sales
        .create_pipeline(proto::CreatePipelineRequest {
            pipeline: Some(proto::Pipeline {
                display_name: "Retail".into(),
                stages: vec![proto::PipelineStage {
                    display_name: "Qualify".into(),
                    probability: 10,
                    forecast_category: proto::ForecastCategory::Pipeline as i32,
                    outcome: proto::StageOutcome::Open as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await
        .expect("pipeline")
        .into_inner();
    sales
        .create_opportunity(proto::CreateOpportunityRequest {
            opportunity: Some(proto::Opportunity {
                display_name: "Elif's wedding list".into(),
                customer: c.name.clone(),
                pipeline: pipeline.name.clone(),
                stage: pipeline.stages[0].name.clone(),
                amount_minor: 250_000,
                currency_code: "TRY".into(),
                next_step: "Call Elif about the vases".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("opportunity");
    let id = id_of(&c.name);
    // the ticket's acknowledgement is queued by the desk's event processing
    wait_for(
        &server.db_url,
        &format!(
            "SELECT COUNT(*) FROM outbox_messages WHERE customer_id = {id} \
             OR ticket_id IN (SELECT id FROM tickets WHERE customer_id = {id})"
        ),
        1,
    )
    .await;
    c.name
}

/// The export holds every kind of record the customer has, and each section its rows.
async fn export_holds_every_kind_of_record(server: &TestServer) {
    let email = "elif.export@example.com";
    let name = everything(server, email, "+905321112233").await;
    let (doc, chunks) = export_of(server, &name).await;
    assert!(chunks >= 1);
    assert_eq!(doc["name"], name.as_str());
    assert_eq!(doc["erased"], false);
    assert!(doc["export_time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let customer = &doc["customer"];
    assert_eq!(customer["email"], email);
    assert_eq!(customer["phone"], "+905321112233");
    assert_eq!(customer["city"], "İzmir");
    assert_eq!(customer["tags"], serde_json::json!(["vip"]));
    assert_eq!(customer["order_count"], 2);
    assert_eq!(len(&doc, "orders"), 2);
    assert_eq!(
        doc["orders"][0]["lines"][0]["sku"], "vase-1",
        "lines as JSON"
    );
    // the phone call, and what the desk recorded on the timeline for the ticket
    let interactions = doc["interactions"].as_array().expect("interactions");
    assert!(interactions.iter().any(|i| i["subject"] == "Opening hours"));
    let timeline = interactions.len();
    assert_eq!(len(&doc, "tickets"), 1);
    assert_eq!(doc["tickets"][0]["subject"], "My parcel arrived broken");
    assert_eq!(len(&doc, "ticket_comments"), 1);
    assert_eq!(
        doc["ticket_comments"][0]["body"],
        "It was a gift, please hurry"
    );
    assert!(len(&doc, "messages") >= 1, "the ticket's acknowledgement");
    assert_eq!(doc["loyalty_account"]["balance"], 200);
    assert_eq!(len(&doc, "loyalty_ledger"), 2);
    assert!(doc["score"]["tier"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(len(&doc, "segment_memberships"), 1);
    let consent = doc["consent_events"].as_array().expect("consent events");
    assert_eq!(consent.len(), 2, "the grant on create and the SMS grant");
    assert_eq!(consent[1]["source"], "WEB_FORM");
    assert_eq!(consent[1]["ip_address"], "198.51.100.23");
    assert_eq!(consent[1]["terms"], "sms-terms-v1");
    assert!(
        consent[1]["event_time"].as_str().is_some(),
        "times in RFC 3339"
    );
    assert!(len(&doc, "events") >= 1, "tier and segment events");
    assert_eq!(len(&doc, "opportunities"), 1);
    assert_eq!(
        doc["opportunities"][0]["next_step"],
        "Call Elif about the vases"
    );
    assert_eq!(doc["opportunities"][0]["amount"], 250_000);

    // a long history comes in several chunks that still make one document
    for i in 0..120 {
        server
            .customers()
            .record_interaction(proto::RecordInteractionRequest {
                parent: name.clone(),
                interaction: Some(proto::Interaction {
                    channel: proto::InteractionChannel::Email as i32,
                    direction: proto::Direction::Outbound as i32,
                    subject: format!("note {i}"),
                    body: "x".repeat(1000),
                    ..Default::default()
                }),
            })
            .await
            .expect("record interaction");
    }
    let (doc, chunks) = export_of(server, &name).await;
    assert!(chunks >= 2, "{chunks} chunk(s) for ~120 KB");
    assert_eq!(len(&doc, "interactions"), timeline + 120);

    let err = export(
        &mut pd(server),
        tonic::Request::new(proto::ExportCustomerDataRequest {
            name: "customers/999999".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// DeleteCustomer erases the person from every table in one go; the export then says only
/// that the record was erased and when; the consent decisions stay without their text.
async fn erasure_reaches_every_table(server: &TestServer) {
    let email = "elif.erase@example.com";
    let name = everything(server, email, "+905321112233").await;
    let other = everything(server, "bystander@example.com", "+905321112244").await;
    let id = id_of(&name);
    server
        .customers()
        .delete_customer(proto::DeleteCustomerRequest {
            name: name.clone(),
            etag: String::new(),
        })
        .await
        .expect("erase");

    let (doc, _) = export_of(server, &name).await;
    assert_eq!(doc["erased"], true);
    assert!(doc["erase_time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let keys: Vec<&String> = doc.as_object().expect("object").keys().collect();
    assert_eq!(
        keys.len(),
        4,
        "name, export_time, erased, erase_time only: {keys:?}"
    );

    let url = &server.db_url;
    let tickets = format!("(SELECT id FROM tickets WHERE customer_id = {id})");
    for (what, sql) in [
        (
            "interactions",
            format!("SELECT COUNT(*) FROM interactions WHERE customer_id = {id}"),
        ),
        (
            "comments",
            format!("SELECT COUNT(*) FROM ticket_comments WHERE ticket_id IN {tickets}"),
        ),
        (
            "ticket text",
            format!(
                "SELECT COUNT(*) FROM tickets WHERE customer_id = {id} AND \
                 (contact_email <> '' OR description <> '' OR subject <> '(erased)')"
            ),
        ),
        (
            "message text",
            format!(
                "SELECT COUNT(*) FROM outbox_messages WHERE (customer_id = {id} OR ticket_id IN \
                 {tickets}) AND (body <> '' OR subject <> '' OR recipient <> '')"
            ),
        ),
        (
            "ledger",
            format!("SELECT COUNT(*) FROM points_transactions WHERE customer_id = {id}"),
        ),
        (
            "account",
            format!("SELECT COUNT(*) FROM loyalty_accounts WHERE customer_id = {id}"),
        ),
        (
            "score",
            format!("SELECT COUNT(*) FROM customer_scores WHERE customer_id = {id}"),
        ),
        (
            "segments",
            format!("SELECT COUNT(*) FROM segment_members WHERE customer_id = {id}"),
        ),
        (
            "events",
            format!("SELECT COUNT(*) FROM events WHERE customer_id = {id}"),
        ),
        (
            "consent text",
            format!(
                "SELECT COUNT(*) FROM consent_events WHERE customer_id = {id} AND \
                 (terms <> '' OR ip_address <> '' OR user_agent <> '')"
            ),
        ),
        (
            "deal notes",
            format!(
                "SELECT COUNT(*) FROM opportunities WHERE customer_id = {id} AND \
                 (next_step <> '' OR display_name <> '(erased)')"
            ),
        ),
        (
            "customer",
            format!("SELECT COUNT(*) FROM customers WHERE id = {id} AND email IS NOT NULL"),
        ),
    ] {
        assert_eq!(count(url, &sql).await, 0, "{what} left after the erasure");
    }
    assert_eq!(
        count(
            url,
            &format!("SELECT COUNT(*) FROM consent_events WHERE customer_id = {id}")
        )
        .await,
        2,
        "the decisions stay, as proof"
    );
    assert_eq!(
        count(
            url,
            &format!("SELECT COUNT(*) FROM orders WHERE customer_id = {id}")
        )
        .await,
        2,
        "orders stay, anonymous"
    );
    assert_eq!(
        count(
            url,
            &format!(
                "SELECT COUNT(*) FROM opportunities WHERE customer_id = {id} AND amount = 250000"
            )
        )
        .await,
        1,
        "the deal stays for the pipeline's figures"
    );
    let segment_count = count(url, "SELECT MAX(member_count) FROM segments").await;
    assert_eq!(segment_count, 1, "the segment counts one member less");

    // the bystander keeps everything
    let (doc, _) = export_of(server, &other).await;
    assert_eq!(doc["erased"], false);
    assert_eq!(len(&doc, "ticket_comments"), 1);
    assert_eq!(doc["loyalty_account"]["balance"], 200);
    assert_eq!(
        doc["opportunities"][0]["next_step"],
        "Call Elif about the vases"
    );

    // the consent history of an erased customer is gone with them
    let err = pd(server)
        .list_consent_events(proto::ListConsentEventsRequest {
            parent: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// A merge takes the newer decision from the duplicate as a MERGE event, and the survivor's
/// history holds the duplicate's events too.
async fn merges_keep_the_consent_history(server: &TestServer) {
    let primary = create(
        server,
        proto::Customer {
            display_name: "Mert Şahin".into(),
            email: "mert@example.com".into(),
            ..Default::default()
        },
    )
    .await;
    let duplicate = create(
        server,
        proto::Customer {
            display_name: "Mert Şahin".into(),
            phone: "+905321230000".into(),
            ..Default::default()
        },
    )
    .await;
    record(
        server,
        &duplicate.name,
        proto::ConsentEvent {
            terms: "push-v1".into(),
            ..decision(MessageChannel::Push, true, ConsentSource::InStore)
        },
        "",
    )
    .await
    .expect("push consent");
    let merged = server
        .customers()
        .merge_customers(proto::MergeCustomersRequest {
            primary: primary.name.clone(),
            duplicate: duplicate.name.clone(),
        })
        .await
        .expect("merge")
        .into_inner();
    assert!(merged
        .consent
        .and_then(|c| c.push)
        .is_some_and(|p| p.granted));
    let events = history(server, &primary.name, 50).await;
    let sources: Vec<i32> = events.iter().map(|e| e.source).collect();
    assert_eq!(
        sources,
        vec![ConsentSource::InStore as i32, ConsentSource::Merge as i32]
    );
    assert!(
        events[0].name.starts_with(&duplicate.name),
        "the duplicate's own"
    );
    assert!(events[1].name.starts_with(&primary.name));
    // through the duplicate's name too
    assert_eq!(history(server, &duplicate.name, 50).await.len(), 2);
}

/// Campaigns respect only the current consent: a withdrawal recorded as an event suppresses,
/// a re-grant after a withdrawal does not.
async fn campaigns_respect_current_consent(server: &TestServer) {
    let mut names = Vec::new();
    for i in 0..3 {
        let c = create(
            server,
            proto::Customer {
                display_name: format!("Reader {i}"),
                email: format!("reader{i}@example.com"),
                consent: Some(proto::ChannelConsents {
                    email: granted(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await;
        names.push(c.name);
    }
    let withdraw = || decision(MessageChannel::Email, false, ConsentSource::EmailLink);
    record(server, &names[1], withdraw(), "")
        .await
        .expect("withdraw");
    record(server, &names[2], withdraw(), "")
        .await
        .expect("withdraw");
    record(
        server,
        &names[2],
        decision(MessageChannel::Email, true, ConsentSource::WebForm),
        "",
    )
    .await
    .expect("re-grant");

    let everyone = common::create_segment(server, "fn matches(c) { true }").await;
    common::refresh_segment(server, &everyone)
        .await
        .expect("refresh segment");
    let script = common::create_script(
        server,
        proto::ScriptKind::Message,
        "fn message(c, event) { message(\"email\", \"Hello\", \"news\") }",
    )
    .await;
    let campaign = common::campaigns(server)
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "News".into(),
                strategy: proto::CampaignStrategy::Loyalty as i32,
                audience: everyone,
                message_script: script,
                channel: MessageChannel::Email as i32,
                holdout_percent: 0,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create campaign")
        .into_inner();
    let dry = common::campaigns(server)
        .dry_run_campaign(proto::DryRunCampaignRequest {
            name: campaign.name,
            sample_size: 10,
        })
        .await
        .expect("dry run")
        .into_inner();
    let counters = dry.counters.expect("counters");
    assert_eq!(counters.evaluated, 3);
    assert_eq!(counters.suppressed_no_consent, 1, "the one who withdrew");
    assert_eq!(dry.messages.len(), 2);
}

/// Only admin and integration export a person's data; the export is an audited EXPORT event
/// naming the customer.
async fn export_needs_its_permission_and_is_audited(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let c = server
        .customers()
        .create_customer(keyed(
            proto::CreateCustomerRequest {
                customer: Some(proto::Customer {
                    display_name: "Audited".into(),
                    email: "audited@example.com".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
            None,
        ))
        .await
        .expect("create")
        .into_inner();
    let req = |key: &str| {
        keyed(
            proto::ExportCustomerDataRequest {
                name: c.name.clone(),
            },
            key,
            None,
        )
    };
    let (_, _, marketer) = service_key(&server, &admin, "marketer").await;
    let err = export(&mut pd(&server), req(&marketer)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let (integration, _, key) = service_key(&server, &admin, "integration").await;
    let (doc, _) = export(&mut pd(&server), req(&key))
        .await
        .expect("integration exports");
    assert_eq!(doc["customer"]["email"], "audited@example.com");

    // record scope: a sales rep reaches only the customers they own (none here)
    let (_, _, rep) = service_key(&server, &admin, "sales_rep").await;
    let err = pd(&server)
        .list_consent_events(keyed(
            proto::ListConsentEventsRequest {
                parent: c.name.clone(),
                ..Default::default()
            },
            &rep,
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "out of scope reads as absent");
    let err = pd(&server)
        .create_consent_event(keyed(
            proto::CreateConsentEventRequest {
                parent: c.name.clone(),
                consent_event: Some(decision(MessageChannel::Sms, true, ConsentSource::Agent)),
                request_id: String::new(),
            },
            &rep,
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = pd(&server)
        .list_consent_events(keyed(
            proto::ListConsentEventsRequest {
                parent: c.name.clone(),
                ..Default::default()
            },
            &key,
            None,
        ))
        .await
        .expect("integration lists")
        .into_inner();
    assert!(listed.consent_events.is_empty(), "nothing was recorded");

    let events = AuditServiceClient::new(server.channel.clone())
        .list_audit_events(keyed(
            proto::ListAuditEventsRequest {
                principal: integration.clone(),
                method: "bakkal.v1.PersonalDataService/ExportCustomerData".into(),
                page_size: 50,
                ..Default::default()
            },
            &admin,
            None,
        ))
        .await
        .expect("audit events")
        .into_inner()
        .events;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].resource, c.name);
    assert_eq!(events[0].action, proto::AuditAction::Export as i32);
    server.stop().await;
}

/// After an erasure (and a checkpoint of the WAL) the erased email is nowhere in the SQLite
/// file: `secure_delete` zeroes what the erasure freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_email_is_not_in_the_sqlite_file() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let server = TestServer::start_at(&db.url, |_| {}).await;
    let email = "zeynep.forgotten.7f3a@example.com";
    let name = everything(&server, email, "+905329998877").await;
    let path = db
        .url
        .strip_prefix("sqlite://")
        .expect("a sqlite URL")
        .to_string();
    let contains = |bytes: &[u8]| bytes.windows(email.len()).any(|w| w == email.as_bytes());
    checkpoint(&db.url).await;
    assert!(
        contains(&std::fs::read(&path).expect("read the database")),
        "the email is in the file before the erasure (else this test proves nothing)"
    );
    server
        .customers()
        .delete_customer(proto::DeleteCustomerRequest {
            name,
            etag: String::new(),
        })
        .await
        .expect("erase");
    server.stop().await;
    checkpoint(&db.url).await;
    let bytes = std::fs::read(&path).expect("read the database");
    assert!(!contains(&bytes), "the erased email is still in {path}");
    let wal = std::fs::read(format!("{path}-wal")).unwrap_or_default();
    assert!(!contains(&wal), "the erased email is still in the WAL");
}

/// Copy the WAL into the database file and empty it.
async fn checkpoint(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect");
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .expect("checkpoint");
    pool.close().await;
}

on_both_backends!(
    consent_history_after_grant_withdrawal_and_regrant,
    imports_record_consent_events,
    export_holds_every_kind_of_record,
    erasure_reaches_every_table,
    campaigns_respect_current_consent,
    merges_keep_the_consent_history,
);

mod secured_calls {
    use super::*;
    for_each_backend!(export_needs_its_permission_and_is_audited);
}
