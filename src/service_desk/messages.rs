//! The messages of desk events: the acknowledgement of a new ticket (its number and the
//! promised response time), the resolution notice, and SLA reminders to the assignee and the
//! team. With a MESSAGE script configured (`--desk-message-script`), the script writes them:
//! `message(c, event)` sees the customer and, in the event, the ticket (`event.kind` is
//! `ticket_created`, `ticket_resolved`, `sla_at_risk` or `sla_breached`; fields `ticket`,
//! `number`, `subject`, `kind`, `priority`, `state`, `topic`, `clock`, `promise`, `due`,
//! `resolution`) and returns `message(...)` or `()` for none. Without one, built-in templates.
//! Every message has an idempotency key naming the ticket and the event, so an event queues
//! its messages once however often it is processed.

use std::sync::Arc;

use bakkal_script::{CompiledScript, Event, ScriptCustomer, ScriptHost, ScriptKind};
use bakkal_store::{script_revision_name, Notifier, Store};

use bakkal_domain::ticket::{agent_name, team_name};
use bakkal_domain::time::{Micros, MICROS_PER_SECOND};
use bakkal_store::{DeskEvent, DeskMessage};

/// `2026-11-27 09:00 +03` in the policy's time zone (UTC without one).
fn local_time(m: Micros, e: &DeskEvent<'_>) -> String {
    let tz = e
        .policy
        .map(|p| p.hours().time_zone())
        .unwrap_or(chrono_tz::UTC);
    match chrono::DateTime::from_timestamp_micros(m) {
        Some(t) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string(),
        None => "later".to_string(),
    }
}

/// `4 business hours`, `1 business day and 2 hours` (business days of the schedule's
/// length are not known here, so hours and minutes it is).
pub fn business_duration(m: Micros) -> String {
    let minutes = m / (60 * MICROS_PER_SECOND);
    let (h, min) = (minutes / 60, minutes % 60);
    match (h, min) {
        (0, m) => format!("{m} minutes"),
        (1, 0) => "1 hour".to_string(),
        (h, 0) => format!("{h} hours"),
        (h, m) => format!("{h} hours {m} minutes"),
    }
}

/// The customer's address for a reply: email when known, else the phone by SMS.
fn customer_channel(e: &DeskEvent<'_>) -> Option<&'static str> {
    let f = &e.customer.fields;
    if f.email.is_some() {
        Some("email")
    } else if f.phone.is_some() {
        Some("sms")
    } else {
        None
    }
}

fn greeting(e: &DeskEvent<'_>) -> String {
    let n = e.customer.fields.display_name.trim();
    if n.is_empty() {
        "Hello,".to_string()
    } else {
        format!("Hello {n},")
    }
}

/// The templates, one or more messages per event.
pub fn templates(e: &DeskEvent<'_>) -> Vec<DeskMessage> {
    let t = e.ticket;
    let name = t.name();
    match e.kind {
        "ticket_created" => {
            let Some(channel) = customer_channel(e) else {
                return Vec::new();
            };
            let promise = match (t.sla.first_response_target, t.sla.first_response_due) {
                (Some(target), Some(due)) => format!(
                    "We will answer within {} of business time, by {}.",
                    business_duration(target),
                    local_time(due, e)
                ),
                _ => "We will answer as soon as we can.".to_string(),
            };
            vec![DeskMessage {
                customer_id: t.customer_id,
                recipient: String::new(),
                channel: channel.to_string(),
                subject: format!("We received your message: ticket {}", t.id),
                body: format!(
                    "{} thank you for writing to us about \"{}\". Your ticket number is {}. {}",
                    greeting(e),
                    t.subject,
                    t.id,
                    promise
                ),
                idempotency_key: format!("{name}:ticket_created"),
            }]
        }
        "ticket_resolved" => {
            let Some(channel) = customer_channel(e) else {
                return Vec::new();
            };
            let when = t.sla.resolved_time.unwrap_or(t.update_time);
            vec![DeskMessage {
                customer_id: t.customer_id,
                recipient: String::new(),
                channel: channel.to_string(),
                subject: format!("Ticket {} is resolved", t.id),
                body: format!(
                    "{} your ticket {} (\"{}\") is resolved. {} Reply if anything is left \
                     open, and tell us how we did.",
                    greeting(e),
                    t.id,
                    t.subject,
                    t.resolution
                ),
                idempotency_key: format!("{name}:ticket_resolved:{when}"),
            }]
        }
        "sla_at_risk" | "sla_breached" => {
            let what = if e.clock == "first_response" {
                "first response"
            } else {
                "resolution"
            };
            let due = if e.clock == "first_response" {
                t.sla.first_response_due
            } else {
                t.sla.resolution_due
            };
            let (state, was) = if e.kind == "sla_breached" {
                ("is overdue", "was")
            } else {
                ("is at risk", "is")
            };
            let subject = format!("SLA: the {what} of ticket {} {state}", t.id);
            let body = format!(
                "The {what} of {name} ({} {}, \"{}\") {state}; it {was} due {}.",
                t.priority.to_lowercase(),
                t.kind.to_lowercase(),
                t.subject,
                due.map(|d| local_time(d, e))
                    .unwrap_or_else(|| "now".into())
            );
            let mut out = Vec::new();
            let mut recipients = Vec::new();
            if let Some(a) = t.assignee_id {
                recipients.push(agent_name(a));
            }
            if let Some(team) = t.team_id {
                recipients.push(team_name(team));
            }
            for r in recipients {
                out.push(DeskMessage {
                    customer_id: 0,
                    recipient: r.clone(),
                    channel: "email".to_string(),
                    subject: subject.clone(),
                    body: body.clone(),
                    idempotency_key: format!("{name}:{}:{}:{r}", e.kind, e.clock),
                });
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The MESSAGE script desk events go through, if one is configured.
#[derive(Clone)]
pub struct DeskScript {
    pub host: Arc<ScriptHost>,
    pub script: Arc<CompiledScript>,
}

/// Load and compile the configured MESSAGE script (`scripts/{id}` or `scripts/{id}@{rev}`).
/// A script that is missing, of another kind or does not compile is logged and the built-in
/// templates are used.
pub async fn load_script(
    store: &Store,
    host: &Arc<ScriptHost>,
    reference: Option<&str>,
) -> Option<DeskScript> {
    let reference = reference?;
    let (id, revision) = bakkal_domain::name::parse_script(reference).or_else(|| {
        tracing::warn!(
            script = reference,
            "desk message script is not a script name"
        );
        None
    })?;
    let s = match store.get_script(id, revision).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(script = reference, error = %e, "desk message script unavailable; built-in templates");
            return None;
        }
    };
    if s.kind != ScriptKind::Message.as_str() {
        tracing::warn!(script = reference, kind = %s.kind, "desk message script is not a MESSAGE script");
        return None;
    }
    let key = script_revision_name(s.id, s.revision.revision);
    let source = s.revision.source;
    let h = host.clone();
    let compiled =
        tokio::task::spawn_blocking(move || h.compile_cached(&key, ScriptKind::Message, &source))
            .await
            .ok()?;
    match compiled {
        Ok(c) => Some(DeskScript {
            host: host.clone(),
            script: Arc::new(c),
        }),
        Err(_) => {
            tracing::warn!(script = reference, "desk message script does not compile");
            None
        }
    }
}

fn script_event(e: &DeskEvent<'_>) -> Event {
    let t = e.ticket;
    let due = if e.clock == "resolution" {
        t.sla.resolution_due
    } else {
        t.sla.first_response_due
    };
    let promise = match (t.sla.first_response_target, t.sla.first_response_due) {
        (Some(target), Some(d)) => format!(
            "within {} of business time, by {}",
            business_duration(target),
            local_time(d, e)
        ),
        _ => String::new(),
    };
    Event::new(e.kind)
        .with("ticket", t.name())
        .with("number", t.id)
        .with("subject", t.subject.clone())
        .with("kind", t.kind.clone())
        .with("priority", t.priority.clone())
        .with("state", t.state.clone())
        .with("topic", t.topic.clone())
        .with("clock", e.clock.to_string())
        .with("promise", promise)
        .with("due", due.map(|d| local_time(d, e)).unwrap_or_default())
        .with("resolution", t.resolution.clone())
}

/// The messages of an event: the script's when one is configured, else the templates'.
pub fn render(e: &DeskEvent<'_>, script: Option<&DeskScript>) -> Vec<DeskMessage> {
    let Some(ds) = script else {
        return templates(e);
    };
    let event = script_event(e);
    let customer = ScriptCustomer::new(e.customer.clone(), Vec::new());
    let now = e.ticket.update_time;
    let eval = || {
        ds.host
            .eval_message(&ds.script, &customer, &event, now)
            .into_result()
    };
    // The script runs inside the event's transaction; on the multi-threaded runtime the
    // worker hands its other tasks over while it does.
    let outcome = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(eval)
        }
        _ => eval(),
    };
    let message = match outcome {
        Ok(Some(m)) => m,
        Ok(None) => return Vec::new(),
        Err(err) => {
            tracing::warn!(event = e.kind, ticket = %e.ticket.name(), error = %err, "desk message script failed; built-in template");
            return templates(e);
        }
    };
    // the addressees and keys are those of the templates; the script writes the words
    templates(e)
        .into_iter()
        .map(|mut m| {
            if m.recipient.is_empty() {
                m.channel = message.channel.clone();
            }
            m.subject = message.subject.clone();
            m.body = message.body.clone();
            m
        })
        .collect()
}

/// The notifier the store calls inside an event's transaction.
pub fn notifier(script: Option<DeskScript>) -> Box<Notifier> {
    Box::new(move |e: &DeskEvent<'_>| render(e, script.as_ref()))
}
