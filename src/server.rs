//! Assembles and runs the server: the store, the bakkal services, health, reflection (v1 and
//! v1alpha), request ids and tracing, compression and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bakkal_script::ScriptHost;
use bakkal_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;

use crate::audit::service::AuditApi;
use crate::audit::AuditLayer;
use crate::auth::layer::AuthLayer;
use crate::auth::service::AccessApi;
use crate::auth::Authenticator;
use crate::backup::{BackupApi, Backups};
use crate::campaign_service::CampaignApi;
use crate::config::Config;
use crate::customer_service::CustomerApi;
use crate::limits::layer::{LimitLayer, Limits};
use crate::loyalty_service::LoyaltyApi;
use crate::metrics::http::Scraper;
use crate::metrics::layer::MetricsLayer;
use crate::metrics::{Metrics, ScriptHooks};
use crate::offer_service::OfferApi;
use crate::personal_data::PersonalDataApi;
use crate::proto;
use crate::proto::access_service_server::AccessServiceServer;
use crate::proto::audit_service_server::AuditServiceServer;
use crate::proto::backup_service_server::BackupServiceServer;
use crate::proto::campaign_service_server::CampaignServiceServer;
use crate::proto::customer_service_server::CustomerServiceServer;
use crate::proto::loyalty_service_server::LoyaltyServiceServer;
use crate::proto::offer_service_server::OfferServiceServer;
use crate::proto::personal_data_service_server::PersonalDataServiceServer;
use crate::proto::sales_service_server::SalesServiceServer;
use crate::proto::script_service_server::ScriptServiceServer;
use crate::proto::segment_service_server::SegmentServiceServer;
use crate::proto::service_desk_service_server::ServiceDeskServiceServer;
use crate::sales::SalesApi;
use crate::script_service::ScriptApi;
use crate::segment_service::SegmentApi;
use crate::service_desk::ServiceDeskApi;
use crate::tracing_layer;

/// Connect to the database and apply pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    open_observed_store(config, None).await
}

/// [`open_store`], telling `observer` of the store's waits.
async fn open_observed_store(
    config: &Config,
    observer: Option<Arc<dyn bakkal_store::StoreObserver>>,
) -> anyhow::Result<Store> {
    let mut opts = StoreOptions::new(config.database_url.clone());
    opts.max_connections = config.max_connections;
    opts.cache_capacity = config.customer_cache;
    opts.observer = observer;
    opts.audit = config.audit_trail;
    let store = Store::connect(&opts)
        .await
        .with_context(|| format!("cannot open the database {}", redact(&config.database_url)))?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    Ok(store)
}

/// The URL without a password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// A reflection builder that knows every service served here, both reflection versions
/// included, and the google.rpc error details.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// The bakkal services whose health is reported one by one.
const SERVICES: [&str; 12] = [
    <AccessServiceServer<AccessApi> as NamedService>::NAME,
    <AuditServiceServer<AuditApi> as NamedService>::NAME,
    <CustomerServiceServer<CustomerApi> as NamedService>::NAME,
    <ScriptServiceServer<ScriptApi> as NamedService>::NAME,
    <SegmentServiceServer<SegmentApi> as NamedService>::NAME,
    <CampaignServiceServer<CampaignApi> as NamedService>::NAME,
    <ServiceDeskServiceServer<ServiceDeskApi> as NamedService>::NAME,
    <SalesServiceServer<SalesApi> as NamedService>::NAME,
    <OfferServiceServer<OfferApi> as NamedService>::NAME,
    <LoyaltyServiceServer<LoyaltyApi> as NamedService>::NAME,
    <BackupServiceServer<BackupApi> as NamedService>::NAME,
    <PersonalDataServiceServer<PersonalDataApi> as NamedService>::NAME,
];

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// The same codecs for every bakkal service: gzip and zstd both ways, 16 MiB messages.
macro_rules! with_codecs {
    ($server:expr) => {
        $server
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(16 * 1024 * 1024)
    };
}

/// HTTP/2 receive window of one stream: how much of a client stream (an import) may wait in
/// h2's buffer while the handler is not reading, e.g. while the database writes a batch.
/// 256 KiB keeps a client 50 ms away at about 5 MB/s.
pub const STREAM_WINDOW: u32 = 256 << 10;
/// HTTP/2 receive window of a connection, 128 stream windows.
///
/// h2 closes a connection (GOAWAY `ENHANCE_YOUR_CALM`, "too_many_data_frames") when the DATA
/// frames smaller than 256 bytes it holds unread are charged more than half the connection
/// window, each charged 256 minus its length. gRPC clients (grpcurl, grpcio) send a small
/// message a frame, so a stream window full of them must stay under that budget: the smallest
/// gRPC message is 5 bytes, charged 251, about 50 per byte of window. Half of 128 stream
/// windows is 64 per byte, so a full window of any gRPC messages fits, and of rows of 40 bytes
/// or more (about 5 per byte), a dozen streams waiting at once. hyper does not let the server
/// set h2's budget itself.
pub const CONNECTION_WINDOW: u32 = 128 * STREAM_WINDOW;

// The budget argument above, checked when the server is built.
const _: () = {
    let smallest_grpc_frame = 5;
    let charged = 256 - smallest_grpc_frame;
    let worst_stream = (STREAM_WINDOW / smallest_grpc_frame) * charged;
    assert!(worst_stream <= CONNECTION_WINDOW / 2);
};

/// How long calls in flight at shutdown may still run scripts; then the script host stops
/// every call, so a segment refresh or a campaign batch cannot hold the shutdown.
pub const SCRIPT_GRACE: Duration = Duration::from_secs(1);

/// Serve on `listener` until `shutdown` resolves, then finish in-flight calls and return.
/// Scripts still running [`SCRIPT_GRACE`] after `shutdown` are stopped: the calls running them
/// answer UNAVAILABLE and campaign runs stay RUNNING, resumed by the next server.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(c) = &config.default_currency {
        if bakkal_domain::normalise::currency(c).is_err() {
            anyhow::bail!("--default-currency {c} is not an ISO 4217 code like TRY or EUR");
        }
    }
    // Held for the server's life: `bakkal restore` refuses to replace the database meanwhile.
    let _database_lock = crate::backup::lock_database(&config.database_url)?;
    // before the database: a bad certificate or key stops the start at once
    let tls = config
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()?;
    // The metrics listener first, so a taken port fails the start before any work.
    let metrics = match config.metrics.listen {
        Some(at) => {
            let listener = TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen for metrics on {at}"))?;
            let bound = listener.local_addr()?;
            config.metrics.bound.set(bound);
            Some((Metrics::new()?, listener, bound))
        }
        None => None,
    };
    let store_hooks = metrics.as_ref().map(|(m, _, _)| {
        let sqlite = config.database_url.starts_with("sqlite:");
        crate::metrics::StoreHooks::new(m, sqlite) as Arc<dyn bakkal_store::StoreObserver>
    });
    let store = open_observed_store(&config, store_hooks).await?;
    let addr = listener.local_addr()?;
    if !config.audit_trail {
        tracing::warn!("the audit trail is OFF (--no-audit-trail): writes leave no audit events");
    }
    let verifier = match &config.auth.oidc {
        Some(oidc) => Some(crate::auth::oidc::Verifier::start(oidc.clone()).await?),
        None => None,
    };
    let mut auth = Authenticator::new(
        store.clone(),
        check_auth_posture(&config, addr, &store).await?,
    );
    if let Some(v) = &verifier {
        auth = auth.with_oidc(v.clone());
    }
    let auth = Arc::new(auth);
    let jwks_refresh = verifier.as_ref().and_then(|v| v.spawn_refresh());

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::Serving).await;
    // Report NOT_SERVING while the database does not answer.
    let watched = store.clone();
    let health_watch = tokio::spawn(async move {
        let mut up = true;
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let ok = watched.ping().await.is_ok();
            if ok != up {
                up = ok;
                if ok {
                    tracing::info!("database answers again");
                    set_health(&health, ServingStatus::Serving).await;
                } else {
                    tracing::warn!("database does not answer");
                    set_health(&health, ServingStatus::NotServing).await;
                }
            }
        }
    });

    let reflection_v1 = reflection().build_v1()?;
    // grpcurl 1.8 and many other tools still ask for v1alpha.
    let reflection_v1alpha = reflection().build_v1alpha()?;

    // One script host (engine and compiled-script cache) for the whole server.
    let script_host = Arc::new(match &metrics {
        Some((m, _, _)) => ScriptHost::default().with_observer(ScriptHooks::new(m)),
        None => ScriptHost::default(),
    });
    let customers = with_codecs!(CustomerServiceServer::new(CustomerApi::new(
        store.clone(),
        config.future_tolerance,
        config.default_currency.clone()
    )));
    let scripts = with_codecs!(ScriptServiceServer::new(ScriptApi::new(
        store.clone(),
        script_host.clone()
    )));
    let segments = with_codecs!(SegmentServiceServer::new(SegmentApi::new(
        store.clone(),
        script_host.clone()
    )));
    let wake_scheduler = Arc::new(tokio::sync::Notify::new());
    let campaigns = with_codecs!(CampaignServiceServer::new(CampaignApi::new(
        store.clone(),
        script_host.clone(),
        wake_scheduler.clone()
    )));
    let service_desk = with_codecs!(ServiceDeskServiceServer::new(ServiceDeskApi::new(
        store.clone(),
        script_host.clone(),
        &config.desk
    )));
    let offers = with_codecs!(OfferServiceServer::new(OfferApi::new(
        store.clone(),
        script_host.clone()
    )));
    let loyalty = with_codecs!(LoyaltyServiceServer::new(LoyaltyApi::new(store.clone())));
    let sales = with_codecs!(SalesServiceServer::new(SalesApi::new(
        store.clone(),
        config.sales_clock.clone()
    )));
    let access = with_codecs!(AccessServiceServer::new(AccessApi::new(
        store.clone(),
        auth.clone()
    )));
    // Audit watches end at shutdown, so they do not hold the graceful stop.
    let (stop_watches, watches_stop) = tokio::sync::watch::channel(false);
    let audit = with_codecs!(AuditServiceServer::new(AuditApi::new(
        store.clone(),
        watches_stop
    )));

    let backups = Arc::new(Backups::new(store.clone(), config.backup.clone()));
    let backup = with_codecs!(BackupServiceServer::new(BackupApi::new(backups.clone())));
    let personal_data = with_codecs!(PersonalDataServiceServer::new(PersonalDataApi::new(
        store.clone()
    )));

    let layers = ServiceBuilder::new()
        .layer(tracing_layer::screen_request_id_layer())
        .layer(tracing_layer::set_request_id())
        .layer(tracing_layer::trace_layer())
        .layer(tracing_layer::propagate_request_id())
        // counts what the caller gets: outside the decode map and authentication
        .option_layer(
            metrics
                .as_ref()
                .map(|(m, _, _)| MetricsLayer::new(m.clone())),
        )
        .layer(tracing_layer::decode_errors())
        // the audit trail's call around everything after: denied calls are audited too
        .layer(AuditLayer::new(store.clone()))
        // who is calling and may they: before any body is decoded
        .layer(AuthLayer::new(auth))
        // the caller's rate and the server's calls in flight (health passes)
        .layer(LimitLayer::new(Arc::new(Limits::new(&config.limits))));

    // The outbox dispatcher, stopped before the store closes.
    let (stop_dispatch, stop_rx) = tokio::sync::watch::channel(false);
    let outbox = crate::dispatcher::outbox_path(config.outbox_file.as_ref(), &config.database_url);
    let sinks = crate::dispatcher::Sinks::build(&config.delivery, outbox).await?;
    // Background work writes as itself: `system:{task}` in the audit trail.
    use bakkal_store::audit::{scope, Call};
    let dispatcher = tokio::spawn(scope(
        Call::system("dispatcher"),
        crate::dispatcher::run(store.clone(), sinks, stop_rx.clone()),
    ));
    // The SLA watcher, stopped the same way.
    let sla_watcher = tokio::spawn(scope(
        Call::system("sla-watcher"),
        crate::service_desk::watcher::run(
            store.clone(),
            script_host.clone(),
            config.desk.clone(),
            stop_rx.clone(),
        ),
    ));
    // The campaign scheduler (runs, triggers, events), stopped with the dispatcher.
    let scheduler = tokio::spawn(scope(
        Call::system("scheduler"),
        crate::scheduler::run(
            store.clone(),
            script_host.clone(),
            crate::scheduler::SchedulerOptions {
                tick: config.scheduler_tick,
                ..Default::default()
            },
            wake_scheduler,
            stop_rx.clone(),
        ),
    ));
    // The loyalty points-expiry sweep, stopped the same way.
    let sweeper = tokio::spawn(scope(
        Call::system("loyalty-sweeper"),
        crate::loyalty_sweeper::run(store.clone(), config.loyalty_sweep, stop_rx.clone()),
    ));
    // Scheduled backups (--backup-every), stopped the same way.
    let scheduled_backups = tokio::spawn(scope(
        Call::system("backups"),
        crate::backup::schedule::run(backups, config.backup.every, stop_rx),
    ));

    // The metrics endpoint, serving until the server has stopped; and its upkeep.
    let metrics_tasks = metrics.map(|(m, listener, bound)| {
        if !bound.ip().is_loopback() {
            tracing::warn!(
                addr = %bound,
                "the metrics endpoint is unauthenticated: it holds no personal data, but bind \
                 it to a private address (README: metrics)"
            );
        }
        tracing::info!(addr = %bound, "metrics at http://{bound}/metrics");
        let scraper = Scraper::new(m.clone(), store.clone(), config.desk.clock.clone());
        let serving = tokio::spawn(crate::metrics::http::serve(listener, scraper));
        let upkeep = tokio::spawn(async move {
            loop {
                tokio::time::sleep(crate::metrics::UPKEEP_EVERY).await;
                m.upkeep();
            }
        });
        (serving, upkeep)
    });

    let shutdown = async move {
        shutdown.await;
        let _ = stop_watches.send(true);
        tokio::spawn(async move {
            tokio::time::sleep(SCRIPT_GRACE).await;
            tracing::info!("stopping the scripts still running");
            script_host.stop();
        });
    };

    tracing::info!(%addr, database = %redact(&config.database_url), "bakkal serving");
    let files = crate::connections::raise_open_file_limit();
    let limits = &config.connections;
    if !config.limits.rates.is_empty() || config.limits.max_in_flight.is_some() {
        tracing::info!(
            rates = ?config.limits.rates,
            max_in_flight = ?config.limits.max_in_flight,
            "request limits"
        );
    }
    tracing::info!(
        open_file_limit = files,
        max_connections = limits.max_connections,
        max_streams = limits.max_streams,
        "client connection limits"
    );
    match &config.tls {
        Some(t) if t.verifies_clients() => tracing::info!(
            client_certificates = if t.client_auth_optional {
                "optional"
            } else {
                "required"
            },
            "TLS on, client certificates verified (mTLS)"
        ),
        Some(_) => tracing::info!("TLS on"),
        None => tracing::info!("TLS off: plaintext HTTP/2 (pass --tls-cert and --tls-key)"),
    }
    let incoming = crate::connections::incoming(listener, limits, tls);
    let result = Server::builder()
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .max_concurrent_streams(Some(limits.max_streams))
        // pings keep a live connection from looking idle (see connections.rs)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(customers)
        .add_service(scripts)
        .add_service(segments)
        .add_service(campaigns)
        .add_service(service_desk)
        .add_service(sales)
        .add_service(offers)
        .add_service(loyalty)
        .add_service(access)
        .add_service(backup)
        .add_service(personal_data)
        .add_service(audit)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    health_watch.abort();
    if let Some((serving, upkeep)) = metrics_tasks {
        serving.abort();
        upkeep.abort();
    }
    if let Some(r) = jwks_refresh {
        r.abort();
    }
    let _ = stop_dispatch.send(true);
    let _ = dispatcher.await;
    let _ = sla_watcher.await;
    let _ = scheduler.await;
    let _ = sweeper.await;
    let _ = scheduled_backups.await;
    store.close().await;
    tracing::info!("bakkal stopped");
    result.context("server failed")
}

/// Whether this server authenticates (see `AuthConfig::enabled_for`; also whenever it verifies
/// client certificates), refusing to start when it must but has no way to (no live API key
/// yet, no OIDC provider, nor a service account listing a client certificate), and saying
/// loudly when it runs open.
async fn check_auth_posture(
    config: &Config,
    addr: std::net::SocketAddr,
    store: &Store,
) -> anyhow::Result<bool> {
    let mtls = config.tls.as_ref().is_some_and(|t| t.verifies_clients());
    if !config.auth.enabled_for(addr) && !mtls {
        if addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "authentication is OFF: anyone who can reach this address may read and change \
                 every customer; pass --require-auth to require API keys (README: access control)"
            );
        } else {
            tracing::warn!(
                %addr,
                "authentication is OFF on a non-loopback address (--insecure-no-auth)"
            );
        }
        return Ok(false);
    }
    let keys = store
        .live_api_key_count(bakkal_domain::time::now_micros())
        .await
        .context("cannot count API keys")?;
    if let Some(oidc) = &config.auth.oidc {
        tracing::info!(%addr, live_keys = keys, issuer = %oidc.issuer, "authentication on: every call but health needs an API key or a bearer token from the OIDC issuer");
        return Ok(true);
    }
    let certificate_accounts = if mtls {
        store
            .certificate_account_count()
            .await
            .context("cannot count service accounts with client certificates")?
    } else {
        0
    };
    if keys == 0 && certificate_accounts == 0 {
        anyhow::bail!(
            "authentication is on (--require-auth, --tls-client-ca, or a non-loopback address) \
             but no API key exists yet: create the first with `bakkal keys create --role admin \
             --name ops --database-url …`, or pass --insecure-no-auth on a trusted network \
             (without --tls-client-ca)"
        );
    }
    tracing::info!(
        %addr,
        live_keys = keys,
        certificate_accounts,
        "authentication on: every call but health needs an API key or a mapped client certificate"
    );
    Ok(true)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight calls");
}
