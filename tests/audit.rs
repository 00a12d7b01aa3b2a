//! The audit trail through the public API, on SQLite and PostgreSQL: one event per write with
//! its principal, key id, request id, method, resource and changed fields; failed and denied
//! calls; no key secret anywhere in the trail; filters and pages; masking; a watch; a stored
//! event edited behind the server's back found by VerifyAuditChain; 60 parallel writes through
//! two servers on one database that still make one chain.

mod common;

use std::time::Duration;

use bakkal::proto;
use bakkal::proto::audit_service_client::AuditServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::service_desk_service_client::ServiceDeskServiceClient;
use common::{keyed, secured, service_key, Backend, TestServer};
use prost_types::FieldMask;
use tonic::Code;

const CREATE: &str = "bakkal.v1.CustomerService/CreateCustomer";
const UPDATE: &str = "bakkal.v1.CustomerService/UpdateCustomer";

fn audit(server: &TestServer) -> AuditServiceClient<tonic::transport::Channel> {
    AuditServiceClient::new(server.channel.clone())
}

fn customers(server: &TestServer) -> CustomerServiceClient<tonic::transport::Channel> {
    CustomerServiceClient::new(server.channel.clone())
}

fn person(name: &str, email: &str) -> proto::Customer {
    proto::Customer {
        display_name: name.into(),
        email: email.into(),
        ..Default::default()
    }
}

async fn create(
    server: &TestServer,
    key: &str,
    rid: Option<&str>,
    c: proto::Customer,
) -> proto::Customer {
    customers(server)
        .create_customer(keyed(
            proto::CreateCustomerRequest {
                customer: Some(c),
                request_id: String::new(),
            },
            key,
            rid,
        ))
        .await
        .expect("create customer")
        .into_inner()
}

/// Every event matching the request's filter (all pages), read with `key`.
async fn events(
    server: &TestServer,
    key: &str,
    filter: proto::ListAuditEventsRequest,
) -> Vec<proto::AuditEvent> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = audit(server)
            .list_audit_events(keyed(
                proto::ListAuditEventsRequest {
                    page_token: token.clone(),
                    ..filter.clone()
                },
                key,
                None,
            ))
            .await
            .expect("list audit events")
            .into_inner();
        out.extend(page.events);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

fn of_resource(resource: &str) -> proto::ListAuditEventsRequest {
    proto::ListAuditEventsRequest {
        resource: resource.into(),
        ..Default::default()
    }
}

fn change<'a>(e: &'a proto::AuditEvent, field: &str) -> &'a proto::FieldChange {
    e.changes
        .iter()
        .find(|c| c.field == field)
        .unwrap_or_else(|| panic!("no change of {field} in {e:?}"))
}

async fn verify(server: &TestServer, key: &str) -> proto::VerifyAuditChainResponse {
    audit(server)
        .verify_audit_chain(keyed(proto::VerifyAuditChainRequest::default(), key, None))
        .await
        .expect("verify")
        .into_inner()
}

async fn writes_are_audited_once_with_who_and_what(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let (account, key_id, key) = service_key(&server, &admin, "integration").await;

    // CreateCustomer: one event, in the write's transaction, with the fields it set
    let c = create(
        &server,
        &key,
        Some("req-create-1"),
        person("Ayşe Yılmaz", "ayse@example.com"),
    )
    .await;
    let evs = events(&server, &admin, of_resource(&c.name)).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    let e = &evs[0];
    assert_eq!(e.principal, account);
    assert_eq!(e.key_id, key_id);
    assert_eq!(e.request_id, "req-create-1");
    assert_eq!(e.method, CREATE);
    assert_eq!(e.action, proto::AuditAction::Create as i32);
    assert_eq!(e.result, proto::AuditResult::Ok as i32);
    assert_eq!(e.code, "OK");
    assert!(e.peer.starts_with("127.0.0.1:"), "peer {:?}", e.peer);
    assert_eq!(
        change(e, "email").after.as_deref(),
        Some("ayse@example.com")
    );
    assert_eq!(change(e, "email").before, None);
    assert_eq!(
        change(e, "display_name").after.as_deref(),
        Some("Ayşe Yılmaz")
    );

    // UpdateCustomer: one event with the changed field's before and after, nothing else
    let updated = customers(&server)
        .update_customer(keyed(
            proto::UpdateCustomerRequest {
                customer: Some(proto::Customer {
                    name: c.name.clone(),
                    region: "Ege".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["region".into()],
                }),
            },
            &key,
            Some("req-update-1"),
        ))
        .await
        .expect("update")
        .into_inner();
    let evs = events(&server, &admin, of_resource(&c.name)).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    let e = &evs[1];
    assert_eq!(e.method, UPDATE);
    assert_eq!(e.request_id, "req-update-1");
    assert_eq!(e.action, proto::AuditAction::Update as i32);
    assert_eq!(e.changes.len(), 1, "{:?}", e.changes);
    assert_eq!(change(e, "region").before, None);
    assert_eq!(change(e, "region").after.as_deref(), Some("Ege"));

    // a stale etag: the transaction rolls back; a FAILED event and no success event
    let err = customers(&server)
        .update_customer(keyed(
            proto::UpdateCustomerRequest {
                customer: Some(proto::Customer {
                    name: c.name.clone(),
                    region: "Marmara".into(),
                    etag: c.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["region".into()],
                }),
            },
            &key,
            Some("req-stale-1"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_ne!(c.etag, updated.etag);
    let stale = events(
        &server,
        &admin,
        proto::ListAuditEventsRequest {
            method: UPDATE.into(),
            ..Default::default()
        },
    )
    .await;
    let stale: Vec<_> = stale
        .iter()
        .filter(|e| e.request_id == "req-stale-1")
        .collect();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].result, proto::AuditResult::Failed as i32);
    assert_eq!(stale[0].code, "ABORTED");
    assert_eq!(stale[0].principal, account);
    assert_eq!(
        events(&server, &admin, of_resource(&c.name)).await.len(),
        2,
        "the rolled-back update left an event on the customer"
    );

    // RecordOrder: one event on the order
    let order = customers(&server)
        .record_order(keyed(
            proto::RecordOrderRequest {
                parent: c.name.clone(),
                order: Some(proto::Order {
                    order_id: "ORD-A1".into(),
                    currency: "TRY".into(),
                    lines: vec![proto::OrderLine {
                        sku: "VASE".into(),
                        category: "home".into(),
                        quantity: 2,
                        unit_price: 150.0,
                    }],
                    ..Default::default()
                }),
            },
            &key,
            Some("req-order-1"),
        ))
        .await
        .expect("record order")
        .into_inner();
    let evs = events(&server, &admin, of_resource(&order.name)).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].method, "bakkal.v1.CustomerService/RecordOrder");
    assert_eq!(evs[0].action, proto::AuditAction::Record as i32);
    assert_eq!(evs[0].request_id, "req-order-1");
    assert_eq!(evs[0].principal, account);
    assert_eq!(change(&evs[0], "status").after.as_deref(), Some("PAID"));

    // CreateTicket: one event on the ticket
    let t = ServiceDeskServiceClient::new(server.channel.clone())
        .create_ticket(keyed(
            proto::CreateTicketRequest {
                ticket: Some(proto::Ticket {
                    customer: c.name.clone(),
                    kind: proto::TicketKind::Complaint as i32,
                    channel: proto::InteractionChannel::Email as i32,
                    subject: "Broken vase".into(),
                    description: "It arrived in pieces.".into(),
                    topic: "delivery".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &key,
            Some("req-ticket-1"),
        ))
        .await
        .expect("create ticket")
        .into_inner();
    // (the SLA watcher may add its own events on the ticket later: system:sla-watcher)
    let evs: Vec<_> = events(&server, &admin, of_resource(&t.name))
        .await
        .into_iter()
        .filter(|e| e.principal == account)
        .collect();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].method, "bakkal.v1.ServiceDeskService/CreateTicket");
    assert_eq!(evs[0].action, proto::AuditAction::Create as i32);
    assert_eq!(evs[0].request_id, "req-ticket-1");
    assert_eq!(change(&evs[0], "state").after.as_deref(), Some("NEW"));

    // a ticket for an unknown contact creates the prospect, then fails on its team: the whole
    // transaction rolls back, the prospect's CREATE event with it
    let err = ServiceDeskServiceClient::new(server.channel.clone())
        .create_ticket(keyed(
            proto::CreateTicketRequest {
                ticket: Some(proto::Ticket {
                    contact_email: "stranger@example.com".into(),
                    team: "teams/999".into(),
                    kind: proto::TicketKind::Question as i32,
                    channel: proto::InteractionChannel::Email as i32,
                    subject: "Hello".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &key,
            Some("req-rolled-back"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let rolled: Vec<_> = events(&server, &admin, Default::default())
        .await
        .into_iter()
        .filter(|e| e.request_id == "req-rolled-back")
        .collect();
    assert_eq!(rolled.len(), 1, "{rolled:?}");
    assert_eq!(rolled[0].result, proto::AuditResult::Failed as i32);
    assert_eq!(rolled[0].code, "NOT_FOUND");
    assert!(rolled[0].resource.is_empty() && rolled[0].changes.is_empty());

    // every write RPC call above has exactly one success event
    let ok: Vec<_> = events(
        &server,
        &admin,
        proto::ListAuditEventsRequest {
            principal: account.clone(),
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .filter(|e| e.result == proto::AuditResult::Ok as i32)
    .map(|e| e.request_id)
    .collect();
    assert_eq!(
        ok,
        [
            "req-create-1",
            "req-update-1",
            "req-order-1",
            "req-ticket-1"
        ],
    );

    // the access writes that made the key name their resources too
    for (resource, method) in [
        (
            account.clone(),
            "bakkal.v1.AccessService/CreateServiceAccount",
        ),
        (
            format!("apiKeys/{key_id}"),
            "bakkal.v1.AccessService/CreateApiKey",
        ),
    ] {
        let evs = events(&server, &admin, of_resource(&resource)).await;
        assert_eq!(evs.len(), 1, "{evs:?}");
        assert_eq!(evs[0].method, method);
        assert_eq!(evs[0].action, proto::AuditAction::Create as i32);
    }

    // an export is audited
    let mut export = customers(&server)
        .export_customers(keyed(
            proto::ExportCustomersRequest::default(),
            &key,
            Some("req-export-1"),
        ))
        .await
        .expect("export")
        .into_inner();
    while export.message().await.expect("export stream").is_some() {}
    let evs = events(
        &server,
        &admin,
        proto::ListAuditEventsRequest {
            method: "bakkal.v1.CustomerService/ExportCustomers".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].action, proto::AuditAction::Export as i32);
    assert_eq!(evs[0].result, proto::AuditResult::Ok as i32);
    assert_eq!(evs[0].request_id, "req-export-1");
    assert_eq!(evs[0].principal, account);
    server.stop().await;
}

async fn denied_calls_are_audited_and_no_secret_is(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let (marketer, marketer_key_id, marketer_key) = service_key(&server, &admin, "marketer").await;
    let (_, _, integration_key) = service_key(&server, &admin, "integration").await;
    create(
        &server,
        &integration_key,
        None,
        person("Can", "can@example.com"),
    )
    .await;

    // a marketer may not create customers: PERMISSION_DENIED, audited with who it was
    let err = customers(&server)
        .create_customer(keyed(
            proto::CreateCustomerRequest {
                customer: Some(person("Deniz", "deniz@example.com")),
                request_id: String::new(),
            },
            &marketer_key,
            Some("req-denied-1"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // nor read the audit trail
    let err = audit(&server)
        .list_audit_events(keyed(
            proto::ListAuditEventsRequest::default(),
            &marketer_key,
            Some("req-denied-2"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let evs = events(
        &server,
        &admin,
        proto::ListAuditEventsRequest {
            principal: marketer.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    for (e, (rid, method)) in evs.iter().zip([
        ("req-denied-1", CREATE),
        ("req-denied-2", "bakkal.v1.AuditService/ListAuditEvents"),
    ]) {
        assert_eq!(e.request_id, rid);
        assert_eq!(e.method, method);
        assert_eq!(e.result, proto::AuditResult::Denied as i32);
        assert_eq!(e.code, "PERMISSION_DENIED");
        assert_eq!(e.key_id, marketer_key_id);
    }

    // no credential at all, and a forged one: denied, anonymous
    let err = customers(&server)
        .get_customer(proto::GetCustomerRequest {
            name: "customers/1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut forged = integration_key.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    let err = customers(&server)
        .get_customer(keyed(
            proto::GetCustomerRequest {
                name: "customers/1".into(),
            },
            &forged,
            Some("req-forged-1"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let anonymous = events(
        &server,
        &admin,
        proto::ListAuditEventsRequest {
            principal: "anonymous".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(anonymous.len(), 2, "{anonymous:?}");
    assert!(anonymous
        .iter()
        .all(|e| e.code == "UNAUTHENTICATED" && e.result == proto::AuditResult::Denied as i32));

    // no key's secret anywhere: not in what the API returns, not in the table
    let everything = format!("{:?}", events(&server, &admin, Default::default()).await);
    let mut stored = String::new();
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&server.db_url)
        .await
        .unwrap();
    let rows: Vec<(String, Option<String>, String, String, String, String)> = sqlx::query_as(
        "SELECT principal, key_id, request_id, method, resource, changes FROM audit_events",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    for r in rows {
        stored.push_str(&format!("{r:?}"));
    }
    for key in [&admin, &marketer_key, &integration_key, &forged] {
        // the secret part: after `bk_live_<key id>_`
        let secret = &key[8 + 17..];
        assert!(!everything.contains(secret), "a secret in the API's events");
        assert!(!stored.contains(secret), "a secret in the stored events");
    }
    server.stop().await;
}

async fn lists_filter_page_and_mask(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let (one, _, one_key) = service_key(&server, &admin, "integration").await;
    let (two, _, two_key) = service_key(&server, &admin, "integration").await;
    let (_, _, auditor) = service_key(&server, &admin, "auditor").await;
    let mut first = None;
    for i in 0..5 {
        let c = create(
            &server,
            &one_key,
            None,
            person("One", &format!("one{i}@example.com")),
        )
        .await;
        first.get_or_insert(c);
    }
    for i in 0..2 {
        create(
            &server,
            &two_key,
            None,
            person("Two", &format!("two{i}@example.com")),
        )
        .await;
    }
    let first = first.unwrap();
    let by = |p: &str| proto::ListAuditEventsRequest {
        principal: p.into(),
        ..Default::default()
    };
    assert_eq!(events(&server, &admin, by(&one)).await.len(), 5);
    assert_eq!(events(&server, &admin, by(&two)).await.len(), 2);
    assert_eq!(
        events(&server, &admin, of_resource(&first.name))
            .await
            .len(),
        1
    );
    let creates = events(
        &server,
        &admin,
        proto::ListAuditEventsRequest {
            method: CREATE.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(creates.len(), 7);
    // a time range: nothing after the last event; everything from the first one
    let last = creates.last().unwrap().time.unwrap();
    let later = prost_types::Timestamp {
        seconds: last.seconds + 1,
        nanos: 0,
    };
    let none = events(
        &server,
        &admin,
        proto::ListAuditEventsRequest {
            method: CREATE.into(),
            start_time: Some(later),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty(), "{none:?}");
    let all = events(
        &server,
        &admin,
        proto::ListAuditEventsRequest {
            method: CREATE.into(),
            start_time: creates[0].time,
            end_time: Some(later),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), 7);

    // pages of 2 return every event once, in seq order
    let mut seqs = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = audit(&server)
            .list_audit_events(keyed(
                proto::ListAuditEventsRequest {
                    method: CREATE.into(),
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &admin,
                None,
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.events.len() <= 2);
        seqs.extend(page.events.iter().map(|e| e.seq));
        if page.next_page_token.is_empty() {
            break;
        }
        // a token is bound to its filter
        let err = audit(&server)
            .list_audit_events(keyed(
                proto::ListAuditEventsRequest {
                    method: UPDATE.into(),
                    page_size: 2,
                    page_token: page.next_page_token.clone(),
                    ..Default::default()
                },
                &admin,
                None,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        token = page.next_page_token;
    }
    assert_eq!(pages, 4);
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted);
    assert_eq!(seqs.len(), 7);

    // an auditor reads the trail with personal data masked; admin sees it as stored
    let masked = events(&server, &auditor, of_resource(&first.name)).await;
    assert_eq!(
        change(&masked[0], "email").after.as_deref(),
        Some("o***@example.com")
    );
    let clear = events(&server, &admin, of_resource(&first.name)).await;
    assert_eq!(
        change(&clear[0], "email").after.as_deref(),
        Some("one0@example.com")
    );

    // an erasure records what it erased, never the values
    customers(&server)
        .delete_customer(keyed(
            proto::DeleteCustomerRequest {
                name: first.name.clone(),
                etag: String::new(),
            },
            &admin,
            None,
        ))
        .await
        .expect("erase");
    let evs = events(&server, &admin, of_resource(&first.name)).await;
    let erasure = evs.last().unwrap();
    assert_eq!(erasure.action, proto::AuditAction::Delete as i32);
    assert_eq!(change(erasure, "email").before.as_deref(), Some("(erased)"));
    assert!(!format!("{:?}", erasure.changes).contains("one0"));
    // and the address the customer's earlier events held cannot be read any more, by anyone
    let created = &evs[0];
    assert_eq!(created.action, proto::AuditAction::Create as i32);
    assert_eq!(change(created, "email").after.as_deref(), Some("(erased)"));
    assert_eq!(
        change(created, "display_name").after.as_deref(),
        Some("One")
    );
    // nor was it ever stored in clear: personal values are sealed in the table
    assert_eq!(
        common::count(
            &server.db_url,
            "SELECT COUNT(*) FROM audit_events WHERE changes LIKE '%example.com%'"
        )
        .await,
        0
    );
    // the chain still verifies: it covers the sealed text, not the keys
    assert_eq!(verify(&server, &admin).await.first_broken_seq, 0);
    server.stop().await;
}

async fn a_watch_receives_new_events(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let (_, _, auditor) = service_key(&server, &admin, "auditor").await;
    let (_, _, key) = service_key(&server, &admin, "integration").await;
    let head = verify(&server, &admin).await.last_seq;
    let mut stream = audit(&server)
        .watch_audit_events(keyed(
            proto::WatchAuditEventsRequest { after_seq: head },
            &auditor,
            None,
        ))
        .await
        .expect("watch")
        .into_inner();
    let c = create(
        &server,
        &key,
        Some("req-watched"),
        person("Ece", "ece@example.com"),
    )
    .await;
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = stream.message().await.expect("stream").expect("an event");
            if e.resource == c.name {
                return e;
            }
        }
    })
    .await
    .expect("the watch sent the new event");
    assert_eq!(seen.request_id, "req-watched");
    assert!(seen.seq > head);
    // masked for the auditor
    assert_eq!(
        change(&seen, "email").after.as_deref(),
        Some("e***@example.com")
    );
    drop(stream);
    server.stop().await;
}

async fn an_edited_event_breaks_the_chain_there(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let (_, _, key) = service_key(&server, &admin, "integration").await;
    for i in 0..3 {
        create(
            &server,
            &key,
            None,
            person("Fatma", &format!("f{i}@example.com")),
        )
        .await;
    }
    let report = verify(&server, &admin).await;
    assert_eq!(report.first_broken_seq, 0, "{report:?}");
    assert!(report.checked >= 3);
    let victim = events(
        &server,
        &admin,
        proto::ListAuditEventsRequest {
            method: CREATE.into(),
            ..Default::default()
        },
    )
    .await[1]
        .seq;

    // the database refuses to change or remove an event
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&server.db_url)
        .await
        .unwrap();
    let edit = format!("UPDATE audit_events SET resource = 'customers/999' WHERE seq = {victim}");
    assert!(
        sqlx::query(&edit).execute(&pool).await.is_err(),
        "UPDATE allowed"
    );
    let remove = format!("DELETE FROM audit_events WHERE seq = {victim}");
    assert!(
        sqlx::query(&remove).execute(&pool).await.is_err(),
        "DELETE allowed"
    );

    // with the guard taken away, an edit goes through, and VerifyAuditChain names the event
    let unguard = match backend {
        Backend::Sqlite => "DROP TRIGGER audit_events_no_update",
        Backend::Postgres => "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
    };
    sqlx::query(unguard).execute(&pool).await.unwrap();
    sqlx::query(&edit).execute(&pool).await.unwrap();
    pool.close().await;
    let report = verify(&server, &admin).await;
    assert_eq!(report.first_broken_seq, victim, "{report:?}");
    // a range before the edit is intact
    let before = audit(&server)
        .verify_audit_chain(keyed(
            proto::VerifyAuditChainRequest {
                start_seq: 1,
                end_seq: victim - 1,
            },
            &admin,
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.first_broken_seq, 0, "{before:?}");
    assert_eq!(before.last_seq, victim - 1);
    server.stop().await;
}

async fn parallel_writes_keep_one_chain(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let (account, _, key) = service_key(&server, &admin, "integration").await;
    // a second server on the same database: each remembers the chain head it last wrote, so
    // every append of one after the other's finds its remembered head stale
    let other = TestServer::start_at(&server.db_url, |c| c.auth.require = true).await;
    let mut calls = Vec::new();
    for i in 0..60 {
        let channel = if i % 2 == 0 {
            server.channel.clone()
        } else {
            other.channel.clone()
        };
        let key = key.clone();
        calls.push(tokio::spawn(async move {
            CustomerServiceClient::new(channel)
                .create_customer(keyed(
                    proto::CreateCustomerRequest {
                        customer: Some(person("Paralel", &format!("p{i}@example.com"))),
                        request_id: String::new(),
                    },
                    &key,
                    None,
                ))
                .await
                .expect("create")
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    let report = verify(&server, &admin).await;
    assert_eq!(report.first_broken_seq, 0, "{report:?}");
    let all = events(&server, &admin, Default::default()).await;
    assert_eq!(report.checked as usize, all.len());
    assert_eq!(report.last_seq as usize, all.len());
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>(), "a gap");
    assert_eq!(
        all.iter()
            .filter(|e| e.principal == account && e.method == CREATE)
            .count(),
        60
    );
    other.stop().await;
    server.stop().await;
}

/// bakkal's own work is attributed to it: the SLA watcher's change of a ticket's SLA status
/// is `system:sla-watcher`'s; on a server without authentication callers are `open`.
async fn background_work_is_attributed_to_its_task(backend: Backend) {
    let Some(db) = common::TestDb::new(backend).await else {
        return;
    };
    let clock = bakkal::config::Clock::manual(bakkal_domain::time::now_micros());
    let c = clock.clone();
    let server = TestServer::start_on_with(db, move |cfg| {
        cfg.desk = bakkal::config::DeskConfig {
            clock: c,
            sla_watch_interval: Duration::from_millis(50),
            message_script: None,
        }
    })
    .await;
    let mut desk = ServiceDeskServiceClient::new(server.channel.clone());
    desk.create_sla_policy(proto::CreateSlaPolicyRequest {
        sla_policy: Some(proto::SlaPolicy {
            display_name: "complaints".into(),
            kinds: vec![proto::TicketKind::Complaint as i32],
            first_response_within: Some(prost_types::Duration {
                seconds: 600,
                nanos: 0,
            }),
            resolve_within: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            at_risk_fraction: 0.5,
            ..Default::default()
        }),
    })
    .await
    .expect("policy");
    let t = desk
        .create_ticket(proto::CreateTicketRequest {
            ticket: Some(proto::Ticket {
                contact_email: "gul@example.com".into(),
                kind: proto::TicketKind::Complaint as i32,
                channel: proto::InteractionChannel::Email as i32,
                subject: "Late".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("ticket")
        .into_inner();
    clock.advance(Duration::from_secs(3 * 3600));
    common::wait_for(
        &server.db_url,
        &format!(
            "SELECT COUNT(*) FROM audit_events WHERE principal = 'system:sla-watcher' \
             AND resource = '{}'",
            t.name
        ),
        1,
    )
    .await;
    let evs = AuditServiceClient::new(server.channel.clone())
        .list_audit_events(of_resource(&t.name))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(evs[0].principal, "open");
    assert_eq!(evs[0].method, "bakkal.v1.ServiceDeskService/CreateTicket");
    let watcher = evs
        .iter()
        .find(|e| e.principal == "system:sla-watcher")
        .expect("the watcher's event");
    assert_eq!(watcher.method, "");
    assert_eq!(
        change(watcher, "sla_status").before.as_deref(),
        Some("ON_TRACK")
    );
    server.stop().await;
}

/// With the trail turned off (to measure its cost), writes leave no events.
async fn the_trail_can_be_turned_off(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| c.audit_trail = false).await else {
        return;
    };
    customers(&server)
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(person("Hakan", "hakan@example.com")),
            request_id: String::new(),
        })
        .await
        .expect("create");
    let n = common::count(&server.db_url, "SELECT COUNT(*) FROM audit_events").await;
    assert_eq!(n, 0);
    server.stop().await;
}

for_each_backend!(
    background_work_is_attributed_to_its_task,
    the_trail_can_be_turned_off,
    writes_are_audited_once_with_who_and_what,
    denied_calls_are_audited_and_no_secret_is,
    lists_filter_page_and_mask,
    a_watch_receives_new_events,
    an_edited_event_breaks_the_chain_there,
    parallel_writes_keep_one_chain,
);
