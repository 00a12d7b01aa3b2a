//! Opportunities: create (idempotent with `request_id`), get, list, masked update with etags,
//! and their history. Every read and write goes through the caller's customer record scope,
//! applied to the opportunity's owner.

use bakkal_domain::access::PrincipalKind;
use bakkal_domain::ValidationError;
use bakkal_store::{OpportunityChanges, OpportunityFields, OPPORTUNITY_FILTER_FIELDS};
use tonic::{Request, Response};

use super::convert::*;
use super::{Answer, SalesApi};
use crate::auth::{caller_of, customer_scope};
use crate::page_token;
use crate::proto;
use crate::status::{from_store, invalid, invalid_field};

fn optional_ref(
    errs: &mut ValidationError,
    raw: &str,
    collection: &str,
    field: &str,
) -> Option<i64> {
    (!raw.trim().is_empty())
        .then(|| reference_into(errs, raw, collection, field))
        .flatten()
}

pub(super) async fn create(
    api: &SalesApi,
    r: Request<proto::CreateOpportunityRequest>,
) -> Answer<proto::Opportunity> {
    let scope = customer_scope(&r);
    let caller = caller_of(&r);
    let req = r.into_inner();
    let Some(o) = req.opportunity else {
        return Err(invalid_field("opportunity", "is required"));
    };
    let mut errs = ValidationError::new();
    let display_name = text(
        &mut errs,
        "opportunity.display_name",
        &o.display_name,
        true,
        MAX_TEXT,
    );
    let pipeline_id = if o.pipeline.trim().is_empty() {
        errs.add("opportunity.pipeline", "is required");
        None
    } else {
        reference_into(&mut errs, &o.pipeline, "pipelines", "opportunity.pipeline")
    };
    let stage_id = pipeline_id.map(|p| stage_ref(&mut errs, &o.stage, p));
    let customer_id = optional_ref(&mut errs, &o.customer, "customers", "opportunity.customer");
    let organization_id = optional_ref(
        &mut errs,
        &o.organization,
        "organizations",
        "opportunity.organization",
    );
    let amount = amount(&mut errs, o.amount_minor);
    let currency = currency_code(&mut errs, &o.currency_code);
    let probability = o.probability.map(|p| probability(&mut errs, p));
    let forecast_category = match o.forecast_category {
        0 => None,
        c => {
            let parsed = category_from_proto(c);
            if parsed.is_none() {
                errs.add(
                    "opportunity.forecast_category",
                    "is not a forecast category",
                );
            }
            parsed
        }
    };
    let close_date = close_date(&mut errs, &o.expected_close_date);
    let mut owner = owner(&mut errs, "opportunity.owner", &o.owner);
    if owner.is_empty() && caller.principal.kind == PrincipalKind::User {
        owner = caller.principal.name();
    }
    let source = source(&mut errs, &o.source);
    let next_step = text(
        &mut errs,
        "opportunity.next_step",
        &o.next_step,
        false,
        MAX_NOTE,
    );
    let lost_reason = text(
        &mut errs,
        "opportunity.lost_reason",
        &o.lost_reason,
        false,
        MAX_NOTE,
    );
    let tags = tags(&mut errs, "opportunity.tags", &o.tags);
    let attributes = attributes(&mut errs, "opportunity.attributes", &o.attributes);
    if req.request_id.len() > 200 {
        errs.add("request_id", "must be at most 200 characters");
    }
    errs.into_result().map_err(invalid)?;
    let f = OpportunityFields {
        display_name,
        customer_id,
        organization_id,
        pipeline_id: pipeline_id.unwrap_or_default(),
        stage_id: stage_id.unwrap_or_default(),
        amount,
        currency,
        probability,
        forecast_category,
        close_date,
        owner,
        source,
        next_step,
        lost_reason,
        tags,
        attributes,
    };
    let request_id = Some(req.request_id.as_str()).filter(|r| !r.is_empty());
    let created = api
        .store
        .create_opportunity(&f, request_id, api.clock.now(), &scope)
        .await
        .map_err(from_store)?;
    Ok(Response::new(opportunity_to_proto(&created)))
}

pub(super) async fn get(
    api: &SalesApi,
    r: Request<proto::GetOpportunityRequest>,
) -> Answer<proto::Opportunity> {
    let scope = customer_scope(&r);
    let id = reference(&r.get_ref().name, "opportunities", "name")?;
    let o = api
        .store
        .get_opportunity(id, &scope)
        .await
        .map_err(from_store)?;
    Ok(Response::new(opportunity_to_proto(&o)))
}

pub(super) async fn list(
    api: &SalesApi,
    r: Request<proto::ListOpportunitiesRequest>,
) -> Answer<proto::ListOpportunitiesResponse> {
    let scope = customer_scope(&r);
    let req = r.into_inner();
    let size = page_token::page_size(req.page_size)?;
    let clauses = bakkal_domain::filter::parse(&req.filter, OPPORTUNITY_FILTER_FIELDS)
        .map_err(|m| invalid_field("filter", m))?;
    let query = ["opportunities", req.filter.as_str()];
    let after = page_token::decode(&req.page_token, &query)?;
    let (list, next) = api
        .store
        .list_opportunities(&clauses, size, after.as_ref(), &scope)
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::ListOpportunitiesResponse {
        opportunities: list.iter().map(opportunity_to_proto).collect(),
        next_page_token: page_token::encode(next, &query),
    }))
}

pub(super) async fn update(
    api: &SalesApi,
    r: Request<proto::UpdateOpportunityRequest>,
) -> Answer<proto::Opportunity> {
    let scope = customer_scope(&r);
    let req = r.into_inner();
    let Some(o) = req.opportunity else {
        return Err(invalid_field("opportunity", "is required"));
    };
    let id = reference(&o.name, "opportunities", "opportunity.name")?;
    let paths = mask_paths(&req.update_mask);
    check_mask(&paths, OPPORTUNITY_UPDATABLE)?;
    if paths.is_empty() {
        return Err(invalid_field(
            "update_mask",
            format!(
                "is required: the paths to change, of {}",
                OPPORTUNITY_UPDATABLE.join(", ")
            ),
        ));
    }
    // the pipeline a stage must belong to is the opportunity's own
    let current = api
        .store
        .get_opportunity(id, &scope)
        .await
        .map_err(from_store)?;
    let mut errs = ValidationError::new();
    let mut c = OpportunityChanges::default();
    for p in &paths {
        match *p {
            "display_name" => {
                c.display_name = Some(text(
                    &mut errs,
                    "opportunity.display_name",
                    &o.display_name,
                    true,
                    MAX_TEXT,
                ))
            }
            "customer" => {
                c.customer_id = Some(optional_ref(
                    &mut errs,
                    &o.customer,
                    "customers",
                    "opportunity.customer",
                ))
            }
            "organization" => {
                c.organization_id = Some(optional_ref(
                    &mut errs,
                    &o.organization,
                    "organizations",
                    "opportunity.organization",
                ))
            }
            "stage" => c.stage_id = Some(stage_ref(&mut errs, &o.stage, current.pipeline_id)),
            "amount_minor" => c.amount = Some(amount(&mut errs, o.amount_minor)),
            "currency_code" => c.currency = Some(currency_code(&mut errs, &o.currency_code)),
            "probability" => match o.probability {
                Some(p) => c.probability = Some(probability(&mut errs, p)),
                None => errs.add("opportunity.probability", "is required when in the mask"),
            },
            "forecast_category" => match category_from_proto(o.forecast_category) {
                Some(cat) => c.forecast_category = Some(cat),
                None => errs.add(
                    "opportunity.forecast_category",
                    "must be PIPELINE, BEST_CASE, COMMIT, CLOSED or OMITTED",
                ),
            },
            "expected_close_date" => {
                c.close_date = Some(close_date(&mut errs, &o.expected_close_date))
            }
            "owner" => c.owner = Some(owner(&mut errs, "opportunity.owner", &o.owner)),
            "source" => c.source = Some(source(&mut errs, &o.source)),
            "next_step" => {
                c.next_step = Some(text(
                    &mut errs,
                    "opportunity.next_step",
                    &o.next_step,
                    false,
                    MAX_NOTE,
                ))
            }
            "lost_reason" => {
                c.lost_reason = Some(text(
                    &mut errs,
                    "opportunity.lost_reason",
                    &o.lost_reason,
                    false,
                    MAX_NOTE,
                ))
            }
            "tags" => c.tags = Some(tags(&mut errs, "opportunity.tags", &o.tags)),
            "attributes" => {
                c.attributes = Some(attributes(
                    &mut errs,
                    "opportunity.attributes",
                    &o.attributes,
                ))
            }
            _ => {}
        }
    }
    errs.into_result().map_err(invalid)?;
    let updated = api
        .store
        .update_opportunity(id, &c, Some(o.etag.as_str()), api.clock.now(), &scope)
        .await
        .map_err(from_store)?;
    Ok(Response::new(opportunity_to_proto(&updated)))
}

pub(super) async fn history(
    api: &SalesApi,
    r: Request<proto::ListOpportunityHistoryRequest>,
) -> Answer<proto::ListOpportunityHistoryResponse> {
    let scope = customer_scope(&r);
    let req = r.into_inner();
    let id = reference(&req.name, "opportunities", "name")?;
    let size = page_token::page_size(req.page_size)?;
    let query = ["opportunityHistory", req.name.as_str()];
    let after = page_token::decode(&req.page_token, &query)?;
    let o = api
        .store
        .get_opportunity(id, &scope)
        .await
        .map_err(from_store)?;
    let (events, next) = api
        .store
        .list_opportunity_history(id, size, after.as_ref(), &scope)
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::ListOpportunityHistoryResponse {
        events: events
            .iter()
            .map(|e| event_to_proto(o.pipeline_id, e))
            .collect(),
        next_page_token: page_token::encode(next, &query),
    }))
}
