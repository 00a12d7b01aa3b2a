//! Sales: organisations (`organizations.rs`), pipelines and their stages (`pipelines.rs`),
//! opportunities with their append-only history (`opportunities.rs`), and the pipeline as it
//! stood at an instant and the stage conversion figures (`reports.rs`), competitors, lost
//! reasons and the win/loss report (`competitors.rs`). Forecast categories, competitor roles
//! and stage outcomes are domain enums; the text they are stored as is mapped here only.

mod competitors;
mod opportunities;
mod organizations;
mod pipelines;
mod reports;

use std::collections::BTreeMap;

use bakkal_domain::sales::{
    opportunity_name, organization_name, pipeline_name, CompetitorRole, ForecastCategory,
    PricePosition, StageOutcome, Tracked,
};
use bakkal_domain::time::Micros;
use bakkal_domain::ValidationError;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::customers::{decode_tags, encode_tags};
use crate::{Result, StoreError};

pub use competitors::{WinLossGroup, WinLossGroupBy};
pub use opportunities::{OpportunityChanges, OPPORTUNITY_FILTER_FIELDS};
pub use organizations::{OrganizationDuplicate, ORGANIZATION_FILTER_FIELDS};
pub use reports::{
    PipelineGroup, PipelineGroupBy, PipelineView, StageConversion, PIPELINE_FILTER_FIELDS,
};

// ---- types -------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrganizationFields {
    pub display_name: String,
    /// Normalised (`bakkal_domain::sales::domain`); unique among live organisations.
    pub domain: Option<String>,
    pub industry: String,
    pub size: String,
    pub country_code: String,
    pub region: String,
    pub city: String,
    pub parent_id: Option<i64>,
    /// `users/{id}` or empty.
    pub owner: String,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: i64,
    pub fields: OrganizationFields,
    pub merged_into: Option<i64>,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub id: i64,
    pub pipeline_id: i64,
    pub position: i64,
    pub display_name: String,
    pub probability: i64,
    pub forecast_category: ForecastCategory,
    pub outcome: StageOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub id: i64,
    pub display_name: String,
    /// In order.
    pub stages: Vec<Stage>,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

impl Pipeline {
    pub fn stage(&self, id: i64) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }
}

/// What a caller writes of an opportunity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpportunityFields {
    pub display_name: String,
    pub customer_id: Option<i64>,
    pub organization_id: Option<i64>,
    pub pipeline_id: i64,
    pub stage_id: i64,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    /// `None`: the stage's default.
    pub probability: Option<i64>,
    /// `None`: the stage's default.
    pub forecast_category: Option<ForecastCategory>,
    /// `YYYY-MM-DD` or empty.
    pub close_date: String,
    /// `users/{id}` or empty.
    pub owner: String,
    pub source: String,
    pub next_step: String,
    pub lost_reason: String,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opportunity {
    pub id: i64,
    pub display_name: String,
    pub customer_id: Option<i64>,
    pub organization_id: Option<i64>,
    pub pipeline_id: i64,
    pub stage_id: i64,
    pub amount: i64,
    pub currency: String,
    pub probability: i64,
    pub forecast_category: ForecastCategory,
    pub close_date: String,
    pub owner: String,
    pub source: String,
    pub next_step: String,
    pub lost_reason: String,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub close_time: Option<Micros>,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
    /// The outcome of its stage (read with it).
    pub outcome: StageOutcome,
    /// Its competitors, by competitor id.
    pub competitors: Vec<OpportunityCompetitor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpportunityCompetitor {
    pub competitor_id: i64,
    pub role: CompetitorRole,
    pub strengths: String,
    pub weaknesses: String,
    pub price_position: PricePosition,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompetitorFields {
    pub display_name: String,
    pub website: String,
    pub notes: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Competitor {
    pub id: i64,
    pub fields: CompetitorFields,
    pub version: i64,
    pub create_time: Micros,
    pub update_time: Micros,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostReason {
    pub id: i64,
    pub display_name: String,
    pub create_time: Micros,
}

/// One entry of an opportunity's history: what changed, and the tracked fields after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpportunityEvent {
    pub id: i64,
    pub opportunity_id: i64,
    pub time: Micros,
    pub changed: Vec<Tracked>,
    pub stage_id: i64,
    pub amount: i64,
    pub currency: String,
    pub probability: i64,
    pub forecast_category: ForecastCategory,
    pub close_date: String,
    pub owner: String,
}

// ---- rows --------------------------------------------------------------------------------

pub(super) const ORGANIZATION_COLUMNS: &str = "id, display_name, domain, industry, size, \
    country_code, region, city, parent_id, owner, tags, attributes, merged_into, version, \
    create_time, update_time";

pub(super) const OPPORTUNITY_COLUMNS: &str = "id, display_name, customer_id, organization_id, \
    pipeline_id, stage_id, amount, currency, probability, forecast_category, close_date, owner, \
    source, next_step, lost_reason, tags, attributes, close_time, version, create_time, \
    update_time, (SELECT s.outcome FROM pipeline_stages s WHERE s.id = opportunities.stage_id)";

pub(super) const EVENT_COLUMNS: &str = "id, opportunity_id, time, changed, stage_id, amount, \
    currency, probability, forecast_category, close_date, owner";

fn decode_attributes(s: &str) -> BTreeMap<String, String> {
    serde_json::from_str(s).unwrap_or_default()
}

pub(super) fn encode_attributes(a: &BTreeMap<String, String>) -> String {
    serde_json::to_string(a).unwrap_or_else(|_| "{}".into())
}

pub(super) fn encode_list(tags: &[String]) -> String {
    encode_tags(tags)
}

/// A stored category; a value no version of bakkal writes is a decode error, not a default.
fn category(s: &str) -> std::result::Result<ForecastCategory, sqlx::Error> {
    ForecastCategory::parse(s)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown forecast category {s:?}").into()))
}

fn outcome(s: &str) -> std::result::Result<StageOutcome, sqlx::Error> {
    StageOutcome::parse(s)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown stage outcome {s:?}").into()))
}

pub(super) fn organization_from_row(r: &AnyRow) -> std::result::Result<Organization, sqlx::Error> {
    Ok(Organization {
        id: r.try_get(0)?,
        fields: OrganizationFields {
            display_name: r.try_get(1)?,
            domain: r.try_get(2)?,
            industry: r.try_get(3)?,
            size: r.try_get(4)?,
            country_code: r.try_get(5)?,
            region: r.try_get(6)?,
            city: r.try_get(7)?,
            parent_id: r.try_get(8)?,
            owner: r.try_get(9)?,
            tags: decode_tags(&r.try_get::<String, _>(10)?),
            attributes: decode_attributes(&r.try_get::<String, _>(11)?),
        },
        merged_into: r.try_get(12)?,
        version: r.try_get(13)?,
        create_time: r.try_get(14)?,
        update_time: r.try_get(15)?,
    })
}

pub(super) fn stage_from_row(r: &AnyRow) -> std::result::Result<Stage, sqlx::Error> {
    Ok(Stage {
        id: r.try_get(0)?,
        pipeline_id: r.try_get(1)?,
        position: r.try_get(2)?,
        display_name: r.try_get(3)?,
        probability: r.try_get(4)?,
        forecast_category: category(&r.try_get::<String, _>(5)?)?,
        outcome: outcome(&r.try_get::<String, _>(6)?)?,
    })
}

pub(super) fn opportunity_from_row(r: &AnyRow) -> std::result::Result<Opportunity, sqlx::Error> {
    Ok(Opportunity {
        id: r.try_get(0)?,
        display_name: r.try_get(1)?,
        customer_id: r.try_get(2)?,
        organization_id: r.try_get(3)?,
        pipeline_id: r.try_get(4)?,
        stage_id: r.try_get(5)?,
        amount: r.try_get(6)?,
        currency: r.try_get(7)?,
        probability: r.try_get(8)?,
        forecast_category: category(&r.try_get::<String, _>(9)?)?,
        close_date: r.try_get(10)?,
        owner: r.try_get(11)?,
        source: r.try_get(12)?,
        next_step: r.try_get(13)?,
        lost_reason: r.try_get(14)?,
        tags: decode_tags(&r.try_get::<String, _>(15)?),
        attributes: decode_attributes(&r.try_get::<String, _>(16)?),
        close_time: r.try_get(17)?,
        version: r.try_get(18)?,
        create_time: r.try_get(19)?,
        update_time: r.try_get(20)?,
        outcome: outcome(&r.try_get::<String, _>(21)?)?,
        competitors: Vec::new(),
    })
}

pub(super) fn event_from_row(r: &AnyRow) -> std::result::Result<OpportunityEvent, sqlx::Error> {
    let changed: String = r.try_get(3)?;
    Ok(OpportunityEvent {
        id: r.try_get(0)?,
        opportunity_id: r.try_get(1)?,
        time: r.try_get(2)?,
        changed: changed.split(',').filter_map(Tracked::parse).collect(),
        stage_id: r.try_get(4)?,
        amount: r.try_get(5)?,
        currency: r.try_get(6)?,
        probability: r.try_get(7)?,
        forecast_category: category(&r.try_get::<String, _>(8)?)?,
        close_date: r.try_get(9)?,
        owner: r.try_get(10)?,
    })
}

pub(super) fn check_etag(etag: Option<&str>, version: i64, name: &str) -> Result<()> {
    if let Some(e) = etag.filter(|e| !e.is_empty()) {
        if e != bakkal_domain::customer::etag(version) {
            return Err(StoreError::Aborted(format!(
                "{name} changed since etag {e}"
            )));
        }
    }
    Ok(())
}

/// INVALID_ARGUMENT on `field`.
pub(super) fn invalid(field: &str, description: impl Into<String>) -> StoreError {
    StoreError::Invalid(ValidationError::single(field, description))
}

// ---- loads inside a transaction ----------------------------------------------------------

/// Organisation `id` as stored (merged ones too: they point at their survivor).
pub(super) async fn load_organization(conn: &mut AnyConnection, id: i64) -> Result<Organization> {
    let sql = format!("SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = $1");
    match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(organization_from_row(&r)?),
        None => Err(StoreError::NotFound(organization_name(id))),
    }
}

pub(super) async fn load_pipeline(conn: &mut AnyConnection, id: i64) -> Result<Pipeline> {
    let Some(r) = sqlx::query(
        "SELECT id, display_name, version, create_time, update_time FROM pipelines WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Err(StoreError::NotFound(pipeline_name(id)));
    };
    let rows = sqlx::query(
        "SELECT id, pipeline_id, position, display_name, probability, forecast_category, outcome \
         FROM pipeline_stages WHERE pipeline_id = $1 ORDER BY position, id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Pipeline {
        id: r.try_get(0)?,
        display_name: r.try_get(1)?,
        stages: rows
            .iter()
            .map(stage_from_row)
            .collect::<std::result::Result<_, _>>()?,
        version: r.try_get(2)?,
        create_time: r.try_get(3)?,
        update_time: r.try_get(4)?,
    })
}

pub(super) async fn load_opportunity(conn: &mut AnyConnection, id: i64) -> Result<Opportunity> {
    let sql = format!("SELECT {OPPORTUNITY_COLUMNS} FROM opportunities WHERE id = $1");
    let mut o = match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => opportunity_from_row(&r)?,
        None => return Err(StoreError::NotFound(opportunity_name(id))),
    };
    competitors::attach(conn, std::slice::from_mut(&mut o)).await?;
    Ok(o)
}

/// INVALID_ARGUMENT on `field` unless `owner` is empty or a staff user.
pub(super) async fn check_owner(conn: &mut AnyConnection, owner: &str, field: &str) -> Result<()> {
    if owner.is_empty() {
        return Ok(());
    }
    let Some(id) = bakkal_domain::customer::owner_id(owner) else {
        return Err(invalid(
            field,
            format!("'{owner}' is not a name like users/3"),
        ));
    };
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        return Err(invalid(field, format!("users/{id} is not a staff user")));
    }
    Ok(())
}
