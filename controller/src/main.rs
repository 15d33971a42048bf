//! `linkerd-controller`: the control plane, one subcommand per service.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use linkerd_controller::{admin, destination, discovery};
use std::{net::SocketAddr, path::PathBuf, time::Duration};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "linkerd-controller",
    version,
    about = "The mesh's control plane"
)]
struct Cli {
    /// Log filter, e.g. `info` or `warn,linkerd_controller=debug`.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves io.linkerd.proxy.destination.Destination: service discovery for proxies.
    Destination(DestinationArgs),
}

#[derive(Args)]
struct DestinationArgs {
    /// Discover from this topology file (services and pods, in YAML), re-read
    /// when it changes, instead of from the Kubernetes API.
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    local: Option<PathBuf>,
    /// The kubeconfig to reach the Kubernetes API with. Without it: the
    /// in-cluster config, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// How often the topology file is checked for changes.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    poll_interval: Duration,
    #[arg(long, default_value = "0.0.0.0:8086")]
    addr: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:9996")]
    admin_addr: SocketAddr,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The control plane's namespace, part of every workload identity.
    #[arg(long, default_value = "linkerd")]
    controller_namespace: String,
    #[arg(long, default_value = "cluster.local")]
    identity_trust_domain: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms or 2s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(format!("{s:?} is not a duration such as 500ms or 2s")),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "linkerd-controller: --log-level {:?} is invalid: {e}",
                cli.log_level
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = runtime
        .context("cannot start the runtime")
        .and_then(|rt| rt.block_on(run(cli.command)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // What failed, and its immediate cause: deeper causes repeat
            // themselves in some libraries' errors.
            match e.chain().nth(1) {
                Some(cause) => eprintln!("linkerd-controller: {e}: {cause}"),
                None => eprintln!("linkerd-controller: {e}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Destination(args) => destination(args).await,
    }
}

async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {what} server"))?;
    tracing::info!("{what} listening on {}", listener.local_addr()?);
    Ok(listener)
}

async fn destination(args: DestinationArgs) -> anyhow::Result<()> {
    match &args.local {
        Some(path) => {
            let discover =
                discovery::local::LocalDiscovery::load(path.clone(), args.poll_interval)?;
            serve_destination(discover, args).await
        }
        None => {
            let client = kube_client(args.kubeconfig.as_deref()).await?;
            tracing::info!("waiting for the Kubernetes API's first lists");
            let discover = discovery::kubernetes::KubeDiscovery::start(client).await;
            serve_destination(discover, args).await
        }
    }
}

async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("the kubeconfig {} is not usable", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes config: not in a cluster and no kubeconfig (use --kubeconfig or --local)")?,
    };
    kube::Client::try_from(config).context("cannot make a Kubernetes client")
}

async fn serve_destination<D: discovery::Discover>(
    discover: D,
    args: DestinationArgs,
) -> anyhow::Result<()> {
    let metrics = destination::Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let config = destination::Config {
        cluster_domain: args.cluster_domain,
        control_namespace: args.controller_namespace,
        trust_domain: args.identity_trust_domain,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let service = destination::Destination::new(discover, config, metrics, stopped).into_server();

    let grpc = bind("destination", args.addr).await?;
    let admin = bind("admin", args.admin_addr).await?;
    tokio::spawn(admin::serve(admin, registry));
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc),
            async move {
                shutdown().await;
                // Open streams end too, or the graceful shutdown would wait forever.
                let _ = stop.send(true);
            },
        )
        .await
        .context("destination server failed")?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}
