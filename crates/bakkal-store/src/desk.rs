//! The service desk: teams, agents, SLA policies, tickets with their SLA clocks, comments.
//!
//! A ticket write is one transaction with everything it implies: the customer it links to (a
//! new PROSPECT for an unknown contact), the interaction on the customer's timeline, the
//! event (`ticket_created`, `ticket_resolved`, `sla_at_risk`, `sla_breached`) and the outbox
//! messages it causes, each under a unique idempotency key. The SLA watcher claims tickets
//! whose next clock mark has passed (`FOR UPDATE SKIP LOCKED` on PostgreSQL; the single writer
//! on SQLite) through a partial index holding only tickets with a mark still to come.

use std::collections::HashMap;

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
use crate::{Backend, Result, Store, StoreError};

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

// ---- rows --------------------------------------------------------------------------------

const TEAM_COLUMNS: &str = "id, display_name, email, version, create_time, update_time";
const AGENT_COLUMNS: &str = "id, display_name, email, active, version, create_time, update_time";
const POLICY_COLUMNS: &str = "id, display_name, kinds, priorities, tier, first_response_within, \
     resolve_within, business_hours, at_risk_fraction, version, create_time, update_time";
const TICKET_COLUMNS: &str = "id, customer_id, contact_email, contact_phone, kind, channel, \
     subject, description, topic, priority, state, team_id, assignee_id, sla_policy_id, \
     first_response_target, resolution_target, at_risk_fraction, first_response_used, \
     resolution_used, clock_start_time, first_response_due_time, resolution_due_time, \
     first_response_time, resolved_time, first_response_business_micros, \
     resolution_business_micros, sla_status, sla_flags, next_sla_check_time, overdue_key, \
     satisfaction, satisfaction_comment, resolution, resolution_article_id, version, \
     create_time, update_time";
const COMMENT_COLUMNS: &str = "id, ticket_id, author_agent_id, body, public, create_time";

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn team_from_row(r: &AnyRow) -> std::result::Result<Team, sqlx::Error> {
    Ok(Team {
        id: r.try_get(0)?,
        fields: TeamFields {
            display_name: r.try_get(1)?,
            email: r.try_get(2)?,
        },
        version: r.try_get(3)?,
        create_time: r.try_get(4)?,
        update_time: r.try_get(5)?,
    })
}

fn agent_from_row(r: &AnyRow) -> std::result::Result<Agent, sqlx::Error> {
    let active: i64 = r.try_get(3)?;
    Ok(Agent {
        id: r.try_get(0)?,
        fields: AgentFields {
            display_name: r.try_get(1)?,
            email: r.try_get(2)?,
            team_ids: Vec::new(),
            active: active != 0,
        },
        version: r.try_get(4)?,
        create_time: r.try_get(5)?,
        update_time: r.try_get(6)?,
    })
}

fn policy_from_row(r: &AnyRow) -> std::result::Result<SlaPolicy, sqlx::Error> {
    let kinds: String = r.try_get(2)?;
    let priorities: String = r.try_get(3)?;
    let hours: Option<String> = r.try_get(7)?;
    Ok(SlaPolicy {
        id: r.try_get(0)?,
        fields: SlaPolicyFields {
            display_name: r.try_get(1)?,
            kinds: split_list(&kinds),
            priorities: split_list(&priorities),
            tier: r.try_get(4)?,
            first_response_within: r.try_get(5)?,
            resolve_within: r.try_get(6)?,
            business_hours: hours.and_then(|h| serde_json::from_str(&h).ok()),
            at_risk_fraction: r.try_get(8)?,
        },
        version: r.try_get(9)?,
        create_time: r.try_get(10)?,
        update_time: r.try_get(11)?,
    })
}

fn ticket_from_row(r: &AnyRow) -> std::result::Result<Ticket, sqlx::Error> {
    Ok(Ticket {
        id: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        contact_email: r.try_get(2)?,
        contact_phone: r.try_get(3)?,
        kind: r.try_get(4)?,
        channel: r.try_get(5)?,
        subject: r.try_get(6)?,
        description: r.try_get(7)?,
        topic: r.try_get(8)?,
        priority: r.try_get(9)?,
        state: r.try_get(10)?,
        team_id: r.try_get(11)?,
        assignee_id: r.try_get(12)?,
        sla_policy_id: r.try_get(13)?,
        sla: Sla {
            first_response_target: r.try_get(14)?,
            resolution_target: r.try_get(15)?,
            at_risk_fraction: r.try_get(16)?,
            first_response_used: r.try_get(17)?,
            resolution_used: r.try_get(18)?,
            clock_start: r.try_get(19)?,
            first_response_due: r.try_get(20)?,
            resolution_due: r.try_get(21)?,
            first_response_time: r.try_get(22)?,
            resolved_time: r.try_get(23)?,
            first_response_business: r.try_get(24)?,
            resolution_business: r.try_get(25)?,
            status: r.try_get(26)?,
            flags: r.try_get(27)?,
            next_check: r.try_get(28)?,
            overdue_key: r.try_get(29)?,
        },
        satisfaction: r.try_get(30)?,
        satisfaction_comment: r.try_get(31)?,
        resolution: r.try_get(32)?,
        resolution_article_id: r.try_get(33)?,
        version: r.try_get(34)?,
        create_time: r.try_get(35)?,
        update_time: r.try_get(36)?,
    })
}

fn comment_from_row(r: &AnyRow) -> std::result::Result<TicketComment, sqlx::Error> {
    let public: i64 = r.try_get(4)?;
    Ok(TicketComment {
        id: r.try_get(0)?,
        ticket_id: r.try_get(1)?,
        author_agent_id: r.try_get(2)?,
        body: r.try_get(3)?,
        public: public != 0,
        create_time: r.try_get(5)?,
    })
}

fn check_etag(etag: Option<&str>, current: &str, name: &str) -> Result<()> {
    if let Some(e) = etag.filter(|e| !e.is_empty()) {
        if e != current {
            return Err(StoreError::Aborted(format!(
                "{name} changed since etag {e}"
            )));
        }
    }
    Ok(())
}

// ---- helpers inside a transaction ---------------------------------------------------------

async fn load_team(conn: &mut AnyConnection, id: i64) -> Result<Team> {
    let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1");
    match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(team_from_row(&r)?),
        None => Err(StoreError::NotFound(team_name(id))),
    }
}

async fn load_agent(conn: &mut AnyConnection, id: i64) -> Result<Agent> {
    let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1");
    let Some(r) = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Err(StoreError::NotFound(agent_name(id)));
    };
    let mut a = agent_from_row(&r)?;
    let teams: Vec<(i64,)> =
        sqlx::query_as("SELECT team_id FROM agent_teams WHERE agent_id = $1 ORDER BY team_id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    a.fields.team_ids = teams.into_iter().map(|(t,)| t).collect();
    Ok(a)
}

async fn load_policy(conn: &mut AnyConnection, id: i64) -> Result<SlaPolicy> {
    let sql = format!("SELECT {POLICY_COLUMNS} FROM sla_policies WHERE id = $1");
    match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(policy_from_row(&r)?),
        None => Err(StoreError::NotFound(sla_policy_name(id))),
    }
}

/// `lock`: `" FOR UPDATE"` on PostgreSQL (see [`Store::row_lock`]), empty otherwise.
async fn load_ticket(conn: &mut AnyConnection, id: i64, lock: &str) -> Result<Ticket> {
    let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1{lock}");
    match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(ticket_from_row(&r)?),
        None => Err(StoreError::NotFound(ticket_name(id))),
    }
}

async fn write_agent_teams(conn: &mut AnyConnection, agent: i64, teams: &[i64]) -> Result<()> {
    for &t in teams {
        load_team(conn, t).await?;
    }
    sqlx::query("DELETE FROM agent_teams WHERE agent_id = $1")
        .bind(agent)
        .execute(&mut *conn)
        .await?;
    for &t in teams {
        sqlx::query(
            "INSERT INTO agent_teams (agent_id, team_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(agent)
        .bind(t)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The active agent of `team` with the fewest open tickets (ties: the lower id).
async fn least_busy_agent(conn: &mut AnyConnection, team: i64) -> Result<Option<i64>> {
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT a.id FROM agents a JOIN agent_teams m ON m.agent_id = a.id \
         WHERE m.team_id = $1 AND a.active = 1 \
         ORDER BY a.open_tickets, a.id LIMIT 1",
    )
    .bind(team)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id)
}

/// Keep `agents.open_tickets` true when a ticket's assignee or openness changes.
async fn adjust_load(
    conn: &mut AnyConnection,
    before: (Option<i64>, bool),
    after: (Option<i64>, bool),
) -> Result<()> {
    if before == after {
        return Ok(());
    }
    for (agent, delta) in [(before, -1i64), (after, 1)]
        .into_iter()
        .filter_map(|((a, open), d)| a.filter(|_| open).map(|a| (a, d)))
    {
        sqlx::query("UPDATE agents SET open_tickets = open_tickets + $1 WHERE id = $2")
            .bind(delta)
            .bind(agent)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The most specific policy covering the ticket; ties go to the lower id.
async fn choose_policy(
    conn: &mut AnyConnection,
    kind: &str,
    priority: &str,
    customer_id: i64,
) -> Result<Option<SlaPolicy>> {
    let tier: Option<String> =
        sqlx::query_scalar("SELECT tier FROM customer_scores WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(&mut *conn)
            .await?;
    let tier = tier.unwrap_or_default();
    let sql = format!("SELECT {POLICY_COLUMNS} FROM sla_policies ORDER BY id");
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    let mut best: Option<(usize, SlaPolicy)> = None;
    for r in &rows {
        let p = policy_from_row(r)?;
        if let Some(n) = p.specificity(kind, priority, &tier) {
            if best.as_ref().is_none_or(|(b, _)| n > *b) {
                best = Some((n, p));
            }
        }
    }
    Ok(best.map(|(_, p)| p))
}

async fn find_contact(
    conn: &mut AnyConnection,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<Option<i64>> {
    let email_key = email.map(|e| normalise::email_key(e).unwrap_or_else(|_| e.to_string()));
    for (column, value) in [("email_key", email_key.as_deref()), ("phone", phone)] {
        let Some(v) = value else { continue };
        let sql = format!(
            "SELECT id FROM customers WHERE {column} = $1 AND merged_into IS NULL \
             AND deleted_time IS NULL"
        );
        let id: Option<i64> = sqlx::query_scalar(&sql)
            .bind(v.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        if id.is_some() {
            return Ok(id);
        }
    }
    Ok(None)
}

async fn write_ticket(conn: &mut AnyConnection, t: &Ticket) -> Result<Ticket> {
    let before: Option<(Option<i64>, String)> =
        sqlx::query_as("SELECT assignee_id, state FROM tickets WHERE id = $1")
            .bind(t.id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((assignee, state)) = before {
        adjust_load(
            conn,
            (assignee, is_open(&state)),
            (t.assignee_id, is_open(&t.state)),
        )
        .await?;
    }
    let sql = format!(
        "UPDATE tickets SET subject = $1, description = $2, topic = $3, priority = $4, \
         state = $5, team_id = $6, assignee_id = $7, first_response_used = $8, \
         resolution_used = $9, clock_start_time = $10, first_response_due_time = $11, \
         resolution_due_time = $12, first_response_time = $13, resolved_time = $14, \
         first_response_business_micros = $15, resolution_business_micros = $16, \
         sla_status = $17, sla_flags = $18, next_sla_check_time = $19, overdue_key = $20, \
         satisfaction = $21, satisfaction_comment = $22, resolution = $23, \
         resolution_article_id = $24, version = version + 1, update_time = $25 \
         WHERE id = $26 RETURNING {TICKET_COLUMNS}"
    );
    let s = &t.sla;
    let row = sqlx::query(&sql)
        .bind(t.subject.clone())
        .bind(t.description.clone())
        .bind(t.topic.clone())
        .bind(t.priority.clone())
        .bind(t.state.clone())
        .bind(t.team_id)
        .bind(t.assignee_id)
        .bind(s.first_response_used)
        .bind(s.resolution_used)
        .bind(s.clock_start)
        .bind(s.first_response_due)
        .bind(s.resolution_due)
        .bind(s.first_response_time)
        .bind(s.resolved_time)
        .bind(s.first_response_business)
        .bind(s.resolution_business)
        .bind(s.status.clone())
        .bind(s.flags)
        .bind(s.next_check)
        .bind(s.overdue_key)
        .bind(t.satisfaction)
        .bind(t.satisfaction_comment.clone())
        .bind(t.resolution.clone())
        .bind(t.resolution_article_id)
        .bind(t.update_time)
        .bind(t.id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(ticket_from_row(&row)?)
}

#[allow(clippy::too_many_arguments)]
async fn record_interaction(
    conn: &mut AnyConnection,
    t: &Ticket,
    direction: &str,
    kind: &str,
    subject: &str,
    body: &str,
    agent: &str,
    now: Micros,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO interactions (customer_id, channel, direction, kind, subject, body, \
         occurred_time, agent, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7)",
    )
    .bind(t.customer_id)
    .bind(t.channel.clone())
    .bind(direction.to_string())
    .bind(kind.to_string())
    .bind(format!("[{}] {subject}", t.name()))
    .bind(body.to_string())
    .bind(now)
    .bind(agent.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Record the event and queue what the notifier writes for it; a key already in the outbox is
/// skipped. Returns how many messages were queued.
async fn emit(
    conn: &mut AnyConnection,
    notify: &Notifier,
    kind: &str,
    clock: &str,
    t: &Ticket,
    now: Micros,
) -> Result<usize> {
    let customer = load_live(conn, t.customer_id).await?;
    let policy = match t.sla_policy_id {
        Some(id) => load_policy(conn, id).await.ok(),
        None => None,
    };
    let payload = serde_json::json!({
        "ticket": t.name(),
        "kind": t.kind,
        "priority": t.priority,
        "state": t.state,
        "clock": clock,
        "team": t.team_id.map(team_name),
        "assignee": t.assignee_id.map(agent_name),
    });
    sqlx::query(
        "INSERT INTO events (kind, customer_id, payload, create_time) VALUES ($1, $2, $3, $4)",
    )
    .bind(kind.to_string())
    .bind(t.customer_id)
    .bind(payload.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let event = DeskEvent {
        kind,
        clock,
        ticket: t,
        customer: &customer,
        policy: policy.as_ref(),
    };
    let mut queued = 0;
    for m in notify(&event) {
        let done = sqlx::query(
            "INSERT INTO outbox_messages (campaign_id, run_id, customer_id, channel, subject, \
             body, idempotency_key, status, attempts, create_time, ticket_id, recipient) \
             VALUES (0, 0, $1, $2, $3, $4, $5, 'QUEUED', 0, $6, $7, $8) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(m.customer_id)
        .bind(m.channel)
        .bind(m.subject)
        .bind(m.body)
        .bind(m.idempotency_key)
        .bind(now)
        .bind(t.id)
        .bind(m.recipient)
        .execute(&mut *conn)
        .await?;
        queued += done.rows_affected() as usize;
    }
    Ok(queued)
}

async fn hours_of(conn: &mut AnyConnection, t: &Ticket) -> Result<BusinessHours> {
    Ok(match t.sla_policy_id {
        Some(id) => load_policy(conn, id).await?.hours(),
        None => BusinessHours::always(),
    })
}

// ---- the store ----------------------------------------------------------------------------

impl Store {
    // ---- teams -------------------------------------------------------------------------------

    pub async fn create_team(&self, f: &TeamFields, now: Micros) -> Result<Team> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "INSERT INTO teams (display_name, email, version, create_time, update_time) \
             VALUES ($1, $2, 1, $3, $3) RETURNING {TEAM_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.email.clone())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let t = team_from_row(&row)?;
        tx.commit().await?;
        Ok(t)
    }

    pub async fn get_team(&self, id: i64) -> Result<Team> {
        let mut conn = self.acquire().await?;
        load_team(&mut conn, id).await
    }

    pub async fn list_teams(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Team>, Option<Cursor>)> {
        crate::page::page_by_id(
            &mut *self.acquire().await?,
            "teams",
            TEAM_COLUMNS,
            page_size,
            after,
            team_from_row,
            |t| t.id,
        )
        .await
    }

    pub async fn update_team(
        &self,
        id: i64,
        f: &TeamFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Team> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "teams", id).await?;
        let current = load_team(&mut tx, id).await?;
        check_etag(
            etag,
            &bakkal_domain::customer::etag(current.version),
            &team_name(id),
        )?;
        let sql = format!(
            "UPDATE teams SET display_name = $1, email = $2, version = version + 1, \
             update_time = $3 WHERE id = $4 RETURNING {TEAM_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.email.clone())
            .bind(now)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let t = team_from_row(&row)?;
        tx.commit().await?;
        Ok(t)
    }

    // ---- agents ------------------------------------------------------------------------------

    async fn check_agent_email(
        conn: &mut AnyConnection,
        email: &str,
        except: Option<i64>,
    ) -> Result<()> {
        let holder: Option<i64> = sqlx::query_scalar("SELECT id FROM agents WHERE email = $1")
            .bind(email.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(h) = holder.filter(|h| Some(*h) != except) {
            return Err(StoreError::AlreadyExists {
                existing: agent_name(h),
                field: "agent.email".into(),
                message: format!("an agent with email {email} already exists: agents/{h}"),
            });
        }
        Ok(())
    }

    pub async fn create_agent(&self, f: &AgentFields, now: Micros) -> Result<Agent> {
        let mut tx = self.write_tx().await?;
        Self::check_agent_email(&mut tx, &f.email, None).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO agents (display_name, email, active, version, create_time, update_time) \
             VALUES ($1, $2, $3, 1, $4, $4) RETURNING id",
        )
        .bind(f.display_name.clone())
        .bind(f.email.clone())
        .bind(f.active as i64)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        write_agent_teams(&mut tx, id, &f.team_ids).await?;
        let a = load_agent(&mut tx, id).await?;
        tx.commit().await?;
        Ok(a)
    }

    pub async fn get_agent(&self, id: i64) -> Result<Agent> {
        let mut conn = self.acquire().await?;
        load_agent(&mut conn, id).await
    }

    pub async fn list_agents(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Agent>, Option<Cursor>)> {
        let mut conn = self.acquire().await?;
        let ids: Vec<(i64,)> =
            sqlx::query_as("SELECT id FROM agents WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(crate::page::after_id(after)?)
                .bind(page_size as i64 + 1)
                .fetch_all(&mut *conn)
                .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            out.push(load_agent(&mut conn, id).await?);
        }
        Ok(split_page(out, page_size, |a| Cursor::Int(a.id, a.id)))
    }

    pub async fn update_agent(
        &self,
        id: i64,
        f: &AgentFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Agent> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "agents", id).await?;
        let current = load_agent(&mut tx, id).await?;
        check_etag(
            etag,
            &bakkal_domain::customer::etag(current.version),
            &agent_name(id),
        )?;
        Self::check_agent_email(&mut tx, &f.email, Some(id)).await?;
        sqlx::query(
            "UPDATE agents SET display_name = $1, email = $2, active = $3, version = version + 1, \
             update_time = $4 WHERE id = $5",
        )
        .bind(f.display_name.clone())
        .bind(f.email.clone())
        .bind(f.active as i64)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        write_agent_teams(&mut tx, id, &f.team_ids).await?;
        let a = load_agent(&mut tx, id).await?;
        tx.commit().await?;
        Ok(a)
    }

    // ---- SLA policies ------------------------------------------------------------------------

    pub async fn create_sla_policy(&self, f: &SlaPolicyFields, now: Micros) -> Result<SlaPolicy> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "INSERT INTO sla_policies (display_name, kinds, priorities, tier, \
             first_response_within, resolve_within, business_hours, at_risk_fraction, version, \
             create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9) \
             RETURNING {POLICY_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.kinds.join(","))
            .bind(f.priorities.join(","))
            .bind(f.tier.clone())
            .bind(f.first_response_within)
            .bind(f.resolve_within)
            .bind(
                f.business_hours
                    .as_ref()
                    .map(|h| serde_json::to_string(h).unwrap_or_default()),
            )
            .bind(f.at_risk_fraction)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let p = policy_from_row(&row)?;
        tx.commit().await?;
        Ok(p)
    }

    pub async fn get_sla_policy(&self, id: i64) -> Result<SlaPolicy> {
        let mut conn = self.acquire().await?;
        load_policy(&mut conn, id).await
    }

    pub async fn list_sla_policies(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<SlaPolicy>, Option<Cursor>)> {
        crate::page::page_by_id(
            &mut *self.acquire().await?,
            "sla_policies",
            POLICY_COLUMNS,
            page_size,
            after,
            policy_from_row,
            |p| p.id,
        )
        .await
    }

    /// Change a policy. Tickets keep the clocks they were given when they were opened.
    pub async fn update_sla_policy(
        &self,
        id: i64,
        f: &SlaPolicyFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<SlaPolicy> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "sla_policies", id).await?;
        let current = load_policy(&mut tx, id).await?;
        check_etag(
            etag,
            &bakkal_domain::customer::etag(current.version),
            &sla_policy_name(id),
        )?;
        let sql = format!(
            "UPDATE sla_policies SET display_name = $1, kinds = $2, priorities = $3, tier = $4, \
             first_response_within = $5, resolve_within = $6, business_hours = $7, \
             at_risk_fraction = $8, version = version + 1, update_time = $9 WHERE id = $10 \
             RETURNING {POLICY_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.kinds.join(","))
            .bind(f.priorities.join(","))
            .bind(f.tier.clone())
            .bind(f.first_response_within)
            .bind(f.resolve_within)
            .bind(
                f.business_hours
                    .as_ref()
                    .map(|h| serde_json::to_string(h).unwrap_or_default()),
            )
            .bind(f.at_risk_fraction)
            .bind(now)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let p = policy_from_row(&row)?;
        tx.commit().await?;
        Ok(p)
    }

    // ---- tickets -----------------------------------------------------------------------------

    /// The newest script of `kind` (`ROUTING`), if any.
    pub async fn latest_script_id(&self, kind: &str) -> Result<Option<i64>> {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM scripts WHERE kind = $1 ORDER BY id DESC LIMIT 1")
                .bind(kind.to_string())
                .fetch_optional(&mut *self.acquire().await?)
                .await?;
        Ok(id)
    }

    /// The customer's tier in the pyramid, when scored.
    pub async fn customer_tier(&self, customer_id: i64) -> Result<Option<String>> {
        let tier: Option<String> =
            sqlx::query_scalar("SELECT tier FROM customer_scores WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&mut *self.acquire().await?)
                .await?;
        Ok(tier)
    }

    /// The live customer holding this normalised email (first) or phone, if any.
    pub async fn find_customer_by_contact(
        &self,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Option<Customer>> {
        let mut conn = self.acquire().await?;
        match find_contact(&mut conn, email, phone).await? {
            Some(id) => Ok(Some(load_live(&mut conn, id).await?)),
            None => Ok(None),
        }
    }

    /// Open a ticket (see the module docs for everything that happens with it).
    pub async fn create_ticket(
        &self,
        n: &NewTicket,
        now: Micros,
        notify: &Notifier,
    ) -> Result<Ticket> {
        let result = self.try_create_ticket(n, now, notify).await;
        match result {
            // Two tickets from one unknown contact raced to create the prospect, or one
            // request id raced itself: the second attempt finds what the first wrote.
            Err(e) if e.is_unique_violation() => self.try_create_ticket(n, now, notify).await,
            other => other,
        }
    }

    async fn try_create_ticket(
        &self,
        n: &NewTicket,
        now: Micros,
        notify: &Notifier,
    ) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        if let Some(rid) = &n.request_id {
            let id: Option<i64> =
                sqlx::query_scalar("SELECT id FROM tickets WHERE request_id = $1")
                    .bind(rid.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(id) = id {
                let t = load_ticket(&mut tx, id, "").await?;
                tx.commit().await?;
                return Ok(t);
            }
        }
        let customer_id = match &n.customer {
            TicketCustomer::Id(id) => load_live(&mut tx, *id).await?.id,
            TicketCustomer::Contact {
                email,
                phone,
                display_name,
            } => match find_contact(&mut tx, email.as_deref(), phone.as_deref()).await? {
                Some(id) => id,
                None => {
                    let fields = CustomerFields {
                        display_name: display_name.clone(),
                        email: email.clone(),
                        phone: phone.clone(),
                        ..Default::default()
                    };
                    insert_customer(&mut tx, &fields, now).await?
                }
            },
        };
        let team_id = match n.team_id {
            Some(t) => Some(load_team(&mut tx, t).await?.id),
            None => {
                sqlx::query_scalar("SELECT id FROM teams ORDER BY id LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        let assignee_id = match (n.assignee_id, team_id) {
            (Some(a), _) => {
                let agent = load_agent(&mut tx, a).await?;
                if !agent.fields.active {
                    return Err(StoreError::FailedPrecondition(format!(
                        "{} is not active; tickets cannot be assigned to it",
                        agent_name(a)
                    )));
                }
                Some(a)
            }
            (None, Some(team)) => least_busy_agent(&mut tx, team).await?,
            (None, None) => None,
        };
        let priority = n.priority.clone().unwrap_or_else(|| "NORMAL".into());
        let policy = choose_policy(&mut tx, &n.kind, &priority, customer_id).await?;
        let (hours, mut sla) = match &policy {
            Some(p) => (
                p.hours(),
                Sla::start(
                    Some(p.fields.first_response_within),
                    Some(p.fields.resolve_within),
                    p.fields.at_risk_fraction,
                    now,
                ),
            ),
            None => (
                BusinessHours::always(),
                Sla::start(None, None, DEFAULT_AT_RISK_FRACTION, now),
            ),
        };
        sla.refresh(&hours, &n.kind, "NEW");
        let sql = format!(
            "INSERT INTO tickets (customer_id, contact_email, contact_phone, kind, channel, \
             subject, description, topic, priority, state, team_id, assignee_id, sla_policy_id, \
             first_response_target, resolution_target, at_risk_fraction, clock_start_time, \
             first_response_due_time, resolution_due_time, sla_status, next_sla_check_time, \
             overdue_key, request_id, version, create_time, update_time) VALUES ($1, $2, $3, \
             $4, $5, $6, $7, $8, $9, 'NEW', $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
             $20, $21, $22, 1, $16, $16) RETURNING {TICKET_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(customer_id)
            .bind(n.contact_email.clone())
            .bind(n.contact_phone.clone())
            .bind(n.kind.clone())
            .bind(n.channel.clone())
            .bind(n.subject.clone())
            .bind(n.description.clone())
            .bind(n.topic.clone())
            .bind(priority)
            .bind(team_id)
            .bind(assignee_id)
            .bind(policy.as_ref().map(|p| p.id))
            .bind(sla.first_response_target)
            .bind(sla.resolution_target)
            .bind(sla.at_risk_fraction)
            .bind(now)
            .bind(sla.first_response_due)
            .bind(sla.resolution_due)
            .bind(sla.status.clone())
            .bind(sla.next_check)
            .bind(sla.overdue_key)
            .bind(n.request_id.clone())
            .fetch_one(&mut *tx)
            .await?;
        let t = ticket_from_row(&row)?;
        adjust_load(&mut tx, (None, false), (t.assignee_id, true)).await?;
        let kind = format!("ticket_{}", t.kind.to_lowercase());
        record_interaction(
            &mut tx,
            &t,
            "INBOUND",
            &kind,
            &t.subject,
            &t.description,
            "",
            now,
        )
        .await?;
        emit(&mut tx, notify, "ticket_created", "", &t, now).await?;
        tx.commit().await?;
        Ok(t)
    }

    pub async fn get_ticket(&self, id: i64) -> Result<Ticket> {
        let mut conn = self.acquire().await?;
        load_ticket(&mut conn, id, "").await
    }

    /// Tickets matching `clauses` (from [`TICKET_FILTER_FIELDS`]; `team`, `assignee` and
    /// `customer` values are resource names), ordered by `order_by` then id.
    pub async fn list_tickets(
        &self,
        clauses: &[Clause],
        order_by: &str,
        descending: bool,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Ticket>, Option<Cursor>)> {
        let mut b = SqlBuilder::new(format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE 1 = 1"));
        for cl in clauses {
            let text = match &cl.value {
                Value::Text(t) => t.clone(),
                Value::Number(n) => n.to_string(),
            };
            let op = if cl.op == Op::Ne { " <> " } else { " = " };
            let reference = |collection: &str| {
                bakkal_domain::name::parse_id(&text, collection).ok_or_else(|| {
                    StoreError::Invalid(ValidationError::single(
                        "filter",
                        format!("'{text}' is not a {collection} name like {collection}/3"),
                    ))
                })
            };
            let (column, arg) = match cl.field.as_str() {
                "team" => ("team_id", Arg::Int(reference("teams")?)),
                "assignee" => ("assignee_id", Arg::Int(reference("agents")?)),
                "customer" => ("customer_id", Arg::Int(reference("customers")?)),
                "state" => ("state", Arg::Text(text)),
                "kind" => ("kind", Arg::Text(text)),
                "priority" => ("priority", Arg::Text(text)),
                "sla_status" => ("sla_status", Arg::Text(text)),
                "topic" => ("topic", Arg::Text(text)),
                "channel" => ("channel", Arg::Text(text)),
                other => {
                    return Err(StoreError::Invalid(ValidationError::single(
                        "filter",
                        format!("cannot filter on '{other}'"),
                    )))
                }
            };
            b.push(" AND ").push(column).push(op).arg(arg);
        }
        let column = if order_by == "update_time" {
            "update_time"
        } else {
            "create_time"
        };
        let (cmp, dir) = if descending {
            (" < ", " DESC")
        } else {
            (" > ", " ASC")
        };
        match after {
            Some(Cursor::Int(k, id)) => {
                b.push(" AND (")
                    .push(column)
                    .push(cmp)
                    .arg(Arg::Int(*k))
                    .push(" OR (")
                    .push(column)
                    .push(" = ")
                    .arg(Arg::Int(*k))
                    .push(" AND id")
                    .push(cmp)
                    .arg(Arg::Int(*id))
                    .push("))");
            }
            Some(_) => return Err(crate::customers::bad_token()),
            None => {}
        }
        b.push(" ORDER BY ")
            .push(column)
            .push(dir)
            .push(", id")
            .push(dir)
            .push(" LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let out = rows
            .iter()
            .map(ticket_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let by_update = column == "update_time";
        Ok(split_page(out, page_size, |t| {
            Cursor::Int(
                if by_update {
                    t.update_time
                } else {
                    t.create_time
                },
                t.id,
            )
        }))
    }

    /// Change a ticket's fields and/or state. Only legal state moves; moving to and from
    /// WAITING_ON_CUSTOMER pauses and resumes the clocks; RESOLVED stops them.
    pub async fn update_ticket(
        &self,
        id: i64,
        c: &TicketChanges,
        etag: Option<&str>,
        now: Micros,
        notify: &Notifier,
    ) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let mut t = load_ticket(&mut tx, id, self.row_lock()).await?;
        check_etag(etag, &t.etag(), &t.name())?;
        if let Some(s) = &c.subject {
            t.subject = s.clone();
        }
        if let Some(s) = &c.description {
            t.description = s.clone();
        }
        if let Some(s) = &c.topic {
            t.topic = s.clone();
        }
        if let Some(p) = &c.priority {
            t.priority = p.clone();
        }
        if let Some(team) = c.team_id {
            t.team_id = Some(load_team(&mut tx, team).await?.id);
        }
        if let Some(a) = c.assignee_id {
            if let Some(a) = a {
                let agent = load_agent(&mut tx, a).await?;
                if !agent.fields.active {
                    return Err(StoreError::FailedPrecondition(format!(
                        "{} is not active; tickets cannot be assigned to it",
                        agent_name(a)
                    )));
                }
            }
            t.assignee_id = a;
        }
        let hours = hours_of(&mut tx, &t).await?;
        let mut resolved = false;
        if let Some(to) = c.state.as_deref().filter(|s| *s != t.state) {
            change_state(&mut t, to, &hours, now)?;
            resolved = to == "RESOLVED";
        }
        t.sla.refresh(&hours, &t.kind, &t.state);
        t.update_time = now;
        let t = write_ticket(&mut tx, &t).await?;
        if resolved {
            emit(&mut tx, notify, "ticket_resolved", "", &t, now).await?;
        }
        tx.commit().await?;
        Ok(t)
    }

    /// Add a comment. An agent's first public comment is the first response (a NEW ticket
    /// becomes OPEN); the customer's comment on a ticket waiting on them reopens the clocks.
    pub async fn add_ticket_comment(
        &self,
        ticket_id: i64,
        author_agent_id: Option<i64>,
        body: &str,
        public: bool,
        now: Micros,
    ) -> Result<(TicketComment, Ticket)> {
        let mut tx = self.write_tx().await?;
        let mut t = load_ticket(&mut tx, ticket_id, self.row_lock()).await?;
        if t.state == "CLOSED" {
            return Err(StoreError::FailedPrecondition(format!(
                "{} is CLOSED; it takes no more comments",
                t.name()
            )));
        }
        let agent = match author_agent_id {
            Some(a) => Some(load_agent(&mut tx, a).await?),
            None => None,
        };
        let sql = format!(
            "INSERT INTO ticket_comments (ticket_id, author_agent_id, body, public, create_time) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {COMMENT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(ticket_id)
            .bind(author_agent_id)
            .bind(body.to_string())
            .bind(public as i64)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let comment = comment_from_row(&row)?;
        let hours = hours_of(&mut tx, &t).await?;
        match (&agent, public) {
            (Some(_), true) => {
                t.sla.first_response(&hours, now);
                if t.state == "NEW" {
                    t.state = "OPEN".into();
                }
            }
            (None, _) if t.state == "WAITING_ON_CUSTOMER" => {
                t.state = "OPEN".into();
                t.sla.resume(now);
            }
            _ => {}
        }
        t.sla.refresh(&hours, &t.kind, &t.state);
        t.update_time = now;
        let t = write_ticket(&mut tx, &t).await?;
        let (direction, kind) = match (&agent, public) {
            (_, false) => ("OUTBOUND", "ticket_note"),
            (Some(_), true) => ("OUTBOUND", "ticket_comment"),
            (None, true) => ("INBOUND", "ticket_comment"),
        };
        let agent_label = agent.as_ref().map(|a| a.fields.email.clone());
        record_interaction(
            &mut tx,
            &t,
            direction,
            kind,
            &t.subject,
            body,
            agent_label.as_deref().unwrap_or(""),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((comment, t))
    }

    pub async fn list_ticket_comments(
        &self,
        ticket_id: i64,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<TicketComment>, Option<Cursor>)> {
        self.get_ticket(ticket_id).await?;
        let sql = format!(
            "SELECT {COMMENT_COLUMNS} FROM ticket_comments WHERE ticket_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(ticket_id)
            .bind(crate::page::after_id(after)?)
            .bind(page_size as i64 + 1)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let out = rows
            .iter()
            .map(comment_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(split_page(out, page_size, |c| Cursor::Int(c.id, c.id)))
    }

    /// Resolve: the clocks stop, the resolution (and the article used) is kept, the customer
    /// is told. An `article` of the solution pool is checked and its use counted in the same
    /// transaction.
    pub async fn resolve_ticket(
        &self,
        id: i64,
        resolution: &str,
        article_id: Option<i64>,
        now: Micros,
        notify: &Notifier,
    ) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let mut t = load_ticket(&mut tx, id, self.row_lock()).await?;
        let hours = hours_of(&mut tx, &t).await?;
        change_state(&mut t, "RESOLVED", &hours, now)?;
        if let Some(a) = article_id {
            crate::articles::use_article(&mut tx, a).await?;
        }
        t.resolution = resolution.to_string();
        t.resolution_article_id = article_id;
        t.sla.refresh(&hours, &t.kind, &t.state);
        t.update_time = now;
        let t = write_ticket(&mut tx, &t).await?;
        emit(&mut tx, notify, "ticket_resolved", "", &t, now).await?;
        record_interaction(
            &mut tx,
            &t,
            "OUTBOUND",
            "ticket_resolved",
            &t.subject,
            resolution,
            "",
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(t)
    }

    pub async fn reopen_ticket(&self, id: i64, reason: &str, now: Micros) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let mut t = load_ticket(&mut tx, id, self.row_lock()).await?;
        if t.state != "RESOLVED" {
            return Err(StoreError::FailedPrecondition(format!(
                "{} is {}; only a RESOLVED ticket can be reopened",
                t.name(),
                t.state
            )));
        }
        let hours = hours_of(&mut tx, &t).await?;
        change_state(&mut t, "OPEN", &hours, now)?;
        t.sla.refresh(&hours, &t.kind, &t.state);
        t.update_time = now;
        let t = write_ticket(&mut tx, &t).await?;
        record_interaction(
            &mut tx,
            &t,
            "INBOUND",
            "ticket_reopened",
            &t.subject,
            reason,
            "",
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(t)
    }

    pub async fn rate_ticket(
        &self,
        id: i64,
        score: i64,
        comment: &str,
        now: Micros,
    ) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let mut t = load_ticket(&mut tx, id, self.row_lock()).await?;
        if t.state != "RESOLVED" && t.state != "CLOSED" {
            return Err(StoreError::FailedPrecondition(format!(
                "{} is {}; only a RESOLVED or CLOSED ticket can be rated",
                t.name(),
                t.state
            )));
        }
        if let Some(s) = t.satisfaction {
            return Err(StoreError::FailedPrecondition(format!(
                "{} was already rated {s}",
                t.name()
            )));
        }
        t.satisfaction = Some(score);
        t.satisfaction_comment = comment.to_string();
        t.update_time = now;
        let t = write_ticket(&mut tx, &t).await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Breached, then at-risk tickets, earliest due first.
    pub async fn list_overdue_tickets(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Ticket>, Option<Cursor>)> {
        let (k, id) = match after {
            None => (-1, 0),
            Some(Cursor::Int(k, id)) => (*k, *id),
            Some(_) => return Err(crate::customers::bad_token()),
        };
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE overdue_key IS NOT NULL \
             AND (overdue_key > $1 OR (overdue_key = $1 AND id > $2)) \
             ORDER BY overdue_key, id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(k)
            .bind(id)
            .bind(page_size as i64 + 1)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let out = rows
            .iter()
            .map(ticket_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(split_page(out, page_size, |t| {
            Cursor::Int(t.sla.overdue_key.unwrap_or(0), t.id)
        }))
    }

    // ---- the SLA watcher ---------------------------------------------------------------------

    /// Is any ticket's next clock mark at or before `now`? (A read, before taking the lock.)
    pub async fn sla_due(&self, now: Micros) -> Result<bool> {
        let due: Option<i64> =
            sqlx::query_scalar("SELECT id FROM tickets WHERE next_sla_check_time <= $1 LIMIT 1")
                .bind(now)
                .fetch_optional(&mut *self.acquire().await?)
                .await?;
        Ok(due.is_some())
    }

    /// One watcher pass: claim up to `limit` tickets whose next mark has passed (rows locked,
    /// skipping those another server holds), record their `sla_at_risk` / `sla_breached`
    /// events and queue the reminders, move their next mark. Returns (tickets, events).
    pub async fn sla_tick(
        &self,
        now: Micros,
        limit: usize,
        notify: &Notifier,
    ) -> Result<(usize, usize)> {
        if !self.sla_due(now).await? {
            return Ok((0, 0));
        }
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE next_sla_check_time <= $1 \
             ORDER BY next_sla_check_time LIMIT $2{lock}"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await?;
        let tickets = rows
            .iter()
            .map(ticket_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut policies: HashMap<i64, BusinessHours> = HashMap::new();
        let mut events = 0;
        for mut t in tickets.into_iter() {
            let hours = match t.sla_policy_id {
                Some(pid) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = policies.entry(pid) {
                        e.insert(load_policy(&mut tx, pid).await?.hours());
                    }
                    policies[&pid].clone()
                }
                None => BusinessHours::always(),
            };
            let fired: Vec<SlaEvent> = t.sla.due_events(&hours, now);
            t.sla.refresh(&hours, &t.kind, &t.state);
            // the write does not count as a change of the ticket by anyone: keep update_time
            let t = write_ticket(&mut tx, &t).await?;
            for e in fired {
                emit(&mut tx, notify, e.kind, e.clock, &t, now).await?;
                events += 1;
            }
        }
        let n = rows.len();
        tx.commit().await?;
        Ok((n, events))
    }
}

/// Move `t` to `to`, adjusting its clocks; FAILED_PRECONDITION naming the current state when
/// the move is not allowed.
fn change_state(t: &mut Ticket, to: &str, hours: &BusinessHours, now: Micros) -> Result<()> {
    if !legal_transition(&t.state, to) {
        let allowed = next_states(&t.state);
        return Err(StoreError::FailedPrecondition(format!(
            "{} is {}; it can move to {}, not {to}",
            t.name(),
            t.state,
            if allowed.is_empty() {
                "no other state".to_string()
            } else {
                allowed.join(", ")
            }
        )));
    }
    match to {
        "WAITING_ON_CUSTOMER" => t.sla.pause(hours, now),
        "RESOLVED" | "CLOSED" if is_open(&t.state) => t.sla.resolve(hours, now),
        "OPEN" if t.state == "RESOLVED" => t.sla.reopen(now),
        "OPEN" => t.sla.resume(now),
        _ => {}
    }
    t.state = to.to_string();
    Ok(())
}
