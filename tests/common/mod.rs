//! Test harness: a real bakkal server on an ephemeral port with a fresh database, and a real
//! tonic client. Every test runs on SQLite; on PostgreSQL too when `BAKKAL_TEST_POSTGRES_URL`
//! names a server (each test then gets a database of its own, dropped at the end).
#![allow(dead_code)]

pub mod idp;
pub mod pg_cluster;
pub mod process;

use std::net::SocketAddr;

use bakkal::config::Config;
use bakkal::proto;
use bakkal::proto::campaign_service_client::CampaignServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::script_service_client::ScriptServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::service_desk_service_client::ServiceDeskServiceClient;
use sqlx::{Connection, Executor, PgConnection};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    /// `None` for PostgreSQL when no server is configured.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("bakkal.db").display());
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                    pg_drop: None,
                })
            }
            Backend::Postgres => {
                let base = std::env::var("BAKKAL_TEST_POSTGRES_URL").ok()?;
                let name = format!("bakkal_t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = PgConnection::connect(&base)
                    .await
                    .expect("BAKKAL_TEST_POSTGRES_URL must reach a PostgreSQL server");
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                let url = match base.rfind('/') {
                    Some(i) if base[..i].contains("://") && i > base.find("://").unwrap() + 2 => {
                        format!("{}/{name}", &base[..i])
                    }
                    _ => format!("{base}/{name}"),
                };
                Some(TestDb {
                    url,
                    _dir: None,
                    pg_drop: Some((base, name)),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, name)) = self.pg_drop.take() {
            // best effort, on a thread of its own: the test's runtime may be shutting down
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    if let Ok(mut conn) = PgConnection::connect(&base).await {
                        let _ = conn
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub channel: Channel,
    pub db_url: String,
    /// The file the outbox dispatcher appends delivered messages to.
    pub outbox_file: std::path::PathBuf,
    /// Where the metrics endpoint listens, when the configuration asked for one.
    pub metrics_addr: Option<SocketAddr>,
    _outbox_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    /// The fresh database this server owns (dropped with it); `None` when serving one the test
    /// owns (see `start_at`).
    _db: Option<TestDb>,
}

impl TestServer {
    /// Start a server on a fresh database; `None` when the backend is not configured.
    pub async fn start(backend: Backend) -> Option<TestServer> {
        let db = TestDb::new(backend).await?;
        Some(Self::start_on(db).await)
    }

    /// Start a server on a fresh database with `tweak` applied to its configuration.
    pub async fn start_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
    ) -> Option<TestServer> {
        let db = TestDb::new(backend).await?;
        Some(Self::start_on_with(db, tweak).await)
    }

    pub async fn start_on(db: TestDb) -> TestServer {
        Self::start_on_with(db, |_| {}).await
    }

    pub async fn start_on_with(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let url = db.url.clone();
        Self::serve(&url, Some(db), tweak).await
    }

    /// Start a server on a database the test owns, so that several servers can share it.
    pub async fn start_at(url: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::serve(url, None, tweak).await
    }

    async fn serve(url: &str, db: Option<TestDb>, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let outbox_dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            max_connections: 8,
            customer_cache: 10_000,
            outbox_file: Some(outbox_dir.path().join("outbox.jsonl")),
            scheduler_tick: std::time::Duration::from_millis(50),
            ..Config::new(addr, url)
        };
        let mut config = config;
        tweak(&mut config);
        let metrics_bound = config.metrics.bound.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(bakkal::server::run(config, listener, async {
            let _ = rx.await;
        }));
        let channel = connect(addr).await;
        TestServer {
            addr,
            channel,
            // bound before the server answers health
            metrics_addr: metrics_bound.get(),
            db_url: url.to_string(),
            outbox_file: outbox_dir.path().join("outbox.jsonl"),
            _outbox_dir: outbox_dir,
            shutdown: Some(tx),
            handle: Some(handle),
            _db: db,
        }
    }

    pub fn customers(&self) -> CustomerServiceClient<Channel> {
        CustomerServiceClient::new(self.channel.clone())
    }

    pub fn desk(&self) -> ServiceDeskServiceClient<Channel> {
        ServiceDeskServiceClient::new(self.channel.clone())
    }

    /// Stop gracefully and wait for the server to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server exits cleanly");
        }
    }
}

async fn connect(addr: SocketAddr) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri");
    for _ in 0..200 {
        if let Ok(ch) = endpoint.connect().await {
            // wait until migrations ran and the service answers
            let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
            if health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok()
            {
                return ch;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("server at {addr} did not come up");
}

/// Rows in a table matching a condition, read straight from the database at `url`.
pub async fn count(url: &str, sql: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect");
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

/// Wait (up to 5 s) until `count(url, sql)` reaches `want`.
pub async fn wait_for(url: &str, sql: &str, want: i64) {
    for _ in 0..200 {
        if count(url, sql).await >= want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {sql} to reach {want}");
}

/// Run the test body on every configured backend: SQLite always, PostgreSQL when
/// `BAKKAL_TEST_POSTGRES_URL` is set.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = $crate::common::TestServer::start($crate::common::Backend::Sqlite)
                        .await
                        .expect("sqlite is always available");
                    super::$name(&server).await;
                    server.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(server) =
                        $crate::common::TestServer::start($crate::common::Backend::Postgres).await
                    else {
                        eprintln!("BAKKAL_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
                        return;
                    };
                    super::$name(&server).await;
                    server.stop().await;
                }
            )*
        }
    };
}

/// A CampaignService client on the test server.
pub fn campaigns(server: &TestServer) -> CampaignServiceClient<Channel> {
    CampaignServiceClient::new(server.channel.clone())
}

/// A segment of a SEGMENT script with `source`, through the API; its name.
pub async fn create_segment(server: &TestServer, source: &str) -> String {
    let rule = create_script(server, proto::ScriptKind::Segment, source).await;
    SegmentServiceClient::new(server.channel.clone())
        .create_segment(proto::CreateSegmentRequest {
            segment: Some(proto::Segment {
                display_name: "rule".into(),
                script: rule,
                ..Default::default()
            }),
        })
        .await
        .expect("create segment")
        .into_inner()
        .name
}

/// RefreshSegment on the interpreter path.
pub async fn refresh_segment(
    server: &TestServer,
    name: &str,
) -> Result<proto::RefreshSegmentResponse, tonic::Status> {
    SegmentServiceClient::new(server.channel.clone())
        .refresh_segment(proto::RefreshSegmentRequest {
            name: name.into(),
            interpreter_only: true,
        })
        .await
        .map(|r| r.into_inner())
}

/// Create a script of `kind` through the API; its name.
pub async fn create_script(server: &TestServer, kind: proto::ScriptKind, source: &str) -> String {
    ScriptServiceClient::new(server.channel.clone())
        .create_script(proto::CreateScriptRequest {
            script: Some(proto::Script {
                display_name: "rule".into(),
                kind: kind as i32,
                source: source.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create script")
        .into_inner()
        .name
}

/// Like `on_both_backends!`, in a module of its own, with each server's configuration
/// changed by `tweak` first.
#[macro_export]
macro_rules! on_both_backends_with {
    ($module:ident, $tweak:expr, $($name:ident),* $(,)?) => {
        mod $module {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let server = $crate::common::TestServer::start_with(
                            $crate::common::Backend::Sqlite,
                            $tweak,
                        )
                        .await
                        .expect("sqlite is always available");
                        super::super::$name(&server).await;
                        server.stop().await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some(server) = $crate::common::TestServer::start_with(
                            $crate::common::Backend::Postgres,
                            $tweak,
                        )
                        .await
                        else {
                            eprintln!("BAKKAL_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
                            return;
                        };
                        super::super::$name(&server).await;
                        server.stop().await;
                    }
                )*
            }
        }
    };
}

/// Run `async fn name(backend: Backend)` tests on both backends, for tests that start their
/// own servers (each body skips PostgreSQL itself when it is not configured).
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// A server requiring API keys, and an admin key made before it started (as `bakkal keys
/// create` does).
pub async fn secured(backend: Backend) -> Option<(TestServer, String)> {
    let db = TestDb::new(backend).await?;
    let config = Config::new("127.0.0.1:0".parse().unwrap(), db.url.clone());
    let store = bakkal::server::open_store(&config).await.expect("store");
    let (_, admin) = bakkal::auth::keys::bootstrap(&store, "ops", "admin", 1)
        .await
        .expect("bootstrap key");
    store.close().await;
    let server = TestServer::start_on_with(db, |c| c.auth.require = true).await;
    Some((server, admin))
}

/// `msg` as a request carrying the API key `key` (and `x-request-id`, when given).
pub fn keyed<T>(msg: T, key: &str, request_id: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("header value"),
    );
    if let Some(id) = request_id {
        r.metadata_mut()
            .insert("x-request-id", id.parse().expect("header value"));
    }
    r
}

static NEXT_ACCOUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A new service account with `role` and a key for it, made through the API with the admin
/// key: (the account's name, the key's id, the key's secret text).
pub async fn service_key(server: &TestServer, admin: &str, role: &str) -> (String, String, String) {
    let mut a =
        bakkal::proto::access_service_client::AccessServiceClient::new(server.channel.clone());
    let n = NEXT_ACCOUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sa = a
        .create_service_account(keyed(
            proto::CreateServiceAccountRequest {
                service_account: Some(proto::ServiceAccount {
                    display_name: format!("svc-{role}-{n}"),
                    roles: vec![role.to_string()],
                    ..Default::default()
                }),
                inactive: false,
            },
            admin,
            None,
        ))
        .await
        .expect("service account")
        .into_inner();
    let k = a
        .create_api_key(keyed(
            proto::CreateApiKeyRequest {
                parent: sa.name.clone(),
                api_key: Some(proto::ApiKey {
                    display_name: format!("{role} key"),
                    ..Default::default()
                }),
            },
            admin,
            None,
        ))
        .await
        .expect("api key")
        .into_inner();
    let key = k.api_key.expect("key");
    let key_id = key.name.trim_start_matches("apiKeys/").to_string();
    (sa.name, key_id, k.secret)
}
