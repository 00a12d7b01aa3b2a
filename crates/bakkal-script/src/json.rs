//! JSON forms for dry runs and tests: an inline customer with orders, an event, a catalogue,
//! and the conversion of JSON values to script values. The customer shape is documented in
//! `scripts/README.md`.

use std::collections::BTreeMap;

use bakkal_domain::time::{Micros, MICROS_PER_DAY};
use bakkal_domain::{
    Consent, Consents, Customer, CustomerFields, OrderInput, OrderLineInput, OrderStatus,
    ProductInput, ValidationError,
};
use rhai::{Dynamic, Map};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ScriptError;
use crate::time::parse_timestamp;
use crate::types::{Catalog, Event, ScriptCustomer};

/// An instant: an RFC 3339 timestamp / `YYYY-MM-DD` string, or micros since the epoch.
#[derive(Deserialize)]
#[serde(untagged)]
enum TimeJson {
    Micros(i64),
    Text(String),
}

impl TimeJson {
    fn resolve(&self, field: &str) -> Result<Micros, ScriptError> {
        match self {
            TimeJson::Micros(m) => Ok(*m),
            TimeJson::Text(s) => parse_timestamp(s).ok_or_else(|| {
                ScriptError::input(format!(
                    "{field}: '{s}' is not a timestamp like 2026-01-02T10:00:00Z or a date 2026-01-02"
                ))
            }),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ConsentJson {
    email: bool,
    sms: bool,
    push: bool,
    phone: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineJson {
    sku: String,
    #[serde(default)]
    category: String,
    #[serde(default = "one")]
    quantity: i64,
    unit_price: f64,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderJson {
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    placed_time: Option<TimeJson>,
    #[serde(default)]
    days_ago: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    status: Option<String>,
    lines: Vec<LineJson>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct CustomerJson {
    id: i64,
    display_name: String,
    email: Option<String>,
    phone: Option<String>,
    country_code: Option<String>,
    region: String,
    city: String,
    birth_date: Option<String>,
    tags: Vec<String>,
    attributes: BTreeMap<String, String>,
    consent: ConsentJson,
    referred_by: Option<i64>,
    owner: String,
    referral_count: i64,
    create_time: Option<TimeJson>,
    orders: Vec<OrderJson>,
}

/// The currency of inline orders that do not name one.
pub const DEFAULT_CURRENCY: &str = "TRY";

fn violations(prefix: &str, e: ValidationError) -> ScriptError {
    let parts: Vec<String> = e
        .violations
        .iter()
        .map(|v| format!("{prefix}{}: {}", v.field, v.description))
        .collect();
    ScriptError::input(parts.join("; "))
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, v: &Value) -> Result<T, ScriptError> {
    T::deserialize(v).map_err(|e| ScriptError::input(format!("{what}: {e}")))
}

impl ScriptCustomer {
    /// Build a customer from an inline JSON document (see `scripts/README.md` for the shape).
    /// `now` resolves `days_ago` and is the default creation time. Fields are validated and
    /// normalised as the store would; the value keys are computed from the paid orders.
    pub fn from_json(doc: &Value, now: Micros) -> Result<ScriptCustomer, ScriptError> {
        let j: CustomerJson = parse("customer", doc)?;
        let consent_at = |granted: bool| Consent {
            granted,
            update_time: granted.then_some(now),
        };
        let fields = CustomerFields {
            display_name: j.display_name,
            email: j.email,
            phone: j.phone,
            country_code: j.country_code,
            region: j.region,
            city: j.city,
            birth_date: j.birth_date,
            tags: j.tags,
            attributes: j.attributes,
            consent: Consents {
                email: consent_at(j.consent.email),
                sms: consent_at(j.consent.sms),
                push: consent_at(j.consent.push),
                phone: consent_at(j.consent.phone),
            },
            referred_by: j.referred_by,
            owner: j.owner,
            organization_id: None,
        }
        .normalised()
        .map_err(|e| violations("customer.", e))?;

        let id = j.id.max(0);
        let mut orders = Vec::with_capacity(j.orders.len());
        for (i, o) in j.orders.into_iter().enumerate() {
            let at = format!("orders[{i}]");
            let placed_time = match (o.placed_time, o.days_ago) {
                (Some(_), Some(_)) => {
                    return Err(ScriptError::input(format!(
                        "{at}: give placed_time or days_ago, not both"
                    )))
                }
                (Some(t), None) => t.resolve(&format!("{at}.placed_time"))?,
                (None, Some(d)) => now - d.saturating_mul(MICROS_PER_DAY),
                (None, None) => now,
            };
            let status = match o.status.as_deref() {
                None => OrderStatus::Paid,
                Some(s) => OrderStatus::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
                    ScriptError::input(format!("{at}.status: '{s}' is not PAID or REFUNDED"))
                })?,
            };
            let order = OrderInput {
                order_id: o.order_id.unwrap_or_else(|| format!("order-{}", i + 1)),
                lines: o
                    .lines
                    .into_iter()
                    .map(|l| OrderLineInput {
                        sku: l.sku,
                        category: l.category,
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                    })
                    .collect(),
                currency: o.currency.unwrap_or_else(|| DEFAULT_CURRENCY.to_string()),
                placed_time: Some(placed_time),
                status: Some(status),
            }
            .validate(id, now)
            .map_err(|e| violations(&format!("{at}."), e))?;
            orders.push(order);
        }

        let first_order = orders.iter().map(|o| o.placed_time).min();
        let create_time = match j.create_time {
            Some(t) => t.resolve("create_time")?,
            None => first_order.map_or(now, |f| f.min(now)),
        };
        let customer = Customer {
            id,
            fields,
            create_time,
            update_time: create_time,
            converted_time: None,
            version: 1,
            totals: Default::default(),
            referral_count: j.referral_count.max(0),
        };
        Ok(ScriptCustomer::with_totals_from_orders(customer, orders).at(now))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventJson {
    kind: String,
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
    #[serde(default)]
    time: Option<TimeJson>,
}

impl Event {
    /// `{"kind": "order_placed", "fields": {"order_id": "A1", "total": 120.0}, "time": "..."}`;
    /// `fields` and `time` are optional.
    pub fn from_json(doc: &Value) -> Result<Event, ScriptError> {
        let j: EventJson = parse("event", doc)?;
        if j.kind.trim().is_empty() {
            return Err(ScriptError::input("event: kind is empty"));
        }
        Ok(Event {
            kind: j.kind.trim().to_string(),
            fields: j
                .fields
                .iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect(),
            time: j.time.map(|t| t.resolve("event.time")).transpose()?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductJson {
    sku: String,
    display_name: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    price: f64,
    #[serde(default)]
    related_skus: Vec<String>,
}

impl Catalog {
    /// `[{"sku": "C-1", "display_name": "Filter coffee", "category": "coffee", "price": 120.0,
    /// "related_skus": ["M-1"]}, ...]`, validated as the store would.
    pub fn from_json(doc: &Value, now: Micros) -> Result<Catalog, ScriptError> {
        let j: Vec<ProductJson> = parse("catalog", doc)?;
        let mut products = Vec::with_capacity(j.len());
        for (i, p) in j.into_iter().enumerate() {
            let product = ProductInput {
                sku: p.sku,
                display_name: p.display_name,
                category: p.category,
                price: p.price,
                related_skus: p.related_skus,
            }
            .validate(now)
            .map_err(|e| violations(&format!("catalog[{i}]."), e))?;
            products.push(product);
        }
        Ok(Catalog::new(products))
    }
}

/// A JSON value as a script value: objects become maps, arrays arrays, integers `INT`, other
/// numbers `FLOAT`, `null` `()`.
pub fn json_to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from_array(a.iter().map(json_to_dynamic).collect()),
        Value::Object(o) => {
            let m: Map = o
                .iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect();
            Dynamic::from_map(m)
        }
    }
}
