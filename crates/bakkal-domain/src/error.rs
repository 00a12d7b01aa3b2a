//! Validation failures, collected per field so the transport can report every one at once.

use std::fmt;

/// One field that failed validation, named by its path in the request (`customer.email`).
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
            field: field.into(),
            description: description.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// Prefix every field path, e.g. `email` becomes `customer.email`.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        for v in &mut self.violations {
            v.field = if v.field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", v.field)
            };
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
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        write!(f, "{}", parts.join("; "))
    }
}

impl std::error::Error for ValidationError {}
