//! The solution pool and the service report through a real server and client, on SQLite and
//! (when `BAKKAL_TEST_POSTGRES_URL` is set) PostgreSQL: relevance order, hostile queries,
//! suggestions for a ticket, uses counted by ResolveTicket, NOT_FOUND for unknown articles, and
//! a report checked against figures computed by hand from tickets made through the API.

mod common;

use std::time::Duration;

use bakkal::config::{Clock, DeskConfig};
use bakkal::proto::service_desk_service_client::ServiceDeskServiceClient;
use bakkal::proto::{self, InteractionChannel, ServiceReportGroupBy, TicketKind, TicketState};
use bakkal_domain::time::{days_from_civil, Micros, MICROS_PER_SECOND};
use common::{wait_for, Backend, TestDb, TestServer};
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

const HOUR: Micros = 3600 * MICROS_PER_SECOND;
const MINUTE: Micros = 60 * MICROS_PER_SECOND;

fn utc(y: i32, m: u32, d: u32, h: i64, min: i64) -> Micros {
    days_from_civil(y, m, d) * 24 * HOUR + h * HOUR + min * MINUTE
}

fn ts(m: Micros) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: m.div_euclid(MICROS_PER_SECOND),
        nanos: 0,
    })
}

fn minutes(d: &Option<prost_types::Duration>) -> Option<i64> {
    d.as_ref().map(|d| d.seconds / 60)
}

/// A server on a database the test owns, with a manual clock and a fast SLA watcher.
struct Desk;

impl Desk {
    async fn start(url: &str, clock: &Clock) -> TestServer {
        TestServer::start_at(url, |c| {
            c.desk = DeskConfig {
                clock: clock.clone(),
                sla_watch_interval: Duration::from_millis(50),
                ..Default::default()
            }
        })
        .await
    }
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}

async fn article(
    c: &mut ServiceDeskServiceClient<Channel>,
    title: &str,
    body: &str,
    topics: &[&str],
    tags: &[&str],
) -> proto::Article {
    c.create_article(proto::CreateArticleRequest {
        article: Some(proto::Article {
            title: title.into(),
            body: body.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }),
        request_id: String::new(),
    })
    .await
    .expect("create article")
    .into_inner()
}

async fn search(
    c: &mut ServiceDeskServiceClient<Channel>,
    query: &str,
    topic: &str,
) -> Vec<String> {
    c.search_articles(proto::SearchArticlesRequest {
        query: query.into(),
        topic: topic.into(),
        page_size: 0,
    })
    .await
    .unwrap_or_else(|e| panic!("search {query:?}: {e:?}"))
    .into_inner()
    .results
    .into_iter()
    .map(|r| r.article.unwrap().title)
    .collect()
}

fn ticket(
    email: &str,
    kind: TicketKind,
    channel: InteractionChannel,
    subject: &str,
    topic: &str,
) -> proto::CreateTicketRequest {
    proto::CreateTicketRequest {
        ticket: Some(proto::Ticket {
            contact_email: email.into(),
            kind: kind as i32,
            channel: channel as i32,
            subject: subject.into(),
            description: String::new(),
            topic: topic.into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn get_article(c: &mut ServiceDeskServiceClient<Channel>, name: &str) -> proto::Article {
    c.get_article(proto::GetArticleRequest { name: name.into() })
        .await
        .expect("get article")
        .into_inner()
}

// ---- tests ---------------------------------------------------------------------------------

/// Relevance order (title over tags over body, more matching words first), topic filters,
/// hostile queries, edits re-indexed, idempotent creates, suggestions for a ticket, and uses
/// counted by ResolveTicket.
async fn articles(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = Clock::manual(utc(2026, 11, 24, 8, 0));
    let server = Desk::start(&db.url, &clock).await;
    let mut c = server.desk();

    let refund = article(
        &mut c,
        "Refund a card payment",
        "Open the order, choose Refund and confirm. The money is back on the card within \
         five working days.",
        &["Billing"],
        &["refund", "card"],
    )
    .await;
    let parcel = article(
        &mut c,
        "Track a parcel",
        "Every parcel has a tracking code in the shipping email. A lost parcel is replaced \
         or you get a refund.",
        &["delivery"],
        &["courier"],
    )
    .await;
    let password = article(
        &mut c,
        "Change your password",
        "Use the link on the sign-in page.",
        &[],
        &["account"],
    )
    .await;
    article(
        &mut c,
        "İade ve değişim",
        "İstanbul içi teslimatlarda iade kargo ücretsizdir.",
        &[],
        &[],
    )
    .await;
    // Turkish capitals: İ is found from i, İ or I+dot, on both databases.
    for q in [
        "iade",
        "İADE",
        "istanbul",
        "İstanbul",
        "ücretsiz",
        "değişim",
    ] {
        assert_eq!(search(&mut c, q, "").await, ["İade ve değişim"], "{q}");
    }
    assert_eq!(refund.topics, ["billing"]);
    assert_eq!(refund.uses, 0);
    assert!(!refund.etag.is_empty());

    // Relevance: "refund" is in the first article's title, tags and body, in the second's
    // body only; the third does not match at all.
    assert_eq!(
        search(&mut c, "refund", "").await,
        ["Refund a card payment", "Track a parcel"]
    );
    assert_eq!(search(&mut c, "lost parcel", "").await, ["Track a parcel"]);
    // Prefixes match: "refun" finds "refund", "track" finds "tracking".
    assert_eq!(search(&mut c, "REFUN", "").await.len(), 2);
    // The topic filter.
    assert_eq!(
        search(&mut c, "refund", "delivery").await,
        ["Track a parcel"]
    );
    assert!(search(&mut c, "refund", "nope").await.is_empty());
    let results = c
        .search_articles(proto::SearchArticlesRequest {
            query: "refund".into(),
            topic: String::new(),
            page_size: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 1);
    assert!(results[0].score > 0.0);
    assert!(
        results[0].snippet.contains("**Refund**"),
        "{}",
        results[0].snippet
    );

    // Hostile queries are words, never syntax: no error, sensible results.
    for (q, want) in [
        (
            r#""refund" OR (card* NEAR/2"#,
            Some("Refund a card payment"),
        ),
        (
            "refund'; DROP TABLE articles; --",
            Some("Refund a card payment"),
        ),
        ("title:refund ^card -parcel", Some("Refund a card payment")),
        (r#"" * ( ) : ^ - + NOT AND OR"#, None),
        ("*", None),
    ] {
        let got = search(&mut c, q, "").await;
        match want {
            Some(first) => assert_eq!(got.first().map(String::as_str), Some(first), "{q}"),
            None => {
                assert!(
                    got.iter().all(|t| t != "Change your password"),
                    "{q}: {got:?}"
                )
            }
        }
    }
    // a control character is refused, on both databases alike
    assert_eq!(
        code(
            c.search_articles(proto::SearchArticlesRequest {
                query: "\u{0}\"".into(),
                ..Default::default()
            })
            .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.search_articles(proto::SearchArticlesRequest {
                query: "  ".into(),
                ..Default::default()
            })
            .await
        ),
        Code::InvalidArgument
    );

    // Unknown and malformed names.
    assert_eq!(
        code(
            c.get_article(proto::GetArticleRequest {
                name: "articles/999".into()
            })
            .await
        ),
        Code::NotFound
    );
    let bad = c
        .get_article(proto::GetArticleRequest {
            name: "tickets/1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violations(&bad), ["name"]);
    let bad = c
        .create_article(proto::CreateArticleRequest {
            article: Some(proto::Article {
                topics: vec![" ".into()],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violations(&bad),
        ["article.title", "article.body", "article.topics[0]"]
    );

    // An edit is searchable at once; a stale etag is ABORTED.
    let edited = c
        .update_article(proto::UpdateArticleRequest {
            article: Some(proto::Article {
                name: password.name.clone(),
                body: "Forgot it? Ask for a reset link. No refund questions here.".into(),
                etag: password.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["body".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.title, "Change your password");
    assert_ne!(edited.etag, password.etag);
    assert_eq!(search(&mut c, "refund", "").await.len(), 3);
    assert!(search(&mut c, "sign", "").await.is_empty());
    let stale = c
        .update_article(proto::UpdateArticleRequest {
            article: Some(proto::Article {
                name: password.name.clone(),
                title: "x".into(),
                etag: password.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
            request_id: String::new(),
        })
        .await;
    assert_eq!(code(stale), Code::Aborted);

    // A retried create returns the first article.
    let create = || proto::CreateArticleRequest {
        article: Some(proto::Article {
            title: "Opening hours".into(),
            body: "Weekdays nine to six.".into(),
            ..Default::default()
        }),
        request_id: "3f1c7d7e-0000-4000-8000-000000000001".into(),
    };
    let first = c.create_article(create()).await.unwrap().into_inner();
    let again = c.create_article(create()).await.unwrap().into_inner();
    assert_eq!(first.name, again.name);

    // Listing, with a topic and pages.
    let page = c
        .list_articles(proto::ListArticlesRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.articles.len(), 3);
    let rest = c
        .list_articles(proto::ListArticlesRequest {
            page_size: 3,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.articles.len(), 2);
    assert!(rest.next_page_token.is_empty());
    let billing = c
        .list_articles(proto::ListArticlesRequest {
            topic: "BILLING".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(billing.articles.len(), 1);
    assert_eq!(billing.articles[0].name, refund.name);

    // Suggestions for a ticket: by its subject and description, its topic first.
    let t = c
        .create_ticket(ticket(
            "can@example.com",
            TicketKind::Question,
            InteractionChannel::Email,
            "Where is my parcel? I want a refund",
            "delivery",
        ))
        .await
        .unwrap()
        .into_inner();
    let suggested: Vec<String> = c
        .suggest_articles(proto::SuggestArticlesRequest {
            ticket: t.name.clone(),
            page_size: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.article.unwrap().name)
        .collect();
    assert_eq!(suggested, [parcel.name.clone(), refund.name.clone()]);
    assert_eq!(
        code(
            c.suggest_articles(proto::SuggestArticlesRequest {
                ticket: "tickets/999".into(),
                page_size: 0,
            })
            .await
        ),
        Code::NotFound
    );

    // Resolving with an unknown article changes nothing; with a real one counts a use.
    let unknown = c
        .resolve_ticket(proto::ResolveTicketRequest {
            name: t.name.clone(),
            resolution: "See the article".into(),
            article: "articles/999".into(),
        })
        .await;
    assert_eq!(code(unknown), Code::NotFound);
    let still = c
        .get_ticket(proto::GetTicketRequest {
            name: t.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(still.state, TicketState::Resolved as i32);
    let resolved = c
        .resolve_ticket(proto::ResolveTicketRequest {
            name: t.name.clone(),
            resolution: "Tracking code sent".into(),
            article: parcel.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.resolution_article, parcel.name);
    let used = get_article(&mut c, &parcel.name).await;
    assert_eq!(used.uses, 1);
    assert_eq!(used.etag, parcel.etag, "a use is not an edit");
    assert_eq!(get_article(&mut c, &refund.name).await.uses, 0);
    server.stop().await;
}

/// The report for one day against figures computed by hand. Policy: answer within 1 hour,
/// resolve within 4, around the clock (business time = real time). Opened on 24 November:
///
/// | ticket | kind      | channel | topic    | first response | resolved (rating) | SLA      |
/// |--------|-----------|---------|----------|----------------|-------------------|----------|
/// | T1     | COMPLAINT | EMAIL   | delivery | 30 min         | 2 h (5)           | MET      |
/// | T2     | COMPLAINT | EMAIL   | delivery | 60 min         | 3 h (3)           | MET      |
/// | T3     | QUESTION  | WEB     | billing  | —              | —                 | BREACHED |
/// | T4     | COMPLAINT | PHONE   | billing  | 30 min         | —                 | ON_TRACK |
///
/// and, the day before, one complaint about delivery and one about billing.
async fn service_report(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = Clock::manual(utc(2026, 11, 23, 10, 0));
    let server = Desk::start(&db.url, &clock).await;
    let mut c = server.desk();
    c.create_sla_policy(proto::CreateSlaPolicyRequest {
        sla_policy: Some(proto::SlaPolicy {
            display_name: "everything".into(),
            first_response_within: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            resolve_within: Some(prost_types::Duration {
                seconds: 4 * 3600,
                nanos: 0,
            }),
            ..Default::default()
        }),
    })
    .await
    .expect("policy");
    let agent = c
        .create_agent(proto::CreateAgentRequest {
            agent: Some(proto::Agent {
                display_name: "Zeynep".into(),
                email: "zeynep@desk.example.com".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    use InteractionChannel::{Email, Phone, Web};
    use TicketKind::{Complaint, Question};
    for topic in ["delivery", "billing"] {
        c.create_ticket(ticket("old@example.com", Complaint, Email, "Old", topic))
            .await
            .unwrap();
    }

    clock.set(utc(2026, 11, 24, 8, 0));
    let open = |kind, channel, topic: &str, n: u32| {
        ticket(&format!("c{n}@example.com"), kind, channel, "Help", topic)
    };
    let mut names = Vec::new();
    for req in [
        open(Complaint, Email, "delivery", 1),
        open(Complaint, Email, "delivery", 2),
        open(Question, Web, "billing", 3),
        open(Complaint, Phone, "billing", 4),
    ] {
        names.push(c.create_ticket(req).await.unwrap().into_inner().name);
    }
    let answer = |name: &str| proto::AddTicketCommentRequest {
        parent: name.to_string(),
        comment: Some(proto::TicketComment {
            author: agent.clone(),
            body: "On it.".into(),
            public: true,
            ..Default::default()
        }),
    };
    clock.set(utc(2026, 11, 24, 8, 30));
    c.add_ticket_comment(answer(&names[0])).await.unwrap();
    c.add_ticket_comment(answer(&names[3])).await.unwrap();
    clock.set(utc(2026, 11, 24, 9, 0));
    c.add_ticket_comment(answer(&names[1])).await.unwrap();
    let resolve = |name: &str| proto::ResolveTicketRequest {
        name: name.to_string(),
        resolution: "Done".into(),
        article: String::new(),
    };
    let rate = |name: &str, score| proto::RateTicketRequest {
        name: name.to_string(),
        score,
        comment: String::new(),
    };
    clock.set(utc(2026, 11, 24, 10, 0));
    c.resolve_ticket(resolve(&names[0])).await.unwrap();
    c.rate_ticket(rate(&names[0], 5)).await.unwrap();
    clock.set(utc(2026, 11, 24, 11, 0));
    c.resolve_ticket(resolve(&names[1])).await.unwrap();
    c.rate_ticket(rate(&names[1], 3)).await.unwrap();
    // T3's first response was due at 09:00: wait for the watcher to mark it breached.
    let t3 = names[2].trim_start_matches("tickets/");
    wait_for(
        &db.url,
        &format!("SELECT COUNT(*) FROM tickets WHERE id = {t3} AND sla_status = 'BREACHED'"),
        1,
    )
    .await;

    let report = |group_by: ServiceReportGroupBy| proto::GetServiceReportRequest {
        start_time: ts(utc(2026, 11, 24, 0, 0)),
        end_time: ts(utc(2026, 11, 25, 0, 0)),
        group_by: group_by as i32,
    };
    let r = c
        .get_service_report(report(ServiceReportGroupBy::Topic))
        .await
        .unwrap()
        .into_inner();
    let all = r.overall.unwrap();
    assert_eq!((all.opened, all.resolved, all.unanswered), (4, 2, 1));
    // First responses 30, 30, 60 min: nearest-rank median 30, p90 60.
    assert_eq!(minutes(&all.median_first_response), Some(30));
    assert_eq!(minutes(&all.p90_first_response), Some(60));
    // Resolutions 2 h and 3 h: median 2 h, p90 3 h.
    assert_eq!(minutes(&all.median_resolution), Some(120));
    assert_eq!(minutes(&all.p90_resolution), Some(180));
    assert_eq!(all.sla_counted, 4);
    assert_eq!(all.sla_compliance_percent, 75.0);
    assert_eq!((all.rated, all.average_satisfaction), (2, 4.0));

    let groups: Vec<(String, i64, i64, i64)> = r
        .groups
        .iter()
        .map(|g| {
            let f = g.figures.as_ref().unwrap();
            (g.key.clone(), f.opened, f.resolved, f.unanswered)
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("billing".to_string(), 2, 0, 1),
            ("delivery".to_string(), 2, 2, 0)
        ]
    );
    let billing = r.groups[0].figures.as_ref().unwrap();
    assert_eq!(billing.sla_compliance_percent, 50.0);
    assert_eq!(minutes(&billing.median_first_response), Some(30));
    assert_eq!(billing.median_resolution, None);

    let top: Vec<(String, i64, i64, i64)> = r
        .top_complaint_topics
        .iter()
        .map(|t| {
            (
                t.topic.clone(),
                t.complaints,
                t.previous_complaints,
                t.change,
            )
        })
        .collect();
    assert_eq!(
        top,
        [
            ("delivery".to_string(), 2, 1, 1),
            ("billing".to_string(), 1, 1, 0)
        ]
    );
    assert_eq!(r.top_complaint_topics[0].change_percent, 100.0);

    let by_kind = c
        .get_service_report(report(ServiceReportGroupBy::Kind))
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<(String, i64)> = by_kind
        .groups
        .iter()
        .map(|g| (g.key.clone(), g.figures.as_ref().unwrap().opened))
        .collect();
    assert_eq!(
        kinds,
        [("COMPLAINT".to_string(), 3), ("QUESTION".to_string(), 1)]
    );
    let by_channel = c
        .get_service_report(report(ServiceReportGroupBy::Channel))
        .await
        .unwrap()
        .into_inner();
    let channels: Vec<(String, i64)> = by_channel
        .groups
        .iter()
        .map(|g| (g.key.clone(), g.figures.as_ref().unwrap().opened))
        .collect();
    assert_eq!(
        channels,
        [
            ("EMAIL".to_string(), 2),
            ("PHONE".to_string(), 1),
            ("WEB".to_string(), 1)
        ]
    );

    // The day before: two complaints opened, nothing else.
    let before = c
        .get_service_report(proto::GetServiceReportRequest {
            start_time: ts(utc(2026, 11, 23, 0, 0)),
            end_time: ts(utc(2026, 11, 24, 0, 0)),
            group_by: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let f = before.overall.unwrap();
    assert_eq!((f.opened, f.resolved, f.unanswered), (2, 0, 2));
    assert!(before.groups.is_empty());

    // Bad periods.
    let bad = c
        .get_service_report(proto::GetServiceReportRequest {
            start_time: ts(utc(2026, 11, 24, 0, 0)),
            end_time: ts(utc(2026, 11, 23, 0, 0)),
            group_by: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violations(&bad), ["end_time"]);
    let bad = c
        .get_service_report(proto::GetServiceReportRequest {
            group_by: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&bad), ["start_time", "end_time", "group_by"]);
    server.stop().await;
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if std::env::var("BAKKAL_TEST_POSTGRES_URL").is_err() {
                        eprintln!("BAKKAL_TEST_POSTGRES_URL not set: PostgreSQL run skipped");
                        return;
                    }
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

both!(articles, service_report);
