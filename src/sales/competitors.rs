//! Competitors, lost reasons, an opportunity's competitors and the win/loss report.

use bakkal_domain::time::MICROS_PER_DAY;
use bakkal_domain::ValidationError;
use bakkal_store::{CompetitorFields, OpportunityCompetitor, WinLossGroupBy};
use tonic::{Request, Response};

use super::convert::*;
use super::{Answer, SalesApi};
use crate::auth::customer_scope;
use crate::convert::{micros, timestamp};
use crate::page_token;
use crate::proto;
use crate::status::{from_store, invalid, invalid_field};

const COMPETITOR_UPDATABLE: &[&str] = &["display_name", "website", "notes"];

fn check_competitor(
    c: &proto::Competitor,
    paths: &[&str],
    into: &mut CompetitorFields,
    errs: &mut ValidationError,
) {
    let has = |x: &str| paths.is_empty() || paths.contains(&x);
    if has("display_name") {
        into.display_name = text(
            errs,
            "competitor.display_name",
            &c.display_name,
            true,
            MAX_TEXT,
        );
    }
    if has("website") {
        into.website = text(errs, "competitor.website", &c.website, false, MAX_TEXT);
    }
    if has("notes") {
        into.notes = text(errs, "competitor.notes", &c.notes, false, MAX_NOTE);
    }
}

pub(super) async fn create(
    api: &SalesApi,
    r: Request<proto::CreateCompetitorRequest>,
) -> Answer<proto::Competitor> {
    let Some(c) = r.into_inner().competitor else {
        return Err(invalid_field("competitor", "is required"));
    };
    let mut errs = ValidationError::new();
    let mut f = CompetitorFields::default();
    check_competitor(&c, &[], &mut f, &mut errs);
    errs.into_result().map_err(invalid)?;
    let created = api
        .store
        .create_competitor(&f, api.clock.now())
        .await
        .map_err(from_store)?;
    Ok(Response::new(competitor_to_proto(&created)))
}

pub(super) async fn get(
    api: &SalesApi,
    r: Request<proto::GetCompetitorRequest>,
) -> Answer<proto::Competitor> {
    let id = reference(&r.get_ref().name, "competitors", "name")?;
    let c = api.store.get_competitor(id).await.map_err(from_store)?;
    Ok(Response::new(competitor_to_proto(&c)))
}

pub(super) async fn list(
    api: &SalesApi,
    r: Request<proto::ListCompetitorsRequest>,
) -> Answer<proto::ListCompetitorsResponse> {
    let req = r.into_inner();
    let size = page_token::page_size(req.page_size)?;
    let query = ["competitors"];
    let after = page_token::decode(&req.page_token, &query)?;
    let (list, next) = api
        .store
        .list_competitors(size, after.as_ref())
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::ListCompetitorsResponse {
        competitors: list.iter().map(competitor_to_proto).collect(),
        next_page_token: page_token::encode(next, &query),
    }))
}

pub(super) async fn update(
    api: &SalesApi,
    r: Request<proto::UpdateCompetitorRequest>,
) -> Answer<proto::Competitor> {
    let req = r.into_inner();
    let Some(c) = req.competitor else {
        return Err(invalid_field("competitor", "is required"));
    };
    let id = reference(&c.name, "competitors", "competitor.name")?;
    let mut paths = mask_paths(&req.update_mask);
    check_mask(&paths, COMPETITOR_UPDATABLE)?;
    if paths.is_empty() {
        paths = COMPETITOR_UPDATABLE.to_vec();
    }
    let current = api.store.get_competitor(id).await.map_err(from_store)?;
    let mut f = current.fields.clone();
    let mut errs = ValidationError::new();
    check_competitor(&c, &paths, &mut f, &mut errs);
    errs.into_result().map_err(invalid)?;
    let etag = if c.etag.is_empty() {
        etag(current.version)
    } else {
        c.etag.clone()
    };
    let updated = api
        .store
        .update_competitor(id, &f, Some(etag.as_str()), api.clock.now())
        .await
        .map_err(from_store)?;
    Ok(Response::new(competitor_to_proto(&updated)))
}

pub(super) async fn create_lost_reason(
    api: &SalesApi,
    r: Request<proto::CreateLostReasonRequest>,
) -> Answer<proto::LostReason> {
    let Some(l) = r.into_inner().lost_reason else {
        return Err(invalid_field("lost_reason", "is required"));
    };
    let mut errs = ValidationError::new();
    let name = text(
        &mut errs,
        "lost_reason.display_name",
        &l.display_name,
        true,
        MAX_TEXT,
    );
    errs.into_result().map_err(invalid)?;
    let created = api
        .store
        .create_lost_reason(&name, api.clock.now())
        .await
        .map_err(from_store)?;
    Ok(Response::new(lost_reason_to_proto(&created)))
}

pub(super) async fn list_lost_reasons(
    api: &SalesApi,
    r: Request<proto::ListLostReasonsRequest>,
) -> Answer<proto::ListLostReasonsResponse> {
    let req = r.into_inner();
    let size = page_token::page_size(req.page_size)?;
    let query = ["lostReasons"];
    let after = page_token::decode(&req.page_token, &query)?;
    let (list, next) = api
        .store
        .list_lost_reasons(size, after.as_ref())
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::ListLostReasonsResponse {
        lost_reasons: list.iter().map(lost_reason_to_proto).collect(),
        next_page_token: page_token::encode(next, &query),
    }))
}

/// The most competitors one opportunity lists.
const MAX_COMPETITORS: usize = 20;

pub(super) async fn set_opportunity_competitors(
    api: &SalesApi,
    r: Request<proto::SetOpportunityCompetitorsRequest>,
) -> Answer<proto::Opportunity> {
    let scope = customer_scope(&r);
    let req = r.into_inner();
    let id = reference(&req.opportunity, "opportunities", "opportunity")?;
    let mut errs = ValidationError::new();
    if req.competitors.len() > MAX_COMPETITORS {
        errs.add(
            "competitors",
            format!("must list at most {MAX_COMPETITORS} competitors"),
        );
    }
    let mut list: Vec<OpportunityCompetitor> = Vec::new();
    for (i, c) in req.competitors.iter().enumerate() {
        let f = format!("competitors[{i}]");
        let competitor_id = reference_into(
            &mut errs,
            &c.competitor,
            "competitors",
            &format!("{f}.competitor"),
        );
        let role = role_from_proto(c.role);
        if role.is_none() {
            errs.add(
                format!("{f}.role"),
                "is required: INCUMBENT, ACTIVE, LOST_TO or WON_AGAINST",
            );
        }
        let price_position = price_from_proto(c.price_position);
        if price_position.is_none() {
            errs.add(format!("{f}.price_position"), "is not a price position");
        }
        let strengths = text(
            &mut errs,
            &format!("{f}.strengths"),
            &c.strengths,
            false,
            MAX_NOTE,
        );
        let weaknesses = text(
            &mut errs,
            &format!("{f}.weaknesses"),
            &c.weaknesses,
            false,
            MAX_NOTE,
        );
        if let (Some(competitor_id), Some(role), Some(price_position)) =
            (competitor_id, role, price_position)
        {
            if list.iter().any(|o| o.competitor_id == competitor_id) {
                errs.add(format!("{f}.competitor"), "is listed twice");
            }
            list.push(OpportunityCompetitor {
                competitor_id,
                role,
                strengths,
                weaknesses,
                price_position,
            });
        }
    }
    errs.into_result().map_err(invalid)?;
    let o = api
        .store
        .set_opportunity_competitors(id, &list, Some(req.etag.as_str()), api.clock.now(), &scope)
        .await
        .map_err(from_store)?;
    Ok(Response::new(opportunity_to_proto(&o)))
}

pub(super) async fn win_loss_report(
    api: &SalesApi,
    r: Request<proto::GetWinLossReportRequest>,
) -> Answer<proto::GetWinLossReportResponse> {
    let scope = customer_scope(&r);
    let req = r.into_inner();
    let mut errs = ValidationError::new();
    let pipeline = (!req.pipeline.trim().is_empty())
        .then(|| reference_into(&mut errs, &req.pipeline, "pipelines", "pipeline"))
        .flatten();
    let group_by = match proto::WinLossGroupBy::try_from(req.group_by) {
        Ok(proto::WinLossGroupBy::Competitor) => Some(WinLossGroupBy::Competitor),
        Ok(proto::WinLossGroupBy::LostReason) => Some(WinLossGroupBy::LostReason),
        Ok(proto::WinLossGroupBy::Owner) => Some(WinLossGroupBy::Owner),
        Ok(proto::WinLossGroupBy::Source) => Some(WinLossGroupBy::Source),
        Ok(proto::WinLossGroupBy::Unspecified) | Err(_) => {
            errs.add(
                "group_by",
                "is required: COMPETITOR, LOST_REASON, OWNER or SOURCE",
            );
            None
        }
    };
    let end = match &req.end_time {
        Some(t) => micros(t, "end_time", &mut errs),
        None => Some(api.clock.now()),
    };
    let start = match &req.start_time {
        Some(t) => micros(t, "start_time", &mut errs),
        None => end.map(|e| e - 90 * MICROS_PER_DAY),
    };
    let (Some(group_by), Some(start), Some(end)) = (group_by, start, end) else {
        return Err(invalid(errs));
    };
    errs.into_result().map_err(invalid)?;
    if start >= end {
        return Err(invalid_field("start_time", "must be before end_time"));
    }
    if let Some(p) = pipeline {
        api.store.get_pipeline(p).await.map_err(from_store)?;
    }
    let groups = api
        .store
        .win_loss_report(start, end, pipeline, group_by, &scope)
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::GetWinLossReportResponse {
        start_time: Some(timestamp(start)),
        end_time: Some(timestamp(end)),
        groups: groups
            .iter()
            .map(|g| proto::WinLossGroup {
                key: g.key.clone(),
                display_name: g.display_name.clone(),
                currency_code: g.currency.clone(),
                closed: g.closed,
                won: g.won,
                lost: g.lost,
                win_rate: if g.closed > 0 {
                    g.won as f64 / g.closed as f64
                } else {
                    0.0
                },
                amount_won_minor: g.amount_won,
                amount_lost_minor: g.amount_lost,
            })
            .collect(),
    }))
}
