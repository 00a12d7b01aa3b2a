//! A person's own data: their consent history (`consent.rs`), everything bakkal holds about
//! them as one JSON document (`export.rs`, over the [`SECTIONS`] below) and the erasure
//! that reaches every table (`erase.rs`).
//!
//! A table that holds a person's records is one line in [`SECTIONS`] (what the export
//! reads) and, when it holds personal data, one statement in `erase.rs`.

pub(crate) mod consent;
mod erase;
mod export;

pub(crate) use erase::erase_everywhere;
pub use export::{DataSubject, EXPORT_CHUNK};

/// The customer's rows, and those of customers merged into them (`$1`: the customer's id).
macro_rules! whose {
    () => {
        "(customer_id = $1 OR customer_id IN (SELECT id FROM customers WHERE merged_into = $1))"
    };
}
pub(crate) use whose;

/// One kind of record a person has: its key in the document and the query of its rows (`$1`
/// is the customer's id; a query written in the dialect both databases accept).
pub(crate) struct Section {
    pub key: &'static str,
    pub sql: &'static str,
    /// One row (an object, or null) rather than a list.
    pub one: bool,
    /// Text columns holding JSON, embedded as JSON.
    pub json: &'static [&'static str],
}

const fn section(key: &'static str, sql: &'static str) -> Section {
    Section {
        key,
        sql,
        one: false,
        json: &[],
    }
}

/// Every kind of record the export holds, in document order. Columns named `*_time` are
/// written as RFC 3339 times, `tags` as a list; money is in micro-units of its currency.
pub(crate) const SECTIONS: &[Section] = &[
    Section {
        one: true,
        json: &["attributes"],
        ..section(
            "customer",
            "SELECT id, display_name, email, phone, country_code, region, city, birth_date, \
             tags, attributes, consent_email, consent_email_time, consent_sms, \
             consent_sms_time, consent_push, consent_push_time, consent_phone, \
             consent_phone_time, referred_by, owner, create_time, update_time, converted_time, \
             order_count, total_spent, first_order_time, last_order_time, referral_count \
             FROM customers WHERE id = $1",
        )
    },
    section(
        "consent_events",
        concat!(
            "SELECT id, customer_id, channel, granted, event_time, source, terms, actor, \
             ip_address, user_agent, create_time FROM consent_events WHERE ",
            whose!(),
            " ORDER BY id"
        ),
    ),
    Section {
        json: &["lines"],
        ..section(
            "orders",
            "SELECT order_id, currency, placed_time, status, total, lines, create_time \
             FROM orders WHERE customer_id = $1 ORDER BY placed_time, order_id",
        )
    },
    section(
        "interactions",
        "SELECT id, channel, direction, kind, subject, body, occurred_time, agent, create_time \
         FROM interactions WHERE customer_id = $1 ORDER BY occurred_time, id",
    ),
    section(
        "tickets",
        concat!(
            "SELECT id, contact_email, contact_phone, kind, channel, subject, description, \
             topic, priority, state, team_id, assignee_id, sla_status, satisfaction, \
             satisfaction_comment, resolution, first_response_time, resolved_time, \
             create_time, update_time FROM tickets WHERE ",
            whose!(),
            " ORDER BY id"
        ),
    ),
    section(
        "ticket_comments",
        concat!(
            "SELECT id, ticket_id, author_agent_id, body, public, create_time \
             FROM ticket_comments WHERE ticket_id IN (SELECT id FROM tickets WHERE ",
            whose!(),
            ") ORDER BY id"
        ),
    ),
    section(
        "messages",
        concat!(
            "SELECT id, campaign_id, ticket_id, channel, recipient, subject, body, status, \
             attempts, create_time, deliver_time FROM outbox_messages WHERE ",
            whose!(),
            " OR ticket_id IN (SELECT id FROM tickets WHERE ",
            whose!(),
            ") ORDER BY id"
        ),
    ),
    Section {
        one: true,
        ..section(
            "loyalty_account",
            "SELECT balance, lifetime_earned, tier, create_time, update_time \
             FROM loyalty_accounts WHERE customer_id = $1",
        )
    },
    section(
        "loyalty_ledger",
        "SELECT id, kind, points, balance_after, reason, order_id, remaining, expire_time, \
         create_time FROM points_transactions WHERE customer_id = $1 ORDER BY id",
    ),
    Section {
        one: true,
        ..section(
            "score",
            "SELECT score, tier, rfm_r, rfm_f, rfm_m, compute_time \
             FROM customer_scores WHERE customer_id = $1",
        )
    },
    section(
        "segment_memberships",
        "SELECT s.id AS segment_id, s.display_name FROM segment_members m \
         JOIN segments s ON s.id = m.segment_id WHERE m.customer_id = $1 ORDER BY s.id",
    ),
    Section {
        json: &["attributes"],
        ..section(
            "opportunities",
            "SELECT id, display_name, organization_id, pipeline_id, stage_id, amount, currency, \
             probability, forecast_category, close_date, owner, source, next_step, lost_reason, \
             tags, attributes, close_time, create_time, update_time \
             FROM opportunities WHERE customer_id = $1 ORDER BY id",
        )
    },
    Section {
        json: &["payload"],
        ..section(
            "events",
            "SELECT id, kind, payload, create_time FROM events WHERE customer_id = $1 \
             ORDER BY id",
        )
    },
];
