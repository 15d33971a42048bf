//! `linkerd dashboard`: the web dashboard on `localhost:50750`, as Linkerd
//! serves it. In a cluster each connection is port-forwarded through the
//! Kubernetes API to a running web pod (no port opened in the cluster); in
//! the local mesh it is relayed to the demo's dashboard. Either way the URL
//! is the same, and it is what the dashboard's Host check expects.

use crate::{api::Target, demo};
use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::ListParams};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The web server's port in its pod.
const WEB_PORT: u16 = 8084;

#[derive(Args, Debug)]
pub(crate) struct DashboardArgs {
    /// The local address to serve the dashboard on.
    #[arg(long, default_value = "localhost")]
    address: String,
    /// The local port to serve the dashboard on.
    #[arg(short, long, default_value_t = 50750)]
    port: u16,
    /// What to open in the browser: the dashboard, its Grafana, or nothing
    /// (print the URL only).
    #[arg(long, value_enum, default_value = "linkerd")]
    show: Show,
    /// How long to wait for a running web pod.
    #[arg(long, default_value = "5m", value_parser = linkerd_duration::parse)]
    wait: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Show {
    Linkerd,
    Grafana,
    Url,
}

/// Where connections go.
enum Upstream {
    /// The local mesh's dashboard.
    Local(String),
    /// A web pod, by port-forward.
    Pod { pods: Box<Api<Pod>>, name: String },
}

pub(crate) async fn run(args: DashboardArgs, target: &Target) -> anyhow::Result<()> {
    let upstream = std::sync::Arc::new(upstream(&args, target).await?);
    let listener = TcpListener::bind((args.address.as_str(), args.port))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}:{} ({e}): is another `linkerd dashboard` running? (--port picks another)",
                args.address,
                args.port
            )
        })?;
    let host = if args.address.contains(':') {
        format!("[{}]", args.address)
    } else {
        args.address.clone()
    };
    let url = format!("http://{host}:{}", listener.local_addr()?.port());
    // Grafana is optional (the local mesh has none): its URL is given
    // only where the dashboard says there is one.
    let grafana = has_grafana(&upstream).await;
    if args.show == Show::Grafana && !grafana {
        anyhow::bail!(
            "this dashboard has no Grafana (the local mesh runs none; in a cluster the chart's grafana.enabled adds it)"
        );
    }
    say(format_args!("Linkerd dashboard available at:\n{url}"));
    if grafana {
        say(format_args!(
            "Grafana dashboard available at:\n{url}/grafana"
        ));
    }
    match args.show {
        Show::Linkerd => open(&url, "Linkerd dashboard"),
        Show::Grafana => open(&format!("{url}/grafana"), "Grafana dashboard"),
        Show::Url => {}
    }
    say(format_args!("Press Ctrl-C to stop."));
    loop {
        let (conn, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let upstream = upstream.clone();
        let verbose = target.verbose;
        tokio::spawn(async move {
            if let Err(e) = relay(conn, &upstream).await
                && verbose
            {
                eprintln!("linkerd: the dashboard connection from {peer} failed: {e}");
            }
        });
    }
}

/// The local mesh's dashboard, or a running web pod in the cluster.
async fn upstream(args: &DashboardArgs, target: &Target) -> anyhow::Result<Upstream> {
    if target.api_addr.is_some() {
        let demo = demo::state::running();
        return match demo.and_then(|d| d.web_addr) {
            Some(addr) => {
                if target.verbose {
                    eprintln!("linkerd: relaying to the local mesh's dashboard at {addr}");
                }
                Ok(Upstream::Local(addr))
            }
            None => anyhow::bail!(
                "no local mesh with a dashboard is running: start one with `linkerd demo`, \
                 or give --kubeconfig for a cluster's"
            ),
        };
    }
    let client = target.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, &target.namespace);
    let selector = ListParams::default().labels("linkerd.io/control-plane-component=web");
    let deadline = tokio::time::Instant::now() + args.wait;
    let mut said = false;
    loop {
        let list = pods
            .list(&selector)
            .await
            .map_err(|e| anyhow::anyhow!("cannot list the dashboard's pods: {e}"))?;
        let running = list
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if let Some(name) = running.and_then(|p| p.metadata.name) {
            if target.verbose {
                eprintln!("linkerd: port-forwarding to pod {name}:{WEB_PORT}");
            }
            return Ok(Upstream::Pod {
                pods: Box::new(pods),
                name,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "no running web pod in namespace {} after {:?}: is the control plane installed? (`linkerd check`)",
                target.namespace,
                args.wait
            );
        }
        if !said {
            eprintln!(
                "Waiting for the web pod in namespace {} to run…",
                target.namespace
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether the dashboard proxies a Grafana (its `/api/config`).
async fn has_grafana(upstream: &Upstream) -> bool {
    let ask = async {
        let text = match upstream {
            Upstream::Local(addr) => {
                let io = TcpStream::connect(addr).await?;
                crate::api::http_get(io, "/api/config").await?
            }
            Upstream::Pod { pods, name } => {
                let mut forwarder = pods.portforward(name, &[WEB_PORT]).await?;
                let io = forwarder
                    .take_stream(WEB_PORT)
                    .ok_or_else(|| anyhow::anyhow!("the port-forward to {name} has no stream"))?;
                let text = crate::api::http_get(io, "/api/config").await;
                drop(forwarder);
                text?
            }
        };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        anyhow::Ok(v["grafana"] == true)
    };
    tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false)
}

async fn relay(mut conn: TcpStream, upstream: &Upstream) -> anyhow::Result<()> {
    match upstream {
        Upstream::Local(addr) => {
            let mut up = TcpStream::connect(addr).await?;
            tokio::io::copy_bidirectional(&mut conn, &mut up).await?;
        }
        Upstream::Pod { pods, name } => {
            let mut forwarder = pods.portforward(name, &[WEB_PORT]).await?;
            let mut up = forwarder
                .take_stream(WEB_PORT)
                .ok_or_else(|| anyhow::anyhow!("the port-forward to {name} has no stream"))?;
            tokio::io::copy_bidirectional(&mut conn, &mut up).await?;
            drop(up);
            let _ = forwarder.join().await;
        }
    }
    Ok(())
}

/// A line on stdout; a closed stdout (`| head`) does not stop the
/// dashboard, which serves until interrupted.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Opens `url` in the user's browser ($BROWSER, else xdg-open); says so,
/// or that it could not.
fn open(url: &str, what: &str) {
    let browser = std::env::var("BROWSER").unwrap_or_else(|_| "xdg-open".into());
    let spawned = std::process::Command::new(&browser)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(_) => say(format_args!("Opening {what} in the default browser")),
        Err(_) => say(format_args!(
            "Cannot open a browser here ({browser}); open {url} yourself"
        )),
    }
}
