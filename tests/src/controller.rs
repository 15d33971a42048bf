//! Runs a real `linkerd-controller` on either discovery backend.

use crate::{
    kubeapi::FakeApi,
    proxy::{bin, spawn_listening},
};
use linkerd_discovery::Topology;
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicU32, Ordering},
};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// Where the destination service discovers from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A topology file.
    Local,
    /// The Kubernetes API (a [`FakeApi`] on loopback, through a kubeconfig).
    Kubernetes,
}

pub struct Controller {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    dir: PathBuf,
    child: Child,
    api: Option<FakeApi>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh directory for one controller's files.
fn scratch_dir() -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("l5d-ctl-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `linkerd-controller destination` with a discovery source: `--local FILE`
/// or `--kubeconfig FILE`.
fn destination_command(source: &str, file: &Path) -> Command {
    service_command("destination", source, file)
}

fn service_command(service: &str, source: &str, file: &Path) -> Command {
    let mut cmd = Command::new(bin("linkerd-controller"));
    cmd.args([
        service,
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ])
    .args(["--poll-interval", "20ms", source])
    .arg(file)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    cmd
}

/// `linkerd-controller SERVICE` on `backend`, holding `yaml`'s world: a
/// topology file in `dir`, or a fake API (with its kubeconfig in `dir`).
async fn backend_command(
    service: &str,
    backend: Backend,
    yaml: &str,
    dir: &Path,
) -> (Command, Option<FakeApi>) {
    match backend {
        Backend::Local => {
            let topology = dir.join("topology.yaml");
            std::fs::write(&topology, yaml).expect("write topology");
            (service_command(service, "--local", &topology), None)
        }
        Backend::Kubernetes => {
            let api = FakeApi::start().await;
            api.set_topology(&parse(yaml));
            api.set_resources(yaml);
            let kubeconfig = api.write_kubeconfig(dir);
            (
                service_command(service, "--kubeconfig", &kubeconfig),
                Some(api),
            )
        }
    }
}

/// `linkerd-controller identity` on `backend`, with the trust anchors and
/// issuer in `certs` (`ca-bundle.crt`, `crt.pem`, `key.pem`) and `extra`
/// flags; the command, ready to spawn, and the fake API it uses.
pub async fn identity_command(
    backend: Backend,
    yaml: &str,
    certs: &Path,
    extra: &[&str],
) -> (Command, Option<FakeApi>, PathBuf) {
    let dir = scratch_dir();
    let (mut cmd, api) = backend_command("identity", backend, yaml, &dir).await;
    cmd.arg("--trust-anchors")
        .arg(certs.join("ca-bundle.crt"))
        .arg("--issuer-dir")
        .arg(certs)
        .args(extra);
    (cmd, api, dir)
}

fn parse(yaml: &str) -> Topology {
    serde_saphyr::from_str(yaml).expect("test topology parses")
}

impl Controller {
    /// Starts the destination service on a topology file holding `yaml`.
    pub async fn destination(yaml: &str) -> Self {
        Self::destination_with(Backend::Local, yaml).await
    }

    /// Starts the destination service on `backend`, holding `yaml`'s world.
    pub async fn destination_with(backend: Backend, yaml: &str) -> Self {
        let dir = scratch_dir();
        let (cmd, api) = backend_command("destination", backend, yaml, &dir).await;
        Self::spawn("destination", cmd, api, dir).await
    }

    /// Starts the policy service on a topology file holding `yaml`.
    pub async fn policy(yaml: &str) -> Self {
        Self::policy_on(Backend::Local, yaml).await
    }

    /// Starts the policy service on `backend`, holding `yaml`'s world (its
    /// pods, namespaces and policy resources).
    pub async fn policy_on(backend: Backend, yaml: &str) -> Self {
        let dir = scratch_dir();
        let (cmd, api) = backend_command("policy", backend, yaml, &dir).await;
        Self::spawn("policy", cmd, api, dir).await
    }

    /// Starts the tap service on `backend`, holding `yaml`'s world, with
    /// `extra` flags (its identity settings).
    pub async fn tap_with(backend: Backend, yaml: &str, extra: &[&str]) -> Self {
        let dir = scratch_dir();
        let (mut cmd, api) = backend_command("tap", backend, yaml, &dir).await;
        cmd.args(extra);
        Self::spawn("tap", cmd, api, dir).await
    }

    /// Starts tap on the Kubernetes backend `api` (filled by the caller
    /// first, as a cluster is before tap starts), with `extra` flags.
    pub async fn tap_on(api: FakeApi, extra: &[&str]) -> Self {
        Self::on("tap", api, extra).await
    }

    /// Starts the destination service on the Kubernetes backend `api`, as
    /// a replaced controller pod finds the cluster.
    pub async fn destination_on(api: FakeApi) -> Self {
        Self::on("destination", api, &[]).await
    }

    /// Starts the destination service on the API server `kubeconfig`
    /// names (a real cluster's).
    pub async fn destination_at(kubeconfig: &Path) -> Self {
        let cmd = service_command("destination", "--kubeconfig", kubeconfig);
        Self::spawn("destination", cmd, None, scratch_dir()).await
    }

    async fn on(service: &'static str, api: FakeApi, extra: &[&str]) -> Self {
        let dir = scratch_dir();
        let kubeconfig = api.write_kubeconfig(&dir);
        let mut cmd = service_command(service, "--kubeconfig", &kubeconfig);
        cmd.args(extra);
        Self::spawn(service, cmd, Some(api), dir).await
    }

    /// Starts the public API on `backend`, with `extra` flags (its
    /// `--prometheus-url`, say).
    pub async fn public_api_with(backend: Backend, yaml: &str, extra: &[&str]) -> Self {
        let dir = scratch_dir();
        let (mut cmd, api) = backend_command("public-api", backend, yaml, &dir).await;
        cmd.args(extra);
        Self::spawn("public-api", cmd, api, dir).await
    }

    /// Starts the identity service on `backend` (tokens from `yaml`), with
    /// the certificates in `certs`.
    pub async fn identity_with(backend: Backend, yaml: &str, certs: &Path, extra: &[&str]) -> Self {
        let (cmd, api, dir) = identity_command(backend, yaml, certs, extra).await;
        Self::spawn("identity", cmd, api, dir).await
    }

    /// Runs `cmd` until its gRPC (`service`) and admin servers listen.
    async fn spawn(
        service: &'static str,
        cmd: Command,
        api: Option<FakeApi>,
        dir: PathBuf,
    ) -> Self {
        let (child, addrs) = spawn_listening(cmd, &[service, "admin"]).await;
        Self {
            grpc: addrs[service],
            admin: addrs["admin"],
            dir,
            child,
            api,
        }
    }

    /// Changes the world: rewrites the topology file (atomically, as an
    /// editor or generator would), or updates the fake API's objects.
    pub fn set_topology(&self, yaml: &str) {
        match &self.api {
            Some(api) => {
                api.set_topology(&parse(yaml));
                api.set_resources(yaml);
            }
            None => {
                let tmp = self.dir.join("topology.yaml.new");
                std::fs::write(&tmp, yaml).expect("write topology");
                std::fs::rename(&tmp, self.dir.join("topology.yaml")).expect("replace topology");
            }
        }
    }

    /// The fake Kubernetes API, for the Kubernetes backend.
    pub async fn metrics(&self) -> crate::metrics::Scrape {
        crate::proxy::scrape(self.admin).await
    }

    pub fn api(&self) -> Option<&FakeApi> {
        self.api.as_ref()
    }

    /// A destination client built from Linkerd2's own published API crate.
    pub async fn client(&self) -> DestinationClient<Channel> {
        DestinationClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("connect to destination")
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("controller running")
    }

    /// Waits for the controller to exit on its own.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().await.expect("wait for controller")
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the destination command on a topology file holding `yaml` to
/// completion, for start-up errors.
pub async fn destination_exit(yaml: &str) -> (std::process::ExitStatus, String) {
    let dir = scratch_dir();
    let topology = dir.join("topology.yaml");
    std::fs::write(&topology, yaml).expect("write topology");
    let run = destination_command("--local", &topology).output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .expect("controller did not exit")
        .expect("run controller");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
