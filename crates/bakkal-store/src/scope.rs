//! Record scope: which customers and tickets one call may read. Every scoped read takes a
//! [`RecordScope`] (there is no default): `All` for admin callers and background work, or
//! `Only` the records of some users (customers by `owner`), agents and teams (tickets by
//! `assignee_id` / `team_id`), turned into the query's WHERE clause here. A record out of
//! scope is not found, with the same error as one that does not exist.

use std::collections::{BTreeSet, HashMap};

use bakkal_domain::access::Scope;
use sqlx::Row;

use crate::access::{decode_list, user_name};
use crate::args::{Arg, SqlBuilder};
use crate::{Result, Store};

/// The records a call may see of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordScope {
    /// Every record: admin callers, and bakkal's own background work.
    All,
    /// Only these.
    Only(Visible),
}

/// Whose records a narrowed scope admits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visible {
    /// Customers owned by these users (`customers.owner = users/{id}`).
    pub users: BTreeSet<i64>,
    /// Tickets assigned to these agents.
    pub agents: BTreeSet<i64>,
    /// Tickets queued to these teams.
    pub teams: BTreeSet<i64>,
}

impl RecordScope {
    /// Nothing at all (a principal no role gives this family to).
    pub fn nothing() -> RecordScope {
        RecordScope::Only(Visible::default())
    }

    pub fn is_all(&self) -> bool {
        matches!(self, RecordScope::All)
    }

    /// Is a customer with this `owner` (`users/{id}` or empty) in scope?
    pub fn admits_owner(&self, owner: &str) -> bool {
        match self {
            RecordScope::All => true,
            RecordScope::Only(v) => bakkal_domain::name::parse_id(owner, "users")
                .is_some_and(|id| v.users.contains(&id)),
        }
    }

    /// Is a ticket with this assignee and team in scope?
    pub fn admits_ticket(&self, assignee: Option<i64>, team: Option<i64>) -> bool {
        match self {
            RecordScope::All => true,
            RecordScope::Only(v) => {
                assignee.is_some_and(|a| v.agents.contains(&a))
                    || team.is_some_and(|t| v.teams.contains(&t))
            }
        }
    }

    /// Append ` AND …` limiting customers (column `owner`, qualified by `table` when given).
    pub(crate) fn push_customers(&self, b: &mut SqlBuilder, table: &str) {
        let RecordScope::Only(v) = self else {
            return;
        };
        if v.users.is_empty() {
            b.push(" AND 1 = 0");
            return;
        }
        b.push(" AND ").push(table).push("owner IN (");
        for (i, u) in v.users.iter().enumerate() {
            if i > 0 {
                b.push(", ");
            }
            b.arg(Arg::Text(user_name(*u)));
        }
        b.push(")");
    }

    /// Append ` AND …` limiting tickets (columns `assignee_id`, `team_id`).
    pub(crate) fn push_tickets(&self, b: &mut SqlBuilder) {
        let RecordScope::Only(v) = self else {
            return;
        };
        if v.agents.is_empty() && v.teams.is_empty() {
            b.push(" AND 1 = 0");
            return;
        }
        b.push(" AND (");
        let mut first = true;
        for (column, ids) in [("assignee_id", &v.agents), ("team_id", &v.teams)] {
            if ids.is_empty() {
                continue;
            }
            if !first {
                b.push(" OR ");
            }
            first = false;
            b.push(column).push(" IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    b.push(", ");
                }
                b.arg(Arg::Int(*id));
            }
            b.push(")");
        }
        b.push(")");
    }
}

/// A staff user's place among the others: what TEAM scopes are built from.
#[derive(Debug, Clone, Default)]
struct Staff {
    teams: HashMap<i64, Vec<i64>>,
    managers: HashMap<i64, Option<i64>>,
    /// agents by the user with the same e-mail
    agents: HashMap<i64, Vec<i64>>,
    agent_teams: HashMap<i64, Vec<i64>>,
}

impl Staff {
    /// `user`'s reports, direct and through other managers.
    fn reports(&self, user: i64) -> BTreeSet<i64> {
        let mut out = BTreeSet::new();
        let mut frontier = vec![user];
        while let Some(m) = frontier.pop() {
            for (&u, &manager) in &self.managers {
                if manager == Some(m) && u != user && out.insert(u) {
                    frontier.push(u);
                }
            }
        }
        out
    }

    /// Users sharing a team with `user` (and `user`).
    fn teammates(&self, user: i64) -> BTreeSet<i64> {
        let mine = self.teams.get(&user).cloned().unwrap_or_default();
        let mut out: BTreeSet<i64> = self
            .teams
            .iter()
            .filter(|(_, ts)| ts.iter().any(|t| mine.contains(t)))
            .map(|(&u, _)| u)
            .collect();
        out.insert(user);
        out
    }

    fn agents_of(&self, users: &BTreeSet<i64>) -> BTreeSet<i64> {
        users
            .iter()
            .flat_map(|u| self.agents.get(u).into_iter().flatten().copied())
            .collect()
    }
}

impl Store {
    /// Every staff user's id (customer owners are checked against them).
    pub async fn user_ids(&self) -> Result<BTreeSet<i64>> {
        let ids: Vec<(i64,)> = sqlx::query_as("SELECT id FROM users")
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn staff(&self) -> Result<Staff> {
        let mut s = Staff::default();
        let rows = sqlx::query("SELECT id, teams, manager_id FROM users")
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        for r in rows {
            let id: i64 = r.try_get(0)?;
            let teams: String = r.try_get(1)?;
            s.teams.insert(id, decode_list(&teams));
            s.managers.insert(id, r.try_get(2)?);
        }
        // An agent is the service-desk profile of the staff user with its e-mail address.
        let rows = sqlx::query(
            "SELECT u.id, a.id FROM users u JOIN agents a ON lower(a.email) = lower(u.email)",
        )
        .fetch_all(&mut *self.acquire().await?)
        .await?;
        for r in rows {
            s.agents
                .entry(r.try_get(0)?)
                .or_default()
                .push(r.try_get(1)?);
        }
        let rows = sqlx::query("SELECT agent_id, team_id FROM agent_teams")
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        for r in rows {
            s.agent_teams
                .entry(r.try_get(0)?)
                .or_default()
                .push(r.try_get(1)?);
        }
        Ok(s)
    }

    /// The customer and ticket scopes of staff user `user` given the scope its roles reach:
    /// OWN: customers they own, tickets assigned to their agent; TEAM: also those of the users
    /// sharing a team with them and of their reports (direct and indirect), and tickets queued
    /// to their teams (the user's and their agent's).
    pub async fn user_scopes(
        &self,
        user: i64,
        customers: Scope,
        tickets: Scope,
    ) -> Result<(RecordScope, RecordScope)> {
        if customers == Scope::All && tickets == Scope::All {
            return Ok((RecordScope::All, RecordScope::All));
        }
        let staff = self.staff().await?;
        let me = BTreeSet::from([user]);
        let customer_scope = match customers {
            Scope::All => RecordScope::All,
            Scope::Own => RecordScope::Only(Visible {
                users: me.clone(),
                ..Visible::default()
            }),
            Scope::Team => {
                let mut users = staff.teammates(user);
                users.extend(staff.reports(user));
                RecordScope::Only(Visible {
                    users,
                    ..Visible::default()
                })
            }
        };
        let ticket_scope = match tickets {
            Scope::All => RecordScope::All,
            Scope::Own => RecordScope::Only(Visible {
                agents: staff.agents_of(&me),
                ..Visible::default()
            }),
            Scope::Team => {
                let own_agents = staff.agents_of(&me);
                let mut people = me.clone();
                people.extend(staff.reports(user));
                let mut teams: BTreeSet<i64> = staff
                    .teams
                    .get(&user)
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect();
                for a in &own_agents {
                    teams.extend(staff.agent_teams.get(a).into_iter().flatten().copied());
                }
                RecordScope::Only(Visible {
                    agents: staff.agents_of(&people),
                    teams,
                    ..Visible::default()
                })
            }
        };
        Ok((customer_scope, ticket_scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admits_the_listed_owners_and_tickets() {
        let s = RecordScope::Only(Visible {
            users: BTreeSet::from([3]),
            agents: BTreeSet::from([7]),
            teams: BTreeSet::from([2]),
        });
        assert!(s.admits_owner("users/3"));
        assert!(!s.admits_owner("users/4"));
        assert!(!s.admits_owner(""));
        assert!(s.admits_ticket(Some(7), None));
        assert!(s.admits_ticket(None, Some(2)));
        assert!(!s.admits_ticket(Some(8), Some(3)));
        assert!(RecordScope::All.admits_owner(""));
        assert!(!RecordScope::nothing().admits_ticket(Some(1), Some(1)));
    }

    #[test]
    fn nothing_is_an_empty_where() {
        let mut b = SqlBuilder::new("SELECT 1 WHERE 1 = 1");
        RecordScope::nothing().push_customers(&mut b, "");
        RecordScope::nothing().push_tickets(&mut b);
        assert_eq!(b.sql, "SELECT 1 WHERE 1 = 1 AND 1 = 0 AND 1 = 0");
        let mut b = SqlBuilder::new("x");
        RecordScope::Only(Visible {
            agents: BTreeSet::from([1, 2]),
            ..Visible::default()
        })
        .push_tickets(&mut b);
        assert_eq!(b.sql, "x AND (assignee_id IN ($1, $2))");
    }

    #[test]
    fn reports_are_found_through_managers() {
        let mut s = Staff::default();
        s.managers.insert(1, None);
        s.managers.insert(2, Some(1));
        s.managers.insert(3, Some(2));
        s.managers.insert(4, None);
        assert_eq!(s.reports(1), BTreeSet::from([2, 3]));
        assert_eq!(s.reports(3), BTreeSet::new());
    }
}
