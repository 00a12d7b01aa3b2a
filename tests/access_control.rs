//! Access control through the public API, on SQLite and PostgreSQL: every RPC of the served
//! descriptor set against no credential, malformed and forged keys, a revoked key and a key of
//! each built-in role; key rotation and revocation; the default posture.

mod common;

use std::collections::BTreeSet;

use bakkal::auth::permissions::{self, BuiltIn, BUILT_IN};
use bakkal::proto;
use bakkal::proto::access_service_client::AccessServiceClient;
use common::{Backend, TestDb, TestServer};
use prost::Message as _;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Code;

/// Every `service/method` of bakkal's own services in the served descriptor set.
fn served_methods() -> Vec<String> {
    let fds = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = BTreeSet::new();
    for f in fds.file {
        for s in &f.service {
            for m in &s.method {
                out.insert(format!("{}.{}/{}", f.package(), s.name(), m.name()));
            }
        }
    }
    out.into_iter().collect()
}

/// Call `method` with an empty request (as a stream of one message, which every kind of RPC
/// accepts on the wire) and the given bearer token; the code it answers (OK when the first
/// message or the end of the stream arrives without an error).
async fn call(channel: &Channel, method: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let mut req = tonic::Request::new(tokio_stream::iter(vec![()]));
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {t}")).unwrap(),
        );
    }
    let path: http::uri::PathAndQuery = format!("/{method}").parse().unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        grpc.streaming(req, path, codec),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} did not answer"));
    match resp {
        Err(s) => s.code(),
        Ok(r) => {
            let mut stream = r.into_inner();
            match tokio::time::timeout(std::time::Duration::from_secs(2), stream.message()).await {
                Ok(Err(s)) => s.code(),
                // a stream that stays open (a watch) or ends: it was let through
                _ => Code::Ok,
            }
        }
    }
}

fn bearer(
    token: &str,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let value = MetadataValue::try_from(format!("Bearer {token}")).unwrap();
    move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", value.clone());
        Ok(r)
    }
}

type Access = AccessServiceClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>,
    >,
>;

fn access(server: &TestServer, token: &str) -> Access {
    AccessServiceClient::with_interceptor(server.channel.clone(), Box::new(bearer(token)) as _)
}

/// A server requiring auth, and the admin key made before it started (`bakkal keys create`).
async fn secured(backend: Backend) -> Option<(TestServer, String)> {
    secured_with(backend, |_| {}).await
}

async fn secured_with(
    backend: Backend,
    tweak: impl FnOnce(&mut bakkal::config::Config),
) -> Option<(TestServer, String)> {
    let db = TestDb::new(backend).await?;
    let config = bakkal::config::Config::new("127.0.0.1:0".parse().unwrap(), db.url.clone());
    let store = bakkal::server::open_store(&config).await.expect("store");
    let (_, admin) = bakkal::auth::keys::bootstrap(&store, "ops", "admin", 1)
        .await
        .unwrap();
    store.close().await;
    let server = TestServer::start_on_with(db, |c| {
        c.auth.require = true;
        tweak(c);
    })
    .await;
    Some((server, admin))
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A service account with `role` and a key for it, made through the API.
async fn key_for(server: &TestServer, admin: &str, role: &str) -> (String, String) {
    let mut a = access(server, admin);
    let sa = a
        .create_service_account(proto::CreateServiceAccountRequest {
            service_account: Some(proto::ServiceAccount {
                display_name: format!(
                    "svc-{role}-{}",
                    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ),
                roles: vec![role.to_string()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("service account")
        .into_inner();
    let k = a
        .create_api_key(proto::CreateApiKeyRequest {
            parent: sa.name.clone(),
            api_key: Some(proto::ApiKey {
                display_name: format!("{role} key"),
                ..Default::default()
            }),
        })
        .await
        .expect("api key")
        .into_inner();
    (k.api_key.unwrap().name, k.secret)
}

/// Change one character of the key's secret part and fix nothing else.
fn forged(key: &str) -> String {
    let mut b = key.as_bytes().to_vec();
    let i = b.len() - 10;
    b[i] = if b[i] == b'a' { b'b' } else { b'a' };
    String::from_utf8(b).unwrap()
}

async fn every_rpc_answers_each_credential_as_the_table_says(backend: Backend) {
    // staff tokens from an identity provider too, so an expired one is a column of the table
    let idp = common::idp::Idp::new();
    let oidc = idp.config();
    let Some((server, admin)) = secured_with(backend, |c| c.auth.oidc = Some(oidc)).await else {
        return;
    };
    let methods = served_methods();
    // an admin user bound to a subject: a live token of theirs may call anything…
    access(&server, &admin)
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                display_name: "Token Admin".into(),
                email: "token-admin@example.com".into(),
                roles: vec!["admin".into()],
                oidc_subject: "sub-token-admin".into(),
                ..Default::default()
            }),
            inactive: false,
        })
        .await
        .expect("user");
    let live_jwt = idp.token("sub-token-admin");
    assert!(access(&server, &live_jwt)
        .get_caller_identity(proto::GetCallerIdentityRequest {})
        .await
        .is_ok());
    // …and an expired one nothing
    let now = common::idp::now();
    let mut claims = common::idp::claims("sub-token-admin");
    claims["iat"] = serde_json::json!(now - 7200);
    claims["nbf"] = serde_json::json!(now - 7200);
    claims["exp"] = serde_json::json!(now - 3600);
    let expired_jwt = idp.keys[0].sign(&claims);
    let (revoked_name, revoked) = key_for(&server, &admin, "analyst").await;
    access(&server, &admin)
        .revoke_api_key(proto::RevokeApiKeyRequest { name: revoked_name })
        .await
        .expect("revoke");
    // a key whose checksum is right but whose secret is not the stored one
    let (_, real) = key_for(&server, &admin, "auditor").await;
    let (id_part, _) = real.split_at(8 + 16 + 1);
    let other = bakkal_domain::access::with_checksum(&format!("{id_part}{}", "x".repeat(32)));
    let unknown = bakkal_domain::access::new_key(&[9u8; 48], false).1;
    let refused: Vec<(&str, String)> = vec![
        ("no credential", String::new()),
        ("not a key", "hello".into()),
        ("bad checksum", forged(&real)),
        ("wrong secret", other),
        ("unknown key id", unknown),
        ("revoked", revoked),
        ("expired JWT", expired_jwt),
    ];
    for method in &methods {
        for (what, token) in &refused {
            let t = (!token.is_empty()).then_some(token.as_str());
            let code = call(&server.channel, method, t).await;
            assert_eq!(code, Code::Unauthenticated, "{method} with {what}");
        }
    }
    for role in BUILT_IN {
        let (_, key) = key_for(&server, &admin, role.name()).await;
        for method in &methods {
            let rpc = permissions::lookup(&format!("/{method}")).expect("in the table");
            let code = call(&server.channel, method, Some(&key)).await;
            let narrowed = permissions::aggregate_over(method)
                .is_some_and(|r| role.scope(r) != Some(bakkal_domain::access::Scope::All));
            if role.grants(rpc) && narrowed {
                // an aggregate over records the role reaches only some of
                assert_eq!(code, Code::PermissionDenied, "{} on {method}", role.name());
            } else if role.grants(rpc) {
                assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{} may call {method} but got {code:?}",
                    role.name()
                );
            } else {
                assert_eq!(
                    code,
                    Code::PermissionDenied,
                    "{} may not call {method}",
                    role.name()
                );
            }
        }
    }
    // a few the table must say, whatever else changes
    assert!(!BuiltIn::Marketer
        .grants(permissions::lookup("/bakkal.v1.CustomerService/ExportCustomers").unwrap()));
    // health is open; reflection needs a credential
    assert_eq!(
        call(&server.channel, "grpc.health.v1.Health/Check", None).await,
        Code::Ok
    );
    assert_eq!(
        call(
            &server.channel,
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            None
        )
        .await,
        Code::Unauthenticated
    );
    server.stop().await;
}

async fn rotation_keeps_both_keys_until_the_old_is_revoked(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let (old_name, old) = key_for(&server, &admin, "integration").await;
    let who = |key: String| {
        let mut a = access(&server, &key);
        async move {
            a.get_caller_identity(proto::GetCallerIdentityRequest {})
                .await
                .map(|r| r.into_inner())
        }
    };
    let me = who(old.clone()).await.expect("old key works");
    assert!(me.principal.starts_with("serviceAccounts/"));
    assert_eq!(me.roles, vec!["integration".to_string()]);
    assert!(me.auth_required);
    assert!(me.permissions.contains(&"customers.export".to_string()));
    let rotated = access(&server, &admin)
        .rotate_api_key(proto::RotateApiKeyRequest {
            name: old_name.clone(),
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner();
    let new = rotated.secret.clone();
    assert_ne!(new, old);
    assert_eq!(rotated.api_key.as_ref().unwrap().rotated_from, old_name);
    assert_eq!(who(old.clone()).await.unwrap().principal, me.principal);
    assert_eq!(who(new.clone()).await.unwrap().principal, me.principal);
    access(&server, &admin)
        .revoke_api_key(proto::RevokeApiKeyRequest { name: old_name })
        .await
        .expect("revoke");
    assert_eq!(who(old).await.unwrap_err().code(), Code::Unauthenticated);
    assert!(who(new).await.is_ok());
    // the secret is in no stored row: only its hash and the public id
    let listed = access(&server, &admin)
        .list_api_keys(proto::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.api_keys.len() >= 3);
    let secret_part = &rotated.secret[8 + 16 + 1..rotated.secret.len() - 6];
    let n = common::count(
        &server.db_url,
        &format!(
            "SELECT COUNT(*) FROM api_keys WHERE secret_hash LIKE '%{secret_part}%' \
             OR key_id LIKE '%{secret_part}%' OR display_name LIKE '%{secret_part}%'"
        ),
    )
    .await;
    assert_eq!(n, 0, "the secret is stored somewhere");
    server.stop().await;
}

async fn a_server_that_must_authenticate_refuses_to_start_without_a_key(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // a non-loopback address turns authentication on by itself
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let config = bakkal::config::Config::new(listener.local_addr().unwrap(), db.url.clone());
    let err = bakkal::server::run(config, listener, async {})
        .await
        .expect_err("no key, no start");
    assert!(format!("{err:#}").contains("bakkal keys create"), "{err:#}");
}

async fn users_carry_roles_teams_and_a_manager(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let mut a = access(&server, &admin);
    let boss = a
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                display_name: "Selin".into(),
                email: " Selin@Shop.Example ".into(),
                roles: vec!["sales_manager".into()],
                ..Default::default()
            }),
            inactive: false,
        })
        .await
        .expect("user")
        .into_inner();
    assert_eq!(boss.email, "selin@shop.example");
    assert!(boss.active);
    let rep = a
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                display_name: "Emre".into(),
                email: "emre@shop.example".into(),
                roles: vec!["sales_rep".into()],
                manager: boss.name.clone(),
                ..Default::default()
            }),
            inactive: false,
        })
        .await
        .expect("user")
        .into_inner();
    assert_eq!(rep.manager, boss.name);
    let err = a
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                display_name: "Twin".into(),
                email: "EMRE@shop.example".into(),
                roles: vec!["no_such_role".into()],
                ..Default::default()
            }),
            inactive: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let key = a
        .create_api_key(proto::CreateApiKeyRequest {
            parent: rep.name.clone(),
            api_key: Some(proto::ApiKey {
                display_name: "laptop".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let me = access(&server, &key)
        .get_caller_identity(proto::GetCallerIdentityRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.principal, rep.name);
    assert_eq!(me.roles, vec!["sales_rep".to_string()]);
    // deactivating the user stops their keys
    a.update_user(proto::UpdateUserRequest {
        user: Some(proto::User {
            name: rep.name.clone(),
            active: false,
            etag: rep.etag.clone(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["active".into()],
        }),
    })
    .await
    .expect("deactivate");
    let err = access(&server, &key)
        .get_caller_identity(proto::GetCallerIdentityRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // a custom role grants exactly its permissions
    a.create_role(proto::CreateRoleRequest {
        role: Some(proto::Role {
            name: "roles/reader".into(),
            permissions: vec!["customers.get".into(), "customers.list".into()],
            ..Default::default()
        }),
    })
    .await
    .expect("role");
    let (_, reader) = key_for(&server, &admin, "reader").await;
    assert_eq!(
        call(
            &server.channel,
            "bakkal.v1.CustomerService/ListCustomers",
            Some(&reader)
        )
        .await,
        Code::Ok
    );
    assert_eq!(
        call(
            &server.channel,
            "bakkal.v1.CustomerService/CreateCustomer",
            Some(&reader)
        )
        .await,
        Code::PermissionDenied
    );
    server.stop().await;
}

async fn personal_data_is_masked_without_pii_rights(backend: Backend) {
    let Some((server, admin)) = secured(backend).await else {
        return;
    };
    let (_, marketer) = key_for(&server, &admin, "marketer").await;
    let (_, analyst) = key_for(&server, &admin, "analyst").await;
    let customers = |key: &str| {
        bakkal::proto::customer_service_client::CustomerServiceClient::with_interceptor(
            server.channel.clone(),
            bearer(key),
        )
    };
    let c = customers(&admin)
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: "Ayşe Yılmaz".into(),
                email: "ayse@example.com".into(),
                phone: "+905321234567".into(),
                birth_date: "1990-04-23".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(c.email, "ayse@example.com", "an admin reads personal data");
    let got = customers(&marketer)
        .get_customer(proto::GetCustomerRequest {
            name: c.name.clone(),
        })
        .await
        .expect("a marketer reads customers")
        .into_inner();
    assert_eq!(got.email, "a***@example.com");
    assert_eq!(got.phone, "+90********67");
    assert_eq!(got.birth_date, "");
    assert_eq!(got.display_name, "Ayşe Yılmaz");
    let listed = customers(&analyst)
        .list_customers(proto::ListCustomersRequest::default())
        .await
        .expect("an analyst lists customers")
        .into_inner();
    let text = format!("{listed:?}");
    assert!(
        !text.contains("ayse@example.com") && !text.contains("1234567"),
        "{text}"
    );
    // the analyst may not export; an integration key exports unmasked
    assert_eq!(
        customers(&analyst)
            .export_customers(proto::ExportCustomersRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // tickets: the contact is masked too
    let desk = |key: &str| {
        bakkal::proto::service_desk_service_client::ServiceDeskServiceClient::with_interceptor(
            server.channel.clone(),
            bearer(key),
        )
    };
    let t = desk(&admin)
        .create_ticket(proto::CreateTicketRequest {
            ticket: Some(proto::Ticket {
                contact_email: "ayse@example.com".into(),
                kind: proto::TicketKind::Complaint as i32,
                channel: proto::InteractionChannel::Email as i32,
                subject: "Broken".into(),
                description: "It broke.".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("ticket")
        .into_inner();
    let seen = desk(&analyst)
        .get_ticket(proto::GetTicketRequest { name: t.name })
        .await
        .expect("an analyst reads tickets")
        .into_inner();
    assert_eq!(seen.contact_email, "a***@example.com");
    server.stop().await;
}

for_each_backend!(
    every_rpc_answers_each_credential_as_the_table_says,
    rotation_keeps_both_keys_until_the_old_is_revoked,
    a_server_that_must_authenticate_refuses_to_start_without_a_key,
    users_carry_roles_teams_and_a_manager,
    personal_data_is_masked_without_pii_rights,
);
