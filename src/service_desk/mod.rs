//! `bakkal.v1.ServiceDeskService`: tickets linked to customers, routed to teams and agents,
//! with SLA clocks in business hours; agents, teams and SLA policies.

use std::sync::Arc;

use bakkal_script::ScriptHost;
use bakkal_store::Store;
use tonic::{Request, Response, Status};

use crate::proto;
use crate::proto::service_desk_service_server::ServiceDeskService;

pub struct ServiceDeskApi {
    #[allow(dead_code)]
    store: Store,
    #[allow(dead_code)]
    host: Arc<ScriptHost>,
}

impl ServiceDeskApi {
    pub fn new(store: Store, host: Arc<ScriptHost>) -> Self {
        Self { store, host }
    }
}

#[tonic::async_trait]
impl ServiceDeskService for ServiceDeskApi {
    async fn create_ticket(
        &self,
        _request: Request<proto::CreateTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn get_ticket(
        &self,
        _request: Request<proto::GetTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn list_tickets(
        &self,
        _request: Request<proto::ListTicketsRequest>,
    ) -> Result<Response<proto::ListTicketsResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn update_ticket(
        &self,
        _request: Request<proto::UpdateTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn add_ticket_comment(
        &self,
        _request: Request<proto::AddTicketCommentRequest>,
    ) -> Result<Response<proto::TicketComment>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn list_ticket_comments(
        &self,
        _request: Request<proto::ListTicketCommentsRequest>,
    ) -> Result<Response<proto::ListTicketCommentsResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn resolve_ticket(
        &self,
        _request: Request<proto::ResolveTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn reopen_ticket(
        &self,
        _request: Request<proto::ReopenTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn rate_ticket(
        &self,
        _request: Request<proto::RateTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn list_overdue_tickets(
        &self,
        _request: Request<proto::ListOverdueTicketsRequest>,
    ) -> Result<Response<proto::ListOverdueTicketsResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn create_agent(
        &self,
        _request: Request<proto::CreateAgentRequest>,
    ) -> Result<Response<proto::Agent>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn get_agent(
        &self,
        _request: Request<proto::GetAgentRequest>,
    ) -> Result<Response<proto::Agent>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn list_agents(
        &self,
        _request: Request<proto::ListAgentsRequest>,
    ) -> Result<Response<proto::ListAgentsResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn update_agent(
        &self,
        _request: Request<proto::UpdateAgentRequest>,
    ) -> Result<Response<proto::Agent>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn create_team(
        &self,
        _request: Request<proto::CreateTeamRequest>,
    ) -> Result<Response<proto::Team>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn get_team(
        &self,
        _request: Request<proto::GetTeamRequest>,
    ) -> Result<Response<proto::Team>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn list_teams(
        &self,
        _request: Request<proto::ListTeamsRequest>,
    ) -> Result<Response<proto::ListTeamsResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn update_team(
        &self,
        _request: Request<proto::UpdateTeamRequest>,
    ) -> Result<Response<proto::Team>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn create_sla_policy(
        &self,
        _request: Request<proto::CreateSlaPolicyRequest>,
    ) -> Result<Response<proto::SlaPolicy>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn get_sla_policy(
        &self,
        _request: Request<proto::GetSlaPolicyRequest>,
    ) -> Result<Response<proto::SlaPolicy>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn list_sla_policies(
        &self,
        _request: Request<proto::ListSlaPoliciesRequest>,
    ) -> Result<Response<proto::ListSlaPoliciesResponse>, Status> {
        Err(Status::unimplemented("not yet"))
    }

    async fn update_sla_policy(
        &self,
        _request: Request<proto::UpdateSlaPolicyRequest>,
    ) -> Result<Response<proto::SlaPolicy>, Status> {
        Err(Status::unimplemented("not yet"))
    }
}
