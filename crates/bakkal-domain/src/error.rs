//! Validation failures, collected per field so the transport can report every one at once.

use std::fmt;

/// How many characters of a caller's value a message quotes.
pub const QUOTE_CHARS: usize = 64;
/// The longest field path a violation keeps, in bytes.
pub const MAX_FIELD: usize = 128;
/// The longest description a violation keeps, in bytes.
pub const MAX_DESCRIPTION: usize = 256;
/// How many violations the one-line summary ([`ValidationError`]'s `Display`) lists.
pub const MAX_LISTED: usize = 10;

/// At most the first [`QUOTE_CHARS`] characters of caller text, with an ellipsis when cut: how
/// every message quotes a value, so that an error never echoes a huge value back (or into the
/// logs).
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `text` cut to at most `max` bytes (at a character boundary, the ellipsis included).
pub fn bounded(text: impl Into<String>, max: usize) -> String {
    let mut text = text.into();
    if text.len() <= max {
        return text;
    }
    const ELLIPSIS: &str = "…";
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(ELLIPSIS);
    text
}

/// One field that failed validation, named by its path in the request (`customer.email`).
/// Both parts are bounded ([`MAX_FIELD`], [`MAX_DESCRIPTION`]) however they were built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// Everything wrong with one input. Never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationError {
    pub violations: Vec<FieldViolation>,
}

impl ValidationError {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.add(field, description);
        e
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push(FieldViolation {
            field: bounded(field, MAX_FIELD),
            description: bounded(description, MAX_DESCRIPTION),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// Prefix every field path, e.g. `email` becomes `customer.email`.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        for v in &mut self.violations {
            let field = if v.field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", v.field)
            };
            v.field = bounded(field, MAX_FIELD);
        }
        self
    }

    pub fn merge(&mut self, other: ValidationError) {
        self.violations.extend(other.violations);
    }

    /// `Ok(())` when nothing was added, the error otherwise.
    pub fn into_result(self) -> Result<(), ValidationError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .violations
            .iter()
            .take(MAX_LISTED)
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        write!(f, "{}", parts.join("; "))?;
        match self.violations.len().saturating_sub(MAX_LISTED) {
            0 => Ok(()),
            more => write!(f, "; and {more} more"),
        }
    }
}

impl std::error::Error for ValidationError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_bounds_cut_at_characters() {
        assert_eq!(quote("short"), "short");
        let long = "ş".repeat(100);
        assert_eq!(quote(&long).chars().count(), QUOTE_CHARS + 1);
        assert_eq!(bounded("abc", 10), "abc");
        let b = bounded(long.clone(), 11);
        assert!(b.len() <= 11 && b.ends_with('…'), "{b}");
    }

    #[test]
    fn violations_and_summaries_are_bounded() {
        let mut e = ValidationError::new();
        for _ in 0..50 {
            e.add("x".repeat(1000), "y".repeat(100_000));
        }
        assert!(e.violations.iter().all(|v| v.field.len() <= MAX_FIELD));
        assert!(e
            .violations
            .iter()
            .all(|v| v.description.len() <= MAX_DESCRIPTION));
        let text = e.to_string();
        assert!(text.len() < MAX_LISTED * (MAX_FIELD + MAX_DESCRIPTION + 4) + 20);
        assert!(text.ends_with("and 40 more"), "{text}");
    }
}
