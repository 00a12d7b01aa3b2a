//! The Prometheus endpoint (`--metrics-listen`), scraped over HTTP after calls through the
//! public API, on SQLite and PostgreSQL: the calls' methods and codes are counted, their
//! latency and the time in flight recorded, the store's and script host's figures exported,
//! and `promtool check metrics` accepts the text (when promtool is installed; CI sets
//! `BAKKAL_REQUIRE_PROMTOOL=1`, which makes a missing promtool a failure).

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use bakkal::config::Config;
use bakkal::proto::{self, test_script_request::Subject};
use common::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn with_metrics(c: &mut Config) {
    c.metrics.listen = Some("127.0.0.1:0".parse().expect("address"));
}

on_both_backends_with!(
    metrics_on,
    super::super::with_metrics,
    counts_calls_by_method_and_code,
    counts_streams_until_they_end,
    serves_only_metrics
);

/// `GET path` on the metrics address: status line, headers and body.
async fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics endpoint answers");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_string(),
        headers.to_ascii_lowercase(),
        body.to_string(),
    )
}

async fn scrape(server: &TestServer) -> Scrape {
    let addr = server.metrics_addr.expect("the server listens for metrics");
    let (status, headers, body) = get(addr, "/metrics").await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    Scrape::parse(&body)
}

/// The series of one scrape: name and labels → value.
struct Scrape {
    text: String,
    series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut series = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (head, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = value.parse().expect("a number");
            let (name, labels) = match head.split_once('{') {
                None => (head.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("labels end");
                    let labels = rest
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once("=\"").expect("label");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            series.push((name, labels, value));
        }
        Scrape {
            text: text.to_string(),
            series,
        }
    }

    /// The value of the series `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }

    /// The sum over every series of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }

    fn has_family(&self, name: &str) -> bool {
        self.series.iter().any(|(n, _, _)| n == name)
    }
}

/// `promtool check metrics` on the text, when promtool is installed (required when
/// `BAKKAL_REQUIRE_PROMTOOL=1`).
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("BAKKAL_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "BAKKAL_REQUIRE_PROMTOOL=1 but promtool is not on PATH \
                 (Debian: apt-get install prometheus)"
            );
            eprintln!("promtool not found: the exposition format is not checked");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\non:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const CREATE: &str = "bakkal.v1.CustomerService/CreateCustomer";
const GET: &str = "bakkal.v1.CustomerService/GetCustomer";
const TEST_SCRIPT: &str = "bakkal.v1.ScriptService/TestScript";

async fn counts_calls_by_method_and_code(server: &TestServer) {
    let before = scrape(server).await;
    assert_eq!(
        before.get(
            "bakkal_rpc_requests_total",
            &[("method", CREATE), ("code", "OK")]
        ),
        None
    );
    assert_eq!(
        before.value(
            "bakkal_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    let mut customers = server.customers();
    for email in ["ada@example.com", "can@example.com"] {
        customers
            .create_customer(proto::CreateCustomerRequest {
                customer: Some(proto::Customer {
                    display_name: "Ada".into(),
                    email: email.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create customer");
    }
    let missing = customers
        .get_customer(proto::GetCustomerRequest {
            name: "customers/999999".into(),
        })
        .await
        .expect_err("no such customer");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // a script that never ends: one call, one error, one limit hit
    let _ = proto::script_service_client::ScriptServiceClient::new(server.channel.clone())
        .test_script(proto::TestScriptRequest {
            kind: proto::ScriptKind::Segment as i32,
            source: "fn matches(c) { loop { } }".into(),
            subject: Some(Subject::CustomerJson(r#"{"display_name": "Can"}"#.into())),
            ..Default::default()
        })
        .await;
    // a path no service serves gets no series of its own
    let mut grpc = tonic::client::Grpc::new(server.channel.clone());
    grpc.ready().await.expect("ready");
    let made_up: Result<tonic::Response<()>, _> = grpc
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/bakkal.v1.Made/Up"),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await;
    assert!(made_up.is_err());

    let after = scrape(server).await;
    let count = |labels: &[(&str, &str)]| after.value("bakkal_rpc_requests_total", labels);
    assert_eq!(count(&[("method", CREATE), ("code", "OK")]), 2.0);
    assert_eq!(count(&[("method", GET), ("code", "NOT_FOUND")]), 1.0);
    assert_eq!(
        after.get(
            "bakkal_rpc_requests_total",
            &[("method", GET), ("code", "OK")]
        ),
        None
    );
    assert_eq!(
        after.sum("bakkal_rpc_requests_total", &[("method", TEST_SCRIPT)]),
        1.0
    );
    assert_eq!(
        after.sum("bakkal_rpc_requests_total", &[("method", "unknown")]),
        1.0
    );
    assert!(!after.text.contains("Made/Up"), "{}", after.text);
    // latency: every call in a bucket, each bucket cumulative
    let duration = |suffix: &str, labels: &[(&str, &str)]| {
        after.value(&format!("bakkal_rpc_duration_seconds{suffix}"), labels)
    };
    assert_eq!(duration("_count", &[("method", CREATE)]), 2.0);
    assert_eq!(
        duration("_bucket", &[("method", CREATE), ("le", "+Inf")]),
        2.0
    );
    assert!(duration("_sum", &[("method", CREATE)]) > 0.0);
    assert_eq!(
        after.value("bakkal_rpc_in_flight", &[("method", CREATE)]),
        0.0
    );

    // the script host
    let segment = [("kind", "segment")];
    assert_eq!(after.value("bakkal_script_executions_total", &segment), 1.0);
    assert_eq!(
        after.value(
            "bakkal_script_errors_total",
            &[("kind", "segment"), ("category", "limit")]
        ),
        1.0
    );
    assert_eq!(after.sum("bakkal_script_limit_hits_total", &segment), 1.0);
    assert_eq!(
        after.value("bakkal_script_executions_total", &[("kind", "offer")]),
        0.0
    );

    // the store: its pool, and on SQLite the writer turn each write waited for
    assert!(after.value("bakkal_db_pool_max_connections", &[]) >= 1.0);
    assert!(after.value("bakkal_db_pool_connections", &[("state", "idle")]) >= 0.0);
    assert!(after.value("bakkal_db_pool_connections", &[("state", "in_use")]) >= 0.0);
    assert!(after.value("bakkal_db_pool_acquire_wait_seconds_count", &[]) >= 3.0);
    let sqlite = server.db_url.starts_with("sqlite:");
    let turns = after.get(
        "bakkal_sqlite_write_turn_wait_seconds_count",
        &[("writer", "foreground")],
    );
    if sqlite {
        assert!(turns.unwrap_or(0.0) >= 2.0, "{}", after.text);
    } else {
        assert!(!after.has_family("bakkal_sqlite_write_turn_wait_seconds_count"));
    }

    // the work in the database
    for status in ["queued", "sending", "failed"] {
        assert_eq!(
            after.value("bakkal_outbox_messages", &[("status", status)]),
            0.0
        );
    }
    assert_eq!(after.value("bakkal_outbox_delivery_lag_seconds", &[]), 0.0);
    assert_eq!(after.value("bakkal_campaign_runs_in_progress", &[]), 0.0);
    assert_eq!(after.value("bakkal_sla_watcher_lag_seconds", &[]), 0.0);

    promtool_accepts(&after.text);
}

/// A server stream is in flight until it ends; abandoned, it counts as CANCELLED.
async fn counts_streams_until_they_end(server: &TestServer) {
    const WATCH: &str = "grpc.health.v1.Health/Watch";
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let mut stream = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    stream
        .message()
        .await
        .expect("first status")
        .expect("a status");

    let during = scrape(server).await;
    assert_eq!(
        during.value("bakkal_rpc_in_flight", &[("method", WATCH)]),
        1.0
    );
    assert_eq!(
        during.sum("bakkal_rpc_requests_total", &[("method", WATCH)]),
        0.0
    );

    drop(stream);
    // the cancellation reaches the server on its own schedule: look until it is counted
    let mut after = scrape(server).await;
    for _ in 0..200 {
        if after.get(
            "bakkal_rpc_requests_total",
            &[("method", WATCH), ("code", "CANCELLED")],
        ) == Some(1.0)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        after = scrape(server).await;
    }
    assert_eq!(
        after.value(
            "bakkal_rpc_requests_total",
            &[("method", WATCH), ("code", "CANCELLED")]
        ),
        1.0
    );
    assert_eq!(
        after.value("bakkal_rpc_in_flight", &[("method", WATCH)]),
        0.0
    );
    promtool_accepts(&after.text);
}

async fn serves_only_metrics(server: &TestServer) {
    let addr = server.metrics_addr.expect("metrics address");
    let (status, _, body) = get(addr, "/").await;
    assert!(status.contains(" 404 "), "{status}");
    assert!(body.contains("/metrics"));
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("send");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.expect("read");
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
}
