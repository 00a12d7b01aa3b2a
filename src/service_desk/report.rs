//! GetServiceReport: the desk's figures for a period, overall and per group, with the topics
//! that drew most complaints and their change against the period before.

use bakkal_domain::time::{Micros, MICROS_PER_DAY};
use bakkal_domain::ValidationError;
use bakkal_store::{ReportGroupBy, ServiceFigures, Store};
use tonic::{Response, Status};

use crate::convert::{micros, timestamp};
use crate::proto::{self, ServiceReportGroupBy};
use crate::status::{from_store, invalid};

/// The longest period a report covers.
const MAX_DAYS: i64 = 366;

fn duration(m: Option<Micros>) -> Option<prost_types::Duration> {
    m.map(|m| prost_types::Duration {
        seconds: m.div_euclid(1_000_000),
        nanos: (m.rem_euclid(1_000_000) * 1000) as i32,
    })
}

fn figures_to_proto(f: &ServiceFigures) -> proto::ServiceFigures {
    proto::ServiceFigures {
        opened: f.opened,
        resolved: f.resolved,
        unanswered: f.unanswered,
        median_first_response: duration(f.median_first_response),
        p90_first_response: duration(f.p90_first_response),
        median_resolution: duration(f.median_resolution),
        p90_resolution: duration(f.p90_resolution),
        sla_compliance_percent: f.sla_compliance_percent,
        sla_counted: f.sla_counted,
        average_satisfaction: f.average_satisfaction,
        rated: f.rated,
    }
}

pub async fn get_service_report(
    store: &Store,
    req: proto::GetServiceReportRequest,
) -> Result<Response<proto::GetServiceReportResponse>, Status> {
    let mut errs = ValidationError::new();
    let start = match &req.start_time {
        Some(t) => micros(t, "start_time", &mut errs),
        None => {
            errs.add("start_time", "is required");
            None
        }
    };
    let end = match &req.end_time {
        Some(t) => micros(t, "end_time", &mut errs),
        None => {
            errs.add("end_time", "is required");
            None
        }
    };
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            errs.add("end_time", "must be after start_time");
        } else if e - s > MAX_DAYS * MICROS_PER_DAY {
            errs.add("end_time", format!("the period is at most {MAX_DAYS} days"));
        }
    }
    let group_by = match ServiceReportGroupBy::try_from(req.group_by) {
        Ok(ServiceReportGroupBy::Unspecified) => None,
        Ok(ServiceReportGroupBy::Topic) => Some(ReportGroupBy::Topic),
        Ok(ServiceReportGroupBy::Team) => Some(ReportGroupBy::Team),
        Ok(ServiceReportGroupBy::Agent) => Some(ReportGroupBy::Agent),
        Ok(ServiceReportGroupBy::Channel) => Some(ReportGroupBy::Channel),
        Ok(ServiceReportGroupBy::Kind) => Some(ReportGroupBy::Kind),
        Err(_) => {
            errs.add("group_by", format!("unknown value {}", req.group_by));
            None
        }
    };
    errs.into_result().map_err(invalid)?;
    let (start, end) = (start.unwrap_or_default(), end.unwrap_or_default());
    let report = store
        .service_report(start, end, group_by)
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::GetServiceReportResponse {
        start_time: Some(timestamp(start)),
        end_time: Some(timestamp(end)),
        overall: Some(figures_to_proto(&report.overall)),
        groups: report
            .groups
            .iter()
            .map(|(key, f)| proto::ServiceReportGroup {
                key: key.clone(),
                figures: Some(figures_to_proto(f)),
            })
            .collect(),
        top_complaint_topics: report
            .top_complaint_topics
            .iter()
            .map(|t| proto::TopicComplaints {
                topic: t.topic.clone(),
                complaints: t.complaints,
                previous_complaints: t.previous_complaints,
                change: t.complaints - t.previous_complaints,
                change_percent: if t.previous_complaints > 0 {
                    (t.complaints - t.previous_complaints) as f64 * 100.0
                        / t.previous_complaints as f64
                } else {
                    0.0
                },
            })
            .collect(),
    }))
}
