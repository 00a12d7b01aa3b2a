//! The functions and types registered on the engine. Every `///` comment here is exported by
//! [`crate::ScriptHost::definitions`], so it is written for the marketer reading the
//! definition file.
//!
//! Conventions: instants (`placed_time`, `now()`, `create_time`...) are integers, microseconds
//! since 1970-01-01 UTC; durations are whole days (`days_since(t)`, `tenure_days`); money is a
//! float in currency units (`12.5`); a value that is not known is `()`, except the day counts
//! of a customer who never bought or has no birth date, which are `-1`.

use rhai::plugin::*;

/// The moment of the current call (the clock handed to the host), in micros.
pub(crate) fn call_now() -> i64 {
    crate::host::current_now()
}

/// Named so that definition files show the plain result type.
type RhaiResultOf<T> = Result<T, Box<EvalAltResult>>;

fn opt_str(s: Option<&str>) -> Dynamic {
    s.map_or(Dynamic::UNIT, |s| Dynamic::from(s.to_string()))
}

fn opt_int(v: Option<i64>) -> Dynamic {
    v.map_or(Dynamic::UNIT, Dynamic::from_int)
}

fn birthday(c: &crate::types::ScriptCustomer) -> Option<(bool, i64, i64)> {
    crate::time::birthday(c.customer.fields.birth_date.as_deref()?, c.now)
}

#[export_module]
pub mod bakkal_api {
    use super::RhaiResultOf;
    use bakkal_domain::time::days_between;
    use bakkal_domain::{micros_to_amount, ConsentChannel};
    use rhai::{Array, Map, FLOAT, INT};

    use crate::types::{
        Catalog as CatalogT, Event as EventT, Message as MessageT, Offer as OfferT, ScriptCustomer,
        ScriptOrder, ScriptOrderLine, ScriptProduct,
    };

    /// A customer: contact data, tags, consent and the value keys of their orders.
    pub type Customer = ScriptCustomer;
    /// One order of a customer.
    pub type Order = ScriptOrder;
    /// One line of an order.
    pub type OrderLine = ScriptOrderLine;
    /// A product of the catalogue.
    pub type Product = ScriptProduct;
    /// The product catalogue: `for p in catalog { ... }`, `catalog.get(sku)`.
    pub type Catalog = CatalogT;
    /// Why a message script runs: `e.kind` and its fields.
    pub type Event = EventT;
    /// An offer made by `offer(sku, score, reason)`.
    pub type Offer = OfferT;
    /// A message made by `message(channel, subject, body)`.
    pub type Message = MessageT;

    // ---- Customer -------------------------------------------------------------------------

    /// The customer's resource name, `customers/{id}`.
    #[rhai_fn(get = "name", pure)]
    pub fn name(c: &mut Customer) -> String {
        c.customer.name()
    }
    /// The customer's id number.
    #[rhai_fn(get = "id", pure)]
    pub fn id(c: &mut Customer) -> INT {
        c.customer.id
    }
    /// The name to address the customer by (may be `""`).
    #[rhai_fn(get = "display_name", pure)]
    pub fn display_name(c: &mut Customer) -> String {
        c.customer.fields.display_name.clone()
    }
    /// The first word of the display name, for greetings (`""` when there is none).
    #[rhai_fn(get = "first_name", pure)]
    pub fn first_name(c: &mut Customer) -> String {
        c.customer
            .fields
            .display_name
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    }
    /// Email address, lower-case, or `()` when unknown.
    #[rhai_fn(get = "email", pure)]
    pub fn email(c: &mut Customer) -> Dynamic {
        super::opt_str(c.customer.fields.email.as_deref())
    }
    /// Phone number in E.164 (`+905321234567`), or `()` when unknown.
    #[rhai_fn(get = "phone", pure)]
    pub fn phone(c: &mut Customer) -> Dynamic {
        super::opt_str(c.customer.fields.phone.as_deref())
    }
    /// ISO country code, upper-case (`"TR"`), or `()` when unknown.
    #[rhai_fn(get = "country_code", pure)]
    pub fn country_code(c: &mut Customer) -> Dynamic {
        super::opt_str(c.customer.fields.country_code.as_deref())
    }
    /// Region (may be `""`).
    #[rhai_fn(get = "region", pure)]
    pub fn region(c: &mut Customer) -> String {
        c.customer.fields.region.clone()
    }
    /// City (may be `""`).
    #[rhai_fn(get = "city", pure)]
    pub fn city(c: &mut Customer) -> String {
        c.customer.fields.city.clone()
    }
    /// Birth date `"YYYY-MM-DD"`, or `()` when unknown.
    #[rhai_fn(get = "birth_date", pure)]
    pub fn birth_date(c: &mut Customer) -> Dynamic {
        super::opt_str(c.customer.fields.birth_date.as_deref())
    }
    /// `"PROSPECT"` (never bought), `"ACTIVE"` or `"LAPSED"` (no order for 180 days).
    #[rhai_fn(get = "stage", pure)]
    pub fn stage(c: &mut Customer) -> String {
        c.customer.stage(c.now).as_str().to_string()
    }
    /// Tags, lower-case and sorted.
    #[rhai_fn(get = "tags", pure)]
    pub fn tags(c: &mut Customer) -> Array {
        c.customer
            .fields
            .tags
            .iter()
            .map(|t| Dynamic::from(t.clone()))
            .collect()
    }
    /// Free-form attributes as a map of strings.
    #[rhai_fn(get = "attributes", pure)]
    pub fn attributes(c: &mut Customer) -> Map {
        c.customer
            .fields
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
            .collect()
    }
    /// The account owner (a member of staff; may be `""`).
    #[rhai_fn(get = "owner", pure)]
    pub fn owner(c: &mut Customer) -> String {
        c.customer.fields.owner.clone()
    }
    /// The resource name of the customer who referred this one, or `()`.
    #[rhai_fn(get = "referred_by", pure)]
    pub fn referred_by(c: &mut Customer) -> Dynamic {
        c.customer.fields.referred_by.map_or(Dynamic::UNIT, |id| {
            bakkal_domain::name::customer_name(id).into()
        })
    }
    /// When the customer was created (micros).
    #[rhai_fn(get = "create_time", pure)]
    pub fn create_time(c: &mut Customer) -> INT {
        c.customer.create_time
    }
    /// Lifetime value: everything spent on paid orders, in currency units (same as `total_spent`).
    #[rhai_fn(get = "ltv", pure)]
    pub fn ltv(c: &mut Customer) -> FLOAT {
        micros_to_amount(c.keys().total_spent)
    }
    /// Everything spent on paid orders, in currency units.
    #[rhai_fn(get = "total_spent", pure)]
    pub fn total_spent(c: &mut Customer) -> FLOAT {
        micros_to_amount(c.keys().total_spent)
    }
    /// Number of paid orders.
    #[rhai_fn(get = "order_count", pure)]
    pub fn order_count(c: &mut Customer) -> INT {
        c.keys().order_count
    }
    /// Average paid order, in currency units (`0.0` for a prospect).
    #[rhai_fn(get = "average_order_value", pure)]
    pub fn average_order_value(c: &mut Customer) -> FLOAT {
        micros_to_amount(c.keys().average_order_value)
    }
    /// Whole days since the last paid order; `-1` for a customer who never bought.
    #[rhai_fn(get = "days_since_last_order", pure)]
    pub fn days_since_last_order(c: &mut Customer) -> INT {
        c.keys().days_since_last_order.unwrap_or(-1)
    }
    /// Whole days since the first paid order; `0` for a prospect.
    #[rhai_fn(get = "tenure_days", pure)]
    pub fn tenure_days(c: &mut Customer) -> INT {
        c.keys().tenure_days
    }
    /// How many customers this one referred.
    #[rhai_fn(get = "referral_count", pure)]
    pub fn referral_count(c: &mut Customer) -> INT {
        c.keys().referral_count
    }
    /// When the first paid order was placed (micros), or `()`.
    #[rhai_fn(get = "first_order_time", pure)]
    pub fn first_order_time(c: &mut Customer) -> Dynamic {
        super::opt_int(c.keys().first_order_time)
    }
    /// When the last paid order was placed (micros), or `()`.
    #[rhai_fn(get = "last_order_time", pure)]
    pub fn last_order_time(c: &mut Customer) -> Dynamic {
        super::opt_int(c.keys().last_order_time)
    }
    /// The attribute `key` as a string, or `()` when the customer has none.
    #[rhai_fn(pure)]
    pub fn attr(c: &mut Customer, key: &str) -> Dynamic {
        super::opt_str(c.customer.fields.attributes.get(key).map(String::as_str))
    }
    /// Does the customer carry this tag? (Tags are lower-case; the test ignores case.)
    #[rhai_fn(pure)]
    pub fn has_tag(c: &mut Customer, tag: &str) -> bool {
        let tag = tag.trim().to_lowercase();
        c.customer.fields.tags.contains(&tag)
    }
    /// Has the customer agreed to be contacted on `channel`: `"email"`, `"sms"`, `"push"` or
    /// `"phone"`? Any other channel is an error.
    #[rhai_fn(pure, return_raw)]
    pub fn has_consent(c: &mut Customer, channel: &str) -> RhaiResultOf<bool> {
        let ch = ConsentChannel::ALL
            .into_iter()
            .find(|ch| ch.as_str().eq_ignore_ascii_case(channel.trim()))
            .ok_or_else(|| {
                format!("unknown consent channel '{channel}' (use email, sms, push or phone)")
            })?;
        Ok(c.customer.fields.consent.get(ch).granted)
    }
    /// Is today (at the call's `now`, UTC) the customer's birthday? `false` when unknown.
    /// Those born on 29 February celebrate on 28 February in common years.
    #[rhai_fn(pure)]
    pub fn is_birthday_today(c: &mut Customer) -> bool {
        super::birthday(c).is_some_and(|b| b.0)
    }
    /// Days until the next birthday (`0` on the day); `-1` when the birth date is unknown.
    #[rhai_fn(pure)]
    pub fn days_until_birthday(c: &mut Customer) -> INT {
        super::birthday(c).map_or(-1, |b| b.1)
    }
    /// Age in whole years; `-1` when the birth date is unknown.
    #[rhai_fn(pure)]
    pub fn age(c: &mut Customer) -> INT {
        super::birthday(c).map_or(-1, |b| b.2)
    }
    /// Every order of the customer, oldest first, paid and refunded.
    #[rhai_fn(pure)]
    pub fn orders(c: &mut Customer) -> Array {
        c.orders.iter().map(|o| Dynamic::from(o.clone())).collect()
    }

    // ---- Helpers --------------------------------------------------------------------------

    /// Has the customer ever bought (in a paid order) this SKU or a product of this category?
    pub fn has_bought(c: &mut Customer, sku_or_category: &str) -> bool {
        let cat = sku_or_category.trim().to_lowercase();
        c.paid_orders()
            .flat_map(|o| o.lines.iter())
            .any(|l| l.sku == sku_or_category || l.category == cat)
    }
    /// What the customer spent on paid orders in the last `days` days, in currency units.
    pub fn spent_in_days(c: &mut Customer, days: INT) -> FLOAT {
        let total = c
            .paid_orders_in_days(days)
            .map(|o| o.total())
            .fold(0i64, i64::saturating_add);
        micros_to_amount(total)
    }
    /// How many paid orders the customer placed in the last `days` days.
    pub fn orders_in_days(c: &mut Customer, days: INT) -> INT {
        c.paid_orders_in_days(days).count() as INT
    }
    /// `text in array` for an array of strings (SKUs, tags, categories), compared natively:
    /// the same answer as the generic `in`, without an `==` call per element.
    #[rhai_fn(name = "contains", pure)]
    pub fn array_contains_text(a: &mut Array, text: &str) -> bool {
        a.iter().any(|d| {
            d.read_lock::<rhai::ImmutableString>()
                .is_some_and(|s| s.as_str() == text)
        })
    }
    /// Units bought per category over all paid orders: `#{ "coffee": 3, "tea": 1 }`.
    pub fn category_counts(c: &mut Customer) -> Map {
        let mut m = Map::new();
        for l in c.paid_orders().flat_map(|o| o.lines.iter()) {
            let n = m
                .entry(l.category.as_str().into())
                .or_insert(Dynamic::from_int(0));
            *n = Dynamic::from_int(n.as_int().unwrap_or(0).saturating_add(l.quantity));
        }
        m
    }
    /// Every SKU the customer bought in a paid order, each once, sorted.
    pub fn bought_skus(c: &mut Customer) -> Array {
        let mut skus: Vec<&str> = c
            .paid_orders()
            .flat_map(|o| o.lines.iter())
            .map(|l| l.sku.as_str())
            .collect();
        skus.sort_unstable();
        skus.dedup();
        skus.into_iter()
            .map(|s| Dynamic::from(s.to_string()))
            .collect()
    }
    /// Whole days from the instant `t` (micros) to now; `0` if `t` is in the future.
    pub fn days_since(t: INT) -> INT {
        days_between(t, super::call_now())
    }
    /// The moment of this call, in micros since 1970-01-01 UTC.
    pub fn now() -> INT {
        super::call_now()
    }
    /// `n` days, in micros: `now() - days(30)` is thirty days ago.
    pub fn days(n: INT) -> INT {
        n.saturating_mul(bakkal_domain::time::MICROS_PER_DAY)
    }

    // ---- Order ----------------------------------------------------------------------------

    /// The source system's order id.
    #[rhai_fn(get = "order_id", pure)]
    pub fn order_id(o: &mut Order) -> String {
        o.0.order_id.clone()
    }
    /// When the order was placed (micros).
    #[rhai_fn(get = "placed_time", pure)]
    pub fn placed_time(o: &mut Order) -> INT {
        o.0.placed_time
    }
    /// ISO currency code (`"TRY"`).
    #[rhai_fn(get = "currency", pure)]
    pub fn currency(o: &mut Order) -> String {
        o.0.currency.clone()
    }
    /// Sum of quantity × unit price, in currency units.
    #[rhai_fn(get = "total", pure)]
    pub fn order_total(o: &mut Order) -> FLOAT {
        micros_to_amount(o.0.total())
    }
    /// `"PAID"` or `"REFUNDED"`.
    #[rhai_fn(get = "status", pure)]
    pub fn status(o: &mut Order) -> String {
        o.0.status.as_str().to_string()
    }
    /// The order's lines.
    #[rhai_fn(get = "lines", pure)]
    pub fn lines(o: &mut Order) -> Array {
        o.0.lines
            .iter()
            .map(|l| Dynamic::from(ScriptOrderLine(l.clone())))
            .collect()
    }

    // ---- OrderLine ------------------------------------------------------------------------

    /// The product's SKU.
    #[rhai_fn(get = "sku", pure)]
    pub fn line_sku(l: &mut OrderLine) -> String {
        l.0.sku.clone()
    }
    /// The product's category, lower-case.
    #[rhai_fn(get = "category", pure)]
    pub fn line_category(l: &mut OrderLine) -> String {
        l.0.category.clone()
    }
    /// Units bought.
    #[rhai_fn(get = "quantity", pure)]
    pub fn quantity(l: &mut OrderLine) -> INT {
        l.0.quantity
    }
    /// Price of one unit, in currency units.
    #[rhai_fn(get = "unit_price", pure)]
    pub fn unit_price(l: &mut OrderLine) -> FLOAT {
        micros_to_amount(l.0.unit_price)
    }
    /// Quantity × unit price, in currency units.
    #[rhai_fn(get = "total", pure)]
    pub fn line_total(l: &mut OrderLine) -> FLOAT {
        micros_to_amount(l.0.quantity.saturating_mul(l.0.unit_price))
    }

    // ---- Product and Catalog --------------------------------------------------------------

    /// The product's SKU.
    #[rhai_fn(get = "sku", pure)]
    pub fn product_sku(p: &mut Product) -> String {
        p.0.sku.clone()
    }
    /// The product's name.
    #[rhai_fn(get = "display_name", pure)]
    pub fn product_display_name(p: &mut Product) -> String {
        p.0.display_name.clone()
    }
    /// The product's category, lower-case.
    #[rhai_fn(get = "category", pure)]
    pub fn product_category(p: &mut Product) -> String {
        p.0.category.clone()
    }
    /// The list price, in currency units.
    #[rhai_fn(get = "price", pure)]
    pub fn price(p: &mut Product) -> FLOAT {
        micros_to_amount(p.0.price)
    }
    /// SKUs of products often bought with this one.
    #[rhai_fn(get = "related_skus", pure)]
    pub fn related_skus(p: &mut Product) -> Array {
        p.0.related_skus
            .iter()
            .map(|s| Dynamic::from(s.clone()))
            .collect()
    }

    /// Number of products in the catalogue.
    #[rhai_fn(name = "len", pure)]
    pub fn catalog_len(cat: &mut Catalog) -> INT {
        cat.len() as INT
    }
    /// The product with this SKU, or `()`.
    #[rhai_fn(name = "get", pure)]
    pub fn catalog_get(cat: &mut Catalog, sku: &str) -> Dynamic {
        cat.get(sku)
            .map_or(Dynamic::UNIT, |p| Dynamic::from(p.clone()))
    }
    /// Is there a product with this SKU?
    #[rhai_fn(name = "contains", pure)]
    pub fn catalog_contains(cat: &mut Catalog, sku: &str) -> bool {
        cat.get(sku).is_some()
    }
    /// Every product, as an array.
    #[rhai_fn(name = "products", pure)]
    pub fn catalog_products(cat: &mut Catalog) -> Array {
        cat.products
            .iter()
            .map(|p| Dynamic::from(p.clone()))
            .collect()
    }
    /// The products of one category (compared lower-case).
    #[rhai_fn(name = "in_category", pure)]
    pub fn catalog_in_category(cat: &mut Catalog, category: &str) -> Array {
        let category = category.trim().to_lowercase();
        cat.products
            .iter()
            .filter(|p| p.0.category == category)
            .map(|p| Dynamic::from(p.clone()))
            .collect()
    }

    // ---- Event ----------------------------------------------------------------------------

    /// What happened: `"order_placed"`, `"inactive"`, `"birthday"`, `"tier_changed"`,
    /// `"segment_entered"`, `"segment_exited"`, `"campaign"`, ...
    #[rhai_fn(get = "kind", pure)]
    pub fn kind(e: &mut Event) -> String {
        e.kind.clone()
    }
    /// Every field of the event, as a map.
    #[rhai_fn(get = "fields", pure)]
    pub fn fields(e: &mut Event) -> Map {
        e.fields.clone()
    }
    /// When the event happened (micros).
    #[rhai_fn(get = "time", pure)]
    pub fn time(e: &mut Event) -> INT {
        e.time.unwrap_or_else(super::call_now)
    }
    /// One field of the event, or `()` when it has none by that name.
    #[rhai_fn(pure)]
    pub fn field(e: &mut Event, name: &str) -> Dynamic {
        e.fields.get(name).cloned().unwrap_or(Dynamic::UNIT)
    }

    // ---- Results --------------------------------------------------------------------------

    /// Make an offer of `sku`: `score` ranks offers (higher first), `reason` is shown to staff.
    #[rhai_fn(name = "offer", return_raw)]
    pub fn offer(sku: &str, score: FLOAT, reason: &str) -> RhaiResultOf<Offer> {
        if sku.trim().is_empty() {
            return Err("offer: the sku is empty".into());
        }
        if !score.is_finite() {
            return Err(format!("offer: score {score} is not a finite number").into());
        }
        Ok(OfferT {
            sku: sku.trim().to_string(),
            score,
            reason: reason.to_string(),
            allow_bought: false,
        })
    }
    /// Make an offer of `sku` with a whole-number score.
    #[rhai_fn(name = "offer", return_raw)]
    pub fn offer_int(sku: &str, score: INT, reason: &str) -> RhaiResultOf<Offer> {
        offer(sku, score as FLOAT, reason)
    }
    /// The offered SKU.
    #[rhai_fn(get = "sku", pure)]
    pub fn offer_sku(o: &mut Offer) -> String {
        o.sku.clone()
    }
    /// The offer's score.
    #[rhai_fn(get = "score", pure)]
    pub fn offer_score(o: &mut Offer) -> FLOAT {
        o.score
    }
    /// Why the offer is made.
    #[rhai_fn(get = "reason", pure)]
    pub fn offer_reason(o: &mut Offer) -> String {
        o.reason.clone()
    }
    /// The same offer, allowed for a customer who already bought the product (a refill):
    /// `offer("C-1", 5.0, "time to restock").allow_bought()`.
    #[rhai_fn(name = "allow_bought")]
    pub fn offer_allow_bought(o: &mut Offer) -> Offer {
        o.allow_bought = true;
        o.clone()
    }
    /// Whether the offer may go to a customer who already bought the product.
    #[rhai_fn(get = "allow_bought", pure)]
    pub fn offer_allows_bought(o: &mut Offer) -> bool {
        o.allow_bought
    }

    /// Make a message on `channel` (`"email"`, `"sms"`, `"push"` or `"phone"`).
    #[rhai_fn(return_raw)]
    pub fn message(channel: &str, subject: &str, body: &str) -> RhaiResultOf<Message> {
        let ch = channel.trim().to_lowercase();
        if !ConsentChannel::ALL.iter().any(|c| c.as_str() == ch) {
            return Err(format!(
                "message: unknown channel '{channel}' (use email, sms, push or phone)"
            )
            .into());
        }
        Ok(MessageT {
            channel: ch,
            subject: subject.to_string(),
            body: body.to_string(),
        })
    }
    /// The message's channel.
    #[rhai_fn(get = "channel", pure)]
    pub fn message_channel(m: &mut Message) -> String {
        m.channel.clone()
    }
    /// The message's subject.
    #[rhai_fn(get = "subject", pure)]
    pub fn message_subject(m: &mut Message) -> String {
        m.subject.clone()
    }
    /// Change the message's subject.
    #[rhai_fn(set = "subject")]
    pub fn set_message_subject(m: &mut Message, subject: &str) {
        m.subject = subject.to_string();
    }
    /// The message's body.
    #[rhai_fn(get = "body", pure)]
    pub fn message_body(m: &mut Message) -> String {
        m.body.clone()
    }
    /// Change the message's body.
    #[rhai_fn(set = "body")]
    pub fn set_message_body(m: &mut Message, body: &str) {
        m.body = body.to_string();
    }
}
