//! A cluster of network-namespace "pods": the base of the end-to-end tests.
//!
//! Each pod is a network namespace with an address in 198.18.0.0/16 on a
//! shared bridge. A meshed pod runs `linkerd-proxy-init` (the real iptables
//! rules), then `linkerd-proxy` as uid 2102, beside applications that know
//! nothing of it. The control plane (destination and identity on the local
//! backend, and tap) runs in a namespace of its own, at [`CONTROL_IP`], and learns
//! the pods from the topology file the cluster writes as pods are added.
//! Services get virtual cluster IPs in 198.19.0.0/16, which only a proxy
//! can reach, as with kube-proxy absent.
//!
//! Everything is removed on drop (processes, then namespaces, whose
//! interfaces go with them), whether the test passed or not.

use crate::{
    mesh,
    netns::{self, Bridge, Netns, NsRuntime},
    proxy::{Proxy, bin, spawn_listening},
};
use std::{
    future::Future,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Stdio,
    time::Duration,
};
use tokio::process::{Child, Command};

/// Where the control plane listens.
pub const CONTROL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const DESTINATION_PORT: u16 = 8086;
pub const IDENTITY_PORT: u16 = 8080;
pub const TAP_PORT: u16 = 8088;
/// The networks the proxies resolve original destinations in.
pub const NETWORKS: &str = "198.18.0.0/15";
const CLUSTER_IPS: &str = "198.19.0.0/16";

/// Why these tests cannot run here, if they cannot; print it and return.
pub fn unavailable() -> Option<String> {
    netns::unavailable()
}

/// A service: its name, cluster IP, `(port, targetPort)`s and the `app` label
/// of the pods it selects.
pub struct Service {
    pub name: &'static str,
    pub cluster_ip: Ipv4Addr,
    pub ports: Vec<(u16, u16)>,
    pub app: &'static str,
}

/// How a pod is set up.
#[derive(Clone, Debug, Default)]
pub struct PodSpec {
    /// The pod's `app` label and service account.
    pub app: &'static str,
    /// With a proxy (and proxy-init's rules).
    pub meshed: bool,
    /// Extra `linkerd-proxy-init` flags.
    pub init_args: Vec<String>,
    /// Extra proxy environment.
    pub proxy_env: Vec<(String, String)>,
}

pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    /// Dropped first: the proxy process, then the runtime, then the namespace.
    pub proxy: Option<Proxy>,
    pub rt: NsRuntime,
    pub ns: Netns,
}

impl Pod {
    /// Runs `f` inside the pod's network namespace.
    pub async fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.run(f).await
    }

    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }

    /// The pod's proxy's metrics.
    pub async fn metrics(&self) -> crate::metrics::Scrape {
        self.rt.run(crate::proxy::scrape(self.addr(4191))).await
    }

    /// The proxy's `/ready` status.
    pub async fn ready_status(&self) -> u16 {
        let admin = self.addr(4191);
        self.rt
            .run(async move {
                crate::backends::http1_request(admin, "GET", "/ready")
                    .await
                    .0
            })
            .await
    }
}

pub struct Cluster {
    controllers: Vec<Child>,
    control: (NsRuntime, Netns),
    bridge: Bridge,
    dir: PathBuf,
    trust_anchors: String,
    services: Vec<Service>,
    /// The topology's pod entries and token entries.
    pods: Vec<String>,
    tokens: Vec<String>,
    next_ip: u8,
}

impl Cluster {
    /// The bridge, a fresh trust anchor and issuer, and the control plane.
    pub async fn start(services: Vec<Service>) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("l5d-pods-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let trust_anchors = mesh::write_certs(&dir);

        let bridge = Bridge::create().expect("bridge");
        let control = Netns::create("ctl").expect("control namespace");
        bridge
            .attach(&control, CONTROL_IP, 16, &[])
            .expect("attach control plane");
        let control_rt = control.runtime().expect("control runtime");
        let mut cluster = Self {
            controllers: Vec::new(),
            control: (control_rt, control),
            bridge,
            dir,
            trust_anchors,
            services,
            pods: Vec::new(),
            tokens: Vec::new(),
            next_ip: 10,
        };
        // The tap controller is a workload too: it proves its identity to
        // the proxies with a certificate from the identity service.
        let tap_token = cluster.dir.join("linkerd-tap.token");
        std::fs::write(&tap_token, "linkerd-tap-token").unwrap();
        cluster.tokens.push(
            "  - {token: linkerd-tap-token, namespace: linkerd, serviceAccount: linkerd-tap}\n"
                .into(),
        );
        cluster.write_topology();
        let topology = cluster.dir.join("topology.yaml");
        for (service, port, admin) in [
            ("destination", DESTINATION_PORT, 9996),
            ("identity", IDENTITY_PORT, 9990),
            ("tap", TAP_PORT, 9998),
        ] {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &cluster.control.1.name])
                .arg(bin("linkerd-controller"))
                .arg(service)
                .args(["--addr", &format!("{CONTROL_IP}:{port}")])
                .args(["--admin-addr", &format!("{CONTROL_IP}:{admin}")])
                .args(["--poll-interval", "20ms", "--local"])
                .arg(&topology)
                .stdin(Stdio::null())
                .kill_on_drop(true);
            match service {
                "identity" => {
                    cmd.arg("--trust-anchors")
                        .arg(cluster.dir.join("ca-bundle.crt"))
                        .arg("--issuer-dir")
                        .arg(&cluster.dir);
                }
                "tap" => {
                    cmd.arg("--trust-anchors")
                        .arg(cluster.dir.join("ca-bundle.crt"))
                        .arg("--token-file")
                        .arg(&tap_token)
                        .args(["--identity-addr", &format!("{CONTROL_IP}:{IDENTITY_PORT}")]);
                }
                _ => {}
            }
            let (child, _) = spawn_listening(cmd, &[service_marker(service), "admin"]).await;
            cluster.controllers.push(child);
        }
        cluster
    }

    /// The command prefix that runs a program in the control plane's
    /// namespace (where `linkerd` reaches the controllers).
    pub fn control_prefix(&self) -> Vec<String> {
        self.control.1.prefix()
    }

    fn write_topology(&self) {
        let mut yaml = String::from("services:\n");
        for s in &self.services {
            let ports = s
                .ports
                .iter()
                .map(|(p, t)| format!("{{port: {p}, targetPort: {t}}}"))
                .collect::<Vec<_>>()
                .join(", ");
            yaml.push_str(&format!(
                "  - {{name: {}, namespace: {NS}, clusterIP: {}, selector: {{app: {}}}, ports: [{ports}]}}\n",
                s.name, s.cluster_ip, s.app
            ));
        }
        yaml.push_str("pods:\n");
        for p in &self.pods {
            yaml.push_str(p);
        }
        yaml.push_str("tokens:\n");
        for t in &self.tokens {
            yaml.push_str(t);
        }
        let tmp = self.dir.join("topology.yaml.new");
        std::fs::write(&tmp, yaml).expect("write topology");
        std::fs::rename(&tmp, self.dir.join("topology.yaml")).expect("replace topology");
    }

    /// Adds a pod: its namespace on the bridge, its applications (`apps`
    /// runs inside it, given the pod's address), and, when meshed,
    /// proxy-init's rules and a ready proxy. It joins the topology once it
    /// is serving.
    pub async fn pod<F, Fut>(&mut self, name: &str, spec: PodSpec, apps: F) -> Pod
    where
        F: FnOnce(Ipv4Addr) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let ip = Ipv4Addr::new(198, 18, 0, self.next_ip);
        self.next_ip += 1;
        let ns = Netns::create(name).expect("pod namespace");
        self.bridge
            .attach(&ns, ip, 16, &[CLUSTER_IPS])
            .expect("attach pod");
        let rt = ns.runtime().expect("pod runtime");
        rt.run(apps(ip)).await;

        let sa = spec.app;
        let token = self.dir.join(format!("{name}.token"));
        std::fs::write(&token, format!("{name}-token")).unwrap();
        self.tokens.push(format!(
            "  - {{token: {name}-token, namespace: {NS}, serviceAccount: {sa}}}\n"
        ));
        let proxy = if spec.meshed {
            self.write_topology();
            let mut argv = ns.prefix();
            argv.push(bin("linkerd-proxy-init").display().to_string());
            argv.extend(spec.init_args.iter().cloned());
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            netns::run(argv[0], &argv[1..]).expect("linkerd-proxy-init");

            let wrapper = ns.proxy_user_prefix();
            let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
            let mut builder = Proxy::builder()
                .wrapper(&wrapper)
                .without("LINKERD2_PROXY_IDENTITY_DISABLED")
                .env("LINKERD2_PROXY_INBOUND_LISTEN_ADDR", "0.0.0.0:4143")
                .env("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:4140")
                .env("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:4191")
                .env(
                    "LINKERD2_PROXY_DESTINATION_SVC_ADDR",
                    SocketAddr::from((CONTROL_IP, DESTINATION_PORT)),
                )
                .env("LINKERD2_PROXY_DESTINATION_GET_NETWORKS", NETWORKS)
                .env("LINKERD2_PROXY_IDENTITY_LOCAL_NAME", mesh::identity(NS, sa))
                .env("LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", &self.trust_anchors)
                .env("LINKERD2_PROXY_IDENTITY_TOKEN_FILE", token.display())
                .env("LINKERD2_PROXY_CONTROL_LISTEN_ADDR", "0.0.0.0:4190")
                .env(
                    "LINKERD2_PROXY_TAP_SVC_NAME",
                    mesh::identity("linkerd", "linkerd-tap"),
                )
                .env(
                    "LINKERD2_PROXY_IDENTITY_SVC_ADDR",
                    SocketAddr::from((CONTROL_IP, IDENTITY_PORT)),
                );
            for (k, v) in &spec.proxy_env {
                builder = builder.env(k, v);
            }
            Some(builder.spawn().await)
        } else {
            None
        };
        let pod = Pod {
            name: name.to_string(),
            ip,
            proxy,
            rt,
            ns,
        };
        if spec.meshed {
            let ready = crate::eventually(Duration::from_secs(20), || async {
                (pod.ready_status().await == 200).then_some(())
            })
            .await;
            assert!(ready.is_some(), "{name}'s proxy never became ready");
        }
        self.pods.push(format!(
            "  - {{name: {name}, namespace: {NS}, ip: {ip}, labels: {{app: {}}}, owner: {{kind: Deployment, name: {}}}, serviceAccount: {sa}, meshed: {}}}\n",
            spec.app, spec.app, spec.meshed
        ));
        self.write_topology();
        // Joined once the control plane knows it (asked from the control
        // plane's own namespace, so no pod's proxy sees the question).
        let known = self.control.0.run(known_to_destination(ip)).await;
        assert!(known, "destination never learned of {name} ({ip})");
        pod
    }
}

/// Whether destination resolves `ip` (as a pod) within a few seconds.
async fn known_to_destination(ip: Ipv4Addr) -> bool {
    use linkerd2_proxy_api::destination::{
        GetDestination, destination_client::DestinationClient, update::Update,
    };
    let addr = SocketAddr::from((CONTROL_IP, DESTINATION_PORT));
    let known = crate::eventually(Duration::from_secs(10), || async move {
        let mut client = DestinationClient::connect(format!("http://{addr}"))
            .await
            .ok()?;
        let req = GetDestination {
            scheme: "k8s".into(),
            path: format!("{ip}:80"),
            context_token: String::new(),
        };
        let mut updates = client.get(req).await.ok()?.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(1), updates.message())
            .await
            .ok()?
            .ok()??;
        matches!(first.update, Some(Update::Add(_))).then_some(())
    })
    .await;
    known.is_some()
}

/// The pods' namespace (Kubernetes', not the network's).
pub const NS: &str = "emojivoto";

fn service_marker(service: &str) -> &'static str {
    match service {
        "destination" => "destination",
        "identity" => "identity",
        _ => "tap",
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
