//! `linkerd`: the mesh's command line.

mod api;
mod resource;
mod tap;
mod top;

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
    /// The control plane's namespace.
    #[arg(short = 'L', long, global = true, default_value = "linkerd")]
    linkerd_namespace: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Listen to a traffic stream: every request of a resource's pods, live.
    Tap(tap::TapArgs),
    /// A live table of a resource's busiest request paths (q quits).
    Top(top::TopArgs),
}

fn main() -> ExitCode {
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
    let target = api::Target {
        api_addr: cli.api_addr,
        kubeconfig: cli.kubeconfig,
        context: cli.context,
        namespace: cli.linkerd_namespace,
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Tap(args) => tap::run(args, &target).await,
            Command::Top(args) => top::run(args, &target).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linkerd: {e}");
            ExitCode::FAILURE
        }
    }
}
