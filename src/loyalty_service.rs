//! `bakkal.v1.LoyaltyService`: the loyalty program (a singleton with an etag), accounts and
//! their points ledger, redemptions and adjustments, and the expiry sweep on demand. Points
//! are earned by `bakkal_store`'s order path itself; see `crates/bakkal-store/src/loyalty.rs`.

use bakkal_domain::name::{customer_name, order_name, parse_customer};
use bakkal_domain::time::now_micros;
use bakkal_domain::ValidationError;
use bakkal_store::{
    LoyaltyAccount, LoyaltyProgram, LoyaltyTier, PointsTransaction, RecordScope, Rounding, Store,
    StoredProgram,
};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::convert::{opt_timestamp, timestamp};
use crate::page_token;
use crate::proto::loyalty_service_server::LoyaltyService;
use crate::proto::{self, PointsRounding, PointsTransactionKind};
use crate::status::{from_store, invalid, invalid_field};

pub const PROGRAM_NAME: &str = "loyaltyProgram";
const ACCOUNT_SUFFIX: &str = "/loyaltyAccount";
const UPDATABLE: [&str; 6] = [
    "points_per_unit",
    "category_multipliers",
    "rounding",
    "expiry_days",
    "tier_window_days",
    "tiers",
];
const MAX_TIERS: usize = 20;
const MAX_MULTIPLIERS: usize = 200;
const MAX_REASON: usize = 500;
const MAX_REQUEST_ID: usize = 128;
const MAX_POINTS: i64 = 1_000_000_000_000;

pub struct LoyaltyApi {
    store: Store,
}

impl LoyaltyApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// NOT_FOUND (as for a customer that does not exist) unless `scope` admits customer `id`.
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
}

/// `customers/{id}/loyaltyAccount` → the customer id.
fn account_ref(name: &str, field: &str) -> Result<i64, Status> {
    name.strip_suffix(ACCOUNT_SUFFIX)
        .and_then(parse_customer)
        .ok_or_else(|| {
            invalid_field(
                field,
                format!("'{name}' is not an account name like customers/123/loyaltyAccount"),
            )
        })
}

fn account_name(customer_id: i64) -> String {
    format!("{}{ACCOUNT_SUFFIX}", customer_name(customer_id))
}

fn kind_to_proto(kind: &str) -> PointsTransactionKind {
    match kind {
        "EARN" => PointsTransactionKind::Earn,
        "REDEEM" => PointsTransactionKind::Redeem,
        "EXPIRE" => PointsTransactionKind::Expire,
        "ADJUST" => PointsTransactionKind::Adjust,
        "REFUND" => PointsTransactionKind::Refund,
        _ => PointsTransactionKind::Unspecified,
    }
}

fn txn_to_proto(t: &PointsTransaction) -> proto::PointsTransaction {
    proto::PointsTransaction {
        name: format!("{}/transactions/{}", account_name(t.customer_id), t.id),
        kind: kind_to_proto(&t.kind) as i32,
        points: t.points,
        balance_after: t.balance_after,
        reason: t.reason.clone(),
        order: t
            .order_id
            .as_deref()
            .map(|o| order_name(t.customer_id, o))
            .unwrap_or_default(),
        expire_time: opt_timestamp(t.expire_time),
        create_time: Some(timestamp(t.create_time)),
    }
}

fn account_to_proto(a: &LoyaltyAccount) -> proto::LoyaltyAccount {
    proto::LoyaltyAccount {
        name: account_name(a.customer_id),
        balance: a.balance,
        lifetime_earned: a.lifetime_earned,
        tier: a.tier.clone(),
        tier_points: a.tier_points,
        next_tier: a.next_tier.clone().unwrap_or_default(),
        points_to_next_tier: a.points_to_next_tier,
        expiring_soon_points: a.expiring_soon,
        next_expire_time: opt_timestamp(a.next_expire_time),
        update_time: opt_timestamp(a.update_time),
    }
}

fn rounding_to_proto(r: Rounding) -> PointsRounding {
    match r {
        Rounding::Floor => PointsRounding::Floor,
        Rounding::Nearest => PointsRounding::Nearest,
        Rounding::Ceil => PointsRounding::Ceil,
    }
}

fn program_to_proto(p: &StoredProgram) -> proto::LoyaltyProgram {
    proto::LoyaltyProgram {
        name: PROGRAM_NAME.into(),
        points_per_unit: p.program.points_per_unit,
        category_multipliers: p
            .program
            .category_multipliers
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        rounding: rounding_to_proto(p.program.rounding) as i32,
        expiry_days: p.program.expiry_days as i32,
        tier_window_days: p.program.tier_window_days as i32,
        tiers: p
            .program
            .tiers
            .iter()
            .map(|t| proto::LoyaltyTier {
                name: t.name.clone(),
                threshold: t.threshold,
            })
            .collect(),
        update_time: (p.version > 0).then(|| timestamp(p.update_time)),
        etag: p.etag(),
    }
}

/// Apply the fields of `p` named by `paths` (all when empty) to `into`, checking them.
fn apply_program(
    p: &proto::LoyaltyProgram,
    paths: &[&str],
    into: &mut LoyaltyProgram,
) -> Result<(), ValidationError> {
    let mut errs = ValidationError::new();
    let wants = |f: &str| paths.is_empty() || paths.contains(&f);
    if wants("points_per_unit") {
        if !p.points_per_unit.is_finite() || p.points_per_unit < 0.0 || p.points_per_unit > 1e6 {
            errs.add("program.points_per_unit", "must be 0 to 1000000");
        }
        into.points_per_unit = p.points_per_unit;
    }
    if wants("category_multipliers") {
        if p.category_multipliers.len() > MAX_MULTIPLIERS {
            errs.add(
                "program.category_multipliers",
                format!("at most {MAX_MULTIPLIERS} categories"),
            );
        }
        into.category_multipliers.clear();
        for (k, v) in &p.category_multipliers {
            let key = k.trim().to_lowercase();
            if key.is_empty() || key.len() > 100 {
                errs.add(
                    "program.category_multipliers",
                    "categories must be 1 to 100 characters",
                );
            }
            if !v.is_finite() || *v < 0.0 || *v > 1000.0 {
                errs.add(
                    format!("program.category_multipliers[{k}]"),
                    "must be 0 to 1000",
                );
            }
            into.category_multipliers.insert(key, *v);
        }
    }
    if wants("rounding") {
        into.rounding = match PointsRounding::try_from(p.rounding) {
            Ok(PointsRounding::Unspecified | PointsRounding::Floor) => Rounding::Floor,
            Ok(PointsRounding::Nearest) => Rounding::Nearest,
            Ok(PointsRounding::Ceil) => Rounding::Ceil,
            Err(_) => {
                errs.add("program.rounding", "unknown rounding");
                Rounding::Floor
            }
        };
    }
    if wants("expiry_days") {
        if !(0..=36_500).contains(&p.expiry_days) {
            errs.add("program.expiry_days", "must be 0 (never) to 36500");
        }
        into.expiry_days = p.expiry_days.into();
    }
    if wants("tier_window_days") {
        if !(0..=36_500).contains(&p.tier_window_days) {
            errs.add("program.tier_window_days", "must be 0 (lifetime) to 36500");
        }
        into.tier_window_days = p.tier_window_days.into();
    }
    if wants("tiers") {
        if p.tiers.len() > MAX_TIERS {
            errs.add("program.tiers", format!("at most {MAX_TIERS} tiers"));
        }
        let mut tiers = Vec::new();
        for (i, t) in p.tiers.iter().enumerate() {
            let name = t.name.trim();
            if name.is_empty() || name.len() > 100 {
                errs.add(
                    format!("program.tiers[{i}].name"),
                    "must be 1 to 100 characters",
                );
            }
            if p.tiers[..i].iter().any(|o| o.name.trim() == name) {
                errs.add(format!("program.tiers[{i}].name"), "is used twice");
            }
            if t.threshold < 0 {
                errs.add(
                    format!("program.tiers[{i}].threshold"),
                    "must not be negative",
                );
            }
            if i > 0 && t.threshold <= p.tiers[i - 1].threshold {
                errs.add(
                    format!("program.tiers[{i}].threshold"),
                    "thresholds must ascend",
                );
            }
            tiers.push(LoyaltyTier {
                name: name.to_string(),
                threshold: t.threshold,
            });
        }
        into.tiers = tiers;
    }
    errs.into_result()
}

/// Checks shared by RedeemPoints and AdjustPoints.
fn check_change(reason: &str, request_id: &str, errs: &mut ValidationError) {
    if reason.trim().is_empty() {
        errs.add("reason", "is required");
    } else if reason.len() > MAX_REASON {
        errs.add("reason", format!("at most {MAX_REASON} characters"));
    }
    if request_id.len() > MAX_REQUEST_ID {
        errs.add("request_id", format!("at most {MAX_REQUEST_ID} characters"));
    }
}

impl LoyaltyApi {
    async fn change(
        &self,
        account: &str,
        kind: &str,
        points: i64,
        reason: &str,
        request_id: &str,
        scope: &RecordScope,
    ) -> Result<Response<proto::PointsTransaction>, Status> {
        let id = account_ref(account, "account")?;
        self.in_scope(id, scope).await?;
        let result = self
            .store
            .change_points(
                id,
                kind,
                points,
                reason.trim(),
                request_id.trim(),
                now_micros(),
            )
            .await
            .map_err(from_store)?;
        match result {
            Ok(t) => Ok(Response::new(txn_to_proto(&t))),
            Err(short) => {
                let mut details = ErrorDetails::new();
                details.add_precondition_failure_violation(
                    "INSUFFICIENT_POINTS",
                    account_name(id),
                    format!(
                        "the balance is {} points; {} requested",
                        short.balance, short.requested
                    ),
                );
                Err(Status::with_error_details(
                    Code::FailedPrecondition,
                    format!(
                        "not enough points: the balance is {}, {} requested",
                        short.balance, short.requested
                    ),
                    details,
                ))
            }
        }
    }
}

#[tonic::async_trait]
impl LoyaltyService for LoyaltyApi {
    async fn get_loyalty_program(
        &self,
        request: Request<proto::GetLoyaltyProgramRequest>,
    ) -> Result<Response<proto::LoyaltyProgram>, Status> {
        let name = request.into_inner().name;
        if !name.is_empty() && name != PROGRAM_NAME {
            return Err(invalid_field("name", format!("must be '{PROGRAM_NAME}'")));
        }
        let p = self.store.loyalty_program().await.map_err(from_store)?;
        Ok(Response::new(program_to_proto(&p)))
    }

    async fn update_loyalty_program(
        &self,
        request: Request<proto::UpdateLoyaltyProgramRequest>,
    ) -> Result<Response<proto::LoyaltyProgram>, Status> {
        let req = request.into_inner();
        let Some(p) = req.program else {
            return Err(invalid_field("program", "is required"));
        };
        if !p.name.is_empty() && p.name != PROGRAM_NAME {
            return Err(invalid_field(
                "program.name",
                format!("must be '{PROGRAM_NAME}'"),
            ));
        }
        let paths: Vec<&str> = req
            .update_mask
            .iter()
            .flat_map(|m| m.paths.iter().map(String::as_str))
            .collect();
        for path in &paths {
            if !UPDATABLE.contains(path) {
                return Err(invalid_field(
                    "update_mask",
                    format!(
                        "cannot update '{path}'; updatable paths: {}",
                        UPDATABLE.join(", ")
                    ),
                ));
            }
        }
        let current = self.store.loyalty_program().await.map_err(from_store)?;
        let expected = if p.etag.is_empty() {
            None
        } else if p.etag == current.etag() {
            Some(current.version)
        } else {
            return Err(Status::aborted(format!(
                "the loyalty program changed (etag {}); read it again",
                current.etag()
            )));
        };
        let mut program = current.program.clone();
        apply_program(&p, &paths, &mut program).map_err(invalid)?;
        // the store re-checks the version read here, so an update that slips in between the
        // read and the write is ABORTED (rather than silently overwritten)
        let stored = self
            .store
            .update_loyalty_program(
                program,
                Some(expected.unwrap_or(current.version)),
                now_micros(),
            )
            .await
            .map_err(from_store)?;
        Ok(Response::new(program_to_proto(&stored)))
    }

    async fn get_loyalty_account(
        &self,
        request: Request<proto::GetLoyaltyAccountRequest>,
    ) -> Result<Response<proto::LoyaltyAccount>, Status> {
        let scope = crate::auth::customer_scope(&request);
        let id = account_ref(&request.into_inner().name, "name")?;
        self.in_scope(id, &scope).await?;
        let a = self
            .store
            .loyalty_account(id, now_micros())
            .await
            .map_err(from_store)?;
        Ok(Response::new(account_to_proto(&a)))
    }

    async fn list_points_transactions(
        &self,
        request: Request<proto::ListPointsTransactionsRequest>,
    ) -> Result<Response<proto::ListPointsTransactionsResponse>, Status> {
        let scope = crate::auth::customer_scope(&request);
        let req = request.into_inner();
        let id = account_ref(&req.parent, "parent")?;
        self.in_scope(id, &scope).await?;
        let size = page_token::page_size(req.page_size)?;
        let query = ["points_transactions", req.parent.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        let (txns, next) = self
            .store
            .list_points_transactions(id, size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListPointsTransactionsResponse {
            transactions: txns.iter().map(txn_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn redeem_points(
        &self,
        request: Request<proto::RedeemPointsRequest>,
    ) -> Result<Response<proto::PointsTransaction>, Status> {
        let scope = crate::auth::customer_scope(&request);
        let req = request.into_inner();
        let mut errs = ValidationError::new();
        if req.points <= 0 || req.points > MAX_POINTS {
            errs.add("points", format!("must be 1 to {MAX_POINTS}"));
        }
        check_change(&req.reason, &req.request_id, &mut errs);
        account_ref(&req.account, "account")?;
        errs.into_result().map_err(invalid)?;
        self.change(
            &req.account,
            "REDEEM",
            req.points,
            &req.reason,
            &req.request_id,
            &scope,
        )
        .await
    }

    async fn adjust_points(
        &self,
        request: Request<proto::AdjustPointsRequest>,
    ) -> Result<Response<proto::PointsTransaction>, Status> {
        let scope = crate::auth::customer_scope(&request);
        let req = request.into_inner();
        let mut errs = ValidationError::new();
        if req.points == 0 || req.points.abs() > MAX_POINTS {
            errs.add(
                "points",
                format!("must be non-zero and at most {MAX_POINTS} either way"),
            );
        }
        check_change(&req.reason, &req.request_id, &mut errs);
        account_ref(&req.account, "account")?;
        errs.into_result().map_err(invalid)?;
        self.change(
            &req.account,
            "ADJUST",
            req.points,
            &req.reason,
            &req.request_id,
            &scope,
        )
        .await
    }

    async fn run_expiry_sweep(
        &self,
        _request: Request<proto::RunExpirySweepRequest>,
    ) -> Result<Response<proto::RunExpirySweepResponse>, Status> {
        let out = crate::loyalty_sweeper::sweep(&self.store, now_micros())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::RunExpirySweepResponse {
            expired_transactions: out.transactions,
            expired_points: out.points,
            accounts: out.accounts,
        }))
    }
}
