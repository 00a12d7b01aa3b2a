//! Personal data in the audit trail, erasable although the trail is append-only: the values
//! of a customer's personal fields (email, phone, birth date) in an event are sealed with a
//! key of that event's own, kept outside the chain in `audit_keys` under the customer's id.
//! Erasing the customer deletes their keys, and what their events hold is noise from then on
//! (read as `(erased)`), while the chain, which covers the sealed text, still verifies.
//!
//! The cipher is ChaCha20 (the 64-bit-nonce variant, `rand_chacha`'s block function in counter
//! mode) under a fresh random 256-bit key per event, a stream per sealed value; integrity is
//! the chain's.

use std::collections::HashMap;

use bakkal_domain::audit::{FieldChange, ERASED, PERSONAL_FIELDS};
use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const PREFIX: &str = "sealed:";

/// A key for one event's personal values.
#[derive(Debug, Clone)]
pub(crate) struct EventKey {
    pub id: String,
    key: [u8; 32],
}

impl EventKey {
    pub fn new() -> EventKey {
        // one draw from the OS for both
        let mut bytes = [0u8; 44];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let (key, id) = bytes.split_at(32);
        let mut k = [0u8; 32];
        k.copy_from_slice(key);
        EventKey {
            id: hex::encode(id),
            key: k,
        }
    }

    pub fn key_text(&self) -> String {
        hex::encode(self.key)
    }

    fn from_text(id: &str, key: &str) -> Option<EventKey> {
        let bytes = hex::decode(key).ok()?;
        Some(EventKey {
            id: id.to_string(),
            key: bytes.try_into().ok()?,
        })
    }
}

fn xor(key: &[u8; 32], stream: u64, data: &mut [u8]) {
    let mut rng = ChaCha20Rng::from_seed(*key);
    rng.set_stream(stream);
    let mut pad = vec![0u8; data.len()];
    rng.fill_bytes(&mut pad);
    for (d, p) in data.iter_mut().zip(pad) {
        *d ^= p;
    }
}

/// Does this event hold personal values that need a key?
pub(crate) fn has_personal(changes: &[FieldChange]) -> bool {
    changes.iter().any(|c| {
        PERSONAL_FIELDS.contains(&c.field.as_str())
            && [&c.before, &c.after]
                .into_iter()
                .flatten()
                .any(|v| v != ERASED)
    })
}

/// Seal the personal values of `changes` with `key`: `sealed:{key id}:{stream}:{hex}`.
pub(crate) fn seal(changes: &mut [FieldChange], key: &EventKey) {
    let mut stream = 0u64;
    for c in changes.iter_mut() {
        if !PERSONAL_FIELDS.contains(&c.field.as_str()) {
            continue;
        }
        for v in [&mut c.before, &mut c.after].into_iter().flatten() {
            if v == ERASED {
                continue;
            }
            let mut bytes = v.as_bytes().to_vec();
            xor(&key.key, stream, &mut bytes);
            *v = format!("{PREFIX}{}:{stream}:{}", key.id, hex::encode(&bytes));
            stream += 1;
        }
    }
}

/// The key ids sealed values in `changes` name.
pub(crate) fn key_ids(changes: &[FieldChange]) -> Vec<String> {
    changes
        .iter()
        .filter(|c| PERSONAL_FIELDS.contains(&c.field.as_str()))
        .flat_map(|c| [&c.before, &c.after])
        .flatten()
        .filter_map(|v| {
            v.strip_prefix(PREFIX)?
                .split(':')
                .next()
                .map(str::to_string)
        })
        .collect()
}

/// Open the sealed values of `changes` with the keys at hand (id → hex key); a value whose
/// key is gone (the customer was erased) reads `(erased)`.
pub(crate) fn open(changes: &mut [FieldChange], keys: &HashMap<String, String>) {
    for c in changes.iter_mut() {
        if !PERSONAL_FIELDS.contains(&c.field.as_str()) {
            continue;
        }
        for v in [&mut c.before, &mut c.after].into_iter().flatten() {
            let Some(rest) = v.strip_prefix(PREFIX) else {
                continue;
            };
            let opened = (|| {
                let mut parts = rest.splitn(3, ':');
                let id = parts.next()?;
                let stream: u64 = parts.next()?.parse().ok()?;
                let key = EventKey::from_text(id, keys.get(id)?)?;
                let mut bytes = hex::decode(parts.next()?).ok()?;
                xor(&key.key, stream, &mut bytes);
                String::from_utf8(bytes).ok()
            })();
            *v = opened.unwrap_or_else(|| ERASED.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_their_key_and_only_with_it() {
        let plain = vec![
            FieldChange {
                field: "email".into(),
                before: Some("ayse@example.com".into()),
                after: Some("ayse@example.org".into()),
            },
            FieldChange {
                field: "region".into(),
                before: None,
                after: Some("Ege".into()),
            },
        ];
        assert!(has_personal(&plain));
        let key = EventKey::new();
        let mut sealed = plain.clone();
        seal(&mut sealed, &key);
        let text = bakkal_domain::audit::changes_text(&sealed);
        assert!(!text.contains("ayse"), "{text}");
        assert!(text.contains("Ege"));
        assert_eq!(key_ids(&sealed), vec![key.id.clone(), key.id.clone()]);
        let mut opened = sealed.clone();
        open(
            &mut opened,
            &HashMap::from([(key.id.clone(), key.key_text())]),
        );
        assert_eq!(opened, plain);
        let mut erased = sealed;
        open(&mut erased, &HashMap::new());
        assert_eq!(erased[0].before.as_deref(), Some(ERASED));
        assert_eq!(erased[1].after.as_deref(), Some("Ege"));
    }
}
