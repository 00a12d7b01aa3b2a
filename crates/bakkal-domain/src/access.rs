//! Who is calling: principals, API key format and the record scope of a role.
//!
//! An API key reads `bk_live_<key id>_<secret><checksum>` (`bk_test_` for test keys): the key
//! id (16 lowercase letters and digits) is public and appears in listings and logs; the secret
//! (32 base62 characters) is shown once and only its SHA-256 is stored; the checksum (6 base62
//! characters of the CRC-32 of everything before it) lets a mistyped or made-up key be refused
//! before any database access.

use sha2::{Digest, Sha256};

pub const KEY_ID_LEN: usize = 16;
pub const SECRET_LEN: usize = 32;
pub const CHECKSUM_LEN: usize = 6;
const LIVE: &str = "bk_live_";
const TEST: &str = "bk_test_";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A key as the caller sent it, checked for shape and checksum (not yet against the database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub key_id: String,
    pub test: bool,
    secret: String,
}

impl ParsedKey {
    /// The hash stored for this key's secret.
    pub fn secret_hash(&self) -> String {
        secret_hash(&self.secret)
    }
}

/// Why a presented key was refused before the database was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a bakkal API key (expected bk_live_… or bk_test_…)")]
    Malformed,
    #[error("the API key's checksum does not match (mistyped or truncated?)")]
    Checksum,
}

fn base62(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

fn checksum(body: &str) -> String {
    base62(u64::from(crc32fast::hash(body.as_bytes())), CHECKSUM_LEN)
}

/// `body` (`bk_live_<key id>_<secret>`) with its checksum appended: the key text.
pub fn with_checksum(body: &str) -> String {
    format!("{body}{}", checksum(body))
}

/// Hex SHA-256 of a secret.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compare two hashes in time independent of where they differ.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A new key from `random` bytes (at least 40; the caller draws them from the OS): its id and
/// the full text to hand out once.
pub fn new_key(random: &[u8], test: bool) -> (String, String) {
    let pick = |b: &u8, alphabet: &[u8]| alphabet[*b as usize % alphabet.len()] as char;
    let lower = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let key_id: String = random
        .iter()
        .take(KEY_ID_LEN)
        .map(|b| pick(b, lower))
        .collect();
    let secret: String = random
        .iter()
        .skip(KEY_ID_LEN)
        .take(SECRET_LEN)
        .map(|b| pick(b, BASE62))
        .collect();
    let body = format!("{}{key_id}_{secret}", if test { TEST } else { LIVE });
    (key_id, with_checksum(&body))
}

/// A key id's shape: 16 lowercase letters and digits.
pub fn is_key_id(id: &str) -> bool {
    id.len() == KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Check a presented key's shape and checksum.
pub fn parse_key(text: &str) -> Result<ParsedKey, KeyError> {
    let (test, rest) = if let Some(r) = text.strip_prefix(LIVE) {
        (false, r)
    } else if let Some(r) = text.strip_prefix(TEST) {
        (true, r)
    } else {
        return Err(KeyError::Malformed);
    };
    if rest.len() != KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN || !rest.is_ascii() {
        return Err(KeyError::Malformed);
    }
    let (key_id, tail) = rest.split_at(KEY_ID_LEN);
    let Some(tail) = tail.strip_prefix('_') else {
        return Err(KeyError::Malformed);
    };
    let (secret, sum) = tail.split_at(SECRET_LEN);
    if !is_key_id(key_id) || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KeyError::Malformed);
    }
    let body = &text[..text.len() - CHECKSUM_LEN];
    if !hashes_equal(&checksum(body), sum) {
        return Err(KeyError::Checksum);
    }
    Ok(ParsedKey {
        key_id: key_id.to_string(),
        test,
        secret: secret.to_string(),
    })
}

/// What kind of principal made a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A staff user (`users/{id}`).
    User,
    /// A backend caller (`serviceAccounts/{id}`).
    ServiceAccount,
    /// Anyone, on a server running without authentication (loopback, embedded default).
    Open,
    /// bakkal's own background work (the scheduler, the SLA watcher, the sweeper).
    System,
}

impl PrincipalKind {
    /// The stored text of a key's parent kind.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "service_account",
            PrincipalKind::Open => "open",
            PrincipalKind::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<PrincipalKind> {
        Some(match s {
            "user" => PrincipalKind::User,
            "service_account" => PrincipalKind::ServiceAccount,
            "open" => PrincipalKind::Open,
            "system" => PrincipalKind::System,
            _ => return None,
        })
    }
}

/// How far a role reaches into records of a family (customers, tickets, opportunities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Records the principal owns or is assigned.
    Own,
    /// …and those of the principal's teams (and, for a manager, their reports).
    Team,
    /// Every record.
    All,
}

impl Scope {
    /// `OWN`, `TEAM` or `ALL`: how a scope is written in the API, the docs and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Own => "OWN",
            Scope::Team => "TEAM",
            Scope::All => "ALL",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "OWN" => Some(Scope::Own),
            "TEAM" => Some(Scope::Team),
            "ALL" => Some(Scope::All),
            _ => None,
        }
    }
}

/// The caller of one request, resolved before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The user's or service account's id; 0 for open and system principals.
    pub id: i64,
    /// The API key used, when one was (public id, never the secret).
    pub key_id: Option<String>,
    /// Role names (built-in or custom), the union of whose permissions applies.
    pub roles: Vec<String>,
    /// The user's teams (`teams/{id}` ids).
    pub teams: Vec<i64>,
}

impl Principal {
    /// The principal of every call on a server running without authentication.
    pub fn open() -> Principal {
        Principal {
            kind: PrincipalKind::Open,
            id: 0,
            key_id: None,
            roles: vec!["admin".into()],
            teams: Vec::new(),
        }
    }

    /// bakkal's own background work, named (`scheduler`, `sla-watcher`, …).
    pub fn system() -> Principal {
        Principal {
            kind: PrincipalKind::System,
            id: 0,
            key_id: None,
            roles: vec!["admin".into()],
            teams: Vec::new(),
        }
    }

    /// `users/{id}`, `serviceAccounts/{id}`, `open` or `system`.
    pub fn name(&self) -> String {
        match self.kind {
            PrincipalKind::User => format!("users/{}", self.id),
            PrincipalKind::ServiceAccount => format!("serviceAccounts/{}", self.id),
            PrincipalKind::Open => "open".into(),
            PrincipalKind::System => "system".into(),
        }
    }
}

/// The SHA-256 fingerprint of a DER certificate, as bakkal writes it: 64 lowercase hex digits.
pub fn certificate_sha256(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fingerprint as a person may write it (`AB:CD:…` as `openssl x509 -fingerprint -sha256`
/// prints it, or plain hex in either case), normalised to 64 lowercase hex digits; `None` when
/// it is not 32 bytes of hex.
pub fn certificate_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalise_from_openssl_and_hex() {
        let fp = certificate_sha256(b"not really a certificate");
        assert_eq!(fp.len(), 64);
        let openssl: Vec<String> = fp
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_uppercase())
            .collect();
        assert_eq!(
            certificate_fingerprint(&openssl.join(":")),
            Some(fp.clone())
        );
        assert_eq!(
            certificate_fingerprint(&format!(" {fp} ")),
            Some(fp.clone())
        );
        assert_eq!(certificate_fingerprint(&fp[..62]), None);
        assert_eq!(certificate_fingerprint(&format!("{}zz", &fp[..62])), None);
    }

    fn random() -> Vec<u8> {
        (0..48u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect()
    }

    #[test]
    fn a_new_key_parses_back_to_its_id() {
        let (id, text) = new_key(&random(), false);
        assert!(text.starts_with("bk_live_"));
        assert_eq!(id.len(), KEY_ID_LEN);
        let parsed = parse_key(&text).unwrap();
        assert_eq!(parsed.key_id, id);
        assert!(!parsed.test);
        let (_, test) = new_key(&random(), true);
        assert!(parse_key(&test).unwrap().test);
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let (_, text) = new_key(&random(), false);
        let mut bytes = text.into_bytes();
        let i = bytes.len() - CHECKSUM_LEN - 3;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        assert_eq!(parse_key(&changed), Err(KeyError::Checksum));
    }

    #[test]
    fn other_text_is_malformed() {
        for t in [
            "",
            "Bearer x",
            "bk_live_",
            "bk_live_short_abc",
            "sk_live_0123456789abcdef_0123",
        ] {
            assert_eq!(parse_key(t), Err(KeyError::Malformed), "{t}");
        }
    }

    #[test]
    fn hashes_compare_by_value() {
        assert!(hashes_equal(&secret_hash("a"), &secret_hash("a")));
        assert!(!hashes_equal(&secret_hash("a"), &secret_hash("b")));
        // lower-case hex of SHA-256, the form stored since the first key
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!hashes_equal("ab", "abc"));
    }
}
