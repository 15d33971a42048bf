//! `linkerd-web`: the dashboard. Serves the UI (built into the binary) and a
//! JSON API over the public API, relays live tap as server-sent events, and
//! proxies `/grafana/` to Grafana, as Linkerd's web server does.

mod api;
mod assets;
mod checks;
mod grafana;
mod server;

use anyhow::Context;
use clap::Parser;
use linkerd_admin::Admin;
use std::net::SocketAddr;
use std::sync::Arc;

/// Linkerd's default: the dashboard answers to its service and loopback
/// names only, so a page on another site cannot reach it by DNS rebinding.
const DEFAULT_ENFORCED_HOST: &str = r"^(localhost|127\.0\.0\.1|linkerd-web\.linkerd\.svc\.cluster\.local|linkerd-web\.linkerd\.svc|\[::1\])(:\d+)?$";

#[derive(Parser)]
#[command(name = "linkerd-web", version, about = "The mesh's web dashboard")]
struct Args {
    /// Where the dashboard is served.
    #[arg(long, default_value = "0.0.0.0:8084")]
    addr: SocketAddr,
    /// Where /metrics, /ready and /live are served.
    #[arg(long, default_value = "0.0.0.0:9994")]
    admin_addr: SocketAddr,
    /// The public API (HOST:PORT).
    #[arg(
        long,
        default_value = "linkerd-public-api.linkerd.svc.cluster.local:8085"
    )]
    api_addr: String,
    /// Grafana (HOST:PORT), proxied under /grafana/; without it the
    /// dashboard's Grafana links say that there is none.
    #[arg(long)]
    grafana_addr: Option<String>,
    /// A regular expression the request's Host must match; other requests
    /// are refused (DNS-rebinding protection).
    #[arg(long, default_value = DEFAULT_ENFORCED_HOST)]
    enforced_host: String,
    /// The control plane's namespace.
    #[arg(long, default_value = "linkerd")]
    controller_namespace: String,
    /// What the control-plane page checks: `kubernetes` runs `linkerd check`
    /// through the Kubernetes API (in-cluster configuration, or
    /// $KUBECONFIG); `local` asks each --component whether it is ready.
    #[arg(long, value_enum, default_value = "kubernetes")]
    checks: checks::Mode,
    /// With --checks local: a control-plane component and its admin address.
    #[arg(long = "component", value_name = "NAME=HOST:PORT", value_parser = checks::parse_component)]
    components: Vec<(String, SocketAddr)>,
    /// Where live tap goes: `kubernetes` through the API server's
    /// aggregated tap API (`/apis/tap.linkerd.io`, as the dashboard's
    /// ServiceAccount, whose RBAC decides), `public-api` to --api-addr.
    #[arg(long, value_enum, default_value = "kubernetes")]
    tap_via: api::TapVia,
    /// Log filter (`tracing` env-filter syntax).
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "linkerd-web: --log-level {:?} is invalid: {e}",
                args.log_level
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    // Plain text unless a person watches: logs in files and pods stay
    // readable, as the proxy's and the controller's.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("linkerd-web: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linkerd-web: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let hosts = regex::Regex::new(&args.enforced_host).with_context(|| {
        format!(
            "--enforced-host {:?} is not a regular expression",
            args.enforced_host
        )
    })?;
    let api = api::PublicApi::new(&args.api_addr)?;
    let grafana = args.grafana_addr.map(grafana::Grafana::new);
    let metrics = server::Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let web = Arc::new(server::Web {
        api,
        grafana,
        hosts,
        controller_namespace: args.controller_namespace,
        checks: checks::Checks::new(args.checks, args.components)?,
        tap_via: args.tap_via,
        metrics,
    });
    let listener = linkerd_admin::bind("web", args.addr).await?;
    let admin = linkerd_admin::bind("admin", args.admin_addr).await?;
    tokio::spawn(Admin::new(registry).serve(admin));
    server::serve(listener, web, linkerd_admin::signalled()).await;
    tracing::info!("shutdown complete");
    Ok(())
}
