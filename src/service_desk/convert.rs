//! The service desk's protobuf ↔ store conversions and request checks.

use bakkal_domain::business_hours::{BusinessHours, BusinessHoursSpec};
use bakkal_domain::name::{customer_name, parse_id};
use bakkal_domain::normalise;
use bakkal_domain::ticket::{agent_name, sla_policy_name, team_name, DEFAULT_AT_RISK_FRACTION};
use bakkal_domain::time::{Micros, MICROS_PER_SECOND};
use bakkal_domain::ValidationError;
use bakkal_store::{Agent, SlaPolicy, SlaPolicyFields, Team, Ticket, TicketComment};
use tonic::Status;

use crate::auth::mask::Pii;
use crate::convert::{opt_timestamp, timestamp};
use crate::proto::{self, InteractionChannel, SlaStatus, TicketKind, TicketPriority, TicketState};
use crate::status::invalid_field;

pub const MAX_TEXT: usize = 200;
pub const MAX_BODY: usize = 20_000;
/// The longest SLA target: a year.
const MAX_WITHIN: Micros = 366 * 86_400 * MICROS_PER_SECOND;

/// Check a short text field: trimmed, required or not, at most `max` characters.
pub fn text(
    errs: &mut ValidationError,
    field: &str,
    value: &str,
    required: bool,
    max: usize,
) -> String {
    let v = value.trim();
    if required && v.is_empty() {
        errs.add(field, "is required");
    } else if v.chars().count() > max {
        errs.add(field, format!("must be at most {max} characters"));
    } else if let Err(why) = bakkal_domain::normalise::control_free(v) {
        errs.add(field, why);
    }
    v.to_string()
}

/// `{collection}/{id}` held in `field`, INVALID_ARGUMENT otherwise.
pub fn reference(name: &str, collection: &str, field: &str) -> Result<i64, Status> {
    parse_id(name.trim(), collection).ok_or_else(|| {
        invalid_field(
            field,
            format!("'{name}' is not a name like {collection}/12"),
        )
    })
}

/// Like [`reference`] but collecting the problem.
pub fn reference_into(
    errs: &mut ValidationError,
    name: &str,
    collection: &str,
    field: &str,
) -> Option<i64> {
    let id = parse_id(name.trim(), collection);
    if id.is_none() {
        errs.add(
            field,
            format!("'{name}' is not a name like {collection}/12"),
        );
    }
    id
}

pub fn kind_str(k: i32) -> Option<&'static str> {
    match TicketKind::try_from(k).ok()? {
        TicketKind::Complaint => Some("COMPLAINT"),
        TicketKind::Request => Some("REQUEST"),
        TicketKind::Question => Some("QUESTION"),
        TicketKind::Feedback => Some("FEEDBACK"),
        TicketKind::Unspecified => None,
    }
}

pub fn priority_str(p: i32) -> Option<&'static str> {
    match TicketPriority::try_from(p).ok()? {
        TicketPriority::Low => Some("LOW"),
        TicketPriority::Normal => Some("NORMAL"),
        TicketPriority::High => Some("HIGH"),
        TicketPriority::Urgent => Some("URGENT"),
        TicketPriority::Unspecified => None,
    }
}

pub fn state_str(s: i32) -> Option<&'static str> {
    match TicketState::try_from(s).ok()? {
        TicketState::New => Some("NEW"),
        TicketState::Open => Some("OPEN"),
        TicketState::WaitingOnCustomer => Some("WAITING_ON_CUSTOMER"),
        TicketState::Resolved => Some("RESOLVED"),
        TicketState::Closed => Some("CLOSED"),
        TicketState::Unspecified => None,
    }
}

/// The stored form of an interaction channel (`EMAIL`), `None` for UNSPECIFIED.
pub fn channel_str(c: i32) -> Option<&'static str> {
    let ch = InteractionChannel::try_from(c).ok()?;
    (ch != InteractionChannel::Unspecified).then(|| ch.as_str_name())
}

fn enum_value<E>(stored: &str, prefix: &str, parse: fn(&str) -> Option<E>) -> i32
where
    E: Into<i32>,
{
    parse(&format!("{prefix}{stored}"))
        .map(Into::into)
        .unwrap_or(0)
}

pub fn kind_value(s: &str) -> i32 {
    enum_value(s, "TICKET_KIND_", TicketKind::from_str_name)
}

pub fn priority_value(s: &str) -> i32 {
    enum_value(s, "TICKET_PRIORITY_", TicketPriority::from_str_name)
}

pub fn state_value(s: &str) -> i32 {
    enum_value(s, "TICKET_STATE_", TicketState::from_str_name)
}

pub fn sla_status_value(s: &str) -> i32 {
    enum_value(s, "SLA_STATUS_", SlaStatus::from_str_name)
}

pub fn channel_value(s: &str) -> i32 {
    enum_value(s, "", InteractionChannel::from_str_name)
}

/// A normalised email, or the violation on `field`.
pub fn email(errs: &mut ValidationError, field: &str, raw: &str) -> Option<String> {
    if raw.trim().is_empty() {
        return None;
    }
    match normalise::email(raw) {
        Ok(e) => Some(e),
        Err(why) => {
            errs.add(field, why);
            None
        }
    }
}

/// A phone number in E.164, or the violation on `field`.
pub fn phone(errs: &mut ValidationError, field: &str, raw: &str) -> Option<String> {
    if raw.trim().is_empty() {
        return None;
    }
    match normalise::phone(raw, None) {
        Ok(p) => Some(p),
        Err(why) => {
            errs.add(field, why);
            None
        }
    }
}

/// A ticket as a response carries it: the contact masked unless `pii` shows it.
pub fn ticket_to_proto(t: &Ticket, pii: Pii) -> proto::Ticket {
    let s = &t.sla;
    proto::Ticket {
        name: t.name(),
        customer: customer_name(t.customer_id),
        contact_email: pii.email(&t.contact_email),
        contact_phone: pii.phone(&t.contact_phone),
        kind: kind_value(&t.kind),
        channel: channel_value(&t.channel),
        subject: t.subject.clone(),
        description: t.description.clone(),
        topic: t.topic.clone(),
        priority: priority_value(&t.priority),
        state: state_value(&t.state),
        team: t.team_id.map(team_name).unwrap_or_default(),
        assignee: t.assignee_id.map(agent_name).unwrap_or_default(),
        first_response_due_time: opt_timestamp(s.first_response_due),
        resolution_due_time: opt_timestamp(s.resolution_due),
        first_response_time: opt_timestamp(s.first_response_time),
        resolved_time: opt_timestamp(s.resolved_time),
        sla_status: sla_status_value(&s.status),
        satisfaction: t.satisfaction.unwrap_or(0) as i32,
        create_time: Some(timestamp(t.create_time)),
        update_time: Some(timestamp(t.update_time)),
        etag: t.etag(),
        sla_policy: t.sla_policy_id.map(sla_policy_name).unwrap_or_default(),
        resolution: t.resolution.clone(),
        resolution_article: t
            .resolution_article_id
            .map(|a| format!("articles/{a}"))
            .unwrap_or_default(),
    }
}

pub fn comment_to_proto(c: &TicketComment) -> proto::TicketComment {
    proto::TicketComment {
        name: c.name(),
        author: c.author_agent_id.map(agent_name).unwrap_or_default(),
        body: c.body.clone(),
        public: c.public,
        create_time: Some(timestamp(c.create_time)),
    }
}

pub fn agent_to_proto(a: &Agent) -> proto::Agent {
    proto::Agent {
        name: agent_name(a.id),
        display_name: a.fields.display_name.clone(),
        email: a.fields.email.clone(),
        teams: a.fields.team_ids.iter().map(|t| team_name(*t)).collect(),
        active: a.fields.active,
        create_time: Some(timestamp(a.create_time)),
        update_time: Some(timestamp(a.update_time)),
        etag: bakkal_domain::customer::etag(a.version),
    }
}

pub fn team_to_proto(t: &Team) -> proto::Team {
    proto::Team {
        name: team_name(t.id),
        display_name: t.fields.display_name.clone(),
        email: t.fields.email.clone(),
        create_time: Some(timestamp(t.create_time)),
        update_time: Some(timestamp(t.update_time)),
        etag: bakkal_domain::customer::etag(t.version),
    }
}

fn duration(m: Micros) -> prost_types::Duration {
    prost_types::Duration {
        seconds: m / MICROS_PER_SECOND,
        nanos: ((m % MICROS_PER_SECOND) * 1000) as i32,
    }
}

pub fn policy_to_proto(p: &SlaPolicy) -> proto::SlaPolicy {
    let f = &p.fields;
    proto::SlaPolicy {
        name: sla_policy_name(p.id),
        display_name: f.display_name.clone(),
        kinds: f.kinds.iter().map(|k| kind_value(k)).collect(),
        priorities: f.priorities.iter().map(|k| priority_value(k)).collect(),
        tier: f.tier.clone(),
        first_response_within: Some(duration(f.first_response_within)),
        resolve_within: Some(duration(f.resolve_within)),
        business_hours: f.business_hours.as_ref().map(|h| proto::BusinessHours {
            time_zone: h.time_zone.clone(),
            week_days: h.week_days.iter().map(|d| *d as i32).collect(),
            open: h.open.clone(),
            close: h.close.clone(),
            holidays: h.holidays.clone(),
        }),
        at_risk_fraction: f.at_risk_fraction,
        create_time: Some(timestamp(p.create_time)),
        update_time: Some(timestamp(p.update_time)),
        etag: bakkal_domain::customer::etag(p.version),
    }
}

/// A positive duration of at most a year, in microseconds.
fn within(errs: &mut ValidationError, field: &str, d: Option<&prost_types::Duration>) -> Micros {
    let Some(d) = d else {
        errs.add(field, "is required, e.g. \"14400s\" for four hours");
        return 0;
    };
    if d.seconds < 0 || !(0..1_000_000_000).contains(&d.nanos) {
        errs.add(field, "is not a valid positive duration");
        return 0;
    }
    let m = d
        .seconds
        .saturating_mul(MICROS_PER_SECOND)
        .saturating_add((d.nanos / 1000) as i64);
    if m <= 0 {
        errs.add(field, "must be longer than zero");
    } else if m > MAX_WITHIN {
        errs.add(field, "must be at most 366 days");
    }
    m
}

/// Check the given fields of a protobuf policy into `into`.
pub fn check_policy(
    p: &proto::SlaPolicy,
    paths: &[&str],
    into: &mut SlaPolicyFields,
    errs: &mut ValidationError,
) {
    let has = |x: &str| paths.is_empty() || paths.contains(&x);
    if has("display_name") {
        into.display_name = text(
            errs,
            "sla_policy.display_name",
            &p.display_name,
            true,
            MAX_TEXT,
        );
    }
    if has("kinds") {
        into.kinds.clear();
        for (i, k) in p.kinds.iter().enumerate() {
            match kind_str(*k) {
                Some(k) => into.kinds.push(k.to_string()),
                None => errs.add(
                    format!("sla_policy.kinds[{i}]"),
                    "must be COMPLAINT, REQUEST, QUESTION or FEEDBACK",
                ),
            }
        }
    }
    if has("priorities") {
        into.priorities.clear();
        for (i, k) in p.priorities.iter().enumerate() {
            match priority_str(*k) {
                Some(k) => into.priorities.push(k.to_string()),
                None => errs.add(
                    format!("sla_policy.priorities[{i}]"),
                    "must be LOW, NORMAL, HIGH or URGENT",
                ),
            }
        }
    }
    if has("tier") {
        into.tier = text(errs, "sla_policy.tier", &p.tier, false, 50).to_uppercase();
    }
    if has("first_response_within") {
        into.first_response_within = within(
            errs,
            "sla_policy.first_response_within",
            p.first_response_within.as_ref(),
        );
    }
    if has("resolve_within") {
        into.resolve_within = within(errs, "sla_policy.resolve_within", p.resolve_within.as_ref());
    }
    if has("business_hours") {
        into.business_hours = None;
        if let Some(h) = &p.business_hours {
            let mut days = Vec::new();
            for (i, d) in h.week_days.iter().enumerate() {
                if (1..=7).contains(d) {
                    days.push(*d as u32);
                } else {
                    errs.add(
                        format!("sla_policy.business_hours.week_days[{i}]"),
                        "must be 1 (Monday) to 7 (Sunday)",
                    );
                }
            }
            let spec = BusinessHoursSpec {
                time_zone: h.time_zone.trim().to_string(),
                week_days: days,
                open: h.open.trim().to_string(),
                close: h.close.trim().to_string(),
                holidays: h.holidays.iter().map(|d| d.trim().to_string()).collect(),
            };
            match BusinessHours::new(&spec) {
                Ok(_) => into.business_hours = Some(spec),
                Err(problems) => {
                    for (field, why) in problems {
                        errs.add(format!("sla_policy.business_hours.{field}"), why);
                    }
                }
            }
        }
    }
    if has("at_risk_fraction") {
        let f = p.at_risk_fraction;
        if f == 0.0 {
            into.at_risk_fraction = DEFAULT_AT_RISK_FRACTION;
        } else if !(f > 0.0 && f <= 1.0) {
            errs.add(
                "sla_policy.at_risk_fraction",
                "must be above 0 and at most 1 (0 for the default 0.8)",
            );
        } else {
            into.at_risk_fraction = f;
        }
    }
    if into.resolve_within > 0
        && into.first_response_within > into.resolve_within
        && (has("first_response_within") || has("resolve_within"))
    {
        errs.add(
            "sla_policy.first_response_within",
            "must not be longer than resolve_within",
        );
    }
}

/// The paths named in a field mask.
pub fn mask_paths(mask: &Option<prost_types::FieldMask>) -> Vec<&str> {
    mask.iter()
        .flat_map(|m| m.paths.iter().map(String::as_str))
        .collect()
}

/// INVALID_ARGUMENT unless every path is in `allowed`.
pub fn check_mask(paths: &[&str], allowed: &[&str]) -> Result<(), Status> {
    for p in paths {
        if !allowed.contains(p) {
            return Err(invalid_field(
                "update_mask",
                format!(
                    "cannot update '{p}'; updatable paths: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
