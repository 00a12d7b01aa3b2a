//! The values scripts see and return. Each is cheap to clone (shared data behind `Arc`), as
//! rhai clones values freely.

use std::collections::HashMap;
use std::sync::Arc;

use bakkal_domain::time::{days_between, Micros};
use bakkal_domain::{Customer, Order, OrderStatus, OrderTotals, Product, ValueKeys};
use rhai::{Dynamic, Map};
use serde::Serialize;

/// A customer as a script sees it: the stored record, their orders and the moment of the call.
#[derive(Debug, Clone)]
pub struct ScriptCustomer {
    pub(crate) customer: Arc<Customer>,
    pub(crate) orders: Arc<Vec<ScriptOrder>>,
    pub(crate) now: Micros,
}

impl ScriptCustomer {
    /// Wrap a stored customer and their orders (any order; refunded ones included). The value
    /// keys come from `customer.totals`, as the store keeps them.
    pub fn new(customer: Customer, orders: Vec<Order>) -> Self {
        let mut orders: Vec<ScriptOrder> = orders
            .into_iter()
            .map(|o| ScriptOrder(Arc::new(o)))
            .collect();
        orders.sort_by_key(|o| o.0.placed_time);
        ScriptCustomer {
            customer: Arc::new(customer),
            orders: Arc::new(orders),
            now: 0,
        }
    }

    /// Like [`ScriptCustomer::new`], but recompute `totals` and `converted_time` from `orders`
    /// (paid orders only), as the store does.
    pub fn with_totals_from_orders(mut customer: Customer, orders: Vec<Order>) -> Self {
        customer.totals = totals_from_orders(&orders);
        customer.converted_time = customer.totals.first_order_time;
        Self::new(customer, orders)
    }

    /// The same customer seen at `now`.
    pub fn at(&self, now: Micros) -> Self {
        ScriptCustomer {
            now,
            ..self.clone()
        }
    }

    pub fn customer(&self) -> &Customer {
        &self.customer
    }

    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.iter().map(|o| &*o.0)
    }

    pub fn now(&self) -> Micros {
        self.now
    }

    pub(crate) fn keys(&self) -> ValueKeys {
        self.customer.value_keys(self.now)
    }

    pub(crate) fn paid_orders(&self) -> impl Iterator<Item = &Order> {
        self.orders().filter(|o| o.status == OrderStatus::Paid)
    }

    /// Paid orders placed in the last `days` days (`now - days` days ..= `now`).
    pub(crate) fn paid_orders_in_days(&self, days: i64) -> impl Iterator<Item = &Order> {
        let now = self.now;
        self.paid_orders()
            .filter(move |o| o.placed_time <= now && days_between(o.placed_time, now) < days.max(0))
    }
}

/// What paid orders add up to, the way the store keeps `Customer::totals`.
pub fn totals_from_orders(orders: &[Order]) -> OrderTotals {
    let mut t = OrderTotals::default();
    for o in orders.iter().filter(|o| o.status == OrderStatus::Paid) {
        t.order_count += 1;
        t.total_spent = t.total_spent.saturating_add(o.total());
        t.first_order_time = Some(
            t.first_order_time
                .map_or(o.placed_time, |f| f.min(o.placed_time)),
        );
        t.last_order_time = Some(
            t.last_order_time
                .map_or(o.placed_time, |l| l.max(o.placed_time)),
        );
    }
    t
}

/// One order, read-only.
#[derive(Debug, Clone)]
pub struct ScriptOrder(pub(crate) Arc<Order>);

/// One order line, read-only.
#[derive(Debug, Clone)]
pub struct ScriptOrderLine(pub(crate) bakkal_domain::OrderLine);

/// A product of the catalogue, read-only.
#[derive(Debug, Clone)]
pub struct ScriptProduct(pub(crate) Arc<Product>);

impl ScriptProduct {
    pub fn product(&self) -> &Product {
        &self.0
    }
}

/// The product catalogue handed to offer scripts: iterable (`for p in catalog`), with lookup
/// by SKU. Build it once and share it; cloning is cheap.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub(crate) products: Arc<Vec<ScriptProduct>>,
    pub(crate) by_sku: Arc<HashMap<String, usize>>,
}

impl Catalog {
    pub fn new(products: Vec<Product>) -> Self {
        let products: Vec<ScriptProduct> = products
            .into_iter()
            .map(|p| ScriptProduct(Arc::new(p)))
            .collect();
        let by_sku = products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.0.sku.clone(), i))
            .collect();
        Catalog {
            products: Arc::new(products),
            by_sku: Arc::new(by_sku),
        }
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    pub fn get(&self, sku: &str) -> Option<&ScriptProduct> {
        self.by_sku.get(sku).map(|&i| &self.products[i])
    }
}

impl IntoIterator for Catalog {
    type Item = ScriptProduct;
    type IntoIter = std::vec::IntoIter<ScriptProduct>;

    fn into_iter(self) -> Self::IntoIter {
        self.products.as_ref().clone().into_iter()
    }
}

/// Why a message script runs: `order_placed`, `inactive`, `birthday`, `tier_changed`,
/// `segment_entered`, `segment_exited`, `campaign`, ... (any kind string is accepted), with
/// free-form fields.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: String,
    pub fields: Map,
    /// When it happened; the call's `now` when not given.
    pub time: Option<Micros>,
}

impl Event {
    pub fn new(kind: impl Into<String>) -> Self {
        Event {
            kind: kind.into(),
            fields: Map::new(),
            time: None,
        }
    }

    /// Add a field (builder style).
    pub fn with(mut self, key: &str, value: impl Into<Dynamic>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }
}

/// An offer a script makes: a SKU, a score (higher is better) and a reason shown to staff.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Offer {
    pub sku: String,
    pub score: f64,
    pub reason: String,
    /// May be offered to a customer who already bought it (a refill, a consumable);
    /// `offer(...).allow_bought()`. Otherwise real-time offers drop bought products.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_bought: bool,
}

/// A message a script wants sent: channel (`email`, `sms`, `push`, `phone`), subject, body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub channel: String,
    pub subject: String,
    pub body: String,
}
