//! Client streams at full speed: a raw HTTP/2 client sends ImportCustomers rows each in its own
//! DATA frame as fast as flow control lets it (grpcurl and grpcio send a row a frame too). The
//! server must slow the client through flow control, never close the connection, and answer
//! with exactly what it committed.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::TestServer;
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt;

use bakkal::proto::{self, import_customers_request::Row};

/// Rows per run, 300,000 as the issue asks, on both backends: a debug build imports them in
/// about 30 s on SQLite and 40 s on PostgreSQL (BENCHMARKS.md). With the old 4 MiB stream
/// window the connection was closed after 2-3 s.
const ROWS: usize = 300_000;

/// One gRPC message: the 5-byte prefix (uncompressed, length) and the encoded request.
fn grpc_frame(msg: &proto::ImportCustomersRequest) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    msg.encode(&mut buf).expect("a BytesMut grows");
    buf.freeze()
}

fn row(i: usize) -> proto::ImportCustomersRequest {
    proto::ImportCustomersRequest {
        row: Some(Row::Customer(proto::Customer {
            display_name: format!("C {i}"),
            email: format!("c{i}@example.com"),
            ..Default::default()
        })),
    }
}

/// What the server answered: the gRPC status and the decoded response if any.
struct Answer {
    status: tonic::Status,
    response: Option<proto::ImportCustomersResponse>,
}

/// Stream `rows` rows to ImportCustomers over a raw HTTP/2 connection, one DATA frame a row,
/// each sent as soon as the windows have room for it.
async fn raw_import(
    server: &TestServer,
    frames: impl Iterator<Item = Bytes>,
) -> Result<Answer, String> {
    let (conn, answer) = raw_import_on(server, frames).await;
    match answer {
        Ok(a) => {
            conn.abort();
            Ok(a)
        }
        // the connection's own error says why (a GOAWAY's reason and debug data)
        Err(e) => Err(match conn.await {
            Ok(Err(why)) => format!("{e}; the connection ended with: {why}"),
            _ => e.to_string(),
        }),
    }
}

type Connection = tokio::task::JoinHandle<Result<(), h2::Error>>;

async fn raw_import_on(
    server: &TestServer,
    frames: impl Iterator<Item = Bytes>,
) -> (Connection, Result<Answer, h2::Error>) {
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (client, connection) = match h2::client::handshake(tcp).await {
        Ok(c) => c,
        Err(e) => return (tokio::spawn(async { Ok(()) }), Err(e)),
    };
    let conn = tokio::spawn(connection);
    let answer = send_rows(client, frames).await;
    (conn, answer)
}

async fn send_rows(
    client: h2::client::SendRequest<Bytes>,
    frames: impl Iterator<Item = Bytes>,
) -> Result<Answer, h2::Error> {
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/bakkal.v1.CustomerService/ImportCustomers",
            "bakkal"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let mut client = client.ready().await?;
    let (response, mut send) = client.send_request(request, false)?;

    let mut closed = false;
    'rows: for frame in frames {
        // Ask for room for this one frame and send it the moment it is granted: the client
        // never queues more than a frame, so its pace is exactly what flow control allows.
        send.reserve_capacity(frame.len());
        while send.capacity() < frame.len() {
            match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                // the server ended the stream (an answer, a reset or a GOAWAY): read why
                None => {
                    closed = true;
                    break 'rows;
                }
            }
        }
        send.send_data(frame, false)?;
    }
    if !closed {
        send.send_data(Bytes::new(), true)?;
    }

    let response = response.await?;
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    // a status before any message comes in the headers (trailers-only), otherwise in trailers
    let trailers = body.trailers().await?.unwrap_or(headers);
    let status = tonic::Status::from_header_map(&trailers).expect("a grpc-status");
    let response = (data.len() >= 5)
        .then(|| proto::ImportCustomersResponse::decode(&data[5..]).expect("a response message"));
    drop(client);
    Ok(Answer { status, response })
}

async fn a_raw_client_at_full_speed_finishes_its_import(server: &TestServer) {
    let started = std::time::Instant::now();
    let answer = match raw_import(server, (0..ROWS).map(|i| grpc_frame(&row(i)))).await {
        Ok(a) => a,
        Err(e) => panic!("the import broke after {:?}: {e}", started.elapsed()),
    };
    eprintln!("{ROWS} rows in {:?}", started.elapsed());
    assert_eq!(answer.status.code(), Code::Ok, "{:?}", answer.status);
    let out = answer.response.expect("an ImportCustomersResponse");
    assert_eq!(
        (out.created, out.updated, out.rejected),
        (ROWS as i64, 0, 0)
    );
    let stored = common::count(&server.db_url, "SELECT COUNT(*) FROM customers").await;
    assert_eq!(stored, ROWS as i64);
}

/// A stream that breaks after `good` rows (a message that does not decode) is an error that
/// says exactly what was stored: every row before it.
async fn a_broken_stream_says_what_was_stored(server: &TestServer) {
    let good = 12_345;
    let garbage = Bytes::from_static(&[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
    let frames = (0..good)
        .map(|i| grpc_frame(&row(i)))
        .chain(std::iter::once(garbage));
    let answer = raw_import(server, frames).await.expect("an answer");
    let status = answer.status;
    assert_ne!(status.code(), Code::Ok, "{status:?}");
    assert!(answer.response.is_none());
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("an ErrorInfo");
    assert_eq!(info.reason, "IMPORT_INCOMPLETE");
    let meta = |k: &str| info.metadata.get(k).cloned().unwrap_or_default();
    assert_eq!(meta("through"), good.to_string());
    assert_eq!(meta("created"), good.to_string());
    assert_eq!(meta("rejected"), "0");
    assert!(
        status
            .message()
            .contains(&format!("rows 1 to {good} were settled")),
        "{}",
        status.message()
    );
    let stored = common::count(&server.db_url, "SELECT COUNT(*) FROM customers").await;
    assert_eq!(stored, good as i64);
}

on_both_backends!(
    a_raw_client_at_full_speed_finishes_its_import,
    a_broken_stream_says_what_was_stored,
);
