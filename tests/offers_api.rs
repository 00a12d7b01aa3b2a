//! `bakkal.v1.OfferService` through a real server and client, on every configured backend:
//! the live campaigns' offer scripts merged and ranked, already-bought products left out unless
//! an offer allows them, the cart left out, holdouts respected, a failing script skipped, and
//! a paused campaign's script no longer live.

mod common;

use bakkal::proto::campaign_service_client::CampaignServiceClient;
use bakkal::proto::offer_service_client::OfferServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, CampaignStrategy, MessageChannel};
use common::{create_script, TestServer};
use sqlx::{AnyConnection, Connection};
use tonic::transport::Channel;
use tonic::Code;

fn offers(server: &TestServer) -> OfferServiceClient<Channel> {
    OfferServiceClient::new(server.channel.clone())
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

async fn product(server: &TestServer, sku: &str, name: &str, category: &str) {
    server
        .customers()
        .upsert_product(proto::UpsertProductRequest {
            product: Some(proto::Product {
                sku: sku.into(),
                display_name: name.into(),
                category: category.into(),
                price: 10.0,
                ..Default::default()
            }),
        })
        .await
        .expect("upsert product");
}

async fn order(server: &TestServer, customer: &str, order_id: &str, skus: &[&str]) {
    server
        .customers()
        .record_order(proto::RecordOrderRequest {
            parent: customer.into(),
            order: Some(proto::Order {
                order_id: order_id.into(),
                currency: "TRY".into(),
                lines: skus
                    .iter()
                    .map(|s| proto::OrderLine {
                        sku: s.to_string(),
                        category: "coffee".into(),
                        quantity: 1,
                        unit_price: 10.0,
                    })
                    .collect(),
                ..Default::default()
            }),
        })
        .await
        .expect("record order");
}

/// A segment (never refreshed: offers do not use the audience) and a MESSAGE script, which
/// every campaign needs.
async fn audience(server: &TestServer) -> (String, String) {
    let rule = create_script(server, proto::ScriptKind::Segment, "fn matches(c) { true }").await;
    let s = SegmentServiceClient::new(server.channel.clone())
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
    let msg = create_script(
        server,
        proto::ScriptKind::Message,
        "fn message(c, event) { () }",
    )
    .await;
    (s.name, msg)
}

/// A campaign with `offer_script`, made live: SCHEDULED (a DRAFT is moved to PAUSED in the
/// database, then resumed through the API, as launching would run it to COMPLETED).
async fn live_campaign(server: &TestServer, offer_script: &str, holdout: i32) -> String {
    let (segment, msg) = audience(server).await;
    let mut client = CampaignServiceClient::new(server.channel.clone());
    let c = client
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "Cross-sell".into(),
                strategy: CampaignStrategy::CrossSell as i32,
                audience: segment,
                offer_script: offer_script.into(),
                message_script: msg,
                channel: MessageChannel::Email as i32,
                holdout_percent: holdout,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create campaign")
        .into_inner();
    let id: i64 = c.name.trim_start_matches("campaigns/").parse().unwrap();
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&server.db_url).await.expect("db");
    sqlx::query(&format!(
        "UPDATE campaigns SET state = 'PAUSED' WHERE id = {id}"
    ))
    .execute(&mut conn)
    .await
    .expect("pause in the database");
    let resumed = client
        .resume_campaign(proto::ResumeCampaignRequest {
            name: c.name.clone(),
        })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(resumed.state, proto::CampaignState::Scheduled as i32);
    c.name
}

async fn get(server: &TestServer, customer: &str, cart: &str, page_size: i32) -> Vec<proto::Offer> {
    let mut context = std::collections::HashMap::new();
    context.insert("page".to_string(), "product/C-1".to_string());
    if !cart.is_empty() {
        context.insert("cart".to_string(), cart.to_string());
    }
    offers(server)
        .get_offers(proto::GetOffersRequest {
            customer: customer.into(),
            context,
            page_size,
        })
        .await
        .expect("get offers")
        .into_inner()
        .offers
}

fn skus(offers: &[proto::Offer]) -> Vec<&str> {
    offers.iter().map(|o| o.sku.as_str()).collect()
}

async fn catalogue(server: &TestServer) {
    for (sku, name, cat) in [
        ("C-1", "House blend", "coffee"),
        ("C-2", "Single origin", "coffee"),
        ("M-1", "Mug", "kitchen"),
        ("F-1", "Filters", "kitchen"),
        ("K-1", "Kettle", "kitchen"),
    ] {
        product(server, sku, name, cat).await;
    }
}

const FIXED_OFFERS: &str = r#"
fn offers(c, catalog) {
    [
        offer("C-1", 10.0, "bought already"),
        offer("M-1", 3.0, "a mug for your coffee"),
        offer("K-1", 1.0, "a kettle"),
        offer("X-9", 50.0, "not in the catalogue"),
    ]
}"#;

const RESTOCK_OFFERS: &str = r#"
fn offers(c, catalog) {
    [
        offer("C-1", 2.0, "time to restock").allow_bought(),
        offer("K-1", 5.0, "kettles are on sale"),
    ]
}"#;

async fn no_live_campaign_gives_an_empty_list(server: &TestServer) {
    catalogue(server).await;
    let c = customer(server, "a@example.com").await;
    assert!(get(server, &c, "", 0).await.is_empty());

    // A campaign that is not live (DRAFT) does not count.
    let script = create_script(server, proto::ScriptKind::Offer, FIXED_OFFERS).await;
    let (segment, msg) = audience(server).await;
    CampaignServiceClient::new(server.channel.clone())
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "Draft".into(),
                strategy: CampaignStrategy::CrossSell as i32,
                audience: segment,
                offer_script: script,
                message_script: msg,
                channel: MessageChannel::Email as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create campaign");
    assert!(get(server, &c, "", 0).await.is_empty());

    let err = offers(server)
        .get_offers(proto::GetOffersRequest {
            customer: "customers/999999".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = offers(server)
        .get_offers(proto::GetOffersRequest {
            customer: "people/1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = offers(server)
        .get_offers(proto::GetOffersRequest {
            customer: c.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

async fn ranks_merges_and_leaves_out_bought_products(server: &TestServer) {
    catalogue(server).await;
    let c = customer(server, "b@example.com").await;
    order(server, &c, "O-1", &["C-1"]).await;
    let fixed = create_script(server, proto::ScriptKind::Offer, FIXED_OFFERS).await;
    let restock = create_script(server, proto::ScriptKind::Offer, RESTOCK_OFFERS).await;
    let first = live_campaign(server, &fixed, 0).await;
    let second = live_campaign(server, &restock, 0).await;

    let got = get(server, &c, "", 0).await;
    // K-1: the best of 1.0 and 5.0; C-1 only through the offer that allows a re-buy; X-9 is
    // not sold.
    assert_eq!(skus(&got), ["K-1", "M-1", "C-1"]);
    assert_eq!(got[0].campaign, second);
    assert_eq!(got[0].reason, "kettles are on sale");
    assert_eq!(got[0].title, "Kettle");
    assert!((got[0].score - 5.0).abs() < 1e-9);
    assert!(got[0].script.starts_with(&format!("{restock}@")), "{got:?}");
    assert_eq!(got[1].campaign, first);
    assert_eq!(got[2].reason, "time to restock");

    // The cart is never offered; page_size cuts the list.
    assert_eq!(skus(&get(server, &c, "K-1, C-2", 0).await), ["M-1", "C-1"]);
    assert_eq!(skus(&get(server, &c, "", 1).await), ["K-1"]);

    // Someone who bought nothing gets the bought-already offer.
    let fresh = customer(server, "c@example.com").await;
    assert_eq!(
        skus(&get(server, &fresh, "", 0).await),
        ["C-1", "K-1", "M-1"]
    );

    // A paused campaign is no longer live (the cached setup sees the change).
    CampaignServiceClient::new(server.channel.clone())
        .pause_campaign(proto::PauseCampaignRequest { name: second })
        .await
        .expect("pause");
    assert_eq!(skus(&get(server, &c, "", 0).await), ["M-1", "K-1"]);
}

async fn holdout_customers_get_no_offers_from_that_campaign(server: &TestServer) {
    catalogue(server).await;
    let script = create_script(server, proto::ScriptKind::Offer, FIXED_OFFERS).await;
    let campaign = live_campaign(server, &script, 50).await;
    let campaign_id: i64 = campaign.trim_start_matches("campaigns/").parse().unwrap();
    let (mut held, mut served) = (0, 0);
    for i in 0..12 {
        let c = customer(server, &format!("h{i}@example.com")).await;
        let id: i64 = c.trim_start_matches("customers/").parse().unwrap();
        let got = get(server, &c, "", 0).await;
        if bakkal_engine::campaign::in_holdout(campaign_id, id, 50) {
            assert!(got.is_empty(), "{c} is held out: {got:?}");
            held += 1;
        } else {
            assert_eq!(skus(&got), ["C-1", "M-1", "K-1"], "{c}");
            served += 1;
        }
    }
    assert!(held > 0 && served > 0, "held {held}, served {served}");
}

async fn a_failing_script_is_skipped(server: &TestServer) {
    catalogue(server).await;
    let c = customer(server, "d@example.com").await;
    let broken = create_script(
        server,
        proto::ScriptKind::Offer,
        r#"fn offers(c, catalog) { if c.email != () { throw "boom"; } [] }"#,
    )
    .await;
    let wrong_type = create_script(
        server,
        proto::ScriptKind::Offer,
        r#"fn offers(c, catalog) { 42 }"#,
    )
    .await;
    let good = create_script(server, proto::ScriptKind::Offer, RESTOCK_OFFERS).await;
    live_campaign(server, &broken, 0).await;
    live_campaign(server, &wrong_type, 0).await;
    let campaign = live_campaign(server, &good, 0).await;
    let got = get(server, &c, "", 0).await;
    assert_eq!(skus(&got), ["K-1", "C-1"]);
    assert!(got.iter().all(|o| o.campaign == campaign));
}

on_both_backends!(
    no_live_campaign_gives_an_empty_list,
    ranks_merges_and_leaves_out_bought_products,
    holdout_customers_get_no_offers_from_that_campaign,
    a_failing_script_is_skipped,
);
