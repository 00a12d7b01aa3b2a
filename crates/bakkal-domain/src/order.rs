//! Orders, order lines, the product catalogue and interactions on every channel.

use crate::error::ValidationError;
use crate::normalise;
use crate::time::Micros;

pub const MICROS_PER_UNIT: f64 = 1_000_000.0;
/// A price or amount larger than this (in currency units) is refused as a typo.
pub const MAX_AMOUNT: f64 = 1e12;
pub const MAX_LINES: usize = 1000;
pub const MAX_BODY: usize = 64 * 1024;

/// A money amount given in currency units (`12.50`) as micro-units (`12_500_000`).
pub fn amount_to_micros(v: f64) -> Result<i64, &'static str> {
    if !v.is_finite() {
        return Err("must be a finite number");
    }
    if v < 0.0 {
        return Err("must not be negative");
    }
    if v > MAX_AMOUNT {
        return Err("is too large");
    }
    Ok((v * MICROS_PER_UNIT).round() as i64)
}

pub fn micros_to_amount(m: i64) -> f64 {
    m as f64 / MICROS_PER_UNIT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Paid,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Paid => "PAID",
            OrderStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PAID" => Some(OrderStatus::Paid),
            "REFUNDED" => Some(OrderStatus::Refunded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub category: String,
    pub quantity: i64,
    /// Micro-units of the order's currency.
    pub unit_price: i64,
}

/// An order as recorded from a source system (shop, till, ERP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The source system's id; recording the same id twice is idempotent.
    pub order_id: String,
    pub customer_id: i64,
    pub lines: Vec<OrderLine>,
    pub currency: String,
    pub placed_time: Micros,
    pub status: OrderStatus,
    pub create_time: Micros,
}

impl Order {
    /// Sum of quantity × unit price, in micro-units.
    pub fn total(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.quantity.saturating_mul(l.unit_price))
            .fold(0i64, i64::saturating_add)
    }
}

/// An order line as a caller gives it, before validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderLineInput {
    pub sku: String,
    pub category: String,
    pub quantity: i64,
    pub unit_price: f64,
}

/// An order as a caller gives it, before validation. Empty strings mean "not given".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderInput {
    pub order_id: String,
    pub lines: Vec<OrderLineInput>,
    pub currency: String,
    pub placed_time: Option<Micros>,
    pub status: Option<OrderStatus>,
}

/// An order id from a source system: 1..=128 characters, no '/' or whitespace.
pub fn order_id(raw: &str) -> Result<String, &'static str> {
    let t = raw.trim();
    if t.is_empty() || t.len() > 128 {
        return Err("must be 1 to 128 characters");
    }
    if t.chars()
        .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err("must not contain '/' or whitespace");
    }
    Ok(t.to_string())
}

impl OrderInput {
    /// Validate into an [`Order`] for `customer_id`; `now` fills a missing placed time and
    /// bounds a given one ([`crate::time::happened`]).
    pub fn validate(self, customer_id: i64, now: Micros) -> Result<Order, ValidationError> {
        self.validate_until(
            customer_id,
            now,
            now.saturating_add(crate::time::FUTURE_TOLERANCE),
        )
    }

    /// [`OrderInput::validate`] with the latest acceptable placed time given.
    pub fn validate_until(
        self,
        customer_id: i64,
        now: Micros,
        latest: Micros,
    ) -> Result<Order, ValidationError> {
        let mut errs = ValidationError::new();
        let oid = order_id(&self.order_id).unwrap_or_else(|why| {
            errs.add("order_id", why);
            String::new()
        });
        let currency = normalise::currency(&self.currency).unwrap_or_else(|why| {
            errs.add("currency", why);
            String::new()
        });
        if let Some(Err(why)) = self
            .placed_time
            .map(|t| crate::time::happened_by(t, latest))
        {
            errs.add("placed_time", why);
        }
        if self.lines.is_empty() {
            errs.add("lines", "an order needs at least one line");
        }
        if self.lines.len() > MAX_LINES {
            errs.add("lines", format!("at most {MAX_LINES} lines"));
        }
        let mut lines = Vec::with_capacity(self.lines.len());
        for (i, l) in self.lines.into_iter().enumerate() {
            let sku = normalise::token(&l.sku).unwrap_or_else(|why| {
                errs.add(format!("lines[{i}].sku"), why);
                String::new()
            });
            let category = l.category.trim().to_lowercase();
            if category.len() > 64 {
                errs.add(
                    format!("lines[{i}].category"),
                    "must be at most 64 characters",
                );
            } else if let Err(why) = normalise::control_free(&category) {
                errs.add(format!("lines[{i}].category"), why);
            }
            if l.quantity <= 0 {
                errs.add(
                    format!("lines[{i}].quantity"),
                    format!("must be positive, got {}", l.quantity),
                );
            }
            if l.quantity > 1_000_000 {
                errs.add(format!("lines[{i}].quantity"), "must be at most 1000000");
            }
            let unit_price = amount_to_micros(l.unit_price).unwrap_or_else(|why| {
                errs.add(format!("lines[{i}].unit_price"), why);
                0
            });
            lines.push(OrderLine {
                sku,
                category,
                quantity: l.quantity,
                unit_price,
            });
        }
        errs.into_result()?;
        Ok(Order {
            order_id: oid,
            customer_id,
            lines,
            currency,
            placed_time: self.placed_time.unwrap_or(now),
            status: self.status.unwrap_or(OrderStatus::Paid),
            create_time: now,
        })
    }
}

/// A product in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub sku: String,
    pub display_name: String,
    pub category: String,
    /// Micro-units.
    pub price: i64,
    pub related_skus: Vec<String>,
    pub update_time: Micros,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductInput {
    pub sku: String,
    pub display_name: String,
    pub category: String,
    pub price: f64,
    pub related_skus: Vec<String>,
}

impl ProductInput {
    pub fn validate(self, now: Micros) -> Result<Product, ValidationError> {
        let mut errs = ValidationError::new();
        let sku = normalise::token(&self.sku).unwrap_or_else(|why| {
            errs.add("sku", why);
            String::new()
        });
        let price = amount_to_micros(self.price).unwrap_or_else(|why| {
            errs.add("price", why);
            0
        });
        let mut related = Vec::new();
        for (i, r) in self.related_skus.iter().enumerate() {
            match normalise::token(r) {
                Ok(r) if r == sku => errs.add(
                    format!("related_skus[{i}]"),
                    "a product cannot relate to itself",
                ),
                Ok(r) => related.push(r),
                Err(why) => errs.add(format!("related_skus[{i}]"), why),
            }
        }
        related.sort();
        related.dedup();
        let display_name = self.display_name.trim().to_string();
        if display_name.is_empty() {
            errs.add("display_name", "is required");
        }
        for (field, value) in [
            ("display_name", &display_name),
            ("category", &self.category),
        ] {
            if let Err(why) = normalise::control_free(value) {
                errs.add(field, why);
            }
        }
        errs.into_result()?;
        Ok(Product {
            sku,
            display_name,
            category: self.category.trim().to_lowercase(),
            price,
            related_skus: related,
            update_time: now,
        })
    }
}

/// The channels a contact can happen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InteractionChannel {
    Phone,
    Email,
    Sms,
    Social,
    Web,
    Store,
    CallCentre,
}

impl InteractionChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            InteractionChannel::Phone => "PHONE",
            InteractionChannel::Email => "EMAIL",
            InteractionChannel::Sms => "SMS",
            InteractionChannel::Social => "SOCIAL",
            InteractionChannel::Web => "WEB",
            InteractionChannel::Store => "STORE",
            InteractionChannel::CallCentre => "CALL_CENTRE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PHONE" => InteractionChannel::Phone,
            "EMAIL" => InteractionChannel::Email,
            "SMS" => InteractionChannel::Sms,
            "SOCIAL" => InteractionChannel::Social,
            "WEB" => InteractionChannel::Web,
            "STORE" => InteractionChannel::Store,
            "CALL_CENTRE" => InteractionChannel::CallCentre,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "INBOUND",
            Direction::Outbound => "OUTBOUND",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "INBOUND" => Some(Direction::Inbound),
            "OUTBOUND" => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// One contact with a customer on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub id: i64,
    pub customer_id: i64,
    pub channel: InteractionChannel,
    pub direction: Direction,
    /// Free text such as `complaint`, `enquiry`, `newsletter`.
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub occurred_time: Micros,
    pub agent: String,
    pub create_time: Micros,
}

impl Interaction {
    /// Check the free-text fields of an interaction about to be recorded.
    pub fn validate_text(&self) -> Result<(), ValidationError> {
        let mut errs = ValidationError::new();
        if self.kind.len() > 64 {
            errs.add("kind", "must be at most 64 characters");
        }
        if self.subject.chars().count() > 500 {
            errs.add("subject", "must be at most 500 characters");
        }
        if self.body.len() > MAX_BODY {
            errs.add("body", format!("must be at most {MAX_BODY} bytes"));
        }
        if self.agent.len() > 200 {
            errs.add("agent", "must be at most 200 characters");
        }
        for (field, value) in [
            ("kind", &self.kind),
            ("subject", &self.subject),
            ("body", &self.body),
            ("agent", &self.agent),
        ] {
            if let Err(why) = normalise::control_free(value) {
                errs.add(field, why);
            }
        }
        errs.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(q: i64, p: f64) -> OrderLineInput {
        OrderLineInput {
            sku: "SKU-1".into(),
            category: "Bread".into(),
            quantity: q,
            unit_price: p,
        }
    }

    #[test]
    fn totals_in_micros() {
        let o = OrderInput {
            order_id: "A1".into(),
            lines: vec![line(2, 1.25), line(1, 10.0)],
            currency: "try".into(),
            ..Default::default()
        }
        .validate(1, 5)
        .unwrap();
        assert_eq!(o.total(), 12_500_000);
        assert_eq!(o.currency, "TRY");
        assert_eq!(o.placed_time, 5);
        assert_eq!(o.lines[0].category, "bread");
    }

    #[test]
    fn negative_quantities_and_prices_are_refused() {
        let e = OrderInput {
            order_id: "A1".into(),
            lines: vec![line(-1, 1.0), line(1, -2.0)],
            currency: "TRY".into(),
            ..Default::default()
        }
        .validate(1, 5)
        .unwrap_err();
        let fields: Vec<_> = e.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, vec!["lines[0].quantity", "lines[1].unit_price"]);
    }
}
