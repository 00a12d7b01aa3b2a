//! Scripts cannot hurt the server (issue 18): a panic inside the interpreter is one
//! customer's error, never a silent hole in a segment or a campaign; no built-in blocks or
//! reads the clock; a limit hit inside a callback fails the call; a pause stops a run whose
//! scripts are slow within a second; shutdown is bounded whatever scripts run. On every
//! configured backend.

mod common;

use std::time::{Duration, Instant};

use bakkal::proto::script_service_client::ScriptServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, import_customers_request::Row, test_script_request::Subject};
use common::{campaigns, create_script, create_segment, refresh_segment, Backend, TestServer};
use tonic::transport::Channel;
use tonic::Code;

/// Runs to its 200 ms deadline for every customer.
const SLOW: &str = "let n = 0; while n >= 0 { n += 1 }";

fn scripts(server: &TestServer) -> ScriptServiceClient<Channel> {
    ScriptServiceClient::new(server.channel.clone())
}

fn segments(server: &TestServer) -> SegmentServiceClient<Channel> {
    SegmentServiceClient::new(server.channel.clone())
}

/// `n` customers consenting to email, imported in one stream.
async fn import(server: &TestServer, n: usize) {
    let rows = (0..n).map(|i| proto::ImportCustomersRequest {
        row: Some(Row::Customer(proto::Customer {
            display_name: format!("Customer {i}"),
            email: format!("c{i}@example.com"),
            consent: Some(proto::ChannelConsents {
                email: Some(proto::Consent {
                    granted: true,
                    update_time: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })),
    });
    let res = server
        .customers()
        .import_customers(tokio_stream::iter(rows.collect::<Vec<_>>()))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(res.rejected, 0, "{:?}", res.rejected_rows);
}

fn inline(kind: proto::ScriptKind, source: &str) -> proto::TestScriptRequest {
    proto::TestScriptRequest {
        kind: kind as i32,
        source: source.into(),
        subject: Some(Subject::CustomerJson(r#"{"display_name": "Can"}"#.into())),
        ..Default::default()
    }
}

/// Every customer is a member or an error: the ones whose script panics inside the
/// interpreter are errors with an example, in every slice of every batch.
async fn a_panic_in_a_script_is_an_error_of_that_customer(server: &TestServer) {
    import(server, 300).await;
    let name = create_segment(
        server,
        "fn matches(c) { if c.id % 7 == 3 { panic_for_tests(`customer ${c.id}`) } true }",
    )
    .await;
    let out = refresh_segment(server, &name)
        .await
        .expect("refresh answers");
    let panicking = (1..=300).filter(|id| id % 7 == 3).count() as i64;
    assert_eq!(out.evaluated_count, 300);
    assert_eq!(out.error_count, panicking, "{out:?}");
    assert_eq!(out.member_count + out.error_count, 300, "{out:?}");
    let example = out.error_examples.first().expect("an error example");
    assert!(
        example.message.contains("interpreter failed") && example.message.contains("customer"),
        "{example:?}"
    );

    // The same in a campaign run: every member messaged or counted as a script error.
    let everyone = create_segment(server, "fn matches(c) { true }").await;
    refresh_segment(server, &everyone)
        .await
        .expect("refresh everyone");
    let script = create_script(
        server,
        proto::ScriptKind::Message,
        "fn message(c, event) { if c.id % 7 == 3 { panic_for_tests(\"m\") } message(\"email\", \"Hi\", \"x\") }",
    )
    .await;
    let run = run_to_end(server, &everyone, &script).await;
    let counters = run.counters.expect("counters");
    assert_eq!(run.state, "COMPLETED");
    assert_eq!(counters.script_errors, panicking, "{counters:?}");
    assert_eq!(
        counters.queued + counters.script_errors,
        300,
        "{counters:?}"
    );
}

async fn create_campaign(server: &TestServer, audience: &str, script: &str) -> String {
    campaigns(server)
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "Spring".into(),
                strategy: proto::CampaignStrategy::Loyalty as i32,
                audience: audience.into(),
                message_script: script.into(),
                channel: proto::MessageChannel::Email as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create campaign")
        .into_inner()
        .name
}

async fn get_run(server: &TestServer, run: &str) -> proto::CampaignRun {
    campaigns(server)
        .get_campaign_run(proto::GetCampaignRunRequest { name: run.into() })
        .await
        .expect("get run")
        .into_inner()
}

async fn run_to_end(server: &TestServer, audience: &str, script: &str) -> proto::CampaignRun {
    let name = create_campaign(server, audience, script).await;
    let run = campaigns(server)
        .launch_campaign(proto::LaunchCampaignRequest { name })
        .await
        .expect("launch")
        .into_inner();
    for _ in 0..400 {
        let r = get_run(server, &run.name).await;
        if r.state != "RUNNING" {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("run {} did not end", run.name);
}

/// `sleep`, the system clock and their kin are refused when a script is checked, before it
/// can run; nor can a function pointer reach them.
async fn blocking_built_ins_fail_at_validation(server: &TestServer) {
    let mut client = scripts(server);
    for call in ["sleep(3)", "sleep(1e300)", "timestamp()"] {
        let source = format!("fn matches(c) {{ {call}; true }}");
        let v = client
            .validate_script(proto::ValidateScriptRequest {
                kind: proto::ScriptKind::Segment as i32,
                source: source.clone(),
            })
            .await
            .expect("validate")
            .into_inner();
        assert!(
            v.diagnostics
                .iter()
                .any(|d| d.message.contains("not available")),
            "{source}: {v:?}"
        );
        let started = Instant::now();
        let status = client
            .test_script(inline(proto::ScriptKind::Segment, &source))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{source}: {status:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "{source}");
    }
    let started = Instant::now();
    let status = client
        .test_script(inline(
            proto::ScriptKind::Segment,
            "fn matches(c) { Fn(\"sleep\").call(3); true }",
        ))
        .await
        .expect_err("no sleep behind a function pointer");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// rhai drops the errors of a `sort` comparator; the limit it hit still fails the call.
async fn a_limit_hit_in_a_callback_fails_the_call(server: &TestServer) {
    let mut client = scripts(server);
    for body in [
        "let a = [3, 1, 2]; a.sort(|x, y| { loop {} }); true",
        "let a = [1, 2, 3]; a.map(|x| { loop {} }); true",
    ] {
        let source = format!("fn matches(c) {{ {body} }}");
        let status = client
            .test_script(inline(proto::ScriptKind::Segment, &source))
            .await
            .expect_err("the limit fails the call");
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{source}: {status:?}"
        );
    }
}

/// PauseCampaign stops a run whose MESSAGE script runs to its deadline for every member
/// within a second, not at the end of the batch.
async fn a_pause_stops_a_run_with_slow_scripts_within_a_second(server: &TestServer) {
    import(server, 200).await;
    let everyone = create_segment(server, "fn matches(c) { true }").await;
    refresh_segment(server, &everyone).await.expect("refresh");
    let script = create_script(
        server,
        proto::ScriptKind::Message,
        &format!("fn message(c, event) {{ {SLOW}; () }}"),
    )
    .await;
    let name = create_campaign(server, &everyone, &script).await;
    let mut client = campaigns(server);
    let run = client
        .launch_campaign(proto::LaunchCampaignRequest { name: name.clone() })
        .await
        .expect("launch")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(600)).await;
    client
        .pause_campaign(proto::PauseCampaignRequest { name })
        .await
        .expect("pause");
    let paused = Instant::now();
    loop {
        let r = get_run(server, &run.name).await;
        if r.state == "PAUSED" {
            break;
        }
        assert!(
            paused.elapsed() < Duration::from_millis(1500),
            "the run is still {} {:?} after the pause",
            r.state,
            paused.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

on_both_backends!(
    a_panic_in_a_script_is_an_error_of_that_customer,
    blocking_built_ins_fail_at_validation,
    a_limit_hit_in_a_callback_fails_the_call,
    a_pause_stops_a_run_with_slow_scripts_within_a_second,
);

/// A graceful shutdown while a segment refresh runs slow scripts ends within a few seconds;
/// the refresh answers UNAVAILABLE.
async fn shutdown_is_bounded_while_scripts_run(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    import(&server, 200).await;
    let name = create_segment(&server, &format!("fn matches(c) {{ {SLOW}; true }}")).await;
    let mut client = segments(&server);
    let refresh = tokio::spawn(async move {
        client
            .refresh_segment(proto::RefreshSegmentRequest {
                name,
                interpreter_only: true,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("the server stops within 5 s");
    assert!(started.elapsed() < Duration::from_secs(5));
    match refresh.await.expect("refresh task") {
        Err(s) => assert!(
            matches!(s.code(), Code::Unavailable | Code::Cancelled),
            "{s:?}"
        ),
        Ok(r) => panic!("a refresh of slow scripts finished during shutdown: {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_while_scripts_run_sqlite() {
    shutdown_is_bounded_while_scripts_run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_while_scripts_run_postgres() {
    shutdown_is_bounded_while_scripts_run(Backend::Postgres).await;
}
