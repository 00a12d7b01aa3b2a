//! `bakkal.v1.ScriptService` through a real server and client, on every configured backend.

mod common;

use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::script_service_client::ScriptServiceClient;
use bakkal::proto::{self, test_script_request::Subject, ScriptKind};
use common::TestServer;
use prost_types::FieldMask;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

const VIP: &str = "// SEGMENT: big spenders\nfn matches(c) {\n    c.ltv >= 1000.0\n}\n";
const VIP_V2: &str = "fn matches(c) {\n    print(`ltv ${c.ltv}`);\n    c.ltv >= 5000.0\n}\n";

fn scripts(server: &TestServer) -> ScriptServiceClient<Channel> {
    ScriptServiceClient::new(server.channel.clone())
}

fn new_script(display_name: &str, kind: ScriptKind, source: &str) -> proto::CreateScriptRequest {
    proto::CreateScriptRequest {
        script: Some(proto::Script {
            display_name: display_name.into(),
            kind: kind as i32,
            source: source.into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn create(
    client: &mut ScriptServiceClient<Channel>,
    display_name: &str,
    kind: ScriptKind,
    source: &str,
) -> proto::Script {
    client
        .create_script(new_script(display_name, kind, source))
        .await
        .expect("create script")
        .into_inner()
}

async fn get(client: &mut ScriptServiceClient<Channel>, name: &str) -> proto::Script {
    client
        .get_script(proto::GetScriptRequest { name: name.into() })
        .await
        .expect("get script")
        .into_inner()
}

async fn count_scripts(client: &mut ScriptServiceClient<Channel>) -> usize {
    client
        .list_scripts(proto::ListScriptsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list scripts")
        .into_inner()
        .scripts
        .len()
}

/// The BadRequest field violations of a status, as (field, description).
fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_code(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code) -> tonic::Status {
    match result {
        Err(s) if s.code() == code => s,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// A customer with two paid orders worth 1,500 in total, the second of a grinder.
async fn customer_with_orders(server: &TestServer) -> String {
    let mut customers: CustomerServiceClient<Channel> = server.customers();
    let c = customers
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: "Ayşe Yılmaz".into(),
                email: "ayse@example.com".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create customer")
        .into_inner();
    for (id, sku, category, qty, price) in [
        ("O-1", "C-1", "coffee", 5, 120.0),
        ("O-2", "G-1", "grinders", 1, 900.0),
    ] {
        customers
            .record_order(proto::RecordOrderRequest {
                parent: c.name.clone(),
                order: Some(proto::Order {
                    order_id: id.into(),
                    currency: "TRY".into(),
                    lines: vec![proto::OrderLine {
                        sku: sku.into(),
                        category: category.into(),
                        quantity: qty,
                        unit_price: price,
                    }],
                    ..Default::default()
                }),
            })
            .await
            .expect("record order");
    }
    c.name
}

async fn lifecycle(server: &TestServer) {
    let mut client = scripts(server);
    let created = create(&mut client, "Big spenders", ScriptKind::Segment, VIP).await;
    assert!(created.name.starts_with("scripts/"), "{}", created.name);
    assert_eq!(created.revision_id, "1");
    assert_eq!(created.active_revision_id, "1");
    assert_eq!(created.kind, ScriptKind::Segment as i32);
    assert_eq!(created.source, VIP);
    assert!(created.create_time.is_some() && created.revision_create_time.is_some());
    assert!(!created.etag.is_empty());

    let got = get(&mut client, &created.name).await;
    assert_eq!(got, created);

    // A new source: revision 2, active.
    let updated = client
        .update_script(proto::UpdateScriptRequest {
            script: Some(proto::Script {
                name: created.name.clone(),
                source: VIP_V2.into(),
                etag: created.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["source".into()],
            }),
        })
        .await
        .expect("update source")
        .into_inner();
    assert_eq!(updated.revision_id, "2");
    assert_eq!(updated.active_revision_id, "2");
    assert_eq!(updated.source, VIP_V2);
    assert_eq!(updated.display_name, "Big spenders");
    assert_ne!(updated.etag, created.etag);

    // The old etag is stale now.
    let stale = client
        .update_script(proto::UpdateScriptRequest {
            script: Some(proto::Script {
                name: created.name.clone(),
                display_name: "Whales".into(),
                etag: created.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await;
    assert_code(stale, Code::Aborted);

    // A new display name only: no new revision.
    let renamed = client
        .update_script(proto::UpdateScriptRequest {
            script: Some(proto::Script {
                name: created.name.clone(),
                display_name: "Whales".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(renamed.display_name, "Whales");
    assert_eq!(renamed.revision_id, "2");

    // A broken source is refused and makes no revision.
    let broken = client
        .update_script(proto::UpdateScriptRequest {
            script: Some(proto::Script {
                name: created.name.clone(),
                source: "fn matches(c) {\n  c.ltv >= \n}".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["source".into()],
            }),
        })
        .await;
    let status = assert_code(broken, Code::InvalidArgument);
    assert!(violations(&status)
        .iter()
        .any(|(f, d)| f == "script.source" && d.starts_with("line ")));
    let kind_change = client
        .update_script(proto::UpdateScriptRequest {
            script: Some(proto::Script {
                name: created.name.clone(),
                kind: ScriptKind::Offer as i32,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["kind".into()],
            }),
        })
        .await;
    assert_code(kind_change, Code::InvalidArgument);

    // Revisions, newest first.
    let revs = client
        .list_script_revisions(proto::ListScriptRevisionsRequest {
            name: created.name.clone(),
            ..Default::default()
        })
        .await
        .expect("list revisions")
        .into_inner();
    let ids: Vec<(&str, bool)> = revs
        .revisions
        .iter()
        .map(|r| (r.revision_id.as_str(), r.active))
        .collect();
    assert_eq!(ids, [("2", true), ("1", false)]);
    assert_eq!(revs.revisions[1].source, VIP);
    assert_eq!(revs.revisions[1].name, format!("{}@1", created.name));

    // Pages of one.
    let page = client
        .list_script_revisions(proto::ListScriptRevisionsRequest {
            name: created.name.clone(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.revisions.len(), 1);
    assert!(!page.next_page_token.is_empty());
    let page2 = client
        .list_script_revisions(proto::ListScriptRevisionsRequest {
            name: created.name.clone(),
            page_size: 1,
            page_token: page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.revisions[0].revision_id, "1");
    assert!(page2.next_page_token.is_empty());

    // Roll back to revision 1.
    let rolled = client
        .activate_script_revision(proto::ActivateScriptRevisionRequest {
            name: format!("{}@1", created.name),
            etag: String::new(),
        })
        .await
        .expect("activate")
        .into_inner();
    assert_eq!(rolled.active_revision_id, "1");
    assert_eq!(rolled.revision_id, "1");
    let got = get(&mut client, &created.name).await;
    assert_eq!(got.source, VIP);
    assert_eq!(got.active_revision_id, "1");
    assert_eq!(got.display_name, "Whales");

    // A given revision, not the active one.
    let r2 = get(&mut client, &format!("{}@2", created.name)).await;
    assert_eq!((r2.revision_id.as_str(), r2.source.as_str()), ("2", VIP_V2));
    assert_eq!(r2.active_revision_id, "1");

    // A source change after a rollback numbers on from the latest revision.
    let v3 = client
        .update_script(proto::UpdateScriptRequest {
            script: Some(proto::Script {
                name: created.name.clone(),
                source: "fn matches(c) { false }".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .expect("update again")
        .into_inner();
    assert_eq!(v3.revision_id, "3");

    // Idempotent create; kind filter.
    let mut req = new_script("Anyone", ScriptKind::Segment, "fn matches(c) { true }");
    req.request_id = "3f1c7a9e-0000-4000-8000-000000000001".into();
    let first = client
        .create_script(req.clone())
        .await
        .unwrap()
        .into_inner();
    let again = client.create_script(req).await.unwrap().into_inner();
    assert_eq!(first.name, again.name);
    let offer = create(
        &mut client,
        "Nothing",
        ScriptKind::Offer,
        "fn offers(c, catalog) { [] }",
    )
    .await;
    let segments = client
        .list_scripts(proto::ListScriptsRequest {
            filter: "kind = SCRIPT_KIND_SEGMENT".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = segments.scripts.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, [created.name.as_str(), first.name.as_str()]);
    let offers = client
        .list_scripts(proto::ListScriptsRequest {
            filter: "kind = SCRIPT_KIND_OFFER".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(offers.scripts.len(), 1);
    assert_eq!(offers.scripts[0].name, offer.name);
    let bad_filter = client
        .list_scripts(proto::ListScriptsRequest {
            filter: "kind = SEGMENTS".into(),
            ..Default::default()
        })
        .await;
    assert_code(bad_filter, Code::InvalidArgument);
}

async fn create_rejects_bad_source(server: &TestServer) {
    let mut client = scripts(server);
    let bad = client
        .create_script(new_script(
            "Broken",
            ScriptKind::Segment,
            "fn matches(c) {\n    let x = 1;\n    c.ltv >= x +\n}\n",
        ))
        .await;
    let status = assert_code(bad, Code::InvalidArgument);
    let v = violations(&status);
    assert!(!v.is_empty());
    assert!(
        v.iter()
            .all(|(f, d)| f == "script.source" && d.starts_with("line ")),
        "{v:?}"
    );

    // Unknown functions and a missing entry point: one violation each.
    let bad = client
        .create_script(new_script(
            "Wrong kind",
            ScriptKind::Offer,
            "fn matches(c) {\n    no_such_fn(c)\n}\n",
        ))
        .await;
    let status = assert_code(bad, Code::InvalidArgument);
    let v = violations(&status);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v.iter().any(|(_, d)| d.contains("entry point")), "{v:?}");
    assert!(
        v.iter()
            .any(|(_, d)| d.starts_with("line 2, column 5: ") && d.contains("no_such_fn")),
        "{v:?}"
    );

    // Other fields.
    let bad = client
        .create_script(new_script(
            "",
            ScriptKind::Unspecified,
            "fn matches(c) { true }",
        ))
        .await;
    let status = assert_code(bad, Code::InvalidArgument);
    let fields: Vec<String> = violations(&status).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["script.display_name", "script.kind"]);
    assert_eq!(count_scripts(&mut client).await, 0);
}

async fn validate(server: &TestServer) {
    let mut client = scripts(server);
    let ok = client
        .validate_script(proto::ValidateScriptRequest {
            kind: ScriptKind::Segment as i32,
            source: VIP.into(),
        })
        .await
        .expect("validate")
        .into_inner();
    assert!(ok.valid);
    assert!(ok.diagnostics.is_empty());

    let syntax = client
        .validate_script(proto::ValidateScriptRequest {
            kind: ScriptKind::Segment as i32,
            source: "fn matches(c) {\n    let x = ;\n    true\n}\n".into(),
        })
        .await
        .expect("bad source is not an error status")
        .into_inner();
    assert!(!syntax.valid);
    assert_eq!(syntax.diagnostics.len(), 1);
    let d = &syntax.diagnostics[0];
    assert_eq!(d.line, 2, "{d:?}");
    assert!(d.column > 0, "{d:?}");
    assert!(!d.message.is_empty());

    let missing = client
        .validate_script(proto::ValidateScriptRequest {
            kind: ScriptKind::Message as i32,
            source: "fn matches(c) { true }".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!missing.valid);
    assert_eq!(missing.diagnostics.len(), 1);
    assert_eq!(missing.diagnostics[0].line, 0);
    assert!(
        missing.diagnostics[0]
            .message
            .contains("fn message(c, event)"),
        "{:?}",
        missing.diagnostics
    );

    let no_kind = client
        .validate_script(proto::ValidateScriptRequest {
            kind: 0,
            source: VIP.into(),
        })
        .await;
    assert_code(no_kind, Code::InvalidArgument);
}

async fn test_script(server: &TestServer) {
    let mut client = scripts(server);
    let customer = customer_with_orders(server).await;
    let script = create(&mut client, "Big spenders", ScriptKind::Segment, VIP).await;
    client
        .update_script(proto::UpdateScriptRequest {
            script: Some(proto::Script {
                name: script.name.clone(),
                source: VIP_V2.into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap();
    let before = count_scripts(&mut client).await;

    let run = |script: &str, subject: Subject| proto::TestScriptRequest {
        script: script.into(),
        subject: Some(subject),
        ..Default::default()
    };

    // The active revision (2) wants 5,000; the customer spent 1,500.
    let out = client
        .test_script(run(&script.name, Subject::Customer(customer.clone())))
        .await
        .expect("test active revision")
        .into_inner();
    assert_eq!(out.result_json, "false");
    assert_eq!(out.logs, ["ltv 1500.0"]);
    assert!(out.operations > 0);
    assert!(out.elapsed.is_some());
    assert_eq!(out.revision, format!("{}@2", script.name));

    // Revision 1 wants 1,000.
    let out = client
        .test_script(run(
            &format!("{}@1", script.name),
            Subject::Customer(customer.clone()),
        ))
        .await
        .expect("test revision 1")
        .into_inner();
    assert_eq!(out.result_json, "true");

    // An inline offer script over the stored catalogue.
    let mut customers = server.customers();
    for (sku, category, price) in [
        ("C-1", "coffee", 120.0),
        ("C-2", "coffee", 150.0),
        ("T-1", "tea", 75.0),
        ("M-1", "grinders", 40.0),
    ] {
        customers
            .upsert_product(proto::UpsertProductRequest {
                product: Some(proto::Product {
                    sku: sku.into(),
                    display_name: sku.into(),
                    category: category.into(),
                    price,
                    ..Default::default()
                }),
            })
            .await
            .expect("upsert product");
    }
    let offers = "fn offers(c, catalog) {\n    let bought = bought_skus(c);\n    let out = [];\n    \
                  for p in catalog {\n        if !(p.sku in bought) && c.has_bought(p.category) {\n            \
                  out.push(offer(p.sku, p.price, \"same category\"));\n        }\n    }\n    out\n}\n";
    let out = client
        .test_script(proto::TestScriptRequest {
            kind: ScriptKind::Offer as i32,
            source: offers.into(),
            subject: Some(Subject::Customer(customer.clone())),
            ..Default::default()
        })
        .await
        .expect("test inline offers")
        .into_inner();
    let result: Value = serde_json::from_str(&out.result_json).unwrap();
    assert_eq!(
        result,
        json!([
            {"sku": "C-2", "score": 150.0, "reason": "same category"},
            {"sku": "M-1", "score": 40.0, "reason": "same category"}
        ])
    );
    assert!(out.revision.is_empty());

    // ... and over a catalogue given inline.
    let out = client
        .test_script(proto::TestScriptRequest {
            kind: ScriptKind::Offer as i32,
            source: offers.into(),
            subject: Some(Subject::Customer(customer.clone())),
            catalog_json: json!([{"sku": "C-9", "display_name": "Decaf", "category": "coffee", "price": 99.0}])
                .to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let result: Value = serde_json::from_str(&out.result_json).unwrap();
    assert_eq!(result[0]["sku"], "C-9");

    // A message script for an inline customer and event.
    let message = "fn message(c, event) {\n    if event.kind != \"order_placed\" { return (); }\n    \
                   message(\"email\", `Thanks ${c.first_name}`, `Order ${event.fields.order_id}`)\n}\n";
    let out = client
        .test_script(proto::TestScriptRequest {
            kind: ScriptKind::Message as i32,
            source: message.into(),
            subject: Some(Subject::CustomerJson(
                json!({"display_name": "Can Demir", "email": "can@example.com", "consent": {"email": true}})
                    .to_string(),
            )),
            event_json: json!({"kind": "order_placed", "fields": {"order_id": "A1"}}).to_string(),
            ..Default::default()
        })
        .await
        .expect("test message")
        .into_inner();
    let result: Value = serde_json::from_str(&out.result_json).unwrap();
    assert_eq!(
        result,
        json!({"channel": "email", "subject": "Thanks Can", "body": "Order A1"})
    );

    // Bad inputs name their field.
    for (req, field) in [
        (
            proto::TestScriptRequest {
                kind: ScriptKind::Message as i32,
                source: message.into(),
                subject: Some(Subject::CustomerJson("{not json".into())),
                ..Default::default()
            },
            "customer_json",
        ),
        (
            proto::TestScriptRequest {
                kind: ScriptKind::Message as i32,
                source: message.into(),
                subject: Some(Subject::CustomerJson(r#"{"display_name": "X"}"#.into())),
                event_json: json!({"fields": {}}).to_string(),
                ..Default::default()
            },
            "event_json",
        ),
        (
            proto::TestScriptRequest {
                script: script.name.clone(),
                ..Default::default()
            },
            "customer",
        ),
        (
            proto::TestScriptRequest {
                script: script.name.clone(),
                source: VIP.into(),
                subject: Some(Subject::Customer(customer.clone())),
                ..Default::default()
            },
            "script",
        ),
        (
            proto::TestScriptRequest {
                kind: ScriptKind::Segment as i32,
                source: "fn matches(c) { nope(c) }".into(),
                subject: Some(Subject::Customer(customer.clone())),
                ..Default::default()
            },
            "source",
        ),
    ] {
        let status = assert_code(client.test_script(req).await, Code::InvalidArgument);
        let v = violations(&status);
        assert!(v.iter().any(|(f, _)| f == field), "{field}: {v:?}");
    }

    // A script that fails while running: INVALID_ARGUMENT inline, FAILED_PRECONDITION stored;
    // the position is in the message and the field violation.
    let thrower = "fn matches(c) {\n    let n = 0;\n    c.order_count / n > 1\n}\n";
    let inline = client
        .test_script(proto::TestScriptRequest {
            kind: ScriptKind::Segment as i32,
            source: thrower.into(),
            subject: Some(Subject::Customer(customer.clone())),
            ..Default::default()
        })
        .await;
    let status = assert_code(inline, Code::InvalidArgument);
    assert!(status.message().contains("line 3"), "{}", status.message());
    assert!(violations(&status)
        .iter()
        .any(|(f, d)| f == "source" && d.starts_with("line 3, column ")));
    let stored = create(&mut client, "Thrower", ScriptKind::Segment, thrower).await;
    let status = assert_code(
        client
            .test_script(run(&stored.name, Subject::Customer(customer.clone())))
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("line 3"), "{}", status.message());
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.metadata.get("line").map(String::as_str), Some("3"));

    // Nothing the dry runs did was saved.
    assert_eq!(count_scripts(&mut client).await, before + 1);
    let revs = client
        .list_script_revisions(proto::ListScriptRevisionsRequest {
            name: script.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revs.revisions.len(), 2);
}

async fn runaway_script(server: &TestServer) {
    let mut client = scripts(server);
    let customer = customer_with_orders(server).await;
    let endless =
        "fn matches(c) {\n    let n = 0;\n    loop {\n        n += 1;\n    }\n    true\n}\n";
    let before = count_scripts(&mut client).await;
    let mut dry_run = client.clone();
    let request = proto::TestScriptRequest {
        kind: ScriptKind::Segment as i32,
        source: endless.into(),
        subject: Some(Subject::Customer(customer.clone())),
        ..Default::default()
    };
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let mut c = dry_run.clone();
            let r = request.clone();
            tokio::spawn(async move { c.test_script(r).await })
        })
        .collect();
    // While the scripts spin, the server still answers other calls.
    let mut customers = server.customers();
    for _ in 0..5 {
        let got = customers
            .get_customer(proto::GetCustomerRequest {
                name: customer.clone(),
            })
            .await
            .expect("GetCustomer answers while scripts run");
        assert_eq!(got.into_inner().name, customer);
    }
    for run in runs {
        let status = assert_code(run.await.unwrap(), Code::ResourceExhausted);
        assert!(
            status.get_details_error_info().is_some(),
            "{}",
            status.message()
        );
    }
    let status = assert_code(dry_run.test_script(request).await, Code::ResourceExhausted);
    assert!(
        status.message().contains("operations") || status.message().contains("deadline"),
        "{}",
        status.message()
    );
    assert_eq!(count_scripts(&mut client).await, before);
}

async fn bad_names(server: &TestServer) {
    let mut client = scripts(server);
    for name in [
        "",
        "scripts/",
        "scripts/abc",
        "scripts/0",
        "script/1",
        "scripts/1@",
        "scripts/1@x",
        "customers/1",
    ] {
        let r = client
            .get_script(proto::GetScriptRequest { name: name.into() })
            .await;
        let status = assert_code(r, Code::InvalidArgument);
        assert_eq!(violations(&status)[0].0, "name", "{name}");
    }
    let r = client
        .activate_script_revision(proto::ActivateScriptRevisionRequest {
            name: "scripts/1".into(),
            etag: String::new(),
        })
        .await;
    assert_code(r, Code::InvalidArgument);
    let r = client
        .list_script_revisions(proto::ListScriptRevisionsRequest {
            name: "scripts/1@1".into(),
            ..Default::default()
        })
        .await;
    assert_code(r, Code::InvalidArgument);
    let r = client
        .update_script(proto::UpdateScriptRequest {
            script: Some(proto::Script {
                name: "scripts/1@1".into(),
                display_name: "x".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await;
    assert_code(r, Code::InvalidArgument);

    // Unknown scripts and revisions.
    let r = client
        .get_script(proto::GetScriptRequest {
            name: "scripts/404".into(),
        })
        .await;
    let status = assert_code(r, Code::NotFound);
    let info = status.get_details_resource_info().expect("resource info");
    assert_eq!(info.resource_type, "bakkal.v1.Script");
    assert_eq!(info.resource_name, "scripts/404");
    let r = client
        .list_script_revisions(proto::ListScriptRevisionsRequest {
            name: "scripts/404".into(),
            ..Default::default()
        })
        .await;
    assert_code(r, Code::NotFound);
    let r = client
        .update_script(proto::UpdateScriptRequest {
            script: Some(proto::Script {
                name: "scripts/404".into(),
                display_name: "x".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await;
    assert_code(r, Code::NotFound);
    let r = client
        .test_script(proto::TestScriptRequest {
            script: "scripts/404".into(),
            subject: Some(Subject::CustomerJson(r#"{"display_name": "X"}"#.into())),
            ..Default::default()
        })
        .await;
    assert_code(r, Code::NotFound);

    let s = create(
        &mut client,
        "Everyone",
        ScriptKind::Segment,
        "fn matches(c) { true }",
    )
    .await;
    for name in [format!("{}@2", s.name)] {
        let r = client
            .get_script(proto::GetScriptRequest { name: name.clone() })
            .await;
        let status = assert_code(r, Code::NotFound);
        assert!(status.message().contains(&name), "{}", status.message());
        let r = client
            .activate_script_revision(proto::ActivateScriptRevisionRequest {
                name: name.clone(),
                etag: String::new(),
            })
            .await;
        assert_code(r, Code::NotFound);
    }
    let r = client
        .test_script(proto::TestScriptRequest {
            script: s.name.clone(),
            subject: Some(Subject::Customer("customers/999".into())),
            ..Default::default()
        })
        .await;
    assert_code(r, Code::NotFound);
}

async fn routing_scripts(server: &TestServer) {
    let mut client = scripts(server);
    let customer = customer_with_orders(server).await;
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/route_by_topic.rhai"),
    )
    .unwrap();
    let valid = client
        .validate_script(proto::ValidateScriptRequest {
            kind: ScriptKind::Routing as i32,
            source: source.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(valid.valid, "{valid:?}");
    let wrong = client
        .validate_script(proto::ValidateScriptRequest {
            kind: ScriptKind::Routing as i32,
            source: "fn matches(c) { true }".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!wrong.valid);
    assert!(wrong.diagnostics[0]
        .message
        .contains("fn route(ticket, customer)"));

    let script = create(&mut client, "By topic", ScriptKind::Routing, &source).await;
    assert_eq!(script.kind, ScriptKind::Routing as i32);
    create(&mut client, "Segment", ScriptKind::Segment, VIP).await;
    let listed = client
        .list_scripts(proto::ListScriptsRequest {
            filter: "kind = SCRIPT_KIND_ROUTING".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.scripts.len(), 1);
    assert_eq!(listed.scripts[0].name, script.name);

    let ticket = |j: Value| proto::TestScriptRequest {
        script: script.name.clone(),
        subject: Some(Subject::Customer(customer.clone())),
        ticket_json: j.to_string(),
        ..Default::default()
    };
    let out = client
        .test_script(ticket(
            json!({"kind": "COMPLAINT", "subject": "Charged twice", "channel": "EMAIL"}),
        ))
        .await
        .expect("route a ticket")
        .into_inner();
    let got: Value = serde_json::from_str(&out.result_json).unwrap();
    assert_eq!(
        got,
        json!({"team": "teams/3", "topic": "billing", "priority": "HIGH"})
    );
    let out = client
        .test_script(ticket(json!({"kind": "FEEDBACK", "subject": "Nice"})))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.result_json, "null");

    // A routing script needs its ticket; a bad one names the field.
    let mut no_ticket = ticket(json!({}));
    no_ticket.ticket_json.clear();
    let status = assert_code(client.test_script(no_ticket).await, Code::InvalidArgument);
    assert_eq!(violations(&status)[0].0, "ticket_json");
    let status = assert_code(
        client.test_script(ticket(json!({"kind": "RANT"}))).await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&status)[0].0, "ticket_json");

    // An unknown key in the route fails the run: INVALID_ARGUMENT inline.
    let status = assert_code(
        client
            .test_script(proto::TestScriptRequest {
                kind: ScriptKind::Routing as i32,
                source: "fn route(t, c) {\n    #{ team: \"teams/2\", colour: \"red\" }\n}\n".into(),
                subject: Some(Subject::CustomerJson(r#"{"display_name": "Can"}"#.into())),
                ticket_json: "{}".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert!(
        status.message().contains("unknown key `colour`"),
        "{status:?}"
    );
}

on_both_backends!(
    lifecycle,
    create_rejects_bad_source,
    validate,
    test_script,
    runaway_script,
    bad_names,
    routing_scripts,
);
