//! Staff bearer tokens (OIDC JWTs) through the public API, on SQLite and PostgreSQL: keys
//! generated at test time, their JWK set in a file (or served over HTTP), a valid token speaks
//! for the user bound to its subject or its verified email, with that user's roles; every kind
//! of bad token is UNAUTHENTICATED.

mod common;

use bakkal::auth::oidc::jwks::JwksSource;
use bakkal::proto;
use bakkal::proto::access_service_client::AccessServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use common::idp::{self, Idp, TestKey};
use common::{Backend, TestDb, TestServer};
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::Code;

fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    r
}

async fn identity(
    server: &TestServer,
    token: &str,
) -> Result<proto::CallerIdentity, tonic::Status> {
    AccessServiceClient::new(server.channel.clone())
        .get_caller_identity(with_token(token, proto::GetCallerIdentityRequest {}))
        .await
        .map(|r| r.into_inner())
}

/// A fresh database with one admin user bound to OIDC subject `sub-admin` (made before the
/// server starts: with OIDC on, no API key is needed to start) and a server trusting `idp`.
async fn server_for(backend: Backend, oidc: bakkal::auth::oidc::OidcConfig) -> Option<TestServer> {
    let db = TestDb::new(backend).await?;
    let config = bakkal::config::Config::new("127.0.0.1:0".parse().unwrap(), db.url.clone());
    let store = bakkal::server::open_store(&config).await.expect("store");
    store
        .create_user(
            &bakkal_store::UserFields {
                display_name: "Ada Admin".into(),
                email: "ada@example.com".into(),
                roles: vec!["admin".into()],
                active: true,
                oidc_subject: Some("sub-admin".into()),
                ..Default::default()
            },
            1,
        )
        .await
        .expect("admin user");
    store.close().await;
    Some(TestServer::start_on_with(db, move |c| c.auth.oidc = Some(oidc)).await)
}

async fn create_user(
    server: &TestServer,
    admin: &str,
    email: &str,
    role: &str,
    subject: &str,
) -> proto::User {
    AccessServiceClient::new(server.channel.clone())
        .create_user(with_token(
            admin,
            proto::CreateUserRequest {
                user: Some(proto::User {
                    display_name: email.into(),
                    email: email.into(),
                    roles: vec![role.into()],
                    oidc_subject: subject.into(),
                    ..Default::default()
                }),
                inactive: false,
            },
        ))
        .await
        .expect("create user")
        .into_inner()
}

async fn a_valid_token_speaks_for_its_user(backend: Backend) {
    let idp = Idp::new();
    let Some(server) = server_for(backend, idp.config()).await else {
        return;
    };
    let admin = idp.token("sub-admin");
    let me = identity(&server, &admin).await.expect("admin token works");
    assert_eq!(me.principal, "users/1");
    assert_eq!(me.roles, vec!["admin".to_string()]);
    assert_eq!(me.api_key, "");
    assert!(me.auth_required);

    // by subject, through AccessService: an analyst reads customers but manages no users
    let ana = create_user(&server, &admin, "ana@example.com", "analyst", "sub-ana").await;
    assert_eq!(ana.oidc_subject, "sub-ana");
    let ana_token = idp.token("sub-ana");
    let who = identity(&server, &ana_token).await.expect("analyst token");
    assert_eq!(who.principal, ana.name);
    assert_eq!(who.roles, vec!["analyst".to_string()]);
    CustomerServiceClient::new(server.channel.clone())
        .list_customers(with_token(
            &ana_token,
            proto::ListCustomersRequest::default(),
        ))
        .await
        .expect("an analyst lists customers");
    let denied = AccessServiceClient::new(server.channel.clone())
        .create_user(with_token(&ana_token, proto::CreateUserRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // a second user cannot take the same subject
    let taken = AccessServiceClient::new(server.channel.clone())
        .create_user(with_token(
            &admin,
            proto::CreateUserRequest {
                user: Some(proto::User {
                    display_name: "Copy".into(),
                    email: "copy@example.com".into(),
                    oidc_subject: "sub-ana".into(),
                    ..Default::default()
                }),
                inactive: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");

    // by verified email, for a user bound to no subject
    let eve = create_user(&server, &admin, "eve@example.com", "marketer", "").await;
    let mut c = idp::claims("idp-eve-123");
    c["email"] = json!("Eve@Example.com");
    c["email_verified"] = json!(true);
    let eve_token = idp.keys[0].sign(&c);
    assert_eq!(
        identity(&server, &eve_token).await.unwrap().principal,
        eve.name
    );
    // …not by an unverified one
    c["email_verified"] = json!(false);
    let unverified = identity(&server, &idp.keys[0].sign(&c)).await.unwrap_err();
    assert_eq!(unverified.code(), Code::Unauthenticated);
    assert!(
        unverified.message().contains("no bakkal user"),
        "{unverified:?}"
    );
    // a user bound to a subject is not reached by their email under another subject
    let mut other = idp::claims("someone-else");
    other["email"] = json!("ana@example.com");
    other["email_verified"] = json!(true);
    let err = identity(&server, &idp.keys[0].sign(&other))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // the subject wins over the email
    let mut both = idp::claims("sub-ana");
    both["email"] = json!("eve@example.com");
    both["email_verified"] = json!(true);
    assert_eq!(
        identity(&server, &idp.keys[0].sign(&both))
            .await
            .unwrap()
            .principal,
        ana.name
    );
    // an unknown subject
    let err = identity(&server, &idp.token("nobody")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // the EdDSA and RS256 keys of the set sign as well
    for key in &idp.keys[1..] {
        let t = key.sign(&idp::claims("sub-ana"));
        assert_eq!(
            identity(&server, &t).await.unwrap().principal,
            ana.name,
            "{:?}",
            key.alg
        );
    }

    // a deactivated user's tokens stop working
    AccessServiceClient::new(server.channel.clone())
        .update_user(with_token(
            &admin,
            proto::UpdateUserRequest {
                user: Some(proto::User {
                    name: eve.name.clone(),
                    active: false,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["active".into()],
                }),
            },
        ))
        .await
        .expect("deactivate");
    let err = identity(&server, &eve_token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("deactivated"), "{err:?}");
    server.stop().await;
}

async fn every_bad_token_is_unauthenticated(backend: Backend) {
    let idp = Idp::new();
    let Some(server) = server_for(backend, idp.config()).await else {
        return;
    };
    let key = &idp.keys[0];
    let now = idp::now();
    let valid = idp::claims("sub-admin");
    assert!(identity(&server, &key.sign(&valid)).await.is_ok());
    let changed = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = valid.clone();
        f(&mut c);
        c
    };
    // a key the provider never published, under the provider's key id
    let stranger = TestKey::es256("es-1");
    let header = |alg: &str| json!({ "alg": alg, "typ": "JWT", "kid": key.kid });
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            key.sign(&changed(&|c| {
                c["exp"] = json!(now - 120);
                c["iat"] = json!(now - 900);
                c["nbf"] = json!(now - 900);
            })),
        ),
        (
            "not yet valid",
            key.sign(&changed(&|c| c["nbf"] = json!(now + 300))),
        ),
        (
            "wrong issuer",
            key.sign(&changed(&|c| c["iss"] = json!("https://evil.example"))),
        ),
        (
            "wrong audience",
            key.sign(&changed(&|c| c["aud"] = json!("someone-else"))),
        ),
        (
            "no exp",
            key.sign(&changed(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
        ),
        ("wrong signature", stranger.sign(&valid)),
        (
            "signature of another key of the set",
            idp.keys[1].sign_as(&key.kid, &valid),
        ),
        ("unknown key id", key.sign_as("es-9", &valid)),
        (
            "RS256 header on the ES256 key",
            idp.keys[2].sign_as(&key.kid, &valid),
        ),
        (
            "HS256 keyed with the RSA modulus, under the RSA key id",
            idp::unsigned(
                &json!({ "alg": "HS256", "typ": "JWT", "kid": "rs-1" }),
                &valid,
                Some(&idp.keys[2].public),
            ),
        ),
        ("alg none", idp::unsigned(&header("none"), &valid, None)),
        (
            "alg none, no signature part",
            idp::unsigned(&header("none"), &valid, None)
                .trim_end_matches('.')
                .to_string(),
        ),
        (
            "HS256 keyed with the public key",
            idp::unsigned(&header("HS256"), &valid, Some(&key.public)),
        ),
        (
            "HS256 keyed with the JWK text",
            idp::unsigned(
                &header("HS256"),
                &valid,
                Some(key.jwk.to_string().as_bytes()),
            ),
        ),
        (
            "HS256 without a kid",
            idp::unsigned(
                &json!({ "alg": "HS256", "typ": "JWT" }),
                &valid,
                Some(&key.public),
            ),
        ),
        (
            "ES384 header on the ES256 key",
            idp::unsigned(&header("ES384"), &valid, None) + "AAAA",
        ),
        ("garbage", "abc.def.ghi".into()),
        ("not a key, not a JWT", "hello".into()),
    ];
    for (what, token) in &cases {
        let err = identity(&server, token)
            .await
            .expect_err(&format!("{what} must be refused"));
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: {err:?}");
    }
    // API keys still take the key path: a made-up one is refused as a key
    let unknown = bakkal_domain::access::new_key(&[7u8; 48], false).1;
    let err = identity(&server, &unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("API key"), "{err:?}");
    server.stop().await;
}

async fn a_rotated_key_set_is_read_again_for_an_unknown_key_id(backend: Backend) {
    let mut idp = Idp::new();
    let Some(server) = server_for(backend, idp.config()).await else {
        return;
    };
    let fresh = TestKey::es256("es-2");
    let token = fresh.sign(&idp::claims("sub-admin"));
    idp.keys.push(fresh);
    idp.write();
    let me = identity(&server, &token)
        .await
        .expect("the new key is picked up");
    assert_eq!(me.principal, "users/1");
    server.stop().await;
}

/// A JWK set served over HTTP that answers 503 until `up` is set.
async fn serve_jwks(document: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let up = std::sync::Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let document = document.clone();
            let up = flag.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let response = if up {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{document}",
                        document.len()
                    )
                } else {
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
                };
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, up)
}

async fn a_key_set_from_a_url_is_fetched(backend: Backend) {
    let idp = Idp::new();
    let (url, up) = serve_jwks(idp.jwks().to_string()).await;
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let config = bakkal::auth::oidc::OidcConfig {
        jwks: JwksSource::Url(url),
        ..idp.config()
    };
    let Some(server) = server_for(backend, config).await else {
        return;
    };
    let me = identity(&server, &idp.token("sub-admin"))
        .await
        .expect("token");
    assert_eq!(me.principal, "users/1");
    server.stop().await;
}

async fn a_server_starts_while_the_key_set_url_is_down(backend: Backend) {
    let idp = Idp::new();
    let (url, _down) = serve_jwks(idp.jwks().to_string()).await;
    let config = bakkal::auth::oidc::OidcConfig {
        jwks: JwksSource::Url(url),
        ..idp.config()
    };
    // TestServer waits for health to answer: the server is up
    let Some(server) = server_for(backend, config).await else {
        return;
    };
    // tokens cannot be checked yet: UNAVAILABLE (retry), not a verdict on the token
    let err = identity(&server, &idp.token("sub-admin"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    server.stop().await;
}

for_each_backend!(
    a_valid_token_speaks_for_its_user,
    every_bad_token_is_unauthenticated,
    a_rotated_key_set_is_read_again_for_an_unknown_key_id,
    a_key_set_from_a_url_is_fetched,
    a_server_starts_while_the_key_set_url_is_down,
);
