//! Teams and agents: who works the desk, their load, and the least busy agent of a team.

use super::*;

pub(super) async fn write_agent_teams(
    conn: &mut AnyConnection,
    agent: i64,
    teams: &[i64],
) -> Result<()> {
    for &t in teams {
        load_team(conn, t).await?;
    }
    sqlx::query("DELETE FROM agent_teams WHERE agent_id = $1")
        .bind(agent)
        .execute(&mut *conn)
        .await?;
    for &t in teams {
        sqlx::query(
            "INSERT INTO agent_teams (agent_id, team_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(agent)
        .bind(t)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The active agent of `team` with the fewest open tickets (ties: the lower id).
pub(super) async fn least_busy_agent(conn: &mut AnyConnection, team: i64) -> Result<Option<i64>> {
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT a.id FROM agents a JOIN agent_teams m ON m.agent_id = a.id \
         WHERE m.team_id = $1 AND a.active = 1 \
         ORDER BY a.open_tickets, a.id LIMIT 1",
    )
    .bind(team)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id)
}

/// Keep `agents.open_tickets` true when a ticket's assignee or openness changes.
pub(super) async fn adjust_load(
    conn: &mut AnyConnection,
    before: (Option<i64>, bool),
    after: (Option<i64>, bool),
) -> Result<()> {
    if before == after {
        return Ok(());
    }
    for (agent, delta) in [(before, -1i64), (after, 1)]
        .into_iter()
        .filter_map(|((a, open), d)| a.filter(|_| open).map(|a| (a, d)))
    {
        sqlx::query("UPDATE agents SET open_tickets = open_tickets + $1 WHERE id = $2")
            .bind(delta)
            .bind(agent)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    // ---- teams -------------------------------------------------------------------------------

    pub async fn create_team(&self, f: &TeamFields, now: Micros) -> Result<Team> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "INSERT INTO teams (display_name, email, version, create_time, update_time) \
             VALUES ($1, $2, 1, $3, $3) RETURNING {TEAM_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.email.clone())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let t = team_from_row(&row)?;
        tx.audit_call(team_name(t.id));
        tx.commit().await?;
        Ok(t)
    }

    pub async fn get_team(&self, id: i64) -> Result<Team> {
        let mut conn = self.acquire().await?;
        load_team(&mut conn, id).await
    }

    pub async fn list_teams(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Team>, Option<Cursor>)> {
        crate::page::page_by_id(
            &mut *self.acquire().await?,
            "teams",
            TEAM_COLUMNS,
            page_size,
            after,
            team_from_row,
            |t| t.id,
        )
        .await
    }

    pub async fn update_team(
        &self,
        id: i64,
        f: &TeamFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Team> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "teams", id).await?;
        let current = load_team(&mut tx, id).await?;
        check_etag(
            etag,
            &bakkal_domain::customer::etag(current.version),
            &team_name(id),
        )?;
        let sql = format!(
            "UPDATE teams SET display_name = $1, email = $2, version = version + 1, \
             update_time = $3 WHERE id = $4 RETURNING {TEAM_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.email.clone())
            .bind(now)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let t = team_from_row(&row)?;
        tx.audit_call(team_name(t.id));
        tx.commit().await?;
        Ok(t)
    }

    // ---- agents ------------------------------------------------------------------------------

    async fn check_agent_email(
        conn: &mut AnyConnection,
        email: &str,
        except: Option<i64>,
    ) -> Result<()> {
        let holder: Option<i64> = sqlx::query_scalar("SELECT id FROM agents WHERE email = $1")
            .bind(email.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(h) = holder.filter(|h| Some(*h) != except) {
            return Err(StoreError::AlreadyExists {
                existing: agent_name(h),
                field: "agent.email".into(),
                message: format!("an agent with email {email} already exists: agents/{h}"),
            });
        }
        Ok(())
    }

    pub async fn create_agent(&self, f: &AgentFields, now: Micros) -> Result<Agent> {
        let mut tx = self.write_tx().await?;
        Self::check_agent_email(&mut tx, &f.email, None).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO agents (display_name, email, active, version, create_time, update_time) \
             VALUES ($1, $2, $3, 1, $4, $4) RETURNING id",
        )
        .bind(f.display_name.clone())
        .bind(f.email.clone())
        .bind(f.active as i64)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        write_agent_teams(&mut tx, id, &f.team_ids).await?;
        let a = load_agent(&mut tx, id).await?;
        tx.audit_call(agent_name(a.id));
        tx.commit().await?;
        Ok(a)
    }

    pub async fn get_agent(&self, id: i64) -> Result<Agent> {
        let mut conn = self.acquire().await?;
        load_agent(&mut conn, id).await
    }

    pub async fn list_agents(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Agent>, Option<Cursor>)> {
        let mut conn = self.acquire().await?;
        let ids: Vec<(i64,)> =
            sqlx::query_as("SELECT id FROM agents WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(crate::page::after_id(after)?)
                .bind(page_size as i64 + 1)
                .fetch_all(&mut *conn)
                .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            out.push(load_agent(&mut conn, id).await?);
        }
        Ok(split_page(out, page_size, |a| Cursor::Int(a.id, a.id)))
    }

    pub async fn update_agent(
        &self,
        id: i64,
        f: &AgentFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Agent> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "agents", id).await?;
        let current = load_agent(&mut tx, id).await?;
        check_etag(
            etag,
            &bakkal_domain::customer::etag(current.version),
            &agent_name(id),
        )?;
        Self::check_agent_email(&mut tx, &f.email, Some(id)).await?;
        sqlx::query(
            "UPDATE agents SET display_name = $1, email = $2, active = $3, version = version + 1, \
             update_time = $4 WHERE id = $5",
        )
        .bind(f.display_name.clone())
        .bind(f.email.clone())
        .bind(f.active as i64)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        write_agent_teams(&mut tx, id, &f.team_ids).await?;
        let a = load_agent(&mut tx, id).await?;
        tx.audit_call(agent_name(a.id));
        tx.commit().await?;
        Ok(a)
    }
}
