//! Metrics operators scrape: `--metrics-listen ADDR` serves the Prometheus text format at
//! `/metrics` on an address of its own (`http.rs`).
//!
//! One [`Metrics`] per server holds the registry (a `metrics-exporter-prometheus` recorder,
//! never installed globally, so servers in one process keep their own figures). It is fed by
//! the RPC layer (`layer.rs`: calls by method and code, latency, in flight), by the hooks the
//! store and the script host call (`hooks.rs`: pool and writer-turn waits, script calls and
//! their errors and limits), and at scrape time by the pool's state and the work queued in the
//! database (`http.rs`: outbox depth and lag, runs in progress, SLA watcher lag, read at most
//! every few seconds whatever the scrape rate).
//!
//! The endpoint is unauthenticated: no figure carries personal data or a record's content
//! (labels are method names, codes, states and script kinds), but they do tell how busy the
//! server is, so bind it to a private or loopback address.

mod hooks;
pub mod http;
pub mod layer;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub use hooks::{ScriptHooks, StoreHooks};

/// Where metrics are served (`--metrics-listen`), and the address it was bound to.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// `None`: no metrics (nothing recorded, no listener).
    pub listen: Option<SocketAddr>,
    /// Set once the listener is bound (port 0 gives an ephemeral port): for tests.
    pub bound: BoundAddr,
}

/// An address filled in once, shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct BoundAddr(Arc<OnceLock<SocketAddr>>);

impl BoundAddr {
    pub fn get(&self) -> Option<SocketAddr> {
        self.0.get().copied()
    }

    pub(crate) fn set(&self, addr: SocketAddr) {
        let _ = self.0.set(addr);
    }
}

/// Latency buckets of RPCs (seconds): a cached read to a long import or segment refresh.
const RPC_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];
/// Buckets of waits for a connection or the writer turn (seconds), up to their 10 s timeouts.
const WAIT_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0,
];

/// How often recorded histogram samples are folded into their buckets between scrapes.
pub const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

const META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Every metric: name, type, unit and help. Each is described before the first scrape, so
/// every family the endpoint shows has its `# HELP` and `# TYPE`.
pub(crate) mod names {
    pub const RPC_REQUESTS: &str = "bakkal_rpc_requests_total";
    pub const RPC_DURATION: &str = "bakkal_rpc_duration_seconds";
    pub const RPC_IN_FLIGHT: &str = "bakkal_rpc_in_flight";
    pub const POOL_CONNECTIONS: &str = "bakkal_db_pool_connections";
    pub const POOL_MAX: &str = "bakkal_db_pool_max_connections";
    pub const POOL_WAIT: &str = "bakkal_db_pool_acquire_wait_seconds";
    pub const POOL_TIMEOUTS: &str = "bakkal_db_pool_acquire_timeouts_total";
    pub const WRITE_TURN_WAIT: &str = "bakkal_sqlite_write_turn_wait_seconds";
    pub const OUTBOX_MESSAGES: &str = "bakkal_outbox_messages";
    pub const OUTBOX_LAG: &str = "bakkal_outbox_delivery_lag_seconds";
    pub const RUNS_RUNNING: &str = "bakkal_campaign_runs_in_progress";
    pub const SLA_LAG: &str = "bakkal_sla_watcher_lag_seconds";
    pub const FIGURES_ERRORS: &str = "bakkal_metrics_database_errors_total";
    pub const SCRIPT_CALLS: &str = "bakkal_script_executions_total";
    pub const SCRIPT_ERRORS: &str = "bakkal_script_errors_total";
    pub const SCRIPT_LIMITS: &str = "bakkal_script_limit_hits_total";
    pub const BUILD_INFO: &str = "bakkal_build_info";
}

enum Kind {
    Counter,
    Gauge,
    Histogram,
}

const DESCRIPTIONS: [(&str, Kind, Option<Unit>, &str); 17] = {
    use names::*;
    use Kind::*;
    [
        (RPC_REQUESTS, Counter, None, "RPCs finished, by method and gRPC status code."),
        (RPC_DURATION, Histogram, Some(Unit::Seconds), "RPC latency until the response ended, by method."),
        (RPC_IN_FLIGHT, Gauge, None, "RPCs in progress (a streaming call until its response ends), by method."),
        (POOL_CONNECTIONS, Gauge, None, "Database connections open, by state (idle, in_use)."),
        (POOL_MAX, Gauge, None, "The database pool's connection limit."),
        (POOL_WAIT, Histogram, Some(Unit::Seconds), "Wait for a database connection from the pool."),
        (POOL_TIMEOUTS, Counter, None, "Waits for a database connection that timed out."),
        (WRITE_TURN_WAIT, Histogram, Some(Unit::Seconds), "SQLite: wait of a write transaction for the writer turn, by writer (foreground requests, background delivery)."),
        (OUTBOX_MESSAGES, Gauge, None, "Outbox messages still to deliver, by status (queued, sending, failed), in the whole database."),
        (OUTBOX_LAG, Gauge, Some(Unit::Seconds), "How long the oldest message due for delivery has waited (0: none waiting)."),
        (RUNS_RUNNING, Gauge, None, "Campaign runs RUNNING, in the whole database."),
        (SLA_LAG, Gauge, Some(Unit::Seconds), "How far the SLA watcher is behind the earliest SLA mark it has still to fire (0: none due)."),
        (FIGURES_ERRORS, Counter, None, "Scrape-time database reads (outbox, runs, SLA) that failed."),
        (SCRIPT_CALLS, Counter, None, "Script calls, by script kind."),
        (SCRIPT_ERRORS, Counter, None, "Script calls that failed, by script kind and error category."),
        (SCRIPT_LIMITS, Counter, None, "Script calls stopped by a limit, by script kind and limit."),
        (BUILD_INFO, Gauge, None, "Always 1; the version label names the build."),
    ]
};

/// The registry of one server.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> anyhow::Result<Arc<Metrics>> {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&WAIT_BUCKETS)?
            .set_buckets_for_metric(Matcher::Full(names::RPC_DURATION.into()), &RPC_BUCKETS)?
            .build_recorder();
        for (name, kind, unit, help) in DESCRIPTIONS {
            let name = KeyName::from_const_str(name);
            match kind {
                Kind::Counter => recorder.describe_counter(name, unit, help.into()),
                Kind::Gauge => recorder.describe_gauge(name, unit, help.into()),
                Kind::Histogram => recorder.describe_histogram(name, unit, help.into()),
            }
        }
        let handle = recorder.handle();
        let metrics = Metrics { recorder, handle };
        metrics
            .gauge(names::BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))])
            .set(1.0);
        Ok(Arc::new(metrics))
    }

    fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::from_static_parts(k, v))
            .collect();
        Key::from_parts(name, labels)
    }

    pub(crate) fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        self.recorder
            .register_counter(&Self::key(name, labels), &META)
    }

    pub(crate) fn gauge(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, labels), &META)
    }

    pub(crate) fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Histogram {
        self.recorder
            .register_histogram(&Self::key(name, labels), &META)
    }

    /// The text exposition of everything recorded.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets; run every few seconds, so samples
    /// do not pile up between scrapes.
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}
