//! `bakkal.v1.ServiceDeskService`: tickets linked to customers, routed to teams and agents,
//! with SLA clocks in business hours; agents, teams and SLA policies. Submodules: `convert`
//! (protobuf ↔ store, request checks), `routing` (the ROUTING script hook), `messages` (the
//! built-in acknowledgement, resolution and reminder messages), `watcher` (the SLA watcher).

pub mod articles;
pub(crate) mod convert;
pub mod messages;
pub mod report;
mod routing;
pub mod watcher;

use std::sync::Arc;

use bakkal_domain::ticket::ticket_name;
use bakkal_domain::ValidationError;
use bakkal_script::ScriptHost;
use bakkal_store::{
    AgentFields, NewTicket, RecordScope, SlaPolicyFields, Store, TeamFields, TicketChanges,
    TicketCustomer, TICKET_FILTER_FIELDS, TICKET_SORT_FIELDS,
};
use tonic::{Request, Response, Status};

use crate::auth::mask::Pii;
use crate::auth::ticket_scope;
use crate::config::{Clock, DeskConfig};
use crate::page_token;
use crate::proto;
use crate::proto::service_desk_service_server::ServiceDeskService;
use crate::status::{from_store, invalid, invalid_field};
use convert::*;

pub struct ServiceDeskApi {
    store: Store,
    host: Arc<ScriptHost>,
    clock: Clock,
    /// The MESSAGE script desk events go through (`scripts/{id}`), if any.
    message_script: Option<String>,
}

impl ServiceDeskApi {
    pub fn new(store: Store, host: Arc<ScriptHost>, desk: &DeskConfig) -> Self {
        Self {
            store,
            host,
            clock: desk.clock.clone(),
            message_script: desk.message_script.clone(),
        }
    }

    /// What writes the messages of the events a call causes.
    async fn notifier(&self) -> Box<bakkal_store::Notifier> {
        let script =
            messages::load_script(&self.store, &self.host, self.message_script.as_deref()).await;
        messages::notifier(script)
    }
}

const TICKET_UPDATABLE: &[&str] = &[
    "subject",
    "description",
    "topic",
    "priority",
    "state",
    "team",
    "assignee",
];
const AGENT_UPDATABLE: &[&str] = &["display_name", "email", "teams", "active"];
const TEAM_UPDATABLE: &[&str] = &["display_name", "email"];
const POLICY_UPDATABLE: &[&str] = &[
    "display_name",
    "kinds",
    "priorities",
    "tier",
    "first_response_within",
    "resolve_within",
    "business_hours",
    "at_risk_fraction",
];

fn check_agent(
    a: &proto::Agent,
    paths: &[&str],
    into: &mut AgentFields,
    errs: &mut ValidationError,
) {
    let has = |x: &str| paths.is_empty() || paths.contains(&x);
    if has("display_name") {
        into.display_name = text(errs, "agent.display_name", &a.display_name, true, MAX_TEXT);
    }
    if has("email") {
        match email(errs, "agent.email", &a.email) {
            Some(e) => into.email = e,
            None if a.email.trim().is_empty() => errs.add("agent.email", "is required"),
            None => {}
        }
    }
    if has("teams") {
        into.team_ids.clear();
        for (i, t) in a.teams.iter().enumerate() {
            if let Some(id) = reference_into(errs, t, "teams", &format!("agent.teams[{i}]")) {
                if !into.team_ids.contains(&id) {
                    into.team_ids.push(id);
                }
            }
        }
    }
    if !paths.is_empty() && paths.contains(&"active") {
        into.active = a.active;
    }
}

fn check_team(t: &proto::Team, paths: &[&str], into: &mut TeamFields, errs: &mut ValidationError) {
    let has = |x: &str| paths.is_empty() || paths.contains(&x);
    if has("display_name") {
        into.display_name = text(errs, "team.display_name", &t.display_name, true, MAX_TEXT);
    }
    if has("email") {
        into.email = email(errs, "team.email", &t.email).unwrap_or_default();
    }
}

impl ServiceDeskApi {
    /// NOT_FOUND (as for a ticket that does not exist) unless `scope` admits ticket `id`:
    /// what a write on one ticket checks first.
    async fn ticket_in_scope(&self, id: i64, scope: &RecordScope) -> Result<(), Status> {
        if scope.is_all() {
            return Ok(());
        }
        self.store
            .get_ticket(id, scope)
            .await
            .map(|_| ())
            .map_err(from_store)
    }
}

#[tonic::async_trait]
impl ServiceDeskService for ServiceDeskApi {
    async fn create_ticket(
        &self,
        request: Request<proto::CreateTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        let pii = Pii::of(&request);
        let req = request.into_inner();
        let Some(t) = req.ticket else {
            return Err(invalid_field("ticket", "is required"));
        };
        let mut errs = ValidationError::new();
        let kind = kind_str(t.kind);
        if kind.is_none() {
            errs.add(
                "ticket.kind",
                "is required: COMPLAINT, REQUEST, QUESTION or FEEDBACK",
            );
        }
        let channel = channel_str(t.channel);
        if channel.is_none() {
            errs.add(
                "ticket.channel",
                "is required: PHONE, EMAIL, SMS, SOCIAL, WEB, STORE or CALL_CENTRE",
            );
        }
        let subject = text(&mut errs, "ticket.subject", &t.subject, true, MAX_TEXT);
        let description = text(
            &mut errs,
            "ticket.description",
            &t.description,
            false,
            MAX_BODY,
        );
        let topic = text(&mut errs, "ticket.topic", &t.topic, false, 100).to_lowercase();
        let contact_email = email(&mut errs, "ticket.contact_email", &t.contact_email);
        let contact_phone = phone(&mut errs, "ticket.contact_phone", &t.contact_phone);
        let customer = if t.customer.trim().is_empty() {
            if contact_email.is_none() && contact_phone.is_none() && errs.is_empty() {
                errs.add(
                    "ticket.customer",
                    "is required, or a contact_email or contact_phone to find the customer by",
                );
            }
            TicketCustomer::Contact {
                email: contact_email.clone(),
                phone: contact_phone.clone(),
                display_name: String::new(),
            }
        } else {
            match reference_into(&mut errs, &t.customer, "customers", "ticket.customer") {
                Some(id) => TicketCustomer::Id(id),
                None => TicketCustomer::Id(0),
            }
        };
        let priority = match t.priority {
            0 => None,
            p => match priority_str(p) {
                Some(p) => Some(p.to_string()),
                None => {
                    errs.add("ticket.priority", "must be LOW, NORMAL, HIGH or URGENT");
                    None
                }
            },
        };
        let team_id = (!t.team.trim().is_empty())
            .then(|| reference_into(&mut errs, &t.team, "teams", "ticket.team"))
            .flatten();
        let assignee_id = (!t.assignee.trim().is_empty())
            .then(|| reference_into(&mut errs, &t.assignee, "agents", "ticket.assignee"))
            .flatten();
        if req.request_id.len() > 200 {
            errs.add("request_id", "must be at most 200 characters");
        }
        errs.into_result().map_err(invalid)?;
        let mut new = NewTicket {
            customer,
            contact_email: contact_email.unwrap_or_default(),
            contact_phone: contact_phone.unwrap_or_default(),
            kind: kind.unwrap_or_default().to_string(),
            channel: channel.unwrap_or_default().to_string(),
            subject,
            description,
            topic,
            priority,
            team_id,
            assignee_id,
            request_id: Some(req.request_id).filter(|r| !r.is_empty()),
        };
        routing::route(&self.store, &self.host, &mut new, self.clock.now()).await?;
        let created = self
            .store
            .create_ticket(&new, self.clock.now(), &*self.notifier().await)
            .await
            .map_err(from_store)?;
        Ok(Response::new(ticket_to_proto(&created, pii)))
    }

    async fn get_ticket(
        &self,
        request: Request<proto::GetTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        let pii = Pii::of(&request);
        let scope = ticket_scope(&request);
        let id = reference(&request.get_ref().name, "tickets", "name")?;
        let t = self
            .store
            .get_ticket(id, &scope)
            .await
            .map_err(from_store)?;
        Ok(Response::new(ticket_to_proto(&t, pii)))
    }

    async fn list_tickets(
        &self,
        request: Request<proto::ListTicketsRequest>,
    ) -> Result<Response<proto::ListTicketsResponse>, Status> {
        let pii = Pii::of(&request);
        let scope = ticket_scope(&request);
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let clauses = bakkal_domain::filter::parse(&req.filter, TICKET_FILTER_FIELDS)
            .map_err(|m| invalid_field("filter", m))?;
        let (field, descending) = if req.order_by.trim().is_empty() {
            ("create_time".to_string(), true)
        } else {
            let o = bakkal_domain::filter::parse_order_by(
                &req.order_by,
                TICKET_SORT_FIELDS,
                "create_time",
            )
            .map_err(|m| invalid_field("order_by", m))?;
            (o.field, o.descending)
        };
        let query = ["tickets", req.filter.as_str(), req.order_by.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        let (list, next) = self
            .store
            .list_tickets(&clauses, &field, descending, size, after.as_ref(), &scope)
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListTicketsResponse {
            tickets: list.iter().map(|t| ticket_to_proto(t, pii)).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn update_ticket(
        &self,
        request: Request<proto::UpdateTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        let pii = Pii::of(&request);
        let scope = ticket_scope(&request);
        let req = request.into_inner();
        let Some(t) = req.ticket else {
            return Err(invalid_field("ticket", "is required"));
        };
        let id = reference(&t.name, "tickets", "ticket.name")?;
        self.ticket_in_scope(id, &scope).await?;
        let mut paths = mask_paths(&req.update_mask);
        check_mask(&paths, TICKET_UPDATABLE)?;
        if paths.is_empty() {
            // AIP-134: without a mask, every field that is set
            let set = [
                ("subject", !t.subject.is_empty()),
                ("description", !t.description.is_empty()),
                ("topic", !t.topic.is_empty()),
                ("priority", t.priority != 0),
                ("state", t.state != 0),
                ("team", !t.team.is_empty()),
                ("assignee", !t.assignee.is_empty()),
            ];
            paths = set.iter().filter(|(_, s)| *s).map(|(p, _)| *p).collect();
        }
        let mut errs = ValidationError::new();
        let mut c = TicketChanges::default();
        for p in &paths {
            match *p {
                "subject" => {
                    c.subject = Some(text(
                        &mut errs,
                        "ticket.subject",
                        &t.subject,
                        true,
                        MAX_TEXT,
                    ))
                }
                "description" => {
                    c.description = Some(text(
                        &mut errs,
                        "ticket.description",
                        &t.description,
                        false,
                        MAX_BODY,
                    ))
                }
                "topic" => {
                    c.topic =
                        Some(text(&mut errs, "ticket.topic", &t.topic, false, 100).to_lowercase())
                }
                "priority" => match priority_str(t.priority) {
                    Some(p) => c.priority = Some(p.to_string()),
                    None => errs.add("ticket.priority", "must be LOW, NORMAL, HIGH or URGENT"),
                },
                "state" => match state_str(t.state) {
                    Some(s) => c.state = Some(s.to_string()),
                    None => errs.add(
                        "ticket.state",
                        "must be NEW, OPEN, WAITING_ON_CUSTOMER, RESOLVED or CLOSED",
                    ),
                },
                "team" => c.team_id = reference_into(&mut errs, &t.team, "teams", "ticket.team"),
                "assignee" => {
                    c.assignee_id = Some(if t.assignee.trim().is_empty() {
                        None
                    } else {
                        reference_into(&mut errs, &t.assignee, "agents", "ticket.assignee")
                    })
                }
                _ => {}
            }
        }
        errs.into_result().map_err(invalid)?;
        let updated = self
            .store
            .update_ticket(
                id,
                &c,
                Some(t.etag.as_str()),
                self.clock.now(),
                &*self.notifier().await,
            )
            .await
            .map_err(from_store)?;
        Ok(Response::new(ticket_to_proto(&updated, pii)))
    }

    async fn add_ticket_comment(
        &self,
        request: Request<proto::AddTicketCommentRequest>,
    ) -> Result<Response<proto::TicketComment>, Status> {
        let scope = ticket_scope(&request);
        let req = request.into_inner();
        let id = reference(&req.parent, "tickets", "parent")?;
        self.ticket_in_scope(id, &scope).await?;
        let Some(c) = req.comment else {
            return Err(invalid_field("comment", "is required"));
        };
        let mut errs = ValidationError::new();
        let body = text(&mut errs, "comment.body", &c.body, true, MAX_BODY);
        let author = (!c.author.trim().is_empty())
            .then(|| reference_into(&mut errs, &c.author, "agents", "comment.author"))
            .flatten();
        errs.into_result().map_err(invalid)?;
        let (comment, _) = self
            .store
            .add_ticket_comment(id, author, &body, c.public, self.clock.now())
            .await
            .map_err(from_store)?;
        Ok(Response::new(comment_to_proto(&comment)))
    }

    async fn list_ticket_comments(
        &self,
        request: Request<proto::ListTicketCommentsRequest>,
    ) -> Result<Response<proto::ListTicketCommentsResponse>, Status> {
        let scope = ticket_scope(&request);
        let req = request.into_inner();
        let id = reference(&req.parent, "tickets", "parent")?;
        let size = page_token::page_size(req.page_size)?;
        let name = ticket_name(id);
        let query = ["comments", name.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        let (list, next) = self
            .store
            .list_ticket_comments(id, size, after.as_ref(), &scope)
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListTicketCommentsResponse {
            comments: list.iter().map(comment_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn resolve_ticket(
        &self,
        request: Request<proto::ResolveTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        let pii = Pii::of(&request);
        let scope = ticket_scope(&request);
        let req = request.into_inner();
        let id = reference(&req.name, "tickets", "name")?;
        self.ticket_in_scope(id, &scope).await?;
        let mut errs = ValidationError::new();
        let resolution = text(&mut errs, "resolution", &req.resolution, false, MAX_BODY);
        let article = (!req.article.trim().is_empty())
            .then(|| reference_into(&mut errs, &req.article, "articles", "article"))
            .flatten();
        errs.into_result().map_err(invalid)?;
        let t = self
            .store
            .resolve_ticket(
                id,
                &resolution,
                article,
                self.clock.now(),
                &*self.notifier().await,
            )
            .await
            .map_err(from_store)?;
        Ok(Response::new(ticket_to_proto(&t, pii)))
    }

    async fn reopen_ticket(
        &self,
        request: Request<proto::ReopenTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        let pii = Pii::of(&request);
        let scope = ticket_scope(&request);
        let req = request.into_inner();
        let id = reference(&req.name, "tickets", "name")?;
        self.ticket_in_scope(id, &scope).await?;
        let mut errs = ValidationError::new();
        let reason = text(&mut errs, "reason", &req.reason, false, MAX_BODY);
        errs.into_result().map_err(invalid)?;
        let t = self
            .store
            .reopen_ticket(id, &reason, self.clock.now())
            .await
            .map_err(from_store)?;
        Ok(Response::new(ticket_to_proto(&t, pii)))
    }

    async fn rate_ticket(
        &self,
        request: Request<proto::RateTicketRequest>,
    ) -> Result<Response<proto::Ticket>, Status> {
        let pii = Pii::of(&request);
        let scope = ticket_scope(&request);
        let req = request.into_inner();
        let id = reference(&req.name, "tickets", "name")?;
        self.ticket_in_scope(id, &scope).await?;
        let mut errs = ValidationError::new();
        if !(1..=5).contains(&req.score) {
            errs.add(
                "score",
                format!("must be between 1 and 5, got {}", req.score),
            );
        }
        let comment = text(&mut errs, "comment", &req.comment, false, 2000);
        errs.into_result().map_err(invalid)?;
        let t = self
            .store
            .rate_ticket(id, req.score as i64, &comment, self.clock.now())
            .await
            .map_err(from_store)?;
        Ok(Response::new(ticket_to_proto(&t, pii)))
    }

    async fn list_overdue_tickets(
        &self,
        request: Request<proto::ListOverdueTicketsRequest>,
    ) -> Result<Response<proto::ListOverdueTicketsResponse>, Status> {
        let pii = Pii::of(&request);
        let scope = ticket_scope(&request);
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let query = ["overdue"];
        let after = page_token::decode(&req.page_token, &query)?;
        let (list, next) = self
            .store
            .list_overdue_tickets(size, after.as_ref(), &scope)
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListOverdueTicketsResponse {
            tickets: list.iter().map(|t| ticket_to_proto(t, pii)).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn create_agent(
        &self,
        request: Request<proto::CreateAgentRequest>,
    ) -> Result<Response<proto::Agent>, Status> {
        let Some(a) = request.into_inner().agent else {
            return Err(invalid_field("agent", "is required"));
        };
        let mut errs = ValidationError::new();
        let mut f = AgentFields {
            active: true,
            ..Default::default()
        };
        check_agent(&a, &[], &mut f, &mut errs);
        errs.into_result().map_err(invalid)?;
        let a = self
            .store
            .create_agent(&f, self.clock.now())
            .await
            .map_err(from_store)?;
        Ok(Response::new(agent_to_proto(&a)))
    }

    async fn get_agent(
        &self,
        request: Request<proto::GetAgentRequest>,
    ) -> Result<Response<proto::Agent>, Status> {
        let id = reference(&request.get_ref().name, "agents", "name")?;
        let a = self.store.get_agent(id).await.map_err(from_store)?;
        Ok(Response::new(agent_to_proto(&a)))
    }

    async fn list_agents(
        &self,
        request: Request<proto::ListAgentsRequest>,
    ) -> Result<Response<proto::ListAgentsResponse>, Status> {
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let query = ["agents"];
        let after = page_token::decode(&req.page_token, &query)?;
        let (list, next) = self
            .store
            .list_agents(size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListAgentsResponse {
            agents: list.iter().map(agent_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn update_agent(
        &self,
        request: Request<proto::UpdateAgentRequest>,
    ) -> Result<Response<proto::Agent>, Status> {
        let req = request.into_inner();
        let Some(a) = req.agent else {
            return Err(invalid_field("agent", "is required"));
        };
        let id = reference(&a.name, "agents", "agent.name")?;
        let paths = mask_paths(&req.update_mask);
        if paths.is_empty() {
            return Err(invalid_field(
                "update_mask",
                format!("is required; paths: {}", AGENT_UPDATABLE.join(", ")),
            ));
        }
        check_mask(&paths, AGENT_UPDATABLE)?;
        let current = self.store.get_agent(id).await.map_err(from_store)?;
        let mut f = current.fields.clone();
        let mut errs = ValidationError::new();
        check_agent(&a, &paths, &mut f, &mut errs);
        errs.into_result().map_err(invalid)?;
        let a = self
            .store
            .update_agent(id, &f, Some(a.etag.as_str()), self.clock.now())
            .await
            .map_err(from_store)?;
        Ok(Response::new(agent_to_proto(&a)))
    }

    async fn create_team(
        &self,
        request: Request<proto::CreateTeamRequest>,
    ) -> Result<Response<proto::Team>, Status> {
        let Some(t) = request.into_inner().team else {
            return Err(invalid_field("team", "is required"));
        };
        let mut errs = ValidationError::new();
        let mut f = TeamFields::default();
        check_team(&t, &[], &mut f, &mut errs);
        errs.into_result().map_err(invalid)?;
        let t = self
            .store
            .create_team(&f, self.clock.now())
            .await
            .map_err(from_store)?;
        Ok(Response::new(team_to_proto(&t)))
    }

    async fn get_team(
        &self,
        request: Request<proto::GetTeamRequest>,
    ) -> Result<Response<proto::Team>, Status> {
        let id = reference(&request.get_ref().name, "teams", "name")?;
        let t = self.store.get_team(id).await.map_err(from_store)?;
        Ok(Response::new(team_to_proto(&t)))
    }

    async fn list_teams(
        &self,
        request: Request<proto::ListTeamsRequest>,
    ) -> Result<Response<proto::ListTeamsResponse>, Status> {
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let query = ["teams"];
        let after = page_token::decode(&req.page_token, &query)?;
        let (list, next) = self
            .store
            .list_teams(size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListTeamsResponse {
            teams: list.iter().map(team_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn update_team(
        &self,
        request: Request<proto::UpdateTeamRequest>,
    ) -> Result<Response<proto::Team>, Status> {
        let req = request.into_inner();
        let Some(t) = req.team else {
            return Err(invalid_field("team", "is required"));
        };
        let id = reference(&t.name, "teams", "team.name")?;
        let paths = mask_paths(&req.update_mask);
        check_mask(&paths, TEAM_UPDATABLE)?;
        let current = self.store.get_team(id).await.map_err(from_store)?;
        let mut f = current.fields.clone();
        let mut errs = ValidationError::new();
        check_team(&t, &paths, &mut f, &mut errs);
        errs.into_result().map_err(invalid)?;
        let t = self
            .store
            .update_team(id, &f, Some(t.etag.as_str()), self.clock.now())
            .await
            .map_err(from_store)?;
        Ok(Response::new(team_to_proto(&t)))
    }

    async fn create_sla_policy(
        &self,
        request: Request<proto::CreateSlaPolicyRequest>,
    ) -> Result<Response<proto::SlaPolicy>, Status> {
        let Some(p) = request.into_inner().sla_policy else {
            return Err(invalid_field("sla_policy", "is required"));
        };
        let mut errs = ValidationError::new();
        let mut f = SlaPolicyFields::default();
        check_policy(&p, &[], &mut f, &mut errs);
        errs.into_result().map_err(invalid)?;
        let p = self
            .store
            .create_sla_policy(&f, self.clock.now())
            .await
            .map_err(from_store)?;
        Ok(Response::new(policy_to_proto(&p)))
    }

    async fn get_sla_policy(
        &self,
        request: Request<proto::GetSlaPolicyRequest>,
    ) -> Result<Response<proto::SlaPolicy>, Status> {
        let id = reference(&request.get_ref().name, "slaPolicies", "name")?;
        let p = self.store.get_sla_policy(id).await.map_err(from_store)?;
        Ok(Response::new(policy_to_proto(&p)))
    }

    async fn list_sla_policies(
        &self,
        request: Request<proto::ListSlaPoliciesRequest>,
    ) -> Result<Response<proto::ListSlaPoliciesResponse>, Status> {
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let query = ["slaPolicies"];
        let after = page_token::decode(&req.page_token, &query)?;
        let (list, next) = self
            .store
            .list_sla_policies(size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListSlaPoliciesResponse {
            sla_policies: list.iter().map(policy_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn update_sla_policy(
        &self,
        request: Request<proto::UpdateSlaPolicyRequest>,
    ) -> Result<Response<proto::SlaPolicy>, Status> {
        let req = request.into_inner();
        let Some(p) = req.sla_policy else {
            return Err(invalid_field("sla_policy", "is required"));
        };
        let id = reference(&p.name, "slaPolicies", "sla_policy.name")?;
        let paths = mask_paths(&req.update_mask);
        check_mask(&paths, POLICY_UPDATABLE)?;
        let current = self.store.get_sla_policy(id).await.map_err(from_store)?;
        let mut f = current.fields.clone();
        let mut errs = ValidationError::new();
        check_policy(&p, &paths, &mut f, &mut errs);
        errs.into_result().map_err(invalid)?;
        let p = self
            .store
            .update_sla_policy(id, &f, Some(p.etag.as_str()), self.clock.now())
            .await
            .map_err(from_store)?;
        Ok(Response::new(policy_to_proto(&p)))
    }

    async fn create_article(
        &self,
        request: Request<proto::CreateArticleRequest>,
    ) -> Result<Response<proto::Article>, Status> {
        articles::create_article(&self.store, request.into_inner(), self.clock.now()).await
    }

    async fn get_article(
        &self,
        request: Request<proto::GetArticleRequest>,
    ) -> Result<Response<proto::Article>, Status> {
        articles::get_article(&self.store, request.into_inner()).await
    }

    async fn list_articles(
        &self,
        request: Request<proto::ListArticlesRequest>,
    ) -> Result<Response<proto::ListArticlesResponse>, Status> {
        articles::list_articles(&self.store, request.into_inner()).await
    }

    async fn update_article(
        &self,
        request: Request<proto::UpdateArticleRequest>,
    ) -> Result<Response<proto::Article>, Status> {
        articles::update_article(&self.store, request.into_inner(), self.clock.now()).await
    }

    async fn search_articles(
        &self,
        request: Request<proto::SearchArticlesRequest>,
    ) -> Result<Response<proto::SearchArticlesResponse>, Status> {
        articles::search_articles(&self.store, request.into_inner()).await
    }

    async fn suggest_articles(
        &self,
        request: Request<proto::SuggestArticlesRequest>,
    ) -> Result<Response<proto::SuggestArticlesResponse>, Status> {
        let scope = ticket_scope(&request);
        articles::suggest_articles(&self.store, request.into_inner(), &scope).await
    }

    async fn get_service_report(
        &self,
        request: Request<proto::GetServiceReportRequest>,
    ) -> Result<Response<proto::GetServiceReportResponse>, Status> {
        report::get_service_report(&self.store, request.into_inner()).await
    }
}
