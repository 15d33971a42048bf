//! `linkerd check`: the flags and the exit code; the checks are the
//! library's (`linkerd_cli::healthcheck`), which the dashboard runs too.

use crate::api::Target;
use clap::Args;
use linkerd_cli::healthcheck::{self, Output, Report};
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// Check whether the control plane can be installed, instead of checking
    /// an installed one.
    #[arg(long, conflicts_with = "proxy")]
    pre: bool,
    /// Also check the data plane: the proxies of meshed pods.
    #[arg(long)]
    proxy: bool,
    /// With --proxy, only this namespace's pods (default: every namespace).
    #[arg(short, long)]
    namespace: Option<String>,
    /// How long to wait for checks that can still pass, such as pods starting.
    #[arg(long, default_value = "5m", value_parser = linkerd_cli::duration::parse)]
    wait: Duration,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
}

/// `linkerd check` found an error; the report said which. Exit 1 without
/// another message.
#[derive(Debug, thiserror::Error)]
#[error("linkerd check found problems")]
pub(crate) struct Failed;

pub(crate) async fn run(args: CheckArgs, target: &Target) -> anyhow::Result<()> {
    if target.api_addr.is_some() && target.kubeconfig.is_none() && target.context.is_none() {
        anyhow::bail!(
            "linkerd check inspects a cluster through the Kubernetes API; the local mesh has none \
             (give --kubeconfig or --context, or use `linkerd version` and `linkerd stat` for the local mesh)"
        );
    }
    let mut report = Report::new(args.output, args.wait);
    let options = healthcheck::Options {
        pre: args.pre,
        proxy: args.proxy,
        namespace: args.namespace,
    };
    let client = async { target.client().await.map_err(|e| format!("{e:#}")) };
    healthcheck::run(&mut report, &options, client, &target.namespace).await;
    if report.finish() {
        Ok(())
    } else {
        Err(Failed.into())
    }
}
