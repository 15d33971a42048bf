//! `linkerd check`: the health of the cluster, the control plane and (with
//! `--proxy`) the data plane, checked through the Kubernetes API as
//! Linkerd's `linkerd check` does, with its categories, descriptions and
//! output. `--pre` asks instead whether the control plane can be installed.
//!
//! What each check reads is what `linkerd install` creates (the chart):
//! linkerd-config's values say which components to expect; the trust roots
//! ConfigMap, the issuer Secret and the injector's Secret and webhook
//! configuration hold the certificates checked.

mod certs;
pub mod local;
mod report;

use certs::{Algorithm, Cert};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource};
pub use report::Check;
pub use report::{Output, Report};
use serde_json::Value;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;
use time::OffsetDateTime;

/// The release the checks compare the control plane's and the proxies' with.
const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which checks to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Whether the control plane can be installed, instead of checking it.
    pub pre: bool,
    /// The data plane too.
    pub proxy: bool,
    /// With `proxy`, only this namespace's pods.
    pub namespace: Option<String>,
}

/// Each request to the API may take this long.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Certificates expiring sooner than this are warned about.
const EXPIRY_WARNING_DAYS: i64 = 60;
/// The oldest Kubernetes this control plane supports (Linkerd's).
const MIN_KUBERNETES: (u32, u32) = (1, 22);
/// Nodes whose last heartbeat is further from our clock than this.
const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

const CAN_INIT: Check = Check::new("can initialize the client", "k8s-api");
const CAN_QUERY: Check = Check::new("can query the Kubernetes API", "k8s-api");
const MIN_VERSION: Check = Check::new(
    "is running the minimum Kubernetes API version",
    "k8s-version",
);

/// Runs the checks into `report`, with the client `client` gives (its
/// failure is the first check's), on the control plane in `ns`.
pub async fn run<F>(report: &mut Report, options: &Options, client: F, ns: &str)
where
    F: Future<Output = Result<Client, String>>,
{
    report.category("kubernetes-api");
    let client = client.await;
    report.record(&CAN_INIT, client.as_ref().map(drop).map_err(Clone::clone));
    let Ok(client) = client else {
        return;
    };
    let Some(info) = report
        .run(CAN_QUERY, || {
            api("the Kubernetes API's version", client.apiserver_version())
        })
        .await
    else {
        return;
    };

    report.category("kubernetes-version");
    report.record(&MIN_VERSION, minimum_version(&info.major, &info.minor));

    let cluster = Cluster {
        client,
        ns: ns.to_string(),
    };
    if options.pre {
        pre(report, &cluster).await;
        return;
    }
    let Some(installed) = control_plane(report, &cluster).await else {
        return;
    };
    if options.proxy {
        data_plane(report, &cluster, &installed, options.namespace.as_deref()).await;
    }
}

/// The cluster, and the control plane's namespace in it.
struct Cluster {
    client: Client,
    ns: String,
}

/// A request to the API, bounded in time, its failure as one line naming
/// what was read.
async fn api<T>(
    what: impl Display,
    f: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(API_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(status))) => Err(format!(
            "cannot read {what}: {} ({} {})",
            status.message, status.code, status.reason
        )),
        Ok(Err(e)) => Err(format!("cannot read {what}: {e}")),
        Err(_) => Err(format!(
            "cannot read {what}: no answer within {API_TIMEOUT:?}"
        )),
    }
}

fn minimum_version(major: &str, minor: &str) -> Result<(), String> {
    // Managed clusters report minors like "33+".
    let number = |s: &str| s.trim_end_matches('+').parse::<u32>().ok();
    let (Some(major), Some(minor)) = (number(major), number(minor)) else {
        return Err(format!(
            "the API server reports version {major}.{minor}, which is not a number"
        ));
    };
    if (major, minor) < MIN_KUBERNETES {
        return Err(format!(
            "Kubernetes is on version {major}.{minor}, but version {}.{} or later is required",
            MIN_KUBERNETES.0, MIN_KUBERNETES.1
        ));
    }
    Ok(())
}

// --pre: can the control plane be installed?

const NS_ABSENT: Check = Check::new("control plane namespace does not already exist", "pre-ns");
const CAN_CREATE_CLUSTER: Check =
    Check::new("can create non-namespaced resources", "pre-k8s-cluster-k8s");
const CAN_CREATE_SA: Check = Check::new("can create ServiceAccounts", "pre-k8s");
const CAN_CREATE_SVC: Check = Check::new("can create Services", "pre-k8s");
const CAN_CREATE_DEPLOY: Check = Check::new("can create Deployments", "pre-k8s");
const CAN_CREATE_CM: Check = Check::new("can create ConfigMaps", "pre-k8s");
const CAN_CREATE_SECRET: Check = Check::new("can create Secrets", "pre-k8s");
const CAN_READ_SECRET: Check = Check::new("can read Secrets", "pre-k8s");
const NO_CLOCK_SKEW: Check = Check::new("no clock skew detected", "pre-k8s-clock-skew").warning();

async fn pre(report: &mut Report, cluster: &Cluster) {
    report.category("pre-kubernetes-setup");
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let what = format!("namespace {}", cluster.ns);
    report
        .run(NS_ABSENT, || async {
            match api(&what, namespaces.get_opt(&cluster.ns)).await? {
                None => Ok(()),
                Some(_) => Err(format!(
                    "the {:?} namespace already exists: is the control plane installed? (`linkerd check` checks it)",
                    cluster.ns
                )),
            }
        })
        .await;
    let cluster_wide = [
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ),
        ("", "namespaces"),
    ];
    report
        .run(CAN_CREATE_CLUSTER, || async {
            let mut denied = Vec::new();
            for (group, resource) in cluster_wide {
                if let Some(why) = cluster.denied("create", group, resource, None).await? {
                    denied.push(why);
                }
            }
            if denied.is_empty() {
                Ok(())
            } else {
                Err(denied.join("\n"))
            }
        })
        .await;
    for (check, verb, group, resource) in [
        (CAN_CREATE_SA, "create", "", "serviceaccounts"),
        (CAN_CREATE_SVC, "create", "", "services"),
        (CAN_CREATE_DEPLOY, "create", "apps", "deployments"),
        (CAN_CREATE_CM, "create", "", "configmaps"),
        (CAN_CREATE_SECRET, "create", "", "secrets"),
        (CAN_READ_SECRET, "get", "", "secrets"),
    ] {
        report
            .run(check, || async {
                match cluster
                    .denied(verb, group, resource, Some(&cluster.ns))
                    .await?
                {
                    None => Ok(()),
                    Some(why) => Err(why),
                }
            })
            .await;
    }
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    report
        .run(NO_CLOCK_SKEW, || async {
            let list = api("the nodes", nodes.list(&ListParams::default())).await?;
            clock_skew(&list.items, OffsetDateTime::now_utc())
        })
        .await;
}

impl Cluster {
    /// Why `verb` on `resource` would be refused, if it would: a
    /// SelfSubjectAccessReview, as `kubectl auth can-i` makes.
    async fn denied(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<Option<String>, String> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    namespace: namespace.map(String::from),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviews: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let what = format!("whether you may {verb} {resource}");
        let answer = api(&what, reviews.create(&PostParams::default(), &review)).await?;
        let status = answer.status.unwrap_or_default();
        if status.allowed {
            return Ok(None);
        }
        let place = namespace.map_or_else(String::new, |ns| format!(" in namespace {ns}"));
        let reason = status
            .reason
            .filter(|r| !r.is_empty())
            .map_or_else(String::new, |r| format!(": {r}"));
        Ok(Some(format!(
            "you may not {verb} {resource}{place}{reason}"
        )))
    }
}

/// Nodes whose Ready heartbeat is more than `MAX_CLOCK_SKEW` away from
/// `now`, which breaks certificate validity between them and us.
fn clock_skew(nodes: &[Node], now: OffsetDateTime) -> Result<(), String> {
    let mut skewed = Vec::new();
    for node in nodes {
        let heartbeat = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref());
        let Some(heartbeat) = heartbeat else { continue };
        let seconds = heartbeat.0.as_second();
        let Ok(beat) = OffsetDateTime::from_unix_timestamp(seconds) else {
            continue;
        };
        if (now - beat).abs() > MAX_CLOCK_SKEW {
            skewed.push(node.metadata.name.clone().unwrap_or_default());
        }
    }
    if skewed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "clock skew of more than {} minutes between this machine and node(s) {}",
            MAX_CLOCK_SKEW.whole_minutes(),
            skewed.join(", ")
        ))
    }
}

// The installed control plane.

const CONFIG_EXISTS: Check = Check::new(
    "'linkerd-config' config map exists",
    "l5d-existence-linkerd-config",
);
const NO_UNSCHEDULABLE: Check =
    Check::new("no unschedulable pods", "l5d-existence-unschedulable-pods").warning();
const PODS_READY: Check =
    Check::new("control plane pods are ready", "l5d-api-control-ready").retry();
const NS_EXISTS: Check = Check::new("control plane Namespace exists", "l5d-existence-ns");
const CLUSTER_ROLES: Check = Check::new("control plane ClusterRoles exist", "l5d-existence-cr");
const CLUSTER_ROLE_BINDINGS: Check = Check::new(
    "control plane ClusterRoleBindings exist",
    "l5d-existence-crb",
);
const CRDS: Check = Check::new(
    "control plane CustomResourceDefinitions exist",
    "l5d-existence-crd",
);
/// Linkerd's resources: the policy controller watches the policy ones
/// (without their definitions it cannot start), destination ServiceProfiles.
const CRDS_WANTED: [&str; 6] = [
    "servers.policy.linkerd.io",
    "httproutes.policy.linkerd.io",
    "authorizationpolicies.policy.linkerd.io",
    "meshtlsauthentications.policy.linkerd.io",
    "networkauthentications.policy.linkerd.io",
    "serviceprofiles.linkerd.io",
];
/// Tap's aggregated API: `linkerd tap` and the dashboard go through it.
const TAP_API: Check = Check::new("tap API service is running", "l5d-tap-api-service").retry();
const TAP_API_SERVICE: &str = "v1alpha1.tap.linkerd.io";
const SERVICE_ACCOUNTS: Check =
    Check::new("control plane ServiceAccounts exist", "l5d-existence-sa");
const WEBHOOKS: Check = Check::new(
    "control plane MutatingWebhookConfigurations exist",
    "l5d-existence-mwc",
);
const CERT_CONFIG: Check = Check::new(
    "certificate config is valid",
    "l5d-identity-cert-config-valid",
);
const ANCHORS_ALGORITHM: Check = Check::new(
    "trust anchors are using supported crypto algorithm",
    "l5d-identity-trustAnchors-use-supported-crypto",
);
const ANCHORS_VALID: Check = Check::new(
    "trust anchors are within their validity period",
    "l5d-identity-trustAnchors-are-time-valid",
);
const ANCHORS_60_DAYS: Check = Check::new(
    "trust anchors are valid for at least 60 days",
    "l5d-identity-trustAnchors-not-expiring-soon",
)
.warning();
const ISSUER_ALGORITHM: Check = Check::new(
    "issuer cert is using supported crypto algorithm",
    "l5d-identity-issuer-cert-uses-supported-crypto",
);
const ISSUER_VALID: Check = Check::new(
    "issuer cert is within its validity period",
    "l5d-identity-issuer-cert-is-time-valid",
);
const ISSUER_60_DAYS: Check = Check::new(
    "issuer cert is valid for at least 60 days",
    "l5d-identity-issuer-cert-not-expiring-soon",
)
.warning();
const ISSUER_CHAINED: Check = Check::new(
    "issuer cert is issued by the trust anchor",
    "l5d-identity-issuer-cert-issued-by-trust-anchor",
);
const INJECTOR_CERT: Check = Check::new(
    "proxy-injector webhook has valid cert",
    "l5d-proxy-injector-webhook-cert-valid",
);
const INJECTOR_60_DAYS: Check = Check::new(
    "proxy-injector cert is valid for at least 60 days",
    "l5d-proxy-injector-webhook-cert-not-expiring-soon",
)
.warning();
const TAP_CERT: Check = Check::new("tap API server has valid cert", "l5d-tap-cert-valid");
const TAP_60_DAYS: Check = Check::new(
    "tap API server cert is valid for at least 60 days",
    "l5d-tap-cert-not-expiring-soon",
)
.warning();
const TAP_SECRET: &str = "linkerd-tap-k8s-tls";
const CP_VERSION: Check = Check::new(
    "can retrieve the control plane version",
    "l5d-version-control",
);
const CP_VERSION_MATCHES: Check = Check::new(
    "control plane and cli versions match",
    "l5d-version-control",
)
.warning();
const CP_PROXIES_HEALTHY: Check =
    Check::new("control plane proxies are healthy", "l5d-cp-proxy-healthy").retry();
const CP_PROXIES_VERSION: Check = Check::new(
    "control plane proxies and cli versions match",
    "l5d-cp-proxy-cli-version",
)
.warning();

/// The trust anchors' and the issuer's checks, on a cluster's
/// (`linkerd-identity-trust-roots`, `linkerd-identity-issuer`) or the local
/// mesh's files; `anchors_from` names where the anchors came from.
fn identity_certs(report: &mut Report, anchors: &[Cert], issuer: &Cert, anchors_from: &str) {
    let now = OffsetDateTime::now_utc();
    let all = |f: &dyn Fn(&Cert) -> Result<(), String>| -> Result<(), String> {
        let errors: Vec<String> = anchors.iter().filter_map(|a| f(a).err()).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    };
    report.record(
        &ANCHORS_ALGORITHM,
        all(&|a| match a.algorithm() {
            Algorithm::EcdsaP256 | Algorithm::Rsa => Ok(()),
            Algorithm::Other(alg) => Err(format!(
                "trust anchor {} uses {alg}; ECDSA P-256 or RSA is required",
                a.name
            )),
        }),
    );
    report.record(&ANCHORS_VALID, all(&|a| a.valid_at(now)));
    report.record(
        &ANCHORS_60_DAYS,
        all(&|a| a.valid_for_days(now, EXPIRY_WARNING_DAYS)),
    );
    report.record(
        &ISSUER_ALGORITHM,
        match issuer.algorithm() {
            Algorithm::EcdsaP256 => Ok(()),
            other => Err(format!(
                "issuer certificate {} uses {other:?}; the identity service signs with ECDSA P-256 only",
                issuer.name
            )),
        },
    );
    report.record(&ISSUER_VALID, issuer.valid_at(now));
    report.record(
        &ISSUER_60_DAYS,
        issuer.valid_for_days(now, EXPIRY_WARNING_DAYS),
    );
    report.record(
        &ISSUER_CHAINED,
        if issuer.signed_by_any(anchors) {
            Ok(())
        } else {
            Err(format!(
                "issuer certificate {} is not signed by any of the {} trust anchors in {anchors_from}",
                issuer.name,
                anchors.len()
            ))
        },
    );
}

/// What the data-plane checks take from the control plane's.
struct Installed {
    /// The trust anchors' PEM as installed, when it could be read.
    trust_anchors: Option<String>,
}

const CONFIG: &str = "linkerd-config";
const TRUST_ROOTS: &str = "linkerd-identity-trust-roots";
const ISSUER_SECRET: &str = "linkerd-identity-issuer";
const INJECTOR_SECRET: &str = "linkerd-proxy-injector-k8s-tls";
const INJECTOR_WEBHOOK: &str = "linkerd-proxy-injector-webhook-config";
const PROXY: &str = "linkerd-proxy";

/// The components the chart installs with `values`: their
/// `linkerd.io/control-plane-component` label, and whether they have a
/// ClusterRole of their own.
fn components(values: &Value) -> Vec<(&'static str, bool)> {
    let mut all = vec![
        ("destination", true),
        ("identity", true),
        ("proxy-injector", true),
        ("public-api", true),
        ("tap", true),
        ("web", true),
    ];
    let enabled = |key: &str| values[key]["enabled"].as_bool() != Some(false);
    if enabled("prometheus") {
        all.push(("prometheus", true));
    }
    if enabled("grafana") {
        all.push(("grafana", false));
    }
    all
}

async fn control_plane(report: &mut Report, cluster: &Cluster) -> Option<Installed> {
    let ns = cluster.ns.as_str();
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let control_plane_pods =
        ListParams::default().labels(&format!("linkerd.io/control-plane-ns={ns}"));

    report.category("linkerd-existence");
    let config_what = format!("{CONFIG} in namespace {ns}");
    let config = report
        .run(CONFIG_EXISTS, || async {
            let config = api(&config_what, configmaps.get_opt(CONFIG))
                .await?
                .ok_or_else(|| {
                    format!(
                        "there is no {CONFIG} in namespace {ns}: is the control plane installed? \
                         (`linkerd install | kubectl apply -f -`; -L names its namespace)"
                    )
                })?;
            let text = config
                .data
                .as_ref()
                .and_then(|d| d.get("values"))
                .ok_or_else(|| format!("{config_what} has no values"))?;
            let values: Value = serde_saphyr::from_str(text)
                .map_err(|e| format!("{config_what}'s values are not YAML: {e}"))?;
            Ok((config, values))
        })
        .await;
    let (config, values) = config?;
    let expected = components(&values);
    let pods_what = format!("the pods of namespace {ns}");
    report
        .run(NO_UNSCHEDULABLE, || async {
            let list = api(&pods_what, pods.list(&control_plane_pods)).await?;
            let stuck: Vec<String> = list.items.iter().filter_map(unschedulable).collect();
            if stuck.is_empty() {
                Ok(())
            } else {
                Err(stuck.join("\n"))
            }
        })
        .await;
    report
        .run(PODS_READY, || async {
            let list = api(&pods_what, pods.list(&control_plane_pods)).await?;
            components_ready(&list.items, &expected)
        })
        .await;

    report.category("linkerd-config");
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    report
        .run(NS_EXISTS, || async {
            match api(format!("namespace {ns}"), namespaces.get_opt(ns)).await? {
                Some(_) => Ok(()),
                None => Err(format!("the namespace {ns} does not exist")),
            }
        })
        .await;
    let labelled = ListParams::default().labels(&format!("linkerd.io/control-plane-ns={ns}"));
    let with_role: Vec<String> = expected
        .iter()
        .filter(|(_, role)| *role)
        .map(|(c, _)| format!("linkerd-{ns}-{c}"))
        .collect();
    let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
    report
        .run(CLUSTER_ROLES, || async {
            let list = api("the ClusterRoles", roles.list(&labelled)).await?;
            missing("ClusterRoles", &with_role, names(&list.items))
        })
        .await;
    let bindings: Api<ClusterRoleBinding> = Api::all(cluster.client.clone());
    report
        .run(CLUSTER_ROLE_BINDINGS, || async {
            let list = api("the ClusterRoleBindings", bindings.list(&labelled)).await?;
            missing("ClusterRoleBindings", &with_role, names(&list.items))
        })
        .await;
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    report
        .run(CRDS, || async {
            let list = api(
                "the CustomResourceDefinitions",
                crds.list(&ListParams::default()),
            )
            .await?;
            let wanted: Vec<String> = CRDS_WANTED.iter().map(|c| c.to_string()).collect();
            missing("CustomResourceDefinitions", &wanted, names(&list.items))
        })
        .await;
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), ns);
    let account_names: Vec<String> = expected
        .iter()
        .map(|(c, _)| format!("linkerd-{c}"))
        .collect();
    report
        .run(SERVICE_ACCOUNTS, || async {
            let list = api("the ServiceAccounts", accounts.list(&labelled)).await?;
            missing("ServiceAccounts", &account_names, names(&list.items))
        })
        .await;
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(cluster.client.clone());
    let webhook = report
        .run(WEBHOOKS, || async {
            let list = api(
                "the MutatingWebhookConfigurations",
                webhooks.list(&labelled),
            )
            .await?;
            missing(
                "MutatingWebhookConfigurations",
                &[INJECTOR_WEBHOOK.to_string()],
                names(&list.items),
            )?;
            Ok(list
                .items
                .into_iter()
                .find(|w| w.metadata.name.as_deref() == Some(INJECTOR_WEBHOOK)))
        })
        .await
        .flatten();
    // The API server's own verdict on reaching tap: its `Available`
    // condition, with the reason when it is not.
    let resource = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService"),
        "apiservices",
    );
    let api_services: Api<kube::core::DynamicObject> =
        Api::all_with(cluster.client.clone(), &resource);
    let tap_ca_bundle = report
        .run(TAP_API, || async {
            let service = api(
                format!("the APIService {TAP_API_SERVICE}"),
                api_services.get_opt(TAP_API_SERVICE),
            )
            .await?
            .ok_or_else(|| format!("there is no APIService {TAP_API_SERVICE}"))?;
            let conditions = service.data["status"]["conditions"].as_array().cloned();
            let available = conditions
                .unwrap_or_default()
                .into_iter()
                .find(|c| c["type"] == "Available");
            let bundle = service.data["spec"]["caBundle"]
                .as_str()
                .map(str::to_string);
            match available {
                Some(c) if c["status"] == "True" => Ok(bundle),
                Some(c) => Err(format!(
                    "the APIService {TAP_API_SERVICE} is not available: {}",
                    c["message"].as_str().unwrap_or("no reason given")
                )),
                None => Err(format!(
                    "the APIService {TAP_API_SERVICE} has no Available condition yet"
                )),
            }
        })
        .await;

    report.category("linkerd-identity");
    let now = OffsetDateTime::now_utc();
    let identity = report
        .run(CERT_CONFIG, || async {
            let roots = api(
                format!("{TRUST_ROOTS} in namespace {ns}"),
                configmaps.get_opt(TRUST_ROOTS),
            )
            .await?
            .ok_or_else(|| format!("there is no ConfigMap {TRUST_ROOTS} in namespace {ns}"))?;
            let anchors_pem = roots
                .data
                .as_ref()
                .and_then(|d| d.get("ca-bundle.crt"))
                .cloned()
                .ok_or_else(|| format!("{TRUST_ROOTS} has no ca-bundle.crt"))?;
            let anchors = certs::bundle(&anchors_pem, "trust anchors")?;
            let issuer = api(
                format!("the Secret {ISSUER_SECRET} in namespace {ns}"),
                secrets.get_opt(ISSUER_SECRET),
            )
            .await?
            .ok_or_else(|| format!("there is no Secret {ISSUER_SECRET} in namespace {ns}"))?;
            let issuer_pem = secret_text(&issuer, "crt.pem")?;
            let issuer = certs::bundle(&issuer_pem, "issuer certificate")?.remove(0);
            Ok((anchors_pem, anchors, issuer))
        })
        .await;
    let mut trust_anchors = None;
    if let Some((anchors_pem, anchors, issuer)) = identity {
        identity_certs(report, &anchors, &issuer, TRUST_ROOTS);
        trust_anchors = Some(anchors_pem);
    }

    report.category("linkerd-webhooks-and-apisvc-tls");
    let injector = report
        .run(INJECTOR_CERT, || async {
            let secret = api(
                format!("the Secret {INJECTOR_SECRET} in namespace {ns}"),
                secrets.get_opt(INJECTOR_SECRET),
            )
            .await?
            .ok_or_else(|| format!("there is no Secret {INJECTOR_SECRET} in namespace {ns}"))?;
            let cert = certs::bundle(
                &secret_text(&secret, "tls.crt")?,
                "proxy injector's certificate",
            )?
            .remove(0);
            injector_cert_valid(&cert, webhook.as_ref(), ns, now)?;
            Ok(cert)
        })
        .await;
    if let Some(cert) = injector {
        report.record(
            &INJECTOR_60_DAYS,
            cert.valid_for_days(now, EXPIRY_WARNING_DAYS),
        );
    }
    let tap = report
        .run(TAP_CERT, || async {
            let secret = api(
                format!("the Secret {TAP_SECRET} in namespace {ns}"),
                secrets.get_opt(TAP_SECRET),
            )
            .await?
            .ok_or_else(|| format!("there is no Secret {TAP_SECRET} in namespace {ns}"))?;
            let cert = certs::bundle(&secret_text(&secret, "tls.crt")?, "tap API's certificate")?
                .remove(0);
            let bundle = tap_ca_bundle
                .clone()
                .flatten()
                .ok_or_else(|| format!("the APIService {TAP_API_SERVICE} has no caBundle"))
                .and_then(|b64| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| {
                            format!("the caBundle of {TAP_API_SERVICE} is not base64 PEM")
                        })
                });
            serving_cert_valid(
                &cert,
                &format!("linkerd-tap.{ns}.svc"),
                "the tap API's certificate",
                &format!("the APIService {TAP_API_SERVICE}"),
                bundle,
                now,
            )?;
            Ok(cert)
        })
        .await;
    if let Some(cert) = tap {
        report.record(&TAP_60_DAYS, cert.valid_for_days(now, EXPIRY_WARNING_DAYS));
    }

    report.category("control-plane-version");
    let version = report
        .run(CP_VERSION, || async { control_plane_version(&config) })
        .await;
    if let Some(version) = version {
        report.record(
            &CP_VERSION_MATCHES,
            if version == CLIENT_VERSION {
                Ok(())
            } else {
                Err(format!(
                    "the control plane is on {version} but the CLI is on {CLIENT_VERSION}: upgrade one of them"
                ))
            },
        );
    }

    report.category("linkerd-control-plane-proxy");
    let proxies = report
        .run(CP_PROXIES_HEALTHY, || async {
            let list = api(&pods_what, pods.list(&control_plane_pods)).await?;
            let sick: Vec<String> = list.items.iter().filter_map(proxy_problem).collect();
            if sick.is_empty() {
                Ok(list.items)
            } else {
                Err(sick.join("\n"))
            }
        })
        .await;
    if let Some(pods) = proxies {
        report.record(&CP_PROXIES_VERSION, proxy_versions(&pods));
    }
    Some(Installed { trust_anchors })
}

fn names<K: Resource>(items: &[K]) -> Vec<String> {
    items.iter().filter_map(|i| i.meta().name.clone()).collect()
}

fn missing(kind: &str, wanted: &[String], found: Vec<String>) -> Result<(), String> {
    let absent: Vec<&str> = wanted
        .iter()
        .filter(|w| !found.contains(w))
        .map(String::as_str)
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing {kind}: {} (re-apply `linkerd install`)",
            absent.join(", ")
        ))
    }
}

fn secret_text(secret: &Secret, key: &str) -> Result<String, String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| format!("the Secret {name} has no {key}"))?;
    String::from_utf8(bytes.0.clone())
        .map_err(|_| format!("{key} in the Secret {name} is not text"))
}

/// The injector's serving certificate must be valid now, for the name the
/// API server calls it by, and signed by the webhook's caBundle.
fn injector_cert_valid(
    cert: &Cert,
    webhook: Option<&MutatingWebhookConfiguration>,
    ns: &str,
    now: OffsetDateTime,
) -> Result<(), String> {
    let bundle = webhook
        .ok_or_else(|| format!("there is no {INJECTOR_WEBHOOK} to check the certificate against"))
        .and_then(|webhook| {
            let bundle = webhook
                .webhooks
                .iter()
                .flatten()
                .find_map(|w| w.client_config.ca_bundle.as_ref())
                .ok_or_else(|| format!("{INJECTOR_WEBHOOK} has no caBundle"))?;
            String::from_utf8(bundle.0.clone())
                .map_err(|_| format!("the caBundle of {INJECTOR_WEBHOOK} is not PEM"))
        });
    serving_cert_valid(
        cert,
        &format!("linkerd-proxy-injector.{ns}.svc"),
        "the proxy injector's certificate",
        INJECTOR_WEBHOOK,
        bundle,
        now,
    )
}

/// A certificate the API server calls a control-plane service with: valid
/// now, for the service's name, and signed by the caBundle the API server
/// was given (`by`'s), or the API server refuses the service.
fn serving_cert_valid(
    cert: &Cert,
    service: &str,
    what: &str,
    by: &str,
    bundle: Result<String, String>,
    now: OffsetDateTime,
) -> Result<(), String> {
    cert.valid_at(now)?;
    if !cert.dns_names().iter().any(|n| n == service) {
        return Err(format!(
            "{what} is not for {service} (it names {})",
            cert.dns_names().join(", ")
        ));
    }
    let cas = certs::bundle(&bundle?, &format!("caBundle of {by}"))?;
    if !cert.signed_by_any(&cas) {
        return Err(format!(
            "{what} is not signed by the caBundle of {by}: the API server will refuse to call it"
        ));
    }
    Ok(())
}

/// The control plane's version: the chart's, as linkerd-config records it
/// (`linkerd.io/created-by: linkerd/helm VERSION`).
fn control_plane_version(config: &ConfigMap) -> Result<String, String> {
    config
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("linkerd.io/created-by"))
        .and_then(|c| c.rsplit_once(' '))
        .map(|(_, v)| v.to_string())
        .ok_or_else(|| format!("{CONFIG} has no linkerd.io/created-by annotation with a version"))
}

fn unschedulable(pod: &Pod) -> Option<String> {
    let condition = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    Some(format!(
        "pod/{} is unschedulable: {}",
        pod.metadata.name.as_deref().unwrap_or_default(),
        condition.message.as_deref().unwrap_or("no reason given")
    ))
}

/// Every component has a pod that is running with all its containers
/// ready; otherwise what is not.
fn components_ready(pods: &[Pod], components: &[(&str, bool)]) -> Result<(), String> {
    let mut problems = Vec::new();
    for (component, _) in components {
        let of: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("linkerd.io/control-plane-component"))
                    .map(String::as_str)
                    == Some(*component)
            })
            .collect();
        if of.is_empty() {
            problems.push(format!("no pods for \"linkerd-{component}\""));
            continue;
        }
        if !of.iter().any(|p| pod_problem(p).is_none()) {
            problems.extend(of.iter().filter_map(|p| pod_problem(p)));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Why a pod is not running and ready, if it is not.
fn pod_problem(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    if phase != "Running" {
        return Some(format!("pod/{name} is {phase}"));
    }
    let statuses = status.and_then(|s| s.container_statuses.as_ref());
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    for container in containers {
        let ready = statuses
            .into_iter()
            .flatten()
            .find(|s| s.name == container.name)
            .is_some_and(|s| s.ready);
        if !ready {
            return Some(format!(
                "container {} of pod/{name} is not ready",
                container.name
            ));
        }
    }
    proxy_problem(pod)
}

/// The proxy container of a pod: in `containers`, or a native sidecar in
/// `initContainers`.
fn proxy_container(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == PROXY)
}

/// Why a pod's proxy is not ready, if it is not. The proxy reports ready
/// only once it holds a certificate from the identity service, so a ready
/// proxy is a certified one.
fn proxy_problem(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    proxy_container(pod)?;
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(
            status
                .and_then(|s| s.init_container_statuses.as_ref())
                .into_iter()
                .flatten(),
        )
        .find(|s| s.name == PROXY)
        .is_some_and(|s| s.ready);
    if ready {
        None
    } else {
        Some(format!(
            "the linkerd-proxy of pod {namespace}/{name} is not ready (it is not ready until it is certified)"
        ))
    }
}

/// Every proxy runs the CLI's version, by its `linkerd.io/proxy-version`.
fn proxy_versions(pods: &[Pod]) -> Result<(), String> {
    let stale: Vec<String> = pods
        .iter()
        .filter(|p| proxy_container(p).is_some())
        .filter_map(|p| {
            let version = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("linkerd.io/proxy-version"))
                .map(String::as_str)
                .unwrap_or("unknown");
            (version != CLIENT_VERSION).then(|| {
                format!(
                    "{}/{} runs proxy version {version} but the CLI is on {CLIENT_VERSION}",
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default()
                )
            })
        })
        .collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(stale.join("\n"))
    }
}

// --proxy: the data plane.

const DP_NAMESPACE: Check = Check::new("data plane namespace exists", "l5d-data-plane-exists");
const DP_READY: Check = Check::new("data plane proxies are ready", "l5d-data-plane-ready").retry();
const DP_TRUST: Check = Check::new(
    "data plane proxies certificate match CA",
    "l5d-data-plane-proxies-certificate-match-ca",
)
.warning();
const DP_VERSION: Check = Check::new(
    "data plane and cli versions match",
    "l5d-data-plane-cli-version",
)
.warning();

async fn data_plane(
    report: &mut Report,
    cluster: &Cluster,
    installed: &Installed,
    only: Option<&str>,
) {
    report.category("linkerd-data-plane");
    if let Some(ns) = only {
        let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
        let found = report
            .run(DP_NAMESPACE, || async {
                match api(format!("namespace {ns}"), namespaces.get_opt(ns)).await? {
                    Some(_) => Ok(()),
                    None => Err(format!("the namespace {ns} does not exist")),
                }
            })
            .await;
        if found.is_none() {
            return;
        }
    }
    let pods: Api<Pod> = match only {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    };
    let meshed =
        ListParams::default().labels(&format!("linkerd.io/control-plane-ns={}", cluster.ns));
    let control_ns = cluster.ns.as_str();
    let ready = report
        .run(DP_READY, || async {
            let list = api("the meshed pods", pods.list(&meshed)).await?;
            // The control plane's own proxies were checked above.
            let data_plane: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| only.is_some() || p.metadata.namespace.as_deref() != Some(control_ns))
                .filter(|p| proxy_container(p).is_some())
                .collect();
            if data_plane.is_empty()
                && let Some(ns) = only
            {
                return Err(format!(
                    "no meshed pods in namespace {ns}: `linkerd inject` adds the proxy to its workloads"
                ));
            }
            let sick: Vec<String> = data_plane.iter().filter_map(proxy_problem).collect();
            if sick.is_empty() { Ok(data_plane) } else { Err(sick.join("\n")) }
        })
        .await;
    let Some(pods) = ready else { return };
    if let Some(anchors) = &installed.trust_anchors {
        report.record(&DP_TRUST, trust_matches(&pods, anchors));
    }
    report.record(&DP_VERSION, proxy_versions(&pods));
}

/// Every proxy trusts the installed anchors (its
/// `LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS`); one injected before a rotation
/// does not, until its pod is restarted.
fn trust_matches(pods: &[Pod], anchors: &str) -> Result<(), String> {
    let stale: Vec<String> = pods
        .iter()
        .filter(|p| {
            let env = proxy_container(p)
                .and_then(|c| c.env.as_ref())
                .into_iter()
                .flatten()
                .find(|e| e.name == "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS")
                .and_then(|e| e.value.as_deref());
            env.map(str::trim) != Some(anchors.trim())
        })
        .map(|p| {
            format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "these pods' proxies trust other anchors than {TRUST_ROOTS}; restart them (`kubectl rollout restart`):\n{}",
            stale.join("\n")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_versions_are_compared_as_numbers() {
        assert!(minimum_version("1", "33+").is_ok());
        assert!(minimum_version("1", "22").is_ok());
        let old = minimum_version("1", "9").unwrap_err();
        assert!(old.contains("version 1.22 or later"), "{old}");
        assert!(minimum_version("one", "x").is_err());
    }

    #[test]
    fn prometheus_and_grafana_are_expected_only_when_enabled() {
        let all = components(&serde_json::json!({}));
        assert!(all.contains(&("prometheus", true)) && all.contains(&("grafana", false)));
        let without = components(
            &serde_json::json!({"prometheus": {"enabled": false}, "grafana": {"enabled": false}}),
        );
        assert_eq!(without.len(), 6);
    }

    #[test]
    fn a_missing_component_and_an_unready_pod_are_named() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "linkerd-tap-1", "namespace": "linkerd",
                         "labels": {"linkerd.io/control-plane-component": "tap"}},
            "spec": {"containers": [{"name": "linkerd-proxy"}, {"name": "tap"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "linkerd-proxy", "ready": true, "restartCount": 0, "image": "", "imageID": ""},
                {"name": "tap", "ready": false, "restartCount": 0, "image": "", "imageID": ""},
            ]},
        }))
        .unwrap();
        let err = components_ready(&[pod], &[("tap", true), ("web", false)]).unwrap_err();
        assert_eq!(
            err,
            "container tap of pod/linkerd-tap-1 is not ready\nno pods for \"linkerd-web\""
        );
    }
}
