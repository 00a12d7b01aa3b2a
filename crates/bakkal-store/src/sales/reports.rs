//! The pipeline as it stands (or stood at an instant: each opportunity's last history event
//! at or before it), grouped by stage or owner, and the stage conversion figures of a period
//! computed from the history (percentiles in Rust, as the desk's report does).

use std::collections::HashMap;

use bakkal_domain::filter::{Clause, FieldKind};
use bakkal_domain::time::Micros;

use super::opportunities::push_opportunity_clauses;
use super::*;
use crate::args::{Arg, SqlBuilder};
use crate::{percentile, RecordScope, Store};

/// Fields `GetPipeline` filters on. At an instant, stage, owner, amount, currency,
/// probability and forecast category are read as they stood then; customer, organization,
/// source and tags as they are now.
pub const PIPELINE_FILTER_FIELDS: &[(&str, FieldKind)] = &[
    ("stage", FieldKind::Text),
    ("owner", FieldKind::Text),
    ("customer", FieldKind::Text),
    ("organization", FieldKind::Text),
    (
        "forecast_category",
        FieldKind::Enum(&["PIPELINE", "BEST_CASE", "COMMIT", "CLOSED", "OMITTED"]),
    ),
    ("currency", FieldKind::Text),
    ("source", FieldKind::Text),
    ("amount", FieldKind::Number),
    ("probability", FieldKind::Number),
    ("tags", FieldKind::Repeated),
];

/// Fields a history event holds (the rest are read from the opportunity).
const SNAPSHOT_FIELDS: &[&str] = &[
    "stage",
    "owner",
    "forecast_category",
    "currency",
    "amount",
    "probability",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineGroupBy {
    Stage,
    Owner,
}

/// One group of a pipeline view, per currency (amounts in different currencies are never
/// added up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineGroup {
    /// Set when grouped by stage.
    pub stage_id: Option<i64>,
    /// Set when grouped by owner (`users/{id}`, or empty for none).
    pub owner: Option<String>,
    pub currency: String,
    pub count: i64,
    /// Minor units.
    pub amount: i64,
    /// Σ ⌊amount × probability / 100⌋.
    pub weighted_amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineView {
    pub pipeline: Pipeline,
    pub groups: Vec<PipelineGroup>,
}

/// Conversion figures of one stage over a period: stays in the stage that began in the
/// period, how many of them left it for a later stage (an open stage further on, or a won
/// stage), and how many belonged to opportunities that stood in a won or a lost stage at the
/// period's end; time in stage over the stays that ended by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageConversion {
    pub stage_id: i64,
    pub entered: i64,
    pub advanced: i64,
    pub won: i64,
    pub lost: i64,
    pub median_time_in_stage: Option<Micros>,
    pub p90_time_in_stage: Option<Micros>,
}

/// One opportunity's stage at one history event: (opportunity, time, stage), in history order.
type StageStay = (i64, Micros, i64);

/// A run of one opportunity's history in one stage: (stage, entered, and when it left for
/// which stage, if it did).
type Stay = (i64, Micros, Option<(Micros, i64)>);

/// The figures of [`StageConversion`] for `stages` (in order) from `events` (every history
/// event of the pipeline before `end`, ordered by opportunity then history).
fn conversion(
    stages: &[Stage],
    events: &[StageStay],
    start: Micros,
    end: Micros,
) -> Vec<StageConversion> {
    let position: HashMap<i64, &Stage> = stages.iter().map(|s| (s.id, s)).collect();
    let mut figures: HashMap<i64, (StageConversion, Vec<Micros>)> = stages
        .iter()
        .map(|s| {
            (
                s.id,
                (
                    StageConversion {
                        stage_id: s.id,
                        entered: 0,
                        advanced: 0,
                        won: 0,
                        lost: 0,
                        median_time_in_stage: None,
                        p90_time_in_stage: None,
                    },
                    Vec::new(),
                ),
            )
        })
        .collect();
    let mut i = 0;
    while i < events.len() {
        let opp = events[i].0;
        let mut j = i;
        while j < events.len() && events[j].0 == opp && events[j].1 < end {
            j += 1;
        }
        let mine = &events[i..j];
        // the stays: runs of one stage, entered at their first event
        let mut stays: Vec<Stay> = Vec::new();
        for &(_, t, s) in mine {
            match stays.last_mut() {
                Some(last) if last.0 == s => {}
                Some(last) => {
                    last.2 = Some((t, s));
                    stays.push((s, t, None));
                }
                None => stays.push((s, t, None)),
            }
        }
        let final_outcome = stays
            .last()
            .and_then(|(s, _, _)| position.get(s))
            .map(|s| s.outcome);
        for (s, entered, exit) in &stays {
            if *entered < start {
                continue;
            }
            let Some((fig, times)) = figures.get_mut(s) else {
                continue;
            };
            fig.entered += 1;
            if let Some((left, next)) = exit {
                times.push(left - entered);
                if let (Some(from), Some(to)) = (position.get(s), position.get(next)) {
                    let later = to.position > from.position;
                    if later && to.outcome != StageOutcome::Lost {
                        fig.advanced += 1;
                    }
                }
            }
            match final_outcome {
                Some(StageOutcome::Won) => fig.won += 1,
                Some(StageOutcome::Lost) => fig.lost += 1,
                _ => {}
            }
        }
        // skip this opportunity's events at or after `end`
        while j < events.len() && events[j].0 == opp {
            j += 1;
        }
        i = j;
    }
    stages
        .iter()
        .filter_map(|s| figures.remove(&s.id))
        .map(|(mut f, mut times)| {
            times.sort_unstable();
            f.median_time_in_stage = percentile(&times, 50);
            f.p90_time_in_stage = percentile(&times, 90);
            f
        })
        .collect()
}

impl Store {
    /// Pipeline `id` grouped by stage or owner, as it stands now (`as_of` `None`) or as it
    /// stood at `as_of`, over the opportunities `scope` admits (by their current owner).
    pub async fn pipeline_view(
        &self,
        id: i64,
        as_of: Option<Micros>,
        clauses: &[Clause],
        group_by: PipelineGroupBy,
        scope: &RecordScope,
    ) -> Result<PipelineView> {
        let mut conn = self.acquire().await?;
        let pipeline = load_pipeline(&mut conn, id).await?;
        let key = match group_by {
            PipelineGroupBy::Stage => "stage_id",
            PipelineGroupBy::Owner => "owner",
        };
        let (snapshot, current): (Vec<Clause>, Vec<Clause>) = clauses
            .iter()
            .cloned()
            .partition(|c| SNAPSHOT_FIELDS.contains(&c.field.as_str()));
        let mut b = match as_of {
            None => {
                let mut b = SqlBuilder::new(format!(
                    "SELECT CAST(o.{key} AS TEXT), o.currency, COUNT(*), \
                     CAST(SUM(o.amount) AS BIGINT), \
                     CAST(SUM(o.amount * o.probability / 100) AS BIGINT) \
                     FROM opportunities o WHERE o.pipeline_id = "
                ));
                b.arg(Arg::Int(id));
                push_opportunity_clauses(&mut b, clauses, "o.")?;
                b
            }
            Some(t) => {
                let mut b = SqlBuilder::new(format!(
                    "SELECT CAST(e.{key} AS TEXT), e.currency, COUNT(*), \
                     CAST(SUM(e.amount) AS BIGINT), \
                     CAST(SUM(e.amount * e.probability / 100) AS BIGINT) \
                     FROM opportunity_events e JOIN opportunities o ON o.id = e.opportunity_id \
                     WHERE e.pipeline_id = "
                ));
                b.arg(Arg::Int(id));
                b.push(
                    " AND e.id = (SELECT MAX(l.id) FROM opportunity_events l \
                     WHERE l.opportunity_id = e.opportunity_id AND l.time <= ",
                )
                .arg(Arg::Int(t))
                .push(")");
                push_opportunity_clauses(&mut b, &snapshot, "e.")?;
                push_opportunity_clauses(&mut b, &current, "o.")?;
                b
            }
        };
        scope.push_customers(&mut b, "o.");
        let prefix = if as_of.is_some() { "e." } else { "o." };
        b.push(" GROUP BY ")
            .push(prefix)
            .push(key)
            .push(", ")
            .push(prefix)
            .push("currency");
        let rows: Vec<(String, String, i64, i64, i64)> =
            crate::args::bind_as(sqlx::query_as(&b.sql), &b.args)
                .fetch_all(&mut *conn)
                .await?;
        let mut groups: Vec<PipelineGroup> = rows
            .into_iter()
            .map(|(k, currency, count, amount, weighted)| PipelineGroup {
                stage_id: match group_by {
                    PipelineGroupBy::Stage => k.parse().ok(),
                    PipelineGroupBy::Owner => None,
                },
                owner: (group_by == PipelineGroupBy::Owner).then(|| k.clone()),
                currency,
                count,
                amount,
                weighted_amount: weighted,
            })
            .collect();
        let order = |g: &PipelineGroup| {
            g.stage_id
                .and_then(|s| pipeline.stage(s))
                .map(|s| s.position)
                .unwrap_or(i64::MAX)
        };
        groups.sort_by(|a, b| {
            order(a)
                .cmp(&order(b))
                .then_with(|| {
                    let user = |g: &PipelineGroup| {
                        g.owner
                            .as_deref()
                            .and_then(bakkal_domain::customer::owner_id)
                            .unwrap_or(i64::MAX)
                    };
                    user(a).cmp(&user(b))
                })
                .then_with(|| a.currency.cmp(&b.currency))
        });
        Ok(PipelineView { pipeline, groups })
    }

    /// The stage conversion figures of pipeline `id` over `[start, end)`, from the history of
    /// the opportunities `scope` admits.
    pub async fn stage_conversion(
        &self,
        id: i64,
        start: Micros,
        end: Micros,
        scope: &RecordScope,
    ) -> Result<(Pipeline, Vec<StageConversion>)> {
        let mut conn = self.acquire().await?;
        let pipeline = load_pipeline(&mut conn, id).await?;
        let mut b = SqlBuilder::new(
            "SELECT e.opportunity_id, e.time, e.stage_id FROM opportunity_events e \
             JOIN opportunities o ON o.id = e.opportunity_id WHERE e.pipeline_id = ",
        );
        b.arg(Arg::Int(id))
            .push(" AND e.time < ")
            .arg(Arg::Int(end));
        scope.push_customers(&mut b, "o.");
        b.push(" ORDER BY e.opportunity_id, e.time, e.id");
        let events: Vec<StageStay> = crate::args::bind_as(sqlx::query_as(&b.sql), &b.args)
            .fetch_all(&mut *conn)
            .await?;
        let figures = conversion(&pipeline.stages, &events, start, end);
        Ok((pipeline, figures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakkal_domain::sales::ForecastCategory;

    fn stage(id: i64, position: i64, outcome: StageOutcome) -> Stage {
        Stage {
            id,
            pipeline_id: 1,
            position,
            display_name: format!("s{id}"),
            probability: 0,
            forecast_category: ForecastCategory::Pipeline,
            outcome,
        }
    }

    #[test]
    fn conversion_counts_stays_and_times() {
        let stages = [
            stage(1, 0, StageOutcome::Open),
            stage(2, 1, StageOutcome::Open),
            stage(3, 2, StageOutcome::Won),
            stage(4, 3, StageOutcome::Lost),
        ];
        // opp 10: 1 at t=10, 2 at 30, won at 60. opp 11: 1 at 20, lost at 25.
        // opp 12: 1 at 5 (before the period), 2 at 40. opp 13: 1 at 50, 2 at 200 (after end).
        let events = [
            (10, 10, 1),
            (10, 30, 2),
            (10, 60, 3),
            (11, 20, 1),
            (11, 25, 4),
            (12, 5, 1),
            (12, 40, 2),
            (13, 50, 1),
            (13, 200, 2),
        ];
        let f = conversion(&stages, &events, 10, 100);
        let s1 = &f[0];
        assert_eq!((s1.entered, s1.advanced, s1.won, s1.lost), (3, 1, 1, 1));
        // finished stays: 20 (opp 10), 5 (opp 11): nearest-rank median 5, p90 20
        assert_eq!(s1.median_time_in_stage, Some(5));
        assert_eq!(s1.p90_time_in_stage, Some(20));
        let s2 = &f[1];
        assert_eq!((s2.entered, s2.advanced, s2.won, s2.lost), (2, 1, 1, 0));
        assert_eq!(s2.median_time_in_stage, Some(30));
        let won = &f[2];
        assert_eq!(
            (won.entered, won.won, won.median_time_in_stage),
            (1, 1, None)
        );
        assert_eq!((f[3].entered, f[3].lost), (1, 1));
    }
}
