//! Stopping work from outside: a campaign run paused, a client gone, the server stopping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag that says "stop". Cheap to clone (clones share the flag) and to check. A token made
/// with [`Cancel::child_of`] is also cancelled when its parent is, so one token of the
/// server (see [`crate::ScriptHost::stop`]) stops every run made under it.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    own: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// A token cancelled by [`Cancel::cancel`] on itself or on `parent`.
    pub fn child_of(parent: &Cancel) -> Cancel {
        Cancel {
            own: Arc::new(AtomicBool::new(false)),
            parent: Some(parent.own.clone()),
        }
    }

    pub fn cancel(&self) {
        self.own.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.own.load(Ordering::Relaxed)
            || self
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::Relaxed))
    }

    /// A guard that cancels this token when dropped: work handed to other threads stops when
    /// the future that waits for it is dropped (a client gone).
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// See [`Cancel::cancel_on_drop`].
#[derive(Debug)]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_follow_their_parent() {
        let parent = Cancel::new();
        let child = Cancel::child_of(&parent);
        let other = Cancel::child_of(&parent);
        child.cancel();
        assert!(child.is_cancelled() && !other.is_cancelled() && !parent.is_cancelled());
        parent.cancel();
        assert!(other.is_cancelled());
        let c = Cancel::new();
        drop(c.cancel_on_drop());
        assert!(c.is_cancelled());
    }
}
