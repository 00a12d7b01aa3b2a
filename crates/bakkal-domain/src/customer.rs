//! The customer file: one record per person, contact data, consent per channel, and the value
//! keys derived from their orders.

use std::collections::BTreeMap;

use crate::error::{quote, ValidationError};
use crate::normalise;
use crate::time::{days_between, parse_date, Micros};

/// After this many days without a paid order an active customer counts as lapsed.
pub const DEFAULT_LAPSE_DAYS: i64 = 180;
pub const MAX_TAGS: usize = 50;
pub const MAX_ATTRIBUTES: usize = 64;
pub const MAX_ATTRIBUTE_VALUE: usize = 1024;
pub const MAX_TEXT: usize = 200;

/// Where a customer stands in the relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Known to us, never bought.
    Prospect,
    /// Bought, and recently.
    Active,
    /// Bought once, but not for [`DEFAULT_LAPSE_DAYS`] days: a win-back candidate.
    Lapsed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prospect => "PROSPECT",
            Stage::Active => "ACTIVE",
            Stage::Lapsed => "LAPSED",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "PROSPECT" => Some(Stage::Prospect),
            "ACTIVE" => Some(Stage::Active),
            "LAPSED" => Some(Stage::Lapsed),
            _ => None,
        }
    }
}

/// The channels a customer can consent to being contacted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentChannel {
    Email,
    Sms,
    Push,
    Phone,
}

impl ConsentChannel {
    pub const ALL: [ConsentChannel; 4] = [
        ConsentChannel::Email,
        ConsentChannel::Sms,
        ConsentChannel::Push,
        ConsentChannel::Phone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConsentChannel::Email => "email",
            ConsentChannel::Sms => "sms",
            ConsentChannel::Push => "push",
            ConsentChannel::Phone => "phone",
        }
    }

    pub fn parse(s: &str) -> Option<ConsentChannel> {
        ConsentChannel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Consent on one channel: granted or not, and when that was last decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consent {
    pub granted: bool,
    pub update_time: Option<Micros>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consents {
    pub email: Consent,
    pub sms: Consent,
    pub push: Consent,
    pub phone: Consent,
}

impl Consents {
    pub fn get(&self, ch: ConsentChannel) -> Consent {
        match ch {
            ConsentChannel::Email => self.email,
            ConsentChannel::Sms => self.sms,
            ConsentChannel::Push => self.push,
            ConsentChannel::Phone => self.phone,
        }
    }

    pub fn get_mut(&mut self, ch: ConsentChannel) -> &mut Consent {
        match ch {
            ConsentChannel::Email => &mut self.email,
            ConsentChannel::Sms => &mut self.sms,
            ConsentChannel::Push => &mut self.push,
            ConsentChannel::Phone => &mut self.phone,
        }
    }

    /// Stamp every channel whose decision changed against `before` (or is new) with `now`,
    /// unless the caller gave its own time for it.
    pub fn stamp_changes(&mut self, before: Option<&Consents>, now: Micros) {
        for ch in ConsentChannel::ALL {
            let old = before.map(|b| b.get(ch));
            let c = self.get_mut(ch);
            let changed = match old {
                None => c.granted,
                Some(o) => o.granted != c.granted,
            };
            if changed && c.update_time.is_none() {
                c.update_time = Some(now);
            } else if !changed {
                c.update_time = old.and_then(|o| o.update_time).or(c.update_time);
            }
        }
    }
}

/// The fields a caller writes. After [`CustomerFields::normalised`] they are valid and in
/// canonical form (email lower-case, phone E.164, country upper-case, tags sorted and unique).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFields {
    pub display_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub country_code: Option<String>,
    pub region: String,
    pub city: String,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub consent: Consents,
    pub referred_by: Option<i64>,
    pub owner: String,
    /// The organisation the customer belongs to (`organizations/{id}`).
    pub organization_id: Option<i64>,
}

fn text(errs: &mut ValidationError, field: &str, value: &str) -> String {
    let v = value.trim();
    if v.chars().count() > MAX_TEXT {
        errs.add(field, format!("must be at most {MAX_TEXT} characters"));
    } else if let Err(why) = normalise::control_free(v) {
        errs.add(field, why);
    }
    v.to_string()
}

/// A customer's owner: empty, or the staff user responsible, `users/{id}`.
pub fn normalise_owner(value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(String::new());
    }
    crate::name::parse_id(v, "users")
        .map(|id| format!("users/{id}"))
        .ok_or_else(|| format!("'{}' is not a user's name like users/3", quote(v)))
}

fn owner(errs: &mut ValidationError, value: &str) -> String {
    normalise_owner(value).unwrap_or_else(|why| {
        errs.add("owner", why);
        String::new()
    })
}

/// The user id of an owner (`users/{id}`); `None` when there is none.
pub fn owner_id(owner: &str) -> Option<i64> {
    crate::name::parse_id(owner, "users")
}

impl CustomerFields {
    /// Validate and normalise. Every problem is reported, each under its field name.
    pub fn normalised(self) -> Result<CustomerFields, ValidationError> {
        let mut errs = ValidationError::new();
        let display_name = text(&mut errs, "display_name", &self.display_name);
        let country_code = match self.country_code.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(c) => match normalise::country_code(c) {
                Ok(c) => Some(c),
                Err(why) => {
                    errs.add("country_code", why);
                    None
                }
            },
        };
        let email = match self.email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(e) => match normalise::email(e) {
                Ok(e) => Some(e),
                Err(why) => {
                    errs.add("email", format!("'{}' {why}", quote(e)));
                    None
                }
            },
        };
        let phone = match self.phone.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) => match normalise::phone(p, country_code.as_deref()) {
                Ok(p) => Some(p),
                Err(why) => {
                    errs.add("phone", format!("'{}' {why}", quote(p)));
                    None
                }
            },
        };
        let birth_date = match self.birth_date.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => {
                if parse_date(d).is_none() {
                    errs.add(
                        "birth_date",
                        format!("'{}' is not a date YYYY-MM-DD", quote(d)),
                    );
                }
                Some(d.to_string())
            }
        };
        let mut tags = Vec::with_capacity(self.tags.len());
        for (i, t) in self.tags.iter().enumerate() {
            match normalise::token(t) {
                Ok(t) => tags.push(t.to_lowercase()),
                Err(why) => errs.add(format!("tags[{i}]"), why),
            }
        }
        tags.sort();
        tags.dedup();
        if tags.len() > MAX_TAGS {
            errs.add("tags", format!("at most {MAX_TAGS} tags"));
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            errs.add("attributes", format!("at most {MAX_ATTRIBUTES} attributes"));
        }
        for (k, v) in &self.attributes {
            if let Err(why) = normalise::token(k) {
                errs.add(format!("attributes[{}]", quote(k)), format!("key {why}"));
            }
            if v.chars().count() > MAX_ATTRIBUTE_VALUE {
                errs.add(
                    format!("attributes[{}]", quote(k)),
                    format!("value must be at most {MAX_ATTRIBUTE_VALUE} characters"),
                );
            } else if let Err(why) = normalise::control_free(v) {
                errs.add(format!("attributes[{}]", quote(k)), format!("value {why}"));
            }
        }
        if display_name.is_empty() && email.is_none() && phone.is_none() && errs.is_empty() {
            errs.add(
                "display_name",
                "a customer needs at least a display_name, an email or a phone",
            );
        }
        let region = text(&mut errs, "region", &self.region);
        let city = text(&mut errs, "city", &self.city);
        let owner = owner(&mut errs, &self.owner);
        errs.into_result()?;
        Ok(CustomerFields {
            display_name,
            email,
            phone,
            country_code,
            region,
            city,
            birth_date,
            tags,
            attributes: self.attributes,
            consent: self.consent,
            referred_by: self.referred_by,
            owner,
            organization_id: self.organization_id,
        })
    }

    /// The key that makes two spellings of one mailbox one customer ([`normalise::email_key`]);
    /// a stored address too old to parse keys as itself.
    pub fn email_key(&self) -> Option<String> {
        self.email
            .as_deref()
            .map(|e| normalise::email_key(e).unwrap_or_else(|_| e.to_string()))
    }

    /// The key duplicate search compares display names by.
    pub fn name_key(&self) -> String {
        normalise::name_key(&self.display_name)
    }
}

/// The fields of a customer that `UpdateCustomer`'s mask may name.
pub const UPDATABLE_PATHS: &[&str] = &[
    "display_name",
    "email",
    "phone",
    "country_code",
    "region",
    "city",
    "birth_date",
    "tags",
    "attributes",
    "consent",
    "consent.email",
    "consent.sms",
    "consent.push",
    "consent.phone",
    "referred_by",
    "owner",
    "organization",
];

/// Copy the masked fields of `from` onto `onto`. `paths` must be from [`UPDATABLE_PATHS`].
pub fn apply_mask(onto: &mut CustomerFields, from: &CustomerFields, paths: &[&str]) {
    for p in paths {
        match *p {
            "display_name" => onto.display_name = from.display_name.clone(),
            "email" => onto.email = from.email.clone(),
            "phone" => onto.phone = from.phone.clone(),
            "country_code" => onto.country_code = from.country_code.clone(),
            "region" => onto.region = from.region.clone(),
            "city" => onto.city = from.city.clone(),
            "birth_date" => onto.birth_date = from.birth_date.clone(),
            "tags" => onto.tags = from.tags.clone(),
            "attributes" => onto.attributes = from.attributes.clone(),
            "consent" => onto.consent = from.consent,
            "consent.email" => onto.consent.email = from.consent.email,
            "consent.sms" => onto.consent.sms = from.consent.sms,
            "consent.push" => onto.consent.push = from.consent.push,
            "consent.phone" => onto.consent.phone = from.consent.phone,
            "referred_by" => onto.referred_by = from.referred_by,
            "owner" => onto.owner = from.owner.clone(),
            "organization" => onto.organization_id = from.organization_id,
            _ => {}
        }
    }
}

/// What a customer's paid orders add up to; kept on the customer row, updated in the same
/// transaction as every order change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderTotals {
    pub order_count: i64,
    /// Micro-units of the business currency.
    pub total_spent: i64,
    pub first_order_time: Option<Micros>,
    pub last_order_time: Option<Micros>,
}

/// The value keys of a customer at a moment: what segmentation and the pyramid weigh.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ValueKeys {
    pub first_order_time: Option<Micros>,
    pub last_order_time: Option<Micros>,
    pub order_count: i64,
    pub total_spent: i64,
    pub average_order_value: i64,
    /// `None` for a customer who never bought.
    pub days_since_last_order: Option<i64>,
    /// Days since the first paid order (0 for a prospect).
    pub tenure_days: i64,
    pub referral_count: i64,
}

/// A stored customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: i64,
    pub fields: CustomerFields,
    pub create_time: Micros,
    pub update_time: Micros,
    /// When the prospect first bought.
    pub converted_time: Option<Micros>,
    /// Bumped on every write; the etag is derived from it.
    pub version: i64,
    pub totals: OrderTotals,
    pub referral_count: i64,
}

impl Customer {
    pub fn name(&self) -> String {
        crate::name::customer_name(self.id)
    }

    pub fn etag(&self) -> String {
        etag(self.version)
    }

    /// The stage at `now`: a prospect until the first order, lapsed after
    /// [`DEFAULT_LAPSE_DAYS`] without one.
    pub fn stage(&self, now: Micros) -> Stage {
        stage(self.converted_time, self.totals.last_order_time, now)
    }

    pub fn value_keys(&self, now: Micros) -> ValueKeys {
        let t = &self.totals;
        ValueKeys {
            first_order_time: t.first_order_time,
            last_order_time: t.last_order_time,
            order_count: t.order_count,
            total_spent: t.total_spent,
            average_order_value: if t.order_count > 0 {
                t.total_spent / t.order_count
            } else {
                0
            },
            days_since_last_order: t.last_order_time.map(|l| days_between(l, now)),
            tenure_days: t.first_order_time.map_or(0, |f| days_between(f, now)),
            referral_count: self.referral_count,
        }
    }
}

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

pub fn stage(
    converted_time: Option<Micros>,
    last_order_time: Option<Micros>,
    now: Micros,
) -> Stage {
    // converted without a paid order (a won opportunity): the conversion counts as the last
    // order would
    match (converted_time, last_order_time.or(converted_time)) {
        (None, _) => Stage::Prospect,
        (Some(_), Some(last)) if days_between(last, now) < DEFAULT_LAPSE_DAYS => Stage::Active,
        (Some(_), _) => Stage::Lapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MICROS_PER_DAY;

    fn fields() -> CustomerFields {
        CustomerFields {
            display_name: " Ayşe Yılmaz ".into(),
            email: Some(" AYSE@example.com".into()),
            phone: Some("0532 123 45 67".into()),
            country_code: Some("tr".into()),
            tags: vec!["VIP".into(), "vip".into(), "istanbul".into()],
            ..Default::default()
        }
    }

    #[test]
    fn normalises_contact_data() {
        let f = fields().normalised().unwrap();
        assert_eq!(f.display_name, "Ayşe Yılmaz");
        assert_eq!(f.email.as_deref(), Some("ayse@example.com"));
        assert_eq!(f.phone.as_deref(), Some("+905321234567"));
        assert_eq!(f.country_code.as_deref(), Some("TR"));
        assert_eq!(f.tags, vec!["istanbul", "vip"]);
    }

    #[test]
    fn reports_every_bad_field() {
        let f = CustomerFields {
            email: Some("nope".into()),
            phone: Some("12".into()),
            birth_date: Some("2001-02-30".into()),
            ..Default::default()
        };
        let e = f.normalised().unwrap_err();
        let fields: Vec<_> = e.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, vec!["email", "phone", "birth_date"]);
    }

    #[test]
    fn an_empty_customer_is_refused() {
        assert!(CustomerFields::default().normalised().is_err());
    }

    #[test]
    fn stages_follow_orders() {
        let now = 1_000 * MICROS_PER_DAY;
        assert_eq!(stage(None, None, now), Stage::Prospect);
        assert_eq!(
            stage(Some(0), Some(now - MICROS_PER_DAY), now),
            Stage::Active
        );
        assert_eq!(
            stage(Some(0), Some(now - 200 * MICROS_PER_DAY), now),
            Stage::Lapsed
        );
        // converted by a won opportunity, no order yet
        assert_eq!(stage(Some(now - MICROS_PER_DAY), None, now), Stage::Active);
        assert_eq!(stage(Some(0), None, now), Stage::Lapsed);
    }

    #[test]
    fn consent_changes_are_stamped() {
        let before = Consents::default();
        let mut after = before;
        after.email.granted = true;
        after.stamp_changes(Some(&before), 7);
        assert_eq!(after.email.update_time, Some(7));
        assert_eq!(after.sms.update_time, None);
    }
}
