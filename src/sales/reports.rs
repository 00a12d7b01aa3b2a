//! GetPipeline (now or at an instant) and GetStageConversion, over the opportunities the
//! caller's record scope reaches.

use bakkal_domain::time::MICROS_PER_DAY;
use bakkal_domain::ValidationError;
use bakkal_store::{PipelineGroupBy, PIPELINE_FILTER_FIELDS};
use tonic::{Request, Response};

use super::convert::*;
use super::{Answer, SalesApi};
use crate::auth::customer_scope;
use crate::convert::{micros, timestamp};
use crate::proto;
use crate::status::{from_store, invalid, invalid_field};

pub(super) async fn pipeline(
    api: &SalesApi,
    r: Request<proto::GetPipelineRequest>,
) -> Answer<proto::GetPipelineResponse> {
    let scope = customer_scope(&r);
    let req = r.into_inner();
    let id = reference(&req.pipeline, "pipelines", "pipeline")?;
    let mut errs = ValidationError::new();
    let as_of = req
        .as_of
        .as_ref()
        .and_then(|t| micros(t, "as_of", &mut errs));
    let group_by = match proto::PipelineGroupBy::try_from(req.group_by) {
        Ok(proto::PipelineGroupBy::Unspecified | proto::PipelineGroupBy::Stage) => {
            PipelineGroupBy::Stage
        }
        Ok(proto::PipelineGroupBy::Owner) => PipelineGroupBy::Owner,
        Err(_) => {
            errs.add("group_by", "must be STAGE or OWNER");
            PipelineGroupBy::Stage
        }
    };
    let clauses = match bakkal_domain::filter::parse(&req.filter, PIPELINE_FILTER_FIELDS) {
        Ok(c) => c,
        Err(m) => {
            errs.add("filter", m);
            Vec::new()
        }
    };
    errs.into_result().map_err(invalid)?;
    let view = api
        .store
        .pipeline_view(id, as_of, &clauses, group_by, &scope)
        .await
        .map_err(from_store)?;
    Ok(Response::new(view_to_proto(
        &view,
        as_of.unwrap_or_else(|| api.clock.now()),
    )))
}

pub(super) async fn stage_conversion(
    api: &SalesApi,
    r: Request<proto::GetStageConversionRequest>,
) -> Answer<proto::GetStageConversionResponse> {
    let scope = customer_scope(&r);
    let req = r.into_inner();
    let id = reference(&req.pipeline, "pipelines", "pipeline")?;
    let mut errs = ValidationError::new();
    let end = match &req.end_time {
        Some(t) => micros(t, "end_time", &mut errs),
        None => Some(api.clock.now()),
    };
    let start = match &req.start_time {
        Some(t) => micros(t, "start_time", &mut errs),
        None => end.map(|e| e - 30 * MICROS_PER_DAY),
    };
    errs.into_result().map_err(invalid)?;
    let (Some(start), Some(end)) = (start, end) else {
        return Err(invalid_field("end_time", "is not a valid timestamp"));
    };
    if start >= end {
        return Err(invalid_field("start_time", "must be before end_time"));
    }
    let (pipeline, figures) = api
        .store
        .stage_conversion(id, start, end, &scope)
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::GetStageConversionResponse {
        pipeline: req.pipeline.trim().to_string(),
        start_time: Some(timestamp(start)),
        end_time: Some(timestamp(end)),
        stages: figures
            .iter()
            .map(|c| conversion_to_proto(&pipeline, c))
            .collect(),
    }))
}
