//! The demo application, after Linkerd's emojivoto. `vote-bot` votes
//! through `web` (HTTP/1); for each vote `web` asks `emoji` (gRPC, slow)
//! whether the emoji exists and tells `voting` (gRPC, failing a set share of
//! votes). Every call goes through the caller's outbound proxy, named by
//! its service's cluster name, as an application in a cluster would.

use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, transport::Endpoint};

pub(crate) mod pb {
    include!(concat!(env!("OUT_DIR"), "/emojivoto.v1.rs"));
}

use pb::{
    Emoji, FindByShortcodeRequest, FindByShortcodeResponse, ListAllEmojiRequest,
    ListAllEmojiResponse, ResultsRequest, ResultsResponse, VoteRequest, VoteResponse, VotingResult,
    emoji_service_client::EmojiServiceClient,
    emoji_service_server::{EmojiService, EmojiServiceServer},
    voting_service_client::VotingServiceClient,
    voting_service_server::{VotingService, VotingServiceServer},
};

pub(crate) const EMOJI: &[(&str, &str)] = &[
    ("🍩", ":doughnut:"),
    ("🐙", ":octopus:"),
    ("🦄", ":unicorn:"),
    ("🌮", ":taco:"),
    ("🚀", ":rocket:"),
    ("🐳", ":whale:"),
    ("🍕", ":pizza:"),
    ("🦀", ":crab:"),
    ("🌵", ":cactus:"),
    ("🎉", ":tada:"),
];

/// Resolves when `stop` says so.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// `emoji`: answers every call after `delay`.
struct Emojis {
    delay: Duration,
}

fn emoji(unicode: &str, shortcode: &str) -> Emoji {
    Emoji {
        unicode: unicode.into(),
        shortcode: shortcode.into(),
    }
}

#[tonic::async_trait]
impl EmojiService for Emojis {
    async fn list_all(
        &self,
        _: GrpcRequest<ListAllEmojiRequest>,
    ) -> Result<GrpcResponse<ListAllEmojiResponse>, Status> {
        tokio::time::sleep(self.delay).await;
        let list = EMOJI.iter().map(|(u, s)| emoji(u, s)).collect();
        Ok(GrpcResponse::new(ListAllEmojiResponse { list }))
    }

    async fn find_by_shortcode(
        &self,
        req: GrpcRequest<FindByShortcodeRequest>,
    ) -> Result<GrpcResponse<FindByShortcodeResponse>, Status> {
        tokio::time::sleep(self.delay).await;
        let code = req.into_inner().shortcode;
        let found = EMOJI.iter().find(|(_, s)| *s == code);
        Ok(GrpcResponse::new(FindByShortcodeResponse {
            emoji: found.map(|(u, s)| emoji(u, s)),
        }))
    }
}

pub(crate) async fn serve_emoji(
    listener: TcpListener,
    delay: Duration,
    stop: watch::Receiver<bool>,
) {
    let grpc = EmojiServiceServer::new(Emojis { delay });
    serve(listener, stop, move |io| serve_grpc(io, grpc.clone())).await
}

/// The share of votes `voting` fails, changeable while it serves (a local
/// demo's `linkerd demo --failure-rate` while it runs).
#[derive(Clone)]
pub(crate) struct FailureRate(Arc<AtomicU64>);

impl FailureRate {
    pub(crate) fn new(rate: f64) -> Self {
        Self(Arc::new(AtomicU64::new(rate.to_bits())))
    }

    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }

    pub(crate) fn set(&self, rate: f64) {
        self.0.store(rate.to_bits(), Relaxed);
    }
}

/// `voting`: counts votes, and fails `failure_rate` of them, evenly spread.
struct Votes {
    failure_rate: FailureRate,
    calls: AtomicU64,
    counts: std::sync::Mutex<std::collections::BTreeMap<String, i32>>,
}

impl Votes {
    /// Whether the `n`th call fails: exactly `failure_rate` of any run of
    /// calls, spread out, so short windows show the configured rate too.
    fn fails(&self, n: u64) -> bool {
        let r = self.failure_rate.get();
        ((n + 1) as f64 * r).floor() > (n as f64 * r).floor()
    }
}

#[tonic::async_trait]
impl VotingService for Votes {
    async fn vote(
        &self,
        req: GrpcRequest<VoteRequest>,
    ) -> Result<GrpcResponse<VoteResponse>, Status> {
        let n = self.calls.fetch_add(1, Relaxed);
        if self.fails(n) {
            return Err(Status::unavailable(format!(
                "the demo's voting service fails {:.0}% of votes",
                self.failure_rate.get() * 100.0
            )));
        }
        let code = req.into_inner().shortcode;
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(code)
            .or_default() += 1;
        Ok(GrpcResponse::new(VoteResponse {}))
    }

    async fn results(
        &self,
        _: GrpcRequest<ResultsRequest>,
    ) -> Result<GrpcResponse<ResultsResponse>, Status> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut results: Vec<VotingResult> = counts
            .iter()
            .map(|(s, v)| VotingResult {
                shortcode: s.clone(),
                votes: *v,
            })
            .collect();
        results.sort_by_key(|r| std::cmp::Reverse(r.votes));
        Ok(GrpcResponse::new(ResultsResponse { results }))
    }
}

pub(crate) async fn serve_voting(
    listener: TcpListener,
    failure_rate: FailureRate,
    stop: watch::Receiver<bool>,
) {
    let grpc = VotingServiceServer::new(Votes {
        failure_rate,
        calls: AtomicU64::new(0),
        counts: Default::default(),
    });
    serve(listener, stop, move |io| serve_grpc(io, grpc.clone())).await
}

/// Accepts connections until `stop`, each served on its own task. An
/// accept error (out of descriptors) backs off instead of spinning.
async fn serve<F, C>(listener: TcpListener, stop: watch::Receiver<bool>, connection: C)
where
    C: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        let io = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((io, _)) => io,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(stop.clone()) => return,
        };
        tokio::spawn(connection(io));
    }
}

/// One HTTP/2 connection to a generated gRPC service, served by hyper
/// directly: the demo needs no router, so the CLI does without tonic's
/// transport server.
async fn serve_grpc<S>(io: TcpStream, grpc: S)
where
    S: tower::Service<
            http::Request<Incoming>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(grpc))
        .await;
}

/// The cluster names the demo's services have.
pub(crate) fn authority(service: &str, port: u16) -> String {
    format!("{service}.emojivoto.svc.cluster.local:{port}")
}

/// How an application reaches the services it calls.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Via {
    /// The local mesh: straight to the pod's outbound proxy, the service
    /// named by the request's authority (no iptables to redirect).
    Proxy(SocketAddr),
    /// A cluster: the service's DNS name, as any application would; the
    /// pod's iptables send the connection to its proxy.
    Dns,
}

/// `web`'s clients, through its outbound proxy.
#[derive(Clone)]
struct Web {
    emoji: EmojiServiceClient<tonic::transport::Channel>,
    voting: VotingServiceClient<tonic::transport::Channel>,
}

fn through(via: Via, service: &str, port: u16) -> tonic::transport::Channel {
    let Via::Proxy(outbound) = via else {
        return Endpoint::from_shared(format!("http://{}", authority(service, port)))
            .expect("a valid authority")
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
    };
    // From the pod's own address (its proxy's), as a pod's application
    // would: tap shows the pod as the source.
    let local = Some(outbound.ip());
    // The proxy's listener is where connections go; the origin names the
    // service (`:authority`), which the proxy resolves and balances.
    let origin: http::Uri = format!("http://{}", authority(service, port))
        .parse()
        .expect("a valid authority");
    Endpoint::from_shared(format!("http://{outbound}"))
        .expect("a valid address")
        .origin(origin)
        .local_address(local)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

type Body = Full<bytes::Bytes>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<bytes::Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::default()))
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    reply(status, "application/json", value.to_string())
}

const PAGE: &str = "<!doctype html><title>emojivoto (linkerd demo)</title>\
<h1>emojivoto</h1><p>The local mesh's demo: <code>vote-bot</code> votes through \
<code>web</code>, which asks <code>emoji</code> and tells <code>voting</code>.</p>\
<p><a href=\"/api/list\">/api/list</a> · <a href=\"/api/results\">/api/results</a> · \
<a href=\"/api/vote?choice=:crab:\">/api/vote?choice=:crab:</a></p>";

impl Web {
    async fn handle(self, req: Request<Incoming>) -> Response<Body> {
        let query = req.uri().query().unwrap_or("");
        match req.uri().path() {
            "/" => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
            "/api/list" => {
                match self.emoji.clone().list_all(ListAllEmojiRequest {}).await {
                    Ok(rsp) => {
                        let list: Vec<_> = rsp
                        .into_inner()
                        .list
                        .into_iter()
                        .map(|e| serde_json::json!({"unicode": e.unicode, "shortcode": e.shortcode}))
                        .collect();
                        json(StatusCode::OK, serde_json::Value::Array(list))
                    }
                    Err(e) => failed(&e),
                }
            }
            "/api/results" => match self.voting.clone().results(ResultsRequest {}).await {
                Ok(rsp) => {
                    let list: Vec<_> = rsp
                        .into_inner()
                        .results
                        .into_iter()
                        .map(|r| serde_json::json!({"shortcode": r.shortcode, "votes": r.votes}))
                        .collect();
                    json(StatusCode::OK, serde_json::Value::Array(list))
                }
                Err(e) => failed(&e),
            },
            "/api/vote" => {
                let choice = form_value(query, "choice").unwrap_or_default();
                let found = self
                    .emoji
                    .clone()
                    .find_by_shortcode(FindByShortcodeRequest {
                        shortcode: choice.clone(),
                    })
                    .await;
                match found {
                    Ok(rsp) if rsp.get_ref().emoji.is_none() => json(
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"error": format!("no emoji {choice:?}")}),
                    ),
                    Ok(_) => match self
                        .voting
                        .clone()
                        .vote(VoteRequest {
                            shortcode: choice.clone(),
                        })
                        .await
                    {
                        Ok(_) => json(StatusCode::OK, serde_json::json!({"voted": choice})),
                        Err(e) => failed(&e),
                    },
                    Err(e) => failed(&e),
                }
            }
            _ => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not found"}),
            ),
        }
    }
}

/// A failed call to a backend, as a 500 saying which and why.
fn failed(e: &Status) -> Response<Body> {
    json(
        StatusCode::INTERNAL_SERVER_ERROR,
        serde_json::json!({"error": e.message()}),
    )
}

/// The value of `key` in a query string (no percent-decoding beyond `:`).
fn form_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.replace("%3A", ":").replace("%3a", ":"))
    })
}

pub(crate) async fn serve_web(listener: TcpListener, via: Via, stop: watch::Receiver<bool>) {
    let web = Web {
        emoji: EmojiServiceClient::new(through(via, "emoji-svc", 8080)),
        voting: VotingServiceClient::new(through(via, "voting-svc", 8080)),
    };
    serve(listener, stop, move |io| {
        let web = web.clone();
        async move {
            let service = service_fn(move |req| {
                let web = web.clone();
                async move { Ok::<_, std::convert::Infallible>(web.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .await;
        }
    })
    .await
}

/// What `vote-bot` has sent, for the summary.
#[derive(Default)]
pub(crate) struct BotCounts {
    pub(crate) sent: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// `vote-bot`: votes for a random emoji `rps` times a second through its
/// outbound proxy, until stopped.
pub(crate) async fn vote_bot(
    via: Via,
    rps: f64,
    counts: Arc<BotCounts>,
    stop: watch::Receiver<bool>,
) {
    if rps <= 0.0 {
        return;
    }
    // From the pod's own address, as from a pod.
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    if let Via::Proxy(outbound) = via {
        connector.set_local_address(Some(outbound.ip()));
    }
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(connector);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: usize = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(stop.clone()) => return,
        }
        // A cheap spread over the emoji, different each round.
        n = n.wrapping_mul(7).wrapping_add(3);
        let (_, choice) = EMOJI[n % EMOJI.len()];
        let uri = match via {
            Via::Proxy(outbound) => format!("http://{outbound}/api/vote?choice={choice}"),
            Via::Dns => format!(
                "http://{}/api/vote?choice={choice}",
                authority("web-svc", 80)
            ),
        };
        let Ok(req) = Request::get(uri)
            .header(http::header::HOST, authority("web-svc", 80))
            .body(http_body_util::Empty::new())
        else {
            continue;
        };
        let client = client.clone();
        let counts = counts.clone();
        // Votes overlap when web is slower than the rate: a bot does not wait.
        tokio::spawn(async move {
            counts.sent.fetch_add(1, Relaxed);
            let ok = match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await
            {
                Ok(Ok(rsp)) => {
                    let ok = rsp.status().is_success();
                    let _ = rsp.into_body().collect().await;
                    ok
                }
                _ => false,
            };
            if !ok {
                counts.failed.fetch_add(1, Relaxed);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_exactly_the_rate() {
        let votes = Votes {
            failure_rate: FailureRate::new(0.15),
            calls: AtomicU64::new(0),
            counts: Default::default(),
        };
        let failed = (0..1000).filter(|n| votes.fails(*n)).count();
        assert_eq!(failed, 150);
        // Spread out: any 20 calls in a row fail 3 times.
        assert!((0..980).all(|s| (s..s + 20).filter(|n| votes.fails(*n)).count() == 3));
        let none = Votes {
            failure_rate: FailureRate::new(0.0),
            ..votes
        };
        assert!((0..100).all(|n| !none.fails(n)));
    }

    #[test]
    fn query_values() {
        assert_eq!(
            form_value("a=1&choice=%3Acrab%3A", "choice").as_deref(),
            Some(":crab:")
        );
        assert_eq!(form_value("a=1", "choice"), None);
    }
}
