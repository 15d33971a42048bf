//! `linkerd-controller`: the control plane, one subcommand per service.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use linkerd_admin::Admin;
use linkerd_controller::{destination, identity, prometheus_sd, public_api, tap};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Parser)]
#[command(
    name = "linkerd-controller",
    version,
    about = "The mesh's control plane",
    // A flag given twice takes its last value, as a manifest's override
    // of a default would expect.
    args_override_self = true
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
    /// Serves io.linkerd.proxy.identity.Identity: signs proxies' certificates.
    Identity(IdentityArgs),
    /// Writes a new trust anchor and issuer: ca-bundle.crt, ca.key, crt.pem, key.pem.
    IssuerCerts(IssuerCertsArgs),
    /// Serves io.linkerd.proxy.inbound.InboundServerPolicies: what each
    /// pod's server on a port speaks and whom it admits (local backend).
    Policy(PolicyArgs),
    /// Serves tap: taps a resource's meshed pods and merges their events.
    Tap(TapArgs),
    /// Serves the public API: pods, stats and edges (from Prometheus), and tap.
    PublicApi(PublicApiArgs),
    /// Serves the proxy injector: the mutating admission webhook that adds the proxy to pods.
    ProxyInjector(ProxyInjectorArgs),
    /// Kubernetes discovery for a Prometheus without it: writes the scrape
    /// configuration's file form and keeps its targets current from the pods.
    PrometheusTargets(PrometheusTargetsArgs),
}

#[derive(Args)]
struct PrometheusTargetsArgs {
    /// The scrape configuration, with Kubernetes discovery (the chart's).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/prometheus/prometheus.yml"
    )]
    config: PathBuf,
    /// Where to write prometheus.yml (file discovery) and targets/<job>.json.
    #[arg(long, value_name = "DIR", default_value = "/var/run/prometheus")]
    out: PathBuf,
    /// Write the configuration and empty targets files, then exit.
    #[arg(long)]
    config_only: bool,
    /// How long to let pod changes settle before rewriting the targets.
    #[arg(long, default_value = "1s", value_parser = linkerd_duration::parse)]
    settle: Duration,
    /// The kubeconfig to reach the Kubernetes API with. Without it: the
    /// in-cluster config, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
}

#[derive(Args)]
struct ProxyInjectorArgs {
    /// The kubeconfig to reach the Kubernetes API with. Without it: the
    /// in-cluster config, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Where the webhook's serving certificate is mounted: tls.crt, tls.key.
    #[arg(long, value_name = "DIR", default_value = "/var/run/linkerd/tls")]
    tls_dir: PathBuf,
    #[arg(long, default_value = "0.0.0.0:8443")]
    addr: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:9997")]
    admin_addr: SocketAddr,
    /// The control plane's namespace, where linkerd-config is.
    #[arg(long, default_value = "linkerd")]
    controller_namespace: String,
}

/// Where a service reads the world from: the local mesh's topology file,
/// or the Kubernetes API.
#[derive(Args)]
struct SourceArgs {
    /// Read the world (services, pods, tokens) from this topology file,
    /// re-read when it changes, instead of from the Kubernetes API.
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    local: Option<PathBuf>,
    /// The kubeconfig to reach the Kubernetes API with. Without it: the
    /// in-cluster config, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// How often the topology file (and identity's issuer files) are
    /// checked for changes.
    #[arg(long, default_value = "500ms", value_parser = linkerd_duration::parse)]
    poll_interval: Duration,
}

/// What every workload identity is made of:
/// `sa.ns.serviceaccount.identity.<controller namespace>.<trust domain>`.
#[derive(Args)]
struct NamingArgs {
    /// The control plane's namespace, part of every workload identity.
    #[arg(long, default_value = "linkerd")]
    controller_namespace: String,
    /// The trust domain, the end of every workload identity.
    #[arg(long, default_value = "cluster.local")]
    identity_trust_domain: String,
}

impl NamingArgs {
    fn naming(self) -> linkerd_pki::Naming {
        linkerd_pki::Naming::new(self.controller_namespace, self.identity_trust_domain)
    }
}

#[derive(Args)]
struct PublicApiArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The Prometheus that scrapes the proxies.
    #[arg(
        long,
        default_value = "http://linkerd-prometheus.linkerd.svc.cluster.local:9090"
    )]
    prometheus_url: String,
    /// No Prometheus: scrape every meshed pod's proxy (admin port 4191)
    /// here, and compute stats from those scrapes with the same definitions.
    #[arg(long)]
    scrape_proxies: bool,
    /// How often proxies are scraped, with --scrape-proxies.
    #[arg(long, default_value = "10s", value_parser = linkerd_duration::parse)]
    scrape_interval: Duration,
    /// How much history is kept, with --scrape-proxies: the longest
    /// window stats can cover. The dashboard's longest chart is an hour of
    /// points, each over the minute before it.
    #[arg(long, default_value = "65m", value_parser = linkerd_duration::parse)]
    scrape_retention: Duration,
    /// The tap service, which taps are handed to.
    #[arg(long, default_value = "linkerd-tap.linkerd.svc.cluster.local:8088")]
    tap_addr: String,
    /// The cluster's DNS domain: the services that `routes` reports on are
    /// named under it in the proxies' route series.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The destination service, which `linkerd diagnostics endpoints` is handed to.
    #[arg(
        long,
        default_value = "linkerd-dst-headless.linkerd.svc.cluster.local:8086"
    )]
    destination_addr: String,
    #[arg(long, default_value = "0.0.0.0:8085")]
    addr: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:9995")]
    admin_addr: SocketAddr,
    #[command(flatten)]
    naming: NamingArgs,
}

#[derive(Args)]
struct TapArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[arg(long, default_value = "0.0.0.0:8088")]
    addr: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:9998")]
    admin_addr: SocketAddr,
    /// The identity service, which certifies this controller for tapping.
    #[arg(
        long,
        default_value = "linkerd-identity-headless.linkerd.svc.cluster.local.:8080"
    )]
    identity_addr: String,
    /// The trust anchors that proxies' certificates chain to.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/run/linkerd/identity/trust-roots/ca-bundle.crt"
    )]
    trust_anchors: PathBuf,
    /// This controller's ServiceAccount token, for the identity service.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/run/secrets/tokens/linkerd-identity-token"
    )]
    token_file: PathBuf,
    /// This controller's service account: proxies serve tap to its identity.
    #[arg(long, default_value = "linkerd-tap")]
    service_account: String,
    /// Serve tap as the aggregated API `v1alpha1.tap.linkerd.io` with the
    /// certificate in this directory (tls.crt, tls.key), for users who tap
    /// through the Kubernetes API server and its RBAC.
    #[arg(long, value_name = "DIR")]
    apiserver_tls_dir: Option<PathBuf>,
    /// Where the aggregated API is served.
    #[arg(long, default_value = "0.0.0.0:8089")]
    apiserver_addr: SocketAddr,
    #[command(flatten)]
    naming: NamingArgs,
}

#[derive(Args)]
struct IdentityArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The trust anchors (the `linkerd-identity-trust-roots` ConfigMap's bundle).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/run/linkerd/identity/trust-roots/ca-bundle.crt"
    )]
    trust_anchors: PathBuf,
    /// Where the `linkerd-identity-issuer` Secret is mounted: crt.pem, key.pem.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/run/linkerd/identity/issuer"
    )]
    issuer_dir: PathBuf,
    /// How long issued certificates last.
    #[arg(long, default_value = "24h", value_parser = linkerd_duration::parse)]
    issuance_lifetime: Duration,
    /// How far before now issued certificates start, for clocks behind ours.
    #[arg(long, default_value = "20s", value_parser = linkerd_duration::parse)]
    clock_skew_allowance: Duration,
    #[arg(long, default_value = "0.0.0.0:8080")]
    addr: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:9990")]
    admin_addr: SocketAddr,
    #[command(flatten)]
    naming: NamingArgs,
}

#[derive(Args)]
struct IssuerCertsArgs {
    /// The directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, default_value = "cluster.local")]
    identity_trust_domain: String,
    /// How long the trust anchor lasts.
    #[arg(long, default_value = "87600h", value_parser = linkerd_duration::parse)]
    anchor_lifetime: Duration,
    /// How long the issuer lasts.
    #[arg(long, default_value = "8760h", value_parser = linkerd_duration::parse)]
    issuer_lifetime: Duration,
}

#[derive(Args)]
struct PolicyArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[arg(long, default_value = "0.0.0.0:8090")]
    addr: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:9993")]
    admin_addr: SocketAddr,
    /// The policy of a pod without `config.linkerd.io/default-inbound-policy`.
    #[arg(long, default_value = "all-unauthenticated")]
    default_policy: linkerd_policy::DefaultPolicy,
    /// The cluster's networks, for the `cluster-*` default policies.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8"
    )]
    cluster_networks: Vec<ipnet::IpNet>,
    #[command(flatten)]
    naming: NamingArgs,
    /// The cluster's DNS domain: outbound policy names a service's
    /// endpoints to destination under it.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

#[derive(Args)]
struct DestinationArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[arg(long, default_value = "0.0.0.0:8086")]
    addr: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:9996")]
    admin_addr: SocketAddr,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    #[command(flatten)]
    naming: NamingArgs,
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
        Command::Policy(args) => policy(args).await,
        Command::Identity(args) => identity(args).await,
        Command::IssuerCerts(args) => issuer_certs(args),
        Command::PrometheusTargets(args) => prometheus_targets(args).await,
        Command::Tap(args) => tap(args).await,
        Command::PublicApi(args) => public_api(args).await,
        Command::ProxyInjector(args) => proxy_injector(args).await,
    }
}

async fn proxy_injector(args: ProxyInjectorArgs) -> anyhow::Result<()> {
    let read = |file: &str| {
        let path = args.tls_dir.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let tls = linkerd_controller::tls::server_config(&read("tls.crt")?, &read("tls.key")?, None)
        .map_err(|e| {
            anyhow::anyhow!("the webhook certificate in {}: {e}", args.tls_dir.display())
        })?;
    let chart = linkerd_chart::Chart::linkerd().context("the built-in chart")?;
    let client = kube_client(args.kubeconfig.as_deref()).await?;
    let metrics = linkerd_controller::injector::Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let webhook = linkerd_controller::injector::Webhook::new(
        linkerd_controller::injector::Kube::start(client, args.controller_namespace.clone()).await,
        chart,
        args.controller_namespace,
        metrics,
    );
    let listener = linkerd_admin::bind("proxy-injector", args.addr).await?;
    let admin = linkerd_admin::bind("admin", args.admin_addr).await?;
    tokio::spawn(Admin::new(registry).serve(admin));
    linkerd_controller::injector::serve(
        listener,
        std::sync::Arc::new(tls),
        std::sync::Arc::new(webhook),
        linkerd_admin::signalled(),
    )
    .await;
    tracing::info!("shutdown complete");
    Ok(())
}

async fn public_api(args: PublicApiArgs) -> anyhow::Result<()> {
    let lazy = |flag: &str, addr: &str| {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map(|e| e.connect_timeout(Duration::from_secs(5)).connect_lazy())
            .map_err(|_| anyhow::anyhow!("{flag} {addr:?} is not HOST:PORT"))
    };
    let relays = public_api::Relays {
        tap: lazy("--tap-addr", &args.tap_addr)?,
        destination: lazy("--destination-addr", &args.destination_addr)?,
    };
    let discover = discovery(
        args.source.local.as_deref(),
        args.source.kubeconfig.as_deref(),
        args.source.poll_interval,
    )
    .await?;
    let naming = args.naming.naming();
    let metrics = if args.scrape_proxies {
        if args.scrape_interval.is_zero() {
            anyhow::bail!("--scrape-interval must be above 0");
        }
        tracing::info!(interval = ?args.scrape_interval, "stats from the proxies' own scrapes");
        public_api::Metrics::Proxies(public_api::Scraper::start(
            discover.clone(),
            args.scrape_interval,
            args.scrape_retention,
        ))
    } else {
        tracing::info!(prometheus = %args.prometheus_url, "stats from Prometheus");
        public_api::Metrics::Prometheus(Box::new(
            public_api::Prometheus::new(&args.prometheus_url)
                .context("--prometheus-url is invalid")?,
        ))
    };
    tracing::info!(tap = %args.tap_addr, destination = %args.destination_addr, "public API");
    let mut registry = prometheus_client::registry::Registry::default();
    discover.register(&mut registry);
    let routes = public_api::PublicApi::new(discover, metrics, naming)
        .with_cluster_domain(args.cluster_domain)
        .into_routes(relays);
    serve_grpc(
        "public-api",
        routes,
        (args.addr, args.admin_addr),
        registry,
        || {},
    )
    .await
}

async fn tap(args: TapArgs) -> anyhow::Result<()> {
    let discover = discovery(
        args.source.local.as_deref(),
        args.source.kubeconfig.as_deref(),
        args.source.poll_interval,
    )
    .await?;
    serve_tap(discover, args).await
}

async fn serve_tap<D: linkerd_discovery::Discover>(
    discover: D,
    args: TapArgs,
) -> anyhow::Result<()> {
    let trust_anchors_pem = std::fs::read_to_string(&args.trust_anchors).with_context(|| {
        format!(
            "cannot read the trust anchors {}",
            args.trust_anchors.display()
        )
    })?;
    let naming = args.naming.naming();
    // Tap's own: its service account in the control plane's namespace.
    let name = naming.identity(&args.service_account, &naming.control_namespace);
    let credentials = tap::Credentials::start(tap::CredentialsConfig {
        name,
        trust_anchors_pem,
        token_file: args.token_file.clone(),
        identity_addr: args.identity_addr.clone(),
    })
    .with_context(|| {
        format!(
            "cannot set up tap's identity from {}",
            args.trust_anchors.display()
        )
    })?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let service = std::sync::Arc::new(tap::TapService::new(
        discover,
        credentials,
        naming,
        stopped.clone(),
    ));
    if let Some(dir) = &args.apiserver_tls_dir {
        let api = tap_apiserver(dir, &args.source, service.clone()).await?;
        let listener = linkerd_admin::bind("tap API", args.apiserver_addr).await?;
        let (tls, server) = api;
        let mut stopped = stopped;
        tokio::spawn(tap::apiserver::serve(listener, tls, server, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    serve_grpc(
        "tap",
        tonic::service::Routes::new(tap::TapService::server(service)),
        (args.addr, args.admin_addr),
        prometheus_client::registry::Registry::default(),
        move || {
            let _ = stop.send(true);
        },
    )
    .await
}

type TapApi<D> = (
    std::sync::Arc<rustls::ServerConfig>,
    std::sync::Arc<tap::apiserver::ApiServer<D, tap::apiserver::SubjectAccessReviews>>,
);

/// The aggregated tap API: its serving certificate, and the API server's
/// front-proxy settings, which say whose certificate speaks for users.
async fn tap_apiserver<D: linkerd_discovery::Discover>(
    dir: &std::path::Path,
    source: &SourceArgs,
    tap: std::sync::Arc<tap::TapService<D>>,
) -> anyhow::Result<TapApi<D>> {
    if source.local.is_some() {
        anyhow::bail!(
            "--apiserver-tls-dir serves tap through the Kubernetes API server: it needs the Kubernetes backend, not --local"
        );
    }
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the tap API's {}", path.display()))
    };
    let client = kube_client(source.kubeconfig.as_deref()).await?;
    let request_header = tap::apiserver::RequestHeader::load(&client)
        .await
        .context("the tap API cannot know the API server's front proxy")?;
    let tls = linkerd_controller::tls::server_config(
        &read("tls.crt")?,
        &read("tls.key")?,
        Some(&request_header.client_ca_pem),
    )
    .with_context(|| format!("the tap API's certificate in {}", dir.display()))?;
    let server = tap::apiserver::ApiServer {
        tap,
        authorize: tap::apiserver::SubjectAccessReviews::new(client),
        request_header,
    };
    Ok((std::sync::Arc::new(tls), std::sync::Arc::new(server)))
}

async fn identity(args: IdentityArgs) -> anyhow::Result<()> {
    let files = identity::issuer::IssuerFiles::in_dir(&args.issuer_dir, args.trust_anchors.clone());
    let issuer = files.watch(args.source.poll_interval)?;
    match &args.source.local {
        Some(path) => {
            let local = linkerd_discovery::local::LocalDiscovery::load(
                path.clone(),
                args.source.poll_interval,
            )?;
            let tokens = identity::tokens::LocalTokens::new(local.topology());
            serve_identity(issuer, tokens, args).await
        }
        None => {
            let client = kube_client(args.source.kubeconfig.as_deref()).await?;
            serve_identity(issuer, identity::tokens::TokenReviews::new(client), args).await
        }
    }
}

async fn serve_identity<V: identity::tokens::Validate>(
    issuer: tokio::sync::watch::Receiver<std::sync::Arc<linkerd_pki::ca::Issuer>>,
    validator: V,
    args: IdentityArgs,
) -> anyhow::Result<()> {
    tracing::info!(expires = %issuer.borrow().not_after(), "issuer loaded");
    let metrics = identity::Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    metrics.follow_issuer(issuer.clone());
    let config = identity::Config {
        naming: args.naming.naming(),
        lifetime: args.issuance_lifetime,
        clock_skew: args.clock_skew_allowance,
    };
    let service = identity::Identity::new(issuer, validator, config, metrics).into_server();
    serve_grpc(
        "identity",
        tonic::service::Routes::new(service),
        (args.addr, args.admin_addr),
        registry,
        || {},
    )
    .await
}

fn issuer_certs(args: IssuerCertsArgs) -> anyhow::Result<()> {
    let generated = linkerd_pki::ca::generate(
        &args.identity_trust_domain,
        args.anchor_lifetime,
        args.issuer_lifetime,
        time::OffsetDateTime::now_utc(),
    )?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (name, text, mode) in [
        ("ca-bundle.crt", &generated.trust_anchor_pem, 0o644),
        ("ca.key", &generated.trust_anchor_key_pem, 0o600),
        ("crt.pem", &generated.issuer_pem, 0o644),
        ("key.pem", &generated.issuer_key_pem, 0o600),
    ] {
        use std::{io::Write, os::unix::fs::OpenOptionsExt};
        let path = args.out.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "wrote ca-bundle.crt (trust anchor), ca.key, crt.pem and key.pem (issuer) to {}",
        args.out.display()
    );
    Ok(())
}

async fn policy(args: PolicyArgs) -> anyhow::Result<()> {
    let mut registry = prometheus_client::registry::Registry::default();
    let topology = match args.source.local.as_deref() {
        Some(path) => {
            let local = linkerd_discovery::local::LocalDiscovery::load(
                path.to_path_buf(),
                args.source.poll_interval,
            )?;
            local.register(&mut registry);
            local.topology()
        }
        None => {
            let client = kube_client(args.source.kubeconfig.as_deref()).await?;
            tracing::info!("waiting for the Kubernetes API's first lists");
            linkerd_controller::policy::kubernetes::start(client).await
        }
    };
    let cluster = linkerd_policy::Cluster {
        networks: args.cluster_networks,
        naming: args.naming.naming(),
    };
    let outbound = linkerd_controller::policy::outbound::OutboundPolicies::new(
        topology.clone(),
        &args.cluster_domain,
    )
    .into_server();
    let service =
        linkerd_controller::policy::InboundPolicies::new(topology, cluster, args.default_policy)
            .into_server();
    let routes = tonic::service::Routes::new(service).add_service(outbound);
    serve_grpc(
        "policy",
        routes,
        (args.addr, args.admin_addr),
        registry,
        || {},
    )
    .await
}

async fn destination(args: DestinationArgs) -> anyhow::Result<()> {
    let discover = discovery(
        args.source.local.as_deref(),
        args.source.kubeconfig.as_deref(),
        args.source.poll_interval,
    )
    .await?;
    // Destination answers GetProfile: it also follows ServiceProfiles.
    let discover = match discover {
        linkerd_discovery::AnyDiscovery::Kubernetes(k) => {
            let client = kube_client(args.source.kubeconfig.as_deref()).await?;
            linkerd_discovery::AnyDiscovery::Kubernetes(k.with_profiles(client).await)
        }
        local => local,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    discover.register(&mut registry);
    serve_destination(discover, args, registry).await
}

/// The discovery backend the flags choose: `--local FILE`, or the
/// Kubernetes API (waiting for its first lists, so first answers are whole).
async fn discovery(
    local: Option<&std::path::Path>,
    kubeconfig: Option<&std::path::Path>,
    poll_interval: Duration,
) -> anyhow::Result<linkerd_discovery::AnyDiscovery> {
    Ok(match local {
        Some(path) => linkerd_discovery::AnyDiscovery::Local(
            linkerd_discovery::local::LocalDiscovery::load(path.to_path_buf(), poll_interval)?,
        ),
        None => {
            let client = kube_client(kubeconfig).await?;
            tracing::info!("waiting for the Kubernetes API's first lists");
            linkerd_discovery::AnyDiscovery::Kubernetes(
                linkerd_discovery::kubernetes::KubeDiscovery::start(client).await,
            )
        }
    })
}

async fn prometheus_targets(args: PrometheusTargetsArgs) -> anyhow::Result<()> {
    let jobs = prometheus_sd::write_config(&args.config, &args.out)?;
    tracing::info!(out = %args.out.display(), "scrape configuration written");
    if args.config_only {
        return Ok(());
    }
    let client = kube_client(args.kubeconfig.as_deref()).await?;
    prometheus_sd::run(client, jobs, args.out, args.settle).await?;
    anyhow::bail!("the watch of pods ended")
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

async fn serve_destination<
    D: linkerd_discovery::Discover + linkerd_discovery::profile::Profiles,
>(
    discover: D,
    args: DestinationArgs,
    mut registry: prometheus_client::registry::Registry,
) -> anyhow::Result<()> {
    let metrics = destination::Metrics::default();
    metrics.register(&mut registry);
    let config = destination::Config {
        cluster_domain: args.cluster_domain,
        naming: args.naming.naming(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let service = destination::Destination::new(discover, config, metrics, stopped).into_server();
    // Open streams end too, or the graceful shutdown would wait forever.
    let on_shutdown = move || {
        let _ = stop.send(true);
    };
    serve_grpc(
        "destination",
        tonic::service::Routes::new(service),
        (args.addr, args.admin_addr),
        registry,
        on_shutdown,
    )
    .await
}

/// Serves one gRPC service, and its admin server, until SIGTERM or SIGINT;
/// `on_shutdown` runs then, before the server drains.
async fn serve_grpc(
    what: &'static str,
    routes: tonic::service::Routes,
    (addr, admin_addr): (SocketAddr, SocketAddr),
    mut registry: prometheus_client::registry::Registry,
    on_shutdown: impl FnOnce() + Send,
) -> anyhow::Result<()> {
    // Watching for signals before the first connection can be answered.
    let signalled = linkerd_admin::signalled();
    let grpc = linkerd_admin::bind(what, addr).await?;
    let admin = linkerd_admin::bind("admin", admin_addr).await?;
    let limits = linkerd_controller::grpc::Limits::default();
    let calls = linkerd_controller::grpc::Layer::new(&limits);
    calls.register(&mut registry);
    tokio::spawn(Admin::new(registry).serve(admin));
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .timeout(limits.request_timeout)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .layer(calls)
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc),
            async move {
                signalled.await;
                on_shutdown();
            },
        )
        .await
        .with_context(|| format!("{what} server failed"))?;
    tracing::info!("shutdown complete");
    Ok(())
}
