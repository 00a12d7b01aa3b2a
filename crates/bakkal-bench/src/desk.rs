//! The service desk at load.
//!
//! `tickets`: CreateTicket from 16 concurrent clients against a server on SQLite (in this
//! process), each ticket from one of 1,000 contact addresses (the first ticket of each makes a
//! prospect), against the plain INSERT of the same ticket rows from 16 tasks through a pool of
//! the same size on the same database in the same run.
//!
//! `sla-scan`: 1,000,000 open tickets with SLA clocks; the SLA watcher's pass timed when
//! nothing is due and when 100 tickets became due (events and reminders written), each beside
//! the same indexed SQL run bare on the same pool.

use std::time::{Duration, Instant};

use bakkal::config::{Clock, Config, DeskConfig};
use bakkal::proto::service_desk_service_client::ServiceDeskServiceClient;
use bakkal::proto::{self, InteractionChannel, TicketKind};
use bakkal_store::{Store, StoreOptions};
use sqlx::Row;
use tonic::transport::Channel;

const HOUR: i64 = 3_600_000_000;

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

async fn serve(url: &str, clock: Clock) -> anyhow::Result<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = Config {
        desk: DeskConfig {
            clock,
            // the watcher is timed separately (sla-scan); keep it out of the way here
            sla_watch_interval: Duration::from_secs(3600),
            message_script: None,
        },
        ..Config::new(addr, url)
    };
    tokio::spawn(async move {
        if let Err(e) = bakkal::server::run(config, listener, std::future::pending()).await {
            eprintln!("server failed: {e:#}");
        }
    });
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?;
    for _ in 0..300 {
        if let Ok(ch) = endpoint.connect().await {
            return Ok(ch);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("server did not come up")
}

async fn setup_desk(ch: &Channel) -> anyhow::Result<()> {
    let mut c = ServiceDeskServiceClient::new(ch.clone());
    let team = c
        .create_team(proto::CreateTeamRequest {
            team: Some(proto::Team {
                display_name: "Support".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .name;
    for i in 0..4 {
        c.create_agent(proto::CreateAgentRequest {
            agent: Some(proto::Agent {
                display_name: format!("Agent {i}"),
                email: format!("agent{i}@desk.example.com"),
                teams: vec![team.clone()],
                ..Default::default()
            }),
        })
        .await?;
    }
    c.create_sla_policy(proto::CreateSlaPolicyRequest {
        sla_policy: Some(proto::SlaPolicy {
            display_name: "all".into(),
            first_response_within: Some(prost_types::Duration {
                seconds: 4 * 3600,
                nanos: 0,
            }),
            resolve_within: Some(prost_types::Duration {
                seconds: 48 * 3600,
                nanos: 0,
            }),
            business_hours: Some(proto::BusinessHours {
                time_zone: "Europe/Istanbul".into(),
                week_days: vec![1, 2, 3, 4, 5],
                open: "09:00".into(),
                close: "18:00".into(),
                holidays: vec![],
            }),
            ..Default::default()
        }),
    })
    .await?;
    Ok(())
}

fn ticket(i: usize) -> proto::CreateTicketRequest {
    proto::CreateTicketRequest {
        ticket: Some(proto::Ticket {
            contact_email: format!("writer{}@example.com", i % 1000),
            kind: TicketKind::Complaint as i32,
            channel: InteractionChannel::Email as i32,
            subject: format!("Parcel {i} arrived broken"),
            description: "The vase was in pieces.".into(),
            topic: "delivery".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// CreateTicket from `clients` concurrent clients; tickets per second.
async fn create_tickets(
    ch: &Channel,
    clients: usize,
    per_client: usize,
    offset: usize,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let mut c = ServiceDeskServiceClient::new(ch.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..per_client {
                c.create_ticket(ticket(offset + k * per_client + j)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((clients * per_client) as f64 / start.elapsed().as_secs_f64())
}

/// The plain INSERT of the same ticket rows, one transaction each, from `clients` tasks.
async fn plain_inserts(
    store: &Store,
    clients: usize,
    per_client: usize,
    offset: usize,
) -> anyhow::Result<f64> {
    let now = now_micros();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let pool = store.pool().clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..per_client {
                let i = offset + k * per_client + j;
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query(
                    "INSERT INTO tickets (customer_id, contact_email, contact_phone, kind, \
                     channel, subject, description, topic, priority, state, team_id, \
                     assignee_id, sla_policy_id, first_response_target, resolution_target, \
                     at_risk_fraction, clock_start_time, first_response_due_time, \
                     resolution_due_time, sla_status, next_sla_check_time, overdue_key, \
                     request_id, version, create_time, update_time) VALUES ($1, $2, '', \
                     'COMPLAINT', 'EMAIL', $3, 'The vase was in pieces.', 'delivery', 'NORMAL', \
                     'NEW', 1, 1, 1, $4, $5, 0.8, $6, $7, $8, 'ON_TRACK', $9, NULL, NULL, 1, \
                     $6, $6)",
                )
                .bind((i % 1000 + 1) as i64)
                .bind(format!("writer{}@example.com", i % 1000))
                .bind(format!("Parcel {i} arrived broken"))
                .bind(4 * HOUR)
                .bind(48 * HOUR)
                .bind(now)
                .bind(now + 4 * HOUR)
                .bind(now + 48 * HOUR)
                .bind(now + 3 * HOUR)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((clients * per_client) as f64 / start.elapsed().as_secs_f64())
}

pub async fn tickets(count: usize, clients: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("desk.db").display());
    let ch = serve(&url, Clock::default()).await?;
    setup_desk(&ch).await?;
    let per_client = count.div_ceil(clients);
    let mut opts = StoreOptions::new(url.clone());
    opts.max_connections = 16;
    opts.cache_capacity = 0;
    let store = Store::connect(&opts).await?;
    eprintln!("warming up ...");
    create_tickets(&ch, clients, 50, 10_000_000).await?;
    plain_inserts(&store, clients, 50, 20_000_000).await?;
    // two interleaved rounds each, the better one counts
    let mut api: f64 = 0.0;
    let mut bare: f64 = 0.0;
    for round in 0..2 {
        api = api.max(create_tickets(&ch, clients, per_client / 2, round * count).await?);
        bare = bare
            .max(plain_inserts(&store, clients, per_client / 2, 30_000_000 + round * count).await?);
    }
    println!("tickets: {count} tickets, {clients} concurrent clients, SQLite");
    println!("  CreateTicket (link, route, SLA, timeline, event, ack)  {api:>9.0} tickets/s");
    println!("  plain INSERT of the ticket row, same pool size         {bare:>9.0} rows/s");
    println!(
        "  ratio                                                  {:>9.2}",
        api / bare
    );
    store.close().await;
    Ok(())
}

/// One million (by default) open tickets written straight into the tickets table, with the
/// customers, team, agent and policy they name.
async fn seed(store: &Store, tickets: usize, now: i64) -> anyhow::Result<()> {
    let pool = store.pool();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "INSERT INTO teams (display_name, email, version, create_time, update_time) \
         VALUES ('Support', 'support@desk.example.com', 1, $1, $1)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO agents (display_name, email, active, version, create_time, update_time) \
         VALUES ('Agent', 'agent@desk.example.com', 1, 1, $1, $1)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO agent_teams (agent_id, team_id) VALUES (1, 1)")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sla_policies (display_name, kinds, priorities, tier, \
         first_response_within, resolve_within, business_hours, at_risk_fraction, version, \
         create_time, update_time) VALUES ('all', '', '', '', $1, $2, NULL, 0.8, 1, $3, $3)",
    )
    .bind(4 * HOUR)
    .bind(48 * HOUR)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for c in 0..1000 {
        sqlx::query(
            "INSERT INTO customers (display_name, email, create_time, update_time) \
             VALUES ($1, $2, $3, $3)",
        )
        .bind(format!("Customer {c}"))
        .bind(format!("c{c}@example.com"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    const BATCH: usize = 1000;
    let mut done = 0;
    while done < tickets {
        let n = BATCH.min(tickets - done);
        let mut sql = String::from(
            "INSERT INTO tickets (customer_id, kind, channel, subject, priority, state, \
             team_id, assignee_id, sla_policy_id, first_response_target, resolution_target, \
             at_risk_fraction, clock_start_time, first_response_due_time, \
             resolution_due_time, sla_status, next_sla_check_time, version, create_time, \
             update_time) VALUES ",
        );
        for k in 0..n {
            let i = done + k;
            // clocks started over the last three hours (to the millisecond); the next mark
            // (at risk at 80 % of four hours) is 12 to 192 minutes ahead
            let start = now - ((i * 7919) % 10_800_000) as i64 * 1000;
            let fr_due = start + 4 * HOUR;
            let mark = start + (4 * HOUR * 8) / 10;
            if k > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "({}, 'COMPLAINT', 'EMAIL', 'ticket {i}', 'NORMAL', 'OPEN', 1, 1, 1, {}, {}, \
                 0.8, {start}, {fr_due}, {}, 'ON_TRACK', {mark}, 1, {start}, {start})",
                1 + i % 1000,
                4 * HOUR,
                48 * HOUR,
                start + 48 * HOUR,
            ));
        }
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(&sql).execute(&mut *tx).await?;
        tx.commit().await?;
        done += n;
        if done % 100_000 == 0 {
            eprintln!("  {done} tickets");
        }
    }
    Ok(())
}

pub async fn sla_scan(tickets: usize, rounds: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("desk.db").display());
    let mut opts = StoreOptions::new(url.clone());
    opts.max_connections = 16;
    opts.cache_capacity = 0;
    let store = Store::connect(&opts).await?;
    store.migrate().await?;
    let now = now_micros();
    eprintln!("seeding {tickets} open tickets ...");
    seed(&store, tickets, now).await?;
    sqlx::query("ANALYZE").execute(store.pool()).await?;
    let clock = Clock::manual(now);
    let bare_sql = "SELECT id, next_sla_check_time FROM tickets \
        WHERE next_sla_check_time <= $1 ORDER BY next_sla_check_time LIMIT 500";

    // nothing due: the watcher's pass is one probe of the index
    let mut idle = Vec::new();
    let mut idle_bare = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let n = bakkal::service_desk::watcher::tick(
            &store,
            &clock,
            &bakkal::service_desk::messages::templates,
        )
        .await?;
        idle.push(t.elapsed());
        anyhow::ensure!(n == 0, "nothing should be due yet");
        let t = Instant::now();
        let rows = sqlx::query(bare_sql)
            .bind(now)
            .fetch_all(store.pool())
            .await?;
        idle_bare.push(t.elapsed());
        anyhow::ensure!(rows.is_empty());
    }

    // marks pass: move the clock so that about 100 tickets become due per pass
    let marks: Vec<i64> = sqlx::query(
        "SELECT next_sla_check_time FROM tickets WHERE next_sla_check_time IS NOT NULL \
         ORDER BY next_sla_check_time LIMIT $1",
    )
    .bind((rounds * 100) as i64)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| r.get::<i64, _>(0))
    .collect();
    let mut busy = Vec::new();
    let mut busy_bare = Vec::new();
    let mut events = 0;
    for r in 0..rounds {
        let Some(&until) = marks.get((r + 1) * 100 - 1) else {
            break;
        };
        // the bare SQL first (it only reads), then the pass that handles the same rows
        let t = Instant::now();
        let rows = sqlx::query(bare_sql)
            .bind(until)
            .fetch_all(store.pool())
            .await?;
        busy_bare.push(t.elapsed());
        clock.set(until);
        let t = Instant::now();
        events += bakkal::service_desk::watcher::tick(
            &store,
            &clock,
            &bakkal::service_desk::messages::templates,
        )
        .await?;
        busy.push(t.elapsed());
        let _ = rows;
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2)
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };
    let (i, ib, b, bb) = (
        median(&mut idle),
        median(&mut idle_bare),
        median(&mut busy),
        median(&mut busy_bare),
    );
    println!("sla-scan: {tickets} open tickets, SQLite, median of {rounds} passes");
    println!("  watcher pass, nothing due                {i:>8.3} ms   bare indexed SQL {ib:>8.3} ms   ratio {:>6.2}", i / ib);
    println!("  watcher pass, ~100 due ({events} events)  {b:>8.3} ms   bare indexed SQL {bb:>8.3} ms   ratio {:>6.2}", b / bb);
    store.close().await;
    Ok(())
}
