//! GetCustomer throughput and latency against a bare tonic server that returns a
//! same-sized message without touching a database.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bakkal::proto::customer_service_client::CustomerServiceClient;
use bakkal::proto::customer_service_server::{CustomerService, CustomerServiceServer};
use bakkal::proto::{self, import_customers_request::Row};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::process::{admin_key, free_port, serve_command, Server};

/// A client that sends `token` (when there is one) as a bearer credential on every call.
type Client = CustomerServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

fn client(ch: tonic::transport::Channel, bearer: &Bearer) -> Client {
    CustomerServiceClient::with_interceptor(ch, bearer.clone())
}

/// A bakkal server on a fresh SQLite file, seeded with `customers` generated customers. With
/// `auth`, an admin key is made first (`bakkal keys create`, straight into the database) and
/// the server requires it on every call.
struct Bakkal {
    server: Server,
    bearer: Bearer,
    first_id: u64,
    sample: proto::Customer,
}

async fn start_bakkal(
    dir: &std::path::Path,
    customers: usize,
    cache: usize,
    auth: bool,
) -> anyhow::Result<Bakkal> {
    let url = format!(
        "sqlite://{}",
        dir.join(if auth { "bench-auth.db" } else { "bench.db" })
            .display()
    );
    let mut bearer = Bearer(None);
    let (mut cmd, port) = serve_command(&url)?;
    cmd.args(["--customer-cache", &cache.to_string()]);
    if auth {
        let key = admin_key(&url)?;
        bearer = Bearer(Some(format!("Bearer {key}").parse()?));
        cmd.arg("--require-auth");
    }
    let server = Server::start(cmd, port)?;
    let mut c = client(server.channel().await?, &bearer);
    wait_until_serving(&mut c).await;
    eprintln!(
        "seeding {customers} customers (auth {}) ...",
        if auth { "on" } else { "off" }
    );
    let rows = (0..customers).map(|i| proto::ImportCustomersRequest {
        row: Some(Row::Customer(crate::import::generated_customer(i))),
    });
    let out = c
        .import_customers(tokio_stream::iter(rows.collect::<Vec<_>>()))
        .await?
        .into_inner();
    anyhow::ensure!(
        out.created as usize == customers,
        "seeding created {}",
        out.created
    );
    let first = c
        .list_customers(proto::ListCustomersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    let sample = first
        .customers
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no customer after seeding"))?;
    let first_id: u64 = sample.name.trim_start_matches("customers/").parse()?;
    let sample = c
        .get_customer(proto::GetCustomerRequest {
            name: sample.name.clone(),
        })
        .await?
        .into_inner();
    Ok(Bakkal {
        server,
        bearer,
        first_id,
        sample,
    })
}

pub async fn run(
    seconds: u64,
    connections: usize,
    streams: usize,
    customers: usize,
    cache: usize,
    auth: bool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let open = start_bakkal(dir.path(), customers, cache, false).await?;
    let keyed = match auth {
        true => Some(start_bakkal(dir.path(), customers, cache, true).await?),
        false => None,
    };
    let hex: String = open
        .sample
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let bare_port = free_port()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "bare-server",
        "--listen",
        &format!("127.0.0.1:{bare_port}"),
        "--message-hex",
        &hex,
    ]);
    let bare = Server::start(cmd, bare_port)?;
    bare.channel().await?;
    let bare = Bakkal {
        server: bare,
        bearer: Bearer(None),
        first_id: open.first_id,
        sample: open.sample.clone(),
    };

    println!(
        "GetCustomer, {connections} connections x {streams} streams, {seconds} s a round, \
         response {} bytes, {customers} customers in SQLite, customer cache {cache}",
        open.sample.encoded_len()
    );
    println!(
        "{:<36} {:>10} {:>9} {:>9}",
        "server", "req/s", "p50 ms", "p99 ms"
    );
    let mut servers = vec![
        ("bare tonic (baseline)", &bare),
        ("bakkal GetCustomer", &open),
    ];
    if let Some(k) = &keyed {
        servers.push(("bakkal GetCustomer, API key auth", k));
    }
    let mut rps = vec![Vec::new(); servers.len()];
    let mut p99 = vec![Vec::new(); servers.len()];
    for round in 1..=2 {
        for (i, (label, server)) in servers.iter().enumerate() {
            let r = load(server, connections, streams, seconds, customers as u64).await?;
            println!(
                "{:<36} {:>10.0} {:>9.2} {:>9.2}",
                format!("{label} #{round}"),
                r.rps,
                r.p50_ms,
                r.p99_ms
            );
            rps[i].push(r.rps);
            p99[i].push(r.p99_ms);
        }
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max);
    println!(
        "ratio bakkal/bare req/s: {:.2} (best round each; target >= 0.5)   bakkal p99: {:.2} ms (worst round; target <= 5)",
        best(&rps[1]) / best(&rps[0]),
        best(&p99[1])
    );
    if keyed.is_some() {
        println!(
            "ratio auth on/auth off req/s: {:.2} (best round each; target >= 0.9)",
            best(&rps[2]) / best(&rps[1])
        );
    }
    let mut mem = format!(
        "peak memory: bakkal {:.0} MiB, bare {:.0} MiB",
        open.server.peak_rss_mib(),
        bare.server.peak_rss_mib()
    );
    if let Some(k) = &keyed {
        mem += &format!(", bakkal with auth {:.0} MiB", k.server.peak_rss_mib());
    }
    println!("{mem}");
    Ok(())
}

async fn wait_until_serving(client: &mut Client) {
    for _ in 0..300 {
        if client
            .list_customers(proto::ListCustomersRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct LoadResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(
    target: &Bakkal,
    connections: usize,
    streams: usize,
    seconds: u64,
    customers: u64,
) -> anyhow::Result<LoadResult> {
    let first_id = target.first_id;
    let warmup = Duration::from_secs(1);
    let start = Instant::now() + warmup;
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..connections {
        // one HTTP/2 connection each
        let ch = target.server.channel().await?;
        for s in 0..streams {
            let mut client = client(ch.clone(), &target.bearer);
            let mut seed = (c * streams + s) as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                loop {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let id = first_id + seed % customers;
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let res = client
                        .get_customer(proto::GetCustomerRequest {
                            name: format!("customers/{id}"),
                        })
                        .await;
                    res?;
                    if t0 >= start {
                        lat.push(t0.elapsed().as_micros() as u32);
                    }
                }
                Ok::<_, tonic::Status>(lat)
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Ok(LoadResult {
        rps: all.len() as f64 / seconds as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

/// The baseline: the same service, the same message, no database and no middleware.
struct Bare {
    message: proto::Customer,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("bare server"))
}

#[tonic::async_trait]
impl CustomerService for Bare {
    async fn create_customer(
        &self,
        _: Request<proto::CreateCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        unimplemented()
    }
    async fn get_customer(
        &self,
        _: Request<proto::GetCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        Ok(Response::new(self.message.clone()))
    }
    async fn list_customers(
        &self,
        _: Request<proto::ListCustomersRequest>,
    ) -> Result<Response<proto::ListCustomersResponse>, Status> {
        unimplemented()
    }
    async fn update_customer(
        &self,
        _: Request<proto::UpdateCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        unimplemented()
    }
    async fn delete_customer(
        &self,
        _: Request<proto::DeleteCustomerRequest>,
    ) -> Result<Response<()>, Status> {
        unimplemented()
    }
    async fn find_duplicates(
        &self,
        _: Request<proto::FindDuplicatesRequest>,
    ) -> Result<Response<proto::FindDuplicatesResponse>, Status> {
        unimplemented()
    }
    async fn merge_customers(
        &self,
        _: Request<proto::MergeCustomersRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        unimplemented()
    }
    async fn record_interaction(
        &self,
        _: Request<proto::RecordInteractionRequest>,
    ) -> Result<Response<proto::Interaction>, Status> {
        unimplemented()
    }
    async fn list_interactions(
        &self,
        _: Request<proto::ListInteractionsRequest>,
    ) -> Result<Response<proto::ListInteractionsResponse>, Status> {
        unimplemented()
    }
    async fn upsert_product(
        &self,
        _: Request<proto::UpsertProductRequest>,
    ) -> Result<Response<proto::Product>, Status> {
        unimplemented()
    }
    async fn list_products(
        &self,
        _: Request<proto::ListProductsRequest>,
    ) -> Result<Response<proto::ListProductsResponse>, Status> {
        unimplemented()
    }
    async fn record_order(
        &self,
        _: Request<proto::RecordOrderRequest>,
    ) -> Result<Response<proto::Order>, Status> {
        unimplemented()
    }
    async fn list_orders(
        &self,
        _: Request<proto::ListOrdersRequest>,
    ) -> Result<Response<proto::ListOrdersResponse>, Status> {
        unimplemented()
    }
    async fn import_customers(
        &self,
        _: Request<Streaming<proto::ImportCustomersRequest>>,
    ) -> Result<Response<proto::ImportCustomersResponse>, Status> {
        unimplemented()
    }
    type ExportCustomersStream = tokio_stream::Empty<Result<proto::Customer, Status>>;
    async fn export_customers(
        &self,
        _: Request<proto::ExportCustomersRequest>,
    ) -> Result<Response<Self::ExportCustomersStream>, Status> {
        unimplemented()
    }
}

pub async fn bare_server(listen: SocketAddr, message_hex: &str) -> anyhow::Result<()> {
    let bytes: Vec<u8> = (0..message_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&message_hex[i..i + 2], 16))
        .collect::<Result<_, _>>()?;
    let message = proto::Customer::decode(bytes.as_slice())?;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(CustomerServiceServer::new(Bare { message }))
        .serve(listen)
        .await?;
    Ok(())
}
