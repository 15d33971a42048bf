//! Real servers for the proxy to forward to, and small real clients.

use crate::echo::{self, echo_server::EchoServer};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::{convert::Infallible, net::SocketAddr, pin::Pin, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_stream::{Stream, wrappers::TcpListenerStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

async fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend")
}

/// An HTTP server that speaks HTTP/1 and HTTP/2 (prior knowledge) and answers
/// by path; see [`handle`].
pub async fn http() -> SocketAddr {
    http_on(listen().await)
}

pub fn http_on(listener: TcpListener) -> SocketAddr {
    http_delayed(listener, Duration::ZERO)
}

/// The HTTP server, answering every request only after `delay`: a slow
/// instance of a service.
pub fn http_delayed(listener: TcpListener, delay: Duration) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, peer, addr, delay));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

fn query(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok())?
    })
}

/// Routes:
/// - `/headers`: the request's version and headers, one per line;
/// - `/echo`: the request body;
/// - `/status/N`: an empty response with status N;
/// - `/stream?n=K`: K chunks, streamed;
/// - `/slow?ms=N`: answers after N ms;
/// - `/trailers`: a body, then trailers `x-trailer: yes`;
/// - `/reset`: fails the stream (an HTTP/2 reset, or a closed HTTP/1 connection);
/// - `/peer`: the address the connection came from;
/// - `/whoami`: this server's own address;
/// - `/close`: answers, then closes the connection;
/// - `CONNECT`: 200, then echoes bytes;
/// - anything else: `hello`.
async fn handle(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    local: SocketAddr,
    delay: Duration,
) -> Result<Response<Body>, BoxError> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let path = req.uri().path().to_string();
    if req.method() == Method::CONNECT {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                echo_io(TokioIo::new(up)).await;
            }
        });
        return Ok(Response::new(full("")));
    }
    if path == "/websocket" {
        return Ok(Response::builder()
            .status(400)
            .body(full("use the websocket backend"))?);
    }
    let rsp = match path.as_str() {
        "/headers" => {
            let mut out = format!("version: {:?}\n", req.version());
            for (k, v) in req.headers() {
                out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            Response::new(full(out))
        }
        "/echo" => {
            let body = req.into_body().collect().await?.to_bytes();
            Response::new(full(body))
        }
        "/stream" => {
            let n = query(&req, "n").unwrap_or(3);
            let chunks = tokio_stream::iter(
                (0..n).map(|i| Ok::<_, BoxError>(Frame::data(Bytes::from(format!("chunk{i}\n"))))),
            );
            Response::new(BodyExt::boxed(StreamBody::new(chunks)))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query(&req, "ms").unwrap_or(100))).await;
            Response::new(full("slow"))
        }
        "/trailers" => {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-trailer", "yes".parse().unwrap());
            let frames = tokio_stream::iter([
                Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"data"))),
                Ok(Frame::trailers(trailers)),
            ]);
            Response::new(BodyExt::boxed(StreamBody::new(frames)))
        }
        "/reset" => return Err("reset requested".into()),
        "/peer" => Response::new(full(peer.to_string())),
        "/whoami" => Response::new(full(local.to_string())),
        "/close" => Response::builder()
            .header("connection", "close")
            .body(full("closing"))?,
        p if p.starts_with("/status/") => {
            let code: u16 = p["/status/".len()..].parse()?;
            Response::builder()
                .status(StatusCode::from_u16(code)?)
                .body(full(""))?
        }
        _ => Response::new(full("hello")),
    };
    Ok(rsp)
}

/// Echoes bytes until the client half-closes, then half-closes too.
async fn echo_io<I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: I) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if io.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = io.shutdown().await;
}

/// A raw TCP echo server that honours half-close.
pub async fn tcp_echo() -> SocketAddr {
    tcp_echo_on(listen().await)
}

pub fn tcp_echo_on(listener: TcpListener) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(echo_io(stream));
        }
    });
    addr
}

/// A server-speaks-first TCP server that says which address the client
/// reached (`127.0.0.1:PORT\n`), then echoes: tells balanced connections apart.
pub async fn tcp_whoami() -> SocketAddr {
    let listener = listen().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if stream
                    .write_all(format!("{addr}\n").as_bytes())
                    .await
                    .is_ok()
                {
                    echo_io(stream).await;
                }
            });
        }
    });
    addr
}

/// A server-speaks-first protocol (like SMTP or MySQL): it greets first, then
/// echoes.
pub const BANNER: &[u8] = b"220 backend ready\r\n";

pub async fn server_first() -> SocketAddr {
    let listener = listen().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if stream.write_all(BANNER).await.is_ok() {
                    echo_io(stream).await;
                }
            });
        }
    });
    addr
}

/// A WebSocket server that echoes every text and binary message.
pub async fn websocket_echo() -> SocketAddr {
    websocket_echo_on(listen().await)
}

pub fn websocket_echo_on(listener: TcpListener) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if ws.send(msg).await.is_err() {
                            return;
                        }
                    } else if msg.is_close() {
                        let _ = ws.close(None).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The gRPC echo service.
#[derive(Default)]
pub struct Echo;

type MsgStream = Pin<Box<dyn Stream<Item = Result<echo::Msg, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl echo::echo_server::Echo for Echo {
    async fn unary(
        &self,
        req: tonic::Request<echo::Msg>,
    ) -> Result<tonic::Response<echo::Msg>, tonic::Status> {
        Ok(tonic::Response::new(req.into_inner()))
    }

    type ServerStreamStream = MsgStream;

    async fn server_stream(
        &self,
        req: tonic::Request<echo::Msg>,
    ) -> Result<tonic::Response<MsgStream>, tonic::Status> {
        let msg = req.into_inner();
        let items = (0..msg.count).map(move |i| {
            Ok(echo::Msg {
                text: format!("{}-{i}", msg.text),
                count: i,
            })
        });
        Ok(tonic::Response::new(Box::pin(tokio_stream::iter(items))))
    }

    type BidiStream = MsgStream;

    async fn bidi(
        &self,
        req: tonic::Request<tonic::Streaming<echo::Msg>>,
    ) -> Result<tonic::Response<MsgStream>, tonic::Status> {
        let incoming = req.into_inner();
        Ok(tonic::Response::new(Box::pin(incoming)))
    }

    async fn fail(
        &self,
        req: tonic::Request<echo::Msg>,
    ) -> Result<tonic::Response<echo::Msg>, tonic::Status> {
        let code = tonic::Code::from_i32(req.into_inner().count as i32);
        Err(tonic::Status::new(code, "failed as asked"))
    }
}

pub async fn grpc_echo() -> SocketAddr {
    grpc_echo_on(listen().await)
}

pub fn grpc_echo_on(listener: TcpListener) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(Echo))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

/// One HTTP/1.1 request on a new connection; returns status and body.
pub async fn http1_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    http1(addr, method, &addr.to_string(), path).await
}

/// One HTTP/1.1 GET with `Host: host` on a new connection (a request to a
/// service through a proxy); returns status and body.
pub async fn http1_get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    http1(addr, "GET", host, path).await
}

/// One HTTP/1.1 request with `Host: host` on a new connection; returns status
/// and body.
pub async fn http1(addr: SocketAddr, method: &str, host: &str, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = send.send_request(req).await.expect("request");
    let status = rsp.status().as_u16();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// One HTTP/2 (prior knowledge) GET of `http://{authority}{path}` on a new
/// connection; returns status and body.
pub async fn h2_get(addr: SocketAddr, authority: &str, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("http://{authority}{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = send.send_request(req).await.expect("request");
    let status = rsp.status().as_u16();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
