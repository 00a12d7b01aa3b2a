//! Connections cannot exhaust the server, on SQLite and PostgreSQL: a connection gets at most
//! the stream limit, sockets that say nothing are closed after the handshake timeout, the
//! connection limit holds new clients back only until a place is free, health answers
//! throughout, and the open-file limit is raised at start.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

async fn server(backend: Backend) -> Option<TestServer> {
    TestServer::start_with(backend, |c| {
        c.connections.max_streams = 16;
        c.connections.max_connections = 8;
        c.connections.handshake_timeout = Duration::from_millis(500);
        c.connections.idle_timeout = Duration::from_secs(3);
        c.connections.keepalive_interval = Duration::from_secs(1);
    })
    .await
}

async fn health(addr: std::net::SocketAddr) -> bool {
    let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
    else {
        return false;
    };
    tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok()
}

async fn a_connection_gets_at_most_the_stream_limit(backend: Backend) {
    let Some(server) = server(backend).await else {
        return;
    };
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.expect("ready");
    // the server's SETTINGS arrive with the handshake
    for _ in 0..50 {
        if send.current_max_send_streams() != usize::MAX {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        send = send.ready().await.expect("ready");
    }
    assert_eq!(send.current_max_send_streams(), 16);
    server.stop().await;
}

async fn silent_sockets_are_closed_and_health_answers_throughout(backend: Backend) {
    let Some(server) = server(backend).await else {
        return;
    };
    assert!(health(server.addr).await);
    // the test's own channel holds one place; fill the others with sockets that say nothing
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let start = Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), health(server.addr))
            .await
            .unwrap_or(false),
        "health did not answer while silent sockets held the places"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // every silent socket is closed by the server after the handshake timeout
    // (it first sends its own SETTINGS; the close is the end of what it sends)
    for mut s in silent {
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a silent socket stayed open");
    }
    // a live connection that makes no calls is kept by the pings past the idle timeout
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut ok = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    ok.check(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    })
    .await
    .expect("the test's live channel still answers");
    // the soft open-file limit was raised to the hard one
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(soft >= hard.min(65_536), "soft {soft}, hard {hard}");
    server.stop().await;
}

for_each_backend!(
    a_connection_gets_at_most_the_stream_limit,
    silent_sockets_are_closed_and_health_answers_throughout,
);
