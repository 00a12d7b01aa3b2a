//! `bakkal.v1.CampaignService` through a real server and client, on every configured backend:
//! campaigns over a refreshed segment, holdout and consent, exactly-once queuing on relaunch,
//! the frequency cap across campaigns, dry runs, message listing and file delivery.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{self, CampaignStrategy, MessageChannel, MessageStatus};
use common::{campaigns, create_script, TestServer};
use tonic::Code;
use tonic_types::StatusExt;

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// `n` customers; even ones consent to email. Returns (id, consents) in creation order.
async fn customers(server: &TestServer, n: usize) -> Vec<(i64, bool)> {
    let mut out = Vec::new();
    for i in 0..n {
        let consent = i % 2 == 0;
        let c = server
            .customers()
            .create_customer(proto::CreateCustomerRequest {
                customer: Some(proto::Customer {
                    display_name: format!("Customer {i}"),
                    email: format!("c{i}@example.com"),
                    consent: Some(proto::ChannelConsents {
                        email: Some(proto::Consent {
                            granted: consent,
                            update_time: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create customer")
            .into_inner();
        let id: i64 = c.name.trim_start_matches("customers/").parse().unwrap();
        out.push((id, consent));
    }
    out
}

/// A refreshed segment of everyone and a MESSAGE script.
async fn audience(server: &TestServer) -> (String, String) {
    let rule = create_script(server, proto::ScriptKind::Segment, "fn matches(c) { true }").await;
    let mut seg = SegmentServiceClient::new(server.channel.clone());
    let s = seg
        .create_segment(proto::CreateSegmentRequest {
            segment: Some(proto::Segment {
                display_name: "everyone".into(),
                script: rule,
                ..Default::default()
            }),
        })
        .await
        .expect("create segment")
        .into_inner();
    seg.refresh_segment(proto::RefreshSegmentRequest {
        name: s.name.clone(),
        interpreter_only: false,
    })
    .await
    .expect("refresh");
    let msg = create_script(
        server,
        proto::ScriptKind::Message,
        "fn message(c, event) { message(\"email\", \"Hello\", \"why: \" + event.kind) }",
    )
    .await;
    (s.name, msg)
}

fn campaign(audience: &str, script: &str, holdout: i32) -> proto::Campaign {
    proto::Campaign {
        display_name: "Spring".into(),
        strategy: CampaignStrategy::Loyalty as i32,
        audience: audience.into(),
        message_script: script.into(),
        channel: MessageChannel::Email as i32,
        holdout_percent: holdout,
        ..Default::default()
    }
}

async fn create(server: &TestServer, c: proto::Campaign) -> proto::Campaign {
    campaigns(server)
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(c),
            request_id: String::new(),
        })
        .await
        .expect("create campaign")
        .into_inner()
}

/// Launch and wait (bounded) for the run to end.
async fn launch(server: &TestServer, name: &str) -> proto::CampaignRun {
    let mut client = campaigns(server);
    let run = client
        .launch_campaign(proto::LaunchCampaignRequest { name: name.into() })
        .await
        .expect("launch")
        .into_inner();
    for _ in 0..400 {
        let r = client
            .get_campaign_run(proto::GetCampaignRunRequest {
                name: run.name.clone(),
            })
            .await
            .expect("get run")
            .into_inner();
        if r.state != "RUNNING" {
            assert_eq!(r.state, "COMPLETED");
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("run {} did not end", run.name);
}

async fn messages(server: &TestServer, parent: &str) -> Vec<proto::Message> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = campaigns(server)
            .list_messages(proto::ListMessagesRequest {
                parent: parent.into(),
                page_size: 7,
                page_token: token,
            })
            .await
            .expect("list messages")
            .into_inner();
        out.extend(page.messages);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn campaign_runs_queue_once_and_respect_holdout_consent_and_cap(server: &TestServer) {
    let people = customers(server, 30).await;
    let (segment, script) = audience(server).await;
    let c1 = create(server, campaign(&segment, &script, 30)).await;
    assert_eq!(c1.state, proto::CampaignState::Draft as i32);
    let id1: i64 = c1.name.trim_start_matches("campaigns/").parse().unwrap();

    // a dry run queues nothing
    let dry = campaigns(server)
        .dry_run_campaign(proto::DryRunCampaignRequest {
            name: c1.name.clone(),
            sample_size: 3,
        })
        .await
        .expect("dry run")
        .into_inner();
    assert_eq!(dry.messages.len(), 3);
    assert_eq!(dry.messages[0].body, "why: campaign");
    assert!(messages(server, &c1.name).await.is_empty());

    let run = launch(server, &c1.name).await;
    let counters = run.counters.expect("counters");
    let held: Vec<i64> = people
        .iter()
        .map(|p| p.0)
        .filter(|&id| bakkal_engine::campaign::in_holdout(id1, id, 30))
        .collect();
    let expected: Vec<i64> = people
        .iter()
        .filter(|(id, consent)| *consent && !held.contains(id))
        .map(|p| p.0)
        .collect();
    assert_eq!(counters.evaluated, 30);
    assert_eq!(counters.held_out, held.len() as i64);
    assert_eq!(counters.queued, expected.len() as i64);
    let listed = messages(server, &c1.name).await;
    let mut per: HashMap<String, usize> = HashMap::new();
    for m in &listed {
        *per.entry(m.customer.clone()).or_default() += 1;
        assert_eq!(m.channel, MessageChannel::Email as i32);
        assert_eq!(m.subject, "Hello");
        assert_eq!(
            m.idempotency_key,
            format!("{}:{}:once", c1.name, m.customer)
        );
    }
    let mut got: Vec<i64> = per
        .keys()
        .map(|k| k.trim_start_matches("customers/").parse().unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got, expected,
        "holdout and no-consent customers get nothing"
    );
    assert!(per.values().all(|&n| n == 1));

    // relaunching queues nothing new
    let again = launch(server, &c1.name).await.counters.unwrap();
    assert_eq!(again.queued, 0);
    assert_eq!(again.suppressed_already_sent, expected.len() as i64);
    assert_eq!(messages(server, &c1.name).await.len(), expected.len());

    // the frequency cap holds across campaigns
    let mut capped = campaign(&segment, &script, 0);
    capped.frequency_cap = Some(proto::FrequencyCap {
        max_messages: 1,
        per_days: 7,
    });
    let c2 = create(server, capped).await;
    let r2 = launch(server, &c2.name).await.counters.unwrap();
    assert_eq!(r2.suppressed_capped, expected.len() as i64);
    let consenting = people.iter().filter(|p| p.1).count();
    assert_eq!(r2.queued, (consenting - expected.len()) as i64);
    for (id, consent) in &people {
        let mine = messages(server, &format!("customers/{id}")).await;
        assert_eq!(mine.len(), usize::from(*consent), "customers/{id}");
    }

    // the dispatcher delivers, to the file too
    let first = &listed[0];
    let mut delivered = false;
    for _ in 0..200 {
        let m = campaigns(server)
            .get_message(proto::GetMessageRequest {
                name: first.name.clone(),
            })
            .await
            .expect("get message")
            .into_inner();
        if m.status == MessageStatus::Delivered as i32 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(delivered, "{} was not delivered", first.name);
    let text = std::fs::read_to_string(&server.outbox_file).expect("outbox file");
    let line = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .find(|v| v["name"] == first.name.as_str())
        .expect("the message's line");
    assert_eq!(line["idempotency_key"], first.idempotency_key.as_str());
}

async fn bad_input_is_rejected(server: &TestServer) {
    let mut client = campaigns(server);
    let err = client
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                holdout_percent: 70,
                audience: "segs/1".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), Code::InvalidArgument);
    let v = violations(&err);
    for f in [
        "campaign.display_name",
        "campaign.strategy",
        "campaign.audience",
        "campaign.message_script",
        "campaign.channel",
        "campaign.holdout_percent",
    ] {
        assert!(v.contains(&f.to_string()), "{f} in {v:?}");
    }
    let err = client
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(campaign("segments/999", "scripts/999", 0)),
            request_id: String::new(),
        })
        .await
        .expect_err("no such segment");
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .get_campaign(proto::GetCampaignRequest {
            name: "campaigns/999".into(),
        })
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .get_message(proto::GetMessageRequest {
            name: "messages/999".into(),
        })
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .list_messages(proto::ListMessagesRequest {
            parent: "products/1".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad parent");
    assert_eq!(violations(&err), vec!["parent".to_string()]);
}

/// An audience never refreshed has no members: the launch says so instead of running empty.
async fn launching_with_a_never_refreshed_audience_is_refused(server: &TestServer) {
    customers(server, 3).await;
    let rule = create_script(server, proto::ScriptKind::Segment, "fn matches(c) { true }").await;
    let seg = SegmentServiceClient::new(server.channel.clone())
        .create_segment(proto::CreateSegmentRequest {
            segment: Some(proto::Segment {
                display_name: "never refreshed".into(),
                script: rule,
                ..Default::default()
            }),
        })
        .await
        .expect("create segment")
        .into_inner();
    let script = create_script(
        server,
        proto::ScriptKind::Message,
        r#"fn message(c, event) { message("email", "Hi", "Hello") }"#,
    )
    .await;
    let c = create(server, campaign(&seg.name, &script, 0)).await;
    let err = campaigns(server)
        .launch_campaign(proto::LaunchCampaignRequest {
            name: c.name.clone(),
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&seg.name), "{}", err.message());
}

on_both_backends!(
    campaign_runs_queue_once_and_respect_holdout_consent_and_cap,
    bad_input_is_rejected,
    launching_with_a_never_refreshed_audience_is_refused,
);
