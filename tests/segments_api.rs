//! `bakkal.v1.SegmentService` through a real server and client, on every configured backend:
//! the value model, scores and tiers, the pyramid, segments from SEGMENT scripts (checked
//! against the same predicate in SQL on the same database), refreshes and their events.

mod common;

use std::collections::HashMap;

use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, import_customers_request::Row, preview_segment_request::Target};
use common::{create_script, TestServer};
use prost_types::FieldMask;
use sqlx::{AnyConnection, Connection, Row as _};
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

fn segments(server: &TestServer) -> SegmentServiceClient<Channel> {
    SegmentServiceClient::new(server.channel.clone())
}

async fn db(server: &TestServer) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(&server.db_url)
        .await
        .expect("connect to the test database")
}

async fn count(conn: &mut AnyConnection, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(&mut *conn)
        .await
        .expect(sql)
        .try_get::<i64, _>(0)
        .expect("count")
}

async fn ids(conn: &mut AnyConnection, sql: &str) -> Vec<String> {
    sqlx::query(sql)
        .fetch_all(&mut *conn)
        .await
        .expect(sql)
        .iter()
        .map(|r| format!("customers/{}", r.try_get::<i64, _>(0).expect("id")))
        .collect()
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn assert_code(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code) -> tonic::Status {
    match result {
        Err(s) if s.code() == code => s,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

fn order(id: String, category: &str, amount: f64) -> proto::Order {
    proto::Order {
        order_id: id,
        currency: "TRY".into(),
        lines: vec![proto::OrderLine {
            sku: format!("SKU-{category}"),
            category: category.into(),
            quantity: 1,
            unit_price: amount,
        }],
        ..Default::default()
    }
}

/// Import customers `(email, region, order amounts)`, in this order.
async fn import(server: &TestServer, people: &[(String, &str, Vec<f64>)]) {
    let mut rows = Vec::new();
    for (email, region, _) in people {
        rows.push(proto::ImportCustomersRequest {
            row: Some(Row::Customer(proto::Customer {
                display_name: format!("Customer {email}"),
                email: email.clone(),
                region: region.to_string(),
                ..Default::default()
            })),
        });
    }
    for (email, _, amounts) in people {
        for (k, a) in amounts.iter().enumerate() {
            rows.push(proto::ImportCustomersRequest {
                row: Some(Row::Order(proto::ImportOrder {
                    order: Some(order(
                        format!("O-{email}-{k}"),
                        if k % 2 == 0 { "tea" } else { "coffee" },
                        *a,
                    )),
                    customer_email: email.clone(),
                })),
            });
        }
    }
    let res = server
        .customers()
        .import_customers(tokio_stream::iter(rows))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(res.rejected, 0, "{:?}", res.rejected_rows);
}

async fn customer_id(conn: &mut AnyConnection, email: &str) -> String {
    let id: i64 = sqlx::query("SELECT id FROM customers WHERE email = $1")
        .bind(email.to_string())
        .fetch_one(&mut *conn)
        .await
        .expect("customer by email")
        .try_get(0)
        .expect("id");
    format!("customers/{id}")
}

async fn create_segment(server: &TestServer, script: &str, filter: &str) -> proto::Segment {
    segments(server)
        .create_segment(proto::CreateSegmentRequest {
            segment: Some(proto::Segment {
                display_name: "Rule".into(),
                script: script.into(),
                filter: filter.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create segment")
        .into_inner()
}

/// Every member of a segment, paging with a small page size.
async fn members(server: &TestServer, segment: &str) -> Vec<String> {
    let mut client = segments(server);
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_segment_members(proto::ListSegmentMembersRequest {
                parent: segment.into(),
                page_size: 7,
                page_token: token,
            })
            .await
            .expect("list members")
            .into_inner();
        assert!(page.customers.len() <= 7);
        out.extend(page.customers);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn value_model_round_trip(server: &TestServer) {
    let mut client = segments(server);
    let m = client
        .get_value_model(proto::GetValueModelRequest {})
        .await
        .expect("default model")
        .into_inner();
    let names: Vec<&str> = m.tiers.iter().map(|t| t.display_name.as_str()).collect();
    assert_eq!(names, ["Platinum", "Gold", "Silver", "Bronze", "Standard"]);
    assert_eq!(m.weights.len(), 5);
    assert!(m.update_time.is_none());

    let set = proto::ValueModel {
        weights: HashMap::from([
            ("monetary".to_string(), 2.0),
            ("recency".to_string(), 1.0),
            ("attributes.visits".to_string(), 0.5),
        ]),
        tiers: vec![
            proto::ValueTier {
                display_name: "Top".into(),
                percent: 10.0,
            },
            proto::ValueTier {
                display_name: "Rest".into(),
                percent: 0.0,
            },
        ],
        ..Default::default()
    };
    let saved = client
        .set_value_model(proto::SetValueModelRequest {
            value_model: Some(set.clone()),
        })
        .await
        .expect("set model")
        .into_inner();
    let got = client
        .get_value_model(proto::GetValueModelRequest {})
        .await
        .expect("get model")
        .into_inner();
    assert_eq!(got.weights, set.weights);
    assert_eq!(got.tiers, set.tiers);
    assert_eq!(got.name, "valueModel");
    assert!(got.update_time.is_some());
    assert_eq!(got, saved);

    let bad = client
        .set_value_model(proto::SetValueModelRequest {
            value_model: Some(proto::ValueModel {
                weights: HashMap::from([("nope".to_string(), 1.0), ("monetary".to_string(), -1.0)]),
                tiers: vec![
                    proto::ValueTier {
                        display_name: "A".into(),
                        percent: 80.0,
                    },
                    proto::ValueTier {
                        display_name: "A".into(),
                        percent: 30.0,
                    },
                    proto::ValueTier {
                        display_name: "C".into(),
                        percent: 0.0,
                    },
                ],
                ..Default::default()
            }),
        })
        .await;
    let status = assert_code(bad, Code::InvalidArgument);
    let fields = violations(&status);
    for f in [
        "value_model.weights[nope]",
        "value_model.weights[monetary]",
        "value_model.weights",
        "value_model.tiers[1].display_name",
        "value_model.tiers",
    ] {
        assert!(fields.contains(&f.to_string()), "{f} missing in {fields:?}");
    }
    // unchanged
    let again = client
        .get_value_model(proto::GetValueModelRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.tiers, set.tiers);
}

async fn scores_tiers_and_pyramid(server: &TestServer) {
    // 100 customers; customer i spent 10·i in one order; odd ones in Ege, even in Marmara.
    let people: Vec<(String, &str, Vec<f64>)> = (1..=100)
        .map(|i| {
            (
                format!("p{i}@example.com"),
                if i % 2 == 1 { "Ege" } else { "Marmara" },
                vec![10.0 * i as f64],
            )
        })
        .collect();
    import(server, &people).await;
    let mut conn = db(server).await;
    let mut client = segments(server);
    client
        .set_value_model(proto::SetValueModelRequest {
            value_model: Some(proto::ValueModel {
                weights: HashMap::from([("monetary".to_string(), 1.0)]),
                ..Default::default()
            }),
        })
        .await
        .expect("set model");

    // Before scoring: no score.
    let top = customer_id(&mut conn, "p100@example.com").await;
    assert_code(
        client
            .get_customer_score(proto::GetCustomerScoreRequest {
                customer: top.clone(),
            })
            .await,
        Code::FailedPrecondition,
    );

    let out = client
        .compute_scores(proto::ComputeScoresRequest {})
        .await
        .expect("compute scores")
        .into_inner();
    assert_eq!(out.scored_count, 100);
    assert_eq!(out.changed_count, 0, "a first score is not a change");
    let counts: Vec<(String, i64)> = out
        .tier_counts
        .iter()
        .map(|t| (t.tier.clone(), t.customer_count))
        .collect();
    assert_eq!(
        counts,
        [
            ("Platinum".to_string(), 1),
            ("Gold".to_string(), 4),
            ("Silver".to_string(), 15),
            ("Bronze".to_string(), 30),
            ("Standard".to_string(), 50)
        ]
    );
    let tier_of = |i: usize| match i {
        100 => "Platinum",
        96..=99 => "Gold",
        81..=95 => "Silver",
        51..=80 => "Bronze",
        _ => "Standard",
    };
    for i in [1, 50, 51, 80, 81, 95, 96, 99, 100] {
        let name = customer_id(&mut conn, &format!("p{i}@example.com")).await;
        let s = client
            .get_customer_score(proto::GetCustomerScoreRequest { customer: name })
            .await
            .expect("score")
            .into_inner();
        assert_eq!(s.tier, tier_of(i), "customer p{i}");
        assert!(
            (s.score - (i - 1) as f64 / 99.0 * 100.0).abs() < 1e-3,
            "{s:?}"
        );
        assert!((1..=5).contains(&s.rfm_r) && (1..=5).contains(&s.rfm_f));
        assert_eq!(s.rfm_m, 1 + ((i - 1) * 5 / 100) as i32, "p{i}");
        assert!(s.compute_time.is_some());
    }
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) FROM events WHERE kind = 'tier_changed'"
        )
        .await,
        0
    );

    // The pyramid.
    let p = client
        .get_pyramid(proto::GetPyramidRequest {
            segment: String::new(),
            breakdown: "region".into(),
        })
        .await
        .expect("pyramid")
        .into_inner();
    assert_eq!(p.customer_count, 100);
    assert!((p.revenue - 50_500.0).abs() < 1e-6);
    assert_eq!(p.tiers.len(), 5);
    let plat = &p.tiers[0];
    assert_eq!((plat.tier.as_str(), plat.customer_count), ("Platinum", 1));
    assert!((plat.revenue_share - 1000.0 / 50_500.0).abs() < 1e-9);
    assert!((plat.min_score - 100.0).abs() < 1e-6 && (plat.max_score - 100.0).abs() < 1e-6);
    assert_eq!(plat.breakdown.len(), 1);
    assert_eq!(plat.breakdown[0].value, "Marmara");
    let gold = &p.tiers[1];
    // p96..p99: 960+970+980+990
    assert!((gold.revenue_share - 3900.0 / 50_500.0).abs() < 1e-9);
    let by_region: Vec<(String, i64)> = gold
        .breakdown
        .iter()
        .map(|b| (b.value.clone(), b.customer_count))
        .collect();
    assert_eq!(
        by_region,
        [("Ege".to_string(), 2), ("Marmara".to_string(), 2)]
    );
    let share: f64 = p.tiers.iter().map(|t| t.revenue_share).sum();
    assert!((share - 1.0).abs() < 1e-9);
    for t in &p.tiers {
        let n: i64 = t.breakdown.iter().map(|b| b.customer_count).sum();
        assert_eq!(n, t.customer_count);
    }
    let p = client
        .get_pyramid(proto::GetPyramidRequest {
            segment: String::new(),
            breakdown: "stage".into(),
        })
        .await
        .expect("pyramid by stage")
        .into_inner();
    assert!(p
        .tiers
        .iter()
        .all(|t| t.breakdown.iter().all(|b| b.value == "ACTIVE")));

    // p1 jumps to the top: five customers change tier, each gets one event.
    let p1 = customer_id(&mut conn, "p1@example.com").await;
    server
        .customers()
        .record_order(proto::RecordOrderRequest {
            parent: p1.clone(),
            order: Some(order("BIG-1".into(), "tea", 5000.0)),
        })
        .await
        .expect("record order");
    let out = client
        .compute_scores(proto::ComputeScoresRequest {})
        .await
        .expect("compute again")
        .into_inner();
    assert_eq!(out.changed_count, 5);
    let s = client
        .get_customer_score(proto::GetCustomerScoreRequest {
            customer: p1.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.tier, "Platinum");
    let p1_id = p1.trim_start_matches("customers/");
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT COUNT(*) FROM events WHERE kind = 'tier_changed' AND customer_id = {p1_id}"
            )
        )
        .await,
        1
    );
    let payload: String = sqlx::query(&format!(
        "SELECT payload FROM events WHERE kind = 'tier_changed' AND customer_id = {p1_id}"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["from"], "Standard");
    assert_eq!(v["to"], "Platinum");
    // Nothing changed since: no more events.
    let out = client
        .compute_scores(proto::ComputeScoresRequest {})
        .await
        .expect("compute a third time")
        .into_inner();
    assert_eq!(out.changed_count, 0);
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) FROM events WHERE kind = 'tier_changed'"
        )
        .await,
        5
    );
}

/// A mixed population: regions, 0–4 orders of varying amounts.
fn population(n: usize) -> Vec<(String, &'static str, Vec<f64>)> {
    const REGIONS: [&str; 3] = ["Ege", "Marmara", "Akdeniz"];
    (0..n)
        .map(|i| {
            let orders = (0..(i * 7) % 5)
                .map(|k| ((i * 37 + k * 53) % 120) as f64 + 0.5)
                .collect();
            (format!("m{i}@example.com"), REGIONS[(i / 2) % 3], orders)
        })
        .collect()
}

const RULE: &str =
    "fn matches(c) {\n    c.total_spent > 100.0 && c.region == \"Ege\" && c.order_count >= 2\n}\n";
const RULE_SQL: &str = "SELECT id FROM customers WHERE merged_into IS NULL AND \
    deleted_time IS NULL AND total_spent > 100000000 AND region = 'Ege' AND order_count >= 2 \
    ORDER BY id";

async fn segment_equals_sql_and_refreshes(server: &TestServer) {
    import(server, &population(90)).await;
    let mut conn = db(server).await;
    let mut client = segments(server);
    let script = create_script(server, proto::ScriptKind::Segment, RULE).await;
    let seg = create_segment(server, &script, "").await;
    assert!(seg.name.starts_with("segments/"));
    assert_eq!(seg.member_count, 0);
    assert!(seg.refresh_time.is_none());
    let expected = ids(&mut conn, RULE_SQL).await;
    assert!(
        expected.len() >= 3,
        "the data set should give a few members"
    );

    // Preview: counts and a sample, nothing saved.
    let preview = client
        .preview_segment(proto::PreviewSegmentRequest {
            target: Some(Target::Name(seg.name.clone())),
            sample_size: 2,
            ..Default::default()
        })
        .await
        .expect("preview")
        .into_inner();
    assert!(
        preview.evaluated_in_database,
        "a pure predicate runs as SQL"
    );
    assert_eq!(preview.matched_count, expected.len() as i64);
    assert_eq!(preview.evaluated_count, 90);
    // The interpreter agrees.
    let interpreted = client
        .preview_segment(proto::PreviewSegmentRequest {
            target: Some(Target::Name(seg.name.clone())),
            sample_size: 2,
            interpreter_only: true,
            ..Default::default()
        })
        .await
        .expect("preview in the interpreter")
        .into_inner();
    assert!(!interpreted.evaluated_in_database);
    assert_eq!(interpreted.matched_count, preview.matched_count);
    assert_eq!(interpreted.evaluated_count, 90);
    assert_eq!(interpreted.sample, preview.sample);
    assert_eq!(interpreted.tier_breakdown, preview.tier_breakdown);
    assert_eq!(preview.error_count, 0);
    assert_eq!(preview.sample, expected[..2]);
    assert_eq!(
        preview.tier_breakdown.get("UNSCORED").copied(),
        Some(expected.len() as i64)
    );
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) FROM segment_members").await,
        0
    );
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM events").await, 0);
    // The same rule by script name, with a base filter.
    let by_script = client
        .preview_segment(proto::PreviewSegmentRequest {
            target: Some(Target::Script(format!("{script}@1"))),
            filter: "region = \"Marmara\"".into(),
            sample_size: 0,
            interpreter_only: false,
        })
        .await
        .expect("preview by script")
        .into_inner();
    assert_eq!(by_script.matched_count, 0);
    assert_eq!(by_script.evaluated_count, 30);

    // Refresh: exactly the SQL's members, all of them entered.
    let r = client
        .refresh_segment(proto::RefreshSegmentRequest {
            name: seg.name.clone(),
            ..Default::default()
        })
        .await
        .expect("refresh")
        .into_inner();
    assert_eq!(r.member_count, expected.len() as i64);
    assert_eq!(r.entered_count, expected.len() as i64);
    assert_eq!(r.exited_count, 0);
    assert_eq!(r.evaluated_count, 90);
    assert!(r.evaluated_in_database);
    let got = members(server, &seg.name).await;
    assert_eq!(got, expected);
    // The same rule in the interpreter, as a segment of its own: the same members.
    let twin = create_segment(server, &script, "").await;
    let r2 = client
        .refresh_segment(proto::RefreshSegmentRequest {
            name: twin.name.clone(),
            interpreter_only: true,
        })
        .await
        .expect("refresh in the interpreter")
        .into_inner();
    assert!(!r2.evaluated_in_database);
    assert_eq!(r2.error_count, 0);
    assert_eq!(members(server, &twin.name).await, expected);
    let s = r.segment.expect("segment");
    assert_eq!(s.member_count, expected.len() as i64);
    assert!(s.refresh_time.is_some() && s.refresh_duration.is_some());
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) FROM events WHERE kind = 'segment_entered'"
        )
        .await,
        2 * expected.len() as i64
    );

    // A member leaves Ege; a non-member of Ege buys enough to come in.
    let leaver = expected[0].clone();
    let mut customers: CustomerServiceClient<Channel> = server.customers();
    customers
        .update_customer(proto::UpdateCustomerRequest {
            customer: Some(proto::Customer {
                name: leaver.clone(),
                region: "Marmara".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["region".into()],
            }),
        })
        .await
        .expect("move region");
    let outsiders = ids(
        &mut conn,
        "SELECT id FROM customers WHERE region = 'Ege' AND order_count = 0 ORDER BY id",
    )
    .await;
    let joiner = outsiders[0].clone();
    for k in 0..2 {
        customers
            .record_order(proto::RecordOrderRequest {
                parent: joiner.clone(),
                order: Some(order(format!("J-{k}"), "tea", 80.0)),
            })
            .await
            .expect("record order");
    }
    let r = client
        .refresh_segment(proto::RefreshSegmentRequest {
            name: seg.name.clone(),
            ..Default::default()
        })
        .await
        .expect("refresh again")
        .into_inner();
    assert_eq!((r.entered_count, r.exited_count), (1, 1));
    let expected = ids(&mut conn, RULE_SQL).await;
    assert_eq!(members(server, &seg.name).await, expected);
    let r2 = client
        .refresh_segment(proto::RefreshSegmentRequest {
            name: twin.name.clone(),
            interpreter_only: true,
        })
        .await
        .expect("refresh the twin again")
        .into_inner();
    assert_eq!((r2.entered_count, r2.exited_count), (1, 1));
    assert_eq!(members(server, &twin.name).await, expected);
    assert!(expected.contains(&joiner) && !expected.contains(&leaver));
    let leaver_id = leaver.trim_start_matches("customers/");
    let joiner_id = joiner.trim_start_matches("customers/");
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT COUNT(*) FROM events WHERE kind = 'segment_exited' AND customer_id = {leaver_id}"
            )
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT COUNT(*) FROM events WHERE kind = 'segment_entered' AND customer_id = {joiner_id}"
            )
        )
        .await,
        2
    );
    // Unchanged data: nothing enters or leaves.
    let r = client
        .refresh_segment(proto::RefreshSegmentRequest {
            name: seg.name.clone(),
            ..Default::default()
        })
        .await
        .expect("refresh a third time")
        .into_inner();
    assert_eq!((r.entered_count, r.exited_count), (0, 0));

    // A rule over orders reads them (one query per batch) and agrees with SQL too.
    let orders_script = create_script(
        server,
        proto::ScriptKind::Segment,
        "fn matches(c) { c.orders().len() >= 3 && has_bought(c, \"coffee\") }",
    )
    .await;
    let seg2 = create_segment(server, &orders_script, "").await;
    let r = client
        .refresh_segment(proto::RefreshSegmentRequest {
            name: seg2.name.clone(),
            ..Default::default()
        })
        .await
        .expect("refresh orders rule")
        .into_inner();
    assert_eq!(r.error_count, 0, "{:?}", r.error_examples);
    let expected2 = ids(
        &mut conn,
        "SELECT c.id FROM customers c WHERE (SELECT COUNT(*) FROM orders o \
         WHERE o.customer_id = c.id) >= 3 ORDER BY c.id",
    )
    .await;
    assert!(!expected2.is_empty());
    assert_eq!(members(server, &seg2.name).await, expected2);

    // The pyramid of a segment counts its members only.
    client
        .compute_scores(proto::ComputeScoresRequest {})
        .await
        .expect("scores");
    let p = client
        .get_pyramid(proto::GetPyramidRequest {
            segment: seg.name.clone(),
            breakdown: "attributes.none".into(),
        })
        .await
        .expect("segment pyramid")
        .into_inner();
    assert_eq!(p.customer_count, expected.len() as i64);
    assert!(p
        .tiers
        .iter()
        .all(|t| t.breakdown.iter().all(|b| b.value.is_empty())));

    let list = client
        .list_segments(proto::ListSegmentsRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    let names: Vec<&str> = list.segments.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, [seg.name.as_str(), twin.name.as_str()]);
    let list = client
        .list_segments(proto::ListSegmentsRequest {
            page_size: 2,
            page_token: list.next_page_token,
        })
        .await
        .expect("list page 2")
        .into_inner();
    assert_eq!(list.segments.len(), 1);
    assert_eq!(list.segments[0].name, seg2.name);
    assert!(list.next_page_token.is_empty());
}

async fn script_errors_are_counted(server: &TestServer) {
    import(server, &population(30)).await;
    let mut conn = db(server).await;
    let script = create_script(
        server,
        proto::ScriptKind::Segment,
        "fn matches(c) {\n    if c.order_count == 0 { throw \"no orders\"; }\n    c.order_count >= 2\n}\n",
    )
    .await;
    let seg = create_segment(server, &script, "").await;
    let prospects = count(
        &mut conn,
        "SELECT COUNT(*) FROM customers WHERE order_count = 0",
    )
    .await;
    let matched = count(
        &mut conn,
        "SELECT COUNT(*) FROM customers WHERE order_count >= 2",
    )
    .await;
    assert!(prospects > 5);
    let mut client = segments(server);
    let p = client
        .preview_segment(proto::PreviewSegmentRequest {
            target: Some(Target::Name(seg.name.clone())),
            ..Default::default()
        })
        .await
        .expect("preview finishes")
        .into_inner();
    assert_eq!(p.evaluated_count, 30);
    assert_eq!(p.error_count, prospects);
    assert_eq!(p.matched_count, matched);
    assert_eq!(p.error_examples.len(), 5);
    assert!(p.error_examples[0].customer.starts_with("customers/"));
    assert!(
        p.error_examples[0].message.contains("no orders"),
        "{:?}",
        p.error_examples
    );
    let r = client
        .refresh_segment(proto::RefreshSegmentRequest {
            name: seg.name.clone(),
            ..Default::default()
        })
        .await
        .expect("refresh finishes")
        .into_inner();
    assert_eq!(r.error_count, prospects);
    assert_eq!(r.member_count, matched);
    assert_eq!(r.error_examples.len(), 5);
}

async fn bad_input(server: &TestServer) {
    let mut client = segments(server);
    let s = assert_code(
        client
            .get_segment(proto::GetSegmentRequest {
                name: "segments/x".into(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s), ["name"]);
    assert_code(
        client
            .get_segment(proto::GetSegmentRequest {
                name: "segments/999".into(),
            })
            .await,
        Code::NotFound,
    );
    let s = assert_code(
        client
            .create_segment(proto::CreateSegmentRequest {
                segment: Some(proto::Segment {
                    display_name: " ".into(),
                    script: "nope".into(),
                    filter: "bogus = 1".into(),
                    ..Default::default()
                }),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violations(&s),
        ["segment.display_name", "segment.script", "segment.filter"]
    );
    let s = assert_code(
        client
            .create_segment(proto::CreateSegmentRequest {
                segment: Some(proto::Segment {
                    display_name: "x".into(),
                    script: "scripts/999".into(),
                    ..Default::default()
                }),
            })
            .await,
        Code::NotFound,
    );
    assert!(s.message().contains("scripts/999"));
    let offer = create_script(
        server,
        proto::ScriptKind::Offer,
        "fn offers(c, catalog) { [] }",
    )
    .await;
    let s = assert_code(
        client
            .create_segment(proto::CreateSegmentRequest {
                segment: Some(proto::Segment {
                    display_name: "x".into(),
                    script: offer,
                    ..Default::default()
                }),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s), ["segment.script"]);
    let rule = create_script(server, proto::ScriptKind::Segment, RULE).await;
    assert_code(
        client
            .create_segment(proto::CreateSegmentRequest {
                segment: Some(proto::Segment {
                    display_name: "x".into(),
                    script: format!("{rule}@9"),
                    ..Default::default()
                }),
            })
            .await,
        Code::NotFound,
    );
    let seg = create_segment(server, &rule, "tier = \"Gold\" AND stage = ACTIVE").await;
    let s = assert_code(
        client
            .list_segment_members(proto::ListSegmentMembersRequest {
                parent: seg.name.clone(),
                page_size: 5000,
                page_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s), ["page_size"]);
    let s = assert_code(
        client
            .list_segment_members(proto::ListSegmentMembersRequest {
                parent: seg.name.clone(),
                page_size: 10,
                page_token: "zz".into(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s), ["page_token"]);
    assert_code(
        client
            .list_segment_members(proto::ListSegmentMembersRequest {
                parent: "segments/999".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
    );
    let s = assert_code(
        client
            .get_pyramid(proto::GetPyramidRequest {
                segment: "seg/1".into(),
                breakdown: "attributes.a b".into(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s), ["segment", "breakdown"]);
    let s = assert_code(
        client
            .get_customer_score(proto::GetCustomerScoreRequest {
                customer: "customers/abc".into(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s), ["customer"]);
    assert_code(
        client
            .get_customer_score(proto::GetCustomerScoreRequest {
                customer: "customers/12345".into(),
            })
            .await,
        Code::NotFound,
    );
    let s = assert_code(
        client
            .preview_segment(proto::PreviewSegmentRequest::default())
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s), ["target"]);
    let s = assert_code(
        client
            .preview_segment(proto::PreviewSegmentRequest {
                target: Some(Target::Script(rule.clone())),
                sample_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s), ["sample_size"]);
    let s = assert_code(
        client
            .preview_segment(proto::PreviewSegmentRequest {
                target: Some(Target::Script(rule)),
                filter: "tier > 3".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s), ["filter"]);
    let s = assert_code(
        client
            .refresh_segment(proto::RefreshSegmentRequest {
                name: "customers/1".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s), ["name"]);
}

on_both_backends!(
    value_model_round_trip,
    scores_tiers_and_pyramid,
    segment_equals_sql_and_refreshes,
    script_errors_are_counted,
    bad_input,
);
