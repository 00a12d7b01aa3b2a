//! The metrics endpoint: HTTP/1.1 on its own address, `GET /metrics` in the Prometheus text
//! format (version 0.0.4). At most [`MAX_CONNECTIONS`] scrapers at once, one request a
//! connection and each connection closed after [`CONNECTION_LIFE`], so the port cannot tie up
//! the server.
//!
//! Each scrape reads the pool's state (no I/O) and the work queued in the database (outbox by
//! status and its lag, runs in progress, the SLA watcher's lag). Those come from a few
//! index-backed queries run at most once every [`FIGURES_TTL`], whatever the scrape rate or the
//! number of scrapers: they describe the whole database, which no background task of one
//! server sees whole (a server whose dispatcher is idle still reports a backlog another
//! server's sink is stuck on), and a query at scrape time needs no bookkeeping in the tasks.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bakkal_domain::time::{now_micros, Micros};
use bakkal_store::{Store, WorkFigures};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

use super::{names, Metrics};
use crate::config::Clock;

/// How long the database figures of one scrape serve the next ones.
const FIGURES_TTL: Duration = Duration::from_secs(5);
/// A figures query slower than this is given up (the last figures stay).
const FIGURES_TIMEOUT: Duration = Duration::from_secs(2);
/// Scrapers connected at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 16;
/// The longest a scraper's connection stays open.
const CONNECTION_LIFE: Duration = Duration::from_secs(30);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scrape reads besides the registry.
pub struct Scraper {
    metrics: Arc<Metrics>,
    store: Store,
    /// The service desk's clock, which the SLA marks are in.
    desk_clock: Clock,
    figures: Mutex<Option<(Instant, WorkFigures)>>,
}

impl Scraper {
    pub fn new(metrics: Arc<Metrics>, store: Store, desk_clock: Clock) -> Arc<Scraper> {
        Arc::new(Scraper {
            metrics,
            store,
            desk_clock,
            figures: Mutex::new(None),
        })
    }

    /// The exposition text now.
    pub async fn scrape(&self) -> String {
        let m = &self.metrics;
        let pool = self.store.pool_status();
        let in_use = pool.open.saturating_sub(pool.idle);
        m.gauge(names::POOL_CONNECTIONS, &[("state", "idle")])
            .set(pool.idle as f64);
        m.gauge(names::POOL_CONNECTIONS, &[("state", "in_use")])
            .set(in_use as f64);
        m.gauge(names::POOL_MAX, &[]).set(pool.max as f64);
        if let Some(f) = self.figures().await {
            self.set_figures(&f, now_micros(), self.desk_clock.now());
        }
        m.upkeep();
        m.render()
    }

    /// The database figures, read again when older than [`FIGURES_TTL`]; the lock makes
    /// scrapes that come together wait for one read. `None` until a read succeeded.
    async fn figures(&self) -> Option<WorkFigures> {
        let mut cached = self.figures.lock().await;
        if let Some((at, f)) = cached.as_ref() {
            if at.elapsed() < FIGURES_TTL {
                return Some(*f);
            }
        }
        match tokio::time::timeout(FIGURES_TIMEOUT, self.store.work_figures()).await {
            Ok(Ok(f)) => {
                *cached = Some((Instant::now(), f));
                Some(f)
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                tracing::warn!(%error, "metrics: cannot read the outbox, run and SLA figures");
                self.metrics
                    .counter(names::FIGURES_ERRORS, &[])
                    .increment(1);
                // the last figures keep serving until a read succeeds, marked fresh for a while
                // so a database in trouble is not asked again by every scrape
                let last = cached.as_ref().map(|(_, f)| *f);
                if let Some(f) = last {
                    *cached = Some((Instant::now(), f));
                }
                last
            }
        }
    }

    fn set_figures(&self, f: &WorkFigures, now: Micros, desk_now: Micros) {
        let m = &self.metrics;
        for (status, n) in [
            ("queued", f.outbox_queued),
            ("sending", f.outbox_sending),
            ("failed", f.outbox_failed),
        ] {
            m.gauge(names::OUTBOX_MESSAGES, &[("status", status)])
                .set(n as f64);
        }
        let lag = waited(f.oldest_queued, now).max(waited(f.earliest_retry, now));
        m.gauge(names::OUTBOX_LAG, &[]).set(lag);
        m.gauge(names::RUNS_RUNNING, &[]).set(f.runs_running as f64);
        m.gauge(names::SLA_LAG, &[])
            .set(waited(f.earliest_sla_check, desk_now));
    }

    async fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, body: String| {
            let mut res = Response::new(Full::new(Bytes::from(body)));
            *res.status_mut() = status;
            res
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut res = reply(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
            res.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        if req.uri().path() != "/metrics" {
            return reply(StatusCode::NOT_FOUND, "metrics are at /metrics\n".into());
        }
        let mut res = reply(StatusCode::OK, self.scrape().await);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(CONTENT_TYPE),
        );
        res
    }
}

/// Serve scrapes on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, scraper: Arc<Scraper>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let scraper = scraper.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let scraper = scraper.clone();
                async move { Ok::<_, Infallible>(scraper.respond(&req).await) }
            });
            // one scrape a connection, and no connection holds its place longer than
            // CONNECTION_LIFE, silent or slow
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFE, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics: connection failed"),
                Err(_) => tracing::debug!("metrics: connection closed after its time"),
            }
            drop(permit);
        });
    }
}

/// Seconds from `since` to `now`; 0 for nothing waiting or a time still to come.
fn waited(since: Option<Micros>, now: Micros) -> f64 {
    since.map_or(0.0, |t| (now - t).max(0) as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::waited;

    #[test]
    fn lag_is_the_time_past_the_mark() {
        assert_eq!(waited(None, 10_000_000), 0.0);
        assert_eq!(waited(Some(12_000_000), 10_000_000), 0.0);
        assert_eq!(waited(Some(8_500_000), 10_000_000), 1.5);
    }
}
