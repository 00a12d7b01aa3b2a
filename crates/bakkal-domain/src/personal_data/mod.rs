//! A person's own data: consent with its provenance (`consent.rs`), the append-only events
//! a customer's current consent is derived from.

pub mod consent;

pub use consent::{ConsentEvent, ConsentSource, NewConsentEvent, MAX_CONSENT_TEXT};
