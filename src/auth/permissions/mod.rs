//! The one permission table: every RPC bakkal serves, the permission it needs, and the
//! built-in roles. An RPC missing from the table is denied (a test checks the table against
//! the served descriptor set both ways), and `docs/permissions.md` is generated from it.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

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
    /// Organisations, pipelines, opportunities and their reports.
    Sales,
    Access,
    /// Backups of the database: admin only.
    Backups,
    /// A person's data exported whole: admin and integration only.
    PersonalData,
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

mod docs;
mod roles;
mod table;
#[cfg(test)]
mod tests;

pub use docs::markdown;
pub use roles::{scope_of, BuiltIn, CustomGrant, CustomRoles, Records, BUILT_IN, RECORDS};
pub use table::TABLE;

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
    // every authenticated call looks its path up: an index built once, not a scan of the table
    static INDEX: LazyLock<HashMap<&'static str, &'static Rpc>> =
        LazyLock::new(|| TABLE.iter().map(|r| (r.method, r)).collect());
    let method = path.strip_prefix('/')?;
    INDEX.get(method).copied()
}

/// Every permission name, sorted.
pub fn all_permissions() -> BTreeSet<&'static str> {
    TABLE
        .iter()
        .map(|r| r.permission)
        .chain(EXTRA_PERMISSIONS.iter().map(|(p, _)| *p))
        .collect()
}
