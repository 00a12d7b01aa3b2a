//! The table against the served descriptor set, and the roles against their documentation.

use std::collections::BTreeSet;

use bakkal_domain::access::Scope;

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
