//! `linkerd version`: this CLI's release and the control plane's.

use crate::api;
use clap::Args;
use linkerd_proxy_api::public_api::{VersionRequest, api_client::ApiClient};

#[derive(Args, Debug)]
pub(crate) struct VersionArgs {
    /// Only the client's version; do not ask the control plane.
    #[arg(long)]
    client: bool,
    /// Print the versions alone, without labels.
    #[arg(long)]
    short: bool,
}

pub(crate) const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) async fn run(args: VersionArgs, api: &api::Target) -> anyhow::Result<()> {
    let line = |label: &str, v: &str| {
        if args.short {
            println!("{v}");
        } else {
            println!("{label}: {v}");
        }
    };
    line("Client version", CLIENT_VERSION);
    if args.client {
        return Ok(());
    }
    // An unreachable control plane is an answer here, not an error: that
    // is how a user learns that the CLI cannot reach it.
    let server = match api.channel(&api::PUBLIC_API).await {
        Ok(channel) => match ApiClient::new(channel).version(VersionRequest {}).await {
            Ok(rsp) => rsp.into_inner().release,
            Err(e) => {
                if api.verbose {
                    eprintln!("linkerd: {}", e.message());
                }
                "unavailable".into()
            }
        },
        Err(e) => {
            if api.verbose {
                eprintln!("linkerd: {e}");
            }
            "unavailable".into()
        }
    };
    line("Server version", &server);
    Ok(())
}
