//! The audit trail's events: who did what to which record, with which outcome, and (for
//! customers) which fields changed from what to what. Events are chained: each one's hash
//! covers the previous hash, its sequence number and its canonical encoding, so editing,
//! removing or reordering a stored event breaks the chain from there on.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::customer::{Consent, CustomerFields};
use crate::time::Micros;

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a call did to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    Create,
    Update,
    Delete,
    Merge,
    Record,
    Import,
    Export,
    /// A write RPC whose verb is none of the above (launch, pause, resolve, rotate…): the
    /// event's method says which.
    Change,
    /// A call that was refused or failed before it did anything in particular.
    Call,
}

impl AuditAction {
    pub const ALL: [AuditAction; 9] = [
        AuditAction::Create,
        AuditAction::Update,
        AuditAction::Delete,
        AuditAction::Merge,
        AuditAction::Record,
        AuditAction::Import,
        AuditAction::Export,
        AuditAction::Change,
        AuditAction::Call,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "CREATE",
            AuditAction::Update => "UPDATE",
            AuditAction::Delete => "DELETE",
            AuditAction::Merge => "MERGE",
            AuditAction::Record => "RECORD",
            AuditAction::Import => "IMPORT",
            AuditAction::Export => "EXPORT",
            AuditAction::Change => "CHANGE",
            AuditAction::Call => "CALL",
        }
    }

    pub fn parse(s: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The action a method's verb names (`CreateCustomer` → CREATE, `UpsertProduct` →
    /// UPDATE, `LaunchCampaign` → CHANGE).
    pub fn of_method(method: &str) -> AuditAction {
        let verb = method.rsplit('/').next().unwrap_or(method);
        let starts = |p: &str| verb.starts_with(p);
        if starts("Create") {
            AuditAction::Create
        } else if starts("Update") || starts("Upsert") || starts("Set") {
            AuditAction::Update
        } else if starts("Delete") {
            AuditAction::Delete
        } else if starts("Merge") {
            AuditAction::Merge
        } else if starts("Record") {
            AuditAction::Record
        } else if starts("Import") {
            AuditAction::Import
        } else if starts("Export") {
            AuditAction::Export
        } else {
            AuditAction::Change
        }
    }
}

/// How the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditResult {
    /// Done (the event of a write is in the write's transaction).
    Ok,
    /// Refused for want of a credential or a permission.
    Denied,
    /// Failed otherwise (invalid, not found, stale etag, …): nothing was written.
    Failed,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "OK",
            AuditResult::Denied => "DENIED",
            AuditResult::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<AuditResult> {
        [AuditResult::Ok, AuditResult::Denied, AuditResult::Failed]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// One changed field: its value before and after (`None`: absent). Personal fields are
/// stored as they are and masked when read by a caller without the right to see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// What an erasure records in place of values: that the field was erased, never what it held.
pub const ERASED: &str = "(erased)";

/// The fields whose values are personal data (masked for readers without PII rights).
pub const PERSONAL_FIELDS: [&str; 3] = ["email", "phone", "birth_date"];

/// Who acted: the principal's name (`users/3`, `serviceAccounts/2`, `open`,
/// `system:scheduler`), the API key's public id, and what they acted through (an import).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    pub principal: String,
    pub key_id: Option<String>,
    pub request_id: String,
    pub peer: String,
    pub method: String,
}

impl Actor {
    /// bakkal's own background work: `system:{task}`.
    pub fn system(task: &str) -> Actor {
        Actor {
            principal: format!("system:{task}"),
            ..Default::default()
        }
    }
}

/// An event before it is appended (no sequence number or hashes yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub time: Micros,
    pub actor: Actor,
    pub resource: String,
    pub action: AuditAction,
    pub result: AuditResult,
    /// The gRPC status code's name (`OK`, `ABORTED`, `PERMISSION_DENIED`, …).
    pub code: String,
    pub changes: Vec<FieldChange>,
}

impl NewAuditEvent {
    /// The stored text of the changes (a JSON array; empty text for none).
    pub fn changes_text(&self) -> String {
        changes_text(&self.changes)
    }

    /// The canonical encoding the hash covers.
    pub fn canonical(&self) -> String {
        self.canonical_with(&self.changes_text())
    }

    /// `canonical`, given the `changes_text` already made (an append needs both).
    pub fn canonical_with(&self, changes_text: &str) -> String {
        canonical(&[
            &self.time.to_string(),
            &self.actor.principal,
            self.actor.key_id.as_deref().unwrap_or(""),
            &self.actor.request_id,
            &self.actor.peer,
            &self.actor.method,
            &self.resource,
            self.action.as_str(),
            self.result.as_str(),
            &self.code,
            changes_text,
        ])
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub seq: i64,
    pub event: NewAuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    /// Does the stored hash match the event's contents after `prev_hash`?
    pub fn hash_matches(&self) -> bool {
        chain_hash(&self.prev_hash, self.seq, &self.event.canonical()) == self.hash
    }
}

pub fn changes_text(changes: &[FieldChange]) -> String {
    if changes.is_empty() {
        String::new()
    } else {
        serde_json::to_string(changes).unwrap_or_default()
    }
}

pub fn parse_changes(text: &str) -> Vec<FieldChange> {
    if text.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// Each part as `{byte length}:{text};`, so no two different events encode alike.
pub fn canonical(parts: &[&str]) -> String {
    let mut out = String::new();
    for p in parts {
        out.push_str(&p.len().to_string());
        out.push(':');
        out.push_str(p);
        out.push(';');
    }
    out
}

/// `hex(SHA-256(prev_hash || seq || "|" || canonical))`: the one definition of the chain
/// (the PostgreSQL append function in migration 0013 computes the same).
pub fn chain_hash(prev_hash: &str, seq: i64, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(seq.to_string().as_bytes());
    h.update(b"|");
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

fn consent_text(c: &Consent) -> String {
    if c.granted { "granted" } else { "denied" }.to_string()
}

/// The fields that differ between two versions of a customer (`before` `None`: a new one).
pub fn customer_changes(
    before: Option<&CustomerFields>,
    after: &CustomerFields,
) -> Vec<FieldChange> {
    let empty = CustomerFields::default();
    let b = before.unwrap_or(&empty);
    let mut out = Vec::new();
    let mut push = |field: &str, old: Option<String>, new: Option<String>| {
        if old != new {
            out.push(FieldChange {
                field: field.to_string(),
                before: old,
                after: new,
            });
        }
    };
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    push(
        "display_name",
        text(&b.display_name),
        text(&after.display_name),
    );
    push("email", b.email.clone(), after.email.clone());
    push("phone", b.phone.clone(), after.phone.clone());
    push(
        "country_code",
        b.country_code.clone(),
        after.country_code.clone(),
    );
    push("region", text(&b.region), text(&after.region));
    push("city", text(&b.city), text(&after.city));
    push("birth_date", b.birth_date.clone(), after.birth_date.clone());
    let tags = |t: &[String]| (!t.is_empty()).then(|| t.join(","));
    push("tags", tags(&b.tags), tags(&after.tags));
    let keys: std::collections::BTreeSet<&String> =
        b.attributes.keys().chain(after.attributes.keys()).collect();
    for k in keys {
        push(
            &format!("attributes.{k}"),
            b.attributes.get(k).cloned(),
            after.attributes.get(k).cloned(),
        );
    }
    for (ch, old, new) in [
        ("email", &b.consent.email, &after.consent.email),
        ("sms", &b.consent.sms, &after.consent.sms),
        ("push", &b.consent.push, &after.consent.push),
        ("phone", &b.consent.phone, &after.consent.phone),
    ] {
        if old.granted != new.granted {
            push(
                &format!("consent.{ch}"),
                before.map(|_| consent_text(old)),
                Some(consent_text(new)),
            );
        }
    }
    push(
        "referred_by",
        b.referred_by.map(crate::name::customer_name),
        after.referred_by.map(crate::name::customer_name),
    );
    push("owner", text(&b.owner), text(&after.owner));
    push(
        "organization",
        b.organization_id.map(crate::sales::organization_name),
        after.organization_id.map(crate::sales::organization_name),
    );
    out
}

/// An erasure's changes: every field that held something, recorded as erased, without values.
pub fn erasure_changes(before: &CustomerFields) -> Vec<FieldChange> {
    customer_changes(None, before)
        .into_iter()
        .filter(|c| c.field != "referred_by" && c.field != "organization")
        .map(|c| FieldChange {
            field: c.field,
            before: Some(ERASED.to_string()),
            after: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> NewAuditEvent {
        NewAuditEvent {
            time: 1,
            actor: Actor::system("test"),
            resource: "customers/1".into(),
            action: AuditAction::Create,
            result: AuditResult::Ok,
            code: "OK".into(),
            changes: vec![],
        }
    }

    #[test]
    fn the_hash_covers_every_part_and_the_link() {
        let e = event();
        let h = chain_hash(GENESIS, 1, &e.canonical());
        let mut other = e.clone();
        other.resource = "customers/2".into();
        assert_ne!(h, chain_hash(GENESIS, 1, &other.canonical()));
        assert_ne!(h, chain_hash(GENESIS, 2, &e.canonical()));
        assert_ne!(h, chain_hash(&h, 1, &e.canonical()));
        // parts cannot slide into each other
        assert_ne!(canonical(&["ab", "c"]), canonical(&["a", "bc"]));
    }

    #[test]
    fn verbs_name_actions() {
        assert_eq!(
            AuditAction::of_method("bakkal.v1.CustomerService/CreateCustomer"),
            AuditAction::Create
        );
        assert_eq!(
            AuditAction::of_method("bakkal.v1.CustomerService/UpsertProduct"),
            AuditAction::Update
        );
        assert_eq!(
            AuditAction::of_method("bakkal.v1.CampaignService/LaunchCampaign"),
            AuditAction::Change
        );
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn customer_diffs_list_changed_fields_only() {
        let before = CustomerFields {
            display_name: "Ayşe".into(),
            email: Some("ayse@example.com".into()),
            ..Default::default()
        };
        let mut after = before.clone();
        after.email = Some("ayse@example.org".into());
        let ch = customer_changes(Some(&before), &after);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].field, "email");
        assert_eq!(ch[0].before.as_deref(), Some("ayse@example.com"));
        let erased = erasure_changes(&before);
        assert!(erased.iter().all(|c| c.before.as_deref() == Some(ERASED)));
        assert!(!changes_text(&erased).contains("ayse"));
    }
}
