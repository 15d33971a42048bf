//! Runs a real `linkerd-proxy` process and talks to its admin server.

use crate::metrics::Scrape;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

/// Where cargo put the workspace's binaries: beside the test's own `deps/`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    if let Some(source) = newer_source(&path) {
        panic!(
            "{} is older than {}: run `cargo build --workspace --bins` before the tests",
            path.display(),
            source.display()
        );
    }
    path
}

/// A source file the binary was built from that changed since: cargo's
/// dep-info beside it (`NAME.d`) lists them. Checked once per binary.
fn newer_source(binary: &std::path::Path) -> Option<PathBuf> {
    use std::{collections::HashMap, sync::Mutex};
    static CHECKED: Mutex<Option<HashMap<PathBuf, Option<PathBuf>>>> = Mutex::new(None);
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    checked
        .get_or_insert_with(HashMap::new)
        .entry(binary.to_path_buf())
        .or_insert_with(|| {
            let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
            let info = std::fs::read_to_string(binary.with_extension("d")).ok()?;
            let (_, sources) = info.lines().next()?.split_once(": ")?;
            // Paths are space-separated, a space within one escaped.
            let sources = sources.replace("\\ ", "\0");
            sources
                .split_whitespace()
                .map(|s| PathBuf::from(s.replace('\0', " ")))
                .find(|source| {
                    std::fs::metadata(source)
                        .and_then(|m| m.modified())
                        .is_ok_and(|changed| changed > built)
                })
        })
        .clone()
}

/// A proxy's settings, as environment variables.
#[derive(Clone, Debug)]
pub struct Builder {
    env: BTreeMap<String, String>,
    wrapper: Vec<String>,
}

impl Default for Builder {
    fn default() -> Self {
        let env = [
            ("LINKERD2_PROXY_IDENTITY_DISABLED", "true"),
            ("LINKERD2_PROXY_LOG", "info"),
            ("LINKERD2_PROXY_INBOUND_LISTEN_ADDR", "127.0.0.1:0"),
            ("LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR", "127.0.0.1:0"),
            ("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "127.0.0.1:0"),
            ("LINKERD2_PROXY_CONTROL_LISTEN_ADDR", "127.0.0.1:0"),
            ("LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD", "5s"),
        ];
        Self {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            wrapper: Vec::new(),
        }
    }
}

impl Builder {
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    /// Unsets a variable (a default of the builder's).
    pub fn without(mut self, key: &str) -> Self {
        self.env.remove(key);
        self
    }

    /// Every inbound connection goes to `addr`, as if iptables had sent it.
    pub fn inbound_target(self, addr: SocketAddr) -> Self {
        self.env("LINKERD2_PROXY_INBOUND_ORIG_DST_ADDR", addr)
    }

    pub fn outbound_target(self, addr: SocketAddr) -> Self {
        self.env("LINKERD2_PROXY_OUTBOUND_ORIG_DST_ADDR", addr)
    }

    /// Runs the proxy through another command, e.g. `ip netns exec NS setpriv ...`.
    pub fn wrapper(mut self, argv: &[&str]) -> Self {
        self.wrapper = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    fn command(&self) -> Command {
        let proxy = bin("linkerd-proxy");
        let mut cmd = match self.wrapper.split_first() {
            None => Command::new(&proxy),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&proxy);
                c
            }
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs the proxy to completion and returns its exit status and stderr,
    /// for start-up failures.
    pub async fn run_to_exit(&self) -> (ExitStatus, String) {
        let out = tokio::time::timeout(Duration::from_secs(10), self.command().output())
            .await
            .expect("proxy did not exit")
            .expect("run proxy");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts the proxy and waits until its listeners are bound (tap's too,
    /// when it serves tap).
    pub async fn spawn(self) -> Proxy {
        let mut names = vec!["inbound", "outbound", "admin"];
        let tap = self.env.contains_key("LINKERD2_PROXY_TAP_SVC_NAME")
            && !self.env.contains_key("LINKERD2_PROXY_IDENTITY_DISABLED");
        if tap {
            names.push("tap");
        }
        let (child, addrs) = spawn_listening(self.command(), &names).await;
        Proxy {
            inbound: addrs["inbound"],
            outbound: addrs["outbound"],
            admin: addrs["admin"],
            tap: addrs.get("tap").copied(),
            child,
        }
    }
}

/// Spawns `cmd` and waits until it has logged `<name> listening on <addr>`
/// for every name, draining its output from then on so it never blocks.
/// `LINKERD_TEST_LOG=1` echoes the output.
pub async fn spawn_listening(
    mut cmd: Command,
    names: &[&'static str],
) -> (Child, BTreeMap<&'static str, SocketAddr>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    for out in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var_os("LINKERD_TEST_LOG").is_some() {
                    eprintln!("{line}");
                }
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut addrs = BTreeMap::new();
    let mut log = Vec::new();
    let wait = async {
        while addrs.len() < names.len() {
            let Some(line) = rx.recv().await else { break };
            for what in names {
                let marker = format!("{what} listening on ");
                if let Some(i) = line.find(&marker) {
                    let addr: SocketAddr = line[i + marker.len()..]
                        .trim()
                        .parse()
                        .expect("listen addr");
                    addrs.insert(*what, addr);
                }
            }
            log.push(line);
        }
    };
    if tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .is_err()
        || addrs.len() < names.len()
    {
        panic!("{cmd:?} did not start; its output:\n{}", log.join("\n"));
    }
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    (child, addrs)
}

/// Reads a proxy's metrics from its admin address; usable from any runtime,
/// such as one inside a network namespace.
pub async fn scrape(admin: SocketAddr) -> Scrape {
    let (status, body) = crate::backends::http1_request(admin, "GET", "/metrics").await;
    assert_eq!(status, 200, "metrics: {body}");
    Scrape::parse(&body)
}

pub struct Proxy {
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    pub admin: SocketAddr,
    /// The control listener, when the proxy serves tap.
    pub tap: Option<SocketAddr>,
    child: Child,
}

impl Proxy {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// GETs an admin path; returns status and body.
    pub async fn admin(&self, method: &str, path: &str) -> (u16, String) {
        crate::backends::http1_request(self.admin, method, path).await
    }

    pub async fn metrics(&self) -> Scrape {
        scrape(self.admin).await
    }

    /// The metrics once every client connection the proxy accepted has been
    /// closed and counted (upstream HTTP connections may stay pooled).
    pub async fn metrics_when_closed(&self) -> Scrape {
        crate::eventually(Duration::from_secs(5), || async {
            let m = self.metrics().await;
            let settled = m.has("tcp_open_connections", &[("peer", "src")])
                && m.sum("tcp_open_connections", &[("peer", "src")]) == 0.0;
            settled.then_some(m)
        })
        .await
        .expect("client connections did not close")
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("proxy running")
    }

    pub fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }

    /// Waits for the proxy to exit on its own.
    pub async fn wait(mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("proxy did not exit in time")
            .expect("wait")
    }
}
