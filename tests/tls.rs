//! Transport security through the public API, on SQLite and PostgreSQL: a TLS server refuses
//! a plaintext client; with a client CA (mTLS) a client without a certificate or with one from
//! another CA cannot connect, and a certificate listed by a service account is that account
//! (GetCallerIdentity names it, its roles decide what it may call, deactivating it shuts it
//! out); a bearer key wins over the certificate; a connection that never finishes the TLS
//! handshake gives its slot back. Every CA, certificate and key is made here, at test time.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bakkal::config::Config;
use bakkal::proto;
use bakkal::proto::access_service_client::AccessServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::tls::TlsConfig;
use common::{Backend, TestDb};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

// ---- certificates -------------------------------------------------------------------------------

/// A CA of the test's own.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate with its key.
struct Leaf {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Leaf {
    /// SHA-256 of the DER certificate as `openssl x509 -fingerprint -sha256` prints it.
    fn openssl_fingerprint(&self) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.cert.as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    fn fingerprint(&self) -> String {
        self.openssl_fingerprint().replace(':', "").to_lowercase()
    }
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn server(&self) -> Leaf {
        self.leaf(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// PEM files in a temporary directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

// ---- clients ------------------------------------------------------------------------------------

/// A TLS channel to `addr` trusting `server_ca`, presenting `identity` when given.
async fn tls_channel(
    addr: SocketAddr,
    server_ca: &Ca,
    identity: Option<&Leaf>,
) -> Result<Channel, tonic::transport::Error> {
    bakkal::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.der()).unwrap();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.cert.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Endpoint::from_shared(format!("http://localhost:{}", addr.port()))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

/// A plaintext channel to `addr` (connecting lazily: the first call fails, not the connect).
fn plaintext_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

async fn health(channel: Channel) -> Result<(), tonic::Status> {
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
}

fn with_key<T>(key: Option<&str>, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(k) = key {
        r.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {k}")).unwrap(),
        );
    }
    r
}

async fn identity(channel: &Channel, key: Option<&str>) -> Result<proto::CallerIdentity, Code> {
    AccessServiceClient::new(channel.clone())
        .get_caller_identity(with_key(key, proto::GetCallerIdentityRequest {}))
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.code())
}

/// ListCustomers (a read an analyst may make) and CreateCustomer (a write they may not).
async fn read_and_write(channel: &Channel, key: Option<&str>) -> (Code, Code) {
    let mut c = CustomerServiceClient::new(channel.clone());
    let read = c
        .list_customers(with_key(key, proto::ListCustomersRequest::default()))
        .await
        .map(|_| Code::Ok)
        .unwrap_or_else(|s| s.code());
    let write = c
        .create_customer(with_key(
            key,
            proto::CreateCustomerRequest {
                customer: Some(proto::Customer {
                    display_name: "Ayşe".into(),
                    email: format!("a{}@example.com", rand::random::<u32>()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .map(|_| Code::Ok)
        .unwrap_or_else(|s| s.code());
    (read, write)
}

// ---- servers ------------------------------------------------------------------------------------

/// A server with TLS on a fresh database, stopped by `stop`.
struct TlsServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    _db: TestDb,
}

impl TlsServer {
    /// Start on `db` with `tls`; up once a TLS client trusting `server_ca` and presenting
    /// `probe` (for mTLS) gets an answer from health.
    async fn start(
        db: TestDb,
        tls: TlsConfig,
        server_ca: &Ca,
        probe: Option<&Leaf>,
        tweak: impl FnOnce(&mut Config),
    ) -> TlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config {
            max_connections: 8,
            tls: Some(tls),
            ..Config::new(addr, db.url.clone())
        };
        tweak(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(bakkal::server::run(config, listener, async {
            let _ = rx.await;
        }));
        for _ in 0..200 {
            if handle.is_finished() {
                break;
            }
            if let Ok(ch) = tls_channel(addr, server_ca, probe).await {
                if health(ch).await.is_ok() {
                    return TlsServer {
                        addr,
                        shutdown: Some(tx),
                        handle,
                        _db: db,
                    };
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        match handle.await {
            Ok(Err(e)) => panic!("server failed: {e:#}"),
            _ => panic!("server at {addr} did not come up"),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle
            .await
            .expect("server task")
            .expect("server exits cleanly");
    }
}

/// An admin API key written to `db` before the server starts (`bakkal keys create`).
async fn admin_key(db: &TestDb) -> String {
    let store = bakkal_store::Store::connect(&bakkal_store::StoreOptions::new(db.url.clone()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let (_, key) = bakkal::auth::keys::bootstrap(&store, "ops", "admin", 1)
        .await
        .unwrap();
    store.close().await;
    key
}

// ---- tests --------------------------------------------------------------------------------------

async fn plaintext_client_cannot_talk_to_a_tls_server(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let ca = Ca::new("bakkal test server CA");
    let server_cert = ca.server();
    let files = Files::new();
    let tls = TlsConfig {
        cert: files.write("server.pem", &server_cert.cert_pem),
        key: files.write("server.key", &server_cert.key_pem),
        client_ca: None,
        client_auth_optional: false,
    };
    let server = TlsServer::start(db, tls, &ca, None, |_| {}).await;

    // plaintext HTTP/2 against TLS: no answer, however the client tries
    let plain = plaintext_channel(server.addr);
    let err = health(plain.clone()).await.expect_err("plaintext refused");
    assert_ne!(err.code(), Code::Ok);
    assert!(identity(&plain, None).await.is_err());

    // a client that does not trust the server's CA cannot connect either
    let stranger_ca = Ca::new("some other CA");
    assert!(
        tls_channel(server.addr, &stranger_ca, None).await.is_err(),
        "a certificate from an untrusted CA was accepted by the client"
    );

    // TLS with the right CA: served (no client CA, loopback: authentication stays off)
    let tls = tls_channel(server.addr, &ca, None)
        .await
        .expect("TLS connect");
    health(tls.clone()).await.expect("health over TLS");
    let me = identity(&tls, None).await.expect("identity over TLS");
    assert_eq!(me.principal, "open");
    assert!(!me.auth_required);
    server.stop().await;
}

async fn client_certificates_map_to_service_accounts(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let admin = admin_key(&db).await;
    let server_ca = Ca::new("bakkal test server CA");
    let client_ca = Ca::new("bakkal test client CA");
    let other_ca = Ca::new("another client CA");
    let server_cert = server_ca.server();
    let reporting = client_ca.client("reporting");
    let unmapped = client_ca.client("unmapped");
    let stranger = other_ca.client("reporting");
    let files = Files::new();
    let tls = TlsConfig {
        cert: files.write("server.pem", &server_cert.cert_pem),
        key: files.write("server.key", &server_cert.key_pem),
        client_ca: Some(files.write("clients.pem", &client_ca.pem())),
        client_auth_optional: false,
    };
    // loopback and no --require-auth: the client CA alone turns authentication on
    let server = TlsServer::start(db, tls, &server_ca, Some(&unmapped), |_| {}).await;
    let addr = server.addr;

    // no certificate, or one from another CA: the handshake fails, nothing is served
    for (what, leaf) in [("no certificate", None), ("another CA", Some(&stranger))] {
        let outcome = match tls_channel(addr, &server_ca, leaf).await {
            Err(_) => Err(()),
            Ok(ch) => health(ch).await.map_err(|_| ()),
        };
        assert!(outcome.is_err(), "{what}: served");
    }
    assert!(health(plaintext_channel(addr)).await.is_err());

    // a certificate of the right CA that no service account lists: UNAUTHENTICATED
    let unmapped_ch = tls_channel(addr, &server_ca, Some(&unmapped))
        .await
        .unwrap();
    assert_eq!(
        identity(&unmapped_ch, None).await,
        Err(Code::Unauthenticated)
    );
    assert_eq!(
        read_and_write(&unmapped_ch, None).await,
        (Code::Unauthenticated, Code::Unauthenticated)
    );

    // a bearer key wins over the certificate: the admin, over the unmapped certificate
    let me = identity(&unmapped_ch, Some(&admin)).await.expect("admin");
    assert!(me.principal.starts_with("serviceAccounts/"), "{me:?}");
    assert!(!me.api_key.is_empty(), "{me:?}");
    assert!(me.client_certificate_sha256.is_empty(), "{me:?}");
    assert!(me.auth_required);

    // the admin maps the certificate to an analyst service account (openssl's spelling)
    let mut access = AccessServiceClient::new(unmapped_ch.clone());
    let account = access
        .create_service_account(with_key(
            Some(&admin),
            proto::CreateServiceAccountRequest {
                service_account: Some(proto::ServiceAccount {
                    display_name: "reporting".into(),
                    roles: vec!["analyst".into()],
                    client_certificate_sha256: vec![reporting.openssl_fingerprint()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("create service account")
        .into_inner();
    assert_eq!(
        account.client_certificate_sha256,
        [reporting.fingerprint()],
        "stored as lowercase hex"
    );

    // the certificate alone is that account, with its roles
    let ch = tls_channel(addr, &server_ca, Some(&reporting))
        .await
        .unwrap();
    let me = identity(&ch, None).await.expect("identity by certificate");
    assert_eq!(me.principal, account.name);
    assert_eq!(me.client_certificate_sha256, reporting.fingerprint());
    assert!(me.api_key.is_empty());
    assert_eq!(me.roles, ["analyst"]);
    assert_eq!(
        read_and_write(&ch, None).await,
        (Code::Ok, Code::PermissionDenied),
        "an analyst reads customers but does not create them"
    );

    // a fingerprint belongs to one account
    let taken = access
        .create_service_account(with_key(
            Some(&admin),
            proto::CreateServiceAccountRequest {
                service_account: Some(proto::ServiceAccount {
                    display_name: "copycat".into(),
                    roles: vec!["admin".into()],
                    client_certificate_sha256: vec![reporting.fingerprint()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .expect_err("a fingerprint another account lists");
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");

    // roles changed: the certificate may write now
    let account = access
        .update_service_account(with_key(
            Some(&admin),
            proto::UpdateServiceAccountRequest {
                service_account: Some(proto::ServiceAccount {
                    name: account.name.clone(),
                    roles: vec!["integration".into()],
                    etag: account.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["roles".into()],
                }),
            },
        ))
        .await
        .expect("update roles")
        .into_inner();
    assert_eq!(account.client_certificate_sha256, [reporting.fingerprint()]);
    assert_eq!(read_and_write(&ch, None).await.1, Code::Ok);

    // deactivated: the certificate no longer gets in
    access
        .update_service_account(with_key(
            Some(&admin),
            proto::UpdateServiceAccountRequest {
                service_account: Some(proto::ServiceAccount {
                    name: account.name.clone(),
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
    assert_eq!(identity(&ch, None).await, Err(Code::Unauthenticated));
    server.stop().await;
}

async fn optional_client_certificates(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let admin = admin_key(&db).await;
    let server_ca = Ca::new("bakkal test server CA");
    let client_ca = Ca::new("bakkal test client CA");
    let other_ca = Ca::new("another client CA");
    let server_cert = server_ca.server();
    let stranger = other_ca.client("stranger");
    let files = Files::new();
    let tls = TlsConfig {
        cert: files.write("server.pem", &server_cert.cert_pem),
        key: files.write("server.key", &server_cert.key_pem),
        client_ca: Some(files.write("clients.pem", &client_ca.pem())),
        client_auth_optional: true,
    };
    let server = TlsServer::start(db, tls, &server_ca, None, |_| {}).await;
    // no certificate: the connection is served, but the caller needs a key
    let ch = tls_channel(server.addr, &server_ca, None).await.unwrap();
    assert_eq!(identity(&ch, None).await, Err(Code::Unauthenticated));
    let me = identity(&ch, Some(&admin)).await.expect("admin key");
    assert!(me.auth_required);
    // a certificate from another CA is still refused
    let outcome = match tls_channel(server.addr, &server_ca, Some(&stranger)).await {
        Err(_) => Err(()),
        Ok(ch) => health(ch).await.map_err(|_| ()),
    };
    assert!(outcome.is_err(), "another CA's certificate was accepted");
    server.stop().await;
}

async fn unfinished_handshakes_give_their_slot_back(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let ca = Ca::new("bakkal test server CA");
    let server_cert = ca.server();
    let files = Files::new();
    let tls = TlsConfig {
        cert: files.write("server.pem", &server_cert.cert_pem),
        key: files.write("server.key", &server_cert.key_pem),
        client_ca: None,
        client_auth_optional: false,
    };
    // one connection at a time, a 1 s handshake
    let server = TlsServer::start(db, tls, &ca, None, |c| {
        c.connections.max_connections = 1;
        c.connections.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    // the probe's connection has gone: the slot is free; two clients take it and never finish
    // the handshake, one silent, one after the first byte of a ClientHello
    let silent = TcpStream::connect(server.addr).await.unwrap();
    let mut started = TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut started, &[0x16])
        .await
        .unwrap();
    // both are closed by the server, and then a real client is served
    for mut s in [silent, started] {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncReadExt::read(&mut s, &mut buf),
        )
        .await
        .expect("the server closes an unfinished handshake");
        // closed (0 bytes, a reset) or refused with an alert: either way no longer held
        let _ = read;
    }
    let ch = tls_channel(server.addr, &ca, None).await.expect("connect");
    health(ch)
        .await
        .expect("served after the unfinished handshakes");
    server.stop().await;
}

for_each_backend!(
    plaintext_client_cannot_talk_to_a_tls_server,
    client_certificates_map_to_service_accounts,
    optional_client_certificates,
    unfinished_handshakes_give_their_slot_back,
);
