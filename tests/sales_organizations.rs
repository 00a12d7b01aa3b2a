//! `bakkal.v1.SalesService` organisations through a real server and client, on SQLite and
//! (when `BAKKAL_TEST_POSTGRES_URL` is set) PostgreSQL: normalised unique domains, parents
//! without cycles, masked updates with etags, customers belonging to organisations (and
//! ListCustomers by organisation), duplicates, merging (customers and opportunities move, the
//! merged name resolves to the survivor) and deletion refused while something refers to one.

mod common;

use bakkal::proto;
use bakkal::proto::sales_service_client::SalesServiceClient;
use bakkal::proto::{ForecastCategory, StageOutcome};
use common::{count, Backend, TestDb, TestServer};
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn create(
    c: &mut SalesServiceClient<Channel>,
    o: proto::Organization,
) -> Result<proto::Organization, tonic::Status> {
    c.create_organization(proto::CreateOrganizationRequest {
        organization: Some(o),
    })
    .await
    .map(|r| r.into_inner())
}

fn org(name: &str, domain: &str) -> proto::Organization {
    proto::Organization {
        display_name: name.into(),
        domain: domain.into(),
        ..Default::default()
    }
}

async fn get(
    c: &mut SalesServiceClient<Channel>,
    name: &str,
) -> Result<proto::Organization, tonic::Status> {
    c.get_organization(proto::GetOrganizationRequest { name: name.into() })
        .await
        .map(|r| r.into_inner())
}

async fn domains_are_unique_once_normalised(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let url = db.url.clone();
    let server = TestServer::start_on(db).await;
    let mut c = SalesServiceClient::new(server.channel.clone());
    let acme = create(
        &mut c,
        proto::Organization {
            industry: "retail".into(),
            country_code: "tr".into(),
            tags: vec!["key-account".into()],
            ..org("Acme Ltd", "https://www.ACME.com.tr/about")
        },
    )
    .await
    .expect("create");
    assert_eq!(acme.domain, "acme.com.tr");
    assert_eq!(acme.country_code, "TR");
    assert!(acme.name.starts_with("organizations/"));
    assert_eq!(get(&mut c, &acme.name).await.unwrap(), acme);

    // the same company under another spelling of its domain
    let e = create(&mut c, org("ACME", "acme.com.tr."))
        .await
        .expect_err("duplicate domain");
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(violations(&e), ["organization.domain"]);
    let info = e.get_details_resource_info().expect("resource info");
    assert_eq!(info.resource_name, acme.name);

    // bad input: nothing written
    let e = create(
        &mut c,
        proto::Organization {
            country_code: "Turkey".into(),
            parent: "organizations/x".into(),
            owner: "ayse".into(),
            ..org("", "not a domain")
        },
    )
    .await
    .expect_err("bad");
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut fields = violations(&e);
    fields.sort();
    assert_eq!(
        fields,
        [
            "organization.country_code",
            "organization.display_name",
            "organization.domain",
            "organization.owner",
            "organization.parent",
        ]
    );
    let e = create(
        &mut c,
        proto::Organization {
            parent: "organizations/999".into(),
            ..org("Orphan", "")
        },
    )
    .await
    .expect_err("unknown parent");
    assert_eq!(violations(&e), ["organization.parent"]);
    let e = create(
        &mut c,
        proto::Organization {
            owner: "users/999".into(),
            ..org("Unowned", "")
        },
    )
    .await
    .expect_err("unknown owner");
    assert_eq!(violations(&e), ["organization.owner"]);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM organizations").await, 1);

    // a child; the parent cannot then become the child's child
    let shop = create(
        &mut c,
        proto::Organization {
            parent: acme.name.clone(),
            ..org("Acme Shop", "shop.acme.com.tr")
        },
    )
    .await
    .expect("child");
    let e = c
        .update_organization(proto::UpdateOrganizationRequest {
            organization: Some(proto::Organization {
                parent: shop.name.clone(),
                ..acme.clone()
            }),
            update_mask: mask(&["parent"]),
        })
        .await
        .expect_err("cycle");
    assert_eq!(violations(&e), ["organization.parent"]);

    // masked update with etags
    let updated = c
        .update_organization(proto::UpdateOrganizationRequest {
            organization: Some(proto::Organization {
                city: "İstanbul".into(),
                industry: "ignored: not in the mask".into(),
                ..acme.clone()
            }),
            update_mask: mask(&["city"]),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.city, "İstanbul");
    assert_eq!(updated.industry, "retail");
    assert_ne!(updated.etag, acme.etag);
    let e = c
        .update_organization(proto::UpdateOrganizationRequest {
            organization: Some(proto::Organization {
                city: "Ankara".into(),
                ..acme.clone()
            }),
            update_mask: mask(&["city"]),
        })
        .await
        .expect_err("stale etag");
    assert_eq!(e.code(), Code::Aborted);
    // the domain of another is taken on update too
    let e = c
        .update_organization(proto::UpdateOrganizationRequest {
            organization: Some(proto::Organization {
                domain: "http://shop.acme.com.tr".into(),
                ..updated.clone()
            }),
            update_mask: mask(&["domain"]),
        })
        .await
        .expect_err("taken");
    assert_eq!(e.code(), Code::AlreadyExists);

    let listed = c
        .list_organizations(proto::ListOrganizationsRequest {
            filter: format!("parent = \"{}\"", acme.name),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.organizations.len(), 1);
    assert_eq!(listed.organizations[0].name, shop.name);
    let listed = c
        .list_organizations(proto::ListOrganizationsRequest {
            filter: "tags:\"key-account\"".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.organizations.len(), 1);

    // deleting a parent with a child is refused; the child can go
    let e = c
        .delete_organization(proto::DeleteOrganizationRequest {
            name: acme.name.clone(),
            etag: String::new(),
        })
        .await
        .expect_err("has a child");
    assert_eq!(e.code(), Code::FailedPrecondition);
    c.delete_organization(proto::DeleteOrganizationRequest {
        name: shop.name.clone(),
        etag: String::new(),
    })
    .await
    .expect("delete child");
    assert_eq!(
        get(&mut c, &shop.name).await.unwrap_err().code(),
        Code::NotFound
    );
    server.stop().await;
}

async fn duplicates_merge_into_one(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let url = db.url.clone();
    let server = TestServer::start_on(db).await;
    let mut c = SalesServiceClient::new(server.channel.clone());
    let primary = create(
        &mut c,
        proto::Organization {
            city: "İzmir".into(),
            ..org("Ege Tekstil A.Ş.", "egetekstil.com")
        },
    )
    .await
    .unwrap();
    let duplicate = create(
        &mut c,
        proto::Organization {
            industry: "textiles".into(),
            tags: vec!["export".into()],
            ..org("ege tekstil a ş", "egetekstil.com.tr")
        },
    )
    .await
    .unwrap();
    let unrelated = create(&mut c, org("Marmara Gıda", "marmaragida.com"))
        .await
        .unwrap();
    let found = c
        .find_organization_duplicates(proto::FindOrganizationDuplicatesRequest {
            name: primary.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .candidates;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].organization.as_ref().map(|o| o.name.clone()),
        Some(duplicate.name.clone())
    );
    assert_eq!(found[0].reasons, ["same name"]);

    // an opportunity of the duplicate moves with the merge
    let p = c
        .create_pipeline(proto::CreatePipelineRequest {
            pipeline: Some(proto::Pipeline {
                display_name: "B2B".into(),
                stages: vec![proto::PipelineStage {
                    display_name: "Open".into(),
                    probability: 20,
                    forecast_category: ForecastCategory::Pipeline as i32,
                    outcome: StageOutcome::Open as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let o = c
        .create_opportunity(proto::CreateOpportunityRequest {
            opportunity: Some(proto::Opportunity {
                display_name: "Uniforms".into(),
                organization: duplicate.name.clone(),
                pipeline: p.name.clone(),
                stage: p.stages[0].name.clone(),
                amount_minor: 100_000,
                currency_code: "TRY".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // a customer belongs to an organisation; an unknown one is refused
    let mut customers = server.customers();
    let member = customers
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: "Selin Ak".into(),
                organization: duplicate.name.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("customer")
        .into_inner();
    assert_eq!(member.organization, duplicate.name);
    for bad in ["organizations/999", "organisations/1"] {
        let e = customers
            .create_customer(proto::CreateCustomerRequest {
                customer: Some(proto::Customer {
                    display_name: "Nobody".into(),
                    organization: bad.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect_err("unknown organization");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(violations(&e), ["customer.organization"], "{bad}");
    }
    let in_org = |org: &str| proto::ListCustomersRequest {
        filter: format!("organization = \"{org}\""),
        ..Default::default()
    };
    let listed = customers
        .list_customers(in_org(&duplicate.name))
        .await
        .expect("list customers")
        .into_inner()
        .customers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, member.name);

    // deleting what an opportunity refers to is refused
    let e = c
        .delete_organization(proto::DeleteOrganizationRequest {
            name: duplicate.name.clone(),
            etag: String::new(),
        })
        .await
        .expect_err("referred to");
    assert_eq!(e.code(), Code::FailedPrecondition);

    let e = c
        .merge_organizations(proto::MergeOrganizationsRequest {
            primary: primary.name.clone(),
            duplicate: primary.name.clone(),
        })
        .await
        .expect_err("itself");
    assert_eq!(violations(&e), ["duplicate"]);
    let merged = c
        .merge_organizations(proto::MergeOrganizationsRequest {
            primary: primary.name.clone(),
            duplicate: duplicate.name.clone(),
        })
        .await
        .expect("merge")
        .into_inner();
    assert_eq!(merged.name, primary.name);
    assert_eq!(merged.city, "İzmir");
    assert_eq!(merged.industry, "textiles");
    assert_eq!(merged.tags, ["export"]);
    assert_eq!(merged.domain, "egetekstil.com");
    // the merged name resolves to the survivor; the opportunity moved
    assert_eq!(
        get(&mut c, &duplicate.name).await.unwrap().name,
        primary.name
    );
    let moved = c
        .get_opportunity(proto::GetOpportunityRequest {
            name: o.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.organization, primary.name);
    let listed = customers
        .list_customers(in_org(&primary.name))
        .await
        .expect("list customers")
        .into_inner()
        .customers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].organization, primary.name);
    assert_ne!(
        listed[0].etag, member.etag,
        "the move is a change of the customer"
    );
    // its domain is free again
    let again = create(&mut c, org("Ege Tekstil Export", "egetekstil.com.tr"))
        .await
        .expect("freed domain");
    assert_ne!(again.name, duplicate.name);
    let listed = c
        .list_organizations(proto::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .organizations;
    let names: Vec<_> = listed.iter().map(|o| o.name.clone()).collect();
    assert_eq!(names, [primary.name.clone(), unrelated.name, again.name]);
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM organizations WHERE merged_into IS NOT NULL"
        )
        .await,
        1
    );
    server.stop().await;
}

for_each_backend!(
    domains_are_unique_once_normalised,
    duplicates_merge_into_one
);
