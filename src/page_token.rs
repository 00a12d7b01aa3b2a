//! Opaque page tokens (AIP-158): the store's keyset cursor, bound to the query it came from so
//! a token cannot be replayed against a different filter or ordering.

use bakkal_store::Cursor;
use tonic::Status;

use crate::status::invalid_field;

/// Default and maximum `page_size`.
pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: i32 = 1000;

/// `page_size` 0 means the default; 1..=1000 as given; anything else is INVALID_ARGUMENT.
pub fn page_size(size: i32) -> Result<usize, Status> {
    match size {
        0 => Ok(DEFAULT_PAGE_SIZE),
        1..=MAX_PAGE_SIZE => Ok(size as usize),
        _ => Err(invalid_field(
            "page_size",
            format!(
                "must be between 1 and {MAX_PAGE_SIZE} (or 0 for {DEFAULT_PAGE_SIZE}), got {size}"
            ),
        )),
    }
}

fn fingerprint(query: &[&str]) -> u64 {
    // FNV-1a: stable across builds and processes, unlike the std hasher
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in query {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The `next_page_token` of a response: empty on the last page.
pub fn encode(next: Option<Cursor>, query: &[&str]) -> String {
    let Some(cursor) = next else {
        return String::new();
    };
    let raw = format!("{:016x}|{}", fingerprint(query), cursor.encode());
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Empty gives `None`; a token from another query or a mangled one is INVALID_ARGUMENT.
pub fn decode(token: &str, query: &[&str]) -> Result<Option<Cursor>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        invalid_field(
            "page_token",
            "is not a page token of this list; start again without one",
        )
    };
    if !token.len().is_multiple_of(2) || token.len() > 4096 {
        return Err(bad());
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let raw = bytes
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (hash, cursor) = raw.split_once('|').ok_or_else(bad)?;
    if hash != format!("{:016x}", fingerprint(query)) {
        return Err(bad());
    }
    Cursor::decode(cursor).map(Some).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_query() {
        let c = Cursor::Int(5, 7);
        let t = encode(Some(c.clone()), &["stage = ACTIVE", ""]);
        assert_eq!(encode(None, &[]), "");
        assert_eq!(decode(&t, &["stage = ACTIVE", ""]).unwrap(), Some(c));
        assert!(decode(&t, &["stage = PROSPECT", ""]).is_err());
        assert!(decode("zz", &[]).is_err());
        assert_eq!(decode("", &[]).unwrap(), None);
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(1000).unwrap(), 1000);
        assert!(page_size(1001).is_err());
        assert!(page_size(-1).is_err());
    }
}
