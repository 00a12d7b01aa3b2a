//! Client connections, bounded: at most `max_connections` open at once (the next waits in the
//! listen backlog until one closes), a connection that has not sent a byte within the
//! handshake timeout is closed, and so is one that sends nothing for the idle timeout (the
//! server pings every live HTTP/2 connection more often than that, so only dead or silent
//! peers are cut). Together with the per-connection stream limit set on the server and the
//! open-file limit raised at start, no number of idle sockets or streams can lock clients out.
//!
//! With TLS (`tls.rs`) each accepted connection does its handshake in a task of its own, its
//! slot held and the whole handshake bounded by the handshake timeout, so a client that never
//! finishes it neither blocks the accept loop nor keeps its slot; only finished handshakes
//! reach the server, with the client certificate's fingerprint in their [`PeerInfo`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

/// The limits on client connections (`Config::connections`).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Open client connections at once.
    pub max_connections: usize,
    /// Concurrent streams (calls) on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams: u32,
    /// A new connection must send its first byte within this.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// How often the server pings each connection (keeps live ones from looking idle).
    pub keepalive_interval: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_streams: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(60),
        }
    }
}

/// Raise the soft limit on open files to the hard limit (where the system allows); returns
/// the limit in force.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(0)
        }
    }
}

/// What a request knows of its connection (in its extensions, put there by tonic).
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    pub local_addr: Option<std::net::SocketAddr>,
    pub remote_addr: Option<std::net::SocketAddr>,
    /// The certificate the client presented in the TLS handshake (verified against
    /// `--tls-client-ca`), when it presented one.
    pub client_certificate: Option<ClientCertificate>,
}

/// A verified client certificate, as authentication needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// SHA-256 of the DER certificate, lowercase hex (`access::certificate_sha256`).
    pub sha256: String,
}

/// A client connection as the server sees it: plaintext or TLS, with what is known of the peer.
pub struct ClientConnection {
    io: Io,
    info: PeerInfo,
}

enum Io {
    Plain(Connection),
    Tls(Box<TlsStream<Connection>>),
}

impl Connected for ClientConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().io {
            Io::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Io::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for ClientConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A TCP connection holding its place among `max_connections`, with its timers.
pub struct Connection {
    stream: TcpStream,
    info: PeerInfo,
    _permit: OwnedSemaphorePermit,
    /// Fires when nothing was read for the current allowance (handshake, then idle).
    timer: Pin<Box<Sleep>>,
    idle: Duration,
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle;
                    self.timer.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The accepted connections of `listener`, within `limits`; with `tls`, only those whose TLS
/// handshake finished within the handshake timeout.
pub fn incoming(
    listener: TcpListener,
    limits: &ConnectionLimits,
    tls: Option<Arc<ServerConfig>>,
) -> impl Stream<Item = io::Result<ClientConnection>> {
    let (tx, rx) = mpsc::channel::<io::Result<ClientConnection>>(1);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (handshake, idle) = (limits.handshake_timeout, limits.idle_timeout);
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            // a free place first: at the limit, the next client waits in the backlog
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = tx.closed() => return,
            };
            let connection = match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let info = PeerInfo {
                        local_addr: stream.local_addr().ok(),
                        remote_addr: Some(remote),
                        client_certificate: None,
                    };
                    Connection {
                        stream,
                        info,
                        _permit: permit,
                        timer: Box::pin(tokio::time::sleep(handshake)),
                        idle,
                    }
                }
                Err(e) if is_transient(&e) => {
                    // out of file descriptors, a reset before accept: wait a moment, go on
                    tracing::warn!(error = %e, "accept failed");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            match &acceptor {
                None => {
                    let info = connection.info.clone();
                    let plain = ClientConnection {
                        io: Io::Plain(connection),
                        info,
                    };
                    if tx.send(Ok(plain)).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    // the handshake in its own task: a slow client does not stop the loop
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        if let Some(c) = tls_handshake(&acceptor, connection, handshake).await {
                            let _ = tx.send(Ok(c)).await;
                        }
                    });
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The TLS connection over `connection`, or `None` (logged; the connection and its slot are
/// dropped) when the handshake fails or does not finish within `timeout`.
async fn tls_handshake(
    acceptor: &TlsAcceptor,
    connection: Connection,
    timeout: Duration,
) -> Option<ClientConnection> {
    let mut info = connection.info.clone();
    let remote = info.remote_addr;
    match tokio::time::timeout(timeout, acceptor.accept(connection)).await {
        Ok(Ok(tls)) => {
            info.client_certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| ClientCertificate {
                    sha256: bakkal_domain::access::certificate_sha256(leaf.as_ref()),
                });
            Some(ClientConnection {
                io: Io::Tls(Box::new(tls)),
                info,
            })
        }
        Ok(Err(e)) => {
            tracing::debug!(?remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?remote, "TLS handshake did not finish in time");
            None
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 23 || c == 24) // ENFILE, EMFILE
}
