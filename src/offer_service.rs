//! `bakkal.v1.OfferService`: real-time cross-sell. The OFFER scripts of the live campaigns
//! (RUNNING or SCHEDULED, with an `offer_script`) run for one customer at request time; the
//! engine (`bakkal_engine::offer`) merges and ranks what they propose.
//!
//! The request path is kept lean: the live scripts (compiled, through the host's cache) and
//! the catalogue are held in memory as one [`Setup`], checked against the store's write
//! generation on every call and against a fingerprint of campaigns, scripts and products when
//! the generation moved or [`RECHECK`] passed (other servers may write to PostgreSQL); a call
//! then reads the customer and their orders once and runs the scripts on the blocking pool
//! behind a semaphore. A script that fails to load or to run is skipped and logged.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bakkal_domain::name::parse_customer;
use bakkal_domain::time::now_micros;
use bakkal_engine::campaign::in_holdout;
use bakkal_engine::offer::{bought_skus, rank, SourcedOffers};
use bakkal_script::{Catalog, CompiledScript, ScriptCustomer, ScriptHost, ScriptKind};
use bakkal_store::{campaign_name, script_revision_name, OfferFingerprint, Store};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::proto::offer_service_server::OfferService;
use crate::proto::{self};
use crate::status::{from_store, invalid_field};

/// The campaign states whose offer scripts are live.
pub const LIVE_STATES: [&str; 2] = ["RUNNING", "SCHEDULED"];
/// How long a setup is trusted without looking at the database when this server wrote
/// nothing (bounds staleness when other servers write).
const RECHECK: Duration = Duration::from_secs(1);
const DEFAULT_PAGE: usize = 10;
const MAX_PAGE: i32 = 100;
const MAX_CONTEXT: usize = 32;
const MAX_CONTEXT_KEY: usize = 64;
const MAX_CONTEXT_VALUE: usize = 4096;

/// One live offer script.
struct LiveScript {
    campaign_id: i64,
    campaign: String,
    holdout_percent: i64,
    script: String,
    compiled: CompiledScript,
}

/// The live scripts and the catalogue, as of `fingerprint`.
struct Setup {
    fingerprint: OfferFingerprint,
    generation: u64,
    checked: Instant,
    scripts: Arc<Vec<LiveScript>>,
    catalog: Catalog,
}

pub struct OfferApi {
    store: Store,
    host: Arc<ScriptHost>,
    runs: Arc<Semaphore>,
    setup: Mutex<Option<Arc<Setup>>>,
    /// One reload at a time.
    reload: tokio::sync::Mutex<()>,
}

fn max_runs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

fn internal(e: &str) -> Status {
    tracing::error!(error = %e, "offer task failed");
    Status::internal("internal error; it has been logged")
}

impl OfferApi {
    pub fn new(store: Store, host: Arc<ScriptHost>) -> Self {
        Self {
            store,
            host,
            runs: Arc::new(Semaphore::new(max_runs())),
            setup: Mutex::new(None),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self, generation: u64) -> Option<Arc<Setup>> {
        let held = self.setup.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref()
            .filter(|s| s.generation == generation && s.checked.elapsed() < RECHECK)
            .cloned()
    }

    /// The live scripts and catalogue, reloaded only when something they depend on changed.
    async fn live(&self) -> Result<Arc<Setup>, Status> {
        let generation = self.store.write_generation();
        if let Some(s) = self.current(generation) {
            return Ok(s);
        }
        let _one = self.reload.lock().await;
        if let Some(s) = self.current(generation) {
            return Ok(s);
        }
        let fingerprint = self
            .store
            .offer_fingerprint(&LIVE_STATES)
            .await
            .map_err(from_store)?;
        let held = self.setup.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (scripts, catalog) = match held {
            Some(s) if s.fingerprint == fingerprint => (s.scripts.clone(), s.catalog.clone()),
            _ => {
                let catalog = Catalog::new(self.store.all_products().await.map_err(from_store)?);
                (Arc::new(self.load_scripts(&fingerprint).await?), catalog)
            }
        };
        let setup = Arc::new(Setup {
            fingerprint,
            generation,
            checked: Instant::now(),
            scripts,
            catalog,
        });
        *self.setup.lock().unwrap_or_else(|p| p.into_inner()) = Some(setup.clone());
        Ok(setup)
    }

    /// Load and compile each campaign's offer script; one that cannot be used is logged and
    /// left out.
    async fn load_scripts(&self, fp: &OfferFingerprint) -> Result<Vec<LiveScript>, Status> {
        let mut sources = Vec::new();
        for c in &fp.campaigns {
            let campaign = campaign_name(c.id);
            let Some((id, revision)) = bakkal_domain::name::parse_script(&c.offer_script) else {
                tracing::warn!(%campaign, script = %c.offer_script, "offer script name does not parse; skipped");
                continue;
            };
            let s = match self.store.get_script(id, revision).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%campaign, script = %c.offer_script, error = %e, "offer script cannot be read; skipped");
                    continue;
                }
            };
            if s.kind != ScriptKind::Offer.as_str() {
                tracing::warn!(%campaign, script = %c.offer_script, kind = %s.kind, "not an OFFER script; skipped");
                continue;
            }
            sources.push((
                (c.id, c.holdout_percent),
                campaign,
                script_revision_name(s.id, s.revision.revision),
                s,
            ));
        }
        let host = self.host.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            sources
                .into_iter()
                .filter_map(|(c, campaign, key, s)| {
                    match host.compile_cached(&key, ScriptKind::Offer, &s.revision.source) {
                        Ok(compiled) => Some((c.0, c.1, campaign, key, compiled)),
                        Err(d) => {
                            let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
                            tracing::warn!(%campaign, script = %key, error = %first, "offer script does not compile; skipped");
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        });
        let compiled = compiled.await.map_err(|e| internal(&e.to_string()))?;
        Ok(compiled
            .into_iter()
            .map(
                |(campaign_id, holdout_percent, campaign, script, compiled)| LiveScript {
                    campaign_id,
                    campaign,
                    holdout_percent,
                    script,
                    compiled,
                },
            )
            .collect())
    }
}

fn check_context(ctx: &std::collections::HashMap<String, String>) -> Result<(), Status> {
    if ctx.len() > MAX_CONTEXT {
        return Err(invalid_field(
            "context",
            format!("at most {MAX_CONTEXT} entries"),
        ));
    }
    for (k, v) in ctx {
        if k.is_empty() || k.len() > MAX_CONTEXT_KEY {
            return Err(invalid_field(
                "context",
                format!("keys must be 1 to {MAX_CONTEXT_KEY} bytes"),
            ));
        }
        if v.len() > MAX_CONTEXT_VALUE {
            return Err(invalid_field(
                &format!("context[{k}]"),
                format!("at most {MAX_CONTEXT_VALUE} bytes"),
            ));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl OfferService for OfferApi {
    async fn get_offers(
        &self,
        request: Request<proto::GetOffersRequest>,
    ) -> Result<Response<proto::GetOffersResponse>, Status> {
        let scope = crate::auth::customer_scope(&request);
        let pii = crate::auth::mask::Pii::of(&request);
        let req = request.into_inner();
        let id = parse_customer(&req.customer).ok_or_else(|| {
            invalid_field(
                "customer",
                format!(
                    "'{}' is not a customer name like customers/123",
                    req.customer
                ),
            )
        })?;
        let limit = match req.page_size {
            0 => DEFAULT_PAGE,
            n if (1..=MAX_PAGE).contains(&n) => n as usize,
            _ => {
                return Err(invalid_field(
                    "page_size",
                    format!("must be 0 to {MAX_PAGE}"),
                ))
            }
        };
        check_context(&req.context)?;
        let cart: HashSet<String> = req
            .context
            .get("cart")
            .map(|c| {
                c.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();

        // the offer scripts see the customer as the caller may (personal data masked without
        // customers.pii.read), so no offer text carries more
        let customer = pii.customer(
            self.store
                .get_customer(id, &scope)
                .await
                .map_err(from_store)?,
        );
        let setup = self.live().await?;
        let scripts: Vec<usize> = (0..setup.scripts.len())
            .filter(|&i| {
                let s = &setup.scripts[i];
                !in_holdout(s.campaign_id, customer.id, s.holdout_percent)
            })
            .collect();
        if scripts.is_empty() {
            return Ok(Response::new(proto::GetOffersResponse { offers: vec![] }));
        }
        let orders = self
            .store
            .all_orders(customer.id)
            .await
            .map_err(from_store)?;
        let bought = bought_skus(&orders);

        let _permit = self
            .runs
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the server is shutting down"))?;
        let host = self.host.clone();
        let run = setup.clone();
        let now = now_micros();
        let sources = tokio::task::spawn_blocking(move || {
            let c = ScriptCustomer::new(customer, orders);
            let mut out = Vec::with_capacity(scripts.len());
            for i in scripts {
                let s = &run.scripts[i];
                match host
                    .eval_offers(&s.compiled, &c, &run.catalog, now)
                    .into_result()
                {
                    Ok(offers) => out.push(SourcedOffers {
                        campaign: s.campaign.clone(),
                        script: s.script.clone(),
                        offers,
                    }),
                    Err(e) => tracing::warn!(
                        campaign = %s.campaign, script = %s.script, customer = c.customer().id,
                        error = %e, "offer script failed; skipped"
                    ),
                }
            }
            out
        })
        .await
        .map_err(|e| internal(&e.to_string()))?;

        let offers = rank(&sources, &setup.catalog, &bought, &cart, limit)
            .into_iter()
            .map(|o| proto::Offer {
                sku: o.sku,
                title: o.title,
                score: o.score,
                reason: o.reason,
                campaign: o.campaign,
                script: o.script,
            })
            .collect();
        Ok(Response::new(proto::GetOffersResponse { offers }))
    }
}
