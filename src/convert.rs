//! Conversions between protobuf messages and domain types. Inputs are checked here (enum
//! values, timestamps, resource names); the domain rules themselves live in `bakkal-domain`.

use bakkal_domain::name::{
    customer_name, interaction_name, order_name, parse_customer, product_name,
};
use bakkal_domain::order::micros_to_amount;
use bakkal_domain::time::{happened, Micros, MICROS_PER_SECOND};
use bakkal_domain::{
    Consent, Consents, Customer, CustomerFields, Direction, Interaction, InteractionChannel, Order,
    OrderInput, OrderLineInput, OrderStatus, Product, ProductInput, Stage, ValidationError,
};
use prost_types::Timestamp;

use crate::auth::mask::Pii;
use crate::proto;

pub fn timestamp(m: Micros) -> Timestamp {
    Timestamp {
        seconds: m.div_euclid(MICROS_PER_SECOND),
        nanos: (m.rem_euclid(MICROS_PER_SECOND) * 1000) as i32,
    }
}

pub fn opt_timestamp(m: Option<Micros>) -> Option<Timestamp> {
    m.map(timestamp)
}

/// A timestamp from a request, checked: nanos in range, years 1..=9999.
pub fn micros(t: &Timestamp, field: &str, errs: &mut ValidationError) -> Option<Micros> {
    // 0001-01-01 .. 9999-12-31 as in google.protobuf.Timestamp
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    if !(0..1_000_000_000).contains(&t.nanos) || !(MIN..=MAX).contains(&t.seconds) {
        errs.add(field, "is not a valid timestamp");
        return None;
    }
    Some(t.seconds * MICROS_PER_SECOND + (t.nanos / 1000) as i64)
}

/// Parse a `scripts/{id}` or `scripts/{id}@{revision}` reference held in `field`.
pub fn script_ref(name: &str, field: &str) -> Result<(i64, Option<i64>), tonic::Status> {
    bakkal_domain::name::parse_script(name)
        .ok_or_else(|| crate::status::invalid_field(field, bad_script_name(name)))
}

/// What is wrong with a script reference that does not parse.
pub fn bad_script_name(name: &str) -> String {
    format!("'{name}' is not a script name like scripts/12 or scripts/12@3")
}

/// Parse a `customers/{id}` reference held in `field`.
pub fn customer_ref(name: &str, field: &str) -> Result<i64, ValidationError> {
    parse_customer(name).ok_or_else(|| {
        ValidationError::single(
            field,
            format!("'{name}' is not a customer name like customers/123"),
        )
    })
}

fn stage_to_proto(s: Stage) -> proto::Stage {
    match s {
        Stage::Prospect => proto::Stage::Prospect,
        Stage::Active => proto::Stage::Active,
        Stage::Lapsed => proto::Stage::Lapsed,
    }
}

fn consent_to_proto(c: Consent) -> proto::Consent {
    proto::Consent {
        granted: c.granted,
        update_time: opt_timestamp(c.update_time),
    }
}

/// A customer as a response carries it: personal data masked unless `pii` shows it.
pub fn customer_to_proto(c: &Customer, now: Micros, pii: Pii) -> proto::Customer {
    let f = &c.fields;
    let v = c.value_keys(now);
    proto::Customer {
        name: c.name(),
        display_name: f.display_name.clone(),
        email: pii.email(f.email.as_deref().unwrap_or_default()),
        phone: pii.phone(f.phone.as_deref().unwrap_or_default()),
        country_code: f.country_code.clone().unwrap_or_default(),
        region: f.region.clone(),
        city: f.city.clone(),
        birth_date: pii.hidden(f.birth_date.as_deref().unwrap_or_default()),
        stage: stage_to_proto(c.stage(now)) as i32,
        tags: f.tags.clone(),
        attributes: f.attributes.clone().into_iter().collect(),
        consent: Some(proto::ChannelConsents {
            email: Some(consent_to_proto(f.consent.email)),
            sms: Some(consent_to_proto(f.consent.sms)),
            push: Some(consent_to_proto(f.consent.push)),
            phone: Some(consent_to_proto(f.consent.phone)),
        }),
        referred_by: f.referred_by.map(customer_name).unwrap_or_default(),
        owner: f.owner.clone(),
        organization: f
            .organization_id
            .map(bakkal_domain::sales::organization_name)
            .unwrap_or_default(),
        create_time: Some(timestamp(c.create_time)),
        update_time: Some(timestamp(c.update_time)),
        converted_time: opt_timestamp(c.converted_time),
        etag: c.etag(),
        value: Some(proto::CustomerValue {
            first_order_time: opt_timestamp(v.first_order_time),
            last_order_time: opt_timestamp(v.last_order_time),
            order_count: v.order_count,
            total_spent: micros_to_amount(v.total_spent),
            average_order_value: micros_to_amount(v.average_order_value),
            days_since_last_order: v.days_since_last_order,
            tenure_days: v.tenure_days,
            referral_count: v.referral_count,
        }),
    }
}

fn consent_from_proto(
    c: &Option<proto::Consent>,
    field: &str,
    errs: &mut ValidationError,
) -> Consent {
    match c {
        None => Consent::default(),
        Some(c) => Consent {
            granted: c.granted,
            update_time: c.update_time.as_ref().and_then(|t| micros(t, field, errs)),
        },
    }
}

/// The writable fields of a request's customer, not yet normalised. Output-only fields
/// (`name`, `stage`, times, `value`) are ignored, as AIP-203 asks.
pub fn customer_fields(p: &proto::Customer) -> Result<CustomerFields, ValidationError> {
    let mut errs = ValidationError::new();
    let consent = p.consent.unwrap_or_default();
    let fields = CustomerFields {
        display_name: p.display_name.clone(),
        email: Some(p.email.clone()).filter(|s| !s.trim().is_empty()),
        phone: Some(p.phone.clone()).filter(|s| !s.trim().is_empty()),
        country_code: Some(p.country_code.clone()).filter(|s| !s.trim().is_empty()),
        region: p.region.clone(),
        city: p.city.clone(),
        birth_date: Some(p.birth_date.clone()).filter(|s| !s.trim().is_empty()),
        tags: p.tags.clone(),
        attributes: p.attributes.clone().into_iter().collect(),
        consent: Consents {
            email: consent_from_proto(&consent.email, "consent.email.update_time", &mut errs),
            sms: consent_from_proto(&consent.sms, "consent.sms.update_time", &mut errs),
            push: consent_from_proto(&consent.push, "consent.push.update_time", &mut errs),
            phone: consent_from_proto(&consent.phone, "consent.phone.update_time", &mut errs),
        },
        referred_by: if p.referred_by.is_empty() {
            None
        } else {
            match customer_ref(&p.referred_by, "referred_by") {
                Ok(id) => Some(id),
                Err(e) => {
                    errs.merge(e);
                    None
                }
            }
        },
        owner: p.owner.clone(),
        organization_id: if p.organization.trim().is_empty() {
            None
        } else {
            let id = bakkal_domain::name::parse_id(p.organization.trim(), "organizations");
            if id.is_none() {
                errs.add(
                    "organization",
                    format!("'{}' is not a name like organizations/3", p.organization),
                );
            }
            id
        },
    };
    errs.into_result().map(|_| fields)
}

pub fn interaction_to_proto(i: &Interaction) -> proto::Interaction {
    proto::Interaction {
        name: interaction_name(i.customer_id, i.id),
        channel: match i.channel {
            InteractionChannel::Phone => proto::InteractionChannel::Phone,
            InteractionChannel::Email => proto::InteractionChannel::Email,
            InteractionChannel::Sms => proto::InteractionChannel::Sms,
            InteractionChannel::Social => proto::InteractionChannel::Social,
            InteractionChannel::Web => proto::InteractionChannel::Web,
            InteractionChannel::Store => proto::InteractionChannel::Store,
            InteractionChannel::CallCentre => proto::InteractionChannel::CallCentre,
        } as i32,
        direction: match i.direction {
            Direction::Inbound => proto::Direction::Inbound,
            Direction::Outbound => proto::Direction::Outbound,
        } as i32,
        kind: i.kind.clone(),
        subject: i.subject.clone(),
        body: i.body.clone(),
        occurred_time: Some(timestamp(i.occurred_time)),
        agent: i.agent.clone(),
        create_time: Some(timestamp(i.create_time)),
    }
}

/// An interaction to record for `customer_id`; channel and direction are required.
pub fn interaction_from_proto(
    p: &proto::Interaction,
    customer_id: i64,
    now: Micros,
) -> Result<Interaction, ValidationError> {
    let mut errs = ValidationError::new();
    let channel = match proto::InteractionChannel::try_from(p.channel) {
        Ok(proto::InteractionChannel::Unspecified) => {
            errs.add(
                "channel",
                "is required: PHONE, EMAIL, SMS, SOCIAL, WEB, STORE or CALL_CENTRE",
            );
            None
        }
        Ok(c) => InteractionChannel::parse(c.as_str_name()),
        Err(_) => {
            errs.add("channel", format!("unknown value {}", p.channel));
            None
        }
    };
    let direction = match proto::Direction::try_from(p.direction) {
        Ok(proto::Direction::Unspecified) => {
            errs.add("direction", "is required: INBOUND or OUTBOUND");
            None
        }
        Ok(d) => Direction::parse(d.as_str_name()),
        Err(_) => {
            errs.add("direction", format!("unknown value {}", p.direction));
            None
        }
    };
    let occurred_time = match &p.occurred_time {
        Some(t) => micros(t, "occurred_time", &mut errs)
            .and_then(|t| match happened(t, now) {
                Ok(t) => Some(t),
                Err(why) => {
                    errs.add("occurred_time", why);
                    None
                }
            })
            .unwrap_or(now),
        None => now,
    };
    let i = Interaction {
        id: 0,
        customer_id,
        channel: channel.unwrap_or(InteractionChannel::Web),
        direction: direction.unwrap_or(Direction::Inbound),
        kind: p.kind.trim().to_lowercase(),
        subject: p.subject.clone(),
        body: p.body.clone(),
        occurred_time,
        agent: p.agent.trim().to_string(),
        create_time: now,
    };
    if let Err(e) = i.validate_text() {
        errs.merge(e);
    }
    errs.into_result().map(|_| i)
}

pub fn order_to_proto(o: &Order) -> proto::Order {
    proto::Order {
        name: order_name(o.customer_id, &o.order_id),
        order_id: o.order_id.clone(),
        lines: o
            .lines
            .iter()
            .map(|l| proto::OrderLine {
                sku: l.sku.clone(),
                category: l.category.clone(),
                quantity: l.quantity,
                unit_price: micros_to_amount(l.unit_price),
            })
            .collect(),
        currency: o.currency.clone(),
        placed_time: Some(timestamp(o.placed_time)),
        status: match o.status {
            OrderStatus::Paid => proto::OrderStatus::Paid,
            OrderStatus::Refunded => proto::OrderStatus::Refunded,
        } as i32,
        total: micros_to_amount(o.total()),
        create_time: Some(timestamp(o.create_time)),
    }
}

/// A validated order (its `customer_id` still to be set by the caller).
/// What an order is checked against beyond its own fields.
#[derive(Debug, Clone, Copy)]
pub struct OrderRules<'a> {
    /// A placed time after this is refused.
    pub latest: Micros,
    /// The currency of an order that names none (`--default-currency`); `None`: required.
    pub default_currency: Option<&'a str>,
}

/// An order from its protobuf form, checked against `rules`.
pub fn order_from_proto(
    p: &proto::Order,
    now: Micros,
    rules: OrderRules<'_>,
) -> Result<Order, ValidationError> {
    let latest = rules.latest;
    let mut errs = ValidationError::new();
    let status = match proto::OrderStatus::try_from(p.status) {
        Ok(proto::OrderStatus::Unspecified) => None,
        Ok(s) => OrderStatus::parse(s.as_str_name()),
        Err(_) => {
            errs.add("status", format!("unknown value {}", p.status));
            None
        }
    };
    let placed_time = p
        .placed_time
        .as_ref()
        .and_then(|t| micros(t, "placed_time", &mut errs));
    let input = OrderInput {
        order_id: p.order_id.clone(),
        lines: p
            .lines
            .iter()
            .map(|l| OrderLineInput {
                sku: l.sku.clone(),
                category: l.category.clone(),
                quantity: l.quantity,
                unit_price: l.unit_price,
            })
            .collect(),
        currency: match rules.default_currency {
            Some(d) if p.currency.trim().is_empty() => d.to_string(),
            _ => p.currency.clone(),
        },
        placed_time,
        status,
    };
    match input.validate_until(0, now, latest) {
        Ok(o) if errs.is_empty() => Ok(o),
        Ok(_) => Err(errs),
        Err(e) => {
            errs.merge(e);
            Err(errs)
        }
    }
}

pub fn product_to_proto(p: &Product) -> proto::Product {
    proto::Product {
        name: product_name(&p.sku),
        sku: p.sku.clone(),
        display_name: p.display_name.clone(),
        category: p.category.clone(),
        price: micros_to_amount(p.price),
        related_skus: p.related_skus.clone(),
        update_time: Some(timestamp(p.update_time)),
    }
}

pub fn product_from_proto(p: &proto::Product, now: Micros) -> Result<Product, ValidationError> {
    ProductInput {
        sku: p.sku.clone(),
        display_name: p.display_name.clone(),
        category: p.category.clone(),
        price: p.price,
        related_skus: p.related_skus.clone(),
    }
    .validate(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for m in [0, 1, -1, 1_700_000_000_123_456] {
            let mut errs = ValidationError::new();
            assert_eq!(micros(&timestamp(m), "t", &mut errs), Some(m));
            assert!(errs.is_empty());
        }
        let mut errs = ValidationError::new();
        let bad = Timestamp {
            seconds: 0,
            nanos: -5,
        };
        assert_eq!(micros(&bad, "t", &mut errs), None);
        assert_eq!(errs.violations.len(), 1);
    }
}
