//! bakkal's domain: the customer file and the rules around it.
//!
//! Everything here is plain data and pure functions: validation, normalisation (emails, phone
//! numbers to E.164), resource names, list filters and the value keys derived from orders. No
//! I/O, no gRPC, no SQL: the store and the transport both lean on this crate, never the other way.

pub mod access;
pub mod audit;
pub mod business_hours;
pub mod customer;
pub mod error;
pub mod filter;
pub mod name;
pub mod normalise;
pub mod order;
pub mod personal_data;
pub mod sales;
pub mod ticket;
pub mod time;

pub use customer::*;
pub use error::{FieldViolation, ValidationError};
pub use order::*;
