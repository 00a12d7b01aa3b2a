//! `bakkal.v1.ScriptService`: marketers' Rhai scripts over gRPC: stored and versioned in the
//! store, checked and dry-run by the script host.
//!
//! Every compilation and evaluation runs on tokio's blocking pool (at most [`max_runs`] at
//! once), never on a runtime worker: a script spinning until its deadline does not hold up
//! other calls.

use std::sync::Arc;

use bakkal_domain::filter::{self, FieldKind, Op, Value};
use bakkal_domain::time::now_micros;
use bakkal_domain::ValidationError;
use bakkal_script::{Catalog, CompiledScript, Diagnostic, Event, ScriptCustomer, ScriptHost};
use bakkal_script::{Outcome, ScriptKind, ScriptTicket};
use bakkal_store::{script_revision_name, NewScript, Script, ScriptChanges, Store};
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};

use crate::convert::{self, customer_ref, script_ref, timestamp};
use crate::page_token;
use crate::proto::script_service_server::ScriptService;
use crate::proto::{self, test_script_request::Subject};
use crate::status::{from_store, invalid, invalid_field, script_diagnostics, script_failure};

/// Longest script source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;
/// Longest display name, in characters.
const MAX_DISPLAY_NAME: usize = 200;
/// Products handed to an offer script when the request brings no catalogue.
const DEFAULT_CATALOG_SIZE: usize = 1000;
/// The kinds as `ListScripts` filters name them.
const KIND_WORDS: &[&str] = &[
    "SCRIPT_KIND_SEGMENT",
    "SCRIPT_KIND_OFFER",
    "SCRIPT_KIND_MESSAGE",
    "SCRIPT_KIND_ROUTING",
];

/// Scripts compiled or run at once: a few per core; further calls queue.
fn max_runs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

pub struct ScriptApi {
    store: Store,
    host: Arc<ScriptHost>,
    runs: Arc<Semaphore>,
}

impl ScriptApi {
    pub fn new(store: Store, host: Arc<ScriptHost>) -> Self {
        Self {
            store,
            host,
            runs: Arc::new(Semaphore::new(max_runs())),
        }
    }

    /// Run `f` with the host on the blocking pool.
    async fn off_runtime<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ScriptHost) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let _permit = self
            .runs
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the server is shutting down"))?;
        let host = self.host.clone();
        tokio::task::spawn_blocking(move || f(&host))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "script task failed");
                Status::internal("internal error; it has been logged")
            })
    }

    /// Compile `source` as `kind`; the problems are INVALID_ARGUMENT on `field`.
    async fn check_source(
        &self,
        kind: ScriptKind,
        source: &str,
        field: &str,
    ) -> Result<CompiledScript, Status> {
        let source = source.to_string();
        self.off_runtime(move |host| host.compile(kind, &source))
            .await?
            .map_err(|d| script_diagnostics(Code::InvalidArgument, field, &d))
    }
}

// ---- names and conversions -----------------------------------------------------------------

/// `scripts/{id}` or `scripts/{id}@{revision}`.
/// A script name without a revision.
fn script_only(name: &str, field: &str) -> Result<i64, Status> {
    match bakkal_domain::name::parse_script(name) {
        Some((id, None)) => Ok(id),
        _ => Err(invalid_field(
            field,
            format!("'{name}' is not a script name like scripts/12"),
        )),
    }
}

/// A script revision name.
fn revision_ref(name: &str, field: &str) -> Result<(i64, i64), Status> {
    match bakkal_domain::name::parse_script(name) {
        Some((id, Some(rev))) => Ok((id, rev)),
        _ => Err(invalid_field(
            field,
            format!("'{name}' is not a script revision name like scripts/12@3"),
        )),
    }
}

fn kind_from_proto(kind: i32, field: &str, errs: &mut ValidationError) -> Option<ScriptKind> {
    match proto::ScriptKind::try_from(kind) {
        Ok(proto::ScriptKind::Segment) => Some(ScriptKind::Segment),
        Ok(proto::ScriptKind::Offer) => Some(ScriptKind::Offer),
        Ok(proto::ScriptKind::Message) => Some(ScriptKind::Message),
        Ok(proto::ScriptKind::Routing) => Some(ScriptKind::Routing),
        Ok(proto::ScriptKind::Unspecified) => {
            errs.add(field, format!("is required: {}", KIND_WORDS.join(", ")));
            None
        }
        Err(_) => {
            errs.add(field, format!("unknown value {kind}"));
            None
        }
    }
}

fn kind_to_proto(kind: ScriptKind) -> proto::ScriptKind {
    match kind {
        ScriptKind::Segment => proto::ScriptKind::Segment,
        ScriptKind::Offer => proto::ScriptKind::Offer,
        ScriptKind::Message => proto::ScriptKind::Message,
        ScriptKind::Routing => proto::ScriptKind::Routing,
    }
}

/// The kind of a stored script; the store only ever holds what [`ScriptKind::as_str`] wrote.
fn stored_kind(s: &Script) -> Result<ScriptKind, Status> {
    ScriptKind::parse(&s.kind).ok_or_else(|| {
        tracing::error!(script = %s.name(), kind = %s.kind, "stored script of unknown kind");
        Status::internal("internal error; it has been logged")
    })
}

fn check_display_name(name: &str, field: &str, errs: &mut ValidationError) -> String {
    let name = name.trim();
    if name.is_empty() {
        errs.add(field, "is required");
    } else if name.chars().count() > MAX_DISPLAY_NAME {
        errs.add(
            field,
            format!("must be at most {MAX_DISPLAY_NAME} characters"),
        );
    }
    name.to_string()
}

fn check_source_size(source: &str, field: &str, errs: &mut ValidationError) {
    if source.len() > MAX_SOURCE_BYTES {
        errs.add(
            field,
            format!(
                "is {} bytes; at most {MAX_SOURCE_BYTES} are accepted",
                source.len()
            ),
        );
    }
}

fn script_to_proto(s: &Script) -> proto::Script {
    proto::Script {
        name: s.name(),
        display_name: s.display_name.clone(),
        kind: ScriptKind::parse(&s.kind).map_or(proto::ScriptKind::Unspecified, kind_to_proto)
            as i32,
        revision_id: s.revision.revision.to_string(),
        source: s.revision.source.clone(),
        create_time: Some(timestamp(s.create_time)),
        update_time: Some(timestamp(s.update_time)),
        revision_create_time: Some(timestamp(s.revision.create_time)),
        active_revision_id: s.active_revision.to_string(),
        etag: s.etag(),
    }
}

fn diagnostic_to_proto(d: &Diagnostic) -> proto::ScriptDiagnostic {
    proto::ScriptDiagnostic {
        line: i32::try_from(d.line).unwrap_or(i32::MAX),
        column: i32::try_from(d.column).unwrap_or(i32::MAX),
        message: d.message.clone(),
    }
}

fn parse_json(text: &str, field: &str) -> Result<serde_json::Value, Status> {
    serde_json::from_str(text).map_err(|e| invalid_field(field, format!("is not JSON: {e}")))
}

/// What `TestScript` runs: a stored revision or the caller's source.
struct Target {
    kind: ScriptKind,
    source: String,
    /// `scripts/{id}@{rev}` for a stored script: the cache key and the response's `revision`.
    revision: Option<String>,
}

// ---- the service ---------------------------------------------------------------------------

#[tonic::async_trait]
impl ScriptService for ScriptApi {
    async fn create_script(
        &self,
        request: Request<proto::CreateScriptRequest>,
    ) -> Result<Response<proto::Script>, Status> {
        let req = request.into_inner();
        let s = req
            .script
            .as_ref()
            .ok_or_else(|| invalid_field("script", "is required"))?;
        let mut errs = ValidationError::new();
        let display_name = check_display_name(&s.display_name, "script.display_name", &mut errs);
        let kind = kind_from_proto(s.kind, "script.kind", &mut errs);
        check_source_size(&s.source, "script.source", &mut errs);
        let request_id = req.request_id.trim();
        if request_id.len() > 128 {
            errs.add("request_id", "must be at most 128 characters");
        }
        errs.into_result().map_err(invalid)?;
        let kind = kind.expect("checked above");
        self.check_source(kind, &s.source, "script.source").await?;
        let created = self
            .store
            .create_script(
                NewScript {
                    display_name,
                    kind: kind.as_str().to_string(),
                    source: s.source.clone(),
                },
                Some(request_id).filter(|r| !r.is_empty()),
                now_micros(),
            )
            .await
            .map_err(from_store)?;
        tracing::info!(script = %created.name(), kind = %kind, "script created");
        Ok(Response::new(script_to_proto(&created)))
    }

    async fn get_script(
        &self,
        request: Request<proto::GetScriptRequest>,
    ) -> Result<Response<proto::Script>, Status> {
        let (id, revision) = script_ref(&request.get_ref().name, "name")?;
        let s = self
            .store
            .get_script(id, revision)
            .await
            .map_err(from_store)?;
        Ok(Response::new(script_to_proto(&s)))
    }

    async fn list_scripts(
        &self,
        request: Request<proto::ListScriptsRequest>,
    ) -> Result<Response<proto::ListScriptsResponse>, Status> {
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let clauses = filter::parse(&req.filter, &[("kind", FieldKind::Enum(KIND_WORDS))])
            .map_err(|e| invalid_field("filter", e))?;
        let kind = match clauses.as_slice() {
            [] => None,
            [c] if c.op == Op::Eq => match &c.value {
                Value::Text(t) => t
                    .strip_prefix("SCRIPT_KIND_")
                    .and_then(ScriptKind::parse)
                    .map(ScriptKind::as_str),
                Value::Number(_) => None,
            },
            _ => {
                return Err(invalid_field(
                    "filter",
                    "only `kind = SCRIPT_KIND_…` is supported",
                ))
            }
        };
        let query = [req.filter.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        let (items, next) = self
            .store
            .list_scripts(kind, size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListScriptsResponse {
            scripts: items.iter().map(script_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn update_script(
        &self,
        request: Request<proto::UpdateScriptRequest>,
    ) -> Result<Response<proto::Script>, Status> {
        let req = request.into_inner();
        let s = req
            .script
            .as_ref()
            .ok_or_else(|| invalid_field("script", "is required"))?;
        let id = script_only(&s.name, "script.name")?;
        let mut display = false;
        let mut source = false;
        let paths: Vec<&str> = req
            .update_mask
            .iter()
            .flat_map(|m| m.paths.iter().map(String::as_str))
            .collect();
        if paths.is_empty() {
            // AIP-134: no mask means the fields the request populates.
            display = !s.display_name.is_empty();
            source = !s.source.is_empty();
        }
        for p in paths {
            match p {
                "*" => (display, source) = (true, true),
                "display_name" => display = true,
                "source" => source = true,
                "kind" => {
                    return Err(invalid_field(
                        "update_mask",
                        "a script's kind cannot be changed; create a new script",
                    ))
                }
                p => {
                    return Err(invalid_field(
                        "update_mask",
                        format!("cannot update '{p}'; updatable paths: display_name, source"),
                    ))
                }
            }
        }
        let mut errs = ValidationError::new();
        let mut changes = ScriptChanges::default();
        if display {
            changes.display_name = Some(check_display_name(
                &s.display_name,
                "script.display_name",
                &mut errs,
            ));
        }
        if source {
            check_source_size(&s.source, "script.source", &mut errs);
        }
        errs.into_result().map_err(invalid)?;
        if source {
            let current = self.store.get_script(id, None).await.map_err(from_store)?;
            let kind = stored_kind(&current)?;
            if current.revision.source != s.source {
                self.check_source(kind, &s.source, "script.source").await?;
            }
            changes.source = Some(s.source.clone());
        }
        let updated = self
            .store
            .update_script(id, changes, Some(s.etag.as_str()), now_micros())
            .await
            .map_err(from_store)?;
        tracing::info!(
            script = %updated.name(),
            revision = updated.active_revision,
            "script updated"
        );
        Ok(Response::new(script_to_proto(&updated)))
    }

    async fn list_script_revisions(
        &self,
        request: Request<proto::ListScriptRevisionsRequest>,
    ) -> Result<Response<proto::ListScriptRevisionsResponse>, Status> {
        let req = request.into_inner();
        let id = script_only(&req.name, "name")?;
        let size = page_token::page_size(req.page_size)?;
        let query = [req.name.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        let (items, active, next) = self
            .store
            .list_script_revisions(id, size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListScriptRevisionsResponse {
            revisions: items
                .into_iter()
                .map(|r| proto::ScriptRevision {
                    name: script_revision_name(r.script_id, r.revision),
                    revision_id: r.revision.to_string(),
                    source: r.source,
                    create_time: Some(timestamp(r.create_time)),
                    active: r.revision == active,
                })
                .collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn activate_script_revision(
        &self,
        request: Request<proto::ActivateScriptRevisionRequest>,
    ) -> Result<Response<proto::Script>, Status> {
        let req = request.into_inner();
        let (id, revision) = revision_ref(&req.name, "name")?;
        let s = self
            .store
            .activate_script_revision(id, revision, Some(req.etag.as_str()), now_micros())
            .await
            .map_err(from_store)?;
        tracing::info!(script = %s.name(), revision, "script revision activated");
        Ok(Response::new(script_to_proto(&s)))
    }

    async fn validate_script(
        &self,
        request: Request<proto::ValidateScriptRequest>,
    ) -> Result<Response<proto::ValidateScriptResponse>, Status> {
        let req = request.into_inner();
        let mut errs = ValidationError::new();
        let kind = kind_from_proto(req.kind, "kind", &mut errs);
        check_source_size(&req.source, "source", &mut errs);
        errs.into_result().map_err(invalid)?;
        let kind = kind.expect("checked above");
        let source = req.source;
        let diagnostics = self
            .off_runtime(move |host| host.validate(kind, &source))
            .await?;
        Ok(Response::new(proto::ValidateScriptResponse {
            valid: diagnostics.is_empty(),
            diagnostics: diagnostics.iter().map(diagnostic_to_proto).collect(),
        }))
    }

    async fn test_script(
        &self,
        request: Request<proto::TestScriptRequest>,
    ) -> Result<Response<proto::TestScriptResponse>, Status> {
        let scope = crate::auth::customer_scope(&request);
        let pii = crate::auth::mask::Pii::of(&request);
        let req = request.into_inner();

        // Check the request before reading anything.
        let mut errs = ValidationError::new();
        let stored = !req.script.is_empty();
        let mut inline_kind = None;
        if stored {
            if req.kind != 0 || !req.source.is_empty() {
                errs.add(
                    "script",
                    "give a stored script, or kind and source, not both",
                );
            }
        } else {
            inline_kind = kind_from_proto(req.kind, "kind", &mut errs);
            check_source_size(&req.source, "source", &mut errs);
        }
        if req.subject.is_none() {
            errs.add("customer", "is required: give customer or customer_json");
        }
        let now = match &req.now {
            Some(t) => convert::micros(t, "now", &mut errs).unwrap_or_default(),
            None => now_micros(),
        };
        errs.into_result().map_err(invalid)?;

        let event = match req.event_json.trim() {
            "" => None,
            text => {
                let v = parse_json(text, "event_json")?;
                Event::from_json(&v).map_err(|e| invalid_field("event_json", e.message))?;
                Some(v)
            }
        };
        let customer = match &req.subject {
            Some(Subject::Customer(name)) => {
                let id = customer_ref(name, "customer").map_err(invalid)?;
                let c = self
                    .store
                    .get_customer(id, &scope)
                    .await
                    .map_err(from_store)?;
                let orders = self.store.all_orders(c.id).await.map_err(from_store)?;
                // the script sees what the caller may: its result and logs carry no more
                ScriptCustomer::new(pii.customer(c), orders)
            }
            Some(Subject::CustomerJson(text)) => {
                let v = parse_json(text, "customer_json")?;
                ScriptCustomer::from_json(&v, now)
                    .map_err(|e| invalid_field("customer_json", e.message))?
            }
            None => unreachable!("checked above"),
        };

        let target = if stored {
            let (id, revision) = script_ref(&req.script, "script")?;
            let s = self
                .store
                .get_script(id, revision)
                .await
                .map_err(from_store)?;
            Target {
                kind: stored_kind(&s)?,
                revision: Some(script_revision_name(s.id, s.revision.revision)),
                source: s.revision.source,
            }
        } else {
            Target {
                kind: inline_kind.expect("checked above"),
                source: req.source,
                revision: None,
            }
        };

        let catalog = match req.catalog_json.trim() {
            "" if target.kind == ScriptKind::Offer => {
                let (products, _) = self
                    .store
                    .list_products(None, DEFAULT_CATALOG_SIZE, None)
                    .await
                    .map_err(from_store)?;
                Catalog::new(products)
            }
            "" => Catalog::default(),
            text => {
                let v = parse_json(text, "catalog_json")?;
                Catalog::from_json(&v, now).map_err(|e| invalid_field("catalog_json", e.message))?
            }
        };

        let ticket = match req.ticket_json.trim() {
            "" if target.kind == ScriptKind::Routing => {
                return Err(invalid_field(
                    "ticket_json",
                    "is required for a routing script: the ticket it routes, as JSON",
                ))
            }
            "" => None,
            text => {
                let v = parse_json(text, "ticket_json")?;
                Some(
                    ScriptTicket::from_json(&v, now)
                        .map_err(|e| invalid_field("ticket_json", e.message))?,
                )
            }
        };

        let Target {
            kind,
            source,
            revision,
        } = target;
        let key = revision.clone();
        let (compiled, outcome) = self
            .off_runtime(move |host| {
                let compiled = match &key {
                    Some(key) => host.compile_cached(key, kind, &source),
                    None => host.compile(kind, &source),
                };
                match compiled {
                    Ok(script) => {
                        let out = match &ticket {
                            Some(t) if kind == ScriptKind::Routing => {
                                host.dry_run_route(&script, t, &customer, now)
                            }
                            _ => host.dry_run(&script, &customer, &catalog, event.as_ref(), now),
                        };
                        (Ok(()), Some(out))
                    }
                    Err(d) => (Err(d), None),
                }
            })
            .await?;
        if let Err(d) = compiled {
            return Err(match &revision {
                // A stored revision that no longer compiles (the host's API changed?).
                Some(name) => {
                    script_diagnostics(Code::FailedPrecondition, "script", &d).with_context(name)
                }
                None => script_diagnostics(Code::InvalidArgument, "source", &d),
            });
        }
        let Outcome {
            value,
            logs,
            operations,
            elapsed,
        } = outcome.expect("compiled scripts run");
        let source_field = if stored { "script" } else { "source" };
        let value = value.map_err(|e| {
            tracing::debug!(script = ?revision, error = %e, "dry run failed");
            let status = script_failure(&e, stored, source_field, "event_json");
            match &revision {
                Some(name) => status.with_context(name),
                None => status,
            }
        })?;
        Ok(Response::new(proto::TestScriptResponse {
            result_json: value.to_string(),
            logs,
            operations: i64::try_from(operations).unwrap_or(i64::MAX),
            elapsed: prost_types::Duration::try_from(elapsed).ok(),
            revision: revision.unwrap_or_default(),
        }))
    }
}

/// Say which revision a status is about.
trait WithContext {
    fn with_context(self, name: &str) -> Self;
}

impl WithContext for Status {
    fn with_context(self, name: &str) -> Self {
        let message = format!("{name}: {}", self.message());
        Status::with_details(self.code(), message, self.details().to_vec().into())
    }
}

#[cfg(test)]
mod tests {
    use bakkal_store::script_name;

    #[test]
    fn names() {
        assert_eq!(script_name(4), "scripts/4");
    }
}
