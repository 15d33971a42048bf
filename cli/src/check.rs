//! `linkerd check`: the flags and the exit code; the checks are the
//! library's (`linkerd-healthcheck`), which the dashboard runs too.

use crate::api::Target;
use clap::Args;
use linkerd_healthcheck::{self as healthcheck, Output, Report, local::LocalMesh};
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
    #[arg(long, default_value = "5m", value_parser = linkerd_duration::parse)]
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
    let flags_name_cluster = target.kubeconfig.is_some() || target.context.is_some();
    let demo = (!flags_name_cluster)
        .then(crate::demo::state::running)
        .flatten();
    if let Some(mut demo) = demo {
        // A demo that is still starting lists its parts once they are up.
        let deadline = tokio::time::Instant::now() + args.wait;
        while !demo.ready {
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "the local mesh (`linkerd demo`, pid {}) is still starting; --wait sets how long to wait",
                    demo.pid
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            demo = crate::demo::state::running()
                .ok_or_else(|| anyhow::anyhow!("the local mesh stopped while starting"))?;
        }
        return local(args, &demo).await;
    }
    if target.api_addr.is_some() && !flags_name_cluster {
        anyhow::bail!(
            "linkerd check inspects a cluster through the Kubernetes API, or the local mesh that \
             `linkerd demo` runs; --api-addr alone names neither (give --kubeconfig or --context, or start `linkerd demo`)"
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
    finish(report)
}

/// The local mesh's checks: its components, certificates and proxies.
async fn local(args: CheckArgs, demo: &crate::demo::state::State) -> anyhow::Result<()> {
    if args.pre {
        anyhow::bail!(
            "--pre checks a cluster before `linkerd install`; the local mesh (`linkerd demo`, pid {}) is installed already",
            demo.pid
        );
    }
    let certs = demo.dir.join("certs");
    let ns = args.namespace.as_deref();
    let mesh = LocalMesh {
        components: demo.components.clone(),
        identity: Some((certs.join("ca-bundle.crt"), certs.join("crt.pem"))),
        proxies: demo
            .proxies
            .iter()
            .filter(|(pod, _)| ns.is_none_or(|ns| pod.split('/').next() == Some(ns)))
            .cloned()
            .collect(),
    };
    if let Some(ns) = ns
        && args.proxy
        && mesh.proxies.is_empty()
    {
        anyhow::bail!("no meshed pods in namespace {ns} of the local mesh");
    }
    let mut report = Report::new(args.output, args.wait);
    healthcheck::local::run(&mut report, &mesh, args.proxy).await;
    finish(report)
}

fn finish(report: Report) -> anyhow::Result<()> {
    if report.finish() {
        Ok(())
    } else {
        Err(Failed.into())
    }
}
