//! `bakkal.v1.LoyaltyService` through a real server and client, on every configured backend:
//! the program with its etag, points earned in the order's transaction and reversed by a
//! refund, redemptions (short balance writes nothing; a retried request id redeems once),
//! expiry exactly once, and the `tier_changed` event of a tier change.

mod common;

use bakkal::proto::loyalty_service_client::LoyaltyServiceClient;
use bakkal::proto::{self, PointsTransactionKind};
use common::TestServer;
use sqlx::{AnyConnection, Connection, Row as _};
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

fn loyalty(server: &TestServer) -> LoyaltyServiceClient<Channel> {
    LoyaltyServiceClient::new(server.channel.clone())
}

async fn db(server: &TestServer) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(&server.db_url)
        .await
        .expect("connect to the test database")
}

async fn customer(server: &TestServer, email: &str) -> String {
    server
        .customers()
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: email.into(),
                email: email.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create customer")
        .into_inner()
        .name
}

async fn order(
    server: &TestServer,
    customer: &str,
    order_id: &str,
    lines: &[(&str, f64)],
    status: proto::OrderStatus,
) {
    server
        .customers()
        .record_order(proto::RecordOrderRequest {
            parent: customer.into(),
            order: Some(proto::Order {
                order_id: order_id.into(),
                currency: "TRY".into(),
                status: status as i32,
                lines: lines
                    .iter()
                    .map(|(cat, price)| proto::OrderLine {
                        sku: format!("{cat}-1"),
                        category: cat.to_string(),
                        quantity: 1,
                        unit_price: *price,
                    })
                    .collect(),
                ..Default::default()
            }),
        })
        .await
        .expect("record order");
}

async fn set_program(server: &TestServer, p: proto::LoyaltyProgram) -> proto::LoyaltyProgram {
    loyalty(server)
        .update_loyalty_program(proto::UpdateLoyaltyProgramRequest {
            program: Some(p),
            update_mask: None,
        })
        .await
        .expect("update program")
        .into_inner()
}

fn tiers() -> Vec<proto::LoyaltyTier> {
    vec![
        proto::LoyaltyTier {
            name: "Silver".into(),
            threshold: 100,
        },
        proto::LoyaltyTier {
            name: "Gold".into(),
            threshold: 500,
        },
    ]
}

async fn account(server: &TestServer, c: &str) -> proto::LoyaltyAccount {
    loyalty(server)
        .get_loyalty_account(proto::GetLoyaltyAccountRequest {
            name: format!("{c}/loyaltyAccount"),
        })
        .await
        .expect("get account")
        .into_inner()
}

async fn ledger(server: &TestServer, c: &str) -> Vec<proto::PointsTransaction> {
    loyalty(server)
        .list_points_transactions(proto::ListPointsTransactionsRequest {
            parent: format!("{c}/loyaltyAccount"),
            ..Default::default()
        })
        .await
        .expect("list transactions")
        .into_inner()
        .transactions
}

fn kinds(l: &[proto::PointsTransaction]) -> Vec<(PointsTransactionKind, i64)> {
    l.iter().map(|t| (t.kind(), t.points)).collect()
}

async fn redeem(
    server: &TestServer,
    c: &str,
    points: i64,
    request_id: &str,
) -> Result<proto::PointsTransaction, tonic::Status> {
    loyalty(server)
        .redeem_points(proto::RedeemPointsRequest {
            account: format!("{c}/loyaltyAccount"),
            points,
            reason: "coupon".into(),
            request_id: request_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn the_program_has_an_etag(server: &TestServer) {
    let mut client = loyalty(server);
    let p = client
        .get_loyalty_program(proto::GetLoyaltyProgramRequest {
            name: "loyaltyProgram".into(),
        })
        .await
        .expect("get program")
        .into_inner();
    assert_eq!(p.name, "loyaltyProgram");
    assert!((p.points_per_unit - 1.0).abs() < 1e-9);
    let updated = client
        .update_loyalty_program(proto::UpdateLoyaltyProgramRequest {
            program: Some(proto::LoyaltyProgram {
                expiry_days: 365,
                etag: p.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["expiry_days".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.expiry_days, 365);
    assert!(
        (updated.points_per_unit - 1.0).abs() < 1e-9,
        "not in the mask"
    );
    assert_ne!(updated.etag, p.etag);

    let stale = client
        .update_loyalty_program(proto::UpdateLoyaltyProgramRequest {
            program: Some(proto::LoyaltyProgram {
                expiry_days: 10,
                etag: p.etag,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["expiry_days".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let mut bad = tiers();
    bad[1].threshold = 50;
    let err = client
        .update_loyalty_program(proto::UpdateLoyaltyProgramRequest {
            program: Some(proto::LoyaltyProgram {
                points_per_unit: -1.0,
                tiers: bad,
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    assert!(
        fields.contains(&"program.points_per_unit".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"program.tiers[1].threshold".to_string()),
        "{fields:?}"
    );
}

async fn orders_earn_and_refunds_reverse(server: &TestServer) {
    let mut multipliers = std::collections::HashMap::new();
    multipliers.insert("coffee".to_string(), 2.0);
    set_program(
        server,
        proto::LoyaltyProgram {
            points_per_unit: 1.0,
            category_multipliers: multipliers,
            ..Default::default()
        },
    )
    .await;
    let c = customer(server, "a@example.com").await;
    assert_eq!(account(server, &c).await.balance, 0);
    order(
        server,
        &c,
        "O-1",
        &[("coffee", 100.0), ("tea", 50.5)],
        proto::OrderStatus::Paid,
    )
    .await;
    // 100 × 2 + 50.5, floored
    let a = account(server, &c).await;
    assert_eq!((a.balance, a.lifetime_earned), (250, 250));
    // Recording the same order again earns nothing more.
    order(
        server,
        &c,
        "O-1",
        &[("coffee", 100.0), ("tea", 50.5)],
        proto::OrderStatus::Paid,
    )
    .await;
    order(
        server,
        &c,
        "O-2",
        &[("tea", 10.0)],
        proto::OrderStatus::Paid,
    )
    .await;
    assert_eq!(account(server, &c).await.balance, 260);
    let l = ledger(server, &c).await;
    assert_eq!(
        kinds(&l),
        [
            (PointsTransactionKind::Earn, 10),
            (PointsTransactionKind::Earn, 250)
        ]
    );
    assert_eq!(l[1].order, format!("{c}/orders/O-1"));
    assert_eq!(l[0].balance_after, 260);

    order(
        server,
        &c,
        "O-1",
        &[("coffee", 100.0), ("tea", 50.5)],
        proto::OrderStatus::Refunded,
    )
    .await;
    let a = account(server, &c).await;
    assert_eq!((a.balance, a.lifetime_earned), (10, 10));
    let l = ledger(server, &c).await;
    assert_eq!(l[0].kind(), PointsTransactionKind::Refund);
    assert_eq!(l[0].points, -250);
    assert_eq!(l.len(), 3);
    // A refund recorded again does not reverse twice.
    order(
        server,
        &c,
        "O-1",
        &[("coffee", 100.0), ("tea", 50.5)],
        proto::OrderStatus::Refunded,
    )
    .await;
    assert_eq!(ledger(server, &c).await.len(), 3);

    // Paging.
    let page = loyalty(server)
        .list_points_transactions(proto::ListPointsTransactionsRequest {
            parent: format!("{c}/loyaltyAccount"),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.transactions.len(), 2);
    let rest = loyalty(server)
        .list_points_transactions(proto::ListPointsTransactionsRequest {
            parent: format!("{c}/loyaltyAccount"),
            page_size: 2,
            page_token: page.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        kinds(&rest.transactions),
        [(PointsTransactionKind::Earn, 250)]
    );
    assert!(rest.next_page_token.is_empty());
}

async fn redeem_checks_the_balance_and_is_idempotent(server: &TestServer) {
    let c = customer(server, "b@example.com").await;
    order(
        server,
        &c,
        "R-1",
        &[("tea", 120.0)],
        proto::OrderStatus::Paid,
    )
    .await;
    assert_eq!(account(server, &c).await.balance, 120);

    let err = redeem(server, &c, 500, "r-short").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let pf = err.get_details_precondition_failure().expect("details");
    assert_eq!(pf.violations[0].r#type, "INSUFFICIENT_POINTS");
    assert_eq!(pf.violations[0].subject, format!("{c}/loyaltyAccount"));
    assert_eq!(account(server, &c).await.balance, 120);
    assert_eq!(ledger(server, &c).await.len(), 1, "nothing written");

    let first = redeem(server, &c, 100, "r-1").await.expect("redeem");
    assert_eq!(first.kind(), PointsTransactionKind::Redeem);
    assert_eq!((first.points, first.balance_after), (-100, 20));
    let again = redeem(server, &c, 100, "r-1").await.expect("retry");
    assert_eq!(again.name, first.name);
    assert_eq!(account(server, &c).await.balance, 20);
    assert_eq!(ledger(server, &c).await.len(), 2);

    // Adjustments: a credit, and a debit beyond the balance refused.
    let adj = loyalty(server)
        .adjust_points(proto::AdjustPointsRequest {
            account: format!("{c}/loyaltyAccount"),
            points: 30,
            reason: "goodwill".into(),
            request_id: "a-1".into(),
        })
        .await
        .expect("adjust")
        .into_inner();
    assert_eq!(adj.balance_after, 50);
    let err = loyalty(server)
        .adjust_points(proto::AdjustPointsRequest {
            account: format!("{c}/loyaltyAccount"),
            points: -51,
            reason: "correction".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let err = redeem(server, "customers/999999", 1, "").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = loyalty(server)
        .redeem_points(proto::RedeemPointsRequest {
            account: "customers/1".into(),
            points: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

async fn points_expire_exactly_once(server: &TestServer) {
    set_program(
        server,
        proto::LoyaltyProgram {
            points_per_unit: 1.0,
            expiry_days: 30,
            ..Default::default()
        },
    )
    .await;
    let c = customer(server, "e@example.com").await;
    order(
        server,
        &c,
        "E-1",
        &[("tea", 100.0)],
        proto::OrderStatus::Paid,
    )
    .await;
    order(
        server,
        &c,
        "E-2",
        &[("tea", 40.0)],
        proto::OrderStatus::Paid,
    )
    .await;
    let a = account(server, &c).await;
    assert_eq!(a.balance, 140);
    assert_eq!(a.expiring_soon_points, 140, "30 days is soon");
    assert!(a.next_expire_time.is_some());
    // 30 come out of the oldest lot first: 70 of E-1 are left to expire.
    redeem(server, &c, 30, "x-1").await.expect("redeem");
    // E-1's lot is due (backdated in the database); E-2's is not.
    let mut conn = db(server).await;
    sqlx::query("UPDATE points_transactions SET expire_time = 1 WHERE order_id = 'E-1'")
        .execute(&mut conn)
        .await
        .expect("backdate");

    let mut client = loyalty(server);
    let out = client
        .run_expiry_sweep(proto::RunExpirySweepRequest {})
        .await
        .expect("sweep")
        .into_inner();
    assert_eq!((out.expired_transactions, out.expired_points), (1, 70));
    let again = client
        .run_expiry_sweep(proto::RunExpirySweepRequest {})
        .await
        .expect("sweep again")
        .into_inner();
    assert_eq!(again.expired_transactions, 0);
    let l = ledger(server, &c).await;
    let expired: Vec<_> = l
        .iter()
        .filter(|t| t.kind() == PointsTransactionKind::Expire)
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].points, -70);
    assert_eq!(account(server, &c).await.balance, 40);
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM points_transactions WHERE kind = 'EXPIRE'")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(n, 1);
}

async fn a_tier_change_writes_an_event(server: &TestServer) {
    set_program(
        server,
        proto::LoyaltyProgram {
            points_per_unit: 1.0,
            tiers: tiers(),
            ..Default::default()
        },
    )
    .await;
    let c = customer(server, "t@example.com").await;
    let id: i64 = c.trim_start_matches("customers/").parse().unwrap();
    order(
        server,
        &c,
        "T-1",
        &[("tea", 120.0)],
        proto::OrderStatus::Paid,
    )
    .await;
    let a = account(server, &c).await;
    assert_eq!(a.tier, "Silver");
    assert_eq!((a.next_tier.as_str(), a.points_to_next_tier), ("Gold", 380));
    order(
        server,
        &c,
        "T-2",
        &[("tea", 400.0)],
        proto::OrderStatus::Paid,
    )
    .await;
    assert_eq!(account(server, &c).await.tier, "Gold");
    // Redeeming does not lower the tier (it counts points earned); a refund does.
    redeem(server, &c, 500, "t-r").await.expect("redeem");
    assert_eq!(account(server, &c).await.tier, "Gold");
    order(
        server,
        &c,
        "T-2",
        &[("tea", 400.0)],
        proto::OrderStatus::Refunded,
    )
    .await;
    assert_eq!(account(server, &c).await.tier, "Silver");

    let mut conn = db(server).await;
    let rows = sqlx::query(&format!(
        "SELECT payload FROM events WHERE kind = 'tier_changed' AND customer_id = {id} ORDER BY id"
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let payloads: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::from_str(&r.try_get::<String, _>(0).unwrap()).unwrap())
        .collect();
    let moves: Vec<(String, String)> = payloads
        .iter()
        .map(|p| {
            assert_eq!(p["ladder"], "loyalty");
            (
                p["from"].as_str().unwrap().to_string(),
                p["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("".to_string(), "Silver".to_string()),
            ("Silver".to_string(), "Gold".to_string()),
            ("Gold".to_string(), "Silver".to_string()),
        ]
    );
}

on_both_backends!(
    the_program_has_an_etag,
    orders_earn_and_refunds_reverse,
    redeem_checks_the_balance_and_is_idempotent,
    points_expire_exactly_once,
    a_tier_change_writes_an_event,
);
