//! SLA policies and their clocks: choosing a ticket's policy, the overdue list and the watcher's pass over due tickets.

use super::*;

/// The most specific policy covering the ticket; ties go to the lower id.
pub(super) async fn choose_policy(
    conn: &mut AnyConnection,
    kind: &str,
    priority: &str,
    customer_id: i64,
) -> Result<Option<SlaPolicy>> {
    let tier: Option<String> =
        sqlx::query_scalar("SELECT tier FROM customer_scores WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(&mut *conn)
            .await?;
    let tier = tier.unwrap_or_default();
    let sql = format!("SELECT {POLICY_COLUMNS} FROM sla_policies ORDER BY id");
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    let mut best: Option<(usize, SlaPolicy)> = None;
    for r in &rows {
        let p = policy_from_row(r)?;
        if let Some(n) = p.specificity(kind, priority, &tier) {
            if best.as_ref().is_none_or(|(b, _)| n > *b) {
                best = Some((n, p));
            }
        }
    }
    Ok(best.map(|(_, p)| p))
}

pub(super) async fn hours_of(conn: &mut AnyConnection, t: &Ticket) -> Result<BusinessHours> {
    Ok(match t.sla_policy_id {
        Some(id) => load_policy(conn, id).await?.hours(),
        None => BusinessHours::always(),
    })
}

impl Store {
    // ---- SLA policies ------------------------------------------------------------------------

    pub async fn create_sla_policy(&self, f: &SlaPolicyFields, now: Micros) -> Result<SlaPolicy> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "INSERT INTO sla_policies (display_name, kinds, priorities, tier, \
             first_response_within, resolve_within, business_hours, at_risk_fraction, version, \
             create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9) \
             RETURNING {POLICY_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.kinds.join(","))
            .bind(f.priorities.join(","))
            .bind(f.tier.clone())
            .bind(f.first_response_within)
            .bind(f.resolve_within)
            .bind(
                f.business_hours
                    .as_ref()
                    .map(|h| serde_json::to_string(h).unwrap_or_default()),
            )
            .bind(f.at_risk_fraction)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let p = policy_from_row(&row)?;
        tx.audit_call(sla_policy_name(p.id));
        tx.commit().await?;
        Ok(p)
    }

    pub async fn get_sla_policy(&self, id: i64) -> Result<SlaPolicy> {
        let mut conn = self.acquire().await?;
        load_policy(&mut conn, id).await
    }

    pub async fn list_sla_policies(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<SlaPolicy>, Option<Cursor>)> {
        crate::page::page_by_id(
            &mut *self.acquire().await?,
            "sla_policies",
            POLICY_COLUMNS,
            page_size,
            after,
            policy_from_row,
            |p| p.id,
        )
        .await
    }

    /// Change a policy. Tickets keep the clocks they were given when they were opened.
    pub async fn update_sla_policy(
        &self,
        id: i64,
        f: &SlaPolicyFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<SlaPolicy> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "sla_policies", id).await?;
        let current = load_policy(&mut tx, id).await?;
        check_etag(
            etag,
            &bakkal_domain::customer::etag(current.version),
            &sla_policy_name(id),
        )?;
        let sql = format!(
            "UPDATE sla_policies SET display_name = $1, kinds = $2, priorities = $3, tier = $4, \
             first_response_within = $5, resolve_within = $6, business_hours = $7, \
             at_risk_fraction = $8, version = version + 1, update_time = $9 WHERE id = $10 \
             RETURNING {POLICY_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(f.display_name.clone())
            .bind(f.kinds.join(","))
            .bind(f.priorities.join(","))
            .bind(f.tier.clone())
            .bind(f.first_response_within)
            .bind(f.resolve_within)
            .bind(
                f.business_hours
                    .as_ref()
                    .map(|h| serde_json::to_string(h).unwrap_or_default()),
            )
            .bind(f.at_risk_fraction)
            .bind(now)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let p = policy_from_row(&row)?;
        tx.audit_call(sla_policy_name(p.id));
        tx.commit().await?;
        Ok(p)
    }

    /// Breached, then at-risk tickets, earliest due first.
    pub async fn list_overdue_tickets(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
        scope: &RecordScope,
    ) -> Result<(Vec<Ticket>, Option<Cursor>)> {
        let (k, id) = match after {
            None => (-1, 0),
            Some(Cursor::Int(k, id)) => (*k, *id),
            Some(_) => return Err(crate::customers::bad_token()),
        };
        let mut b = SqlBuilder::new(format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE overdue_key IS NOT NULL AND (overdue_key > "
        ));
        b.arg(Arg::Int(k))
            .push(" OR (overdue_key = ")
            .arg(Arg::Int(k))
            .push(" AND id > ")
            .arg(Arg::Int(id))
            .push("))");
        scope.push_tickets(&mut b);
        b.push(" ORDER BY overdue_key, id LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let out = rows
            .iter()
            .map(ticket_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(split_page(out, page_size, |t| {
            Cursor::Int(t.sla.overdue_key.unwrap_or(0), t.id)
        }))
    }

    // ---- the SLA watcher ---------------------------------------------------------------------

    /// Is any ticket's next clock mark at or before `now`? (A read, before taking the lock.)
    pub async fn sla_due(&self, now: Micros) -> Result<bool> {
        let due: Option<i64> =
            sqlx::query_scalar("SELECT id FROM tickets WHERE next_sla_check_time <= $1 LIMIT 1")
                .bind(now)
                .fetch_optional(&mut *self.acquire().await?)
                .await?;
        Ok(due.is_some())
    }

    /// One watcher pass: claim up to `limit` tickets whose next mark has passed (rows locked,
    /// skipping those another server holds), record their `sla_at_risk` / `sla_breached`
    /// events and queue the reminders, move their next mark. Returns (tickets, events).
    pub async fn sla_tick(
        &self,
        now: Micros,
        limit: usize,
        notify: &Notifier,
    ) -> Result<(usize, usize)> {
        if !self.sla_due(now).await? {
            return Ok((0, 0));
        }
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE next_sla_check_time <= $1 \
             ORDER BY next_sla_check_time LIMIT $2{lock}"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await?;
        let tickets = rows
            .iter()
            .map(ticket_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut policies: HashMap<i64, BusinessHours> = HashMap::new();
        let mut events = 0;
        for mut t in tickets.into_iter() {
            let hours = match t.sla_policy_id {
                Some(pid) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = policies.entry(pid) {
                        e.insert(load_policy(&mut tx, pid).await?.hours());
                    }
                    policies[&pid].clone()
                }
                None => BusinessHours::always(),
            };
            let before = t.clone();
            let fired: Vec<SlaEvent> = t.sla.due_events(&hours, now);
            t.sla.refresh(&hours, &t.kind, &t.state);
            // the write does not count as a change of the ticket by anyone: keep update_time
            let t = write_ticket(&mut tx, &t).await?;
            let changes = super::tickets::ticket_changes(Some(&before), &t);
            if !changes.is_empty() {
                // attributed to the SLA watcher (its task's call)
                tx.audit(t.name(), AuditAction::Update, changes);
            }
            for e in fired {
                emit(&mut tx, notify, e.kind, e.clock, &t, now).await?;
                events += 1;
            }
        }
        let n = rows.len();
        tx.commit().await?;
        Ok((n, events))
    }
}
