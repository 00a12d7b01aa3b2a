//! The service desk: teams, agents, SLA policies, tickets with their SLA clocks, comments.
//!
//! A ticket write is one transaction with everything it implies: the customer it links to (a
//! new PROSPECT for an unknown contact), the interaction on the customer's timeline, the
//! event (`ticket_created`, `ticket_resolved`, `sla_at_risk`, `sla_breached`) and the outbox
//! messages it causes, each under a unique idempotency key. The SLA watcher claims tickets
//! whose next clock mark has passed (`FOR UPDATE SKIP LOCKED` on PostgreSQL; the single writer
//! on SQLite) through a partial index holding only tickets with a mark still to come.

use std::collections::HashMap;

use bakkal_domain::audit::{self, AuditAction};
use bakkal_domain::business_hours::{BusinessHours, BusinessHoursSpec};
use bakkal_domain::filter::{Clause, FieldKind, Op, Value};
use bakkal_domain::ticket::{
    agent_name, comment_name, is_open, legal_transition, next_states, sla_policy_name, team_name,
    ticket_name, Sla, SlaEvent, DEFAULT_AT_RISK_FRACTION,
};
use bakkal_domain::time::Micros;
use bakkal_domain::{normalise, Customer, CustomerFields, ValidationError};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::args::{bind, Arg, SqlBuilder};
use crate::customers::{insert_customer, load_live};
use crate::lock::lock_row;
use crate::page::{split_page, Cursor};
use crate::{Backend, RecordScope, Result, Store, StoreError};

// ---- types -------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeamFields {
    pub display_name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: i64,
    pub fields: TeamFields,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentFields {
    pub display_name: String,
    pub email: String,
    pub team_ids: Vec<i64>,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: i64,
    pub fields: AgentFields,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlaPolicyFields {
    pub display_name: String,
    /// Empty: every kind.
    pub kinds: Vec<String>,
    pub priorities: Vec<String>,
    /// Empty: every tier.
    pub tier: String,
    pub first_response_within: Micros,
    pub resolve_within: Micros,
    /// `None`: 24x7 UTC.
    pub business_hours: Option<BusinessHoursSpec>,
    pub at_risk_fraction: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlaPolicy {
    pub id: i64,
    pub fields: SlaPolicyFields,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

impl SlaPolicy {
    /// The policy's schedule (validated when written; 24x7 if it no longer parses).
    pub fn hours(&self) -> BusinessHours {
        match &self.fields.business_hours {
            None => BusinessHours::always(),
            Some(spec) => BusinessHours::new(spec).unwrap_or_else(|_| BusinessHours::always()),
        }
    }

    /// How many of the ticket's attributes the policy names (more is more specific), or
    /// `None` when it does not cover the ticket.
    fn specificity(&self, kind: &str, priority: &str, tier: &str) -> Option<usize> {
        let f = &self.fields;
        let mut n = 0;
        if !f.kinds.is_empty() {
            if !f.kinds.iter().any(|k| k == kind) {
                return None;
            }
            n += 1;
        }
        if !f.priorities.is_empty() {
            if !f.priorities.iter().any(|p| p == priority) {
                return None;
            }
            n += 1;
        }
        if !f.tier.is_empty() {
            if f.tier != tier {
                return None;
            }
            n += 1;
        }
        Some(n)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: i64,
    pub customer_id: i64,
    pub contact_email: String,
    pub contact_phone: String,
    pub kind: String,
    /// An interaction channel: `EMAIL`, `PHONE`, …
    pub channel: String,
    pub subject: String,
    pub description: String,
    pub topic: String,
    pub priority: String,
    pub state: String,
    pub team_id: Option<i64>,
    pub assignee_id: Option<i64>,
    pub sla_policy_id: Option<i64>,
    pub sla: Sla,
    pub satisfaction: Option<i64>,
    pub satisfaction_comment: String,
    pub resolution: String,
    pub resolution_article_id: Option<i64>,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

impl Ticket {
    pub fn name(&self) -> String {
        ticket_name(self.id)
    }

    pub fn etag(&self) -> String {
        bakkal_domain::customer::etag(self.version)
    }
}

/// Who a new ticket belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketCustomer {
    Id(i64),
    /// Found by normalised email, then phone; created as a prospect when unknown.
    Contact {
        email: Option<String>,
        phone: Option<String>,
        display_name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    pub customer: TicketCustomer,
    pub contact_email: String,
    pub contact_phone: String,
    pub kind: String,
    pub channel: String,
    pub subject: String,
    pub description: String,
    pub topic: String,
    /// `None`: NORMAL.
    pub priority: Option<String>,
    /// `None`: the default team (the first one).
    pub team_id: Option<i64>,
    /// `None`: the active agent of the team with the fewest open tickets.
    pub assignee_id: Option<i64>,
    pub request_id: Option<String>,
}

/// Changes UpdateTicket makes (the caller applied its mask).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketChanges {
    pub subject: Option<String>,
    pub description: Option<String>,
    pub topic: Option<String>,
    pub priority: Option<String>,
    pub state: Option<String>,
    pub team_id: Option<i64>,
    pub assignee_id: Option<Option<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketComment {
    pub id: i64,
    pub ticket_id: i64,
    pub author_agent_id: Option<i64>,
    pub body: String,
    pub public: bool,
    pub create_time: Micros,
}

impl TicketComment {
    pub fn name(&self) -> String {
        comment_name(self.ticket_id, self.id)
    }
}

/// A message a desk event queues. `customer_id` 0 with a `recipient` (`agents/3`, `teams/2`)
/// for reminders to the desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskMessage {
    pub customer_id: i64,
    pub recipient: String,
    pub channel: String,
    pub subject: String,
    pub body: String,
    pub idempotency_key: String,
}

/// What a desk event is about, for whoever writes its messages.
#[derive(Debug, Clone)]
pub struct DeskEvent<'a> {
    /// `ticket_created`, `ticket_resolved`, `sla_at_risk`, `sla_breached`.
    pub kind: &'a str,
    /// `first_response` or `resolution` for the SLA events.
    pub clock: &'a str,
    pub ticket: &'a Ticket,
    pub customer: &'a Customer,
    pub policy: Option<&'a SlaPolicy>,
}

/// Writes the messages of a desk event (templates or MESSAGE scripts, in the transport).
pub type Notifier = dyn Fn(&DeskEvent<'_>) -> Vec<DeskMessage> + Send + Sync;

/// Filterable ticket fields (AIP-160 subset).
pub const TICKET_FILTER_FIELDS: &[(&str, FieldKind)] = &[
    ("state", FieldKind::Enum(&bakkal_domain::ticket::STATES)),
    ("kind", FieldKind::Enum(&bakkal_domain::ticket::KINDS)),
    (
        "priority",
        FieldKind::Enum(&bakkal_domain::ticket::PRIORITIES),
    ),
    (
        "sla_status",
        FieldKind::Enum(&bakkal_domain::ticket::SLA_STATUSES),
    ),
    ("topic", FieldKind::Text),
    ("channel", FieldKind::Text),
    ("team", FieldKind::Text),
    ("assignee", FieldKind::Text),
    ("customer", FieldKind::Text),
];

pub const TICKET_SORT_FIELDS: &[&str] = &["create_time", "update_time"];

mod rows;
mod sla;
mod teams;
mod tickets;

use rows::*;
use sla::*;
use teams::*;
use tickets::*;
