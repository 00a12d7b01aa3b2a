//! Interactions: every contact on every channel, on the customer's timeline, newest first.

use bakkal_domain::filter::{Clause, FieldKind};
use bakkal_domain::{Direction, Interaction, InteractionChannel};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::args::{bind, Arg, SqlBuilder};
use crate::customers::load_live;
use crate::page::Cursor;
use crate::{Result, Store};

/// Fields `ListInteractions` filters on.
pub const INTERACTION_FILTER_FIELDS: &[(&str, FieldKind)] = &[
    (
        "channel",
        FieldKind::Enum(&[
            "PHONE",
            "EMAIL",
            "SMS",
            "SOCIAL",
            "WEB",
            "STORE",
            "CALL_CENTRE",
        ]),
    ),
    ("direction", FieldKind::Enum(&["INBOUND", "OUTBOUND"])),
    ("kind", FieldKind::Text),
    ("agent", FieldKind::Text),
];

const COLUMNS: &str =
    "id, customer_id, channel, direction, kind, subject, body, occurred_time, agent, create_time";

fn from_row(r: &AnyRow) -> std::result::Result<Interaction, sqlx::Error> {
    let channel: String = r.try_get(2)?;
    let direction: String = r.try_get(3)?;
    Ok(Interaction {
        id: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        channel: InteractionChannel::parse(&channel).unwrap_or(InteractionChannel::Web),
        direction: Direction::parse(&direction).unwrap_or(Direction::Inbound),
        kind: r.try_get(4)?,
        subject: r.try_get(5)?,
        body: r.try_get(6)?,
        occurred_time: r.try_get(7)?,
        agent: r.try_get(8)?,
        create_time: r.try_get(9)?,
    })
}

impl Store {
    /// Record an interaction on the timeline of `i.customer_id` (merges followed).
    pub async fn record_interaction(&self, mut i: Interaction) -> Result<Interaction> {
        let mut tx = self.write_tx().await?;
        let c = load_live(&mut tx, i.customer_id).await?;
        i.customer_id = c.id;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO interactions (customer_id, channel, direction, kind, subject, body, \
             occurred_time, agent, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING id",
        )
        .bind(i.customer_id)
        .bind(i.channel.as_str())
        .bind(i.direction.as_str())
        .bind(i.kind.clone())
        .bind(i.subject.clone())
        .bind(i.body.clone())
        .bind(i.occurred_time)
        .bind(i.agent.clone())
        .bind(i.create_time)
        .fetch_one(&mut *tx)
        .await?;
        tx.audit(
            bakkal_domain::name::interaction_name(i.customer_id, id),
            bakkal_domain::audit::AuditAction::Record,
            Vec::new(),
        );
        tx.commit().await?;
        i.id = id;
        Ok(i)
    }

    /// A customer's interactions matching `clauses`, newest first.
    pub async fn list_interactions(
        &self,
        customer_id: i64,
        clauses: &[Clause],
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Interaction>, Option<Cursor>)> {
        let mut conn = self.acquire().await?;
        let c = load_live(&mut conn, customer_id).await?;
        let mut b = SqlBuilder::new(format!(
            "SELECT {COLUMNS} FROM interactions WHERE customer_id = "
        ));
        b.arg(Arg::Int(c.id));
        for cl in clauses {
            // field names come from INTERACTION_FILTER_FIELDS, never from the caller's text
            b.push(" AND ")
                .push(&cl.field)
                .push(" ")
                .push(cl.op.sql())
                .push(" ")
                .arg(Arg::Text(match &cl.value {
                    bakkal_domain::filter::Value::Text(t) => t.clone(),
                    bakkal_domain::filter::Value::Number(n) => n.to_string(),
                }));
        }
        match after {
            Some(Cursor::Int(t, id)) => {
                b.push(" AND (occurred_time < ")
                    .arg(Arg::Int(*t))
                    .push(" OR (occurred_time = ")
                    .arg(Arg::Int(*t))
                    .push(" AND id < ")
                    .arg(Arg::Int(*id))
                    .push("))");
            }
            Some(_) => return Err(crate::customers::bad_token()),
            None => {}
        }
        b.push(" ORDER BY occurred_time DESC, id DESC LIMIT ")
            .arg(Arg::Int(page_size as i64 + 1));
        let rows = bind(sqlx::query(&b.sql), &b.args)
            .fetch_all(&mut *conn)
            .await?;
        let out = rows
            .iter()
            .map(from_row)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (out, next) =
            crate::page::split_page(out, page_size, |i| Cursor::Int(i.occurred_time, i.id));
        Ok((out, next))
    }
}
