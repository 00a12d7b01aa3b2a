//! GetOffers latency and throughput for one customer with 100 orders, against GetCustomer of
//! the same customer on the same server in the same run.
//!
//! Seeds a catalogue, the customer and their orders, and two live campaigns whose offer scripts
//! are `scripts/bought_together.rhai` and `scripts/category_affinity.rhai`. A campaign is made
//! live (SCHEDULED) by moving the DRAFT to PAUSED with the `sqlite3` shell and resuming it over
//! gRPC, since a launch runs straight to COMPLETED.

use std::process::Command;
use std::time::{Duration, Instant};

use bakkal::proto::campaign_service_client::CampaignServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::offer_service_client::OfferServiceClient;
use bakkal::proto::script_service_client::ScriptServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, CampaignStrategy, MessageChannel, ScriptKind};
use tonic::transport::Channel;

use crate::process::{serve_command, Server};

const CATEGORIES: [&str; 10] = [
    "coffee", "tea", "grinders", "kitchen", "cocoa", "syrup", "cups", "filters", "books", "gifts",
];

pub async fn run(
    seconds: u64,
    connections: usize,
    streams: usize,
    orders: usize,
    products: usize,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");
    let (cmd, port) = serve_command(&format!("sqlite://{}", db.display()))?;
    let bakkal = Server::start(cmd, port)?;
    let ch = bakkal.channel().await?;
    let mut customers = CustomerServiceClient::new(ch.clone());
    for _ in 0..300 {
        if customers
            .list_products(proto::ListProductsRequest::default())
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    eprintln!(
        "seeding {products} products, 1 customer with {orders} orders, 2 offer campaigns ..."
    );
    for i in 0..products {
        let cat = CATEGORIES[i % CATEGORIES.len()];
        customers
            .upsert_product(proto::UpsertProductRequest {
                product: Some(proto::Product {
                    sku: format!("P-{i}"),
                    display_name: format!("Product {i}"),
                    category: cat.into(),
                    price: 10.0 + (i % 50) as f64,
                    related_skus: (1..=3)
                        .map(|k| format!("P-{}", (i + k * 7) % products))
                        .collect(),
                    ..Default::default()
                }),
            })
            .await?;
    }
    let c = customers
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: "Bench Customer".into(),
                email: "bench@example.com".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    for o in 0..orders {
        // the customer buys from a few products of three categories
        let lines = (0..1 + o % 3)
            .map(|k| {
                let p = ((o * 3 + k) % 30) * CATEGORIES.len() / 10 + (o + k) % 3;
                proto::OrderLine {
                    sku: format!("P-{p}"),
                    category: CATEGORIES[p % CATEGORIES.len()].into(),
                    quantity: 1 + (k as i64),
                    unit_price: 12.5,
                }
            })
            .collect();
        customers
            .record_order(proto::RecordOrderRequest {
                parent: c.name.clone(),
                order: Some(proto::Order {
                    order_id: format!("B-{o}"),
                    currency: "TRY".into(),
                    lines,
                    placed_time: Some(prost_types::Timestamp {
                        seconds: 1_767_225_600 + o as i64 * 86_400,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            })
            .await?;
    }
    let mut live = Vec::new();
    for source in [
        include_str!("../../../scripts/bought_together.rhai"),
        include_str!("../../../scripts/category_affinity.rhai"),
    ] {
        live.push(live_campaign(&ch, &db, source).await?);
    }
    let mut offers = OfferServiceClient::new(ch.clone());
    let sample = offers
        .get_offers(proto::GetOffersRequest {
            customer: c.name.clone(),
            page_size: 10,
            ..Default::default()
        })
        .await?
        .into_inner();
    anyhow::ensure!(
        !sample.offers.is_empty(),
        "the seeded campaigns make no offers"
    );

    println!(
        "GetOffers vs GetCustomer, one customer with {orders} orders, {products} products, \
         {} live offer scripts ({} offers returned), {connections} connections x {streams} streams, \
         {seconds} s a round",
        live.len(),
        sample.offers.len()
    );
    println!(
        "{:<24} {:>10} {:>9} {:>9}",
        "call", "req/s", "p50 ms", "p99 ms"
    );
    let (mut base_rps, mut off_rps, mut off_p99) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=2 {
        for target in [Target::Customer, Target::Offers] {
            let r = load(&bakkal, target, &c.name, connections, streams, seconds).await?;
            println!(
                "{:<24} {:>10.0} {:>9.2} {:>9.2}",
                format!("{} #{round}", target.label()),
                r.rps,
                r.p50_ms,
                r.p99_ms
            );
            match target {
                Target::Customer => base_rps.push(r.rps),
                Target::Offers => {
                    off_rps.push(r.rps);
                    off_p99.push(r.p99_ms);
                }
            }
        }
    }
    let max = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    println!(
        "ratio GetOffers/GetCustomer req/s: {:.2} (best round each)   GetOffers p99: {:.2} ms (worst round; target <= 10)",
        max(&off_rps) / max(&base_rps),
        max(&off_p99)
    );
    println!("peak memory: bakkal {:.0} MiB", bakkal.peak_rss_mib());
    Ok(())
}

async fn create_script(ch: &Channel, kind: ScriptKind, source: &str) -> anyhow::Result<String> {
    Ok(ScriptServiceClient::new(ch.clone())
        .create_script(proto::CreateScriptRequest {
            script: Some(proto::Script {
                display_name: "bench".into(),
                kind: kind as i32,
                source: source.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await?
        .into_inner()
        .name)
}

/// A CROSS_SELL campaign with this offer script, SCHEDULED.
async fn live_campaign(
    ch: &Channel,
    db: &std::path::Path,
    offer_source: &str,
) -> anyhow::Result<String> {
    let offer = create_script(ch, ScriptKind::Offer, offer_source).await?;
    let rule = create_script(ch, ScriptKind::Segment, "fn matches(c) { true }").await?;
    let msg = create_script(ch, ScriptKind::Message, "fn message(c, event) { () }").await?;
    let segment = SegmentServiceClient::new(ch.clone())
        .create_segment(proto::CreateSegmentRequest {
            segment: Some(proto::Segment {
                display_name: "everyone".into(),
                script: rule,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let mut campaigns = CampaignServiceClient::new(ch.clone());
    let c = campaigns
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "Cross-sell".into(),
                strategy: CampaignStrategy::CrossSell as i32,
                audience: segment.name,
                offer_script: offer,
                message_script: msg,
                channel: MessageChannel::Email as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let id = c.name.trim_start_matches("campaigns/");
    let status = Command::new("sqlite3")
        .arg(db)
        .arg(format!(
            "PRAGMA busy_timeout = 10000; UPDATE campaigns SET state = 'PAUSED' WHERE id = {id};"
        ))
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "sqlite3 failed (is the sqlite3 shell installed?)"
    );
    campaigns
        .resume_campaign(proto::ResumeCampaignRequest {
            name: c.name.clone(),
        })
        .await?;
    Ok(c.name)
}

#[derive(Clone, Copy)]
enum Target {
    Customer,
    Offers,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Customer => "GetCustomer (baseline)",
            Target::Offers => "GetOffers",
        }
    }
}

struct LoadResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(
    server: &Server,
    target: Target,
    customer: &str,
    connections: usize,
    streams: usize,
    seconds: u64,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now() + Duration::from_secs(1);
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let ch = server.channel().await?;
        for _ in 0..streams {
            let mut customers = CustomerServiceClient::new(ch.clone());
            let mut offers = OfferServiceClient::new(ch.clone());
            let name = customer.to_string();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 14);
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    match target {
                        Target::Customer => {
                            customers
                                .get_customer(proto::GetCustomerRequest { name: name.clone() })
                                .await?;
                        }
                        Target::Offers => {
                            offers
                                .get_offers(proto::GetOffersRequest {
                                    customer: name.clone(),
                                    page_size: 10,
                                    ..Default::default()
                                })
                                .await?;
                        }
                    }
                    if t0 >= start {
                        lat.push(t0.elapsed().as_micros() as u32);
                    }
                }
                Ok::<_, tonic::Status>(lat)
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    anyhow::ensure!(!all.is_empty(), "no calls completed");
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Ok(LoadResult {
        rps: all.len() as f64 / seconds as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}
