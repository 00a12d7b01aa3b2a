//! Competitors, the list of lost reasons, the competitors of an opportunity (with their role
//! and price position, replaced as a whole in one transaction), and the win/loss report over
//! the opportunities closed in a period.

use std::collections::HashMap;

use bakkal_domain::sales::{competitor_name, lost_reason_name, opportunity_name};
use bakkal_domain::time::Micros;

use super::*;
use crate::args::{bind_as, Arg, SqlBuilder};
use crate::lock::lock_row;
use crate::page::{after_id, split_page, Cursor};
use crate::{RecordScope, Store};

/// What the win/loss report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WinLossGroupBy {
    Competitor,
    LostReason,
    Owner,
    Source,
}

/// One group of the win/loss report, per currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinLossGroup {
    /// `competitors/{id}`, the lost reason (`lostReasons/{id}` or its text), `users/{id}` or
    /// the source; empty for none.
    pub key: String,
    /// The competitor's or lost reason's display name; else the key.
    pub display_name: String,
    pub currency: String,
    pub closed: i64,
    pub won: i64,
    pub lost: i64,
    /// Minor units.
    pub amount_won: i64,
    pub amount_lost: i64,
}

fn competitor_from_row(r: &AnyRow) -> std::result::Result<Competitor, sqlx::Error> {
    Ok(Competitor {
        id: r.try_get(0)?,
        fields: CompetitorFields {
            display_name: r.try_get(1)?,
            website: r.try_get(2)?,
            notes: r.try_get(3)?,
        },
        version: r.try_get(4)?,
        create_time: r.try_get(5)?,
        update_time: r.try_get(6)?,
    })
}

const COMPETITOR_COLUMNS: &str =
    "id, display_name, website, notes, version, create_time, update_time";

async fn load_competitor(conn: &mut AnyConnection, id: i64) -> Result<Competitor> {
    let sql = format!("SELECT {COMPETITOR_COLUMNS} FROM competitors WHERE id = $1");
    match sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(r) => Ok(competitor_from_row(&r)?),
        None => Err(StoreError::NotFound(competitor_name(id))),
    }
}

/// Fill in the competitors of `opportunities`, in one query.
pub(super) async fn attach(
    conn: &mut AnyConnection,
    opportunities: &mut [Opportunity],
) -> Result<()> {
    if opportunities.is_empty() {
        return Ok(());
    }
    let mut b = SqlBuilder::new(
        "SELECT opportunity_id, competitor_id, role, strengths, weaknesses, price_position \
         FROM opportunity_competitors WHERE opportunity_id IN (",
    );
    for (i, o) in opportunities.iter().enumerate() {
        if i > 0 {
            b.push(", ");
        }
        b.arg(Arg::Int(o.id));
    }
    b.push(") ORDER BY opportunity_id, competitor_id");
    let rows: Vec<(i64, i64, String, String, String, String)> =
        bind_as(sqlx::query_as(&b.sql), &b.args)
            .fetch_all(&mut *conn)
            .await?;
    let mut by: HashMap<i64, Vec<OpportunityCompetitor>> = HashMap::new();
    for (opp, competitor_id, role, strengths, weaknesses, price) in rows {
        let role = CompetitorRole::parse(&role).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown competitor role {role:?}").into())
        })?;
        let price_position = PricePosition::parse(&price).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown price position {price:?}").into())
        })?;
        by.entry(opp).or_default().push(OpportunityCompetitor {
            competitor_id,
            role,
            strengths,
            weaknesses,
            price_position,
        });
    }
    for o in opportunities {
        o.competitors = by.remove(&o.id).unwrap_or_default();
    }
    Ok(())
}

/// A lost reason that names the list (`lostReasons/{id}`) must name one in it.
pub(super) async fn check_lost_reason(conn: &mut AnyConnection, reason: &str) -> Result<()> {
    if !reason.starts_with("lostReasons/") {
        return Ok(());
    }
    let Some(id) = bakkal_domain::name::parse_id(reason, "lostReasons") else {
        return Err(invalid(
            "opportunity.lost_reason",
            format!("'{reason}' is not a name like lostReasons/3"),
        ));
    };
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM lost_reasons WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        return Err(invalid(
            "opportunity.lost_reason",
            format!("{} does not exist", lost_reason_name(id)),
        ));
    }
    Ok(())
}

impl Store {
    pub async fn create_competitor(&self, f: &CompetitorFields, now: Micros) -> Result<Competitor> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO competitors (display_name, website, notes, version, create_time, \
             update_time) VALUES ($1, $2, $3, 1, $4, $4) RETURNING id",
        )
        .bind(f.display_name.clone())
        .bind(f.website.clone())
        .bind(f.notes.clone())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let c = load_competitor(&mut tx, id).await?;
        tx.audit_call(competitor_name(id));
        tx.commit().await?;
        Ok(c)
    }

    pub async fn get_competitor(&self, id: i64) -> Result<Competitor> {
        load_competitor(&mut *self.acquire().await?, id).await
    }

    pub async fn list_competitors(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Competitor>, Option<Cursor>)> {
        crate::page::page_by_id(
            &mut *self.acquire().await?,
            "competitors",
            COMPETITOR_COLUMNS,
            page_size,
            after,
            competitor_from_row,
            |c| c.id,
        )
        .await
    }

    pub async fn update_competitor(
        &self,
        id: i64,
        f: &CompetitorFields,
        etag: Option<&str>,
        now: Micros,
    ) -> Result<Competitor> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "competitors", id).await?;
        let current = load_competitor(&mut tx, id).await?;
        check_etag(etag, current.version, &competitor_name(id))?;
        sqlx::query(
            "UPDATE competitors SET display_name = $1, website = $2, notes = $3, \
             version = version + 1, update_time = $4 WHERE id = $5",
        )
        .bind(f.display_name.clone())
        .bind(f.website.clone())
        .bind(f.notes.clone())
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let c = load_competitor(&mut tx, id).await?;
        tx.audit_call(competitor_name(id));
        tx.commit().await?;
        Ok(c)
    }

    pub async fn create_lost_reason(&self, display_name: &str, now: Micros) -> Result<LostReason> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lost_reasons (display_name, create_time) VALUES ($1, $2) RETURNING id",
        )
        .bind(display_name.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.audit_call(lost_reason_name(id));
        tx.commit().await?;
        Ok(LostReason {
            id,
            display_name: display_name.to_string(),
            create_time: now,
        })
    }

    pub async fn list_lost_reasons(
        &self,
        page_size: usize,
        after: Option<&Cursor>,
    ) -> Result<(Vec<LostReason>, Option<Cursor>)> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT id, display_name, create_time FROM lost_reasons WHERE id > $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(after_id(after)?)
        .bind(page_size as i64 + 1)
        .fetch_all(&mut *self.acquire().await?)
        .await?;
        let out = rows
            .into_iter()
            .map(|(id, display_name, create_time)| LostReason {
                id,
                display_name,
                create_time,
            })
            .collect();
        Ok(split_page(out, page_size, |r: &LostReason| {
            Cursor::Int(r.id, r.id)
        }))
    }

    /// Replace the competitors of opportunity `id` (in `scope`), if `etag` still matches.
    pub async fn set_opportunity_competitors(
        &self,
        id: i64,
        competitors: &[OpportunityCompetitor],
        etag: Option<&str>,
        now: Micros,
        scope: &RecordScope,
    ) -> Result<Opportunity> {
        let mut tx = self.write_tx().await?;
        lock_row(&mut tx, "opportunities", id).await?;
        let current = load_opportunity(&mut tx, id).await?;
        if !scope.admits_owner(&current.owner) {
            return Err(StoreError::NotFound(opportunity_name(id)));
        }
        check_etag(etag, current.version, &opportunity_name(id))?;
        for (i, c) in competitors.iter().enumerate() {
            match load_competitor(&mut tx, c.competitor_id).await {
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => {
                    return Err(invalid(
                        &format!("competitors[{i}].competitor"),
                        format!("{} does not exist", competitor_name(c.competitor_id)),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        sqlx::query("DELETE FROM opportunity_competitors WHERE opportunity_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for c in competitors {
            sqlx::query(
                "INSERT INTO opportunity_competitors (opportunity_id, competitor_id, role, \
                 strengths, weaknesses, price_position) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(c.competitor_id)
            .bind(c.role.as_str())
            .bind(c.strengths.clone())
            .bind(c.weaknesses.clone())
            .bind(c.price_position.as_str())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE opportunities SET version = version + 1, update_time = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let o = load_opportunity(&mut tx, id).await?;
        tx.audit_call(opportunity_name(id));
        tx.commit().await?;
        Ok(o)
    }

    /// Opportunities that entered a won or lost stage in `[start, end)` and stand there now
    /// (in `pipeline` when given, in `scope`), grouped; by competitor an opportunity counts
    /// once for each of its competitors, and one without any is not counted.
    pub async fn win_loss_report(
        &self,
        start: Micros,
        end: Micros,
        pipeline: Option<i64>,
        group_by: WinLossGroupBy,
        scope: &RecordScope,
    ) -> Result<Vec<WinLossGroup>> {
        let key = match group_by {
            WinLossGroupBy::Competitor => "CAST(c.competitor_id AS TEXT)",
            WinLossGroupBy::LostReason => {
                "CASE WHEN s.outcome = 'LOST' THEN o.lost_reason ELSE '' END"
            }
            WinLossGroupBy::Owner => "o.owner",
            WinLossGroupBy::Source => "o.source",
        };
        let mut b = SqlBuilder::new(format!(
            "SELECT {key}, o.currency, COUNT(*), \
             SUM(CASE WHEN s.outcome = 'WON' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN s.outcome = 'LOST' THEN 1 ELSE 0 END), \
             CAST(SUM(CASE WHEN s.outcome = 'WON' THEN o.amount ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN s.outcome = 'LOST' THEN o.amount ELSE 0 END) AS BIGINT) \
             FROM opportunities o JOIN pipeline_stages s ON s.id = o.stage_id"
        ));
        if group_by == WinLossGroupBy::Competitor {
            b.push(" JOIN opportunity_competitors c ON c.opportunity_id = o.id");
        }
        b.push(" WHERE s.outcome IN ('WON', 'LOST') AND o.close_time >= ")
            .arg(Arg::Int(start))
            .push(" AND o.close_time < ")
            .arg(Arg::Int(end));
        if let Some(p) = pipeline {
            b.push(" AND o.pipeline_id = ").arg(Arg::Int(p));
        }
        scope.push_customers(&mut b, "o.");
        b.push(" GROUP BY ")
            .push(key)
            .push(", o.currency ORDER BY 1, 2");
        let mut conn = self.acquire().await?;
        let rows: Vec<(String, String, i64, i64, i64, i64, i64)> =
            bind_as(sqlx::query_as(&b.sql), &b.args)
                .fetch_all(&mut *conn)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, currency, closed, won, lost, amount_won, amount_lost) in rows {
            let (key, display_name) = match group_by {
                WinLossGroupBy::Competitor => {
                    let id: i64 = k.parse().unwrap_or_default();
                    let name = load_competitor(&mut conn, id)
                        .await
                        .map(|c| c.fields.display_name)
                        .unwrap_or_default();
                    (competitor_name(id), name)
                }
                WinLossGroupBy::LostReason => {
                    match bakkal_domain::name::parse_id(&k, "lostReasons") {
                        Some(id) => {
                            let name: Option<String> = sqlx::query_scalar(
                                "SELECT display_name FROM lost_reasons WHERE id = $1",
                            )
                            .bind(id)
                            .fetch_optional(&mut *conn)
                            .await?;
                            (k.clone(), name.unwrap_or_default())
                        }
                        None => (k.clone(), k.clone()),
                    }
                }
                _ => (k.clone(), k.clone()),
            };
            out.push(WinLossGroup {
                key,
                display_name,
                currency,
                closed,
                won,
                lost,
                amount_won,
                amount_lost,
            });
        }
        Ok(out)
    }
}
