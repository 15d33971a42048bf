//! `linkerd demo`: the whole mesh on this machine, with no root and no
//! cluster. The control plane runs on its local backend (a topology file
//! for discovery and identity tokens); each of the demo's pods has its own
//! loopback address, where its application and its own `linkerd-proxy`
//! listen on their standard ports. A Prometheus scrapes the proxies with
//! the chart's own configuration.
//!
//! Without iptables there is no original destination, so the data path is
//! made explicit: an application calls its proxy's outbound listener by the
//! service's cluster name (`Host`/`:authority`), destination gives the
//! servers' inbound listeners as the service's endpoints, and each inbound
//! proxy is told where its application is. The path stays application ->
//! outbound proxy -> mTLS -> inbound proxy -> application, as in a cluster.

mod app;
pub(crate) mod cluster;
pub(crate) mod state;

use anyhow::Context;
use clap::Args;
use linkerd_prometheus::{self as prometheus, ProxyTarget};
use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{net::TcpListener, process::Child, sync::watch};

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// The first address of the /24 the demo uses: the control plane gets
    /// .1, the pods .10 and up (all of 127.0.0.0/8 is this machine).
    #[arg(long, default_value = "127.77.0.0")]
    addr_base: Ipv4Addr,
    #[command(flatten)]
    app: cluster::Settings,
    /// How often Prometheus scrapes the proxies.
    #[arg(long, default_value = "5s")]
    scrape_interval: String,
    /// The Prometheus binary (default: `prometheus` on the PATH).
    #[arg(long, value_name = "FILE")]
    prometheus: Option<PathBuf>,
    /// Run without Prometheus: the public API scrapes the proxies itself.
    #[arg(long)]
    no_prometheus: bool,
    /// Do not build the proxy and the controller first (under `cargo run`
    /// they are built, with the CLI's profile, unless this is given).
    #[arg(long)]
    no_build: bool,
    /// Print the demo application as Kubernetes objects instead, for
    /// `kubectl apply -f -` on a cluster with the control plane installed.
    #[arg(long)]
    manifest: bool,
    /// With --manifest: the demo image (default: the chart's registry and
    /// this release, as `bin/images` builds it).
    #[arg(long, requires = "manifest")]
    image: Option<String>,
}

/// A pod of the demo.
struct Pod {
    deployment: &'static str,
    /// Its service, if it serves.
    service: Option<&'static str>,
    ip: Ipv4Addr,
}

impl Pod {
    fn name(&self) -> String {
        format!("{}-5d8f9c-0", self.deployment)
    }

    fn at(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip.into(), port)
    }
}

const NAMESPACE: &str = "emojivoto";
const APP_PORT: u16 = 8080;
const INBOUND: u16 = 4143;
const OUTBOUND: u16 = 4140;
const ADMIN: u16 = 4191;
const CONTROL: u16 = 4190;
const TAP_SA: &str = "linkerd-tap";
/// web's ServiceProfile: votes are retried (within a budget of a fifth more
/// requests) and time out, so `linkerd routes deploy/vote-bot --to
/// svc/web-svc -o wide` shows the effective success rate above the actual.
const WEB_PROFILE: &str = "serviceProfiles:
- apiVersion: linkerd.io/v1alpha2
  kind: ServiceProfile
  metadata: {name: web-svc.emojivoto.svc.cluster.local, namespace: emojivoto}
  spec:
    routes:
    - name: GET /api/vote
      condition: {method: GET, pathRegex: /api/vote}
      isRetryable: true
      timeout: 2s
    - name: GET /api/list
      condition: {method: GET, pathRegex: /api/list}
      timeout: 1s
    - name: GET /api/results
      condition: {method: GET, pathRegex: /api/results}
      timeout: 1s
    retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}
";

/// The control plane's services: name, gRPC port, admin port.
const CONTROLLERS: &[(&str, u16, u16)] = &[
    ("identity", 8080, 9990),
    ("destination", 8086, 9996),
    ("policy", 8090, 9993),
    ("tap", 8088, 9998),
    ("public-api", 8085, 9995),
];

fn identity(sa: &str, ns: &str) -> String {
    linkerd_pki::Naming::default().identity(sa, ns)
}

/// Prints a step and, when it is done, how long it took.
struct Step(Instant);

impl Step {
    fn start(what: &str) -> Self {
        print!("  {what} ... ");
        let _ = std::io::stdout().flush();
        Self(Instant::now())
    }

    fn done(self) {
        println!("done ({:.1}s)", self.0.elapsed().as_secs_f64());
    }
}

/// What the demo started, stopped (in reverse) when it ends.
struct Running {
    children: Vec<(String, Child)>,
    logs: PathBuf,
    /// The state file's contents: every child is listed in it as it starts,
    /// so a demo killed with SIGKILL leaves a list the next one can clean.
    state: state::State,
}

impl Running {
    /// Starts `program` with `args` and `env`, its output in `<name>.log`.
    fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.logs.join(format!("{name}.log")))?;
        let linkerd = std::env::current_exe().context("cannot find the linkerd binary")?;
        let mut cmd = tokio::process::Command::new(linkerd);
        cmd.arg("die-with-parent")
            .arg(format!("--parent={}", std::process::id()))
            .arg(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        self.state.children.extend(child.id());
        self.children.push((name.to_string(), child));
        state::write(&self.state)
    }

    /// The last lines of a child's log, for an error.
    fn tail(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n    ")
    }

    /// Fails if a child has exited.
    fn check(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let name = name.clone();
                anyhow::bail!(
                    "{name} exited ({status}); its log ends:\n    {}",
                    self.tail(&name)
                );
            }
        }
        Ok(())
    }

    /// SIGTERM to every child, newest first, then SIGKILL to any still
    /// running after a grace period.
    async fn stop(&mut self) {
        use nix::{sys::signal, unistd::Pid};
        for (_, child) in self.children.iter().rev() {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = signal::kill(Pid::from_raw(pid), signal::Signal::SIGTERM);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        for (_, child) in self.children.iter_mut().rev() {
            if tokio::time::timeout_at(deadline, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        self.children.clear();
    }
}

/// The hidden `linkerd die-with-parent` that every demo child is started
/// through: it asks the kernel to SIGKILL it when the demo dies, however it
/// dies (a demo killed with SIGKILL runs no code to stop its children, and
/// they would keep the demo's addresses), then becomes the child program.
/// The death signal survives `exec`; doing this in the child before `exec`
/// would take `unsafe` (`pre_exec`), which this workspace forbids.
#[derive(clap::Args)]
pub struct DieWithParentArgs {
    /// The demo's pid: if the parent is already another, it died before
    /// the signal was asked for, and the child must not start.
    #[arg(long)]
    parent: u32,
    program: PathBuf,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<std::ffi::OsString>,
}

pub fn die_with_parent(args: DieWithParentArgs) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("cannot ask for a death signal")?;
    if nix::unistd::getppid().as_raw().unsigned_abs() != args.parent {
        anyhow::bail!("the demo (pid {}) exited", args.parent);
    }
    let e = std::process::Command::new(&args.program)
        .args(&args.args)
        .exec();
    Err(e).with_context(|| format!("cannot start {}", args.program.display()))
}

/// Stops what a demo killed without cleaning up left running, and removes
/// its state file.
fn clean_stale() {
    let Some(old) = state::stale() else { return };
    let mut stopped = 0;
    for pid in old.children {
        if state::is_demo_child(pid, &old.dir)
            && let Ok(pid) = i32::try_from(pid)
            && nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        {
            stopped += 1;
        }
    }
    state::remove_if(old.pid);
    if stopped > 0 {
        println!(
            "==> stopped {stopped} processes left by a demo that did not exit cleanly (pid {})",
            old.pid
        );
        // Their sockets close as they exit.
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Polls `ready` every 100ms for up to `limit`, failing early if a child
/// exits.
async fn wait_for<F, Fut>(
    running: &mut Running,
    what: &str,
    limit: Duration,
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        running.check()?;
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{what} was not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET path` answered 200.
async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    http_get(addr, path).await.is_some()
}

/// The body of a 200 answer to `GET path`.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use http_body_util::BodyExt;
    let fetch = async {
        let io = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        let rsp = sender.send_request(req).await.ok()?;
        if rsp.status() != http::StatusCode::OK {
            return None;
        }
        let body = rsp.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .ok()
        .flatten()
}

/// The dashboard's port and its admin port.
const WEB: (u16, u16) = (8084, 9994);

/// The programs the demo runs besides itself.
struct Binaries {
    proxy: PathBuf,
    controller: PathBuf,
    web: PathBuf,
}

/// Where `linkerd-proxy`, `linkerd-controller` and `linkerd-web` are: next
/// to this binary. Under `cargo run` they are built first, with this
/// binary's profile, so the README's one command is all a newcomer runs.
fn binaries(no_build: bool) -> anyhow::Result<Binaries> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let dir = exe
        .parent()
        .context("this program's path has no directory")?
        .to_path_buf();
    if let (Some(cargo), false) = (std::env::var_os("CARGO"), no_build) {
        let release = dir.file_name().is_some_and(|d| d == "release");
        println!(
            "==> building linkerd-proxy, linkerd-controller and linkerd-web ({})",
            if release { "release" } else { "debug" }
        );
        let mut build = std::process::Command::new(cargo);
        build.args([
            "build",
            "-p",
            "linkerd-proxy",
            "-p",
            "linkerd-controller",
            "-p",
            "linkerd-web",
        ]);
        if release {
            build.arg("--release");
        }
        let status = build
            .status()
            .context("cannot run cargo to build the proxy, the controller and the dashboard")?;
        if !status.success() {
            anyhow::bail!("building the proxy, the controller and the dashboard failed ({status})");
        }
    }
    let find = |name: &str| {
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(anyhow::anyhow!(
                "{name} is not next to this program in {}: build it with `cargo build --workspace --bins`",
                dir.display()
            ))
        }
    };
    Ok(Binaries {
        proxy: find("linkerd-proxy")?,
        controller: find("linkerd-controller")?,
        web: find("linkerd-web")?,
    })
}

/// The Prometheus to run, if any.
fn prometheus_binary(args: &DemoArgs) -> Option<PathBuf> {
    if args.no_prometheus {
        return None;
    }
    if let Some(p) = &args.prometheus {
        return Some(p.clone());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    })
}

fn offset(base: Ipv4Addr, n: u8) -> Ipv4Addr {
    let [a, b, c, _] = base.octets();
    Ipv4Addr::new(a, b, c, n)
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    args.app.check()?;
    if args.manifest {
        print!("{}", cluster::manifest(&args.app, args.image.as_deref()));
        return Ok(());
    }
    if !args.addr_base.is_loopback() {
        anyhow::bail!("--addr-base must be in 127.0.0.0/8 (this machine)");
    }
    let interval_ok = args
        .scrape_interval
        .strip_suffix('s')
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n > 0);
    if !interval_ok {
        anyhow::bail!(
            "--scrape-interval {:?} is not whole seconds such as 5s",
            args.scrape_interval
        );
    }
    if let Some(other) = state::running() {
        if let Some(rate) = args.app.failure_rate_given() {
            return change_failure_rate(&other, rate).await;
        }
        anyhow::bail!(
            "a demo is already running (pid {}, public API at {}); stop it first (Ctrl-C in its terminal, or `kill {}`); `linkerd demo --failure-rate R` changes its voting service's failure rate",
            other.pid,
            other.api_addr,
            other.pid
        );
    }
    clean_stale();
    let bins = binaries(args.no_build)?;
    let prometheus_bin = prometheus_binary(&args);

    let control = offset(args.addr_base, 1);
    let pods = [
        Pod {
            deployment: "web",
            service: Some("web-svc"),
            ip: offset(args.addr_base, 10),
        },
        Pod {
            deployment: "emoji",
            service: Some("emoji-svc"),
            ip: offset(args.addr_base, 11),
        },
        Pod {
            deployment: "voting",
            service: Some("voting-svc"),
            ip: offset(args.addr_base, 12),
        },
        Pod {
            deployment: "vote-bot",
            service: None,
            ip: offset(args.addr_base, 13),
        },
    ];
    // Fail before starting anything if an address is taken.
    let mut taken = Vec::new();
    for (name, port, admin) in CONTROLLERS {
        for p in [*port, *admin] {
            taken.push((
                format!("the {name} service"),
                SocketAddr::new(control.into(), p),
            ));
        }
    }
    for p in [WEB.0, WEB.1] {
        taken.push(("the dashboard".into(), SocketAddr::new(control.into(), p)));
    }
    for pod in &pods {
        for p in [APP_PORT, INBOUND, OUTBOUND, ADMIN, CONTROL] {
            taken.push((format!("pod {}", pod.name()), pod.at(p)));
        }
    }
    for (what, addr) in &taken {
        TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot use {addr} for {what}: another program holds it (`ss -ltnp 'sport = :{}'` names it; --addr-base moves the demo)",
                addr.port()
            )
        })?;
    }

    // Prometheus' usual port may be another Prometheus's (Debian's package
    // starts one on :9090 for every address): then one the kernel picks.
    let prometheus = match prometheus_bin.as_deref() {
        Some(bin) => {
            let usual = SocketAddr::new(control.into(), 9090);
            let addr = match TcpListener::bind(usual).await {
                Ok(_) => usual,
                Err(e) => {
                    let free = TcpListener::bind(SocketAddr::new(control.into(), 0))
                        .await
                        .and_then(|l| l.local_addr())
                        .context("cannot find a free port for Prometheus")?;
                    println!(
                        "==> {usual} is taken ({e}; another Prometheus?): the demo's Prometheus listens on {free}"
                    );
                    free
                }
            };
            Some(Prometheus { bin, addr })
        }
        None => None,
    };

    let dir = std::env::temp_dir().join(format!("linkerd-demo-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut running = Running {
        children: Vec::new(),
        logs: dir.join("logs"),
        state: state::State {
            pid: std::process::id(),
            api_addr: SocketAddr::new(control.into(), 8085).to_string(),
            dir: dir.clone(),
            ..Default::default()
        },
    };
    state::write(&running.state)?;
    let (stop_tx, stop) = watch::channel(false);
    let result = start_and_wait(
        &args,
        &mut running,
        &dir,
        (&bins, prometheus),
        control,
        &pods,
        stop,
    )
    .await;
    println!("==> stopping");
    let _ = stop_tx.send(true);
    running.stop().await;
    state::remove();
    match &result {
        // Keep the logs of a failed start: the error points at them.
        Err(_) => eprintln!("linkerd: the demo's logs are in {}", running.logs.display()),
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("==> stopped; nothing of the demo is left running");
    result
}

#[allow(clippy::too_many_arguments)]
async fn start_and_wait(
    args: &DemoArgs,
    running: &mut Running,
    dir: &Path,
    (bins, prometheus_run): (&Binaries, Option<Prometheus<'_>>),
    control: Ipv4Addr,
    pods: &[Pod],
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (proxy_bin, controller_bin) = (bins.proxy.as_path(), bins.controller.as_path());
    println!("==> starting the control plane on {control}");
    let certs = dir.join("certs");
    let step = Step::start("trust anchor and issuer");
    let out = tokio::process::Command::new(controller_bin)
        .arg("issuer-certs")
        .arg("--out")
        .arg(&certs)
        .output()
        .await
        .context("cannot run linkerd-controller issuer-certs")?;
    if !out.status.success() {
        anyhow::bail!(
            "linkerd-controller issuer-certs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let trust_anchors = std::fs::read_to_string(certs.join("ca-bundle.crt"))?;
    step.done();

    // The topology: services, pods, and a token per service account.
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let mut accounts: Vec<(&str, &str)> = pods.iter().map(|p| (NAMESPACE, p.deployment)).collect();
    accounts.push(("linkerd", TAP_SA));
    let mut yaml = String::from("services:\n");
    for pod in pods {
        if let Some(svc) = pod.service {
            let port = if svc == "web-svc" { 80 } else { APP_PORT };
            yaml.push_str(&format!(
                "  - {{name: {svc}, namespace: {NAMESPACE}, selector: {{app: {}}}, ports: [{{port: {port}, targetPort: {INBOUND}}}]}}\n",
                pod.deployment
            ));
        }
    }
    yaml.push_str("pods:\n");
    for pod in pods {
        yaml.push_str(&format!(
            "  - {{name: {}, namespace: {NAMESPACE}, ip: {}, labels: {{app: {}}}, meshed: true, owner: {{kind: Deployment, name: {}}}, serviceAccount: {}}}\n",
            pod.name(),
            pod.ip,
            pod.deployment,
            pod.deployment,
            pod.deployment
        ));
    }
    yaml.push_str(WEB_PROFILE);
    yaml.push_str("tokens:\n");
    for (ns, sa) in &accounts {
        let token = format!("{ns}-{sa}-demo-token");
        yaml.push_str(&format!(
            "  - {{token: {token}, namespace: {ns}, serviceAccount: {sa}}}\n"
        ));
        std::fs::write(tokens.join(format!("{ns}-{sa}")), &token)?;
    }
    let topology = dir.join("topology.yaml");
    std::fs::write(&topology, yaml)?;

    let at = |port: u16| SocketAddr::new(control.into(), port).to_string();
    let prometheus_url = prometheus_run
        .as_ref()
        .map(|p| format!("http://{}", p.addr))
        .unwrap_or_default();
    let s = |v: &str| v.to_string();
    let topo = topology.display().to_string();
    for (name, port, admin) in CONTROLLERS {
        let mut cmd_args = vec![
            s(name),
            s("--local"),
            topo.clone(),
            s("--addr"),
            at(*port),
            s("--admin-addr"),
            at(*admin),
        ];
        match *name {
            "identity" => cmd_args.extend([
                s("--trust-anchors"),
                certs.join("ca-bundle.crt").display().to_string(),
                s("--issuer-dir"),
                certs.display().to_string(),
            ]),
            "tap" => cmd_args.extend([
                s("--identity-addr"),
                at(8080),
                s("--trust-anchors"),
                certs.join("ca-bundle.crt").display().to_string(),
                s("--token-file"),
                tokens
                    .join(format!("linkerd-{TAP_SA}"))
                    .display()
                    .to_string(),
            ]),
            "public-api" => {
                cmd_args.extend([s("--tap-addr"), at(8088), s("--destination-addr"), at(8086)]);
                // Without Prometheus, the API scrapes the proxies itself.
                match prometheus_run {
                    Some(_) => cmd_args.extend([s("--prometheus-url"), prometheus_url.clone()]),
                    None => cmd_args.extend([
                        s("--scrape-proxies"),
                        s("--scrape-interval"),
                        args.scrape_interval.clone(),
                    ]),
                }
            }
            _ => {}
        }
        let step = Step::start(name);
        running.spawn(name, controller_bin, &cmd_args, &[])?;
        let admin_addr = SocketAddr::new(control.into(), *admin);
        wait_for(running, name, Duration::from_secs(30), || {
            http_ok(admin_addr, "/ready")
        })
        .await?;
        step.done();
    }
    let web_addr = at(WEB.0);
    let step = Step::start(&format!("dashboard at http://{web_addr}"));
    // The dashboard answers to the names it is reached by here: its own
    // address, and localhost (`linkerd dashboard`'s forward).
    let enforced_host = format!(
        r"^(localhost|127\.0\.0\.1|{}|\[::1\])(:\d+)?$",
        control.to_string().replace('.', r"\.")
    );
    // No Kubernetes API here: the control-plane page asks each component.
    let mut web_args = vec![
        s("--addr"),
        web_addr.clone(),
        s("--admin-addr"),
        at(WEB.1),
        s("--api-addr"),
        at(8085),
        s("--enforced-host"),
        enforced_host,
        s("--checks"),
        s("local"),
        s("--tap-via"),
        s("public-api"),
    ];
    for (name, _, admin) in CONTROLLERS {
        web_args.extend([s("--component"), format!("{name}={}", at(*admin))]);
    }
    running.spawn("web", &bins.web, &web_args, &[])?;
    let web_admin = SocketAddr::new(control.into(), WEB.1);
    wait_for(running, "web", Duration::from_secs(30), || {
        http_ok(web_admin, "/ready")
    })
    .await?;
    step.done();

    println!("==> starting the demo application (namespace {NAMESPACE}), each pod with its proxy");
    let bot_counts = Arc::new(app::BotCounts::default());
    let failure_rate = app::FailureRate::new(args.app.failure_rate());
    for pod in pods {
        let step = Step::start(&format!("{} at {}", pod.name(), pod.ip));
        let listener = TcpListener::bind(pod.at(APP_PORT)).await;
        match (pod.deployment, listener) {
            ("web", Ok(l)) => {
                tokio::spawn(app::serve_web(
                    l,
                    app::Via::Proxy(pod.at(OUTBOUND)),
                    stop.clone(),
                ));
            }
            ("emoji", Ok(l)) => {
                tokio::spawn(app::serve_emoji(l, args.app.emoji_delay, stop.clone()));
            }
            ("voting", Ok(l)) => {
                tokio::spawn(app::serve_voting(l, failure_rate.clone(), stop.clone()));
            }
            (_, Ok(_)) => {}
            (_, Err(e)) => anyhow::bail!("cannot listen on {}: {e}", pod.at(APP_PORT)),
        }
        let env: Vec<(String, String)> = [
            ("LINKERD2_PROXY_LOG", s("warn,linkerd=info")),
            (
                "LINKERD2_PROXY_IDENTITY_LOCAL_NAME",
                identity(pod.deployment, NAMESPACE),
            ),
            (
                "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS",
                trust_anchors.clone(),
            ),
            (
                "LINKERD2_PROXY_IDENTITY_TOKEN_FILE",
                tokens
                    .join(format!("{NAMESPACE}-{}", pod.deployment))
                    .display()
                    .to_string(),
            ),
            ("LINKERD2_PROXY_IDENTITY_SVC_ADDR", at(8080)),
            ("LINKERD2_PROXY_DESTINATION_SVC_ADDR", at(8086)),
            // Inbound policy from the policy service, for this pod.
            ("LINKERD2_PROXY_POLICY_SVC_ADDR", at(8090)),
            (
                "LINKERD2_PROXY_POLICY_WORKLOAD",
                format!(r#"{{"ns":"{NAMESPACE}","pod":"{}"}}"#, pod.name()),
            ),
            ("LINKERD2_PROXY_INBOUND_PORTS", APP_PORT.to_string()),
            ("LINKERD2_PROXY_TAP_SVC_NAME", identity(TAP_SA, "linkerd")),
            (
                "LINKERD2_PROXY_INBOUND_LISTEN_ADDR",
                pod.at(INBOUND).to_string(),
            ),
            (
                "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR",
                pod.at(OUTBOUND).to_string(),
            ),
            (
                "LINKERD2_PROXY_ADMIN_LISTEN_ADDR",
                pod.at(ADMIN).to_string(),
            ),
            (
                "LINKERD2_PROXY_CONTROL_LISTEN_ADDR",
                pod.at(CONTROL).to_string(),
            ),
            // No iptables: the inbound side is told where the application
            // is; outbound, requests are routed by the service they name,
            // and anything else has nowhere to go (the discard port).
            (
                "LINKERD2_PROXY_INBOUND_ORIG_DST_ADDR",
                pod.at(APP_PORT).to_string(),
            ),
            ("LINKERD2_PROXY_OUTBOUND_ORIG_DST_ADDR", at(9)),
            // Calls leave from the pod's address, as from a pod's network
            // namespace: servers and tap see who is calling.
            ("LINKERD2_PROXY_OUTBOUND_SOURCE_IP", pod.ip.to_string()),
            ("LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD", s("1s")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let name = format!("proxy-{}", pod.deployment);
        running.spawn(&name, proxy_bin, &[], &env)?;
        let admin = pod.at(ADMIN);
        wait_for(running, &name, Duration::from_secs(30), || {
            http_ok(admin, "/ready")
        })
        .await?;
        step.done();
    }

    let prometheus = match prometheus_run {
        Some(Prometheus { bin, addr }) => {
            let step = Step::start(&format!("Prometheus at {addr}"));
            let data = start_prometheus(
                running,
                bin,
                dir,
                addr,
                control,
                pods,
                &args.scrape_interval,
            )?;
            // Ready, and ours: another server answering on the address
            // would otherwise pass for it.
            wait_for(running, "prometheus", Duration::from_secs(60), || {
                prometheus_is_ours(addr, &data)
            })
            .await?;
            step.done();
            true
        }
        None if args.no_prometheus => {
            println!("  no Prometheus: the public API scrapes the proxies itself");
            false
        }
        None => {
            println!(
                "  Prometheus: not installed, so the public API scrapes the proxies itself \
                 (same numbers; for Prometheus and later Grafana: `sudo apt-get install \
                 prometheus`, or --prometheus FILE)"
            );
            false
        }
    };

    let api_addr = at(8085);
    running.state.prometheus_url = prometheus.then(|| prometheus_url.clone());
    running.state.web_addr = Some(web_addr.clone());
    running.state.components = CONTROLLERS
        .iter()
        .map(|(name, _, admin)| (name.to_string(), SocketAddr::new(control.into(), *admin)))
        .chain([("web".to_string(), web_admin)])
        .collect();
    running.state.proxies = pods
        .iter()
        .map(|p| (format!("{NAMESPACE}/{}", p.name()), p.at(ADMIN)))
        .collect();
    running.state.ready = true;
    state::write(&running.state)?;
    tokio::spawn(app::vote_bot(
        app::Via::Proxy(pods[3].at(OUTBOUND)),
        args.app.rps,
        bot_counts.clone(),
        stop.clone(),
    ));

    let me = std::env::current_exe()
        .ok()
        .and_then(|p| {
            let cwd = std::env::current_dir().ok()?;
            Some(
                p.strip_prefix(&cwd)
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|_| p.display().to_string()),
            )
        })
        .unwrap_or_else(|| "linkerd".into());
    println!(
        "==> the mesh is up ({:.0}s)\n",
        started.elapsed().as_secs_f64()
    );
    print_summary(
        args,
        &me,
        control,
        pods,
        prometheus.then_some(&prometheus_url),
    );
    println!("ready: public API at {api_addr}");
    let _ = std::io::stdout().flush();

    // Until Ctrl-C, SIGTERM, or a part of the mesh dies.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut changed =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => break,
            _ = changed.recv() => take_failure_rate(dir, &failure_rate),
            _ = check.tick() => running.check()?,
        }
    }
    println!();
    let sent = bot_counts.sent.load(std::sync::atomic::Ordering::Relaxed);
    if sent > 0 {
        let failed = bot_counts.failed.load(std::sync::atomic::Ordering::Relaxed);
        println!("vote-bot sent {sent} votes, {failed} failed");
    }
    Ok(())
}

/// Where `linkerd demo --failure-rate` leaves a new rate for the running
/// demo, in its directory, before signalling it (SIGUSR1).
fn failure_rate_file(dir: &Path) -> PathBuf {
    dir.join("failure-rate")
}

/// Gives the running demo a new failure rate for its voting service and
/// waits for it to take it (it removes the file), as `kubectl apply` of a
/// changed manifest does on a cluster.
async fn change_failure_rate(demo: &state::State, rate: f64) -> anyhow::Result<()> {
    let file = failure_rate_file(&demo.dir);
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, rate.to_string())
        .and_then(|()| std::fs::rename(&tmp, &file))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
    let pid = nix::unistd::Pid::from_raw(demo.pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1)
        .map_err(|e| anyhow::anyhow!("cannot signal the running demo (pid {}): {e}", demo.pid))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while file.exists() {
        if Instant::now() > deadline {
            let _ = std::fs::remove_file(&file);
            anyhow::bail!(
                "the running demo (pid {}) did not take the new failure rate within 5s",
                demo.pid
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "the running demo (pid {}): voting now fails {:.0}% of votes",
        demo.pid,
        rate * 100.0
    );
    Ok(())
}

/// The running demo's side: the new rate, if the file holds one (the
/// sender has checked it), then the file removed to say it was taken.
fn take_failure_rate(dir: &Path, rate: &app::FailureRate) {
    let file = failure_rate_file(dir);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return;
    };
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => {
            rate.set(r);
            println!("voting now fails {:.0}% of votes", r * 100.0);
        }
        _ => eprintln!(
            "ignored {}: {text:?} is not a rate between 0 and 1",
            file.display()
        ),
    }
    let _ = std::fs::remove_file(&file);
}

fn print_summary(
    args: &DemoArgs,
    me: &str,
    control: Ipv4Addr,
    pods: &[Pod],
    prometheus: Option<&String>,
) {
    println!("What runs where:");
    println!(
        "  control plane   {control}: identity :8080, destination :8086, policy :8090, tap :8088, public API :8085"
    );
    println!(
        "  dashboard       http://{control}:{} (`linkerd dashboard` serves it on http://localhost:50750)",
        WEB.0
    );
    if let Some(url) = prometheus {
        println!("  prometheus      {url}");
    }
    for pod in pods {
        let role = match pod.deployment {
            "web" => "HTTP/1 front end; calls emoji and voting over gRPC".to_string(),
            "emoji" => format!("gRPC; answers after {:?}", args.app.emoji_delay),
            "voting" => format!(
                "gRPC; fails {:.0}% of votes",
                args.app.failure_rate() * 100.0
            ),
            _ => format!("votes through web, {} a second", args.app.rps),
        };
        println!(
            "  deploy/{:<9} {} (app :{APP_PORT}, proxy :{INBOUND} :{OUTBOUND}, admin :{ADMIN})  {role}",
            pod.deployment, pod.ip
        );
    }
    println!(
        "\nEvery call between them goes app -> outbound proxy -> mTLS -> inbound proxy -> app.\n\
         Expect web and voting at about {:.0}% success, emoji at 100% and {:?} latency.\n",
        (1.0 - args.app.failure_rate()) * 100.0,
        args.app.emoji_delay
    );
    println!("Try, in another terminal (Prometheus needs a scrape or two first):");
    for cmd in [
        "stat deploy -n emojivoto",
        "edges deploy -n emojivoto",
        "tap deploy/web -n emojivoto",
        "top deploy/web -n emojivoto",
        "stat deploy -n emojivoto --from deploy/web",
        "routes deploy/vote-bot -n emojivoto --to svc/web-svc -o wide",
        "diagnostics proxy-metrics -n emojivoto deploy/web",
        "dashboard",
        "version",
    ] {
        println!("  {me} {cmd}");
    }
    println!("\nCtrl-C stops everything the demo started.");
}

/// The Prometheus the demo runs, and where.
struct Prometheus<'a> {
    bin: &'a Path,
    addr: SocketAddr,
}

/// Starts Prometheus on `listen`; its data directory, which tells it
/// apart from any other Prometheus.
fn start_prometheus(
    running: &mut Running,
    bin: &Path,
    dir: &Path,
    listen: SocketAddr,
    control: Ipv4Addr,
    pods: &[Pod],
    interval: &str,
) -> anyhow::Result<String> {
    let prom = dir.join("prometheus");
    std::fs::create_dir_all(prom.join("targets"))?;
    let config = prometheus::local_config(prometheus::CONFIG, Some(interval))?
        .replace("'localhost:9090'", &format!("'{listen}'"));
    std::fs::write(prom.join("prometheus.yml"), config)?;
    let targets: Vec<ProxyTarget> = pods
        .iter()
        .map(|p| ProxyTarget {
            admin: p.at(ADMIN),
            namespace: NAMESPACE.into(),
            pod: p.name(),
            owner: Some(("deployment".into(), p.deployment.into())),
            labels: BTreeMap::from([("app".to_string(), p.deployment.to_string())]),
        })
        .collect();
    std::fs::write(
        prom.join("targets/linkerd-proxy.json"),
        prometheus::proxy_targets(&targets),
    )?;
    let controllers: Vec<prometheus::ControllerTarget> = CONTROLLERS
        .iter()
        .chain([&("web", WEB.0, WEB.1)])
        .map(|(name, _, admin)| prometheus::ControllerTarget {
            admin: SocketAddr::new(control.into(), *admin),
            component: (*name).to_string(),
        })
        .collect();
    std::fs::write(
        prom.join("targets/linkerd-controller.json"),
        prometheus::controller_targets(&controllers),
    )?;
    let args = vec![
        format!("--config.file={}", prom.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", prom.join("data").display()),
        format!("--web.listen-address={listen}"),
        "--storage.tsdb.retention.time=2h".into(),
        "--log.level=warn".into(),
    ];
    running.spawn("prometheus", bin, &args, &[])?;
    Ok(prom.join("data").display().to_string())
}

/// Whether the Prometheus at `addr` is ready and is the one keeping its
/// data in `data` (its flags say so).
async fn prometheus_is_ours(addr: SocketAddr, data: &str) -> bool {
    if !http_ok(addr, "/-/ready").await {
        return false;
    }
    let Some(body) = http_get(addr, "/api/v1/status/flags").await else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .is_some_and(|v| v["data"]["storage.tsdb.path"] == data)
}
