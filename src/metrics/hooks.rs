//! The observers the store and the script host call, recording into the server's
//! [`Metrics`]. Every handle is registered once, up front, so the hot paths (a script call per
//! customer on every core) only add to atomics, and every series shows from the first scrape.

use std::sync::Arc;
use std::time::Duration;

use bakkal_script::{ErrorCategory, Failure, Limit, ScriptKind, ScriptObserver};
use bakkal_store::StoreObserver;
use metrics::{Counter, Histogram};

use super::{names, Metrics};

/// Pool and writer-turn waits.
pub struct StoreHooks {
    pool_wait: Histogram,
    pool_timeouts: Counter,
    turn_foreground: Histogram,
    turn_background: Histogram,
}

impl std::fmt::Debug for StoreHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHooks").finish_non_exhaustive()
    }
}

impl StoreHooks {
    /// `sqlite`: whether the writer-turn histograms exist (PostgreSQL has no writer turn).
    pub fn new(m: &Metrics, sqlite: bool) -> Arc<StoreHooks> {
        let turn = |writer| {
            if sqlite {
                m.histogram(names::WRITE_TURN_WAIT, &[("writer", writer)])
            } else {
                Histogram::noop()
            }
        };
        Arc::new(StoreHooks {
            pool_wait: m.histogram(names::POOL_WAIT, &[]),
            pool_timeouts: m.counter(names::POOL_TIMEOUTS, &[]),
            turn_foreground: turn("foreground"),
            turn_background: turn("background"),
        })
    }
}

impl StoreObserver for StoreHooks {
    fn pool_acquired(&self, wait: Duration, ok: bool) {
        self.pool_wait.record(wait.as_secs_f64());
        if !ok {
            self.pool_timeouts.increment(1);
        }
    }

    fn write_turn(&self, wait: Duration, background: bool) {
        let h = if background {
            &self.turn_background
        } else {
            &self.turn_foreground
        };
        h.record(wait.as_secs_f64());
    }
}

const KINDS: usize = ScriptKind::ALL.len();
const CATEGORIES: usize = ErrorCategory::ALL.len();
const LIMITS: usize = Limit::ALL.len();

/// Script calls, errors and limit hits, by kind.
pub struct ScriptHooks {
    calls: [Counter; KINDS],
    errors: [[Counter; CATEGORIES]; KINDS],
    limits: [[Counter; LIMITS]; KINDS],
}

impl std::fmt::Debug for ScriptHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptHooks").finish_non_exhaustive()
    }
}

/// `LIMIT` → `limit`: label values in lower case, like every other label value here.
fn category_label(c: ErrorCategory) -> &'static str {
    match c {
        ErrorCategory::Limit => "limit",
        ErrorCategory::Runtime => "runtime",
        ErrorCategory::WrongReturnType => "wrong_return_type",
        ErrorCategory::Input => "input",
        ErrorCategory::Cancelled => "cancelled",
        ErrorCategory::Internal => "internal",
    }
}

fn kind_label(k: ScriptKind) -> &'static str {
    match k {
        ScriptKind::Segment => "segment",
        ScriptKind::Offer => "offer",
        ScriptKind::Message => "message",
        ScriptKind::Routing => "routing",
    }
}

fn index<T: PartialEq>(all: &[T], x: &T) -> usize {
    all.iter().position(|a| a == x).unwrap_or(0)
}

impl ScriptHooks {
    pub fn new(m: &Metrics) -> Arc<ScriptHooks> {
        let calls =
            ScriptKind::ALL.map(|k| m.counter(names::SCRIPT_CALLS, &[("kind", kind_label(k))]));
        let errors = ScriptKind::ALL.map(|k| {
            ErrorCategory::ALL.map(|c| {
                m.counter(
                    names::SCRIPT_ERRORS,
                    &[("kind", kind_label(k)), ("category", category_label(c))],
                )
            })
        });
        let limits = ScriptKind::ALL.map(|k| {
            Limit::ALL.map(|l| {
                m.counter(
                    names::SCRIPT_LIMITS,
                    &[("kind", kind_label(k)), ("limit", l.as_str())],
                )
            })
        });
        Arc::new(ScriptHooks {
            calls,
            errors,
            limits,
        })
    }
}

impl ScriptObserver for ScriptHooks {
    fn call_finished(&self, kind: ScriptKind, failure: Option<Failure>) {
        let k = index(&ScriptKind::ALL, &kind);
        self.calls[k].increment(1);
        if let Some(f) = failure {
            self.errors[k][index(&ErrorCategory::ALL, &f.category)].increment(1);
            if let Some(l) = f.limit {
                self.limits[k][index(&Limit::ALL, &l)].increment(1);
            }
        }
    }
}
