//! The one permission table: every RPC bakkal serves, the permission it needs, and the
//! built-in roles. An RPC missing from the table is denied (a test checks the table against
//! the served descriptor set both ways), and `docs/permissions.md` is generated from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bakkal_domain::access::Scope;

/// Which records a permission is about; built-in roles are defined over families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Customers,
    Scripts,
    Segments,
    Campaigns,
    Offers,
    Loyalty,
    Desk,
    DeskAdmin,
    Access,
    /// Backups of the database: admin only.
    Backups,
    Audit,
}

/// Whether a call only reads, or changes something (audited), or exports data in bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Read,
    Write,
    Export,
}

/// One RPC: `service/method` (without the leading `/`), its permission, family and effect.
#[derive(Debug, Clone, Copy)]
pub struct Rpc {
    pub method: &'static str,
    pub permission: &'static str,
    pub family: Family,
    pub effect: Effect,
}

const fn rpc(
    method: &'static str,
    permission: &'static str,
    family: Family,
    effect: Effect,
) -> Rpc {
    Rpc {
        method,
        permission,
        family,
        effect,
    }
}

use Effect::{Export, Read, Write};
use Family::*;

/// Every RPC and what it needs.
pub const TABLE: &[Rpc] = &[
    // access
    rpc(
        "bakkal.v1.AccessService/GetCallerIdentity",
        "identity.get",
        Access,
        Read,
    ),
    rpc(
        "bakkal.v1.AccessService/CreateUser",
        "users.create",
        Access,
        Write,
    ),
    rpc("bakkal.v1.AccessService/GetUser", "users.get", Access, Read),
    rpc(
        "bakkal.v1.AccessService/ListUsers",
        "users.list",
        Access,
        Read,
    ),
    rpc(
        "bakkal.v1.AccessService/UpdateUser",
        "users.update",
        Access,
        Write,
    ),
    rpc(
        "bakkal.v1.AccessService/CreateServiceAccount",
        "serviceaccounts.create",
        Access,
        Write,
    ),
    rpc(
        "bakkal.v1.AccessService/GetServiceAccount",
        "serviceaccounts.get",
        Access,
        Read,
    ),
    rpc(
        "bakkal.v1.AccessService/ListServiceAccounts",
        "serviceaccounts.list",
        Access,
        Read,
    ),
    rpc(
        "bakkal.v1.AccessService/UpdateServiceAccount",
        "serviceaccounts.update",
        Access,
        Write,
    ),
    rpc(
        "bakkal.v1.AccessService/CreateApiKey",
        "apikeys.create",
        Access,
        Write,
    ),
    rpc(
        "bakkal.v1.AccessService/GetApiKey",
        "apikeys.get",
        Access,
        Read,
    ),
    rpc(
        "bakkal.v1.AccessService/ListApiKeys",
        "apikeys.list",
        Access,
        Read,
    ),
    rpc(
        "bakkal.v1.AccessService/RevokeApiKey",
        "apikeys.revoke",
        Access,
        Write,
    ),
    rpc(
        "bakkal.v1.AccessService/RotateApiKey",
        "apikeys.rotate",
        Access,
        Write,
    ),
    rpc(
        "bakkal.v1.AccessService/ListRoles",
        "roles.list",
        Access,
        Read,
    ),
    rpc(
        "bakkal.v1.AccessService/CreateRole",
        "roles.create",
        Access,
        Write,
    ),
    // customers
    rpc(
        "bakkal.v1.CustomerService/CreateCustomer",
        "customers.create",
        Customers,
        Write,
    ),
    rpc(
        "bakkal.v1.CustomerService/GetCustomer",
        "customers.get",
        Customers,
        Read,
    ),
    rpc(
        "bakkal.v1.CustomerService/ListCustomers",
        "customers.list",
        Customers,
        Read,
    ),
    rpc(
        "bakkal.v1.CustomerService/UpdateCustomer",
        "customers.update",
        Customers,
        Write,
    ),
    rpc(
        "bakkal.v1.CustomerService/DeleteCustomer",
        "customers.delete",
        Customers,
        Write,
    ),
    rpc(
        "bakkal.v1.CustomerService/FindDuplicates",
        "customers.duplicates",
        Customers,
        Read,
    ),
    rpc(
        "bakkal.v1.CustomerService/MergeCustomers",
        "customers.merge",
        Customers,
        Write,
    ),
    rpc(
        "bakkal.v1.CustomerService/RecordInteraction",
        "interactions.record",
        Customers,
        Write,
    ),
    rpc(
        "bakkal.v1.CustomerService/ListInteractions",
        "interactions.list",
        Customers,
        Read,
    ),
    rpc(
        "bakkal.v1.CustomerService/UpsertProduct",
        "products.upsert",
        Customers,
        Write,
    ),
    rpc(
        "bakkal.v1.CustomerService/ListProducts",
        "products.list",
        Customers,
        Read,
    ),
    rpc(
        "bakkal.v1.CustomerService/RecordOrder",
        "orders.record",
        Customers,
        Write,
    ),
    rpc(
        "bakkal.v1.CustomerService/ListOrders",
        "orders.list",
        Customers,
        Read,
    ),
    rpc(
        "bakkal.v1.CustomerService/ImportCustomers",
        "customers.import",
        Customers,
        Write,
    ),
    rpc(
        "bakkal.v1.CustomerService/ExportCustomers",
        "customers.export",
        Customers,
        Export,
    ),
    // scripts
    rpc(
        "bakkal.v1.ScriptService/CreateScript",
        "scripts.create",
        Scripts,
        Write,
    ),
    rpc(
        "bakkal.v1.ScriptService/GetScript",
        "scripts.get",
        Scripts,
        Read,
    ),
    rpc(
        "bakkal.v1.ScriptService/ListScripts",
        "scripts.list",
        Scripts,
        Read,
    ),
    rpc(
        "bakkal.v1.ScriptService/UpdateScript",
        "scripts.update",
        Scripts,
        Write,
    ),
    rpc(
        "bakkal.v1.ScriptService/ListScriptRevisions",
        "scripts.list",
        Scripts,
        Read,
    ),
    rpc(
        "bakkal.v1.ScriptService/ActivateScriptRevision",
        "scripts.activate",
        Scripts,
        Write,
    ),
    rpc(
        "bakkal.v1.ScriptService/ValidateScript",
        "scripts.validate",
        Scripts,
        Read,
    ),
    rpc(
        "bakkal.v1.ScriptService/TestScript",
        "scripts.test",
        Scripts,
        Read,
    ),
    // segments and value
    rpc(
        "bakkal.v1.SegmentService/SetValueModel",
        "valuemodel.set",
        Segments,
        Write,
    ),
    rpc(
        "bakkal.v1.SegmentService/GetValueModel",
        "valuemodel.get",
        Segments,
        Read,
    ),
    rpc(
        "bakkal.v1.SegmentService/ComputeScores",
        "scores.compute",
        Segments,
        Write,
    ),
    rpc(
        "bakkal.v1.SegmentService/GetPyramid",
        "pyramid.get",
        Segments,
        Read,
    ),
    rpc(
        "bakkal.v1.SegmentService/GetCustomerScore",
        "scores.get",
        Segments,
        Read,
    ),
    rpc(
        "bakkal.v1.SegmentService/CreateSegment",
        "segments.create",
        Segments,
        Write,
    ),
    rpc(
        "bakkal.v1.SegmentService/GetSegment",
        "segments.get",
        Segments,
        Read,
    ),
    rpc(
        "bakkal.v1.SegmentService/ListSegments",
        "segments.list",
        Segments,
        Read,
    ),
    rpc(
        "bakkal.v1.SegmentService/PreviewSegment",
        "segments.preview",
        Segments,
        Read,
    ),
    rpc(
        "bakkal.v1.SegmentService/RefreshSegment",
        "segments.refresh",
        Segments,
        Write,
    ),
    rpc(
        "bakkal.v1.SegmentService/ListSegmentMembers",
        "segments.members",
        Segments,
        Read,
    ),
    // campaigns
    rpc(
        "bakkal.v1.CampaignService/CreateCampaign",
        "campaigns.create",
        Campaigns,
        Write,
    ),
    rpc(
        "bakkal.v1.CampaignService/GetCampaign",
        "campaigns.get",
        Campaigns,
        Read,
    ),
    rpc(
        "bakkal.v1.CampaignService/ListCampaigns",
        "campaigns.list",
        Campaigns,
        Read,
    ),
    rpc(
        "bakkal.v1.CampaignService/UpdateCampaign",
        "campaigns.update",
        Campaigns,
        Write,
    ),
    rpc(
        "bakkal.v1.CampaignService/PauseCampaign",
        "campaigns.pause",
        Campaigns,
        Write,
    ),
    rpc(
        "bakkal.v1.CampaignService/ResumeCampaign",
        "campaigns.resume",
        Campaigns,
        Write,
    ),
    rpc(
        "bakkal.v1.CampaignService/LaunchCampaign",
        "campaigns.launch",
        Campaigns,
        Write,
    ),
    rpc(
        "bakkal.v1.CampaignService/GetCampaignRun",
        "campaigns.get",
        Campaigns,
        Read,
    ),
    rpc(
        "bakkal.v1.CampaignService/DryRunCampaign",
        "campaigns.dryrun",
        Campaigns,
        Read,
    ),
    rpc(
        "bakkal.v1.CampaignService/ListMessages",
        "messages.list",
        Campaigns,
        Read,
    ),
    rpc(
        "bakkal.v1.CampaignService/GetMessage",
        "messages.get",
        Campaigns,
        Read,
    ),
    rpc(
        "bakkal.v1.CampaignService/WatchCampaignRun",
        "campaigns.get",
        Campaigns,
        Read,
    ),
    rpc(
        "bakkal.v1.CampaignService/ScheduleCampaign",
        "campaigns.schedule",
        Campaigns,
        Write,
    ),
    rpc(
        "bakkal.v1.CampaignService/GetCampaignReport",
        "campaigns.report",
        Campaigns,
        Read,
    ),
    // offers
    rpc(
        "bakkal.v1.OfferService/GetOffers",
        "offers.get",
        Offers,
        Read,
    ),
    // loyalty
    rpc(
        "bakkal.v1.LoyaltyService/GetLoyaltyProgram",
        "loyaltyprogram.get",
        Loyalty,
        Read,
    ),
    rpc(
        "bakkal.v1.LoyaltyService/UpdateLoyaltyProgram",
        "loyaltyprogram.update",
        Loyalty,
        Write,
    ),
    rpc(
        "bakkal.v1.LoyaltyService/GetLoyaltyAccount",
        "loyalty.get",
        Loyalty,
        Read,
    ),
    rpc(
        "bakkal.v1.LoyaltyService/ListPointsTransactions",
        "loyalty.list",
        Loyalty,
        Read,
    ),
    rpc(
        "bakkal.v1.LoyaltyService/RedeemPoints",
        "loyalty.redeem",
        Loyalty,
        Write,
    ),
    rpc(
        "bakkal.v1.LoyaltyService/AdjustPoints",
        "loyalty.adjust",
        Loyalty,
        Write,
    ),
    rpc(
        "bakkal.v1.LoyaltyService/RunExpirySweep",
        "loyalty.sweep",
        Loyalty,
        Write,
    ),
    // service desk: tickets and the solution pool
    rpc(
        "bakkal.v1.ServiceDeskService/CreateTicket",
        "tickets.create",
        Desk,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/GetTicket",
        "tickets.get",
        Desk,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/ListTickets",
        "tickets.list",
        Desk,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/UpdateTicket",
        "tickets.update",
        Desk,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/AddTicketComment",
        "tickets.comment",
        Desk,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/ListTicketComments",
        "tickets.get",
        Desk,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/ResolveTicket",
        "tickets.resolve",
        Desk,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/ReopenTicket",
        "tickets.reopen",
        Desk,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/RateTicket",
        "tickets.rate",
        Desk,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/ListOverdueTickets",
        "tickets.list",
        Desk,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/GetArticle",
        "articles.get",
        Desk,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/ListArticles",
        "articles.list",
        Desk,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/SearchArticles",
        "articles.search",
        Desk,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/SuggestArticles",
        "articles.search",
        Desk,
        Read,
    ),
    // service desk administration: teams, agents, SLA policies, the pool's articles, reports
    rpc(
        "bakkal.v1.ServiceDeskService/CreateAgent",
        "agents.create",
        DeskAdmin,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/GetAgent",
        "agents.get",
        DeskAdmin,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/ListAgents",
        "agents.list",
        DeskAdmin,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/UpdateAgent",
        "agents.update",
        DeskAdmin,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/CreateTeam",
        "teams.create",
        DeskAdmin,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/GetTeam",
        "teams.get",
        DeskAdmin,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/ListTeams",
        "teams.list",
        DeskAdmin,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/UpdateTeam",
        "teams.update",
        DeskAdmin,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/CreateSlaPolicy",
        "slapolicies.create",
        DeskAdmin,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/GetSlaPolicy",
        "slapolicies.get",
        DeskAdmin,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/ListSlaPolicies",
        "slapolicies.list",
        DeskAdmin,
        Read,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/UpdateSlaPolicy",
        "slapolicies.update",
        DeskAdmin,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/CreateArticle",
        "articles.create",
        DeskAdmin,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/UpdateArticle",
        "articles.update",
        DeskAdmin,
        Write,
    ),
    rpc(
        "bakkal.v1.ServiceDeskService/GetServiceReport",
        "servicereport.get",
        DeskAdmin,
        Read,
    ),
    // backups (admin only)
    rpc(
        "bakkal.v1.BackupService/CreateBackup",
        "backups.create",
        Backups,
        Write,
    ),
    rpc(
        "bakkal.v1.BackupService/ListBackups",
        "backups.list",
        Backups,
        Read,
    ),
    // the audit trail
    rpc(
        "bakkal.v1.AuditService/ListAuditEvents",
        "audit.list",
        Audit,
        Read,
    ),
    rpc(
        "bakkal.v1.AuditService/WatchAuditEvents",
        "audit.watch",
        Audit,
        Read,
    ),
    rpc(
        "bakkal.v1.AuditService/VerifyAuditChain",
        "audit.verify",
        Audit,
        Read,
    ),
];

/// Permissions that are not an RPC's but change what a response holds.
pub const EXTRA_PERMISSIONS: &[(&str, &str)] = &[(
    "customers.pii.read",
    "see e-mail, phone, birth date and street-level data unmasked",
)];

/// The aggregate RPCs: figures over every record of a family, which a caller whose record
/// scope over it is narrower than ALL may not call (PERMISSION_DENIED, checked in the layer).
pub const AGGREGATES: &[(&str, Records)] = &[
    ("bakkal.v1.SegmentService/GetPyramid", Records::Customers),
    (
        "bakkal.v1.CampaignService/GetCampaignReport",
        Records::Customers,
    ),
    (
        "bakkal.v1.ServiceDeskService/GetServiceReport",
        Records::Tickets,
    ),
];

/// The family an aggregate RPC (`service/method`) sums over.
pub fn aggregate_over(method: &str) -> Option<Records> {
    AGGREGATES
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, r)| *r)
}

/// The entry for a request path (`/service/method`).
pub fn lookup(path: &str) -> Option<&'static Rpc> {
    let method = path.strip_prefix('/')?;
    TABLE.iter().find(|r| r.method == method)
}

/// Every permission name, sorted.
pub fn all_permissions() -> BTreeSet<&'static str> {
    TABLE
        .iter()
        .map(|r| r.permission)
        .chain(EXTRA_PERMISSIONS.iter().map(|(p, _)| *p))
        .collect()
}

/// The record families a role's record scope is given for.
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
                 exports with personal data, offers, loyalty points, opening tickets"
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
            BuiltIn::SalesRep => "customers they work with: reads, creates and updates them, records interactions and orders",
            BuiltIn::SalesManager => {
                "a sales rep who also sees their team's and reports' customers and reads \
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
                matches!(r.family, Customers | Offers)
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
            }
            BuiltIn::SalesManager => {
                BuiltIn::SalesRep.grants(r)
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

/// `docs/permissions.md`, generated from the table (a test keeps the file in step).
pub fn markdown() -> String {
    let mut s = String::from(
        "# Permissions\n\n\
         Generated from `src/auth/permissions.rs` (the one permission table); a test fails when \
         this file is stale. Regenerate with `BAKKAL_WRITE_DOCS=1 cargo test --lib auth`.\n\n\
         Every RPC needs the permission in its row; an RPC that is not in the table is denied. \
         Health (`grpc.health.v1.Health`) is always open; reflection needs any valid credential \
         when authentication is on. A principal with several roles has the union of their \
         permissions; custom roles (`AccessService.CreateRole`) list permissions by name and may \
         give a record scope per family.\n\n\
         ## Built-in roles\n\n\
         Record scope (see the README's \"Record scope\"): OWN is the records a user owns or is \
         assigned; TEAM adds those of the users sharing a team with them and of their reports, \
         and tickets queued to their teams; ALL is every record; — means the role gives none \
         of that family. Several roles: the widest. A custom role reaches a family as far as the \
         scope it was created with; one created without scopes adds permissions, not reach (ALL \
         when a principal has only such roles).\n\n\
         | role | what it is for | `customers.pii.read` | customers | tickets |\n\
         |---|---|---|---|---|\n",
    );
    for b in BUILT_IN {
        let scope = |r| b.scope(r).map(Scope::as_str).unwrap_or("—");
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            b.name(),
            b.description(),
            if b.reads_pii() { "yes" } else { "no" },
            scope(Records::Customers),
            scope(Records::Tickets),
        ));
    }
    s.push_str("\n## RPCs\n\n| RPC | permission | effect | roles |\n|---|---|---|---|\n");
    for r in TABLE {
        let roles: Vec<&str> = BUILT_IN
            .iter()
            .filter(|b| b.grants(r))
            .map(|b| b.name())
            .collect();
        s.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            r.method,
            r.permission,
            match r.effect {
                Effect::Read => "read",
                Effect::Write => "write",
                Effect::Export => "export",
            },
            roles.join(", ")
        ));
    }
    s.push_str(
        "\n## Aggregates\n\nThese sum over every record of a family: a caller whose record scope \
         over it is narrower than ALL is denied (PERMISSION_DENIED) even with the permission.\n\n\
         | RPC | over |\n|---|---|\n",
    );
    for (m, r) in AGGREGATES {
        s.push_str(&format!("| `{m}` | {} |\n", r.name()));
    }
    s.push_str(
        "\n## Other permissions\n\n| permission | what it allows | roles |\n|---|---|---|\n",
    );
    for (p, what) in EXTRA_PERMISSIONS {
        let roles: Vec<&str> = BUILT_IN
            .iter()
            .filter(|b| b.permissions().contains(p))
            .map(|b| b.name())
            .collect();
        s.push_str(&format!("| `{p}` | {what} | {} |\n", roles.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// Every RPC in the served descriptor set of bakkal's own services.
    fn served_methods() -> BTreeSet<String> {
        let fds = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut out = BTreeSet::new();
        for f in fds.file {
            let package = f.package().to_string();
            for s in &f.service {
                for m in &s.method {
                    out.insert(format!("{package}.{}/{}", s.name(), m.name()));
                }
            }
        }
        out
    }

    #[test]
    fn every_served_rpc_has_exactly_one_entry_and_every_entry_an_rpc() {
        let served = served_methods();
        let mut seen = BTreeSet::new();
        for r in TABLE {
            assert!(seen.insert(r.method), "{} is in the table twice", r.method);
            assert!(
                served.contains(r.method),
                "{} is in the permission table but not served",
                r.method
            );
        }
        for m in &served {
            assert!(
                seen.contains(m.as_str()),
                "{m} is served but has no entry in the permission table (it would be denied)"
            );
        }
        for (m, _) in AGGREGATES {
            assert!(seen.contains(m), "aggregate {m} is not in the table");
        }
    }

    #[test]
    fn lookup_takes_request_paths() {
        let r = lookup("/bakkal.v1.CustomerService/GetCustomer").unwrap();
        assert_eq!(r.permission, "customers.get");
        assert!(lookup("/bakkal.v1.CustomerService/Nope").is_none());
        assert!(lookup("bakkal.v1.CustomerService/GetCustomer").is_none());
    }

    #[test]
    fn marketers_cannot_export_and_analysts_cannot_write() {
        let export = lookup("/bakkal.v1.CustomerService/ExportCustomers").unwrap();
        assert!(!BuiltIn::Marketer.grants(export));
        assert!(!BuiltIn::Marketer.reads_pii());
        for r in TABLE {
            if r.effect != Effect::Read {
                assert!(!BuiltIn::Analyst.grants(r), "analyst may {}", r.permission);
                assert!(!BuiltIn::Auditor.grants(r), "auditor may {}", r.permission);
            }
        }
    }

    #[test]
    fn several_roles_take_the_widest_scope_of_those_reaching_the_family() {
        let roles = |rs: &[&str]| rs.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let c = Records::Customers;
        let none = CustomRoles::default();
        assert_eq!(scope_of(&roles(&["sales_rep"]), c, &none), Scope::Own);
        assert_eq!(
            scope_of(&roles(&["sales_rep", "sales_manager"]), c, &none),
            Scope::Team
        );
        // the auditor reaches no customers, so it does not widen the rep's scope
        assert_eq!(
            scope_of(&roles(&["sales_rep", "auditor"]), c, &none),
            Scope::Own
        );
        assert_eq!(
            scope_of(&roles(&["sales_rep", "analyst"]), c, &none),
            Scope::All
        );
        assert_eq!(
            scope_of(&roles(&["agent"]), Records::Tickets, &none),
            Scope::Team
        );
        assert_eq!(scope_of(&roles(&[]), Records::Tickets, &none), Scope::Own);
        assert_eq!(scope_of(&roles(&["my_custom"]), c, &none), Scope::All);
        assert_eq!(
            scope_of(&roles(&["sales_rep", "my_custom"]), c, &none),
            Scope::Own
        );
    }

    #[test]
    fn custom_roles_reach_as_far_as_their_scopes_say() {
        let roles = |rs: &[&str]| rs.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let grant = |pairs: &[(&str, Scope)]| CustomGrant {
            permissions: vec!["customers.get".into()],
            scopes: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        let mut book = CustomRoles::new();
        book.insert("own_customers".into(), grant(&[("customers", Scope::Own)]));
        book.insert("team_tickets".into(), grant(&[("tickets", Scope::Team)]));
        book.insert("legacy".into(), grant(&[]));
        let (c, t) = (Records::Customers, Records::Tickets);
        assert_eq!(scope_of(&roles(&["own_customers"]), c, &book), Scope::Own);
        // a scoped custom role gives nothing of a family it does not name
        assert_eq!(scope_of(&roles(&["own_customers"]), t, &book), Scope::Own);
        assert_eq!(scope_of(&roles(&["team_tickets"]), t, &book), Scope::Team);
        // the widest of several
        assert_eq!(
            scope_of(&roles(&["own_customers", "analyst"]), c, &book),
            Scope::All
        );
        assert_eq!(
            scope_of(&roles(&["sales_rep", "team_tickets"]), t, &book),
            Scope::Team
        );
        // an unscoped custom role beside a scoped one no longer reaches everything
        assert_eq!(
            scope_of(&roles(&["legacy", "own_customers"]), c, &book),
            Scope::Own
        );
        assert_eq!(scope_of(&roles(&["legacy"]), c, &book), Scope::All);
    }

    #[test]
    fn the_permissions_doc_is_generated_from_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/permissions.md");
        let want = markdown();
        if std::env::var_os("BAKKAL_WRITE_DOCS").is_some() {
            std::fs::write(path, &want).expect("write docs/permissions.md");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/permissions.md is stale: run BAKKAL_WRITE_DOCS=1 cargo test --lib auth"
        );
    }
}
