//! The service report: what the desk did in a period, overall and per group (topic, team,
//! agent, channel, kind). The store reads the few columns of the tickets that matter (created
//! in the period or the one before it, or resolved in the period) and the figures —
//! percentiles included — are computed here in Rust, so both databases give the same answer.

use std::collections::BTreeMap;

use bakkal_domain::time::Micros;
use sqlx::Row;

use crate::{Result, Store};

/// What to group the figures by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportGroupBy {
    Topic,
    Team,
    Agent,
    Channel,
    Kind,
}

/// Figures over one set of tickets (see `ServiceFigures` in the proto for the definitions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceFigures {
    pub opened: i64,
    pub resolved: i64,
    pub unanswered: i64,
    pub median_first_response: Option<Micros>,
    pub p90_first_response: Option<Micros>,
    pub median_resolution: Option<Micros>,
    pub p90_resolution: Option<Micros>,
    pub sla_compliance_percent: f64,
    pub sla_counted: i64,
    pub average_satisfaction: f64,
    pub rated: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicComplaints {
    pub topic: String,
    pub complaints: i64,
    pub previous_complaints: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceReport {
    pub overall: ServiceFigures,
    /// Most opened first, then by key.
    pub groups: Vec<(String, ServiceFigures)>,
    /// At most ten, most complaints first, then by topic.
    pub top_complaint_topics: Vec<TopicComplaints>,
}

/// The columns of one ticket the report reads.
#[derive(Debug, Clone)]
struct Row_ {
    kind: String,
    channel: String,
    topic: String,
    team_id: Option<i64>,
    assignee_id: Option<i64>,
    create_time: Micros,
    first_response_time: Option<Micros>,
    resolved_time: Option<Micros>,
    first_response_business: Option<Micros>,
    resolution_business: Option<Micros>,
    sla_policy_id: Option<i64>,
    sla_status: String,
    satisfaction: Option<i64>,
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p` percent of
/// the values at or below it.
pub fn percentile(sorted: &[Micros], p: u32) -> Option<Micros> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (p as usize * n).div_ceil(100).max(1);
    Some(sorted[rank.min(n) - 1])
}

fn figures<'a>(rows: impl Iterator<Item = &'a Row_>, start: Micros, end: Micros) -> ServiceFigures {
    let mut f = ServiceFigures::default();
    let mut first = Vec::new();
    let mut resolution = Vec::new();
    let mut compliant = 0i64;
    let mut rating_sum = 0i64;
    let in_period = |t: Micros| t >= start && t < end;
    for r in rows {
        if in_period(r.create_time) {
            f.opened += 1;
            if r.first_response_time.is_none() {
                f.unanswered += 1;
            }
            if let Some(b) = r.first_response_business {
                first.push(b);
            }
            if r.sla_policy_id.is_some() {
                f.sla_counted += 1;
                if r.sla_status != "BREACHED" {
                    compliant += 1;
                }
            }
        }
        if r.resolved_time.is_some_and(in_period) {
            f.resolved += 1;
            if let Some(b) = r.resolution_business {
                resolution.push(b);
            }
            if let Some(s) = r.satisfaction {
                f.rated += 1;
                rating_sum += s;
            }
        }
    }
    first.sort_unstable();
    resolution.sort_unstable();
    f.median_first_response = percentile(&first, 50);
    f.p90_first_response = percentile(&first, 90);
    f.median_resolution = percentile(&resolution, 50);
    f.p90_resolution = percentile(&resolution, 90);
    if f.sla_counted > 0 {
        f.sla_compliance_percent = compliant as f64 * 100.0 / f.sla_counted as f64;
    }
    if f.rated > 0 {
        f.average_satisfaction = rating_sum as f64 / f.rated as f64;
    }
    f
}

fn group_key(r: &Row_, by: ReportGroupBy) -> String {
    match by {
        ReportGroupBy::Topic => r.topic.clone(),
        ReportGroupBy::Team => r.team_id.map(|i| format!("teams/{i}")).unwrap_or_default(),
        ReportGroupBy::Agent => r
            .assignee_id
            .map(|i| format!("agents/{i}"))
            .unwrap_or_default(),
        ReportGroupBy::Channel => r.channel.clone(),
        ReportGroupBy::Kind => r.kind.clone(),
    }
}

impl Store {
    /// The report for `[start, end)`; the complaint trend compares with
    /// `[start - (end - start), start)`.
    pub async fn service_report(
        &self,
        start: Micros,
        end: Micros,
        group_by: Option<ReportGroupBy>,
    ) -> Result<ServiceReport> {
        let previous_start = start - (end - start);
        let rows = sqlx::query(
            "SELECT kind, channel, topic, team_id, assignee_id, create_time, first_response_time, \
             resolved_time, first_response_business_micros, resolution_business_micros, \
             sla_policy_id, sla_status, satisfaction FROM tickets \
             WHERE (create_time >= $1 AND create_time < $2) \
                OR (resolved_time >= $3 AND resolved_time < $2)",
        )
        .bind(previous_start)
        .bind(end)
        .bind(start)
        .fetch_all(&mut *self.acquire().await?)
        .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(Row_ {
                    kind: r.try_get(0)?,
                    channel: r.try_get(1)?,
                    topic: r.try_get(2)?,
                    team_id: r.try_get(3)?,
                    assignee_id: r.try_get(4)?,
                    create_time: r.try_get(5)?,
                    first_response_time: r.try_get(6)?,
                    resolved_time: r.try_get(7)?,
                    first_response_business: r.try_get(8)?,
                    resolution_business: r.try_get(9)?,
                    sla_policy_id: r.try_get(10)?,
                    sla_status: r.try_get(11)?,
                    satisfaction: r.try_get(12)?,
                })
            })
            .collect::<std::result::Result<Vec<Row_>, sqlx::Error>>()?;

        let overall = figures(rows.iter(), start, end);
        let mut groups = Vec::new();
        if let Some(by) = group_by {
            let mut by_key: BTreeMap<String, Vec<&Row_>> = BTreeMap::new();
            for r in &rows {
                by_key.entry(group_key(r, by)).or_default().push(r);
            }
            for (key, members) in by_key {
                let f = figures(members.into_iter(), start, end);
                if f.opened > 0 || f.resolved > 0 {
                    groups.push((key, f));
                }
            }
            groups.sort_by(|a, b| b.1.opened.cmp(&a.1.opened).then_with(|| a.0.cmp(&b.0)));
        }

        let mut complaints: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.kind == "COMPLAINT") {
            if r.create_time >= start && r.create_time < end {
                complaints.entry(r.topic.clone()).or_default().0 += 1;
            } else if r.create_time >= previous_start && r.create_time < start {
                complaints.entry(r.topic.clone()).or_default().1 += 1;
            }
        }
        let mut top: Vec<TopicComplaints> = complaints
            .into_iter()
            .filter(|(_, (now, _))| *now > 0)
            .map(|(topic, (now, before))| TopicComplaints {
                topic,
                complaints: now,
                previous_complaints: before,
            })
            .collect();
        top.sort_by(|a, b| {
            b.complaints
                .cmp(&a.complaints)
                .then_with(|| a.topic.cmp(&b.topic))
        });
        top.truncate(10);
        Ok(ServiceReport {
            overall,
            groups,
            top_complaint_topics: top,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 90), Some(7));
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&v, 50), Some(5));
        assert_eq!(percentile(&v, 90), Some(9));
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3], 90), Some(3));
    }
}
