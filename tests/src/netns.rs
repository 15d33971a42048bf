//! Network namespaces as test "hosts": each has its own interfaces, routes
//! and iptables rules, so the proxy's transparent mode runs for real.
//!
//! Code runs inside a namespace on a dedicated thread that has joined it
//! (`setns`) and drives its own Tokio runtime: sockets created by tasks on
//! that runtime belong to the namespace.

use std::{
    future::Future,
    io,
    net::Ipv4Addr,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

/// Why namespaces cannot be used here, if they cannot. Probed once per test
/// process: tests running side by side must not race on the probe.
pub fn unavailable() -> Option<String> {
    static PROBED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PROBED.get_or_init(probe).clone()
}

fn probe() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("network namespaces need root".into());
    }
    for tool in ["ip", "iptables-restore", "setpriv"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    let probe = format!("l5d-probe-{}", std::process::id());
    match run("ip", &["netns", "add", &probe]) {
        Ok(_) => {
            let _ = run("ip", &["netns", "del", &probe]);
            None
        }
        Err(e) => Some(format!("cannot create a network namespace: {e}")),
    }
}

/// Runs a command; a non-zero exit is an error carrying its stderr.
pub fn run(program: &str, args: &[&str]) -> io::Result<Output> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// A network namespace, deleted (with its interfaces) on drop.
pub struct Netns {
    pub name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates a namespace with its loopback up. `tag` keeps names readable;
    /// the process id and a counter keep them unique across parallel tests.
    pub fn create(tag: &str) -> io::Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("l5d-{}-{n}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, argv: &[&str]) -> io::Result<Output> {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(argv);
        run("ip", &args)
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// The command prefix that runs a program inside the namespace as the
    /// proxy's user (uid and gid 2102, no groups), as a pod runs its proxy.
    pub fn proxy_user_prefix(&self) -> Vec<String> {
        let mut argv = self.prefix();
        argv.extend(
            [
                "setpriv",
                "--reuid",
                "2102",
                "--regid",
                "2102",
                "--clear-groups",
            ]
            .map(String::from),
        );
        argv
    }

    /// Starts a runtime whose tasks run inside this namespace.
    pub fn runtime(&self) -> io::Result<NsRuntime> {
        let path = format!("/run/netns/{}", self.name);
        let file = std::fs::File::open(&path)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || {
                let joined = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)
                    .and_then(|()| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                    });
                match joined {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async move {
                            let _ = stop_rx.await;
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        let handle = rx.recv().map_err(io::Error::other)??;
        Ok(NsRuntime {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Joins two namespaces with a veth pair: `a` gets `a_ip`, `b` gets `b_ip`,
/// both in one /30.
pub fn connect(a: &Netns, a_ip: Ipv4Addr, b: &Netns, b_ip: Ipv4Addr) -> io::Result<()> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (va, vb) = (
        format!("l5a{}x{n}", std::process::id()),
        format!("l5b{}x{n}", std::process::id()),
    );
    run(
        "ip",
        &["link", "add", &va, "type", "veth", "peer", "name", &vb],
    )?;
    for (ns, dev, ip) in [(a, &va, a_ip), (b, &vb, b_ip)] {
        run("ip", &["link", "set", dev, "netns", &ns.name])?;
        ns.exec(&["ip", "addr", "add", &format!("{ip}/30"), "dev", dev])?;
        ns.exec(&["ip", "link", "set", dev, "up"])?;
    }
    Ok(())
}

/// A switch: a bridge in a namespace of its own, so the host's interfaces
/// are never touched. Namespaces attached to it share one subnet.
pub struct Bridge {
    ns: Netns,
}

impl Bridge {
    pub fn create() -> io::Result<Self> {
        let ns = Netns::create("sw")?;
        ns.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        ns.exec(&["ip", "link", "set", "br0", "up"])?;
        Ok(Self { ns })
    }

    /// Gives `ns` an `eth0` on the bridge with `ip/prefix`, and routes
    /// `extra` (virtual addresses such as cluster IPs) out of it.
    pub fn attach(&self, ns: &Netns, ip: Ipv4Addr, prefix: u8, extra: &[&str]) -> io::Result<()> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let (port, peer) = (
            format!("l5s{}x{n}", std::process::id()),
            format!("l5p{}x{n}", std::process::id()),
        );
        run(
            "ip",
            &["link", "add", &port, "type", "veth", "peer", "name", &peer],
        )?;
        run("ip", &["link", "set", &port, "netns", &self.ns.name])?;
        run("ip", &["link", "set", &peer, "netns", &ns.name])?;
        self.ns
            .exec(&["ip", "link", "set", &port, "master", "br0"])?;
        self.ns.exec(&["ip", "link", "set", &port, "up"])?;
        ns.exec(&["ip", "link", "set", &peer, "name", "eth0"])?;
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{ip}/{prefix}"),
            "dev",
            "eth0",
        ])?;
        ns.exec(&["ip", "link", "set", "eth0", "up"])?;
        for net in extra {
            ns.exec(&["ip", "route", "add", net, "dev", "eth0"])?;
        }
        Ok(())
    }
}

/// A Tokio runtime on a thread inside a namespace.
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    /// Runs `f` inside the namespace and waits for its result.
    pub async fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(f).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
