//! The destination service across binaries: a real `linkerd-controller` on a
//! local topology file, called with Linkerd2's own `linkerd2-proxy-api` client.

use linkerd_tests::{backends, controller::Controller, metrics::Scrape};
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
            "services:\n  - {name: web, namespace: emojivoto, selector: {app: web}, ports: [{port: 80, targetPort: http}]}\n  - {name: search, namespace: emojivoto, externalName: search.example.com}\n",
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

async fn get(ctl: &Controller, path: &str) -> Result<Streaming<Update>, tonic::Status> {
    let req = GetDestination {
        scheme: "k8s".into(),
        path: path.into(),
        context_token: String::new(),
    };
    ctl.client().await.get(req).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn get_streams_endpoints_and_every_change() {
    let ctl = Controller::destination(&topology(
        &[("web-1", "10.0.0.1", true), ("web-2", "10.0.0.2", true)],
        true,
    ))
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
    let Kind::Remove(removed) = next(&mut stream).await else {
        panic!("expected remove")
    };
    assert_eq!(
        addrs(&removed.addrs),
        [
            "10.0.0.1:8080".parse().unwrap(),
            "10.0.0.2:8080".parse().unwrap()
        ]
    );

    // The last one goes: no endpoints, but the service exists.
    ctl.set_topology(&topology(&[], true));
    let Kind::Remove(removed) = next(&mut stream).await else {
        panic!("expected remove")
    };
    assert_eq!(addrs(&removed.addrs), ["10.0.0.3:8080".parse().unwrap()]);
    assert!(matches!(next(&mut stream).await, Kind::NoEndpoints(n) if n.exists));

    // The service is deleted.
    ctl.set_topology(&topology(&[], false));
    assert!(matches!(next(&mut stream).await, Kind::NoEndpoints(n) if !n.exists));

    let (status, body) = backends::http1_request(ctl.admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let m = Scrape::parse(&body);
    assert_eq!(m.sum("destination_get_streams", &[]), 1.0, "{body}");
    assert_eq!(m.sum("destination_updates_total", &[("type", "add")]), 2.0);
    assert_eq!(
        m.sum("destination_updates_total", &[("type", "remove")]),
        2.0
    );
    assert_eq!(
        m.sum("destination_updates_total", &[("type", "no_endpoints")]),
        2.0
    );
}

#[tokio::test]
async fn empty_services_say_so_at_once() {
    let ctl = Controller::destination(&topology(&[("web-1", "10.0.0.1", false)], true)).await;
    let mut stream = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut stream).await, Kind::NoEndpoints(n) if n.exists));
    ctl.set_topology(&topology(&[("web-1", "10.0.0.1", true)], true));
    assert!(matches!(next(&mut stream).await, Kind::Add(set) if set.addrs.len() == 1));
}

#[tokio::test]
async fn names_that_are_not_services_are_refused_with_the_right_status() {
    let ctl = Controller::destination(&topology(&[("web-1", "10.0.0.1", true)], true)).await;
    let cases = [
        ("nope.emojivoto.svc.cluster.local:80", Code::NotFound),
        ("web.emojivoto.svc.cluster.local:81", Code::NotFound),
        (
            "search.emojivoto.svc.cluster.local:80",
            Code::InvalidArgument,
        ),
        ("example.com:80", Code::InvalidArgument),
        ("10.0.0.1:8080", Code::InvalidArgument),
        (
            "web.emojivoto.svc.cluster.local:http",
            Code::InvalidArgument,
        ),
    ];
    for (path, code) in cases {
        let status = get(&ctl, path).await.expect_err(path);
        assert_eq!(status.code(), code, "{path}: {status:?}");
        assert!(!status.message().is_empty());
    }
    // The controller is unharmed and still answers.
    assert!(get(&ctl, WEB).await.is_ok());
}

#[tokio::test]
async fn get_profile_answers_for_services() {
    let ctl = Controller::destination(&topology(&[], true)).await;
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
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Nothing changed for the proxy; a new stream still sees the endpoint.
    let mut fresh = get(&ctl, WEB).await.unwrap();
    assert!(matches!(next(&mut fresh).await, Kind::Add(set) if set.addrs.len() == 1));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), stream.message())
            .await
            .is_err()
    );
}
