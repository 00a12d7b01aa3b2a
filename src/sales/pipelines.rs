//! Pipelines and their stages.

use bakkal_domain::ValidationError;
use tonic::{Request, Response};

use super::convert::*;
use super::{Answer, SalesApi};
use crate::page_token;
use crate::proto;
use crate::status::{from_store, invalid, invalid_field};

const PIPELINE_UPDATABLE: &[&str] = &["display_name", "stages"];

pub(super) async fn create(
    api: &SalesApi,
    r: Request<proto::CreatePipelineRequest>,
) -> Answer<proto::Pipeline> {
    let Some(p) = r.into_inner().pipeline else {
        return Err(invalid_field("pipeline", "is required"));
    };
    let mut errs = ValidationError::new();
    let display_name = text(
        &mut errs,
        "pipeline.display_name",
        &p.display_name,
        true,
        MAX_TEXT,
    );
    let stages = stages(&mut errs, &p.stages, None);
    errs.into_result().map_err(invalid)?;
    let created = api
        .store
        .create_pipeline(&display_name, &stages, api.clock.now())
        .await
        .map_err(from_store)?;
    Ok(Response::new(pipeline_to_proto(&created)))
}

pub(super) async fn get(
    api: &SalesApi,
    r: Request<proto::GetPipelineDefinitionRequest>,
) -> Answer<proto::Pipeline> {
    let id = reference(&r.get_ref().name, "pipelines", "name")?;
    let p = api.store.get_pipeline(id).await.map_err(from_store)?;
    Ok(Response::new(pipeline_to_proto(&p)))
}

pub(super) async fn list(
    api: &SalesApi,
    r: Request<proto::ListPipelinesRequest>,
) -> Answer<proto::ListPipelinesResponse> {
    let req = r.into_inner();
    let size = page_token::page_size(req.page_size)?;
    let query = ["pipelines"];
    let after = page_token::decode(&req.page_token, &query)?;
    let (list, next) = api
        .store
        .list_pipelines(size, after.as_ref())
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::ListPipelinesResponse {
        pipelines: list.iter().map(pipeline_to_proto).collect(),
        next_page_token: page_token::encode(next, &query),
    }))
}

pub(super) async fn update(
    api: &SalesApi,
    r: Request<proto::UpdatePipelineRequest>,
) -> Answer<proto::Pipeline> {
    let req = r.into_inner();
    let Some(p) = req.pipeline else {
        return Err(invalid_field("pipeline", "is required"));
    };
    let id = reference(&p.name, "pipelines", "pipeline.name")?;
    let mut paths = mask_paths(&req.update_mask);
    check_mask(&paths, PIPELINE_UPDATABLE)?;
    if paths.is_empty() {
        paths = PIPELINE_UPDATABLE.to_vec();
    }
    let mut errs = ValidationError::new();
    let display_name = paths.contains(&"display_name").then(|| {
        text(
            &mut errs,
            "pipeline.display_name",
            &p.display_name,
            true,
            MAX_TEXT,
        )
    });
    let stages = paths
        .contains(&"stages")
        .then(|| stages(&mut errs, &p.stages, Some(id)));
    errs.into_result().map_err(invalid)?;
    let updated = api
        .store
        .update_pipeline(
            id,
            display_name.as_deref(),
            stages.as_deref(),
            Some(p.etag.as_str()),
            api.clock.now(),
        )
        .await
        .map_err(from_store)?;
    Ok(Response::new(pipeline_to_proto(&updated)))
}
