//! Segment evaluation: customers streamed from the store in keyset batches (the next batch is
//! read while the current one is evaluated), the compiled `SEGMENT` script run over each batch
//! on every core, off the async runtime. A script error for one customer (a panic inside the
//! interpreter included) is counted (the first few kept as examples) and that customer is not
//! a member; the run goes on. Every customer read is evaluated or counted as an error: a
//! worker thread that fails anyway fails the whole evaluation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bakkal_domain::filter::Clause;
use bakkal_domain::name::customer_name;
use bakkal_domain::time::Micros;
use bakkal_script::{Cancel, CompiledScript, ScriptCustomer, ScriptHost};
use bakkal_store::{BatchCustomer, PredicateClause, RecordScope, Segment, Store};

use crate::EngineError;

/// Customers per batch when the script reads only the customer record.
pub const BATCH: usize = 4096;
/// Customers per batch when their orders are loaded too.
pub const BATCH_WITH_ORDERS: usize = 1024;
/// Error examples kept per run.
pub const MAX_ERROR_EXAMPLES: usize = 5;
/// An evaluation gives up when this many customers in a row hit the script's limits (an
/// endless loop, a runaway recursion): the rule is broken, not the customers.
pub const MAX_LIMIT_ERRORS_IN_A_ROW: usize = 100;
/// An evaluation (a preview or a refresh on the interpreter path) stops after this long.
pub const EVALUATION_DEADLINE: Duration = Duration::from_secs(300);
/// The tier key of customers not scored yet.
pub const UNSCORED: &str = "UNSCORED";

/// Script functions and properties that read a customer's orders.
const ORDER_WORDS: &[&str] = &[
    "orders",
    "has_bought",
    "spent_in_days",
    "orders_in_days",
    "category_counts",
    "bought_skus",
];

/// Does the script read orders? (A word scan of the source: a false positive only costs a
/// query per batch.)
pub fn needs_orders(source: &str) -> bool {
    ORDER_WORDS.iter().any(|w| {
        source.match_indices(w).any(|(i, _)| {
            let before = source[..i].chars().next_back();
            let after = source[i + w.len()..].chars().next();
            let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !ident(before) && !ident(after)
        })
    })
}

/// A compiled SEGMENT script and how to run it.
#[derive(Debug, Clone)]
pub struct Rule {
    pub script: CompiledScript,
    /// Does it read orders (load them with each batch)?
    pub with_orders: bool,
    /// The rule as SQL, when it is a pure predicate (see [`crate::predicate`]).
    pub predicate: Option<Vec<PredicateClause>>,
}

impl Rule {
    pub fn new(script: CompiledScript, source: &str) -> Rule {
        Rule {
            script,
            with_orders: needs_orders(source),
            predicate: crate::predicate::translate(source),
        }
    }

    /// The same rule, always run by the interpreter.
    pub fn interpreted(mut self) -> Rule {
        self.predicate = None;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorExample {
    /// `customers/{id}`.
    pub customer: String,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub evaluated_count: i64,
    pub matched_count: i64,
    pub error_count: i64,
    pub error_examples: Vec<ErrorExample>,
    /// The first `sample_size` members by id.
    pub sample: Vec<i64>,
    /// Every member's id, ascending (only when asked for).
    pub matched_ids: Vec<i64>,
    /// Members per tier (`UNSCORED` for customers without a score).
    pub tier_counts: BTreeMap<String, i64>,
    pub duration: Duration,
    /// Run as SQL inside the database (a pure predicate), not by the interpreter.
    pub in_database: bool,
}

#[derive(Debug, Clone)]
pub struct RefreshOutcome {
    pub evaluation: Evaluation,
    pub entered_count: i64,
    pub exited_count: i64,
    pub segment: Segment,
}

/// What the script said of one customer.
enum Verdict {
    In(i64, Option<String>),
    Out,
    /// The error, and whether it was a limit (operations, time, depth, size).
    Failed(ErrorExample, bool),
}

/// Why an evaluation gave up before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaveUp {
    /// This many customers in a row hit the script's limits.
    KeepsFailing(usize),
    /// It ran past [`EVALUATION_DEADLINE`].
    Deadline(Duration),
}

/// How far an evaluation got when it gave up.
#[derive(Debug, Clone)]
pub struct Abandoned {
    pub why: GaveUp,
    pub evaluated_count: i64,
    pub error_count: i64,
    pub error_examples: Vec<ErrorExample>,
}

fn judge(host: &ScriptHost, script: &CompiledScript, b: BatchCustomer, now: Micros) -> Verdict {
    let id = b.customer.id;
    let customer = ScriptCustomer::new(b.customer, b.orders);
    match host.eval_segment(script, &customer, now).value {
        Ok(true) => Verdict::In(id, b.tier),
        Ok(false) => Verdict::Out,
        Err(e) => Verdict::Failed(
            ErrorExample {
                customer: customer_name(id),
                message: e.to_string(),
            },
            e.category == bakkal_script::ErrorCategory::Limit,
        ),
    }
}

/// Run `rule` over every live customer matching `clauses` that `scope` admits (a preview
/// sees the caller's customers; a refresh all of them): as SQL when it is a pure predicate,
/// by the interpreter otherwise.
#[allow(clippy::too_many_arguments)]
pub async fn evaluate(
    store: &Store,
    host: &Arc<ScriptHost>,
    rule: &Rule,
    clauses: &[Clause],
    sample_size: usize,
    collect_ids: bool,
    now: Micros,
    scope: &RecordScope,
) -> Result<Evaluation, EngineError> {
    let started = Instant::now();
    if let Some(predicate) = &rule.predicate {
        let mut out = Evaluation {
            in_database: true,
            ..Evaluation::default()
        };
        if collect_ids {
            let (evaluated, ids) = store
                .predicate_members(clauses, predicate, now, scope)
                .await?;
            out.evaluated_count = evaluated;
            out.matched_count = ids.len() as i64;
            out.sample = ids.iter().take(sample_size).copied().collect();
            out.matched_ids = ids;
        } else {
            let (evaluated, tiers, sample) = store
                .predicate_preview(clauses, predicate, sample_size, now, scope)
                .await?;
            out.evaluated_count = evaluated;
            out.sample = sample;
            for (tier, n) in tiers {
                out.matched_count += n;
                *out.tier_counts
                    .entry(tier.unwrap_or_else(|| UNSCORED.to_string()))
                    .or_default() += n;
            }
        }
        out.duration = started.elapsed();
        return Ok(out);
    }
    let with_orders = rule.with_orders;
    let script = &rule.script;
    let limit = if with_orders {
        BATCH_WITH_ORDERS
    } else {
        BATCH
    };
    // Reader: fetch the next batch while the current one is evaluated.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<BatchCustomer>, EngineError>>(1);
    let reader_store = store.clone();
    let reader_clauses = clauses.to_vec();
    let reader_scope = scope.clone();
    let reader = tokio::spawn(async move {
        let mut after = 0;
        loop {
            let batch = reader_store
                .customer_batch(
                    after,
                    limit,
                    &reader_clauses,
                    with_orders,
                    now,
                    &reader_scope,
                )
                .await;
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let done = batch.len() < limit;
            if let Some(last) = batch.last() {
                after = last.customer.id;
            }
            if !batch.is_empty() && tx.send(Ok(batch)).await.is_err() {
                return;
            }
            if done {
                return;
            }
        }
    });

    let threads = crate::threads();
    // Stops the batch being evaluated when the server stops or this future is dropped.
    let cancel = Cancel::child_of(host.stopping());
    let _cancel_when_dropped = cancel.cancel_on_drop();
    let mut out = Evaluation::default();
    // limit errors in a row (across the threads) and the latest of them
    let failing = Arc::new(AtomicUsize::new(0));
    let latest_failure = Arc::new(Mutex::new(None::<ErrorExample>));
    let deadline = started + EVALUATION_DEADLINE;
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        let host = host.clone();
        let script = script.clone();
        let in_batch = cancel.clone();
        let (failing_t, latest_t) = (failing.clone(), latest_failure.clone());
        let verdicts = tokio::task::spawn_blocking(move || {
            crate::parallel::each_on_all_cores(batch, threads, &in_batch, |b| {
                let v = judge(&host, &script, b, now);
                match &v {
                    Verdict::Failed(e, true) => {
                        if let Ok(mut l) = latest_t.lock() {
                            *l = Some(e.clone());
                        }
                        if failing_t.fetch_add(1, Ordering::Relaxed) + 1
                            >= MAX_LIMIT_ERRORS_IN_A_ROW
                        {
                            in_batch.cancel();
                        }
                    }
                    Verdict::Failed(_, false) => {}
                    _ => failing_t.store(0, Ordering::Relaxed),
                }
                if Instant::now() > deadline {
                    in_batch.cancel();
                }
                v
            })
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        let verdicts = match verdicts {
            Ok(v) => v,
            Err(EngineError::Cancelled) => {
                let in_a_row = failing.load(Ordering::Relaxed);
                let why = if in_a_row >= MAX_LIMIT_ERRORS_IN_A_ROW {
                    GaveUp::KeepsFailing(in_a_row)
                } else if Instant::now() > deadline {
                    GaveUp::Deadline(EVALUATION_DEADLINE)
                } else {
                    return Err(EngineError::Cancelled);
                };
                let mut examples = out.error_examples.clone();
                if let Some(e) = latest_failure.lock().ok().and_then(|l| l.clone()) {
                    if examples.len() < MAX_ERROR_EXAMPLES {
                        examples.push(e);
                    }
                }
                reader.abort();
                return Err(EngineError::Abandoned(Box::new(Abandoned {
                    why,
                    evaluated_count: out.evaluated_count,
                    error_count: out.error_count + in_a_row as i64,
                    error_examples: examples,
                })));
            }
            Err(e) => return Err(e),
        };
        for v in verdicts {
            out.evaluated_count += 1;
            match v {
                Verdict::In(id, tier) => {
                    out.matched_count += 1;
                    if out.sample.len() < sample_size {
                        out.sample.push(id);
                    }
                    if collect_ids {
                        out.matched_ids.push(id);
                    }
                    let key = tier.unwrap_or_else(|| UNSCORED.to_string());
                    *out.tier_counts.entry(key).or_default() += 1;
                }
                Verdict::Out => {}
                Verdict::Failed(e, _) => {
                    out.error_count += 1;
                    if out.error_examples.len() < MAX_ERROR_EXAMPLES {
                        out.error_examples.push(e);
                    }
                }
            }
        }
    }
    reader
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    out.duration = started.elapsed();
    Ok(out)
}

/// Evaluate a segment and materialise its members: who entered and who exited since the last
/// refresh are written, with their events, in one transaction.
pub async fn refresh(
    store: &Store,
    host: &Arc<ScriptHost>,
    segment_id: i64,
    rule: &Rule,
    clauses: &[Clause],
    now: Micros,
) -> Result<RefreshOutcome, EngineError> {
    let started = Instant::now();
    let mut evaluation =
        evaluate(store, host, rule, clauses, 0, true, now, &RecordScope::All).await?;
    let new = std::mem::take(&mut evaluation.matched_ids);
    let elapsed = started.elapsed();
    // the store diffs `new` against the members as they are inside its transaction
    let (segment, entered_count, exited_count) = store
        .apply_segment_refresh(
            segment_id,
            &new,
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
            now,
        )
        .await?;
    evaluation.duration = started.elapsed();
    Ok(RefreshOutcome {
        evaluation,
        entered_count,
        exited_count,
        segment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_words() {
        assert!(needs_orders("fn matches(c) { c.orders.len() > 2 }"));
        assert!(needs_orders("fn matches(c) { has_bought(c, \"tea\") }"));
        assert!(!needs_orders("fn matches(c) { c.order_count > 2 }"));
        assert!(!needs_orders("fn matches(c) { c.my_orders_x > 2 }"));
    }
}
