//! Tickets and their comments: create (with the customer, interaction, event and messages it implies), read, list, update, resolve, reopen, rate.

use super::*;

pub(super) async fn find_contact(
    conn: &mut AnyConnection,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<Option<i64>> {
    let email_key = email.map(|e| normalise::email_key(e).unwrap_or_else(|_| e.to_string()));
    for (column, value) in [("email_key", email_key.as_deref()), ("phone", phone)] {
        let Some(v) = value else { continue };
        let sql = format!(
            "SELECT id FROM customers WHERE {column} = $1 AND merged_into IS NULL \
             AND deleted_time IS NULL"
        );
        let id: Option<i64> = sqlx::query_scalar(&sql)
            .bind(v.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        if id.is_some() {
            return Ok(id);
        }
    }
    Ok(None)
}

pub(super) async fn write_ticket(conn: &mut AnyConnection, t: &Ticket) -> Result<Ticket> {
    let before: Option<(Option<i64>, String)> =
        sqlx::query_as("SELECT assignee_id, state FROM tickets WHERE id = $1")
            .bind(t.id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((assignee, state)) = before {
        adjust_load(
            conn,
            (assignee, is_open(&state)),
            (t.assignee_id, is_open(&t.state)),
        )
        .await?;
    }
    let sql = format!(
        "UPDATE tickets SET subject = $1, description = $2, topic = $3, priority = $4, \
         state = $5, team_id = $6, assignee_id = $7, first_response_used = $8, \
         resolution_used = $9, clock_start_time = $10, first_response_due_time = $11, \
         resolution_due_time = $12, first_response_time = $13, resolved_time = $14, \
         first_response_business_micros = $15, resolution_business_micros = $16, \
         sla_status = $17, sla_flags = $18, next_sla_check_time = $19, overdue_key = $20, \
         satisfaction = $21, satisfaction_comment = $22, resolution = $23, \
         resolution_article_id = $24, version = version + 1, update_time = $25 \
         WHERE id = $26 RETURNING {TICKET_COLUMNS}"
    );
    let s = &t.sla;
    let row = sqlx::query(&sql)
        .bind(t.subject.clone())
        .bind(t.description.clone())
        .bind(t.topic.clone())
        .bind(t.priority.clone())
        .bind(t.state.clone())
        .bind(t.team_id)
        .bind(t.assignee_id)
        .bind(s.first_response_used)
        .bind(s.resolution_used)
        .bind(s.clock_start)
        .bind(s.first_response_due)
        .bind(s.resolution_due)
        .bind(s.first_response_time)
        .bind(s.resolved_time)
        .bind(s.first_response_business)
        .bind(s.resolution_business)
        .bind(s.status.clone())
        .bind(s.flags)
        .bind(s.next_check)
        .bind(s.overdue_key)
        .bind(t.satisfaction)
        .bind(t.satisfaction_comment.clone())
        .bind(t.resolution.clone())
        .bind(t.resolution_article_id)
        .bind(t.update_time)
        .bind(t.id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(ticket_from_row(&row)?)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn record_interaction(
    conn: &mut AnyConnection,
    t: &Ticket,
    direction: &str,
    kind: &str,
    subject: &str,
    body: &str,
    agent: &str,
    now: Micros,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO interactions (customer_id, channel, direction, kind, subject, body, \
         occurred_time, agent, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7)",
    )
    .bind(t.customer_id)
    .bind(t.channel.clone())
    .bind(direction.to_string())
    .bind(kind.to_string())
    .bind(format!("[{}] {subject}", t.name()))
    .bind(body.to_string())
    .bind(now)
    .bind(agent.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Record the event and queue what the notifier writes for it; a key already in the outbox is
/// skipped. Returns how many messages were queued.
pub(super) async fn emit(
    conn: &mut AnyConnection,
    notify: &Notifier,
    kind: &str,
    clock: &str,
    t: &Ticket,
    now: Micros,
) -> Result<usize> {
    let customer = load_live(conn, t.customer_id).await?;
    let policy = match t.sla_policy_id {
        Some(id) => load_policy(conn, id).await.ok(),
        None => None,
    };
    let payload = serde_json::json!({
        "ticket": t.name(),
        "kind": t.kind,
        "priority": t.priority,
        "state": t.state,
        "clock": clock,
        "team": t.team_id.map(team_name),
        "assignee": t.assignee_id.map(agent_name),
    });
    sqlx::query(
        "INSERT INTO events (kind, customer_id, payload, create_time) VALUES ($1, $2, $3, $4)",
    )
    .bind(kind.to_string())
    .bind(t.customer_id)
    .bind(payload.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let event = DeskEvent {
        kind,
        clock,
        ticket: t,
        customer: &customer,
        policy: policy.as_ref(),
    };
    let mut queued = 0;
    for m in notify(&event) {
        let done = sqlx::query(
            "INSERT INTO outbox_messages (campaign_id, run_id, customer_id, channel, subject, \
             body, idempotency_key, status, attempts, create_time, ticket_id, recipient) \
             VALUES (0, 0, $1, $2, $3, $4, $5, 'QUEUED', 0, $6, $7, $8) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(m.customer_id)
        .bind(m.channel)
        .bind(m.subject)
        .bind(m.body)
        .bind(m.idempotency_key)
        .bind(now)
        .bind(t.id)
        .bind(m.recipient)
        .execute(&mut *conn)
        .await?;
        queued += done.rows_affected() as usize;
    }
    Ok(queued)
}

impl Store {
    // ---- tickets -----------------------------------------------------------------------------

    /// The newest script of `kind` (`ROUTING`), if any.
    pub async fn latest_script_id(&self, kind: &str) -> Result<Option<i64>> {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM scripts WHERE kind = $1 ORDER BY id DESC LIMIT 1")
                .bind(kind.to_string())
                .fetch_optional(&mut *self.acquire().await?)
                .await?;
        Ok(id)
    }

    /// The customer's tier in the pyramid, when scored.
    pub async fn customer_tier(&self, customer_id: i64) -> Result<Option<String>> {
        let tier: Option<String> =
            sqlx::query_scalar("SELECT tier FROM customer_scores WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&mut *self.acquire().await?)
                .await?;
        Ok(tier)
    }

    /// The live customer holding this normalised email (first) or phone, if any.
    pub async fn find_customer_by_contact(
        &self,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Option<Customer>> {
        let mut conn = self.acquire().await?;
        match find_contact(&mut conn, email, phone).await? {
            Some(id) => Ok(Some(load_live(&mut conn, id).await?)),
            None => Ok(None),
        }
    }

    /// Open a ticket (see the module docs for everything that happens with it).
    pub async fn create_ticket(
        &self,
        n: &NewTicket,
        now: Micros,
        notify: &Notifier,
    ) -> Result<Ticket> {
        let result = self.try_create_ticket(n, now, notify).await;
        match result {
            // Two tickets from one unknown contact raced to create the prospect, or one
            // request id raced itself: the second attempt finds what the first wrote.
            Err(e) if e.is_unique_violation() => self.try_create_ticket(n, now, notify).await,
            other => other,
        }
    }

    async fn try_create_ticket(
        &self,
        n: &NewTicket,
        now: Micros,
        notify: &Notifier,
    ) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        if let Some(rid) = &n.request_id {
            let id: Option<i64> =
                sqlx::query_scalar("SELECT id FROM tickets WHERE request_id = $1")
                    .bind(rid.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(id) = id {
                let t = load_ticket(&mut tx, id, "").await?;
                tx.commit().await?;
                return Ok(t);
            }
        }
        let customer_id = match &n.customer {
            TicketCustomer::Id(id) => load_live(&mut tx, *id).await?.id,
            TicketCustomer::Contact {
                email,
                phone,
                display_name,
            } => match find_contact(&mut tx, email.as_deref(), phone.as_deref()).await? {
                Some(id) => id,
                None => {
                    let fields = CustomerFields {
                        display_name: display_name.clone(),
                        email: email.clone(),
                        phone: phone.clone(),
                        ..Default::default()
                    };
                    let id = insert_customer(&mut tx, &fields, now).await?;
                    tx.audit(
                        bakkal_domain::name::customer_name(id),
                        AuditAction::Create,
                        audit::customer_changes(None, &fields),
                    );
                    id
                }
            },
        };
        let team_id = match n.team_id {
            Some(t) => Some(load_team(&mut tx, t).await?.id),
            None => {
                sqlx::query_scalar("SELECT id FROM teams ORDER BY id LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        let assignee_id = match (n.assignee_id, team_id) {
            (Some(a), _) => {
                let agent = load_agent(&mut tx, a).await?;
                if !agent.fields.active {
                    return Err(StoreError::FailedPrecondition(format!(
                        "{} is not active; tickets cannot be assigned to it",
                        agent_name(a)
                    )));
                }
                Some(a)
            }
            (None, Some(team)) => least_busy_agent(&mut tx, team).await?,
            (None, None) => None,
        };
        let priority = n.priority.clone().unwrap_or_else(|| "NORMAL".into());
        let policy = choose_policy(&mut tx, &n.kind, &priority, customer_id).await?;
        let (hours, mut sla) = match &policy {
            Some(p) => (
                p.hours(),
                Sla::start(
                    Some(p.fields.first_response_within),
                    Some(p.fields.resolve_within),
                    p.fields.at_risk_fraction,
                    now,
                ),
            ),
            None => (
                BusinessHours::always(),
                Sla::start(None, None, DEFAULT_AT_RISK_FRACTION, now),
            ),
        };
        sla.refresh(&hours, &n.kind, "NEW");
        let sql = format!(
            "INSERT INTO tickets (customer_id, contact_email, contact_phone, kind, channel, \
             subject, description, topic, priority, state, team_id, assignee_id, sla_policy_id, \
             first_response_target, resolution_target, at_risk_fraction, clock_start_time, \
             first_response_due_time, resolution_due_time, sla_status, next_sla_check_time, \
             overdue_key, request_id, version, create_time, update_time) VALUES ($1, $2, $3, \
             $4, $5, $6, $7, $8, $9, 'NEW', $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
             $20, $21, $22, 1, $16, $16) RETURNING {TICKET_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(customer_id)
            .bind(n.contact_email.clone())
            .bind(n.contact_phone.clone())
            .bind(n.kind.clone())
            .bind(n.channel.clone())
            .bind(n.subject.clone())
            .bind(n.description.clone())
            .bind(n.topic.clone())
            .bind(priority)
            .bind(team_id)
            .bind(assignee_id)
            .bind(policy.as_ref().map(|p| p.id))
            .bind(sla.first_response_target)
            .bind(sla.resolution_target)
            .bind(sla.at_risk_fraction)
            .bind(now)
            .bind(sla.first_response_due)
            .bind(sla.resolution_due)
            .bind(sla.status.clone())
            .bind(sla.next_check)
            .bind(sla.overdue_key)
            .bind(n.request_id.clone())
            .fetch_one(&mut *tx)
            .await?;
        let t = ticket_from_row(&row)?;
        adjust_load(&mut tx, (None, false), (t.assignee_id, true)).await?;
        let kind = format!("ticket_{}", t.kind.to_lowercase());
        record_interaction(
            &mut tx,
            &t,
            "INBOUND",
            &kind,
            &t.subject,
            &t.description,
            "",
            now,
        )
        .await?;
        emit(&mut tx, notify, "ticket_created", "", &t, now).await?;
        tx.audit(t.name(), AuditAction::Create, ticket_changes(None, &t));
        tx.commit().await?;
        Ok(t)
    }

    /// Ticket `id`, if `scope` admits it: one out of scope is not found, with the error of
    /// one that does not exist.
    pub async fn get_ticket(&self, id: i64, scope: &RecordScope) -> Result<Ticket> {
        let mut conn = self.acquire().await?;
        let t = load_ticket(&mut conn, id, "").await?;
        if !scope.admits_ticket(t.assignee_id, t.team_id) {
            return Err(StoreError::NotFound(ticket_name(id)));
        }
        Ok(t)
    }

    /// Tickets matching `clauses` (from [`TICKET_FILTER_FIELDS`]; `team`, `assignee` and
    /// `customer` values are resource names), ordered by `order_by` then id.
    pub async fn list_tickets(
        &self,
        clauses: &[Clause],
        order_by: &str,
        descending: bool,
        page_size: usize,
        after: Option<&Cursor>,
        scope: &RecordScope,
    ) -> Result<(Vec<Ticket>, Option<Cursor>)> {
        let mut b = SqlBuilder::new(format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE 1 = 1"));
        scope.push_tickets(&mut b);
        for cl in clauses {
            let text = match &cl.value {
                Value::Text(t) => t.clone(),
                Value::Number(n) => n.to_string(),
            };
            let op = if cl.op == Op::Ne { " <> " } else { " = " };
            let reference = |collection: &str| {
                bakkal_domain::name::parse_id(&text, collection).ok_or_else(|| {
                    StoreError::Invalid(ValidationError::single(
                        "filter",
                        format!("'{text}' is not a {collection} name like {collection}/3"),
                    ))
                })
            };
            let (column, arg) = match cl.field.as_str() {
                "team" => ("team_id", Arg::Int(reference("teams")?)),
                "assignee" => ("assignee_id", Arg::Int(reference("agents")?)),
                "customer" => ("customer_id", Arg::Int(reference("customers")?)),
                "state" => ("state", Arg::Text(text)),
                "kind" => ("kind", Arg::Text(text)),
                "priority" => ("priority", Arg::Text(text)),
                "sla_status" => ("sla_status", Arg::Text(text)),
                "topic" => ("topic", Arg::Text(text)),
                "channel" => ("channel", Arg::Text(text)),
                other => {
                    return Err(StoreError::Invalid(ValidationError::single(
                        "filter",
                        format!("cannot filter on '{other}'"),
                    )))
                }
            };
            b.push(" AND ").push(column).push(op).arg(arg);
        }
        let column = if order_by == "update_time" {
            "update_time"
        } else {
            "create_time"
        };
        let (cmp, dir) = if descending {
            (" < ", " DESC")
        } else {
            (" > ", " ASC")
        };
        match after {
            Some(Cursor::Int(k, id)) => {
                b.push(" AND (")
                    .push(column)
                    .push(cmp)
                    .arg(Arg::Int(*k))
                    .push(" OR (")
                    .push(column)
                    .push(" = ")
                    .arg(Arg::Int(*k))
                    .push(" AND id")
                    .push(cmp)
                    .arg(Arg::Int(*id))
                    .push("))");
            }
            Some(_) => return Err(crate::customers::bad_token()),
            None => {}
        }
        b.push(" ORDER BY ")
            .push(column)
            .push(dir)
            .push(", id")
            .push(dir)
            .push(" LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let out = rows
            .iter()
            .map(ticket_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let by_update = column == "update_time";
        Ok(split_page(out, page_size, |t| {
            Cursor::Int(
                if by_update {
                    t.update_time
                } else {
                    t.create_time
                },
                t.id,
            )
        }))
    }

    /// Change a ticket's fields and/or state. Only legal state moves; moving to and from
    /// WAITING_ON_CUSTOMER pauses and resumes the clocks; RESOLVED stops them.
    pub async fn update_ticket(
        &self,
        id: i64,
        c: &TicketChanges,
        etag: Option<&str>,
        now: Micros,
        notify: &Notifier,
    ) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let mut t = load_ticket(&mut tx, id, self.row_lock()).await?;
        let before = t.clone();
        check_etag(etag, &t.etag(), &t.name())?;
        if let Some(s) = &c.subject {
            t.subject = s.clone();
        }
        if let Some(s) = &c.description {
            t.description = s.clone();
        }
        if let Some(s) = &c.topic {
            t.topic = s.clone();
        }
        if let Some(p) = &c.priority {
            t.priority = p.clone();
        }
        if let Some(team) = c.team_id {
            t.team_id = Some(load_team(&mut tx, team).await?.id);
        }
        if let Some(a) = c.assignee_id {
            if let Some(a) = a {
                let agent = load_agent(&mut tx, a).await?;
                if !agent.fields.active {
                    return Err(StoreError::FailedPrecondition(format!(
                        "{} is not active; tickets cannot be assigned to it",
                        agent_name(a)
                    )));
                }
            }
            t.assignee_id = a;
        }
        let hours = hours_of(&mut tx, &t).await?;
        let mut resolved = false;
        if let Some(to) = c.state.as_deref().filter(|s| *s != t.state) {
            change_state(&mut t, to, &hours, now)?;
            resolved = to == "RESOLVED";
        }
        t.sla.refresh(&hours, &t.kind, &t.state);
        t.update_time = now;
        let t = write_ticket(&mut tx, &t).await?;
        tx.audit(
            t.name(),
            AuditAction::Update,
            ticket_changes(Some(&before), &t),
        );
        if resolved {
            emit(&mut tx, notify, "ticket_resolved", "", &t, now).await?;
        }
        tx.commit().await?;
        Ok(t)
    }

    /// Add a comment. An agent's first public comment is the first response (a NEW ticket
    /// becomes OPEN); the customer's comment on a ticket waiting on them reopens the clocks.
    pub async fn add_ticket_comment(
        &self,
        ticket_id: i64,
        author_agent_id: Option<i64>,
        body: &str,
        public: bool,
        now: Micros,
    ) -> Result<(TicketComment, Ticket)> {
        let mut tx = self.write_tx().await?;
        let mut t = load_ticket(&mut tx, ticket_id, self.row_lock()).await?;
        let before = t.clone();
        if t.state == "CLOSED" {
            return Err(StoreError::FailedPrecondition(format!(
                "{} is CLOSED; it takes no more comments",
                t.name()
            )));
        }
        let agent = match author_agent_id {
            Some(a) => Some(load_agent(&mut tx, a).await?),
            None => None,
        };
        let sql = format!(
            "INSERT INTO ticket_comments (ticket_id, author_agent_id, body, public, create_time) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {COMMENT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(ticket_id)
            .bind(author_agent_id)
            .bind(body.to_string())
            .bind(public as i64)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let comment = comment_from_row(&row)?;
        let hours = hours_of(&mut tx, &t).await?;
        match (&agent, public) {
            (Some(_), true) => {
                t.sla.first_response(&hours, now);
                if t.state == "NEW" {
                    t.state = "OPEN".into();
                }
            }
            (None, _) if t.state == "WAITING_ON_CUSTOMER" => {
                t.state = "OPEN".into();
                t.sla.resume(now);
            }
            _ => {}
        }
        t.sla.refresh(&hours, &t.kind, &t.state);
        t.update_time = now;
        let t = write_ticket(&mut tx, &t).await?;
        tx.audit(
            t.name(),
            AuditAction::Update,
            ticket_changes(Some(&before), &t),
        );
        let (direction, kind) = match (&agent, public) {
            (_, false) => ("OUTBOUND", "ticket_note"),
            (Some(_), true) => ("OUTBOUND", "ticket_comment"),
            (None, true) => ("INBOUND", "ticket_comment"),
        };
        let agent_label = agent.as_ref().map(|a| a.fields.email.clone());
        record_interaction(
            &mut tx,
            &t,
            direction,
            kind,
            &t.subject,
            body,
            agent_label.as_deref().unwrap_or(""),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((comment, t))
    }

    pub async fn list_ticket_comments(
        &self,
        ticket_id: i64,
        page_size: usize,
        after: Option<&Cursor>,
        scope: &RecordScope,
    ) -> Result<(Vec<TicketComment>, Option<Cursor>)> {
        self.get_ticket(ticket_id, scope).await?;
        let sql = format!(
            "SELECT {COMMENT_COLUMNS} FROM ticket_comments WHERE ticket_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(ticket_id)
            .bind(crate::page::after_id(after)?)
            .bind(page_size as i64 + 1)
            .fetch_all(&mut *self.acquire().await?)
            .await?;
        let out = rows
            .iter()
            .map(comment_from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(split_page(out, page_size, |c| Cursor::Int(c.id, c.id)))
    }

    /// Resolve: the clocks stop, the resolution (and the article used) is kept, the customer
    /// is told. An `article` of the solution pool is checked and its use counted in the same
    /// transaction.
    pub async fn resolve_ticket(
        &self,
        id: i64,
        resolution: &str,
        article_id: Option<i64>,
        now: Micros,
        notify: &Notifier,
    ) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let mut t = load_ticket(&mut tx, id, self.row_lock()).await?;
        let before = t.clone();
        let hours = hours_of(&mut tx, &t).await?;
        change_state(&mut t, "RESOLVED", &hours, now)?;
        if let Some(a) = article_id {
            crate::articles::use_article(&mut tx, a).await?;
        }
        t.resolution = resolution.to_string();
        t.resolution_article_id = article_id;
        t.sla.refresh(&hours, &t.kind, &t.state);
        t.update_time = now;
        let t = write_ticket(&mut tx, &t).await?;
        tx.audit(
            t.name(),
            AuditAction::Update,
            ticket_changes(Some(&before), &t),
        );
        emit(&mut tx, notify, "ticket_resolved", "", &t, now).await?;
        record_interaction(
            &mut tx,
            &t,
            "OUTBOUND",
            "ticket_resolved",
            &t.subject,
            resolution,
            "",
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(t)
    }

    pub async fn reopen_ticket(&self, id: i64, reason: &str, now: Micros) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let mut t = load_ticket(&mut tx, id, self.row_lock()).await?;
        let before = t.clone();
        if t.state != "RESOLVED" {
            return Err(StoreError::FailedPrecondition(format!(
                "{} is {}; only a RESOLVED ticket can be reopened",
                t.name(),
                t.state
            )));
        }
        let hours = hours_of(&mut tx, &t).await?;
        change_state(&mut t, "OPEN", &hours, now)?;
        t.sla.refresh(&hours, &t.kind, &t.state);
        t.update_time = now;
        let t = write_ticket(&mut tx, &t).await?;
        tx.audit(
            t.name(),
            AuditAction::Update,
            ticket_changes(Some(&before), &t),
        );
        record_interaction(
            &mut tx,
            &t,
            "INBOUND",
            "ticket_reopened",
            &t.subject,
            reason,
            "",
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(t)
    }

    pub async fn rate_ticket(
        &self,
        id: i64,
        score: i64,
        comment: &str,
        now: Micros,
    ) -> Result<Ticket> {
        let mut tx = self.write_tx().await?;
        let mut t = load_ticket(&mut tx, id, self.row_lock()).await?;
        let before = t.clone();
        if t.state != "RESOLVED" && t.state != "CLOSED" {
            return Err(StoreError::FailedPrecondition(format!(
                "{} is {}; only a RESOLVED or CLOSED ticket can be rated",
                t.name(),
                t.state
            )));
        }
        if let Some(s) = t.satisfaction {
            return Err(StoreError::FailedPrecondition(format!(
                "{} was already rated {s}",
                t.name()
            )));
        }
        t.satisfaction = Some(score);
        t.satisfaction_comment = comment.to_string();
        t.update_time = now;
        let t = write_ticket(&mut tx, &t).await?;
        tx.audit(
            t.name(),
            AuditAction::Update,
            ticket_changes(Some(&before), &t),
        );
        tx.commit().await?;
        Ok(t)
    }
}

/// Move `t` to `to`, adjusting its clocks; FAILED_PRECONDITION naming the current state when
/// the move is not allowed.
pub(super) fn change_state(
    t: &mut Ticket,
    to: &str,
    hours: &BusinessHours,
    now: Micros,
) -> Result<()> {
    if !legal_transition(&t.state, to) {
        let allowed = next_states(&t.state);
        return Err(StoreError::FailedPrecondition(format!(
            "{} is {}; it can move to {}, not {to}",
            t.name(),
            t.state,
            if allowed.is_empty() {
                "no other state".to_string()
            } else {
                allowed.join(", ")
            }
        )));
    }
    match to {
        "WAITING_ON_CUSTOMER" => t.sla.pause(hours, now),
        "RESOLVED" | "CLOSED" if is_open(&t.state) => t.sla.resolve(hours, now),
        "OPEN" if t.state == "RESOLVED" => t.sla.reopen(now),
        "OPEN" => t.sla.resume(now),
        _ => {}
    }
    t.state = to.to_string();
    Ok(())
}

/// What a ticket's audit event records: the fields that route and track it (its text and
/// contact details stay out of the trail).
pub(super) fn ticket_changes(before: Option<&Ticket>, after: &Ticket) -> Vec<audit::FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: &str, old: Option<String>, new: Option<String>| {
        if old != new {
            out.push(audit::FieldChange {
                field: field.into(),
                before: old,
                after: new,
            });
        }
    };
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    push(
        "state",
        before.and_then(|b| text(&b.state)),
        text(&after.state),
    );
    push(
        "priority",
        before.and_then(|b| text(&b.priority)),
        text(&after.priority),
    );
    push(
        "topic",
        before.and_then(|b| text(&b.topic)),
        text(&after.topic),
    );
    push(
        "team",
        before.and_then(|b| b.team_id.map(team_name)),
        after.team_id.map(team_name),
    );
    push(
        "assignee",
        before.and_then(|b| b.assignee_id.map(agent_name)),
        after.assignee_id.map(agent_name),
    );
    push(
        "sla_status",
        before.and_then(|b| text(&b.sla.status)),
        text(&after.sla.status),
    );
    push(
        "satisfaction",
        before.and_then(|b| b.satisfaction.map(|v| v.to_string())),
        after.satisfaction.map(|v| v.to_string()),
    );
    out
}
