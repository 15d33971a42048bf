//! The destination service across binaries: a real `linkerd-controller` on a
//! local topology file, called with Linkerd2's own `linkerd2-proxy-api` client.

use linkerd_tests::{
    backends,
    controller::{Backend, Controller},
    eventually,
    metrics::Scrape,
};
use linkerd2_proxy_api::{
    destination::{GetDestination, Update, protocol_hint, tls_identity, update::Update as Kind},
    net::TcpAddress,
};
use std::{net::SocketAddr, time::Duration};
use tonic::{Code, Streaming};

const WEB: &str = "web.emojivoto.svc.cluster.local:80";

fn topology(pods: &[(&str, &str, bool)], with_service: bool) -> String {
    let mut yaml = String::new();
    if with_service {
        yaml.push_str(
            "services:\n  - {name: web, namespace: emojivoto, clusterIP: 10.96.0.80, selector: {app: web}, ports: [{port: 80, targetPort: http}]}\n  - {name: search, namespace: emojivoto, externalName: search.example.com}\n",
        );
    }
    yaml.push_str("pods:\n");
    for (name, ip, ready) in pods {
        yaml.push_str(&format!(
            "  - {{name: {name}, namespace: emojivoto, ip: {ip}, ready: {ready}, labels: {{app: web}}, ports: {{http: 8080}}, meshed: true, owner: {{kind: Deployment, name: web}}, serviceAccount: web}}\n"
        ));
    }
    yaml
}

fn addrs(set: &[TcpAddress]) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = set
        .iter()
        .map(|a| {
            let ip = match a.ip.as_ref().and_then(|ip| ip.ip.as_ref()) {
                Some(linkerd2_proxy_api::net::ip_address::Ip::Ipv4(v4)) => {
                    std::net::Ipv4Addr::from(*v4)
                }
                other => panic!("unexpected address {other:?}"),
            };
            SocketAddr::new(ip.into(), a.port as u16)
        })
        .collect();
    v.sort();
    v
}

async fn next(stream: &mut Streaming<Update>) -> Kind {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("no update within 5s")
        .expect("stream failed")
        .expect("stream ended")
        .update
        .expect("empty update")
}

/// Reads `remove` updates until exactly `expected` has been removed. A
/// change may arrive as several removes (with Kubernetes, a pod's deletion
/// and its slice's update come on separate watches); anything else fails.
async fn removes_until(stream: &mut Streaming<Update>, expected: &[&str]) {
    let expected: Vec<SocketAddr> = expected.iter().map(|a| a.parse().unwrap()).collect();
    let mut removed = Vec::new();
    while removed.len() < expected.len() {
        match next(stream).await {
            Kind::Remove(set) => removed.extend(addrs(&set.addrs)),
            other => panic!("expected a remove of {expected:?}, got {other:?}"),
        }
    }
    removed.sort();
    assert_eq!(removed, expected);
}

async fn get(ctl: &Controller, path: &str) -> Result<Streaming<Update>, tonic::Status> {
    let req = GetDestination {
        scheme: "k8s".into(),
        path: path.into(),
        context_token: String::new(),
    };
    ctl.client().await.get(req).await.map(|r| r.into_inner())
}

linkerd_tests::on_both_backends!(
    get_streams_endpoints_and_every_change,
    empty_services_say_so_at_once,
    names_that_are_not_services_are_refused_with_the_right_status,
    a_service_created_later_is_streamed_when_it_appears,
    get_profile_answers_for_services,
    get_profile_follows_the_service_profile,
    get_profile_of_a_pod_address_is_its_endpoint,
    get_profile_says_which_ports_are_opaque,
    addresses_resolve_as_their_service_or_pod,
    calls_are_counted_per_method_and_status,
);

async fn get_streams_endpoints_and_every_change(backend: Backend) {
    let ctl = Controller::destination_with(
        backend,
        &topology(
            &[("web-1", "10.0.0.1", true), ("web-2", "10.0.0.2", true)],
            true,
        ),
    )
    .await;
    let mut stream = get(&ctl, WEB).await.unwrap();

    let Kind::Add(set) = next(&mut stream).await else {
        panic!("expected add")
    };
    assert_eq!(
        addrs(&set.addrs.iter().filter_map(|a| a.addr).collect::<Vec<_>>()),
        [
            "10.0.0.1:8080".parse().unwrap(),
            "10.0.0.2:8080".parse().unwrap()
        ]
    );
    assert_eq!(set.metric_labels["namespace"], "emojivoto");
    assert_eq!(set.metric_labels["service"], "web");
    let web1 = set
        .addrs
        .iter()
        .find(|a| a.metric_labels["pod"] == "web-1")
        .unwrap();
    assert_eq!(web1.metric_labels["deployment"], "web");
    assert_eq!(web1.metric_labels["serviceaccount"], "web");
    let Some(tls_identity::Strategy::DnsLikeIdentity(id)) =
        web1.tls_identity.as_ref().and_then(|t| t.strategy.clone())
    else {
        panic!("no identity: {web1:?}")
    };
    assert_eq!(
        id.name,
        "web.emojivoto.serviceaccount.identity.linkerd.cluster.local"
    );
    assert!(matches!(
        web1.protocol_hint.as_ref().and_then(|h| h.protocol),
        Some(protocol_hint::Protocol::H2(_))
    ));

    // A pod joins.
    ctl.set_topology(&topology(
        &[
            ("web-1", "10.0.0.1", true),
            ("web-2", "10.0.0.2", true),
            ("web-3", "10.0.0.3", true),
        ],
        true,
    ));
    let Kind::Add(set) = next(&mut stream).await else {
        panic!("expected add")
    };
    assert_eq!(set.addrs.len(), 1);
    assert_eq!(set.addrs[0].metric_labels["pod"], "web-3");

    // A pod stops being ready, another is deleted.
    ctl.set_topology(&topology(
        &[("web-1", "10.0.0.1", false), ("web-3", "10.0.0.3", true)],
        true,
    ));
    removes_until(&mut stream, &["10.0.0.1:8080", "10.0.0.2:8080"]).await;

    // The last one goes: no endpoints, but the service exists.
    ctl.set_topology(&topology(&[], true));
    removes_until(&mut stream, &["10.0.0.3:8080"]).await;
    assert!(matches!(next(&mut stream).await, Kind::NoEndpoints(n) if n.exists));

    // The service is deleted.
    ctl.set_topology(&topology(&[], false));
    assert!(matches!(next(&mut stream).await, Kind::NoEndpoints(n) if !n.exists));

    let (status, body) = backends::http1_request(ctl.admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let m = Scrape::parse(&body);
    assert_eq!(m.sum("destination_get_streams", &[]), 1.0, "{body}");
    assert_eq!(m.sum("destination_updates_total", &[("type", "add")]), 2.0);
    // One per change, or more where watches deliver a change in parts.
    assert!(m.sum("destination_updates_total", &[("type", "remove")]) >= 2.0);
    assert_eq!(
        m.sum("destination_updates_total", &[("type", "no_endpoints")]),
        2.0
    );
}

async fn empty_services_say_so_at_once(backend: Backend) {
    let ctl =
        Controller::destination_with(backend, &topology(&[("web-1", "10.0.0.1", false)], true))
            .await;
    let mut stream = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut stream).await, Kind::NoEndpoints(n) if n.exists));
    ctl.set_topology(&topology(&[("web-1", "10.0.0.1", true)], true));
    assert!(matches!(next(&mut stream).await, Kind::Add(set) if set.addrs.len() == 1));
}

async fn names_that_are_not_services_are_refused_with_the_right_status(backend: Backend) {
    let ctl =
        Controller::destination_with(backend, &topology(&[("web-1", "10.0.0.1", true)], true))
            .await;
    let refused = [
        (
            "search.emojivoto.svc.cluster.local:80",
            Code::InvalidArgument,
        ),
        ("example.com:80", Code::InvalidArgument),
        (
            "web.emojivoto.svc.cluster.local:http",
            Code::InvalidArgument,
        ),
    ];
    for (path, code) in refused {
        let status = get(&ctl, path).await.expect_err(path);
        assert_eq!(status.code(), code, "{path}: {status:?}");
        assert!(!status.message().is_empty());
    }
    // Not a service (yet): said on a stream that stays open, as Linkerd's
    // destination does, rather than refused.
    for path in [
        "nope.emojivoto.svc.cluster.local:80",
        "web.emojivoto.svc.cluster.local:81",
        "10.9.9.9:80",
    ] {
        let mut stream = get(&ctl, path).await.expect(path);
        assert!(
            matches!(next(&mut stream).await, Kind::NoEndpoints(n) if !n.exists),
            "{path}"
        );
    }
    // The controller is unharmed and still answers.
    assert!(get(&ctl, WEB).await.is_ok());
}

/// Linkerd's `grpc_server_*` series: a stream counts from its request to
/// its end, refusals by their code, a client's cancellation as `Canceled`.
async fn calls_are_counted_per_method_and_status(backend: Backend) {
    let ctl =
        Controller::destination_with(backend, &topology(&[("web-1", "10.0.0.1", true)], true))
            .await;
    let get_labels = [
        ("grpc_service", "io.linkerd.proxy.destination.Destination"),
        ("grpc_method", "Get"),
        ("grpc_type", "server_stream"),
    ];
    let mut stream = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut stream).await, Kind::Add(_)));
    let refused = get(&ctl, "example.com:80").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    let m = ctl.metrics().await;
    assert_eq!(m.sum("grpc_server_started_total", &get_labels), 2.0);
    assert_eq!(m.sum("grpc_server_open_calls", &[]), 1.0);
    let code = |c| {
        let mut l = get_labels.to_vec();
        l.push(("grpc_code", c));
        l
    };
    assert_eq!(
        m.sum("grpc_server_handled_total", &code("InvalidArgument")),
        1.0
    );
    assert_eq!(m.sum("grpc_server_handled_total", &code("Canceled")), 0.0);

    // The proxy goes away: its stream ends, cancelled by the client.
    drop(stream);
    let ended = eventually(Duration::from_secs(5), || async {
        let m = ctl.metrics().await;
        (m.sum("grpc_server_handled_total", &code("Canceled")) == 1.0).then_some(m)
    })
    .await
    .expect("the cancelled stream was never counted");
    assert_eq!(ended.sum("grpc_server_open_calls", &[]), 0.0);
    assert_eq!(
        ended.sum("grpc_server_handling_seconds_count", &get_labels),
        2.0
    );
}

/// A client that asked before the Service existed gets its endpoints when
/// it is created, on the same stream.
async fn a_service_created_later_is_streamed_when_it_appears(backend: Backend) {
    let ctl =
        Controller::destination_with(backend, &topology(&[("web-1", "10.0.0.1", true)], false))
            .await;
    let mut stream = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut stream).await, Kind::NoEndpoints(n) if !n.exists));
    ctl.set_topology(&topology(&[("web-1", "10.0.0.1", true)], true));
    match next(&mut stream).await {
        Kind::Add(set) => {
            let added: Vec<_> = set.addrs.iter().filter_map(|a| a.addr).collect();
            assert_eq!(addrs(&added), ["10.0.0.1:8080".parse().unwrap()]);
        }
        other => panic!("{other:?}"),
    }
    // And when it is deleted, the stream says so and stays open (with
    // Kubernetes, its slice may go first: a remove, then no service).
    ctl.set_topology(&topology(&[("web-1", "10.0.0.1", true)], false));
    loop {
        match next(&mut stream).await {
            Kind::NoEndpoints(n) if !n.exists => break,
            Kind::Remove(_) | Kind::NoEndpoints(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

async fn get_profile_answers_for_services(backend: Backend) {
    let ctl = Controller::destination_with(backend, &topology(&[], true)).await;
    let req = GetDestination {
        scheme: "k8s".into(),
        path: WEB.into(),
        context_token: String::new(),
    };
    let mut profiles = ctl
        .client()
        .await
        .get_profile(req)
        .await
        .unwrap()
        .into_inner();
    let profile = profiles.message().await.unwrap().unwrap();
    assert_eq!(
        profile.fully_qualified_name,
        "web.emojivoto.svc.cluster.local"
    );
    assert!(profile.retry_budget.is_some());
    // The stream stays open, as Linkerd's does, for later profile changes.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), profiles.message())
            .await
            .is_err()
    );
}

const PROFILE: &str = r#"
serviceProfiles:
- apiVersion: linkerd.io/v1alpha2
  kind: ServiceProfile
  metadata: {name: web.emojivoto.svc.cluster.local, namespace: emojivoto}
  spec:
    routes:
    - name: GET /api/list
      condition: {method: GET, pathRegex: /api/list}
      isRetryable: true
      timeout: 100ms
      responseClasses:
      - condition: {status: {min: 500, max: 599}}
        isFailure: true
    - name: POST /api/vote
      condition:
        all:
        - method: POST
        - pathRegex: /api/vote
    retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 5, ttl: 10s}
    dstOverrides:
    - {authority: web.emojivoto.svc.cluster.local:80, weight: 900m}
    - {authority: web-canary.emojivoto.svc.cluster.local:80, weight: 100m}
"#;

/// A ServiceProfile becomes the service's profile, in Linkerd's message,
/// and each edit of it is sent again on the open stream.
async fn get_profile_follows_the_service_profile(backend: Backend) {
    use linkerd2_proxy_api::destination::{request_match, response_match};
    let world = format!("{}{PROFILE}", topology(&[], true));
    let ctl = Controller::destination_with(backend, &world).await;
    let ask = || {
        let client = ctl.client();
        async move {
            let req = GetDestination {
                scheme: "k8s".into(),
                path: WEB.into(),
                context_token: String::new(),
            };
            client.await.get_profile(req).await.unwrap().into_inner()
        }
    };
    // A Kubernetes backend follows ServiceProfiles once it has listed them.
    let mut profiles = eventually(Duration::from_secs(10), || async {
        let mut stream = ask().await;
        let first = stream.message().await.unwrap().unwrap();
        (first.routes.len() == 2).then_some((stream, first))
    })
    .await
    .expect("the profile's routes");
    let (ref mut stream, first) = profiles;
    let list = &first.routes[0];
    assert_eq!(list.metrics_labels["route"], "GET /api/list");
    assert!(list.is_retryable);
    assert_eq!(list.timeout.unwrap().nanos, 100_000_000);
    let Some(request_match::Match::All(all)) = &list.condition.as_ref().unwrap().r#match else {
        panic!("{list:?}")
    };
    assert_eq!(all.matches.len(), 2);
    assert!(matches!(
        &list.response_classes[0].condition.as_ref().unwrap().r#match,
        Some(response_match::Match::Status(s)) if (s.min, s.max) == (500, 599)
    ));
    assert!(list.response_classes[0].is_failure);
    assert!(!first.routes[1].is_retryable);
    assert_eq!(first.retry_budget.unwrap().min_retries_per_second, 5);
    let split: Vec<(&str, u32)> = first
        .dst_overrides
        .iter()
        .map(|d| (d.authority.as_str(), d.weight))
        .collect();
    assert_eq!(
        split,
        [
            ("web.emojivoto.svc.cluster.local:80", 900),
            ("web-canary.emojivoto.svc.cluster.local:80", 100)
        ]
    );

    // The weights move: the stream says so.
    ctl.set_topology(
        &world
            .replace("weight: 900m", "weight: 500m")
            .replace("weight: 100m", "weight: 500m"),
    );
    let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the edit reached the stream")
        .unwrap()
        .unwrap();
    let weights: Vec<u32> = next.dst_overrides.iter().map(|d| d.weight).collect();
    assert_eq!(weights, [500, 500]);

    // An invalid edit is ignored, as if there were no profile: Linkerd's
    // default budget, no routes.
    ctl.set_topology(&world.replace("timeout: 100ms", "timeout: soon"));
    let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the invalid edit reached the stream")
        .unwrap()
        .unwrap();
    assert!(next.routes.is_empty(), "{next:?}");
    assert_eq!(next.retry_budget.unwrap().min_retries_per_second, 10);
}

/// A proxy that dials a pod's address asks its profile: the pod as the
/// endpoint, with its identity and the H2 hint (so the connection is mTLS),
/// as Linkerd's endpoint profiles; sent again when the pod goes.
async fn get_profile_of_a_pod_address_is_its_endpoint(backend: Backend) {
    use linkerd2_proxy_api::destination::tls_identity::Strategy;
    let ctl =
        Controller::destination_with(backend, &topology(&[("web-1", "10.0.0.1", true)], true))
            .await;
    let mut profiles = ctl
        .client()
        .await
        .get_profile(GetDestination {
            scheme: "k8s".into(),
            path: "10.0.0.1:8080".into(),
            context_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = profiles.message().await.unwrap().unwrap();
    let endpoint = first.endpoint.expect("the pod as the endpoint");
    assert_eq!(
        addrs(std::slice::from_ref(endpoint.addr.as_ref().unwrap())),
        ["10.0.0.1:8080".parse::<SocketAddr>().unwrap()]
    );
    let Some(Strategy::DnsLikeIdentity(id)) = endpoint.tls_identity.and_then(|t| t.strategy) else {
        panic!("no identity")
    };
    assert_eq!(
        id.name,
        "web.emojivoto.serviceaccount.identity.linkerd.cluster.local"
    );
    assert!(matches!(
        endpoint.protocol_hint.and_then(|h| h.protocol),
        Some(protocol_hint::Protocol::H2(_))
    ));
    assert_eq!(endpoint.metric_labels["pod"], "web-1");
    assert!(first.fully_qualified_name.is_empty());

    ctl.set_topology(&topology(&[], true));
    let gone = tokio::time::timeout(Duration::from_secs(10), profiles.message())
        .await
        .expect("the pod's departure reached the stream")
        .unwrap()
        .unwrap();
    assert!(gone.endpoint.is_none(), "{gone:?}");
}

/// `config.linkerd.io/opaque-ports` on a Service marks its ports opaque in
/// `GetProfile` (by name and by cluster IP), on a pod its own ports (by the
/// pod's address), as Linkerd's destination says so: the proxy then skips
/// protocol detection for them.
async fn get_profile_says_which_ports_are_opaque(backend: Backend) {
    let world = "services:
  - {name: db, namespace: data, clusterIP: 10.96.0.20, selector: {app: db}, annotations: {config.linkerd.io/opaque-ports: '3306,9000-9100'}, ports: [{port: 3306, name: mysql}, {port: 80, name: http}, {port: 9050, name: range}]}
pods:
  - {name: db-0, namespace: data, ip: 10.0.0.20, labels: {app: db}, annotations: {config.linkerd.io/opaque-ports: '3306'}, meshed: true, owner: {kind: StatefulSet, name: db}, serviceAccount: db}
";
    let ctl = Controller::destination_with(backend, world).await;
    let opaque = |path: &'static str| {
        let client = ctl.client();
        async move {
            let req = GetDestination {
                scheme: "k8s".into(),
                path: path.into(),
                context_token: String::new(),
            };
            let mut stream = client.await.get_profile(req).await.unwrap().into_inner();
            stream.message().await.unwrap().unwrap().opaque_protocol
        }
    };
    let ready = eventually(Duration::from_secs(10), || async {
        opaque("db.data.svc.cluster.local:3306").await.then_some(())
    })
    .await;
    assert!(ready.is_some(), "the service's opaque port");
    assert!(opaque("db.data.svc.cluster.local:9050").await, "in a range");
    assert!(!opaque("db.data.svc.cluster.local:80").await);
    assert!(opaque("10.96.0.20:3306").await, "by cluster IP");
    assert!(opaque("10.0.0.20:3306").await, "the pod's own annotation");
    assert!(!opaque("10.0.0.20:80").await);
}

/// A proxy asks by address for a connection's original destination: a
/// cluster IP is its service, a pod IP that pod (with its identity).
async fn addresses_resolve_as_their_service_or_pod(backend: Backend) {
    let ctl = Controller::destination_with(
        backend,
        &topology(
            &[("web-1", "10.0.0.1", true), ("web-2", "10.0.0.2", false)],
            true,
        ),
    )
    .await;
    let mut service = get(&ctl, "10.96.0.80:80").await.unwrap();
    let Kind::Add(set) = next(&mut service).await else {
        panic!("expected add")
    };
    assert_eq!(
        addrs(&set.addrs.iter().filter_map(|a| a.addr).collect::<Vec<_>>()),
        ["10.0.0.1:8080".parse().unwrap()]
    );
    assert_eq!(set.metric_labels["service"], "web");

    // A pod's own address, ready or not, on the port asked for.
    let mut pod = get(&ctl, "10.0.0.2:9000").await.unwrap();
    let Kind::Add(set) = next(&mut pod).await else {
        panic!("expected add")
    };
    assert_eq!(
        addrs(&set.addrs.iter().filter_map(|a| a.addr).collect::<Vec<_>>()),
        ["10.0.0.2:9000".parse().unwrap()]
    );
    assert_eq!(set.metric_labels["namespace"], "emojivoto");
    assert!(!set.metric_labels.contains_key("service"));
    assert_eq!(set.addrs[0].metric_labels["pod"], "web-2");
    assert!(set.addrs[0].tls_identity.is_some());

    // The pod becomes ready: the service's stream follows.
    ctl.set_topology(&topology(
        &[("web-1", "10.0.0.1", true), ("web-2", "10.0.0.2", true)],
        true,
    ));
    let Kind::Add(set) = next(&mut service).await else {
        panic!("expected add")
    };
    assert_eq!(
        addrs(&set.addrs.iter().filter_map(|a| a.addr).collect::<Vec<_>>()),
        ["10.0.0.2:8080".parse().unwrap()]
    );
}

#[tokio::test]
async fn a_bad_topology_stops_start_up_with_one_line() {
    let (status, stderr) =
        linkerd_tests::controller::destination_exit("pods: [{name: a, ip: 10.0.0.1}]").await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("topology.yaml is not a valid topology"),
        "{stderr}"
    );
    assert!(last.contains("namespace"), "{stderr}");
}

#[tokio::test]
async fn a_bad_edit_keeps_the_last_good_topology() {
    let ctl = Controller::destination(&topology(&[("web-1", "10.0.0.1", true)], true)).await;
    let mut stream = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut stream).await, Kind::Add(_)));
    ctl.set_topology("services: [{name: web");
    let ignored = eventually(Duration::from_secs(5), || async {
        let m = ctl.metrics().await;
        (m.sum("discovery_topology_reload_errors_total", &[]) >= 1.0).then_some(())
    })
    .await;
    assert!(ignored.is_some(), "the bad edit was never read");
    // Nothing changed for the proxy; a new stream still sees the endpoint.
    let mut fresh = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut fresh).await, Kind::Add(set) if set.addrs.len() == 1));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), stream.message())
            .await
            .is_err()
    );
}

/// The API forgets its history (as after etcd compaction) and a pod goes
/// while the controller's watches are down: resuming gets 410 Gone, the
/// controller relists, and the proxy hears of the change all the same.
#[tokio::test]
async fn kubernetes_relists_after_410_gone() {
    let pods = [("web-1", "10.0.0.1", true), ("web-2", "10.0.0.2", true)];
    let ctl = Controller::destination_with(Backend::Kubernetes, &topology(&pods, true)).await;
    let mut stream = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut stream).await, Kind::Add(set) if set.addrs.len() == 2));
    let api = ctl.api().unwrap();
    let lists_before = lists(api);
    api.expire_watches();
    ctl.set_topology(&topology(&pods[..1], true));
    removes_until(&mut stream, &["10.0.0.2:8080"]).await;
    assert!(
        lists(api) > lists_before,
        "the controller did not relist: {:#?}",
        api.requests()
    );
}

/// How many list (not watch) requests the fake API has answered.
fn lists(api: &linkerd_tests::kubeapi::FakeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| !r.contains("watch=true"))
        .count()
}

/// During an API outage proxies keep their endpoints and new streams are
/// answered from the cache; once the API is back, changes flow again.
#[tokio::test]
async fn kubernetes_outage_keeps_serving_the_last_endpoints() {
    let one = topology(&[("web-1", "10.0.0.1", true)], true);
    let ctl = Controller::destination_with(Backend::Kubernetes, &one).await;
    let mut stream = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut stream).await, Kind::Add(_)));
    let api = ctl.api().unwrap();
    let before = api.requests().len();
    api.set_down(true);
    // The outage is felt once the controller's watches (Services,
    // EndpointSlices, Pods) have come back refused.
    let felt = eventually(Duration::from_secs(10), || async {
        (api.requests().len() >= before + 3).then_some(())
    })
    .await;
    assert!(felt.is_some(), "the controller never asked the API again");
    let quiet = tokio::time::timeout(Duration::from_millis(100), stream.message()).await;
    assert!(quiet.is_err(), "the outage changed what the proxy knows");
    let mut fresh = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut fresh).await, Kind::Add(set) if set.addrs.len() == 1));

    api.set_down(false);
    let two = [("web-1", "10.0.0.1", true), ("web-2", "10.0.0.2", true)];
    ctl.set_topology(&topology(&two, true));
    let added = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("no update after the API came back")
        .unwrap()
        .unwrap();
    assert!(matches!(added.update, Some(Kind::Add(set)) if set.addrs.len() == 1));
}

/// SIGTERM ends open streams (proxies reconnect elsewhere) and the
/// controller exits promptly, rather than waiting on streams that never end.
#[tokio::test]
async fn sigterm_ends_streams_and_exits() {
    let ctl = Controller::destination(&topology(&[("web-1", "10.0.0.1", true)], true)).await;
    let mut stream = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut stream).await, Kind::Add(_)));
    let pid = nix::unistd::Pid::from_raw(ctl.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream stayed open after SIGTERM");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    let status = tokio::time::timeout(Duration::from_secs(5), ctl.wait())
        .await
        .expect("the controller did not exit after SIGTERM");
    assert!(status.success(), "{status:?}");
}
