//! Opportunities: created and changed in one transaction each with their history event (the
//! tracked fields after the change: stage, amount, probability, close date, forecast
//! category, owner), the stage's defaults applied, a lost reason required in a lost stage,
//! and a prospect's conversion marked when an opportunity of theirs is first won.
//!
//! Record scope: opportunities are read by their owner (`users/{id}`) through the caller's
//! customer scope, so a sales rep reaches the opportunities they own and a manager their
//! team's and reports'; a linked customer must be in that scope too.

use bakkal_domain::filter::{Clause, FieldKind, Op, Value};
use bakkal_domain::name::customer_name;
use bakkal_domain::sales::{
    opportunity_name, pipeline_name, stage_name, ForecastCategory, StageOutcome, Tracked,
};
use bakkal_domain::time::Micros;

use super::organizations::load_live_organization;
use super::*;
use crate::args::{bind, Arg, SqlBuilder};
use crate::customers::load_live;
use crate::lock::{lock_key, lock_row};
use crate::page::{after_id, split_page, Cursor};
use crate::{RecordScope, Store};

/// Fields `ListOpportunities` filters on.
pub const OPPORTUNITY_FILTER_FIELDS: &[(&str, FieldKind)] = &[
    ("pipeline", FieldKind::Text),
    ("stage", FieldKind::Text),
    ("owner", FieldKind::Text),
    ("customer", FieldKind::Text),
    ("organization", FieldKind::Text),
    (
        "forecast_category",
        FieldKind::Enum(&["PIPELINE", "BEST_CASE", "COMMIT", "CLOSED", "OMITTED"]),
    ),
    ("currency", FieldKind::Text),
    ("source", FieldKind::Text),
    ("amount", FieldKind::Number),
    ("probability", FieldKind::Number),
    ("tags", FieldKind::Repeated),
];

/// What an update changes; `None` keeps the field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpportunityChanges {
    pub display_name: Option<String>,
    pub customer_id: Option<Option<i64>>,
    pub organization_id: Option<Option<i64>>,
    pub stage_id: Option<i64>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub probability: Option<i64>,
    pub forecast_category: Option<ForecastCategory>,
    pub close_date: Option<String>,
    pub owner: Option<String>,
    pub source: Option<String>,
    pub next_step: Option<String>,
    pub lost_reason: Option<String>,
    pub tags: Option<Vec<String>>,
    pub attributes: Option<BTreeMap<String, String>>,
}

/// The stage `stage` of `pipeline`: INVALID_ARGUMENT on `opportunity.stage` for a stage of
/// another pipeline or none.
async fn stage_of(conn: &mut AnyConnection, pipeline: &Pipeline, stage: i64) -> Result<Stage> {
    if let Some(s) = pipeline.stage(stage) {
        return Ok(s.clone());
    }
    let other: Option<i64> =
        sqlx::query_scalar("SELECT pipeline_id FROM pipeline_stages WHERE id = $1")
            .bind(stage)
            .fetch_optional(&mut *conn)
            .await?;
    Err(match other {
        Some(p) => invalid(
            "opportunity.stage",
            format!(
                "{} is a stage of {}, not of {}",
                stage_name(p, stage),
                pipeline_name(p),
                pipeline_name(pipeline.id)
            ),
        ),
        None => invalid(
            "opportunity.stage",
            format!("{} does not exist", stage_name(pipeline.id, stage)),
        ),
    })
}

/// The live customer `id` is (following merges), in `scope`: INVALID_ARGUMENT on
/// `opportunity.customer` otherwise (out of scope reads as not existing).
async fn linked_customer(
    conn: &mut AnyConnection,
    id: i64,
    scope: &RecordScope,
) -> Result<bakkal_domain::Customer> {
    match load_live(conn, id).await {
        Ok(c) if scope.admits_owner(&c.fields.owner) => Ok(c),
        Ok(_) | Err(StoreError::NotFound(_)) => Err(invalid(
            "opportunity.customer",
            format!("{} does not exist", customer_name(id)),
        )),
        Err(e) => Err(e),
    }
}

async fn linked_organization(conn: &mut AnyConnection, id: i64) -> Result<i64> {
    match load_live_organization(conn, id).await {
        Ok(o) => Ok(o.id),
        Err(StoreError::NotFound(_)) => Err(invalid(
            "opportunity.organization",
            format!("{} does not exist", organization_name(id)),
        )),
        Err(e) => Err(e),
    }
}

/// The owner a write sets: a staff user within the caller's scope (or empty, for a caller
/// reaching every opportunity).
async fn check_new_owner(conn: &mut AnyConnection, owner: &str, scope: &RecordScope) -> Result<()> {
    check_owner(conn, owner, "opportunity.owner").await?;
    if !scope.admits_owner(owner) {
        return Err(invalid(
            "opportunity.owner",
            if owner.is_empty() {
                "is required: your record scope reaches only opportunities owned in it".to_string()
            } else {
                format!("{owner} is outside your record scope")
            },
        ));
    }
    Ok(())
}

fn require_lost_reason(stage: &Stage, lost_reason: &str) -> Result<()> {
    if stage.outcome == StageOutcome::Lost && lost_reason.trim().is_empty() {
        return Err(invalid(
            "opportunity.lost_reason",
            format!(
                "is required in the lost stage {} ({})",
                stage_name(stage.pipeline_id, stage.id),
                stage.display_name
            ),
        ));
    }
    Ok(())
}

/// Append the history event: `changed` and the tracked fields of `o` as they now are.
async fn append_event(
    conn: &mut AnyConnection,
    o: &Opportunity,
    changed: &[Tracked],
    now: Micros,
) -> Result<()> {
    let changed: Vec<&str> = changed.iter().map(|t| t.as_str()).collect();
    sqlx::query(
        "INSERT INTO opportunity_events (opportunity_id, pipeline_id, time, changed, stage_id, \
         amount, currency, probability, forecast_category, close_date, owner) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(o.id)
    .bind(o.pipeline_id)
    .bind(now)
    .bind(changed.join(","))
    .bind(o.stage_id)
    .bind(o.amount)
    .bind(o.currency.clone())
    .bind(o.probability)
    .bind(o.forecast_category.as_str())
    .bind(o.close_date.clone())
    .bind(o.owner.clone())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A won opportunity's prospect becomes a customer, as a first paid order makes them.
async fn mark_conversion(
    tx: &mut crate::WriteTx,
    customer: Option<i64>,
    now: Micros,
) -> Result<()> {
    let Some(c) = customer else {
        return Ok(());
    };
    let changed = sqlx::query(
        "UPDATE customers SET converted_time = $1, version = version + 1, update_time = $1 \
         WHERE id = $2 AND converted_time IS NULL",
    )
    .bind(now)
    .bind(c)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if changed > 0 {
        tx.audit(
            customer_name(c),
            bakkal_domain::audit::AuditAction::Change,
            Vec::new(),
        );
    }
    Ok(())
}

fn tracked_changes(before: &Opportunity, after: &Opportunity) -> Vec<Tracked> {
    let mut out = Vec::new();
    if before.stage_id != after.stage_id {
        out.push(Tracked::Stage);
    }
    if before.amount != after.amount || before.currency != after.currency {
        out.push(Tracked::Amount);
    }
    if before.probability != after.probability {
        out.push(Tracked::Probability);
    }
    if before.close_date != after.close_date {
        out.push(Tracked::CloseDate);
    }
    if before.forecast_category != after.forecast_category {
        out.push(Tracked::ForecastCategory);
    }
    if before.owner != after.owner {
        out.push(Tracked::Owner);
    }
    out
}

impl Store {
    /// Create an opportunity with its first history event; a known `request_id` returns the
    /// opportunity it created.
    pub async fn create_opportunity(
        &self,
        f: &OpportunityFields,
        request_id: Option<&str>,
        now: Micros,
        scope: &RecordScope,
    ) -> Result<Opportunity> {
        let mut tx = self.write_tx().await?;
        if let Some(rid) = request_id {
            lock_key(&mut tx, &format!("opportunity-request:{rid}")).await?;
            let known: Option<i64> =
                sqlx::query_scalar("SELECT id FROM opportunities WHERE request_id = $1")
                    .bind(rid.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(id) = known {
                let o = load_opportunity(&mut tx, id).await?;
                if !scope.admits_owner(&o.owner) {
                    return Err(StoreError::NotFound(opportunity_name(id)));
                }
                return Ok(o);
            }
        }
        let pipeline = match load_pipeline(&mut tx, f.pipeline_id).await {
            Ok(p) => p,
            Err(StoreError::NotFound(_)) => {
                return Err(invalid(
                    "opportunity.pipeline",
                    format!("{} does not exist", pipeline_name(f.pipeline_id)),
                ))
            }
            Err(e) => return Err(e),
        };
        let stage = stage_of(&mut tx, &pipeline, f.stage_id).await?;
        let customer_id = match f.customer_id {
            Some(c) => Some(linked_customer(&mut tx, c, scope).await?.id),
            None => None,
        };
        let organization_id = match f.organization_id {
            Some(o) => Some(linked_organization(&mut tx, o).await?),
            None => None,
        };
        check_new_owner(&mut tx, &f.owner, scope).await?;
        require_lost_reason(&stage, &f.lost_reason)?;
        super::competitors::check_lost_reason(&mut tx, &f.lost_reason).await?;
        let probability = f.probability.unwrap_or(stage.probability);
        let category = f.forecast_category.unwrap_or(stage.forecast_category);
        let close_time = stage.outcome.is_closed().then_some(now);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO opportunities (display_name, customer_id, organization_id, pipeline_id, \
             stage_id, amount, currency, probability, forecast_category, close_date, owner, \
             source, next_step, lost_reason, tags, attributes, close_time, request_id, version, \
             create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, $15, $16, $17, $18, 1, $19, $19) RETURNING id",
        )
        .bind(f.display_name.clone())
        .bind(customer_id)
        .bind(organization_id)
        .bind(pipeline.id)
        .bind(stage.id)
        .bind(f.amount)
        .bind(f.currency.clone())
        .bind(probability)
        .bind(category.as_str())
        .bind(f.close_date.clone())
        .bind(f.owner.clone())
        .bind(f.source.clone())
        .bind(f.next_step.clone())
        .bind(f.lost_reason.clone())
        .bind(encode_list(&f.tags))
        .bind(encode_attributes(&f.attributes))
        .bind(close_time)
        .bind(request_id.map(str::to_string))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let o = load_opportunity(&mut tx, id).await?;
        append_event(&mut tx, &o, &[Tracked::Created], now).await?;
        if stage.outcome == StageOutcome::Won {
            mark_conversion(&mut tx, customer_id, now).await?;
        }
        tx.audit_call(opportunity_name(id));
        tx.commit().await?;
        Ok(o)
    }

    /// Opportunity `id` if `scope` admits its owner (NOT_FOUND otherwise, as for none).
    pub async fn get_opportunity(&self, id: i64, scope: &RecordScope) -> Result<Opportunity> {
        let o = load_opportunity(&mut *self.acquire().await?, id).await?;
        if !scope.admits_owner(&o.owner) {
            return Err(StoreError::NotFound(opportunity_name(id)));
        }
        Ok(o)
    }

    /// Opportunities `scope` admits matching `clauses` (from [`OPPORTUNITY_FILTER_FIELDS`];
    /// `pipeline`, `stage`, `customer`, `organization` values are resource names), in
    /// creation order.
    pub async fn list_opportunities(
        &self,
        clauses: &[Clause],
        page_size: usize,
        after: Option<&Cursor>,
        scope: &RecordScope,
    ) -> Result<(Vec<Opportunity>, Option<Cursor>)> {
        let mut b = SqlBuilder::new(format!(
            "SELECT {OPPORTUNITY_COLUMNS} FROM opportunities WHERE id > "
        ));
        b.arg(Arg::Int(after_id(after)?));
        scope.push_customers(&mut b, "");
        push_opportunity_clauses(&mut b, clauses, "")?;
        b.push(" ORDER BY id LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let mut out = rows
            .iter()
            .map(opportunity_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        super::competitors::attach(&mut *self.acquire().await?, &mut out).await?;
        Ok(split_page(out, page_size, |o| Cursor::Int(o.id, o.id)))
    }

    /// Change opportunity `id`, with a history event when a tracked field changed. A new
    /// stage (of the same pipeline) brings its default probability and forecast category
    /// unless the same update sets them; a closed stage sets the close time, an open one
    /// clears it.
    pub async fn update_opportunity(
        &self,
        id: i64,
        c: &OpportunityChanges,
        etag: Option<&str>,
        now: Micros,
        scope: &RecordScope,
    ) -> Result<Opportunity> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "opportunities", id).await?;
        let before = load_opportunity(&mut tx, id).await?;
        if !scope.admits_owner(&before.owner) {
            return Err(StoreError::NotFound(opportunity_name(id)));
        }
        check_etag(etag, before.version, &opportunity_name(id))?;
        let pipeline = load_pipeline(&mut tx, before.pipeline_id).await?;
        let mut after = before.clone();
        if let Some(v) = &c.display_name {
            after.display_name = v.clone();
        }
        if let Some(v) = c.customer_id {
            after.customer_id = match v {
                Some(cid) => Some(linked_customer(&mut tx, cid, scope).await?.id),
                None => None,
            };
        }
        if let Some(v) = c.organization_id {
            after.organization_id = match v {
                Some(oid) => Some(linked_organization(&mut tx, oid).await?),
                None => None,
            };
        }
        let old_stage = pipeline.stage(before.stage_id).cloned();
        let stage = match c.stage_id {
            Some(s) => stage_of(&mut tx, &pipeline, s).await?,
            None => match old_stage.clone() {
                Some(s) => s,
                None => stage_of(&mut tx, &pipeline, before.stage_id).await?,
            },
        };
        if stage.id != before.stage_id {
            after.stage_id = stage.id;
            after.probability = stage.probability;
            after.forecast_category = stage.forecast_category;
            after.close_time = stage.outcome.is_closed().then_some(now);
        }
        if let Some(v) = c.amount {
            after.amount = v;
        }
        if let Some(v) = &c.currency {
            after.currency = v.clone();
        }
        if let Some(v) = c.probability {
            after.probability = v;
        }
        if let Some(v) = c.forecast_category {
            after.forecast_category = v;
        }
        if let Some(v) = &c.close_date {
            after.close_date = v.clone();
        }
        if let Some(v) = &c.owner {
            if *v != before.owner {
                check_new_owner(&mut tx, v, scope).await?;
            }
            after.owner = v.clone();
        }
        if let Some(v) = &c.source {
            after.source = v.clone();
        }
        if let Some(v) = &c.next_step {
            after.next_step = v.clone();
        }
        if let Some(v) = &c.lost_reason {
            after.lost_reason = v.clone();
        }
        if let Some(v) = &c.tags {
            after.tags = v.clone();
        }
        if let Some(v) = &c.attributes {
            after.attributes = v.clone();
        }
        require_lost_reason(&stage, &after.lost_reason)?;
        if c.lost_reason.is_some() {
            super::competitors::check_lost_reason(&mut tx, &after.lost_reason).await?;
        }
        sqlx::query(
            "UPDATE opportunities SET display_name = $1, customer_id = $2, organization_id = $3, \
             stage_id = $4, amount = $5, currency = $6, probability = $7, forecast_category = $8, \
             close_date = $9, owner = $10, source = $11, next_step = $12, lost_reason = $13, \
             tags = $14, attributes = $15, close_time = $16, version = version + 1, \
             update_time = $17 WHERE id = $18",
        )
        .bind(after.display_name.clone())
        .bind(after.customer_id)
        .bind(after.organization_id)
        .bind(after.stage_id)
        .bind(after.amount)
        .bind(after.currency.clone())
        .bind(after.probability)
        .bind(after.forecast_category.as_str())
        .bind(after.close_date.clone())
        .bind(after.owner.clone())
        .bind(after.source.clone())
        .bind(after.next_step.clone())
        .bind(after.lost_reason.clone())
        .bind(encode_list(&after.tags))
        .bind(encode_attributes(&after.attributes))
        .bind(after.close_time)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let o = load_opportunity(&mut tx, id).await?;
        let changed = tracked_changes(&before, &o);
        if !changed.is_empty() {
            append_event(&mut tx, &o, &changed, now).await?;
        }
        let was_won = old_stage.is_some_and(|s| s.outcome == StageOutcome::Won);
        if stage.outcome == StageOutcome::Won && !was_won {
            mark_conversion(&mut tx, o.customer_id, now).await?;
        }
        tx.audit_call(opportunity_name(id));
        tx.commit().await?;
        Ok(o)
    }

    /// Opportunity `id`'s history, oldest first (NOT_FOUND out of scope).
    pub async fn list_opportunity_history(
        &self,
        id: i64,
        page_size: usize,
        after: Option<&Cursor>,
        scope: &RecordScope,
    ) -> Result<(Vec<OpportunityEvent>, Option<Cursor>)> {
        let mut conn = self.acquire().await?;
        let o = load_opportunity(&mut conn, id).await?;
        if !scope.admits_owner(&o.owner) {
            return Err(StoreError::NotFound(opportunity_name(id)));
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM opportunity_events WHERE opportunity_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(id)
            .bind(after_id(after)?)
            .bind(page_size as i64 + 1)
            .fetch_all(&mut *conn)
            .await?;
        let out = rows
            .iter()
            .map(event_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(split_page(out, page_size, |e| Cursor::Int(e.id, e.id)))
    }
}

/// Append ` AND …` for each clause, over the columns of `table` (a prefix such as `e.`, or
/// empty). `stage`, `amount`, `currency`, `probability`, `forecast_category` and `owner` are
/// also columns of a history event, so the same clauses filter the pipeline at an instant.
pub(super) fn push_opportunity_clauses(
    b: &mut SqlBuilder,
    clauses: &[Clause],
    table: &str,
) -> Result<()> {
    for cl in clauses {
        let text = match &cl.value {
            Value::Text(t) => t.clone(),
            Value::Number(n) => n.to_string(),
        };
        if cl.field == "tags" {
            b.push(" AND ")
                .push(table)
                .push("tags LIKE ")
                .arg(Arg::Text(format!("%,{},%", text.replace(['%', '_'], ""))));
            continue;
        }
        let reference = |collection: &str| {
            bakkal_domain::name::parse_id(&text, collection).ok_or_else(|| {
                invalid(
                    "filter",
                    format!("'{text}' is not a {collection} name like {collection}/3"),
                )
            })
        };
        let (column, arg) = match cl.field.as_str() {
            "pipeline" => ("pipeline_id", Arg::Int(reference("pipelines")?)),
            "stage" => match bakkal_domain::sales::parse_stage(&text) {
                Some((_, s)) => ("stage_id", Arg::Int(s)),
                None => {
                    return Err(invalid(
                        "filter",
                        format!("'{text}' is not a stage name like pipelines/1/stages/2"),
                    ))
                }
            },
            "customer" => ("customer_id", Arg::Int(reference("customers")?)),
            "organization" => ("organization_id", Arg::Int(reference("organizations")?)),
            "owner" => ("owner", Arg::Text(text)),
            "forecast_category" => ("forecast_category", Arg::Text(text)),
            "currency" => ("currency", Arg::Text(text.to_ascii_uppercase())),
            "source" => ("source", Arg::Text(text)),
            "amount" | "probability" => {
                let Value::Number(n) = cl.value else {
                    return Err(invalid("filter", format!("{} takes a number", cl.field)));
                };
                (
                    if cl.field == "amount" {
                        "amount"
                    } else {
                        "probability"
                    },
                    Arg::Int(n as i64),
                )
            }
            other => return Err(invalid("filter", format!("cannot filter on '{other}'"))),
        };
        let op = match cl.op {
            Op::Has => " = ",
            o => match o.sql() {
                "=" => " = ",
                "<>" => " <> ",
                "<" => " < ",
                "<=" => " <= ",
                ">" => " > ",
                _ => " >= ",
            },
        };
        b.push(" AND ").push(table).push(column).push(op).arg(arg);
    }
    Ok(())
}
