//! The roles: built-in ones defined over families, custom ones from `AccessService.CreateRole`,
//! and the record scope a set of roles gives.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bakkal_domain::access::Scope;

use super::Family::*;
use super::{Effect, Rpc, TABLE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// Customers (and what hangs off one: orders, interactions, scores, loyalty, offers), by
    /// their owner.
    Customers,
    /// Service-desk tickets, by their assignee and team.
    Tickets,
}

pub const RECORDS: &[Records] = &[Records::Customers, Records::Tickets];

impl Records {
    pub fn name(self) -> &'static str {
        match self {
            Records::Customers => "customers",
            Records::Tickets => "tickets",
        }
    }
}

/// The custom roles (`AccessService.CreateRole`) by name: what each grants and how far it
/// reaches into each record family.
pub type CustomRoles = HashMap<String, CustomGrant>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomGrant {
    pub permissions: Vec<String>,
    /// Record family name (`Records::name`) → scope; a family left out gives no reach.
    pub scopes: BTreeMap<String, Scope>,
}

/// The record scope of a principal with `roles` over `records`: the widest any of its roles
/// gives. A built-in role gives its documented scope, or none of a family it does not serve; a
/// custom role gives the scope it was created with for the family, or none. When no role gives
/// one the principal reaches its own records only (OWN) — except a principal whose roles are all
/// custom roles created without any scopes, which reaches every record (such roles add
/// permissions, not reach, and before roles had scopes that was their meaning).
pub fn scope_of(roles: &[String], records: Records, custom: &CustomRoles) -> Scope {
    let mut widest: Option<Scope> = None;
    let mut unscoped_custom_only = !roles.is_empty();
    for r in roles {
        let given = match BuiltIn::parse(r) {
            Some(b) => {
                unscoped_custom_only = false;
                b.scope(records)
            }
            None => {
                let grant = custom.get(r.as_str());
                if grant.is_some_and(|g| !g.scopes.is_empty()) {
                    unscoped_custom_only = false;
                }
                grant.and_then(|g| g.scopes.get(records.name()).copied())
            }
        };
        widest = widest.max(given);
    }
    match widest {
        Some(s) => s,
        None if unscoped_custom_only => Scope::All,
        None => Scope::Own,
    }
}

/// A built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltIn {
    Admin,
    Integration,
    Marketer,
    Analyst,
    Agent,
    AgentLead,
    SalesRep,
    SalesManager,
    Auditor,
}

pub const BUILT_IN: &[BuiltIn] = &[
    BuiltIn::Admin,
    BuiltIn::Integration,
    BuiltIn::Marketer,
    BuiltIn::Analyst,
    BuiltIn::Agent,
    BuiltIn::AgentLead,
    BuiltIn::SalesRep,
    BuiltIn::SalesManager,
    BuiltIn::Auditor,
];

impl BuiltIn {
    pub fn name(self) -> &'static str {
        match self {
            BuiltIn::Admin => "admin",
            BuiltIn::Integration => "integration",
            BuiltIn::Marketer => "marketer",
            BuiltIn::Analyst => "analyst",
            BuiltIn::Agent => "agent",
            BuiltIn::AgentLead => "agent_lead",
            BuiltIn::SalesRep => "sales_rep",
            BuiltIn::SalesManager => "sales_manager",
            BuiltIn::Auditor => "auditor",
        }
    }

    pub fn parse(name: &str) -> Option<BuiltIn> {
        BUILT_IN.iter().copied().find(|b| b.name() == name)
    }

    pub fn description(self) -> &'static str {
        match self {
            BuiltIn::Admin => "everything, including keys, users and roles",
            BuiltIn::Integration => {
                "backend services: customers, orders, interactions, products, imports and \
                 exports with personal data, a person's data on request, consent events, \
                 offers, loyalty points, opening tickets"
            }
            BuiltIn::Marketer => {
                "scripts, value model, segments, campaigns, offers; reads customers, \
                 never exports them"
            }
            BuiltIn::Analyst => "reads everything but access control and backups",
            BuiltIn::Agent => {
                "the service desk's tickets and solution pool; reads customers and their history"
            }
            BuiltIn::AgentLead => "an agent who also runs teams, agents, SLA policies, articles and the service report",
            BuiltIn::SalesRep => {
                "customers they work with: reads, creates and updates them, records interactions \
                 and orders; organisations, and the opportunities they own in the pipelines"
            }
            BuiltIn::SalesManager => {
                "a sales rep who also sees their team's and reports' customers and \
                 opportunities, runs pipelines, deletes and merges organisations, and reads \
                 segments and campaigns (the pyramid and campaign reports need ALL customers: \
                 denied at TEAM scope)"
            }
            BuiltIn::Auditor => {
                "reads users, service accounts, keys and roles; lists, watches and verifies \
                 the audit trail (personal data masked); identity"
            }
        }
    }

    /// Does this role grant `r`'s permission?
    pub fn grants(self, r: &Rpc) -> bool {
        let read = r.effect == Effect::Read;
        let p = r.permission;
        let base = p == "identity.get";
        base || match self {
            BuiltIn::Admin => true,
            BuiltIn::Integration => {
                matches!(r.family, Customers | Offers | PersonalData)
                    || matches!(
                        p,
                        "loyalty.get"
                            | "loyalty.list"
                            | "loyalty.redeem"
                            | "loyalty.adjust"
                            | "loyaltyprogram.get"
                            | "tickets.create"
                            | "tickets.get"
                            | "scores.get"
                    )
            }
            BuiltIn::Marketer => {
                matches!(r.family, Scripts | Segments | Campaigns | Offers)
                    || (r.family == Customers && read)
                    || p == "loyaltyprogram.get"
            }
            BuiltIn::Analyst => read && !matches!(r.family, Access | Backups | Audit),
            BuiltIn::Agent => {
                r.family == Desk
                    || (r.family == Customers && read)
                    || matches!(
                        p,
                        "loyalty.get" | "loyalty.list" | "agents.get" | "teams.get"
                    )
            }
            BuiltIn::AgentLead => {
                matches!(r.family, Desk | DeskAdmin)
                    || (r.family == Customers && read)
                    || matches!(p, "loyalty.get" | "loyalty.list" | "loyalty.adjust")
            }
            BuiltIn::SalesRep => {
                (r.family == Customers
                    && !matches!(
                        p,
                        "customers.delete"
                            | "customers.merge"
                            | "customers.import"
                            | "customers.export"
                            | "products.upsert"
                    ))
                    || matches!(p, "offers.get" | "scores.get" | "loyalty.get")
                    || (r.family == Sales
                        && !matches!(
                            p,
                            "organizations.delete"
                                | "organizations.merge"
                                | "pipelines.create"
                                | "pipelines.update"
                                | "lostreasons.create"
                        ))
            }
            BuiltIn::SalesManager => {
                BuiltIn::SalesRep.grants(r)
                    || r.family == Sales
                    || matches!(
                        p,
                        "segments.get"
                            | "segments.list"
                            | "segments.members"
                            | "pyramid.get"
                            | "campaigns.get"
                            | "campaigns.list"
                            | "campaigns.report"
                    )
            }
            BuiltIn::Auditor => matches!(r.family, Access | Audit) && read,
        }
    }

    /// How far this role reaches into `records`; `None` when it gives nothing of them (so it
    /// does not widen another role's scope).
    pub fn scope(self, records: Records) -> Option<Scope> {
        use Records::{Customers as C, Tickets as T};
        match (self, records) {
            (BuiltIn::Auditor, _) => None,
            (BuiltIn::SalesRep, C) => Some(Scope::Own),
            (BuiltIn::SalesManager, C) => Some(Scope::Team),
            (BuiltIn::SalesRep | BuiltIn::SalesManager | BuiltIn::Marketer, T) => None,
            (BuiltIn::Agent, T) => Some(Scope::Team),
            _ => Some(Scope::All),
        }
    }

    /// Does this role see personal data unmasked?
    pub fn reads_pii(self) -> bool {
        matches!(
            self,
            BuiltIn::Admin
                | BuiltIn::Integration
                | BuiltIn::Agent
                | BuiltIn::AgentLead
                | BuiltIn::SalesRep
                | BuiltIn::SalesManager
        )
    }

    /// Every permission this role has, sorted.
    pub fn permissions(self) -> BTreeSet<&'static str> {
        let mut out: BTreeSet<&'static str> = TABLE
            .iter()
            .filter(|r| self.grants(r))
            .map(|r| r.permission)
            .collect();
        if self.reads_pii() {
            out.insert("customers.pii.read");
        }
        out
    }
}
