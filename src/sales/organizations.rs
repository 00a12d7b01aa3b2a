//! Organisations: create, read through merges, list, masked update with etags, delete,
//! duplicates and merge.

use bakkal_domain::ValidationError;
use bakkal_store::{OrganizationFields, ORGANIZATION_FILTER_FIELDS};
use tonic::{Request, Response};

use super::convert::*;
use super::{Answer, SalesApi};
use crate::page_token;
use crate::proto;
use crate::status::{from_store, invalid, invalid_field};

pub(super) async fn create(
    api: &SalesApi,
    r: Request<proto::CreateOrganizationRequest>,
) -> Answer<proto::Organization> {
    let Some(o) = r.into_inner().organization else {
        return Err(invalid_field("organization", "is required"));
    };
    let mut errs = ValidationError::new();
    let mut f = OrganizationFields::default();
    check_organization(&o, &[], &mut f, &mut errs);
    errs.into_result().map_err(invalid)?;
    let created = api
        .store
        .create_organization(&f, api.clock.now())
        .await
        .map_err(from_store)?;
    Ok(Response::new(organization_to_proto(&created)))
}

pub(super) async fn get(
    api: &SalesApi,
    r: Request<proto::GetOrganizationRequest>,
) -> Answer<proto::Organization> {
    let id = reference(&r.get_ref().name, "organizations", "name")?;
    let o = api.store.get_organization(id).await.map_err(from_store)?;
    Ok(Response::new(organization_to_proto(&o)))
}

pub(super) async fn list(
    api: &SalesApi,
    r: Request<proto::ListOrganizationsRequest>,
) -> Answer<proto::ListOrganizationsResponse> {
    let req = r.into_inner();
    let size = page_token::page_size(req.page_size)?;
    let clauses = bakkal_domain::filter::parse(&req.filter, ORGANIZATION_FILTER_FIELDS)
        .map_err(|m| invalid_field("filter", m))?;
    let query = ["organizations", req.filter.as_str()];
    let after = page_token::decode(&req.page_token, &query)?;
    let (list, next) = api
        .store
        .list_organizations(&clauses, size, after.as_ref())
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::ListOrganizationsResponse {
        organizations: list.iter().map(organization_to_proto).collect(),
        next_page_token: page_token::encode(next, &query),
    }))
}

pub(super) async fn update(
    api: &SalesApi,
    r: Request<proto::UpdateOrganizationRequest>,
) -> Answer<proto::Organization> {
    let req = r.into_inner();
    let Some(o) = req.organization else {
        return Err(invalid_field("organization", "is required"));
    };
    let id = reference(&o.name, "organizations", "organization.name")?;
    let paths = mask_paths(&req.update_mask);
    check_mask(&paths, ORGANIZATION_UPDATABLE)?;
    if paths.is_empty() {
        return Err(invalid_field(
            "update_mask",
            format!(
                "is required: the paths to change, of {}",
                ORGANIZATION_UPDATABLE.join(", ")
            ),
        ));
    }
    let current = api.store.get_organization(id).await.map_err(from_store)?;
    if current.id != id {
        // merged away: its name resolves for reads only
        return Err(crate::status::not_found(&o.name));
    }
    let mut f = current.fields.clone();
    let mut errs = ValidationError::new();
    check_organization(&o, &paths, &mut f, &mut errs);
    errs.into_result().map_err(invalid)?;
    // without an etag, the version read above: a change in between is ABORTED, not lost
    let etag = if o.etag.is_empty() {
        etag(current.version)
    } else {
        o.etag.clone()
    };
    let updated = api
        .store
        .update_organization(id, &f, Some(etag.as_str()), api.clock.now())
        .await
        .map_err(from_store)?;
    Ok(Response::new(organization_to_proto(&updated)))
}

pub(super) async fn delete(
    api: &SalesApi,
    r: Request<proto::DeleteOrganizationRequest>,
) -> Answer<()> {
    let req = r.into_inner();
    let id = reference(&req.name, "organizations", "name")?;
    api.store
        .delete_organization(id, Some(req.etag.as_str()))
        .await
        .map_err(from_store)?;
    Ok(Response::new(()))
}

pub(super) async fn duplicates(
    api: &SalesApi,
    r: Request<proto::FindOrganizationDuplicatesRequest>,
) -> Answer<proto::FindOrganizationDuplicatesResponse> {
    let id = reference(&r.get_ref().name, "organizations", "name")?;
    let found = api
        .store
        .find_organization_duplicates(id)
        .await
        .map_err(from_store)?;
    Ok(Response::new(proto::FindOrganizationDuplicatesResponse {
        candidates: found
            .iter()
            .map(|d| proto::OrganizationDuplicate {
                organization: Some(organization_to_proto(&d.organization)),
                reasons: d.reasons.clone(),
            })
            .collect(),
    }))
}

pub(super) async fn merge(
    api: &SalesApi,
    r: Request<proto::MergeOrganizationsRequest>,
) -> Answer<proto::Organization> {
    let req = r.into_inner();
    let mut errs = ValidationError::new();
    let primary = reference_into(&mut errs, &req.primary, "organizations", "primary");
    let duplicate = reference_into(&mut errs, &req.duplicate, "organizations", "duplicate");
    let (Some(primary), Some(duplicate)) = (primary, duplicate) else {
        return Err(invalid(errs));
    };
    let merged = api
        .store
        .merge_organizations(duplicate, primary, api.clock.now())
        .await
        .map_err(from_store)?;
    Ok(Response::new(organization_to_proto(&merged)))
}
