//! The sales protobuf ↔ store conversions and the request checks done at the edge.

use std::collections::BTreeMap;

use bakkal_domain::name::customer_name;
use bakkal_domain::sales::{
    self, competitor_name, currency, lost_reason_name, opportunity_name, organization_name,
    pipeline_name, stage_name, CompetitorRole, ForecastCategory, PricePosition, StageOutcome,
    StageSpec,
};
use bakkal_domain::time::{Micros, MICROS_PER_SECOND};
use bakkal_domain::{normalise, ValidationError};
use bakkal_store::{
    Competitor, LostReason, Opportunity, OpportunityEvent, Organization, OrganizationFields,
    Pipeline, PipelineView, StageConversion,
};

use crate::convert::{opt_timestamp, timestamp};
use crate::proto;
pub(crate) use crate::service_desk::convert::{
    check_mask, mask_paths, reference, reference_into, text,
};

pub const MAX_TEXT: usize = 200;
pub const MAX_NOTE: usize = 2_000;
const MAX_TAGS: usize = 50;
const MAX_ATTRIBUTES: usize = 50;

pub fn etag(version: i64) -> String {
    bakkal_domain::customer::etag(version)
}

pub fn tags(errs: &mut ValidationError, field: &str, raw: &[String]) -> Vec<String> {
    if raw.len() > MAX_TAGS {
        errs.add(field, format!("must hold at most {MAX_TAGS} tags"));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        match normalise::token(t) {
            Ok(t) if !out.contains(&t) => out.push(t),
            Ok(_) => {}
            Err(why) => errs.add(format!("{field}[{i}]"), why),
        }
    }
    out
}

pub fn attributes(
    errs: &mut ValidationError,
    field: &str,
    raw: &std::collections::HashMap<String, String>,
) -> BTreeMap<String, String> {
    if raw.len() > MAX_ATTRIBUTES {
        errs.add(field, format!("must hold at most {MAX_ATTRIBUTES} entries"));
        return BTreeMap::new();
    }
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let key = match normalise::token(k) {
            Ok(k) => k,
            Err(why) => {
                errs.add(format!("{field}.{}", bakkal_domain::error::quote(k)), why);
                continue;
            }
        };
        let value = text(errs, &format!("{field}.{key}"), v, false, MAX_NOTE);
        out.insert(key, value);
    }
    out
}

/// `users/{id}` or empty (existence is checked by the store, in the write's transaction).
pub fn owner(errs: &mut ValidationError, field: &str, raw: &str) -> String {
    let o = raw.trim();
    if !o.is_empty() && bakkal_domain::customer::owner_id(o).is_none() {
        errs.add(field, format!("'{o}' is not a name like users/3"));
    }
    o.to_string()
}

pub fn category_from_proto(c: i32) -> Option<ForecastCategory> {
    match proto::ForecastCategory::try_from(c).ok()? {
        proto::ForecastCategory::Pipeline => Some(ForecastCategory::Pipeline),
        proto::ForecastCategory::BestCase => Some(ForecastCategory::BestCase),
        proto::ForecastCategory::Commit => Some(ForecastCategory::Commit),
        proto::ForecastCategory::Closed => Some(ForecastCategory::Closed),
        proto::ForecastCategory::Omitted => Some(ForecastCategory::Omitted),
        proto::ForecastCategory::Unspecified => None,
    }
}

pub fn category_to_proto(c: ForecastCategory) -> i32 {
    match c {
        ForecastCategory::Pipeline => proto::ForecastCategory::Pipeline,
        ForecastCategory::BestCase => proto::ForecastCategory::BestCase,
        ForecastCategory::Commit => proto::ForecastCategory::Commit,
        ForecastCategory::Closed => proto::ForecastCategory::Closed,
        ForecastCategory::Omitted => proto::ForecastCategory::Omitted,
    }
    .into()
}

fn outcome_from_proto(o: i32) -> Option<StageOutcome> {
    match proto::StageOutcome::try_from(o).ok()? {
        proto::StageOutcome::Unspecified | proto::StageOutcome::Open => Some(StageOutcome::Open),
        proto::StageOutcome::Won => Some(StageOutcome::Won),
        proto::StageOutcome::Lost => Some(StageOutcome::Lost),
    }
}

pub fn outcome_to_proto(o: StageOutcome) -> i32 {
    match o {
        StageOutcome::Open => proto::StageOutcome::Open,
        StageOutcome::Won => proto::StageOutcome::Won,
        StageOutcome::Lost => proto::StageOutcome::Lost,
    }
    .into()
}

// ---- organisations -----------------------------------------------------------------------

pub const ORGANIZATION_UPDATABLE: &[&str] = &[
    "display_name",
    "domain",
    "industry",
    "size",
    "country_code",
    "region",
    "city",
    "parent",
    "owner",
    "tags",
    "attributes",
];

/// Check the `paths` of `o` (all of them when empty) into `into`.
pub fn check_organization(
    o: &proto::Organization,
    paths: &[&str],
    into: &mut OrganizationFields,
    errs: &mut ValidationError,
) {
    let has = |x: &str| paths.is_empty() || paths.contains(&x);
    const F: &str = "organization";
    if has("display_name") {
        into.display_name = text(
            errs,
            "organization.display_name",
            &o.display_name,
            true,
            MAX_TEXT,
        );
    }
    if has("domain") {
        into.domain = if o.domain.trim().is_empty() {
            None
        } else {
            match sales::domain(&o.domain) {
                Ok(d) => Some(d),
                Err(why) => {
                    errs.add("organization.domain", why);
                    None
                }
            }
        };
    }
    if has("industry") {
        into.industry = text(errs, "organization.industry", &o.industry, false, MAX_TEXT);
    }
    if has("size") {
        into.size = text(errs, "organization.size", &o.size, false, 50);
    }
    if has("country_code") {
        into.country_code = if o.country_code.trim().is_empty() {
            String::new()
        } else {
            normalise::country_code(&o.country_code).unwrap_or_else(|why| {
                errs.add("organization.country_code", why);
                String::new()
            })
        };
    }
    if has("region") {
        into.region = text(errs, "organization.region", &o.region, false, MAX_TEXT);
    }
    if has("city") {
        into.city = text(errs, "organization.city", &o.city, false, MAX_TEXT);
    }
    if has("parent") {
        into.parent_id = (!o.parent.trim().is_empty())
            .then(|| reference_into(errs, &o.parent, "organizations", "organization.parent"))
            .flatten();
    }
    if has("owner") {
        into.owner = owner(errs, "organization.owner", &o.owner);
    }
    if has("tags") {
        into.tags = tags(errs, &format!("{F}.tags"), &o.tags);
    }
    if has("attributes") {
        into.attributes = attributes(errs, &format!("{F}.attributes"), &o.attributes);
    }
}

pub fn organization_to_proto(o: &Organization) -> proto::Organization {
    let f = &o.fields;
    proto::Organization {
        name: organization_name(o.id),
        display_name: f.display_name.clone(),
        domain: f.domain.clone().unwrap_or_default(),
        industry: f.industry.clone(),
        size: f.size.clone(),
        country_code: f.country_code.clone(),
        region: f.region.clone(),
        city: f.city.clone(),
        parent: f.parent_id.map(organization_name).unwrap_or_default(),
        owner: f.owner.clone(),
        tags: f.tags.clone(),
        attributes: f.attributes.clone().into_iter().collect(),
        create_time: Some(timestamp(o.create_time)),
        update_time: Some(timestamp(o.update_time)),
        etag: etag(o.version),
    }
}

// ---- pipelines ---------------------------------------------------------------------------

/// The stage list of a pipeline request, checked (names of existing stages must be of
/// pipeline `pipeline`, when it is known).
pub fn stages(
    errs: &mut ValidationError,
    raw: &[proto::PipelineStage],
    pipeline: Option<i64>,
) -> Vec<StageSpec> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let f = format!("pipeline.stages[{i}]");
        let id = if s.name.trim().is_empty() {
            None
        } else {
            match (sales::parse_stage(s.name.trim()), pipeline) {
                (Some((p, id)), Some(want)) if p == want => Some(id),
                (Some((p, _)), Some(want)) => {
                    errs.add(
                        format!("{f}.name"),
                        format!(
                            "is a stage of {}, not of {}",
                            pipeline_name(p),
                            pipeline_name(want)
                        ),
                    );
                    None
                }
                (Some(_), None) => {
                    errs.add(format!("{f}.name"), "must be empty on a new pipeline");
                    None
                }
                (None, _) => {
                    errs.add(
                        format!("{f}.name"),
                        format!("'{}' is not a name like pipelines/1/stages/2", s.name),
                    );
                    None
                }
            }
        };
        let display_name = text(
            errs,
            &format!("{f}.display_name"),
            &s.display_name,
            true,
            MAX_TEXT,
        );
        let outcome = outcome_from_proto(s.outcome).unwrap_or_else(|| {
            errs.add(format!("{f}.outcome"), "must be OPEN, WON or LOST");
            StageOutcome::Open
        });
        let forecast_category = match s.forecast_category {
            0 => match outcome {
                StageOutcome::Open => ForecastCategory::Pipeline,
                StageOutcome::Won => ForecastCategory::Closed,
                StageOutcome::Lost => ForecastCategory::Omitted,
            },
            c => category_from_proto(c).unwrap_or_else(|| {
                errs.add(
                    format!("{f}.forecast_category"),
                    "is not a forecast category",
                );
                ForecastCategory::Pipeline
            }),
        };
        out.push(StageSpec {
            id,
            display_name,
            probability: s.probability as i64,
            forecast_category,
            outcome,
        });
    }
    sales::check_stages(&out, "pipeline.stages", errs);
    out
}

pub fn pipeline_to_proto(p: &Pipeline) -> proto::Pipeline {
    proto::Pipeline {
        name: pipeline_name(p.id),
        display_name: p.display_name.clone(),
        stages: p
            .stages
            .iter()
            .map(|s| proto::PipelineStage {
                name: stage_name(p.id, s.id),
                display_name: s.display_name.clone(),
                probability: s.probability as i32,
                forecast_category: category_to_proto(s.forecast_category),
                outcome: outcome_to_proto(s.outcome),
            })
            .collect(),
        create_time: Some(timestamp(p.create_time)),
        update_time: Some(timestamp(p.update_time)),
        etag: etag(p.version),
    }
}

// ---- opportunities -----------------------------------------------------------------------

pub const OPPORTUNITY_UPDATABLE: &[&str] = &[
    "display_name",
    "customer",
    "organization",
    "stage",
    "amount_minor",
    "currency_code",
    "probability",
    "forecast_category",
    "expected_close_date",
    "owner",
    "source",
    "next_step",
    "lost_reason",
    "tags",
    "attributes",
];

pub fn amount(errs: &mut ValidationError, minor: i64) -> i64 {
    sales::amount(minor).unwrap_or_else(|why| {
        errs.add("opportunity.amount_minor", why);
        0
    })
}

pub fn currency_code(errs: &mut ValidationError, raw: &str) -> String {
    currency::currency(raw).unwrap_or_else(|why| {
        errs.add("opportunity.currency_code", why);
        String::new()
    })
}

pub fn probability(errs: &mut ValidationError, p: i32) -> i64 {
    if !(0..=100).contains(&p) {
        errs.add("opportunity.probability", "must be 0 to 100");
    }
    p as i64
}

pub fn close_date(errs: &mut ValidationError, raw: &str) -> String {
    sales::close_date(raw).unwrap_or_else(|why| {
        errs.add("opportunity.expected_close_date", why);
        String::new()
    })
}

pub fn source(errs: &mut ValidationError, raw: &str) -> String {
    let s = raw.trim();
    if s.is_empty() {
        return String::new();
    }
    match normalise::token(s) {
        Ok(t) => t.to_lowercase(),
        Err(why) => {
            errs.add("opportunity.source", why);
            String::new()
        }
    }
}

/// The stage id of `raw` in pipeline `pipeline` (a stage name of another pipeline is
/// refused here; one whose id belongs elsewhere by the store).
pub fn stage_ref(errs: &mut ValidationError, raw: &str, pipeline: i64) -> i64 {
    match sales::parse_stage(raw.trim()) {
        Some((p, s)) if p == pipeline => s,
        Some((p, s)) => {
            errs.add(
                "opportunity.stage",
                format!(
                    "{} is a stage of {}, not of {}",
                    stage_name(p, s),
                    pipeline_name(p),
                    pipeline_name(pipeline)
                ),
            );
            0
        }
        None if raw.trim().is_empty() => {
            errs.add("opportunity.stage", "is required");
            0
        }
        None => {
            errs.add(
                "opportunity.stage",
                format!("'{raw}' is not a name like pipelines/1/stages/2"),
            );
            0
        }
    }
}

pub fn opportunity_to_proto(o: &Opportunity) -> proto::Opportunity {
    proto::Opportunity {
        name: opportunity_name(o.id),
        display_name: o.display_name.clone(),
        customer: o.customer_id.map(customer_name).unwrap_or_default(),
        organization: o.organization_id.map(organization_name).unwrap_or_default(),
        pipeline: pipeline_name(o.pipeline_id),
        stage: stage_name(o.pipeline_id, o.stage_id),
        amount_minor: o.amount,
        currency_code: o.currency.clone(),
        probability: Some(o.probability as i32),
        forecast_category: category_to_proto(o.forecast_category),
        expected_close_date: o.close_date.clone(),
        owner: o.owner.clone(),
        source: o.source.clone(),
        next_step: o.next_step.clone(),
        lost_reason: o.lost_reason.clone(),
        tags: o.tags.clone(),
        attributes: o.attributes.clone().into_iter().collect(),
        create_time: Some(timestamp(o.create_time)),
        update_time: Some(timestamp(o.update_time)),
        close_time: opt_timestamp(o.close_time),
        etag: etag(o.version),
        outcome: outcome_to_proto(o.outcome),
        competitors: o
            .competitors
            .iter()
            .map(|c| proto::OpportunityCompetitor {
                competitor: competitor_name(c.competitor_id),
                role: role_to_proto(c.role),
                strengths: c.strengths.clone(),
                weaknesses: c.weaknesses.clone(),
                price_position: price_to_proto(c.price_position),
            })
            .collect(),
    }
}

// ---- competitors -------------------------------------------------------------------------

pub fn role_from_proto(r: i32) -> Option<CompetitorRole> {
    match proto::CompetitorRole::try_from(r).ok()? {
        proto::CompetitorRole::Incumbent => Some(CompetitorRole::Incumbent),
        proto::CompetitorRole::Active => Some(CompetitorRole::Active),
        proto::CompetitorRole::LostTo => Some(CompetitorRole::LostTo),
        proto::CompetitorRole::WonAgainst => Some(CompetitorRole::WonAgainst),
        proto::CompetitorRole::Unspecified => None,
    }
}

fn role_to_proto(r: CompetitorRole) -> i32 {
    match r {
        CompetitorRole::Incumbent => proto::CompetitorRole::Incumbent,
        CompetitorRole::Active => proto::CompetitorRole::Active,
        CompetitorRole::LostTo => proto::CompetitorRole::LostTo,
        CompetitorRole::WonAgainst => proto::CompetitorRole::WonAgainst,
    }
    .into()
}

pub fn price_from_proto(p: i32) -> Option<PricePosition> {
    match proto::PricePosition::try_from(p).ok()? {
        proto::PricePosition::Unspecified => Some(PricePosition::Unknown),
        proto::PricePosition::Lower => Some(PricePosition::Lower),
        proto::PricePosition::Similar => Some(PricePosition::Similar),
        proto::PricePosition::Higher => Some(PricePosition::Higher),
    }
}

fn price_to_proto(p: PricePosition) -> i32 {
    match p {
        PricePosition::Unknown => proto::PricePosition::Unspecified,
        PricePosition::Lower => proto::PricePosition::Lower,
        PricePosition::Similar => proto::PricePosition::Similar,
        PricePosition::Higher => proto::PricePosition::Higher,
    }
    .into()
}

pub fn competitor_to_proto(c: &Competitor) -> proto::Competitor {
    proto::Competitor {
        name: competitor_name(c.id),
        display_name: c.fields.display_name.clone(),
        website: c.fields.website.clone(),
        notes: c.fields.notes.clone(),
        create_time: Some(timestamp(c.create_time)),
        update_time: Some(timestamp(c.update_time)),
        etag: etag(c.version),
    }
}

pub fn lost_reason_to_proto(r: &LostReason) -> proto::LostReason {
    proto::LostReason {
        name: lost_reason_name(r.id),
        display_name: r.display_name.clone(),
        create_time: Some(timestamp(r.create_time)),
    }
}

pub fn event_to_proto(pipeline: i64, e: &OpportunityEvent) -> proto::OpportunityEvent {
    proto::OpportunityEvent {
        time: Some(timestamp(e.time)),
        changed: e.changed.iter().map(|t| t.as_str().to_string()).collect(),
        stage: stage_name(pipeline, e.stage_id),
        amount_minor: e.amount,
        currency_code: e.currency.clone(),
        probability: e.probability as i32,
        forecast_category: category_to_proto(e.forecast_category),
        expected_close_date: e.close_date.clone(),
        owner: e.owner.clone(),
    }
}

// ---- reports -----------------------------------------------------------------------------

pub fn view_to_proto(v: &PipelineView, as_of: Micros) -> proto::GetPipelineResponse {
    let p = &v.pipeline;
    proto::GetPipelineResponse {
        pipeline: pipeline_name(p.id),
        as_of: Some(timestamp(as_of)),
        groups: v
            .groups
            .iter()
            .map(|g| proto::PipelineGroup {
                stage: g.stage_id.map(|s| stage_name(p.id, s)).unwrap_or_default(),
                stage_display_name: g
                    .stage_id
                    .and_then(|s| p.stage(s))
                    .map(|s| s.display_name.clone())
                    .unwrap_or_default(),
                owner: g.owner.clone().unwrap_or_default(),
                currency_code: g.currency.clone(),
                count: g.count,
                amount_minor: g.amount,
                weighted_amount_minor: g.weighted_amount,
            })
            .collect(),
    }
}

fn duration(m: Micros) -> prost_types::Duration {
    prost_types::Duration {
        seconds: m.div_euclid(MICROS_PER_SECOND),
        nanos: (m.rem_euclid(MICROS_PER_SECOND) * 1000) as i32,
    }
}

pub fn conversion_to_proto(p: &Pipeline, c: &StageConversion) -> proto::StageConversion {
    proto::StageConversion {
        stage: stage_name(p.id, c.stage_id),
        display_name: p
            .stage(c.stage_id)
            .map(|s| s.display_name.clone())
            .unwrap_or_default(),
        entered: c.entered,
        advanced: c.advanced,
        won: c.won,
        lost: c.lost,
        median_time_in_stage: c.median_time_in_stage.map(duration),
        p90_time_in_stage: c.p90_time_in_stage.map(duration),
    }
}
