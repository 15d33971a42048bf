//! A meshed cluster of network-namespace pods: real iptables rules from
//! `linkerd-proxy-init`, proxies as uid 2102, the control plane in its own
//! namespace, and applications that know nothing of the mesh.
//!
//! Skips, saying why, where network namespaces cannot be made (not root).

use hyper_util::rt::TokioIo;
use linkerd_tests::{
    backends::{self, h2_get, http1_get},
    echo::{Msg, echo_client::EchoClient},
    mesh::identity,
    netns::{self, Netns},
    pods::{self, CONTROL_IP, Cluster, NS, Pod, PodSpec, Service},
};
use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const WEB_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const WEB: &str = "web.emojivoto.svc.cluster.local";
/// Ports of the `web` pods' applications: HTTP/1+2, gRPC, TCP echo, and one
/// that proxy-init skips inbound.
const HTTP: u16 = 8080;
const GRPC: u16 = 8081;
const ECHO: u16 = 8083;
const SKIPPED_IN: u16 = 8084;
/// An outbound port the client pod's proxy-init skips.
const SKIPPED_OUT: u16 = 9000;

macro_rules! skip_unless_namespaces {
    ($name:literal) => {
        if let Some(why) = pods::unavailable() {
            linkerd_tests::tools::skip(format!("{}: {why}", $name));
            return;
        }
    };
}

async fn bind(ip: Ipv4Addr, port: u16) -> TcpListener {
    TcpListener::bind(SocketAddr::from((ip, port)))
        .await
        .expect("bind in pod")
}

/// `web`'s applications, bound to the pod's own address so `/whoami` says
/// which pod answered.
async fn web_apps(ip: Ipv4Addr) {
    backends::http_on(bind(ip, HTTP).await);
    backends::grpc_echo_on(bind(ip, GRPC).await);
    backends::tcp_echo_on(bind(ip, ECHO).await);
    backends::http_on(bind(ip, SKIPPED_IN).await);
}

fn services() -> Vec<Service> {
    vec![Service {
        name: "web",
        cluster_ip: WEB_IP,
        ports: vec![(80, HTTP), (GRPC, GRPC), (ECHO, ECHO)],
        app: "web",
    }]
}

/// The meshed client pod, `vote-bot`, with extra proxy-init flags.
fn client_spec(init_args: Vec<String>) -> PodSpec {
    PodSpec {
        app: "vote-bot",
        meshed: true,
        init_args,
        ..Default::default()
    }
}

/// `webs` pods of `web` (from 198.18.0.10 up), then the client pod.
async fn web_and_client(cluster: &mut Cluster, webs: usize, client: PodSpec) -> (Vec<Pod>, Pod) {
    let mut pods = Vec::new();
    for i in 0..webs {
        pods.push(cluster.pod(&format!("web-{i}"), web_spec(), web_apps).await);
    }
    let client = cluster.pod("vote-bot", client, |_| async {}).await;
    (pods, client)
}

fn web_spec() -> PodSpec {
    PodSpec {
        app: "web",
        meshed: true,
        init_args: vec![format!("--inbound-ports-to-ignore={SKIPPED_IN}")],
        ..Default::default()
    }
}

/// What the client application does: call `web` by name (its cluster IP,
/// as DNS would give it) over every protocol: 22 HTTP requests, one gRPC
/// call, four TCP connections. Returns which pods answered the HTTP/1
/// requests and the headers one of them saw.
async fn client_calls() -> (BTreeSet<String>, String) {
    let http = SocketAddr::from((WEB_IP, 80));
    let mut answered = BTreeSet::new();
    for _ in 0..20 {
        let (status, body) = http1_get(http, WEB, "/whoami").await;
        assert_eq!(status, 200, "{body}");
        answered.insert(body);
    }
    let (status, headers) = http1_get(http, WEB, "/headers").await;
    assert_eq!(status, 200);
    let (status, body) = h2_get(http, WEB, "/headers").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("version: HTTP/2.0"), "{body}");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{WEB}:{GRPC}"))
        .unwrap()
        .connect_with_connector(tower_connector(SocketAddr::from((WEB_IP, GRPC))))
        .await
        .unwrap();
    let mut grpc = EchoClient::new(channel);
    let rsp = grpc
        .unary(Msg {
            text: "meshed".into(),
            count: 1,
        })
        .await
        .unwrap();
    assert_eq!(rsp.into_inner().text, "meshed");

    // Opaque TCP, balanced per connection by open connections: four held
    // at once spread over both pods.
    let mut held = Vec::new();
    for i in 0..4u8 {
        let mut tcp = TcpStream::connect(SocketAddr::from((WEB_IP, ECHO)))
            .await
            .unwrap();
        let msg = [0u8, 1, b'm', b'e', b's', b'h', i];
        tcp.write_all(&msg).await.unwrap();
        let mut echoed = [0u8; 7];
        tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut echoed))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(echoed, msg);
        held.push(tcp);
    }
    drop(held);
    (answered, headers)
}

/// A tonic connector that dials `addr` whatever the URI says: the channel's
/// authority stays the service's name, as DNS would leave it.
fn tower_connector(
    addr: SocketAddr,
) -> impl tower::Service<
    http::Uri,
    Response = TokioIo<TcpStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<TcpStream>>> + Send,
> + Send
+ Clone
+ 'static {
    tower::service_fn(move |_: http::Uri| async move {
        TcpStream::connect(addr).await.map(TokioIo::new)
    })
}

#[tokio::test]
async fn pods_mesh_by_name_over_every_protocol_with_mtls() {
    skip_unless_namespaces!("pods_mesh_by_name_over_every_protocol_with_mtls");
    let mut cluster = Cluster::start(services()).await;
    let (webs, client) = web_and_client(
        &mut cluster,
        2,
        client_spec(vec![format!("--outbound-ports-to-ignore={SKIPPED_OUT}")]),
    )
    .await;
    let [web0, web1]: [Pod; 2] = webs.try_into().ok().unwrap();
    assert_eq!(
        (web0.ip, web1.ip),
        (Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 11))
    );

    // Destination learns the pods once they are ready: wait for it.
    let (answered, headers) = client.run(client_calls()).await;
    let pods = BTreeSet::from([web0.addr(HTTP).to_string(), web1.addr(HTTP).to_string()]);
    assert!(answered.is_subset(&pods), "{answered:?}");
    let client_id = identity(NS, "vote-bot");
    assert!(
        headers.contains(&format!("l5d-client-id: {client_id}")),
        "{headers}"
    );

    // mTLS, as both sides' metrics say.
    let m = client.metrics().await;
    let web_id = identity(NS, "web");
    let out = [
        ("direction", "outbound"),
        ("tls", "true"),
        ("server_id", web_id.as_str()),
    ];
    assert_eq!(m.sum("request_total", &out), 23.0, "{}", m.text);
    let tcp_out = [
        ("direction", "outbound"),
        ("peer", "dst"),
        ("tls", "true"),
        ("server_id", web_id.as_str()),
        ("dst_service", "web"),
    ];
    for pod in ["web-0", "web-1"] {
        let to_pod = [tcp_out.as_slice(), &[("dst_pod", pod)]].concat();
        assert!(
            m.sum("tcp_open_total", &to_pod) >= 2.0,
            "opaque TCP balanced over both pods: {}",
            m.text
        );
    }
    // The proxy's own connections to the control plane were not looped
    // back into its outbound listener.
    for port in [pods::DESTINATION_PORT, pods::IDENTITY_PORT] {
        let control = SocketAddr::from((CONTROL_IP, port)).to_string();
        assert!(
            !m.has("tcp_open_total", &[("target_addr", control.as_str())]),
            "{}",
            m.text
        );
    }
    let mut inbound = 0.0;
    let mut opaque = 0.0;
    for pod in [&web0, &web1] {
        let m = pod.metrics().await;
        let labels = [
            ("direction", "inbound"),
            ("tls", "true"),
            ("client_id", client_id.as_str()),
        ];
        inbound += m.sum("request_total", &labels);
        let echo = pod.addr(ECHO).to_string();
        opaque += m.sum(
            "tcp_open_total",
            &[
                ("peer", "src"),
                ("target_addr", echo.as_str()),
                ("tls", "true"),
                ("client_id", client_id.as_str()),
            ],
        );
        assert_eq!(
            m.sum("request_total", &[("tls", "no_identity")]),
            0.0,
            "{}",
            m.text
        );
    }
    assert_eq!(inbound, 23.0);
    assert_eq!(opaque, 4.0);

    // Skipped ports: the client's outbound 9000 leaves without its proxy,
    // and web-0's inbound 8084 reaches the application without web-0's.
    let outside = cluster
        .pod(
            "outside",
            PodSpec {
                app: "outside",
                ..Default::default()
            },
            |ip| async move {
                backends::http_on(bind(ip, SKIPPED_OUT).await);
                backends::http_on(bind(ip, SKIPPED_OUT + 1).await);
            },
        )
        .await;
    let (skipped, counted) = (outside.addr(SKIPPED_OUT), outside.addr(SKIPPED_OUT + 1));
    let peers = client
        .run(async move {
            let a = http1_get(skipped, "outside", "/peer").await;
            let b = http1_get(counted, "outside", "/peer").await;
            (a, b)
        })
        .await;
    assert_eq!((peers.0.0, peers.1.0), (200, 200));
    let m = client.metrics().await;
    assert!(!m.has(
        "tcp_open_total",
        &[("target_addr", skipped.to_string().as_str())]
    ));
    assert_eq!(
        m.sum(
            "request_total",
            &[("target_addr", counted.to_string().as_str())]
        ),
        1.0,
        "{}",
        m.text
    );
    let direct = web0.addr(SKIPPED_IN);
    let (status, peer) = outside.run(http1_get(direct, "web", "/peer")).await;
    assert_eq!(status, 200);
    assert!(peer.starts_with("198.18.0.13:"), "the app saw {peer}");
    let m = web0.metrics().await;
    assert!(!m.has(
        "tcp_open_total",
        &[("target_addr", direct.to_string().as_str())]
    ));

    // Without its proxy a pod is unreachable, not bypassed.
    let mut web0 = web0;
    let proxy = web0.proxy.take().unwrap();
    proxy.sigterm();
    assert!(proxy.wait(Duration::from_secs(10)).await.success());
    let target = web0.addr(HTTP);
    let refused = outside
        .run(async move {
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await
        })
        .await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "web-0's application was reachable without its proxy: {refused:?}"
    );
    drop((web0, web1, client, outside, cluster));
}

#[tokio::test]
async fn tap_shows_every_request_a_client_sends_with_its_fields() {
    use linkerd_proxy_api::{
        tap::tap_event::{self, http::Event},
        tap_controller::{Resource, TapRequest, tap_by_resource_client::TapByResourceClient},
    };
    skip_unless_namespaces!("tap_shows_every_request_a_client_sends_with_its_fields");
    let mut cluster = Cluster::start(services()).await;
    let (_webs, client) = web_and_client(&mut cluster, 2, client_spec(vec![])).await;

    // Tap deploy/web from inside the client pod (any pod reaches the
    // control plane), then send known traffic.
    let tap = SocketAddr::from((CONTROL_IP, pods::TAP_PORT));
    let events = client
        .run(async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{tap}"))
                .unwrap()
                .connect()
                .await
                .expect("tap controller");
            let mut tap = TapByResourceClient::new(channel);
            let req = TapRequest {
                target: Some(Resource {
                    r#type: "deploy".into(),
                    namespace: NS.into(),
                    name: "web".into(),
                }),
                max_rps: 1000.0,
                ..Default::default()
            };
            let mut stream = tap.tap(req).await.expect("tap").into_inner();
            let http = SocketAddr::from((WEB_IP, 80));
            for i in 0..6 {
                let (status, _) = http1_get(http, WEB, &format!("/whoami?n={i}")).await;
                assert_eq!(status, 200);
            }
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{WEB}:{GRPC}"))
                .unwrap()
                .connect_with_connector(tower_connector(SocketAddr::from((WEB_IP, GRPC))))
                .await
                .unwrap();
            let mut grpc = EchoClient::new(channel);
            for _ in 0..2 {
                grpc.unary(Msg {
                    text: "tapped".into(),
                    count: 1,
                })
                .await
                .unwrap();
            }
            let mut events = Vec::new();
            let ends = |events: &Vec<linkerd_proxy_api::tap::TapEvent>| {
                events
                    .iter()
                    .filter(|e| matches!(event(e), Some(Event::ResponseEnd(_))))
                    .count()
            };
            while ends(&events) < 8 {
                let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .expect("tap events in time")
                    .expect("tap stream")
                    .expect("an event");
                events.push(next);
            }
            events
        })
        .await;

    fn event(e: &linkerd_proxy_api::tap::TapEvent) -> Option<&Event> {
        match &e.event {
            Some(tap_event::Event::Http(h)) => h.event.as_ref(),
            None => None,
        }
    }
    let client_id = identity(NS, "vote-bot");
    let mut paths = BTreeSet::new();
    let mut statuses = Vec::new();
    let mut grpc_ok = 0;
    for e in &events {
        assert_eq!(e.proxy_direction, tap_event::ProxyDirection::Inbound as i32);
        let src = &e.source_meta.as_ref().unwrap().labels;
        assert_eq!(
            src.get("pod").map(String::as_str),
            Some("vote-bot"),
            "{e:?}"
        );
        assert_eq!(src.get("tls").map(String::as_str), Some("true"));
        assert_eq!(src.get("client_id"), Some(&client_id));
        let dst = &e.destination_meta.as_ref().unwrap().labels;
        assert_eq!(
            dst.get("deployment").map(String::as_str),
            Some("web"),
            "{e:?}"
        );
        match event(e) {
            Some(Event::RequestInit(init)) => {
                assert_eq!(init.authority.split(':').next(), Some(WEB));
                paths.insert(init.path.clone());
            }
            Some(Event::ResponseInit(rsp)) => statuses.push(rsp.http_status),
            Some(Event::ResponseEnd(end)) => {
                if let Some(linkerd_proxy_api::tap::eos::End::GrpcStatusCode(0)) =
                    end.eos.as_ref().and_then(|e| e.end)
                {
                    grpc_ok += 1;
                }
            }
            None => panic!("empty event"),
        }
    }
    assert_eq!(
        paths,
        BTreeSet::from([
            "/whoami".to_string(),
            "/linkerd.test.echo.Echo/Unary".to_string()
        ])
    );
    assert_eq!(statuses, vec![200; 8]);
    assert_eq!(grpc_ok, 2);
}

/// Outbound, a balanced request's events name the endpoint the balancer
/// chose (a web pod, its TLS and labels), not the service's cluster IP,
/// as an endpoint-level tap would.
#[tokio::test]
async fn outbound_tap_names_the_chosen_endpoint() {
    use linkerd_proxy_api::{
        tap::tap_event::{self, http::Event},
        tap_controller::{Resource, TapRequest, tap_by_resource_client::TapByResourceClient},
    };
    skip_unless_namespaces!("outbound_tap_names_the_chosen_endpoint");
    let mut cluster = Cluster::start(services()).await;
    let (webs, client) = web_and_client(&mut cluster, 2, client_spec(vec![])).await;
    let web_ips: BTreeSet<std::net::IpAddr> = webs.iter().map(|p| p.ip.into()).collect();
    let tap = SocketAddr::from((CONTROL_IP, pods::TAP_PORT));
    let events = client
        .run(async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{tap}"))
                .unwrap()
                .connect()
                .await
                .expect("tap controller");
            let req = TapRequest {
                target: Some(Resource {
                    r#type: "pod".into(),
                    namespace: NS.into(),
                    name: "vote-bot".into(),
                }),
                max_rps: 1000.0,
                ..Default::default()
            };
            // The tap controller reads the topology as it is polled: the pod
            // that just joined may be unknown to it for a moment.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut stream = loop {
                match TapByResourceClient::new(channel.clone())
                    .tap(req.clone())
                    .await
                {
                    Ok(rsp) => break rsp.into_inner(),
                    Err(s)
                        if s.code() == tonic::Code::NotFound
                            && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(s) => panic!("tap: {s:?}"),
                }
            };
            for i in 0..4 {
                let (status, _) = http1_get(
                    SocketAddr::from((WEB_IP, 80)),
                    WEB,
                    &format!("/whoami?n={i}"),
                )
                .await;
                assert_eq!(status, 200);
            }
            let mut inits = Vec::new();
            while inits.len() < 4 {
                let e = tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .expect("tap events in time")
                    .expect("tap stream")
                    .expect("an event");
                if let Some(tap_event::Event::Http(h)) = &e.event
                    && matches!(h.event, Some(Event::RequestInit(_)))
                {
                    inits.push(e);
                }
            }
            inits
        })
        .await;
    for e in &events {
        assert_eq!(
            e.proxy_direction,
            tap_event::ProxyDirection::Outbound as i32
        );
        let dst = std::net::SocketAddr::try_from(e.destination.as_ref().unwrap()).unwrap();
        assert!(web_ips.contains(&dst.ip()), "{dst} is not a web pod: {e:?}");
        assert_eq!(dst.port(), HTTP);
        let labels = &e.destination_meta.as_ref().unwrap().labels;
        assert_eq!(labels.get("tls").map(String::as_str), Some("true"), "{e:?}");
        assert_eq!(labels.get("server_id"), Some(&identity(NS, "web")), "{e:?}");
        assert_eq!(
            labels.get("deployment").map(String::as_str),
            Some("web"),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn linkerd_tap_prints_every_request_the_test_sent() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    skip_unless_namespaces!("linkerd_tap_prints_every_request_the_test_sent");
    let mut cluster = Cluster::start(services()).await;
    let (_webs, client) = web_and_client(&mut cluster, 1, client_spec(vec![])).await;
    let mut argv = cluster.control_prefix();
    argv.push(linkerd_tests::proxy::bin("linkerd").display().to_string());
    let tap = SocketAddr::from((CONTROL_IP, pods::TAP_PORT)).to_string();
    argv.extend(
        [
            "tap",
            "deploy/web",
            "-n",
            NS,
            "--api-addr",
            &tap,
            "-o",
            "wide",
        ]
        .map(String::from),
    );
    let mut cli = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    // A second tap whose filter matches none of the traffic.
    let quiet_argv: Vec<String> = argv
        .iter()
        .cloned()
        .chain(["--path".to_string(), "/nothing/".to_string()])
        .collect();
    let mut quiet = tokio::process::Command::new(&quiet_argv[0])
        .args(&quiet_argv[1..])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut quiet_lines = BufReader::new(quiet.stdout.take().unwrap()).lines();

    // Warm up until tap is listening, then send the known requests.
    let http = SocketAddr::from((WEB_IP, 80));
    let warm = async {
        loop {
            client.run(http1_get(http, WEB, "/warmup")).await;
            let seen = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await;
            if let Ok(Ok(Some(line))) = seen
                && line.contains(":path=/warmup")
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), warm)
        .await
        .expect("linkerd tap printed nothing");
    let sent: Vec<String> = (0..5).map(|i| format!("/tapped/{i}")).collect();
    for path in sent.clone() {
        let (status, _) = client
            .run(async move { http1_get(http, WEB, &path).await })
            .await;
        assert_eq!(status, 200);
    }
    // gRPC: one call that succeeds, one that fails with NotFound.
    client
        .run(async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{WEB}:{GRPC}"))
                .unwrap()
                .connect_with_connector(tower_connector(SocketAddr::from((WEB_IP, GRPC))))
                .await
                .unwrap();
            let mut grpc = EchoClient::new(channel);
            let msg = Msg {
                text: "tapped".into(),
                count: 5,
            };
            grpc.unary(msg.clone()).await.unwrap();
            assert_eq!(
                grpc.fail(msg).await.unwrap_err().code(),
                tonic::Code::NotFound
            );
        })
        .await;
    let grpc_paths = [
        "/linkerd.test.echo.Echo/Unary".to_string(),
        "/linkerd.test.echo.Echo/Fail".to_string(),
    ];
    let sent: Vec<String> = sent.into_iter().chain(grpc_paths.clone()).collect();
    let mut seen = Vec::new();
    let collect = async {
        // Warm-up requests may still be arriving: count the known ones' ends
        // by their ids once their req lines are in.
        while !sent.iter().all(|path| {
            seen.iter()
                .find(|l: &&String| l.starts_with("req ") && l.contains(&format!(":path={path} ")))
                .and_then(|req| req.split(' ').nth(1))
                .is_some_and(|id| seen.iter().any(|l| l.starts_with(&format!("end {id} "))))
        }) {
            let line = lines.next_line().await.unwrap().expect("tap kept running");
            seen.push(line);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), collect).await;
    let text = seen.join("\n");
    for path in &sent {
        let grpc = grpc_paths.contains(path);
        let req = seen
            .iter()
            .find(|l| l.starts_with("req ") && l.contains(&format!(":path={path} ")))
            .unwrap_or_else(|| panic!("no req line for {path}:\n{text}"));
        assert!(req.contains("proxy=in "), "{req}");
        assert!(req.contains("tls=true"), "{req}");
        let method = if grpc { ":method=POST" } else { ":method=GET" };
        assert!(req.contains(method), "{req}");
        assert!(req.contains(&format!(":authority={WEB}")), "{req}");
        assert!(req.contains("src_res=deploy/vote-bot"), "{req}");
        assert!(req.contains("dst_res=deploy/web"), "{req}");
        let id = req.split(' ').nth(1).unwrap();
        let rsp = seen
            .iter()
            .find(|l| l.starts_with(&format!("rsp {id} ")))
            .unwrap_or_else(|| panic!("no rsp line for {id}:\n{text}"));
        assert!(rsp.contains(":status=200 latency="), "{rsp}");
        let end = seen
            .iter()
            .find(|l| l.starts_with(&format!("end {id} ")))
            .unwrap_or_else(|| panic!("no end line for {id}:\n{text}"));
        if grpc {
            let status = if path.ends_with("/Fail") {
                "grpc-status=NotFound"
            } else {
                "grpc-status=OK"
            };
            assert!(end.contains(status), "{end}");
        } else {
            assert!(end.contains("response-length=5B"), "{end}");
        }
    }
    // The filter that matched nothing printed nothing.
    let nothing = tokio::time::timeout(Duration::from_millis(300), quiet_lines.next_line()).await;
    assert!(
        nothing.is_err(),
        "a filter matching nothing printed {nothing:?}"
    );
    drop((cli, quiet));
}

#[tokio::test]
async fn linkerd_top_shows_the_busiest_paths_in_a_terminal() {
    use std::{
        io::{Read, Write},
        sync::{Arc, Mutex},
    };
    skip_unless_namespaces!("linkerd_top_shows_the_busiest_paths_in_a_terminal");
    let mut cluster = Cluster::start(services()).await;
    let (_webs, client) = web_and_client(&mut cluster, 1, client_spec(vec![])).await;

    // A real pseudo-terminal, 40x160, read through a terminal emulator.
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
    let mut argv = cluster.control_prefix();
    argv.push(linkerd_tests::proxy::bin("linkerd").display().to_string());
    let tap = SocketAddr::from((CONTROL_IP, pods::TAP_PORT)).to_string();
    argv.extend(["top", "deploy/web", "-n", NS, "--api-addr", &tap].map(String::from));
    let slave = std::fs::File::from(pty.slave);
    let mut top = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let screen = Arc::new(Mutex::new(vt100::Parser::new(40, 160, 0)));
    let mut master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let feed = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            feed.lock().unwrap().process(&buf[..n]);
        }
    });
    let contents = || screen.lock().unwrap().screen().contents();
    let header = linkerd_tests::eventually(Duration::from_secs(10), || async {
        contents().contains("Success Rate").then_some(())
    })
    .await;
    assert!(header.is_some(), "no table drawn:\n{}", contents());

    // Three requests to /busy and one to /quiet, sent until top shows them
    // (its tap may start after the first ones).
    let http = SocketAddr::from((WEB_IP, 80));
    let shown = linkerd_tests::eventually(Duration::from_secs(15), || async {
        for path in ["/busy", "/busy", "/busy", "/quiet"] {
            client.run(http1_get(http, WEB, path)).await;
        }
        let text = contents();
        let row = |path: &str| {
            text.lines().find(|l| l.contains(path)).map(|l| {
                l.trim_matches('│')
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
        };
        match (row("/busy"), row("/quiet")) {
            (Some(busy), Some(quiet)) => Some((busy, quiet, text)),
            _ => None,
        }
    })
    .await;
    let (busy, quiet, text) =
        shown.unwrap_or_else(|| panic!("rows never appeared:\n{}", contents()));
    // Source, Destination, Method, Path, Count, Best, Worst, Last, Success Rate.
    let cells: Vec<&str> = busy.iter().map(String::as_str).collect();
    assert_eq!(&cells[..4], ["vote-bot", "web-0", "GET", "/busy"], "{text}");
    let busy_count: u64 = cells[4].parse().unwrap();
    let quiet_cells: Vec<&str> = quiet.iter().map(String::as_str).collect();
    let quiet_count: u64 = quiet_cells[4].parse().unwrap();
    // Three /busy per /quiet in each round; top may start tapping just
    // before a round's /quiet, so that one may have no /busy before it.
    assert!(busy_count >= 3 * (quiet_count - 1), "{text}");
    assert_eq!(cells[8], "100.00%", "{text}");
    // Sorted by count: /busy above /quiet.
    let (busy_at, quiet_at) = (text.find("/busy").unwrap(), text.find("/quiet").unwrap());
    assert!(busy_at < quiet_at, "{text}");

    // q quits, cleanly.
    master.write_all(b"q").unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), top.wait())
        .await
        .expect("top quits on q")
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn proxy_init_is_idempotent_and_simulates() {
    skip_unless_namespaces!("proxy_init_is_idempotent_and_simulates");
    let init = linkerd_tests::proxy::bin("linkerd-proxy-init")
        .display()
        .to_string();
    let args = [
        "--inbound-ports-to-ignore=22,8000-8100",
        "--outbound-ports-to-ignore=5432",
        "--subnets-to-ignore=10.0.0.0/8",
    ];
    let simulated = netns::run(&init, &[&["--simulate"], &args[..]].concat()).unwrap();
    let simulated = String::from_utf8(simulated.stdout).unwrap();
    assert!(simulated.contains(
        "-A PROXY_INIT_REDIRECT -p tcp -m multiport --dports 22,4190,4191,8000:8100 -m comment --comment proxy-init/ignore-port-22,4190,4191,8000:8100 -j RETURN"
    ), "{simulated}");
    assert!(simulated.contains("--to-ports 4143") && simulated.contains("--to-ports 4140"));

    // Both iptables back ends, where installed.
    let mut tried = 0;
    for mode in ["nft", "legacy"] {
        let save_bin = format!("iptables-{mode}-save");
        if netns::run("sh", &["-c", &format!("command -v {save_bin}")]).is_err() {
            eprintln!("proxy_init_is_idempotent_and_simulates: no {save_bin}; {mode} not tried");
            continue;
        }
        tried += 1;
        let ns = Netns::create(mode).unwrap();
        let mut argv = ns.prefix();
        argv.push(init.clone());
        argv.push(format!("--iptables-mode={mode}"));
        argv.extend(args.iter().map(|a| a.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let save = || {
            let out = ns.exec(&[&save_bin, "-t", "nat"]).unwrap();
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("-A "))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        netns::run(argv[0], &argv[1..]).unwrap();
        let once = save();
        netns::run(argv[0], &argv[1..]).unwrap();
        let twice = save();
        assert_eq!(once, twice, "{mode}: a second run changed the rules");
        let unique: BTreeSet<&String> = twice.iter().collect();
        assert_eq!(
            unique.len(),
            twice.len(),
            "{mode}: a rule appears twice: {twice:#?}"
        );
        assert_eq!(twice.len(), 9, "{mode}: {twice:#?}");
        for rule in &twice {
            assert!(rule.contains("proxy-init/"), "{mode}: uncommented: {rule}");
        }

        // A refusal changes nothing: an IPv6 network in the IPv4 table.
        let bad = netns::run(
            argv[0],
            &[&argv[1..], &["--subnets-to-ignore=fd00::/8"][..]].concat(),
        );
        let e = bad.unwrap_err().to_string();
        assert!(e.contains("linkerd-proxy-init:"), "{e}");
        assert_eq!(save(), twice, "{mode}: a refused run changed the rules");
    }
    assert!(
        tried > 0,
        "neither iptables-nft nor iptables-legacy is installed"
    );
}

#[tokio::test]
async fn proxy_init_refuses_bad_flags_with_one_line() {
    let init = linkerd_tests::proxy::bin("linkerd-proxy-init")
        .display()
        .to_string();
    for bad in [
        "--inbound-ports-to-ignore=99999",
        "--outbound-ports-to-ignore=80-20",
        "--subnets-to-ignore=10.0.0.0/33",
        "--proxy-uid=root",
        "--iptables-mode=ebpf",
    ] {
        let out = std::process::Command::new(&init)
            .args([bad, "--simulate"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error: invalid value"),
            "{bad}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{bad} printed rules");
    }
    // No iptables at all: one line saying so, exit 1.
    let out = std::process::Command::new(&init)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "linkerd-proxy-init: cannot run iptables-save: No such file or directory (os error 2) (is iptables installed?)"
    );
}
