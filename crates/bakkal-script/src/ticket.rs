//! Service-desk tickets as ROUTING scripts see them, and the route those scripts return.
//!
//! A ROUTING script's `fn route(t, c)` gets the ticket `t` (a [`ScriptTicket`]) and its
//! customer `c`, and returns a map of what to set — `#{ team: "teams/2", priority: "HIGH" }` —
//! or `()` to leave routing to the defaults. Keys: `team` (`teams/{id}`), `assignee`
//! (`agents/{id}`), `priority` (`LOW`, `NORMAL`, `HIGH`, `URGENT`; any case) and `topic`
//! (free text); each optional, `()` meaning "not set". Any other key, a value of another type
//! or a malformed name is an error **at run time** (a script cannot know at validation time
//! which keys a map built at run time will hold): the call fails with `WRONG_RETURN_TYPE`.

use bakkal_domain::time::Micros;
use rhai::plugin::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorCategory, ScriptError};

/// Ticket kinds, as the service desk writes them.
pub const TICKET_KINDS: &[&str] = &["COMPLAINT", "REQUEST", "QUESTION", "FEEDBACK"];
/// Ticket priorities, lowest first.
pub const TICKET_PRIORITIES: &[&str] = &["LOW", "NORMAL", "HIGH", "URGENT"];
/// The keys a route map may hold.
pub const ROUTE_KEYS: &[&str] = &["team", "priority", "assignee", "topic"];

/// A ticket as a routing script sees it. The service desk fills it in before the ticket is
/// stored (`id` 0) or from a stored ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptTicket {
    /// 0 for a ticket not stored yet.
    pub id: i64,
    /// `COMPLAINT`, `REQUEST`, `QUESTION` or `FEEDBACK`.
    pub kind: String,
    /// The interaction channel it came through: `EMAIL`, `PHONE`, `WEB`, … (may be `""`).
    pub channel: String,
    pub subject: String,
    pub description: String,
    /// Free text (`billing`, `delivery`); may be `""`.
    pub topic: String,
    /// `LOW`, `NORMAL`, `HIGH` or `URGENT`.
    pub priority: String,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    /// `teams/{id}` / `agents/{id}` when already set.
    pub team: Option<String>,
    pub assignee: Option<String>,
    /// The customer's tier in the pyramid (`"Platinum"`), when scored.
    pub customer_tier: Option<String>,
    /// The tier's rank, 1 being the top of the pyramid, when scored.
    pub customer_tier_rank: Option<i64>,
    /// When the ticket was opened (micros); the call's `now` when 0.
    pub create_time: Micros,
}

/// What a routing script decided. `None` fields are left to the service's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Route {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Upper-case: `LOW`, `NORMAL`, `HIGH` or `URGENT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

fn resource_id(name: &str, collection: &str) -> bool {
    name.strip_prefix(collection)
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|id| id.parse::<i64>().ok())
        .is_some_and(|id| id > 0)
}

impl Route {
    /// Read a script's result: `()` is no route, a map is checked key by key.
    pub(crate) fn from_dynamic(v: Dynamic) -> Result<Option<Route>, String> {
        if v.is_unit() {
            return Ok(None);
        }
        let type_name = v.type_name().to_string();
        let Some(map) = v.try_cast::<rhai::Map>() else {
            return Err(format!(
                "`route` must return a map like #{{ team: \"teams/2\", priority: \"HIGH\" }} or (), got {type_name}"
            ));
        };
        let mut route = Route::default();
        let mut problems = Vec::new();
        for (key, value) in map {
            let key = key.as_str();
            if value.is_unit() {
                if !ROUTE_KEYS.contains(&key) {
                    problems.push(unknown_key(key));
                }
                continue;
            }
            let text = match value.clone().into_immutable_string() {
                Ok(s) => s.trim().to_string(),
                Err(t) => {
                    if ROUTE_KEYS.contains(&key) {
                        problems.push(format!("`{key}` must be a string, got {t}"));
                    } else {
                        problems.push(unknown_key(key));
                    }
                    continue;
                }
            };
            match key {
                "team" if resource_id(&text, "teams") => route.team = Some(text),
                "team" => problems.push(format!("`team` must be like \"teams/2\", got {text:?}")),
                "assignee" if resource_id(&text, "agents") => route.assignee = Some(text),
                "assignee" => problems.push(format!(
                    "`assignee` must be like \"agents/7\", got {text:?}"
                )),
                "priority" => {
                    let p = text.to_ascii_uppercase();
                    if TICKET_PRIORITIES.contains(&p.as_str()) {
                        route.priority = Some(p);
                    } else {
                        problems.push(format!(
                            "`priority` must be one of {}, got {text:?}",
                            TICKET_PRIORITIES.join(", ")
                        ));
                    }
                }
                "topic" if text.is_empty() => {
                    problems.push("`topic` must not be empty (use () to leave it)".into())
                }
                "topic" if text.chars().count() > 100 => {
                    problems.push("`topic` is longer than 100 characters".into())
                }
                "topic" => route.topic = Some(text),
                other => problems.push(unknown_key(other)),
            }
        }
        if problems.is_empty() {
            Ok(Some(route))
        } else {
            problems.sort();
            Err(problems.join("; "))
        }
    }
}

fn unknown_key(key: &str) -> String {
    format!(
        "unknown key `{key}` in the route (use {})",
        ROUTE_KEYS.join(", ")
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct TicketJson {
    id: i64,
    kind: Option<String>,
    channel: String,
    subject: String,
    description: String,
    topic: String,
    priority: Option<String>,
    contact_email: Option<String>,
    contact_phone: Option<String>,
    team: Option<String>,
    assignee: Option<String>,
    customer_tier: Option<String>,
    customer_tier_rank: Option<i64>,
    create_time: Option<i64>,
}

impl ScriptTicket {
    /// An inline ticket for dry runs: `{"kind": "COMPLAINT", "channel": "EMAIL", "subject":
    /// "…", "description": "…", "topic": "billing", "priority": "NORMAL", "contact_email":
    /// "…", "customer_tier": "Platinum", "customer_tier_rank": 1}`; every field optional
    /// (kind defaults to `QUESTION`, priority to `NORMAL`). Unknown fields are an error.
    pub fn from_json(doc: &Value, now: Micros) -> Result<ScriptTicket, ScriptError> {
        let j =
            TicketJson::deserialize(doc).map_err(|e| ScriptError::input(format!("ticket: {e}")))?;
        let upper = |s: Option<String>, default: &str| {
            s.map_or_else(|| default.to_string(), |s| s.trim().to_ascii_uppercase())
        };
        let kind = upper(j.kind, "QUESTION");
        if !TICKET_KINDS.contains(&kind.as_str()) {
            return Err(ScriptError::input(format!(
                "ticket.kind: {kind:?} is not one of {}",
                TICKET_KINDS.join(", ")
            )));
        }
        let priority = upper(j.priority, "NORMAL");
        if !TICKET_PRIORITIES.contains(&priority.as_str()) {
            return Err(ScriptError::input(format!(
                "ticket.priority: {priority:?} is not one of {}",
                TICKET_PRIORITIES.join(", ")
            )));
        }
        let channel = j.channel.trim().to_ascii_uppercase();
        if !channel.is_empty() && bakkal_domain::InteractionChannel::parse(&channel).is_none() {
            return Err(ScriptError::input(format!(
                "ticket.channel: {channel:?} is not an interaction channel (EMAIL, PHONE, WEB, …)"
            )));
        }
        Ok(ScriptTicket {
            id: j.id.max(0),
            kind,
            channel,
            subject: j.subject,
            description: j.description,
            topic: j.topic.trim().to_string(),
            priority,
            contact_email: j.contact_email.map(|e| e.trim().to_lowercase()),
            contact_phone: j.contact_phone,
            team: j.team,
            assignee: j.assignee,
            customer_tier: j.customer_tier,
            customer_tier_rank: j.customer_tier_rank,
            create_time: j.create_time.unwrap_or(now),
        })
    }

    /// Does the subject or the description contain `word` (ignoring case)?
    pub fn mentions(&self, word: &str) -> bool {
        let w = word.trim().to_lowercase();
        !w.is_empty()
            && (self.subject.to_lowercase().contains(&w)
                || self.description.to_lowercase().contains(&w))
    }
}

pub(crate) fn route_error(message: String) -> ScriptError {
    ScriptError::new(ErrorCategory::WrongReturnType, message)
}

fn opt(s: &Option<String>) -> Dynamic {
    s.as_ref()
        .map_or(Dynamic::UNIT, |s| Dynamic::from(s.clone()))
}

#[export_module]
pub mod ticket_api {
    use rhai::INT;

    use crate::ticket::ScriptTicket;

    /// A service-desk ticket, as a ROUTING script sees it: `t.kind`, `t.subject`, `t.topic`, …
    pub type Ticket = ScriptTicket;

    /// The ticket's resource name, `tickets/{id}`, or `""` for a ticket not stored yet.
    #[rhai_fn(get = "name", pure)]
    pub fn ticket_name(t: &mut Ticket) -> String {
        if t.id > 0 {
            format!("tickets/{}", t.id)
        } else {
            String::new()
        }
    }
    /// `"COMPLAINT"`, `"REQUEST"`, `"QUESTION"` or `"FEEDBACK"`.
    #[rhai_fn(get = "kind", pure)]
    pub fn ticket_kind(t: &mut Ticket) -> String {
        t.kind.clone()
    }
    /// The channel it came through: `"EMAIL"`, `"PHONE"`, `"WEB"`, `"SMS"`, `"SOCIAL"`,
    /// `"STORE"`, `"CALL_CENTRE"` (may be `""`).
    #[rhai_fn(get = "channel", pure)]
    pub fn ticket_channel(t: &mut Ticket) -> String {
        t.channel.clone()
    }
    /// The subject line.
    #[rhai_fn(get = "subject", pure)]
    pub fn ticket_subject(t: &mut Ticket) -> String {
        t.subject.clone()
    }
    /// The customer's description of the problem.
    #[rhai_fn(get = "description", pure)]
    pub fn ticket_description(t: &mut Ticket) -> String {
        t.description.clone()
    }
    /// The topic (`"billing"`, `"delivery"`, …); may be `""`.
    #[rhai_fn(get = "topic", pure)]
    pub fn ticket_topic(t: &mut Ticket) -> String {
        t.topic.clone()
    }
    /// `"LOW"`, `"NORMAL"`, `"HIGH"` or `"URGENT"`.
    #[rhai_fn(get = "priority", pure)]
    pub fn ticket_priority(t: &mut Ticket) -> String {
        t.priority.clone()
    }
    /// The contact email given with the ticket (lower-case), or `()`.
    #[rhai_fn(get = "contact_email", pure)]
    pub fn ticket_contact_email(t: &mut Ticket) -> Dynamic {
        super::opt(&t.contact_email)
    }
    /// The contact phone given with the ticket, or `()`.
    #[rhai_fn(get = "contact_phone", pure)]
    pub fn ticket_contact_phone(t: &mut Ticket) -> Dynamic {
        super::opt(&t.contact_phone)
    }
    /// The team already chosen (`"teams/2"`), or `()`.
    #[rhai_fn(get = "team", pure)]
    pub fn ticket_team(t: &mut Ticket) -> Dynamic {
        super::opt(&t.team)
    }
    /// The agent already chosen (`"agents/7"`), or `()`.
    #[rhai_fn(get = "assignee", pure)]
    pub fn ticket_assignee(t: &mut Ticket) -> Dynamic {
        super::opt(&t.assignee)
    }
    /// The customer's tier in the pyramid (`"Platinum"`), or `()` when not scored.
    #[rhai_fn(get = "customer_tier", pure)]
    pub fn ticket_customer_tier(t: &mut Ticket) -> Dynamic {
        super::opt(&t.customer_tier)
    }
    /// The rank of the customer's tier: 1 is the top of the pyramid; `-1` when not scored.
    #[rhai_fn(get = "customer_tier_rank", pure)]
    pub fn ticket_customer_tier_rank(t: &mut Ticket) -> INT {
        t.customer_tier_rank.unwrap_or(-1)
    }
    /// When the ticket was opened (micros).
    #[rhai_fn(get = "create_time", pure)]
    pub fn ticket_create_time(t: &mut Ticket) -> INT {
        if t.create_time > 0 {
            t.create_time
        } else {
            crate::host::current_now()
        }
    }
    /// Does the subject or the description contain `word`? (Ignores case.)
    #[rhai_fn(name = "mentions", pure)]
    pub fn ticket_mentions(t: &mut Ticket, word: &str) -> bool {
        t.mentions(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Dynamic)]) -> Dynamic {
        let m: rhai::Map = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect();
        Dynamic::from_map(m)
    }

    #[test]
    fn routes_are_checked() {
        assert_eq!(Route::from_dynamic(Dynamic::UNIT), Ok(None));
        let r = Route::from_dynamic(map(&[
            ("team", "teams/2".into()),
            ("priority", "high".into()),
            ("topic", Dynamic::UNIT),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(r.team.as_deref(), Some("teams/2"));
        assert_eq!(r.priority.as_deref(), Some("HIGH"));
        assert_eq!(r.topic, None);
        let e = Route::from_dynamic(map(&[
            ("tem", "teams/2".into()),
            ("priority", "SOON".into()),
            ("assignee", Dynamic::from_int(3)),
        ]))
        .unwrap_err();
        assert!(e.contains("unknown key `tem`"), "{e}");
        assert!(e.contains("`priority` must be one of"), "{e}");
        assert!(e.contains("`assignee` must be a string"), "{e}");
        assert!(Route::from_dynamic(Dynamic::from_int(1)).is_err());
        assert!(Route::from_dynamic(map(&[("team", "team/2".into())])).is_err());
    }
}
