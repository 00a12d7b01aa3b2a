//! The customer database through its public gRPC API, on SQLite and PostgreSQL.

mod common;

use bakkal::proto::{self, import_customers_request::Row};
use common::TestServer;
use prost_types::{FieldMask, Timestamp};
use tonic::Code;
use tonic_types::StatusExt;

fn customer(name: &str, email: &str, phone: &str) -> proto::Customer {
    proto::Customer {
        display_name: name.into(),
        email: email.into(),
        phone: phone.into(),
        ..Default::default()
    }
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

fn order(id: &str, days_ago: i64, lines: &[(&str, &str, i64, f64)]) -> proto::Order {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    proto::Order {
        order_id: id.into(),
        currency: "TRY".into(),
        placed_time: Some(Timestamp {
            seconds: now - days_ago * 86_400,
            nanos: 0,
        }),
        lines: lines
            .iter()
            .map(|(sku, cat, q, p)| proto::OrderLine {
                sku: sku.to_string(),
                category: cat.to_string(),
                quantity: *q,
                unit_price: *p,
            })
            .collect(),
        ..Default::default()
    }
}

async fn record(
    server: &TestServer,
    parent: &str,
    o: proto::Order,
) -> Result<proto::Order, tonic::Status> {
    server
        .customers()
        .record_order(proto::RecordOrderRequest {
            parent: parent.into(),
            order: Some(o),
        })
        .await
        .map(|r| r.into_inner())
}

async fn get(server: &TestServer, name: &str) -> Result<proto::Customer, tonic::Status> {
    server
        .customers()
        .get_customer(proto::GetCustomerRequest { name: name.into() })
        .await
        .map(|r| r.into_inner())
}

/// The fields named by the BadRequest detail of an error.
fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

async fn creates_and_normalises_contact_data(server: &TestServer) {
    let c = create(
        server,
        proto::Customer {
            country_code: "tr".into(),
            tags: vec!["VIP".into(), "vip".into()],
            ..customer(" Ayşe Yılmaz ", " AYSE@Example.COM ", "0532 123 45 67")
        },
    )
    .await;
    assert!(c.name.starts_with("customers/"));
    assert_eq!(c.display_name, "Ayşe Yılmaz");
    assert_eq!(c.email, "ayse@example.com");
    assert_eq!(c.phone, "+905321234567");
    assert_eq!(c.country_code, "TR");
    assert_eq!(c.tags, vec!["vip"]);
    assert_eq!(c.stage, proto::Stage::Prospect as i32);
    assert!(!c.etag.is_empty());
    let got = get(server, &c.name).await.unwrap();
    assert_eq!(got, c);
}

async fn duplicates_are_refused_and_name_the_existing_customer(server: &TestServer) {
    let first = create(
        server,
        customer("Ali", "ali@example.com", "+90 532 000 00 01"),
    )
    .await;
    for dup in [
        customer("Ali Again", "  ALI@example.com", ""),
        customer("Ali Phone", "", "0090 532 000 0001"),
    ] {
        let err = server
            .customers()
            .create_customer(proto::CreateCustomerRequest {
                customer: Some(dup),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
        let info = err
            .get_details_resource_info()
            .expect("ResourceInfo detail");
        assert_eq!(info.resource_name, first.name);
    }
    let list = server
        .customers()
        .list_customers(proto::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.total_size, 1,
        "nothing half-written by the refused creates"
    );
}

async fn a_retried_create_returns_the_first_result(server: &TestServer) {
    let req = proto::CreateCustomerRequest {
        customer: Some(customer("Zeynep", "zeynep@example.com", "")),
        request_id: "6f1c2a52-6a39-4d3c-9a53-9a0b8b1d2e01".into(),
    };
    let a = server
        .customers()
        .create_customer(req.clone())
        .await
        .unwrap()
        .into_inner();
    let b = server
        .customers()
        .create_customer(req)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.name, b.name);
}

async fn bad_input_is_invalid_argument_with_field_violations(server: &TestServer) {
    let mut client = server.customers();
    let err = client
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                birth_date: "1990-02-31".into(),
                ..customer("X", "not-an-email", "12")
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&err),
        vec!["customer.email", "customer.phone", "customer.birth_date"]
    );

    let err = client
        .create_customer(proto::CreateCustomerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["customer"]);

    let err = get(server, "customers/abc").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violations(&err), vec!["name"]);

    let err = get(server, "customers/999999").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    for size in [-1, 1001] {
        let err = client
            .list_customers(proto::ListCustomersRequest {
                page_size: size,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violations(&err), vec!["page_size"]);
    }
    for (filter, order_by, field) in [
        ("nonsense = 1", "", "filter"),
        ("stage = GONE", "", "filter"),
        ("", "email desc", "order_by"),
    ] {
        let err = client
            .list_customers(proto::ListCustomersRequest {
                filter: filter.into(),
                order_by: order_by.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violations(&err), vec![field]);
    }

    let c = create(server, customer("Can", "can@example.com", "")).await;
    let err = client
        .update_customer(proto::UpdateCustomerRequest {
            customer: Some(proto::Customer {
                name: c.name.clone(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["stage".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["update_mask"]);

    let err = record(
        server,
        &c.name,
        order(
            "o-neg",
            0,
            &[("SKU-1", "bakery", -2, 5.0), ("SKU-2", "bakery", 1, -1.0)],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(
        violations(&err),
        vec!["order.lines[0].quantity", "order.lines[1].unit_price"]
    );

    let err = record(
        server,
        &c.name,
        proto::Order {
            status: 42,
            ..order("o-enum", 0, &[("SKU-1", "bakery", 1, 5.0)])
        },
    )
    .await
    .unwrap_err();
    assert_eq!(violations(&err), vec!["order.status"]);

    let err = client
        .record_interaction(proto::RecordInteractionRequest {
            parent: c.name.clone(),
            interaction: Some(proto::Interaction {
                channel: 99,
                direction: proto::Direction::Inbound as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["interaction.channel"]);
    // none of the refused writes left anything behind
    let orders = client
        .list_orders(proto::ListOrdersRequest {
            parent: c.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(orders.orders.is_empty());
}

async fn updates_follow_the_mask_and_the_etag(server: &TestServer) {
    let mut client = server.customers();
    let c = create(
        server,
        proto::Customer {
            region: "Marmara".into(),
            city: "İstanbul".into(),
            ..customer("Deniz", "deniz@example.com", "")
        },
    )
    .await;
    let updated = client
        .update_customer(proto::UpdateCustomerRequest {
            customer: Some(proto::Customer {
                name: c.name.clone(),
                region: "Ege".into(),
                city: "ignored".into(),
                consent: Some(proto::ChannelConsents {
                    email: Some(proto::Consent {
                        granted: true,
                        update_time: None,
                    }),
                    ..Default::default()
                }),
                etag: c.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["region".into(), "consent.email".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.region, "Ege");
    assert_eq!(updated.city, "İstanbul", "fields outside the mask are kept");
    assert_eq!(updated.email, "deniz@example.com");
    let consent = updated.consent.unwrap().email.unwrap();
    assert!(consent.granted);
    assert!(
        consent.update_time.is_some(),
        "the consent decision is stamped"
    );
    assert_ne!(updated.etag, c.etag);

    // the old etag is stale now
    let err = client
        .update_customer(proto::UpdateCustomerRequest {
            customer: Some(proto::Customer {
                name: c.name.clone(),
                city: "Bursa".into(),
                etag: c.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["city".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(get(server, &c.name).await.unwrap().city, "İstanbul");

    // taking another customer's email is refused
    let other = create(server, customer("Ece", "ece@example.com", "")).await;
    let err = client
        .update_customer(proto::UpdateCustomerRequest {
            customer: Some(proto::Customer {
                name: other.name.clone(),
                email: "DENIZ@example.com".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["email".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

async fn orders_drive_value_keys_and_stage(server: &TestServer) {
    let c = create(server, customer("Murat", "murat@example.com", "")).await;
    assert_eq!(c.stage, proto::Stage::Prospect as i32);
    let o = record(
        server,
        &c.name,
        order(
            "ord-1",
            10,
            &[("BREAD", "Bakery", 2, 12.5), ("MILK", "dairy", 1, 30.0)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(o.total, 55.0);
    assert_eq!(o.name, format!("{}/orders/ord-1", c.name));
    record(
        server,
        &c.name,
        order("ord-2", 2, &[("CHEESE", "dairy", 1, 145.0)]),
    )
    .await
    .unwrap();
    // recording the same order again changes nothing
    record(
        server,
        &c.name,
        order("ord-2", 2, &[("CHEESE", "dairy", 1, 145.0)]),
    )
    .await
    .unwrap();
    let got = get(server, &c.name).await.unwrap();
    let v = got.value.unwrap();
    assert_eq!(got.stage, proto::Stage::Active as i32);
    assert!(got.converted_time.is_some());
    assert_eq!(v.order_count, 2);
    assert_eq!(v.total_spent, 200.0);
    assert_eq!(v.average_order_value, 100.0);
    assert_eq!(v.days_since_last_order, Some(2));
    assert_eq!(v.tenure_days, 10);

    // a refund is the same order recorded with a new status
    let refunded = record(
        server,
        &c.name,
        proto::Order {
            status: proto::OrderStatus::Refunded as i32,
            ..order("ord-2", 2, &[("CHEESE", "dairy", 1, 145.0)])
        },
    )
    .await
    .unwrap();
    assert_eq!(refunded.status, proto::OrderStatus::Refunded as i32);
    let v = get(server, &c.name).await.unwrap().value.unwrap();
    assert_eq!((v.order_count, v.total_spent), (1, 55.0));

    // another customer cannot claim the order id
    let other = create(server, customer("Other", "other@example.com", "")).await;
    let err = record(
        server,
        &other.name,
        order("ord-1", 1, &[("X", "y", 1, 1.0)]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // a customer who bought long ago is lapsed
    let old = create(server, customer("Old", "old@example.com", "")).await;
    record(
        server,
        &old.name,
        order("ord-old", 400, &[("X", "y", 1, 1.0)]),
    )
    .await
    .unwrap();
    assert_eq!(
        get(server, &old.name).await.unwrap().stage,
        proto::Stage::Lapsed as i32
    );

    let orders = server
        .customers()
        .list_orders(proto::ListOrdersRequest {
            parent: c.name.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(orders.orders[0].order_id, "ord-2", "newest first");
    assert!(!orders.next_page_token.is_empty());
}

async fn lists_filter_order_and_page_without_gaps(server: &TestServer) {
    let mut names = Vec::new();
    for i in 0..23 {
        let c = create(
            server,
            proto::Customer {
                region: if i % 2 == 0 {
                    "Ege".into()
                } else {
                    "Marmara".into()
                },
                tags: if i % 3 == 0 {
                    vec!["vip".into()]
                } else {
                    vec![]
                },
                ..customer(&format!("C{i:02}"), &format!("c{i}@example.com"), "")
            },
        )
        .await;
        if i < 5 {
            record(
                server,
                &c.name,
                order(&format!("o{i}"), 1, &[("X", "y", 1, 10.0 * (i + 1) as f64)]),
            )
            .await
            .unwrap();
        }
        names.push(c.name);
    }
    let mut client = server.customers();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_customers(proto::ListCustomersRequest {
                page_size: 7,
                page_token: token.clone(),
                filter: "region = \"Ege\"".into(),
                order_by: "display_name desc".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, 12);
        seen.extend(page.customers.into_iter().map(|c| c.display_name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<String> = (0..23)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("C{i:02}"))
        .collect();
    expected.reverse();
    assert_eq!(seen, expected);

    let vip_spenders = client
        .list_customers(proto::ListCustomersRequest {
            filter: "tags:vip AND value.total_spent >= 10 AND stage = ACTIVE".into(),
            order_by: "value.total_spent desc".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<_> = vip_spenders
        .customers
        .iter()
        .map(|c| c.display_name.as_str())
        .collect();
    assert_eq!(got, vec!["C03", "C00"]);

    let prospects = client
        .list_customers(proto::ListCustomersRequest {
            filter: "stage = PROSPECT".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(prospects.total_size, 18);

    // a token only works for the query it came from
    let first = client
        .list_customers(proto::ListCustomersRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let err = client
        .list_customers(proto::ListCustomersRequest {
            page_size: 2,
            page_token: first.next_page_token,
            filter: "region = \"Ege\"".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["page_token"]);
}

async fn interactions_are_recorded_newest_first(server: &TestServer) {
    let c = create(server, customer("Selin", "selin@example.com", "")).await;
    let mut client = server.customers();
    for (i, channel) in [
        proto::InteractionChannel::Email,
        proto::InteractionChannel::Store,
        proto::InteractionChannel::Email,
    ]
    .into_iter()
    .enumerate()
    {
        client
            .record_interaction(proto::RecordInteractionRequest {
                parent: c.name.clone(),
                interaction: Some(proto::Interaction {
                    channel: channel as i32,
                    direction: proto::Direction::Inbound as i32,
                    kind: "enquiry".into(),
                    subject: format!("contact {i}"),
                    occurred_time: Some(Timestamp {
                        seconds: 1_700_000_000 + i as i64 * 60,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    let list = client
        .list_interactions(proto::ListInteractionsRequest {
            parent: c.name.clone(),
            filter: "channel = EMAIL".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let subjects: Vec<_> = list
        .interactions
        .iter()
        .map(|i| i.subject.as_str())
        .collect();
    assert_eq!(subjects, vec!["contact 2", "contact 0"]);
    assert!(list.interactions[0]
        .name
        .starts_with(&format!("{}/interactions/", c.name)));
}

async fn delete_erases_personal_data(server: &TestServer) {
    let c = create(
        server,
        customer("Erase Me", "erase@example.com", "+905320000099"),
    )
    .await;
    record(server, &c.name, order("keep-1", 1, &[("X", "y", 1, 10.0)]))
        .await
        .unwrap();
    let mut client = server.customers();
    client
        .delete_customer(proto::DeleteCustomerRequest {
            name: c.name.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        get(server, &c.name).await.unwrap_err().code(),
        Code::NotFound
    );
    // the email and phone are free again: nothing of the person is left to collide with
    let again = create(
        server,
        customer("New", "erase@example.com", "+905320000099"),
    )
    .await;
    assert_ne!(again.name, c.name);
    // the order stays, anonymised, so another customer still cannot claim its id
    let err = record(
        server,
        &again.name,
        order("keep-1", 1, &[("X", "y", 1, 10.0)]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

async fn duplicates_are_found_and_merged(server: &TestServer) {
    let a = create(
        server,
        proto::Customer {
            birth_date: "1985-04-12".into(),
            city: "Ankara".into(),
            ..customer("Mehmet Kaya", "mehmet.kaya@gmail.com", "")
        },
    )
    .await;
    let b = create(
        server,
        proto::Customer {
            birth_date: "1985-04-12".into(),
            phone: "+905551112233".into(),
            tags: vec!["app".into()],
            ..customer("MEHMET  KAYA", "mehmet.kaya@hotmail.com", "")
        },
    )
    .await;
    let friend = create(
        server,
        proto::Customer {
            referred_by: b.name.clone(),
            ..customer("Friend", "friend@example.com", "")
        },
    )
    .await;
    assert_eq!(
        get(server, &b.name)
            .await
            .unwrap()
            .value
            .unwrap()
            .referral_count,
        1
    );
    create(server, customer("Someone Else", "else@example.com", "")).await;
    record(server, &b.name, order("b-1", 3, &[("X", "y", 2, 50.0)]))
        .await
        .unwrap();

    let mut client = server.customers();
    let found = client
        .find_duplicates(proto::FindDuplicatesRequest {
            name: a.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.candidates.len(), 1);
    let cand = &found.candidates[0];
    assert_eq!(cand.customer.as_ref().unwrap().name, b.name);
    assert!(
        cand.reasons.iter().any(|r| r == "same name and birth date"),
        "{:?}",
        cand.reasons
    );

    let merged = client
        .merge_customers(proto::MergeCustomersRequest {
            primary: a.name.clone(),
            duplicate: b.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(merged.name, a.name);
    assert_eq!(
        merged.email, "mehmet.kaya@gmail.com",
        "the primary keeps its own data"
    );
    assert_eq!(
        merged.phone, "+905551112233",
        "and gains what only the duplicate knew"
    );
    assert_eq!(merged.tags, vec!["app"]);
    let v = merged.value.unwrap();
    assert_eq!(
        (v.order_count, v.total_spent, v.referral_count),
        (1, 100.0, 1)
    );
    assert_eq!(get(server, &friend.name).await.unwrap().referred_by, a.name);
    // the duplicate's name now resolves to the primary
    assert_eq!(get(server, &b.name).await.unwrap().name, a.name);
    let orders = client
        .list_orders(proto::ListOrdersRequest {
            parent: a.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(orders.orders.len(), 1);
    // a retried merge is harmless
    client
        .merge_customers(proto::MergeCustomersRequest {
            primary: a.name.clone(),
            duplicate: b.name.clone(),
        })
        .await
        .unwrap();
    let list = client
        .list_customers(proto::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_size, 3);
}

async fn products_are_upserted_and_listed(server: &TestServer) {
    let mut client = server.customers();
    for (sku, cat, related) in [
        ("BREAD", "Bakery", vec!["BUTTER"]),
        ("BUTTER", "dairy", vec![]),
        ("SIMIT", "bakery", vec![]),
    ] {
        client
            .upsert_product(proto::UpsertProductRequest {
                product: Some(proto::Product {
                    sku: sku.into(),
                    display_name: sku.to_lowercase(),
                    category: cat.into(),
                    price: 10.0,
                    related_skus: related.into_iter().map(String::from).collect(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    client
        .upsert_product(proto::UpsertProductRequest {
            product: Some(proto::Product {
                sku: "BREAD".into(),
                display_name: "Sourdough".into(),
                category: "bakery".into(),
                price: 12.5,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let bakery = client
        .list_products(proto::ListProductsRequest {
            filter: "category = \"bakery\"".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<_> = bakery
        .products
        .iter()
        .map(|p| (p.sku.as_str(), p.price))
        .collect();
    assert_eq!(got, vec![("BREAD", 12.5), ("SIMIT", 10.0)]);
    let err = client
        .upsert_product(proto::UpsertProductRequest {
            product: Some(proto::Product {
                sku: "bad sku".into(),
                display_name: "x".into(),
                price: -1.0,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&err), vec!["product.sku", "product.price"]);
}

async fn import_keeps_good_rows_and_reports_bad_ones(server: &TestServer) {
    let existing = create(server, customer("Existing", "existing@example.com", "")).await;
    let rows = vec![
        Row::Customer(customer("Good One", "one@example.com", "+905320000001")),
        Row::Customer(customer("Bad Email", "nope", "")),
        Row::Customer(proto::Customer {
            region: "Ege".into(),
            ..customer("", "EXISTING@example.com", "")
        }),
        Row::Order(proto::ImportOrder {
            order: Some(order("imp-1", 5, &[("X", "y", 1, 20.0)])),
            customer_email: "one@example.com".into(),
        }),
        Row::Order(proto::ImportOrder {
            order: Some(order("imp-2", 5, &[("X", "y", 1, 20.0)])),
            customer_email: "ghost@example.com".into(),
        }),
        Row::Customer(customer("Phone Clash", "two@example.com", "+905320000001")),
        Row::Customer(customer("Good Two", "two@example.com", "")),
        Row::Order(proto::ImportOrder {
            order: Some(order("imp-3", 1, &[("X", "y", -1, 20.0)])),
            customer_email: "two@example.com".into(),
        }),
    ];
    let stream = tokio_stream::iter(
        rows.into_iter()
            .map(|r| proto::ImportCustomersRequest { row: Some(r) }),
    );
    let out = server
        .customers()
        .import_customers(stream)
        .await
        .unwrap()
        .into_inner();
    assert_eq!((out.created, out.updated, out.orders_recorded), (2, 1, 1));
    assert_eq!(out.rejected, 4);
    let rejected: Vec<i64> = out.rejected_rows.iter().map(|r| r.row).collect();
    assert_eq!(rejected, vec![2, 5, 6, 8]);
    assert!(out.rejected_rows[1].reason.contains("ghost@example.com"));
    assert_eq!(get(server, &existing.name).await.unwrap().region, "Ege");

    let mut exported = server
        .customers()
        .export_customers(proto::ExportCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut emails = Vec::new();
    while let Some(c) = exported.message().await.unwrap() {
        if c.email == "one@example.com" {
            assert_eq!(c.value.as_ref().unwrap().order_count, 1);
        }
        emails.push(c.email);
    }
    emails.sort();
    assert_eq!(
        emails,
        vec!["existing@example.com", "one@example.com", "two@example.com"]
    );
}

async fn concurrent_creates_of_one_person_leave_one_record(server: &TestServer) {
    let mut tasks = Vec::new();
    for i in 0..12 {
        let mut client = server.customers();
        tasks.push(tokio::spawn(async move {
            client
                .create_customer(proto::CreateCustomerRequest {
                    customer: Some(customer(&format!("Racer {i}"), "race@example.com", "")),
                    request_id: String::new(),
                })
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Code::AlreadyExists, "{e:?}"),
        }
    }
    assert_eq!(ok, 1);
    let list = server
        .customers()
        .list_customers(proto::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_size, 1);
}

on_both_backends!(
    concurrent_creates_of_one_person_leave_one_record,
    creates_and_normalises_contact_data,
    duplicates_are_refused_and_name_the_existing_customer,
    a_retried_create_returns_the_first_result,
    bad_input_is_invalid_argument_with_field_violations,
    updates_follow_the_mask_and_the_etag,
    orders_drive_value_keys_and_stage,
    lists_filter_order_and_page_without_gaps,
    interactions_are_recorded_newest_first,
    delete_erases_personal_data,
    duplicates_are_found_and_merged,
    products_are_upserted_and_listed,
    import_keeps_good_rows_and_reports_bad_ones,
);
