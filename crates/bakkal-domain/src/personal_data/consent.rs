//! Consent with provenance: every grant and withdrawal on a channel is an event (who decided,
//! when, through what, agreeing to which text), appended and never changed. The customer's
//! current consent per channel is the latest event's decision (by event time, then order of
//! recording); the customer's consent fields hold that projection.

use crate::customer::{Consent, ConsentChannel, Consents};
use crate::error::ValidationError;
use crate::normalise;
use crate::time::Micros;

/// The most characters of the agreed text, IP address or user agent kept.
pub const MAX_CONSENT_TEXT: usize = 2000;

/// Through what the decision reached bakkal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentSource {
    /// A form the person filled in (sign-up, preference centre).
    WebForm,
    /// A customer import (`ImportCustomers`).
    Import,
    /// A staff member recorded it (on the phone, at the desk).
    Agent,
    /// Another system through the API (`CreateCustomer`, `UpdateCustomer`, or an event
    /// without a source of its own).
    Api,
    /// An unsubscribe or confirmation link in a message.
    EmailLink,
    /// In a shop, on paper or a terminal.
    InStore,
    /// Taken over from a customer merged into this one.
    Merge,
    /// The consent a customer had before consent events were recorded (migration 0022).
    Migrated,
}

impl ConsentSource {
    pub const ALL: [ConsentSource; 8] = [
        ConsentSource::WebForm,
        ConsentSource::Import,
        ConsentSource::Agent,
        ConsentSource::Api,
        ConsentSource::EmailLink,
        ConsentSource::InStore,
        ConsentSource::Merge,
        ConsentSource::Migrated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConsentSource::WebForm => "WEB_FORM",
            ConsentSource::Import => "IMPORT",
            ConsentSource::Agent => "AGENT",
            ConsentSource::Api => "API",
            ConsentSource::EmailLink => "EMAIL_LINK",
            ConsentSource::InStore => "IN_STORE",
            ConsentSource::Merge => "MERGE",
            ConsentSource::Migrated => "MIGRATED",
        }
    }

    pub fn parse(s: &str) -> Option<ConsentSource> {
        ConsentSource::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// May a caller name this source? MERGE and MIGRATED are bakkal's own.
    pub fn caller_may_give(self) -> bool {
        !matches!(self, ConsentSource::Merge | ConsentSource::Migrated)
    }
}

/// A decision to record, as a caller gives it (checked with [`NewConsentEvent::checked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsentEvent {
    pub channel: ConsentChannel,
    pub granted: bool,
    /// When the person decided; `None`: now.
    pub event_time: Option<Micros>,
    pub source: ConsentSource,
    /// The text, or the version of the text, the person agreed to (or withdrew from).
    pub terms: String,
    pub ip_address: String,
    pub user_agent: String,
}

impl NewConsentEvent {
    /// A decision bakkal records itself (a customer write, an import, a merge).
    pub fn from_write(channel: ConsentChannel, c: Consent, source: ConsentSource) -> Self {
        NewConsentEvent {
            channel,
            granted: c.granted,
            event_time: c.update_time,
            source,
            terms: String::new(),
            ip_address: String::new(),
            user_agent: String::new(),
        }
    }

    /// The event with its free text trimmed and checked (no control characters, at most
    /// [`MAX_CONSENT_TEXT`] characters; an IP address that parses), field names prefixed
    /// `consent_event.`; a time after `latest` is refused.
    pub fn checked(mut self, latest: Micros) -> Result<Self, ValidationError> {
        let mut err = ValidationError::default();
        for (field, value) in [
            ("consent_event.terms", &mut self.terms),
            ("consent_event.ip_address", &mut self.ip_address),
            ("consent_event.user_agent", &mut self.user_agent),
        ] {
            *value = value.trim().to_string();
            if value.chars().count() > MAX_CONSENT_TEXT {
                err.add(
                    field,
                    format!("is longer than {MAX_CONSENT_TEXT} characters"),
                );
            } else if let Err(why) = normalise::control_free(value) {
                err.add(field, why);
            }
        }
        if !self.ip_address.is_empty() && self.ip_address.parse::<std::net::IpAddr>().is_err() {
            err.add("consent_event.ip_address", "is not an IPv4 or IPv6 address");
        }
        if self.event_time.is_some_and(|t| t > latest) {
            err.add("consent_event.event_time", "is in the future");
        }
        err.into_result().map(|_| self)
    }
}

/// A recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvent {
    pub id: i64,
    pub customer_id: i64,
    pub channel: ConsentChannel,
    pub granted: bool,
    pub event_time: Micros,
    pub source: ConsentSource,
    pub terms: String,
    /// The principal that recorded it (`serviceAccounts/3`, `users/7`, `system:…`).
    pub actor: String,
    pub ip_address: String,
    pub user_agent: String,
    pub create_time: Micros,
}

impl ConsentEvent {
    /// `customers/{customer}/consentEvents/{id}`.
    pub fn name(&self) -> String {
        consent_event_name(self.customer_id, self.id)
    }
}

pub fn consent_event_name(customer: i64, id: i64) -> String {
    format!("customers/{customer}/consentEvents/{id}")
}

/// The current consent the events give: per channel the latest decision by event time, then
/// by id; a channel without events is not granted. `events` in any order.
pub fn current(events: &[ConsentEvent]) -> Consents {
    let mut out = Consents::default();
    for ch in ConsentChannel::ALL {
        if let Some(e) = events
            .iter()
            .filter(|e| e.channel == ch)
            .max_by_key(|e| (e.event_time, e.id))
        {
            *out.get_mut(ch) = Consent {
                granted: e.granted,
                update_time: Some(e.event_time),
            };
        }
    }
    out
}

/// The channels whose decision differs between `before` (`None`: a new customer, nothing
/// decided) and `after`, with the decision: what a customer write records as events.
pub fn changed(before: Option<&Consents>, after: &Consents) -> Vec<(ConsentChannel, Consent)> {
    ConsentChannel::ALL
        .into_iter()
        .filter(|&ch| {
            let a = after.get(ch);
            match before {
                None => a.granted || a.update_time.is_some(),
                Some(b) => b.get(ch) != a,
            }
        })
        .map(|ch| (ch, after.get(ch)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, channel: ConsentChannel, granted: bool, t: Micros) -> ConsentEvent {
        ConsentEvent {
            id,
            customer_id: 1,
            channel,
            granted,
            event_time: t,
            source: ConsentSource::WebForm,
            terms: String::new(),
            actor: String::new(),
            ip_address: String::new(),
            user_agent: String::new(),
            create_time: t,
        }
    }

    #[test]
    fn the_latest_decision_wins_per_channel() {
        let events = [
            event(1, ConsentChannel::Email, true, 10),
            event(2, ConsentChannel::Email, false, 30),
            // recorded later, decided earlier: does not undo the withdrawal
            event(3, ConsentChannel::Email, true, 20),
            event(4, ConsentChannel::Sms, true, 5),
        ];
        let c = current(&events);
        assert!(!c.email.granted);
        assert_eq!(c.email.update_time, Some(30));
        assert!(c.sms.granted);
        assert!(!c.push.granted && c.push.update_time.is_none());
    }

    #[test]
    fn sources_round_trip_and_bakkal_keeps_its_own() {
        for s in ConsentSource::ALL {
            assert_eq!(ConsentSource::parse(s.as_str()), Some(s));
        }
        assert!(!ConsentSource::Merge.caller_may_give());
        assert!(ConsentSource::WebForm.caller_may_give());
    }

    #[test]
    fn free_text_is_checked() {
        let e = NewConsentEvent {
            ip_address: "not an ip".into(),
            terms: "x".repeat(MAX_CONSENT_TEXT + 1),
            event_time: Some(100),
            ..NewConsentEvent::from_write(
                ConsentChannel::Email,
                Consent::default(),
                ConsentSource::Api,
            )
        };
        let err = e.checked(50).unwrap_err();
        let fields: Vec<_> = err.violations.iter().map(|v| v.field.clone()).collect();
        assert!(fields.contains(&"consent_event.ip_address".to_string()));
        assert!(fields.contains(&"consent_event.terms".to_string()));
        assert!(fields.contains(&"consent_event.event_time".to_string()));
    }

    #[test]
    fn a_write_records_only_changed_channels() {
        let before = Consents::default();
        let mut after = before;
        after.sms = Consent {
            granted: true,
            update_time: Some(7),
        };
        let ch = changed(Some(&before), &after);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].0, ConsentChannel::Sms);
        assert!(changed(None, &Consents::default()).is_empty());
    }
}
