//! The policy service across binaries: `linkerd-controller policy` on a
//! topology file holding Linkerd's policy resources, asked with Linkerd2's
//! own `linkerd2-proxy-api` client, as a Linkerd proxy would ask it.

use linkerd_tests::{
    backends::{self, http1_get},
    controller::{Backend, Controller},
    eventually,
    mesh::{self, Mesh, identity},
    proxy::Proxy,
};
use linkerd2_proxy_api::inbound::{
    PortSpec, Server, authn::Permit, authn::permit_mesh_tls::Clients,
    inbound_server_policies_client::InboundServerPoliciesClient, proxy_protocol::Kind,
};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tonic::{Code, transport::Channel};

const PODS: &str = r#"
pods:
- {name: web-0, namespace: emojivoto, ip: 127.0.20.1, labels: {app: web}, ports: {http: 8080}, serviceAccount: web, meshed: true}
- {name: locked-0, namespace: emojivoto, ip: 127.0.20.2, labels: {app: locked}, annotations: {config.linkerd.io/default-inbound-policy: deny}, meshed: true}
"#;

const SERVER: &str = r#"
servers:
- apiVersion: policy.linkerd.io/v1beta3
  kind: Server
  metadata: {name: web-http, namespace: emojivoto}
  spec:
    podSelector: {matchLabels: {app: web}}
    port: http
    proxyProtocol: HTTP/1
"#;

const ONLY_VOTE_BOT: &str = r#"
authorizationPolicies:
- apiVersion: policy.linkerd.io/v1alpha1
  kind: AuthorizationPolicy
  metadata: {name: web-from-bot, namespace: emojivoto}
  spec:
    targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
    requiredAuthenticationRefs:
    - {group: policy.linkerd.io, kind: MeshTLSAuthentication, name: bot}
meshTLSAuthentications:
- apiVersion: policy.linkerd.io/v1alpha1
  kind: MeshTLSAuthentication
  metadata: {name: bot, namespace: emojivoto}
  spec:
    identityRefs: [{kind: ServiceAccount, name: vote-bot}]
"#;

fn spec(pod: &str, port: u32) -> PortSpec {
    PortSpec {
        workload: format!(r#"{{"ns":"emojivoto","pod":"{pod}"}}"#),
        port,
    }
}

async fn client(ctl: &Controller) -> InboundServerPoliciesClient<Channel> {
    InboundServerPoliciesClient::connect(format!("http://{}", ctl.grpc))
        .await
        .expect("connect to the policy service")
}

/// The identities a server's first authorization admits (empty: any
/// client, meshed or not).
fn admitted(server: &Server) -> Vec<String> {
    let authn = server.authorizations[0].authentication.as_ref().unwrap();
    match &authn.permit {
        Some(Permit::MeshTls(tls)) => match &tls.clients {
            Some(Clients::Identities(ids)) => {
                ids.identities.iter().map(|i| i.name.clone()).collect()
            }
            other => panic!("{other:?}"),
        },
        _ => Vec::new(),
    }
}

linkerd_tests::on_both_backends!(
    a_server_with_its_authorization_and_the_default_elsewhere,
    bad_questions_are_named,
    watch_port_streams_policy_edits,
);

/// The first answer for `port` of `pod` that satisfies `ok`: a Kubernetes
/// backend answers once its reflectors have listed.
async fn port_when(
    client: &InboundServerPoliciesClient<Channel>,
    pod: &str,
    port: u32,
    ok: impl Fn(&Server) -> bool,
) -> Server {
    eventually(Duration::from_secs(10), || {
        let mut client = client.clone();
        let ok = &ok;
        async move {
            let s = client.get_port(spec(pod, port)).await.ok()?.into_inner();
            ok(&s).then_some(s)
        }
    })
    .await
    .unwrap_or_else(|| panic!("no answer as expected for {pod}:{port}"))
}

async fn a_server_with_its_authorization_and_the_default_elsewhere(backend: Backend) {
    let ctl = Controller::policy_on(backend, &format!("{PODS}{SERVER}{ONLY_VOTE_BOT}")).await;
    let mut client = client(&ctl).await;

    let web = port_when(&client, "web-0", 8080, |s| s.authorizations.len() == 1).await;
    assert_eq!(web.labels["name"], "web-http");
    assert!(matches!(
        web.protocol.as_ref().unwrap().kind,
        Some(Kind::Http1(_))
    ));
    assert_eq!(web.authorizations.len(), 1);
    assert_eq!(web.authorizations[0].labels["name"], "web-from-bot");
    assert_eq!(
        admitted(&web),
        ["vote-bot.emojivoto.serviceaccount.identity.linkerd.cluster.local"]
    );

    // Another port of the pod: the cluster's default, detect and admit all.
    let other = client
        .get_port(spec("web-0", 9999))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.labels["kind"], "default");
    assert_eq!(other.labels["name"], "all-unauthenticated");
    assert!(matches!(
        other.protocol.as_ref().unwrap().kind,
        Some(Kind::Detect(_))
    ));
    assert!(admitted(&other).is_empty());

    // A pod annotated deny: no authorization at all.
    let locked = client
        .get_port(spec("locked-0", 8080))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(locked.labels["name"], "deny");
    assert!(locked.authorizations.is_empty());
}

async fn bad_questions_are_named(backend: Backend) {
    let ctl = Controller::policy_on(backend, PODS).await;
    let mut client = client(&ctl).await;
    port_when(&client, "web-0", 8080, |_| true).await;
    let unknown = client.get_port(spec("nope-0", 80)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let garbled = client
        .get_port(PortSpec {
            workload: "web-0".into(),
            port: 80,
        })
        .await
        .unwrap_err();
    assert_eq!(garbled.code(), Code::InvalidArgument, "{garbled:?}");
    assert!(garbled.message().contains("web-0"), "{garbled:?}");
}

/// A policy edit reaches a watching proxy without restarting anything: the
/// authorization removed, the server admits no one.
async fn watch_port_streams_policy_edits(backend: Backend) {
    let ctl = Controller::policy_on(backend, &format!("{PODS}{SERVER}{ONLY_VOTE_BOT}")).await;
    let mut client = client(&ctl).await;
    port_when(&client, "web-0", 8080, |s| s.authorizations.len() == 1).await;
    let mut stream = client
        .watch_port(spec("web-0", 8080))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.authorizations.len(), 1);

    ctl.set_topology(&format!("{PODS}{SERVER}"));
    let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the edit reached the stream")
        .unwrap()
        .unwrap();
    assert_eq!(next.labels["name"], "web-http");
    assert!(next.authorizations.is_empty(), "{next:?}");
}

// === Enforcement: the proxy follows the policy service ===

const NS: &str = "emojivoto";
const WEB: &str = "web.emojivoto.svc.cluster.local:80";
const WEB_POD: &str = r#"{"ns":"emojivoto","pod":"web-0"}"#;

/// The policy world of `web-0`, whose application listens on `app_port`
/// (its container port `http`), with `rest` (servers, policies) added.
fn web_policy(app_port: u16, rest: &str) -> String {
    format!(
        "pods:\n- {{name: web-0, namespace: emojivoto, ip: 127.0.20.1, labels: {{app: web}}, ports: {{http: {app_port}}}, serviceAccount: web, meshed: true}}\n{rest}"
    )
}

/// Destination's world: `web`'s one endpoint is its proxy.
fn web_service(endpoint: SocketAddr) -> String {
    format!(
        "services:\n  - {{name: web, namespace: {NS}, clusterIP: 127.0.10.1, selector: {{app: web}}, ports: [{{port: 80, targetPort: app}}]}}\npods:\n  - {{name: web-0, namespace: {NS}, ip: {}, labels: {{app: web}}, ports: {{app: {}}}, owner: {{kind: Deployment, name: web}}, serviceAccount: web, meshed: true}}\n",
        endpoint.ip(),
        endpoint.port()
    )
}

/// `web`'s proxy, enforcing what `policy` says for `web-0`.
async fn web_proxy(mesh: &Mesh, policy: &Controller, app: SocketAddr, default: &str) -> Proxy {
    let proxy = mesh
        .proxy(NS, "web")
        .inbound_target(app)
        .env("LINKERD2_PROXY_POLICY_SVC_ADDR", policy.grpc)
        .env("LINKERD2_PROXY_POLICY_WORKLOAD", WEB_POD)
        .env("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY", default)
        .env("LINKERD2_PROXY_INBOUND_PORTS", app.port())
        .spawn()
        .await;
    mesh::ready(&proxy).await;
    proxy
}

/// A meshed client pod of ServiceAccount `sa`, finding `web` through `dst`.
async fn client_proxy(mesh: &Mesh, sa: &str, dst: &Controller) -> Proxy {
    let proxy = mesh
        .proxy(NS, sa)
        .outbound_target("127.0.10.1:80".parse().unwrap())
        .env("LINKERD2_PROXY_DESTINATION_SVC_ADDR", dst.grpc)
        .spawn()
        .await;
    mesh::ready(&proxy).await;
    proxy
}

async fn app_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Only vote-bot's identity on web's Server: vote-bot is served, a meshed
/// client with another identity gets 403 and is counted as denied, an
/// unmeshed client is refused too; an edit that admits the other identity
/// applies to its next request, with nothing restarted.
#[tokio::test]
async fn only_the_authorized_identity_reaches_the_application() {
    let mesh = Mesh::start(&[(NS, "web"), (NS, "vote-bot"), (NS, "emoji")], &[]).await;
    let (listener, port) = app_listener().await;
    let app = backends::http_on(listener);
    let policy = Controller::policy(&web_policy(port, &format!("{SERVER}{ONLY_VOTE_BOT}"))).await;
    let web = web_proxy(&mesh, &policy, app, "all-unauthenticated").await;
    let dst = Controller::destination(&web_service(web.inbound)).await;
    let bot = client_proxy(&mesh, "vote-bot", &dst).await;
    let emoji = client_proxy(&mesh, "emoji", &dst).await;

    let (status, body) = http1_get(bot.outbound, WEB, "/headers").await;
    assert_eq!(status, 200, "vote-bot: {body}");
    let (status, body) = http1_get(emoji.outbound, WEB, "/headers").await;
    assert_eq!(status, 403, "emoji: {body}");
    let (status, _) = http1_get(web.inbound, WEB, "/headers").await;
    assert_eq!(status, 403, "an unmeshed client");

    let m = web.metrics().await;
    let bot_id = identity(NS, "vote-bot");
    let allowed = [
        ("srv_kind", "server"),
        ("srv_name", "web-http"),
        ("route_kind", "default"),
        ("route_name", "default"),
        ("authz_kind", "authorizationpolicy"),
        ("authz_name", "web-from-bot"),
        ("client_id", bot_id.as_str()),
    ];
    assert_eq!(
        m.sum("inbound_http_authz_allow_total", &allowed),
        1.0,
        "{}",
        m.text
    );
    let emoji_id = identity(NS, "emoji");
    let denied = [("srv_name", "web-http"), ("client_id", emoji_id.as_str())];
    assert_eq!(
        m.sum("inbound_http_authz_deny_total", &denied),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("inbound_http_authz_deny_total", &[("srv_name", "web-http")]),
        2.0
    );
    // The inbound series says which server and route, and shows the 403s.
    let labels = [
        ("direction", "inbound"),
        ("srv_name", "web-http"),
        ("status_code", "403"),
    ];
    assert_eq!(m.sum("response_total", &labels), 2.0, "{}", m.text);

    // Admit emoji as well: its next request passes, nothing restarted.
    let both = ONLY_VOTE_BOT.replace(
        "identityRefs: [{kind: ServiceAccount, name: vote-bot}]",
        "identityRefs: [{kind: ServiceAccount, name: vote-bot}, {kind: ServiceAccount, name: emoji}]",
    );
    policy.set_topology(&web_policy(port, &format!("{SERVER}{both}")));
    let served = eventually(Duration::from_secs(10), || async {
        (http1_get(emoji.outbound, WEB, "/headers").await.0 == 200).then_some(())
    })
    .await;
    assert!(served.is_some(), "the edit never reached web's proxy");
}

/// A TCP server admitting a network: a client inside it is served, and
/// its open connection is closed when an edit takes the network away;
/// a `deny` default with the controller unreachable refuses at once.
#[tokio::test]
async fn opaque_connections_are_authorized_and_revoked() {
    let mesh = Mesh::start(&[(NS, "web")], &[]).await;
    let (listener, port) = app_listener().await;
    let app = backends::tcp_echo_on(listener);
    let opaque = |cidr: &str| {
        web_policy(
            port,
            &format!(
                r#"
servers:
- metadata: {{name: web-tcp, namespace: emojivoto}}
  spec: {{podSelector: {{matchLabels: {{app: web}}}}, port: http, proxyProtocol: opaque}}
authorizationPolicies:
- metadata: {{name: from-office, namespace: emojivoto}}
  spec:
    targetRef: {{group: policy.linkerd.io, kind: Server, name: web-tcp}}
    requiredAuthenticationRefs: [{{group: policy.linkerd.io, kind: NetworkAuthentication, name: office}}]
networkAuthentications:
- metadata: {{name: office, namespace: emojivoto}}
  spec: {{networks: [{{cidr: {cidr}}}]}}
"#
            ),
        )
    };
    let policy = Controller::policy(&opaque("127.0.0.0/8")).await;
    let web = web_proxy(&mesh, &policy, app, "deny").await;

    let mut conn = TcpStream::connect(web.inbound).await.unwrap();
    conn.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&buf, b"ping");

    // The network no longer admits loopback: the open connection closes.
    policy.set_topology(&opaque("198.18.0.0/15"));
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "{closed:?} {rest:?}"
    );
    let m = web.metrics().await;
    let server = [("srv_name", "web-tcp")];
    assert_eq!(
        m.sum(
            "inbound_tcp_authz_allow_total",
            &[("srv_name", "web-tcp"), ("authz_name", "from-office")]
        ),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("inbound_tcp_authz_terminate_total", &server),
        1.0,
        "{}",
        m.text
    );
    // And a new one is refused.
    assert!(echoes(web.inbound).await.is_none());
    let m = web.metrics().await;
    assert_eq!(
        m.sum("inbound_tcp_authz_deny_total", &server),
        1.0,
        "{}",
        m.text
    );

    // No controller at all: the default from the environment applies.
    drop(policy);
    let (listener, _) = app_listener().await;
    let app = backends::tcp_echo_on(listener);
    let unreachable = mesh
        .proxy(NS, "web")
        .inbound_target(app)
        .env("LINKERD2_PROXY_POLICY_SVC_ADDR", "127.0.0.1:1")
        .env("LINKERD2_PROXY_POLICY_WORKLOAD", WEB_POD)
        .env("LINKERD2_PROXY_INBOUND_DEFAULT_POLICY", "deny")
        .spawn()
        .await;
    mesh::ready(&unreachable).await;
    assert!(echoes(unreachable.inbound).await.is_none());
    let (status, _) = http1_get(unreachable.inbound, WEB, "/").await;
    assert_eq!(status, 403, "HTTP on a deny default");
    let m = unreachable.metrics().await;
    let default = [("srv_kind", "default"), ("srv_name", "deny")];
    assert_eq!(
        m.sum("inbound_tcp_authz_deny_total", &default),
        1.0,
        "{}",
        m.text
    );
}

/// Whether a new connection to `addr` echoes a ping.
async fn echoes(addr: SocketAddr) -> Option<()> {
    let mut conn = TcpStream::connect(addr).await.ok()?;
    conn.write_all(b"ping").await.ok()?;
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(3), conn.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    (&buf == b"ping").then_some(())
}

/// Routes of web's Server with their own policies: `GET /api/list` for
/// everyone, `POST /api/vote` for vote-bot only, nothing else at all.
#[tokio::test]
async fn route_scoped_policies_admit_per_route() {
    let mesh = Mesh::start(&[(NS, "web"), (NS, "vote-bot"), (NS, "emoji")], &[]).await;
    let (listener, port) = app_listener().await;
    let app = backends::http_on(listener);
    let routes = r#"
httpRoutes:
- apiVersion: policy.linkerd.io/v1beta3
  kind: HTTPRoute
  metadata: {name: web-list, namespace: emojivoto}
  spec:
    parentRefs: [{group: policy.linkerd.io, kind: Server, name: web-http}]
    rules:
    - matches: [{path: {type: Exact, value: /api/list}, method: GET}]
- apiVersion: policy.linkerd.io/v1beta3
  kind: HTTPRoute
  metadata: {name: web-vote, namespace: emojivoto}
  spec:
    parentRefs: [{group: policy.linkerd.io, kind: Server, name: web-http}]
    rules:
    - matches: [{path: {type: PathPrefix, value: /api/vote}, method: POST}]
authorizationPolicies:
- apiVersion: policy.linkerd.io/v1alpha1
  kind: AuthorizationPolicy
  metadata: {name: list-from-anyone, namespace: emojivoto}
  spec:
    targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: web-list}
    requiredAuthenticationRefs: []
- apiVersion: policy.linkerd.io/v1alpha1
  kind: AuthorizationPolicy
  metadata: {name: vote-from-bot, namespace: emojivoto}
  spec:
    targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: web-vote}
    requiredAuthenticationRefs:
    - {group: policy.linkerd.io, kind: MeshTLSAuthentication, name: bot}
meshTLSAuthentications:
- apiVersion: policy.linkerd.io/v1alpha1
  kind: MeshTLSAuthentication
  metadata: {name: bot, namespace: emojivoto}
  spec:
    identityRefs: [{kind: ServiceAccount, name: vote-bot}]
"#;
    let policy = Controller::policy(&web_policy(port, &format!("{SERVER}{routes}"))).await;
    let web = web_proxy(&mesh, &policy, app, "deny").await;
    let dst = Controller::destination(&web_service(web.inbound)).await;
    let bot = client_proxy(&mesh, "vote-bot", &dst).await;
    let emoji = client_proxy(&mesh, "emoji", &dst).await;

    use backends::http1;
    assert_eq!(http1(emoji.outbound, "GET", WEB, "/api/list").await.0, 200);
    assert_eq!(
        http1(web.inbound, "GET", WEB, "/api/list").await.0,
        200,
        "unmeshed"
    );
    assert_eq!(
        http1(emoji.outbound, "POST", WEB, "/api/vote/donut")
            .await
            .0,
        403
    );
    assert_eq!(
        http1(bot.outbound, "POST", WEB, "/api/vote/donut").await.0,
        200
    );
    // On no route: not found, whoever asks.
    assert_eq!(http1(bot.outbound, "GET", WEB, "/api/vote").await.0, 404);

    let m = web.metrics().await;
    let route = |name| {
        [
            ("srv_name", "web-http"),
            ("route_kind", "httproute"),
            ("route_name", name),
        ]
    };
    assert_eq!(
        m.sum("inbound_http_authz_allow_total", &route("web-list")),
        2.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("inbound_http_authz_allow_total", &route("web-vote")),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("inbound_http_authz_deny_total", &route("web-vote")),
        1.0,
        "{}",
        m.text
    );
    let list = [
        ("route_name", "web-list"),
        ("direction", "inbound"),
        ("status_code", "200"),
    ];
    assert_eq!(m.sum("response_total", &list), 2.0, "{}", m.text);
}

/// The outbound policy API, asked with Linkerd2's own client as a Linkerd
/// proxy asks it: a Service, by name or by cluster IP, is one balanced
/// backend discovered through `Destination.Get` of its name; an address
/// that is no service's is not found.
#[tokio::test]
async fn outbound_policy_balances_a_service_over_destination() {
    use linkerd2_proxy_api::{
        net::{IpAddress, TcpAddress, ip_address},
        outbound::{
            TrafficSpec, backend, http_route::distribution,
            outbound_policies_client::OutboundPoliciesClient, proxy_protocol, traffic_spec,
        },
    };
    let ctl = Controller::policy(
        "services:\n- {name: web-svc, namespace: emojivoto, clusterIP: 127.0.10.1, ports: [{port: 80, targetPort: 8080}]}\n",
    )
    .await;
    let mut client = OutboundPoliciesClient::connect(format!("http://{}", ctl.grpc))
        .await
        .expect("connect to the policy service");
    let by_ip = TrafficSpec {
        source_workload: r#"{"ns":"emojivoto","pod":"vote-bot-0"}"#.into(),
        target: Some(traffic_spec::Target::Addr(TcpAddress {
            ip: Some(IpAddress {
                ip: Some(ip_address::Ip::Ipv4(u32::from(std::net::Ipv4Addr::new(
                    127, 0, 10, 1,
                )))),
            }),
            port: 80,
        })),
    };
    let policy = client.get(by_ip.clone()).await.unwrap().into_inner();
    let by_name = TrafficSpec {
        target: Some(traffic_spec::Target::Authority(
            "web-svc.emojivoto.svc.cluster.local:80".into(),
        )),
        ..by_ip.clone()
    };
    assert_eq!(client.get(by_name).await.unwrap().into_inner(), policy);
    let Some(proxy_protocol::Kind::Detect(detect)) = policy.protocol.unwrap().kind else {
        panic!("the protocol is detected");
    };
    for routes in [detect.http1.unwrap().routes, detect.http2.unwrap().routes] {
        let Some(distribution::Kind::FirstAvailable(first)) =
            routes[0].rules[0].backends.as_ref().unwrap().kind.clone()
        else {
            panic!("one backend");
        };
        let backend = first.backends[0].backend.clone().unwrap();
        let Some(backend::Kind::Balancer(p2c)) = backend.kind else {
            panic!("balanced");
        };
        let Some(backend::endpoint_discovery::Kind::Dst(dst)) = p2c.discovery.unwrap().kind else {
            panic!("discovered");
        };
        assert_eq!(dst.path, "web-svc.emojivoto.svc.cluster.local:80");
        assert!(p2c.load.is_some(), "peak EWMA");
    }
    assert!(detect.opaque.is_some());

    let mut elsewhere = by_ip;
    if let Some(traffic_spec::Target::Addr(a)) = &mut elsewhere.target {
        a.port = 81;
    }
    let err = client.get(elsewhere).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

/// The kubelet is not meshed, yet its HTTP probes pass whatever the port's
/// policy, as in Linkerd: `GET` on the pod's probe paths only.
#[tokio::test]
async fn probes_pass_a_deny_policy() {
    let mesh = Mesh::start(&[(NS, "web")], &[]).await;
    let (listener, port) = app_listener().await;
    let app = backends::http_on(listener);
    let world = web_policy(port, "").replace(
        "meshed: true}",
        &format!("meshed: true, probes: {{{port}: [/ready]}}}}"),
    );
    let policy = Controller::policy(&world).await;
    let web = mesh
        .proxy(NS, "web")
        .inbound_target(app)
        .env("LINKERD2_PROXY_POLICY_SVC_ADDR", policy.grpc)
        .env("LINKERD2_PROXY_POLICY_WORKLOAD", WEB_POD)
        .env(
            "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY",
            "all-unauthenticated",
        )
        .spawn()
        .await;
    mesh::ready(&web).await;
    // The pod is annotated deny: only the probe passes.
    policy.set_topology(&world.replace(
        "meshed: true,",
        "meshed: true, annotations: {config.linkerd.io/default-inbound-policy: deny},",
    ));
    let denied = eventually(Duration::from_secs(10), || async {
        (backends::http1(web.inbound, "GET", WEB, "/other").await.0 == 403).then_some(())
    })
    .await;
    assert!(denied.is_some(), "the deny annotation never applied");
    assert_eq!(
        backends::http1(web.inbound, "GET", WEB, "/ready").await.0,
        200
    );
    assert_eq!(
        backends::http1(web.inbound, "POST", WEB, "/ready").await.0,
        403
    );
    let m = web.metrics().await;
    let probe = [
        ("srv_name", "deny"),
        ("route_name", "probe"),
        ("authz_name", "probe"),
    ];
    assert_eq!(
        m.sum("inbound_http_authz_allow_total", &probe),
        1.0,
        "{}",
        m.text
    );
}
