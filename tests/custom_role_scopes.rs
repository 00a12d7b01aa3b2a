//! Custom roles with a record scope per family, through the public API on SQLite and
//! PostgreSQL: a user holding only a custom role scoped OWN over customers lists exactly the
//! customers they own and cannot read another's; the same role scoped ALL reaches every one;
//! ListRoles shows the scopes of built-in and custom roles; bad scopes are refused with field
//! violations.

mod common;

use std::collections::BTreeSet;

use bakkal::proto;
use bakkal::proto::access_service_client::AccessServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use common::{keyed, secured, Backend, TestServer};
use tonic::Code;

async fn role(server: &TestServer, admin: &str, name: &str, scopes: &[(&str, i32)]) {
    AccessServiceClient::new(server.channel.clone())
        .create_role(keyed(
            proto::CreateRoleRequest {
                role: Some(proto::Role {
                    name: format!("roles/{name}"),
                    permissions: vec![
                        "customers.get".into(),
                        "customers.list".into(),
                        "customers.create".into(),
                    ],
                    record_scopes: scopes
                        .iter()
                        .map(|(r, s)| proto::RoleRecordScope {
                            records: r.to_string(),
                            scope: *s,
                        })
                        .collect(),
                    ..Default::default()
                }),
            },
            admin,
            None,
        ))
        .await
        .expect("create role");
}

/// A staff user with `roles` and a key for them: (user name, key).
async fn user(server: &TestServer, admin: &str, email: &str, roles: &[&str]) -> (String, String) {
    let mut a = AccessServiceClient::new(server.channel.clone());
    let u = a
        .create_user(keyed(
            proto::CreateUserRequest {
                user: Some(proto::User {
                    display_name: email.into(),
                    email: email.into(),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    ..Default::default()
                }),
                inactive: false,
            },
            admin,
            None,
        ))
        .await
        .expect("user")
        .into_inner();
    let key = a
        .create_api_key(keyed(
            proto::CreateApiKeyRequest {
                parent: u.name.clone(),
                api_key: Some(proto::ApiKey {
                    display_name: "laptop".into(),
                    ..Default::default()
                }),
            },
            admin,
            None,
        ))
        .await
        .expect("key")
        .into_inner()
        .secret;
    (u.name, key)
}

async fn customer(server: &TestServer, key: &str, email: &str, owner: &str) -> String {
    CustomerServiceClient::new(server.channel.clone())
        .create_customer(keyed(
            proto::CreateCustomerRequest {
                customer: Some(proto::Customer {
                    display_name: email.into(),
                    email: email.into(),
                    owner: owner.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            key,
            None,
        ))
        .await
        .expect("create customer")
        .into_inner()
        .name
}

async fn listed(server: &TestServer, key: &str) -> BTreeSet<String> {
    CustomerServiceClient::new(server.channel.clone())
        .list_customers(keyed(
            proto::ListCustomersRequest {
                page_size: 100,
                ..Default::default()
            },
            key,
            None,
        ))
        .await
        .expect("list")
        .into_inner()
        .customers
        .into_iter()
        .map(|c| c.name)
        .collect()
}

async fn get(server: &TestServer, key: &str, name: &str) -> Result<proto::Customer, tonic::Status> {
    CustomerServiceClient::new(server.channel.clone())
        .get_customer(keyed(
            proto::GetCustomerRequest { name: name.into() },
            key,
            None,
        ))
        .await
        .map(|r| r.into_inner())
}

const OWN: i32 = proto::RecordScopeLevel::Own as i32;
const ALL: i32 = proto::RecordScopeLevel::All as i32;

async fn a_custom_role_reaches_as_far_as_its_scope(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    role(&server, &admin, "field_clerk", &[("customers", OWN)]).await;
    role(&server, &admin, "back_office", &[("customers", ALL)]).await;
    let (ali, ali_key) = user(&server, &admin, "ali@shop.example", &["field_clerk"]).await;
    let (_, office_key) = user(&server, &admin, "ofis@shop.example", &["back_office"]).await;
    let (veli, _) = user(&server, &admin, "veli@shop.example", &["sales_rep"]).await;

    let of_ali = customer(&server, &admin, "a@x.example", &ali).await;
    let of_veli = customer(&server, &admin, "v@x.example", &veli).await;
    let nobodys = customer(&server, &admin, "n@x.example", "").await;
    // a customer the clerk makes without an owner is theirs
    let made = customer(&server, &ali_key, "m@x.example", "").await;

    let want: BTreeSet<String> = [of_ali.clone(), made.clone()].into_iter().collect();
    assert_eq!(listed(&server, &ali_key).await, want);
    get(&server, &ali_key, &of_ali).await.expect("own customer");
    let out = get(&server, &ali_key, &of_veli).await.unwrap_err();
    let missing = get(&server, &ali_key, "customers/999999")
        .await
        .unwrap_err();
    assert_eq!(out.code(), Code::NotFound, "{out:?}");
    assert_eq!(missing.code(), Code::NotFound);

    let everyone: BTreeSet<String> = [of_ali, of_veli, nobodys, made].into_iter().collect();
    assert_eq!(listed(&server, &office_key).await, everyone);

    // ListRoles shows the scopes, for built-in roles too
    let roles = AccessServiceClient::new(server.channel.clone())
        .list_roles(keyed(proto::ListRolesRequest {}, &admin, None))
        .await
        .expect("list roles")
        .into_inner()
        .roles;
    let scopes_of = |name: &str| -> Vec<(String, i32)> {
        roles
            .iter()
            .find(|r| r.name == name)
            .map(|r| {
                r.record_scopes
                    .iter()
                    .map(|s| (s.records.clone(), s.scope))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        scopes_of("roles/field_clerk"),
        vec![("customers".to_string(), OWN)]
    );
    assert!(scopes_of("roles/sales_rep").contains(&("customers".to_string(), OWN)));
    server.stop().await;
}

async fn bad_scopes_are_refused_field_by_field(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let err = AccessServiceClient::new(server.channel.clone())
        .create_role(keyed(
            proto::CreateRoleRequest {
                role: Some(proto::Role {
                    name: "roles/odd".into(),
                    permissions: vec!["customers.get".into()],
                    record_scopes: vec![
                        proto::RoleRecordScope {
                            records: "planets".into(),
                            scope: OWN,
                        },
                        proto::RoleRecordScope {
                            records: "customers".into(),
                            scope: 0,
                        },
                    ],
                    ..Default::default()
                }),
            },
            &admin,
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    use tonic_types::StatusExt;
    let fields: Vec<String> = err
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        vec![
            "role.record_scopes[0].records".to_string(),
            "role.record_scopes[1].scope".to_string()
        ],
        "{err:?}"
    );
    // nothing was written
    let roles = AccessServiceClient::new(server.channel.clone())
        .list_roles(keyed(proto::ListRolesRequest {}, &admin, None))
        .await
        .expect("list roles")
        .into_inner()
        .roles;
    assert!(!roles.iter().any(|r| r.name == "roles/odd"));
    server.stop().await;
}

for_each_backend!(
    a_custom_role_reaches_as_far_as_its_scope,
    bad_scopes_are_refused_field_by_field,
);
