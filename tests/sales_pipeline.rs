//! `bakkal.v1.SalesService` pipelines and opportunities through real servers and clients, on
//! SQLite and (when `BAKKAL_TEST_POSTGRES_URL` is set) PostgreSQL: the pipeline exactly as it
//! stood after changes at three instants, stage conversion against hand-computed figures, a
//! prospect's conversion when their opportunity is won, record scope by owner, and bad input
//! (unknown references, a stage of another pipeline, lost without a reason, a currency that is
//! not ISO 4217, a negative amount), each a precise error with nothing written.

mod common;

use bakkal::config::Clock;
use bakkal::proto;
use bakkal::proto::access_service_client::AccessServiceClient;
use bakkal::proto::sales_service_client::SalesServiceClient;
use bakkal::proto::{ForecastCategory, PipelineGroupBy, StageOutcome};
use bakkal_domain::time::{days_from_civil, Micros, MICROS_PER_SECOND};
use common::{count, Backend, TestDb, TestServer};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

const HOUR: Micros = 3600 * MICROS_PER_SECOND;
const DAY: Micros = 24 * HOUR;

fn utc(y: i32, m: u32, d: u32, h: i64) -> Micros {
    days_from_civil(y, m, d) * DAY + h * HOUR
}

fn ts(m: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: m.div_euclid(MICROS_PER_SECOND),
        nanos: 0,
    }
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn stage(name: &str, p: i32, c: ForecastCategory, o: StageOutcome) -> proto::PipelineStage {
    proto::PipelineStage {
        display_name: name.into(),
        probability: p,
        forecast_category: c as i32,
        outcome: o as i32,
        ..Default::default()
    }
}

/// Qualify 10 %, Proposal 50 %, Negotiation 80 %, Won, Lost.
fn standard_stages() -> Vec<proto::PipelineStage> {
    use ForecastCategory::*;
    use StageOutcome::*;
    vec![
        stage("Qualify", 10, Pipeline, Open),
        stage("Proposal", 50, BestCase, Open),
        stage("Negotiation", 80, Commit, Open),
        stage("Won", 100, Closed, Won),
        stage("Lost", 0, Omitted, Lost),
    ]
}

fn new_pipeline(name: &str) -> proto::CreatePipelineRequest {
    proto::CreatePipelineRequest {
        pipeline: Some(proto::Pipeline {
            display_name: name.into(),
            stages: standard_stages(),
            ..Default::default()
        }),
    }
}

async fn pipeline(c: &mut SalesServiceClient<Channel>, name: &str) -> proto::Pipeline {
    c.create_pipeline(new_pipeline(name))
        .await
        .expect("create pipeline")
        .into_inner()
}

fn opportunity(
    p: &proto::Pipeline,
    stage: usize,
    name: &str,
    amount: i64,
    currency: &str,
) -> proto::Opportunity {
    proto::Opportunity {
        display_name: name.into(),
        pipeline: p.name.clone(),
        stage: p.stages[stage].name.clone(),
        amount_minor: amount,
        currency_code: currency.into(),
        ..Default::default()
    }
}

async fn create(c: &mut SalesServiceClient<Channel>, o: proto::Opportunity) -> proto::Opportunity {
    c.create_opportunity(proto::CreateOpportunityRequest {
        opportunity: Some(o),
        request_id: String::new(),
    })
    .await
    .expect("create opportunity")
    .into_inner()
}

async fn update(
    c: &mut SalesServiceClient<Channel>,
    o: proto::Opportunity,
    paths: &[&str],
) -> Result<proto::Opportunity, tonic::Status> {
    c.update_opportunity(proto::UpdateOpportunityRequest {
        opportunity: Some(o),
        update_mask: mask(paths),
    })
    .await
    .map(|r| r.into_inner())
}

async fn view(
    c: &mut SalesServiceClient<Channel>,
    p: &proto::Pipeline,
    as_of: Option<Micros>,
    group_by: PipelineGroupBy,
) -> Vec<(String, String, i64, i64, i64)> {
    c.get_pipeline(proto::GetPipelineRequest {
        pipeline: p.name.clone(),
        as_of: as_of.map(ts),
        filter: String::new(),
        group_by: group_by as i32,
    })
    .await
    .expect("get pipeline")
    .into_inner()
    .groups
    .into_iter()
    .map(|g| {
        let key = if g.stage.is_empty() {
            g.owner
        } else {
            g.stage_display_name
        };
        (
            key,
            g.currency_code,
            g.count,
            g.amount_minor,
            g.weighted_amount_minor,
        )
    })
    .collect()
}

fn row(
    key: &str,
    cur: &str,
    n: i64,
    amount: i64,
    weighted: i64,
) -> (String, String, i64, i64, i64) {
    (key.into(), cur.into(), n, amount, weighted)
}

async fn staff_user(server: &TestServer, email: &str) -> String {
    AccessServiceClient::new(server.channel.clone())
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                display_name: email.into(),
                email: email.into(),
                roles: vec!["sales_rep".into()],
                ..Default::default()
            }),
            inactive: false,
        })
        .await
        .expect("user")
        .into_inner()
        .name
}

/// Changes at three instants (T0, T1 = T0 + 1 day, T2 = T0 + 2 days, then T3 = T0 + 3 days);
/// GetPipeline with `as_of` answers exactly as the pipeline stood, and GetStageConversion
/// gives the hand-computed figures.
async fn pipeline_as_it_stood(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let t0 = utc(2026, 11, 2, 9);
    let (t1, t2, t3) = (t0 + DAY, t0 + 2 * DAY, t0 + 3 * DAY);
    let clock = Clock::manual(t0);
    let server = TestServer::start_at(&db.url, |c| c.sales_clock = clock.clone()).await;
    let mut c = SalesServiceClient::new(server.channel.clone());
    let ayse = staff_user(&server, "ayse@sales.example.com").await;
    let mert = staff_user(&server, "mert@sales.example.com").await;
    let p = pipeline(&mut c, "New business").await;
    assert_eq!(p.stages.len(), 5);

    // T0: A and B in Qualify (TRY), C in Proposal (EUR)
    let a = create(
        &mut c,
        proto::Opportunity {
            owner: ayse.clone(),
            ..opportunity(&p, 0, "A", 100_000, "try")
        },
    )
    .await;
    assert_eq!(a.probability, Some(10));
    assert_eq!(a.forecast_category, ForecastCategory::Pipeline as i32);
    assert_eq!(a.currency_code, "TRY");
    let b = create(
        &mut c,
        proto::Opportunity {
            owner: mert.clone(),
            ..opportunity(&p, 0, "B", 200_000, "TRY")
        },
    )
    .await;
    let cc = create(
        &mut c,
        proto::Opportunity {
            owner: ayse.clone(),
            ..opportunity(&p, 1, "C", 50_000, "EUR")
        },
    )
    .await;

    // T1: A to Proposal (its default 50 %), B's amount to 300,000
    clock.set(t1);
    let a = update(
        &mut c,
        proto::Opportunity {
            stage: p.stages[1].name.clone(),
            ..a
        },
        &["stage"],
    )
    .await
    .expect("A to proposal");
    assert_eq!(a.probability, Some(50));
    assert_eq!(a.forecast_category, ForecastCategory::BestCase as i32);
    let b = update(
        &mut c,
        proto::Opportunity {
            amount_minor: 300_000,
            ..b
        },
        &["amount_minor"],
    )
    .await
    .expect("B amount");

    // T2: A won, C lost (with a reason), D new in Qualify
    clock.set(t2);
    let a = update(
        &mut c,
        proto::Opportunity {
            stage: p.stages[3].name.clone(),
            ..a
        },
        &["stage"],
    )
    .await
    .expect("A won");
    assert_eq!(a.outcome, StageOutcome::Won as i32);
    assert_eq!(
        a.close_time.as_ref().map(|t| t.seconds),
        Some(t2 / MICROS_PER_SECOND)
    );
    update(
        &mut c,
        proto::Opportunity {
            stage: p.stages[4].name.clone(),
            lost_reason: "price".into(),
            ..cc
        },
        &["stage", "lost_reason"],
    )
    .await
    .expect("C lost");
    create(
        &mut c,
        proto::Opportunity {
            owner: mert.clone(),
            ..opportunity(&p, 0, "D", 10_000, "TRY")
        },
    )
    .await;

    // T3: B to Negotiation at 70 % (not the stage's 80)
    clock.set(t3);
    update(
        &mut c,
        proto::Opportunity {
            stage: p.stages[2].name.clone(),
            probability: Some(70),
            ..b
        },
        &["stage", "probability"],
    )
    .await
    .expect("B negotiation");

    use PipelineGroupBy::{Owner, Stage};
    assert_eq!(view(&mut c, &p, Some(t0 - HOUR), Stage).await, vec![]);
    assert_eq!(
        view(&mut c, &p, Some(t0 + HOUR), Stage).await,
        vec![
            row("Qualify", "TRY", 2, 300_000, 30_000),
            row("Proposal", "EUR", 1, 50_000, 25_000),
        ]
    );
    assert_eq!(
        view(&mut c, &p, Some(t1 + HOUR), Stage).await,
        vec![
            row("Qualify", "TRY", 1, 300_000, 30_000),
            row("Proposal", "EUR", 1, 50_000, 25_000),
            row("Proposal", "TRY", 1, 100_000, 50_000),
        ]
    );
    assert_eq!(
        view(&mut c, &p, Some(t2 + HOUR), Stage).await,
        vec![
            row("Qualify", "TRY", 2, 310_000, 31_000),
            row("Won", "TRY", 1, 100_000, 100_000),
            row("Lost", "EUR", 1, 50_000, 0),
        ]
    );
    // exactly at an instant, its changes are in
    assert_eq!(
        view(&mut c, &p, Some(t1), Stage).await,
        view(&mut c, &p, Some(t1 + HOUR), Stage).await
    );
    let now = vec![
        row("Qualify", "TRY", 1, 10_000, 1_000),
        row("Negotiation", "TRY", 1, 300_000, 210_000),
        row("Won", "TRY", 1, 100_000, 100_000),
        row("Lost", "EUR", 1, 50_000, 0),
    ];
    assert_eq!(view(&mut c, &p, None, Stage).await, now);
    assert_eq!(view(&mut c, &p, Some(t3 + HOUR), Stage).await, now);
    assert_eq!(
        view(&mut c, &p, Some(t1 + HOUR), Owner).await,
        vec![
            row(&ayse, "EUR", 1, 50_000, 25_000),
            row(&ayse, "TRY", 1, 100_000, 50_000),
            row(&mert, "TRY", 1, 300_000, 30_000),
        ]
    );
    // a filter on what stood then
    let committed = c
        .get_pipeline(proto::GetPipelineRequest {
            pipeline: p.name.clone(),
            as_of: Some(ts(t1 + HOUR)),
            filter: "currency = \"TRY\" AND amount >= 200000".into(),
            group_by: 0,
        })
        .await
        .expect("filtered")
        .into_inner();
    assert_eq!(committed.groups.len(), 1);
    assert_eq!(committed.groups[0].amount_minor, 300_000);

    // A's history: created, then two stage changes with their defaults
    let history = c
        .list_opportunity_history(proto::ListOpportunityHistoryRequest {
            name: a.name.clone(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("history")
        .into_inner()
        .events;
    let changed: Vec<Vec<String>> = history.iter().map(|e| e.changed.clone()).collect();
    assert_eq!(
        changed,
        vec![
            vec!["created".to_string()],
            vec![
                "stage".into(),
                "probability".into(),
                "forecast_category".into()
            ],
            vec![
                "stage".into(),
                "probability".into(),
                "forecast_category".into()
            ],
        ]
    );
    assert_eq!(history[2].stage, p.stages[3].name);
    assert_eq!(
        history[1].time.as_ref().map(|t| t.seconds),
        Some(t1 / MICROS_PER_SECOND)
    );
    // the history is append-only in the database itself
    assert_eq!(
        count(&db.url, "SELECT COUNT(*) FROM opportunity_events").await,
        3 + 3 + 2 + 1
    );

    // Stage conversion over [T0, T0 + 10 days). Stays: A Qualify [T0,T1) → Proposal [T1,T2)
    // → Won; B Qualify [T0,T3) → Negotiation; C Proposal [T0,T2) → Lost; D Qualify [T2,…).
    let conv = c
        .get_stage_conversion(proto::GetStageConversionRequest {
            pipeline: p.name.clone(),
            start_time: Some(ts(t0)),
            end_time: Some(ts(t0 + 10 * DAY)),
        })
        .await
        .expect("conversion")
        .into_inner()
        .stages;
    let secs = |d: &Option<prost_types::Duration>| d.as_ref().map(|d| d.seconds);
    let day = DAY / MICROS_PER_SECOND;
    let figures: Vec<_> = conv
        .iter()
        .map(|s| {
            (
                s.display_name.as_str(),
                s.entered,
                s.advanced,
                s.won,
                s.lost,
                secs(&s.median_time_in_stage),
                secs(&s.p90_time_in_stage),
            )
        })
        .collect();
    assert_eq!(
        figures,
        vec![
            // A 1 day, B 3 days: nearest-rank median 1 day, p90 3 days
            ("Qualify", 3, 2, 1, 0, Some(day), Some(3 * day)),
            // A 1 day (on to Won: advanced), C 2 days (to Lost: not advanced)
            ("Proposal", 2, 1, 1, 1, Some(day), Some(2 * day)),
            ("Negotiation", 1, 0, 0, 0, None, None),
            ("Won", 1, 0, 1, 0, None, None),
            ("Lost", 1, 0, 0, 1, None, None),
        ]
    );
    // a later period: only D entered Qualify after T1, and stood open at the end
    let later = c
        .get_stage_conversion(proto::GetStageConversionRequest {
            pipeline: p.name.clone(),
            start_time: Some(ts(t1 + HOUR)),
            end_time: Some(ts(t2 + HOUR)),
        })
        .await
        .expect("conversion")
        .into_inner()
        .stages;
    assert_eq!(
        (later[0].entered, later[0].advanced, later[0].won),
        (1, 0, 0)
    );
    // Won and Lost entered at T2 (A, C)
    assert_eq!((later[3].entered, later[3].won), (1, 1));
    assert_eq!((later[4].entered, later[4].lost), (1, 1));
    server.stop().await;
}

/// Winning a prospect's opportunity marks their conversion, as a first paid order does.
async fn won_opportunity_converts_the_prospect(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = TestServer::start_on(db).await;
    let mut c = SalesServiceClient::new(server.channel.clone());
    let mut customers = server.customers();
    let prospect = customers
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: "Deniz Kaya".into(),
                email: "deniz@example.com".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("customer")
        .into_inner();
    assert_eq!(prospect.stage, proto::Stage::Prospect as i32);
    let p = pipeline(&mut c, "Retail").await;
    let o = create(
        &mut c,
        proto::Opportunity {
            customer: prospect.name.clone(),
            ..opportunity(&p, 0, "First deal", 75_000, "TRY")
        },
    )
    .await;
    let get = |name: String| proto::GetCustomerRequest { name };
    let before = customers
        .get_customer(get(prospect.name.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.stage, proto::Stage::Prospect as i32);
    assert!(before.converted_time.is_none());
    update(
        &mut c,
        proto::Opportunity {
            stage: p.stages[3].name.clone(),
            ..o
        },
        &["stage"],
    )
    .await
    .expect("won");
    let after = customers
        .get_customer(get(prospect.name.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(after.converted_time.is_some());
    assert_eq!(after.stage, proto::Stage::Active as i32);
    server.stop().await;
}

/// (opportunities, history events) in the database.
async fn written(url: &str) -> (i64, i64) {
    (
        count(url, "SELECT COUNT(*) FROM opportunities").await,
        count(url, "SELECT COUNT(*) FROM opportunity_events").await,
    )
}

/// Bad input: each a precise error naming its field, and nothing written.
async fn bad_input_writes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let url = db.url.clone();
    let server = TestServer::start_on(db).await;
    let mut c = SalesServiceClient::new(server.channel.clone());
    let p = pipeline(&mut c, "One").await;
    let other = pipeline(&mut c, "Other").await;
    let ok = create(&mut c, opportunity(&p, 0, "Fine", 1_000, "TRY")).await;
    let baseline = written(&url).await;
    assert_eq!(baseline, (1, 1));

    let cases: Vec<(proto::Opportunity, Code, Vec<&str>)> = vec![
        (
            proto::Opportunity {
                pipeline: "pipelines/999".into(),
                stage: "pipelines/999/stages/1".into(),
                ..opportunity(&p, 0, "x", 1, "TRY")
            },
            Code::InvalidArgument,
            vec!["opportunity.pipeline"],
        ),
        (
            proto::Opportunity {
                customer: "customers/999".into(),
                ..opportunity(&p, 0, "x", 1, "TRY")
            },
            Code::InvalidArgument,
            vec!["opportunity.customer"],
        ),
        (
            proto::Opportunity {
                organization: "organizations/999".into(),
                ..opportunity(&p, 0, "x", 1, "TRY")
            },
            Code::InvalidArgument,
            vec!["opportunity.organization"],
        ),
        (
            proto::Opportunity {
                owner: "users/999".into(),
                ..opportunity(&p, 0, "x", 1, "TRY")
            },
            Code::InvalidArgument,
            vec!["opportunity.owner"],
        ),
        // a stage of another pipeline, by its name …
        (
            proto::Opportunity {
                stage: other.stages[0].name.clone(),
                ..opportunity(&p, 0, "x", 1, "TRY")
            },
            Code::InvalidArgument,
            vec!["opportunity.stage"],
        ),
        // … or by its id under this pipeline's name
        (
            proto::Opportunity {
                stage: format!(
                    "{}/stages/{}",
                    p.name,
                    other.stages[0].name.rsplit('/').next().unwrap()
                ),
                ..opportunity(&p, 0, "x", 1, "TRY")
            },
            Code::InvalidArgument,
            vec!["opportunity.stage"],
        ),
        (
            opportunity(&p, 4, "lost without reason", 1, "TRY"),
            Code::InvalidArgument,
            vec!["opportunity.lost_reason"],
        ),
        (
            opportunity(&p, 0, "x", -5, "XYZ"),
            Code::InvalidArgument,
            vec!["opportunity.amount_minor", "opportunity.currency_code"],
        ),
        (
            proto::Opportunity {
                probability: Some(101),
                ..opportunity(&p, 0, "", 1, "TRY")
            },
            Code::InvalidArgument,
            vec!["opportunity.display_name", "opportunity.probability"],
        ),
    ];
    for (o, code, fields) in cases {
        let e = c
            .create_opportunity(proto::CreateOpportunityRequest {
                opportunity: Some(o.clone()),
                request_id: String::new(),
            })
            .await
            .expect_err("refused");
        assert_eq!(e.code(), code, "{o:?}: {e:?}");
        let mut got = violations(&e);
        got.sort();
        assert_eq!(got, fields, "{o:?}: {}", e.message());
        assert_eq!(written(&url).await, baseline, "{o:?} wrote something");
    }

    // an update to the lost stage without a reason changes nothing
    let e = update(
        &mut c,
        proto::Opportunity {
            stage: p.stages[4].name.clone(),
            ..ok.clone()
        },
        &["stage"],
    )
    .await
    .expect_err("lost without reason");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violations(&e), ["opportunity.lost_reason"]);
    // … and to a stage of another pipeline
    let e = update(
        &mut c,
        proto::Opportunity {
            stage: other.stages[1].name.clone(),
            ..ok.clone()
        },
        &["stage"],
    )
    .await
    .expect_err("other pipeline");
    assert_eq!(violations(&e), ["opportunity.stage"]);
    let e = update(
        &mut c,
        proto::Opportunity {
            amount_minor: -1,
            ..ok.clone()
        },
        &["amount_minor"],
    )
    .await
    .expect_err("negative");
    assert_eq!(violations(&e), ["opportunity.amount_minor"]);
    let e = update(&mut c, ok.clone(), &["pipeline"])
        .await
        .expect_err("mask");
    assert_eq!(violations(&e), ["update_mask"]);
    assert_eq!(written(&url).await, baseline);
    let still = c
        .get_opportunity(proto::GetOpportunityRequest {
            name: ok.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.etag, ok.etag);

    // a stale etag is ABORTED; an unknown opportunity NOT_FOUND
    update(
        &mut c,
        proto::Opportunity {
            next_step: "call".into(),
            ..ok.clone()
        },
        &["next_step"],
    )
    .await
    .expect("next step");
    let e = update(
        &mut c,
        proto::Opportunity {
            next_step: "again".into(),
            ..ok.clone()
        },
        &["next_step"],
    )
    .await
    .expect_err("stale");
    assert_eq!(e.code(), Code::Aborted);
    let e = c
        .get_opportunity(proto::GetOpportunityRequest {
            name: "opportunities/999".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    // next_step is not tracked: still one history event
    assert_eq!(written(&url).await, baseline);

    // pipelines keep their stage rules
    let e = c
        .create_pipeline(proto::CreatePipelineRequest {
            pipeline: Some(proto::Pipeline {
                display_name: "Bad".into(),
                stages: vec![
                    stage("Open", 10, ForecastCategory::Pipeline, StageOutcome::Open),
                    stage("Won", 50, ForecastCategory::Closed, StageOutcome::Won),
                ],
                ..Default::default()
            }),
        })
        .await
        .expect_err("won at 50");
    assert_eq!(violations(&e), ["pipeline.stages[1].probability"]);
    // a stage with opportunities cannot be removed
    let mut fewer = p.clone();
    fewer.stages.remove(0);
    let e = c
        .update_pipeline(proto::UpdatePipelineRequest {
            pipeline: Some(fewer),
            update_mask: mask(&["stages"]),
        })
        .await
        .expect_err("stage in use");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM pipeline_stages").await,
        10
    );

    // a request_id replays the first answer
    let first = c
        .create_opportunity(proto::CreateOpportunityRequest {
            opportunity: Some(opportunity(&p, 0, "Once", 5, "TRY")),
            request_id: "req-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let again = c
        .create_opportunity(proto::CreateOpportunityRequest {
            opportunity: Some(opportunity(&p, 0, "Once", 5, "TRY")),
            request_id: "req-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.name, again.name);
    assert_eq!(written(&url).await, (2, 2));
    server.stop().await;
}

/// Competitors on opportunities, the lost-reason list, and the win/loss report against
/// hand-computed figures, with bad input refused.
async fn win_loss_report(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let t0 = utc(2026, 11, 2, 9);
    let clock = Clock::manual(t0 - 2 * DAY);
    let server = TestServer::start_at(&db.url, |c| c.sales_clock = clock.clone()).await;
    let mut c = SalesServiceClient::new(server.channel.clone());
    let ayse = staff_user(&server, "ayse@sales.example.com").await;
    let mert = staff_user(&server, "mert@sales.example.com").await;
    let p = pipeline(&mut c, "Deals").await;
    let competitor = |name: &str| proto::CreateCompetitorRequest {
        competitor: Some(proto::Competitor {
            display_name: name.into(),
            website: format!("https://{}.example", name.to_lowercase()),
            ..Default::default()
        }),
    };
    let rival_a = c
        .create_competitor(competitor("RivalA"))
        .await
        .unwrap()
        .into_inner();
    let rival_b = c
        .create_competitor(competitor("RivalB"))
        .await
        .unwrap()
        .into_inner();
    let price = c
        .create_lost_reason(proto::CreateLostReasonRequest {
            lost_reason: Some(proto::LostReason {
                display_name: "Price".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let deal = |name: &str, owner: &str, source: &str, amount: i64| proto::Opportunity {
        owner: owner.into(),
        source: source.into(),
        ..opportunity(&p, 1, name, amount, "TRY")
    };
    let client = c.clone();
    let with = move |o: proto::Opportunity, list: Vec<(&str, proto::CompetitorRole)>| {
        let req = proto::SetOpportunityCompetitorsRequest {
            opportunity: o.name.clone(),
            competitors: list
                .into_iter()
                .map(|(name, role)| proto::OpportunityCompetitor {
                    competitor: name.into(),
                    role: role as i32,
                    strengths: "local service".into(),
                    price_position: proto::PricePosition::Lower as i32,
                    ..Default::default()
                })
                .collect(),
            etag: String::new(),
        };
        let mut c = client.clone();
        async move {
            c.set_opportunity_competitors(req)
                .await
                .expect("set competitors")
                .into_inner()
        }
    };
    use proto::CompetitorRole::{Active, Incumbent, LostTo, WonAgainst};
    // closed before the period
    let early = create(&mut c, deal("early", &ayse, "web", 5_000)).await;
    let w1 = create(&mut c, deal("W1", &ayse, "web", 100_000)).await;
    let w1 = with(w1, vec![(&rival_a.name, WonAgainst)]).await;
    assert_eq!(w1.competitors.len(), 1);
    assert_eq!(w1.competitors[0].competitor, rival_a.name);
    assert_eq!(w1.competitors[0].role, WonAgainst as i32);
    let w2 = create(&mut c, deal("W2", &mert, "referral", 50_000)).await;
    let w2 = with(
        w2,
        vec![(&rival_a.name, Active), (&rival_b.name, Incumbent)],
    )
    .await;
    let l1 = create(&mut c, deal("L1", &ayse, "web", 30_000)).await;
    let l1 = with(l1, vec![(&rival_a.name, LostTo)]).await;
    let l2 = create(&mut c, deal("L2", &mert, "web", 20_000)).await;
    let open = create(&mut c, deal("open", &ayse, "web", 10_000)).await;
    let won = p.stages[3].name.clone();
    let lost = p.stages[4].name.clone();
    let close = |o: proto::Opportunity, stage: &str, reason: &str| proto::Opportunity {
        stage: stage.into(),
        lost_reason: reason.into(),
        ..o
    };
    clock.set(t0 - DAY);
    update(
        &mut c,
        close(early, &lost, "timing"),
        &["stage", "lost_reason"],
    )
    .await
    .unwrap();
    clock.set(t0 + DAY);
    update(&mut c, close(w1, &won, ""), &["stage"])
        .await
        .unwrap();
    clock.set(t0 + 2 * DAY);
    update(&mut c, close(w2, &won, ""), &["stage"])
        .await
        .unwrap();
    update(
        &mut c,
        close(l1, &lost, &price.name),
        &["stage", "lost_reason"],
    )
    .await
    .unwrap();
    clock.set(t0 + 3 * DAY);
    // a lost reason naming the list must name one in it
    let e = update(
        &mut c,
        close(l2.clone(), &lost, "lostReasons/99"),
        &["stage", "lost_reason"],
    )
    .await
    .expect_err("unknown lost reason");
    assert_eq!(violations(&e), ["opportunity.lost_reason"]);
    update(
        &mut c,
        close(l2, &lost, "no budget"),
        &["stage", "lost_reason"],
    )
    .await
    .unwrap();
    let _ = open;

    let report = |group_by: proto::WinLossGroupBy| proto::GetWinLossReportRequest {
        start_time: Some(ts(t0)),
        end_time: Some(ts(t0 + 10 * DAY)),
        pipeline: p.name.clone(),
        group_by: group_by as i32,
    };
    let rows =
        |r: proto::GetWinLossReportResponse| -> Vec<(String, String, i64, i64, i64, i64, i64)> {
            r.groups
                .into_iter()
                .map(|g| {
                    assert_eq!(g.currency_code, "TRY");
                    assert!((g.win_rate - g.won as f64 / g.closed as f64).abs() < 1e-9);
                    (
                        g.key,
                        g.display_name,
                        g.closed,
                        g.won,
                        g.lost,
                        g.amount_won_minor,
                        g.amount_lost_minor,
                    )
                })
                .collect()
        };
    let r = |k: &str, d: &str, closed, won, lost, aw, al| {
        (k.to_string(), d.to_string(), closed, won, lost, aw, al)
    };
    use proto::WinLossGroupBy as G;
    let by_owner = rows(
        c.get_win_loss_report(report(G::Owner))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        by_owner,
        vec![
            r(&ayse, &ayse, 2, 1, 1, 100_000, 30_000),
            r(&mert, &mert, 2, 1, 1, 50_000, 20_000),
        ]
    );
    let by_source = rows(
        c.get_win_loss_report(report(G::Source))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        by_source,
        vec![
            r("referral", "referral", 1, 1, 0, 50_000, 0),
            r("web", "web", 3, 1, 2, 100_000, 50_000),
        ]
    );
    let by_competitor = rows(
        c.get_win_loss_report(report(G::Competitor))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        by_competitor,
        vec![
            r(&rival_a.name, "RivalA", 3, 2, 1, 150_000, 30_000),
            r(&rival_b.name, "RivalB", 1, 1, 0, 50_000, 0),
        ]
    );
    let by_reason = rows(
        c.get_win_loss_report(report(G::LostReason))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(
        by_reason,
        vec![
            r("", "", 2, 2, 0, 150_000, 0),
            r(&price.name, "Price", 1, 0, 1, 0, 30_000),
            r("no budget", "no budget", 1, 0, 1, 0, 20_000),
        ]
    );

    // bad input
    let e = c
        .get_win_loss_report(report(G::Unspecified))
        .await
        .expect_err("no group");
    assert_eq!(violations(&e), ["group_by"]);
    let target = create(&mut c, deal("target", &ayse, "web", 1)).await;
    let e = c
        .set_opportunity_competitors(proto::SetOpportunityCompetitorsRequest {
            opportunity: target.name.clone(),
            competitors: vec![
                proto::OpportunityCompetitor {
                    competitor: "competitors/99".into(),
                    role: Active as i32,
                    ..Default::default()
                },
                proto::OpportunityCompetitor {
                    competitor: rival_a.name.clone(),
                    ..Default::default()
                },
            ],
            etag: String::new(),
        })
        .await
        .expect_err("bad competitors");
    assert_eq!(violations(&e), ["competitors[1].role"]);
    let e = c
        .set_opportunity_competitors(proto::SetOpportunityCompetitorsRequest {
            opportunity: target.name.clone(),
            competitors: vec![proto::OpportunityCompetitor {
                competitor: "competitors/99".into(),
                role: Active as i32,
                ..Default::default()
            }],
            etag: String::new(),
        })
        .await
        .expect_err("unknown competitor");
    assert_eq!(violations(&e), ["competitors[0].competitor"]);
    assert_eq!(
        count(&db.url, "SELECT COUNT(*) FROM opportunity_competitors").await,
        4
    );
    server.stop().await;
}

/// A bearer token on every call.
#[derive(Clone)]
struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

fn sales_as(
    server: &TestServer,
    key: &str,
) -> SalesServiceClient<InterceptedService<Channel, Bearer>> {
    SalesServiceClient::with_interceptor(
        server.channel.clone(),
        Bearer(MetadataValue::try_from(format!("Bearer {key}")).unwrap()),
    )
}

/// A staff user with `roles` and `manager`, and a key for them: (user name, key).
async fn user_key(
    access: &mut AccessServiceClient<InterceptedService<Channel, Bearer>>,
    email: &str,
    roles: &[&str],
    manager: &str,
) -> (String, String) {
    let u = access
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                display_name: email.into(),
                email: email.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                manager: manager.into(),
                ..Default::default()
            }),
            inactive: false,
        })
        .await
        .expect("user")
        .into_inner();
    let key = access
        .create_api_key(proto::CreateApiKeyRequest {
            parent: u.name.clone(),
            api_key: Some(proto::ApiKey {
                display_name: "laptop".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("key")
        .into_inner()
        .secret;
    (u.name, key)
}

/// A sales rep reaches the opportunities they own, their manager also their reports', and
/// nobody else's: out of scope reads as not found; pipelines are run by managers.
async fn opportunities_keep_to_their_owners(backend: Backend) {
    let Some((server, admin)) = common::secured(backend).await else {
        return;
    };
    let mut access = AccessServiceClient::with_interceptor(
        server.channel.clone(),
        Bearer(MetadataValue::try_from(format!("Bearer {admin}")).unwrap()),
    );
    let (boss, boss_key) = user_key(
        &mut access,
        "boss@sales.example.com",
        &["sales_manager"],
        "",
    )
    .await;
    let (rep, rep_key) =
        user_key(&mut access, "rep@sales.example.com", &["sales_rep"], &boss).await;
    let (_other, other_key) =
        user_key(&mut access, "other@sales.example.com", &["sales_rep"], "").await;
    let mut admin_c = sales_as(&server, &admin);
    let mut boss_c = sales_as(&server, &boss_key);
    let mut rep_c = sales_as(&server, &rep_key);
    let mut other_c = sales_as(&server, &other_key);

    let e = rep_c
        .create_pipeline(new_pipeline("Mine"))
        .await
        .expect_err("reps do not run pipelines");
    assert_eq!(e.code(), Code::PermissionDenied);
    let p = boss_c
        .create_pipeline(new_pipeline("Team"))
        .await
        .expect("managers run pipelines")
        .into_inner();

    let new = |name: &str| proto::CreateOpportunityRequest {
        opportunity: Some(opportunity(&p, 1, name, 1_000, "TRY")),
        request_id: String::new(),
    };
    let mine = rep_c
        .create_opportunity(new("rep's"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.owner, rep, "the calling user owns what they create");
    let theirs = other_c
        .create_opportunity(new("other's"))
        .await
        .unwrap()
        .into_inner();
    // a rep cannot hand an opportunity to someone outside their scope
    let e = rep_c
        .create_opportunity(proto::CreateOpportunityRequest {
            opportunity: Some(proto::Opportunity {
                owner: boss.clone(),
                ..opportunity(&p, 1, "gift", 1, "TRY")
            }),
            request_id: String::new(),
        })
        .await
        .expect_err("outside scope");
    assert_eq!(violations(&e), ["opportunity.owner"]);

    let names = |r: proto::ListOpportunitiesResponse| -> Vec<String> {
        r.opportunities.into_iter().map(|o| o.name).collect()
    };
    let list = proto::ListOpportunitiesRequest::default;
    assert_eq!(
        names(rep_c.list_opportunities(list()).await.unwrap().into_inner()),
        [mine.name.as_str()]
    );
    assert_eq!(
        names(
            boss_c
                .list_opportunities(list())
                .await
                .unwrap()
                .into_inner()
        ),
        [mine.name.as_str()]
    );
    assert_eq!(
        names(
            admin_c
                .list_opportunities(list())
                .await
                .unwrap()
                .into_inner()
        ),
        [mine.name.clone(), theirs.name.clone()]
    );
    let e = rep_c
        .get_opportunity(proto::GetOpportunityRequest {
            name: theirs.name.clone(),
        })
        .await
        .expect_err("not theirs");
    assert_eq!(e.code(), Code::NotFound);
    let e = rep_c
        .update_opportunity(proto::UpdateOpportunityRequest {
            opportunity: Some(proto::Opportunity {
                next_step: "steal".into(),
                ..theirs.clone()
            }),
            update_mask: mask(&["next_step"]),
        })
        .await
        .expect_err("not theirs");
    assert_eq!(e.code(), Code::NotFound);
    // the pipeline view counts what the caller reaches
    let count_of =
        |r: proto::GetPipelineResponse| -> i64 { r.groups.iter().map(|g| g.count).sum() };
    let req = || proto::GetPipelineRequest {
        pipeline: p.name.clone(),
        ..Default::default()
    };
    assert_eq!(
        count_of(rep_c.get_pipeline(req()).await.unwrap().into_inner()),
        1
    );
    assert_eq!(
        count_of(admin_c.get_pipeline(req()).await.unwrap().into_inner()),
        2
    );
    server.stop().await;
}

for_each_backend!(
    pipeline_as_it_stood,
    won_opportunity_converts_the_prospect,
    bad_input_writes_nothing,
    opportunities_keep_to_their_owners,
    win_loss_report,
);
