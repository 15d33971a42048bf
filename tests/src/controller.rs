//! Runs a real `linkerd-controller` with the local discovery backend.

use crate::proxy::{bin, spawn_listening};
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::atomic::{AtomicU32, Ordering},
};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub struct Controller {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    dir: PathBuf,
    child: Child,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh directory for one controller's files.
fn scratch_dir() -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("l5d-ctl-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The `linkerd-controller destination` command for a topology file.
pub fn destination_command(topology: &std::path::Path) -> Command {
    let mut cmd = Command::new(bin("linkerd-controller"));
    cmd.args([
        "destination",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ])
    .args(["--poll-interval", "20ms", "--local"])
    .arg(topology)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    cmd
}

impl Controller {
    /// Starts the destination service on a topology file holding `yaml`.
    pub async fn destination(yaml: &str) -> Self {
        let dir = scratch_dir();
        let topology = dir.join("topology.yaml");
        std::fs::write(&topology, yaml).expect("write topology");
        let (child, addrs) =
            spawn_listening(destination_command(&topology), &["destination", "admin"]).await;
        Self {
            grpc: addrs["destination"],
            admin: addrs["admin"],
            dir,
            child,
        }
    }

    /// Replaces the topology, atomically, as an editor or a generator would.
    pub fn set_topology(&self, yaml: &str) {
        let tmp = self.dir.join("topology.yaml.new");
        std::fs::write(&tmp, yaml).expect("write topology");
        std::fs::rename(&tmp, self.dir.join("topology.yaml")).expect("replace topology");
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
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the destination command on `yaml` to completion, for start-up errors.
pub async fn destination_exit(yaml: &str) -> (std::process::ExitStatus, String) {
    let dir = scratch_dir();
    let topology = dir.join("topology.yaml");
    std::fs::write(&topology, yaml).expect("write topology");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        destination_command(&topology).output(),
    )
    .await
    .expect("controller did not exit")
    .expect("run controller");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
