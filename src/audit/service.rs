//! `bakkal.v1.AuditService`: list, watch and verify the audit trail. Personal data in
//! customer changes is masked for a reader without `customers.pii.read`.

use std::time::Duration;

use bakkal_domain::audit::{AuditAction, AuditEvent, AuditResult, PERSONAL_FIELDS};
use bakkal_domain::{normalise, ValidationError};
use bakkal_store::audit::AuditFilter;
use bakkal_store::Store;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::mask::{self, Pii};
use crate::convert::{micros, timestamp};
use crate::page_token;
use crate::proto;
use crate::proto::audit_service_server::AuditService;
use crate::status::{from_store, invalid, invalid_field};

/// How often a watch looks for new events when it has sent every one.
const WATCH_POLL: Duration = Duration::from_millis(200);
/// Events a watch reads at once (and at most holds unsent).
const WATCH_BATCH: usize = 100;
/// The longest filter value (a resource name, a method).
const MAX_FILTER: usize = 200;

pub struct AuditApi {
    store: Store,
    /// Turns true at shutdown: watches end.
    stop: watch::Receiver<bool>,
}

impl AuditApi {
    pub fn new(store: Store, stop: watch::Receiver<bool>) -> AuditApi {
        AuditApi { store, stop }
    }
}

fn action_to_proto(a: AuditAction) -> proto::AuditAction {
    match a {
        AuditAction::Create => proto::AuditAction::Create,
        AuditAction::Update => proto::AuditAction::Update,
        AuditAction::Delete => proto::AuditAction::Delete,
        AuditAction::Merge => proto::AuditAction::Merge,
        AuditAction::Record => proto::AuditAction::Record,
        AuditAction::Import => proto::AuditAction::Import,
        AuditAction::Export => proto::AuditAction::Export,
        AuditAction::Change => proto::AuditAction::Change,
        AuditAction::Call => proto::AuditAction::Call,
    }
}

fn result_to_proto(r: AuditResult) -> proto::AuditResult {
    match r {
        AuditResult::Ok => proto::AuditResult::Ok,
        AuditResult::Denied => proto::AuditResult::Denied,
        AuditResult::Failed => proto::AuditResult::Failed,
    }
}

/// A personal field's value as `pii` lets the reader see it (`mask.rs`'s rules).
fn shown(pii: Pii, field: &str, v: Option<String>) -> Option<String> {
    let v = v?;
    if pii == Pii::Show || !PERSONAL_FIELDS.contains(&field) || v == bakkal_domain::audit::ERASED {
        return Some(v);
    }
    Some(match field {
        "email" => mask::email(&v),
        "phone" => mask::phone(&v),
        _ => "***".to_string(),
    })
}

pub fn event_to_proto(e: &AuditEvent, pii: Pii) -> proto::AuditEvent {
    let ev = &e.event;
    proto::AuditEvent {
        seq: e.seq,
        time: Some(timestamp(ev.time)),
        principal: ev.actor.principal.clone(),
        key_id: ev.actor.key_id.clone().unwrap_or_default(),
        request_id: ev.actor.request_id.clone(),
        peer: ev.actor.peer.clone(),
        method: ev.actor.method.clone(),
        resource: ev.resource.clone(),
        action: action_to_proto(ev.action) as i32,
        result: result_to_proto(ev.result) as i32,
        code: ev.code.clone(),
        changes: ev
            .changes
            .iter()
            .map(|c| proto::FieldChange {
                field: c.field.clone(),
                before: shown(pii, &c.field, c.before.clone()),
                after: shown(pii, &c.field, c.after.clone()),
            })
            .collect(),
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
    }
}

fn filter_text(errs: &mut ValidationError, field: &str, v: &str) -> String {
    let v = v.trim();
    if v.chars().count() > MAX_FILTER {
        errs.add(field, format!("must be at most {MAX_FILTER} characters"));
    } else if let Err(why) = normalise::control_free(v) {
        errs.add(field, why);
    }
    v.to_string()
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<proto::ListAuditEventsResponse>, Status> {
        let pii = Pii::of(&request);
        let req = request.into_inner();
        let mut errs = ValidationError::new();
        let filter = AuditFilter {
            principal: filter_text(&mut errs, "principal", &req.principal),
            resource: filter_text(&mut errs, "resource", &req.resource),
            method: filter_text(&mut errs, "method", &req.method)
                .trim_start_matches('/')
                .to_string(),
            start_time: req
                .start_time
                .as_ref()
                .and_then(|t| micros(t, "start_time", &mut errs)),
            end_time: req
                .end_time
                .as_ref()
                .and_then(|t| micros(t, "end_time", &mut errs)),
        };
        if !errs.is_empty() {
            return Err(invalid(errs));
        }
        let size = page_token::page_size(req.page_size)?;
        let start = filter.start_time.map(|t| t.to_string()).unwrap_or_default();
        let end = filter.end_time.map(|t| t.to_string()).unwrap_or_default();
        let query = [
            "audit",
            filter.principal.as_str(),
            filter.resource.as_str(),
            filter.method.as_str(),
            start.as_str(),
            end.as_str(),
        ];
        let after = page_token::decode(&req.page_token, &query)?;
        let (events, next) = self
            .store
            .list_audit_events(&filter, size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListAuditEventsResponse {
            events: events.iter().map(|e| event_to_proto(e, pii)).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    type WatchAuditEventsStream = ReceiverStream<Result<proto::AuditEvent, Status>>;

    async fn watch_audit_events(
        &self,
        request: Request<proto::WatchAuditEventsRequest>,
    ) -> Result<Response<Self::WatchAuditEventsStream>, Status> {
        let pii = Pii::of(&request);
        let req = request.into_inner();
        if req.after_seq < 0 {
            return Err(invalid_field("after_seq", "must not be negative"));
        }
        // The channel holds one batch: a slow reader holds the watch back (backpressure).
        let (tx, rx) = mpsc::channel(WATCH_BATCH);
        let store = self.store.clone();
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let mut last = req.after_seq;
            loop {
                if *stop.borrow() {
                    return;
                }
                let events = match store.audit_events_after(last, WATCH_BATCH).await {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(from_store(e))).await;
                        return;
                    }
                };
                let caught_up = events.len() < WATCH_BATCH;
                for e in &events {
                    tokio::select! {
                        sent = tx.send(Ok(event_to_proto(e, pii))) => {
                            if sent.is_err() {
                                return; // the client went away
                            }
                        }
                        _ = stop.changed() => return,
                    }
                    last = e.seq;
                }
                if caught_up {
                    tokio::select! {
                        _ = tokio::time::sleep(WATCH_POLL) => {}
                        _ = tx.closed() => return,
                        _ = stop.changed() => return,
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn verify_audit_chain(
        &self,
        request: Request<proto::VerifyAuditChainRequest>,
    ) -> Result<Response<proto::VerifyAuditChainResponse>, Status> {
        let req = request.into_inner();
        if req.start_seq < 0 || req.end_seq < 0 {
            return Err(invalid_field("start_seq", "the range must not be negative"));
        }
        if req.end_seq > 0 && req.end_seq < req.start_seq {
            return Err(invalid_field("end_seq", "must not be before start_seq"));
        }
        let report = self
            .store
            .verify_audit_chain(
                req.start_seq.max(1),
                (req.end_seq > 0).then_some(req.end_seq),
            )
            .await
            .map_err(from_store)?;
        if let Some(seq) = report.first_broken {
            tracing::warn!(seq, "the audit chain is broken");
        }
        Ok(Response::new(proto::VerifyAuditChainResponse {
            checked: report.checked,
            first_broken_seq: report.first_broken.unwrap_or(0),
            last_seq: report.last_seq,
        }))
    }
}
