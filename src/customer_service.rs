//! `bakkal.v1.CustomerService`: the customer database over gRPC.

use bakkal_domain::filter::{self, FieldKind, Value};
use bakkal_domain::normalise;
use bakkal_domain::time::now_micros;
use bakkal_domain::{ValidationError, UPDATABLE_PATHS};
use bakkal_store::{
    CustomerQuery, ImportCustomerRow, ImportOrderRow, ImportOutcome, RecordScope, Store,
    StoreError, INTERACTION_FILTER_FIELDS,
};
use std::collections::{BTreeSet, HashMap};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::mask::Pii;
use crate::auth::{caller_of, customer_scope};
use crate::convert::{self, customer_ref};
use crate::page_token;
use crate::proto::customer_service_server::CustomerService;
use crate::proto::{self, import_customers_request::Row};
use crate::status::{from_store, invalid, invalid_field, quote};

/// Rows the import hands the store per transaction.
const IMPORT_BATCH: usize = 5000;
/// Rejected rows listed in an import's response (all are counted).
const MAX_REJECTED_LISTED: usize = 10_000;
/// The most bytes of reasons an import's response lists: with each reason bounded
/// (`Rejection::MAX_REASON`), the response stays near 1 MiB, under a default client's 4 MiB.
const MAX_REJECTED_BYTES: usize = 1024 * 1024;
/// Customers read per page while exporting.
const EXPORT_PAGE: usize = 500;

pub struct CustomerApi {
    store: Store,
    /// How far ahead of the server's clock a business time may be.
    future_tolerance: i64,
    /// The currency of an order that names none.
    default_currency: Option<String>,
}

impl CustomerApi {
    pub fn new(
        store: Store,
        future_tolerance: std::time::Duration,
        default_currency: Option<String>,
    ) -> Self {
        Self {
            store,
            future_tolerance: i64::try_from(future_tolerance.as_micros()).unwrap_or(i64::MAX),
            default_currency,
        }
    }

    /// NOT_FOUND (as for a customer that does not exist) unless `scope` admits customer `id`:
    /// what a write on one customer checks first.
    async fn in_scope(&self, id: i64, scope: &RecordScope) -> Result<(), Status> {
        if scope.is_all() {
            return Ok(());
        }
        self.store
            .get_customer(id, scope)
            .await
            .map(|_| ())
            .map_err(from_store)
    }

    /// INVALID_ARGUMENT naming `field` unless `owner` is empty or names a staff user.
    async fn check_owner(&self, owner: &str, field: &str) -> Result<(), Status> {
        let Some(id) = bakkal_domain::customer::owner_id(owner) else {
            return Ok(());
        };
        match self.store.get_user(id).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound(_)) => Err(invalid_field(
                field,
                format!("users/{id} is not a staff user"),
            )),
            Err(e) => Err(from_store(e)),
        }
    }

    fn order_rules(&self, now: i64) -> convert::OrderRules<'_> {
        convert::OrderRules {
            latest: now.saturating_add(self.future_tolerance),
            default_currency: self.default_currency.as_deref(),
        }
    }
}

fn required<'a, T>(v: &'a Option<T>, field: &str) -> Result<&'a T, Status> {
    v.as_ref()
        .ok_or_else(|| invalid_field(field, "is required"))
}

fn customer_id(name: &str, field: &str) -> Result<i64, Status> {
    customer_ref(name, field).map_err(invalid)
}

fn prefixed(prefix: &str) -> impl Fn(ValidationError) -> Status + '_ {
    move |e| invalid(e.prefixed(prefix))
}

/// The rows of the stream after the batch before, up to row `through`: rows of one kind for the
/// store and the rows rejected before they reach it. The batches cover the stream in order.
#[derive(Default)]
struct Batch {
    customers: Vec<ImportCustomerRow>,
    orders: Vec<ImportOrderRow>,
    rejected: Vec<bakkal_store::Rejection>,
    through: i64,
}

impl Batch {
    fn reject(&mut self, row: i64, reason: String) {
        self.rejected
            .push(bakkal_store::Rejection::new(row, reason));
    }

    fn len(&self) -> usize {
        self.customers.len() + self.orders.len() + self.rejected.len()
    }
}

/// What the committed batches of an import did: rows 1 to `through` are settled, every row
/// after it is not stored.
#[derive(Clone, Default)]
struct Progress {
    through: i64,
    outcome: ImportOutcome,
    /// All rejected rows; the first `MAX_REJECTED_LISTED` (and `MAX_REJECTED_BYTES` of
    /// reasons) are listed in `outcome`.
    rejected: i64,
    /// The bytes of the reasons listed.
    listed_bytes: usize,
}

impl Progress {
    fn absorb(
        &mut self,
        mut out: ImportOutcome,
        early: Vec<bakkal_store::Rejection>,
        through: i64,
    ) {
        out.rejected.extend(early);
        out.rejected.sort_by_key(|r| r.row);
        self.rejected += out.rejected.len() as i64;
        let room = MAX_REJECTED_LISTED.saturating_sub(self.outcome.rejected.len());
        out.rejected.truncate(room);
        let fit = out
            .rejected
            .iter()
            .take_while(|r| {
                self.listed_bytes += r.reason.len();
                self.listed_bytes <= MAX_REJECTED_BYTES
            })
            .count();
        out.rejected.truncate(fit);
        self.outcome.absorb(out);
        self.through = through;
    }

    fn response(self) -> proto::ImportCustomersResponse {
        proto::ImportCustomersResponse {
            created: self.outcome.created,
            updated: self.outcome.updated,
            rejected: self.rejected,
            orders_recorded: self.outcome.orders_recorded,
            rejected_rows: self
                .outcome
                .rejected
                .into_iter()
                .map(|r| proto::RejectedRow {
                    row: r.row,
                    reason: r.reason,
                })
                .collect(),
        }
    }

    /// `cause` for an import that ended early, saying what was stored before it: in the
    /// message and in an ErrorInfo (reason `IMPORT_INCOMPLETE`, domain `bakkal.v1`) whose
    /// metadata holds the counts and `through`, the last row settled (resend from the next).
    fn incomplete(&self, cause: Status) -> Status {
        let o = &self.outcome;
        let message = format!(
            "import stopped: {}; rows 1 to {} were settled ({} created, {} updated, {} orders, \
             {} rejected) and nothing after row {} was stored",
            cause.message(),
            self.through,
            o.created,
            o.updated,
            o.orders_recorded,
            self.rejected,
            self.through
        );
        let metadata = HashMap::from([
            ("through".to_string(), self.through.to_string()),
            ("created".to_string(), o.created.to_string()),
            ("updated".to_string(), o.updated.to_string()),
            ("orders_recorded".to_string(), o.orders_recorded.to_string()),
            ("rejected".to_string(), self.rejected.to_string()),
        ]);
        let details = ErrorDetails::with_error_info("IMPORT_INCOMPLETE", "bakkal.v1", metadata);
        Status::with_error_details(cause.code(), message, details)
    }
}

fn import_customer_row(
    row: i64,
    c: &proto::Customer,
    users: &BTreeSet<i64>,
) -> Result<ImportCustomerRow, String> {
    let fields = convert::customer_fields(c)
        .and_then(|f| f.normalised())
        .map_err(|e| e.to_string())?;
    if fields.organization_id.is_some() {
        return Err("organization: imports do not take it yet; set it with UpdateCustomer".into());
    }
    if let Some(id) = bakkal_domain::customer::owner_id(&fields.owner) {
        if !users.contains(&id) {
            return Err(format!("owner: users/{id} is not a staff user"));
        }
    }
    Ok(ImportCustomerRow { row, fields })
}

fn import_order_row(
    row: i64,
    o: &proto::ImportOrder,
    now: i64,
    rules: convert::OrderRules<'_>,
) -> Result<ImportOrderRow, String> {
    let email = normalise::email(&o.customer_email)
        .map_err(|why| format!("customer_email: '{}' {why}", quote(&o.customer_email)))?;
    let order = o
        .order
        .as_ref()
        .ok_or_else(|| "order: is required".to_string())
        .and_then(|p| {
            convert::order_from_proto(p, now, rules).map_err(|e| e.prefixed("order").to_string())
        })?;
    Ok(ImportOrderRow { row, email, order })
}

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    async fn create_customer(
        &self,
        request: Request<proto::CreateCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        let pii = Pii::of(&request);
        let caller = caller_of(&request);
        let req = request.into_inner();
        let c = required(&req.customer, "customer")?;
        let mut fields = convert::customer_fields(c)
            .and_then(|f| f.normalised())
            .map_err(prefixed("customer"))?;
        // a caller who sees only some customers owns the ones they create without an owner
        if fields.owner.is_empty()
            && !caller.scopes.customers.is_all()
            && caller.principal.kind == bakkal_domain::access::PrincipalKind::User
        {
            fields.owner = caller.principal.name();
        }
        self.check_owner(&fields.owner, "customer.owner").await?;
        let request_id = req.request_id.trim();
        if request_id.len() > 128 {
            return Err(invalid_field(
                "request_id",
                "must be at most 128 characters",
            ));
        }
        let now = now_micros();
        let created = self
            .store
            .create_customer(fields, Some(request_id).filter(|r| !r.is_empty()), now)
            .await
            .map_err(from_store)?;
        tracing::info!(customer = %created.name(), "customer created");
        Ok(Response::new(convert::customer_to_proto(
            &created, now, pii,
        )))
    }

    async fn get_customer(
        &self,
        request: Request<proto::GetCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        let pii = Pii::of(&request);
        let scope = customer_scope(&request);
        let id = customer_id(&request.get_ref().name, "name")?;
        let c = self
            .store
            .get_customer(id, &scope)
            .await
            .map_err(from_store)?;
        Ok(Response::new(convert::customer_to_proto(
            &c,
            now_micros(),
            pii,
        )))
    }

    async fn list_customers(
        &self,
        request: Request<proto::ListCustomersRequest>,
    ) -> Result<Response<proto::ListCustomersResponse>, Status> {
        let pii = Pii::of(&request);
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let now = now_micros();
        let mut q = CustomerQuery::parse(&req.filter, &req.order_by, now).map_err(invalid)?;
        q.page_size = page_token::page_size(req.page_size)?;
        let query = [req.filter.as_str(), req.order_by.as_str()];
        q.after = page_token::decode(&req.page_token, &query)?;
        let (customers, next, total) = self
            .store
            .list_customers(&q, true, &scope)
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListCustomersResponse {
            customers: customers
                .iter()
                .map(|c| convert::customer_to_proto(c, now, pii))
                .collect(),
            next_page_token: page_token::encode(next, &query),
            total_size: total,
        }))
    }

    async fn update_customer(
        &self,
        request: Request<proto::UpdateCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        let pii = Pii::of(&request);
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let c = required(&req.customer, "customer")?;
        let id = customer_id(&c.name, "customer.name")?;
        let mut paths: Vec<&str> = Vec::new();
        for p in req.update_mask.iter().flat_map(|m| m.paths.iter()) {
            match p.as_str() {
                "*" => paths.extend_from_slice(UPDATABLE_PATHS),
                p if UPDATABLE_PATHS.contains(&p) => paths.push(p),
                p => {
                    return Err(invalid_field(
                        "update_mask",
                        format!(
                            "cannot update '{p}'; updatable paths: {}",
                            UPDATABLE_PATHS.join(", ")
                        ),
                    ))
                }
            }
        }
        let input = convert::customer_fields(c).map_err(prefixed("customer"))?;
        self.in_scope(id, &scope).await?;
        if paths.is_empty() || paths.contains(&"owner") {
            let owner = bakkal_domain::customer::normalise_owner(&input.owner)
                .map_err(|why| invalid_field("customer.owner", why))?;
            self.check_owner(&owner, "customer.owner").await?;
        }
        let now = now_micros();
        let updated = self
            .store
            .update_customer(id, &input, &paths, Some(c.etag.as_str()), now)
            .await
            .map_err(from_store)?;
        Ok(Response::new(convert::customer_to_proto(
            &updated, now, pii,
        )))
    }

    async fn delete_customer(
        &self,
        request: Request<proto::DeleteCustomerRequest>,
    ) -> Result<Response<()>, Status> {
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let id = customer_id(&req.name, "name")?;
        self.in_scope(id, &scope).await?;
        self.store
            .delete_customer(id, Some(req.etag.as_str()), now_micros())
            .await
            .map_err(from_store)?;
        tracing::info!(customer = %req.name, "customer erased");
        Ok(Response::new(()))
    }

    async fn find_duplicates(
        &self,
        request: Request<proto::FindDuplicatesRequest>,
    ) -> Result<Response<proto::FindDuplicatesResponse>, Status> {
        let pii = Pii::of(&request);
        let scope = customer_scope(&request);
        let id = customer_id(&request.get_ref().name, "name")?;
        let now = now_micros();
        let found = self
            .store
            .find_duplicates(id, &scope)
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::FindDuplicatesResponse {
            candidates: found
                .into_iter()
                .map(|d| proto::DuplicateCandidate {
                    customer: Some(convert::customer_to_proto(&d.customer, now, pii)),
                    reasons: d.reasons,
                })
                .collect(),
        }))
    }

    async fn merge_customers(
        &self,
        request: Request<proto::MergeCustomersRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        let pii = Pii::of(&request);
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let primary = customer_ref(&req.primary, "primary");
        let duplicate = customer_ref(&req.duplicate, "duplicate");
        let (primary, duplicate) = match (primary, duplicate) {
            (Ok(p), Ok(d)) => (p, d),
            (p, d) => {
                let mut errs = ValidationError::new();
                errs.merge(p.err().unwrap_or_default());
                errs.merge(d.err().unwrap_or_default());
                return Err(invalid(errs));
            }
        };
        self.in_scope(primary, &scope).await?;
        self.in_scope(duplicate, &scope).await?;
        let now = now_micros();
        let merged = self
            .store
            .merge_customers(primary, duplicate, now)
            .await
            .map_err(from_store)?;
        tracing::info!(primary = %req.primary, duplicate = %req.duplicate, "customers merged");
        Ok(Response::new(convert::customer_to_proto(&merged, now, pii)))
    }

    async fn record_interaction(
        &self,
        request: Request<proto::RecordInteractionRequest>,
    ) -> Result<Response<proto::Interaction>, Status> {
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let id = customer_id(&req.parent, "parent")?;
        self.in_scope(id, &scope).await?;
        let i = required(&req.interaction, "interaction")?;
        let i = convert::interaction_from_proto(i, id, now_micros())
            .map_err(prefixed("interaction"))?;
        let stored = self.store.record_interaction(i).await.map_err(from_store)?;
        Ok(Response::new(convert::interaction_to_proto(&stored)))
    }

    async fn list_interactions(
        &self,
        request: Request<proto::ListInteractionsRequest>,
    ) -> Result<Response<proto::ListInteractionsResponse>, Status> {
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let id = customer_id(&req.parent, "parent")?;
        self.in_scope(id, &scope).await?;
        let size = page_token::page_size(req.page_size)?;
        let clauses = filter::parse(&req.filter, INTERACTION_FILTER_FIELDS)
            .map_err(|e| invalid_field("filter", e))?;
        let query = [req.parent.as_str(), req.filter.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        let (items, next) = self
            .store
            .list_interactions(id, &clauses, size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListInteractionsResponse {
            interactions: items.iter().map(convert::interaction_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn upsert_product(
        &self,
        request: Request<proto::UpsertProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        let req = request.into_inner();
        let p = required(&req.product, "product")?;
        let p = convert::product_from_proto(p, now_micros()).map_err(prefixed("product"))?;
        let stored = self.store.upsert_product(p).await.map_err(from_store)?;
        Ok(Response::new(convert::product_to_proto(&stored)))
    }

    async fn list_products(
        &self,
        request: Request<proto::ListProductsRequest>,
    ) -> Result<Response<proto::ListProductsResponse>, Status> {
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let clauses = filter::parse(&req.filter, &[("category", FieldKind::Text)])
            .map_err(|e| invalid_field("filter", e))?;
        let category = match clauses.as_slice() {
            [] => None,
            [c] if c.op == filter::Op::Eq => match &c.value {
                Value::Text(t) => Some(t.clone()),
                Value::Number(n) => Some(n.to_string()),
            },
            _ => {
                return Err(invalid_field(
                    "filter",
                    "only `category = \"…\"` is supported",
                ))
            }
        };
        let query = [req.filter.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        let (items, next) = self
            .store
            .list_products(category.as_deref(), size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListProductsResponse {
            products: items.iter().map(convert::product_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn record_order(
        &self,
        request: Request<proto::RecordOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let id = customer_id(&req.parent, "parent")?;
        self.in_scope(id, &scope).await?;
        let now = now_micros();
        let o = required(&req.order, "order")?;
        let o =
            convert::order_from_proto(o, now, self.order_rules(now)).map_err(prefixed("order"))?;
        let stored = self
            .store
            .record_order(id, o, now)
            .await
            .map_err(from_store)?;
        Ok(Response::new(convert::order_to_proto(&stored)))
    }

    async fn list_orders(
        &self,
        request: Request<proto::ListOrdersRequest>,
    ) -> Result<Response<proto::ListOrdersResponse>, Status> {
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let id = customer_id(&req.parent, "parent")?;
        self.in_scope(id, &scope).await?;
        let size = page_token::page_size(req.page_size)?;
        let query = [req.parent.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        let (items, next) = self
            .store
            .list_orders(id, size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListOrdersResponse {
            orders: items.iter().map(convert::order_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn import_customers(
        &self,
        request: Request<Streaming<proto::ImportCustomersRequest>>,
    ) -> Result<Response<proto::ImportCustomersResponse>, Status> {
        let mut stream = request.into_inner();
        // owners are checked against the staff as it is when the import starts
        let users = self.store.user_ids().await.map_err(from_store)?;
        // This task decodes and validates while a writer task stores the batches before, so
        // the import uses two cores and holds at most a few batches. When the writer falls
        // behind, the bounded channel stops this loop and the client waits on HTTP/2 flow
        // control (see `server::STREAM_WINDOW`).
        let (tx, mut rx) = mpsc::channel::<Batch>(2);
        // What the committed batches did: the writer's only report, read whatever ends it.
        let (progress_tx, progress) = watch::channel(Progress::default());
        let store = self.store.clone();
        // the writer's transactions are this call's (the audit trail attributes them to it)
        let writer = tokio::spawn(bakkal_store::audit::inherit(async move {
            let mut busy = std::time::Duration::ZERO;
            while let Some(batch) = rx.recv().await {
                let started = std::time::Instant::now();
                let now = now_micros();
                let out = if !batch.customers.is_empty() {
                    store.import_customers(batch.customers, now).await?
                } else if !batch.orders.is_empty() {
                    store.import_orders(batch.orders, now).await?
                } else {
                    ImportOutcome::default()
                };
                busy += started.elapsed();
                progress_tx.send_modify(|p| p.absorb(out, batch.rejected, batch.through));
            }
            tracing::debug!(
                store_busy_ms = busy.as_millis() as u64,
                "import writer done"
            );
            Ok::<_, bakkal_store::StoreError>(())
        }));

        let started = std::time::Instant::now();
        let mut row: i64 = 0;
        let mut pending = Batch::default();
        let mut stream_error = None;
        let now = now_micros();
        let rules = self.order_rules(now);
        // `Err` once the writer has stopped: then reading on would be for nothing.
        let mut writer_gone = false;
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            };
            row += 1;
            // A batch holds rows of one kind; the other kind starts the next one.
            let switch = match &msg.row {
                Some(Row::Customer(_)) => !pending.orders.is_empty(),
                Some(Row::Order(_)) => !pending.customers.is_empty(),
                None => false,
            };
            if switch && tx.send(std::mem::take(&mut pending)).await.is_err() {
                writer_gone = true;
                break;
            }
            match &msg.row {
                Some(Row::Customer(c)) => match import_customer_row(row, c, &users) {
                    Ok(r) => pending.customers.push(r),
                    Err(reason) => pending.reject(row, reason),
                },
                Some(Row::Order(o)) => match import_order_row(row, o, now, rules) {
                    Ok(r) => pending.orders.push(r),
                    Err(reason) => pending.reject(row, reason),
                },
                None => pending.reject(row, "empty row: set customer or order".into()),
            }
            pending.through = row;
            if pending.len() >= IMPORT_BATCH && tx.send(std::mem::take(&mut pending)).await.is_err()
            {
                writer_gone = true;
                break;
            }
        }
        if !writer_gone && pending.through > 0 {
            // the rows before a broken message are stored too; the error says so
            let _ = tx.send(pending).await;
        }
        drop(tx);
        let ended = writer.await;
        let done = progress.borrow().clone();
        tracing::info!(
            rows = row,
            through = done.through,
            created = done.outcome.created,
            updated = done.outcome.updated,
            orders = done.outcome.orders_recorded,
            rejected = done.rejected,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "import finished"
        );
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(done.incomplete(from_store(e))),
            Err(e) => {
                tracing::error!(error = %e, "import writer failed");
                return Err(done.incomplete(Status::internal("the import writer failed")));
            }
        }
        if let Some(e) = stream_error {
            let cause = crate::status::from_decode(&e).unwrap_or(e);
            return Err(done.incomplete(cause));
        }
        Ok(Response::new(done.response()))
    }

    type ExportCustomersStream = ReceiverStream<Result<proto::Customer, Status>>;

    async fn export_customers(
        &self,
        request: Request<proto::ExportCustomersRequest>,
    ) -> Result<Response<Self::ExportCustomersStream>, Status> {
        let pii = Pii::of(&request);
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let now = now_micros();
        let mut q = CustomerQuery::parse(&req.filter, "", now).map_err(invalid)?;
        q.page_size = EXPORT_PAGE;
        let (tx, rx) = mpsc::channel(EXPORT_PAGE * 2);
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                let (page, next, _) = match store.list_customers(&q, false, &scope).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(from_store(e))).await;
                        return;
                    }
                };
                for c in &page {
                    if tx
                        .send(Ok(convert::customer_to_proto(c, now, pii)))
                        .await
                        .is_err()
                    {
                        return; // the client went away
                    }
                }
                match next {
                    Some(n) => q.after = Some(n),
                    None => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
