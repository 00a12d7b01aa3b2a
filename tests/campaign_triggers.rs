//! Campaign triggers and the campaign report through a real server and client, on every
//! configured backend: at a time, recurring occurrences, event campaigns (order placed,
//! birthday, inactive, segment entered) fed by the scheduler, and GetCampaignReport against
//! figures computed by hand.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bakkal::proto::campaign_trigger::{AtTime, Kind, OnEvent, Recurring};
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::{
    self, CampaignEventKind, CampaignState, CampaignStrategy, MessageChannel, MessageStatus,
};
use common::{campaigns, create_script, TestServer};
use prost_types::Timestamp;
use tonic::Code;

const DAY: i64 = 86_400;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn ts(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

fn id_of(name: &str) -> i64 {
    name.rsplit('/').next().unwrap().parse().unwrap()
}

/// Today's month and day (UTC), for a birthday.
fn today() -> (u32, u32) {
    let z = now_secs().div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (m, d)
}

async fn customer(server: &TestServer, i: usize, consent: bool, tags: &[&str], birth: &str) -> i64 {
    let c = server
        .customers()
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: format!("Customer {i}"),
                email: format!("c{i}@example.com"),
                birth_date: birth.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
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
    id_of(&c.name)
}

/// A segment of `rule`, refreshed.
async fn segment(server: &TestServer, rule: &str) -> String {
    let rule = create_script(server, proto::ScriptKind::Segment, rule).await;
    let s = SegmentServiceClient::new(server.channel.clone())
        .create_segment(proto::CreateSegmentRequest {
            segment: Some(proto::Segment {
                display_name: "audience".into(),
                script: rule,
                ..Default::default()
            }),
        })
        .await
        .expect("create segment")
        .into_inner();
    refresh(server, &s.name).await;
    s.name
}

async fn refresh(server: &TestServer, name: &str) {
    SegmentServiceClient::new(server.channel.clone())
        .refresh_segment(proto::RefreshSegmentRequest {
            name: name.into(),
            interpreter_only: false,
        })
        .await
        .expect("refresh");
}

/// A MESSAGE script writing the event's kind as subject and `body` (a Rhai expression).
async fn message_script(server: &TestServer, body: &str) -> String {
    create_script(
        server,
        proto::ScriptKind::Message,
        &format!("fn message(c, event) {{ message(\"email\", event.kind, {body}) }}"),
    )
    .await
}

async fn create(
    server: &TestServer,
    audience: &str,
    script: &str,
    holdout: i32,
    trigger: Option<Kind>,
) -> proto::Campaign {
    campaigns(server)
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "Triggered".into(),
                strategy: CampaignStrategy::Loyalty as i32,
                audience: audience.into(),
                message_script: script.into(),
                channel: MessageChannel::Email as i32,
                holdout_percent: holdout,
                trigger: trigger.map(|k| proto::CampaignTrigger { kind: Some(k) }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create campaign")
        .into_inner()
}

async fn schedule(server: &TestServer, name: &str) -> proto::Campaign {
    campaigns(server)
        .schedule_campaign(proto::ScheduleCampaignRequest { name: name.into() })
        .await
        .expect("schedule")
        .into_inner()
}

async fn messages(server: &TestServer, parent: &str) -> Vec<proto::Message> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = campaigns(server)
            .list_messages(proto::ListMessagesRequest {
                parent: parent.into(),
                page_size: 1000,
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

/// Wait (bounded) until `parent` has `n` messages; returns them.
async fn wait_messages(server: &TestServer, parent: &str, n: usize) -> Vec<proto::Message> {
    for _ in 0..300 {
        let m = messages(server, parent).await;
        if m.len() >= n {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = messages(server, parent).await;
    panic!("{parent}: {} messages, wanted {n}: {m:?}", m.len());
}

async fn wait_state(server: &TestServer, name: &str, state: CampaignState) -> proto::Campaign {
    for _ in 0..300 {
        let c = campaigns(server)
            .get_campaign(proto::GetCampaignRequest { name: name.into() })
            .await
            .expect("get campaign")
            .into_inner();
        if c.state == state as i32 {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never reached {state:?}");
}

async fn record_order(server: &TestServer, customer: i64, order_id: &str, at: i64, price: f64) {
    server
        .customers()
        .record_order(proto::RecordOrderRequest {
            parent: format!("customers/{customer}"),
            order: Some(proto::Order {
                order_id: order_id.into(),
                currency: "TRY".into(),
                placed_time: Some(ts(at)),
                lines: vec![proto::OrderLine {
                    sku: "C-1".into(),
                    category: "coffee".into(),
                    quantity: 1,
                    unit_price: price,
                }],
                ..Default::default()
            }),
        })
        .await
        .expect("record order");
}

fn consenting_treated(campaign: &str, people: &[(i64, bool)], holdout: i64) -> Vec<i64> {
    let id = id_of(campaign);
    people
        .iter()
        .filter(|(c, consent)| *consent && !bakkal_engine::campaign::in_holdout(id, *c, holdout))
        .map(|p| p.0)
        .collect()
}

async fn at_time_and_recurring_campaigns_run_when_due(server: &TestServer) {
    let mut people = Vec::new();
    for i in 0..12 {
        people.push((customer(server, i, i % 3 != 0, &[], "").await, i % 3 != 0));
    }
    let audience = segment(server, "fn matches(c) { true }").await;
    let script = message_script(server, "`occurrence ${event.field(\"occurrence\")}`").await;

    // at a time: SCHEDULED with its next run time, then started by the scheduler
    let start = now_secs() + 1;
    let at = create(
        server,
        &audience,
        &script,
        20,
        Some(Kind::AtTime(AtTime {
            start_time: Some(ts(start)),
        })),
    )
    .await;
    let err = campaigns(server)
        .launch_campaign(proto::LaunchCampaignRequest {
            name: at.name.clone(),
        })
        .await
        .expect_err("not a once-now campaign");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let scheduled = schedule(server, &at.name).await;
    assert_eq!(scheduled.state, CampaignState::Scheduled as i32);
    assert_eq!(scheduled.next_run_time, Some(ts(start)));
    wait_state(server, &at.name, CampaignState::Completed).await;
    let expected = consenting_treated(&at.name, &people, 20);
    let got = messages(server, &at.name).await;
    let mut who: Vec<i64> = got.iter().map(|m| id_of(&m.customer)).collect();
    who.sort();
    assert_eq!(who, expected);
    assert!(got.iter().all(|m| m.idempotency_key.ends_with(":once")));

    // recurring every hour from 2 h 1 min ago: occurrence 3 is due now, 4 in an hour
    let start = now_secs() - 2 * 3600 - 60;
    let rec = create(
        server,
        &audience,
        &script,
        0,
        Some(Kind::Recurring(Recurring {
            start_time: Some(ts(start)),
            every_hours: 1,
            every_days: 0,
        })),
    )
    .await;
    schedule(server, &rec.name).await;
    let consenting = people.iter().filter(|p| p.1).count();
    let got = wait_messages(server, &rec.name, consenting).await;
    for m in &got {
        assert_eq!(
            m.idempotency_key,
            format!("{}:{}:occurrences/3", rec.name, m.customer)
        );
        assert_eq!(m.body, "occurrence 3");
    }
    let back = wait_state(server, &rec.name, CampaignState::Scheduled).await;
    assert_eq!(back.next_run_time, Some(ts(start + 3 * 3600)));
    let run = campaigns(server)
        .get_campaign_run(proto::GetCampaignRunRequest {
            name: got[0].run.clone(),
        })
        .await
        .expect("run")
        .into_inner();
    assert_eq!(run.occurrence, 3);
    assert_eq!(run.state, "COMPLETED");
    // nothing more until the next occurrence
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(messages(server, &rec.name).await.len(), consenting);

    // a bad trigger is refused field by field
    let err = campaigns(server)
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "bad".into(),
                strategy: CampaignStrategy::Loyalty as i32,
                audience: audience.clone(),
                message_script: script.clone(),
                channel: MessageChannel::Email as i32,
                trigger: Some(proto::CampaignTrigger {
                    kind: Some(Kind::Recurring(Recurring::default())),
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect_err("bad trigger");
    assert_eq!(err.code(), Code::InvalidArgument);
    use tonic_types::StatusExt;
    let fields: Vec<String> = err
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    assert!(fields.contains(&"campaign.trigger.recurring.start_time".to_string()));
    assert!(fields.contains(&"campaign.trigger.recurring.every_hours".to_string()));
}

async fn event_campaigns_decide_each_new_event(server: &TestServer) {
    let vip = customer(server, 1, true, &["vip"], "").await;
    let vip_no_consent = customer(server, 2, false, &["vip"], "").await;
    let other = customer(server, 3, true, &[], "").await;
    let audience = segment(server, "fn matches(c) { c.has_tag(\"vip\") }").await;
    let script = message_script(server, "`order ${event.field(\"order_id\")}`").await;
    let on_order = create(
        server,
        &audience,
        &script,
        0,
        Some(Kind::OnEvent(OnEvent {
            kind: CampaignEventKind::OrderPlaced as i32,
            inactive_days: 0,
        })),
    )
    .await;
    // a dry run hands the script a bare event of the campaign's kind
    let dry = campaigns(server)
        .dry_run_campaign(proto::DryRunCampaignRequest {
            name: on_order.name.clone(),
            sample_size: 5,
        })
        .await
        .expect("dry run")
        .into_inner();
    assert_eq!(dry.messages.len(), 1, "the consenting vip");
    assert_eq!(dry.messages[0].subject, "order_placed");
    // an order before the campaign runs is not its business
    record_order(server, vip, "early", now_secs(), 10.0).await;
    let running = schedule(server, &on_order.name).await;
    assert_eq!(running.state, CampaignState::Running as i32);
    record_order(server, vip, "A1", now_secs(), 25.0).await;
    record_order(server, vip_no_consent, "B1", now_secs(), 25.0).await;
    record_order(server, other, "C1", now_secs(), 25.0).await;
    // recording it again (a retry) is no new event
    record_order(server, vip, "A1", now_secs(), 25.0).await;
    let got = wait_messages(server, &on_order.name, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].customer, format!("customers/{vip}"));
    assert_eq!(got[0].subject, "order_placed");
    assert_eq!(got[0].body, "order A1");
    assert!(
        got[0]
            .idempotency_key
            .starts_with(&format!("{}:customers/{vip}:events/", on_order.name)),
        "{}",
        got[0].idempotency_key
    );
    // the events may be decided in more than one batch: wait for the second vip's
    let mut run = proto::CampaignRun::default();
    for _ in 0..200 {
        run = campaigns(server)
            .get_campaign_run(proto::GetCampaignRunRequest {
                name: got[0].run.clone(),
            })
            .await
            .expect("run")
            .into_inner();
        if run.counters.as_ref().is_some_and(|c| c.evaluated >= 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counters = run.counters.expect("counters");
    assert_eq!(run.state, "RUNNING");
    assert_eq!(counters.evaluated, 2, "the two vips' orders");
    assert_eq!(counters.suppressed_no_consent, 1);
    assert_eq!(counters.queued, 1);

    // paused: events are no longer decided
    campaigns(server)
        .pause_campaign(proto::PauseCampaignRequest {
            name: on_order.name.clone(),
        })
        .await
        .expect("pause");
    record_order(server, vip, "A2", now_secs(), 5.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(messages(server, &on_order.name).await.len(), 1);
    // resumed: it listens again, from now on (A2 stays unanswered)
    let resumed = campaigns(server)
        .resume_campaign(proto::ResumeCampaignRequest {
            name: on_order.name.clone(),
        })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(resumed.state, CampaignState::Running as i32);
    record_order(server, vip, "A3", now_secs(), 5.0).await;
    let got = wait_messages(server, &on_order.name, 2).await;
    let bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["order A1", "order A3"]);

    // segment entered: only entering the campaign's own audience
    let entered_script = message_script(server, "event.field(\"segment\")").await;
    let on_enter = create(
        server,
        &audience,
        &entered_script,
        0,
        Some(Kind::OnEvent(OnEvent {
            kind: CampaignEventKind::SegmentEntered as i32,
            inactive_days: 0,
        })),
    )
    .await;
    schedule(server, &on_enter.name).await;
    let newcomer = customer(server, 4, true, &["vip"], "").await;
    let _elsewhere = segment(server, "fn matches(c) { true }").await;
    refresh(server, &audience).await;
    let got = wait_messages(server, &on_enter.name, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got2 = messages(server, &on_enter.name).await;
    assert_eq!(got2.len(), 1, "{got2:?}");
    assert_eq!(got[0].customer, format!("customers/{newcomer}"));
    assert_eq!(got[0].body, audience);
}

async fn birthday_and_inactive_events_come_from_the_daily_scan(server: &TestServer) {
    let (m, d) = today();
    let born = customer(server, 1, true, &[], &format!("1990-{m:02}-{d:02}")).await;
    let (m2, d2) = if m == 1 { (2, 15) } else { (1, 15) };
    let not_today = customer(server, 2, true, &[], &format!("1990-{m2:02}-{d2:02}")).await;
    let lapsed = customer(server, 3, true, &[], "").await;
    let recent = customer(server, 4, true, &[], "").await;
    record_order(server, lapsed, "L1", now_secs() - 40 * DAY, 30.0).await;
    record_order(server, recent, "R1", now_secs() - 5 * DAY, 30.0).await;
    let audience = segment(server, "fn matches(c) { true }").await;
    let script = message_script(server, "`days ${event.field(\"days\")}`").await;
    let birthday = create(
        server,
        &audience,
        &script,
        0,
        Some(Kind::OnEvent(OnEvent {
            kind: CampaignEventKind::Birthday as i32,
            inactive_days: 0,
        })),
    )
    .await;
    let inactive = create(
        server,
        &audience,
        &script,
        0,
        Some(Kind::OnEvent(OnEvent {
            kind: CampaignEventKind::Inactive as i32,
            inactive_days: 30,
        })),
    )
    .await;
    schedule(server, &birthday.name).await;
    schedule(server, &inactive.name).await;
    let b = wait_messages(server, &birthday.name, 1).await;
    let i = wait_messages(server, &inactive.name, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b2 = messages(server, &birthday.name).await;
    let i2 = messages(server, &inactive.name).await;
    assert_eq!(b2.len(), 1, "{b2:?}");
    assert_eq!(i2.len(), 1, "{i2:?}");
    assert_eq!(b[0].customer, format!("customers/{born}"));
    assert_eq!(b[0].subject, "birthday");
    assert_eq!(i[0].customer, format!("customers/{lapsed}"));
    assert_eq!(i[0].body, "days 30");
    let _ = not_today;

    // a second inactive campaign makes the scan run again: it writes nothing twice, and the
    // new campaign sees today's events, so it messages the same event once
    let again = create(
        server,
        &audience,
        &script,
        0,
        Some(Kind::OnEvent(OnEvent {
            kind: CampaignEventKind::Inactive as i32,
            inactive_days: 30,
        })),
    )
    .await;
    schedule(server, &again.name).await;
    let a = wait_messages(server, &again.name, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(messages(server, &again.name).await.len(), 1);
    assert_eq!(messages(server, &inactive.name).await.len(), 1);
    let event_of = |m: &proto::Message| m.idempotency_key.rsplit(':').next().unwrap().to_string();
    assert_eq!(event_of(&a[0]), event_of(&i[0]));
}

async fn report_counts_conversions_against_the_holdout(server: &TestServer) {
    let mut people = Vec::new();
    for i in 0..40 {
        people.push((customer(server, i, true, &[], "").await, true));
    }
    let audience = segment(server, "fn matches(c) { true }").await;
    let script = message_script(server, "\"hi\"").await;
    let c = create(server, &audience, &script, 30, None).await;
    let cid = id_of(&c.name);
    campaigns(server)
        .launch_campaign(proto::LaunchCampaignRequest {
            name: c.name.clone(),
        })
        .await
        .expect("launch");
    wait_state(server, &c.name, CampaignState::Completed).await;
    let held: Vec<i64> = people
        .iter()
        .map(|p| p.0)
        .filter(|&id| bakkal_engine::campaign::in_holdout(cid, id, 30))
        .collect();
    assert!(held.len() >= 2, "the holdout of 40 at 30% has people");
    let sent = messages(server, &c.name).await;
    let treated: Vec<i64> = sent.iter().map(|m| id_of(&m.customer)).collect();
    assert_eq!(treated.len() + held.len(), 40);
    // one batch: every message and holdout decision has the same time
    let t = sent[0].create_time.expect("create time").seconds;
    assert!(sent
        .iter()
        .all(|m| m.create_time.as_ref().unwrap().seconds == t));

    record_order(server, treated[0], "t0", t + DAY, 100.0).await;
    record_order(server, treated[1], "t1a", t + 3 * DAY, 50.0).await;
    record_order(server, treated[1], "t1b", t + 5 * DAY, 25.0).await;
    record_order(server, treated[2], "t2", t + 10 * DAY, 70.0).await;
    record_order(server, treated[3], "t3", t - DAY, 10.0).await;
    record_order(server, held[0], "h0", t + 2 * DAY, 40.0).await;
    record_order(server, held[1], "h1", t + 20 * DAY, 15.0).await;

    // delivered by the dispatcher
    for _ in 0..200 {
        let m = messages(server, &c.name).await;
        if m.iter()
            .all(|m| m.status == MessageStatus::Delivered as i32)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n_t = treated.len() as f64;
    let n_h = held.len() as f64;
    let r = report(server, &c.name, 0).await;
    assert_eq!(r.attribution_window_days, 7);
    assert_eq!(r.targeted, treated.len() as i64);
    assert_eq!(r.held_out, held.len() as i64);
    assert_eq!(r.queued, treated.len() as i64);
    assert_eq!(r.delivered, treated.len() as i64);
    assert_eq!(r.failed, 0);
    assert_eq!(r.treated_customers, treated.len() as i64);
    assert_eq!(r.holdout_customers, held.len() as i64);
    assert_eq!(r.conversions, 2);
    assert_eq!(r.revenue, 175.0);
    assert_eq!(r.holdout_conversions, 1);
    assert_eq!(r.holdout_revenue, 40.0);
    assert!((r.conversion_rate - 2.0 / n_t).abs() < 1e-12);
    assert!((r.holdout_conversion_rate - 1.0 / n_h).abs() < 1e-12);
    let lift = r.lift.expect("lift");
    assert!(
        (lift - ((2.0 / n_t) / (1.0 / n_h) - 1.0)).abs() < 1e-9,
        "{lift}"
    );
    assert!(r.note.is_empty());

    let r = report(server, &c.name, 30).await;
    assert_eq!(r.conversions, 3);
    assert_eq!(r.revenue, 245.0);
    assert_eq!(r.holdout_conversions, 2);
    assert_eq!(r.holdout_revenue, 55.0);

    // no holdout: no lift, and a note saying why
    let none = create(server, &audience, &script, 0, None).await;
    let r = campaigns(server)
        .get_campaign_report(proto::GetCampaignReportRequest {
            name: none.name.clone(),
            attribution_window_days: 0,
        })
        .await
        .expect("report")
        .into_inner();
    assert_eq!(r.lift, None);
    assert!(r.note.contains("holdout is empty"), "{}", r.note);
    let err = campaigns(server)
        .get_campaign_report(proto::GetCampaignReportRequest {
            name: none.name.clone(),
            attribution_window_days: 400,
        })
        .await
        .expect_err("window too long");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = campaigns(server)
        .get_campaign_report(proto::GetCampaignReportRequest {
            name: "campaigns/999".into(),
            attribution_window_days: 0,
        })
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);
}

async fn report(server: &TestServer, name: &str, days: i32) -> proto::CampaignReport {
    campaigns(server)
        .get_campaign_report(proto::GetCampaignReportRequest {
            name: name.into(),
            attribution_window_days: days,
        })
        .await
        .expect("report")
        .into_inner()
}

/// Two servers' schedulers on one database: a lease is held by one owner at a time, renewed
/// by its holder, taken over when it runs out, and free again once released.
async fn leases_let_one_server_work_at_a_time(server: &TestServer) {
    let store = bakkal_store::Store::connect(&bakkal_store::StoreOptions::new(&server.db_url))
        .await
        .expect("store");
    let lease = |owner: &str| bakkal_store::Lease {
        name: "runs/42".into(),
        owner: owner.into(),
        ttl: 1_000,
    };
    let t = 1_000_000;
    assert!(store.claim_lease(&lease("a"), t).await.unwrap());
    assert!(!store.claim_lease(&lease("b"), t + 500).await.unwrap());
    assert!(
        store.claim_lease(&lease("a"), t + 900).await.unwrap(),
        "renewed"
    );
    assert!(!store.claim_lease(&lease("b"), t + 1_800).await.unwrap());
    assert!(
        store.claim_lease(&lease("b"), t + 2_000).await.unwrap(),
        "ran out"
    );
    assert!(!store.claim_lease(&lease("a"), t + 2_100).await.unwrap());
    store.release_lease(&lease("a"), None).await.unwrap();
    assert!(
        !store.claim_lease(&lease("a"), t + 2_200).await.unwrap(),
        "not a's to free"
    );
    store.release_lease(&lease("b"), None).await.unwrap();
    assert!(
        store.claim_lease(&lease("a"), t + 2_300).await.unwrap(),
        "released"
    );
    store.close().await;
}

async fn tier_changes_trigger_their_campaign(server: &TestServer) {
    let mut people = Vec::new();
    for i in 0..20 {
        let id = customer(server, i, true, &[], "").await;
        record_order(
            server,
            id,
            &format!("o{i}"),
            now_secs() - DAY,
            (i + 1) as f64 * 10.0,
        )
        .await;
        people.push(id);
    }
    let mut seg = SegmentServiceClient::new(server.channel.clone());
    seg.set_value_model(proto::SetValueModelRequest {
        value_model: Some(proto::ValueModel {
            weights: std::collections::HashMap::from([("monetary".to_string(), 1.0)]),
            ..Default::default()
        }),
    })
    .await
    .expect("set model");
    seg.compute_scores(proto::ComputeScoresRequest {})
        .await
        .expect("first scores");
    let audience = segment(server, "fn matches(c) { true }").await;
    let script = message_script(
        server,
        "`${event.field(\"from\")} -> ${event.field(\"to\")}`",
    )
    .await;
    let c = create(
        server,
        &audience,
        &script,
        0,
        Some(Kind::OnEvent(OnEvent {
            kind: CampaignEventKind::TierChanged as i32,
            inactive_days: 0,
        })),
    )
    .await;
    schedule(server, &c.name).await;
    // the smallest spender becomes the biggest: everyone whose tier moves gets one message
    record_order(server, people[0], "big", now_secs() - DAY, 5000.0).await;
    let out = seg
        .compute_scores(proto::ComputeScoresRequest {})
        .await
        .expect("scores again")
        .into_inner();
    assert!(out.changed_count >= 1);
    let got = wait_messages(server, &c.name, out.changed_count as usize).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        messages(server, &c.name).await.len(),
        out.changed_count as usize
    );
    let top = got
        .iter()
        .find(|m| m.customer == format!("customers/{}", people[0]))
        .expect("the new top customer's message");
    assert_eq!(top.subject, "tier_changed");
    // the bottom tier to a higher one (which depends on the model's percentiles)
    assert!(
        top.body.starts_with("Standard -> ") && !top.body.ends_with("Standard"),
        "{}",
        top.body
    );
}

on_both_backends!(
    tier_changes_trigger_their_campaign,
    leases_let_one_server_work_at_a_time,
    at_time_and_recurring_campaigns_run_when_due,
    event_campaigns_decide_each_new_event,
    birthday_and_inactive_events_come_from_the_daily_scan,
);

// The report's conversions come days after the run: orders placed ahead of the server's clock.
on_both_backends_with!(
    with_orders_ahead,
    |c: &mut bakkal::config::Config| c.future_tolerance =
        std::time::Duration::from_secs(60 * 86_400),
    report_counts_conversions_against_the_holdout,
);
