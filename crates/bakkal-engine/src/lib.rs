//! bakkal's evaluation engine: the value model and customer scores (the pyramid), and
//! segments chosen by `SEGMENT` scripts.
//!
//! * [`model`]: the value model (weighted value keys, tiers by percentile), checked.
//! * [`score::compute_scores`]: one pass over every live customer's numbers (compact arrays,
//!   never whole records), percentile-rank normalisation, weighted scores, tiers and RFM
//!   quintiles, written in batched transactions with a `tier_changed` event per change.
//! * [`segment::evaluate`] / [`segment::refresh`]: stream customers from the store in keyset
//!   batches (their orders only when the script reads orders), run the compiled script on all
//!   cores off the async runtime, count and sample script errors without aborting; refresh
//!   materialises the members and writes `segment_entered` / `segment_exited` events.
//! * [`predicate`]: a rule that is a pure predicate over value keys and fields is translated
//!   into SQL and run inside the database instead (same members, database speed).
//!
//! * [`campaign`]: campaign runs over a segment's members: holdout, consent, frequency cap,
//!   quiet hours, the MESSAGE script, and the outbox written batch by batch, exactly once.
//! * [`trigger`]: recurring occurrences and event campaigns (each new event of a kind decided
//!   like a run member, the event handed to the script).
//! * [`offer`]: real-time offers: merge several OFFER scripts' offers for one customer, drop
//!   what is not sellable or already bought, rank by score.
//!
//! This crate knows nothing of gRPC.

pub mod campaign;
pub mod model;
pub mod offer;
mod parallel;
pub mod predicate;
pub mod score;
pub mod segment;
pub mod trigger;

pub use model::{Tier, ValueModel};
pub use score::{compute_scores, ScoreOutcome};
pub use segment::{
    evaluate, needs_orders, refresh, ErrorExample, Evaluation, RefreshOutcome, Rule,
};

/// What can go wrong in a run.
#[derive(Debug)]
pub enum EngineError {
    Store(bakkal_store::StoreError),
    /// A worker thread failed (a bug; logged by the caller).
    Internal(String),
    /// Stopped before the end: the run was paused, the server is stopping or the caller left.
    Cancelled,
    /// An evaluation gave up early: its rule kept hitting the script's limits, or it ran past
    /// its deadline (see `segment::GaveUp`).
    Abandoned(Box<segment::Abandoned>),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Store(e) => write!(f, "{e}"),
            EngineError::Internal(m) => write!(f, "internal error: {m}"),
            EngineError::Cancelled => f.write_str("stopped before the end"),
            EngineError::Abandoned(a) => write!(
                f,
                "gave up after {} customers ({} errors): {:?}",
                a.evaluated_count, a.error_count, a.why
            ),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<bakkal_store::StoreError> for EngineError {
    fn from(e: bakkal_store::StoreError) -> Self {
        EngineError::Store(e)
    }
}

/// Worker threads for evaluation: one per core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
