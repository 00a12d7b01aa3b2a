//! Erasing a person everywhere, in the erasing transaction: what identifies them goes, what
//! the business's figures need stays anonymous (orders, as before; tickets' SLA figures and
//! the counts of messages sent, their text cleared; the decisions of consent events, their
//! free text cleared; opportunities, their names and notes cleared).

use sqlx::AnyConnection;

use super::whose;
use crate::Result;

/// Every statement of an erasure after the customer row's own (`$1`: the customer's id).
const ERASE: &[&str] = &[
    "DELETE FROM interactions WHERE customer_id = $1",
    concat!(
        "DELETE FROM ticket_comments WHERE ticket_id IN (SELECT id FROM tickets WHERE ",
        whose!(),
        ")"
    ),
    // not yet sent: never sent; sent or being sent: kept for the counts, text cleared
    concat!(
        "DELETE FROM outbox_messages WHERE status IN ('QUEUED', 'FAILED') AND (",
        whose!(),
        " OR ticket_id IN (SELECT id FROM tickets WHERE ",
        whose!(),
        "))"
    ),
    concat!(
        "UPDATE outbox_messages SET subject = '', body = '', recipient = '', last_error = '' \
         WHERE ",
        whose!(),
        " OR ticket_id IN (SELECT id FROM tickets WHERE ",
        whose!(),
        ")"
    ),
    concat!(
        "UPDATE tickets SET contact_email = '', contact_phone = '', subject = '(erased)', \
         description = '', satisfaction_comment = '', resolution = '' WHERE ",
        whose!()
    ),
    concat!("DELETE FROM points_transactions WHERE ", whose!()),
    concat!("DELETE FROM loyalty_accounts WHERE ", whose!()),
    concat!("DELETE FROM customer_scores WHERE ", whose!()),
    concat!(
        "UPDATE segments SET member_count = member_count - \
         (SELECT COUNT(*) FROM segment_members m WHERE m.segment_id = segments.id AND \
         (m.customer_id = $1 OR m.customer_id IN \
         (SELECT id FROM customers WHERE merged_into = $1))) WHERE id IN (SELECT segment_id FROM segment_members WHERE ",
        whose!(),
        ")"
    ),
    concat!("DELETE FROM segment_members WHERE ", whose!()),
    concat!("DELETE FROM events WHERE ", whose!()),
    // deals stay for the pipeline's figures and history (amounts, stages, owners: no
    // personal data); what a rep wrote about the person goes
    concat!(
        "UPDATE opportunities SET display_name = '(erased)', next_step = '', tags = '', \
         attributes = '{}' WHERE ",
        whose!()
    ),
];

/// Erase customer `id`'s records in every table (see [`ERASE`]) and the free text of their
/// consent events.
pub(crate) async fn erase_everywhere(conn: &mut AnyConnection, id: i64) -> Result<()> {
    for sql in ERASE {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    super::consent::scrub(conn, id).await
}
