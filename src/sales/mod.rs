//! `bakkal.v1.SalesService`: organisations (`organizations.rs`), pipelines and their stages
//! (`pipelines.rs`), opportunities with their history (`opportunities.rs`), and the pipeline
//! at an instant and stage conversion (`reports.rs`), competitors, lost reasons and the
//! win/loss report (`competitors.rs`); `convert.rs` holds the protobuf ↔ store
//! conversions and request checks. Opportunities are read through the caller's customer record
//! scope, by their owner.

mod competitors;
mod convert;
mod opportunities;
mod organizations;
mod pipelines;
mod reports;

use bakkal_store::Store;
use tonic::{Request, Response, Status};

use crate::config::Clock;
use crate::proto;
use crate::proto::sales_service_server::SalesService;

pub struct SalesApi {
    store: Store,
    clock: Clock,
}

impl SalesApi {
    pub fn new(store: Store, clock: Clock) -> Self {
        Self { store, clock }
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl SalesService for SalesApi {
    async fn create_organization(
        &self,
        r: Request<proto::CreateOrganizationRequest>,
    ) -> Answer<proto::Organization> {
        organizations::create(self, r).await
    }

    async fn get_organization(
        &self,
        r: Request<proto::GetOrganizationRequest>,
    ) -> Answer<proto::Organization> {
        organizations::get(self, r).await
    }

    async fn list_organizations(
        &self,
        r: Request<proto::ListOrganizationsRequest>,
    ) -> Answer<proto::ListOrganizationsResponse> {
        organizations::list(self, r).await
    }

    async fn update_organization(
        &self,
        r: Request<proto::UpdateOrganizationRequest>,
    ) -> Answer<proto::Organization> {
        organizations::update(self, r).await
    }

    async fn delete_organization(
        &self,
        r: Request<proto::DeleteOrganizationRequest>,
    ) -> Answer<()> {
        organizations::delete(self, r).await
    }

    async fn find_organization_duplicates(
        &self,
        r: Request<proto::FindOrganizationDuplicatesRequest>,
    ) -> Answer<proto::FindOrganizationDuplicatesResponse> {
        organizations::duplicates(self, r).await
    }

    async fn merge_organizations(
        &self,
        r: Request<proto::MergeOrganizationsRequest>,
    ) -> Answer<proto::Organization> {
        organizations::merge(self, r).await
    }

    async fn create_pipeline(
        &self,
        r: Request<proto::CreatePipelineRequest>,
    ) -> Answer<proto::Pipeline> {
        pipelines::create(self, r).await
    }

    async fn get_pipeline_definition(
        &self,
        r: Request<proto::GetPipelineDefinitionRequest>,
    ) -> Answer<proto::Pipeline> {
        pipelines::get(self, r).await
    }

    async fn list_pipelines(
        &self,
        r: Request<proto::ListPipelinesRequest>,
    ) -> Answer<proto::ListPipelinesResponse> {
        pipelines::list(self, r).await
    }

    async fn update_pipeline(
        &self,
        r: Request<proto::UpdatePipelineRequest>,
    ) -> Answer<proto::Pipeline> {
        pipelines::update(self, r).await
    }

    async fn create_opportunity(
        &self,
        r: Request<proto::CreateOpportunityRequest>,
    ) -> Answer<proto::Opportunity> {
        opportunities::create(self, r).await
    }

    async fn get_opportunity(
        &self,
        r: Request<proto::GetOpportunityRequest>,
    ) -> Answer<proto::Opportunity> {
        opportunities::get(self, r).await
    }

    async fn list_opportunities(
        &self,
        r: Request<proto::ListOpportunitiesRequest>,
    ) -> Answer<proto::ListOpportunitiesResponse> {
        opportunities::list(self, r).await
    }

    async fn update_opportunity(
        &self,
        r: Request<proto::UpdateOpportunityRequest>,
    ) -> Answer<proto::Opportunity> {
        opportunities::update(self, r).await
    }

    async fn list_opportunity_history(
        &self,
        r: Request<proto::ListOpportunityHistoryRequest>,
    ) -> Answer<proto::ListOpportunityHistoryResponse> {
        opportunities::history(self, r).await
    }

    async fn get_pipeline(
        &self,
        r: Request<proto::GetPipelineRequest>,
    ) -> Answer<proto::GetPipelineResponse> {
        reports::pipeline(self, r).await
    }

    async fn get_stage_conversion(
        &self,
        r: Request<proto::GetStageConversionRequest>,
    ) -> Answer<proto::GetStageConversionResponse> {
        reports::stage_conversion(self, r).await
    }

    async fn create_competitor(
        &self,
        r: Request<proto::CreateCompetitorRequest>,
    ) -> Answer<proto::Competitor> {
        competitors::create(self, r).await
    }

    async fn get_competitor(
        &self,
        r: Request<proto::GetCompetitorRequest>,
    ) -> Answer<proto::Competitor> {
        competitors::get(self, r).await
    }

    async fn list_competitors(
        &self,
        r: Request<proto::ListCompetitorsRequest>,
    ) -> Answer<proto::ListCompetitorsResponse> {
        competitors::list(self, r).await
    }

    async fn update_competitor(
        &self,
        r: Request<proto::UpdateCompetitorRequest>,
    ) -> Answer<proto::Competitor> {
        competitors::update(self, r).await
    }

    async fn create_lost_reason(
        &self,
        r: Request<proto::CreateLostReasonRequest>,
    ) -> Answer<proto::LostReason> {
        competitors::create_lost_reason(self, r).await
    }

    async fn list_lost_reasons(
        &self,
        r: Request<proto::ListLostReasonsRequest>,
    ) -> Answer<proto::ListLostReasonsResponse> {
        competitors::list_lost_reasons(self, r).await
    }

    async fn set_opportunity_competitors(
        &self,
        r: Request<proto::SetOpportunityCompetitorsRequest>,
    ) -> Answer<proto::Opportunity> {
        competitors::set_opportunity_competitors(self, r).await
    }

    async fn get_win_loss_report(
        &self,
        r: Request<proto::GetWinLossReportRequest>,
    ) -> Answer<proto::GetWinLossReportResponse> {
        competitors::win_loss_report(self, r).await
    }
}
