//! Record scope through the public API, on SQLite and PostgreSQL: sales reps see the customers
//! they own, a sales manager also their reports', agents the tickets of their team; a record out
//! of scope answers like one that does not exist; aggregates need ALL; customer owners are staff
//! users; personal data stays masked in dry-run outputs and error details.

mod common;

use std::collections::BTreeSet;

use bakkal::proto;
use bakkal::proto::access_service_client::AccessServiceClient;
use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::script_service_client::ScriptServiceClient;
use bakkal::proto::segment_service_client::SegmentServiceClient;
use bakkal::proto::service_desk_service_client::ServiceDeskServiceClient;
use common::{Backend, TestDb, TestServer};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

/// A bearer token on every call.
#[derive(Clone)]
struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

type With = InterceptedService<Channel, Bearer>;

fn bearer(token: &str) -> Bearer {
    Bearer(MetadataValue::try_from(format!("Bearer {token}")).unwrap())
}

/// Clients of every service for one key.
struct As {
    access: AccessServiceClient<With>,
    customers: CustomerServiceClient<With>,
    desk: ServiceDeskServiceClient<With>,
    segments: SegmentServiceClient<With>,
    scripts: ScriptServiceClient<With>,
}

fn as_key(server: &TestServer, key: &str) -> As {
    let ch = || server.channel.clone();
    As {
        access: AccessServiceClient::with_interceptor(ch(), bearer(key)),
        customers: CustomerServiceClient::with_interceptor(ch(), bearer(key)),
        desk: ServiceDeskServiceClient::with_interceptor(ch(), bearer(key)),
        segments: SegmentServiceClient::with_interceptor(ch(), bearer(key)),
        scripts: ScriptServiceClient::with_interceptor(ch(), bearer(key)),
    }
}

/// A server requiring auth, and the admin key made before it started.
async fn secured(backend: Backend) -> Option<(TestServer, String)> {
    let db = TestDb::new(backend).await?;
    let config = bakkal::config::Config::new("127.0.0.1:0".parse().unwrap(), db.url.clone());
    let store = bakkal::server::open_store(&config).await.expect("store");
    let (_, admin) = bakkal::auth::keys::bootstrap(&store, "ops", "admin", 1)
        .await
        .unwrap();
    store.close().await;
    let server = TestServer::start_on_with(db, |c| c.auth.require = true).await;
    Some((server, admin))
}

/// A staff user with `roles`, `teams` and `manager`, and a key for them: (user name, key).
async fn user(
    admin: &mut As,
    email: &str,
    roles: &[&str],
    teams: &[&str],
    manager: &str,
) -> (String, String) {
    let u = admin
        .access
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                display_name: email.into(),
                email: email.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                teams: teams.iter().map(|t| t.to_string()).collect(),
                manager: manager.into(),
                ..Default::default()
            }),
            inactive: false,
        })
        .await
        .expect("user")
        .into_inner();
    let key = admin
        .access
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

/// A service account with `roles` and its key.
async fn service_key(admin: &mut As, name: &str, roles: &[&str]) -> String {
    let sa = admin
        .access
        .create_service_account(proto::CreateServiceAccountRequest {
            service_account: Some(proto::ServiceAccount {
                display_name: name.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                ..Default::default()
            }),
            inactive: false,
        })
        .await
        .expect("service account")
        .into_inner();
    admin
        .access
        .create_api_key(proto::CreateApiKeyRequest {
            parent: sa.name,
            api_key: Some(proto::ApiKey {
                display_name: "key".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("key")
        .into_inner()
        .secret
}

async fn customer(c: &mut As, name: &str, email: &str, owner: &str) -> String {
    c.customers
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: name.into(),
                email: email.into(),
                phone: String::new(),
                owner: owner.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("create customer")
        .into_inner()
        .name
}

async fn listed(c: &mut As) -> BTreeSet<String> {
    c.customers
        .list_customers(proto::ListCustomersRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .customers
        .into_iter()
        .map(|c| c.name)
        .collect()
}

fn set(names: &[&String]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The code, message and details of a failed call, for comparing two refusals: the name of
/// the resource asked for replaced, everything else must be the same.
fn refusal(s: &tonic::Status, name: &str) -> (Code, String, String) {
    use tonic_types::StatusExt;
    let info = s
        .get_details_resource_info()
        .map(|i| {
            format!(
                "{} {} {} {}",
                i.resource_type, i.resource_name, i.owner, i.description
            )
        })
        .unwrap_or_default();
    (
        s.code(),
        s.message().replace(name, "NAME"),
        info.replace(name, "NAME"),
    )
}

async fn sales_reps_see_their_customers_and_managers_their_reports(backend: Backend) {
    let Some((server, admin_key)) = secured(backend).await else {
        return;
    };
    let mut admin = as_key(&server, &admin_key);
    let (boss, boss_key) = user(
        &mut admin,
        "selin@shop.example",
        &["sales_manager"],
        &[],
        "",
    )
    .await;
    let (emre, emre_key) = user(&mut admin, "emre@shop.example", &["sales_rep"], &[], &boss).await;
    let (deniz, deniz_key) = user(&mut admin, "deniz@shop.example", &["sales_rep"], &[], "").await;
    let of_emre = customer(&mut admin, "A", "a@x.example", &emre).await;
    let of_emre_too = customer(&mut admin, "B", "b@x.example", &emre).await;
    let of_deniz = customer(&mut admin, "C", "c@x.example", &deniz).await;
    let of_boss = customer(&mut admin, "D", "d@x.example", &boss).await;
    let nobodys = customer(&mut admin, "E", "e@x.example", "").await;
    let mut emre_c = as_key(&server, &emre_key);
    let mut deniz_c = as_key(&server, &deniz_key);
    let mut boss_c = as_key(&server, &boss_key);

    // List: exactly the records in scope
    assert_eq!(listed(&mut emre_c).await, set(&[&of_emre, &of_emre_too]));
    assert_eq!(listed(&mut deniz_c).await, set(&[&of_deniz]));
    assert_eq!(
        listed(&mut boss_c).await,
        set(&[&of_emre, &of_emre_too, &of_boss]),
        "a manager sees their own and their reports' customers"
    );
    assert_eq!(listed(&mut admin).await.len(), 5);
    let total = emre_c
        .customers
        .list_customers(proto::ListCustomersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(total.total_size, 2, "the total counts the scope only");

    // Get: out of scope and missing answer alike
    let get = |c: &mut As, name: String| {
        let mut c = c.customers.clone();
        async move {
            c.get_customer(proto::GetCustomerRequest { name })
                .await
                .map(|r| r.into_inner())
        }
    };
    get(&mut emre_c, of_emre.clone())
        .await
        .expect("own customer");
    let hidden = get(&mut emre_c, of_deniz.clone()).await.unwrap_err();
    let missing_name = "customers/999999".to_string();
    let missing = get(&mut emre_c, missing_name.clone()).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    assert_eq!(
        refusal(&hidden, &of_deniz),
        refusal(&missing, &missing_name),
        "an out-of-scope customer answers like a missing one"
    );
    get(&mut emre_c, nobodys.clone()).await.unwrap_err();
    get(&mut boss_c, of_emre.clone())
        .await
        .expect("a report's customer");

    // writes on an out-of-scope customer: NOT_FOUND too
    let err = emre_c
        .customers
        .update_customer(proto::UpdateCustomerRequest {
            customer: Some(proto::Customer {
                name: of_deniz.clone(),
                display_name: "taken over".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = emre_c
        .customers
        .record_interaction(proto::RecordInteractionRequest {
            parent: of_deniz.clone(),
            interaction: Some(proto::Interaction {
                channel: proto::InteractionChannel::Email as i32,
                direction: proto::Direction::Inbound as i32,
                subject: "hi".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = emre_c
        .customers
        .list_orders(proto::ListOrdersRequest {
            parent: of_deniz.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let err = bakkal::proto::loyalty_service_client::LoyaltyServiceClient::with_interceptor(
        server.channel.clone(),
        bearer(&emre_key),
    )
    .get_loyalty_account(proto::GetLoyaltyAccountRequest {
        name: format!("{of_deniz}/loyaltyAccount"),
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // a rep's new customer without an owner is theirs
    let mine = customer(&mut emre_c, "F", "f@x.example", "").await;
    let got = get(&mut emre_c, mine.clone())
        .await
        .expect("own new customer");
    assert_eq!(got.owner, emre);
    assert!(listed(&mut emre_c).await.contains(&mine));
    assert!(!listed(&mut deniz_c).await.contains(&mine));

    // Export never includes an out-of-scope customer: a rep given the export permission by a
    // custom role (custom roles add permissions, not reach)
    admin
        .access
        .create_role(proto::CreateRoleRequest {
            role: Some(proto::Role {
                name: "roles/exporter".into(),
                permissions: vec!["customers.export".into()],
                ..Default::default()
            }),
        })
        .await
        .expect("role");
    let (_, exporter_key) = user(
        &mut admin,
        "ece@shop.example",
        &["sales_rep", "exporter"],
        &[],
        "",
    )
    .await;
    let mut ece = as_key(&server, &exporter_key);
    let of_ece = customer(&mut ece, "H", "h@x.example", "").await;
    let mut stream = ece
        .customers
        .export_customers(proto::ExportCustomersRequest::default())
        .await
        .expect("export")
        .into_inner();
    let mut exported = BTreeSet::new();
    while let Some(c) = stream.message().await.expect("stream") {
        exported.insert(c.name);
    }
    assert_eq!(exported, set(&[&of_ece]));
    server.stop().await;
}

async fn script(admin: &mut As, kind: proto::ScriptKind, source: &str) -> String {
    admin
        .scripts
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

async fn segment_members_are_scoped_and_aggregates_need_all(backend: Backend) {
    let Some((server, admin_key)) = secured(backend).await else {
        return;
    };
    let mut admin = as_key(&server, &admin_key);
    let (boss, boss_key) = user(
        &mut admin,
        "selin@shop.example",
        &["sales_manager"],
        &[],
        "",
    )
    .await;
    let (emre, _) = user(&mut admin, "emre@shop.example", &["sales_rep"], &[], &boss).await;
    let (deniz, _) = user(&mut admin, "deniz@shop.example", &["sales_rep"], &[], "").await;
    let of_emre = customer(&mut admin, "A", "a@x.example", &emre).await;
    let of_deniz = customer(&mut admin, "C", "c@x.example", &deniz).await;
    let of_boss = customer(&mut admin, "D", "d@x.example", &boss).await;
    customer(&mut admin, "E", "e@x.example", "").await;
    let rule = script(
        &mut admin,
        proto::ScriptKind::Segment,
        "fn matches(c) { true }",
    )
    .await;
    let seg = admin
        .segments
        .create_segment(proto::CreateSegmentRequest {
            segment: Some(proto::Segment {
                display_name: "everyone".into(),
                script: rule,
                ..Default::default()
            }),
        })
        .await
        .expect("segment")
        .into_inner();
    let done = admin
        .segments
        .refresh_segment(proto::RefreshSegmentRequest {
            name: seg.name.clone(),
            interpreter_only: false,
        })
        .await
        .expect("refresh")
        .into_inner();
    assert_eq!(done.member_count, 4);
    let members = |c: &mut As| {
        let mut s = c.segments.clone();
        let parent = seg.name.clone();
        async move {
            s.list_segment_members(proto::ListSegmentMembersRequest {
                parent,
                page_size: 100,
                ..Default::default()
            })
            .await
            .map(|r| {
                r.into_inner()
                    .customers
                    .into_iter()
                    .collect::<BTreeSet<_>>()
            })
        }
    };
    let mut boss_c = as_key(&server, &boss_key);
    let seen = members(&mut boss_c).await.expect("a manager lists members");
    assert_eq!(seen, set(&[&of_emre, &of_boss]));
    assert!(!seen.contains(&of_deniz));
    assert_eq!(members(&mut admin).await.unwrap().len(), 4);

    // the pyramid sums over every customer: a TEAM caller is denied, an admin is not
    let err = boss_c
        .segments
        .get_pyramid(proto::GetPyramidRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("TEAM"), "{}", err.message());
    if let Err(e) = admin
        .segments
        .get_pyramid(proto::GetPyramidRequest::default())
        .await
    {
        assert_ne!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    server.stop().await;
}

async fn ticket(admin: &mut As, subject: &str, team: &str, assignee: &str) -> String {
    admin
        .desk
        .create_ticket(proto::CreateTicketRequest {
            ticket: Some(proto::Ticket {
                contact_email: format!("{subject}@contact.example"),
                kind: proto::TicketKind::Question as i32,
                channel: proto::InteractionChannel::Email as i32,
                subject: subject.into(),
                description: "help".into(),
                team: team.into(),
                assignee: assignee.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("ticket")
        .into_inner()
        .name
}

async fn agents_see_the_tickets_of_their_teams(backend: Backend) {
    let Some((server, admin_key)) = secured(backend).await else {
        return;
    };
    let mut admin = as_key(&server, &admin_key);
    let team = |name: &str| proto::CreateTeamRequest {
        team: Some(proto::Team {
            display_name: name.into(),
            ..Default::default()
        }),
    };
    let billing = admin
        .desk
        .create_team(team("billing"))
        .await
        .unwrap()
        .into_inner();
    let returns = admin
        .desk
        .create_team(team("returns"))
        .await
        .unwrap()
        .into_inner();
    let agent = |email: &str, team: &str| proto::CreateAgentRequest {
        agent: Some(proto::Agent {
            display_name: email.into(),
            email: email.into(),
            teams: vec![team.to_string()],
            active: true,
            ..Default::default()
        }),
    };
    // an agent is the desk profile of the staff user with its e-mail address
    let ayse = admin
        .desk
        .create_agent(agent("ayse@shop.example", &billing.name))
        .await
        .unwrap()
        .into_inner();
    let other = admin
        .desk
        .create_agent(agent("mert@shop.example", &returns.name))
        .await
        .unwrap()
        .into_inner();
    let (_, ayse_key) = user(&mut admin, "ayse@shop.example", &["agent"], &[], "").await;
    let (_, lead_key) = user(&mut admin, "lead@shop.example", &["agent_lead"], &[], "").await;
    let hers = ticket(&mut admin, "hers", &billing.name, &ayse.name).await;
    let queued = ticket(&mut admin, "queued", &billing.name, "").await;
    let theirs = ticket(&mut admin, "theirs", &returns.name, &other.name).await;
    let list = |c: &mut As| {
        let mut d = c.desk.clone();
        async move {
            d.list_tickets(proto::ListTicketsRequest {
                page_size: 100,
                ..Default::default()
            })
            .await
            .expect("list tickets")
            .into_inner()
            .tickets
            .into_iter()
            .map(|t| t.name)
            .collect::<BTreeSet<_>>()
        }
    };
    let mut ayse_c = as_key(&server, &ayse_key);
    assert_eq!(list(&mut ayse_c).await, set(&[&hers, &queued]));
    let mut lead = as_key(&server, &lead_key);
    assert_eq!(list(&mut lead).await, set(&[&hers, &queued, &theirs]));
    let get = |c: &mut As, name: String| {
        let mut d = c.desk.clone();
        async move { d.get_ticket(proto::GetTicketRequest { name }).await }
    };
    get(&mut ayse_c, hers.clone()).await.expect("her ticket");
    let hidden = get(&mut ayse_c, theirs.clone()).await.unwrap_err();
    let missing_name = "tickets/999999".to_string();
    let missing = get(&mut ayse_c, missing_name.clone()).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(refusal(&hidden, &theirs), refusal(&missing, &missing_name));
    // writes on it too
    let err = ayse_c
        .desk
        .add_ticket_comment(proto::AddTicketCommentRequest {
            parent: theirs.clone(),
            comment: Some(proto::TicketComment {
                body: "mine now".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    server.stop().await;
}

async fn owners_are_staff_users(backend: Backend) {
    let Some((server, admin_key)) = secured(backend).await else {
        return;
    };
    let mut admin = as_key(&server, &admin_key);
    for (owner, why) in [("users/99999", "not a staff user"), ("Bob", "users/3")] {
        let err = admin
            .customers
            .create_customer(proto::CreateCustomerRequest {
                customer: Some(proto::Customer {
                    display_name: "X".into(),
                    owner: owner.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("owner"), "{}", err.message());
        assert!(err.message().contains(why), "{}", err.message());
    }
    let (emre, _) = user(&mut admin, "emre@shop.example", &["sales_rep"], &[], "").await;
    let c = customer(&mut admin, "X", "x@x.example", &format!(" {emre} ")).await;
    let got = admin
        .customers
        .get_customer(proto::GetCustomerRequest { name: c.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.owner, emre);
    // filtering by owner takes the user's name
    let mine = admin
        .customers
        .list_customers(proto::ListCustomersRequest {
            filter: format!("owner = \"{emre}\""),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.customers.len(), 1);
    server.stop().await;
}

async fn personal_data_stays_masked_in_dry_runs_and_error_details(backend: Backend) {
    let Some((server, admin_key)) = secured(backend).await else {
        return;
    };
    let mut admin = as_key(&server, &admin_key);
    let email = "ayse.yilmaz@example.com";
    let phone = "+905321234567";
    let c = admin
        .customers
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: "Ayşe".into(),
                email: email.into(),
                phone: phone.into(),
                birth_date: "1990-04-23".into(),
                consent: Some(proto::ChannelConsents {
                    email: Some(proto::Consent {
                        granted: true,
                        update_time: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let leaks = |text: &str| {
        text.contains("ayse.yilmaz@")
            || text.to_lowercase().contains("ayse.yilmaz@")
            || text.contains("5321234567")
            || text.contains("1990-04-23")
    };
    let marketer_key = service_key(&mut admin, "marketing", &["marketer"]).await;
    let mut marketer = as_key(&server, &marketer_key);

    // TestScript: the script sees the customer as the caller may
    let out = marketer
        .scripts
        .test_script(proto::TestScriptRequest {
            kind: proto::ScriptKind::Segment as i32,
            source: "fn matches(c) { print(c.email); print(c.phone); print(c.birth_date); \
                     c.email.len() > 0 }"
                .into(),
            subject: Some(proto::test_script_request::Subject::Customer(
                c.name.clone(),
            )),
            ..Default::default()
        })
        .await
        .expect("test script")
        .into_inner();
    let text = format!("{out:?}");
    assert!(!leaks(&text), "{text}");
    assert!(text.contains("a***@example.com"), "{text}");

    // a segment preview's error examples (a script that throws the customer's data)
    let out = marketer
        .segments
        .preview_segment(proto::PreviewSegmentRequest {
            target: Some(proto::preview_segment_request::Target::Script(
                script(
                    &mut admin,
                    proto::ScriptKind::Segment,
                    "fn matches(c) { throw `${c.email} ${c.phone} ${c.birth_date}`; }",
                )
                .await,
            )),
            ..Default::default()
        })
        .await
        .expect("preview")
        .into_inner();
    assert_eq!(out.error_count, 1, "{out:?}");
    let text = format!("{out:?}");
    assert!(!leaks(&text), "{text}");

    // a campaign's dry run renders from the stored customer: its messages come scrubbed
    let rule = script(
        &mut admin,
        proto::ScriptKind::Segment,
        "fn matches(c) { true }",
    )
    .await;
    let seg = admin
        .segments
        .create_segment(proto::CreateSegmentRequest {
            segment: Some(proto::Segment {
                display_name: "everyone".into(),
                script: rule,
                ..Default::default()
            }),
        })
        .await
        .expect("segment")
        .into_inner();
    admin
        .segments
        .refresh_segment(proto::RefreshSegmentRequest {
            name: seg.name.clone(),
            interpreter_only: false,
        })
        .await
        .expect("refresh");
    let msg = script(
        &mut admin,
        proto::ScriptKind::Message,
        "fn message(c, event) { message(\"email\", `For ${c.email}`, \
         `${c.email} ${c.phone} ${c.birth_date}`) }",
    )
    .await;
    let campaigns_of = |key: &str| {
        bakkal::proto::campaign_service_client::CampaignServiceClient::with_interceptor(
            server.channel.clone(),
            bearer(key),
        )
    };
    let campaign = campaigns_of(&admin_key)
        .create_campaign(proto::CreateCampaignRequest {
            campaign: Some(proto::Campaign {
                display_name: "Spring".into(),
                strategy: proto::CampaignStrategy::Loyalty as i32,
                audience: seg.name.clone(),
                message_script: msg,
                channel: proto::MessageChannel::Email as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("campaign")
        .into_inner();
    let dry = |key: &str| {
        let mut c = campaigns_of(key);
        let name = campaign.name.clone();
        async move {
            c.dry_run_campaign(proto::DryRunCampaignRequest {
                name,
                sample_size: 3,
            })
            .await
            .expect("dry run")
            .into_inner()
        }
    };
    let shown = dry(&admin_key).await;
    assert_eq!(shown.messages.len(), 1, "{shown:?}");
    assert!(
        leaks(&format!("{shown:?}")),
        "an admin sees the rendered data"
    );
    let masked = dry(&marketer_key).await;
    assert_eq!(masked.messages.len(), 1);
    let text = format!("{masked:?}");
    assert!(!leaks(&text), "{text}");
    assert!(text.contains("a***@example.com"), "{text}");

    // the queued messages themselves: ListMessages and GetMessage scrub them the same way
    campaigns_of(&admin_key)
        .launch_campaign(proto::LaunchCampaignRequest {
            name: campaign.name.clone(),
        })
        .await
        .expect("launch");
    let list = |key: &str| {
        let mut c = campaigns_of(key);
        let parent = campaign.name.clone();
        async move {
            c.list_messages(proto::ListMessagesRequest {
                parent,
                ..Default::default()
            })
            .await
            .expect("list messages")
            .into_inner()
            .messages
        }
    };
    let mut queued = Vec::new();
    for _ in 0..100 {
        queued = list(&admin_key).await;
        if !queued.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(queued.len(), 1, "the run queued its message");
    assert!(
        leaks(&format!("{queued:?}")),
        "an admin reads the message as sent"
    );
    let seen = list(&marketer_key).await;
    let text = format!("{seen:?}");
    assert_eq!(seen.len(), 1);
    assert!(!leaks(&text), "{text}");
    assert!(text.contains("a***@example.com"), "{text}");
    let one = campaigns_of(&marketer_key)
        .get_message(proto::GetMessageRequest {
            name: queued[0].name.clone(),
        })
        .await
        .expect("get message")
        .into_inner();
    let text = format!("{one:?}");
    assert!(!leaks(&text), "{text}");

    // ALREADY_EXISTS naming the holder: no address in the message or the details
    admin
        .access
        .create_role(proto::CreateRoleRequest {
            role: Some(proto::Role {
                name: "roles/clerk".into(),
                permissions: vec!["customers.create".into(), "customers.import".into()],
                ..Default::default()
            }),
        })
        .await
        .expect("role");
    let clerk_key = service_key(&mut admin, "clerk", &["clerk"]).await;
    let mut clerk = as_key(&server, &clerk_key);
    let err = clerk
        .customers
        .create_customer(proto::CreateCustomerRequest {
            customer: Some(proto::Customer {
                display_name: "Twin".into(),
                email: "AYSE.YILMAZ@example.com".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let text = format!(
        "{} {:?}",
        err.message(),
        String::from_utf8_lossy(err.details())
    );
    assert!(!leaks(&text), "{text}");
    assert!(text.contains(&c.name), "{text}");

    // an import's rejection reasons
    let rows = vec![proto::ImportCustomersRequest {
        row: Some(proto::import_customers_request::Row::Customer(
            proto::Customer {
                display_name: "Other".into(),
                email: "someone.else@example.com".into(),
                phone: phone.into(),
                ..Default::default()
            },
        )),
    }];
    let out = clerk
        .customers
        .import_customers(tokio_stream::iter(rows))
        .await
        .expect("import")
        .into_inner();
    assert_eq!(out.rejected, 1, "{out:?}");
    let text = format!("{out:?}");
    assert!(!leaks(&text), "{text}");
    server.stop().await;
}

/// Migration 0014 on a database whose customers have free-text owners: an owner that is a
/// staff user's e-mail becomes that user, any other is cleared, and every former value is kept
/// in legacy_customer_owners. (The migration is replayed: its record and what it made are
/// removed after the free text is written, as the database was before it.)
async fn free_text_owners_become_users_or_are_cleared(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = TestServer::start_at(&db.url, |_| {}).await;
    let admin = server.channel.clone();
    let mut access = AccessServiceClient::new(admin.clone());
    let emre = access
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                display_name: "Emre".into(),
                email: "emre@shop.example".into(),
                roles: vec!["sales_rep".into()],
                ..Default::default()
            }),
            inactive: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut customers = CustomerServiceClient::new(admin);
    let mut names = Vec::new();
    for n in ["A", "B", "C"] {
        names.push(
            customers
                .create_customer(proto::CreateCustomerRequest {
                    customer: Some(proto::Customer {
                        display_name: n.into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .name,
        );
    }
    server.stop().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("connect");
    for sql in [
        "UPDATE customers SET owner = ' Emre@Shop.Example ' WHERE display_name = 'A'",
        "UPDATE customers SET owner = 'Mehmet from sales' WHERE display_name = 'B'",
        "DROP INDEX customers_owner",
        "DROP TABLE legacy_customer_owners",
        "DELETE FROM _sqlx_migrations WHERE version = 14",
    ] {
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
    pool.close().await;
    let server = TestServer::start_at(&db.url, |_| {}).await;
    let mut customers = CustomerServiceClient::new(server.channel.clone());
    let mut owners = Vec::new();
    for n in &names {
        owners.push(
            customers
                .get_customer(proto::GetCustomerRequest { name: n.clone() })
                .await
                .unwrap()
                .into_inner()
                .owner,
        );
    }
    assert_eq!(
        owners,
        vec![emre.name.clone(), String::new(), String::new()]
    );
    server.stop().await;
    assert_eq!(
        common::count(
            &db.url,
            "SELECT COUNT(*) FROM legacy_customer_owners WHERE owner = 'Mehmet from sales'"
        )
        .await,
        1
    );
    assert_eq!(
        common::count(&db.url, "SELECT COUNT(*) FROM legacy_customer_owners").await,
        2
    );
}

for_each_backend!(
    free_text_owners_become_users_or_are_cleared,
    sales_reps_see_their_customers_and_managers_their_reports,
    segment_members_are_scoped_and_aggregates_need_all,
    agents_see_the_tickets_of_their_teams,
    owners_are_staff_users,
    personal_data_stays_masked_in_dry_runs_and_error_details,
);
