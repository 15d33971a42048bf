//! How the CLI reaches the control plane's services: straight to an address
//! (`--api-addr`, the local mesh), or, in a cluster, through the Kubernetes
//! API by port-forwarding to one of the service's pods, as `kubectl
//! port-forward` does (no ports opened on the machine).

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::ListParams};
use linkerd_proxy_api::tap_controller::{TapRequest, api as tap_api};
use std::{path::PathBuf, time::Duration};
use tonic::transport::{Channel, Endpoint, Uri};

/// Where the control plane is, from the root flags.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// A direct address, when given.
    pub(crate) api_addr: Option<String>,
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) context: Option<String>,
    /// `--as`, `--as-group`: whom the Kubernetes API is asked as.
    pub(crate) impersonate: Option<String>,
    pub(crate) impersonate_groups: Vec<String>,
    /// The control plane's namespace.
    pub(crate) namespace: String,
    /// Say on stderr what is reached, and how.
    pub(crate) verbose: bool,
}

/// A control-plane service: its pods' `linkerd.io/control-plane-component`
/// label and its gRPC port.
pub(crate) struct Service {
    pub(crate) component: &'static str,
    pub(crate) port: u16,
}

pub(crate) const TAP: Service = Service {
    component: "tap",
    port: 8088,
};

pub(crate) const PUBLIC_API: Service = Service {
    component: "public-api",
    port: 8085,
};

pub(crate) const DESTINATION: Service = Service {
    component: "destination",
    port: 8086,
};

impl Target {
    /// A gRPC channel to `service`.
    /// With `--api-addr`, every service is that address: the public API
    /// relays tap and destination.
    pub(crate) async fn channel(&self, service: &Service) -> anyhow::Result<Channel> {
        match &self.api_addr {
            Some(addr) => {
                self.say(format_args!("{}: connecting to {addr}", service.component));
                Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|_| anyhow::anyhow!("--api-addr {addr:?} is not HOST:PORT"))?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot reach the {} service at {addr} ({e}): is the control plane running? (--api-addr sets where it is)",
                        service.component
                    )
                })
            }
            None => self.forwarded(service).await,
        }
    }

    fn say(&self, what: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("linkerd: {what}");
        }
    }

    /// `GET path` from a proxy's admin server: straight to `addr`, or in
    /// a cluster through a port-forward to the pod.
    pub(crate) async fn proxy_admin_get(
        &self,
        namespace: &str,
        pod: &str,
        addr: std::net::SocketAddr,
        path: &str,
    ) -> anyhow::Result<String> {
        let timeout = Duration::from_secs(10);
        let fetch = async {
            if self.api_addr.is_some() {
                self.say(format_args!("{pod}: GET http://{addr}{path}"));
                let io = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))?;
                http_get(io, path).await
            } else {
                self.say(format_args!(
                    "{pod}: port-forward to {}, GET {path}",
                    addr.port()
                ));
                let pods: Api<Pod> = Api::namespaced(self.client().await?, namespace);
                let mut forwarder = pods
                    .portforward(pod, &[addr.port()])
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot port-forward to {pod}: {e}"))?;
                let io = forwarder
                    .take_stream(addr.port())
                    .ok_or_else(|| anyhow::anyhow!("the port-forward to {pod} has no stream"))?;
                let text = http_get(io, path).await;
                drop(forwarder);
                text
            }
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
    }

    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    anyhow::anyhow!("cannot read the kubeconfig {}: {e}", path.display())
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => {
                if let Some(missing) = no_kubeconfig() {
                    anyhow::bail!(
                        "no cluster and no local mesh to talk to: {missing}, and no `linkerd demo` is running \
                         (state file {}); start the local mesh with `linkerd demo`, or name a cluster with --kubeconfig FILE",
                        crate::demo::state::path().display()
                    );
                }
                kube::Config::from_kubeconfig(&options).await
            }
        }
        .map_err(|e| {
            // kube's message repeats the path; its innermost cause is what
            // went wrong with it.
            let cause = std::iter::successors(
                Some(&e as &(dyn std::error::Error + 'static)),
                |e| e.source(),
            )
            .last()
            .map_or_else(|| e.to_string(), ToString::to_string);
            // One line: a YAML error may carry a drawing of where it is.
            let cause = cause.lines().next().unwrap_or_default().to_string();
            anyhow::anyhow!(
                "the kubeconfig {} is not usable: {cause} (--kubeconfig and --context choose another)",
                kubeconfig_paths()
            )
        })?;
        let mut config = config;
        if let Some(user) = &self.impersonate {
            config.auth_info.impersonate = Some(user.clone());
        }
        if !self.impersonate_groups.is_empty() {
            config.auth_info.impersonate_groups = Some(self.impersonate_groups.clone());
        }
        Ok(Client::try_from(config)?)
    }

    /// Opens a tap through the Kubernetes API server (tap's aggregated API,
    /// `/apis/tap.linkerd.io`), which checks the user's RBAC first; the
    /// answer's body is the stream of frames.
    pub(crate) async fn tap_through_kube(
        &self,
        req: &TapRequest,
    ) -> Result<tap_api::Events<kube::client::Body>, TapRefused> {
        let request = tap_api::request(req).map_err(|e| TapRefused::other(e.to_string()))?;
        let client = self
            .client()
            .await
            .map_err(|e| TapRefused::other(format!("{e:#}")))?;
        self.say(format_args!(
            "tap: POST {} through the Kubernetes API",
            request.uri()
        ));
        let rsp = client
            .send(request.map(kube::client::Body::from))
            .await
            .map_err(|e| TapRefused::other(format!("cannot reach the Kubernetes API: {e}")))?;
        let status = rsp.status();
        if status.is_success() {
            return Ok(tap_api::Events::new(rsp.into_body()));
        }
        use http_body_util::BodyExt;
        let body = rsp.into_body().collect().await.map(|b| b.to_bytes());
        Err(TapRefused {
            status: Some(status),
            message: tap_api::refusal(&body.unwrap_or_default()),
        })
    }

    /// Port-forwards to a running pod of `service` for each connection.
    async fn forwarded(&self, service: &Service) -> anyhow::Result<Channel> {
        let client = self.client().await?;
        let pods: Api<Pod> = Api::namespaced(client, &self.namespace);
        let selector = format!("linkerd.io/control-plane-component={}", service.component);
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| anyhow::anyhow!("cannot list the control plane's pods: {e}"))?;
        let running = list.items.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_none_or(|phase| phase == "Running")
        });
        let Some(name) = running.and_then(|p| p.metadata.name) else {
            anyhow::bail!(
                "no running {} pod in namespace {}: is the control plane installed? (`linkerd check`; -L sets its namespace)",
                service.component,
                self.namespace
            );
        };
        let port = service.port;
        let connector = tower::service_fn(move |_: Uri| {
            let (pods, name) = (pods.clone(), name.clone());
            async move {
                let mut forwarder = pods
                    .portforward(&name, &[port])
                    .await
                    .map_err(std::io::Error::other)?;
                let stream = forwarder
                    .take_stream(port)
                    .ok_or_else(|| std::io::Error::other("the port-forward has no stream"))?;
                // The forwarder's task lives as long as the stream is used.
                tokio::spawn(async move {
                    let _ = forwarder.join().await;
                });
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        Endpoint::from_static("http://control-plane.invalid")
            .connect_timeout(Duration::from_secs(10))
            .connect_with_connector(connector)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot port-forward to {} in namespace {}: {e}",
                    service.component,
                    self.namespace
                )
            })
    }
}

/// Where kube-rs looks for a kubeconfig: `$KUBECONFIG`'s files, else
/// `~/.kube/config`.
fn kubeconfig_paths() -> String {
    match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(v) => std::env::split_paths(&v)
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        None => home_kubeconfig().display().to_string(),
    }
}

fn home_kubeconfig() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".kube/config")
}

/// What was looked for and not found, when there is no kubeconfig at all
/// (and no in-cluster service account): then the user most likely wants
/// the local mesh.
fn no_kubeconfig() -> Option<String> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(v) if !std::env::split_paths(&v).any(|p| p.exists()) => Some(format!(
            "$KUBECONFIG names {}, which does not exist",
            kubeconfig_paths()
        )),
        None if !in_cluster && !home_kubeconfig().exists() => Some(format!(
            "no kubeconfig at {} ($KUBECONFIG is not set)",
            home_kubeconfig().display()
        )),
        _ => None,
    }
}

/// One HTTP/1.1 `GET` on `io`, the body as text.
pub(crate) async fn http_get<I>(io: I, path: &str) -> anyhow::Result<String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let rsp = sender.send_request(req).await?;
    let status = rsp.status();
    let body = rsp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        anyhow::bail!("{path} answered {status}");
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Why the API server did not open a tap.
#[derive(Debug)]
pub(crate) struct TapRefused {
    pub(crate) status: Option<http::StatusCode>,
    pub(crate) message: String,
}

impl TapRefused {
    fn other(message: impl Into<String>) -> Self {
        Self {
            status: None,
            message: message.into(),
        }
    }
}
