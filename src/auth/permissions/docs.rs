//! `docs/permissions.md`, written from the table.

use bakkal_domain::access::Scope;

use super::{Effect, Records, AGGREGATES, BUILT_IN, EXTRA_PERMISSIONS, TABLE};

pub fn markdown() -> String {
    let mut s = String::from(
        "# Permissions\n\n\
         Generated from `src/auth/permissions/table.rs` (the one permission table); a test fails when \
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
