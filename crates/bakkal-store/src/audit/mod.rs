//! The audit trail in the store: who is acting (a [`Call`] carried by a task-local the
//! transport sets around each request and background tasks set to their own name), the
//! events a write transaction collects and appends just before it commits (so a rolled-back
//! write leaves none), and reading, watching and verifying the hash chain.
//!
//! - `chain.rs`: appending after the chain head (one statement per event on PostgreSQL,
//!   under the chain's advisory lock; under the writer turn on SQLite).
//! - `read.rs`: listing with filters and keyset pages, the events after a seq (watch), and
//!   verifying a range of the chain.

mod chain;
mod read;
mod seal;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bakkal_domain::audit::{Actor, AuditAction, AuditResult, FieldChange, NewAuditEvent};

pub use read::{AuditFilter, ChainReport};

tokio::task_local! {
    static CALL: Arc<Call>;
}

/// The call (or background task) on whose behalf writes happen now.
#[derive(Debug)]
pub struct Call {
    actor: Mutex<Actor>,
    /// A write RPC: its first committed transaction records an event even when the write
    /// function named none (resource left empty), so every write RPC has one.
    write: bool,
    /// Events appended for this call so far.
    appended: AtomicUsize,
    /// The record a call that writes nothing acts on (an export of one person), for the
    /// event the transport writes after it.
    resource: Mutex<String>,
}

impl Call {
    pub fn new(actor: Actor, write: bool) -> Arc<Call> {
        Arc::new(Call {
            actor: Mutex::new(actor),
            write,
            appended: AtomicUsize::new(0),
            resource: Mutex::new(String::new()),
        })
    }

    /// A background task's call: `system:{task}`; only events its writes name are recorded.
    pub fn system(task: &str) -> Arc<Call> {
        Call::new(Actor::system(task), false)
    }

    pub fn actor(&self) -> Actor {
        self.actor.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// The principal, once authentication has resolved it.
    pub fn set_principal(&self, principal: String, key_id: Option<String>) {
        if let Ok(mut a) = self.actor.lock() {
            a.principal = principal;
            a.key_id = key_id;
        }
    }

    /// Name the record this call acts on, for the event written after it.
    pub fn set_resource(&self, resource: String) {
        if let Ok(mut r) = self.resource.lock() {
            *r = resource;
        }
    }

    pub fn resource(&self) -> String {
        self.resource.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn appended(&self) -> usize {
        self.appended.load(Ordering::SeqCst)
    }

    fn count(&self, n: usize) {
        self.appended.fetch_add(n, Ordering::SeqCst);
    }
}

/// Run `f` as `call`: the writes it makes are attributed to it.
pub async fn scope<F: Future>(call: Arc<Call>, f: F) -> F::Output {
    CALL.scope(call, f).await
}

/// The current call, if any.
pub fn current() -> Option<Arc<Call>> {
    CALL.try_with(Arc::clone).ok()
}

/// `f` as the current call, for a task spawned by a handler (a spawned task does not inherit
/// the task-local).
pub fn inherit<F: Future>(f: F) -> impl Future<Output = F::Output> {
    let call = current();
    async move {
        match call {
            Some(c) => CALL.scope(c, f).await,
            None => f.await,
        }
    }
}

/// An event a write transaction has collected, appended at commit.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub resource: String,
    pub action: AuditAction,
    pub changes: Vec<FieldChange>,
}

impl crate::WriteTx {
    /// Record that this transaction does `action` to `resource` (with the changed fields of a
    /// customer). Appended just before COMMIT, attributed to the current call.
    pub(crate) fn audit(
        &mut self,
        resource: impl Into<String>,
        action: AuditAction,
        changes: Vec<FieldChange>,
    ) {
        self.audit.push(Pending {
            resource: resource.into(),
            action,
            changes,
        });
    }

    /// Record that this transaction acts on `resource`, the action named by the current
    /// call's method (`CreateUser` → CREATE, `LaunchCampaign` → CHANGE; CHANGE for background
    /// work), without field changes.
    pub(crate) fn audit_call(&mut self, resource: impl Into<String>) {
        let action = current()
            .map(|c| AuditAction::of_method(&c.actor().method))
            .unwrap_or(AuditAction::Change);
        self.audit(resource, action, Vec::new());
    }

    /// Append the collected events (or, for a write RPC's first commit that named none, one
    /// for the call), in this transaction. Called by `commit`.
    pub(crate) async fn append_audit(
        &mut self,
        now: bakkal_domain::time::Micros,
    ) -> crate::Result<()> {
        let mut pending = std::mem::take(&mut self.audit);
        if !self.audit_on {
            return Ok(());
        }
        let call = current();
        if pending.is_empty() {
            match &call {
                Some(c) if c.write && c.appended() == 0 => {
                    let actor = c.actor();
                    pending.push(Pending {
                        resource: String::new(),
                        action: AuditAction::of_method(&actor.method),
                        changes: Vec::new(),
                    });
                }
                _ => return Ok(()),
            }
        }
        let actor = call
            .as_ref()
            .map(|c| c.actor())
            .unwrap_or_else(|| Actor::system("unattributed"));
        let n = pending.len();
        for mut p in pending {
            // a customer's personal values are sealed with a key of this event's own
            let key = bakkal_domain::name::parse_customer(&p.resource)
                .filter(|_| seal::has_personal(&p.changes))
                .map(|customer| (customer, seal::EventKey::new()));
            if let Some((_, k)) = &key {
                seal::seal(&mut p.changes, k);
            }
            let event = NewAuditEvent {
                time: now,
                actor: actor.clone(),
                resource: p.resource,
                action: p.action,
                result: AuditResult::Ok,
                code: "OK".into(),
                changes: p.changes,
            };
            let hint = self.appended.take().or_else(|| self.audit_head.get());
            let key = key.as_ref().map(|(c, k)| (*c, k));
            self.appended = chain::append(&mut self.tx, &event, key, hint).await?;
        }
        if let Some(c) = &call {
            c.count(n);
        }
        Ok(())
    }
}

/// The audit chain's head (seq, hash) as this process last committed it: on SQLite an append
/// tries the next seq after it without reading the head first (`chain::append`). Shared by a
/// store's clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Head(Arc<std::sync::Mutex<Option<(i64, String)>>>);

impl Head {
    pub(crate) fn get(&self) -> Option<(i64, String)> {
        self.0.lock().ok().and_then(|h| h.clone())
    }

    /// Remember `head` (a committed transaction's last append; `None` leaves it as it was).
    pub(crate) fn set(&self, head: Option<(i64, String)>) {
        if let (Some(h), Ok(mut held)) = (head, self.0.lock()) {
            *held = Some(h);
        }
    }
}

/// Forget the keys of customer `id`'s events (and of those merged into it): an erasure.
pub(crate) async fn forget_keys(conn: &mut sqlx::AnyConnection, id: i64) -> crate::Result<()> {
    sqlx::query(
        "DELETE FROM audit_keys WHERE customer_id = $1 \
         OR customer_id IN (SELECT id FROM customers WHERE merged_into = $1)",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl crate::Store {
    /// Record an event outside any write (a denied or failed call, an export, a write RPC
    /// that committed nothing), in a transaction of its own. Does not retire the read cache.
    pub async fn record_audit(&self, event: NewAuditEvent) -> crate::Result<()> {
        if !self.audit {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        let hint = tx.audit_head.get();
        tx.appended = chain::append(&mut tx.tx, &event, None, hint).await?;
        tx.commit_quietly().await?;
        if let Some(c) = current() {
            c.count(1);
        }
        Ok(())
    }
}
