//! Rows of the desk's tables: mapping a row to its type and loading one by id.

use super::*;

// ---- rows --------------------------------------------------------------------------------

pub(super) const TEAM_COLUMNS: &str = "id, display_name, email, version, create_time, update_time";
pub(super) const AGENT_COLUMNS: &str =
    "id, display_name, email, active, version, create_time, update_time";
pub(super) const POLICY_COLUMNS: &str =
    "id, display_name, kinds, priorities, tier, first_response_within, \
     resolve_within, business_hours, at_risk_fraction, version, create_time, update_time";
pub(super) const TICKET_COLUMNS: &str =
    "id, customer_id, contact_email, contact_phone, kind, channel, \
     subject, description, topic, priority, state, team_id, assignee_id, sla_policy_id, \
     first_response_target, resolution_target, at_risk_fraction, first_response_used, \
     resolution_used, clock_start_time, first_response_due_time, resolution_due_time, \
     first_response_time, resolved_time, first_response_business_micros, \
     resolution_business_micros, sla_status, sla_flags, next_sla_check_time, overdue_key, \
     satisfaction, satisfaction_comment, resolution, resolution_article_id, version, \
     create_time, update_time";
pub(super) const COMMENT_COLUMNS: &str =
    "id, ticket_id, author_agent_id, body, public, create_time";

pub(super) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) fn team_from_row(r: &AnyRow) -> std::result::Result<Team, sqlx::Error> {
    Ok(Team {
        id: r.try_get(0)?,
        fields: TeamFields {
            display_name: r.try_get(1)?,
            email: r.try_get(2)?,
        },
        version: r.try_get(3)?,
        create_time: r.try_get(4)?,
        update_time: r.try_get(5)?,
    })
}

pub(super) fn agent_from_row(r: &AnyRow) -> std::result::Result<Agent, sqlx::Error> {
    let active: i64 = r.try_get(3)?;
    Ok(Agent {
        id: r.try_get(0)?,
        fields: AgentFields {
            display_name: r.try_get(1)?,
            email: r.try_get(2)?,
            team_ids: Vec::new(),
            active: active != 0,
        },
        version: r.try_get(4)?,
        create_time: r.try_get(5)?,
        update_time: r.try_get(6)?,
    })
}

pub(super) fn policy_from_row(r: &AnyRow) -> std::result::Result<SlaPolicy, sqlx::Error> {
    let kinds: String = r.try_get(2)?;
    let priorities: String = r.try_get(3)?;
    let hours: Option<String> = r.try_get(7)?;
    Ok(SlaPolicy {
        id: r.try_get(0)?,
        fields: SlaPolicyFields {
            display_name: r.try_get(1)?,
            kinds: split_list(&kinds),
            priorities: split_list(&priorities),
            tier: r.try_get(4)?,
            first_response_within: r.try_get(5)?,
            resolve_within: r.try_get(6)?,
            business_hours: hours.and_then(|h| serde_json::from_str(&h).ok()),
            at_risk_fraction: r.try_get(8)?,
        },
        version: r.try_get(9)?,
        create_time: r.try_get(10)?,
        update_time: r.try_get(11)?,
    })
}

pub(super) fn ticket_from_row(r: &AnyRow) -> std::result::Result<Ticket, sqlx::Error> {
    Ok(Ticket {
        id: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        contact_email: r.try_get(2)?,
        contact_phone: r.try_get(3)?,
        kind: r.try_get(4)?,
        channel: r.try_get(5)?,
        subject: r.try_get(6)?,
        description: r.try_get(7)?,
        topic: r.try_get(8)?,
        priority: r.try_get(9)?,
        state: r.try_get(10)?,
        team_id: r.try_get(11)?,
        assignee_id: r.try_get(12)?,
        sla_policy_id: r.try_get(13)?,
        sla: Sla {
            first_response_target: r.try_get(14)?,
            resolution_target: r.try_get(15)?,
            at_risk_fraction: r.try_get(16)?,
            first_response_used: r.try_get(17)?,
            resolution_used: r.try_get(18)?,
            clock_start: r.try_get(19)?,
            first_response_due: r.try_get(20)?,
            resolution_due: r.try_get(21)?,
            first_response_time: r.try_get(22)?,
            resolved_time: r.try_get(23)?,
            first_response_business: r.try_get(24)?,
            resolution_business: r.try_get(25)?,
            status: r.try_get(26)?,
            flags: r.try_get(27)?,
            next_check: r.try_get(28)?,
            overdue_key: r.try_get(29)?,
        },
        satisfaction: r.try_get(30)?,
        satisfaction_comment: r.try_get(31)?,
        resolution: r.try_get(32)?,
        resolution_article_id: r.try_get(33)?,
        version: r.try_get(34)?,
        create_time: r.try_get(35)?,
        update_time: r.try_get(36)?,
    })
}

pub(super) fn comment_from_row(r: &AnyRow) -> std::result::Result<TicketComment, sqlx::Error> {
    let public: i64 = r.try_get(4)?;
    Ok(TicketComment {
        id: r.try_get(0)?,
        ticket_id: r.try_get(1)?,
        author_agent_id: r.try_get(2)?,
        body: r.try_get(3)?,
        public: public != 0,
        create_time: r.try_get(5)?,
    })
}

pub(super) fn check_etag(etag: Option<&str>, current: &str, name: &str) -> Result<()> {
    if let Some(e) = etag.filter(|e| !e.is_empty()) {
        if e != current {
            return Err(StoreError::Aborted(format!(
                "{name} changed since etag {e}"
            )));
        }
    }
    Ok(())
}

// ---- helpers inside a transaction ---------------------------------------------------------

pub(super) async fn load_team(conn: &mut AnyConnection, id: i64) -> Result<Team> {
    let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1");
    match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(team_from_row(&r)?),
        None => Err(StoreError::NotFound(team_name(id))),
    }
}

pub(super) async fn load_agent(conn: &mut AnyConnection, id: i64) -> Result<Agent> {
    let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1");
    let Some(r) = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Err(StoreError::NotFound(agent_name(id)));
    };
    let mut a = agent_from_row(&r)?;
    let teams: Vec<(i64,)> =
        sqlx::query_as("SELECT team_id FROM agent_teams WHERE agent_id = $1 ORDER BY team_id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    a.fields.team_ids = teams.into_iter().map(|(t,)| t).collect();
    Ok(a)
}

pub(super) async fn load_policy(conn: &mut AnyConnection, id: i64) -> Result<SlaPolicy> {
    let sql = format!("SELECT {POLICY_COLUMNS} FROM sla_policies WHERE id = $1");
    match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(policy_from_row(&r)?),
        None => Err(StoreError::NotFound(sla_policy_name(id))),
    }
}

/// `lock`: `" FOR UPDATE"` on PostgreSQL (see [`Store::row_lock`]), empty otherwise.
pub(super) async fn load_ticket(conn: &mut AnyConnection, id: i64, lock: &str) -> Result<Ticket> {
    let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1{lock}");
    match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(ticket_from_row(&r)?),
        None => Err(StoreError::NotFound(ticket_name(id))),
    }
}
