//! Loyalty points (filled in below).
