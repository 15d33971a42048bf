//! `linkerd`: the mesh's command line.
//!
//! A library only so that fuzz targets can reach its input parsers: the
//! binary calls [`main`], and the `fuzz` module exists for `cargo fuzz`
//! (`cfg(fuzzing)`) and the tests that replay its corpora.

mod api;
mod authz;
mod check;
mod dashboard;
mod demo;
mod diagnostics;
mod edges;
mod inject;
mod install;
mod profile;
mod resource;
mod routes;
mod stat;
mod table;
mod tap;
mod top;
mod version;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "linkerd", version, about = "linkerd manages the mesh")]
struct Cli {
    /// Reach the control plane at this address (the local mesh) instead of
    /// through the Kubernetes API.
    #[arg(long, global = true, env = "LINKERD_API_ADDR")]
    api_addr: Option<String>,
    /// The kubeconfig to reach the cluster with ($KUBECONFIG or
    /// ~/.kube/config by default).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// The user to impersonate for Kubernetes operations (as kubectl's --as).
    #[arg(long = "as", global = true, value_name = "USER")]
    impersonate: Option<String>,
    /// A group to impersonate for Kubernetes operations; repeat for more.
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    impersonate_groups: Vec<String>,
    /// The control plane's namespace.
    #[arg(short = 'L', long, global = true, default_value = "linkerd")]
    linkerd_namespace: String,
    /// Say on stderr what the command reaches, and how.
    #[arg(long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the mesh and a demo application on this machine (no cluster, no root).
    Demo(demo::DemoArgs),
    /// One of the demo application's programs, as its pods run it.
    #[command(hide = true)]
    DemoApp(demo::cluster::AppArgs),
    /// How the demo starts its children: they die with it.
    #[command(hide = true)]
    DieWithParent(demo::DieWithParentArgs),
    /// Golden metrics per resource: success rate, requests a second, latency, TCP connections.
    Stat(stat::StatArgs),
    /// Listen to a traffic stream: every request of a resource's pods, live.
    Tap(tap::TapArgs),
    /// A live table of a resource's busiest request paths (q quits).
    Top(top::TopArgs),
    /// Which workloads talk to which, and whether mTLS secures it.
    Edges(edges::EdgesArgs),
    /// The authorizations a workload admits requests by, per server and route.
    Authz(authz::AuthzArgs),
    /// Per route of a service profile: success rate, requests a second, latency.
    Routes(routes::RoutesArgs),
    /// A ServiceProfile for a service: a template, or routes from an OpenAPI or protobuf file.
    Profile(profile::ProfileArgs),
    /// The CLI's and the control plane's versions.
    Version(version::VersionArgs),
    /// Debugging views of the proxies and the control plane.
    #[command(subcommand)]
    Diagnostics(diagnostics::Diagnostics),
    /// The control plane's manifests, for `kubectl apply -f -` (the chart, as `helm template` renders it).
    Install(install::InstallArgs),
    /// Add the proxy to Kubernetes YAML (annotating pods for the proxy injector, or with --manual adding it).
    Inject(inject::InjectArgs),
    /// Remove the proxy from Kubernetes YAML.
    Uninject(inject::UninjectArgs),
    /// The web dashboard on localhost:50750 (the cluster's, or the local mesh's).
    Dashboard(dashboard::DashboardArgs),
    /// Check the cluster, the control plane and (--proxy) the data plane; --pre before installing.
    Check(check::CheckArgs),
    /// What to delete to remove the control plane, for `kubectl delete -f -`.
    Uninstall(install::UninstallArgs),
    /// A shell completion script: `source <(linkerd completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[cfg(any(fuzzing, test))]
pub mod fuzz;

/// The `linkerd` command, from its arguments to its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's first paragraph says what is wrong, on one line here;
            // the usage is in --help.
            let text = e.render().to_string();
            let what: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!(
                "linkerd: {} (see `linkerd --help`)",
                what.join(" ").trim_start_matches("error: ")
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("linkerd: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Without flags that name a cluster or an address, a running local
    // demo is the control plane.
    let api_addr = cli.api_addr.or_else(|| {
        if cli.kubeconfig.is_some() || cli.context.is_some() || cli.impersonate.is_some() {
            return None;
        }
        let demo = demo::state::running()?;
        if cli.verbose {
            eprintln!(
                "linkerd: using the local demo mesh (pid {}, {})",
                demo.pid,
                demo::state::path().display()
            );
        }
        Some(demo.api_addr)
    });
    let target = api::Target {
        api_addr,
        kubeconfig: cli.kubeconfig,
        context: cli.context,
        impersonate: cli.impersonate,
        impersonate_groups: cli.impersonate_groups,
        namespace: cli.linkerd_namespace,
        verbose: cli.verbose,
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::DemoApp(args) => demo::cluster::run_app(args).await,
            Command::DieWithParent(args) => demo::die_with_parent(args),
            Command::Stat(args) => stat::run(args, &target).await,
            Command::Tap(args) => tap::run(args, &target).await,
            Command::Top(args) => top::run(args, &target).await,
            Command::Edges(args) => edges::run(args, &target).await,
            Command::Authz(args) => authz::run(args, &target).await,
            Command::Routes(args) => routes::run(args, &target).await,
            Command::Profile(args) => profile::run(args, &target).await,
            Command::Version(args) => version::run(args, &target).await,
            Command::Diagnostics(cmd) => diagnostics::run(cmd, &target).await,
            Command::Install(args) => install::run(args, &target.namespace),
            Command::Inject(args) => inject::inject(args, &target).await,
            Command::Uninject(args) => inject::uninject(args),
            Command::Check(args) => check::run(args, &target).await,
            Command::Dashboard(args) => dashboard::run(args, &target).await,
            Command::Uninstall(_) => install::uninstall(&target).await,
            Command::Completion { shell } => {
                // Into a buffer first: clap_complete panics on a closed pipe.
                let mut cmd = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cmd, "linkerd", &mut script);
                let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The report said what failed.
        Err(e) if e.is::<check::Failed>() => ExitCode::FAILURE,
        Err(e) => {
            // The whole chain on one line: what failed, then why.
            eprintln!("linkerd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
