//! A batch's customers on every core: the one place the engine hands work to threads. Each
//! thread takes one slice of the batch, in order, and looks at the run's [`Cancel`] before
//! each customer, so a paused run or a stopping server waits for one script call per thread
//! at most. A thread that panics fails the batch loudly ([`EngineError::Internal`]): no slice
//! of customers is ever dropped without a word. (A panic inside a script call does not get
//! here: the script host turns it into that customer's error.)

use std::panic::{catch_unwind, AssertUnwindSafe};

use bakkal_script::Cancel;

use crate::EngineError;

/// `work` for each item on up to `threads` threads (the first slice on this one); the results
/// in the items' order. Blocks: call it off the async runtime.
pub(crate) fn each_on_all_cores<T: Send, U: Send>(
    items: Vec<T>,
    threads: usize,
    cancel: &Cancel,
    work: impl Fn(T) -> U + Sync,
) -> Result<Vec<U>, EngineError> {
    let len = items.len();
    let threads = threads.clamp(1, len.max(1));
    let per = len.div_ceil(threads).max(1);
    let mut slices = Vec::with_capacity(threads);
    let mut rest = items;
    while rest.len() > per {
        let tail = rest.split_off(per);
        slices.push(rest);
        rest = tail;
    }
    slices.push(rest);
    let run = |slice: Vec<T>| -> Option<Vec<U>> {
        let mut out = Vec::with_capacity(slice.len());
        for item in slice {
            if cancel.is_cancelled() {
                return None;
            }
            out.push(work(item));
        }
        Some(out)
    };
    let run = &run;
    let results = std::thread::scope(|s| {
        let mut slices = slices.into_iter();
        let first = slices.next().unwrap_or_default();
        let handles: Vec<_> = slices.map(|slice| s.spawn(move || run(slice))).collect();
        let mut results = vec![catch_unwind(AssertUnwindSafe(|| run(first)))];
        results.extend(handles.into_iter().map(|h| h.join()));
        results
    });
    let mut out = Vec::with_capacity(len);
    let mut cancelled = false;
    for r in results {
        match r {
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(EngineError::Internal(format!(
                    "a worker thread panicked: {what}"
                )));
            }
            Ok(None) => cancelled = true,
            Ok(Some(v)) => out.extend(v),
        }
    }
    if cancelled {
        return Err(EngineError::Cancelled);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_their_order() {
        let out = each_on_all_cores((0..1000).collect(), 4, &Cancel::new(), |i| i * 2).unwrap();
        assert_eq!(out, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        let none: Vec<i32> = each_on_all_cores(Vec::new(), 4, &Cancel::new(), |i: i32| i).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_panicking_thread_fails_the_batch() {
        for bad in [3, 900] {
            let r = each_on_all_cores((0..1000).collect(), 4, &Cancel::new(), |i| {
                if i == bad {
                    panic!("boom at {i}");
                }
                i
            });
            assert!(
                matches!(&r, Err(EngineError::Internal(m)) if m.contains("boom")),
                "{r:?}"
            );
        }
    }

    #[test]
    fn a_cancelled_batch_stops() {
        let cancel = Cancel::new();
        cancel.cancel();
        let r = each_on_all_cores((0..10).collect(), 2, &cancel, |i| i);
        assert!(matches!(r, Err(EngineError::Cancelled)), "{r:?}");
    }
}
