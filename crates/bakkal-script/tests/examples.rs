//! Every example script in `scripts/` is validated and dry-run against fixture customers.
//! A new script needs an expectation here, or this test fails.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bakkal_script::time::parse_timestamp;
use bakkal_script::{
    Catalog, CompiledScript, ScriptCustomer, ScriptHost, ScriptKind, ScriptTicket,
};
use serde_json::{json, Value};

fn now() -> i64 {
    parse_timestamp("2026-03-10T09:00:00Z").unwrap()
}

struct Fixtures {
    host: ScriptHost,
    catalog: Catalog,
    customers: BTreeMap<&'static str, ScriptCustomer>,
}

fn line(sku: &str, category: &str, quantity: i64, unit_price: f64) -> Value {
    json!({"sku": sku, "category": category, "quantity": quantity, "unit_price": unit_price})
}

fn fixtures() -> Fixtures {
    let docs = [
        // Spent 6,150 over four orders, recently; birthday today; referred three people.
        (
            "big_spender",
            json!({
                "id": 1, "display_name": "Ayşe Yılmaz", "email": "ayse@example.com",
                "region": "Ege", "city": "İzmir", "birth_date": "1985-03-10",
                "consent": {"email": true, "sms": true}, "referral_count": 3,
                "orders": [
                    {"order_id": "A1", "days_ago": 300, "lines": [line("C-1", "coffee", 10, 120.0)]},
                    {"order_id": "A2", "days_ago": 60, "lines": [line("C-2", "coffee", 5, 150.0), line("T-1", "tea", 2, 75.0)]},
                    {"order_id": "A3", "days_ago": 20, "lines": [line("C-1", "coffee", 20, 120.0)]},
                    {"order_id": "A4", "days_ago": 5, "lines": [line("G-1", "grinders", 1, 900.0)]}
                ]
            }),
        ),
        // Never bought.
        (
            "prospect",
            json!({"id": 2, "display_name": "Can Demir", "email": "can@example.com", "consent": {"email": true}}),
        ),
        // Two orders, the last 120 days ago; only SMS consent.
        (
            "lapsed",
            json!({
                "id": 3, "display_name": "Deniz Kaya", "phone": "+905321234567", "region": "Marmara",
                "consent": {"sms": true}, "referral_count": 1, "tags": ["referrer"],
                "orders": [
                    {"order_id": "B1", "days_ago": 200, "lines": [line("T-1", "tea", 4, 75.0)]},
                    {"order_id": "B2", "days_ago": 120, "lines": [line("T-2", "tea", 2, 90.0)]}
                ]
            }),
        ),
        // One small order today, email consent; tagged vip by staff.
        (
            "newcomer",
            json!({
                "id": 4, "display_name": "Elif", "email": "elif@example.com", "tags": ["VIP"],
                "region": "Ege", "consent": {"email": true, "push": true},
                "orders": [{"order_id": "N1", "days_ago": 0, "lines": [line("T-1", "tea", 1, 75.0)]}]
            }),
        ),
    ];
    let customers = docs
        .into_iter()
        .map(|(k, d)| {
            (
                k,
                ScriptCustomer::from_json(&d, now()).unwrap_or_else(|e| panic!("{k}: {e}")),
            )
        })
        .collect();
    let catalog = Catalog::from_json(
        &json!([
            {"sku": "C-1", "display_name": "House blend", "category": "coffee", "price": 120.0, "related_skus": ["M-1", "F-1"]},
            {"sku": "C-2", "display_name": "Single origin", "category": "coffee", "price": 150.0, "related_skus": ["M-1"]},
            {"sku": "C-3", "display_name": "Decaf", "category": "coffee", "price": 110.0},
            {"sku": "T-1", "display_name": "Black tea", "category": "tea", "price": 75.0, "related_skus": ["K-1"]},
            {"sku": "T-2", "display_name": "Green tea", "category": "tea", "price": 90.0},
            {"sku": "T-3", "display_name": "Herbal tea", "category": "tea", "price": 60.0},
            {"sku": "G-1", "display_name": "Burr grinder", "category": "grinders", "price": 900.0, "related_skus": ["C-1"]},
            {"sku": "M-1", "display_name": "Mug", "category": "kitchen", "price": 40.0},
            {"sku": "F-1", "display_name": "Filters", "category": "kitchen", "price": 15.0},
            {"sku": "K-1", "display_name": "Kettle", "category": "kitchen", "price": 300.0}
        ]),
        now(),
    )
    .unwrap();
    Fixtures {
        host: ScriptHost::default(),
        catalog,
        customers,
    }
}

impl Fixtures {
    fn run(&self, script: &CompiledScript, who: &str, event: Option<Value>) -> Value {
        let c = &self.customers[who];
        let out = self
            .host
            .dry_run(script, c, &self.catalog, event.as_ref(), now());
        out.value
            .unwrap_or_else(|e| panic!("{who}: {e}\nlogs: {:?}", out.logs))
    }

    fn segment(&self, script: &CompiledScript, members: &[&str]) {
        for who in self.customers.keys() {
            let got = self.run(script, who, None);
            assert_eq!(got, json!(members.contains(who)), "{who}");
        }
    }

    fn skus(&self, script: &CompiledScript, who: &str) -> Vec<String> {
        let got = self.run(script, who, None);
        got.as_array()
            .unwrap()
            .iter()
            .map(|o| o["sku"].as_str().unwrap().to_string())
            .collect()
    }

    fn message(&self, script: &CompiledScript, who: &str, event: Value) -> Value {
        self.run(script, who, Some(event))
    }

    /// The route a ROUTING script gives a ticket (inline JSON) of a customer.
    fn route(&self, script: &CompiledScript, who: &str, ticket: Value) -> Value {
        let t = ScriptTicket::from_json(&ticket, now()).unwrap();
        let out = self
            .host
            .dry_run_route(script, &t, &self.customers[who], now());
        out.value
            .unwrap_or_else(|e| panic!("{who}: {e}\nlogs: {:?}", out.logs))
    }
}

type Expectation = fn(&Fixtures, &CompiledScript);

fn expectations() -> BTreeMap<&'static str, (ScriptKind, Expectation)> {
    use ScriptKind::*;
    let mut m: BTreeMap<&'static str, (ScriptKind, Expectation)> = BTreeMap::new();
    m.insert(
        "vip_by_value.rhai",
        (Segment, |f, s| f.segment(s, &["big_spender", "newcomer"])),
    );
    m.insert(
        "lapsed_90_days.rhai",
        (Segment, |f, s| f.segment(s, &["lapsed"])),
    );
    m.insert(
        "referrers.rhai",
        (Segment, |f, s| f.segment(s, &["big_spender", "lapsed"])),
    );
    m.insert(
        "high_value_in_region.rhai",
        (Segment, |f, s| f.segment(s, &["big_spender"])),
    );
    m.insert(
        "category_affinity.rhai",
        (Offer, |f, s| {
            // Coffee first (35 units), then tea; only what they have not bought.
            assert_eq!(f.skus(s, "big_spender"), ["C-3", "T-3", "T-2"]);
            assert!(f.skus(s, "prospect").is_empty());
            assert_eq!(f.skus(s, "lapsed"), ["T-3"]);
        }),
    );
    m.insert(
        "restock.rhai",
        (Offer, |f, s| {
            // Coffee and tea bought 30+ days ago, longest wait first, marked as re-buys.
            let mut got = f.skus(s, "big_spender");
            got.sort();
            assert_eq!(got, ["C-2", "T-1"]);
            assert_eq!(f.skus(s, "lapsed"), ["T-1", "T-2"]);
            assert!(f.skus(s, "newcomer").is_empty());
            assert!(f.skus(s, "prospect").is_empty());
            let out = f.run(s, "lapsed", None);
            assert_eq!(out[0]["allow_bought"], json!(true));
            assert_eq!(out[0]["reason"], json!("Black tea bought 200 days ago"));
        }),
    );
    m.insert(
        "bought_together.rhai",
        (Offer, |f, s| {
            // M-1 goes with both coffees; F-1 and K-1 with one product each.
            let got = f.skus(s, "big_spender");
            assert_eq!(got[0], "M-1");
            let mut rest = got[1..].to_vec();
            rest.sort();
            assert_eq!(rest, ["F-1", "K-1"]);
            assert!(f.skus(s, "prospect").is_empty());
            assert_eq!(f.skus(s, "newcomer"), ["K-1"]);
        }),
    );
    m.insert(
        "win_back_discount.rhai",
        (Message, |f, s| {
            let inactive = json!({"kind": "inactive", "fields": {"days": 120}});
            let m = f.message(s, "lapsed", inactive.clone());
            assert_eq!(m["channel"], "sms");
            assert!(m["body"].as_str().unwrap().contains("BACK10-3-"), "{m}");
            let m = f.message(s, "big_spender", inactive.clone());
            assert_eq!(m["channel"], "email");
            assert!(m["subject"].as_str().unwrap().contains("20% off"), "{m}");
            assert_eq!(f.message(s, "prospect", inactive), Value::Null);
            assert_eq!(
                f.message(s, "lapsed", json!({"kind": "campaign"})),
                Value::Null
            );
        }),
    );
    m.insert(
        "birthday.rhai",
        (Message, |f, s| {
            let m = f.message(s, "big_spender", json!({"kind": "birthday"}));
            assert_eq!(m["subject"], "Happy birthday, Ayşe");
            assert!(m["body"].as_str().unwrap().contains("free delivery"));
            assert_eq!(
                f.message(s, "newcomer", json!({"kind": "birthday"})),
                Value::Null
            );
            assert_eq!(
                f.message(s, "big_spender", json!({"kind": "order_placed"})),
                Value::Null
            );
        }),
    );
    m.insert(
        "tier_upgrade.rhai",
        (Message, |f, s| {
            let up = json!({"kind": "tier_changed", "fields": {"from": "silver", "to": "gold"}});
            let m = f.message(s, "big_spender", up.clone());
            assert_eq!(
                (m["channel"].as_str(), m["subject"].as_str()),
                (Some("email"), Some("Welcome to GOLD, Ayşe!"))
            );
            let down = json!({"kind": "tier_changed", "fields": {"from": "gold", "to": "silver"}});
            assert_eq!(f.message(s, "big_spender", down), Value::Null);
            assert_eq!(f.message(s, "lapsed", up), Value::Null);
        }),
    );
    m.insert(
        "thank_you_after_purchase.rhai",
        (Message, |f, s| {
            let placed =
                json!({"kind": "order_placed", "fields": {"order_id": "N1", "total": 75.0}});
            let m = f.message(s, "newcomer", placed.clone());
            assert_eq!(m["subject"], "Welcome, Elif!");
            let m = f.message(s, "big_spender", placed);
            assert!(
                m["body"].as_str().unwrap().contains("order number 4"),
                "{m}"
            );
            let small = json!({"kind": "order_placed", "fields": {"order_id": "N2", "total": 5}});
            assert_eq!(f.message(s, "newcomer", small), Value::Null);
        }),
    );
    m.insert(
        "route_vip_complaints.rhai",
        (Routing, |f, s| {
            let complaint = json!({"kind": "COMPLAINT", "subject": "Broken grinder"});
            // Not scored: spending decides (big_spender has 6,150).
            assert_eq!(
                f.route(s, "big_spender", complaint.clone()),
                json!({"team": "teams/2", "priority": "HIGH"})
            );
            assert_eq!(f.route(s, "prospect", complaint.clone()), Value::Null);
            // Scored: the tier decides, whatever was spent.
            let top = json!({"kind": "COMPLAINT", "channel": "SOCIAL", "customer_tier_rank": 1});
            assert_eq!(
                f.route(s, "prospect", top),
                json!({"team": "teams/2", "priority": "URGENT"})
            );
            let second = json!({"kind": "COMPLAINT", "customer_tier_rank": 2});
            assert_eq!(f.route(s, "big_spender", second), Value::Null);
            let question = json!({"kind": "QUESTION", "customer_tier_rank": 1});
            assert_eq!(f.route(s, "big_spender", question), Value::Null);
        }),
    );
    m.insert(
        "route_by_topic.rhai",
        (Routing, |f, s| {
            let billing = json!({"kind": "QUESTION", "topic": "billing"});
            assert_eq!(
                f.route(s, "prospect", billing),
                json!({"team": "teams/3", "topic": "billing"})
            );
            let charged = json!({"kind": "COMPLAINT", "subject": "I was CHARGED twice"});
            assert_eq!(
                f.route(s, "lapsed", charged),
                json!({"team": "teams/3", "topic": "billing", "priority": "HIGH"})
            );
            let parcel = json!({"kind": "REQUEST", "description": "Where is my parcel?"});
            assert_eq!(
                f.route(s, "newcomer", parcel),
                json!({"team": "teams/4", "topic": "delivery"})
            );
            let other = json!({"kind": "FEEDBACK", "subject": "Lovely coffee"});
            assert_eq!(f.route(s, "newcomer", other), Value::Null);
        }),
    );
    m.insert(
        "prospecting_welcome.rhai",
        (Message, |f, s| {
            let entered = json!({"kind": "segment_entered", "fields": {"segment": "segments/1"}});
            let m = f.message(s, "prospect", entered.clone());
            assert_eq!(m["subject"], "Welcome, Can: 10% off your first order");
            assert!(m["body"].as_str().unwrap().contains("HELLO-2"), "{m}");
            let m = f.message(s, "prospect", json!({"kind": "campaign"}));
            assert_eq!(m["channel"], "email");
            assert_eq!(f.message(s, "big_spender", entered.clone()), Value::Null);
            assert_eq!(
                f.message(s, "prospect", json!({"kind": "birthday"})),
                Value::Null
            );
        }),
    );
    m.insert(
        "cross_sell_after_order.rhai",
        (Message, |f, s| {
            let coffee = json!({"kind": "order_placed",
                "fields": {"order_id": "A5", "categories": ["coffee"], "skus": ["C-1"]}});
            let m = f.message(s, "big_spender", coffee);
            assert_eq!(m["subject"], "Goes well with your order A5");
            assert!(m["body"].as_str().unwrap().contains("burr grinder"), "{m}");
            let tea = json!({"kind": "order_placed",
                "fields": {"order_id": "N2", "categories": ["tea"], "skus": ["T-1"]}});
            let m = f.message(s, "newcomer", tea);
            assert!(m["body"].as_str().unwrap().contains("kettle"), "{m}");
            let both = json!({"kind": "order_placed",
                "fields": {"order_id": "A6", "categories": ["coffee", "grinders"]}});
            assert_eq!(f.message(s, "big_spender", both), Value::Null);
            let tea = json!({"kind": "order_placed", "fields": {"categories": ["tea"]}});
            assert_eq!(
                f.message(s, "lapsed", tea),
                Value::Null,
                "no email or push consent"
            );
        }),
    );
    m.insert(
        "loyalty_monthly_thanks.rhai",
        (Message, |f, s| {
            let third = json!({"kind": "campaign", "fields": {"occurrence": 3}});
            let m = f.message(s, "big_spender", third.clone());
            assert_eq!(m["subject"], "Thank you, Ayşe");
            assert!(m["body"].as_str().unwrap().contains("THANKS-1-3"), "{m}");
            assert_eq!(f.message(s, "newcomer", third.clone()), Value::Null);
            assert_eq!(f.message(s, "prospect", third), Value::Null);
        }),
    );
    m
}

#[test]
fn every_example_script_validates_and_behaves() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
    let f = fixtures();
    let mut expected = expectations();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let (kind, check) = expected
            .remove(name.as_str())
            .unwrap_or_else(|| panic!("scripts/{name} has no expectation in tests/examples.rs"));
        let source = std::fs::read_to_string(&path).unwrap();
        assert!(
            source.starts_with("//"),
            "scripts/{name} must start with a comment header"
        );
        let diagnostics = f.host.validate(kind, &source);
        assert!(diagnostics.is_empty(), "scripts/{name}: {diagnostics:?}");
        let script = f.host.compile_cached(&name, kind, &source).unwrap();
        check(&f, &script);
    }
    assert!(
        expected.is_empty(),
        "expectations without a script: {:?}",
        expected.keys()
    );
}
