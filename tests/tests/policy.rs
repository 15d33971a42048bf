//! The policy service across binaries: `linkerd-controller policy` on a
//! topology file holding Linkerd's policy resources, asked with Linkerd2's
//! own `linkerd2-proxy-api` client, as a Linkerd proxy would ask it.

use linkerd_tests::controller::Controller;
use linkerd2_proxy_api::inbound::{
    PortSpec, Server, authn::Permit, authn::permit_mesh_tls::Clients,
    inbound_server_policies_client::InboundServerPoliciesClient, proxy_protocol::Kind,
};
use std::time::Duration;
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

#[tokio::test]
async fn a_server_with_its_authorization_and_the_default_elsewhere() {
    let ctl = Controller::policy(&format!("{PODS}{SERVER}{ONLY_VOTE_BOT}")).await;
    let mut client = client(&ctl).await;

    let web = client
        .get_port(spec("web-0", 8080))
        .await
        .unwrap()
        .into_inner();
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

#[tokio::test]
async fn bad_questions_are_named() {
    let ctl = Controller::policy(PODS).await;
    let mut client = client(&ctl).await;
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
#[tokio::test]
async fn watch_port_streams_policy_edits() {
    let ctl = Controller::policy(&format!("{PODS}{SERVER}{ONLY_VOTE_BOT}")).await;
    let mut client = client(&ctl).await;
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
